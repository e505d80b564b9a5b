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
    let want = options(config);
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
        metric: metric_kind(config.metric),
        quantization: scalar_kind(config.scalar),
        connectivity: config.connectivity,
        expansion_add: config.expansion_add,
        expansion_search: config.expansion_search,
        multi: false,
    }
}

fn metric_kind(m: Metric) -> MetricKind {
    match m {
        Metric::Cos => MetricKind::Cos,
        Metric::Ip => MetricKind::IP,
        Metric::L2 => MetricKind::L2sq,
        Metric::Hamming => MetricKind::Hamming,
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
        let index = Index::new(&options(config)).map_err(|e| e.to_string())?;
        let mut this = Self::wrap(index, config);
        this.reserve(expected.max(MIN_CAPACITY))?;
        Ok(this)
    }

    fn wrap(index: Index, config: &CollectionConfig) -> Self {
        let threads = thread_slots();
        HnswIndex {
            index,
            dim: config.dimension,
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
        let index = Index::new(&want).map_err(|e| e.to_string())?;
        index.load_from_buffer(bytes).map_err(|e| e.to_string())?;
        let dead = check_nodes(&index, config, &meta, live)?;
        // Not stored in the file: set from the config.
        index.change_expansion_add(config.expansion_add);
        index.change_expansion_search(config.expansion_search);
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
        let base = Index::new(&want).map_err(|e| e.to_string())?;
        // Thread slots set before `view` survive it; its capacity is the file's.
        base.reserve_capacity_and_threads(0, thread_slots())
            .map_err(|e| e.to_string())?;
        // SAFETY: the bytes stay mapped, unchanged, for as long as `base`
        // lives: `Base` owns both and drops the index first. Their
        // structure was checked against the recorded digest.
        unsafe { base.view_from_buffer(map.bytes()) }.map_err(|e| e.to_string())?;
        let dead = check_nodes(&base, config, &meta, live)?;
        base.change_expansion_search(config.expansion_search);
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
        self.index.add(key, vector).map_err(|e| e.to_string())
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
        let _gate = self.enter_ef(ef);
        let _permit = self.permits.acquire();
        // Retired nodes may fill some of the 10 places; the key is live.
        self.index
            .search(vector, 10)
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
        self.retrying(k.min(self.expected()), || self.search_once(query, k, ef))
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
mod tests {
    use super::*;

    fn config(dim: usize) -> CollectionConfig {
        CollectionConfig::new(dim)
    }

    #[test]
    fn grows_past_initial_capacity_and_round_trips() {
        let cfg = config(4);
        let mut h = HnswIndex::new(&cfg, 0).unwrap();
        let n = 3000u64;
        for key in 1..=n {
            if h.needs_growth(1) {
                h.grow(1).unwrap();
            }
            h.upsert(key, &[key as f32, 1.0, 0.5, (key % 7) as f32])
                .unwrap();
        }
        assert_eq!(h.len(), n as usize);
        assert!(h.capacity() >= n as usize);
        h.upsert(5, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(h.len(), n as usize);
        // The replaced vector stays in the graph, retired.
        assert_eq!(h.deleted(), 1);
        assert!(h.remove(6).unwrap());
        assert!(!h.remove(6).unwrap());
        assert_eq!(h.len(), n as usize - 1);
        // Retired nodes never come back from a search.
        let hits = h.search(&[6.0, 1.0, 0.5, 6.0], 20, Some(64)).unwrap();
        assert!(hits.iter().all(|(k, _)| *k < DEAD_BASE && *k != 6));
        assert_eq!(hits.len(), 20);
        let bytes = h.to_bytes(None).unwrap();
        // Reused memory, longer or shorter and full of other bytes, gives
        // the same bytes: usearch writes every byte it reports.
        for len in [bytes.len() + 100, bytes.len() - 100] {
            assert_eq!(h.to_bytes(Some(vec![0xAB; len])).unwrap(), bytes);
        }
        assert!(HnswIndex::load(&cfg, &bytes, h.len() + 1).is_err());
        let back = HnswIndex::load(&cfg, &bytes, h.len()).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.deleted(), 2);
        assert_eq!(back.slots(), n as usize + 1);
        assert!(!back.contains(6));
        back.remove(7).unwrap();
        assert_eq!(back.deleted(), 3);
        assert_eq!(back.get(5).unwrap().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let mut other = cfg.clone();
        other.dimension = 5;
        assert!(HnswIndex::load(&other, &bytes, h.len()).is_err());
        let mut other = cfg.clone();
        other.connectivity = 8;
        assert!(HnswIndex::load(&other, &bytes, h.len()).is_err());
    }

    #[test]
    fn per_query_ef_and_concurrent_searches() {
        let cfg = config(8);
        let mut h = HnswIndex::new(&cfg, 500).unwrap();
        h.grow(5000).unwrap();
        for key in 0..500u64 {
            let v: Vec<f32> = (0..8)
                .map(|i| ((key * 31 + i * 7) % 97) as f32 + 1.0)
                .collect();
            h.upsert(key + 1, &v).unwrap();
        }
        // More threads than slots: the semaphore must make them wait, not fail.
        // A writer adds and retires meanwhile: no search may come back short.
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let (hr, doner) = (&h, &done);
            s.spawn(move || {
                for key in 501..4000u64 {
                    let v: Vec<f32> = (0..8)
                        .map(|i| ((key * 17 + i * 3) % 89) as f32 + 1.0)
                        .collect();
                    hr.upsert(key % 700 + 1, &v).unwrap();
                }
                doner.store(true, Ordering::Relaxed);
            });
            for t in 0..24 {
                let h = &h;
                s.spawn(move || {
                    for i in 0..200 {
                        let q: Vec<f32> = (0..8)
                            .map(|j| ((t * 13 + i + j) % 50) as f32 + 1.0)
                            .collect();
                        let ef = [None, Some(16), Some(200)][(t + i) % 3];
                        let hits = h.search(&q, 10, ef).unwrap();
                        assert_eq!(hits.len(), 10);
                    }
                });
            }
        });
    }

    /// Cycles of the state usearch 2.26.6 crashed in (USEARCH-NOTES,
    /// "Concurrent add and search"): an empty index, threads spinning on
    /// every read (search, filtered search, get, usearch's own exact scan),
    /// and the first adds. Unpatched, a search that overlaps the first add
    /// measures against a null vector (SIGSEGV) within a few thousand
    /// cycles. `QUIVER_STRESS_CYCLES` runs it longer.
    #[test]
    fn reads_overlapping_the_first_adds_of_an_empty_index() {
        let cycles: usize = std::env::var("QUIVER_STRESS_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000);
        let dim = 8;
        let adds = 48u64;
        let vector = |key: u64| -> Vec<f32> {
            (0..dim as u64)
                .map(|i| ((key * 37 + i * 11) % 23) as f32 + 1.0)
                .collect()
        };
        for cycle in 0..cycles {
            let h = HnswIndex::new(&config(dim), 0).unwrap();
            let (added, done) = (AtomicUsize::new(0), AtomicBool::new(false));
            let spinning = AtomicUsize::new(0);
            std::thread::scope(|s| {
                let reader = |mode: usize| {
                    let (h, added, done, spinning) = (&h, &added, &done, &spinning);
                    move || {
                        spinning.fetch_add(1, Ordering::AcqRel);
                        let mut i = 0u64;
                        while !done.load(Ordering::Acquire) {
                            i += 1;
                            // Everything below `before` was added before this read began.
                            let before = added.load(Ordering::Acquire) as u64;
                            let q = vector(i % adds + 1);
                            let hits = match mode {
                                0 => h.search(&q, 4, None).unwrap(),
                                1 => h.filtered_search(&q, 4, 16, 4, |k| k % 2 == 1).unwrap(),
                                _ => {
                                    let key = i % (before + 2) + 1;
                                    let got = h.get(key).unwrap();
                                    assert!(
                                        key > before || got == Some(vector(key)),
                                        "cycle {cycle}"
                                    );
                                    let _gate = h.enter_ef(h.default_ef);
                                    let _permit = h.permits.acquire();
                                    let m = h.index.exact_search(&q, 4).unwrap();
                                    m.keys.into_iter().zip(m.distances).collect()
                                }
                            };
                            assert!(hits.len() <= 4, "cycle {cycle}");
                            for (key, d) in hits {
                                assert!(
                                    (1..=adds).contains(&key) && d.is_finite(),
                                    "cycle {cycle}: {key} {d}"
                                );
                            }
                        }
                    }
                };
                let readers: Vec<_> = (0..3).map(|m| s.spawn(reader(m))).collect();
                while spinning.load(Ordering::Acquire) < readers.len() {
                    std::hint::spin_loop();
                }
                for key in 1..=adds {
                    h.upsert(key, &vector(key)).unwrap();
                    added.store(key as usize, Ordering::Release);
                }
                done.store(true, Ordering::Release);
                for r in readers {
                    r.join().unwrap();
                }
            });
            assert_eq!(h.len(), adds as usize);
        }
    }

    /// `reachable` (one search with ef = the graph's size) against an
    /// independent walk of the links, on graphs built by parallel adds
    /// without the write path's repair, which leave a few nodes unreachable.
    #[test]
    fn reachable_matches_a_walk_of_the_links() {
        let dim = 16;
        let n = 16_000u64;
        let mut seen_unreachable = false;
        for seed in 0..8u64 {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            };
            let centres: Vec<Vec<f32>> =
                (0..8).map(|_| (0..dim).map(|_| next()).collect()).collect();
            let vectors: Vec<Vec<f32>> = (0..n as usize)
                .map(|i| centres[i % 8].iter().map(|c| c + 0.3 * next()).collect())
                .collect();
            let mut h = HnswIndex::new(&config(dim), n as usize).unwrap();
            par_each(n as usize, 2, |j| h.upsert(j as u64 + 1, &vectors[j])).unwrap();
            let reached = h.reachable().unwrap();
            // The walk: from the nodes of the top level down the base level's links.
            let top = (1..=n).map(|k| h.index.level_of_key(k)).max().unwrap();
            let mut walked: HashSet<u64> = (1..=n)
                .filter(|&k| h.index.level_of_key(k) == top)
                .collect();
            let mut stack: Vec<u64> = walked.iter().copied().collect();
            while let Some(k) = stack.pop() {
                for m in h.index.neighbors(k, 0) {
                    if walked.insert(m) {
                        stack.push(m);
                    }
                }
            }
            assert_eq!(reached, walked, "seed {seed}");
            // The walk from where a search lands reaches the same nodes.
            let from_search: HashSet<u64> = h.walk().into_iter().collect();
            assert_eq!(from_search, reached, "seed {seed}");
            if reached.len() < n as usize {
                seen_unreachable = true;
                // Added again alone, the lost nodes are linked in.
                let lost: Vec<u64> = (1..=n).filter(|k| !reached.contains(k)).collect();
                h.grow(lost.len()).unwrap();
                for k in &lost {
                    h.upsert(*k, &vectors[*k as usize - 1]).unwrap();
                }
                assert_eq!(h.reachable().unwrap().len(), n as usize, "seed {seed}");
                break;
            }
        }
        // Otherwise the comparison above proved nothing about misses.
        assert!(seen_unreachable, "no seed left a node unreachable");
    }
}
