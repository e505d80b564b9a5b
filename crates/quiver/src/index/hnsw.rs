//! The usearch HNSW index, wrapped so its traps cannot be reached.
//!
//! The usearch beneath is Quiver's patched 2.26.6 (`vendor/usearch/`): a
//! search or `get` that overlaps an `add` never sees a node before its
//! vector. What this wrapper guarantees on top (see USEARCH-NOTES):
//! - every `IndexOptions` field is set from the collection config;
//! - capacity is tracked here and grown geometrically before adds
//!   (`reserve` needs `&mut self`, so no other call can be in flight);
//! - callers are gated by a semaphore sized to the reserved thread slots,
//!   so a burst of searchers waits instead of failing;
//! - per-query `ef` changes the index-wide setting only while no search at
//!   another `ef` runs (`ef_gate`);
//! - bytes are handed to `load_from_buffer` only after the caller checked
//!   their digest, and the header is compared with the config first;
//! - nothing is ever `remove`d. usearch reuses a removed node's slot on the
//!   next `add` and relinks it in place, and that left nodes unreachable by
//!   any search (measured: 26 of 300 small churned indexes had a record its
//!   own vector could not find; 0 of 300 with adds only or removes only).
//!   A deleted or replaced vector is instead *retired*: renamed to a key in
//!   the reserved range `DEAD_BASE..`, where it stays in the graph as a
//!   waypoint, like hnswlib's `mark_deleted`. Searches filter retired keys
//!   out; `compact` rebuilds once they pile up.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::config::{CollectionConfig, Metric, Scalar};
use crate::snapshot::{Mapping, VectorCheck};

use crate::sync::RwLockExt;

use super::check::{Check, CheckState};
use super::threads::{par_each, Counted, Semaphore};

/// Error text from usearch (its exception type stays inside this module).
pub(crate) type HnswError = String;

/// A set of keys hashed by one multiply: keys are rowids, not attacker input.
pub(crate) type KeySet = HashSet<u64, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (self.0.rotate_left(5) ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Smallest capacity ever reserved.
const MIN_CAPACITY: usize = 1024;

/// Keys at or above this are retired nodes. SQLite rowids never get here.
pub(crate) const DEAD_BASE: u64 = 1 << 62;

pub(crate) struct HnswIndex {
    index: Index,
    dim: usize,
    /// Vectors and queries are scaled to unit length first (see
    /// [`unit_vectors`]).
    unit: bool,
    capacity: usize,
    threads: usize,
    permits: Semaphore,
    default_ef: usize,
    current_ef: AtomicUsize,
    ef_gate: RwLock<()>,
    /// Retired nodes; they hold keys `DEAD_BASE..DEAD_BASE + dead`.
    dead: AtomicUsize,
    /// Held shared by every add and retire; a search that came back short
    /// retries holding it exclusively.
    mutating: RwLock<()>,
    /// Upserts that replace a key, from before its old vector leaves
    /// searches until its new one is in: that key is missing meanwhile,
    /// and searches still expect it (see [`HnswIndex::expected`]).
    replacing: AtomicUsize,
    /// A snapshot viewed in place beneath `index`, which then holds only
    /// the changes since (see [`HnswIndex::view`]).
    base: Option<Base>,
}

/// A snapshot viewed in place: usearch `view` over a read-only mapping.
/// Opening this way costs a mapping and a structure check, not a copy of
/// the file (1M × 384: about 1.6 GB).
struct Base {
    /// Declared before `map`, so it is dropped while its bytes are mapped.
    index: Index,
    map: Arc<Mapping>,
    /// Live vectors in the snapshot, and its retired nodes.
    live: usize,
    dead: usize,
    /// Snapshot keys replaced or deleted since: filtered out of searches.
    hidden: RwLock<HashSet<u64>>,
    check: Arc<Check>,
}

impl Base {
    fn visible(&self, key: u64) -> bool {
        self.index.contains(key) && !self.hidden.read_lock().contains(&key)
    }

    /// Hide a snapshot key; true if it was visible.
    fn hide(&self, key: u64) -> bool {
        self.index.contains(key) && self.hidden.write_lock().insert(key)
    }

    fn hidden(&self) -> usize {
        self.hidden.read_lock().len()
    }

    /// Nearest visible snapshot keys that `keep` accepts.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        keep: Option<&dyn Fn(u64) -> bool>,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let hidden = self.hidden.read_lock();
        let m = if hidden.is_empty() && self.dead == 0 && keep.is_none() {
            self.index.search(query, k)
        } else {
            // A panic must not unwind into C++: this only reads a set.
            self.index.filtered_search(query, k, |key| {
                key < DEAD_BASE && !hidden.contains(&key) && keep.is_none_or(|f| f(key))
            })
        }
        .map_err(|e| e.to_string())?;
        Ok(m.keys.into_iter().zip(m.distances).collect())
    }
}

