//! Turning a ConfigMap's or Secret's keys into files, with `items` and modes, as the
//! configMap and secret volumes (and their projected forms) do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::KeyToPath;

use super::atomic::{validate_path, FileProjection, Payload};

/// Reads the ConfigMap or Secret `name` a volume projects. `Ok(None)`: it is missing and
/// `optional` (an empty volume); missing and required is upstream's `<what> "name" not
/// found`.
pub async fn fetch<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    what: &str,
    optional: bool,
) -> Result<Option<K>, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let found = kube::Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("{what} \"{name}\": {e}"))?;
    match found {
        Some(obj) => Ok(Some(obj)),
        None if optional => Ok(None),
        None => Err(format!("{what} \"{name}\" not found")),
    }
}

/// Upstream's default file mode (0644) when `defaultMode` is not given.
pub const DEFAULT_MODE: u32 = 0o644;

/// What kind of object the keys came from; it names the missing-key error.
#[derive(Clone, Copy)]
pub enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    fn missing_key(self, key: &str) -> String {
        match self {
            Source::ConfigMap => format!("configmap references non-existent config key: {key}"),
            Source::Secret => format!("references non-existent secret key: {key}"),
        }
    }
}

/// Files for `data`: every key as a file of its name when `items` is empty, else each
/// item's key at the item's path. A missing key is an error unless `optional`.
pub fn project(
    source: Source,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (key, value) in data {
                validate_path(key)?;
                payload.insert(key.clone(), file(value, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(source.missing_key(&item.key));
                };
                validate_path(&item.path)?;
                let mode = item.mode.map(mode_bits).unwrap_or(default_mode);
                payload.insert(item.path.clone(), file(value, mode));
            }
        }
    }
    Ok(payload)
}

/// A mode from the API (an int32 in 0..=0777) as permission bits.
pub fn mode_bits(mode: i32) -> u32 {
    (mode as u32) & 0o777
}

fn file(data: &[u8], mode: u32) -> FileProjection {
    FileProjection {
        data: data.to_vec(),
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> BTreeMap<String, Vec<u8>> {
        [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn all_keys_without_items() {
        let p = project(Source::ConfigMap, &data(), None, 0o600, false).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["a"].mode, 0o600);
    }

    #[test]
    fn items_pick_keys_paths_and_modes() {
        let items = [item("b", "dir/bee", Some(0o400))];
        let p = project(Source::Secret, &data(), Some(&items), 0o644, false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/bee"]);
        assert_eq!(p["dir/bee"].data, b"2");
        assert_eq!(p["dir/bee"].mode, 0o400);
    }

    #[test]
    fn missing_keys_fail_unless_optional() {
        let items = [item("zz", "z", None)];
        assert_eq!(
            project(Source::ConfigMap, &data(), Some(&items), 0o644, false).unwrap_err(),
            "configmap references non-existent config key: zz"
        );
        assert_eq!(
            project(Source::Secret, &data(), Some(&items), 0o644, false).unwrap_err(),
            "references non-existent secret key: zz"
        );
        assert!(project(Source::Secret, &data(), Some(&items), 0o644, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn escaping_item_paths_are_refused() {
        let items = [item("a", "../../etc/x", None)];
        assert!(project(Source::ConfigMap, &data(), Some(&items), 0o644, false).is_err());
    }
}
