//! Filtered vector search, end to end: which records match, and the plan
//! that finds the k nearest of them.
//!
//! The matches are counted in SQLite first (a field index makes that a
//! range scan). Few matches: exact distances over just those (their vectors
//! fetched once and cached with the match set). Many: usearch's
//! `filtered_search` with a bitmap of matching keys as its predicate,
//! widening `ef` and retrying while fewer than k come back. A collection
//! hands [`search`] its state as a [`Target`]; nothing here names a
//! collection type.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

use crate::config::{CollectionConfig, Metric, Scalar};
use crate::db::records::{self, Rows, VectorLookup};
use crate::db::{catalogue, tx::ReadTx, Db};
use crate::error::Result;
use crate::filter::Filter;
use crate::index::{index_err, Indexes};
use crate::sync::{MutexExt, RwLockExt};

/// The records matching a filter at one sequence number.
pub(crate) struct MatchSet {
    /// The collection sequence the set was computed at.
    pub(crate) seq: i64,
    /// Matching keys, ascending.
    pub(crate) keys: Vec<u64>,
    bitmap: Vec<u64>,
    /// For sets small enough for the exact plan: `vectors[i * dim..]` is the vector of `keys[i]`.
    pub(crate) vectors: Option<Vec<f32>>,
    metric: Metric,
}

impl MatchSet {
    fn new(seq: i64, keys: Vec<u64>, vectors: Option<Vec<f32>>, metric: Metric) -> Self {
        let words = keys.last().map_or(0, |k| (*k / 64) as usize + 1);
        let mut bitmap = vec![0u64; words];
        for k in &keys {
            bitmap[(*k / 64) as usize] |= 1 << (*k % 64);
        }
        MatchSet {
            seq,
            keys,
            bitmap,
            vectors,
            metric,
        }
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        let (word, bit) = ((key / 64) as usize, key % 64);
        self.bitmap.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Vectors carried for the exact plan (none for a set too large for it).
    fn vector_count(&self) -> usize {
        self.vectors.as_ref().map_or(0, |_| self.keys.len())
    }
}

/// One collection's state, as the filtered plan reads it.
pub(crate) struct Target<'a> {
    pub(crate) db: &'a Db,
    pub(crate) rows: Rows<'a>,
    pub(crate) config: &'a CollectionConfig,
    pub(crate) indexes: &'a RwLock<Indexes>,
    /// The sequence the indexes reflect.
    pub(crate) applied_seq: &'a AtomicI64,
    pub(crate) cache: &'a Mutex<Cache>,
}

/// How [`search`] answered.
pub(crate) enum Answer {
    /// Exact distances over the matches.
    Exact { matches: u64 },
    /// The graph restricted to the matches, at this ef.
    Graph { ef: usize, matches: u64 },
}

/// The `k` nearest of the records matching `filter`: exact over few
/// matches (or with `exact`, or without a graph), the graph over many with
/// `ef` doubled while fewer than k come back, exact as the last resort.
pub(crate) fn search(
    t: &Target<'_>,
    filter: &Filter,
    query: &[f32],
    k: usize,
    ef: Option<usize>,
    exact: bool,
) -> Result<(Vec<(u64, f32)>, Answer)> {
    let set = match_set(t, filter)?;
    let matches = set.len() as u64;
    let exact_here = || -> Result<Vec<(u64, f32)>> {
        if set.vectors.is_some() {
            return Ok(exact_cached(&set, t.rows.dim, query, k));
        }
        exact_over(t, &set, query, k)
    };
    let ix = t.indexes.read_lock();
    if set.vectors.is_some() || exact || !Indexes::HAS_GRAPH {
        drop(ix);
        return Ok((exact_here()?, Answer::Exact { matches }));
    }
    let want = k.min(set.len());
    let mut ef = ef.unwrap_or(t.config.expansion_search).max(k);
    loop {
        let found = ix
            .graph_filtered_search(query, k, ef, want, |key| set.contains(key))
            .map_err(|m| index_err(t.rows.name, "filtered search", m))?;
        if found.len() >= want {
            return Ok((found, Answer::Graph { ef, matches }));
        }
        if ef >= 4096 || ef >= set.len() {
            break;
        }
        ef = (ef * 2).min(4096);
    }
    drop(ix);
    Ok((exact_here()?, Answer::Exact { matches }))
}

