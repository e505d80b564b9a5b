//! A collection: its write path, the in-memory index kept in step with
//! SQLite, snapshots, open-time recovery, search and maintenance.
//!
//! The protocol (DESIGN §3): a mutation is one SQLite transaction that
//! stamps every row it touches with the collection's next sequence number;
//! only after the commit is the change applied to the in-memory index.
//! `applied_seq` is the sequence the index reflects. A snapshot records the
//! `applied_seq` it contains, so opening = load snapshot + replay the rows
//! and tombstones stamped after it.
//!
//! One file per concern: `write` (upserts, deletes), `bulk` (bulk loads),
//! `persist` (snapshots), `changes` (the change feed and its consumers),
//! `load` (open, replay, rebuild, read-only catch-up), `search`, `hydrate` (hits from keys), `read` (records, counts, scans),
//! `maintenance` (info, verify, repair, compact, alter), `model` (the
//! embedding model: binding, texts in, text queries). This file holds
//! the types they share. Every SQL statement is in `db`, every usearch
//! call in `index`, and the filtered plan in `filtered`.

use crate::config::{digest_of, CollectionConfig, Metric, ModelBinding, Scalar};
use crate::db::records::{self, Rows};
use crate::db::tx::{self, ReadTx};
use crate::db::{self, catalogue, unix_now, Db};
use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::filter::Filter;
use crate::filtered;
use crate::index::{self, apply, index_err, FlatIndex, IndexInfo, Indexes};
use crate::options::Progress;
use crate::record::{self, check_record, check_vector, Record};
use crate::snapshot;
use crate::sync::{MutexExt, RwLockExt};
use crate::text::{self, Fusion, Ranks};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

pub(crate) mod batch;
pub(crate) mod bulk;
pub(crate) mod changes;
pub(crate) mod cluster;
mod expiry;
mod hydrate;
pub(crate) mod join;
mod load;
mod maintenance;
mod model;
mod persist;
mod read;
mod search;
mod write;

/// Largest `k` a search accepts.
pub const MAX_K: usize = 100_000;

/// Rows are applied to an index in chunks of this size during replays and rebuilds.
const CHUNK: usize = 4096;

/// Compact rebuilds the index once removed vectors hold this share of its slots.
pub const COMPACT_THRESHOLD: f64 = 0.2;

/// What a search returns besides ids and distances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    /// The record's text.
    pub text: bool,
    /// The record's metadata.
    pub metadata: bool,
    /// The record's full-precision vector.
    pub vector: bool,
}

/// Parameters of a search. Defaults: no `ef` override, approximate, ids
/// only, no filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Hits wanted: 1..=[`MAX_K`].
    pub k: usize,
    /// HNSW candidate list size for this query (collection default if `None`).
    pub ef: Option<usize>,
    /// Brute force over every vector: exact, slower.
    pub exact: bool,
    /// Fields to return with each hit.
    pub include: Include,
    /// Only records matching this filter.
    pub filter: Option<Filter>,
}

impl SearchOptions {
    /// Top `k`, approximate, ids and distances only.
    pub fn new(k: usize) -> Self {
        SearchOptions {
            k,
            ef: None,
            exact: false,
            include: Include::default(),
            filter: None,
        }
    }

    /// Only records matching `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Set the per-query `ef`.
    pub fn ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Search exactly.
    pub fn exact(mut self, exact: bool) -> Self {
        self.exact = exact;
        self
    }

    /// Choose the fields returned with each hit.
    pub fn include(mut self, include: Include) -> Self {
        self.include = include;
        self
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// Record id.
    pub id: String,
    /// Distance to the query (lower is closer): vector searches only.
    /// Keyword and hybrid hits carry a score instead ([`Hit::score`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// Text, if asked for and present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Metadata, if asked for and present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Vector, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Hybrid and keyword searches: how each list ranked and scored the hit.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<crate::text::Ranks>,
}

impl Hit {
    /// A keyword hit's BM25 score, or a hybrid hit's fused score (higher
    /// is better); `None` for vector hits, which have a distance.
    pub fn score(&self) -> Option<f32> {
        self.ranks.as_ref().and_then(|r| r.score)
    }
}

/// How a search was answered.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    /// HNSW graph search with this candidate list size.
    Hnsw {
        /// The ef used.
        ef: usize,
    },
    /// Brute force over every vector.
    Exact,
    /// A filter matched few records: exact distances over just those.
    FilterExact {
        /// Records matching the filter.
        matches: u64,
    },
    /// A filter matched many records: HNSW search restricted to them.
    FilterHnsw {
        /// The ef that produced the answer (widened while too few came back).
        ef: usize,
        /// Records matching the filter.
        matches: u64,
    },
    /// BM25 over the full-text index.
    Keyword {
        /// Records containing every query word.
        matches: u64,
    },
    /// Reciprocal rank fusion of a vector list and a keyword list.
    Hybrid {
        /// The ef of the vector list, if it used HNSW.
        ef: Option<usize>,
        /// Records matching the filter, if one applied.
        matches: Option<u64>,
    },
}

