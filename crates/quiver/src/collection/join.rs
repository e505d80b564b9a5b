//! Semantic joins: each record of one collection with its nearest records
//! in another (or a one-to-one matching), and near-duplicate groups within
//! one collection. Built on `search`, so filters, exact search and ef work
//! as they do there, and on both cores.

use std::collections::{HashMap, HashSet};

use super::{Collection, Include, ScanOptions, SearchOptions, MAX_K};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::index::exact::distance;
use crate::record::Record;

/// Left records read (and searched in parallel) at a time.
const PAGE: usize = 512;

/// Candidates per record a one-to-one matching or a dedup starts with;
/// widened (×4, up to [`MAX_K`]) for records whose candidates all qualify
/// or were taken.
const CANDIDATES: usize = 16;

/// Options of [`Collection::join`]. Defaults: k 1, no distance limit,
/// every record of both sides, approximate search at the right side's ef.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Matches per left record (ignored when `one_to_one`).
    pub k: usize,
    /// Only pairs at most this far apart.
    pub max_distance: Option<f32>,
    /// Only right records matching this.
    pub filter: Option<Filter>,
    /// Only left records matching this.
    pub left_filter: Option<Filter>,
    /// Exact (brute-force) search instead of HNSW.
    pub exact: bool,
    /// HNSW ef of the right side's searches.
    pub ef: Option<usize>,
    /// A matching: every record of either side in at most one pair.
    pub one_to_one: bool,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            k: 1,
            max_distance: None,
            filter: None,
            left_filter: None,
            exact: false,
            ef: None,
            one_to_one: false,
        }
    }
}

/// One pair of a join: a left record, a right record, their distance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JoinPair {
    /// The left record's id.
    pub left: String,
    /// The right record's id.
    pub right: String,
    /// Their distance, by the right collection's metric.
    pub distance: f32,
    /// 1 for the left record's nearest match, 2 for the next (1 in a
    /// one-to-one matching).
    pub rank: usize,
}

/// What a join did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JoinReport {
    /// Left records read.
    pub left: u64,
    /// Pairs emitted.
    pub pairs: u64,
    /// Left records that got no pair (none within the distance, or, one to
    /// one, every candidate taken by a closer pair).
    pub unmatched: u64,
}

/// Options of [`Collection::dedup`].
#[derive(Debug, Clone)]
pub struct DedupOptions {
    /// Records at most this far apart are duplicates.
    pub max_distance: f32,
    /// Only records matching this.
    pub filter: Option<Filter>,
    /// Exact (brute-force) search instead of HNSW.
    pub exact: bool,
    /// HNSW ef.
    pub ef: Option<usize>,
}

impl DedupOptions {
    /// Duplicates are at most `max_distance` apart; approximate search.
    pub fn new(max_distance: f32) -> Self {
        DedupOptions {
            max_distance,
            filter: None,
            exact: false,
            ef: None,
        }
    }
}

/// A group of near-duplicates: records linked by chains of pairs at most
/// the distance apart.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DuplicateGroup {
    /// The ids, sorted (the first is a natural one to keep).
    pub ids: Vec<String>,
    /// The largest distance of a pair that links the group.
    pub max_distance: f32,
}

