//! The set of indexes a collection keeps (the HNSW graph with any viewed
//! snapshot beneath it, the exact index, the key → id cache), swapped whole
//! on a rebuild, and applying committed changes to them: capacity,
//! parallel adds, lost-node repair.

use std::collections::HashMap;
#[cfg(feature = "usearch")]
use std::sync::Mutex;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::config::CollectionConfig;
use crate::error::{Error, Result};
use crate::snapshot::{Mapping, VectorCheck};
#[cfg(feature = "usearch")]
use crate::sync::MutexExt;
use crate::sync::RwLockExt;

use super::check::Check;
use super::exact::FlatIndex;
#[cfg(feature = "usearch")]
use super::hnsw::HnswIndex;
#[cfg(feature = "usearch")]
use super::threads::par_each;

/// What a graph call says in a build without one (callers ask
/// [`Indexes::HAS_GRAPH`] first).
#[cfg(not(feature = "usearch"))]
const NO_GRAPH: &str = "built without the usearch feature: no approximate index";

/// The indexes of a collection; swapped whole on rebuild.
pub(crate) struct Indexes {
    #[cfg(feature = "usearch")]
    pub(crate) hnsw: HnswIndex,
    /// With usearch: built on the first exact search, then kept in step.
    /// Without: always present, it is the index.
    pub(crate) flat: Option<FlatIndex>,
    /// Key → id of records found by searches, so an ids-only search does
    /// not go to SQLite. A key's id never changes (keys are never reused:
    /// `AUTOINCREMENT`), so entries only leave, when the key is removed.
    pub(crate) ids: RwLock<HashMap<u64, Box<str>>>,
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

impl Indexes {
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn empty(config: &CollectionConfig, expected: usize, name: &str) -> Result<Self> {
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

    pub(crate) fn len(&self) -> usize {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.len()
        }
        #[cfg(not(feature = "usearch"))]
        {
            self.flat.as_ref().map_or(0, FlatIndex::len)
        }
    }

    pub(crate) fn slots(&self) -> usize {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.slots()
        }
        #[cfg(not(feature = "usearch"))]
        {
            self.len()
        }
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
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
    pub(crate) fn grow(&mut self, additional: usize, name: &str) -> Result<()> {
        #[cfg(feature = "usearch")]
        self.hnsw
            .grow(additional)
            .map_err(|m| index_err(name, "reserve capacity", m))?;
        if let Some(f) = self.flat.as_mut() {
            f.reserve(additional);
        }
        Ok(())
    }

    /// True when an approximate graph is built in (the `usearch`
    /// feature); without it every search is exact, over `flat`.
    pub(crate) const HAS_GRAPH: bool = cfg!(feature = "usearch");

    /// The background check of a viewed snapshot's vectors, if one runs.
    pub(crate) fn snapshot_check(&self) -> Option<Arc<Check>> {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.snapshot_check()
        }
        #[cfg(not(feature = "usearch"))]
        {
            None
        }
    }

