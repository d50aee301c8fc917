//! The volume manager against a real, in-process API server: ConfigMaps, Secrets,
//! PersistentVolumes and claims are real objects; directories, tmpfs mounts and files
//! are real too (the tests run as root).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::{Api, PostParams};
use skiff_agent::volumes::{VolumeError, VolumeManager};

struct Env {
    client: kube::Client,
    _running: skiff_apiserver::Running,
    _dir: tempfile::TempDir,
    agent_dir: tempfile::TempDir,
    manager: VolumeManager,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let running = skiff_apiserver::start_local(dir.path()).await.unwrap();
    let client = skiff_runtime::client::from_kubeconfig_file(&running.kubeconfig)
        .await
        .unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let manager = VolumeManager::new(agent_dir.path().to_path_buf(), client.clone());
    Env {
        client,
        _running: running,
        _dir: dir,
        agent_dir,
        manager,
    }
}

async fn create<K>(client: &kube::Client, obj: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    Api::<K>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap()
}

fn pod(uid: &str, volumes: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid,
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                 "resources": {"limits": {"memory": "32Mi"}}}],
                 "volumes": volumes}
    }))
    .unwrap()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn configmap_volume_follows_updates_and_reports_missing_maps() {
    let env = env().await;
    let mut cm: ConfigMap = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "cfg"},
            "data": {"a.conf": "one", "b.conf": "two"}}),
    )
    .await;
    let p = pod(
        "uid-cm",
        serde_json::json!([
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "cfg",
                "items": [{"key": "b.conf", "path": "sub/b", "mode": 0o400}]}},
            {"name": "maybe", "configMap": {"name": "absent", "optional": true}}
        ]),
    );
    let vols = env.manager.setup(&p).await.unwrap();
    let all = vols.get("all").unwrap();
    assert!(all.read_only);
    assert_eq!(
        all.host_path,
        env.agent_dir
            .path()
            .join("pods/uid-cm/volumes/kubernetes.io~configmap/all")
    );
    assert_eq!(read(&all.host_path.join("a.conf")), "one");
    let mode = fs::metadata(all.host_path.join("a.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let some = &vols.get("some").unwrap().host_path;
    assert_eq!(read(&some.join("sub/b")), "two");
    assert!(!some.join("a.conf").exists());
    assert_eq!(
        fs::read_dir(&vols.get("maybe").unwrap().host_path)
            .unwrap()
            .filter(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".."))
            .count(),
        0
    );

    // An unchanged ConfigMap leaves the data where it is; a change swaps it in.
    let before = fs::read_link(all.host_path.join("..data")).unwrap();
    env.manager.setup(&p).await.unwrap();
    assert_eq!(fs::read_link(all.host_path.join("..data")).unwrap(), before);
    cm.data
        .as_mut()
        .unwrap()
        .insert("a.conf".into(), "changed".into());
    Api::<ConfigMap>::namespaced(env.client.clone(), "default")
        .replace("cfg", &PostParams::default(), &cm)
        .await
        .unwrap();
    env.manager.setup(&p).await.unwrap();
    assert_eq!(read(&all.host_path.join("a.conf")), "changed");
    assert_ne!(fs::read_link(all.host_path.join("..data")).unwrap(), before);

    // A missing, non-optional map: upstream's FailedMount text.
    let bad = pod(
        "uid-cm2",
        serde_json::json!([{"name": "cfg", "configMap": {"name": "nope"}}]),
    );
    let err = env.manager.setup(&bad).await.unwrap_err();
    assert_eq!(err.reason(), "FailedMount");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
    );
    let bad_key = pod(
        "uid-cm3",
        serde_json::json!([{"name": "cfg", "configMap": {"name": "cfg",
            "items": [{"key": "zz", "path": "z"}]}}]),
    );
    let err = env.manager.setup(&bad_key).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with(": configmap references non-existent config key: zz"),
        "{err}"
    );
}

