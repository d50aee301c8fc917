//! Encryption at rest (`--encryption-provider-config`): a layer around the store that
//! seals the values of configured resources on every write and opens them on every read
//! and watch event, so everything above it (registry, watch cache) sees plaintext and
//! the store file or etcd holds only ciphertext.

mod config;
mod providers;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{
    Event, KeyValue, Lease, RangeRequest, RangeResponse, Store, StoreError, Txn, TxnOp,
    TxnOpResult, TxnResponse, WatchStream,
};

pub use config::{parse, Rule};
use providers::Provider;

/// The resource's group for a store prefix segment (`secrets` → ""), or None when it is
/// not a served resource.
pub type GroupOf = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    codec: Arc<Codec>,
}

/// Which provider seals or opens each key's value.
struct Codec {
    rules: Vec<Rule>,
    group_of: GroupOf,
}

impl EncryptedStore {
    /// Reads the configuration file and wraps `inner`.
    pub fn from_file(
        inner: Arc<dyn Store>,
        path: &Path,
        group_of: GroupOf,
    ) -> Result<Self, String> {
        Ok(Self::new(inner, config::load(path)?, group_of))
    }

    /// Whether the value stored under `key` was not written by the current writer (an
    /// older key or provider, or plaintext for a now-encrypted resource).
    pub async fn needs_rewrite(&self, key: &[u8]) -> bool {
        let Some(writer) = self.codec.providers(key).and_then(|p| p.first()) else {
            return false;
        };
        match self.inner.get(key).await {
            Ok(Some(kv)) => !writer.reads(&kv.value),
            _ => false,
        }
    }

    pub fn new(inner: Arc<dyn Store>, rules: Vec<Rule>, group_of: GroupOf) -> Self {
        Self {
            inner,
            codec: Arc::new(Codec { rules, group_of }),
        }
    }
}

impl Codec {
    /// The providers for a store key: the first rule covering its resource (upstream:
    /// first match wins). None: stored as is.
    fn providers(&self, key: &[u8]) -> Option<&[Provider]> {
        let key = std::str::from_utf8(key).ok()?;
        let plural = key.strip_prefix("/registry/")?.split('/').next()?;
        let group = (self.group_of)(plural)?;
        self.rules
            .iter()
            .find(|r| r.covers(&group, plural))
            .map(|r| r.providers.as_slice())
    }

    fn seal(&self, key: &[u8], value: Bytes) -> Result<Bytes, StoreError> {
        match self.providers(key) {
            Some(providers) => match providers.first() {
                Some(writer) => writer
                    .seal(key, &value)
                    .map(Bytes::from)
                    .map_err(|why| transform_error(key, &why)),
                None => Ok(value),
            },
            None => Ok(value),
        }
    }

    fn open(&self, key: &[u8], value: &Bytes) -> Result<Bytes, StoreError> {
        let Some(providers) = self.providers(key) else {
            return Ok(value.clone());
        };
        let mut last = None;
        for p in providers.iter().filter(|p| p.reads(value)) {
            match p.open(key, value) {
                Ok(plain) => return Ok(Bytes::from(plain)),
                Err(why) => last = Some(why),
            }
        }
        Err(transform_error(
            key,
            &last.unwrap_or_else(|| {
                "no matching prefix found: it was written with a provider or key that is no longer in the encryption configuration".into()
            }),
        ))
    }

    fn open_kv(&self, mut kv: KeyValue) -> Result<KeyValue, StoreError> {
        if !kv.value.is_empty() {
            kv.value = self.open(&kv.key, &kv.value)?;
        }
        Ok(kv)
    }
}

fn transform_error(key: &[u8], why: &str) -> StoreError {
    StoreError::Transform(format!("value of {}: {why}", String::from_utf8_lossy(key)))
}

#[async_trait]
impl Store for EncryptedStore {
    async fn range(&self, req: RangeRequest) -> skiff_store::Result<RangeResponse> {
        let mut resp = self.inner.range(req).await?;
        resp.kvs = std::mem::take(&mut resp.kvs)
            .into_iter()
            .map(|kv| self.codec.open_kv(kv))
            .collect::<Result<_, _>>()?;
        Ok(resp)
    }

