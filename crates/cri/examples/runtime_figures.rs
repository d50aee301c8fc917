//! Measures what a node's runtime costs here: containerd start to CRI-ready, importing the
//! images, and RunPodSandbox+CreateContainer+StartContainer of a busybox pod. Prints a
//! Markdown table. Needs root, containerd, runc, the CNI plugins and busybox-static.
//!
//!   sudo cargo run -p skiff-cri --example runtime_figures -- [RUNS]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skiff_cri::api::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};
use skiff_cri::cni::{write_conflist, BridgeNetwork};
use skiff_cri::image::{
    build_busybox_image, build_pause_image, ensure_pause_image, import_tarball, BUSYBOX_TEST_IMAGE,
};
use skiff_cri::{Containerd, ContainerdOptions, Cri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    let dir = tempfile::Builder::new()
        .prefix("skiff-figures-")
        .tempdir()?;
    let agent = dir.path().join("agent");
    let tag = std::process::id() % 100_000;
    let mut net = BridgeNetwork::new(
        &format!("skifffig-{tag}"),
        &format!("skf{tag}"),
        "10.213.251.0/24",
    );
    net.ipam_data_dir = Some(agent.join("cni/ipam"));
    write_conflist(&agent.join("cni/net.d"), &net)?;

    let pause = build_pause_image(&dir.path().join("pause.tar"))?;
    let busybox_tar = dir.path().join("busybox.tar");
    let busybox = build_busybox_image(&busybox_tar, BUSYBOX_TEST_IMAGE)?;
    println!("| image | archive bytes | layer bytes |\n|---|---|---|");
    println!(
        "| {} | {} | {} |",
        skiff_cri::PAUSE_IMAGE,
        pause.archive_bytes,
        pause.layer_bytes
    );
    println!(
        "| {BUSYBOX_TEST_IMAGE} | {} | {} |",
        busybox.archive_bytes, busybox.layer_bytes
    );

    let mut ready = Vec::new();
    let mut imports = Vec::new();
    let mut pods = Vec::new();
    for run in 0..runs {
        // A fresh root each time: the first start of a node.
        let _ = std::fs::remove_dir_all(agent.join("containerd"));
        let mut opts = ContainerdOptions::new(&agent, agent.join("cni/net.d"));
        opts.import_images = false;
        let t = Instant::now();
        let containerd = Containerd::start(opts).await?;
        ready.push(t.elapsed());
        let t = Instant::now();
        ensure_pause_image(containerd.cri(), dir.path()).await?;
        import_tarball(containerd.socket(), &busybox_tar).await?;
        imports.push(t.elapsed());
        for i in 0..3 {
            let t = Instant::now();
            let sandbox = run_pod(containerd.cri(), &agent, &format!("fig{run}-{i}")).await?;
            pods.push(t.elapsed());
            let mut rt = containerd.cri().runtime.clone();
            rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox,
            })
            .await?;
        }
        containerd.stop().await;
    }
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &net.bridge])
        .status();

    println!("\n| step ({runs} runs) | median | min | max |\n|---|---|---|---|");
    for (name, v) in [
        ("containerd start to CRI ready", &mut ready),
        ("import pause + busybox images", &mut imports),
        (
            "sandbox + container start (RunPodSandbox, Create, Start)",
            &mut pods,
        ),
    ] {
        v.sort();
        println!(
            "| {name} | {} | {} | {} |",
            ms(v[v.len() / 2]),
            ms(v[0]),
            ms(v[v.len() - 1])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

async fn run_pod(cri: &Cri, agent: &std::path::Path, name: &str) -> Result<String, tonic::Status> {
    let mut rt = cri.runtime.clone();
    let uid = format!("{name}-{}", std::process::id());
    let log_dir = agent.join(format!("logs/pods/default_{name}_{uid}"));
    let _ = std::fs::create_dir_all(&log_dir);
    let ns = NamespaceOption {
        network: 0,
        pid: 1,
        ipc: 0,
        ..Default::default()
    };
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: HashMap::new(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let container = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: BUSYBOX_TEST_IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "main/0.log".into(),
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        namespace_options: Some(ns),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: container,
    })
    .await?;
    Ok(sandbox)
}
