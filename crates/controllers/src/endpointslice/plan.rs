//! Which slices to create, update and delete so a service's managed slices hold the
//! desired endpoints (pure). Changes are minimal, as upstream's reconciler: a slice
//! whose endpoints, ports, labels and owner are already right is left alone, new
//! endpoints go first into slices being rewritten anyway, then into new slices; at
//! most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired::{endpoint_key, ports_key, slice_labels, Group};
use crate::util::owner;

pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const ADDRESS_TYPE: &str = "IPv4";

#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// A new slice for `svc` with `group`'s ports and the given endpoints.
fn new_slice(svc: &Service, group: &Group, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                svc.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner::controller_ref(svc)]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE.into(),
        endpoints,
        ports: Some(group.ports.clone()),
    }
}

/// Whether a slice's metadata is what the controller would write.
fn metadata_current(svc: &Service, slice: &EndpointSlice) -> bool {
    let uid = svc.metadata.uid.as_deref().unwrap_or_default();
    slice.metadata.labels.as_ref() == Some(&slice_labels(svc))
        && owner::is_controlled_by(&slice.metadata, uid)
}

fn with_current_metadata(svc: &Service, mut slice: EndpointSlice) -> EndpointSlice {
    slice.metadata.labels = Some(slice_labels(svc));
    let uid = svc.metadata.uid.as_deref().unwrap_or_default();
    if !owner::is_controlled_by(&slice.metadata, uid) {
        slice.metadata.owner_references = Some(vec![owner::controller_ref(svc)]);
    }
    slice
}

/// The plan turning `existing` (the service's managed IPv4 slices) into `desired`.
pub fn plan(svc: &Service, existing: &[&EndpointSlice], desired: &BTreeMap<String, Group>) -> Plan {
    let mut out = Plan::default();
    let mut by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = ports_key(slice.ports.as_deref().unwrap_or(&[]));
        by_ports.entry(key).or_default().push(slice);
    }
    let total: usize = desired.values().map(|g| g.endpoints.len()).sum();
    if total == 0 {
        // No endpoints: one empty placeholder slice stands for the service (as
        // upstream), so consumers can tell "no endpoints" from "not yet synced".
        let placeholder = existing
            .iter()
            .find(|s| s.endpoints.is_empty() && s.ports.as_deref().unwrap_or(&[]).is_empty());
        for slice in existing {
            if placeholder.is_some_and(|p| std::ptr::eq(*p, *slice)) {
                continue;
            }
            out.delete.push((*slice).clone());
        }
        match placeholder {
            Some(p) if metadata_current(svc, p) => {}
            Some(p) => out.update.push(with_current_metadata(svc, (*p).clone())),
            None => out.create.push(new_slice(svc, &Group::default(), vec![])),
        }
        return out;
    }
    for (key, slices) in &by_ports {
        if !desired.contains_key(key) {
            out.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }
    for (key, group) in desired {
        plan_group(
            svc,
            group,
            by_ports.get(key).map(Vec::as_slice).unwrap_or(&[]),
            &mut out,
        );
    }
    out
}

fn plan_group(svc: &Service, group: &Group, existing: &[&EndpointSlice], out: &mut Plan) {
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();
    for slice in existing {
        let mut changed = !metadata_current(svc, slice);
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        for ep in &slice.endpoints {
            let key = endpoint_key(ep);
            match group.endpoints.get(&key) {
                // A duplicate across slices is dropped from all but the first.
                Some(want) if placed.insert(key) => {
                    changed |= want != ep;
                    kept.push(want.clone());
                }
                _ => changed = true,
            }
        }
        if !changed {
            unchanged.push(slice);
        } else if kept.is_empty() {
            out.delete.push((*slice).clone());
        } else {
            let mut s = with_current_metadata(svc, (*slice).clone());
            s.endpoints = kept;
            to_update.push(s);
        }
    }
    let mut remaining: Vec<Endpoint> = group
        .endpoints
        .iter()
        .filter(|(k, _)| !placed.contains(*k))
        .map(|(_, ep)| ep.clone())
        .collect();
    // Fullest slices first, so slices fill up rather than all staying half empty.
    to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
    for slice in &mut to_update {
        let room = MAX_ENDPOINTS_PER_SLICE.saturating_sub(slice.endpoints.len());
        let take = room.min(remaining.len());
        slice.endpoints.extend(remaining.drain(..take));
    }
    while !remaining.is_empty() {
        let take = MAX_ENDPOINTS_PER_SLICE.min(remaining.len());
        let chunk: Vec<Endpoint> = remaining.drain(..take).collect();
        // A last partial chunk goes into an unchanged slice with room rather than a
        // new slice, as upstream does.
        let fits = unchanged
            .iter()
            .position(|s| s.endpoints.len() + chunk.len() <= MAX_ENDPOINTS_PER_SLICE);
        match fits {
            Some(i) if chunk.len() < MAX_ENDPOINTS_PER_SLICE => {
                let mut s = unchanged.remove(i).clone();
                s.endpoints.extend(chunk);
                to_update.push(s);
            }
            _ => out.create.push(new_slice(svc, group, chunk)),
        }
    }
    out.update.extend(to_update);
}