/// Merge two nearest-first lists into the nearest `k`.
fn merge(mut a: Vec<(u64, f32)>, b: Vec<(u64, f32)>, k: usize) -> Vec<(u64, f32)> {
    a.extend(b);
    a.sort_by(|x, y| x.1.total_cmp(&y.1));
    a.truncate(k);
    a
}

/// The snapshot header's options, if they are this build's and `config`'s.
fn check_header(
    config: &CollectionConfig,
    bytes: &[u8],
) -> Result<(IndexOptions, usearch::IndexMetadata), HnswError> {
    let meta = Index::metadata_from_buffer(bytes).map_err(|e| e.to_string())?;
    // Another usearch release may lay the file out differently: rebuild
    // rather than trust it.
    let (major, minor) = own_version();
    if (meta.version_major, meta.version_minor) != (major, minor) {
        return Err(format!(
            "snapshot written by usearch {}.{}.{}, this build uses {}",
            meta.version_major,
            meta.version_minor,
            meta.version_patch,
            version()
        ));
    }
    let mut want = options(config);
    // Cosine graphs written before issue 21 measure by cosine; they stay
    // valid (their vectors measure the same once normalised) and are read
    // as they are.
    if config.metric == Metric::Cos && meta.metric == MetricKind::Cos {
        want.metric = MetricKind::Cos;
    }
    if meta.dimensions != want.dimensions as u64
        || meta.metric != want.metric
        || meta.quantization != want.quantization
        || meta.multi
    {
        return Err(format!(
            "snapshot header (dim {}, metric {:?}, scalar {:?}, multi {}) does not match the collection",
            meta.dimensions, meta.metric, meta.quantization, meta.multi
        ));
    }
    Ok((want, meta))
}

/// After a load or view: the graph's settings and node counts match what
/// was recorded. Returns the number of retired nodes.
fn check_nodes(
    index: &Index,
    config: &CollectionConfig,
    meta: &usearch::IndexMetadata,
    live: usize,
) -> Result<usize, HnswError> {
    if index.connectivity() != config.connectivity || index.dimensions() != config.dimension {
        return Err(format!(
            "snapshot has connectivity {}, collection wants {}",
            index.connectivity(),
            config.connectivity
        ));
    }
    let nodes = index.size();
    if meta.count_deleted != 0 || nodes < live {
        return Err(format!(
            "snapshot has {nodes} nodes and {} removed slots; {live} live vectors were recorded",
            meta.count_deleted
        ));
    }
    let dead = nodes - live;
    if (dead > 0 && !index.contains(DEAD_BASE + dead as u64 - 1))
        || index.contains(DEAD_BASE + dead as u64)
    {
        return Err(format!(
            "snapshot's retired nodes are not the {dead} expected"
        ));
    }
    Ok(dead)
}

fn options(config: &CollectionConfig) -> IndexOptions {
    IndexOptions {
        dimensions: config.dimension,
        metric: if graph_by_inner_product(config) {
            MetricKind::IP
        } else {
            metric_kind(config.metric)
        },
        quantization: scalar_kind(config.scalar),
        connectivity: config.connectivity,
        expansion_add: config.expansion_add,
        expansion_search: config.expansion_search,
        multi: false,
    }
}

