//! Writes: upserts and deletes, each one SQLite transaction, then applied to the index.

use super::*;

impl Collection {
    /// Insert or replace records, in one transaction. Returns the sequence
    /// number the batch committed as. Within a batch, a later record with the
    /// same id wins. Every record is validated before anything is written.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`], [`Error::InvalidVector`], [`Error::InvalidId`],
    /// [`Error::InvalidMetadata`] (nothing written); [`Error::ReadOnly`];
    /// SQLite, I/O and index failures.
    pub fn upsert(&self, records: &[Record]) -> Result<u64> {
        self.check_batch(records)?;
        self.purge_expired()?;
        let mut conn = self.store.writer("upsert")?;
        self.alive()?;
        let c = self.commit_upsert(&mut conn, records)?;
        self.after_commit(&mut conn, c.seq, &c.upserts, &[])?;
        self.cache_ids(c.ids);
        Ok(c.seq as u64)
    }

    pub(super) fn check_batch(&self, records: &[Record]) -> Result<()> {
        let config = self.config();
        for r in records {
            check_record(&config, &self.state.name, r)?;
        }
        Ok(())
    }

    /// Write a validated batch in one transaction and commit it. The
    /// caller holds the writer and then applies the result to the index.
    pub(super) fn commit_upsert(
        &self,
        conn: &mut Connection,
        records: &[Record],
    ) -> Result<Committed> {
        // Last occurrence of an id wins.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            last.insert(r.id.as_str(), i);
        }
        let metadata: Vec<Option<String>> = records
            .iter()
            .map(|r| r.metadata.as_ref().map(|m| m.to_string()))
            .collect();
        let tx = self.store.write_tx(conn, "upsert")?;
        let seq = catalogue::next_seq(&tx, self.state.cid)?;
        self.recheck_under_lock(&tx, records)?;
        let mut applied = Vec::with_capacity(last.len());
        let mut ids = Vec::with_capacity(last.len());
        {
            let mut rows = db::records::Upserter::new(&tx, self.state.cid, seq)?;
            for (i, r) in records.iter().enumerate() {
                if last.get(r.id.as_str()) != Some(&i) {
                    continue;
                }
                let key = rows.put(r, metadata[i].as_ref())?;
                applied.push((key, r.vector.clone()));
                ids.push((key, r.id.clone()));
            }
        }
        failpoint!("upsert:before-commit");
        let versions = tx.commit("upsert")?;
        self.state.committed(seq, versions);
        failpoint!("upsert:after-commit");
        Ok(Committed {
            seq,
            upserts: applied,
            ids,
        })
    }

    /// Validate `records` again if another process changed the
    /// collection's settings since this handle read them (an alter to cos
    /// makes a zero vector invalid), in the write transaction `tx`.
    fn recheck_under_lock(&self, tx: &rusqlite::Transaction<'_>, records: &[Record]) -> Result<()> {
        let current = catalogue::by_cid(tx, self.state.cid)?.ok_or_else(|| Error::Dropped {
            name: self.state.name.clone(),
        })?;
        if current.config != self.config() {
            for r in records {
                check_record(&current.config, &self.state.name, r)?;
            }
        }
        Ok(())
    }

    /// Put ids just written in the id cache (a key keeps its id for life),
    /// so searches right after an ingest do not look them up in SQLite. At
    /// 1M, the first 1,000 searches after the ingest were 1.4-1.6x usearch
    /// at ef 16 while the cache warmed from SQLite.
    pub(super) fn cache_ids(&self, ids: Vec<(u64, String)>) {
        let ix = self.state.indexes.read_lock();
        let mut cache = ix.ids.write_lock();
        for (key, id) in ids {
            cache.entry(key).or_insert_with(|| id.into());
        }
    }

    /// Delete records by id, in one transaction. Returns how many existed.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::ReadOnly`], SQLite and index failures.
    pub fn delete<S: AsRef<str>>(&self, ids: &[S]) -> Result<usize> {
        for id in ids {
            record::check_id(id.as_ref())?;
        }
        self.purge_expired()?;
        self.delete_keys(|tx, cid| records::delete_ids(tx, cid, ids))
    }

    /// Delete every record matching `filter`, in one transaction. Returns how many.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], [`Error::ReadOnly`], SQLite and index failures.
    pub fn delete_where(&self, filter: &Filter) -> Result<usize> {
        // A bad filter is an error before the writer is taken.
        filter.validate()?;
        self.purge_expired()?;
        self.delete_keys(|tx, cid| records::delete_matching(tx, cid, filter))
    }

    /// One delete transaction: `remove` deletes the rows and returns their
    /// keys and ids; this stamps the sequence, writes tombstones, updates the text
    /// index, commits, and takes the keys out of the vector index.
    pub(super) fn delete_keys(
        &self,
        remove: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<Vec<records::Gone>>,
    ) -> Result<usize> {
        // Gate before writer: a search retrying under the gate may need the
        // writer (to build the exact index), so this order cannot deadlock.
        let _gate = self.state.delete_gate.write_lock();
        let mut conn = self.store.writer("delete")?;
        self.alive()?;
        let cid = self.state.cid;
        let tx = self.store.write_tx(&mut conn, "delete")?;
        let seq = catalogue::next_seq(&tx, cid)?;
        let gone = remove(&tx, cid)?;
        if gone.is_empty() {
            // Nothing changed: do not spend a sequence number (dropping
            // the transaction rolls it back).
            return Ok(0);
        }
        records::bury(&tx, cid, &gone, seq)?;
        failpoint!("delete:before-commit");
        let versions = tx.commit("delete")?;
        self.state.committed(seq, versions);
        failpoint!("delete:after-commit");
        let removed: Vec<u64> = gone.iter().map(|(k, _)| *k as u64).collect();
        self.after_commit(&mut conn, seq, &[], &removed)?;
        Ok(removed.len())
    }

    /// Apply a committed change to the index; on failure, rebuild it from
    /// SQLite (the commit stands either way).
    pub(super) fn after_commit(
        &self,
        conn: &mut Connection,
        seq: i64,
        upserts: &[(u64, Vec<f32>)],
        removes: &[u64],
    ) -> Result<()> {
        let applied = self.state.apply_own(&self.store, seq, upserts, removes);
        let changes = (upserts.len() + removes.len()) as u64;
        self.after_apply(conn, changes, applied).map(|_| ())
    }

    /// After this process's change is applied to the index
    /// ([`CollState::apply_own`]): count it for the next snapshot, or, if
    /// applying it failed, rebuild the index from SQLite. Returns true
    /// after a rebuild (the index then holds every committed change). The
    /// caller holds the writer and no change of its own is being applied.
    pub(super) fn after_apply(
        &self,
        conn: &mut Connection,
        changes: u64,
        applied: Result<()>,
    ) -> Result<bool> {
        let st = &self.state;
        if let Err(e) = applied {
            st.rebuild_now(&self.store, conn, &format!("applying a change failed: {e}"))?;
            return Ok(true);
        }
        st.add_pending(changes);
        st.maybe_snapshot(&self.store, conn);
        Ok(false)
    }
}

