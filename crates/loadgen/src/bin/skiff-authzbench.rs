//! `skiff-authzbench`: what authorization costs per request. Two real `skiff server`
//! processes run side by side, one with `--authorization-mode=AlwaysAllow` and one with
//! `--authorization-mode=Node,RBAC`; both hold the same 1,000 Roles and 1,000
//! RoleBindings for other users (plus 100 ClusterRoles and ClusterRoleBindings), and a
//! token user that is not an admin (admins skip RBAC) sends the same requests to both, in
//! alternating rounds so machine noise hits both alike:
//! a GET of one ConfigMap, a list of 100 ConfigMaps, a ConfigMap create, and (RBAC only)
//! a request RBAC denies.
//!
//! ```text
//! cargo build --release -p skiff -p skiff-loadgen
//! target/release/skiff-authzbench --quick
//! target/release/skiff-authzbench --write docs/benchmarks.md
//! ```

use skiff_loadgen::args::BenchArgs;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use skiff_loadgen::server::{skiff_binary, Server};
use skiff_testkit::report::{load_average, ms};

const RERUN: &str = "cargo build --release -p skiff -p skiff-loadgen && target/release/skiff-authzbench --write docs/benchmarks.md";
const BEGIN: &str = "<!-- authz-bench:begin -->";
const END: &str = "<!-- authz-bench:end -->";
const DESCRIPTION: &str = "## Authorization

`skiff-authzbench` (in `crates/loadgen`) runs two real `skiff server` processes side by side:
one with `--authorization-mode=AlwaysAllow`, one with `--authorization-mode=Node,RBAC` (the
default). Both hold the same 1,000 Roles and 1,000 RoleBindings for other users in 10
namespaces, plus 100 ClusterRoles and ClusterRoleBindings, and a bearer-token user that is
not an admin (members of `system:masters` skip RBAC) sends the same requests to both in
alternating rounds, 8 at a time. RBAC looks only at the bindings that name the user or its
groups (an index fed by the watch cache), so the number of other users' rules should not
show in the latency.
";

const TOKEN: &str = "authzbench-token";
const USER: &str = "bench-user";
const NAMESPACE: &str = "bench";
const CONCURRENCY: usize = 8;

struct Sizes {
    roles: usize,
    cluster_roles: usize,
    rounds: usize,
    per_round: usize,
}

/// A kube client for the token user, with the server's CA from its admin kubeconfig.
async fn token_client(server: &Server) -> Result<Client> {
    let admin = std::fs::read_to_string(&server.kubeconfig)?;
    let field = |name: &str| {
        admin
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(str::trim)
                    .map(str::to_string)
            })
            .with_context(|| format!("admin kubeconfig has no {name}"))
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: s\n  context: {{cluster: s, user: u}}\ncurrent-context: s\nusers:\n- name: u\n  user: {{token: {TOKEN}}}\n",
        field("server:")?,
        field("certificate-authority-data:")?,
    );
    let kc = Kubeconfig::from_yaml(&yaml)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn create<K>(api: &Api<K>, obj: serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj)?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The same policy on both servers: other users' roles and bindings, and the bench user's.
