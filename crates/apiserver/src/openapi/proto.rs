//! The protobuf form of the Swagger 2.0 document (gnostic's `openapi.v2.Document`), which
//! kubectl asks for (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and
//! decodes without looking at the content type: `explain --output plaintext-openapiv2`,
//! and validation or `apply` when the v3 documents cannot be used.
//!
//! Only the parts of the message the JSON document uses are encoded; field numbers are
//! gnostic's. Vendor extensions travel as `Any.yaml` (JSON is YAML), as upstream's do.

use serde_json::{Map, Value};

/// A protobuf message under construction.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A string field; empty strings are proto3 defaults and are not written.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn string_of(&mut self, field: u32, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            self.string(field, s);
        }
    }

    /// Every string of a JSON array (or a lone string) as a repeated field.
    fn strings(&mut self, field: u32, v: Option<&Value>) {
        match v {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .for_each(|s| self.bytes(field, s.as_bytes())),
            Some(Value::String(s)) => self.bytes(field, s.as_bytes()),
            _ => {}
        }
    }

    fn boolean(&mut self, field: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64) {
            self.key(field, 0);
            self.varint(n as u64);
        }
    }

    fn double(&mut self, field: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_f64) {
            self.key(field, 1);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    /// A sub-message, written even when empty (its presence can matter).
    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// `Any{yaml}`.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(2, &serde_json::to_string(v).unwrap_or_default());
    m
}

/// `NamedAny` entries for the `x-` members of an object.
fn extensions(m: &mut Msg, field: u32, obj: &Map<String, Value>) {
    for (name, value) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.string(1, name);
        named.msg(2, any(value));
        m.msg(field, named);
    }
}

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(s) = v.as_object() else {
        return m;
    };
    m.string_of(1, s.get("$ref"));
    m.string_of(2, s.get("format"));
    m.string_of(3, s.get("title"));
    m.string_of(4, s.get("description"));
    if let Some(d) = s.get("default") {
        m.msg(5, any(d));
    }
    m.double(6, s.get("multipleOf"));
    m.double(7, s.get("maximum"));
    m.boolean(8, s.get("exclusiveMaximum"));
    m.double(9, s.get("minimum"));
    m.boolean(10, s.get("exclusiveMinimum"));
    m.int64(11, s.get("maxLength"));
    m.int64(12, s.get("minLength"));
    m.string_of(13, s.get("pattern"));
    m.int64(14, s.get("maxItems"));
    m.int64(15, s.get("minItems"));
    m.boolean(16, s.get("uniqueItems"));
    m.int64(17, s.get("maxProperties"));
    m.int64(18, s.get("minProperties"));
    m.strings(19, s.get("required"));
    if let Some(Value::Array(values)) = s.get("enum") {
        values.iter().for_each(|e| m.msg(20, any(e)));
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Msg::default();
            item.key(2, 0);
            item.varint(u64::from(*b));
            m.msg(21, item);
        }
        Some(sub @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.msg(1, schema(sub));
            m.msg(21, item);
        }
        _ => {}
    }
    if s.contains_key("type") {
        let mut ty = Msg::default();
        ty.strings(1, s.get("type"));
        m.msg(22, ty);
    }
    match s.get("items") {
        Some(Value::Array(items)) => {
            let mut it = Msg::default();
            items.iter().for_each(|i| it.msg(1, schema(i)));
            m.msg(23, it);
        }
        Some(item @ Value::Object(_)) => {
            let mut it = Msg::default();
            it.msg(1, schema(item));
            m.msg(23, it);
        }
        _ => {}
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        all.iter().for_each(|a| m.msg(24, schema(a)));
    }
    if let Some(Value::Object(props)) = s.get("properties") {
        let mut p = Msg::default();
        for (name, value) in props {
            let mut named = Msg::default();
            named.string(1, name);
            named.msg(2, schema(value));
            p.msg(1, named);
        }
        m.msg(25, p);
    }
    m.boolean(27, s.get("readOnly"));
    if let Some(e) = s.get("example") {
        m.msg(30, any(e));
    }
    extensions(&mut m, 31, s);
    m
}

/// A `ParametersItem`: body, query or path parameter.
fn parameter(p: &Value) -> Msg {
    let o = obj(p);
    let mut param = Msg::default();
    if o.get("in").and_then(Value::as_str) == Some("body") {
        let mut body = Msg::default();
        body.string_of(1, o.get("description"));
        body.string_of(2, o.get("name"));
        body.string_of(3, o.get("in"));
        body.boolean(4, o.get("required"));
        if let Some(s) = o.get("schema") {
            body.msg(5, schema(s));
        }
        extensions(&mut body, 6, &o);
        param.msg(1, body);
    } else {
        let path = o.get("in").and_then(Value::as_str) == Some("path");
        let mut sub = Msg::default();
        sub.boolean(1, o.get("required"));
        sub.string_of(2, o.get("in"));
        sub.string_of(3, o.get("description"));
        sub.string_of(4, o.get("name"));
        if path {
            sub.string_of(5, o.get("type"));
            sub.boolean(19, o.get("uniqueItems"));
            extensions(&mut sub, 22, &o);
        } else {
            sub.string_of(6, o.get("type"));
            sub.boolean(20, o.get("uniqueItems"));
            extensions(&mut sub, 23, &o);
        }
        let mut non_body = Msg::default();
        non_body.msg(if path { 4 } else { 3 }, sub);
        param.msg(2, non_body);
    }
    let mut item = Msg::default();
    item.msg(1, param);
    item
}

