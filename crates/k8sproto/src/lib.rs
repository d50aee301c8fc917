//! Kubernetes protobuf request bodies → the JSON a JSON client would have sent.
//!
//! A body of type `application/vnd.kubernetes.protobuf` is the 4-byte prefix
//! `k8s\0` followed by a `runtime.Unknown` message: `typeMeta` (field 1, with
//! `apiVersion` = 1 and `kind` = 2), `raw` (field 2: the object's own protobuf
//! encoding), `contentEncoding` (3) and `contentType` (4). [`decode_body`] reads
//! the envelope, picks the message for (apiVersion, kind) and decodes `raw` with
//! the wire schema that `build.rs` generated from the `k8s-pb` crate's sources.
//!
//! The JSON follows the API's JSON conventions, not protobuf's: `metav1.Time` is
//! an RFC 3339 string with seconds (`MicroTime` with microseconds), Quantity a
//! string, IntOrString a number or a string, RawExtension/FieldsV1/JSON the
//! embedded JSON document, `[]byte` base64, Duration Go's duration text. Go
//! marshals every non-pointer scalar, so the wire cannot tell an empty string
//! from an unset one; as the API treats both alike and JSON clients omit them,
//! empty strings are dropped (except the few pointer fields where `""` means
//! something, such as `storageClassName`). Zero numbers and `false` are kept (a
//! `replicas: 0` must stay 0), except the non-pointer `omitempty` integers
//! where 0 means unset (`nodePort`, probe periods, `generation`, ...). A zero
//! `metav1.Time` (Go's zero time) is omitted.
//!
//! Pure: no IO, no panics on any input, recursion bounded by [`MAX_DEPTH`].

use base64::Engine as _;
use serde_json::{Map, Number, Value};

mod schema {
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Kind {
        String,
        Int32,
        Int64,
        Bool,
        Bytes,
        Double,
        /// Index into [`MESSAGES`].
        Message(usize),
        /// `map<string, V>`.
        Map(&'static Kind),
    }

    /// Messages whose JSON form is not a plain object.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Special {
        None,
        Time,
        MicroTime,
        Duration,
        RawJson,
        StringList,
        Quantity,
        IntOrString,
        SchemaOrArray,
        SchemaOrBool,
        SchemaOrStringArray,
    }

    #[derive(Debug)]
    pub(crate) struct Field {
        pub(crate) tag: u32,
        pub(crate) json: &'static str,
        pub(crate) kind: Kind,
        pub(crate) repeated: bool,
        /// A Go struct embedded with `json:",inline"`.
        pub(crate) inline: bool,
        /// A non-pointer `omitempty` integer: 0 is left out, as JSON does.
        pub(crate) omit_zero: bool,
    }

    #[derive(Debug)]
    pub(crate) struct Message {
        pub(crate) name: &'static str,
        pub(crate) special: Special,
        /// Sorted by tag.
        pub(crate) fields: &'static [Field],
    }

    include!(concat!(env!("OUT_DIR"), "/schema.rs"));
}

use schema::{Field, Kind, Message, Special, MESSAGES, RESOURCES};

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// How deeply messages (and embedded envelopes) may nest.
pub const MAX_DEPTH: usize = 100;

/// Seconds of Go's zero `time.Time` (year 1) since the Unix epoch: what Go
/// writes for an unset, non-pointer `metav1.Time`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// String fields that are Go pointers, where `""` differs from unset.
const KEEP_EMPTY: &[&str] = &["storageClassName", "volumeAttributesClassName"];

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Kubernetes protobuf body: it must start with the 4 bytes \"k8s\\x00\"")]
    BadMagic,
    #[error("malformed protobuf at {path}: {what}")]
    Malformed { path: String, what: String },
    #[error("the protobuf envelope names no kind (apiVersion {api_version:?})")]
    MissingKind { api_version: String },
    #[error("no protobuf schema for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf messages nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("unsupported contentEncoding {0:?} in the protobuf envelope")]
    UnsupportedEncoding(String),
    #[error("unsupported contentType {0:?} in the protobuf envelope")]
    UnsupportedContentType(String),
}

