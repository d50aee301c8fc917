//! OpenAPI documents (`/openapi/v2`, `/openapi/v3`). Being built: until then these paths
//! answer 404 as a server without OpenAPI does.

use serde_json::Value;

pub fn v2() -> Option<Value> {
    None
}

pub fn v3_index() -> Option<Value> {
    None
}

pub fn v3_group_version(_path: &str) -> Option<Value> {
    None
}
