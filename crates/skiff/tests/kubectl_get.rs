//! kubectl get in every output format, selectors, pagination, watch, and describe, against
//! the real `skiff server`.

mod support;

use std::time::Duration;

use support::{eventually, Server};

fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.25\n"
    )
}

/// Three pods: a (app=web, tier=front), b (app=web, tier=back), c (app=db).
fn three_pods() -> Server {
    let server = Server::start();
    let all = [
        pod("a", "app: web, tier: front"),
        pod("b", "app: web, tier: back"),
        pod("c", "app: db"),
    ]
    .join("---\n");
    server.ok_stdin(&["create", "-f", "-"], &all);
    server
}

fn names(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn default_table_has_upstream_headers() {
    let server = three_pods();
    let out = server.ok(&["get", "pods"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["a", "0/1", "Pending", "0"], "{out}");
    assert_eq!(lines.count(), 2, "{out}");
}

#[test]
fn wide_and_show_labels() {
    let server = three_pods();
    let out = server.ok(&["get", "pods", "-o", "wide", "--show-labels"]);
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("IP")
            && header.contains("NODE")
            && header.contains("NOMINATED NODE")
            && header.contains("READINESS GATES")
            && header.ends_with("LABELS"),
        "{out}"
    );
    let a = out.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(a.ends_with("app=web,tier=front"), "{out}");
}

#[test]
fn json_yaml_and_name() {
    let server = three_pods();
    let list = server.get_json(&["get", "pods"]);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list["items"][0]["kind"], "Pod");
    let one = server.get_json(&["get", "pod", "a"]);
    assert_eq!(one["kind"], "Pod");
    assert_eq!(one["apiVersion"], "v1");
    assert_eq!(one["spec"]["restartPolicy"], "Always");
    assert!(one["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    let yaml = server.ok(&["get", "pod", "a", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: v1\nkind: Pod\n"), "{yaml}");
    assert!(yaml.contains("\n  name: a\n"), "{yaml}");
    let out = server.ok(&["get", "pods", "-o", "name"]);
    assert_eq!(out, "pod/a\npod/b\npod/c\n");
}

#[test]
fn jsonpath_custom_columns_and_go_template() {
    let server = three_pods();
    let out = server.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(out, "a b c");
    let out = server.ok(&[
        "get",
        "pod",
        "a",
        "-o",
        "jsonpath={.metadata.labels.tier}/{.spec.containers[0].image}",
    ]);
    assert_eq!(out, "front/nginx:1.25");
    let out = server.ok(&[
        "get",
        "pods",
        "-o",
        "custom-columns=N:.metadata.name,TIER:.metadata.labels.tier",
    ]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["N", "TIER"],
            vec!["a", "front"],
            vec!["b", "back"],
            vec!["c", "<none>"]
        ]
    );
    let out = server.ok(&[
        "get",
        "pods",
        "-o",
        "go-template={{range .items}}{{.metadata.name}}={{.spec.dnsPolicy}};{{end}}",
    ]);
    assert_eq!(out, "a=ClusterFirst;b=ClusterFirst;c=ClusterFirst;");
}

#[test]
fn label_selectors() {
    let server = three_pods();
    let sel = |s: &str| names(&server.ok(&["get", "pods", "-l", s, "-o", "name"]));
    assert_eq!(sel("app=web"), ["pod/a", "pod/b"]);
    assert_eq!(sel("app!=web"), ["pod/c"]);
    assert_eq!(sel("tier in (front,middle)"), ["pod/a"]);
    assert_eq!(sel("tier notin (front)"), ["pod/b", "pod/c"]);
    assert_eq!(sel("tier"), ["pod/a", "pod/b"]);
    assert_eq!(sel("!tier"), ["pod/c"]);
    assert_eq!(sel("app=web,tier=back"), ["pod/b"]);
    let out = server.kubectl(&["get", "pods", "-l", "app=nothing"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn field_selector_and_all_namespaces() {
    let server = three_pods();
    let out = server.ok(&[
        "get",
        "pods",
        "--field-selector",
        "metadata.name=b",
        "-o",
        "name",
    ]);
    assert_eq!(out, "pod/b\n");
    let out = server.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending,metadata.name!=b",
        "-o",
        "name",
    ]);
    assert_eq!(names(&out), ["pod/a", "pod/c"]);
    let err = server.fails(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n",
    );
    server.ok_stdin(&["create", "-n", "other", "-f", "-"], &pod("d", "app: web"));
    let out = server.ok(&["get", "pods", "-A"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["other", "d"])),
        "{out}"
    );
    assert_eq!(out.lines().count(), 5, "{out}");
    assert_eq!(server.ok(&["get", "pods", "-o", "name"]).lines().count(), 3);
}

