//! A collection: its write path, the in-memory index kept in step with
//! SQLite, snapshots, open-time recovery, search and maintenance.
//!
//! The protocol (DESIGN §3): a mutation is one SQLite transaction that
//! stamps every row it touches with the collection's next sequence number;
//! only after the commit is the change applied to the in-memory index.
//! `applied_seq` is the sequence the index reflects. A snapshot records the
//! `applied_seq` it contains, so opening = load snapshot + replay the rows
//! and tombstones stamped after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

use crate::config::{CollectionConfig, Metric, Scalar};
use crate::error::{Error, Result, SqlContext};
use crate::failpoint::failpoint;
use crate::filter::{self, Filter};
use crate::filtered::{self, MatchSet};
#[cfg(feature = "usearch")]
use crate::index::hnsw::par_each;
#[cfg(feature = "usearch")]
use crate::index::HnswIndex;
use crate::index::{self, FlatIndex};
use crate::record::{self, check_record, check_vector, Record};
use crate::snapshot;
use crate::store::{unix_now, Inner, Progress};
use crate::text::{self, Fusion, Ranks};

/// Largest `k` a search accepts.
pub const MAX_K: usize = 100_000;

/// Compact rebuilds the index once removed vectors hold this share of its slots.
pub const COMPACT_THRESHOLD: f64 = 0.2;

/// With i8 index storage, searches take this many times k candidates from
/// the index and rank them by their exact f32 vectors.
#[cfg(feature = "usearch")]
const RESCORE: usize = 4;

/// Rows are applied to the index in chunks of this size during replay and rebuild.
const CHUNK: usize = 4096;

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
    /// Distance to the query (lower is closer).
    pub distance: f32,
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

/// The in-memory index of a collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexInfo {
    /// `"hnsw"` (usearch) or `"flat"` (exact only).
    pub kind: &'static str,
    /// Vectors present.
    pub vectors: u64,
    /// Slots held by removed vectors until a rebuild.
    pub deleted_slots: u64,
    /// Reserved slots.
    pub capacity: u64,
    /// Bytes of memory the index uses.
    pub memory_bytes: u64,
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
    store: Arc<Inner>,
    state: Arc<CollState>,
}

/// The indexes of a collection; swapped whole on rebuild.
struct Indexes {
    #[cfg(feature = "usearch")]
    hnsw: HnswIndex,
    /// With usearch: built on the first exact search, then kept in step.
    /// Without: always present, it is the index.
    flat: Option<FlatIndex>,
    /// Key → id of records found by searches, so an ids-only search does
    /// not go to SQLite. A key's id never changes (keys are never reused:
    /// `AUTOINCREMENT`), so entries only leave, when the key is removed.
    ids: RwLock<HashMap<u64, Box<str>>>,
}

/// A snapshot serialised under the writer, being written by a thread.
struct Staged {
    thread: std::thread::JoinHandle<Result<Written>>,
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
    /// next snapshot into the same memory (see [`CollState::spare`]).
    bytes: Vec<u8>,
}

pub(crate) struct CollState {
    pub(crate) cid: i64,
    pub(crate) name: String,
    config: RwLock<CollectionConfig>,
    dropped: AtomicBool,
    indexes: RwLock<Indexes>,
    /// `flat` is built lazily under this lock so two exact searches do not both build it.
    flat_build: Mutex<()>,
    applied_seq: AtomicI64,
    /// Changes applied but not in the snapshot.
    pending: AtomicU64,
    pending_since: Mutex<Option<Instant>>,
    load: Mutex<LoadReport>,
    snapshot_error: Mutex<Option<String>>,
    /// Serialises read-only refreshes.
    refresh: Mutex<()>,
    /// Set once a background thread has been started to fill the id cache.
    warming: AtomicBool,
    /// Keys the id cache did not have.
    id_misses: AtomicU64,
    /// A snapshot being written in the background (see [`CollState::stage`]).
    staged: Mutex<Option<Staged>>,
    /// A [`Bulk`] load is running: keep each snapshot's buffer in `spare`
    /// for the next. Serialising into fresh memory page-faulted in every
    /// page: 2.3% of a 50k ingest's CPU, on the writer, while the adds
    /// wait. Outside a bulk load the buffer is freed, not kept beside the
    /// index.
    bulk_loading: AtomicBool,
    spare: Mutex<Option<Vec<u8>>>,
    /// That thread, and the flag that stops it (see [`CollState::stop_background`]).
    warm_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: AtomicBool,
    /// The store's `data_version` when a read-only refresh last found
    /// this collection current (-1: never).
    seen_version: AtomicI64,
    /// Held exclusively by a delete from before its commit until its keys
    /// are out of the index. A search whose hits vanished from SQLite
    /// (deleted between the index search and the lookup) retries holding
    /// it shared, which sees one consistent state.
    delete_gate: RwLock<()>,
    /// Filter match sets, valid at one sequence number.
    matches: Mutex<filtered::Cache>,
}

pub(crate) fn config_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CollectionConfig>> {
    // Columns 2..=8: dimension, metric, scalar, connectivity, expansion_add, expansion_search, model.
    let metric: String = r.get(3)?;
    let scalar: String = r.get(4)?;
    let build = || -> Result<CollectionConfig> {
        Ok(CollectionConfig {
            dimension: r.get::<_, i64>(2).during("read config")? as usize,
            metric: metric.parse()?,
            scalar: scalar.parse()?,
            connectivity: r.get::<_, i64>(5).during("read config")? as usize,
            expansion_add: r.get::<_, i64>(6).during("read config")? as usize,
            expansion_search: r.get::<_, i64>(7).during("read config")? as usize,
            model: r.get(8).during("read config")?,
        })
    };
    Ok(build())
}

const COLLECTION_ROW: &str =
    "SELECT cid, name, dimension, metric, scalar, connectivity, expansion_add,
        expansion_search, model, seq, pruned_seq FROM collections";

struct CollectionRow {
    cid: i64,
    config: CollectionConfig,
    seq: i64,
    pruned_seq: i64,
}

fn read_collection(
    conn: &Connection,
    where_: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<CollectionRow>> {
    let row = conn
        .query_row(&format!("{COLLECTION_ROW} WHERE {where_}"), [arg], |r| {
            Ok((r.get(0)?, config_from_row(r)?, r.get(9)?, r.get(10)?))
        })
        .optional()
        .during("read collection")?;
    match row {
        None => Ok(None),
        Some((cid, config, seq, pruned_seq)) => Ok(Some(CollectionRow {
            cid,
            config: config?,
            seq,
            pruned_seq,
        })),
    }
}

struct SnapshotRow {
    info: SnapshotInfo,
    #[cfg_attr(not(feature = "usearch"), allow(dead_code))]
    options: String,
}

fn read_snapshot_row(conn: &Connection, cid: i64) -> Result<Option<SnapshotRow>> {
    conn.query_row(
        "SELECT digest, length, vectors, options, usearch_version, applied_seq, written_at
         FROM snapshots WHERE cid = ?1",
        [cid],
        |r| {
            Ok(SnapshotRow {
                info: SnapshotInfo {
                    digest: r.get(0)?,
                    bytes: r.get::<_, i64>(1)? as u64,
                    vectors: r.get::<_, i64>(2)? as u64,
                    usearch_version: r.get(4)?,
                    applied_seq: r.get::<_, i64>(5)? as u64,
                    written_at: r.get(6)?,
                },
                options: r.get(3)?,
            })
        },
    )
    .optional()
    .during("read snapshot record")
}

/// The options string stamped on a snapshot: what must match for it to be used.
fn options_stamp(config: &CollectionConfig) -> String {
    format!(
        "dim={} metric={} scalar={} connectivity={}",
        config.dimension, config.metric, config.scalar, config.connectivity
    )
}

fn begin_read(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN DEFERRED")
        .during("begin read transaction")
}

fn end_read(conn: &Connection) -> Result<()> {
    conn.execute_batch("COMMIT").during("end read transaction")
}

impl Indexes {
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    fn empty(config: &CollectionConfig, expected: usize, name: &str) -> Result<Self> {
        Ok(Indexes {
            #[cfg(feature = "usearch")]
            hnsw: HnswIndex::new(config, expected)
                .map_err(|m| index_err(name, "create index", m))?,
            flat: if cfg!(feature = "usearch") {
                None
            } else {
                Some(FlatIndex::new(config.dimension, config.metric))
            },
            ids: RwLock::new(HashMap::new()),
        })
    }

    fn len(&self) -> usize {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.len()
        }
        #[cfg(not(feature = "usearch"))]
        {
            self.flat.as_ref().map_or(0, FlatIndex::len)
        }
    }

    fn slots(&self) -> usize {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.slots()
        }
        #[cfg(not(feature = "usearch"))]
        {
            self.len()
        }
    }

    fn contains(&self, key: u64) -> bool {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.contains(key)
        }
        #[cfg(not(feature = "usearch"))]
        {
            self.flat.as_ref().is_some_and(|f| f.contains(key))
        }
    }

    /// Make room for `additional` adds. Needs `&mut`: usearch's reserve
    /// must not overlap any other call.
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    fn grow(&mut self, additional: usize, name: &str) -> Result<()> {
        #[cfg(feature = "usearch")]
        self.hnsw
            .grow(additional)
            .map_err(|m| index_err(name, "reserve capacity", m))?;
        if let Some(f) = self.flat.as_mut() {
            f.reserve(additional);
        }
        Ok(())
    }

    fn info(&self) -> IndexInfo {
        #[cfg(feature = "usearch")]
        {
            IndexInfo {
                kind: "hnsw",
                vectors: self.hnsw.len() as u64,
                deleted_slots: self.hnsw.deleted() as u64,
                capacity: self.hnsw.capacity() as u64,
                memory_bytes: self.hnsw.memory_bytes() as u64,
            }
        }
        #[cfg(not(feature = "usearch"))]
        {
            let n = self.len() as u64;
            IndexInfo {
                kind: "flat",
                vectors: n,
                deleted_slots: 0,
                capacity: n,
                memory_bytes: self.flat.as_ref().map_or(0, FlatIndex::memory_bytes) as u64,
            }
        }
    }
}

#[cfg_attr(not(feature = "usearch"), allow(dead_code))]
fn index_err(collection: &str, operation: &str, message: String) -> Error {
    Error::Index {
        collection: collection.into(),
        operation: operation.into(),
        message,
    }
}

/// Apply removals and upserts to the indexes. Grows capacity first under
/// the write lock, then adds under the read lock so searches go on.
fn apply(
    lock: &RwLock<Indexes>,
    name: &str,
    upserts: &[(u64, Vec<f32>)],
    removes: &[u64],
) -> Result<()> {
    {
        let mut w = lock.write().unwrap_or_else(|p| p.into_inner());
        #[cfg(feature = "usearch")]
        let needs = w.hnsw.needs_growth(upserts.len());
        #[cfg(not(feature = "usearch"))]
        let needs = true;
        if needs {
            w.grow(upserts.len(), name)?;
        }
        // The flat index needs `&mut`; it is small work next to HNSW inserts.
        let ids = w.ids.get_mut().unwrap_or_else(|p| p.into_inner());
        for k in removes {
            ids.remove(k);
        }
        if let Some(f) = w.flat.as_mut() {
            for k in removes {
                f.remove(*k);
            }
            for (k, v) in upserts {
                f.add(*k, v);
            }
        }
    }
    #[cfg(feature = "usearch")]
    {
        let r = lock.read().unwrap_or_else(|p| p.into_inner());
        for k in removes {
            r.hnsw
                .remove(*k)
                .map_err(|m| index_err(name, "remove", m))?;
        }
        // Keys in one change are distinct, so a large change is added on
        // every core, once the graph the adds go to is large enough (above
        // a viewed snapshot, that is the small overlay, not the collection).
        // The first nodes of a graph go in one at a time (see
        // `build_threads`), the rest of the change in parallel.
        let owned = r.hnsw.owned_nodes();
        let head = SEQUENTIAL_BELOW.saturating_sub(owned).min(upserts.len());
        let threads = build_threads(upserts.len() - head, owned + head);
        let add_to = |hnsw: &HnswIndex, i: usize| -> Result<()> {
            let (k, v) = &upserts[i];
            hnsw.upsert(*k, v).map_err(|m| index_err(name, "add", m))
        };
        let add = |i: usize| add_to(&r.hnsw, i);
        (0..head).try_for_each(add)?;
        let rest = &upserts[head..];
        if threads <= 1 {
            (head..upserts.len()).try_for_each(add)?;
        } else {
            // Parallel adds can leave a node no search reaches (usearch
            // #735; measured here: 5 of 3,000). Once every add is done,
            // the nodes not shown reachable are found and added again
            // alone, which links them properly.
            par_each(rest.len(), threads, |i| add(head + i))?;
            let lost: Vec<usize> = missing_nodes(&r.hnsw, rest, threads)?
                .into_iter()
                .map(|i| head + i)
                .collect();
            drop(r);
            if !lost.is_empty() {
                // Each re-add takes a new slot: make room first.
                lock.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .grow(lost.len(), name)?;
                let r = lock.read().unwrap_or_else(|p| p.into_inner());
                for i in lost {
                    add_to(&r.hnsw, i)?;
                }
            }
        }
    }
    Ok(())
}