impl DecodeError {
    fn malformed(what: impl Into<String>) -> Self {
        DecodeError::Malformed {
            path: String::new(),
            what: what.into(),
        }
    }

    /// Prefixes the location of a malformed-input error with `segment`.
    fn within(self, segment: &str) -> Self {
        match self {
            DecodeError::Malformed { path, what } => DecodeError::Malformed {
                path: if path.is_empty() {
                    segment.to_string()
                } else if path.starts_with('[') {
                    format!("{segment}{path}")
                } else {
                    format!("{segment}.{path}")
                },
                what,
            },
            other => other,
        }
    }
}

/// Decodes a whole `application/vnd.kubernetes.protobuf` body (prefix and
/// `runtime.Unknown` envelope) into the object's JSON, with `apiVersion` and
/// `kind` set from the envelope.
pub fn decode_body(bytes: &[u8]) -> Result<Value, DecodeError> {
    decode_envelope(bytes, 0)
}

/// Decodes the protobuf encoding of one object of the given apiVersion and
/// kind (the envelope's `raw`), without setting `apiVersion`/`kind`.
pub fn decode_object(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, DecodeError> {
    let msg = message_for(api_version, kind)?;
    decode_message(msg, raw, 1)
}

/// Whether (apiVersion, kind) has a protobuf schema.
pub fn knows(api_version: &str, kind: &str) -> bool {
    message_for(api_version, kind).is_ok()
}

fn decode_envelope(bytes: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let body = bytes.strip_prefix(MAGIC).ok_or(DecodeError::BadMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut encoding = String::new();
    let mut content_type = String::new();
    let mut r = Reader::new(body);
    while !r.done() {
        let (tag, wire) = r.key().map_err(|e| e.within("envelope"))?;
        match (tag, wire) {
            (1, WIRE_LEN) => {
                let tm = r
                    .len_delimited()
                    .map_err(|e| e.within("envelope.typeMeta"))?;
                let mut t = Reader::new(tm);
                while !t.done() {
                    let (tag, wire) = t.key().map_err(|e| e.within("envelope.typeMeta"))?;
                    match (tag, wire) {
                        (1, WIRE_LEN) => {
                            api_version = t.string().map_err(|e| e.within("envelope.apiVersion"))?
                        }
                        (2, WIRE_LEN) => {
                            kind = t.string().map_err(|e| e.within("envelope.kind"))?
                        }
                        (1 | 2, _) => {
                            return Err(DecodeError::malformed(format!(
                                "wire type {wire} for a string"
                            ))
                            .within("envelope.typeMeta"))
                        }
                        _ => t.skip(wire).map_err(|e| e.within("envelope.typeMeta"))?,
                    }
                }
            }
            (2, WIRE_LEN) => raw = r.len_delimited().map_err(|e| e.within("envelope.raw"))?,
            (3, WIRE_LEN) => {
                encoding = r
                    .string()
                    .map_err(|e| e.within("envelope.contentEncoding"))?
            }
            (4, WIRE_LEN) => {
                content_type = r.string().map_err(|e| e.within("envelope.contentType"))?
            }
            (1..=4, _) => {
                return Err(DecodeError::malformed(format!(
                    "field {tag} has wire type {wire}, expected length-delimited"
                ))
                .within("envelope"))
            }
            _ => r.skip(wire).map_err(|e| e.within("envelope"))?,
        }
    }
    if !encoding.is_empty() {
        return Err(DecodeError::UnsupportedEncoding(encoding));
    }
    if kind.is_empty() {
        return Err(DecodeError::MissingKind { api_version });
    }
    let mut value = match content_type.as_str() {
        "" | CONTENT_TYPE => {
            let msg = message_for(&api_version, &kind)?;
            decode_message(msg, raw, depth + 1)?
        }
        ct if ct.starts_with("application/json") => serde_json::from_slice(raw).map_err(|e| {
            DecodeError::malformed(format!("raw is not JSON: {e}")).within("envelope")
        })?,
        other => return Err(DecodeError::UnsupportedContentType(other.to_string())),
    };
    if let Value::Object(map) = &mut value {
        if !api_version.is_empty() {
            map.insert("apiVersion".into(), Value::String(api_version));
        }
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(value)
}

/// API groups whose k8s-pb module is not `api.<first label of the group>`.
const GROUP_MODULES: &[(&str, &str)] = &[
    ("", "api.core"),
    (
        "apiextensions.k8s.io",
        "apiextensions_apiserver.pkg.apis.apiextensions",
    ),
    (
        "apiregistration.k8s.io",
        "kube_aggregator.pkg.apis.apiregistration",
    ),
    ("custom.metrics.k8s.io", "metrics.pkg.apis.custom_metrics"),
    (
        "external.metrics.k8s.io",
        "metrics.pkg.apis.external_metrics",
    ),
    ("internal.apiserver.k8s.io", "api.apiserverinternal"),
    ("meta.k8s.io", "apimachinery.pkg.apis.meta"),
    ("metrics.k8s.io", "metrics.pkg.apis.metrics"),
];

/// The message for (apiVersion, kind): a resource k8s-pb declares, else the
/// kind in the group's module at that version (compared ignoring case, as
/// prost renamed `CSIDriver` to `CsiDriver`), else a `meta/v1` kind (such as
/// DeleteOptions, which every group version registers).
fn message_for(api_version: &str, kind: &str) -> Result<&'static Message, DecodeError> {
    if let Ok(i) = RESOURCES.binary_search_by(|(a, k, _)| (*a, *k).cmp(&(api_version, kind))) {
        return Ok(&MESSAGES[RESOURCES[i].2]);
    }
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let module = GROUP_MODULES
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, m)| (*m).to_string())
        .unwrap_or_else(|| format!("api.{}", group.split('.').next().unwrap_or("")));
    let unknown = || DecodeError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    };
    if version.is_empty() || kind.is_empty() {
        return Err(unknown());
    }
    find_kind(&format!("{module}.{version}."), kind)
        .or_else(|| find_kind("apimachinery.pkg.apis.meta.v1.", kind))
        .ok_or_else(unknown)
}