/// Whether the graph holds unit vectors: cosine collections stored as
/// f32, bf16 or f16 (i8 usearch scales itself). On unit vectors 1 − a·b
/// is the cosine distance, without the two norms cosine computes on every
/// call (issue 21: 5–15% of a search at f32, a third of it at bf16).
fn unit_vectors(config: &CollectionConfig) -> bool {
    config.metric == Metric::Cos
        && matches!(config.scalar, Scalar::F32 | Scalar::Bf16 | Scalar::F16)
}

/// Whether the graph itself measures by inner product: unit vectors in
/// f32. A unit vector rounded to bf16 or f16 is not unit, and under inner
/// product a node is then not always its own nearest neighbour; on close
/// vectors (a file's chunks 1e-4 apart in 4-d) a graph built so left live
/// nodes unreachable (`batches.rs` missed a chunk; 117 of 700 live nodes
/// in the copies test). So those kinds build by cosine, and only their
/// searches walk by inner product ([`search_by_inner_product`]).
fn graph_by_inner_product(config: &CollectionConfig) -> bool {
    config.metric == Metric::Cos && config.scalar == Scalar::F32
}

/// Whether searches walk a cosine graph by inner product: unit vectors in
/// bf16 or f16. The walk ranks as cosine would (up to the rounding of the
/// norms), at a third of the arithmetic; usearch then measures its
/// candidates again by cosine before it ranks and cuts them (patch hunk
/// 9), so the distances and order a search reports are cosine's.
fn search_by_inner_product(config: &CollectionConfig) -> bool {
    config.cosine_in_half_precision()
}

/// Set the search walk's metric (not saved with the graph) on a new,
/// loaded or viewed `index`, before any search can reach it.
/// A custom metric's Rust function as the index's metric (after `new`,
/// `load` or `view`, each of which sets the header's kind).
fn install_custom(index: &mut Index, config: &CollectionConfig) {
    if let Metric::Custom(c) = config.metric {
        let f = c.function();
        let dim = config.dimension;
        index.change_metric::<f32>(Box::new(move |a: *const f32, b: *const f32| {
            // SAFETY: usearch calls the metric with two vectors of the
            // index's own f32 storage (validation keeps a custom metric at
            // scalar f32), each `dim` values long, alive for the call.
            let (a, b) = unsafe {
                (
                    std::slice::from_raw_parts(a, dim),
                    std::slice::from_raw_parts(b, dim),
                )
            };
            crate::config::call_custom(&f, a, b)
        }));
    }
}

fn set_search_metric(index: &Index, config: &CollectionConfig) -> Result<(), HnswError> {
    if search_by_inner_product(config) {
        index
            .change_search_metric_kind(MetricKind::IP)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `v` scaled to unit length (a zero vector stays zero). The norm is
/// summed in f64: in f32 a 384-d vector with components above about 1e18
/// overflows, and tiny ones underflow.
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
    } else {
        v.to_vec()
    }
}

fn metric_kind(m: Metric) -> MetricKind {
    match m {
        Metric::Cos => MetricKind::Cos,
        Metric::Ip => MetricKind::IP,
        Metric::L2 => MetricKind::L2sq,
        Metric::Hamming => MetricKind::Hamming,
        Metric::Jaccard => MetricKind::Tanimoto,
        Metric::Pearson => MetricKind::Pearson,
        Metric::Haversine => MetricKind::Haversine,
        Metric::Divergence => MetricKind::Divergence,
        // The header's kind only: the function is installed after
        // (`install_custom`), and usearch saves what it was created with.
        Metric::Custom(_) => MetricKind::L2sq,
    }
}

