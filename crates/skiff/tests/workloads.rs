//! Workload resources against the real `skiff server` and the real `kubectl`: upstream's
//! defaults, validation errors, `kubectl get` columns, and serving one object in two
//! versions (autoscaling/v1 + v2 HPAs, core/v1 + events.k8s.io/v1 Events).

mod support;

use support::Server;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: d
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
";

/// One of each workload kind.
const WORKLOADS: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: rs
spec:
  selector:
    matchLabels: {app: rs}
  template:
    metadata:
      labels: {app: rs}
    spec:
      containers: [{name: c, image: nginx:1.25}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: sts
spec:
  serviceName: sts
  selector:
    matchLabels: {app: sts}
  template:
    metadata:
      labels: {app: sts}
    spec:
      containers: [{name: c, image: nginx:1.25}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds
spec:
  selector:
    matchLabels: {app: ds}
  template:
    metadata:
      labels: {app: ds}
    spec:
      containers: [{name: c, image: nginx:1.25}]
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: rc
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: rc}
    spec:
      containers: [{name: c, image: nginx:1.25}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: pdb
spec:
  minAvailable: 1
  selector:
    matchLabels: {app: web}
";

/// A Job, a CronJob and the autoscaling/v1 HPA `kubectl autoscale deployment d --max=5
/// --cpu-percent=80` makes, as manifests (kubectl's imperative commands send protobuf
/// bodies; `imperative_commands_*` below covers those).
const BATCH_AND_HPA: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: j
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: j, image: busybox}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: c
spec:
  schedule: \"*/5 * * * *\"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox}]
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: d
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}
  maxReplicas: 5
  targetCPUUtilizationPercentage: 80
";

/// The HPA in each version. Fully spelled out: kubectl (client-go 1.33) drops the version
/// when it expands a short name, so `hpa.v1.autoscaling` asks for the preferred version.
const HPA_V1: &str = "horizontalpodautoscalers.v1.autoscaling";
const HPA_V2: &str = "horizontalpodautoscalers.v2.autoscaling";

fn create(server: &Server, manifest: &str) {
    server.ok_stdin(&["create", "--validate=false", "-f", "-"], manifest);
}

fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn deployment_without_strategy_gets_upstream_defaults() {
    let server = Server::start();
    create(&server, DEPLOYMENT);
    let surge = server.ok(&[
        "get",
        "deploy",
        "d",
        "-o",
        "jsonpath={.spec.strategy.rollingUpdate.maxSurge}",
    ]);
    assert_eq!(surge, "25%");
    let d = server.get_json(&["get", "deploy", "d"]);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "25%"
    );
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn every_workload_kind_prints_upstream_columns() {
    // The API server's defaults, columns and field selectors as stored: no control loops
    // (they would move the status counts this checks; control_loops.rs tests those).
    let server = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    create(&server, DEPLOYMENT);
    create(&server, WORKLOADS);
    create(&server, BATCH_AND_HPA);

    let out = server.ok(&["get", "deploy,rs,sts,ds,jobs,cronjobs,rc,hpa,pdb"]);
    // kubectl prints one table per kind, separated by blank lines.
    let tables: Vec<&str> = out.split("\n\n").filter(|t| !t.trim().is_empty()).collect();
    let want: &[&[&str]] = &[
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        &["NAME", "READY", "AGE"],
        &[
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        &[
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE",
        ],
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        &[
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ],
        &[
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ],
    ];
    assert_eq!(tables.len(), want.len(), "{out}");
    for (table, want) in tables.iter().zip(want) {
        assert_eq!(header(table), *want, "{table}");
    }
    assert!(out.contains("deployment.apps/d   0/1"), "{out}");
    assert!(out.contains("statefulset.apps/sts   0/1"), "{out}");
    assert!(out.contains("job.batch/j   Running   0/1"), "{out}");
    assert!(
        out.contains("cronjob.batch/c   */5 * * * *   <none>     False     0        <none>"),
        "{out}"
    );
    assert!(out.contains("replicationcontroller/rc   2 "), "{out}");
    assert!(
        out.contains("Deployment/d   cpu: <unknown>/80%   1         5         0"),
        "{out}"
    );
    assert!(
        out.contains("poddisruptionbudget.policy/pdb   1               N/A"),
        "{out}"
    );

    let wide = server.ok(&["get", "deploy", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(wide.contains("web          nginx:1.25   app=web"), "{wide}");

    // The RC took its selector and labels from its template; a Job its generated selector.
    let rc = server.get_json(&["get", "rc", "rc"]);
    assert_eq!(rc["spec"]["selector"]["app"], "rc");
    assert_eq!(rc["metadata"]["labels"]["app"], "rc");
    let job = server.get_json(&["get", "job", "j"]);
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "j"
    );
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["completionMode"], "NonIndexed");
    let cj = server.get_json(&["get", "cronjob", "c"]);
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    let sts = server.get_json(&["get", "sts", "sts"]);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0
    );

    // Field selectors upstream supports for these kinds.
    let names = server.ok(&[
        "get",
        "rs",
        "--field-selector",
        "status.replicas=0",
        "-o",
        "name",
    ]);
    assert_eq!(names.trim(), "replicaset.apps/rs");
    let none = server.ok(&[
        "get",
        "jobs",
        "--field-selector",
        "status.successful=1",
        "-o",
        "name",
    ]);
    assert_eq!(none.trim(), "");
}

