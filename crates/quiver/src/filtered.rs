//! Filtered vector search: which records match, and the plan that finds
//! the k nearest of them.
//!
//! The matches are counted in SQLite first (a field index makes that a
//! range scan). Few matches: exact distances over just those (their vectors
//! fetched once and cached with the match set). Many: usearch's
//! `filtered_search` with a bitmap of matching keys as its predicate,
//! widening `ef` and retrying while fewer than k come back.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;

use crate::config::Metric;
use crate::error::{Result, SqlContext};
use crate::filter::sql::Compiled;
use crate::record;

/// Default of [`crate::StoreOptions::filter_exact_max`]: at or below this
/// many matches, the exact plan runs.
///
/// Measured on pypi-minilm-20k (384-d, cos, f32; 1,000 queries, k = 10, p50):
/// usearch's `filtered_search` took 7.0 ms at 1% selectivity, 4.5 ms at 3%,
/// 2.9 ms at 10% and 1.3 ms at 30%; exact distances over the cached,
/// normalised matches cost about 0.085 µs per match (0.17 ms for 2,000).
/// They cross near 15,000 matches; 8,192 is well inside the region where
/// exact wins. Larger collections raise the bound to an eighth of their
/// size (see `Collection::match_set`). The cache of match vectors holds at
/// most 8 × this bound or one set of the largest size, whichever is more:
/// 100 MB at 384-d below 512k records, an eighth of the raw vectors above.
pub const DEFAULT_EXACT_MAX: usize = 8192;

/// The records matching a filter at one sequence number.
pub(crate) struct MatchSet {
    /// The collection sequence the set was computed at.
    pub(crate) seq: i64,
    /// Matching keys, ascending.
    pub(crate) keys: Vec<u64>,
    #[cfg_attr(not(feature = "usearch"), allow(dead_code))]
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

    #[cfg_attr(not(feature = "usearch"), allow(dead_code))]
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

/// Count, then collect, the records of a collection matching `filter`, in the
/// caller's read transaction. Vectors come along for small sets.
/// What a match set is computed over.
pub(crate) struct Scope<'a> {
    pub(crate) collection: &'a str,
    pub(crate) cid: i64,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    /// Sets of at most this many matches carry their vectors (exact plan).
    pub(crate) exact_max: usize,
    /// Where those vectors come from when not from SQLite: the index's own
    /// exact copy (f32 storage), `None` for a key it does not hold.
    pub(crate) vector_of: Option<&'a dyn Fn(u64) -> Option<Vec<f32>>>,
}