#[tokio::test]
async fn secret_volume_lives_on_tmpfs_and_teardown_removes_it() {
    let env = env().await;
    let _: Secret = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "creds"},
            "stringData": {"password": "hunter2"}}),
    )
    .await;
    let p = pod(
        "uid-secret",
        serde_json::json!([
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Mi"}}
        ]),
    );
    let vols = env.manager.setup(&p).await.unwrap();
    let secret_dir = vols.get("creds").unwrap().host_path.clone();
    assert!(secret_dir.ends_with("kubernetes.io~secret/creds"));
    assert_eq!(read(&secret_dir.join("password")), "hunter2");
    assert!(is_tmpfs(&secret_dir), "secrets never touch the disk");
    let scratch = vols.get("scratch").unwrap().host_path.clone();
    assert!(!is_tmpfs(&scratch));
    let mode = fs::metadata(&scratch).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777);
    let mem = vols.get("mem").unwrap().host_path.clone();
    assert!(is_tmpfs(&mem));
    let st = rustix::fs::statfs(&mem).unwrap();
    assert_eq!(st.f_blocks as u64 * st.f_bsize as u64, 2 * 1024 * 1024);

    // Setting up again mounts nothing twice.
    env.manager.setup(&p).await.unwrap();
    assert_eq!(mount_count(&secret_dir), 1);

    assert_eq!(env.manager.pods_on_disk().unwrap(), ["uid-secret"]);
    env.manager.teardown("uid-secret").await.unwrap();
    assert!(env.manager.pods_on_disk().unwrap().is_empty());
    assert!(!is_tmpfs(&secret_dir));
    assert!(!env.agent_dir.path().join("pods/uid-secret").exists());
    // Tearing down twice is fine.
    env.manager.teardown("uid-secret").await.unwrap();

    let err = env
        .manager
        .setup(&pod(
            "uid-s2",
            serde_json::json!([{"name": "s", "secret": {"secretName": "gone"}}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found"
    );
}

#[tokio::test]
async fn downward_api_and_projected_volumes() {
    let env = env().await;
    let _: ConfigMap = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "ca"}, "data": {"ca.crt": "CERT"}}),
    )
    .await;
    let p = pod(
        "uid-proj",
        serde_json::json!([
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c",
                    "resource": "limits.memory", "divisor": "1Mi"}}
            ]}},
            {"name": "all-in-one", "projected": {"sources": [
                {"configMap": {"name": "ca"}},
                {"downwardAPI": {"items": [{"path": "ns",
                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}
        ]),
    );
    let vols = env.manager.setup(&p).await.unwrap();
    let info = &vols.get("info").unwrap().host_path;
    assert!(info.ends_with("kubernetes.io~downward-api/info"));
    assert_eq!(read(&info.join("labels")), "app=\"web\"");
    assert_eq!(read(&info.join("name")), "web");
    assert_eq!(read(&info.join("mem")), "32");
    let proj = &vols.get("all-in-one").unwrap().host_path;
    assert!(proj.ends_with("kubernetes.io~projected/all-in-one"));
    assert!(is_tmpfs(proj));
    assert_eq!(read(&proj.join("ca.crt")), "CERT");
    assert_eq!(read(&proj.join("ns")), "default");
    assert!(vols.refresh_at().is_none());
    env.manager.teardown("uid-proj").await.unwrap();
}

/// A projected service account token comes from TokenRequest; a server without that
/// API gives a clear error instead.
#[tokio::test]
async fn projected_service_account_token() {
    let env = env().await;
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "robot"}})).unwrap();
    let _ = Api::<ServiceAccount>::namespaced(env.client.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await;
    let mut p: Pod = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "tok"},
            "spec": {"serviceAccountName": "robot", "automountServiceAccountToken": false,
                     "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    p.spec.as_mut().unwrap().volumes = Some(
        serde_json::from_value(
            serde_json::json!([{"name": "token", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "audience": "vault",
                                         "expirationSeconds": 3600}}
            ]}}]),
        )
        .unwrap(),
    );
    let served = token_request_served(&env.client).await;
    match env.manager.setup(&p).await {
        Ok(vols) => {
            assert!(served, "a token without TokenRequest?");
            let dir = &vols.get("token").unwrap().host_path;
            let token = read(&dir.join("token"));
            assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
            let due = vols.refresh_at().expect("a renewal time");
            let left = due.saturating_duration_since(std::time::Instant::now());
            // 80% of an hour, give or take the test's own run time.
            assert!(left.as_secs() > 2800 && left.as_secs() <= 2880, "{left:?}");
            // Cached: the same token until renewal.
            let again = env.manager.setup(&p).await.unwrap();
            assert_eq!(
                read(&again.get("token").unwrap().host_path.join("token")),
                token
            );
        }
        Err(e) => {
            eprintln!("TokenRequest not served: {e}");
            assert!(!served, "TokenRequest is served but failed: {e}");
            assert!(matches!(e, VolumeError::SetUp { .. }));
            assert!(
                e.to_string()
                    .contains("does not serve TokenRequest (serviceaccounts/robot/token)"),
                "{e}"
            );
        }
    }
    env.manager
        .teardown(p.metadata.uid.as_deref().unwrap())
        .await
        .unwrap();
}

