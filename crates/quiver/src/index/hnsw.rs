//! The usearch HNSW index, wrapped so its traps cannot be reached.
//!
//! What this wrapper guarantees (see USEARCH-NOTES):
//! - every `IndexOptions` field is set from the collection config;
//! - capacity is tracked here and grown geometrically before adds
//!   (`reserve` needs `&mut self`, so no other call can be in flight);
//! - callers are gated by a semaphore sized to the reserved thread slots,
//!   so a burst of searchers waits instead of failing;
//! - per-query `ef` changes the index-wide setting only while no search at
//!   another `ef` runs (`ef_gate`);
//! - bytes are handed to `load_from_buffer` only after the caller checked
//!   their digest, and the header is compared with the config first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::config::{CollectionConfig, Metric, Scalar};

/// Error text from usearch (its exception type stays inside this module).
pub(crate) type HnswError = String;

/// Smallest capacity ever reserved.
const MIN_CAPACITY: usize = 1024;

pub(crate) struct HnswIndex {
    index: Index,
    dim: usize,
    capacity: usize,
    threads: usize,
    permits: Semaphore,
    default_ef: usize,
    current_ef: AtomicUsize,
    ef_gate: RwLock<()>,
    /// Slots freed by removals and not yet reused by an add.
    deleted: AtomicUsize,
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
            deleted: AtomicUsize::new(0),
        }
    }

    /// Load a serialised index whose bytes the caller has already checked.
    /// Fails if the header disagrees with `config`.
    pub(crate) fn load(config: &CollectionConfig, bytes: &[u8]) -> Result<Self, HnswError> {
        let meta = Index::metadata_from_buffer(bytes).map_err(|e| e.to_string())?;
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
        let index = Index::new(&want).map_err(|e| e.to_string())?;
        index.load_from_buffer(bytes).map_err(|e| e.to_string())?;
        if index.connectivity() != config.connectivity || index.dimensions() != config.dimension {
            return Err(format!(
                "snapshot has connectivity {}, collection wants {}",
                index.connectivity(),
                config.connectivity
            ));
        }
        // Not stored in the file: set from the config.
        index.change_expansion_add(config.expansion_add);
        index.change_expansion_search(config.expansion_search);
        let mut this = Self::wrap(index, config);
        this.deleted = AtomicUsize::new(meta.count_deleted as usize);
        let slots = this.slots();
        this.reserve((slots + slots / 2).max(MIN_CAPACITY))?;
        Ok(this)
    }

    /// Vectors present.
    pub(crate) fn len(&self) -> usize {
        self.index.size()
    }

    /// Slots used: present vectors plus removed ones not yet reclaimed.
    pub(crate) fn slots(&self) -> usize {
        self.len() + self.deleted.load(Ordering::Relaxed)
    }

    pub(crate) fn deleted(&self) -> usize {
        self.deleted.load(Ordering::Relaxed)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
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
        self.slots() + additional > self.capacity
    }

    /// Grow capacity (at least doubling) to fit `additional` more adds.
    pub(crate) fn grow(&mut self, additional: usize) -> Result<(), HnswError> {
        let need = self.slots() + additional;
        if need <= self.capacity {
            return Ok(());
        }
        self.reserve(need.max(self.capacity * 2).max(MIN_CAPACITY))
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    /// Add a vector, replacing any vector under the same key. The caller has
    /// made room with `grow` and serialises writers.
    pub(crate) fn upsert(&self, key: u64, vector: &[f32]) -> Result<(), HnswError> {
        let _permit = self.permits.acquire();
        if self.index.contains(key) {
            self.index.remove(key).map_err(|e| e.to_string())?;
            self.deleted.fetch_add(1, Ordering::Relaxed);
        }
        self.index.add(key, vector).map_err(|e| e.to_string())?;
        // usearch's `add` reuses a freed slot when there is one.
        let _ = self
            .deleted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        Ok(())
    }

    /// Remove a key; false if it was not there.
    pub(crate) fn remove(&self, key: u64) -> Result<bool, HnswError> {
        let _permit = self.permits.acquire();
        let removed = self.index.remove(key).map_err(|e| e.to_string())?;
        if removed > 0 {
            self.deleted.fetch_add(removed, Ordering::Relaxed);
        }
        Ok(removed > 0)
    }

    /// The index's (possibly quantised) copy of a vector, as f32.
    pub(crate) fn get(&self, key: u64) -> Result<Option<Vec<f32>>, HnswError> {
        let _permit = self.permits.acquire();
        let mut out = vec![0.0f32; self.dim];
        let n = self.index.get(key, &mut out).map_err(|e| e.to_string())?;
        Ok((n > 0).then_some(out))
    }

    /// Approximate k nearest neighbours with candidate list size `ef`
    /// (the collection default when `None`).
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
    ) -> Result<Vec<(u64, f32)>, HnswError> {
        let ef = ef.unwrap_or(self.default_ef);
        let _gate = self.enter_ef(ef);
        let _permit = self.permits.acquire();
        let m = self.index.search(query, k).map_err(|e| e.to_string())?;
        Ok(m.keys.into_iter().zip(m.distances).collect())
    }

    /// Hold the ef gate shared with `current_ef == ef`: searches at the same
    /// ef run together; switching waits for the others to finish.
    fn enter_ef(&self, ef: usize) -> std::sync::RwLockReadGuard<'_, ()> {
        loop {
            let guard = self.ef_gate.read().unwrap_or_else(|p| p.into_inner());
            if self.current_ef.load(Ordering::Acquire) == ef {
                return guard;
            }
            drop(guard);
            let _w = self.ef_gate.write().unwrap_or_else(|p| p.into_inner());
            self.index.change_expansion_search(ef);
            self.current_ef.store(ef, Ordering::Release);
        }
    }

    /// The index serialised, taken while the caller keeps writers out.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, HnswError> {
        let _permit = self.permits.acquire();
        let mut buf = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut buf)
            .map_err(|e| e.to_string())?;
        Ok(buf)
    }
}

/// A counting semaphore: usearch fails a call outright when all thread
/// slots are busy, so callers queue here instead.
struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(n: usize) -> Self {
        Semaphore {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
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
        // The replaced vector's slot was freed and at once reused.
        assert_eq!(h.deleted(), 0);
        assert!(h.remove(6).unwrap());
        assert!(h.remove(7).unwrap());
        assert!(!h.remove(6).unwrap());
        let bytes = h.to_bytes().unwrap();
        let back = HnswIndex::load(&cfg, &bytes).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.deleted(), 2);
        assert_eq!(back.slots(), n as usize);
        assert!(!back.contains(6));
        assert_eq!(back.get(5).unwrap().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let mut other = cfg.clone();
        other.dimension = 5;
        assert!(HnswIndex::load(&other, &bytes).is_err());
        let mut other = cfg.clone();
        other.connectivity = 8;
        assert!(HnswIndex::load(&other, &bytes).is_err());
    }

    #[test]
    fn per_query_ef_and_concurrent_searches() {
        let cfg = config(8);
        let mut h = HnswIndex::new(&cfg, 500).unwrap();
        h.grow(500).unwrap();
        for key in 0..500u64 {
            let v: Vec<f32> = (0..8)
                .map(|i| ((key * 31 + i * 7) % 97) as f32 + 1.0)
                .collect();
            h.upsert(key + 1, &v).unwrap();
        }
        // More threads than slots: the semaphore must make them wait, not fail.
        std::thread::scope(|s| {
            for t in 0..24 {
                let h = &h;
                s.spawn(move || {
                    for i in 0..50 {
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
}
