//! The other offline image source: a plain-HTTP registry on localhost (Debian's
//! `docker-registry`). containerd's CRI pulls from a localhost registry over HTTP without
//! any configuration.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skiff_cri::api::{ImageSpec, PullImageRequest};
use skiff_cri::image::{image_present, BUSYBOX_TEST_IMAGE, K8S_NAMESPACE};
use support::{eventually, Node};

/// A registry process that is killed with the test.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &std::path::Path, port: u16) -> Registry {
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("blobs").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package `docker-registry`)"),
    )
}

fn ctr(socket: &std::path::Path, args: &[&str]) {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", K8S_NAMESPACE])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_pulls_from_a_plain_http_registry_on_localhost() {
    let node = Node::new();
    let port = skiff_testkit::free_port();
    let _registry = start_registry(node.dir.path(), port);
    let containerd = node.start().await;
    let cri = containerd.cri().clone();
    let socket = containerd.containerd().socket().to_path_buf();

    // Publish the imported busybox image under the registry's name, then forget it locally.
    let remote = format!("127.0.0.1:{port}/skiff/busybox:pushed");
    ctr(
        &socket,
        &["images", "tag", "docker.io/library/busybox:skiff", &remote],
    );
    eventually(
        Duration::from_secs(10),
        "the registry to accept a push",
        || {
            let socket = socket.clone();
            let remote = remote.clone();
            async move {
                let ok = Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .args([
                        "--namespace",
                        K8S_NAMESPACE,
                        "images",
                        "push",
                        "--plain-http",
                        &remote,
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap()
                    .success();
                ok.then_some(())
            }
        },
    )
    .await;
    ctr(&socket, &["images", "rm", &remote]);
    assert!(!image_present(&cri, &remote).await.unwrap());

    let pulled = cri
        .images
        .clone()
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: remote.clone(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert!(pulled.starts_with("sha256:"), "{pulled}");
    assert!(image_present(&cri, &remote).await.unwrap());
    // Same content as the imported image.
    assert_eq!(
        skiff_cri::image::image_id(&cri, BUSYBOX_TEST_IMAGE)
            .await
            .unwrap(),
        Some(pulled)
    );
}
