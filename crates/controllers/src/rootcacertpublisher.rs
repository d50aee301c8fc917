//! Root CA certificate publisher (upstream's `root-ca-cert-publisher`): every active
//! namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA
//! (`--root-ca-file`), so pods can verify the API server through their projected
//! `kube-api-access` volume. Re-created when deleted, corrected when changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::Api;
use skiff_runtime::{Informer, ObjectKey, WorkQueue};

use crate::{Ctx, Loop};

pub const NAME: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the root CA {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing ConfigMap {namespace}/kube-root-ca.crt: {source}")]
    Write {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What the ConfigMap should be, or None when `current` is already right.
pub fn desired(namespace: &str, ca: &str, current: Option<&ConfigMap>) -> Option<ConfigMap> {
    let data = BTreeMap::from([("ca.crt".to_string(), ca.to_string())]);
    let annotation = (
        "kubernetes.io/description".to_string(),
        DESCRIPTION.to_string(),
    );
    match current {
        Some(cm) if cm.data.as_ref() == Some(&data) => None,
        Some(cm) => {
            let mut fixed = cm.clone();
            fixed.data = Some(data);
            fixed.binary_data = None;
            fixed
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(annotation.0, annotation.1);
            Some(fixed)
        }
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some(namespace.into()),
                annotations: Some(BTreeMap::from([annotation])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }),
    }
}

struct State {
    client: kube::Client,
    namespaces: Informer<Namespace>,
    configmaps: Informer<ConfigMap>,
    ca_file: PathBuf,
}

impl State {
    async fn reconcile(&self, namespace: String) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get_named(None, &namespace) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ca = std::fs::read_to_string(&self.ca_file).map_err(|source| Error::ReadCa {
            path: self.ca_file.clone(),
            source,
        })?;
        let current = self.configmaps.get_named(Some(&namespace), NAME);
        let Some(cm) = desired(&namespace, &ca, current.as_deref()) else {
            return Ok(None);
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &namespace);
        let result = if current.is_some() {
            api.replace(NAME, &PostParams::default(), &cm).await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match result {
            Ok(_) => Ok(None),
            // Our cache lags (409), or the namespace began terminating (403/404).
            Err(kube::Error::Api(e)) if [403, 404, 409].contains(&e.code) => Ok(None),
            Err(source) => Err(Error::Write { namespace, source }),
        }
    }
}

pub fn controller(ctx: &Ctx) -> Loop {
    let Some(ca_file) = ctx.settings.root_ca_file.clone() else {
        tracing::warn!(
            "root-ca-cert-publisher: no --root-ca-file; kube-root-ca.crt is not published"
        );
        return Box::pin(async {});
    };
    let queue: WorkQueue<String> =
        WorkQueue::new("root_ca_cert_publisher", ctx.settings.max_retry_delay);
    let namespaces = ctx.informers.informer::<Namespace>();
    let configmaps = ctx.informers.informer::<ConfigMap>();
    {
        let q = queue.clone();
        namespaces.on_change(move |c| {
            if c.new.is_some() {
                q.add(ObjectKey::of(c.object().as_ref()).name);
            }
        });
    }
    {
        let q = queue.clone();
        configmaps.on_change(move |c| {
            let cm = c.object();
            if cm.metadata.name.as_deref() == Some(NAME) {
                if let Some(ns) = &cm.metadata.namespace {
                    q.add(ns.clone());
                }
            }
        });
    }
    let state = Arc::new(State {
        client: ctx.client.clone(),
        namespaces,
        configmaps,
        ca_file,
    });
    ctx.run_workers(queue, ctx.settings.workers, state, |s, ns| async move {
        s.reconcile(ns).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_and_corrects() {
        let made = desired("ns", "CA", None).unwrap();
        assert_eq!(made.metadata.name.as_deref(), Some(NAME));
        assert_eq!(made.data.as_ref().unwrap()["ca.crt"], "CA");
        assert_eq!(desired("ns", "CA", Some(&made)), None);
        let mut edited = made.clone();
        edited.data = Some(BTreeMap::from([("ca.crt".into(), "evil".into())]));
        let fixed = desired("ns", "CA", Some(&edited)).unwrap();
        assert_eq!(fixed.data.as_ref().unwrap()["ca.crt"], "CA");
    }
}
