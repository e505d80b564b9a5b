//! Maintenance: info, verify, repair, compact, alter, field indexes.

use super::*;

impl Collection {
    /// Index a metadata field so filters on it count and select matches
    /// without scanning the collection: comparisons, `IN`, `CONTAINS` and
    /// `STARTS WITH`, on scalars and on each element of an array. `path` is
    /// dotted (`author.name`) or written as in a filter (`"file-path"`).
    /// Returns false if the path was indexed already.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] for a bad path, [`Error::ReadOnly`], SQLite failures.
    pub fn index_field(&self, path: &str) -> Result<bool> {
        let segs = crate::filter::parse::check_path(path)?;
        let mut conn = self.store.writer("index field")?;
        self.alive()?;
        let tx = self.store.write_tx(&mut conn, "index field")?;
        let name = crate::filter::Field::Meta(segs.clone()).to_string();
        let added = catalogue::add_field_index(&tx, self.state.cid, &name, &segs)?;
        tx.commit("index field")?;
        Ok(added)
    }

    /// Everything about the collection: counts, sequence numbers, the
    /// snapshot, the tail, the index and how it was loaded.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn info(&self) -> Result<CollectionInfo> {
        self.alive()?;
        // What the index holds and how it was loaded: load it if need be.
        self.refresh()?;
        let st = &self.state;
        let (count, seq, snapshot, tail) = self.store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
            let (count, seq) = catalogue::count_and_seq(conn, st.cid)?;
            let snapshot = catalogue::snapshot_row(conn, st.cid)?.map(snapshot_info);
            let after = snapshot.as_ref().map_or(-1, |s| s.applied_seq as i64);
            let tail = catalogue::tail_len(conn, st.cid, after)?;
            read_tx.end()?;
            Ok((count as u64, seq as u64, snapshot, tail))
        })?;
        // Each value taken on its own line: no guard is held into the SQL
        // of `indexed_fields` (in memory, the writer connection).
        let index = st.indexes.read_lock().info();
        let load = st.load.locked().clone();
        let snapshot_error = st.snapshots.locked().error.clone();
        Ok(CollectionInfo {
            name: st.name.clone(),
            config: st.config(),
            count,
            seq,
            applied_seq: st.applied_seq.load(Ordering::SeqCst) as u64,
            snapshot,
            tail,
            index,
            load,
            snapshot_error,
            indexed_fields: self.indexed_fields()?,
        })
    }

    /// Check that the index agrees with SQLite: same key set, vectors equal
    /// (within the index's precision), every record reachable by a search
    /// (one pass over the graph: a search whose ef is the graph's size
    /// returns every node reachable from its entry point), the snapshot
    /// file matching its record, and SQLite's own `quick_check`. Changes
    /// nothing.
    ///
    /// # Errors
    /// SQLite failures (a damaged store is a report, not an error).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.alive()?;
        let st = &self.state;
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut read = |conn: &Connection| -> Result<(u64, u64, u64, u64, u64)> {
            st.catch_up_locked(&self.store, conn)?;
            let config = self.config();
            let ix = st.indexes.read_lock();
            let quick = self.store.quick_check(conn)?;
            if quick != "ok" {
                problems.push(format!("sqlite quick_check: {quick}"));
            }
            let seq = catalogue::read_seq(conn, st.cid)?;
            let applied = st.applied_seq.load(Ordering::SeqCst);
            if seq != applied {
                problems.push(format!(
                    "index reflects sequence {applied}, database is at {seq}"
                ));
            }
            // Reachability: every node a search can reach, in one pass
            // (nothing without a graph, where every search is exact).
            let reached = ix
                .reachable()
                .map_err(|m| index_err(&st.name, "reachability pass", m))?;
            let (mut records, mut checked, mut searched, mut missing) = (0u64, 0u64, 0u64, 0u64);
            let mut unreachable = 0u64;
            records::stream(conn, st.rows(), None, CHUNK, |chunk| {
                for (key, v) in chunk {
                    records += 1;
                    if !ix.contains(*key) {
                        missing += 1;
                        if missing <= 5 {
                            problems.push(format!("record key {key} is missing from the index"));
                        }
                        continue;
                    }
                    checked += ix.check_vector(&config, *key, v, &mut problems);
                    if let Some(reached) = &reached {
                        searched += 1;
                        if !reached.contains(key) {
                            unreachable += 1;
                            if unreachable <= 5 {
                                problems.push(format!(
                                    "record key {key} is not reachable by any search"
                                ));
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if unreachable > 5 {
                problems.push(format!(
                    "{unreachable} records in all are not reachable by any search"
                ));
            }
            if missing > 5 {
                problems.push(format!(
                    "{missing} records in all are missing from the index"
                ));
            }
            if ix.len() as u64 != records {
                problems.push(format!(
                    "index holds {} vectors, database {} records",
                    ix.len(),
                    records
                ));
            }
            if let Some(dir) = &self.store.dir {
                if let Some(row) = catalogue::snapshot_row(conn, st.cid)? {
                    if let Err(why) = snapshot::read_checked(dir, st.cid, row.length, &row.digest) {
                        notes.push(format!(
                            "snapshot unusable ({why}); the next writable open rebuilds it, or run repair"
                        ));
                    }
                }
            }
            Ok((records, ix.len() as u64, checked, searched, unreachable))
        };
        // The index and SQLite held still at one view: changes stop while
        // `apply` is held (taken inside: an in-memory store reads through
        // the writer connection, which comes first), and the index is
        // first brought to the read transaction's view, other processes'
        // commits included.
        let (records, indexed, checked, searched, unreachable) = self.store.read(|conn| {
            let _apply = st.apply.locked();
            let read_tx = ReadTx::begin(conn)?;
            let out = read(conn);
            read_tx.end()?;
            out
        })?;
        Ok(VerifyReport {
            records,
            indexed,
            vectors_checked: checked,
            reachability_checked: searched,
            unreachable,
            problems,
            notes,
        })
    }

    /// Rebuild the index from SQLite and write a fresh snapshot.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], SQLite, I/O and index failures.
    pub fn repair(&self) -> Result<CollectionInfo> {
        self.alive()?;
        let mut conn = self.store.writer("repair")?;
        self.state.rebuild_now(&self.store, &mut conn, "repair")?;
        drop(conn);
        self.info()
    }

    /// Reclaim the space of deleted records: rebuild the index when removed
    /// vectors hold at least [`COMPACT_THRESHOLD`] of its slots (or always
    /// with `force`), then VACUUM SQLite. usearch's own `compact` frees nothing.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], SQLite, I/O and index failures.
    pub fn compact(&self, force: bool) -> Result<CompactReport> {
        self.alive()?;
        // Expired records go first, so their rows and slots are reclaimed.
        self.purge_expired()?;
        // Whether to rebuild depends on the index's removed slots.
        self.refresh()?;
        let mut conn = self.store.writer("compact")?;
        let bytes_before = self.store_bytes();
        let (deleted, slots) = {
            let ix = self.state.indexes.read_lock();
            (ix.slots() - ix.len(), ix.slots())
        };
        let rebuilt = force || (slots > 0 && deleted as f64 / slots as f64 >= COMPACT_THRESHOLD);
        if rebuilt {
            self.state.rebuild_now(&self.store, &mut conn, "compact")?;
        } else if self.state.snapshots.locked().pending > 0 {
            self.state.snapshot(&self.store, &mut conn)?;
        }
        if self.store.dir.is_some() {
            failpoint!("compact:before-vacuum");
            let _held = self.store.lock()?;
            db::vacuum(&conn)?;
        }
        drop(conn);
        Ok(CompactReport {
            rebuilt,
            deleted_slots_before: deleted as u64,
            bytes_before,
            bytes_after: self.store_bytes(),
        })
    }

    /// Bytes of the store's database files plus this collection's snapshot.
    pub(super) fn store_bytes(&self) -> u64 {
        let Some(dir) = &self.store.dir else {
            return 0;
        };
        let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let db = crate::db::DB_FILE;
        size(dir.join(db))
            + size(dir.join(format!("{db}-wal")))
            + size(snapshot::path(dir, self.state.cid))
    }

    /// Change index settings (not the dimension): updates the collection and
    /// rebuilds its index from SQLite.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (nothing changed), [`Error::ReadOnly`],
    /// SQLite, I/O and index failures.
    pub fn alter(&self, change: &Alter) -> Result<CollectionInfo> {
        self.alive()?;
        let apply_change = |mut next: CollectionConfig| {
            next.metric = change.metric.unwrap_or(next.metric);
            next.scalar = change.scalar.unwrap_or(next.scalar);
            next.connectivity = change.connectivity.unwrap_or(next.connectivity);
            next.expansion_add = change.expansion_add.unwrap_or(next.expansion_add);
            next.expansion_search = change.expansion_search.unwrap_or(next.expansion_search);
            next
        };
        // Bad settings are an error before the writer is taken.
        apply_change(self.config()).validate()?;
        let mut conn = self.store.writer("alter")?;
        let tx = self.store.write_tx(&mut conn, "alter")?;
        // From the settings as SQLite has them now: another process may
        // have altered them since this handle read them.
        let current = catalogue::by_cid(&tx, self.state.cid)?
            .ok_or_else(|| Error::Dropped {
                name: self.state.name.clone(),
            })?
            .config;
        let next = apply_change(current.clone());
        next.validate()?;
        if next.metric == Metric::Cos && current.metric != Metric::Cos {
            // Zero vectors were fine under the old metric; cos cannot take them.
            let zero = records::zero_vector_id(&tx, self.state.cid, next.dimension)?;
            if let Some(id) = zero {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "record {id:?} has a zero vector, which the cos metric cannot take"
                    ),
                });
            }
        }
        let constrained = matches!(
            next.metric,
            Metric::Jaccard | Metric::Pearson | Metric::Divergence | Metric::Haversine
        );
        if constrained && next.metric != current.metric {
            // Every vector must be one the new metric can measure.
            let rows = self.state.rows_with(next.dimension);
            records::each(&tx, rows, None, |r| {
                crate::record::check_vector(&next, &self.state.name, Some(&r.id), &r.vector)
                    .map_err(|e| Error::InvalidConfig {
                        reason: format!("metric {}: {e}", next.metric),
                    })
            })?;
        }
        catalogue::set_index_settings(&tx, self.state.cid, &next)?;
        tx.commit("alter")?;
        failpoint!("alter:after-update");
        *self.state.config.write_lock() = next;
        self.state.rebuild_now(&self.store, &mut conn, "alter")?;
        drop(conn);
        self.info()
    }
}