/// The plain (not special) message `prefix` + `kind`, ignoring ASCII case.
fn find_kind(prefix: &str, kind: &str) -> Option<&'static Message> {
    let start = MESSAGES.partition_point(|m| m.name < prefix);
    MESSAGES[start..]
        .iter()
        .take_while(|m| m.name.starts_with(prefix))
        .find(|m| {
            let short = &m.name[prefix.len()..];
            !short.contains('.') && short.eq_ignore_ascii_case(kind)
        })
        .filter(|m| m.special == Special::None)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::malformed("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(DecodeError::malformed("varint longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::malformed("varint longer than 10 bytes"))
    }

    fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let wire = (k & 7) as u8;
        let tag = k >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(DecodeError::malformed(format!(
                "invalid field number {tag}"
            )));
        }
        Ok((tag as u32, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                DecodeError::malformed(format!(
                    "truncated: {n} bytes announced, {} left",
                    self.buf.len() - self.pos.min(self.buf.len())
                ))
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::malformed("length overflows"))?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.len_delimited()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::malformed("string is not valid UTF-8"))
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            WIRE_VARINT => self.varint().map(|_| ()),
            WIRE_FIXED64 => self.take(8).map(|_| ()),
            WIRE_LEN => self.len_delimited().map(|_| ()),
            WIRE_FIXED32 => self.take(4).map(|_| ()),
            other => Err(DecodeError::malformed(format!(
                "unsupported wire type {other} (groups are not used by Kubernetes)"
            ))),
        }
    }
}

fn wire_name(wire: u8) -> &'static str {
    match wire {
        WIRE_VARINT => "varint",
        WIRE_FIXED64 => "fixed64",
        WIRE_LEN => "length-delimited",
        WIRE_FIXED32 => "fixed32",
        _ => "invalid",
    }
}

