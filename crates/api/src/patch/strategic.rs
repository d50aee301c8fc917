//! Applying a strategic merge patch to an object, following apimachinery's
//! `StrategicMergeMapPatch` (server side: lists merged in parallel with their directives,
//! unmatched `null`s dropped).
//!
//! Order of work inside one map, as upstream: `$patch` (replace/delete the map), then
//! `$retainKeys` (prune the original), then every `$setElementOrder/<list>` together with
//! that list, then `$deleteFromPrimitiveList/<list>`, then the remaining fields.
//!
//! List order, as upstream: elements named by the patch (or by `$setElementOrder`) keep the
//! patch's order; the other elements keep the original's order and are slotted in before a
//! patch element only when the original had them before it. So an element new to the list
//! lands before the original-only elements that follow it (kubectl's docs show an added
//! container first); kubectl apply always sends `$setElementOrder`, which pins the order.
//!
//! Where upstream copies raw patch text into the result (a value for a field the original
//! lacks, a list element that is new), this merges it into an empty value instead, so
//! directives and `null`s never leak into the stored object.

use serde_json::{Map, Value};

use super::schema::{field, Field, ListStrategy, Ty};
use super::PatchError;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

type Object = Map<String, Value>;

/// Merges `patch` into `original` (a value of type `ty`); `None` when the patch deletes the
/// map (`$patch: delete`).
pub(super) fn merge_object(
    mut original: Object,
    patch: &Object,
    ty: Option<Ty>,
    path: &str,
) -> Result<Option<Object>, PatchError> {
    if let Some(directive) = patch.get(PATCH) {
        return match directive.as_str() {
            Some("replace") => {
                let rest: Object = patch
                    .iter()
                    .filter(|(k, _)| k.as_str() != PATCH)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                merge_object(Object::new(), &rest, ty, path)
            }
            Some("delete") => Ok(None),
            _ => Err(PatchError::UnknownPatchType {
                path: display(path),
                value: directive.to_string(),
            }),
        };
    }

    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, keys, path)?;
    }

    let mut ordered: Vec<&str> = Vec::new();
    for (k, order) in patch {
        if let Some(list) = k.strip_prefix(SET_ORDER) {
            if set_element_order(&mut original, patch, list, order, ty, path)? {
                ordered.push(list);
            }
        }
    }

    for (k, values) in patch {
        if let Some(list) = k.strip_prefix(DELETE_FROM) {
            let values = values.as_array().ok_or_else(|| PatchError::BadDirective {
                path: display(path),
                directive: k.clone(),
                expected: "a list",
            })?;
            if let Some(Value::Array(items)) = original.get_mut(list) {
                items.retain(|item| !values.iter().any(|v| same(item, v)));
            }
        }
    }

    for (k, v) in patch {
        if k == RETAIN_KEYS
            || k.starts_with(SET_ORDER)
            || k.starts_with(DELETE_FROM)
            || ordered.contains(&k.as_str())
        {
            continue;
        }
        if v.is_null() {
            original.remove(k);
            continue;
        }
        let child = join(path, k);
        let old = original.get_mut(k).map(Value::take);
        match merge_value(old, v, field_of(ty, k), &child)? {
            Some(merged) => {
                original.insert(k.clone(), merged);
            }
            None => {
                original.remove(k);
            }
        }
    }
    Ok(Some(original))
}

