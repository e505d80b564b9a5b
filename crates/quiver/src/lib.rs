//! Quiver: an embedded vector store. SQLite is the source of truth; a
//! usearch HNSW index is a derived, persisted cache of it.
//!
//! A [`Store`] is a directory holding named [`Collection`]s of
//! [`Record`]s (a string id, a vector, optional text and JSON metadata).
//! Every write is one SQLite transaction; the index follows the commit and
//! is snapshotted atomically, so after a crash the next open serves exactly
//! the committed state without a full rebuild.
//!
//! ```
//! use quiver::{CollectionConfig, Include, Record, SearchOptions, Store};
//!
//! let store = Store::open_in_memory()?;
//! let notes = store.create_collection("notes", &CollectionConfig::new(2))?;
//! notes.upsert(&[
//!     Record::new("n1", vec![1.0, 0.0]).with_text("east"),
//!     Record::new("n2", vec![0.0, 1.0]).with_text("north"),
//! ])?;
//! let opts = SearchOptions::new(1).include(Include { text: true, ..Default::default() });
//! let top = notes.search(&[0.8, 0.2], &opts)?;
//! assert_eq!(top.hits[0].text.as_deref(), Some("east"));
//! # Ok::<(), quiver::Error>(())
//! ```

pub mod clock;
mod collection;
mod config;
mod db;
#[cfg(feature = "embed")]
pub mod embed;
mod error;
#[doc(hidden)]
pub mod failpoint;
pub mod filter;
mod filtered;
mod format;
mod gemm;
mod index;
pub mod jsonl;
mod kmeans;
mod lock;
mod options;
mod parallel;
mod record;
mod snapshot;
mod store;
mod sync;
mod text;

pub use clock::{Clock, ManualClock, SystemClock};
pub use collection::batch::{Batch, Update, WriteReport};
pub use collection::bulk::Bulk;
pub use collection::changes::{Change, Changes, ConsumerInfo, MAX_CONSUMER_NAME};
pub use collection::cluster::{Cluster, ClusterOptions, Clustering};
pub use collection::join::{DedupOptions, DuplicateGroup, JoinOptions, JoinPair, JoinReport};
pub use collection::{
    Alter, Collection, CollectionInfo, CompactReport, Hit, Include, IndexSource, LoadReport, Page,
    Plan, ScanOptions, SearchOptions, SearchResult, SnapshotInfo, VerifyReport, COMPACT_THRESHOLD,
    MAX_K,
};
pub use config::{
    validate_name, CollectionConfig, CustomMetric, Metric, MetricFn, ModelBinding, Scalar,
    Tokenizer, DEFAULT_EXPANSION_SEARCH, MAX_DIMENSION,
};
pub use db::DB_FILE;
pub use error::{Error, Result};
pub use filter::Filter;
pub use index::IndexInfo;
pub use options::{Progress, ProgressFn, StoreOptions};
pub use record::{Record, MAX_ID_BYTES};
pub use store::{BackupReport, CollectionSummary, Store};
pub use text::{Fusion, Ranks};

/// The README's Rust example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Exact distance between two vectors under `metric`, as the index defines
/// it (cos = 1 − cosine similarity, l2 = squared Euclidean).
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    index::exact::distance(metric, a, b)
}