#[test]
fn missing_object_and_unknown_resource() {
    let server = Server::start();
    let err = server.fails(&["get", "pods", "nope"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): pods "nope" not found"#
    );
    let err = server.fails(&["get", "foos"]);
    assert!(
        err.contains(r#"error: the server doesn't have a resource type "foos""#),
        "{err}"
    );
}

#[test]
fn raw_list_pagination_follows_continue_tokens() {
    let server = three_pods();
    let mut seen = Vec::new();
    let mut path = "/api/v1/namespaces/default/pods?limit=1".to_string();
    for _ in 0..5 {
        let page: serde_json::Value =
            serde_json::from_str(&server.ok(&["get", "--raw", &path])).unwrap();
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{page}");
        seen.push(items[0]["metadata"]["name"].as_str().unwrap().to_string());
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => {
                assert!(page["metadata"]["remainingItemCount"].as_i64().unwrap() >= 1);
                path = format!("/api/v1/namespaces/default/pods?limit=1&continue={token}");
            }
            _ => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c"]);
    // kubectl itself pages with --chunk-size.
    let out = server.ok(&["get", "pods", "--chunk-size=1", "-o", "name"]);
    assert_eq!(out, "pod/a\npod/b\npod/c\n");
}

#[test]
fn get_watch_prints_new_rows_and_events() {
    let server = three_pods();
    let mut plain = server.kubectl_background(&["get", "pods", "--watch"]);
    let mut events = server.kubectl_background(&["get", "pods", "-w", "--output-watch-events"]);
    eventually(Duration::from_secs(10), "initial rows", || {
        plain.stdout().lines().count() >= 4 && events.stdout().lines().count() >= 4
    });
    assert!(events.stdout().starts_with("EVENT"), "{}", events.stdout());
    server.ok_stdin(&["create", "-f", "-"], &pod("late", "app: new"));
    eventually(Duration::from_secs(10), "a row for the new pod", || {
        plain.stdout().lines().any(|l| l.starts_with("late "))
    });
    eventually(Duration::from_secs(10), "an ADDED event", || {
        events
            .stdout()
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["ADDED", "late"]))
    });
    server.ok(&["label", "pod", "late", "x=y"]);
    eventually(Duration::from_secs(10), "a MODIFIED event", || {
        events
            .stdout()
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["MODIFIED", "late"]))
    });
    server.ok(&["delete", "pod", "late", "--grace-period=0", "--force"]);
    eventually(Duration::from_secs(10), "a DELETED event", || {
        events
            .stdout()
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["DELETED", "late"]))
    });
    assert!(plain.try_wait().is_none(), "{}", plain.stderr());
    assert!(events.try_wait().is_none(), "{}", events.stderr());
}

#[test]
fn describe_pod_and_service() {
    let server = three_pods();
    let out = server.ok(&["describe", "pod", "a"]);
    // kubectl aligns values to its longest label, which depends on what the pod has
    // (e.g. "Service Account:"), so compare with runs of spaces collapsed.
    let squash = |s: &str| {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let squashed = squash(&out);
    for want in [
        "Name: a",
        "Namespace: default",
        "Service Account: default",
        "Labels: app=web",
        "tier=front",
        "Status: Pending",
        "Image: nginx:1.25",
        // ServiceAccount admission mounts the token volume, as upstream's.
        "/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-",
        // The API server's DefaultTolerationSeconds admission adds these, as upstream's.
        "QoS Class: BestEffort",
        "Tolerations: node.kubernetes.io/not-ready:NoExecute op=Exists for 300s",
    ] {
        assert!(squashed.contains(want), "{want:?} missing from:\n{out}");
    }
    server.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n    targetPort: 8080\n",
    );
    let out = server.ok(&["describe", "service", "web"]);
    for want in [
        "Name:                     web",
        "Selector:                 app=web",
        "Type:                     ClusterIP",
        "IP Family Policy:         SingleStack",
        "IP Families:              IPv4",
        "IP:                       10.43.",
        "Port:                     <unset>  80/TCP",
        "TargetPort:               8080/TCP",
        "Session Affinity:         None",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
}
