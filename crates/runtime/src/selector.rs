//! Label selectors on typed objects, using skiff-api's matcher.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as TypedSelector;
use skiff_api::selector::LabelSelector;

/// A parsed `metav1.LabelSelector`. As upstream, a missing selector selects nothing and
/// an empty one selects everything.
#[derive(Clone, Debug)]
pub struct Selector(Option<LabelSelector>);

impl Selector {
    /// Parses a typed selector; an invalid one (bad operator) is an error naming it.
    pub fn new(sel: Option<&TypedSelector>) -> Result<Self, String> {
        match sel {
            None => Ok(Self(None)),
            Some(sel) => {
                let value = serde_json::to_value(sel).map_err(|e| e.to_string())?;
                LabelSelector::from_object(&value).map(|s| Self(Some(s)))
            }
        }
    }

    /// A selector from a plain label map (Service, ReplicationController): an empty or
    /// missing map selects nothing, as upstream does for these kinds.
    pub fn from_map(map: Option<&BTreeMap<String, String>>) -> Self {
        match map {
            Some(m) if !m.is_empty() => {
                let sel = TypedSelector {
                    match_labels: Some(m.clone()),
                    ..Default::default()
                };
                Self::new(Some(&sel)).unwrap_or(Self(None))
            }
            _ => Self(None),
        }
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        match &self.0 {
            None => false,
            Some(s) => s.matches(labels.unwrap_or(&EMPTY)),
        }
    }

    pub fn selects_nothing(&self) -> bool {
        self.0.is_none()
    }

    pub fn selects_everything(&self) -> bool {
        self.0.as_ref().is_some_and(LabelSelector::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nil_selects_nothing_and_empty_selects_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!Selector::new(None).unwrap().matches(Some(&l)));
        assert!(Selector::new(Some(&TypedSelector::default()))
            .unwrap()
            .matches(Some(&l)));
        assert!(!Selector::from_map(Some(&BTreeMap::new())).matches(Some(&l)));
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel: TypedSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
        }))
        .unwrap();
        let sel = Selector::new(Some(&sel)).unwrap();
        assert!(sel.matches(Some(&labels(&[("app", "web"), ("tier", "a")]))));
        assert!(!sel.matches(Some(&labels(&[("app", "web"), ("tier", "c")]))));
        assert!(!sel.matches(None));
        assert!(Selector::from_map(Some(&labels(&[("app", "web")])))
            .matches(Some(&labels(&[("app", "web"), ("x", "y")]))));
    }
}