impl Plan {
    /// A short name: `hnsw`, `exact`, `filter-exact`, `filter-hnsw`, `keyword`, `hybrid`.
    pub fn name(&self) -> &'static str {
        match self {
            Plan::Hnsw { .. } => "hnsw",
            Plan::Exact => "exact",
            Plan::FilterExact { .. } => "filter-exact",
            Plan::FilterHnsw { .. } => "filter-hnsw",
            Plan::Keyword { .. } => "keyword",
            Plan::Hybrid { .. } => "hybrid",
        }
    }

    /// The ef used, if HNSW ran.
    pub fn ef(&self) -> Option<usize> {
        match *self {
            Plan::Hnsw { ef } | Plan::FilterHnsw { ef, .. } => Some(ef),
            Plan::Hybrid { ef, .. } => ef,
            _ => None,
        }
    }

    /// Records matching the filter (or containing every keyword), if one applied.
    pub fn matches(&self) -> Option<u64> {
        match *self {
            Plan::FilterExact { matches }
            | Plan::FilterHnsw { matches, .. }
            | Plan::Keyword { matches } => Some(matches),
            Plan::Hybrid { matches, .. } => matches,
            _ => None,
        }
    }
}

/// Hits, closest first, and the plan that produced them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// At most k hits.
    pub hits: Vec<Hit>,
    /// How they were found.
    pub plan: Plan,
}

/// Where an index came from when its collection was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexSource {
    /// Created empty with the collection.
    Created,
    /// Loaded from the snapshot, then the tail replayed.
    Snapshot,
    /// Rebuilt from SQLite (no usable snapshot, or a repair/alter/compact).
    Rebuilt,
}

/// What [`Collection::scan_page`] lists, in what order, from where.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Only the records matching this.
    pub filter: Option<Filter>,
    /// A metadata field to order by (dotted, or as written in a filter);
    /// `None` (or `"id"`) orders by id.
    pub order_by: Option<String>,
    /// Descending.
    pub desc: bool,
    /// Start after this: a [`Page::next`] of the same ordering (for id
    /// order, any id).
    pub after: Option<String>,
    /// At most this many records.
    pub limit: usize,
}

impl ScanOptions {
    /// Up to `limit` records in id order.
    pub fn new(limit: usize) -> ScanOptions {
        ScanOptions {
            limit,
            ..ScanOptions::default()
        }
    }

    /// Only the records matching `filter`.
    pub fn filter(mut self, filter: Filter) -> ScanOptions {
        self.filter = Some(filter);
        self
    }

    /// Ordered by a metadata field.
    pub fn order_by(mut self, field: impl Into<String>, desc: bool) -> ScanOptions {
        self.order_by = Some(field.into());
        self.desc = desc;
        self
    }

    /// Starting after a cursor.
    pub fn after(mut self, cursor: impl Into<String>) -> ScanOptions {
        self.after = Some(cursor.into());
        self
    }
}

/// A page of [`Collection::scan_page`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Set when the page stopped at its limit: where the next one starts.
    pub next: Option<String>,
}

/// How the index of a collection was last loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Source of the index.
    pub source: IndexSource,
    /// Why a snapshot was not used, for rebuilds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Changes replayed on top of the snapshot.
    pub tail_replayed: u64,
    /// Wall time of the load, in milliseconds.
    pub millis: f64,
}

/// What SQLite records about a collection's snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    /// The sequence number the snapshot includes.
    pub applied_seq: u64,
    /// File length.
    pub bytes: u64,
    /// Vectors in it.
    pub vectors: u64,
    /// blake3 of the file.
    pub digest: String,
    /// usearch version that wrote it.
    pub usearch_version: String,
    /// Unix time it was written.
    pub written_at: i64,
}

