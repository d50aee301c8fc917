//! Label and field selectors: parsing the query-string forms (`?labelSelector=`,
//! `?fieldSelector=`) and the `LabelSelector` object, and matching them.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match (&self.op, value) {
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Equals(want), Some(v)) => v == want,
            (Op::In(set), Some(v)) => set.contains(v),
            (Op::Equals(_) | Op::In(_), None) => false,
            (Op::NotEquals(want), v) => v != Some(want),
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.contains(v)),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// A label selector: all requirements must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(&crate::meta::labels(obj))
    }

    /// Parses `a=b,c!=d,e in (x,y),!f,g`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Reads a `metav1.LabelSelector` object (`matchLabels` and `matchExpressions`).
    /// Unlike an empty query string, a missing object selects nothing (upstream returns
    /// `labels.Nothing()` for a nil selector); callers decide which they need.
    pub fn from_object(sel: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("matchLabels value of {k:?} must be a string"))?;
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals(v.to_string()),
                });
            }
        }
        for expr in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expr
                .get("key")
                .and_then(Value::as_str)
                .ok_or("matchExpressions key is required")?;
            let values: Vec<String> = expr
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let op = match expr.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In(values),
                Some("NotIn") => Op::NotIn(values),
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            requirements.push(Requirement {
                key: key.to_string(),
                op,
            });
        }
        Ok(Self { requirements })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("found '{rest}', expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("unable to parse requirement: {why}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: key.trim().to_string(),
            op: Op::DoesNotExist,
        });
    }
    // Word operators need spaces around them: `key in (a,b)`, `key notin (a)`.
    let words: Vec<&str> = part.splitn(3, char::is_whitespace).collect();
    if words.len() >= 2 {
        let rest = part[words[0].len()..].trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(Requirement {
                key: words[0].to_string(),
                op: Op::NotIn(parse_set(set).map_err(|e| bad(&e))?),
            });
        }
        if let Some(set) = rest.strip_prefix("in") {
            if set.trim_start().starts_with('(') {
                return Ok(Requirement {
                    key: words[0].to_string(),
                    op: Op::In(parse_set(set).map_err(|e| bad(&e))?),
                });
            }
        }
    }
    for (token, make) in [
        ("!=", Op::NotEquals as fn(String) -> Op),
        ("==", Op::Equals as fn(String) -> Op),
        ("=", Op::Equals as fn(String) -> Op),
    ] {
        if let Some((key, value)) = part.split_once(token) {
            let key = key.trim();
            if key.is_empty() {
                return Err(bad("key is empty"));
            }
            return Ok(Requirement {
                key: key.to_string(),
                op: make(value.trim().to_string()),
            });
        }
    }
    for (token, gt) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(token) {
            let n: i64 = value.trim().parse().map_err(|_| {
                bad(&format!(
                    "for 'gt', 'lt' operators, the value must be an integer: {value}"
                ))
            })?;
            let op = if gt { Op::Gt(n) } else { Op::Lt(n) };
            return Ok(Requirement {
                key: key.trim().to_string(),
                op,
            });
        }
    }
    let key = part.trim();
    if key.contains(char::is_whitespace) {
        return Err(bad(&format!(
            "found '{key}', expected: '=', '!=', '==', 'in', notin'"
        )));
    }
    Ok(Requirement {
        key: key.to_string(),
        op: Op::Exists,
    })
}

/// A field selector: `metadata.name=x,status.phase!=Running`. Only `=`, `==` and `!=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            terms.push((key.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The first field not in `supported`, if any (for upstream's 400 message).
    pub fn unsupported<'a>(&'a self, supported: &[&str]) -> Option<&'a str> {
        self.terms
            .iter()
            .map(|(k, _, _)| k.as_str())
            .find(|k| !supported.contains(k))
    }

    /// Matches given the object's selectable fields.
    pub fn matches(&self, fields: &BTreeMap<&str, String>) -> bool {
        self.terms.iter().all(|(key, equal, value)| {
            let actual = fields.get(key.as_str()).map(String::as_str).unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("n>3", true),
            ("n<3", false),
            ("", true),
        ];
        for (sel, want) in cases {
            let parsed = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(parsed.matches(&l), want, "selector {sel:?}");
        }
    }

    #[test]
    fn bad_selectors_are_errors() {
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(LabelSelector::parse("n>abc").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "mid"]}]
        }))
        .unwrap();
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "mid")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})
        )
        .is_err());
    }

    #[test]
    fn field_selectors() {
        let sel = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        let mut fields = BTreeMap::new();
        fields.insert("spec.nodeName", "n1".to_string());
        fields.insert("status.phase", "Running".to_string());
        assert!(sel.matches(&fields));
        fields.insert("status.phase", "Failed".to_string());
        assert!(!sel.matches(&fields));
        assert_eq!(sel.unsupported(&["spec.nodeName"]), Some("status.phase"));
        assert!(FieldSelector::parse("nonsense").is_err());
        // An unscheduled pod has an empty nodeName, which `spec.nodeName=` selects.
        let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(unscheduled.matches(&BTreeMap::new()));
    }
}
