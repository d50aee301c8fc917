//! Hooks of the storage types: PersistentVolume and PersistentVolumeClaim (core/v1) and
//! StorageClass (storage.k8s.io/v1). Defaults, validation and columns as upstream.

use serde_json::{json, Value};
use skiff_api::validation::{check, dns1123_subdomain, qualified_name};
use skiff_api::{meta, FieldError, FieldErrors};

use super::common::{
    access_modes, array_at, canonical, canonicalize_quantities, immutable, name_cell, quantities,
    set_default, str_at, subdomain_name, ACCESS_MODES,
};
use super::{Column, Context, Hooks};
use crate::table::age;

/// The volume sources a PersistentVolume may name (exactly one).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// The annotation that predates `storageClassName` and still wins over it.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn storage_class(obj: &Value) -> String {
    meta::annotations(obj)
        .get(BETA_CLASS_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| str_at(obj, "/spec/storageClassName").to_string())
}

fn validate_access_modes(spec: &Value, detail: &str, errs: &mut FieldErrors) {
    let modes = array_at(spec, "/accessModes");
    if modes.is_empty() {
        errs.push(FieldError::required("spec.accessModes", detail));
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            errs.push(FieldError::not_supported(
                "spec.accessModes",
                m,
                ACCESS_MODES,
            ));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        errs.push(FieldError::forbidden(
            "spec.accessModes",
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_volume_mode(spec: &Value, errs: &mut FieldErrors) {
    if let Some(mode) = spec.get("volumeMode").filter(|m| !m.is_null()) {
        if !matches!(mode.as_str(), Some("Block" | "Filesystem")) {
            errs.push(FieldError::not_supported(
                "spec.volumeMode",
                mode,
                &["Block", "Filesystem"],
            ));
        }
    }
}

fn validate_class_name(spec: &Value, errs: &mut FieldErrors) {
    let class = str_at(spec, "/storageClassName");
    if !class.is_empty() {
        errs.extend(check(
            "spec.storageClassName",
            class,
            dns1123_subdomain(class),
        ));
    }
}

fn required_strings(spec: &Value, source: &str, fields: &[&str], errs: &mut FieldErrors) {
    for f in fields {
        if str_at(spec, &format!("/{source}/{f}")).is_empty() {
            errs.push(FieldError::required(format!("spec.{source}.{f}"), ""));
        }
    }
}

pub struct PersistentVolumes;

fn default_pv(obj: &mut Value) {
    set_default(obj, "spec", json!({}));
    let spec = &mut obj["spec"];
    set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    set_default(spec, "volumeMode", json!("Filesystem"));
    canonicalize_quantities(spec.get_mut("capacity"));
}

impl Hooks for PersistentVolumes {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_pv(obj);
        obj["status"] = json!({
            "phase": "Pending",
            "lastPhaseTransitionTime": crate::lifecycle::now_rfc3339(),
        });
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_pv(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_access_modes(spec, "", &mut errs);
        let capacity = spec.get("capacity").and_then(Value::as_object);
        match capacity {
            None => errs.push(FieldError::required("spec.capacity", "")),
            Some(c) if c.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
            Some(c) if c.len() > 1 || !c.contains_key("storage") => errs.push(
                FieldError::not_supported("spec.capacity", &json!(c), &["storage"]),
            ),
            Some(_) => {
                for (_, q) in quantities(spec.get("capacity"), "spec.capacity", false, &mut errs) {
                    if q.is_zero() || q.is_negative() {
                        errs.push(FieldError::invalid(
                            "spec.capacity[storage]",
                            &json!(q.to_string()),
                            "must be greater than zero",
                        ));
                    }
                }
            }
        }
        let policy = spec
            .get("persistentVolumeReclaimPolicy")
            .cloned()
            .unwrap_or(Value::Null);
        if !matches!(policy.as_str(), Some("Delete" | "Recycle" | "Retain")) {
            errs.push(FieldError::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                &policy,
                &["Delete", "Recycle", "Retain"],
            ));
        }
        validate_volume_mode(spec, &mut errs);
        validate_class_name(spec, &mut errs);
        let sources: Vec<&str> = PV_SOURCES
            .iter()
            .copied()
            .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required("spec", "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    errs.push(FieldError::forbidden(
                        format!("spec.{s}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if spec.get("hostPath").is_some() {
            required_strings(spec, "hostPath", &["path"], &mut errs);
        }
        if spec.get("nfs").is_some() {
            required_strings(spec, "nfs", &["server", "path"], &mut errs);
        }
        if spec.get("local").is_some() {
            required_strings(spec, "local", &["path"], &mut errs);
        }
        if spec.get("csi").is_some() {
            required_strings(spec, "csi", &["driver", "volumeHandle"], &mut errs);
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        let source = |obj: &Value| -> Vec<Value> {
            PV_SOURCES
                .iter()
                .map(|s| {
                    obj.pointer(&format!("/spec/{s}"))
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect()
        };
        if source(new) != source(old) {
            errs.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        immutable(new, old, "/spec/volumeMode", "volumeMode", &mut errs);
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
            Column::new("Access Modes", "string", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
            Column::new("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
            Column::new("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
            Column::new("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
            Column::new("StorageClass", "string", "StorageClass of the pv"),
            Column::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            Column::new("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            Column::age_column(),
            Column::wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let claim = match obj.pointer("/spec/claimRef") {
            Some(c) if !c.is_null() => {
                format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name"))
            }
            _ => String::new(),
        };
        let phase = if meta::deletion_timestamp(obj).is_some() {
            "Terminating"
        } else {
            str_at(obj, "/status/phase")
        };
        let unset = |s: &str| {
            if s.is_empty() {
                "<unset>".to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            name_cell(obj),
            json!(canonical(str_at(obj, "/spec/capacity/storage"))),
            json!(access_modes(array_at(obj, "/spec/accessModes"))),
            json!(str_at(obj, "/spec/persistentVolumeReclaimPolicy")),
            json!(phase),
            json!(claim),
            json!(storage_class(obj)),
            json!(unset(str_at(obj, "/spec/volumeAttributesClassName"))),
            json!(str_at(obj, "/status/reason")),
            json!(age(obj)),
            json!(unset(str_at(obj, "/spec/volumeMode"))),
        ]
    }
}

pub struct PersistentVolumeClaims;

fn default_pvc(obj: &mut Value) {
    set_default(obj, "spec", json!({}));
    let spec = &mut obj["spec"];
    set_default(spec, "volumeMode", json!("Filesystem"));
    if let Some(resources) = spec.get_mut("resources") {
        canonicalize_quantities(resources.get_mut("requests"));
        canonicalize_quantities(resources.get_mut("limits"));
    }
}

impl Hooks for PersistentVolumeClaims {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_pvc(obj);
        obj["status"] = json!({"phase": "Pending"});
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_pvc(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_access_modes(spec, "at least 1 access mode is required", &mut errs);
        let requests = spec.pointer("/resources/requests");
        let parsed = quantities(requests, "spec.resources.requests", true, &mut errs);
        let storage_given = requests.and_then(|r| r.get("storage")).is_some();
        if !storage_given {
            errs.push(FieldError::required("spec.resources[storage]", ""));
        }
        for (k, q) in parsed {
            if k == "storage" && q.is_zero() {
                errs.push(FieldError::invalid(
                    "spec.resources[storage]",
                    &json!(q.to_string()),
                    "must be greater than zero",
                ));
            }
        }
        quantities(
            spec.pointer("/resources/limits"),
            "spec.resources.limits",
            true,
            &mut errs,
        );
        validate_volume_mode(spec, &mut errs);
        validate_class_name(spec, &mut errs);
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        // Binding fills volumeName once; requests may grow; the rest is fixed.
        let fixed = |obj: &Value, other: &Value| {
            let mut spec = obj.get("spec").cloned().unwrap_or(json!({}));
            if let Some(s) = spec.as_object_mut() {
                s.remove("volumeAttributesClassName");
                if let Some(r) = s.get_mut("resources").and_then(Value::as_object_mut) {
                    r.remove("requests");
                }
                if str_at(other, "/spec/volumeName").is_empty() || s.get("volumeName").is_none() {
                    s.remove("volumeName");
                }
            }
            spec
        };
        let (was_named, is_named) = (
            str_at(old, "/spec/volumeName"),
            str_at(new, "/spec/volumeName"),
        );
        let rename = !was_named.is_empty() && was_named != is_named;
        if fixed(new, old) != fixed(old, new) || rename {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            Column::new("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            Column::new("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            Column::new("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
            Column::new("StorageClass", "string", "StorageClass of the pvc"),
            Column::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            Column::age_column(),
            Column::wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let phase = if meta::deletion_timestamp(obj).is_some() {
            "Terminating"
        } else {
            str_at(obj, "/status/phase")
        };
        let volume = str_at(obj, "/spec/volumeName");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                canonical(str_at(obj, "/status/capacity/storage")),
                access_modes(array_at(obj, "/status/accessModes")),
            )
        };
        let unset = |s: &str| {
            if s.is_empty() {
                "<unset>".to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            name_cell(obj),
            json!(phase),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(storage_class(obj)),
            json!(unset(str_at(obj, "/spec/volumeAttributesClassName"))),
            json!(age(obj)),
            json!(unset(str_at(obj, "/spec/volumeMode"))),
        ]
    }
}

pub struct StorageClasses;

fn default_storage_class(obj: &mut Value) {
    set_default(obj, "reclaimPolicy", json!("Delete"));
    set_default(obj, "volumeBindingMode", json!("Immediate"));
}

fn is_default_class(obj: &Value) -> bool {
    let a = meta::annotations(obj);
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| a.get(*k).is_some_and(|v| v == "true"))
}

impl Hooks for StorageClasses {
    fn prepare_create(&self, obj: &mut Value, _ctx: &Context<'_>) {
        default_storage_class(obj);
    }

    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_storage_class(new);
    }

    fn validate(&self, obj: &Value, _ctx: &Context<'_>) -> FieldErrors {
        let mut errs = subdomain_name(obj);
        let provisioner = str_at(obj, "/provisioner");
        if provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            let lower = provisioner.to_lowercase();
            errs.extend(check("provisioner", &lower, qualified_name(&lower)));
        }
        let policy = obj.get("reclaimPolicy").cloned().unwrap_or(Value::Null);
        if !matches!(policy.as_str(), Some("Delete" | "Retain")) {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                &policy,
                &["Delete", "Retain"],
            ));
        }
        let mode = obj.get("volumeBindingMode").cloned().unwrap_or(Value::Null);
        if !matches!(mode.as_str(), Some("Immediate" | "WaitForFirstConsumer")) {
            errs.push(FieldError::not_supported(
                "volumeBindingMode",
                &mode,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value, ctx: &Context<'_>) -> FieldErrors {
        let mut errs = self.validate(new, ctx);
        for field in ["parameters", "provisioner", "reclaimPolicy"] {
            if new.get(field) != old.get(field) {
                errs.push(FieldError::forbidden(
                    field,
                    format!("updates to {field} are forbidden."),
                ));
            }
        }
        immutable(
            new,
            old,
            "/volumeBindingMode",
            "volumeBindingMode",
            &mut errs,
        );
        errs
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name_column(),
            Column::new("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            Column::new("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
            Column::new("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
            Column::new("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            Column::age_column(),
        ]
    }

    fn row(&self, obj: &Value) -> Vec<Value> {
        let mut name = meta::name(obj).to_string();
        if is_default_class(obj) {
            name.push_str(" (default)");
        }
        let or = |p: &str, d: &str| {
            let s = str_at(obj, p);
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            json!(name),
            json!(str_at(obj, "/provisioner")),
            json!(or("/reclaimPolicy", "Delete")),
            json!(or("/volumeBindingMode", "Immediate")),
            json!(obj
                .get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            json!(age(obj)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Context<'static> = Context {
        namespace: "default",
        service_cidr: None,
    };

    fn pv() -> Value {
        json!({"metadata": {"name": "pv1"}, "spec": {
            "capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}, "storageClassName": "manual"
        }})
    }

    #[test]
    fn pv_defaults_reclaim_retain_filesystem_and_pending() {
        let mut obj = pv();
        PersistentVolumes.prepare_create(&mut obj, &CTX);
        assert_eq!(obj["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(obj["spec"]["volumeMode"], "Filesystem");
        assert_eq!(obj["spec"]["capacity"]["storage"], "1536Mi");
        assert_eq!(obj["status"]["phase"], "Pending");
        assert!(PersistentVolumes.validate(&obj, &CTX).is_empty());
        let mut row = PersistentVolumes.row(&obj);
        row.remove(9); // age
        assert_eq!(
            row,
            [
                "pv1",
                "1536Mi",
                "RWO",
                "Retain",
                "Pending",
                "",
                "manual",
                "<unset>",
                "",
                "Filesystem"
            ]
            .map(|c| json!(c))
            .to_vec()
        );
    }

    #[test]
    fn pv_validation_names_the_field() {
        let cases = [
            (json!({"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}), "spec.capacity: Required value"),
            (json!({"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}), "spec.accessModes: Required value"),
            (json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain"}), "spec: Required value: must specify a volume type"),
            (json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "nfs": {"server": "s", "path": "/p"}, "persistentVolumeReclaimPolicy": "Retain"}), "spec.nfs: Forbidden: may not specify more than 1 volume type"),
            (json!({"capacity": {"storage": "big"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}), "spec.capacity[storage]: Invalid value: \"big\": quantities must match"),
            (json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteSome"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Retain"}), "spec.accessModes: Unsupported value: \"ReadWriteSome\""),
            (json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/d"}, "persistentVolumeReclaimPolicy": "Keep"}), "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\""),
        ];
        for (spec, want) in cases {
            let obj = json!({"metadata": {"name": "pv"}, "spec": spec});
            let errs = PersistentVolumes.validate(&obj, &CTX).to_string();
            assert!(errs.contains(want), "{want} not in {errs}");
        }
    }

    #[test]
    fn pv_rows_show_claims_and_terminating() {
        let obj = json!({"metadata": {"name": "pv", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"claimRef": {"namespace": "ns", "name": "data"}, "capacity": {"storage": "1Gi"}},
            "status": {"phase": "Bound"}});
        let row = PersistentVolumes.row(&obj);
        assert_eq!(row[4], "Terminating");
        assert_eq!(row[5], "ns/data");
        assert_eq!(row[10], "<unset>");
    }

    #[test]
    fn pvc_defaults_and_required_fields() {
        let mut obj = json!({"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}}});
        PersistentVolumeClaims.prepare_create(&mut obj, &CTX);
        assert_eq!(obj["spec"]["volumeMode"], "Filesystem");
        assert_eq!(obj["status"]["phase"], "Pending");
        assert_eq!(obj["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(PersistentVolumeClaims.validate(&obj, &CTX).is_empty());
        let row = PersistentVolumeClaims.row(&obj);
        assert_eq!(row[1], "Pending");
        assert_eq!((row[3].as_str(), row[4].as_str()), (Some(""), Some("")));

        let bad = json!({"metadata": {"name": "data"}, "spec": {"resources": {}}});
        let errs = PersistentVolumeClaims.validate(&bad, &CTX).to_string();
        assert!(
            errs.contains("spec.accessModes: Required value: at least 1 access mode is required"),
            "{errs}"
        );
        assert!(
            errs.contains("spec.resources[storage]: Required value"),
            "{errs}"
        );
        let zero = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "0"}}}});
        assert_eq!(
            PersistentVolumeClaims.validate(&zero, &CTX).to_string(),
            "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"
        );
    }

    #[test]
    fn pvc_spec_is_fixed_except_requests_and_binding() {
        let old = json!({"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem", "resources": {"requests": {"storage": "1Gi"}}}});
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        grown["spec"]["volumeName"] = json!("pv1");
        assert!(PersistentVolumeClaims
            .validate_update(&grown, &old, &CTX)
            .is_empty());
        let mut changed = old.clone();
        changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(PersistentVolumeClaims
            .validate_update(&changed, &old, &CTX)
            .to_string()
            .starts_with("spec: Forbidden: spec is immutable after creation"));
    }

    #[test]
    fn storage_class_defaults_rows_and_fixed_fields() {
        let mut sc = json!({"metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path"});
        StorageClasses.prepare_create(&mut sc, &CTX);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(StorageClasses.validate(&sc, &CTX).is_empty());
        let row = StorageClasses.row(&sc);
        assert_eq!(row[0], "local (default)");
        assert_eq!(row[4], json!(false));
        let mut changed = sc.clone();
        changed["provisioner"] = json!("other.io/x");
        assert_eq!(
            StorageClasses
                .validate_update(&changed, &sc, &CTX)
                .to_string(),
            "provisioner: Forbidden: updates to provisioner are forbidden."
        );
        let bad = json!({"metadata": {"name": "x"}, "reclaimPolicy": "Recycle", "volumeBindingMode": "Immediate"});
        let errs = StorageClasses.validate(&bad, &CTX).to_string();
        assert!(errs.contains("provisioner: Required value"), "{errs}");
        assert!(
            errs.contains("reclaimPolicy: Unsupported value: \"Recycle\""),
            "{errs}"
        );
    }
}