/// What the catalogue's snapshot row says, as [`Collection::info`] shows it.
fn snapshot_info(row: catalogue::SnapshotRow) -> SnapshotInfo {
    SnapshotInfo {
        applied_seq: row.applied_seq as u64,
        bytes: row.length,
        vectors: row.vectors,
        digest: row.digest,
        usearch_version: row.usearch_version,
        written_at: row.written_at,
    }
}

/// Everything about a collection, from [`Collection::info`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: CollectionConfig,
    /// Records in SQLite.
    pub count: u64,
    /// Last committed sequence number.
    pub seq: u64,
    /// Sequence the in-memory index reflects.
    pub applied_seq: u64,
    /// The snapshot, if one is recorded.
    pub snapshot: Option<SnapshotInfo>,
    /// Changes (record versions and tombstones) after the snapshot: what
    /// the next open will replay.
    pub tail: u64,
    /// The in-memory index.
    pub index: IndexInfo,
    /// How the index was loaded by this process.
    pub load: LoadReport,
    /// The last automatic snapshot failure, if the latest attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_error: Option<String>,
    /// Metadata paths with a field index.
    pub indexed_fields: Vec<String>,
}

/// Outcome of [`Collection::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Records in SQLite.
    pub records: u64,
    /// Vectors in the index.
    pub indexed: u64,
    /// Vectors compared between SQLite and the index.
    pub vectors_checked: u64,
    /// Records checked to be reachable by a search: every one (none
    /// without the `usearch` feature, where every search is exact).
    pub reachability_checked: u64,
    /// Records no search can reach (each also listed, up to five, in
    /// `problems`).
    pub unreachable: u64,
    /// Every problem found; empty means the collection is sound.
    pub problems: Vec<String>,
    /// Conditions that heal themselves and lose nothing, such as a snapshot
    /// that no longer matches its record after a crash mid-snapshot (the
    /// next writable open rebuilds it from SQLite; `repair` does it now).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Outcome of [`Collection::compact`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompactReport {
    /// Whether the index was rebuilt.
    pub rebuilt: bool,
    /// Removed-vector slots before.
    pub deleted_slots_before: u64,
    /// Bytes of the store's files before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

/// Index settings that [`Collection::alter`] may change; `None` keeps a setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alter {
    /// New metric.
    pub metric: Option<Metric>,
    /// New scalar kind.
    pub scalar: Option<Scalar>,
    /// New connectivity (M).
    pub connectivity: Option<usize>,
    /// New ef_construction.
    pub expansion_add: Option<usize>,
    /// New default ef.
    pub expansion_search: Option<usize>,
}

/// A handle to a collection. Cheap to clone, `Send + Sync`, methods on `&self`.
#[derive(Clone)]
pub struct Collection {
    store: Arc<Db>,
    state: Arc<CollState>,
}

/// A snapshot serialised under the writer, being written by a thread.
struct Staged {
    thread: std::thread::JoinHandle<Result<Written>>,
    /// The temp file it is written to.
    tmp: std::path::PathBuf,
    /// The sequence its bytes hold.
    applied: i64,
    /// Pending changes it covers.
    changes: u64,
    vectors: usize,
    options: String,
}

/// A staged snapshot on disk, fsynced, not yet in place.
struct Written {
    tmp: std::path::PathBuf,
    digest: String,
    length: usize,
    /// The serialised index, handed back so a bulk load can serialise the
    /// next snapshot into the same memory (see [`Snapshots::spare`]).
    bytes: Vec<u8>,
}

/// What lies between the index and its snapshot file. Changed under the
/// writer; `info` reads it.
#[derive(Default)]
struct Snapshots {
    /// Changes applied to the index but not in the snapshot.
    pending: u64,
    /// When the oldest of them was applied.
    pending_since: Option<Instant>,
    /// The last automatic snapshot's failure, if the latest attempt failed.
    error: Option<String>,
    /// A snapshot being written in the background (see [`CollState::stage`]).
    staged: Option<Staged>,
    /// A [`bulk::Bulk`] load is running: keep each snapshot's buffer in
    /// `spare` for the next. Serialising into fresh memory page-faulted in
    /// every page: 2.3% of a 50k ingest's CPU, on the writer, while the
    /// adds wait. Outside a bulk load the buffer is freed, not kept beside
    /// the index.
    bulk_loading: bool,
    spare: Option<Vec<u8>>,
}