/// The `upserts` (by position), just added in parallel, that may be
/// unreachable. First their links: a node that a node from before the
/// change links to is reachable, and so is a node a reachable one links to
/// ([`HnswIndex::unlinked`]). That settles all but 0-1 a batch of 1,000 on
/// pypi-minilm-20k, and cost 2 ms a batch where searching for every node
/// by its own vector (ef 10) cost 15-22 ms, 8-10% of the adds. The rest are
/// searched for by their own vector, at ef 10 and then ef 128, before they
/// count as lost: on hard data (a synthetic 1M set with recall@10 0.87 at
/// ef 128) ef 10 alone missed so many that re-adding them all doubled the
/// ingest time and, each re-add leaving a retired node, lowered recall.
/// Each pass keeps to one ef: usearch's ef is index-wide, so mixing them
/// makes the threads wait on each other to switch it.
#[cfg(feature = "usearch")]
fn missing_nodes(
    hnsw: &HnswIndex,
    upserts: &[(u64, Vec<f32>)],
    threads: usize,
) -> Result<Vec<usize>> {
    let keys: Vec<u64> = upserts.iter().map(|(k, _)| *k).collect();
    let mut todo = hnsw.unlinked(&keys, threads);
    for ef in [10, 128] {
        let missed = Mutex::new(Vec::new());
        par_each(todo.len(), threads, |j| {
            let (k, v) = &upserts[todo[j]];
            if !hnsw.finds_itself(*k, v, ef) {
                missed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(todo[j]);
            }
            Ok(())
        })?;
        todo = missed.into_inner().unwrap_or_else(|p| p.into_inner());
        if todo.is_empty() {
            break;
        }
    }
    Ok(todo)
}

/// Fill a collection's id cache from SQLite on a background thread, so
/// that ids-only searches stop going to SQLite soon after open without
/// making the open itself wait. Stops when the store or collection goes.
fn warm_ids(
    conn: Connection,
    state: std::sync::Weak<CollState>,
) -> Option<std::thread::JoinHandle<()>> {
    const ROWS: i64 = 16_384;
    std::thread::Builder::new()
        .name("quiver-warm-ids".into())
        .spawn(move || {
            let mut after = i64::MIN;
            loop {
                let Some(st) = state.upgrade() else { return };
                if st.stop.load(Ordering::Acquire) {
                    return;
                }
                let rows: Result<Vec<(i64, String)>> = (|| {
                    conn.prepare_cached(
                        "SELECT key, id FROM records WHERE cid = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
                    )
                    .during("prepare id warm-up")?
                    .query_map(params![st.cid, after, ROWS], |r| Ok((r.get(0)?, r.get(1)?)))
                    .during("read ids")?
                    .collect::<rusqlite::Result<_>>()
                    .during("read ids")
                })();
                let Ok(rows) = rows else { return };
                let Some(last) = rows.last() else { return };
                after = last.0;
                let ix = st.indexes.read().unwrap_or_else(|p| p.into_inner());
                // Only keys the index holds: a key deleted meanwhile stays out.
                let mut ids = ix.ids.write().unwrap_or_else(|p| p.into_inner());
                for (key, id) in rows {
                    if ix.contains(key as u64) {
                        ids.entry(key as u64).or_insert_with(|| id.into_boxed_str());
                    }
                }
            }
        })
        .ok()
}

/// A graph's first nodes are added one at a time ([`apply`] splits a
/// change there), the rest by [`build_threads`]. Parallel adds into a tiny
/// graph left the most nodes unreachable (and each re-add leaves a retired
/// node: a 300-record rebuild then kept 1-3 of them). Up to 4,096 nodes
/// were added one at a time at first; 1,000 made pypi-minilm-20k's ingest
/// 0.86-0.88× usearch's build instead of 0.77×, with 0-1 re-adds a batch.
/// 256 (with the split) took a fresh process's replay of a 999-change tail
/// above a 20k snapshot from 97-106 ms to 68-69 ms to its first answer,
/// every node reachable and no re-add.
#[cfg(feature = "usearch")]
const SEQUENTIAL_BELOW: usize = 256;

/// Threads to add `n` vectors to a graph of `len` nodes with: one per core
/// for large changes, where the split pays for the threads, once the graph
/// has its first [`SEQUENTIAL_BELOW`] nodes.
#[cfg(feature = "usearch")]
fn build_threads(n: usize, len: usize) -> usize {
    const PER_THREAD: usize = 64;
    if len < SEQUENTIAL_BELOW {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.min(n / PER_THREAD).max(1)
}

/// Replay every change stamped after `after` onto `lock`'s indexes.
/// Returns the number of changes applied.
fn replay(
    conn: &Connection,
    store: &Inner,
    name: &str,
    cid: i64,
    dim: usize,
    after: i64,
    lock: &RwLock<Indexes>,
) -> Result<u64> {
    let total: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM tombstones WHERE cid = ?1 AND seq > ?2)
                  + (SELECT count(*) FROM records WHERE cid = ?1 AND seq > ?2)",
            params![cid, after],
            |r| r.get(0),
        )
        .during("count tail")?;
    let mut done = 0u64;
    let removes: Vec<u64> = conn
        .prepare_cached("SELECT key FROM tombstones WHERE cid = ?1 AND seq > ?2")
        .during("read tombstones")?
        .query_map(params![cid, after], |r| r.get::<_, i64>(0))
        .during("read tombstones")?
        .map(|k| k.map(|k| k as u64))
        .collect::<rusqlite::Result<_>>()
        .during("read tombstones")?;
    apply(lock, name, &[], &removes)?;
    done += removes.len() as u64;
    stream_records(conn, name, cid, dim, Some(after), |chunk| {
        apply(lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        report(store, name, "replay", done, total as u64);
        Ok(())
    })?;
    Ok(done)
}

