//! Hooks of batch/v1 Job and CronJob: upstream's defaults (including the selector and pod
//! labels a Job gets from its uid), validation, field selectors and columns.

use serde_json::{json, Value};
use skiff_api::{meta, FieldError, FieldErrors};

use super::workload::*;
use super::{Column, Context, Hooks};

const JOB_RESTART: &[&str] = &["OnFailure", "Never"];

const LEGACY_UID_LABEL: &str = "controller-uid";
const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const LEGACY_NAME_LABEL: &str = "job-name";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Upstream's SetDefaults_Job (spec fields) and the template's pod defaults.
fn default_job_spec(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX as i64 } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "manualSelector", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    if let Some(rules) = spec
        .pointer_mut("/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            if let Some(patterns) = rule
                .get_mut("onPodConditions")
                .and_then(Value::as_array_mut)
            {
                for p in patterns {
                    set_default(p, "status", json!("True"));
                }
            }
        }
    }
    set_default(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    default_template(object_at(spec, "template"));
}

/// Upstream's generated selector: the pod template carries the job's name and uid labels
/// and the selector picks the uid, so a Job's pods are only ever its own.
fn generate_selector(obj: &mut Value) {
    let name = meta::name(obj).to_string();
    let uid = meta::uid(obj).to_string();
    let template = object_at(object_at(obj, "spec"), "template");
    let labels = object_at(object_at(template, "metadata"), "labels");
    for (key, value) in [
        (LEGACY_NAME_LABEL, &name),
        (NAME_LABEL, &name),
        (LEGACY_UID_LABEL, &uid),
        (UID_LABEL, &uid),
    ] {
        set_default(labels, key, json!(value));
    }
    let selector = object_at(&mut obj["spec"], "selector");
    let match_labels = object_at(selector, "matchLabels");
    set_default(match_labels, UID_LABEL, json!(uid));
}

fn manual_selector(obj: &Value) -> bool {
    obj.pointer("/spec/manualSelector") == Some(&json!(true))
}

/// Checks shared by a Job's spec and a CronJob's job template spec.
fn validate_job_spec(spec: &Value, path: &str, selector_required: bool, errs: &mut FieldErrors) {
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        non_negative(spec, &format!("/{field}"), &format!("{path}.{field}"), errs);
    }
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if n <= 0 {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                &json!(n),
                "must be greater than 0",
            ));
        }
    }
    let mode = spec.get("completionMode").cloned().unwrap_or(Value::Null);
    match mode.as_str() {
        None => {}
        Some("NonIndexed") => {}
        Some("Indexed") if spec.get("completions").is_none_or(Value::is_null) => {
            errs.push(FieldError::required(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            ))
        }
        Some("Indexed") => {}
        Some(_) => errs.push(FieldError::not_supported(
            format!("{path}.completionMode"),
            &mode,
            &["NonIndexed", "Indexed"],
        )),
    }
    let policy = spec
        .get("podReplacementPolicy")
        .cloned()
        .unwrap_or(Value::Null);
    if !policy.is_null() && !matches!(policy.as_str(), Some("TerminatingOrFailed" | "Failed")) {
        errs.push(FieldError::not_supported(
            format!("{path}.podReplacementPolicy"),
            &policy,
            &["TerminatingOrFailed", "Failed"],
        ));
    }
    let selector = match spec.get("selector").filter(|s| !s.is_null()) {
        Some(sel) => validate_selector(Some(sel), &format!("{path}.selector"), "job", errs),
        None => {
            if selector_required {
                errs.push(FieldError::required(format!("{path}.selector"), ""));
            }
            None
        }
    };
    validate_template(
        spec.get("template"),
        selector.as_ref(),
        &format!("{path}.template"),
        JOB_RESTART,
        errs,
    );
}

pub struct Jobs;

