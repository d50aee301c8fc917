//! Objects in the store: the generic registry every resource shares. Objects are stored as
//! JSON without `resourceVersion`; on the way out it is set from the key's mod revision,
//! as upstream does with etcd, so the two can never disagree.
//!
//! Writes are guarded: create only if absent, update and delete only if the mod revision
//! is still the one read. Keys an object holds exclusively (allocated Service IPs and node
//! ports, "claims") are created and deleted in the same transaction as the object.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::{meta, ApiError};
use skiff_store::{Compare, CompareOp, KeyValue, Store, StoreError, Txn, TxnOp, TxnOpResult};

use crate::resources::ResourceDef;

pub fn object_key(def: &ResourceDef, namespace: &str, name: &str) -> String {
    let ns = (def.namespaced && !namespace.is_empty()).then_some(namespace);
    skiff_store::keys::object_key(def.plural, ns, name)
}

/// Maps store failures to API errors a client can act on.
pub fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Compacted {
            revision,
            compact_revision,
        } => ApiError::expired(revision, compact_revision),
        StoreError::FutureRevision { revision, current } => ApiError::timeout(format!(
            "Too large resource version: {revision}, current: {current}"
        )),
        StoreError::TooLarge { size, limit, .. } => {
            let mut e = ApiError::too_large(limit);
            e.message = format!("etcdserver: request is too large ({size} bytes, limit {limit})");
            e
        }
        StoreError::Unavailable(why) => {
            ApiError::service_unavailable(format!("storage is unavailable: {why}"))
        }
        other => ApiError::internal(other),
    }
}

/// Serializes an object for the store (no resourceVersion: the store's revision is it).
pub fn encode(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Parses a stored object and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!(
            "stored object {} is not valid JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    meta::set_meta(&mut obj, "resourceVersion", kv.mod_revision.to_string());
    Ok(obj)
}

/// The result of a guarded write that lost.
pub enum WriteConflict {
    /// The object exists (create) or changed / vanished (update, delete): the current one.
    Object(Option<Value>),
    /// One of the claim keys is held by another object.
    Claim,
}

#[derive(Clone)]
pub struct Storage {
    pub store: Arc<dyn Store>,
    /// The encryption layer `store` goes through, when configured.
    pub encryption: Option<Arc<crate::encryption::EncryptedStore>>,
}

impl Storage {
    /// Whether an object's stored form is not what a write would store now (it was
    /// encrypted with a key that is no longer the first): a no-op update must still
    /// write it, so `kubectl replace` moves objects to the current key, as upstream.
    pub async fn stale(&self, key: &str) -> bool {
        match &self.encryption {
            Some(enc) => enc.needs_rewrite(key.as_bytes()).await,
            None => false,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Value>, ApiError> {
        match self.store.get(key.as_bytes()).await.map_err(store_error)? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Creates an object and its claims, all or nothing. Returns the stored object.
    pub async fn create(
        &self,
        key: &str,
        obj: &Value,
        claims: &[String],
    ) -> Result<Result<Value, WriteConflict>, ApiError> {
        self.update(key, obj, 0, claims, &[]).await
    }

    /// Writes an object if its mod revision is still `expected` (0: it must not exist),
    /// taking new claims and releasing dropped ones in the same step.
    pub async fn update(
        &self,
        key: &str,
        obj: &Value,
        expected: i64,
        add_claims: &[String],
        drop_claims: &[String],
    ) -> Result<Result<Value, WriteConflict>, ApiError> {
        let value = encode(obj);
        let mut txn = Txn::new().when(Compare::mod_revision(key, CompareOp::Equal, expected));
        for claim in add_claims {
            txn = txn.when(Compare::mod_revision(claim, CompareOp::Equal, 0));
        }
        txn = txn.and_then(TxnOp::put(key, value.clone(), 0));
        for claim in add_claims {
            txn = txn.and_then(TxnOp::put(claim, key.to_string(), 0));
        }
        for claim in drop_claims {
            txn = txn.and_then(TxnOp::delete(claim));
        }
        txn = txn.or_else(TxnOp::get(key));
        let resp = self.store.txn(txn).await.map_err(store_error)?;
        if resp.succeeded {
            let kv = KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value,
                mod_revision: resp.revision,
                ..Default::default()
            };
            return Ok(Ok(decode(&kv)?));
        }
        // The object is as expected, so a claim's compare failed; otherwise the object
        // itself is not what the caller read.
        match resp.results.into_iter().next() {
            Some(TxnOpResult::Get { kv: Some(kv) }) if kv.mod_revision == expected => {
                Ok(Err(WriteConflict::Claim))
            }
            Some(TxnOpResult::Get { kv: Some(kv) }) => {
                Ok(Err(WriteConflict::Object(Some(decode(&kv)?))))
            }
            _ if expected == 0 => Ok(Err(WriteConflict::Claim)),
            _ => Ok(Err(WriteConflict::Object(None))),
        }
    }

    /// Deletes an object (and its claims) if its mod revision is still `expected`.
    pub async fn delete(
        &self,
        key: &str,
        expected: i64,
        claims: &[String],
    ) -> Result<Result<(), WriteConflict>, ApiError> {
        let mut txn = Txn::new()
            .when(Compare::mod_revision(key, CompareOp::Equal, expected))
            .and_then(TxnOp::delete(key));
        for claim in claims {
            txn = txn.and_then(TxnOp::delete(claim));
        }
        txn = txn.or_else(TxnOp::get(key));
        let resp = self.store.txn(txn).await.map_err(store_error)?;
        if resp.succeeded {
            return Ok(Ok(()));
        }
        match resp.results.into_iter().next() {
            Some(TxnOpResult::Get { kv: Some(kv) }) => {
                Ok(Err(WriteConflict::Object(Some(decode(&kv)?))))
            }
            _ => Ok(Err(WriteConflict::Object(None))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_version_is_never_stored_and_always_stamped() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "99"}, "data": {"k": "v"}});
        let bytes = encode(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: Bytes::from_static(b"/registry/configmaps/d/a"),
            value: bytes,
            mod_revision: 7,
            ..Default::default()
        };
        let back = decode(&kv).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "7");
        assert_eq!(back["data"]["k"], "v");
        let broken = KeyValue {
            value: Bytes::from_static(b"{nope"),
            ..kv
        };
        assert_eq!(decode(&broken).unwrap_err().code, 500);
    }
}