/// Feed `(key, vector)` rows of a collection, optionally only those stamped
/// after a sequence, in chunks.
fn stream_records(
    conn: &Connection,
    name: &str,
    cid: i64,
    dim: usize,
    after: Option<i64>,
    mut f: impl FnMut(&[(u64, Vec<f32>)]) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("SELECT key, vector FROM records WHERE cid = ?1 AND seq > ?2 ORDER BY key")
        .during("read records")?;
    let mut rows = stmt
        .query(params![cid, after.unwrap_or(-1)])
        .during("read records")?;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(row) = rows.next().during("read records")? {
        let key: i64 = row.get(0).during("read records")?;
        let blob = row
            .get_ref(1)
            .during("read records")?
            .as_blob()
            .unwrap_or(&[]);
        let v = record::decode(blob, dim).ok_or_else(|| Error::Corrupt {
            collection: name.into(),
            reason: format!(
                "record key {key} has a vector of {} bytes, expected {}",
                blob.len(),
                dim * 4
            ),
        })?;
        chunk.push((key as u64, v));
        if chunk.len() == CHUNK {
            f(&chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        f(&chunk)?;
    }
    Ok(())
}

fn report(store: &Inner, name: &str, phase: &'static str, done: u64, total: u64) {
    if let Some(p) = &store.options.progress {
        p(&Progress {
            collection: name.into(),
            phase,
            done,
            total,
        });
    }
}

/// Build indexes from every record in SQLite.
fn rebuild(
    conn: &Connection,
    store: &Inner,
    name: &str,
    cid: i64,
    config: &CollectionConfig,
) -> Result<Indexes> {
    let total: i64 = conn
        .query_row("SELECT count(*) FROM records WHERE cid = ?1", [cid], |r| {
            r.get(0)
        })
        .during("count records")?;
    let lock = RwLock::new(Indexes::empty(config, total as usize, name)?);
    let mut done = 0u64;
    report(store, name, "rebuild", 0, total as u64);
    stream_records(conn, name, cid, config.dimension, None, |chunk| {
        apply(&lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        report(store, name, "rebuild", done, total as u64);
        Ok(())
    })?;
    Ok(lock.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Load indexes from the snapshot if it is usable; else `Err(reason)`.
#[cfg(feature = "usearch")]
fn load_snapshot(
    store: &Inner,
    conn: &Connection,
    cid: i64,
    config: &CollectionConfig,
) -> Result<(Indexes, i64), String> {
    let dir = store.dir.as_ref().ok_or("in-memory store")?;
    let row = read_snapshot_row(conn, cid)
        .map_err(|e| e.to_string())?
        .ok_or("no snapshot recorded")?;
    if row.options != options_stamp(config) {
        return Err(format!(
            "snapshot options {:?} differ from the collection's",
            row.options
        ));
    }
    let (map, vectors) = snapshot::map_checked(dir, cid, row.info.bytes, &row.info.digest)?;
    let hnsw = HnswIndex::view(config, map, vectors, row.info.vectors as usize)?;
    Ok((
        Indexes {
            hnsw,
            flat: None,
            ids: RwLock::new(HashMap::new()),
        },
        row.info.applied_seq as i64,
    ))
}

#[cfg(not(feature = "usearch"))]
fn load_snapshot(
    _: &Inner,
    _: &Connection,
    _: i64,
    _: &CollectionConfig,
) -> Result<(Indexes, i64), String> {
    Err("built without usearch: the exact index loads from SQLite".into())
}

/// Load a collection's indexes: snapshot + tail, else rebuild.
/// Returns the indexes, the sequence they reflect, the report, and the
/// number of changes not covered by a snapshot.
fn load_indexes(
    store: &Inner,
    conn: &Connection,
    name: &str,
    row: &CollectionRow,
) -> Result<(Indexes, LoadReport, u64)> {
    let started = Instant::now();
    let (indexes, report, pending) = match load_snapshot(store, conn, row.cid, &row.config) {
        Ok((indexes, applied)) => {
            let lock = RwLock::new(indexes);
            let n = replay(
                conn,
                store,
                name,
                row.cid,
                row.config.dimension,
                applied,
                &lock,
            )?;
            let report = LoadReport {
                source: IndexSource::Snapshot,
                reason: None,
                tail_replayed: n,
                millis: 0.0,
            };
            (
                lock.into_inner().unwrap_or_else(|p| p.into_inner()),
                report,
                n,
            )
        }
        Err(reason) => {
            let indexes = rebuild(conn, store, name, row.cid, &row.config)?;
            let pending = indexes.len() as u64;
            let report = LoadReport {
                source: IndexSource::Rebuilt,
                reason: Some(reason),
                tail_replayed: 0,
                millis: 0.0,
            };
            (indexes, report, pending)
        }
    };
    Ok((
        indexes,
        LoadReport {
            millis: started.elapsed().as_secs_f64() * 1e3,
            ..report
        },
        pending,
    ))
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
            config: RwLock::new(config),
            dropped: AtomicBool::new(false),
            indexes: RwLock::new(indexes),
            flat_build: Mutex::new(()),
            applied_seq: AtomicI64::new(applied),
            pending: AtomicU64::new(0),
            pending_since: Mutex::new(None),
            load: Mutex::new(load),
            snapshot_error: Mutex::new(None),
            refresh: Mutex::new(()),
            seen_version: AtomicI64::new(-1),
            warming: AtomicBool::new(false),
            id_misses: AtomicU64::new(0),
            staged: Mutex::new(None),
            bulk_loading: AtomicBool::new(false),
            spare: Mutex::new(None),
            warm_thread: Mutex::new(None),
            stop: AtomicBool::new(false),
            delete_gate: RwLock::new(()),
            matches: Mutex::new(filtered::Cache::default()),
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

    /// Load a collection by name (its index from snapshot + tail, or rebuilt).
    pub(crate) fn load(store: &Inner, name: &str) -> Result<Option<Arc<Self>>> {
        if store.is_read_only() {
            let state = store.read(|conn| {
                begin_read(conn)?;
                let Some(row) = read_collection(conn, "name = ?1", &name)? else {
                    return Ok(None);
                };
                let (indexes, load, _) = load_indexes(store, conn, name, &row)?;
                end_read(conn)?;
                Ok(Some(CollState::new(
                    row.cid, name, row.config, indexes, row.seq, load,
                )))
            })?;
            if let Some(s) = &state {
                store.register(s.clone());
            }
            return Ok(state);
        }
        // Writable: hold the writer so no write slips between reading the
        // tail and registering the state.
        let mut conn = store.writer("open collection")?;
        if let Some(s) = store.loaded(name) {
            return Ok(Some(s));
        }
        let Some(row) = read_collection(&conn, "name = ?1", &name)? else {
            return Ok(None);
        };
        let (indexes, load, pending) = load_indexes(store, &conn, name, &row)?;
        let rebuilt = load.source == IndexSource::Rebuilt;
        let state = CollState::new(row.cid, name, row.config, indexes, row.seq, load);
        state.add_pending(pending);
        if rebuilt {
            // Write a fresh snapshot now so the next open is fast.
            state.snapshot(store, &mut conn)?;
        }
        store.register(state.clone());
        Ok(Some(state))
    }

    /// Stop and join this collection's background thread, if any. Each
    /// step of it is short, so this returns quickly.
    pub(crate) fn stop_background(&self) {
        self.stop.store(true, Ordering::Release);
        let handle = self
            .warm_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
    }

    fn config(&self) -> CollectionConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn add_pending(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.pending.fetch_add(n, Ordering::SeqCst);
        self.pending_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// Write a snapshot of the index and record it. The caller holds the
    /// writer connection, so no write runs meanwhile. A background snapshot
    /// still being written is waited for and installed first.
    fn snapshot(&self, store: &Inner, conn: &mut Connection) -> Result<()> {
        let Some(dir) = &store.dir else {
            return Ok(());
        };
        if !cfg!(feature = "usearch") {
            return Ok(());
        }
        self.install_staged(store, conn, true);
        let options = options_stamp(&self.config());
        let (bytes, applied, vectors) = self.serialise(store, conn)?;
        snapshot::write_atomic(dir, self.cid, &bytes)?;
        failpoint!("snapshot:after-rename");
        let digest = snapshot::digest(&bytes);
        self.record_snapshot(conn, &digest, bytes.len(), vectors, &options, applied)?;
        self.pending.store(0, Ordering::SeqCst);
        *self.pending_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self
            .snapshot_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// The index as snapshot bytes, the sequence they hold and their vector
    /// count. A viewed (mapped) snapshot is materialised first.
    fn serialise(&self, store: &Inner, conn: &mut Connection) -> Result<(Vec<u8>, i64, usize)> {
        #[cfg(feature = "usearch")]
        if self
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .hnsw
            .is_viewed()
        {
            self.materialise(store, conn)?;
        }
        #[cfg(feature = "usearch")]
        self.relink_unreached(conn)?;
        #[cfg(not(feature = "usearch"))]
        let _ = (store, conn);
        let applied = self.applied_seq.load(Ordering::SeqCst);
        #[cfg(feature = "usearch")]
        let (bytes, vectors) = {
            let ix = self.indexes.read().unwrap_or_else(|p| p.into_inner());
            let bytes = ix
                .hnsw
                .to_bytes(self.spare.lock().unwrap_or_else(|p| p.into_inner()).take())
                .map_err(|m| index_err(&self.name, "serialise snapshot", m))?;
            (bytes, ix.hnsw.len())
        };
        #[cfg(not(feature = "usearch"))]
        let (bytes, vectors): (Vec<u8>, usize) = (Vec::new(), 0);
        Ok((bytes, applied, vectors))
    }

    /// Add again, one at a time, the live nodes no search can reach, so no
    /// snapshot holds one. The write path checks each parallel add, but a
    /// node shown reachable then can lose its last in-link later, when
    /// usearch prunes a neighbour's list for a newer node: an exact count
    /// after a 1M ingest found 2 (usearch's own build: 11). A walk of the
    /// links ([`HnswIndex::walk`]) finds them; only when it reaches fewer
    /// live nodes than the index holds are the collection's keys read to
    /// name them. The caller holds the writer. Returns how many.
    #[cfg(feature = "usearch")]
    fn relink_unreached(&self, conn: &Connection) -> Result<usize> {
        let lost: Vec<u64> = {
            let ix = self.indexes.read().unwrap_or_else(|p| p.into_inner());
            if ix.hnsw.is_viewed() {
                return Ok(0);
            }
            let reached = ix.hnsw.walk();
            let live = reached
                .iter()
                .filter(|k| **k < index::hnsw::DEAD_BASE)
                .count();
            if live >= ix.hnsw.len() {
                return Ok(0);
            }
            let mut stmt = conn
                .prepare_cached("SELECT key FROM records WHERE cid = ?1")
                .during("prepare key scan")?;
            let keys = stmt
                .query_map([self.cid], |r| r.get::<_, i64>(0))
                .during("read keys")?;
            let mut lost = Vec::new();
            for key in keys {
                let key = key.during("read keys")? as u64;
                if !reached.contains(&key) && ix.hnsw.contains(key) {
                    lost.push(key);
                }
            }
            lost
        };
        if lost.is_empty() {
            return Ok(0);
        }
        let dim = self.config().dimension;
        let mut stmt = conn
            .prepare_cached("SELECT id, vector FROM records WHERE key = ?1")
            .during("prepare vector lookup")?;
        let mut upserts = Vec::with_capacity(lost.len());
        for key in lost {
            let (id, blob): (String, Vec<u8>) = stmt
                .query_row([key as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .during("read vector")?;
            upserts.push((key, decode_vector(&self.name, &id, &blob, dim)?));
        }
        // A handful: `apply` adds them one at a time (checked, were there many).
        apply(&self.indexes, &self.name, &upserts, &[])?;
        Ok(upserts.len())
    }

    /// Start a snapshot in the background: the index is serialised here,
    /// under the writer, and a thread writes and fsyncs the bytes to the
    /// staged file (hashing them on the way), so the writer goes on with
    /// the next batch. A later write, `flush` or `close` installs it with
    /// [`CollState::install_staged`]. Until then the live snapshot and its
    /// record are untouched: a crash leaves them and a longer tail.
    fn stage(&self, store: &Inner, conn: &mut Connection) -> Result<()> {
        let Some(dir) = store.dir.clone() else {
            return Ok(());
        };
        if !cfg!(feature = "usearch") {
            return Ok(());
        }
        let options = options_stamp(&self.config());
        let (bytes, applied, vectors) = self.serialise(store, conn)?;
        let changes = self.pending.load(Ordering::SeqCst);
        let cid = self.cid;
        let index_dir = snapshot::index_dir(&dir);
        let thread = std::thread::Builder::new()
            .name("quiver-snapshot".into())
            .spawn(move || {
                let tmp = snapshot::write_temp(&dir, cid, &bytes)?;
                Ok(Written {
                    tmp,
                    digest: snapshot::digest(&bytes),
                    length: bytes.len(),
                    bytes,
                })
            })
            .map_err(|e| Error::io("start a snapshot thread", index_dir, e))?;
        *self.staged.lock().unwrap_or_else(|p| p.into_inner()) = Some(Staged {
            thread,
            applied,
            changes,
            vectors,
            options,
        });
        Ok(())
    }

    /// Install the background snapshot if its thread has finished (or, with
    /// `wait`, once it has): rename it over the live file and record it.
    /// The caller holds the writer. A failure is kept for `info`; the
    /// changes stay pending, so a later snapshot covers them. Returns true
    /// while one is still being written (only without `wait`).
    fn install_staged(&self, store: &Inner, conn: &mut Connection, wait: bool) -> bool {
        let staged = {
            let mut slot = self.staged.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some(s) if wait || s.thread.is_finished() => s,
                other => {
                    let busy = other.is_some();
                    *slot = other;
                    return busy;
                }
            }
        };
        // Staged only when the store has a directory.
        let Some(dir) = &store.dir else {
            return false;
        };
        let staged_path = snapshot::temp_path(dir, self.cid);
        let written = staged.thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                "write a snapshot",
                &staged_path,
                std::io::Error::other("the snapshot thread panicked"),
            ))
        });
        let written = written.map(|mut w| {
            if self.bulk_loading.load(Ordering::SeqCst) {
                *self.spare.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(std::mem::take(&mut w.bytes));
            }
            w
        });
        let installed = written.and_then(|w| {
            snapshot::install(dir, self.cid, &w.tmp)?;
            failpoint!("snapshot:after-rename");
            self.record_snapshot(
                conn,
                &w.digest,
                w.length,
                staged.vectors,
                &staged.options,
                staged.applied,
            )
        });
        let mut error = self
            .snapshot_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match installed {
            Ok(()) => {
                let left = self
                    .pending
                    .load(Ordering::SeqCst)
                    .saturating_sub(staged.changes);
                self.pending.store(left, Ordering::SeqCst);
                // The oldest change left is younger than the snapshot.
                *self.pending_since.lock().unwrap_or_else(|p| p.into_inner()) =
                    (left > 0).then(Instant::now);
                *error = None;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&staged_path);
                *error = Some(e.to_string());
            }
        }
        false
    }

    /// Wait for a background snapshot and throw it away (the collection is
    /// being dropped).
    pub(crate) fn discard_staged(&self) {
        let staged = self.staged.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = staged {
            if let Ok(Ok(w)) = s.thread.join() {
                let _ = std::fs::remove_file(w.tmp);
            }
        }
    }

    /// Record a snapshot now in place, and prune the tombstones it covers.
    fn record_snapshot(
        &self,
        conn: &mut Connection,
        digest: &str,
        length: usize,
        vectors: usize,
        options: &str,
        applied: i64,
    ) -> Result<()> {
        let tx = conn.transaction().during("begin snapshot record")?;
        tx.execute(
            "INSERT OR REPLACE INTO snapshots
                 (cid, digest, length, vectors, options, usearch_version, applied_seq, written_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                self.cid,
                digest,
                length as i64,
                vectors as i64,
                options,
                index::engine_version(),
                applied,
                unix_now()
            ],
        )
        .during("record snapshot")?;
        tx.execute(
            "DELETE FROM tombstones WHERE cid = ?1 AND seq <= ?2",
            params![self.cid, applied],
        )
        .during("prune tombstones")?;
        tx.execute(
            "UPDATE collections SET pruned_seq = max(pruned_seq, ?2) WHERE cid = ?1",
            params![self.cid, applied],
        )
        .during("record pruning")?;
        tx.commit().during("commit snapshot record")
    }

    /// Install a background snapshot, waiting for it; then snapshot if at
    /// least `min` changes are pending (and at least one).
    pub(crate) fn snapshot_if(&self, store: &Inner, min: u64) -> Result<()> {
        let mut conn = store.writer("snapshot")?;
        if self.dropped.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.install_staged(store, &mut conn, true);
        if self.pending.load(Ordering::SeqCst) >= min.max(1) {
            self.snapshot(store, &mut conn)?;
        }
        Ok(())
    }

    /// After a write: install a finished background snapshot, and start
    /// one when the tail has grown past the threshold and none is being
    /// written. The threshold grows with the collection (a quarter of its
    /// slots), so the bytes written by snapshots stay proportional to the
    /// bytes ingested.
    fn maybe_snapshot(&self, store: &Inner, conn: &mut Connection) {
        if self.install_staged(store, conn, false) {
            return;
        }
        let pending = self.pending.load(Ordering::SeqCst);
        if pending == 0 {
            return;
        }
        let slots = self
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .slots() as u64;
        let by_count = pending >= store.options.snapshot_every_changes.max(slots / 4);
        let by_age = self
            .pending_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed().as_secs() >= store.options.snapshot_every_secs);
        if by_count || by_age {
            // The write itself is committed; a failed snapshot only means a
            // longer replay later. Keep the error for `info`.
            if let Err(e) = self.stage(store, conn) {
                *self
                    .snapshot_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }

    /// Replace a viewed snapshot (mapped, read-only) with an index in
    /// memory that can be saved: the snapshot loaded, then every change
    /// after it replayed from SQLite. Runs under the writer, so nothing
    /// commits meanwhile; searches go on against the old indexes.
    #[cfg(feature = "usearch")]
    fn materialise(&self, store: &Inner, conn: &mut Connection) -> Result<()> {
        let config = self.config();
        let loaded = (|| -> std::result::Result<Indexes, String> {
            let dir = store.dir.as_ref().ok_or("in-memory store")?;
            let row = read_snapshot_row(conn, self.cid)
                .map_err(|e| e.to_string())?
                .ok_or("no snapshot recorded")?;
            let bytes = snapshot::read_checked(dir, self.cid, row.info.bytes, &row.info.digest)?;
            let hnsw = HnswIndex::load(&config, &bytes, row.info.vectors as usize)?;
            let lock = RwLock::new(Indexes {
                hnsw,
                flat: None,
                ids: RwLock::new(HashMap::new()),
            });
            replay(
                conn,
                store,
                &self.name,
                self.cid,
                config.dimension,
                row.info.applied_seq as i64,
                &lock,
            )
            .map_err(|e| e.to_string())?;
            Ok(lock.into_inner().unwrap_or_else(|p| p.into_inner()))
        })();
        match loaded {
            Ok(fresh) => {
                let mut ix = self.indexes.write().unwrap_or_else(|p| p.into_inner());
                // Keys keep their ids: carry the cache over.
                let ids = std::mem::take(&mut *ix.ids.write().unwrap_or_else(|p| p.into_inner()));
                *fresh.ids.write().unwrap_or_else(|p| p.into_inner()) = ids;
                *ix = fresh;
                Ok(())
            }
            Err(reason) => self.rebuild_now_unsaved(store, conn, &reason),
        }
    }

    /// A viewed snapshot whose vectors failed their background check:
    /// rebuild from SQLite (and, for a writer, snapshot afresh).
    #[cfg(feature = "usearch")]
    pub(crate) fn recover_damaged(&self, store: &Inner) -> Result<()> {
        const REASON: &str = "the snapshot's vectors do not match their recorded digest";
        let damaged = |st: &CollState| {
            st.indexes
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .hnsw
                .snapshot_check()
                .is_some_and(|c| c.get() == crate::index::CheckState::Failed)
        };
        if store.is_read_only() {
            let _r = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
            if !damaged(self) {
                return Ok(());
            }
            return store.read(|conn| {
                begin_read(conn)?;
                let seq = read_seq(conn, self.cid)?;
                self.rebuild_now_unsaved(store, conn, REASON)?;
                self.applied_seq.store(seq, Ordering::SeqCst);
                end_read(conn)
            });
        }
        let mut conn = store.writer("rebuild")?;
        if !damaged(self) {
            return Ok(());
        }
        self.rebuild_now(store, &mut conn, REASON)
    }

    /// Swap in a rebuild from SQLite without snapshotting it.
    fn rebuild_now_unsaved(&self, store: &Inner, conn: &Connection, reason: &str) -> Result<()> {
        let started = Instant::now();
        let config = self.config();
        let fresh = rebuild(conn, store, &self.name, self.cid, &config)?;
        *self.indexes.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        *self.load.lock().unwrap_or_else(|p| p.into_inner()) = LoadReport {
            source: IndexSource::Rebuilt,
            reason: Some(reason.into()),
            tail_replayed: 0,
            millis: started.elapsed().as_secs_f64() * 1e3,
        };
        Ok(())
    }

    /// Replace the indexes with a rebuild from SQLite and snapshot them.
    fn rebuild_now(&self, store: &Inner, conn: &mut Connection, reason: &str) -> Result<()> {
        let seq: i64 = read_seq(conn, self.cid)?;
        self.rebuild_now_unsaved(store, conn, reason)?;
        self.applied_seq.store(seq, Ordering::SeqCst);
        let pending = self.indexes.read().unwrap_or_else(|p| p.into_inner()).len() as u64;
        self.pending.store(0, Ordering::SeqCst);
        self.add_pending(pending.max(1));
        failpoint!(&format!("{reason}:before-snapshot"));
        self.snapshot(store, conn)
    }
}

/// A batch committed by [`Collection::commit_upsert`], to apply.
struct Committed {
    seq: i64,
    upserts: Vec<(u64, Vec<f32>)>,
    ids: Vec<(u64, String)>,
}

/// A bulk load into one collection, from [`Collection::bulk`].
///
/// Each [`Bulk::upsert`] commits its batch in its own transaction, exactly
/// as [`Collection::upsert`] does, and returns once the batch is durable.
/// The batch then goes into the index on other threads while the caller
/// prepares and commits the next one, so SQLite's work and its fsync
/// overlap the index's. A batch is in the index (and searches find it) by
/// the time the next `upsert` or [`Bulk::finish`] returns. A crash at any
/// point loses no committed batch: the next open replays what the index
/// had not taken, as after any write.
///
/// The store's write lock is held until the `Bulk` is finished or dropped:
/// other writes wait. Dropping it without `finish` still completes the
/// last batch, but an error doing so is then only kept for
/// [`Collection::info`].
///
/// ```no_run
/// # fn main() -> quiver::Result<()> {
/// # let store = quiver::Store::open("store")?;
/// # let coll = store.get_collection("docs")?;
/// # let batches: Vec<Vec<quiver::Record>> = Vec::new();
/// let mut bulk = coll.bulk()?;
/// for batch in &batches {
///     bulk.upsert(batch)?; // durable here
/// }
/// bulk.finish()?; // every batch searchable here
/// # Ok(())
/// # }
/// ```
pub struct Bulk<'a> {
    coll: &'a Collection,
    conn: MutexGuard<'a, Connection>,
    adding: Option<Adding>,
}

/// A committed batch being added to the index on its own thread.
struct Adding {
    seq: i64,
    changes: u64,
    ids: Vec<(u64, String)>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Bulk<'_> {
    /// Validate and commit one batch, as [`Collection::upsert`]; returns
    /// its sequence number once it is durable. The previous batch is then
    /// in the index.
    ///
    /// # Errors
    /// As [`Collection::upsert`]. On an error this batch is not written;
    /// the batches before it are committed and in the index.
    pub fn upsert(&mut self, records: &[Record]) -> Result<u64> {
        let coll = self.coll;
        let committed = coll
            .check_batch(records)
            .and_then(|()| coll.alive())
            .and_then(|()| coll.commit_upsert(&mut self.conn, records));
        // Whatever happened to this batch, the one before it is finished.
        let rebuilt = self.settle()?;
        let c = committed?;
        if rebuilt {
            // The rebuild read SQLite after this batch committed.
            coll.cache_ids(c.ids);
            return Ok(c.seq as u64);
        }
        let state = Arc::clone(&coll.state);
        let upserts = c.upserts;
        let changes = upserts.len() as u64;
        let thread = std::thread::Builder::new()
            .name("quiver-bulk".into())
            .spawn(move || apply(&state.indexes, &state.name, &upserts, &[]))
            .map_err(|e| Error::io("start a bulk-load thread", "", e))?;
        self.adding = Some(Adding {
            seq: c.seq,
            changes,
            ids: c.ids,
            thread,
        });
        Ok(c.seq as u64)
    }

    /// Wait for the last batch to be in the index.
    ///
    /// # Errors
    /// SQLite, I/O and index failures (adding the batch failed and so did
    /// the rebuild that follows such a failure).
    pub fn finish(mut self) -> Result<()> {
        self.settle().map(|_| ())
    }

    /// Wait for the batch being added, then record it as applied (or
    /// rebuild the index if adding it failed). True after a rebuild.
    fn settle(&mut self) -> Result<bool> {
        let Some(a) = self.adding.take() else {
            return Ok(false);
        };
        let coll = self.coll;
        let added = a.thread.join().unwrap_or_else(|_| {
            Err(index_err(
                &coll.state.name,
                "add",
                "the bulk-load thread panicked".into(),
            ))
        });
        let rebuilt = coll.after_apply(&mut self.conn, a.seq, a.changes, added)?;
        coll.cache_ids(a.ids);
        Ok(rebuilt)
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        let state = &self.coll.state;
        if let Err(e) = self.settle() {
            *state
                .snapshot_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
        state.bulk_loading.store(false, Ordering::SeqCst);
        // A snapshot still being written hands its buffer back to no one.
        *state.spare.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Collection {
    pub(crate) fn new(store: Arc<Inner>, state: Arc<CollState>) -> Self {
        Collection { store, state }
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

    /// Check that `embedder` may write to and query this collection: the
    /// same weights as the model the collection is bound to (models are
    /// stamped `name@hash`; the hash decides), and the same dimension.
    ///
    /// # Errors
    /// [`Error::Model`] on a different model, [`Error::DimensionMismatch`]
    /// on a different dimension.
    #[cfg(feature = "embed")]
    pub fn check_embedder(&self, embedder: &dyn crate::embed::Embedder) -> Result<()> {
        let config = self.config();
        if let Some(bound) = &config.model {
            let weights = |id: &str| id.rsplit_once('@').map_or(id, |(_, h)| h).to_string();
            if weights(bound) != weights(embedder.id()) {
                return Err(Error::Model {
                    path: embedder.id().into(),
                    reason: format!(
                        "collection {:?} is bound to model {bound}; use that model, or `reembed` into a new collection",
                        self.state.name
                    ),
                });
            }
        }
        if embedder.dimension() != config.dimension {
            return Err(Error::DimensionMismatch {
                collection: self.state.name.clone(),
                expected: config.dimension,
                got: embedder.dimension(),
                id: None,
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

    /// Insert or replace records, in one transaction. Returns the sequence
    /// number the batch committed as. Within a batch, a later record with the
    /// same id wins. Every record is validated before anything is written.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`], [`Error::InvalidVector`], [`Error::InvalidId`],
    /// [`Error::InvalidMetadata`] (nothing written); [`Error::ReadOnly`];
    /// SQLite, I/O and index failures.
    pub fn upsert(&self, records: &[Record]) -> Result<u64> {
        self.check_batch(records)?;
        let mut conn = self.store.writer("upsert")?;
        self.alive()?;
        let c = self.commit_upsert(&mut conn, records)?;
        self.after_commit(&mut conn, c.seq, &c.upserts, &[])?;
        self.cache_ids(c.ids);
        Ok(c.seq as u64)
    }

    /// Start a bulk load: batches committed one by one as [`Collection::upsert`]
    /// commits them, each going into the index while the next is written
    /// to SQLite. See [`Bulk`].
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Dropped`].
    pub fn bulk(&self) -> Result<Bulk<'_>> {
        let conn = self.store.writer("upsert")?;
        self.alive()?;
        self.state.bulk_loading.store(true, Ordering::SeqCst);
        Ok(Bulk {
            coll: self,
            conn,
            adding: None,
        })
    }

    fn check_batch(&self, records: &[Record]) -> Result<()> {
        let config = self.config();
        for r in records {
            check_record(&config, &self.state.name, r)?;
        }
        Ok(())
    }

    /// Write a validated batch in one transaction and commit it. The
    /// caller holds the writer and then applies the result to the index.
    fn commit_upsert(&self, conn: &mut Connection, records: &[Record]) -> Result<Committed> {
        // Last occurrence of an id wins.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            last.insert(r.id.as_str(), i);
        }
        let metadata: Vec<Option<String>> = records
            .iter()
            .map(|r| r.metadata.as_ref().map(|m| m.to_string()))
            .collect();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .during("begin upsert")?;
        let seq = next_seq(&tx, self.state.cid)?;
        // Keys come from the table's rowids: a key above the largest one
        // before this change is a new row, with no text indexed to delete.
        let max_key: i64 = tx
            .query_row("SELECT coalesce(max(key), 0) FROM records", [], |r| {
                r.get(0)
            })
            .during("read the largest key")?;
        let mut applied = Vec::with_capacity(last.len());
        let mut ids = Vec::with_capacity(last.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO records (cid, id, vector, text, metadata, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (cid, id) DO UPDATE SET vector = excluded.vector, text = excluded.text,
                         metadata = excluded.metadata, seq = excluded.seq
                     RETURNING key",
                )
                .during("prepare upsert")?;
            let cid = self.state.cid;
            let mut fts_del = tx
                .prepare_cached(&format!("DELETE FROM fts_{cid} WHERE rowid = ?1"))
                .during("prepare full-text delete")?;
            let mut fts_add = tx
                .prepare_cached(&format!(
                    "INSERT INTO fts_{cid} (rowid, text) VALUES (?1, ?2)"
                ))
                .during("prepare full-text insert")?;
            for (i, r) in records.iter().enumerate() {
                if last.get(r.id.as_str()) != Some(&i) {
                    continue;
                }
                let key: i64 = stmt
                    .query_row(
                        params![
                            self.state.cid,
                            r.id,
                            record::encode(&r.vector),
                            r.text,
                            metadata[i],
                            seq
                        ],
                        |row| row.get(0),
                    )
                    .during("upsert record")?;
                // The text index changes in the same transaction.
                if key <= max_key {
                    fts_del.execute([key]).during("update full-text index")?;
                }
                if let Some(text) = &r.text {
                    fts_add
                        .execute(params![key, text])
                        .during("update full-text index")?;
                }
                applied.push((key as u64, r.vector.clone()));
                ids.push((key as u64, r.id.clone()));
            }
        }
        failpoint!("upsert:before-commit");
        tx.commit().during("commit upsert")?;
        failpoint!("upsert:after-commit");
        Ok(Committed {
            seq,
            upserts: applied,
            ids,
        })
    }

    /// Put ids just written in the id cache (a key keeps its id for life),
    /// so searches right after an ingest do not look them up in SQLite. At
    /// 1M, the first 1,000 searches after the ingest were 1.4-1.6x usearch
    /// at ef 16 while the cache warmed from SQLite.
    fn cache_ids(&self, ids: Vec<(u64, String)>) {
        let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
        let mut cache = ix.ids.write().unwrap_or_else(|p| p.into_inner());
        for (key, id) in ids {
            cache.entry(key).or_insert_with(|| id.into());
        }
    }

    /// Delete records by id, in one transaction. Returns how many existed.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::ReadOnly`], SQLite and index failures.
    pub fn delete<S: AsRef<str>>(&self, ids: &[S]) -> Result<usize> {
        for id in ids {
            record::check_id(id.as_ref())?;
        }
        self.delete_keys(|tx, cid| {
            let mut del = tx
                .prepare_cached("DELETE FROM records WHERE cid = ?1 AND id = ?2 RETURNING key")
                .during("prepare delete")?;
            let mut keys = Vec::new();
            for id in ids {
                let key: Option<i64> = del
                    .query_row(params![cid, id.as_ref()], |r| r.get(0))
                    .optional()
                    .during("delete record")?;
                keys.extend(key);
            }
            Ok(keys)
        })
    }

    /// Delete every record matching `filter`, in one transaction. Returns how many.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], [`Error::ReadOnly`], SQLite and index failures.
    pub fn delete_where(&self, filter: &Filter) -> Result<usize> {
        let c = filter::sql::compile(filter, 2)?;
        self.delete_keys(|tx, cid| {
            let mut params: Vec<rusqlite::types::Value> = vec![cid.into()];
            params.extend(c.params.iter().cloned());
            let mut stmt = tx
                .prepare(&format!(
                    "DELETE FROM records WHERE cid = ?1 AND ({}) RETURNING key",
                    c.sql
                ))
                .during("prepare delete by filter")?;
            let keys = stmt
                .query_map(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))
                .during("delete by filter")?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .during("delete by filter");
            keys
        })
    }

    /// One delete transaction: `remove` deletes the rows and returns their
    /// keys; this stamps the sequence, writes tombstones, updates the text
    /// index, commits, and takes the keys out of the vector index.
    fn delete_keys(
        &self,
        remove: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<Vec<i64>>,
    ) -> Result<usize> {
        // Gate before writer: a search retrying under the gate may need the
        // writer (to build the exact index), so this order cannot deadlock.
        let _gate = self
            .state
            .delete_gate
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut conn = self.store.writer("delete")?;
        self.alive()?;
        let cid = self.state.cid;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .during("begin delete")?;
        let seq = next_seq(&tx, cid)?;
        let keys = remove(&tx, cid)?;
        if keys.is_empty() {
            // Nothing changed: do not spend a sequence number.
            tx.rollback().during("roll back empty delete")?;
            return Ok(0);
        }
        {
            let mut tomb = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO tombstones (cid, key, seq) VALUES (?1, ?2, ?3)",
                )
                .during("prepare tombstone")?;
            let mut fts = tx
                .prepare_cached(&format!("DELETE FROM fts_{cid} WHERE rowid = ?1"))
                .during("prepare full-text delete")?;
            for key in &keys {
                tomb.execute(params![cid, key, seq])
                    .during("write tombstone")?;
                fts.execute([key]).during("update full-text index")?;
            }
        }
        failpoint!("delete:before-commit");
        tx.commit().during("commit delete")?;
        failpoint!("delete:after-commit");
        let removed: Vec<u64> = keys.iter().map(|k| *k as u64).collect();
        self.after_commit(&mut conn, seq, &[], &removed)?;
        Ok(removed.len())
    }

    /// Apply a committed change to the index; on failure, rebuild it from
    /// SQLite (the commit stands either way).
    fn after_commit(
        &self,
        conn: &mut Connection,
        seq: i64,
        upserts: &[(u64, Vec<f32>)],
        removes: &[u64],
    ) -> Result<()> {
        let st = &self.state;
        let applied = apply(&st.indexes, &st.name, upserts, removes);
        let changes = (upserts.len() + removes.len()) as u64;
        self.after_apply(conn, seq, changes, applied).map(|_| ())
    }

    /// Record change `seq` as applied to the index, or, if applying it
    /// failed, rebuild the index from SQLite. Returns true after a rebuild
    /// (the index then holds every committed change). The caller holds the
    /// writer and no change is being applied.
    fn after_apply(
        &self,
        conn: &mut Connection,
        seq: i64,
        changes: u64,
        applied: Result<()>,
    ) -> Result<bool> {
        let st = &self.state;
        if let Err(e) = applied {
            st.rebuild_now(&self.store, conn, &format!("applying a change failed: {e}"))?;
            return Ok(true);
        }
        st.applied_seq.store(seq, Ordering::SeqCst);
        st.add_pending(changes);
        st.maybe_snapshot(&self.store, conn);
        Ok(false)
    }

    /// Look up one record.
    ///
    /// # Errors
    /// [`Error::InvalidId`], SQLite failures, [`Error::Corrupt`].
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        record::check_id(id)?;
        self.alive()?;
        let dim = self.config().dimension;
        let name = &self.state.name;
        self.store.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT id, vector, text, metadata FROM records WHERE cid = ?1 AND id = ?2",
                )
                .during("prepare get")?
                .query_row(params![self.state.cid, id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()
                .during("get record")?;
            let Some((id, blob, text, meta)) = row else {
                return Ok(None);
            };
            Ok(Some(Record {
                vector: decode_vector(name, &id, &blob, dim)?,
                metadata: parse_metadata(name, &id, meta)?,
                id,
                text,
            }))
        })
    }

    /// The greatest record id (in byte order), if there are records: where
    /// a copy made in id order left off.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn last_id(&self) -> Result<Option<String>> {
        self.alive()?;
        self.store.read(|conn| {
            conn.prepare_cached("SELECT max(id) FROM records WHERE cid = ?1")
                .during("prepare last id")?
                .query_row([self.state.cid], |r| r.get(0))
                .during("read last id")
        })
    }

    /// Number of records.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn count(&self) -> Result<u64> {
        self.alive()?;
        self.store.read(|conn| {
            conn.prepare_cached("SELECT count(*) FROM records WHERE cid = ?1")
                .during("prepare count")?
                .query_row([self.state.cid], |r| r.get::<_, i64>(0))
                .during("count records")
                .map(|n| n as u64)
        })
    }

    /// The `k` nearest records to `query` (among those matching
    /// `options.filter`, if set: then k come back whenever at least k match).
    ///
    /// # Errors
    /// [`Error::InvalidSearch`] for k outside 1..=[`MAX_K`] or ef = 0;
    /// [`Error::DimensionMismatch`], [`Error::InvalidVector`],
    /// [`Error::InvalidFilter`]; SQLite and index failures.
    pub fn search(&self, query: &[f32], options: &SearchOptions) -> Result<SearchResult> {
        let config = self.prepare_search(options, Some(query))?;
        self.consistent(
            || {
                let (found, plan) = self.vector_candidates(query, options, &config)?;
                let found: Vec<(u64, f32, Option<Ranks>)> =
                    found.into_iter().map(|(k, d)| (k, d, None)).collect();
                Ok((found, plan))
            },
            options.include,
            config.dimension,
        )
    }

    /// The `k` records whose text best matches `text` by BM25: records with
    /// every word first, then records with some. `options.filter` applies;
    /// `ef` and `exact` do not. Each hit's `distance` is SQLite's `bm25()`
    /// (lower is better) and its ranks carry the keyword rank and score.
    ///
    /// # Errors
    /// [`Error::InvalidSearch`] (bad k, or no words in `text`),
    /// [`Error::InvalidFilter`]; SQLite failures.
    pub fn search_text(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        let config = self.prepare_search(options, None)?;
        let filter = options
            .filter
            .as_ref()
            .map(|f| filter::sql::compile(f, 3))
            .transpose()?;
        self.consistent(
            || {
                let cid = self.state.cid;
                let (list, matches) = self.store.read(|conn| {
                    text::keyword_candidates(conn, cid, text, filter.as_ref(), options.k)
                })?;
                let found = list
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, score))| {
                        let ranks = Ranks {
                            keyword_rank: Some(i + 1),
                            keyword_score: Some(score),
                            ..Ranks::default()
                        };
                        (key, -score, Some(ranks))
                    })
                    .collect();
                Ok((found, Plan::Keyword { matches }))
            },
            options.include,
            config.dimension,
        )
    }

    /// Hybrid search: the vector list for `query` and the keyword list for
    /// `text` (each `fusion.candidates` long, both under `options.filter`)
    /// fused by reciprocal rank fusion. Each hit carries both ranks and
    /// scores; its `distance` is the fused score negated (lower is better).
    ///
    /// # Errors
    /// As [`Collection::search`] and [`Collection::search_text`], and
    /// [`Error::InvalidSearch`] for negative or non-finite fusion settings.
    pub fn search_hybrid(
        &self,
        query: &[f32],
        text: &str,
        options: &SearchOptions,
        fusion: &Fusion,
    ) -> Result<SearchResult> {
        let config = self.prepare_search(options, Some(query))?;
        fusion.validate()?;
        text::fts_queries(text)?;
        let n = fusion.list_len(options.k);
        let filter = options
            .filter
            .as_ref()
            .map(|f| filter::sql::compile(f, 3))
            .transpose()?;
        let wide = SearchOptions {
            k: n,
            ..options.clone()
        };
        self.consistent(
            || {
                let (vector, vplan) = self.vector_candidates(query, &wide, &config)?;
                let cid = self.state.cid;
                let (keyword, _) = self
                    .store
                    .read(|conn| text::keyword_candidates(conn, cid, text, filter.as_ref(), n))?;
                let found = text::fuse(&vector, &keyword, fusion, options.k)
                    .into_iter()
                    .map(|(key, ranks)| (key, -ranks.score.unwrap_or(0.0), Some(ranks)))
                    .collect();
                let plan = Plan::Hybrid {
                    ef: vplan.ef(),
                    matches: match vplan {
                        Plan::FilterExact { matches } | Plan::FilterHnsw { matches, .. } => {
                            Some(matches)
                        }
                        _ => None,
                    },
                };
                Ok((found, plan))
            },
            options.include,
            config.dimension,
        )
    }

    /// Checks shared by every search; returns the config.
    fn prepare_search(
        &self,
        options: &SearchOptions,
        query: Option<&[f32]>,
    ) -> Result<CollectionConfig> {
        let config = self.config();
        if options.k == 0 || options.k > MAX_K {
            return Err(Error::InvalidSearch {
                reason: format!("k must be 1..={MAX_K}, got {}", options.k),
            });
        }
        if options.ef == Some(0) || options.ef.is_some_and(|ef| ef > 100_000) {
            return Err(Error::InvalidSearch {
                reason: "ef must be 1..=100000".into(),
            });
        }
        if let Some(q) = query {
            check_vector(&config, &self.state.name, None, q)?;
        }
        if let Some(f) = &options.filter {
            f.validate()?;
        }
        self.alive()?;
        if self.store.is_read_only() {
            self.refresh()?;
        }
        #[cfg(feature = "usearch")]
        if self.snapshot_check_state() == Some(index::CheckState::Failed) {
            self.state.recover_damaged(&self.store)?;
        }
        Ok(config)
    }

    #[cfg(feature = "usearch")]
    fn snapshot_check_state(&self) -> Option<index::CheckState> {
        let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
        ix.hnsw.snapshot_check().map(|c| c.get())
    }

    /// Wait for the background check of the snapshot this handle opened
    /// and return whether it passed.
    ///
    /// An open maps the index snapshot and checks the bytes usearch
    /// parses (sizes, header, graph) before the first search; the vectors,
    /// most of the file, are checked on a background thread meanwhile
    /// (damage there can misrank, never crash). A failed check makes the
    /// next search rebuild the index from SQLite; this does it now. With
    /// no snapshot to check (rebuilt, or already checked) it returns `true`.
    ///
    /// # Errors
    /// SQLite and index failures while rebuilding.
    pub fn await_snapshot_check(&self) -> Result<bool> {
        #[cfg(feature = "usearch")]
        {
            let check = {
                let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
                ix.hnsw.snapshot_check()
            };
            if check.is_some_and(|c| c.wait() == index::CheckState::Failed) {
                self.state.recover_damaged(&self.store)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Run `find` and turn its keys into hits. If a hit's record vanished
    /// (deleted between the index search and the lookup), run both again
    /// under the delete gate, where no delete can slip between them.
    fn consistent(
        &self,
        find: impl Fn() -> Result<(Vec<(u64, f32, Option<Ranks>)>, Plan)>,
        include: Include,
        dim: usize,
    ) -> Result<SearchResult> {
        let (found, plan) = find()?;
        let hits = self.resolve(&found, include, dim)?;
        if hits.len() == found.len() {
            return Ok(SearchResult { hits, plan });
        }
        let _gate = self
            .state
            .delete_gate
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let (found, plan) = find()?;
        let hits = self.resolve(&found, include, dim)?;
        Ok(SearchResult { hits, plan })
    }

    /// Vector candidates: filtered, exact or HNSW.
    fn vector_candidates(
        &self,
        query: &[f32],
        options: &SearchOptions,
        config: &CollectionConfig,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        if let Some(filter) = &options.filter {
            self.filtered_search(query, options, config, filter)
        } else if options.exact || !cfg!(feature = "usearch") {
            Ok((self.exact_search(query, options.k)?, Plan::Exact))
        } else {
            self.hnsw_search(query, options, config)
        }
    }

    #[cfg(feature = "usearch")]
    fn hnsw_search(
        &self,
        query: &[f32],
        options: &SearchOptions,
        config: &CollectionConfig,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        let ef = options.ef.unwrap_or(config.expansion_search);
        // i8 storage ranks approximately (recall@10 0.947 at ef 128 on
        // pypi-minilm-20k): take more candidates and rank them by their
        // exact f32 vectors from SQLite (0.989). f16 and bf16 rank as well
        // as f32 and are not rescored.
        let rescore = config.scalar == Scalar::I8;
        let wide = if rescore {
            options.k * RESCORE
        } else {
            options.k
        };
        let found = {
            let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
            ix.hnsw
                .search(query, wide, Some(ef))
                .map_err(|m| index_err(&self.state.name, "search", m))?
        };
        let found = if rescore {
            self.rescore(query, &found, options.k, config)?
        } else {
            found
        };
        Ok((
            found,
            Plan::Hnsw {
                ef: ef.max(options.k),
            },
        ))
    }

    /// The nearest `k` of `candidates` by exact distance to their f32
    /// vectors in SQLite. A candidate deleted meanwhile is left out.
    #[cfg(feature = "usearch")]
    fn rescore(
        &self,
        query: &[f32],
        candidates: &[(u64, f32)],
        k: usize,
        config: &CollectionConfig,
    ) -> Result<Vec<(u64, f32)>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for all candidates: per-statement overhead was half
        // the cost with one lookup each (measured: 160 µs for 40).
        // By key alone: with `cid = ?` in the clause SQLite chose an index
        // on cid and scanned the whole collection (measured: 1.4 ms).
        let sql = format!(
            "SELECT key, vector FROM records WHERE key IN ({}) AND cid + 0 = ?",
            vec!["?"; candidates.len()].join(",")
        );
        let mut exact = self.store.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).during("prepare rescoring")?;
            let params = candidates
                .iter()
                .map(|(k, _)| *k as i64)
                .chain(std::iter::once(self.state.cid));
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .during("read vectors for rescoring")?;
            let mut out = Vec::with_capacity(candidates.len());
            for row in rows {
                let (key, blob) = row.during("read vectors for rescoring")?;
                let v = decode_vector(&self.state.name, &key.to_string(), &blob, config.dimension)?;
                out.push((key as u64, index::exact::distance(config.metric, query, &v)));
            }
            Ok(out)
        })?;
        exact.sort_by(|a, b| a.1.total_cmp(&b.1));
        exact.truncate(k);
        Ok(exact)
    }

    #[cfg(not(feature = "usearch"))]
    fn hnsw_search(
        &self,
        _: &[f32],
        _: &SearchOptions,
        _: &CollectionConfig,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        unreachable!("without usearch every search is exact")
    }

    /// The records matching `filter` now: from the cache if no write came
    /// since it was computed.
    pub(crate) fn match_set(&self, filter: &Filter) -> Result<Arc<MatchSet>> {
        let st = &self.state;
        let text = filter.to_string();
        let applied = st.applied_seq.load(Ordering::SeqCst);
        let older = {
            let cache = st.matches.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(set) = cache.get(&text, applied) {
                return Ok(set);
            }
            cache.latest(&text)
        };
        let compiled = filter::sql::compile(filter, 2)?;
        // The exact plan's cost grows with the matches; usearch's filtered
        // search is slow at low selectivity and its recall stalls as ef
        // grows. At 1M × 384 (synthetic, 200 queries): 2% took 30 ms by
        // HNSW (ef 64, recall 0.963), 7× a scan of the matches; 5% took
        // 8.5 ms at recall 0.971, and 0.974 at ef 192 (38 ms); 10% 2.6 ms
        // at 0.970. Exact costs about 60 ns a match (6 ms at 10%). So sets
        // of up to an eighth of the collection run exact.
        let size = st.indexes.read().unwrap_or_else(|p| p.into_inner()).len();
        let exact_max = self.store.options.filter_exact_max.max(size / 8);
        let config = self.config();
        let (dim, metric) = (config.dimension, config.metric);
        // The exact plan's vectors: from the index when it holds them
        // exactly (f32 storage), else from SQLite.
        let ix = st.indexes.read().unwrap_or_else(|p| p.into_inner());
        #[cfg(feature = "usearch")]
        let from_index = |key: u64| ix.hnsw.get(key).ok().flatten();
        #[cfg(feature = "usearch")]
        let vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>> =
            (config.scalar == Scalar::F32).then_some(&from_index as _);
        #[cfg(not(feature = "usearch"))]
        let vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>> = None;
        let set = Arc::new(self.store.read(|conn| {
            begin_read(conn)?;
            let seq: i64 = read_seq(conn, st.cid)?;
            let scope = filtered::Scope {
                collection: &st.name,
                cid: st.cid,
                dim,
                metric,
                exact_max,
                vector_of,
            };
            // After a write, from the set before it when that is cheaper.
            let advanced = match &older {
                Some(old) => filtered::advance(conn, &scope, &compiled, old, seq)?,
                None => None,
            };
            let set = match advanced {
                Some(set) => set,
                None => filtered::compute(conn, &scope, &compiled, seq)?,
            };
            end_read(conn)?;
            Ok(set)
        })?);
        drop(ix);
        // Cache only a set taken at the sequence the index is at.
        if set.seq == st.applied_seq.load(Ordering::SeqCst) {
            st.matches.lock().unwrap_or_else(|p| p.into_inner()).put(
                text,
                set.clone(),
                exact_max.max(8 * self.store.options.filter_exact_max),
            );
        }
        Ok(set)
    }

    /// The filtered plan: exact over few matches, HNSW over many, with
    /// `ef` doubled while fewer than k come back (exact as the last resort).
    fn filtered_search(
        &self,
        query: &[f32],
        options: &SearchOptions,
        config: &CollectionConfig,
        filter: &Filter,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        let set = self.match_set(filter)?;
        let matches = set.len() as u64;
        let k = options.k;
        let exact_here = || -> Result<Vec<(u64, f32)>> {
            if set.vectors.is_some() {
                return Ok(filtered::exact(&set, config.dimension, query, k));
            }
            self.exact_over(&set, query, k, config)
        };
        if set.vectors.is_some() || options.exact || !cfg!(feature = "usearch") {
            return Ok((exact_here()?, Plan::FilterExact { matches }));
        }
        #[cfg(feature = "usearch")]
        {
            let want = k.min(set.len());
            let mut ef = options.ef.unwrap_or(config.expansion_search).max(k);
            let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
            loop {
                let found = ix
                    .hnsw
                    .filtered_search(query, k, ef, want, |key| set.contains(key))
                    .map_err(|m| index_err(&self.state.name, "filtered search", m))?;
                if found.len() >= want {
                    return Ok((found, Plan::FilterHnsw { ef, matches }));
                }
                if ef >= 4096 || ef >= set.len() {
                    break;
                }
                ef = (ef * 2).min(4096);
            }
        }
        Ok((exact_here()?, Plan::FilterExact { matches }))
    }

    /// Exact top-k over a large match set, reading its vectors from SQLite.
    fn exact_over(
        &self,
        set: &MatchSet,
        query: &[f32],
        k: usize,
        config: &CollectionConfig,
    ) -> Result<Vec<(u64, f32)>> {
        let name = &self.state.name;
        self.store.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT vector FROM records WHERE key = ?1")
                .during("prepare vector lookup")?;
            let mut rows = Vec::with_capacity(set.len());
            for &key in &set.keys {
                let blob: Option<Vec<u8>> = stmt
                    .query_row([key as i64], |r| r.get(0))
                    .optional()
                    .during("read vector")?;
                if let Some(b) = blob {
                    rows.push((
                        key,
                        decode_vector(name, &key.to_string(), &b, config.dimension)?,
                    ));
                }
            }
            Ok(crate::index::exact::top_k(
                rows.iter().map(|(k, v)| (*k, v.as_slice())),
                config.metric,
                query,
                k,
            ))
        })
    }

    /// Number of records matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures.
    pub fn count_where(&self, filter: &Filter) -> Result<u64> {
        self.alive()?;
        let c = filter::sql::compile(filter, 2)?;
        let mut params: Vec<rusqlite::types::Value> = vec![self.state.cid.into()];
        params.extend(c.params);
        self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT count(*) FROM records WHERE cid = ?1 AND ({})",
                c.sql
            ))
            .during("prepare count")?
            .query_row(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))
            .during("count matches")
            .map(|n| n as u64)
        })
    }

    /// Records in id order, optionally only those matching a filter and
    /// only ids after `after` (for paging), at most `limit`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures, [`Error::Corrupt`].
    pub fn scan(
        &self,
        filter: Option<&Filter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.alive()?;
        let mut sql = String::from("SELECT id, vector, text, metadata FROM records WHERE cid = ?1");
        let mut params: Vec<rusqlite::types::Value> = vec![self.state.cid.into()];
        if let Some(after) = after {
            params.push(after.to_string().into());
            sql.push_str(&format!(" AND id > ?{}", params.len()));
        }
        if let Some(f) = filter {
            let c = filter::sql::compile(f, params.len() + 1)?;
            sql.push_str(&format!(" AND ({})", c.sql));
            params.extend(c.params);
        }
        params.push((limit.min(i64::MAX as usize) as i64).into());
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
        let dim = self.config().dimension;
        let name = &self.state.name;
        self.store.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).during("prepare scan")?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .during("scan")?;
            let mut out = Vec::new();
            for row in rows {
                let (id, blob, text, meta) = row.during("scan")?;
                out.push(Record {
                    vector: decode_vector(name, &id, &blob, dim)?,
                    metadata: parse_metadata(name, &id, meta)?,
                    id,
                    text,
                });
            }
            Ok(out)
        })
    }

    /// Create an SQLite index on a metadata path so filters on it count and
    /// select matches without scanning the collection. Returns false if the
    /// path was indexed already.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] for a bad path, [`Error::ReadOnly`], SQLite failures.
    pub fn index_field(&self, path: &str) -> Result<bool> {
        let segs = filter::sql::check_path(path)?;
        let mut conn = self.store.writer("index field")?;
        self.alive()?;
        let cid = self.state.cid;
        let tx = conn.transaction().during("begin index field")?;
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO field_indexes (cid, path) VALUES (?1, ?2)",
                params![cid, segs.join(".")],
            )
            .during("record field index")?;
        if added == 1 {
            let id = tx.last_insert_rowid();
            tx.execute_batch(&format!(
                "CREATE INDEX qf_{cid}_{id} ON records (cid, {})",
                filter::sql::path_expr(&segs)
            ))
            .during("create field index")?;
        }
        tx.commit().during("commit field index")?;
        Ok(added == 1)
    }

    /// Metadata paths with a field index.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn indexed_fields(&self) -> Result<Vec<String>> {
        self.store.read(|conn| {
            conn.prepare_cached("SELECT path FROM field_indexes WHERE cid = ?1 ORDER BY path")
                .during("list field indexes")?
                .query_map([self.state.cid], |r| r.get(0))
                .during("list field indexes")?
                .collect::<rusqlite::Result<Vec<String>>>()
                .during("list field indexes")
        })
    }

    fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        self.ensure_flat()?;
        let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
        Ok(ix
            .flat
            .as_ref()
            .map(|f| f.search(query, k))
            .unwrap_or_default())
    }

    /// Build the exact index from SQLite if it is not there yet. Holds the
    /// writer (when writable) so no change lands between the scan and the
    /// swap-in; later changes are applied to it by `apply`.
    fn ensure_flat(&self) -> Result<()> {
        if self
            .state
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .flat
            .is_some()
        {
            return Ok(());
        }
        let _building = self
            .state
            .flat_build
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self
            .state
            .indexes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .flat
            .is_some()
        {
            return Ok(());
        }
        let config = self.config();
        let build = |conn: &Connection| -> Result<FlatIndex> {
            let mut flat = FlatIndex::new(config.dimension, config.metric);
            stream_records(
                conn,
                &self.state.name,
                self.state.cid,
                config.dimension,
                None,
                |chunk| {
                    flat.reserve(chunk.len());
                    for (k, v) in chunk {
                        flat.add(*k, v);
                    }
                    Ok(())
                },
            )?;
            Ok(flat)
        };
        if self.store.is_read_only() {
            // Build at exactly the sequence the HNSW index reflects; if the
            // writer moved on meanwhile, catch up and try again.
            for _ in 0..8 {
                self.refresh()?;
                let _r = self.state.refresh.lock().unwrap_or_else(|p| p.into_inner());
                let flat = self.store.read(|conn| {
                    begin_read(conn)?;
                    let current = read_seq(conn, self.state.cid)?
                        == self.state.applied_seq.load(Ordering::SeqCst);
                    let flat = if current { Some(build(conn)?) } else { None };
                    end_read(conn)?;
                    Ok(flat)
                })?;
                if let Some(f) = flat {
                    self.state
                        .indexes
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .flat = Some(f);
                    return Ok(());
                }
            }
            return Err(Error::arg(
                "the store is changing too fast for an exact search from a read-only handle; retry",
            ));
        }
        let conn = self.store.writer("exact search")?;
        let flat = build(&conn)?;
        self.state
            .indexes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .flat = Some(flat);
        Ok(())
    }

    /// Turn index keys into hits, skipping keys deleted meanwhile.
    fn resolve(
        &self,
        found: &[(u64, f32, Option<Ranks>)],
        include: Include,
        dim: usize,
    ) -> Result<Vec<Hit>> {
        if include == Include::default() {
            return self.resolve_ids(found);
        }
        let name = &self.state.name;
        let sql = format!(
            "SELECT id, {}, {}, {} FROM records WHERE key = ?1 AND cid = ?2",
            if include.text { "text" } else { "NULL" },
            if include.metadata { "metadata" } else { "NULL" },
            if include.vector { "vector" } else { "NULL" },
        );
        self.store.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).during("prepare hit lookup")?;
            let mut hits = Vec::with_capacity(found.len());
            for (key, distance, ranks) in found {
                let (key, distance) = (*key, *distance);
                let row = stmt
                    .query_row(params![key as i64, self.state.cid], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                        ))
                    })
                    .optional()
                    .during("look up hit")?;
                let Some((id, text, meta, blob)) = row else {
                    continue;
                };
                let vector = match blob {
                    Some(b) => Some(decode_vector(name, &id, &b, dim)?),
                    None => None,
                };
                let metadata = parse_metadata(name, &id, meta)?;
                hits.push(Hit {
                    id,
                    distance,
                    text,
                    metadata,
                    vector,
                    ranks: ranks.clone(),
                });
            }
            Ok(hits)
        })
    }

    /// [`Collection::resolve`] for ids-only hits: from the id cache, and
    /// from SQLite (then cached) for keys not in it.
    fn resolve_ids(&self, found: &[(u64, f32, Option<Ranks>)]) -> Result<Vec<Hit>> {
        let hit = |id: &str, distance: f32, ranks: &Option<Ranks>| Hit {
            id: id.to_string(),
            distance,
            text: None,
            metadata: None,
            vector: None,
            ranks: ranks.clone(),
        };
        let mut hits: Vec<Option<Hit>> = Vec::with_capacity(found.len());
        let mut missing = Vec::new();
        {
            let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
            let ids = ix.ids.read().unwrap_or_else(|p| p.into_inner());
            for (i, (key, distance, ranks)) in found.iter().enumerate() {
                match ids.get(key) {
                    Some(id) => hits.push(Some(hit(id, *distance, ranks))),
                    None => {
                        hits.push(None);
                        missing.push(i);
                    }
                }
            }
        }
        if !missing.is_empty() {
            // Warm up once searches have missed a few hundred keys: a
            // one-shot search (one CLI call) never pays for it.
            let missed = self
                .state
                .id_misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            if missed >= 256 && !self.state.warming.swap(true, Ordering::AcqRel) {
                if let Ok(conn) = self.store.open_reader() {
                    *self
                        .state
                        .warm_thread
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) =
                        warm_ids(conn, Arc::downgrade(&self.state));
                }
            }
            let rows = self.store.read(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT id FROM records WHERE key = ?1 AND cid = ?2")
                    .during("prepare hit lookup")?;
                let mut rows = Vec::with_capacity(missing.len());
                for &i in &missing {
                    let key = found[i].0;
                    let id: Option<String> = stmt
                        .query_row(params![key as i64, self.state.cid], |r| r.get(0))
                        .optional()
                        .during("look up hit")?;
                    rows.push((i, key, id));
                }
                Ok(rows)
            })?;
            let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
            let mut ids = ix.ids.write().unwrap_or_else(|p| p.into_inner());
            for (i, key, id) in rows {
                // Deleted since the index search: no hit (the caller retries).
                let Some(id) = id else { continue };
                let (_, distance, ranks) = &found[i];
                hits[i] = Some(hit(&id, *distance, ranks));
                // A key deleted after this lookup may be cached here, but
                // the index never returns a removed key again, so the entry
                // is never read.
                ids.insert(key, id.into_boxed_str());
            }
        }
        Ok(hits.into_iter().flatten().collect())
    }

    /// For a read-only handle: catch up with changes committed by the
    /// writer since this process loaded the index. A writable handle is
    /// always current, and this does nothing.
    ///
    /// # Errors
    /// [`Error::Dropped`] if the writer dropped the collection; SQLite failures.
    pub fn refresh(&self) -> Result<()> {
        if !self.store.is_read_only() {
            return Ok(());
        }
        let st = &self.state;
        let _r = st.refresh.lock().unwrap_or_else(|p| p.into_inner());
        // Read before the check: a commit after this read moves it again.
        let version = self.store.data_version()?;
        if version == st.seen_version.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.store.read(|conn| {
            begin_read(conn)?;
            let Some(row) = read_collection(conn, "cid = ?1", &st.cid)? else {
                st.mark_dropped();
                end_read(conn)?;
                return Err(Error::Dropped {
                    name: st.name.clone(),
                });
            };
            let applied = st.applied_seq.load(Ordering::SeqCst);
            if row.seq == applied && row.config == st.config() {
                st.seen_version.store(version, Ordering::SeqCst);
                return end_read(conn);
            }
            if row.pruned_seq > applied || row.config != st.config() {
                // Tombstones we would need are gone, or the index settings
                // changed: load afresh.
                let (indexes, load, _) = load_indexes(&self.store, conn, &st.name, &row)?;
                *st.indexes.write().unwrap_or_else(|p| p.into_inner()) = indexes;
                *st.config.write().unwrap_or_else(|p| p.into_inner()) = row.config.clone();
                *st.load.lock().unwrap_or_else(|p| p.into_inner()) = load;
            } else {
                replay(
                    conn,
                    &self.store,
                    &st.name,
                    st.cid,
                    row.config.dimension,
                    applied,
                    &st.indexes,
                )?;
            }
            st.applied_seq.store(row.seq, Ordering::SeqCst);
            st.seen_version.store(version, Ordering::SeqCst);
            end_read(conn)
        })
    }

    /// Snapshot the index now if it has changes not in the snapshot.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], I/O and SQLite failures.
    pub fn flush(&self) -> Result<()> {
        self.alive()?;
        self.state.snapshot_if(&self.store, 1)
    }

    /// Everything about the collection: counts, sequence numbers, the
    /// snapshot, the tail, the index and how it was loaded.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn info(&self) -> Result<CollectionInfo> {
        self.alive()?;
        let st = &self.state;
        let (count, seq, snapshot, tail) = self.store.read(|conn| {
            begin_read(conn)?;
            let (count, seq): (i64, i64) = conn
                .query_row(
                    "SELECT (SELECT count(*) FROM records WHERE cid = ?1), seq FROM collections WHERE cid = ?1",
                    [st.cid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .during("read collection info")?;
            let snapshot = read_snapshot_row(conn, st.cid)?.map(|r| r.info);
            let after = snapshot.as_ref().map_or(-1, |s| s.applied_seq as i64);
            let tail: i64 = conn
                .query_row(
                    "SELECT (SELECT count(*) FROM tombstones WHERE cid = ?1 AND seq > ?2)
                          + (SELECT count(*) FROM records WHERE cid = ?1 AND seq > ?2)",
                    params![st.cid, after],
                    |r| r.get(0),
                )
                .during("count tail")?;
            end_read(conn)?;
            Ok((count as u64, seq as u64, snapshot, tail as u64))
        })?;
        Ok(CollectionInfo {
            name: st.name.clone(),
            config: st.config(),
            count,
            seq,
            applied_seq: st.applied_seq.load(Ordering::SeqCst) as u64,
            snapshot,
            tail,
            index: st.indexes.read().unwrap_or_else(|p| p.into_inner()).info(),
            load: st.load.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            snapshot_error: st
                .snapshot_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            indexed_fields: self.indexed_fields()?,
        })
    }

    /// Check that the index agrees with SQLite: same key set, vectors equal
    /// (within the index's precision), every record reachable by a search
    /// (one pass over the graph: a search whose ef is the graph's size
    /// returns every node reachable from its entry point), the snapshot
    /// file matching its record, and SQLite's own `quick_check`. Changes
    /// nothing.
    ///
    /// # Errors
    /// SQLite failures (a damaged store is a report, not an error).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.alive()?;
        if self.store.is_read_only() {
            self.refresh()?;
        }
        let config = self.config();
        let st = &self.state;
        // Hold the writer (if any) so the index and SQLite hold still.
        let _writer = if self.store.is_read_only() {
            None
        } else {
            Some(self.store.writer("verify")?)
        };
        let _refresh = st.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let ix = st.indexes.read().unwrap_or_else(|p| p.into_inner());
        let mut read = |conn: &Connection| -> Result<(u64, u64, u64, u64)> {
            let quick: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .during("sqlite quick_check")?;
            if quick != "ok" {
                problems.push(format!("sqlite quick_check: {quick}"));
            }
            let seq: i64 = read_seq(conn, st.cid)?;
            let applied = st.applied_seq.load(Ordering::SeqCst);
            if seq != applied {
                problems.push(format!(
                    "index reflects sequence {applied}, database is at {seq}"
                ));
            }
            // Reachability: every node a search can reach, in one pass.
            #[cfg(feature = "usearch")]
            let reached = Some(
                ix.hnsw
                    .reachable()
                    .map_err(|m| index_err(&st.name, "reachability pass", m))?,
            );
            // Without usearch every search is exact: nothing to reach.
            #[cfg(not(feature = "usearch"))]
            let reached: Option<std::collections::HashSet<u64>> = None;
            let (mut records, mut checked, mut searched, mut missing) = (0u64, 0u64, 0u64, 0u64);
            let mut unreachable = 0u64;
            stream_records(conn, &st.name, st.cid, config.dimension, None, |chunk| {
                for (key, v) in chunk {
                    records += 1;
                    if !ix.contains(*key) {
                        missing += 1;
                        if missing <= 5 {
                            problems.push(format!("record key {key} is missing from the index"));
                        }
                        continue;
                    }
                    checked += check_index_vector(&ix, &config, *key, v, &mut problems);
                    if let Some(reached) = &reached {
                        searched += 1;
                        if !reached.contains(key) {
                            unreachable += 1;
                            if unreachable <= 5 {
                                problems.push(format!(
                                    "record key {key} is not reachable by any search"
                                ));
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if unreachable > 5 {
                problems.push(format!(
                    "{unreachable} records in all are not reachable by any search"
                ));
            }
            if missing > 5 {
                problems.push(format!(
                    "{missing} records in all are missing from the index"
                ));
            }
            if ix.len() as u64 != records {
                problems.push(format!(
                    "index holds {} vectors, database {} records",
                    ix.len(),
                    records
                ));
            }
            if let Some(dir) = &self.store.dir {
                if let Some(row) = read_snapshot_row(conn, st.cid)? {
                    if let Err(why) =
                        snapshot::read_checked(dir, st.cid, row.info.bytes, &row.info.digest)
                    {
                        notes.push(format!(
                            "snapshot unusable ({why}); the next writable open rebuilds it, or run repair"
                        ));
                    }
                }
            }
            Ok((records, checked, searched, unreachable))
        };
        let (records, checked, searched, unreachable) = match &_writer {
            Some(conn) => read(conn)?,
            None => self.store.read(|conn| {
                begin_read(conn)?;
                let out = read(conn);
                end_read(conn)?;
                out
            })?,
        };
        Ok(VerifyReport {
            records,
            indexed: ix.len() as u64,
            vectors_checked: checked,
            reachability_checked: searched,
            unreachable,
            problems,
            notes,
        })
    }

    /// Rebuild the index from SQLite and write a fresh snapshot.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], SQLite, I/O and index failures.
    pub fn repair(&self) -> Result<CollectionInfo> {
        self.alive()?;
        let mut conn = self.store.writer("repair")?;
        self.state.rebuild_now(&self.store, &mut conn, "repair")?;
        drop(conn);
        self.info()
    }

    /// Reclaim the space of deleted records: rebuild the index when removed
    /// vectors hold at least [`COMPACT_THRESHOLD`] of its slots (or always
    /// with `force`), then VACUUM SQLite. usearch's own `compact` frees nothing.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], SQLite, I/O and index failures.
    pub fn compact(&self, force: bool) -> Result<CompactReport> {
        self.alive()?;
        let mut conn = self.store.writer("compact")?;
        let bytes_before = self.store_bytes();
        let (deleted, slots) = {
            let ix = self.state.indexes.read().unwrap_or_else(|p| p.into_inner());
            (ix.slots() - ix.len(), ix.slots())
        };
        let rebuilt = force || (slots > 0 && deleted as f64 / slots as f64 >= COMPACT_THRESHOLD);
        if rebuilt {
            self.state.rebuild_now(&self.store, &mut conn, "compact")?;
        } else if self.state.pending.load(Ordering::SeqCst) > 0 {
            self.state.snapshot(&self.store, &mut conn)?;
        }
        if self.store.dir.is_some() {
            failpoint!("compact:before-vacuum");
            conn.execute_batch("VACUUM").during("vacuum")?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .during("checkpoint")?;
        }
        drop(conn);
        Ok(CompactReport {
            rebuilt,
            deleted_slots_before: deleted as u64,
            bytes_before,
            bytes_after: self.store_bytes(),
        })
    }

    /// Bytes of the store's database files plus this collection's snapshot.
    fn store_bytes(&self) -> u64 {
        let Some(dir) = &self.store.dir else {
            return 0;
        };
        let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let db = crate::store::DB_FILE;
        size(dir.join(db))
            + size(dir.join(format!("{db}-wal")))
            + size(snapshot::path(dir, self.state.cid))
    }

    /// Change index settings (not the dimension): updates the collection and
    /// rebuilds its index from SQLite.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (nothing changed), [`Error::ReadOnly`],
    /// SQLite, I/O and index failures.
    pub fn alter(&self, change: &Alter) -> Result<CollectionInfo> {
        self.alive()?;
        let mut next = self.config();
        next.metric = change.metric.unwrap_or(next.metric);
        next.scalar = change.scalar.unwrap_or(next.scalar);
        next.connectivity = change.connectivity.unwrap_or(next.connectivity);
        next.expansion_add = change.expansion_add.unwrap_or(next.expansion_add);
        next.expansion_search = change.expansion_search.unwrap_or(next.expansion_search);
        next.validate()?;
        let mut conn = self.store.writer("alter")?;
        if next.metric == Metric::Cos && self.config().metric != Metric::Cos {
            // Zero vectors were fine under the old metric; cos cannot take them.
            let zero = zero_vector_id(&conn, self.state.cid, next.dimension)?;
            if let Some(id) = zero {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "record {id:?} has a zero vector, which the cos metric cannot take"
                    ),
                });
            }
        }
        conn.execute(
            "UPDATE collections SET metric = ?2, scalar = ?3, connectivity = ?4, expansion_add = ?5,
                    expansion_search = ?6 WHERE cid = ?1",
            params![
                self.state.cid,
                next.metric.as_str(),
                next.scalar.as_str(),
                next.connectivity as i64,
                next.expansion_add as i64,
                next.expansion_search as i64
            ],
        )
        .during("update collection settings")?;
        failpoint!("alter:after-update");
        *self.state.config.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.state.rebuild_now(&self.store, &mut conn, "alter")?;
        drop(conn);
        self.info()
    }
}

fn zero_vector_id(conn: &Connection, cid: i64, dim: usize) -> Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM records WHERE cid = ?1 AND vector = zeroblob(?2) LIMIT 1",
        params![cid, (dim * 4) as i64],
        |r| r.get(0),
    )
    .optional()
    .during("look for zero vectors")
}

