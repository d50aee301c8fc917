//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` turns a
//! list (or one object, or a watch event) into a `meta.k8s.io/v1` Table with the
//! resource's columns, as `kubectl get` expects.

use serde_json::{json, Value};

use crate::resources::ResourceDef;

/// kubectl's human age (`5s`, `3m10s`, `4h`, `2d3h`, `3y20d`).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an object from its `creationTimestamp`.
pub fn age(obj: &Value) -> String {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    match created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) {
        Some(ts) => human_duration((jiff::Timestamp::now() - ts).get_seconds()),
        None => "<unknown>".into(),
    }
}

/// The `object` cell kubectl gets with each row: `PartialObjectMetadata` by default.
fn row_object(obj: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => obj.clone(),
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

fn column_definitions(def: &ResourceDef) -> Vec<Value> {
    def.hooks
        .columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": if c.wide { 1 } else { 0 },
            })
        })
        .collect()
}

/// A Table of `objects`. `list_meta` carries the list's resourceVersion and continue token.
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    list_meta: Value,
    include: &str,
    with_columns: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| json!({"cells": def.hooks.row(obj), "object": row_object(obj, include)}))
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    // Watch events after the first carry rows only, as upstream does.
    t["columnDefinitions"] = if with_columns {
        Value::Array(column_definitions(def))
    } else {
        Value::Array(vec![])
    };
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400 + 86400, "3y1d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }
}