/// Decodes one message. `None` for a value JSON would leave out (a zero Time,
/// an empty RawExtension).
fn decode_message(msg: &Message, bytes: &[u8], depth: usize) -> Result<Value, DecodeError> {
    Ok(decode_message_opt(msg, bytes, depth)?.unwrap_or(Value::Null))
}

fn decode_message_opt(
    msg: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    match msg.special {
        Special::None => decode_object_fields(msg, bytes, depth).map(|m| Some(Value::Object(m))),
        Special::Time | Special::MicroTime => {
            let (mut seconds, mut nanos) = (0i64, 0i32);
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_VARINT) => seconds = r.varint()? as i64,
                    (2, WIRE_VARINT) => nanos = r.varint()? as i64 as i32,
                    (t @ (1 | 2), w) => return Err(wire_mismatch(t, w, "varint")),
                    (_, w) => r.skip(w)?,
                }
            }
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                return Ok(None);
            }
            rfc3339(seconds, nanos, msg.special == Special::MicroTime)
                .map(|s| Some(Value::String(s)))
        }
        Special::Duration => {
            let mut nanos = 0i64;
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_VARINT) => nanos = r.varint()? as i64,
                    (1, w) => return Err(wire_mismatch(1, w, "varint")),
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(Some(Value::String(go_duration(nanos))))
        }
        Special::RawJson => {
            let mut raw: &[u8] = &[];
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_LEN) => raw = r.len_delimited()?,
                    (1, w) => return Err(wire_mismatch(1, w, "length-delimited")),
                    (_, w) => r.skip(w)?,
                }
            }
            if raw.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            if raw.starts_with(MAGIC) {
                return decode_envelope(raw, depth + 1).map(Some);
            }
            serde_json::from_slice(raw)
                .map(Some)
                .map_err(|e| DecodeError::malformed(format!("embedded object is not JSON: {e}")))
        }
        Special::StringList => {
            let mut items = Vec::new();
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_LEN) => items.push(Value::String(r.string()?)),
                    (1, w) => return Err(wire_mismatch(1, w, "length-delimited")),
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(Some(Value::Array(items)))
        }
        Special::Quantity => {
            let mut s = String::new();
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_LEN) => s = r.string()?,
                    (1, w) => return Err(wire_mismatch(1, w, "length-delimited")),
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(Some(Value::String(s)))
        }
        Special::IntOrString => {
            let (mut ty, mut int, mut s) = (0i64, 0i32, String::new());
            let mut r = Reader::new(bytes);
            while !r.done() {
                match r.key()? {
                    (1, WIRE_VARINT) => ty = r.varint()? as i64,
                    (2, WIRE_VARINT) => int = r.varint()? as i64 as i32,
                    (3, WIRE_LEN) => s = r.string()?,
                    (t @ (1 | 2), w) => return Err(wire_mismatch(t, w, "varint")),
                    (3, w) => return Err(wire_mismatch(3, w, "length-delimited")),
                    (_, w) => r.skip(w)?,
                }
            }
            Ok(Some(if ty == 1 {
                Value::String(s)
            } else {
                Value::Number(int.into())
            }))
        }
        Special::SchemaOrArray => {
            let mut m = decode_object_fields(msg, bytes, depth)?;
            Ok(match m.remove("JSONSchemas") {
                Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a)),
                _ => m.remove("schema"),
            })
        }
        Special::SchemaOrBool => {
            let mut m = decode_object_fields(msg, bytes, depth)?;
            Ok(match m.remove("schema") {
                Some(schema) => Some(schema),
                None => Some(Value::Bool(m.remove("allows") == Some(Value::Bool(true)))),
            })
        }
        Special::SchemaOrStringArray => {
            let mut m = decode_object_fields(msg, bytes, depth)?;
            Ok(match m.remove("property") {
                Some(Value::Array(a)) if !a.is_empty() => Some(Value::Array(a)),
                _ => m.remove("schema"),
            })
        }
    }
}