/// The records matching `filter` now: from the cache if no write came
/// since it was computed, else advanced from the cached set when that is
/// cheaper, else computed afresh.
pub(crate) fn match_set(t: &Target<'_>, filter: &Filter) -> Result<Arc<MatchSet>> {
    let text = filter.to_string();
    let applied = t.applied_seq.load(Ordering::SeqCst);
    let older = {
        let cache = t.cache.locked();
        if let Some(set) = cache.get(&text, applied) {
            return Ok(set);
        }
        cache.latest(&text)
    };
    filter.validate()?;
    // The exact plan's cost grows with the matches; usearch's filtered
    // search is slow at low selectivity and its recall stalls as ef
    // grows. At 1M × 384 (synthetic, 200 queries): 2% took 30 ms by
    // HNSW (ef 64, recall 0.963), 7× a scan of the matches; 5% took
    // 8.5 ms at recall 0.971, and 0.974 at ef 192 (38 ms); 10% 2.6 ms
    // at 0.970. Exact costs about 60 ns a match (6 ms at 10%). So sets
    // of up to an eighth of the collection run exact.
    let size = t.indexes.read_lock().len();
    let exact_max = t.db.options.filter_exact_max.max(size / 8);
    let set = Arc::new(t.db.read(|conn| {
        // The exact plan's vectors: from the index when it holds them
        // exactly (f32 storage), else from SQLite. Its lock is taken
        // inside the read: an in-memory store reads through the writer
        // connection, which an upsert holds while it waits for the index.
        let ix = t.indexes.read_lock();
        let from_index = |key: u64| ix.graph_vector(key);
        let vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>> =
            (Indexes::HAS_GRAPH && t.config.scalar == Scalar::F32).then_some(&from_index as _);
        let read_tx = ReadTx::begin(conn)?;
        let seq = catalogue::read_seq(conn, t.rows.cid)?;
        let scope = Scope {
            rows: t.rows,
            metric: t.config.metric,
            exact_max,
            vector_of,
        };
        // After a write, from the set before it when that is cheaper.
        let advanced = match &older {
            Some(old) => advance(conn, &scope, filter, old, seq)?,
            None => None,
        };
        let set = match advanced {
            Some(set) => set,
            None => compute(conn, &scope, filter, seq)?,
        };
        read_tx.end()?;
        Ok(set)
    })?);
    // Cache only a set taken at the sequence the index is at.
    if set.seq == t.applied_seq.load(Ordering::SeqCst) {
        t.cache.locked().put(
            text,
            set.clone(),
            exact_max.max(8 * t.db.options.filter_exact_max),
        );
    }
    Ok(set)
}

/// Exact top-k over a large match set, reading its vectors from SQLite.
fn exact_over(t: &Target<'_>, set: &MatchSet, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
    t.db.read(|conn| {
        let mut lookup = VectorLookup::new(conn, t.rows)?;
        let mut rows = Vec::with_capacity(set.len());
        for &key in &set.keys {
            if let Some(v) = lookup.get(key)? {
                rows.push((key, v));
            }
        }
        Ok(crate::index::exact::top_k(
            rows.iter().map(|(k, v)| (*k, v.as_slice())),
            t.config.metric,
            query,
            k,
        ))
    })
}

/// What a match set is computed over.
struct Scope<'a> {
    rows: Rows<'a>,
    metric: Metric,
    /// Sets of at most this many matches carry their vectors (exact plan).
    exact_max: usize,
    /// Where those vectors come from when not from SQLite: the index's own
    /// exact copy (f32 storage), `None` for a key it does not hold.
    vector_of: Option<&'a dyn Fn(u64) -> Option<Vec<f32>>>,
}

