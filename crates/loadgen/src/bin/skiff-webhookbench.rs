//! `skiff-webhookbench`: what admission webhooks add to a write.
//!
//! Starts a real `skiff server` (embedded store) and a real HTTPS webhook server
//! (skiff-testkit's, in this process), registers one mutating webhook (adds a label with
//! a JSON patch) and one validating webhook (checks a label), both selecting a namespace
//! by label, then creates ConfigMaps from several clients in a namespace the webhooks
//! skip and in one they review, alternating rounds so both see the same machine state.
//! Reports throughput and p50/p99 create latency for each, and the difference.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-loadgen
//! target/release/skiff-webhookbench --quick
//! target/release/skiff-webhookbench --write docs/benchmarks.md
//! ```

use skiff_loadgen::args::BenchArgs;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use skiff_loadgen::server::{skiff_binary, Server};
use skiff_testkit::report::{load_average, ms, thousands};
use skiff_testkit::webhook::WebhookServer;

const RERUN: &str = "cargo build --release -p skiff -p skiff-loadgen && target/release/skiff-webhookbench --write docs/benchmarks.md";
const BEGIN: &str = "<!-- webhook-bench:begin -->";
const END: &str = "<!-- webhook-bench:end -->";
const DESCRIPTION: &str = "## Admission webhook overhead

`skiff-webhookbench` (in `crates/loadgen`) creates ConfigMaps through a real `skiff server`
(embedded store) from several clients, in a namespace no webhook selects and in one
reviewed by one mutating webhook (adds a label with a JSON patch) and one validating
webhook, both served over HTTPS by a real webhook server on the same machine. Rounds of
the two alternate so both see the same machine state.
";

const CLIENTS: usize = 8;

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    busy: Duration,
}

impl Samples {
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort();
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i]
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.busy.as_secs_f64().max(1e-9)
    }
}

/// `count` creates in `ns` spread over the clients; adds their latencies to `into`.
async fn round(
    clients: &[Client],
    ns: &str,
    tag: &str,
    count: usize,
    into: &mut Samples,
) -> Result<()> {
    let per = count / clients.len();
    let started = Instant::now();
    let tasks = clients.iter().enumerate().map(|(c, client)| {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let tag = tag.to_string();
        async move {
            let mut out = Vec::with_capacity(per);
            for i in 0..per {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("{tag}-{c}-{i}"));
                cm.data = Some([("k".to_string(), "v".repeat(64))].into());
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await?;
                out.push(t.elapsed());
            }
            Ok::<_, kube::Error>(out)
        }
    });
    for result in futures::future::join_all(tasks).await {
        into.latencies.extend(result?);
    }
    into.busy += started.elapsed();
    Ok(())
}

async fn register_webhooks(client: &Client, hooks: &WebhookServer) -> Result<()> {
    let ca = hooks.ca_bundle();
    let rule = json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let selector = json!({"matchLabels": {"bench": "hooks"}});
    for (plural, kind, name, path) in [
        (
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            "bench-mutate",
            "/add-label/bench/mutated",
        ),
        (
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            "bench-validate",
            "/deny-label/forbidden/true",
        ),
    ] {
        let body = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": name},
            "webhooks": [{"name": format!("{name}.skiff.bench"),
                "clientConfig": {"url": hooks.url(path), "caBundle": ca},
                "rules": rule, "namespaceSelector": selector,
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}]});
        let req = http::Request::post(format!("/apis/admissionregistration.k8s.io/v1/{plural}"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?)?;
        client.request_text(req).await?;
    }
    Ok(())
}

struct Figures {
    plain: Samples,
    hooked: Samples,
    total: usize,
}

async fn measure(quick: bool) -> Result<Figures> {
    let skiff = skiff_binary()?;
    let (server, _) = Server::start(
        &skiff,
        None,
        &["--disable-controller-manager", "--disable-scheduler"],
    )
    .await?;
    let hooks = tokio::task::spawn_blocking(|| WebhookServer::start(&[])).await?;
    let admin = server.client().await?;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for (name, labelled) in [("plain", false), ("hooked", true)] {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        if labelled {
            ns.metadata.labels = Some([("bench".to_string(), "hooks".to_string())].into());
        }
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    register_webhooks(&admin, &hooks).await?;
    // The configurations reach the watch cache a moment later: wait until they act.
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "hooked");
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("probe-{n}"));
        let made = cms.create(&PostParams::default(), &cm).await?;
        if made
            .metadata
            .labels
            .is_some_and(|l| l.contains_key("bench"))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the webhooks never took effect; server log:\n{}",
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clients = server.clients(CLIENTS).await?;
    let (rounds, per_round) = if quick { (2, 400) } else { (5, 2_000) };
    // Warm both paths (connections, caches) before measuring.
    let mut warm = Samples::default();
    round(&clients, "plain", "warm", 200, &mut warm).await?;
    round(&clients, "hooked", "warm", 200, &mut warm).await?;
    let (mut plain, mut hooked) = (Samples::default(), Samples::default());
    for r in 0..rounds {
        round(&clients, "plain", &format!("r{r}"), per_round, &mut plain).await?;
        round(&clients, "hooked", &format!("r{r}"), per_round, &mut hooked).await?;
    }
    let reviewed = hooks.received("/").len();
    if reviewed < rounds * per_round * 2 {
        bail!("the webhooks saw {reviewed} reviews, fewer than the creates they should review");
    }
    Ok(Figures {
        plain,
        hooked,
        total: rounds * per_round,
    })
}

fn render(f: &mut Figures, load: (&str, &str), quick: bool) -> String {
    let (p50a, p99a) = (f.plain.percentile(0.5), f.plain.percentile(0.99));
    let (p50b, p99b) = (f.hooked.percentile(0.5), f.hooked.percentile(0.99));
    let diff = |a: Duration, b: Duration| ms(b.saturating_sub(a));
    let mut out = String::new();
    if quick {
        out.push_str("(quick run: fewer creates)\n\n");
    }
    out.push_str(&format!(
        "| {n} ConfigMap creates, {CLIENTS} clients | no webhook | 1 mutating + 1 validating | added by the webhooks |
|---|---:|---:|---:|
| throughput (creates/s) | {ta} | {tb} | |
| p50 latency | {p50a} | {p50b} | {d50} |
| p99 latency | {p99a} | {p99b} | {d99} |
",
        n = thousands(f.total as f64),
        ta = thousands(f.plain.throughput()),
        tb = thousands(f.hooked.throughput()),
        p50a = ms(p50a),
        p50b = ms(p50b),
        p99a = ms(p99a),
        p99b = ms(p99b),
        d50 = diff(p50a, p50b),
        d99 = diff(p99a, p99b),
    ));
    out.push_str("\nEach reviewed create makes two HTTPS calls (mutating, then validating) over pooled connections.\n");
    out.push_str(&skiff_loadgen::sections::provenance(
        load.0, load.1, quick, RERUN,
    ));
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = BenchArgs::from_env("skiff-webhookbench")?;
    let before = load_average();
    let mut figures = measure(args.quick).await?;
    let after = load_average();
    let section = render(&mut figures, (&before, &after), args.quick);
    println!("{section}");
    if let Some(file) = args.write {
        skiff_loadgen::sections::write(&file, BEGIN, END, DESCRIPTION, &section)?;
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}