fn scalar_kind(s: Scalar) -> ScalarKind {
    match s {
        Scalar::F32 => ScalarKind::F32,
        Scalar::F16 => ScalarKind::F16,
        Scalar::Bf16 => ScalarKind::BF16,
        Scalar::I8 => ScalarKind::I8,
        Scalar::B1 => ScalarKind::B1,
    }
}

/// Thread slots to reserve: enough that the search threads of a busy
/// process rarely wait, small enough that per-slot scratch stays cheap.
fn thread_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).max(8)
}

/// The usearch version that writes snapshots.
pub(crate) fn version() -> &'static str {
    usearch::version()
}

/// (major, minor) of the linked usearch.
fn own_version() -> (u16, u16) {
    let mut parts = version()
        .split('.')
        .map(|p| p.parse::<u16>().unwrap_or(u16::MAX));
    (
        parts.next().unwrap_or(u16::MAX),
        parts.next().unwrap_or(u16::MAX),
    )
}

impl HnswIndex {
    /// An empty index with room for `expected` vectors.
    pub(crate) fn new(config: &CollectionConfig, expected: usize) -> Result<Self, HnswError> {
        let mut index = Index::new(&options(config)).map_err(|e| e.to_string())?;
        install_custom(&mut index, config);
        set_search_metric(&index, config)?;
        let mut this = Self::wrap(index, config);
        this.reserve(expected.max(MIN_CAPACITY))?;
        Ok(this)
    }

    fn wrap(index: Index, config: &CollectionConfig) -> Self {
        let threads = thread_slots();
        HnswIndex {
            index,
            dim: config.dimension,
            unit: unit_vectors(config),
            capacity: 0,
            threads,
            permits: Semaphore::new(threads),
            default_ef: config.expansion_search,
            current_ef: AtomicUsize::new(config.expansion_search),
            ef_gate: RwLock::new(()),
            dead: AtomicUsize::new(0),
            mutating: RwLock::new(()),
            replacing: AtomicUsize::new(0),
            base: None,
        }
    }

    /// Load a serialised index whose bytes the caller has already checked.
    /// Fails if the header disagrees with `config`.
    /// `live` is the number of live vectors recorded with the snapshot; the
    /// rest of its nodes must be the retired keys `DEAD_BASE..`.
    pub(crate) fn load(
        config: &CollectionConfig,
        bytes: &[u8],
        live: usize,
    ) -> Result<Self, HnswError> {
        let (want, meta) = check_header(config, bytes)?;
        let mut index = Index::new(&want).map_err(|e| e.to_string())?;
        index.load_from_buffer(bytes).map_err(|e| e.to_string())?;
        install_custom(&mut index, config);
        let dead = check_nodes(&index, config, &meta, live)?;
        // Not stored in the file: set from the config.
        index.change_expansion_add(config.expansion_add);
        index.change_expansion_search(config.expansion_search);
        set_search_metric(&index, config)?;
        let mut this = Self::wrap(index, config);
        this.dead = AtomicUsize::new(dead);
        let slots = this.slots();
        this.reserve((slots + slots / 2).max(MIN_CAPACITY))?;
        Ok(this)
    }

