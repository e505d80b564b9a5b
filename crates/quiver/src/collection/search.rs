//! Search: vector (HNSW, exact, filtered), keyword and hybrid; each result consistent with SQLite.

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
    pub(super) fn prepare_search(
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
        include: Include,
        dim: usize,
    ) -> Result<SearchResult> {
        let (found, plan) = find()?;
        let hits = self.resolve(&found, include, dim)?;
        if hits.len() == found.len() {
            return Ok(SearchResult { hits, plan });
        }
        let _gate = self.state.delete_gate.read_lock();
        let (found, plan) = find()?;
        let hits = self.resolve(&found, include, dim)?;
        Ok(SearchResult { hits, plan })
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
                let v = record::decode_stored(
                    &self.state.name,
                    format_args!("key {key}"),
                    &blob,
                    config.dimension,
                )?;
                out.push((key as u64, index::exact::distance(config.metric, query, &v)));
            }
            Ok(out)
        })?;
        exact.sort_by(|a, b| a.1.total_cmp(&b.1));
        exact.truncate(k);
        Ok(exact)
    }

    /// The records matching `filter` now: from the cache if no write came
    /// since it was computed.
    pub(crate) fn match_set(&self, filter: &Filter) -> Result<Arc<MatchSet>> {
        let st = &self.state;
        let text = filter.to_string();
        let applied = st.applied_seq.load(Ordering::SeqCst);
        let older = {
            let cache = st.matches.locked();
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
        let size = st.indexes.read_lock().len();
        let exact_max = self.store.options.filter_exact_max.max(size / 8);
        let config = self.config();
        let (dim, metric) = (config.dimension, config.metric);
        // The exact plan's vectors: from the index when it holds them
        // exactly (f32 storage), else from SQLite.
        let ix = st.indexes.read_lock();
        let from_index = |key: u64| ix.graph_vector(key);
        let vector_of: Option<&dyn Fn(u64) -> Option<Vec<f32>>> =
            (Indexes::HAS_GRAPH && config.scalar == Scalar::F32).then_some(&from_index as _);
        let set = Arc::new(self.store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
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
            read_tx.end()?;
            Ok(set)
        })?);
        drop(ix);
        // Cache only a set taken at the sequence the index is at.
        if set.seq == st.applied_seq.load(Ordering::SeqCst) {
            st.matches.locked().put(
                text,
                set.clone(),
                exact_max.max(8 * self.store.options.filter_exact_max),
            );
        }
        Ok(set)
    }

    /// The filtered plan: exact over few matches, HNSW over many, with
    /// `ef` doubled while fewer than k come back (exact as the last resort).
    pub(super) fn filtered_search(
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
        let ix = self.state.indexes.read_lock();
        if set.vectors.is_some() || options.exact || !Indexes::HAS_GRAPH {
            drop(ix);
            return Ok((exact_here()?, Plan::FilterExact { matches }));
        }
        let want = k.min(set.len());
        let mut ef = options.ef.unwrap_or(config.expansion_search).max(k);
        loop {
            let found = ix
                .graph_filtered_search(query, k, ef, want, |key| set.contains(key))
                .map_err(|m| index_err(&self.state.name, "filtered search", m))?;
            if found.len() >= want {
                return Ok((found, Plan::FilterHnsw { ef, matches }));
            }
            if ef >= 4096 || ef >= set.len() {
                break;
            }
            ef = (ef * 2).min(4096);
        }
        drop(ix);
        Ok((exact_here()?, Plan::FilterExact { matches }))
    }

    /// Exact top-k over a large match set, reading its vectors from SQLite.
    pub(super) fn exact_over(
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
                        record::decode_stored(
                            name,
                            format_args!("key {key}"),
                            &b,
                            config.dimension,
                        )?,
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
        let _building = self.state.flat_build.locked();
        if self.state.indexes.read_lock().flat.is_some() {
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
                let _r = self.state.refresh.locked();
                let flat = self.store.read(|conn| {
                    let read_tx = ReadTx::begin(conn)?;
                    let current = read_seq(conn, self.state.cid)?
                        == self.state.applied_seq.load(Ordering::SeqCst);
                    let flat = if current { Some(build(conn)?) } else { None };
                    read_tx.end()?;
                    Ok(flat)
                })?;
                if let Some(f) = flat {
                    self.state.indexes.write_lock().flat = Some(f);
                    return Ok(());
                }
            }
            return Err(Error::arg(
                "the store is changing too fast for an exact search from a read-only handle; retry",
            ));
        }
        let conn = self.store.writer("exact search")?;
        let flat = build(&conn)?;
        self.state.indexes.write_lock().flat = Some(flat);
        Ok(())
    }
}