async fn populate(admin: &Client, sizes: &Sizes) -> Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let spaces: Vec<String> = (0..10).map(|i| format!("team-{i}")).collect();
    for ns in spaces.iter().map(String::as_str).chain([NAMESPACE]) {
        create(&namespaces, json!({"metadata": {"name": ns}})).await?;
    }
    let work: Vec<usize> = (0..sizes.roles).collect();
    let results: Vec<Result<()>> = stream::iter(work)
        .map(|i| {
            let admin = admin.clone();
            let ns = spaces[i % spaces.len()].clone();
            async move {
                let roles: Api<Role> = Api::namespaced(admin.clone(), &ns);
                let bindings: Api<RoleBinding> = Api::namespaced(admin, &ns);
                create(&roles, json!({"metadata": {"name": format!("role-{i}")},
                    "rules": [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments", "configmaps"],
                               "resourceNames": [format!("thing-{i}")], "verbs": ["get", "update"]}]})).await?;
                create(&bindings, json!({"metadata": {"name": format!("binding-{i}")},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")},
                    "subjects": [{"kind": "User", "name": format!("user-{i}")}, {"kind": "Group", "name": format!("group-{}", i % 50)}]})).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    let croles: Api<ClusterRole> = Api::all(admin.clone());
    let cbindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for i in 0..sizes.cluster_roles {
        create(
            &croles,
            json!({"metadata": {"name": format!("bench-clusterrole-{i}")},
            "rules": [{"apiGroups": ["*"], "resources": [format!("things-{i}")], "verbs": ["*"]},
                      {"nonResourceURLs": [format!("/things-{i}/*")], "verbs": ["get"]}]}),
        )
        .await?;
        create(&cbindings, json!({"metadata": {"name": format!("bench-clusterbinding-{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("bench-clusterrole-{i}")},
            "subjects": [{"kind": "User", "name": format!("cluster-user-{i}")}]})).await?;
    }
    // The bench user's own grant, as a namespace admin would get it.
    let roles: Api<Role> = Api::namespaced(admin.clone(), NAMESPACE);
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), NAMESPACE);
    create(&roles, json!({"metadata": {"name": "configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]}]})).await?;
    create(
        &bindings,
        json!({"metadata": {"name": "bench-user"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
        "subjects": [{"kind": "User", "name": USER}]}),
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    for i in 0..100 {
        create(
            &cms,
            json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}),
        )
        .await?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    List,
    Create,
    Denied,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Get => "GET one ConfigMap",
            Op::List => "LIST 100 ConfigMaps",
            Op::Create => "CREATE a ConfigMap",
            Op::Denied => "GET a Secret (denied: 403)",
        }
    }
}

/// Runs `n` requests of `op`, `CONCURRENCY` at a time; returns each one's latency.
async fn measure(client: &Client, op: Op, n: usize, seq: &mut usize) -> Result<Vec<Duration>> {
    let start = *seq;
    *seq += n;
    let results: Vec<Result<Duration>> = stream::iter(start..start + n)
        .map(|i| {
            let client = client.clone();
            async move {
                let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
                let t = Instant::now();
                match op {
                    Op::Get => {
                        cms.get(&format!("cm-{}", i % 100)).await?;
                    }
                    Op::List => {
                        cms.list(&ListParams::default()).await?;
                    }
                    Op::Create => {
                        let cm: ConfigMap = serde_json::from_value(
                            json!({"metadata": {"name": format!("new-{i}")}, "data": {"k": "v"}}),
                        )?;
                        cms.create(&PostParams::default(), &cm).await?;
                    }
                    Op::Denied => {
                        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
                            Api::namespaced(client, NAMESPACE);
                        match secrets.get("nope").await {
                            Err(kube::Error::Api(e)) if e.code == 403 => {}
                            other => bail!("expected 403, got {other:?}"),
                        }
                    }
                }
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Row {
    op: Op,
    allow: Vec<Duration>,
    rbac: Vec<Duration>,
}

async fn run(sizes: &Sizes) -> Result<(Vec<Row>, Duration)> {
    let skiff = skiff_binary()?;
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},{USER},1000\n"))?;
    let common = [
        "--disable-scheduler",
        "--disable-controller-manager",
        "--token-auth-file",
        tokens.to_str().context("temp path is not UTF-8")?,
    ];
    let start = |mode: &'static str| {
        let mut extra: Vec<&str> = common.to_vec();
        extra.extend(["--authorization-mode", mode]);
        let skiff = skiff.clone();
        async move {
            let extra = extra;
            Server::start(&skiff, None, &extra).await.map(|(s, _)| s)
        }
    };
    let allow = start("AlwaysAllow").await?;
    let rbac = start("Node,RBAC").await?;
    let populate_started = Instant::now();
    populate(&allow.client().await?, sizes).await?;
    populate(&rbac.client().await?, sizes).await?;
    let populated = populate_started.elapsed();
    let (allow_client, rbac_client) = (token_client(&allow).await?, token_client(&rbac).await?);
    // Warm both (connections, caches) and check the user is allowed on both.
    let mut seq_a = 0;
    let mut seq_r = 0;
    measure(&allow_client, Op::Get, 50, &mut seq_a).await?;
    measure(&rbac_client, Op::Get, 50, &mut seq_r).await?;
    let mut rows: Vec<Row> = [Op::Get, Op::List, Op::Create, Op::Denied]
        .into_iter()
        .map(|op| Row {
            op,
            allow: Vec::new(),
            rbac: Vec::new(),
        })
        .collect();
    for round in 0..sizes.rounds {
        for row in rows.iter_mut() {
            let n = if row.op == Op::List {
                sizes.per_round / 4
            } else {
                sizes.per_round
            };
            // Alternate which server goes first, so neither always runs on a warmer CPU.
            let first_allow = round % 2 == 0;
            for turn in 0..2 {
                let on_allow = (turn == 0) == first_allow;
                if on_allow && row.op != Op::Denied {
                    row.allow
                        .extend(measure(&allow_client, row.op, n, &mut seq_a).await?);
                } else if !on_allow {
                    row.rbac
                        .extend(measure(&rbac_client, row.op, n, &mut seq_r).await?);
                }
            }
        }
    }
    for row in rows.iter_mut() {
        row.allow.sort();
        row.rbac.sort();
    }
    Ok((rows, populated))
}

fn render(
    sizes: &Sizes,
    rows: &[Row],
    populated: Duration,
    load: (&str, &str),
    quick: bool,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Policy on each server: {} Roles + {} RoleBindings, {} ClusterRoles + {} ClusterRoleBindings for other users (created on both in {:.1} s), besides the default policy.\n\n",
        sizes.roles, sizes.roles, sizes.cluster_roles, sizes.cluster_roles, populated.as_secs_f64()
    ));
    out.push_str("| Request (token user, 8 concurrent) | Requests | AlwaysAllow p50 | AlwaysAllow p99 | Node,RBAC p50 | Node,RBAC p99 |\n|---|---|---|---|---|---|\n");
    for row in rows {
        let cell = |v: &[Duration], p: f64| {
            if v.is_empty() {
                "—".to_string()
            } else {
                ms(percentile(v, p))
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.op.label(),
            row.rbac.len(),
            cell(&row.allow, 0.5),
            cell(&row.allow, 0.99),
            cell(&row.rbac, 0.5),
            cell(&row.rbac, 0.99),
        ));
    }
    // The repository root: the pathspec below is relative to it.
    out.push_str(&skiff_loadgen::sections::provenance(
        load.0, load.1, quick, RERUN,
    ));
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = BenchArgs::from_env("skiff-authzbench")?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes = if args.quick {
        Sizes {
            roles: 200,
            cluster_roles: 20,
            rounds: 2,
            per_round: 200,
        }
    } else {
        Sizes {
            roles: 1000,
            cluster_roles: 100,
            rounds: 5,
            per_round: 1000,
        }
    };
    let before = load_average();
    let (rows, populated) = run(&sizes).await?;
    let after = load_average();
    let section = render(&sizes, &rows, populated, (&before, &after), args.quick);
    println!("{section}");
    if let Some(file) = args.write {
        skiff_loadgen::sections::write(&file, BEGIN, END, DESCRIPTION, &section)?;
        println!("wrote the authorization section of {}", file.display());
    }
    Ok(())
}