impl Hooks for Jobs {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_job_spec(object_at(obj, "spec"));
        if !manual_selector(obj) {
            generate_selector(obj);
        }
        // The Job's labels default to its template's. Upstream defaults again whenever it
        // reads a Job back, so that includes the generated labels.
        let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
        if let Some(labels) =
            template_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            let m = meta::metadata_mut(obj);
            if m.get("labels")
                .and_then(Value::as_object)
                .is_none_or(|l| l.is_empty())
            {
                m.insert("labels".into(), labels);
            }
        }
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_job_spec(object_at(new, "spec"));
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_job_spec(spec, "spec", true, &mut errs);
        if !manual_selector(obj) {
            let want = json!({"matchLabels": {UID_LABEL: meta::uid(obj)}});
            if spec.get("selector").is_some_and(|s| *s != want) {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    spec.get("selector").unwrap_or(&Value::Null),
                    "`selector` not auto-generated",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        for field in [
            "selector",
            "completionMode",
            "podFailurePolicy",
            "backoffLimitPerIndex",
            "managedBy",
            "successPolicy",
        ] {
            immutable(
                new,
                old,
                &format!("/spec/{field}"),
                &format!("spec.{field}"),
                &mut errs,
            );
        }
        // The template may change only while the Job is suspended and has not started.
        let suspended = old.pointer("/spec/suspend") == Some(&json!(true))
            && old.pointer("/status/startTime").is_none_or(Value::is_null);
        if !suspended {
            immutable(new, old, "/spec/template", "spec.template", &mut errs);
        }
        errs
    }

    fn fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![(
            "status.successful",
            int_at(obj, "/status/succeeded").to_string(),
        )]
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Status", "string", "Status of the job."),
            Column::new(
                "Completions",
                "string",
                "The number of pods which reached phase Succeeded.",
            ),
            Column::new("Duration", "string", "Time required to complete the job."),
            Column::age_column(),
            Column::wide(
                "Containers",
                "string",
                "Names of each container in the template.",
            ),
            Column::wide(
                "Images",
                "string",
                "Images referenced by each container in the template.",
            ),
            Column::wide(
                "Selector",
                "string",
                "A label query over pods that should match the pod count.",
            ),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let succeeded = int_at(obj, "/status/succeeded");
        let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int_at(obj, "/spec/parallelism") {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let parse = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        };
        let duration = match (parse("/status/startTime"), parse("/status/completionTime")) {
            (None, _) => String::new(),
            (Some(start), None) => {
                crate::table::human_duration((jiff::Timestamp::now() - start).get_seconds())
            }
            (Some(start), Some(end)) => crate::table::human_duration((end - start).get_seconds()),
        };
        let condition = |kind: &str| {
            obj.pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == kind)
                .is_some_and(|c| c["status"] == "True")
        };
        let status = if condition("Complete") {
            "Complete"
        } else if condition("Failed") {
            "Failed"
        } else if meta::deletion_timestamp(obj).is_some() {
            "Terminating"
        } else if condition("Suspended") {
            "Suspended"
        } else if condition("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) =
            containers_cells(obj.pointer("/spec/template").unwrap_or(&Value::Null));
        vec![
            name_cell(obj),
            json!(status),
            json!(completions),
            json!(duration),
            age_cell(obj),
            names,
            images,
            json!(selector_cell(obj.pointer("/spec/selector"))),
        ]
    }
}

pub struct CronJobs;

fn default_cronjob(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    // Only the pod template inside the job template is defaulted, as upstream.
    let job_spec = object_at(object_at(spec, "jobTemplate"), "spec");
    default_template(object_at(job_spec, "template"));
}

/// Upstream's limit: a CronJob's name plus the 11-character suffix of its Jobs' names must
/// fit a label value.
const CRONJOB_NAME_MAX: usize = 52;