    /// Approximate `k` nearest at candidate list size `ef` (see
    /// [`HnswIndex::search`]). Only when [`Indexes::HAS_GRAPH`].
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn graph_search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> std::result::Result<Vec<(u64, f32)>, String> {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.search(query, k, Some(ef))
        }
        #[cfg(not(feature = "usearch"))]
        {
            Err(NO_GRAPH.into())
        }
    }

    /// Approximate `k` nearest among keys `keep` accepts, of which
    /// `expect` exist (see [`HnswIndex::filtered_search`]). Only when
    /// [`Indexes::HAS_GRAPH`].
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn graph_filtered_search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        expect: usize,
        keep: impl Fn(u64) -> bool,
    ) -> std::result::Result<Vec<(u64, f32)>, String> {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.filtered_search(query, k, ef, expect, keep)
        }
        #[cfg(not(feature = "usearch"))]
        {
            Err(NO_GRAPH.into())
        }
    }

    /// The graph's copy of a vector (as the graph stores it: exact only
    /// with f32 storage), or `None` without a graph.
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn graph_vector(&self, key: u64) -> Option<Vec<f32>> {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.get(key).ok().flatten()
        }
        #[cfg(not(feature = "usearch"))]
        {
            None
        }
    }

    /// Indexes from snapshot bytes the caller has checked, holding
    /// `vectors` live vectors (see [`HnswIndex::load`]).
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn load(
        config: &CollectionConfig,
        bytes: &[u8],
        vectors: usize,
    ) -> std::result::Result<Self, String> {
        #[cfg(feature = "usearch")]
        {
            Ok(Indexes {
                hnsw: HnswIndex::load(config, bytes, vectors)?,
                flat: None,
                ids: RwLock::new(HashMap::new()),
            })
        }
        #[cfg(not(feature = "usearch"))]
        {
            Err(NO_GRAPH.into())
        }
    }

    /// Indexes over a mapped snapshot the caller has checked ([`crate::snapshot::map_checked`]),
    /// holding `live` live vectors (see [`HnswIndex::view`]).
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn view(
        config: &CollectionConfig,
        map: Mapping,
        vectors: Option<VectorCheck>,
        live: usize,
    ) -> std::result::Result<Self, String> {
        #[cfg(feature = "usearch")]
        {
            Ok(Indexes {
                hnsw: HnswIndex::view(config, map, vectors, live)?,
                flat: None,
                ids: RwLock::new(HashMap::new()),
            })
        }
        #[cfg(not(feature = "usearch"))]
        {
            Err(NO_GRAPH.into())
        }
    }

    /// True while a viewed (mapped) snapshot lies beneath the graph: it is
    /// loaded into memory before the graph can be saved.
    pub(crate) fn is_viewed(&self) -> bool {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.is_viewed()
        }
        #[cfg(not(feature = "usearch"))]
        {
            false
        }
    }

    /// The graph as snapshot bytes (into `reuse`'s memory if given) and
    /// the live vectors they hold. Only when [`Indexes::HAS_GRAPH`].
    #[cfg_attr(not(feature = "usearch"), allow(unused_variables))]
    pub(crate) fn to_bytes(
        &self,
        reuse: Option<Vec<u8>>,
    ) -> std::result::Result<(Vec<u8>, usize), String> {
        #[cfg(feature = "usearch")]
        {
            Ok((self.hnsw.to_bytes(reuse)?, self.hnsw.len()))
        }
        #[cfg(not(feature = "usearch"))]
        {
            Err(NO_GRAPH.into())
        }
    }

    /// The live nodes of the owned graph (the one adds go to: above a
    /// viewed snapshot, the overlay of changes since) that a walk of its
    /// links does not reach; `None` when it reaches them all, or there is
    /// no graph. A viewed snapshot itself was walked and relinked before it
    /// was written. See [`HnswIndex::walk`]. `keys` are the collection's.
    pub(crate) fn unreached(&self, keys: impl Iterator<Item = u64>) -> Option<Vec<u64>> {
        #[cfg(feature = "usearch")]
        {
            let reached = self.hnsw.walk();
            let live = reached
                .iter()
                .filter(|k| **k < super::hnsw::DEAD_BASE)
                .count();
            if live >= self.hnsw.owned_live() {
                return None;
            }
            Some(
                keys.filter(|k| !reached.contains(k) && self.hnsw.owns(*k))
                    .collect(),
            )
        }
        #[cfg(not(feature = "usearch"))]
        {
            let _ = keys;
            None
        }
    }

    /// Every key a search can reach, in one pass over the graph (see
    /// [`HnswIndex::reachable`]); `None` without a graph, where every
    /// search is exact and reaches every record.
    pub(crate) fn reachable(
        &self,
    ) -> std::result::Result<Option<std::collections::HashSet<u64>>, String> {
        #[cfg(feature = "usearch")]
        {
            self.hnsw.reachable().map(Some)
        }
        #[cfg(not(feature = "usearch"))]
        {
            Ok(None)
        }
    }

    /// Compare the index's copy of `key`'s vector with `v`, SQLite's,
    /// pushing a problem when they differ (within the storage's precision).
    /// Returns 1 if compared (b1 storage keeps no comparable copy).
    pub(crate) fn check_vector(
        &self,
        config: &CollectionConfig,
        key: u64,
        v: &[f32],
        problems: &mut Vec<String>,
    ) -> u64 {
        #[cfg(feature = "usearch")]
        {
            use crate::config::{Metric, Scalar};
            if config.scalar == Scalar::B1 {
                return 0;
            }
            match self.hnsw.get(key) {
                Ok(Some(got)) => {
                    let same = match config.scalar {
                        Scalar::F32 if config.metric != Metric::Cos => got == v,
                        // Quantised (or normalised) copies: compare directions.
                        _ => super::exact::distance(Metric::Cos, &got, v) <= 0.01,
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
            match self.flat.as_ref().and_then(|f| f.get(key)) {
                Some(got) if got == v => {}
                _ => problems.push(format!(
                    "record key {key}: index vector differs from the database"
                )),
            }
            1
        }
    }

    pub(crate) fn info(&self) -> IndexInfo {
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

pub(crate) fn index_err(collection: &str, operation: &str, message: String) -> Error {
    Error::Index {
        collection: collection.into(),
        operation: operation.into(),
        message,
    }
}

/// Take `keys` out of the id cache, before a change that removes them is
/// applied: a search that still finds one then looks it up and misses.
pub(crate) fn forget(lock: &RwLock<Indexes>, keys: &[u64]) {
    let ix = lock.read_lock();
    let mut ids = ix.ids.write_lock();
    for k in keys {
        ids.remove(k);
    }
}

/// Apply removals and upserts to the indexes. Grows capacity first under
/// the write lock (where the removed keys leave the id cache), then adds
/// under the read lock so searches go on, then removes, all at once under
/// the write lock.
pub(crate) fn apply(
    lock: &RwLock<Indexes>,
    name: &str,
    upserts: &[(u64, Vec<f32>)],
    removes: &[u64],
) -> Result<()> {
    {
        let mut w = lock.write_lock();
        #[cfg(feature = "usearch")]
        let needs = w.hnsw.needs_growth(upserts.len());
        #[cfg(not(feature = "usearch"))]
        let needs = true;
        if needs {
            w.grow(upserts.len(), name)?;
        }
        // The flat index needs `&mut`; it is small work next to HNSW inserts.
        let ids = w.ids.value_mut();
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
    add_all(lock, name, upserts)?;
    // Removes after adds: a search overlapping this change finds the
    // removed keys (whose ids are out of the cache, their rows gone from
    // SQLite: it retries once the change is in) rather than a moment with
    // neither the old records nor the new. And all at once, under the
    // write lock: usearch checks whether a node is retired when the walk
    // reaches it, so a search overlapping the removes could skip one
    // removed node, keep others, and miss the new ones it had walked past
    // before they were linked: part of a replaced file and no retry (3 in
    // 400 runs of `batches` under load).
    #[cfg(feature = "usearch")]
    if !removes.is_empty() {
        let w = lock.write_lock();
        for k in removes {
            w.hnsw
                .remove(*k)
                .map_err(|m| index_err(name, "remove", m))?;
        }
    }
    Ok(())
}

/// The HNSW half of [`apply`]'s adds.
#[cfg(feature = "usearch")]
fn add_all(lock: &RwLock<Indexes>, name: &str, upserts: &[(u64, Vec<f32>)]) -> Result<()> {
    {
        let r = lock.read_lock();
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
                lock.write_lock().grow(lost.len(), name)?;
                let r = lock.read_lock();
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
/// ([`HnswIndex::unlinked`]); that settles nearly all, at a fraction of a
/// search's cost. The rest are searched for by their own vector, at ef 10
/// and then ef 128, before they count as lost (ef 10 alone calls too many
/// lost on hard data; BENCHMARKS.md, "Tried": the reachability check).
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
                missed.locked().push(todo[j]);
            }
            Ok(())
        })?;
        todo = std::mem::take(&mut *missed.locked());
        if todo.is_empty() {
            break;
        }
    }
    Ok(todo)
}

/// A graph's first nodes are added one at a time ([`apply`] splits a
/// change there), the rest by [`build_threads`]: parallel adds into a tiny
/// graph leave the most nodes unreachable. 256 is measured (BENCHMARKS.md,
/// "Tried": the bound on one-at-a-time adds).
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
