//! Search: vector (HNSW, exact, filtered), keyword and hybrid; each result consistent with SQLite.

use std::collections::HashSet;

use super::*;

/// With i8 index storage, searches take this many times k candidates from
/// the index and rank them by their exact f32 vectors.
pub(super) const RESCORE: usize = 4;

impl Collection {
    /// The `k` nearest records to `query` (among those matching
    /// `options.filter`, if set: then k come back whenever at least k match).
    ///
    /// # Errors
    /// [`Error::InvalidSearch`] for k outside 1..=[`MAX_K`] or ef = 0;
    /// [`Error::DimensionMismatch`], [`Error::InvalidVector`],
    /// [`Error::InvalidFilter`]; SQLite and index failures.
    pub fn search(&self, query: &[f32], options: &SearchOptions) -> Result<SearchResult> {
        let config = self.prepare_search(options, Some(query))?;
        let hidden = self.expired_now()?;
        let wide = expiry::widened(options, &hidden);
        self.consistent(
            || {
                let (found, plan) = self.vector_candidates(query, &wide, &config)?;
                let found: Vec<(u64, f32, Option<Ranks>)> =
                    found.into_iter().map(|(k, d)| (k, d, None)).collect();
                Ok((found, plan))
            },
            (&hidden, options.k),
            options.include,
            config.dimension,
        )
    }