fn validate_cronjob(obj: &Value, allow_tz: bool) -> FieldErrors {
    let mut errs = validate_name(obj);
    let name = meta::name(obj);
    if name.len() > CRONJOB_NAME_MAX {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            format!("must be no more than {CRONJOB_NAME_MAX} characters"),
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let schedule = spec.get("schedule").and_then(Value::as_str).unwrap_or("");
    let time_zone = spec.get("timeZone").and_then(Value::as_str);
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        if let Err(e) = super::cron::parse(schedule) {
            errs.push(FieldError::invalid("spec.schedule", &json!(schedule), e));
        }
        if schedule.contains("TZ") {
            if !allow_tz {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if time_zone.is_some() {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(tz) = time_zone {
        let problem = if tz.eq_ignore_ascii_case("local") {
            Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".to_string())
        } else if tz.is_empty() || jiff::tz::TimeZone::get(tz).is_err() {
            Some(format!("unknown time zone {tz}"))
        } else {
            None
        };
        if let Some(p) = problem {
            errs.push(FieldError::invalid("spec.timeZone", &json!(tz), p));
        }
    }
    let policy = spec
        .get("concurrencyPolicy")
        .cloned()
        .unwrap_or(Value::Null);
    if !matches!(policy.as_str(), Some("Allow" | "Forbid" | "Replace")) {
        errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            &policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(
            obj,
            &format!("/spec/{field}"),
            &format!("spec.{field}"),
            &mut errs,
        );
    }
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    let path = "spec.jobTemplate.spec";
    if let Some(sel) = job_spec.get("selector").filter(|s| !s.is_null()) {
        errs.push(FieldError::invalid(
            format!("{path}.selector"),
            sel,
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.get("manualSelector") == Some(&json!(true)) {
        errs.push(FieldError::not_supported(
            format!("{path}.manualSelector"),
            &json!(true),
            &["nil", "false"],
        ));
    }
    validate_job_spec(job_spec, path, false, &mut errs);
    errs
}

impl Hooks for CronJobs {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_cronjob(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_cronjob(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        validate_cronjob(obj, false)
    }

    fn validate_update(&self, new: &Value, old: &Value, _ctx: &Context<'_>) -> FieldErrors {
        // A schedule stored with TZ= before the rule existed stays acceptable.
        validate_cronjob(new, str_at(old, "/spec/schedule").contains("TZ"))
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            Column::new("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
            Column::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
            Column::new("Active", "integer", "A list of pointers to currently running jobs."),
            Column::new("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            Column::age_column(),
            Column::wide("Containers", "string", "Names of each container in the template."),
            Column::wide("Images", "string", "Images referenced by each container in the template."),
            Column::wide("Selector", "string", "A label query over pods that should match the pod count."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = match obj
            .pointer("/status/lastScheduleTime")
            .filter(|v| !v.is_null())
        {
            Some(t) => since(Some(t)),
            None => "<none>".into(),
        };
        let active = obj
            .pointer("/status/active")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let job_spec = obj
            .pointer("/spec/jobTemplate/spec")
            .unwrap_or(&Value::Null);
        let (names, images) = containers_cells(job_spec.get("template").unwrap_or(&Value::Null));
        let tz = obj
            .pointer("/spec/timeZone")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        vec![
            name_cell(obj),
            json!(str_at(obj, "/spec/schedule")),
            json!(tz),
            json!(suspend),
            json!(active),
            json!(last),
            age_cell(obj),
            names,
            images,
            json!(selector_cell(job_spec.get("selector"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named change to a valid object and the error it must cause.
    type Case = (&'static str, fn(&mut Value), &'static str);

    use super::super::test_ctx as ctx;

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "busybox"}]}}}})
    }

    fn errors(hooks: &dyn Hooks, obj: &Value) -> Vec<String> {
        hooks
            .validate(obj, &ctx())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut j = job();
        Jobs.prepare_create(&mut j, &ctx());
        let spec = &j["spec"];
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["selector"], json!({"matchLabels": {UID_LABEL: "u-1"}}));
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({"controller-uid": "u-1", UID_LABEL: "u-1", "job-name": "pi", NAME_LABEL: "pi"})
        );
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        // The job's own labels default to the template's.
        assert_eq!(j["metadata"]["labels"]["job-name"], "pi");
        assert!(errors(&Jobs, &j).is_empty(), "{:?}", errors(&Jobs, &j));
    }

    #[test]
    fn work_queue_jobs_keep_completions_unset() {
        let mut j = job();
        j["spec"]["parallelism"] = json!(3);
        Jobs.prepare_create(&mut j, &ctx());
        assert!(j["spec"].get("completions").is_none());
        assert_eq!(Jobs.row(&j)[2], "0/1 of 3");
    }

    #[test]
    fn job_validation_errors() {
        let cases: Vec<Case> = vec![
            ("always restart", |j| j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always"),
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""),
            ("negative backoff", |j| j["spec"]["backoffLimit"] = json!(-1),
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"),
            ("bad mode", |j| j["spec"]["completionMode"] = json!("Sometimes"),
                "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""),
            ("forged selector", |j| j["spec"]["selector"] = json!({"matchLabels": {UID_LABEL: "other"}}),
                "spec.selector: Invalid value: {\"matchLabels\":{\"batch.kubernetes.io/controller-uid\":\"other\"}}: `selector` not auto-generated"),
        ];
        for (name, change, want) in cases {
            let mut j = job();
            Jobs.prepare_create(&mut j, &ctx());
            change(&mut j);
            let errs = errors(&Jobs, &j);
            assert!(errs.iter().any(|e| e == want), "{name}: {errs:?}");
        }
        // Without restartPolicy the template defaults to Always, which a Job refuses.
        let mut j = job();
        j["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        Jobs.prepare_create(&mut j, &ctx());
        assert!(errors(&Jobs, &j)[0]
            .starts_with("spec.template.spec.restartPolicy: Unsupported value: \"Always\""));
    }

    #[test]
    fn job_selector_and_running_template_are_immutable() {
        let mut old = job();
        Jobs.prepare_create(&mut old, &ctx());
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        let errs = Jobs.validate_update(&new, &old, &ctx()).to_string();
        assert!(errs.starts_with("spec.template: Invalid value: "), "{errs}");
        assert!(errs.ends_with("field is immutable"), "{errs}");
        let mut scaled = old.clone();
        scaled["spec"]["parallelism"] = json!(2);
        assert!(Jobs.validate_update(&scaled, &old, &ctx()).is_empty());
    }

    #[test]
    fn job_rows_and_fields() {
        let mut j = job();
        Jobs.prepare_create(&mut j, &ctx());
        j["status"] = json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let row = Jobs.row(&j);
        assert_eq!(row.len(), Jobs.columns().len());
        assert_eq!(row[1], "Complete");
        assert_eq!(row[2], "1/1");
        assert_eq!(row[3], "42s");
        assert_eq!(row[7], "batch.kubernetes.io/controller-uid=u-1");
        assert_eq!(
            Jobs.fields(&j),
            vec![("status.successful", "1".to_string())]
        );
        j["status"] = json!({});
        assert_eq!(Jobs.row(&j)[1], "Running");
        assert_eq!(Jobs.row(&j)[3], "");
    }

    fn cronjob(schedule: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    #[test]
    fn cronjob_defaults_and_rows() {
        let mut c = cronjob("*/5 * * * *");
        CronJobs.prepare_create(&mut c, &ctx());
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        let job_spec = &spec["jobTemplate"]["spec"];
        assert!(
            job_spec.get("backoffLimit").is_none(),
            "job template spec is not defaulted"
        );
        assert_eq!(
            job_spec["template"]["spec"]["terminationGracePeriodSeconds"],
            30
        );
        assert!(
            errors(&CronJobs, &c).is_empty(),
            "{:?}",
            errors(&CronJobs, &c)
        );
        let row = CronJobs.row(&c);
        assert_eq!(row.len(), CronJobs.columns().len());
        assert_eq!(
            row[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn cronjob_validation_errors() {
        let mut c = cronjob("61 * * * *");
        CronJobs.prepare_create(&mut c, &ctx());
        assert_eq!(
            errors(&CronJobs, &c),
            ["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        let mut c = cronjob("");
        CronJobs.prepare_create(&mut c, &ctx());
        assert_eq!(errors(&CronJobs, &c), ["spec.schedule: Required value"]);
        let mut c = cronjob("@hourly");
        c["spec"]["timeZone"] = json!("Mars/Olympus");
        c["spec"]["concurrencyPolicy"] = json!("Sometimes");
        CronJobs.prepare_create(&mut c, &ctx());
        assert_eq!(
            errors(&CronJobs, &c),
            [
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ]
        );
        let mut c = cronjob("TZ=UTC 0 * * * *");
        CronJobs.prepare_create(&mut c, &ctx());
        assert_eq!(
            errors(&CronJobs, &c),
            ["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        let mut c = cronjob("@daily");
        c["spec"]["timeZone"] = json!("Europe/Paris");
        CronJobs.prepare_create(&mut c, &ctx());
        assert!(errors(&CronJobs, &c).is_empty());
        let mut long = cronjob("@daily");
        long["metadata"]["name"] = json!("a".repeat(53));
        CronJobs.prepare_create(&mut long, &ctx());
        assert_eq!(
            errors(&CronJobs, &long),
            [format!(
                "metadata.name: Invalid value: \"{}\": must be no more than 52 characters",
                "a".repeat(53)
            )]
        );
    }
}