/// The collection's last committed sequence number.
fn read_seq(conn: &Connection, cid: i64) -> Result<i64> {
    conn.prepare_cached("SELECT seq FROM collections WHERE cid = ?1")
        .during("prepare sequence read")?
        .query_row([cid], |r| r.get(0))
        .during("read sequence")
}

fn next_seq(tx: &rusqlite::Transaction<'_>, cid: i64) -> Result<i64> {
    let seq: i64 = tx
        .query_row(
            "UPDATE collections SET seq = seq + 1 WHERE cid = ?1 RETURNING seq",
            [cid],
            |r| r.get(0),
        )
        .during("advance sequence")?;
    Ok(seq)
}

fn decode_vector(collection: &str, id: &str, blob: &[u8], dim: usize) -> Result<Vec<f32>> {
    record::decode(blob, dim).ok_or_else(|| Error::Corrupt {
        collection: collection.into(),
        reason: format!(
            "record {id:?} has a vector of {} bytes, expected {}",
            blob.len(),
            dim * 4
        ),
    })
}

fn parse_metadata(collection: &str, id: &str, text: Option<String>) -> Result<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| Error::Corrupt {
            collection: collection.into(),
            reason: format!("record {id:?} has unreadable metadata: {e}"),
        })
    })
    .transpose()
}