fn wire_mismatch(tag: u32, wire: u8, expected: &str) -> DecodeError {
    DecodeError::malformed(format!(
        "field {tag} has wire type {}, expected {expected}",
        wire_name(wire)
    ))
}

fn decode_object_fields(
    msg: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wire) = r.key()?;
        let Ok(i) = msg.fields.binary_search_by_key(&tag, |f| f.tag) else {
            r.skip(wire)?;
            continue;
        };
        let field = &msg.fields[i];
        decode_field(field, wire, &mut r, &mut out, depth).map_err(|e| e.within(field.json))?;
    }
    Ok(out)
}

fn decode_field(
    field: &Field,
    wire: u8,
    r: &mut Reader<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), DecodeError> {
    if let Kind::Map(value_kind) = field.kind {
        if wire != WIRE_LEN {
            return Err(wire_mismatch(field.tag, wire, "length-delimited"));
        }
        let entry = r.len_delimited()?;
        let (key, value) = decode_map_entry(value_kind, entry, depth)?;
        let slot = out
            .entry(field.json)
            .or_insert_with(|| Value::Object(Map::new()));
        if let (Value::Object(map), Some(value)) = (slot, value) {
            map.insert(key, value);
        }
        return Ok(());
    }
    let scalar_wire = match field.kind {
        Kind::Int32 | Kind::Int64 | Kind::Bool => Some(WIRE_VARINT),
        Kind::Double => Some(WIRE_FIXED64),
        _ => None,
    };
    // Packed repeated scalars (accepted although Kubernetes never packs).
    if let (true, Some(_), WIRE_LEN) = (field.repeated, scalar_wire, wire) {
        let packed = r.len_delimited()?;
        let mut p = Reader::new(packed);
        let mut items = Vec::new();
        while !p.done() {
            items.push(scalar(field.kind, &mut p)?);
        }
        push_all(out, field.json, items);
        return Ok(());
    }
    let expected = scalar_wire.unwrap_or(WIRE_LEN);
    if wire != expected {
        return Err(wire_mismatch(field.tag, wire, wire_name(expected)));
    }
    let value = match field.kind {
        Kind::Message(idx) => {
            let msg = MESSAGES
                .get(idx)
                .ok_or_else(|| DecodeError::malformed("schema index out of range"))?;
            let bytes = r.len_delimited()?;
            if field.inline && !field.repeated {
                if let Some(Value::Object(inner)) = decode_message_opt(msg, bytes, depth + 1)? {
                    out.extend(inner);
                }
                return Ok(());
            }
            match decode_message_opt(msg, bytes, depth + 1)? {
                Some(v) => v,
                None if field.repeated => Value::Null,
                None => {
                    out.remove(field.json);
                    return Ok(());
                }
            }
        }
        Kind::String => {
            let s = r.string()?;
            if s.is_empty() && !field.repeated && !KEEP_EMPTY.contains(&field.json) {
                out.remove(field.json);
                return Ok(());
            }
            Value::String(s)
        }
        Kind::Bytes => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(r.len_delimited()?))
        }
        _ => {
            let v = scalar(field.kind, r)?;
            if field.omit_zero && !field.repeated && v.as_i64() == Some(0) {
                out.remove(field.json);
                return Ok(());
            }
            v
        }
    };
    if field.repeated {
        push_all(out, field.json, vec![value]);
    } else {
        out.insert(field.json.to_string(), value);
    }
    Ok(())
}

fn push_all(out: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    match out.get_mut(key) {
        Some(Value::Array(a)) => a.extend(items),
        _ => {
            out.insert(key.to_string(), Value::Array(items));
        }
    }
}

fn scalar(kind: Kind, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match kind {
        Kind::Int32 => Value::Number((r.varint()? as i64 as i32).into()),
        Kind::Int64 => Value::Number((r.varint()? as i64).into()),
        Kind::Bool => Value::Bool(r.varint()? != 0),
        Kind::Double => {
            let f = f64::from_bits(r.fixed64()?);
            Value::Number(Number::from_f64(f).ok_or_else(|| {
                DecodeError::malformed(format!("{f} cannot be represented in JSON"))
            })?)
        }
        _ => return Err(DecodeError::malformed("not a scalar field")),
    })
}

