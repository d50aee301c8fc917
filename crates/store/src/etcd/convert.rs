//! Mapping between Skiff's store types and etcd-client's, and the one place where etcd's
//! errors become [`StoreError`]s.

use bytes::Bytes;
use etcd_client as ec;

use crate::{
    Compare, CompareOp, CompareTarget, KeyValue, StoreError, Txn, TxnOp, TxnOpResult, TxnResponse,
};

pub(crate) fn key_value(kv: &ec::KeyValue) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(kv.key()),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

/// etcd rejects an empty key, even as the start of a range; `[0]` is the smallest key there is,
/// so `("", end)` and `([0], end)` cover the same keys.
pub(crate) fn range_start(key: &[u8], range_end: &[u8]) -> Vec<u8> {
    if key.is_empty() && !range_end.is_empty() {
        vec![0]
    } else {
        key.to_vec()
    }
}

fn compare_op(op: CompareOp) -> ec::CompareOp {
    match op {
        CompareOp::Equal => ec::CompareOp::Equal,
        CompareOp::NotEqual => ec::CompareOp::NotEqual,
        CompareOp::Greater => ec::CompareOp::Greater,
        CompareOp::Less => ec::CompareOp::Less,
    }
}

pub(crate) fn compare(c: &Compare) -> ec::Compare {
    let key = c.key.clone();
    let op = compare_op(c.op);
    match &c.target {
        CompareTarget::ModRevision(rev) => ec::Compare::mod_revision(key, op, *rev),
        CompareTarget::CreateRevision(rev) => ec::Compare::create_revision(key, op, *rev),
        CompareTarget::Version(v) => ec::Compare::version(key, op, *v),
        CompareTarget::Value(v) => ec::Compare::value(key, op, v.to_vec()),
        CompareTarget::Lease(id) => ec::Compare::lease(key, op, *id),
    }
}

/// Every write asks for the previous version, so results can report what was replaced.
pub(crate) fn txn_op(op: &TxnOp) -> ec::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => ec::TxnOp::put(
            key.clone(),
            value.to_vec(),
            Some(ec::PutOptions::new().with_lease(*lease).with_prev_key()),
        ),
        TxnOp::Delete { key } => {
            ec::TxnOp::delete(key.clone(), Some(ec::DeleteOptions::new().with_prev_key()))
        }
        TxnOp::Get { key } => ec::TxnOp::get(key.clone(), None),
    }
}

pub(crate) fn txn(t: &Txn) -> ec::Txn {
    ec::Txn::new()
        .when(t.compares.iter().map(compare).collect::<Vec<_>>())
        .and_then(t.success.iter().map(txn_op).collect::<Vec<_>>())
        .or_else(t.failure.iter().map(txn_op).collect::<Vec<_>>())
}

pub(crate) fn txn_response(resp: &ec::TxnResponse) -> TxnResponse {
    let results = resp
        .op_responses()
        .iter()
        .filter_map(|r| match r {
            ec::TxnOpResponse::Put(p) => Some(TxnOpResult::Put {
                prev: p.prev_key().map(key_value),
            }),
            ec::TxnOpResponse::Delete(d) => Some(TxnOpResult::Delete {
                prev: d.prev_kvs().first().map(key_value),
            }),
            ec::TxnOpResponse::Get(g) => Some(TxnOpResult::Get {
                kv: g.kvs().first().map(key_value),
            }),
            // Skiff never sends nested transactions, so etcd never answers with one.
            ec::TxnOpResponse::Txn(_) => None,
        })
        .collect();
    TxnResponse {
        succeeded: resp.succeeded(),
        revision: resp.header().map_or(0, |h| h.revision()),
        results,
    }
}

/// The lease to name when etcd says "requested lease not found": it does not say which, so
/// take the first one the transaction attaches.
pub(crate) fn first_lease(t: &Txn) -> i64 {
    t.success
        .iter()
        .chain(&t.failure)
        .find_map(|op| match op {
            TxnOp::Put { lease, .. } if *lease != 0 => Some(*lease),
            _ => None,
        })
        .unwrap_or(0)
}