    async fn txn(&self, mut txn: Txn) -> skiff_store::Result<TxnResponse> {
        for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
            if let TxnOp::Put { key, value, .. } = op {
                *value = self.codec.seal(key, std::mem::take(value))?;
            }
        }
        let mut resp = self.inner.txn(txn).await?;
        for result in resp.results.iter_mut() {
            match result {
                TxnOpResult::Put { prev } | TxnOpResult::Delete { prev } => {
                    if let Some(kv) = prev.take() {
                        *prev = Some(self.codec.open_kv(kv)?);
                    }
                }
                TxnOpResult::Get { kv } => {
                    if let Some(found) = kv.take() {
                        *kv = Some(self.codec.open_kv(found)?);
                    }
                }
            }
        }
        Ok(resp)
    }

    async fn watch(&self, prefix: &[u8], from_revision: i64) -> skiff_store::Result<WatchStream> {
        let stream = self.inner.watch(prefix, from_revision).await?;
        let codec = self.codec.clone();
        Ok(stream
            .map(move |event| {
                let mut event: Event = event?;
                event.kv = codec.open_kv(event.kv)?;
                if let Some(prev) = event.prev_kv.take() {
                    event.prev_kv = Some(codec.open_kv(prev)?);
                }
                Ok(event)
            })
            .boxed())
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> skiff_store::Result<Lease> {
        self.inner.lease_grant(ttl_seconds).await
    }

    async fn lease_keep_alive(&self, id: i64) -> skiff_store::Result<i64> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: i64) -> skiff_store::Result<()> {
        self.inner.lease_revoke(id).await
    }

    async fn compact(&self, revision: i64) -> skiff_store::Result<()> {
        self.inner.compact(revision).await
    }

    async fn current_revision(&self) -> skiff_store::Result<i64> {
        self.inner.current_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{EmbeddedOptions, EmbeddedStore};

    const KEY_A: &str = "c2VjcmV0IGlzIHNlY3VyZSwgSSB0aGluayBzbyE/Pz8="; // 32 bytes
    const KEY_B: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng=="; // 16 bytes

    fn config(providers: &str) -> Vec<Rule> {
        parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, '*.apps']\n  providers:\n{providers}"
        ))
        .unwrap()
    }

    fn groups() -> GroupOf {
        Arc::new(|plural: &str| match plural {
            "secrets" | "configmaps" => Some(String::new()),
            "deployments" => Some("apps".into()),
            _ => None,
        })
    }

    fn open_store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(dir.join("db"), EmbeddedOptions::default()).unwrap())
    }

    async fn raw(store: &Arc<dyn Store>, key: &str) -> Bytes {
        store.get(key.as_bytes()).await.unwrap().unwrap().value
    }

    #[tokio::test]
    async fn each_provider_seals_covered_resources_and_reads_back() {
        for provider in [
            format!("  - aesgcm:\n      keys:\n      - name: k1\n        secret: {KEY_A}\n"),
            format!("  - aescbc:\n      keys:\n      - name: k1\n        secret: {KEY_B}\n"),
            format!("  - secretbox:\n      keys:\n      - name: k1\n        secret: {KEY_A}\n"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let inner = open_store(dir.path());
            let store = EncryptedStore::new(inner.clone(), config(&provider), groups());
            let plain = Bytes::from_static(b"{\"data\":{\"password\":\"aHVudGVyMg==\"}}");
            store
                .txn(Txn::new().and_then(TxnOp::put(
                    "/registry/secrets/default/s",
                    plain.clone(),
                    0,
                )))
                .await
                .unwrap();
            store
                .txn(Txn::new().and_then(TxnOp::put(
                    "/registry/configmaps/default/c",
                    plain.clone(),
                    0,
                )))
                .await
                .unwrap();
            store
                .txn(Txn::new().and_then(TxnOp::put(
                    "/registry/deployments/default/d",
                    plain.clone(),
                    0,
                )))
                .await
                .unwrap();
            let sealed = raw(&inner, "/registry/secrets/default/s").await;
            assert!(sealed.starts_with(b"k8s:enc:"), "{provider}");
            assert!(!sealed.windows(8).any(|w| w == b"password"));
            assert!(raw(&inner, "/registry/deployments/default/d")
                .await
                .starts_with(b"k8s:enc:"));
            // Not covered: stored as is.
            assert_eq!(raw(&inner, "/registry/configmaps/default/c").await, plain);
            let got = store
                .get(b"/registry/secrets/default/s")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.value, plain);
            let listed = store
                .range(RangeRequest::prefix("/registry/secrets/"))
                .await
                .unwrap();
            assert_eq!(listed.kvs[0].value, plain);
        }
    }

    #[tokio::test]
    async fn rotation_reads_old_keys_writes_with_the_first_and_refuses_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let inner = open_store(dir.path());
        let old = format!("  - aescbc:\n      keys:\n      - name: old\n        secret: {KEY_B}\n");
        let rotated = format!(
            "  - aesgcm:\n      keys:\n      - name: new\n        secret: {KEY_A}\n  - aescbc:\n      keys:\n      - name: old\n        secret: {KEY_B}\n"
        );
        let plain = Bytes::from_static(b"{\"v\":1}");
        let key = "/registry/secrets/ns/a";
        EncryptedStore::new(inner.clone(), config(&old), groups())
            .txn(Txn::new().and_then(TxnOp::put(key, plain.clone(), 0)))
            .await
            .unwrap();
        assert!(raw(&inner, key)
            .await
            .starts_with(b"k8s:enc:aescbc:v1:old:"));
        let store = EncryptedStore::new(inner.clone(), config(&rotated), groups());
        assert_eq!(
            store.get(key.as_bytes()).await.unwrap().unwrap().value,
            plain
        );
        store
            .txn(Txn::new().and_then(TxnOp::put(key, plain.clone(), 0)))
            .await
            .unwrap();
        assert!(raw(&inner, key)
            .await
            .starts_with(b"k8s:enc:aesgcm:v1:new:"));
        // The old key gone and identity not listed: reading says what is wrong.
        let only_other =
            format!("  - secretbox:\n      keys:\n      - name: other\n        secret: {KEY_A}\n");
        let err = EncryptedStore::new(inner.clone(), config(&only_other), groups())
            .get(key.as_bytes())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no matching prefix"), "{err}");
        // Plaintext written before encryption reads through identity when listed.
        inner
            .txn(Txn::new().and_then(TxnOp::put("/registry/secrets/ns/old", plain.clone(), 0)))
            .await
            .unwrap();
        let with_identity = format!(
            "  - aesgcm:\n      keys:\n      - name: new\n        secret: {KEY_A}\n  - identity: {{}}\n"
        );
        let store = EncryptedStore::new(inner.clone(), config(&with_identity), groups());
        assert_eq!(
            store
                .get(b"/registry/secrets/ns/old")
                .await
                .unwrap()
                .unwrap()
                .value,
            plain
        );
    }

    #[tokio::test]
    async fn a_value_moved_to_another_key_does_not_open() {
        // aesgcm authenticates the store key: ciphertext copied elsewhere is refused.
        let dir = tempfile::tempdir().unwrap();
        let inner = open_store(dir.path());
        let cfg = format!("  - aesgcm:\n      keys:\n      - name: k\n        secret: {KEY_A}\n");
        let store = EncryptedStore::new(inner.clone(), config(&cfg), groups());
        store
            .txn(Txn::new().and_then(TxnOp::put(
                "/registry/secrets/a/x",
                Bytes::from_static(b"{}"),
                0,
            )))
            .await
            .unwrap();
        let sealed = raw(&inner, "/registry/secrets/a/x").await;
        inner
            .txn(Txn::new().and_then(TxnOp::put("/registry/secrets/b/x", sealed, 0)))
            .await
            .unwrap();
        assert!(store.get(b"/registry/secrets/b/x").await.is_err());
    }

    #[tokio::test]
    async fn watch_events_arrive_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let inner = open_store(dir.path());
        let cfg =
            format!("  - secretbox:\n      keys:\n      - name: k\n        secret: {KEY_A}\n");
        let store = EncryptedStore::new(inner, config(&cfg), groups());
        let mut watch = store.watch(b"/registry/secrets/", 0).await.unwrap();
        store
            .txn(Txn::new().and_then(TxnOp::put(
                "/registry/secrets/a/x",
                Bytes::from_static(b"{\"a\":1}"),
                0,
            )))
            .await
            .unwrap();
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.kv.value, Bytes::from_static(b"{\"a\":1}"));
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let bad_key = parse("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: k\n        secret: c2hvcnQ=\n");
        assert!(bad_key.err().unwrap().contains("16, 24 or 32 bytes"));
        let kms = parse("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - kms: {name: x}\n");
        assert!(kms
            .err()
            .unwrap()
            .contains("KMS providers are not supported"));
        let kind = parse("apiVersion: v1\nkind: Pod\n");
        assert!(kind.err().unwrap().contains("EncryptionConfiguration"));
        let empty = parse("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: []\n");
        assert!(empty.err().unwrap().contains("providers: Required value"));
    }
}