fn operation(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    m.strings(1, o.get("tags"));
    m.string_of(3, o.get("description"));
    m.string_of(5, o.get("operationId"));
    m.strings(6, o.get("produces"));
    m.strings(7, o.get("consumes"));
    if let Some(Value::Array(params)) = o.get("parameters") {
        params.iter().for_each(|p| m.msg(8, parameter(p)));
    }
    let mut responses = Msg::default();
    for (code, r) in obj(o.get("responses").unwrap_or(&Value::Null)) {
        let mut response = Msg::default();
        response.string_of(1, r.get("description"));
        if let Some(s) = r.get("schema") {
            let mut item = Msg::default();
            item.msg(1, schema(s));
            response.msg(2, item);
        }
        let mut value = Msg::default();
        value.msg(1, response);
        let mut named = Msg::default();
        named.string(1, &code);
        named.msg(2, value);
        responses.msg(1, named);
    }
    m.msg(9, responses);
    m.strings(10, o.get("schemes"));
    extensions(&mut m, 13, &o);
    m
}

fn path_item(v: &Value) -> Msg {
    let o = obj(v);
    let mut m = Msg::default();
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = o.get(method) {
            m.msg(field, operation(op));
        }
    }
    if let Some(Value::Array(params)) = o.get("parameters") {
        params.iter().for_each(|p| m.msg(9, parameter(p)));
    }
    extensions(&mut m, 10, &o);
    m
}

/// Encodes a Swagger 2.0 JSON document as gnostic's `openapi.v2.Document`.
pub fn document(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string_of(1, doc.get("swagger"));
    if let Some(info) = doc.get("info") {
        let mut i = Msg::default();
        i.string_of(1, info.get("title"));
        i.string_of(2, info.get("version"));
        m.msg(2, i);
    }
    let mut paths = Msg::default();
    for (path, item) in obj(doc.get("paths").unwrap_or(&Value::Null)) {
        let mut named = Msg::default();
        named.string(1, &path);
        named.msg(2, path_item(&item));
        paths.msg(2, named);
    }
    m.msg(8, paths);
    let mut defs = Msg::default();
    for (name, s) in obj(doc.get("definitions").unwrap_or(&Value::Null)) {
        let mut named = Msg::default();
        named.string(1, &name);
        named.msg(2, schema(&s));
        defs.msg(1, named);
    }
    m.msg(9, defs);
    if let Some(Value::Array(reqs)) = doc.get("security") {
        for req in reqs {
            let mut r = Msg::default();
            for (name, scopes) in obj(req) {
                let mut arr = Msg::default();
                arr.strings(1, Some(&scopes));
                let mut named = Msg::default();
                named.string(1, &name);
                named.msg(2, arr);
                r.msg(1, named);
            }
            m.msg(12, r);
        }
    }
    if let Some(Value::Object(sec)) = doc.get("securityDefinitions") {
        let mut defs = Msg::default();
        for (name, s) in sec {
            let mut key = Msg::default();
            key.string_of(1, s.get("type"));
            key.string_of(2, s.get("name"));
            key.string_of(3, s.get("in"));
            key.string_of(4, s.get("description"));
            let mut item = Msg::default();
            item.msg(2, key);
            let mut named = Msg::default();
            named.string(1, name);
            named.msg(2, item);
            defs.msg(1, named);
        }
        m.msg(13, defs);
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_fields_encode_as_protobuf() {
        let mut m = Msg::default();
        m.varint(300);
        assert_eq!(m.0, [0xAC, 0x02]);
        let mut m = Msg::default();
        m.string(1, "2.0");
        m.string(2, "");
        assert_eq!(m.0, [0x0A, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn a_schema_keeps_its_reference_type_and_extensions() {
        let s = json!({
            "description": "d",
            "type": "array",
            "items": {"$ref": "#/definitions/x.Y"},
            "x-kubernetes-patch-merge-key": "name",
        });
        let bytes = schema(&s).0;
        // description (4), type (22) holding "array", items (23) holding the $ref (1).
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("#/definitions/x.Y"));
        assert!(text.contains("x-kubernetes-patch-merge-key"));
        assert!(text.contains("\"name\""));
        assert_eq!(&bytes[..3], &[4 << 3 | 2, 1, b'd']);
    }
}
