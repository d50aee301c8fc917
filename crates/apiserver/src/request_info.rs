//! What a request is about, read from its method, path and query (upstream's
//! RequestInfoFactory): resource requests (`/api/v1/namespaces/ns/pods/name/status`) get a
//! verb, group, version, namespace, resource, name and subresource; everything else is a
//! non-resource request for its path.

use http::Method;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource: bool,
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub path: String,
}

fn query_flag(query: &str, key: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == key && matches!(v, "1" | "true" | "True")
    })
}

/// Path segments that follow `namespaces/{name}` and mean a subresource of the namespace.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, query: &str) -> Self {
        let mut info = RequestInfo {
            path: path.to_string(),
            ..Default::default()
        };
        let segments: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let rest: &[&str] = match segments.as_slice() {
            ["api", version, rest @ ..] => {
                info.version = version.to_string();
                rest
            }
            ["apis", group, version, rest @ ..] => {
                info.group = group.to_string();
                info.version = version.to_string();
                rest
            }
            _ => {
                info.verb = method.as_str().to_ascii_lowercase();
                if info.verb == "head" {
                    info.verb = "get".into();
                }
                return info;
            }
        };
        let (mut rest, legacy_watch) = match rest {
            ["watch", tail @ ..] => (tail, true),
            _ => (rest, false),
        };
        if rest.is_empty() {
            // `/api/v1` or `/apis/apps/v1`: discovery, a non-resource path.
            info.verb = "get".into();
            return info;
        }
        info.is_resource = true;
        if rest[0] == "namespaces" && rest.len() > 1 {
            info.namespace = rest[1].to_string();
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        info.resource = rest[0].to_string();
        if let Some(name) = rest.get(1) {
            info.name = name.to_string();
        }
        if let Some(sub) = rest.get(2) {
            info.subresource = sub.to_string();
        }
        if info.resource == "namespaces" {
            // A namespace's own namespace is empty; its name is the path's.
            info.name = info.namespace.clone();
            info.namespace.clear();
            if let Some(sub) = rest.get(2) {
                info.subresource = sub.to_string();
            }
        }
        info.verb = match *method {
            Method::GET | Method::HEAD => {
                if legacy_watch || query_flag(query, "watch") {
                    "watch"
                } else if info.name.is_empty() {
                    "list"
                } else {
                    "get"
                }
            }
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => {
                if info.name.is_empty() {
                    "deletecollection"
                } else {
                    "delete"
                }
            }
            _ => "",
        }
        .to_string();
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method, path: &str, query: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, query)
    }

    #[test]
    fn resource_paths() {
        let r = p(Method::GET, "/api/v1/namespaces/default/pods/web", "");
        assert_eq!(
            (
                r.verb.as_str(),
                r.namespace.as_str(),
                r.resource.as_str(),
                r.name.as_str()
            ),
            ("get", "default", "pods", "web")
        );
        let r = p(
            Method::GET,
            "/apis/apps/v1/namespaces/ns/deployments",
            "watch=true&resourceVersion=5",
        );
        assert_eq!(
            (r.verb.as_str(), r.group.as_str(), r.resource.as_str()),
            ("watch", "apps", "deployments")
        );
        let r = p(
            Method::PUT,
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            "",
        );
        assert_eq!(
            (r.verb.as_str(), r.subresource.as_str(), r.name.as_str()),
            ("update", "scale", "d")
        );
        let r = p(Method::GET, "/api/v1/pods", "");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("list", "", "pods")
        );
        let r = p(Method::DELETE, "/api/v1/namespaces/ns/configmaps", "");
        assert_eq!(r.verb, "deletecollection");
        let r = p(Method::GET, "/api/v1/watch/namespaces/ns/pods", "");
        assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("watch", "ns"));
    }

    #[test]
    fn namespaces_are_their_own_case() {
        let r = p(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_str(),
                r.namespace.as_str(),
                r.verb.as_str()
            ),
            ("namespaces", "kube-system", "", "get")
        );
        let r = p(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("namespaces", "x", "finalize")
        );
        let r = p(Method::GET, "/api/v1/namespaces", "");
        assert_eq!(
            (r.resource.as_str(), r.verb.as_str()),
            ("namespaces", "list")
        );
    }

    #[test]
    fn non_resource_paths() {
        let r = p(Method::GET, "/healthz", "");
        assert!(!r.is_resource);
        assert_eq!(r.verb, "get");
        assert!(!p(Method::GET, "/apis/apps/v1", "").is_resource);
    }
}