/// Count, then collect, the records matching `filter`, in the caller's
/// read transaction. Vectors come along for small sets.
fn compute(conn: &Connection, scope: &Scope<'_>, filter: &Filter, seq: i64) -> Result<MatchSet> {
    let Scope {
        rows,
        metric,
        exact_max,
        vector_of,
    } = *scope;
    let count = records::count_matching(conn, rows.cid, filter, None)?;
    let exact = count as usize <= exact_max;
    // From the index, a match's vector costs about a microsecond; from
    // SQLite, a row read (at 1M × 384, 100k matches took 5.6 s, mostly
    // page reads of a 3.6 GB file).
    let with_vectors = exact && vector_of.is_none();
    let mut keys = Vec::with_capacity(count as usize);
    let mut vectors = with_vectors.then(|| Vec::with_capacity(count as usize * rows.dim));
    records::for_each_match(conn, rows, filter, with_vectors, |key, v| {
        keys.push(key);
        if let (Some(vs), Some(v)) = (vectors.as_mut(), v) {
            push(vs, &v, metric);
        }
        Ok(())
    })?;
    if let (true, Some(vector_of)) = (exact, vector_of) {
        let mut vs = Vec::with_capacity(keys.len() * rows.dim);
        let mut from_sqlite = VectorLookup::new(conn, rows)?;
        for &key in &keys {
            let v = vector_by_key(&mut from_sqlite, Some(vector_of), key)?;
            push(&mut vs, &v, metric);
        }
        vectors = Some(vs);
    }
    Ok(MatchSet::new(seq, keys, vectors, metric))
}

/// Bring `old`, a set computed at an earlier sequence, up to `seq`, in
/// the caller's read transaction: every record written since and every
/// key deleted since may have changed its match, so those leave the set
/// and the written ones that match now join it; the other keys (and their
/// vectors) carry over. At 1M × 384 a 10% set took 0.9 s to compute after
/// any write. `None` when it cannot or should not be done: tombstones
/// pruned since `old` (deletes no longer known), more changes than a
/// quarter of the set (or 4,096), or a set that now needs the vectors
/// `old` did not carry.
fn advance(
    conn: &Connection,
    scope: &Scope<'_>,
    filter: &Filter,
    old: &MatchSet,
    seq: i64,
) -> Result<Option<MatchSet>> {
    let Scope {
        rows,
        metric,
        exact_max,
        vector_of,
    } = *scope;
    if old.metric != metric || old.seq > seq {
        return Ok(None);
    }
    let (pruned, changes) = catalogue::pruned_and_tail(conn, rows.cid, old.seq)?;
    if pruned > old.seq || changes as usize > (old.len() / 4).max(4096) {
        return Ok(None);
    }
    // Every record written since (whose match may have changed) and
    // whether it matches now.
    let mut touched = Vec::with_capacity(changes as usize);
    let mut joined = Vec::new();
    records::changed_since(conn, rows.cid, filter, old.seq, |key, matches| {
        touched.push(key);
        if matches {
            joined.push(key);
        }
    })?;
    // And every key deleted since.
    touched.extend(records::tombstones_after(conn, rows.cid, old.seq)?);
    touched.sort_unstable();
    // Merge the kept keys (by position in `old`) with the joined ones.
    enum From {
        Old(usize),
        New(u64),
    }
    let mut merged = Vec::with_capacity(old.len() + joined.len());
    let mut next = joined.iter().copied().peekable();
    for (i, &k) in old.keys.iter().enumerate() {
        while let Some(j) = next.next_if(|&j| j < k) {
            merged.push(From::New(j));
        }
        if touched.binary_search(&k).is_err() {
            merged.push(From::Old(i));
        }
    }
    merged.extend(next.map(From::New));
    let exact = merged.len() <= exact_max;
    let dim = rows.dim;
    let vectors = match (exact, &old.vectors) {
        (false, _) => None,
        (true, None) => return Ok(None),
        (true, Some(ov)) => {
            let mut from_sqlite = VectorLookup::new(conn, rows)?;
            let mut vs = Vec::with_capacity(merged.len() * dim);
            for m in &merged {
                match *m {
                    // Already normalised for cosine.
                    From::Old(i) => vs.extend_from_slice(&ov[i * dim..(i + 1) * dim]),
                    From::New(key) => {
                        let v = vector_by_key(&mut from_sqlite, vector_of, key)?;
                        push(&mut vs, &v, metric);
                    }
                }
            }
            Some(vs)
        }
    };
    let keys: Vec<u64> = merged
        .iter()
        .map(|m| match *m {
            From::Old(i) => old.keys[i],
            From::New(k) => k,
        })
        .collect();
    Ok(Some(MatchSet::new(seq, keys, vectors, metric)))
}

/// A match's vector: from `vector_of` (the index) when it has the key,
/// else from SQLite: a key committed but not yet applied to the index.
fn vector_by_key(
    from_sqlite: &mut VectorLookup<'_, '_>,
    vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>>,
    key: u64,
) -> Result<Vec<f32>> {
    if let Some(v) = vector_of.and_then(|f| f(key)) {
        return Ok(v);
    }
    from_sqlite.require(key)
}

