//! What Skiff's control loops share, so each loop is only its reconcile logic.
//!
//! - [`informer`]: one watch-fed cache per resource type, shared by every loop in a
//!   process, with change handlers (old and new object) and secondary indexes;
//! - [`queue`]: a de-duplicating work queue of keys with delayed and rate-limited adds
//!   (client-go's semantics: a key is never processed by two workers at once);
//! - [`worker`]: runs a queue's workers until shutdown, requeueing failures with backoff;
//! - [`events`]: records core/v1 Events (what `kubectl describe` shows), aggregating
//!   repeats into a count;
//! - [`leader`]: leader election on a coordination.k8s.io Lease, so only one copy of a
//!   loop acts when several servers run;
//! - [`client`]: a kube client from a kubeconfig file.
//!
//! What it is not: no controller logic lives here, and nothing here touches the store;
//! everything goes through the API server like any other client.

pub mod client;
pub mod events;
pub mod informer;
pub mod join;
pub mod leader;
pub mod queue;
pub mod selector;
pub mod tls;
pub mod worker;

pub use informer::{Change, Informer, InformerFactory, ObjectKey};
pub use queue::WorkQueue;
pub use tokio_util::sync::CancellationToken;
