//! Hooks of the replicated workloads: apps/v1 Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, ControllerRevision, and core/v1 ReplicationController. Defaults, validation,
//! field selectors and `kubectl get` columns follow upstream.

use serde_json::{json, Value};
use skiff_api::{FieldError, FieldErrors};

use super::workload::*;
use super::{Column, Context, Hooks};

const ALWAYS: &[&str] = &["Always"];

fn containers_column() -> Column {
    Column::wide(
        "Containers",
        "string",
        "Names of each container in the template.",
    )
}

fn images_column() -> Column {
    Column::wide(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    )
}

fn selector_column() -> Column {
    Column::wide(
        "Selector",
        "string",
        "Label query over the pods this object manages.",
    )
}

/// The checks Deployment, ReplicaSet, StatefulSet and DaemonSet share: selector present,
/// non-empty and matching the template, template valid for an always-running pod.
fn validate_controller_spec(obj: &Value, kind: &str, title: &str) -> FieldErrors {
    let mut errs = validate_name(obj);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(obj, "/spec/replicas", "spec.replicas", &mut errs);
    non_negative(
        obj,
        "/spec/minReadySeconds",
        "spec.minReadySeconds",
        &mut errs,
    );
    non_negative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        &mut errs,
    );
    let selector = validate_selector(spec.get("selector"), "spec.selector", kind, &mut errs);
    let template = spec.get("template");
    validate_template(
        template,
        selector.as_ref(),
        "spec.template",
        ALWAYS,
        &mut errs,
    );
    forbid_deadline(template, "spec.template", title, &mut errs);
    errs
}

pub struct Deployments;

impl Hooks for Deployments {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_deployment(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_deployment(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_controller_spec(obj, "deployment", "ReplicaSet");
        let strategy = obj.pointer("/spec/strategy").unwrap_or(&Value::Null);
        match strategy.get("type").and_then(Value::as_str) {
            Some("Recreate") => {
                if strategy.get("rollingUpdate").is_some_and(|r| !r.is_null()) {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            Some("RollingUpdate") => {
                validate_rolling_update(strategy, "spec.strategy.rollingUpdate", &mut errs);
            }
            _ => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                strategy.get("type").unwrap_or(&Value::Null),
                &["Recreate", "RollingUpdate"],
            )),
        }
        non_negative(
            obj,
            "/spec/progressDeadlineSeconds",
            "spec.progressDeadlineSeconds",
            &mut errs,
        );
        if let Some(deadline) = obj
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
        {
            if deadline <= int_at(obj, "/spec/minReadySeconds") {
                errs.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(deadline),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/spec/selector", "spec.selector", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Ready", "string", "Number of the pod with ready state"),
            Column::new("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            Column::new("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            Column::age_column(),
            containers_column(),
            images_column(),
            selector_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let (names, images) =
            containers_cells(obj.pointer("/spec/template").unwrap_or(&Value::Null));
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int_at(obj, "/status/readyReplicas"),
                int_at(obj, "/spec/replicas")
            )),
            json!(int_at(obj, "/status/updatedReplicas")),
            json!(int_at(obj, "/status/availableReplicas")),
            age_cell(obj),
            names,
            images,
            json!(selector_cell(obj.pointer("/spec/selector"))),
        ]
    }
}

/// Upstream's SetDefaults_Deployment, plus the pod template's defaults.
pub(crate) fn default_deployment(obj: &mut Value) {
    default_spec_template(obj);
    let spec = object_at(obj, "spec");
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    let strategy = object_at(spec, "strategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = object_at(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!("25%"));
        set_default(ru, "maxSurge", json!("25%"));
    }
}

pub struct ReplicaSets;

impl Hooks for ReplicaSets {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_spec_template(obj);
        set_default(&mut obj["spec"], "replicas", json!(1));
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_spec_template(new);
        set_default(&mut new["spec"], "replicas", json!(1));
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        // Upstream's message names "deployment" for ReplicaSets too.
        validate_controller_spec(obj, "deployment", "ReplicaSet")
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/spec/selector", "spec.selector", &mut errs);
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "status.replicas",
            int_at(obj, "/status/replicas").to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        replica_columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        replica_row(obj, json!(selector_cell(obj.pointer("/spec/selector"))))
    }
}