#[cfg(test)]
mod tests {
    use super::super::desired::desired_groups;
    use super::super::desired::tests::{pod, svc};
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn groups(s: &Service, pods: &[Pod]) -> BTreeMap<String, Group> {
        let refs: Vec<&Pod> = pods.iter().collect();
        desired_groups(s, &refs, |_| None)
    }

    /// Applies a plan to a set of slices the way the API server would.
    fn apply(existing: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .into_iter()
            .filter(|s| {
                !plan
                    .delete
                    .iter()
                    .any(|d| d.metadata.name == s.metadata.name)
            })
            .filter(|s| {
                !plan
                    .update
                    .iter()
                    .any(|d| d.metadata.name == s.metadata.name)
            })
            .collect();
        out.extend(plan.update);
        for (i, mut s) in plan.create.into_iter().enumerate() {
            s.metadata.name = Some(format!("web-new{i}-{}", out.len()));
            out.push(s);
        }
        out
    }

    fn ready_pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                    true,
                    serde_json::json!({}),
                )
            })
            .collect()
    }

    #[test]
    fn creates_one_slice_then_leaves_it_alone() {
        let s = svc(serde_json::json!({}));
        let pods = ready_pods(3);
        let p = plan(&s, &[], &groups(&s, &pods));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 0));
        assert_eq!(p.create[0].endpoints.len(), 3);
        assert_eq!(p.create[0].metadata.generate_name.as_deref(), Some("web-"));
        let slices = apply(vec![], p);
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        assert!(
            plan(&s, &refs, &groups(&s, &pods)).is_empty(),
            "an unchanged service rewrites nothing"
        );
    }

    #[test]
    fn a_changed_endpoint_updates_only_its_slice() {
        let s = svc(serde_json::json!({}));
        let mut pods = ready_pods(150);
        let slices = apply(vec![], plan(&s, &[], &groups(&s, &pods)));
        assert_eq!(
            slices.len(),
            2,
            "150 endpoints need two slices of at most 100"
        );
        pods[149] = pod("p149", "10.0.0.149", false, serde_json::json!({}));
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let p = plan(&s, &refs, &groups(&s, &pods));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
        let ep = p.update[0]
            .endpoints
            .iter()
            .find(|e| endpoint_key(e) == "ns/p149")
            .unwrap();
        assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(false));
    }

    #[test]
    fn new_endpoints_fill_an_unchanged_slice_with_room() {
        let s = svc(serde_json::json!({}));
        let pods = ready_pods(3);
        let slices = apply(vec![], plan(&s, &[], &groups(&s, &pods)));
        let more = ready_pods(5);
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let p = plan(&s, &refs, &groups(&s, &more));
        assert_eq!((p.create.len(), p.update.len()), (0, 1));
        assert_eq!(p.update[0].endpoints.len(), 5);
    }

    #[test]
    fn removed_pods_leave_and_empty_slices_go() {
        let s = svc(serde_json::json!({}));
        let slices = apply(vec![], plan(&s, &[], &groups(&s, &ready_pods(150))));
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let p = plan(&s, &refs, &groups(&s, &ready_pods(50)));
        assert!(p.create.is_empty());
        let after = apply(slices.clone(), p);
        assert_eq!(after.iter().map(|s| s.endpoints.len()).sum::<usize>(), 50);
        // Keep only the pods of one slice: the other empties and is deleted.
        let first: Vec<Pod> = ready_pods(150)
            .into_iter()
            .filter(|p| {
                slices[0].endpoints.iter().any(|e| {
                    endpoint_key(e) == format!("ns/{}", p.metadata.name.as_deref().unwrap())
                })
            })
            .collect();
        let p = plan(&s, &refs, &groups(&s, &first));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 0, 1));
    }

    #[test]
    fn no_endpoints_keep_one_placeholder() {
        let s = svc(serde_json::json!({}));
        let p = plan(&s, &[], &BTreeMap::new());
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        let slices = apply(vec![], p);
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        assert!(plan(&s, &refs, &BTreeMap::new()).is_empty());
        let full = apply(vec![], plan(&s, &[], &groups(&s, &ready_pods(2))));
        let refs: Vec<&EndpointSlice> = full.iter().collect();
        let p = plan(&s, &refs, &BTreeMap::new());
        assert_eq!(
            (p.create.len(), p.delete.len()),
            (1, 1),
            "the full slice goes, a placeholder comes"
        );
    }

    #[test]
    fn changed_service_labels_rewrite_slices() {
        let s = svc(serde_json::json!({}));
        let pods = ready_pods(2);
        let slices = apply(vec![], plan(&s, &[], &groups(&s, &pods)));
        let relabelled = svc(serde_json::json!({"metadata": {"labels": {"tier": "front"}}}));
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let p = plan(&relabelled, &refs, &groups(&relabelled, &pods));
        assert_eq!(p.update.len(), 1);
        assert_eq!(
            p.update[0].metadata.labels.as_ref().unwrap()["tier"],
            "front"
        );
    }

    #[test]
    fn slices_with_ports_no_longer_wanted_are_deleted() {
        let s = svc(serde_json::json!({}));
        let pods = ready_pods(2);
        let slices = apply(vec![], plan(&s, &[], &groups(&s, &pods)));
        let moved = svc(
            serde_json::json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9000, "protocol": "TCP"}]}}),
        );
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        let p = plan(&moved, &refs, &groups(&moved, &pods));
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
    }
}
