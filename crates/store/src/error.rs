use std::path::PathBuf;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything a store call can fail with. Messages name the key, revision, lease or file
/// involved so they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The revision asked for is older than retained history. `compact_revision` is the
    /// oldest revision still readable, or 0 when the backend did not say.
    #[error(
        "required revision {revision} has been compacted (compacted revision: {compact_revision})"
    )]
    Compacted {
        revision: i64,
        compact_revision: i64,
    },

    #[error("required revision {revision} is a future revision (current revision: {current})")]
    FutureRevision { revision: i64, current: i64 },

    #[error("request for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },

    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(i64),

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The data file could not be opened or read back: corrupt, truncated, not a Skiff store,
    /// or locked by another process.
    #[error("store data file {path}: {reason}")]
    DataFile { path: PathBuf, reason: String },

    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The embedded engine failed while reading or committing.
    #[error("embedded store: {0}")]
    Engine(String),

    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),

    /// The backend could not be reached or the watch was cut; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    #[error("store is closed")]
    Closed,

    /// A value could not be turned back into what was written (e.g. it was encrypted with
    /// a key the server no longer has).
    #[error("{0}")]
    Transform(String),
}