fn replica_columns() -> Vec<Column> {
    vec![
        Column::name_column(),
        Column::new(
            "Desired",
            "integer",
            "Replicas is the number of desired replicas.",
        ),
        Column::new(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
        ),
        Column::new(
            "Ready",
            "integer",
            "The number of ready replicas for this replica set.",
        ),
        Column::age_column(),
        containers_column(),
        images_column(),
        selector_column(),
    ]
}

fn replica_row(obj: &Value, selector: Value) -> Vec<Value> {
    let (names, images) = containers_cells(obj.pointer("/spec/template").unwrap_or(&Value::Null));
    vec![
        name_cell(obj),
        json!(obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)),
        json!(int_at(obj, "/status/replicas")),
        json!(int_at(obj, "/status/readyReplicas")),
        age_cell(obj),
        names,
        images,
        selector,
    ]
}

pub struct ReplicationControllers;

/// Upstream's SetDefaults_ReplicationController: the selector and the object's labels come
/// from the template's labels when unset; one replica.
fn default_rc(obj: &mut Value) {
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let spec = object_at(obj, "spec");
    set_default(spec, "replicas", json!(1));
    if let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) {
        default_template(template);
    }
    if let Some(labels) = labels {
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            spec["selector"] = labels.clone();
        }
        let m = skiff_api::meta::metadata_mut(obj);
        if m.get("labels")
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty())
        {
            m.insert("labels".into(), labels);
        }
    }
}

impl Hooks for ReplicationControllers {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_rc(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_rc(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_name(obj);
        non_negative(obj, "/spec/replicas", "spec.replicas", &mut errs);
        non_negative(
            obj,
            "/spec/minReadySeconds",
            "spec.minReadySeconds",
            &mut errs,
        );
        let selector = obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty());
        let selector = match selector {
            None => {
                errs.push(FieldError::required("spec.selector", ""));
                None
            }
            Some(m) => {
                let mut s = skiff_api::selector::LabelSelector::everything();
                for (k, v) in m {
                    let one = format!("{k}={}", v.as_str().unwrap_or(""));
                    if let Ok(r) = skiff_api::selector::LabelSelector::parse(&one) {
                        s.requirements.extend(r.requirements);
                    }
                }
                Some(s)
            }
        };
        let template = obj.pointer("/spec/template");
        validate_template(
            template,
            selector.as_ref(),
            "spec.template",
            ALWAYS,
            &mut errs,
        );
        forbid_deadline(
            template,
            "spec.template",
            "ReplicationController",
            &mut errs,
        );
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "status.replicas",
            int_at(obj, "/status/replicas").to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        replica_columns()
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        replica_row(obj, json!(labels_cell(obj.pointer("/spec/selector"))))
    }
}

pub struct StatefulSets;

fn default_statefulset(obj: &mut Value) {
    default_spec_template(obj);
    let spec = object_at(obj, "spec");
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = object_at(spec, "updateStrategy");
    if strategy.get("type").is_none_or(Value::is_null) {
        strategy["type"] = json!("RollingUpdate");
        set_default(strategy, "rollingUpdate", json!({}));
    }
    if strategy["type"] == "RollingUpdate" {
        if let Some(ru) = strategy.get_mut("rollingUpdate").filter(|r| r.is_object()) {
            set_default(ru, "partition", json!(0));
        }
    }
    let retention = object_at(spec, "persistentVolumeClaimRetentionPolicy");
    set_default(retention, "whenDeleted", json!("Retain"));
    set_default(retention, "whenScaled", json!("Retain"));
    if let Some(claims) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims {
            set_default(claim, "apiVersion", json!("v1"));
            set_default(claim, "kind", json!("PersistentVolumeClaim"));
            set_default(object_at(claim, "spec"), "volumeMode", json!("Filesystem"));
            set_default(claim, "status", json!({"phase": "Pending"}));
        }
    }
}

/// What of a StatefulSet's spec may change after creation.
const STS_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "revisionHistoryLimit",
];