/// The background thread that fills the id cache (see [`hydrate`]).
#[derive(Default)]
struct Warmer {
    /// Set once the thread has been started.
    started: AtomicBool,
    /// Keys the id cache did not have.
    misses: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tells the thread to stop (see [`CollState::stop_background`]).
    stop: AtomicBool,
}

/// What a collection knows of its expiries, valid while `applied_seq`
/// stays at `seq`: the earliest `expires_at` of any record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpiryCache {
    /// The `applied_seq` it was read at (-1: never read).
    pub(crate) seq: i64,
    pub(crate) next: Option<i64>,
}

impl Default for ExpiryCache {
    fn default() -> Self {
        ExpiryCache {
            seq: -1,
            next: None,
        }
    }
}

/// A loaded collection, shared by its handles.
///
/// Fields are grouped by what guards them. Lock order, outermost first
/// (a thread holding one may take only those after it):
/// `delete_gate` → `flat_build` → the store's writer connection → the
/// store's writer lock (`LOCK`, for one write transaction or a snapshot's
/// install) → `apply` → `indexes` → its id cache. `config`, `load`,
/// `snapshots`, `matches`, `lease` and `warm.thread` are leaves: held only
/// to read or replace a value, never while taking another lock.
///
/// Several processes may write the collection. Every change to the
/// indexes (this process's own commits, and replays of what others
/// committed) is made under `apply`, in sequence order, and moves
/// `applied_seq` to the change's sequence.
pub(crate) struct CollState {
    pub(crate) cid: i64,
    pub(crate) name: String,
    dropped: AtomicBool,
    config: RwLock<CollectionConfig>,
    /// False until the indexes are loaded (snapshot and tail, or a
    /// rebuild), which the first search, verify, info or bulk load does:
    /// a process that only writes (one `quiver upsert`) never loads them,
    /// and its writes reach the index from SQLite when some process does.
    loaded: AtomicBool,
    /// A writable load rebuilt the indexes: snapshot them soon, so the
    /// next open is fast.
    rebuilt_unsaved: AtomicBool,
    /// Held while a writable handle has the indexes loaded: this process
    /// snapshots the collection, others' one-shot writes need not.
    lease: Mutex<Option<crate::lock::Lease>>,
    /// The indexes, swapped whole by a rebuild; `applied_seq` is the
    /// sequence they reflect (stored after a change is applied).
    indexes: RwLock<Indexes>,
    applied_seq: AtomicI64,
    /// `indexes.flat` is built lazily under this lock so two exact
    /// searches do not both build it.
    flat_build: Mutex<()>,
    /// Held exclusively by a delete from before its commit until its keys
    /// are out of the index. A search whose hits vanished from SQLite
    /// (deleted between the index search and the lookup) retries holding
    /// it shared, which sees one consistent state.
    delete_gate: RwLock<()>,
    /// Held while the indexes change: an own change applied, or other
    /// processes' changes replayed ([`CollState::catch_up_locked`]).
    apply: Mutex<()>,
    /// The store's `data_version` when this collection was last found to
    /// miss nothing another process committed (-1: never).
    seen_version: AtomicI64,
    /// The last sequence this process committed (-1: none), and the last
    /// sequence below it that another process committed, as known when
    /// this one committed. A search need not look for other processes'
    /// changes while SQLite is at `own_committed` and `applied_seq` has
    /// reached `foreign_below_own`: what is left is this process's own,
    /// being applied.
    own_committed: AtomicI64,
    foreign_below_own: AtomicI64,
    snapshots: Mutex<Snapshots>,
    load: Mutex<LoadReport>,
    /// Filter match sets, valid at one sequence number.
    matches: Mutex<filtered::Cache>,
    /// The earliest record expiry, valid at one sequence number.
    expiry: Mutex<ExpiryCache>,
    warm: Warmer,
    /// The model text is embedded with, once loaded or given.
    #[cfg(feature = "embed")]
    embedder: Mutex<Option<Arc<dyn crate::embed::Embedder>>>,
}