#[test]
fn invalid_workloads_are_422_with_field_paths() {
    let server = Server::start();
    let bad = DEPLOYMENT.replace("matchLabels: {app: web}", "matchLabels: {app: db}");
    let out = server.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(&bad));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "The Deployment \"d\" is invalid: spec.template.metadata.labels: Invalid value:"
        ),
        "{err}"
    );
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    // The same request on the wire: a 422 Invalid Status with the field as a cause.
    let raw = server.kubectl_stdin(
        &["create", "--validate=false", "-f", "-", "-v=8"],
        Some(&bad),
    );
    let log = String::from_utf8_lossy(&raw.stderr);
    assert!(log.contains("422 Unprocessable Entity"), "{log}");

    let bad_schedule = BATCH_AND_HPA
        .split("---\n")
        .nth(1)
        .unwrap()
        .replace("*/5 * * * *", "61 * * * *");
    let out = server.kubectl_stdin(
        &["create", "--validate=false", "-f", "-"],
        Some(&bad_schedule),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59)"
        ),
        "{err}"
    );

    // Selectors cannot change after creation.
    create(&server, DEPLOYMENT);
    let err = server.fails(&[
        "patch",
        "deploy",
        "d",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"web","v":"2"}},"template":{"metadata":{"labels":{"v":"2"}}}}}"#,
    ]);
    assert!(err.contains("spec.selector: Invalid value"), "{err}");
    assert!(err.contains("field is immutable"), "{err}");
}

#[test]
fn hpa_is_served_as_autoscaling_v1_and_v2() {
    let server = Server::start();
    create(&server, DEPLOYMENT);
    create(&server, BATCH_AND_HPA.split("---\n").nth(2).unwrap());

    let v1 = server.ok(&["get", HPA_V1, "d", "-o", "yaml"]);
    assert!(v1.contains("apiVersion: autoscaling/v1"), "{v1}");
    assert!(v1.contains("targetCPUUtilizationPercentage: 80"), "{v1}");
    assert!(v1.contains("maxReplicas: 5"), "{v1}");

    let v2 = server.get_json(&["get", HPA_V2, "d"]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    let metric = &v2["spec"]["metrics"][0];
    assert_eq!(metric["type"], "Resource");
    assert_eq!(metric["resource"]["name"], "cpu");
    assert_eq!(metric["resource"]["target"]["averageUtilization"], 80);
    assert_eq!(v2["spec"]["minReplicas"], 1);

    // A write through v1 shows in v2: one object, two views.
    server.ok(&[
        "patch",
        HPA_V1,
        "d",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":50}}"#,
    ]);
    let v2 = server.get_json(&["get", HPA_V2, "d"]);
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    let lists = server.get_json(&["get", HPA_V1]);
    assert_eq!(lists["items"][0]["apiVersion"], "autoscaling/v1");
    assert_eq!(
        lists["items"][0]["spec"]["targetCPUUtilizationPercentage"],
        50
    );

    // Watches through v1 carry v1 objects.
    let watch = server.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1&timeoutSeconds=1",
    ]);
    let event: serde_json::Value =
        serde_json::from_str(watch.lines().next().unwrap_or("")).expect("a watch event");
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(
        event["object"]["spec"]["targetCPUUtilizationPercentage"],
        50
    );

    let table = server.ok(&["get", HPA_V1]);
    assert!(table.contains("cpu: <unknown>/50%"), "{table}");
}