    /// View a snapshot in place, with an empty owned index above it for
    /// the changes to come. The caller has checked the mapping's structure
    /// (`snapshot::map_checked`); `vectors`, if given, is checked here on a
    /// background thread, and [`HnswIndex::snapshot_check`] reports it.
    /// Damaged vectors can only misrank while that runs: usearch reads
    /// sizes and links only from the checked structure.
    pub(crate) fn view(
        config: &CollectionConfig,
        map: Mapping,
        vectors: Option<VectorCheck>,
        live: usize,
    ) -> Result<Self, HnswError> {
        let (want, meta) = check_header(config, map.bytes())?;
        let mut base = Index::new(&want).map_err(|e| e.to_string())?;
        // Thread slots set before `view` survive it; its capacity is the file's.
        base.reserve_capacity_and_threads(0, thread_slots())
            .map_err(|e| e.to_string())?;
        // SAFETY: the bytes stay mapped, unchanged, for as long as `base`
        // lives: `Base` owns both and drops the index first. Their
        // structure was checked against the recorded digest.
        unsafe { base.view_from_buffer(map.bytes()) }.map_err(|e| e.to_string())?;
        install_custom(&mut base, config);
        let dead = check_nodes(&base, config, &meta, live)?;
        base.change_expansion_search(config.expansion_search);
        set_search_metric(&base, config)?;
        let map = Arc::new(map);
        let check = Arc::new(Check::new(match &vectors {
            Some(_) => CheckState::Pending,
            None => CheckState::Passed,
        }));
        if let Some(v) = vectors {
            let (map, done) = (Arc::clone(&map), Arc::clone(&check));
            let run = move || {
                done.set(if v.passes(map.bytes()) {
                    CheckState::Passed
                } else {
                    CheckState::Failed
                });
            };
            let spawned = std::thread::Builder::new()
                .name("quiver-check-snapshot".into())
                .spawn(run.clone());
            if spawned.is_err() {
                run();
            }
        }
        let mut this = Self::new(config, 0)?;
        this.base = Some(Base {
            index: base,
            map,
            live,
            dead,
            hidden: RwLock::new(HashSet::new()),
            check,
        });
        Ok(this)
    }

    /// True while a viewed snapshot lies beneath: it cannot be saved.
    pub(crate) fn is_viewed(&self) -> bool {
        self.base.is_some()
    }

    /// The background check of a viewed snapshot's vectors, if any.
    pub(crate) fn snapshot_check(&self) -> Option<Arc<Check>> {
        self.base.as_ref().map(|b| Arc::clone(&b.check))
    }

    /// Live vectors.
    pub(crate) fn len(&self) -> usize {
        let own = self.index.size() - self.dead.load(Ordering::Acquire);
        own + self.base.as_ref().map_or(0, |b| b.live - b.hidden())
    }

    /// Nodes in the graph: live plus retired.
    pub(crate) fn slots(&self) -> usize {
        self.index.size() + self.base.as_ref().map_or(0, |b| b.index.size())
    }

    /// Retired nodes, reclaimed only by a rebuild.
    pub(crate) fn deleted(&self) -> usize {
        self.dead.load(Ordering::Acquire) + self.base.as_ref().map_or(0, |b| b.dead + b.hidden())
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity + self.base.as_ref().map_or(0, |b| b.index.size())
    }

    /// Heap bytes, plus the viewed snapshot's mapped bytes. usearch counts
    /// them by walking every node and reading its allocator's totals, which
    /// adds change: writers are held off meanwhile.
    pub(crate) fn memory_bytes(&self) -> usize {
        let _quiet = self.mutating.write_lock();
        self.index.memory_usage() + self.base.as_ref().map_or(0, |b| b.map.bytes().len())
    }

    fn reserve(&mut self, capacity: usize) -> Result<(), HnswError> {
        self.index
            .reserve_capacity_and_threads(capacity, self.threads)
            .map_err(|e| e.to_string())?;
        self.capacity = capacity;
        Ok(())
    }

    /// True when `additional` more adds need a `grow` first.
    pub(crate) fn needs_growth(&self, additional: usize) -> bool {
        self.index.size() + additional > self.capacity
    }

    /// Grow capacity (at least doubling) to fit `additional` more adds.
    pub(crate) fn grow(&mut self, additional: usize) -> Result<(), HnswError> {
        let need = self.index.size() + additional;
        if need <= self.capacity {
            return Ok(());
        }
        self.reserve(need.max(self.capacity * 2).max(MIN_CAPACITY))
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        key < DEAD_BASE
            && (self.index.contains(key) || self.base.as_ref().is_some_and(|b| b.visible(key)))
    }