/// Compare the index's copy of a vector with SQLite's; returns 1 if compared.
fn check_index_vector(
    ix: &Indexes,
    config: &CollectionConfig,
    key: u64,
    v: &[f32],
    problems: &mut Vec<String>,
) -> u64 {
    #[cfg(feature = "usearch")]
    {
        if config.scalar == Scalar::B1 {
            return 0;
        }
        match ix.hnsw.get(key) {
            Ok(Some(got)) => {
                let same = match config.scalar {
                    Scalar::F32 if config.metric != Metric::Cos => got == v,
                    // Quantised (or normalised) copies: compare directions.
                    _ => index::exact::distance(Metric::Cos, &got, v) <= 0.01,
                };
                if !same && problems.len() < 20 {
                    problems.push(format!(
                        "record key {key}: index vector differs from the database"
                    ));
                }
            }
            Ok(None) => problems.push(format!("record key {key}: index has no vector")),
            Err(e) => problems.push(format!(
                "record key {key}: reading its index vector failed: {e}"
            )),
        }
        1
    }
    #[cfg(not(feature = "usearch"))]
    {
        let _ = config;
        match ix.flat.as_ref().and_then(|f| f.get(key)) {
            Some(got) if got == v => {}
            _ => problems.push(format!(
                "record key {key}: index vector differs from the database"
            )),
        }
        1
    }
}
