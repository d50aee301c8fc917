//! Request bodies in, responses out: size limits, JSON/YAML decoding, content negotiation
//! (JSON, YAML, Table), and `Status` error responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_api::ApiError;

/// Upstream's request body limit (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// An API error as an HTTP response with a `Status` body.
pub struct ErrorResponse(pub ApiError);

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = json_response(code, &self.0.to_status());
        if let Some(secs) = self.0.details.retry_after_seconds {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult = Result<Response, ErrorResponse>;

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    bytes_response(
        code,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
        "application/json",
    )
}

pub fn bytes_response(code: StatusCode, body: Bytes, content_type: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// How the client wants the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Table,
}

pub fn negotiate(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Clients list preferences in order; the first we can produce wins.
    for part in accept.split(',') {
        let part = part.trim();
        if part.contains("as=Table") && part.contains("g=meta.k8s.io") {
            return Format::Table;
        }
        if part.starts_with("application/json") || part.starts_with("*/*") {
            return Format::Json;
        }
        if part.starts_with("application/yaml") {
            return Format::Yaml;
        }
    }
    Format::Json
}

/// Renders an object in JSON or YAML (Tables are built by the caller).
pub fn object_response(code: StatusCode, format: Format, body: &Value) -> Response {
    match format {
        Format::Yaml => match serde_saphyr::to_string(body) {
            Ok(yaml) => bytes_response(code, Bytes::from(yaml), "application/yaml"),
            Err(_) => json_response(code, body),
        },
        _ => json_response(code, body),
    }
}

/// How much of an oversize body is read and thrown away before answering 413: a client
/// still sending when the server stops reading gets a broken pipe instead of the Status.
const DRAIN_MAX: usize = 16 * 1024 * 1024;

/// Reads a request body up to the limit: over it is a 413, answered once the rest of the
/// body (up to `DRAIN_MAX` more) has been read, so the client can hear it.
pub async fn read_body(mut body: Body) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > MAX_BODY + DRAIN_MAX {
            break;
        }
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::too_large(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// Parses a JSON or YAML body into a JSON value.
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the request body is empty: send the object as JSON or YAML",
        ));
    }
    if content_type.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the YAML body is not valid UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))
    } else if content_type.starts_with(skiff_k8sproto::CONTENT_TYPE) {
        // Typed Go clients (kubectl create/expose/autoscale, controllers) send
        // protobuf; it is decoded into the JSON a JSON client would have sent.
        skiff_k8sproto::decode_body(body)
            .map_err(|e| ApiError::bad_request(format!("decoding the protobuf request body: {e}")))
    } else if content_type.starts_with("application/json")
        || content_type.contains("+json")
        || content_type.starts_with("*/*")
    {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    } else {
        Err(ApiError::unsupported_media_type(content_type))
    }
}

/// Query parameters as a map (last value wins), percent-decoded.
pub fn query_map(query: &str) -> std::collections::HashMap<String, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = query_map("labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&x=%zz");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "%zz");
    }

    #[test]
    fn negotiation_prefers_tables_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            ),
        );
        assert_eq!(negotiate(&h), Format::Table);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/yaml"));
        assert_eq!(negotiate(&h), Format::Yaml);
        assert_eq!(negotiate(&HeaderMap::new()), Format::Json);
    }

    #[test]
    fn bodies_parse_or_explain() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_body(&h, b"{\"a\":1}").unwrap()["a"], 1);
        assert_eq!(parse_body(&h, b"{nope").unwrap_err().code, 400);
        assert_eq!(parse_body(&h, b"  ").unwrap_err().code, 400);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        assert_eq!(parse_body(&h, b"a: 1\nb: [x]\n").unwrap()["b"][0], "x");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf"),
        );
        assert_eq!(parse_body(&h, b"x").unwrap_err().code, 400);
    }
}