impl CollState {
    /// Note change `seq` as committed by this process (`versions`: the
    /// store's `data_version` around its write transaction). If this
    /// collection missed nothing before the transaction, it misses nothing
    /// of other processes' after it: only this commit came between.
    pub(super) fn committed(&self, seq: i64, versions: tx::Versions) {
        let known = self
            .applied_seq
            .load(Ordering::SeqCst)
            .max(self.own_committed.load(Ordering::SeqCst));
        if seq - 1 > known {
            // Others committed since this process last looked.
            self.foreign_below_own.fetch_max(seq - 1, Ordering::SeqCst);
        }
        self.own_committed.fetch_max(seq, Ordering::SeqCst);
        let _ = self.seen_version.compare_exchange(
            versions.before,
            versions.after,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Apply change `seq`, committed by this process, to the indexes, after
    /// every change before it: under `apply`. If another process committed
    /// in between, the index replays from SQLite instead, this change
    /// included; if a replay already took this change, nothing is left to do.
    pub(super) fn apply_own(
        &self,
        store: &Db,
        seq: i64,
        upserts: &[(u64, Vec<f32>)],
        removes: &[u64],
    ) -> Result<()> {
        let _apply = self.apply.locked();
        let applied = self.applied_seq.load(Ordering::SeqCst);
        if applied >= seq || !self.is_loaded() {
            // A replay took it already, or the indexes are not loaded:
            // they take it from SQLite when they are.
            return Ok(());
        }
        if applied < seq - 1 && store.dir.is_some() {
            return store.read(|conn| {
                let read_tx = ReadTx::begin(conn)?;
                self.catch_up_locked(store, conn)?;
                read_tx.end()
            });
        }
        apply(&self.indexes, &self.name, upserts, removes)?;
        self.applied_seq.store(seq, Ordering::SeqCst);
        // A change that is large next to the graph can orphan older nodes
        // (see `persist::relink`); the walk then costs at most a few times
        // the change's own adds. (Not in memory, where reading takes the
        // writer connection the caller holds.)
        let nodes = self.indexes.read_lock().slots();
        if store.dir.is_some() && upserts.len() >= load::RELINK_AFTER && upserts.len() * 8 >= nodes
        {
            store.read(|conn| persist::relink(conn, self.rows(), &self.indexes))?;
        }
        Ok(())
    }
}
