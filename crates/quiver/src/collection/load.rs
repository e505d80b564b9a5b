//! Opening a collection: the snapshot viewed or loaded and the tail
//! replayed, or a rebuild from SQLite; a read-only handle catching up.

use super::*;

/// Replay every change stamped after `after` onto `lock`'s indexes.
/// Returns the number of changes applied.
pub(super) fn replay(
    conn: &Connection,
    store: &Db,
    name: &str,
    cid: i64,
    dim: usize,
    after: i64,
    lock: &RwLock<Indexes>,
) -> Result<u64> {
    let total = catalogue::tail_len(conn, cid, after)?;
    let mut done = 0u64;
    let removes = records::tombstones_after(conn, cid, after)?;
    apply(lock, name, &[], &removes)?;
    done += removes.len() as u64;
    let rows = records::Rows { cid, name, dim };
    records::stream(conn, rows, Some(after), CHUNK, |chunk| {
        apply(lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        report(store, name, "replay", done, total);
        Ok(())
    })?;
    Ok(done)
}

pub(super) fn report(store: &Db, name: &str, phase: &'static str, done: u64, total: u64) {
    if let Some(p) = &store.options.progress {
        p(&Progress {
            collection: name.into(),
            phase,
            done,
            total,
        });
    }
}

/// Build indexes from every record in SQLite.
pub(super) fn rebuild(
    conn: &Connection,
    store: &Db,
    name: &str,
    cid: i64,
    config: &CollectionConfig,
) -> Result<Indexes> {
    let total = records::count(conn, cid)?;
    let lock = RwLock::new(Indexes::empty(config, total as usize, name)?);
    let mut done = 0u64;
    report(store, name, "rebuild", 0, total);
    let rows = records::Rows {
        cid,
        name,
        dim: config.dimension,
    };
    records::stream(conn, rows, None, CHUNK, |chunk| {
        apply(&lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        report(store, name, "rebuild", done, total);
        Ok(())
    })?;
    Ok(lock.into_value())
}

/// Load indexes from the snapshot if it is usable; else `Err(reason)`.
pub(super) fn load_snapshot(
    store: &Db,
    conn: &Connection,
    cid: i64,
    config: &CollectionConfig,
) -> Result<(Indexes, i64), String> {
    if !Indexes::HAS_GRAPH {
        return Err("built without usearch: the exact index loads from SQLite".into());
    }
    let dir = store.dir.as_ref().ok_or("in-memory store")?;
    let row = catalogue::snapshot_row(conn, cid)
        .map_err(|e| e.to_string())?
        .ok_or("no snapshot recorded")?;
    if row.options != snapshot::options_stamp(config) {
        return Err(format!(
            "snapshot options {:?} differ from the collection's",
            row.options
        ));
    }
    let (map, vectors) = snapshot::map_checked(dir, cid, row.length, &row.digest)?;
    let indexes = Indexes::view(config, map, vectors, row.vectors as usize)?;
    Ok((indexes, row.applied_seq))
}

/// Load a collection's indexes: snapshot + tail, else rebuild.
/// Returns the indexes, the sequence they reflect, the report, and the
/// number of changes not covered by a snapshot.
pub(super) fn load_indexes(
    store: &Db,
    conn: &Connection,
    name: &str,
    row: &catalogue::CollectionRow,
) -> Result<(Indexes, LoadReport, u64)> {
    let started = Instant::now();
    let (indexes, report, pending) = match load_snapshot(store, conn, row.cid, &row.config) {
        Ok((indexes, applied)) => {
            let lock = RwLock::new(indexes);
            let n = replay(
                conn,
                store,
                name,
                row.cid,
                row.config.dimension,
                applied,
                &lock,
            )?;
            let report = LoadReport {
                source: IndexSource::Snapshot,
                reason: None,
                tail_replayed: n,
                millis: 0.0,
            };
            (lock.into_value(), report, n)
        }
        Err(reason) => {
            let indexes = rebuild(conn, store, name, row.cid, &row.config)?;
            let pending = indexes.len() as u64;
            let report = LoadReport {
                source: IndexSource::Rebuilt,
                reason: Some(reason),
                tail_replayed: 0,
                millis: 0.0,
            };
            (indexes, report, pending)
        }
    };
    Ok((
        indexes,
        LoadReport {
            millis: started.elapsed().as_secs_f64() * 1e3,
            ..report
        },
        pending,
    ))
}

impl CollState {
    /// Load a collection by name for a read-only store: its index from
    /// snapshot + tail, or rebuilt, at one read transaction's view.
    pub(crate) fn load_read_only(store: &Db, name: &str) -> Result<Option<Arc<Self>>> {
        store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
            let Some(row) = catalogue::by_name(conn, name)? else {
                return Ok(None);
            };
            let (indexes, load, _) = load_indexes(store, conn, name, &row)?;
            read_tx.end()?;
            Ok(Some(CollState::new(
                row.cid, name, row.config, indexes, row.seq, load,
            )))
        })
    }

    /// Load a collection by name for a writable store. The caller holds
    /// the writer (`conn`), so no write slips between reading the tail and
    /// the caller registering the state.
    pub(crate) fn load_writable(
        store: &Db,
        conn: &mut Connection,
        name: &str,
    ) -> Result<Option<Arc<Self>>> {
        let Some(row) = catalogue::by_name(conn, name)? else {
            return Ok(None);
        };
        let (indexes, load, pending) = load_indexes(store, conn, name, &row)?;
        let rebuilt = load.source == IndexSource::Rebuilt;
        let state = CollState::new(row.cid, name, row.config, indexes, row.seq, load);
        state.add_pending(pending);
        if rebuilt {
            // Write a fresh snapshot now so the next open is fast.
            state.snapshot(store, conn)?;
        }
        Ok(Some(state))
    }

    /// A viewed snapshot whose vectors failed their background check:
    /// rebuild from SQLite (and, for a writer, snapshot afresh).
    pub(crate) fn recover_damaged(&self, store: &Db) -> Result<()> {
        const REASON: &str = "the snapshot's vectors do not match their recorded digest";
        let damaged = |st: &CollState| {
            st.indexes
                .read_lock()
                .snapshot_check()
                .is_some_and(|c| c.get() == crate::index::CheckState::Failed)
        };
        if store.is_read_only() {
            let _r = self.refresh.locked();
            if !damaged(self) {
                return Ok(());
            }
            return store.read(|conn| {
                let read_tx = ReadTx::begin(conn)?;
                let seq = catalogue::read_seq(conn, self.cid)?;
                self.rebuild_now_unsaved(store, conn, REASON)?;
                self.applied_seq.store(seq, Ordering::SeqCst);
                read_tx.end()
            });
        }
        let mut conn = store.writer("rebuild")?;
        if !damaged(self) {
            return Ok(());
        }
        self.rebuild_now(store, &mut conn, REASON)
    }

    /// Swap in a rebuild from SQLite without snapshotting it.
    pub(super) fn rebuild_now_unsaved(
        &self,
        store: &Db,
        conn: &Connection,
        reason: &str,
    ) -> Result<()> {
        let started = Instant::now();
        let config = self.config();
        let fresh = rebuild(conn, store, &self.name, self.cid, &config)?;
        *self.indexes.write_lock() = fresh;
        *self.load.locked() = LoadReport {
            source: IndexSource::Rebuilt,
            reason: Some(reason.into()),
            tail_replayed: 0,
            millis: started.elapsed().as_secs_f64() * 1e3,
        };
        Ok(())
    }

    /// Replace the indexes with a rebuild from SQLite and snapshot them.
    pub(super) fn rebuild_now(
        &self,
        store: &Db,
        conn: &mut Connection,
        reason: &str,
    ) -> Result<()> {
        let seq: i64 = catalogue::read_seq(conn, self.cid)?;
        self.rebuild_now_unsaved(store, conn, reason)?;
        self.applied_seq.store(seq, Ordering::SeqCst);
        let pending = self.indexes.read_lock().len() as u64;
        self.snapshots.locked().pending = 0;
        self.add_pending(pending.max(1));
        failpoint!(&format!("{reason}:before-snapshot"));
        self.snapshot(store, conn)
    }
}