/// Append a match's vector as the exact plan scores it (normalised for cosine).
fn push(vs: &mut Vec<f32>, v: &[f32], metric: Metric) {
    if metric == Metric::Cos {
        vs.extend(normalised(v));
    } else {
        vs.extend_from_slice(v);
    }
}

fn normalised(v: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(move |x| x * scale)
}

/// Exact top-k over a set's cached vectors.
fn exact_cached(set: &MatchSet, dim: usize, query: &[f32], k: usize) -> Vec<(u64, f32)> {
    let Some(vectors) = &set.vectors else {
        return Vec::new();
    };
    let items = set.keys.iter().copied().zip(vectors.chunks_exact(dim));
    if set.metric == Metric::Cos {
        // Both sides unit length: cos distance = ip distance, one dot product.
        let q: Vec<f32> = normalised(query).collect();
        crate::index::exact::top_k(items, Metric::Ip, &q, k)
    } else {
        crate::index::exact::top_k(items, set.metric, query, k)
    }
}

/// A small cache of match sets by canonical filter text. An entry is
/// valid at the sequence it was computed at; after a write it is the
/// starting point for [`advance`].
#[derive(Default)]
pub(crate) struct Cache {
    sets: HashMap<String, Arc<MatchSet>>,
}

/// Entries kept; the cache is emptied when it would grow past this.
const CACHE_ENTRIES: usize = 8;

impl Cache {
    pub(crate) fn get(&self, filter: &str, seq: i64) -> Option<Arc<MatchSet>> {
        self.sets.get(filter).filter(|s| s.seq == seq).cloned()
    }

    /// The set kept for `filter`, at whatever sequence.
    pub(crate) fn latest(&self, filter: &str) -> Option<Arc<MatchSet>> {
        self.sets.get(filter).cloned()
    }

    /// Keep `set` (replacing `filter`'s older one), emptying the cache first
    /// if it holds `CACHE_ENTRIES` sets or if, with `set`, more than
    /// `max_vectors` cached vectors.
    pub(crate) fn put(&mut self, filter: String, set: Arc<MatchSet>, max_vectors: usize) {
        self.sets.remove(&filter);
        let held: usize = self.sets.values().map(|s| s.vector_count()).sum();
        if self.sets.len() >= CACHE_ENTRIES || held + set.vector_count() > max_vectors {
            self.sets.clear();
        }
        self.sets.insert(filter, set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seq: i64, n: usize, with_vectors: bool) -> Arc<MatchSet> {
        Arc::new(MatchSet {
            seq,
            keys: (0..n as u64).collect(),
            bitmap: Vec::new(),
            vectors: with_vectors.then(|| vec![0.0; n * 2]),
            metric: Metric::L2,
        })
    }

    #[test]
    fn cache_keeps_its_vectors_within_the_budget() {
        let mut cache = Cache::default();
        cache.put("a".into(), set(1, 40, true), 100);
        cache.put("b".into(), set(1, 50, true), 100);
        assert!(cache.get("a", 1).is_some() && cache.get("b", 1).is_some());
        // 40 + 50 + 20 > 100: the older sets go.
        cache.put("c".into(), set(1, 20, true), 100);
        assert!(cache.get("a", 1).is_none() && cache.get("b", 1).is_none());
        assert!(cache.get("c", 1).is_some());
        // Sets without vectors cost nothing against the budget.
        cache.put("d".into(), set(1, 1000, false), 100);
        assert!(cache.get("c", 1).is_some() && cache.get("d", 1).is_some());
        // After a write (a later sequence) the older sets are kept to be
        // advanced, not served as they are.
        cache.put("e".into(), set(2, 1, true), 100);
        assert!(cache.get("c", 2).is_none() && cache.get("d", 2).is_none());
        assert_eq!(cache.latest("c").unwrap().seq, 1);
        assert!(cache.get("e", 2).is_some());
        // A filter's newer set replaces its older one, and frees its
        // vectors from the budget: 20 (c) + 1 (e) + 70 fits in 100.
        cache.put("c".into(), set(2, 70, true), 100);
        assert_eq!(cache.latest("c").unwrap().seq, 2);
        assert!(cache.get("e", 2).is_some());
    }
}