impl CollState {
    fn new(
        cid: i64,
        name: &str,
        config: CollectionConfig,
        indexes: Indexes,
        applied: i64,
        load: LoadReport,
    ) -> Arc<Self> {
        Arc::new(CollState {
            cid,
            name: name.into(),
            dropped: AtomicBool::new(false),
            config: RwLock::new(config),
            loaded: AtomicBool::new(true),
            rebuilt_unsaved: AtomicBool::new(false),
            lease: Mutex::new(None),
            indexes: RwLock::new(indexes),
            applied_seq: AtomicI64::new(applied),
            flat_build: Mutex::new(()),
            delete_gate: RwLock::new(()),
            apply: Mutex::new(()),
            seen_version: AtomicI64::new(-1),
            own_committed: AtomicI64::new(-1),
            foreign_below_own: AtomicI64::new(-1),
            snapshots: Mutex::new(Snapshots::default()),
            load: Mutex::new(load),
            matches: Mutex::new(filtered::Cache::default()),
            expiry: Mutex::new(ExpiryCache::default()),
            warm: Warmer::default(),
            #[cfg(feature = "embed")]
            embedder: Mutex::new(None),
        })
    }

    pub(crate) fn new_empty(cid: i64, name: &str, config: CollectionConfig) -> Result<Arc<Self>> {
        let indexes = Indexes::empty(&config, 0, name)?;
        let load = LoadReport {
            source: IndexSource::Created,
            reason: None,
            tail_replayed: 0,
            millis: 0.0,
        };
        Ok(CollState::new(cid, name, config, indexes, 0, load))
    }

    /// A collection whose indexes are not loaded yet (see
    /// [`CollState::loaded`]): its row only.
    pub(crate) fn unloaded(row: catalogue::CollectionRow, name: &str) -> Result<Arc<Self>> {
        let indexes = Indexes::empty(&row.config, 0, name)?;
        let load = LoadReport {
            source: IndexSource::Snapshot,
            reason: None,
            tail_replayed: 0,
            millis: 0.0,
        };
        let state = CollState::new(row.cid, name, row.config, indexes, row.seq, load);
        state.loaded.store(false, Ordering::SeqCst);
        Ok(state)
    }

    fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// Take this collection's lease (see [`crate::lock::Lease`]) if a
    /// writable handle of this store holds none yet. Best effort: without
    /// it, one-shot writers beside this process may snapshot too, which
    /// costs them time, never correctness.
    pub(crate) fn claim(&self, store: &Db) {
        let mut lease = self.lease.locked();
        if lease.is_none() {
            *lease = store.lease(self.cid).ok().flatten();
        }
    }

    /// Stop and join this collection's background thread, if any. Each
    /// step of it is short, so this returns quickly.
    pub(crate) fn stop_background(&self) {
        self.warm.stop.store(true, Ordering::Release);
        let handle = self.warm.thread.locked().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    fn config(&self) -> CollectionConfig {
        self.config.read_lock().clone()
    }

    /// Where its rows are, for the record queries, with vectors of `dim`.
    fn rows_with(&self, dim: usize) -> Rows<'_> {
        Rows {
            cid: self.cid,
            name: &self.name,
            dim,
            now: None,
        }
    }

    /// [`CollState::rows_with`] the collection's dimension.
    fn rows(&self) -> Rows<'_> {
        self.rows_with(self.config.read_lock().dimension)
    }

    fn add_pending(&self, n: u64) {
        if n == 0 || !self.is_loaded() {
            return;
        }
        let mut snapshots = self.snapshots.locked();
        snapshots.pending += n;
        snapshots.pending_since.get_or_insert_with(Instant::now);
    }
}

/// A batch committed by [`Collection::commit_upsert`], to apply.
struct Committed {
    seq: i64,
    upserts: Vec<(u64, Vec<f32>)>,
    ids: Vec<(u64, String)>,
}

impl Collection {
    pub(crate) fn new(store: Arc<Db>, state: Arc<CollState>) -> Self {
        Collection { store, state }
    }

    /// [`CollState::rows_with`].
    fn rows_of(&self, dim: usize) -> Rows<'_> {
        self.state.rows_with(dim)
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The collection's settings.
    pub fn config(&self) -> CollectionConfig {
        self.state.config()
    }

    fn alive(&self) -> Result<()> {
        if self.state.dropped.load(Ordering::SeqCst) {
            return Err(Error::Dropped {
                name: self.state.name.clone(),
            });
        }
        Ok(())
    }

    /// Check a record against this collection (id, dimension, finite
    /// values, metadata shape) without writing anything.
    ///
    /// # Errors
    /// As the validation errors of [`Collection::upsert`].
    pub fn validate(&self, record: &Record) -> Result<()> {
        check_record(&self.config(), &self.state.name, record)
    }
}
