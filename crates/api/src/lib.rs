//! Kubernetes API helpers that do no IO, shared by the API server and its clients inside
//! Skiff: `Status` errors with upstream's reasons and message texts, field errors,
//! label and field selectors, name validation, and accessors for untyped objects.
//!
//! What it is not: no HTTP, no storage, no typed objects (those come from k8s-openapi).

pub mod jointoken;
pub mod meta;
pub mod patch;
pub mod quantity;
pub mod selector;
pub mod status;
pub mod validation;

pub use status::{ApiError, GroupKind, GroupResource};
pub use validation::{FieldError, FieldErrors};
