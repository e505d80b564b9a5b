//! Keyword search over SQLite FTS5 (BM25) and hybrid search by reciprocal
//! rank fusion.
//!
//! Each collection has a contentless FTS5 table `fts_<cid>` keyed by record
//! key, written in the same transaction as the record, so the text index can
//! never disagree with the records after a crash. Query text never reaches
//! FTS5's query syntax as is: it is cut into words (letters and digits),
//! each quoted.

use std::collections::HashMap;

use rusqlite::Connection;
use serde::Serialize;

use crate::db::fts::Keywords;
use crate::error::{Error, Result};
use crate::filter::Filter;

/// How a hit ranked in the lists of a keyword or hybrid search.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ranks {
    /// The hit's score, higher is better: for a keyword search its BM25
    /// score, for a hybrid one the fused Σ weight / (rrf_k + rank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// 1-based rank in the vector list, if the hit was in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_rank: Option<usize>,
    /// Distance in the vector list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_distance: Option<f32>,
    /// 1-based rank in the keyword list, if the hit was in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword_rank: Option<usize>,
    /// BM25 score (higher is better; SQLite's `bm25()` negated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword_score: Option<f32>,
}

/// Settings of reciprocal rank fusion. Defaults: `rrf_k` 60, both weights
/// 1, candidate lists of max(4k, 50).
#[derive(Debug, Clone, PartialEq)]
pub struct Fusion {
    /// The `k` of RRF: larger flattens the advantage of top ranks.
    pub rrf_k: f32,
    /// Weight of the vector list.
    pub vector_weight: f32,
    /// Weight of the keyword list.
    pub keyword_weight: f32,
    /// Length of each list before fusion; 0 means max(4k, 50).
    pub candidates: usize,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            rrf_k: 60.0,
            vector_weight: 1.0,
            keyword_weight: 1.0,
            candidates: 0,
        }
    }
}

impl Fusion {
    pub(crate) fn validate(&self) -> Result<()> {
        let ok = |x: f32| x.is_finite() && x >= 0.0;
        if !ok(self.rrf_k) || !ok(self.vector_weight) || !ok(self.keyword_weight) {
            return Err(Error::InvalidSearch {
                reason: "rrf k and weights must be finite and not negative".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn list_len(&self, k: usize) -> usize {
        if self.candidates > 0 {
            self.candidates.max(k)
        } else {
            (4 * k).max(50)
        }
    }
}

/// Most words a query may have.
const MAX_WORDS: usize = 64;

/// Cut query text into quoted FTS5 terms. Returns (all words, any word).
pub(crate) fn fts_queries(text: &str) -> Result<(String, String)> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
        .map(|w| format!("\"{w}\""))
        .collect();
    if words.is_empty() {
        return Err(Error::InvalidSearch {
            reason: format!(
                "no words to search for in {:?}",
                text.chars().take(80).collect::<String>()
            ),
        });
    }
    Ok((words.join(" "), words.join(" OR ")))
}

/// Keyword candidates: keys with their BM25 score (higher is better),
/// best first. Records with every word come first, then (to fill `n`)
/// records with some. Returns the list and how many have every word.
pub(crate) fn keyword_candidates(
    conn: &Connection,
    cid: i64,
    text: &str,
    filter: Option<&Filter>,
    n: usize,
) -> Result<(Vec<(u64, f32)>, u64)> {
    let (all, any) = fts_queries(text)?;
    let keywords = Keywords::new(conn, cid, filter)?;
    let mut hits = keywords.top(conn, &all, n)?;
    let matches = if hits.len() < n {
        hits.len() as u64
    } else {
        keywords.count(conn, &all)?
    };
    if hits.len() < n && all != any {
        let have: std::collections::HashSet<u64> = hits.iter().map(|h| h.0).collect();
        let more = keywords.top(conn, &any, n + have.len())?;
        hits.extend(
            more.into_iter()
                .filter(|h| !have.contains(&h.0))
                .take(n - have.len()),
        );
    }
    Ok((hits, matches))
}

/// Fuse a vector list (key, distance) and a keyword list (key, score), both
/// best first, by reciprocal rank fusion; the best `k` with their ranks.
pub(crate) fn fuse(
    vector: &[(u64, f32)],
    keyword: &[(u64, f32)],
    fusion: &Fusion,
    k: usize,
) -> Vec<(u64, Ranks)> {
    let mut by_key: HashMap<u64, Ranks> = HashMap::new();
    for (i, (key, d)) in vector.iter().enumerate() {
        let r = by_key.entry(*key).or_default();
        r.vector_rank = Some(i + 1);
        r.vector_distance = Some(*d);
    }
    for (i, (key, s)) in keyword.iter().enumerate() {
        let r = by_key.entry(*key).or_default();
        r.keyword_rank = Some(i + 1);
        r.keyword_score = Some(*s);
    }
    let mut fused: Vec<(u64, Ranks)> = by_key
        .into_iter()
        .map(|(key, mut r)| {
            let part =
                |rank: Option<usize>, w: f32| rank.map_or(0.0, |n| w / (fusion.rrf_k + n as f32));
            r.score = Some(
                part(r.vector_rank, fusion.vector_weight)
                    + part(r.keyword_rank, fusion.keyword_weight),
            );
            (key, r)
        })
        .collect();
    fused.sort_by(|a, b| {
        b.1.score
            .unwrap_or(0.0)
            .total_cmp(&a.1.score.unwrap_or(0.0))
            .then(a.0.cmp(&b.0))
    });
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_becomes_quoted_words() {
        let (all, any) = fts_queries("vector  database!").unwrap();
        assert_eq!(all, "\"vector\" \"database\"");
        assert_eq!(any, "\"vector\" OR \"database\"");
        let (all, _) = fts_queries("x\" OR 1=1 -- NEAR(a b) *").unwrap();
        assert_eq!(all, "\"x\" \"OR\" \"1\" \"1\" \"NEAR\" \"a\" \"b\"");
        assert!(fts_queries(" -- !! ").is_err());
        assert_eq!(fts_queries("café 東京").unwrap().0, "\"café\" \"東京\"");
    }

    #[test]
    fn rrf_rewards_agreement() {
        let vector = [(1, 0.1), (2, 0.2), (3, 0.3)];
        let keyword = [(3, 9.0), (4, 5.0), (1, 1.0)];
        let fused = fuse(&vector, &keyword, &Fusion::default(), 10);
        let keys: Vec<u64> = fused.iter().map(|f| f.0).collect();
        // 1: 1/61 + 1/63; 3: 1/63 + 1/61; tie broken by key.
        assert_eq!(keys, vec![1, 3, 2, 4]);
        assert_eq!(fused[0].1.vector_rank, Some(1));
        assert_eq!(fused[0].1.keyword_rank, Some(3));
        assert_eq!(fused[3].1.vector_rank, None);
        let keyword_only = Fusion {
            vector_weight: 0.0,
            ..Fusion::default()
        };
        assert_eq!(fuse(&vector, &keyword, &keyword_only, 1)[0].0, 3);
    }
}