    /// The `k` records whose text best matches `text` by BM25: records with
    /// every word first, then records with some. `options.filter` applies;
    /// `ef` and `exact` do not. Each hit carries a `score`, the BM25 score
    /// (SQLite's `bm25()` negated: higher is better), and its keyword rank.
    ///
    /// # Errors
    /// [`Error::InvalidSearch`] (bad k, or no words in `text`),
    /// [`Error::InvalidFilter`]; SQLite failures.
    pub fn search_keyword(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        let config = self.prepare_search(options, None)?;
        let filter = options.filter.as_ref();
        if let Some(f) = filter {
            f.validate()?;
        }
        let hidden = self.expired_now()?;
        let k = options.k + hidden.len();
        self.consistent(
            || {
                let cid = self.state.cid;
                let (list, matches) = self
                    .store
                    .read_fts(|conn| text::keyword_candidates(conn, cid, text, filter, k))?;
                let found = list
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, score))| {
                        let ranks = Ranks {
                            score: Some(score),
                            keyword_rank: Some(i + 1),
                            keyword_score: Some(score),
                            ..Ranks::default()
                        };
                        (key, -score, Some(ranks))
                    })
                    .collect();
                Ok((found, Plan::Keyword { matches }))
            },
            (&hidden, options.k),
            options.include,
            config.dimension,
        )
    }

    /// The old name of [`Collection::search_keyword`] (BM25, not an
    /// embedding: for that, `query_text`).
    ///
    /// # Errors
    /// As [`Collection::search_keyword`].
    #[deprecated(note = "renamed search_keyword; query_text embeds the text")]
    pub fn search_text(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        self.search_keyword(text, options)
    }

    /// Hybrid search: the vector list for `query` and the keyword list for
    /// `text` (each `fusion.candidates` long, both under `options.filter`)
    /// fused by reciprocal rank fusion. Each hit carries both ranks and
    /// scores, and a `score`: the fused one (higher is better).
    ///
    /// # Errors
    /// As [`Collection::search`] and [`Collection::search_keyword`], and
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
        let hidden = self.expired_now()?;
        let n = fusion.list_len(options.k) + hidden.len();
        let filter = options.filter.as_ref();
        if let Some(f) = filter {
            f.validate()?;
        }
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
                    .read_fts(|conn| text::keyword_candidates(conn, cid, text, filter, n))?;
                let found = text::fuse(&vector, &keyword, fusion, options.k + hidden.len())
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
            (&hidden, options.k),
            options.include,
            config.dimension,
        )
    }

    /// Checks shared by every search; returns the config.
    pub(super) fn prepare_search(
        &self,
        options: &SearchOptions,
        query: Option<&[f32]>,
    ) -> Result<CollectionConfig> {
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
        // The dimension never changes: a query of the wrong one is an
        // error before anything is read.
        let before = self.config();
        if let Some(q) = query {
            check_vector(&before, &self.state.name, None, q)?;
        }
        if let Some(f) = &options.filter {
            f.validate()?;
        }
        self.alive()?;
        self.refresh()?;
        // After the catch-up: another process may have altered the settings.
        let config = self.config();
        if let (Some(q), true) = (query, config != before) {
            check_vector(&config, &self.state.name, None, q)?;
        }
        let check = self.state.indexes.read_lock().snapshot_check();
        if check.is_some_and(|c| c.get() == index::CheckState::Failed) {
            self.state.recover_damaged(&self.store)?;
        }
        Ok(config)
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
        // The index is loaded (and its snapshot mapped) on first use.
        self.refresh()?;
        let check = self.state.indexes.read_lock().snapshot_check();
        if check.is_some_and(|c| c.wait() == index::CheckState::Failed) {
            self.state.recover_damaged(&self.store)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Run `find` and turn its keys into hits. If a hit's record vanished
    /// (deleted between the index search and the lookup), run both again
    /// under the delete gate, where no delete can slip between them.
    pub(super) fn consistent(
        &self,
        find: impl Fn() -> Result<(Vec<(u64, f32, Option<Ranks>)>, Plan)>,
        (hidden, k): (&HashSet<u64>, usize),
        include: Include,
        dim: usize,
    ) -> Result<SearchResult> {
        // Expired records (`hidden`, found only because `find` asked for
        // that many more) never reach the caller.
        let find = || find().map(|(found, plan)| (expiry::visible(found, hidden, k), plan));
        let (found, plan) = find()?;
        let hits = self.resolve(&found, include, dim)?;
        if hits.len() == found.len() {
            return Ok(SearchResult { hits, plan });
        }
        // Some hit's row is gone: a delete committed after the index
        // search. Once more, in one consistent state. This process's
        // deletes are held off by the gate.
        let _gate = self.state.delete_gate.write_lock();
        if self.store.dir.is_none() {
            // In memory nothing else writes, and a read takes the writer,
            // which comes before `apply`.
            let (found, plan) = find()?;
            let hits = self.resolve(&found, include, dim)?;
            return Ok(SearchResult { hits, plan });
        }
        // On disk, every read of the round (the catch-up with other
        // processes, a filtered plan's matches, the hits' rows) is pinned
        // to one read transaction, begun under `apply` and holding it to
        // the end: the index is brought to exactly that state and stays
        // there. (Without `apply`, a catch-up on another thread that could
        // not take the gate moved the index past the pinned state, and a
        // batch's new keys found no rows: 19 failures in 150 runs of
        // `batches`' readers of another handle.)
        let _apply = self.state.apply.locked();
        self.store.pinned(|| {
            self.state.catch_up_pinned(&self.store)?;
            let (found, plan) = find()?;
            let hits = self.resolve(&found, include, dim)?;
            Ok(SearchResult { hits, plan })
        })
    }

    /// Vector candidates: filtered, exact or HNSW.
    pub(super) fn vector_candidates(
        &self,
        query: &[f32],
        options: &SearchOptions,
        config: &CollectionConfig,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        if let Some(filter) = &options.filter {
            self.filtered_search(query, options, config, filter)
        } else if options.exact || !Indexes::HAS_GRAPH {
            Ok((self.exact_search(query, options.k)?, Plan::Exact))
        } else {
            self.hnsw_search(query, options, config)
        }
    }

    pub(super) fn hnsw_search(
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
            let ix = self.state.indexes.read_lock();
            ix.graph_search(query, wide, ef)
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
    pub(super) fn rescore(
        &self,
        query: &[f32],
        candidates: &[(u64, f32)],
        k: usize,
        config: &CollectionConfig,
    ) -> Result<Vec<(u64, f32)>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<u64> = candidates.iter().map(|(k, _)| *k).collect();
        let rows = self.rows_of(config.dimension);
        let vectors = self
            .store
            .read(|conn| records::vectors_of(conn, rows, &keys))?;
        let mut exact: Vec<(u64, f32)> = vectors
            .into_iter()
            .map(|(key, v)| (key, index::exact::distance(config.metric, query, &v)))
            .collect();
        exact.sort_by(|a, b| a.1.total_cmp(&b.1));
        exact.truncate(k);
        Ok(exact)
    }

    /// The filtered plan ([`filtered::search`]) over this collection.
    pub(super) fn filtered_search(
        &self,
        query: &[f32],
        options: &SearchOptions,
        config: &CollectionConfig,
        filter: &Filter,
    ) -> Result<(Vec<(u64, f32)>, Plan)> {
        let st = &self.state;
        let target = filtered::Target {
            db: &self.store,
            rows: self.rows_of(config.dimension),
            config,
            indexes: &st.indexes,
            applied_seq: &st.applied_seq,
            cache: &st.matches,
        };
        let (found, answer) =
            filtered::search(&target, filter, query, options.k, options.ef, options.exact)?;
        let plan = match answer {
            filtered::Answer::Exact { matches } => Plan::FilterExact { matches },
            filtered::Answer::Graph { ef, matches } => Plan::FilterHnsw { ef, matches },
        };
        Ok((found, plan))
    }

    pub(super) fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        loop {
            self.ensure_flat()?;
            if let Some(f) = self.state.indexes.read_lock().flat.as_ref() {
                return Ok(f.search(query, k));
            }
            // A rebuild (compact, alter, repair) swapped in fresh indexes
            // between the build and this search: build the exact one again.
        }
    }

    /// Build the exact index from SQLite if it is not there yet. Holds the
    /// writer (when writable) so no change lands between the scan and the
    /// swap-in; later changes are applied to it by `apply`.
    pub(super) fn ensure_flat(&self) -> Result<()> {
        if self.state.indexes.read_lock().flat.is_some() {
            return Ok(());
        }
        let build = |conn: &Connection, config: &CollectionConfig| -> Result<FlatIndex> {
            let mut flat = FlatIndex::new(config.dimension, config.metric);
            records::stream(conn, self.rows_of(config.dimension), None, CHUNK, |chunk| {
                flat.reserve(chunk.len());
                for (k, v) in chunk {
                    flat.add(*k, v);
                }
                Ok(())
            })?;
            Ok(flat)
        };
        if self.store.is_pinned() {
            // In a retry round ([`Collection::consistent`]), which holds
            // `apply` with the graph at exactly the pinned state: build
            // from that state. (`flat_build` comes before `apply`, so not
            // taken; an exact search waiting for `apply` to build one as
            // well only builds it again.)
            let flat = self.store.read(|conn| build(conn, &self.config()))?;
            self.state.indexes.write_lock().flat = Some(flat);
            return Ok(());
        }
        let _building = self.state.flat_build.locked();
        if self.state.indexes.read_lock().flat.is_some() {
            return Ok(());
        }
        // Built at exactly the sequence the graph reflects: under `apply`
        // (taken inside the read: in memory that is the writer connection,
        // which comes first), the graph is brought to the read
        // transaction's view, then the exact index is read from the same
        // view; later changes are applied to both.
        let st = &self.state;
        self.store.read_latest(|conn| {
            let _apply = st.apply.locked();
            let read_tx = ReadTx::begin(conn)?;
            st.catch_up_locked(&self.store, conn)?;
            let flat = build(conn, &self.config())?;
            st.indexes.write_lock().flat = Some(flat);
            read_tx.end()
        })
    }
}