    /// Take a node out of results while keeping it in the graph.
    fn retire(&self, key: u64) -> Result<(), HnswError> {
        // Claim the retired key first: parallel upserts retire at once.
        let dead = DEAD_BASE + self.dead.fetch_add(1, Ordering::AcqRel) as u64;
        self.index.rename(key, dead).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Add a vector, replacing any vector under the same key. The caller has
    /// made room with `grow`; calls for distinct keys may run in parallel.
    pub(crate) fn upsert(&self, key: u64, vector: &[f32]) -> Result<(), HnswError> {
        if key >= DEAD_BASE {
            return Err(format!("key {key} is in the reserved range"));
        }
        let _permit = self.permits.acquire();
        let _m = self.mutating.read_lock();
        // Counted before the old vector is hidden or retired, uncounted once
        // the new one is added (or the add failed).
        let _replacing = self.contains(key).then(|| Counted::enter(&self.replacing));
        if let Some(b) = &self.base {
            b.hide(key);
        }
        if self.index.contains(key) {
            self.retire(key)?;
        }
        self.index
            .add(key, &self.prepared(vector))
            .map_err(|e| e.to_string())
    }

    /// A vector or query as the graph measures it.
    fn prepared<'a>(&self, v: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.unit {
            std::borrow::Cow::Owned(unit(v))
        } else {
            std::borrow::Cow::Borrowed(v)
        }
    }

    /// How many live vectors a search may expect: `len`, plus the keys
    /// being replaced, which are briefly in neither their old nor their
    /// new form. A search that finds fewer is retried with writers held
    /// off (see [`HnswIndex::search`]).
    fn expected(&self) -> usize {
        self.len() + self.replacing.load(Ordering::SeqCst)
    }

    /// Whether a search of the owned graph (where adds go; a viewed
    /// snapshot beneath is not searched) for `vector`, a node's own, at
    /// `ef` finds `key`: a check that a node just added is linked in.
    pub(crate) fn finds_itself(&self, key: u64, vector: &[f32], ef: usize) -> bool {
        let vector = self.prepared(vector);
        let _gate = self.enter_ef(ef);
        let _permit = self.permits.acquire();
        // Retired nodes may fill some of the 10 places; the key is live.
        self.index
            .search(&vector, 10)
            .is_ok_and(|m| m.keys.contains(&key))
    }

    /// Of `keys`, just added to the owned graph, the positions of those
    /// whose links do not show them reachable. A node is shown reachable
    /// when a node outside `keys` (in the graph before them; assumed
    /// reachable) links to it, or a node shown reachable among `keys`
    /// does. Links are read at the base level, where every search ends.
    /// Cheap next to a search: a few dozen neighbour lists per node. The
    /// caller keeps adds out meanwhile (usearch reads the lists in place).
    pub(crate) fn unlinked(&self, keys: &[u64], threads: usize) -> Vec<usize> {
        let pos: HashMap<u64, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let linked: Vec<AtomicBool> = keys.iter().map(|_| AtomicBool::new(false)).collect();
        let links_to = |from: u64, to: u64| self.index.neighbors(from, 0).any(|k| k == to);
        let anchored = par_each(keys.len(), threads.max(1), |i| -> Result<(), Infallible> {
            let key = keys[i];
            let from_before = self
                .index
                .neighbors(key, 0)
                .any(|n| !pos.contains_key(&n) && links_to(n, key));
            linked[i].store(from_before, Ordering::Relaxed);
            Ok(())
        });
        let Ok(()) = anchored;
        let mut reached: Vec<bool> = linked.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        let mut stack: Vec<usize> = (0..keys.len()).filter(|&i| reached[i]).collect();
        while let Some(i) = stack.pop() {
            for n in self.index.neighbors(keys[i], 0) {
                if let Some(&j) = pos.get(&n) {
                    if !reached[j] {
                        reached[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        (0..keys.len()).filter(|&i| !reached[i]).collect()
    }

    /// Every live key a search can reach. One search per graph whose ef is
    /// the graph's size never drops a candidate, so it returns exactly the
    /// nodes reachable from the entry point: a pass over the whole graph.
    pub(crate) fn reachable(&self) -> Result<HashSet<u64>, HnswError> {
        let query = vec![1.0f32; self.dim];
        let nodes = self
            .index
            .size()
            .max(self.base.as_ref().map_or(0, |b| b.index.size()));
        let mut out = HashSet::with_capacity(self.len());
        if nodes == 0 {
            return Ok(out);
        }
        let _gate = self.enter_ef(nodes);
        let _permit = self.permits.acquire();
        let own = self.index.size();
        if own > 0 {
            let m = self.index.search(&query, own).map_err(|e| e.to_string())?;
            out.extend(m.keys.into_iter().filter(|k| *k < DEAD_BASE));
        }
        if let Some(b) = &self.base {
            let m = b
                .index
                .search(&query, b.index.size())
                .map_err(|e| e.to_string())?;
            // A hidden key lives on above, where it was just counted.
            out.extend(m.keys.into_iter().filter(|k| b.visible(*k)));
        }
        Ok(out)
    }

    /// Nodes of the owned graph (live and retired) that a walk of the
    /// base-level links reaches from the node a search lands on, that is,
    /// what searches can reach. Links only, no distances: a fraction of a
    /// search with ef = the graph's size. The caller keeps adds out (usearch
    /// reads the lists in place).
    pub(crate) fn walk(&self) -> KeySet {
        let mut seen = KeySet::with_capacity_and_hasher(self.index.size(), Default::default());
        if self.index.size() == 0 {
            return seen;
        }
        let mut stack = {
            let _gate = self.enter_ef(self.default_ef);
            let _permit = self.permits.acquire();
            let m = self.index.search(&vec![1.0f32; self.dim], 1);
            m.map(|m| m.keys).unwrap_or_default()
        };
        seen.extend(stack.iter().copied());
        while let Some(k) = stack.pop() {
            for n in self.index.neighbors(k, 0) {
                if seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        seen
    }

    /// Whether the owned graph (the one adds go to) holds live `key`.
    pub(crate) fn owns(&self, key: u64) -> bool {
        key < DEAD_BASE && self.index.contains(key)
    }

    /// Live nodes of the owned graph.
    pub(crate) fn owned_live(&self) -> usize {
        self.index.size() - self.dead.load(Ordering::Acquire)
    }

    /// Nodes in the owned graph, the one adds go to (retired included).
    pub(crate) fn owned_nodes(&self) -> usize {
        self.index.size()
    }

    /// Retire a key; false if it was not there.
    pub(crate) fn remove(&self, key: u64) -> Result<bool, HnswError> {
        let _permit = self.permits.acquire();
        let _m = self.mutating.read_lock();
        if key >= DEAD_BASE {
            return Ok(false);
        }
        let hidden = self.base.as_ref().is_some_and(|b| b.hide(key));
        let owned = self.index.contains(key);
        if owned {
            self.retire(key)?;
        }
        Ok(hidden || owned)
    }

    /// The index's (possibly quantised) copy of a vector, as f32.
    pub(crate) fn get(&self, key: u64) -> Result<Option<Vec<f32>>, HnswError> {
        let _permit = self.permits.acquire();
        if key >= DEAD_BASE {
            return Ok(None);
        }
        let mut out = vec![0.0f32; self.dim];
        let n = self.index.get(key, &mut out).map_err(|e| e.to_string())?;
        if n > 0 {
            return Ok(Some(out));
        }
        match &self.base {
            Some(b) if b.visible(key) => {
                let n = b.index.get(key, &mut out).map_err(|e| e.to_string())?;
                Ok((n > 0).then_some(out))
            }
            _ => Ok(None),
        }
    }

    /// Approximate k nearest neighbours with candidate list size `ef`
    /// (the collection default when `None`).
    ///
    /// A usearch search that overlaps an `add` can come back with fewer
    /// than k hits: usearch counts a node (`size`, hence `len`) before the
    /// add publishes and links it, so a small graph can hold fewer reachable
    /// nodes than it reports (an empty result while the first node goes
    /// in), and a key being replaced is missing until its new vector is in.
    /// One that overlaps a retirement can report the retired key. Such a
    /// result is retried once with writers held off, which is exact.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef = ef.unwrap_or(self.default_ef);
        let query = self.prepared(query);
        self.retrying(k.min(self.expected()), || self.search_once(&query, k, ef))
    }

    /// Approximate k nearest among keys for which `keep` is true, at `ef`.
    /// `expect` is how many can exist (at most k): a shorter answer is
    /// retried once with writers held off, as in [`HnswIndex::search`].
    pub(crate) fn filtered_search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        expect: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let query = self.prepared(query);
        let query = &query[..];
        let once = || -> Result<Vec<(u64, f32)>, HnswError> {
            let _gate = self.enter_ef(ef);
            let _permit = self.permits.acquire();
            // A panic must not unwind into C++: `keep` only reads a bitmap.
            let m = self
                .index
                .filtered_search(query, k, |key| key < DEAD_BASE && keep(key))
                .map_err(|e| e.to_string())?;
            let own = m.keys.into_iter().zip(m.distances).collect();
            match &self.base {
                Some(b) => Ok(merge(own, b.search(query, k, Some(&keep))?, k)),
                None => Ok(own),
            }
        };
        self.retrying(expect.min(k), once)
    }

    /// Run `once`; if it came back with fewer than `want` hits or with a
    /// retired key (it overlapped a writer), run it again with writers held
    /// off, which is exact.
    fn retrying(
        &self,
        want: usize,
        once: impl Fn() -> Result<Vec<(u64, f32)>, HnswError>,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let hits = once()?;
        if hits.len() >= want && hits.iter().all(|h| h.0 < DEAD_BASE) {
            return Ok(hits);
        }
        let _quiet = self.mutating.write_lock();
        let mut hits = once()?;
        hits.retain(|h| h.0 < DEAD_BASE);
        Ok(hits)
    }

    fn search_once(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let _gate = self.enter_ef(ef);
        let _permit = self.permits.acquire();
        let m = if self.dead.load(Ordering::Acquire) == 0 {
            self.index.search(query, k)
        } else {
            self.index.filtered_search(query, k, |key| key < DEAD_BASE)
        }
        .map_err(|e| e.to_string())?;
        let own = m.keys.into_iter().zip(m.distances).collect();
        match &self.base {
            Some(b) => Ok(merge(own, b.search(query, k, None)?, k)),
            None => Ok(own),
        }
    }

    /// Hold the ef gate shared with `current_ef == ef`: searches at the same
    /// ef run together; switching waits for the others to finish.
    fn enter_ef(&self, ef: usize) -> std::sync::RwLockReadGuard<'_, ()> {
        loop {
            let guard = self.ef_gate.read_lock();
            if self.current_ef.load(Ordering::Acquire) == ef {
                return guard;
            }
            drop(guard);
            let _w = self.ef_gate.write_lock();
            self.index.change_expansion_search(ef);
            if let Some(b) = &self.base {
                b.index.change_expansion_search(ef);
            }
            self.current_ef.store(ef, Ordering::Release);
        }
    }

    /// The index serialised, taken while the caller keeps writers out.
    /// The index serialised, into `reuse`'s memory if given: its pages
    /// are already mapped, and only a longer tail is zeroed.
    pub(crate) fn to_bytes(&self, reuse: Option<Vec<u8>>) -> Result<Vec<u8>, HnswError> {
        if self.is_viewed() {
            return Err("a viewed snapshot is loaded into memory before it is saved".into());
        }
        let _permit = self.permits.acquire();
        let len = self.index.serialized_length();
        let mut buf = reuse.unwrap_or_default();
        // usearch writes every byte of the length it reports.
        buf.resize(len, 0);
        self.index
            .save_to_buffer(&mut buf)
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }
}

#[cfg(test)]
#[path = "hnsw_tests.rs"]
mod tests;