async fn token_request_served(client: &kube::Client) -> bool {
    let list = client.list_core_api_resources("v1").await;
    list.map(|l| {
        l.resources
            .iter()
            .any(|r| r.name == "serviceaccounts/token")
    })
    .unwrap_or(false)
}

#[tokio::test]
async fn claims_resolve_to_their_bound_node_path() {
    let env = env().await;
    let host = tempfile::tempdir().unwrap();
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pv-1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": host.path().join("data"), "type": "DirectoryOrCreate"}}
    }))
    .unwrap();
    Api::<PersistentVolume>::all(env.client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .unwrap();
    let claims = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), "default");
    let mut pvc: PersistentVolumeClaim = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv-1",
                     "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let p = pod(
        "uid-pvc",
        serde_json::json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
    );
    // Not bound yet: upstream's error.
    let err = env.manager.setup(&p).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("error processing PVC default/data: PVC is not bound"),
        "{err}"
    );
    pvc.status = Some(serde_json::from_value(serde_json::json!({"phase": "Bound"})).unwrap());
    claims
        .replace_status("data", &PostParams::default(), &pvc)
        .await
        .unwrap();
    let vols = env.manager.setup(&p).await.unwrap();
    let d = vols.get("d").unwrap();
    assert_eq!(d.host_path, host.path().join("data"));
    assert!(d.host_path.is_dir(), "DirectoryOrCreate made the directory");
    assert!(!d.read_only);

    let no_dir = host.path().join("absent");
    let bad_host = pod(
        "uid-hp",
        serde_json::json!([{"name": "h", "hostPath": {"path": no_dir, "type": "Directory"}}]),
    );
    let err = env.manager.setup(&bad_host).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            no_dir.display()
        )
    );

    let missing = pod(
        "uid-pvc2",
        serde_json::json!([{"name": "d", "persistentVolumeClaim": {"claimName": "other"}}]),
    );
    let err = env.manager.setup(&missing).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("persistentvolumeclaims \"other\" not found"),
        "{err}"
    );
}

fn mount_count(dir: &Path) -> usize {
    let Ok(real) = dir.canonicalize() else {
        return 0;
    };
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(real.to_str().unwrap()))
        .count()
}

fn is_tmpfs(dir: &Path) -> bool {
    mount_count(dir) > 0
}

#[tokio::test]
async fn fs_group_owns_the_volumes() {
    use std::os::unix::fs::MetadataExt;
    let env = env().await;
    let _: Secret = create(
        &env.client,
        serde_json::json!({"metadata": {"name": "key"}, "stringData": {"tls.key": "k"}}),
    )
    .await;
    let mut p = pod(
        "uid-fsgroup",
        serde_json::json!([
            {"name": "key", "secret": {"secretName": "key", "defaultMode": 0o400}},
            {"name": "scratch", "emptyDir": {}}
        ]),
    );
    p.spec.as_mut().unwrap().security_context =
        Some(serde_json::from_value(serde_json::json!({"fsGroup": 2000})).unwrap());
    let vols = env.manager.setup(&p).await.unwrap();
    let key = vols.get("key").unwrap().host_path.join("tls.key");
    let meta = fs::metadata(&key).unwrap();
    assert_eq!(meta.gid(), 2000);
    assert_eq!(meta.permissions().mode() & 0o777, 0o440, "group-readable");
    let scratch = fs::metadata(&vols.get("scratch").unwrap().host_path).unwrap();
    assert_eq!(scratch.gid(), 2000);
    assert_eq!(scratch.permissions().mode() & 0o7777, 0o2777);
    // The adjusted modes are what the next sync expects: nothing is rewritten.
    let data = vols.get("key").unwrap().host_path.join("..data");
    let before = fs::read_link(&data).unwrap();
    env.manager.setup(&p).await.unwrap();
    assert_eq!(fs::read_link(&data).unwrap(), before);
    env.manager.teardown("uid-fsgroup").await.unwrap();
}
