//! The one error type of the crate.
//!
//! Variants name the operation, the collection and the path involved, so a
//! message read alone says what went wrong. Library internals (rusqlite,
//! usearch exceptions, `std::io`) never appear in the public API: they are
//! turned into strings here.

use std::path::PathBuf;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Quiver.
///
/// [`Error::is_bad_input`] tells errors caused by the caller's input (which
/// leave the store unchanged) from failures of the machine or the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A collection name outside `[A-Za-z0-9_-]{1,64}`.
    #[error("invalid collection name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 _ -")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// No collection of that name.
    #[error("no collection named {name:?}")]
    NoSuchCollection {
        /// The name asked for.
        name: String,
    },
    /// `create` of a name that exists.
    #[error("collection {name:?} already exists")]
    CollectionExists {
        /// The name.
        name: String,
    },
    /// An invalid collection configuration (dimension, metric/scalar pair, HNSW settings).
    #[error("invalid collection config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A record id that is empty or longer than 512 bytes.
    #[error("invalid record id {id:?}: {reason}")]
    InvalidId {
        /// The id (cut to 80 characters).
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A vector of the wrong dimension.
    #[error("collection {collection:?} has dimension {expected}, got a vector of {got}{}", record_suffix(.id))]
    DimensionMismatch {
        /// Collection name.
        collection: String,
        /// The collection's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
        /// The record the vector belongs to, if any.
        id: Option<String>,
    },
    /// A vector with NaN/inf, or a zero vector under the cosine metric.
    #[error("invalid vector{}: {reason}", record_suffix(.id))]
    InvalidVector {
        /// The record the vector belongs to, if any.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A text that cannot be embedded: missing, empty or blank.
    #[error("invalid text{}: {reason}", record_suffix(.id))]
    InvalidText {
        /// The record the text belongs to, if any.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Metadata that is not a JSON object.
    #[error("invalid metadata for record {id:?}: {reason}")]
    InvalidMetadata {
        /// The record.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Search parameters out of range (k = 0, absurd k, ef = 0).
    #[error("invalid search parameter: {reason}")]
    InvalidSearch {
        /// What is wrong.
        reason: String,
    },
    /// A filter that does not parse or cannot be used.
    #[error("invalid filter: {reason}{}", column.map(|c| format!(" at {c}")).unwrap_or_default())]
    InvalidFilter {
        /// What is wrong.
        reason: String,
        /// 1-based character column of the problem in the filter text.
        column: Option<usize>,
    },
    /// An update of a record that does not exist.
    #[error("collection {collection:?} has no record {id:?}")]
    NoSuchRecord {
        /// Collection name.
        collection: String,
        /// The id.
        id: String,
    },
    /// A collection measures by a metric registered with
    /// [`crate::Store::register_metric`], and this process has not
    /// registered it: it cannot be opened (any answer would be wrong).
    #[error("metric {name:?} is not registered in this process: call Store::register_metric({name:?}, ..) before opening a collection that uses it")]
    UnknownMetric {
        /// The metric's name.
        name: String,
    },
    /// Any other invalid argument.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The change feed cannot give every change after `since`: snapshots
    /// pruned the tombstones of deletes up to `pruned` (or they were made
    /// before the store had a change feed). A consumer must copy the
    /// collection whole, then follow the feed from the sequence it copied.
    #[error("collection {collection:?}: the changes after sequence {since} are not all kept (deletes up to sequence {pruned} were pruned); copy the collection whole, then follow from its current sequence (register a consumer to keep its changes)")]
    ChangesPruned {
        /// Collection name.
        collection: String,
        /// The sequence the feed was asked to start after.
        since: u64,
        /// The sequence up to which deletes are not kept.
        pruned: u64,
    },
    /// The path exists but is not a Quiver store.
    #[error("{} is not a quiver store: {reason}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A read-only open of a store whose schema is older than this build's:
    /// a writable open migrates it.
    #[error("store {} has schema version {version}; open it writable once to migrate it to {}", path.display(), crate::format::SCHEMA_VERSION)]
    OldSchema {
        /// The store directory.
        path: PathBuf,
        /// Its schema version.
        version: i32,
    },
    /// The store's writer lock stayed held by another writer for the whole
    /// busy timeout ([`crate::StoreOptions::busy_timeout`]). Nothing was
    /// written; retrying may succeed.
    #[error("store {} is busy: pid {pid} held its writer lock for the {waited_ms} ms this write waited; retry, or wait longer", path.display())]
    Busy {
        /// The store directory.
        path: PathBuf,
        /// The process holding the lock, from the kernel (0 when unknown).
        pid: u32,
        /// How long this write waited.
        waited_ms: u64,
    },
    /// A write on a store opened read-only.
    #[error("store is open read-only: {operation} is not allowed")]
    ReadOnly {
        /// What was attempted.
        operation: &'static str,
    },
    /// The handle refers to a collection that has since been dropped.
    #[error("collection {name:?} was dropped")]
    Dropped {
        /// Collection name.
        name: String,
    },
    /// An embedding model that cannot be loaded or run: a missing or
    /// corrupt file, an unsupported architecture, a collection bound to
    /// another model.
    #[error("model {}: {reason}", path.display())]
    Model {
        /// The model directory (or name).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An SQLite failure.
    #[error("sqlite error during {operation}: {message}")]
    Sqlite {
        /// What was being done.
        operation: String,
        /// SQLite's message.
        message: String,
    },
    /// A file-system failure.
    #[error("i/o error during {operation} on {}: {message}", path.display())]
    Io {
        /// What was being done.
        operation: String,
        /// The path involved.
        path: PathBuf,
        /// The OS message.
        message: String,
    },
    /// A failure inside the vector index.
    #[error("index error in collection {collection:?} during {operation}: {message}")]
    Index {
        /// Collection name.
        collection: String,
        /// What was being done.
        operation: String,
        /// The index's message.
        message: String,
    },
    /// Stored data that cannot be read back (a bad vector blob, bad JSON).
    #[error("corrupt data in collection {collection:?}: {reason}")]
    Corrupt {
        /// Collection name.
        collection: String,
        /// What is wrong.
        reason: String,
    },
}

fn record_suffix(id: &Option<String>) -> String {
    match id {
        Some(id) => format!(" (record {id:?})"),
        None => String::new(),
    }
}

impl Error {
    /// True when another writer held the store past the busy timeout: the
    /// store is as it was, and the same call may succeed later. The CLI
    /// exits with code 75 (`EX_TEMPFAIL`).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// True when the error was caused by the caller's input: the store was
    /// left exactly as it was, and the CLI exits with code 2.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::NoSuchCollection { .. }
                | Error::CollectionExists { .. }
                | Error::InvalidConfig { .. }
                | Error::InvalidId { .. }
                | Error::DimensionMismatch { .. }
                | Error::InvalidVector { .. }
                | Error::InvalidText { .. }
                | Error::InvalidMetadata { .. }
                | Error::InvalidSearch { .. }
                | Error::InvalidArgument { .. }
                | Error::UnknownMetric { .. }
                | Error::NoSuchRecord { .. }
                | Error::ChangesPruned { .. }
                | Error::InvalidFilter { .. }
                | Error::NotAStore { .. }
                | Error::OldSchema { .. }
                | Error::Model { .. }
                | Error::ReadOnly { .. }
                | Error::Dropped { .. }
        )
    }

    pub(crate) fn sqlite(operation: impl Into<String>, err: rusqlite::Error) -> Error {
        Error::Sqlite {
            operation: operation.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn io(
        operation: impl Into<String>,
        path: impl Into<PathBuf>,
        err: std::io::Error,
    ) -> Error {
        Error::Io {
            operation: operation.into(),
            path: path.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn arg(reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            reason: reason.into(),
        }
    }
}

/// Attach an operation name to an SQLite result.
pub(crate) trait SqlContext<T> {
    fn during(self, operation: &str) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn during(self, operation: &str) -> Result<T> {
        self.map_err(|e| Error::sqlite(operation, e))
    }
}