impl Collection {
    /// For every record of this collection (the left side, in id order, or
    /// those matching `left_filter`), its `k` nearest records in `right`
    /// (matching `filter`) within `max_distance`, passed to `emit` as they
    /// are found. Left records are read a page at a time, so a write during
    /// a long join may or may not be seen by its later pages.
    ///
    /// With `one_to_one`, a matching instead: every record of either side
    /// in at most one pair, taken greedily by ascending distance from each
    /// left record's nearest candidates (widened for those whose candidates
    /// were all taken), then emitted in left id order. With exact search
    /// and no record widened, this is the stable matching for a symmetric
    /// distance, which is what usearch's `join` (Gale–Shapley, each side
    /// ranking the other by distance) converges to. A widened record
    /// cannot take back a pair settled before it, so then, and with HNSW
    /// candidates, it is only approximately stable.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for dimensions that differ or a negative
    /// or NaN distance; [`Error::InvalidSearch`] for a bad k or ef;
    /// [`Error::InvalidFilter`]; SQLite and index failures; whatever
    /// `emit` returns.
    pub fn join(
        &self,
        right: &Collection,
        options: &JoinOptions,
        mut emit: impl FnMut(JoinPair) -> Result<()>,
    ) -> Result<JoinReport> {
        let (ld, rd) = (self.config().dimension, right.config().dimension);
        if ld != rd {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "{} has dimension {ld} and {} {rd}: a join needs vectors of one dimension",
                    self.name(),
                    right.name()
                ),
            });
        }
        check_distance(options.max_distance)?;
        let search = |k: usize| {
            let mut s = SearchOptions::new(k).exact(options.exact);
            s.ef = options.ef;
            s.filter = options.filter.clone();
            s
        };
        // Check k, ef and the filter once, before any page is read.
        right.prepare_search(
            &search(if options.one_to_one { 1 } else { options.k }),
            None,
        )?;
        if options.one_to_one {
            return self.match_one_to_one(right, options, &search, emit);
        }
        let mut report = JoinReport::default();
        let within = |d: f32| options.max_distance.is_none_or(|m| d <= m);
        self.each_page(options.left_filter.as_ref(), |page| {
            let found = par_map(page, |r| right.exact_hits(&r.vector, search(options.k)))?;
            for (r, hits) in page.iter().zip(found) {
                report.left += 1;
                let mut any = false;
                for (rank, (id, distance)) in hits.into_iter().enumerate() {
                    if !within(distance) {
                        break;
                    }
                    any = true;
                    report.pairs += 1;
                    emit(JoinPair {
                        left: r.id.clone(),
                        right: id,
                        distance,
                        rank: rank + 1,
                    })?;
                }
                report.unmatched += u64::from(!any);
            }
            Ok(())
        })?;
        Ok(report)
    }

    fn match_one_to_one(
        &self,
        right: &Collection,
        options: &JoinOptions,
        search: &(dyn Fn(usize) -> SearchOptions + Sync),
        mut emit: impl FnMut(JoinPair) -> Result<()>,
    ) -> Result<JoinReport> {
        let within = |d: f32| options.max_distance.is_none_or(|m| d <= m);
        // Every left id, and the candidates of those still unmatched.
        let mut lefts: Vec<String> = Vec::new();
        let mut pairs: Vec<Candidate> = Vec::new();
        let mut full: Vec<usize> = Vec::new();
        self.each_page(options.left_filter.as_ref(), |page| {
            let found = par_map(page, |r| right.exact_hits(&r.vector, search(CANDIDATES)))?;
            for (r, hits) in page.iter().zip(found) {
                let i = lefts.len();
                lefts.push(r.id.clone());
                let n = hits.len();
                for (id, d) in hits {
                    if within(d) {
                        pairs.push((d, i, id));
                    }
                }
                if n == CANDIDATES {
                    full.push(i);
                }
            }
            Ok(())
        })?;
        let mut matched: Vec<Option<(String, f32)>> = vec![None; lefts.len()];
        let mut used: HashSet<String> = HashSet::new();
        take(&mut pairs, &mut matched, &mut used);
        // Left records whose every candidate was taken may have a free one
        // further out: look again, wider, while the lists come back full.
        let mut k = CANDIDATES;
        let mut again: Vec<usize> = full.into_iter().filter(|&i| matched[i].is_none()).collect();
        while !again.is_empty() && k < MAX_K {
            k = (k * 4).min(MAX_K);
            let records: Vec<Record> = again
                .iter()
                .map(|&i| self.get(&lefts[i]))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect();
            let found = par_map(&records, |r| right.exact_hits(&r.vector, search(k)))?;
            let index: HashMap<&str, usize> =
                again.iter().map(|&i| (lefts[i].as_str(), i)).collect();
            let mut next = Vec::new();
            for (r, hits) in records.iter().zip(found) {
                let Some(&i) = index.get(r.id.as_str()) else {
                    continue;
                };
                let n = hits.len();
                for (id, d) in hits {
                    if within(d) && !used.contains(&id) {
                        pairs.push((d, i, id));
                    }
                }
                if n == k {
                    next.push(i);
                }
            }
            take(&mut pairs, &mut matched, &mut used);
            again = next.into_iter().filter(|&i| matched[i].is_none()).collect();
        }
        let mut report = JoinReport {
            left: lefts.len() as u64,
            ..JoinReport::default()
        };
        for (left, m) in lefts.into_iter().zip(matched) {
            match m {
                Some((right, distance)) => {
                    report.pairs += 1;
                    emit(JoinPair {
                        left,
                        right,
                        distance,
                        rank: 1,
                    })?;
                }
                None => report.unmatched += 1,
            }
        }
        Ok(report)
    }

    /// Groups of near-duplicates: records at most `max_distance` apart are
    /// linked, and each group is a connected set of links (so a chain
    /// a–b–c is one group even if a and c are further apart), passed to
    /// `emit` in the order of their first id. Returns how many groups.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or NaN distance;
    /// [`Error::InvalidSearch`] for a bad ef; [`Error::InvalidFilter`];
    /// SQLite and index failures; whatever `emit` returns.
    pub fn dedup(
        &self,
        options: &DedupOptions,
        mut emit: impl FnMut(DuplicateGroup) -> Result<()>,
    ) -> Result<u64> {
        check_distance(Some(options.max_distance))?;
        let search = |k: usize| {
            let mut s = SearchOptions::new(k).exact(options.exact);
            s.ef = options.ef;
            s.filter = options.filter.clone();
            s
        };
        self.prepare_search(&search(1), None)?;
        let max = options.max_distance;
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut ids: Vec<String> = Vec::new();
        let mut links: Vec<(usize, usize, f32)> = Vec::new();
        let slot = |id: &str, index: &mut HashMap<String, usize>, ids: &mut Vec<String>| {
            *index.entry(id.to_string()).or_insert_with(|| {
                ids.push(id.to_string());
                ids.len() - 1
            })
        };
        self.each_page(options.filter.as_ref(), |page| {
            let found = par_map(page, |r| {
                // Widen while every candidate is a duplicate: there may be more.
                let mut k = CANDIDATES;
                loop {
                    let res = self.exact_hits(&r.vector, search(k))?;
                    let all = res.len() == k && res.iter().all(|(_, d)| *d <= max);
                    if !all || k == MAX_K {
                        return Ok(res);
                    }
                    k = (k * 4).min(MAX_K);
                }
            })?;
            for (r, res) in page.iter().zip(found) {
                let a = slot(&r.id, &mut index, &mut ids);
                for (id, d) in res {
                    if d <= max && id != r.id {
                        let b = slot(&id, &mut index, &mut ids);
                        links.push((a, b, d));
                    }
                }
            }
            Ok(())
        })?;
        let mut sets = Sets::new(ids.len());
        for &(a, b, _) in &links {
            sets.union(a, b);
        }
        let mut groups: HashMap<usize, (Vec<usize>, f32)> = HashMap::new();
        for &(a, _, d) in &links {
            let g = groups.entry(sets.find(a)).or_insert((Vec::new(), 0.0));
            g.1 = g.1.max(d);
        }
        for i in 0..ids.len() {
            if let Some(g) = groups.get_mut(&sets.find(i)) {
                g.0.push(i);
            }
        }
        let mut out: Vec<DuplicateGroup> = groups
            .into_values()
            .map(|(members, max_distance)| {
                let mut ids: Vec<String> = members.into_iter().map(|i| ids[i].clone()).collect();
                ids.sort();
                DuplicateGroup { ids, max_distance }
            })
            .collect();
        out.sort_by(|a, b| a.ids[0].cmp(&b.ids[0]));
        let n = out.len() as u64;
        for g in out {
            emit(g)?;
        }
        Ok(n)
    }

    /// `search(k)` for `query`, each hit measured again on the exact f32
    /// vectors (so a record joined with itself is at distance 0, whatever
    /// the index stores) and ranked by that: (id, distance), closest first.
    fn exact_hits(&self, query: &[f32], options: SearchOptions) -> Result<Vec<(String, f32)>> {
        let metric = self.config().metric;
        let options = options.include(Include {
            vector: true,
            ..Include::default()
        });
        let mut hits: Vec<(String, f32)> = self
            .search(query, &options)?
            .hits
            .into_iter()
            .map(|h| {
                let d = match &h.vector {
                    Some(v) => distance(metric, query, v),
                    None => h.distance.unwrap_or(f32::NAN),
                };
                (h.id, d)
            })
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(hits)
    }

    /// `f` on each page of records (vectors included) in id order.
    fn each_page(
        &self,
        filter: Option<&Filter>,
        mut f: impl FnMut(&[Record]) -> Result<()>,
    ) -> Result<()> {
        let mut options = ScanOptions::new(PAGE);
        options.filter = filter.cloned();
        loop {
            let page = self.scan_page(&options)?;
            if !page.records.is_empty() {
                f(&page.records)?;
            }
            match page.next {
                Some(next) => options.after = Some(next),
                None => return Ok(()),
            }
        }
    }
}

/// A candidate pair: distance, left record's position, right id.
type Candidate = (f32, usize, String);

/// Greedily, by ascending distance (then left, then right): each pair whose
/// left is unmatched and whose right is unused.
fn take(
    pairs: &mut Vec<Candidate>,
    matched: &mut [Option<(String, f32)>],
    used: &mut HashSet<String>,
) {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for (d, i, r) in pairs.drain(..) {
        if matched[i].is_none() && !used.contains(&r) {
            used.insert(r.clone());
            matched[i] = Some((r, d));
        }
    }
}

fn check_distance(d: Option<f32>) -> Result<()> {
    match d {
        Some(d) if d.is_nan() || d < 0.0 => Err(Error::InvalidArgument {
            reason: format!("a maximum distance must be a number of 0 or more, not {d}"),
        }),
        _ => Ok(()),
    }
}

/// `f` of every item, on every core, in order; the first error wins.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> Result<U> + Sync) -> Result<Vec<U>> {
    crate::parallel::map(items.len(), |i| f(&items[i]))
        .into_iter()
        .collect()
}

/// Union–find over `0..n`.
struct Sets(Vec<usize>);

impl Sets {
    fn new(n: usize) -> Self {
        Sets((0..n).collect())
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}
