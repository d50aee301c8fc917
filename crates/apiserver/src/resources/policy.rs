//! Hooks of policy/v1 PodDisruptionBudget: validation and `kubectl get` columns.

use serde_json::{json, Value};
use skiff_api::{FieldError, FieldErrors};

use super::workload::*;
use super::{Column, Context, Hooks};

pub struct PodDisruptionBudgets;

impl Hooks for PodDisruptionBudgets {
    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = validate_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            errs.push(FieldError::invalid(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (v, field) in [(min, "spec.minAvailable"), (max, "spec.maxUnavailable")] {
            int_or_percent(v, field, &mut errs);
            not_over_100_percent(v, field, &mut errs);
        }
        let policy = spec
            .get("unhealthyPodEvictionPolicy")
            .cloned()
            .unwrap_or(Value::Null);
        if !policy.is_null() && !matches!(policy.as_str(), Some("IfHealthyBudget" | "AlwaysAllow"))
        {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                &policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
        if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
            if skiff_api::selector::LabelSelector::from_object(sel).is_err() {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    sel,
                    "invalid label selector",
                ));
            }
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Min Available", "string", "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
            Column::new("Max Unavailable", "string", "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
            Column::new("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let cell = |p: &str| match obj.pointer(p) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "N/A".into(),
        };
        vec![
            name_cell(obj),
            json!(cell("/spec/minAvailable")),
            json!(cell("/spec/maxUnavailable")),
            json!(int_at(obj, "/status/disruptionsAllowed")),
            age_cell(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_ctx as ctx;

    #[test]
    fn pdb_validation_and_rows() {
        let ok = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"disruptionsAllowed": 1}});
        assert!(PodDisruptionBudgets.validate(&ok, &ctx()).is_empty());
        let row = PodDisruptionBudgets.row(&ok);
        assert_eq!(row.len(), PodDisruptionBudgets.columns().len());
        assert_eq!(row[1..4], [json!("2"), json!("N/A"), json!(1)]);
        let both = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%", "maxUnavailable": 1}});
        let errs = PodDisruptionBudgets.validate(&both, &ctx()).to_string();
        assert!(
            errs.ends_with("minAvailable and maxUnavailable cannot be both set"),
            "{errs}"
        );
        let bad = json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": "150%"}});
        assert_eq!(
            PodDisruptionBudgets.validate(&bad, &ctx()).to_string(),
            "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
        );
    }
}