pub(crate) fn compute(
    conn: &Connection,
    scope: &Scope<'_>,
    filter: &Compiled,
    seq: i64,
) -> Result<MatchSet> {
    let Scope {
        collection,
        cid,
        dim,
        metric,
        exact_max,
        vector_of,
    } = *scope;
    let mut params: Vec<rusqlite::types::Value> = vec![cid.into()];
    params.extend(filter.params.iter().cloned());
    let where_ = format!("cid = ?1 AND ({})", filter.sql);
    let count: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM records WHERE {where_}"))
        .during("prepare filter count")?
        .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))
        .during("count filter matches")?;
    let exact = count as usize <= exact_max;
    // From the index, a match's vector costs about a microsecond; from
    // SQLite, a row read (at 1M × 384, 100k matches took 5.6 s, mostly
    // page reads of a 3.6 GB file).
    let with_vectors = exact && vector_of.is_none();
    // The keys come sorted from the field index through a temp b-tree;
    // with the vectors in the same select, SQLite sorted the 1.5 KB blobs
    // too (about 5x slower at 20k matches of 200k). So the vectors are read
    // by key, in key order, after the keys are sorted.
    let sql = if with_vectors {
        format!(
            "SELECT key, vector FROM records WHERE key IN \
             (SELECT key FROM records WHERE {where_}) ORDER BY key"
        )
    } else {
        format!("SELECT key FROM records WHERE {where_} ORDER BY key")
    };
    let mut stmt = conn.prepare_cached(&sql).during("prepare filter scan")?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .during("scan filter matches")?;
    let mut keys = Vec::with_capacity(count as usize);
    let mut vectors = with_vectors.then(|| Vec::with_capacity(count as usize * dim));
    while let Some(row) = rows.next().during("scan filter matches")? {
        let key: i64 = row.get(0).during("scan filter matches")?;
        keys.push(key as u64);
        if let Some(vs) = vectors.as_mut() {
            let blob = row
                .get_ref(1)
                .during("scan filter matches")?
                .as_blob()
                .unwrap_or(&[]);
            push(
                vs,
                &record::decode_stored(collection, format_args!("key {key}"), blob, dim)?,
                metric,
            );
        }
    }
    if let (true, Some(vector_of)) = (exact, vector_of) {
        let mut vs = Vec::with_capacity(keys.len() * dim);
        let mut from_sqlite = conn
            .prepare_cached("SELECT vector FROM records WHERE key = ?1")
            .during("prepare vector lookup")?;
        for &key in &keys {
            let v = vector_by_key(&mut from_sqlite, Some(vector_of), collection, key, dim)?;
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
pub(crate) fn advance(
    conn: &Connection,
    scope: &Scope<'_>,
    filter: &Compiled,
    old: &MatchSet,
    seq: i64,
) -> Result<Option<MatchSet>> {
    let Scope {
        collection,
        cid,
        dim,
        metric,
        exact_max,
        vector_of,
    } = *scope;
    if old.metric != metric || old.seq > seq {
        return Ok(None);
    }
    let (pruned, changes): (i64, i64) = conn
        .prepare_cached(
            "SELECT pruned_seq,
                    (SELECT count(*) FROM records WHERE cid = ?1 AND seq > ?2)
                  + (SELECT count(*) FROM tombstones WHERE cid = ?1 AND seq > ?2)
             FROM collections WHERE cid = ?1",
        )
        .during("prepare filter change count")?
        .query_row(rusqlite::params![cid, old.seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .during("count changes since a match set")?;
    if pruned > old.seq || changes as usize > (old.len() / 4).max(4096) {
        return Ok(None);
    }
    // Every record written since (whose match may have changed) and
    // whether it matches now, in one pass by the sequence index: left to
    // itself SQLite took the filter's field index (or scanned the table)
    // and read every match's row, 10-70x the cost of computing the set
    // afresh at 200k records.
    let mut params: Vec<rusqlite::types::Value> = vec![cid.into()];
    params.extend(filter.params.iter().cloned());
    params.push(old.seq.into());
    let sql = format!(
        "SELECT key, coalesce(({}), 0) FROM records INDEXED BY records_by_seq \
         WHERE cid = ?1 AND seq > ?{} ORDER BY key",
        filter.sql,
        params.len()
    );
    let mut touched = Vec::with_capacity(changes as usize);
    let mut joined = Vec::new();
    let mut stmt = conn.prepare_cached(&sql).during("prepare filter changes")?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .during("read filter changes")?;
    while let Some(row) = rows.next().during("read filter changes")? {
        let key = row.get::<_, i64>(0).during("read filter changes")? as u64;
        touched.push(key);
        if row.get::<_, i64>(1).during("read filter changes")? != 0 {
            joined.push(key);
        }
    }
    // And every key deleted since.
    let mut stmt = conn
        .prepare_cached("SELECT key FROM tombstones WHERE cid = ?1 AND seq > ?2")
        .during("prepare filter changes")?;
    let mut rows = stmt
        .query(rusqlite::params![cid, old.seq])
        .during("read filter changes")?;
    while let Some(row) = rows.next().during("read filter changes")? {
        touched.push(row.get::<_, i64>(0).during("read filter changes")? as u64);
    }
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
    let vectors = match (exact, &old.vectors) {
        (false, _) => None,
        (true, None) => return Ok(None),
        (true, Some(ov)) => {
            let mut from_sqlite = conn
                .prepare_cached("SELECT vector FROM records WHERE key = ?1")
                .during("prepare vector lookup")?;
            let mut vs = Vec::with_capacity(merged.len() * dim);
            for m in &merged {
                match *m {
                    // Already normalised for cosine.
                    From::Old(i) => vs.extend_from_slice(&ov[i * dim..(i + 1) * dim]),
                    From::New(key) => {
                        let v = vector_by_key(&mut from_sqlite, vector_of, collection, key, dim)?;
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
/// else from SQLite through `from_sqlite` (`SELECT vector ... key = ?1`):
/// a key committed but not yet applied to the index.
fn vector_by_key(
    from_sqlite: &mut rusqlite::CachedStatement<'_>,
    vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>>,
    collection: &str,
    key: u64,
    dim: usize,
) -> Result<Vec<f32>> {
    if let Some(v) = vector_of.and_then(|f| f(key)) {
        return Ok(v);
    }
    let blob: Vec<u8> = from_sqlite
        .query_row([key as i64], |r| r.get(0))
        .during("read match vector")?;
    record::decode_stored(collection, format_args!("key {key}"), &blob, dim)
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
pub(crate) fn exact(set: &MatchSet, dim: usize, query: &[f32], k: usize) -> Vec<(u64, f32)> {
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