impl Hooks for StatefulSets {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_statefulset(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_statefulset(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_controller_spec(obj, "statefulset", "StatefulSet");
        let policy = obj
            .pointer("/spec/podManagementPolicy")
            .cloned()
            .unwrap_or(Value::Null);
        if !matches!(policy.as_str(), Some("OrderedReady" | "Parallel")) {
            errs.push(FieldError::not_supported(
                "spec.podManagementPolicy",
                &policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        let strategy = obj.pointer("/spec/updateStrategy").unwrap_or(&Value::Null);
        let has_rolling = strategy.get("rollingUpdate").is_some_and(|r| !r.is_null());
        match strategy.get("type").and_then(Value::as_str) {
            Some("OnDelete") if has_rolling => errs.push(FieldError::invalid(
                "spec.updateStrategy.rollingUpdate",
                strategy.get("rollingUpdate").unwrap_or(&Value::Null),
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            Some("OnDelete") => {}
            Some("RollingUpdate") => non_negative(
                obj,
                "/spec/updateStrategy/rollingUpdate/partition",
                "spec.updateStrategy.rollingUpdate.partition",
                &mut errs,
            ),
            _ => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                strategy.get("type").unwrap_or(&Value::Null),
                &["OnDelete", "RollingUpdate"],
            )),
        }
        for (field, path) in [
            (
                "whenDeleted",
                "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
            ),
            (
                "whenScaled",
                "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
            ),
        ] {
            let v = obj.pointer(path).cloned().unwrap_or(Value::Null);
            if !matches!(v.as_str(), Some("Retain" | "Delete")) {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                    &v,
                    &["Retain", "Delete"],
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        let rest = |obj: &Value| {
            let mut spec = obj.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                for k in STS_MUTABLE {
                    m.remove(*k);
                }
            }
            spec
        };
        if rest(new) != rest(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Ready", "string", "Number of the pod with ready state"),
            Column::age_column(),
            containers_column(),
            images_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let (names, images) =
            containers_cells(obj.pointer("/spec/template").unwrap_or(&Value::Null));
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int_at(obj, "/status/readyReplicas"),
                obj.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
            age_cell(obj),
            names,
            images,
        ]
    }
}

pub struct DaemonSets;

fn default_daemonset(obj: &mut Value) {
    default_spec_template(obj);
    let spec = object_at(obj, "spec");
    set_default(spec, "revisionHistoryLimit", json!(10));
    let strategy = object_at(spec, "updateStrategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = object_at(strategy, "rollingUpdate");
        set_default(ru, "maxUnavailable", json!(1));
        set_default(ru, "maxSurge", json!(0));
    }
}

impl Hooks for DaemonSets {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_daemonset(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_daemonset(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_controller_spec(obj, "daemonset", "DaemonSet");
        let strategy = obj.pointer("/spec/updateStrategy").unwrap_or(&Value::Null);
        match strategy.get("type").and_then(Value::as_str) {
            Some("OnDelete") => {}
            Some("RollingUpdate") => {
                validate_rolling_update(strategy, "spec.updateStrategy.rollingUpdate", &mut errs);
            }
            _ => errs.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                strategy.get("type").unwrap_or(&Value::Null),
                &["OnDelete", "RollingUpdate"],
            )),
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/spec/selector", "spec.selector", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
            Column::new("Current", "integer", "The number of nodes that are running at least one daemon pod and are supposed to run the daemon pod."),
            Column::new("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            Column::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod."),
            Column::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            Column::new("Node Selector", "string", "A selector which must be true for the pod to fit on a node."),
            Column::age_column(),
            containers_column(),
            images_column(),
            selector_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let template = obj.pointer("/spec/template").unwrap_or(&Value::Null);
        let (names, images) = containers_cells(template);
        vec![
            name_cell(obj),
            json!(int_at(obj, "/status/desiredNumberScheduled")),
            json!(int_at(obj, "/status/currentNumberScheduled")),
            json!(int_at(obj, "/status/numberReady")),
            json!(int_at(obj, "/status/updatedNumberScheduled")),
            json!(int_at(obj, "/status/numberAvailable")),
            json!(labels_cell(template.pointer("/spec/nodeSelector"))),
            age_cell(obj),
            names,
            images,
            json!(selector_cell(obj.pointer("/spec/selector"))),
        ]
    }
}

pub struct ControllerRevisions;

impl Hooks for ControllerRevisions {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_name(obj);
        if obj.get("data").is_none_or(Value::is_null) {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        non_negative(obj, "/revision", "revision", &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        immutable(new, old, "/data", "data", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Controller", "string", "Controller of the object"),
            Column::new(
                "Revision",
                "string",
                "Revision indicates the revision of the state represented by Data.",
            ),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let controller = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == json!(true))
            .map(|r| {
                let group = str_at(r, "/apiVersion")
                    .rsplit_once('/')
                    .map_or("", |(g, _)| g);
                let kind = str_at(r, "/kind");
                let gk = if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}.{group}")
                };
                format!("{}/{}", gk.to_lowercase(), str_at(r, "/name"))
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            name_cell(obj),
            json!(controller),
            json!(int_at(obj, "/revision")),
            age_cell(obj),
        ]
    }
}

/// A rolling update's maxUnavailable/maxSurge (Deployment and DaemonSet): each an int or
/// a percentage, not both zero, maxUnavailable at most 100%.
fn validate_rolling_update(strategy: &Value, p: &str, errs: &mut FieldErrors) {
    let ru = strategy.get("rollingUpdate").unwrap_or(&Value::Null);
    let (unavailable, surge) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
    int_or_percent(unavailable, &format!("{p}.maxUnavailable"), errs);
    int_or_percent(surge, &format!("{p}.maxSurge"), errs);
    if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
        errs.push(FieldError::invalid(
            format!("{p}.maxUnavailable"),
            unavailable.unwrap_or(&json!(0)),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    not_over_100_percent(unavailable, &format!("{p}.maxUnavailable"), errs);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named change to a valid object and the error it must cause.
    type Case = (&'static str, fn(&mut Value), &'static str);

    use super::super::test_ctx as ctx;

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}})
    }

    fn errors(hooks: &dyn Hooks, obj: &Value) -> Vec<String> {
        hooks
            .validate(obj, &ctx())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn deployment_defaults_match_upstream() {
        let mut d = deployment();
        Deployments.prepare_create(&mut d, &ctx());
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(
            errors(&Deployments, &d).is_empty(),
            "{:?}",
            errors(&Deployments, &d)
        );
        // Recreate gets no rollingUpdate.
        let mut r = deployment();
        r["spec"]["strategy"] = json!({"type": "Recreate"});
        Deployments.prepare_create(&mut r, &ctx());
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn deployment_validation_errors_name_the_field() {
        let cases: Vec<Case> = vec![
            ("selector not matching labels", |d| d["spec"]["selector"] = json!({"matchLabels": {"app": "db"}}),
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"),
            ("missing selector", |d| { d["spec"].as_object_mut().unwrap().remove("selector"); },
                "spec.selector: Required value"),
            ("empty selector", |d| d["spec"]["selector"] = json!({}),
                "spec.selector: Invalid value: {}: empty selector is invalid for deployment"),
            ("negative replicas", |d| d["spec"]["replicas"] = json!(-1),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            ("bad strategy", |d| d["spec"]["strategy"] = json!({"type": "Blue"}),
                "spec.strategy.type: Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\""),
            ("both zero", |d| d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"),
            ("never restart", |d| d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never"),
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""),
            ("no containers", |d| d["spec"]["template"]["spec"]["containers"] = json!([]),
                "spec.template.spec.containers: Required value"),
            ("deadline", |d| d["spec"]["progressDeadlineSeconds"] = json!(5),
                "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"),
        ];
        for (name, change, want) in cases {
            let mut d = deployment();
            Deployments.prepare_create(&mut d, &ctx());
            change(&mut d);
            if name == "deadline" {
                d["spec"]["minReadySeconds"] = json!(10);
            }
            let errs = errors(&Deployments, &d);
            assert!(errs.iter().any(|e| e == want), "{name}: {errs:?}");
        }
    }

    #[test]
    fn selectors_are_immutable() {
        let mut old = deployment();
        Deployments.prepare_create(&mut old, &ctx());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        new["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        let errs: Vec<String> = Deployments
            .validate_update(&new, &old, &ctx())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            ["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"v\":\"2\"}}: field is immutable"]
        );
    }

    #[test]
    fn deployment_rows() {
        let mut d = deployment();
        Deployments.prepare_create(&mut d, &ctx());
        d["spec"]["replicas"] = json!(3);
        d["status"] = json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 1});
        let row = Deployments.row(&d);
        assert_eq!(row.len(), Deployments.columns().len());
        assert_eq!(row[0], "d");
        assert_eq!(row[1], "2/3");
        assert_eq!(row[2], 3);
        assert_eq!(row[3], 1);
        assert_eq!(row[5], "c");
        assert_eq!(row[6], "nginx:1");
        assert_eq!(row[7], "app=web");
    }

    #[test]
    fn replicaset_and_rc_defaults_and_rows() {
        let mut rs = json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}});
        ReplicaSets.prepare_create(&mut rs, &ctx());
        assert_eq!(rs["spec"]["replicas"], 1);
        assert!(errors(&ReplicaSets, &rs).is_empty());
        let row = ReplicaSets.row(&rs);
        assert_eq!(row[1..4], [json!(1), json!(0), json!(0)]);
        assert_eq!(
            ReplicaSets.fields(&rs),
            vec![("status.replicas", "0".to_string())]
        );

        let mut rc = json!({"metadata": {"name": "nginx"}, "spec": {"replicas": 3, "template": template(json!({"app": "nginx"}))}});
        ReplicationControllers.prepare_create(&mut rc, &ctx());
        assert_eq!(rc["spec"]["selector"], json!({"app": "nginx"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "nginx"}));
        assert!(errors(&ReplicationControllers, &rc).is_empty());
        let row = ReplicationControllers.row(&rc);
        assert_eq!(row.len(), ReplicationControllers.columns().len());
        assert_eq!(row[1], 3);
        assert_eq!(row[7], "app=nginx");
        let mut bad = rc.clone();
        bad["spec"]["selector"] = json!({"app": "other"});
        assert_eq!(
            errors(&ReplicationControllers, &bad),
            ["spec.template.metadata.labels: Invalid value: {\"app\":\"nginx\"}: `selector` does not match template `labels`"]
        );
        let no_template = json!({"metadata": {"name": "x"}, "spec": {"selector": {"a": "b"}}});
        assert_eq!(
            errors(&ReplicationControllers, &no_template),
            ["spec.template: Required value"]
        );
    }

    #[test]
    fn statefulset_defaults_validation_and_rows() {
        let mut s = json!({"metadata": {"name": "web"}, "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}});
        StatefulSets.prepare_create(&mut s, &ctx());
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert!(
            errors(&StatefulSets, &s).is_empty(),
            "{:?}",
            errors(&StatefulSets, &s)
        );
        let mut bad = s.clone();
        bad["spec"]["podManagementPolicy"] = json!("Random");
        assert_eq!(
            errors(&StatefulSets, &bad),
            ["spec.podManagementPolicy: Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\""]
        );
        let mut renamed = s.clone();
        renamed["spec"]["serviceName"] = json!("other");
        let errs = StatefulSets
            .validate_update(&renamed, &s, &ctx())
            .to_string();
        assert!(
            errs.starts_with("spec: Forbidden: updates to statefulset spec"),
            "{errs}"
        );
        let mut scaled = s.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(StatefulSets.validate_update(&scaled, &s, &ctx()).is_empty());
        s["status"] = json!({"readyReplicas": 1});
        let row = StatefulSets.row(&s);
        assert_eq!(row.len(), StatefulSets.columns().len());
        assert_eq!(row[1], "1/1");
    }

    #[test]
    fn daemonset_defaults_validation_and_rows() {
        let mut ds = json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template(json!({"app": "a"}))}});
        ds["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        DaemonSets.prepare_create(&mut ds, &ctx());
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert!(errors(&DaemonSets, &ds).is_empty());
        let mut bad = ds.clone();
        bad["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = json!(0);
        assert_eq!(
            errors(&DaemonSets, &bad),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
        );
        let row = DaemonSets.row(&ds);
        assert_eq!(row.len(), DaemonSets.columns().len());
        assert_eq!(row[6], "kubernetes.io/os=linux");
    }

    #[test]
    fn controller_revision_rows_name_the_owner() {
        let cr = json!({"metadata": {"name": "web-6d4b", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}
        ]}, "data": {}, "revision": 2});
        let row = ControllerRevisions.row(&cr);
        assert_eq!(row[1], "statefulset.apps/web");
        assert_eq!(row[2], 2);
        assert!(errors(&ControllerRevisions, &cr).is_empty());
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(ControllerRevisions.row(&orphan)[1], "<none>");
        assert_eq!(
            errors(&ControllerRevisions, &orphan),
            ["data: Required value: data is mandatory"]
        );
    }
}