fn decode_map_entry(
    value_kind: &Kind,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Option<Value>), DecodeError> {
    let mut key = String::new();
    // An entry without a value holds the value type's zero.
    let mut value = match value_kind {
        Kind::String | Kind::Bytes => Some(Value::String(String::new())),
        Kind::Message(idx) => {
            let msg = MESSAGES
                .get(*idx)
                .ok_or_else(|| DecodeError::malformed("schema index out of range"))?;
            decode_message_opt(msg, &[], depth + 1)?
        }
        Kind::Int32 | Kind::Int64 => Some(Value::Number(0.into())),
        Kind::Bool => Some(Value::Bool(false)),
        Kind::Double => Some(Value::Number(0.into())),
        Kind::Map(_) => return Err(DecodeError::malformed("nested map in schema")),
    };
    let mut r = Reader::new(entry);
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 if wire == WIRE_LEN => key = r.string()?,
            1 => return Err(wire_mismatch(1, wire, "length-delimited")),
            2 => {
                value = match value_kind {
                    Kind::String if wire == WIRE_LEN => Some(Value::String(r.string()?)),
                    Kind::Bytes if wire == WIRE_LEN => Some(Value::String(
                        base64::engine::general_purpose::STANDARD.encode(r.len_delimited()?),
                    )),
                    Kind::Message(idx) if wire == WIRE_LEN => {
                        let msg = MESSAGES
                            .get(*idx)
                            .ok_or_else(|| DecodeError::malformed("schema index out of range"))?;
                        let bytes = r.len_delimited()?;
                        decode_message_opt(msg, bytes, depth + 1)
                            .map_err(|e| e.within(&format!("[{key:?}]")))?
                    }
                    Kind::Int32 | Kind::Int64 | Kind::Bool if wire == WIRE_VARINT => {
                        Some(scalar(*value_kind, &mut r)?)
                    }
                    Kind::Double if wire == WIRE_FIXED64 => Some(scalar(*value_kind, &mut r)?),
                    _ => {
                        return Err(DecodeError::malformed(format!(
                            "map value has wire type {}",
                            wire_name(wire)
                        )))
                    }
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

/// `seconds`/`nanos` since the epoch as RFC 3339 in UTC, as `metav1.Time`
/// (seconds) or `metav1.MicroTime` (microseconds) marshal to JSON.
fn rfc3339(seconds: i64, nanos: i32, micro: bool) -> Result<String, DecodeError> {
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(DecodeError::malformed(format!(
            "nanos {nanos} out of range"
        )));
    }
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(DecodeError::malformed(format!(
            "time {seconds}s is outside the years 0-9999 RFC 3339 can write"
        )));
    }
    let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
    Ok(if micro {
        format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:06}Z",
            nanos / 1000
        )
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    })
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Nanoseconds as Go's `time.Duration.String()` writes them: "1h2m3.5s",
/// "1.5ms", "0s".
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    // Fractional part without trailing zeros.
    let frac = |v: u64, digits: u32| -> String {
        let s = format!("{v:0width$}", width = digits as usize);
        let t = s.trim_end_matches('0');
        if t.is_empty() {
            String::new()
        } else {
            format!(".{t}")
        }
    };
    if u < 1_000_000_000 {
        let (unit, div, digits) = if u < 1_000 {
            ("ns", 1, 0)
        } else if u < 1_000_000 {
            ("µs", 1_000, 3)
        } else {
            ("ms", 1_000_000, 6)
        };
        out.push_str(&(u / div).to_string());
        if digits > 0 {
            out.push_str(&frac(u % div, digits));
        }
        out.push_str(unit);
        return out;
    }
    let secs = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}{}s", frac(sub, 9)));
    out
}

#[cfg(test)]
mod tests;