#[test]
fn events_are_served_as_core_and_events_k8s_io() {
    let server = Server::start();
    let empty = server.kubectl(&["get", "events"]);
    assert!(empty.status.success());
    create(
        &server,
        "apiVersion: v1
kind: Event
metadata:
  name: web.1
involvedObject: {kind: Pod, name: web, namespace: default}
reason: Started
message: Started container web
type: Normal
source: {component: kubelet, host: node-1}
firstTimestamp: \"2026-01-01T00:00:00Z\"
lastTimestamp: \"2026-01-01T00:00:00Z\"
count: 2
",
    );
    create(
        &server,
        "apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: d.1
eventTime: \"2026-01-01T00:00:00.000000Z\"
reportingController: example.com/scaler
reportingInstance: scaler-1
action: Scale
reason: Scaled
regarding: {kind: Deployment, name: d, namespace: default}
note: scaled up
type: Normal
",
    );
    let out = server.ok(&["get", "events"]);
    assert_eq!(
        header(&out),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(out.contains("Normal   Started   pod/web"), "{out}");
    assert!(out.contains("deployment/d"), "{out}");

    // The core Event read through events.k8s.io, and the other way round.
    let ev = server.get_json(&["get", "events.v1.events.k8s.io", "web.1"]);
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["note"], "Started container web");
    assert_eq!(ev["regarding"]["name"], "web");
    assert_eq!(ev["deprecatedCount"], 2);
    let core = server.get_json(&["get", "events.v1.", "d.1"]);
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "scaled up");
    assert_eq!(core["involvedObject"]["kind"], "Deployment");
    assert_eq!(core["reportingComponent"], "example.com/scaler");

    let picked = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(picked.trim(), "event/web.1");

    // events.k8s.io wants its own fields on create.
    let err = server
        .kubectl_stdin(
            &["create", "--validate=false", "-f", "-"],
            Some(
                "apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: e.2
reason: Scaled
type: Normal
",
            ),
        )
        .stderr;
    let err = String::from_utf8_lossy(&err);
    assert!(
        err.contains("The Event \"e.2\" is invalid: eventTime: Required value"),
        "{err}"
    );
}

/// `kubectl create job|cronjob` and `kubectl autoscale` (typed clients: protobuf bodies).
#[test]
fn imperative_commands_create_jobs_cronjobs_and_hpas() {
    let server = Server::start();
    create(&server, DEPLOYMENT);
    let out = server.ok(&[
        "autoscale",
        "deployment",
        "d",
        "--max=5",
        "--cpu-percent=80",
    ]);
    assert_eq!(
        out.trim(),
        "horizontalpodautoscaler.autoscaling/d autoscaled"
    );
    let v1 = server.get_json(&["get", HPA_V1, "d"]);
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 80);
    let v2 = server.get_json(&["get", HPA_V2, "d"]);
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    let out = server.ok(&["create", "job", "j", "--image=busybox"]);
    assert_eq!(out.trim(), "job.batch/j created");
    let out = server.ok(&[
        "create",
        "cronjob",
        "c",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(out.trim(), "cronjob.batch/c created");
    let cj = server.get_json(&["get", "cj", "c"]);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    // A Job made from the CronJob (as the controller or `kubectl create job --from` would).
    let out = server.ok(&["create", "job", "manual", "--from=cronjob/c"]);
    assert_eq!(out.trim(), "job.batch/manual created");
}
