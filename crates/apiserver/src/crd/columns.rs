//! `additionalPrinterColumns`: a CRD version's table columns and their cells, from
//! kubectl-style JSONPath (`.spec.replicas`, `.status.conditions[?(@.type=="Ready")].status`,
//! `.spec.items[*].name`, `.spec.items[0]`).

use serde_json::{json, Value};

/// One printer column as the CRD declares it.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub path: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="x")]`
    Filter(Vec<String>, Value),
}

/// Parses a column's `jsonPath`; `None` if it is not one this server evaluates.
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = if r.starts_with("?(") {
                r.find(")]").map(|i| i + 1)?
            } else {
                r.find(']')?
            };
            let inner = &r[..close];
            rest = &r[close + 1..];
            steps.push(bracket(inner)?);
        } else {
            return None;
        }
    }
    Some(steps)
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Some(Step::Index(n));
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        return Some(Step::Field(q.to_string()));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, rhs) = cond.split_once("==")?;
    let fields: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")?
        .split('.')
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let value = if let Some(s) = rhs
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
    {
        json!(s)
    } else {
        serde_json::from_str(rhs).ok()?
    };
    Some(Step::Filter(fields, value))
}

/// Every value the path reaches in `obj`.
pub fn evaluate<'a>(steps: &[Step], obj: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![obj];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(fields, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut got = Some(item);
                        for f in fields {
                            got = got.and_then(|g| g.get(f));
                        }
                        if got == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// The cell of `column` for `obj`: typed as the column says, `date`s as ages, nothing
/// found as null (kubectl prints `<none>`).
pub fn cell(column: &PrinterColumn, obj: &Value) -> Value {
    let found = evaluate(&column.path, obj);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    if found.len() > 1 {
        let parts: Vec<String> = found.iter().map(|v| plain(v)).collect();
        return json!(parts.join(","));
    }
    match column.kind.as_str() {
        "date" => match first
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        {
            Some(ts) => json!(crate::table::human_duration(
                (jiff::Timestamp::now() - ts).get_seconds()
            )),
            None => json!(plain(first)),
        },
        "integer" if first.is_i64() || first.is_u64() => (*first).clone(),
        "number" if first.is_number() => (*first).clone(),
        "boolean" if first.is_boolean() => (*first).clone(),
        "string" if first.is_string() => (*first).clone(),
        _ => json!(plain(first)),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The columns of a CRD version (`spec.versions[].additionalPrinterColumns`): upstream's
/// default when none are given is one `Age` column.
pub fn from_version(version: &Value) -> Vec<PrinterColumn> {
    let declared = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let declared = if declared.is_empty() {
        vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
    } else {
        declared
    };
    declared
        .iter()
        .filter_map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Some(PrinterColumn {
                name: s("name"),
                kind: s("type"),
                format: s("format"),
                description: s("description"),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                path: parse_path(c.get("jsonPath")?.as_str()?)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_fields_indices_and_filtered_items() {
        let obj = json!({"spec": {"replicas": 3, "items": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
        let col = |path: &str, kind: &str| PrinterColumn {
            name: "c".into(),
            kind: kind.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            path: parse_path(path).unwrap(),
        };
        assert_eq!(cell(&col(".spec.replicas", "integer"), &obj), json!(3));
        assert_eq!(cell(&col(".spec.replicas", "string"), &obj), json!("3"));
        assert_eq!(
            cell(&col(".spec.items[1].name", "string"), &obj),
            json!("b")
        );
        assert_eq!(
            cell(&col(".spec.items[*].name", "string"), &obj),
            json!("a,b")
        );
        assert_eq!(
            cell(
                &col(".status.conditions[?(@.type==\"Ready\")].status", "string"),
                &obj
            ),
            json!("True")
        );
        assert_eq!(cell(&col(".spec.missing", "string"), &obj), Value::Null);
        assert!(parse_path("spec..x").is_none());
    }

    #[test]
    fn versions_without_columns_get_age() {
        let cols = from_version(&json!({"name": "v1"}));
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].name, "Age");
        let obj = json!({"metadata": {"creationTimestamp": "2000-01-01T00:00:00Z"}});
        assert!(cell(&cols[0], &obj).as_str().unwrap().ends_with('y'));
    }
}