impl Collection {
    /// For a read-only handle: catch up with changes committed by the
    /// writer since this process loaded the index. A writable handle is
    /// always current, and this does nothing.
    ///
    /// # Errors
    /// [`Error::Dropped`] if the writer dropped the collection; SQLite failures.
    pub fn refresh(&self) -> Result<()> {
        if !self.store.is_read_only() {
            return Ok(());
        }
        let st = &self.state;
        let _r = st.refresh.locked();
        // Read before the check: a commit after this read moves it again.
        let version = self.store.data_version()?;
        if version == st.seen_version.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
            let Some(row) = catalogue::by_cid(conn, st.cid)? else {
                st.mark_dropped();
                read_tx.end()?;
                return Err(Error::Dropped {
                    name: st.name.clone(),
                });
            };
            let applied = st.applied_seq.load(Ordering::SeqCst);
            if row.seq == applied && row.config == st.config() {
                st.seen_version.store(version, Ordering::SeqCst);
                return read_tx.end();
            }
            if row.pruned_seq > applied || row.config != st.config() {
                // Tombstones we would need are gone, or the index settings
                // changed: load afresh.
                let (indexes, load, _) = load_indexes(&self.store, conn, &st.name, &row)?;
                *st.indexes.write_lock() = indexes;
                *st.config.write_lock() = row.config.clone();
                *st.load.locked() = load;
            } else {
                replay(
                    conn,
                    &self.store,
                    &st.name,
                    st.cid,
                    row.config.dimension,
                    applied,
                    &st.indexes,
                )?;
            }
            st.applied_seq.store(row.seq, Ordering::SeqCst);
            st.seen_version.store(version, Ordering::SeqCst);
            read_tx.end()
        })
    }
}

impl CollState {
    /// Replace a viewed snapshot (mapped, read-only) with an index in
    /// memory that can be saved: the snapshot loaded, then every change
    /// after it replayed from SQLite. Runs under the writer, so nothing
    /// commits meanwhile; searches go on against the old indexes.
    pub(super) fn materialise(&self, store: &Db, conn: &mut Connection) -> Result<()> {
        let config = self.config();
        let loaded = (|| -> std::result::Result<Indexes, String> {
            let dir = store.dir.as_ref().ok_or("in-memory store")?;
            let row = catalogue::snapshot_row(conn, self.cid)
                .map_err(|e| e.to_string())?
                .ok_or("no snapshot recorded")?;
            let bytes = snapshot::read_checked(dir, self.cid, row.length, &row.digest)?;
            let lock = RwLock::new(Indexes::load(&config, &bytes, row.vectors as usize)?);
            replay(
                conn,
                store,
                &self.name,
                self.cid,
                config.dimension,
                row.applied_seq,
                &lock,
            )
            .map_err(|e| e.to_string())?;
            Ok(lock.into_value())
        })();
        match loaded {
            Ok(fresh) => {
                let mut ix = self.indexes.write_lock();
                // Keys keep their ids: carry the cache over.
                let ids = std::mem::take(&mut *ix.ids.write_lock());
                *fresh.ids.write_lock() = ids;
                *ix = fresh;
                Ok(())
            }
            Err(reason) => self.rebuild_now_unsaved(store, conn, &reason),
        }
    }
}