/// Merges one field's patch value into its original value (absent: `None`).
fn merge_value(
    old: Option<Value>,
    patch: &Value,
    meta: Field,
    path: &str,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(p) => {
            let base = match old {
                Some(Value::Object(o)) => o,
                _ => Object::new(),
            };
            Ok(merge_object(base, p, meta.ty, path)?.map(Value::Object))
        }
        Value::Array(p) => {
            let merged = match meta.list {
                ListStrategy::Merge { key } => {
                    let base = match old {
                        Some(Value::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    merge_list(base, p, key, meta.ty, path)?
                }
                ListStrategy::Replace => p.iter().map(without_nulls).collect(),
            };
            Ok(Some(Value::Array(merged)))
        }
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Merges a patch list into a list whose field has the merge strategy.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    key: Option<&str>,
    ty: Option<Ty>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let (mut objects, mut scalars) = (false, false);
    for v in original
        .iter()
        .chain(patch.iter().filter(|v| !is_directive(v)))
    {
        match v {
            Value::Array(_) => return Err(invalid(path, "lists of lists cannot be merged")),
            Value::Object(_) => objects = true,
            _ => scalars = true,
        }
    }
    if objects && scalars {
        return Err(invalid(path, "list mixes objects and scalars"));
    }
    match key {
        Some(key) if !scalars => merge_object_list(original, patch, key, ty, path),
        _ if objects => Err(invalid(path, "list of objects has no merge key declared")),
        _ => merge_scalar_list(original, patch, path),
    }
}

/// A set of scalars: union, keeping the first copy of duplicates.
fn merge_scalar_list(
    original: Vec<Value>,
    patch: &[Value],
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut items: Vec<Value> = Vec::new();
    for v in patch {
        match v.as_object().and_then(|m| m.get(PATCH)) {
            Some(d) if d.as_str() == Some("replace") => replace = true,
            Some(d) => {
                return Err(PatchError::UnknownPatchType {
                    path: display(path),
                    value: d.to_string(),
                })
            }
            None => push_unique(&mut items, v.clone()),
        }
    }
    if replace {
        return Ok(items);
    }
    let server = original.clone();
    let mut merged = Vec::new();
    for v in original {
        push_unique(&mut merged, v);
    }
    let server_only: Vec<Value> = merged
        .into_iter()
        .filter(|v| !items.iter().any(|p| same(p, v)))
        .collect();
    Ok(interleave(server_only, items, |v| {
        server.iter().position(|s| same(s, v))
    }))
}

/// A list of objects matched by `key`.
fn merge_object_list(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    ty: Option<Ty>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut plain: Vec<&Object> = Vec::new();
    for v in patch {
        let m = v
            .as_object()
            .ok_or_else(|| invalid(path, "list mixes objects and scalars"))?;
        let Some(directive) = m.get(PATCH) else {
            plain.push(m);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let kv = merge_key(m, key, path)?;
                original.retain(|o| !has_key_value(o, key, kv));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(invalid(
                    path,
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            _ => {
                return Err(PatchError::UnknownPatchType {
                    path: display(path),
                    value: directive.to_string(),
                })
            }
        }
    }

    if replace {
        let mut out = Vec::new();
        for m in plain {
            let kv = merge_key(m, key, path)?;
            let child = element_path(path, key, kv);
            if let Some(o) = merge_object(Object::new(), m, ty, &child)? {
                out.push(Value::Object(o));
            }
        }
        return Ok(out);
    }

    let server: Vec<Option<Value>> = original.iter().map(|o| o.get(key).cloned()).collect();
    let mut patch_keys: Vec<&Value> = Vec::new();
    for m in plain {
        let kv = merge_key(m, key, path)?;
        let child = element_path(path, key, kv);
        if !patch_keys.iter().any(|k| same(k, kv)) {
            patch_keys.push(kv);
        }
        match original.iter().position(|o| has_key_value(o, key, kv)) {
            Some(i) => {
                let base = match original[i].take() {
                    Value::Object(o) => o,
                    _ => Object::new(),
                };
                match merge_object(base, m, ty, &child)? {
                    Some(o) => original[i] = Value::Object(o),
                    None => {
                        original.remove(i);
                    }
                }
            }
            None => {
                if let Some(o) = merge_object(Object::new(), m, ty, &child)? {
                    original.push(Value::Object(o));
                }
            }
        }
    }

    let (mut patch_items, server_only): (Vec<Value>, Vec<Value>) = original
        .into_iter()
        .partition(|v| patch_keys.iter().any(|k| has_key_value(v, key, k)));
    patch_items.sort_by_key(|v| {
        patch_keys
            .iter()
            .position(|k| has_key_value(v, key, k))
            .unwrap_or(usize::MAX)
    });
    Ok(interleave(server_only, patch_items, |v| {
        let kv = v.get(key)?;
        server
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| same(s, kv)))
    }))
}

/// `$setElementOrder/<list>`: merges `list` (if the patch has it) and then orders the result
/// as the directive lists; elements it does not name keep their original relative order.
/// Returns whether it consumed the patch's `list` (it does not for a list that is replaced,
/// not merged: that is left to the ordinary field handling, in the patch's order).
fn set_element_order(
    original: &mut Object,
    patch: &Object,
    list: &str,
    order: &Value,
    ty: Option<Ty>,
    path: &str,
) -> Result<bool, PatchError> {
    let directive = format!("{SET_ORDER}{list}");
    let order = order.as_array().ok_or_else(|| PatchError::BadDirective {
        path: display(path),
        directive: directive.clone(),
        expected: "a list",
    })?;
    let child = join(path, list);
    let meta = field_of(ty, list);
    let ListStrategy::Merge { key } = meta.list else {
        return Ok(false);
    };
    if let Some(key) = key {
        for e in order {
            merge_key(
                e.as_object()
                    .ok_or_else(|| invalid(&child, "$setElementOrder entries must be objects"))?,
                key,
                &child,
            )?;
        }
    }
    let patch_list = match patch.get(list) {
        None => None,
        Some(Value::Array(a)) => Some(a.as_slice()),
        Some(_) => {
            return Err(PatchError::BadDirective {
                path: display(&child),
                directive,
                expected: "to accompany a list",
            })
        }
    };
    let server: Vec<Value> = match original.get(list) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if let Some(items) = patch_list {
        check_order(items, order, key, &child)?;
    }
    let merged = match patch_list {
        Some(items) => merge_list(server.clone(), items, key, meta.ty, &child)?,
        None if matches!(original.get(list), Some(Value::Array(_))) => server.clone(),
        None => return Ok(true),
    };

    let (mut named, mut rest): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| index_in(order, v, key).is_some());
    named.sort_by_key(|v| index_in(order, v, key).unwrap_or(usize::MAX));
    rest.sort_by_key(|v| index_in(&server, v, key).unwrap_or(usize::MAX));
    let result = interleave(rest, named, |v| index_in(&server, v, key));
    original.insert(list.to_string(), Value::Array(result));
    Ok(true)
}

/// Every element the patch list adds or changes must appear in `$setElementOrder`, in the
/// same relative order.
fn check_order(
    items: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let items: Vec<&Value> = items.iter().filter(|v| !is_directive(v)).collect();
    if let Some(key) = key {
        for m in items.iter().filter_map(|v| v.as_object()) {
            merge_key(m, key, path)?;
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < items.len() && j < order.len() {
        if element_eq(items[i], &order[j], key) {
            i += 1;
        }
        j += 1;
    }
    if i < items.len() {
        return Err(invalid(
            path,
            "the order of the patch list does not match its $setElementOrder list",
        ));
    }
    Ok(())
}

/// `$retainKeys`: drops the original's fields not listed; the patch may set only listed ones.
fn retain_keys(
    original: &mut Object,
    patch: &Object,
    keys: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let bad = || PatchError::BadDirective {
        path: display(path),
        directive: RETAIN_KEYS.to_string(),
        expected: "a list of field names",
    };
    let keys = keys.as_array().ok_or_else(bad)?;
    let keys: Vec<&str> = keys
        .iter()
        .map(|k| k.as_str().ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    for (k, v) in patch {
        if v.is_null() || k == RETAIN_KEYS || k.starts_with(SET_ORDER) || k.starts_with(DELETE_FROM)
        {
            continue;
        }
        if !keys.contains(&k.as_str()) {
            return Err(invalid(
                path,
                &format!("field {k:?} is set by the patch but not listed in $retainKeys"),
            ));
        }
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// Merges two ordered lists without reordering either: an element of `left` (the
/// original-only elements) goes before the next element of `right` (the patch's) only when
/// both have a position in the original and it comes first there.
fn interleave(
    left: Vec<Value>,
    right: Vec<Value>,
    position: impl Fn(&Value) -> Option<usize>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((position(l), position(r)), (Some(i), Some(j)) if i < j)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

fn field_of(ty: Option<Ty>, name: &str) -> Field {
    ty.map_or(Field::UNTYPED, |ty| field(ty, name))
}

fn is_directive(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key(PATCH))
}

fn merge_key<'a>(m: &'a Object, key: &str, path: &str) -> Result<&'a Value, PatchError> {
    m.get(key).ok_or_else(|| PatchError::MissingMergeKey {
        path: display(path),
        key: key.to_string(),
        element: Value::Object(m.clone()).to_string(),
    })
}

fn has_key_value(v: &Value, key: &str, kv: &Value) -> bool {
    v.get(key).is_some_and(|x| same(x, kv))
}

/// Whether `v` is `e` (scalars) or has `e`'s merge key value (objects).
fn element_eq(v: &Value, e: &Value, key: Option<&str>) -> bool {
    match key {
        Some(key) => e.get(key).is_some_and(|kv| has_key_value(v, key, kv)),
        None => same(v, e),
    }
}

fn index_in(list: &[Value], v: &Value, key: Option<&str>) -> Option<usize> {
    list.iter().position(|e| element_eq(v, e, key))
}

fn push_unique(list: &mut Vec<Value>, v: Value) {
    if !list.iter().any(|x| same(x, &v)) {
        list.push(v);
    }
}

/// JSON equality where `80` and `80.0` are the same number (Go decodes both to float64).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        _ => a == b,
    }
}

/// A replaced value as stored: `null` fields of its objects dropped (they mean "absent").
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn element_path(path: &str, key: &str, kv: &Value) -> String {
    format!("{path}[{key}={kv}]")
}

fn display(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_string()
    } else {
        path.to_string()
    }
}

fn invalid(path: &str, message: &str) -> PatchError {
    PatchError::Invalid {
        path: display(path),
        message: message.to_string(),
    }
}