/// What a failed call was about, so the error can name it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ErrorContext {
    /// The revision asked for (range, compact, watch).
    pub revision: i64,
    /// The lease involved (grant/keep-alive/revoke, or a put's lease).
    pub lease: i64,
}

impl ErrorContext {
    pub fn revision(revision: i64) -> Self {
        Self { revision, lease: 0 }
    }

    pub fn lease(lease: i64) -> Self {
        Self { revision: 0, lease }
    }
}

/// etcd's error strings (`rpctypes` in etcd's server), matched by substring because the
/// gRPC status carries only the code and this text.
const COMPACTED: &str = "required revision has been compacted";
const FUTURE_REV: &str = "required revision is a future revision";
const LEASE_NOT_FOUND: &str = "requested lease not found";
const DUPLICATE_KEY: &str = "duplicate key given in txn request";
const TOO_LARGE: &str = "request is too large";
/// Failures of the cluster rather than of the request: worth retrying elsewhere or later.
const TRANSIENT: [&str; 7] = [
    "no leader",
    "leader changed",
    "request timed out",
    "too many requests",
    "not capable",
    "server stopped",
    "raft: stopped",
];

/// Turns an etcd-client error into the store's error, naming `ctx`'s revision or lease.
/// `FutureRevision::current` is left 0; callers that can learn it fill it in.
pub(crate) fn error(err: ec::Error, ctx: ErrorContext) -> StoreError {
    match &err {
        ec::Error::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains(COMPACTED) {
                StoreError::Compacted {
                    revision: ctx.revision,
                    compact_revision: 0,
                }
            } else if msg.contains(FUTURE_REV) {
                StoreError::FutureRevision {
                    revision: ctx.revision,
                    current: 0,
                }
            } else if msg.contains(LEASE_NOT_FOUND) {
                StoreError::LeaseNotFound(ctx.lease)
            } else if msg.contains(DUPLICATE_KEY) || msg.contains(TOO_LARGE) {
                StoreError::InvalidRequest(msg.to_string())
            } else if is_transient_status(status) {
                StoreError::Unavailable(format!("etcd: {}", detail(status)))
            } else {
                StoreError::Etcd(err)
            }
        }
        // The library reports a keep-alive answered with TTL <= 0 this way.
        ec::Error::LeaseKeepAliveError(_) => StoreError::LeaseNotFound(ctx.lease),
        ec::Error::TransportError(e) => StoreError::Unavailable(format!("etcd transport: {e}")),
        ec::Error::IoError(e) => StoreError::Unavailable(format!("etcd I/O: {e}")),
        _ => StoreError::Etcd(err),
    }
}

/// Whether the request failed while connecting to a member, so it never reached etcd and
/// even a write can be sent again without risk of applying it twice.
pub(crate) fn never_sent(err: &ec::Error) -> bool {
    match err {
        ec::Error::GRpcStatus(status) => causes(status).any(|e| e.is::<tonic::ConnectError>()),
        _ => false,
    }
}

fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// The status message plus its causes ("tcp connect error: Connection refused"), which
/// tonic keeps only in the source chain.
fn detail(status: &tonic::Status) -> String {
    let mut parts: Vec<String> = vec![status.message().to_string()];
    for cause in causes(status).skip(1) {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

fn is_transient_status(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted
    ) || TRANSIENT.iter().any(|t| status.message().contains(t))
        // The connection failed under the call (e.g. TLS 1.3 reports a refused client
        // certificate only on the first read): no gRPC answer came, so nothing etcd said.
        || causes(status).any(|e| e.is::<tonic::transport::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, msg: &str) -> ec::Error {
        ec::Error::GRpcStatus(tonic::Status::new(code, msg))
    }

    #[test]
    fn etcd_errors_become_store_errors_naming_the_request() {
        let at = |rev| ErrorContext::revision(rev);
        let cases: Vec<(ec::Error, ErrorContext, &str)> = vec![
            (
                status(
                    tonic::Code::OutOfRange,
                    "etcdserver: mvcc: required revision has been compacted",
                ),
                at(3),
                "Compacted { revision: 3, compact_revision: 0 }",
            ),
            (
                status(
                    tonic::Code::OutOfRange,
                    "etcdserver: mvcc: required revision is a future revision",
                ),
                at(99),
                "FutureRevision { revision: 99, current: 0 }",
            ),
            (
                status(
                    tonic::Code::NotFound,
                    "etcdserver: requested lease not found",
                ),
                ErrorContext::lease(42),
                "LeaseNotFound(42)",
            ),
            (
                status(
                    tonic::Code::InvalidArgument,
                    "etcdserver: duplicate key given in txn request",
                ),
                ErrorContext::default(),
                "InvalidRequest(\"etcdserver: duplicate key given in txn request\")",
            ),
            (
                status(tonic::Code::Unavailable, "etcdserver: no leader"),
                ErrorContext::default(),
                "Unavailable(",
            ),
            (
                status(tonic::Code::Unknown, "etcdserver: leader changed"),
                ErrorContext::default(),
                "Unavailable(",
            ),
            (
                ec::Error::LeaseKeepAliveError("lease not found".into()),
                ErrorContext::lease(7),
                "LeaseNotFound(7)",
            ),
            (
                status(
                    tonic::Code::PermissionDenied,
                    "etcdserver: permission denied",
                ),
                ErrorContext::default(),
                "Etcd(",
            ),
        ];
        for (err, ctx, want) in cases {
            let got = format!("{:?}", error(err, ctx));
            assert!(got.starts_with(want), "got {got}, want {want}");
        }
    }

    #[test]
    fn compares_and_ops_map_field_for_field() {
        // The converted request's Debug output shows etcd's protobuf fields; check the
        // parts that decide behaviour: target, result operator, operand, prev_kv, lease.
        let cases: Vec<(Compare, &[&str])> = vec![
            (
                Compare::mod_revision("k", CompareOp::Equal, 5),
                &["result: Equal", "target: Mod", "ModRevision(5)"],
            ),
            (
                Compare::create_revision("k", CompareOp::Greater, 2),
                &["result: Greater", "target: Create", "CreateRevision(2)"],
            ),
            (
                Compare::version("k", CompareOp::Less, 3),
                &["result: Less", "target: Version", "Version(3)"],
            ),
            (
                Compare::value("k", CompareOp::NotEqual, "v"),
                &["result: NotEqual", "target: Value", "Value([118])"],
            ),
            (
                Compare::lease("k", CompareOp::Equal, 9),
                &["result: Equal", "target: Lease", "Lease(9)"],
            ),
        ];
        for (c, wants) in cases {
            let got = format!("{:?}", compare(&c));
            for want in wants {
                assert!(got.contains(want), "{c:?} -> {got}: missing {want}");
            }
        }

        let put = format!("{:?}", txn_op(&TxnOp::put("k", "v", 12)));
        assert!(
            put.contains("RequestPut") && put.contains("lease: 12"),
            "{put}"
        );
        assert!(put.contains("prev_kv: true"), "{put}");
        let del = format!("{:?}", txn_op(&TxnOp::delete("k")));
        assert!(
            del.contains("RequestDeleteRange") && del.contains("prev_kv: true"),
            "{del}"
        );
        // A single-key delete must not turn into a range delete.
        assert!(del.contains("range_end: []"), "{del}");
        let get = format!("{:?}", txn_op(&TxnOp::get("k")));
        assert!(
            get.contains("RequestRange") && get.contains("range_end: []"),
            "{get}"
        );
    }

    #[test]
    fn empty_range_start_becomes_the_smallest_key() {
        assert_eq!(range_start(b"", &[0]), vec![0]);
        assert_eq!(range_start(b"a", b"b"), b"a".to_vec());
        assert_eq!(range_start(b"", b""), Vec::<u8>::new());
    }

    #[test]
    fn first_lease_names_the_attached_lease() {
        let t = Txn::new()
            .and_then(TxnOp::put("a", "1", 0))
            .and_then(TxnOp::put("b", "1", 77));
        assert_eq!(first_lease(&t), 77);
        assert_eq!(first_lease(&Txn::new().and_then(TxnOp::delete("a"))), 0);
    }
}
