//! Opening a collection: the snapshot viewed or loaded and the tail
//! replayed, or a rebuild from SQLite; a read-only handle catching up.

use super::*;

/// A replay or rebuild of at least this many records ends with a relink
/// (a walk of the graph's links, then re-adds of what it missed): one
/// change of 3,000 replayed after a crash left a snapshot's node with no
/// in-link (a CI failure, 1 run in 10). Below it the adds are few and one
/// at a time, and the fast open (a snapshot and a short tail) pays nothing.
pub(super) const RELINK_AFTER: usize = 256;

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
    // The deleted keys leave the id cache first and the graph last, as in
    // one change (see `index::apply`): a search meanwhile finds the old
    // records' keys and misses their rows, and retries after the replay,
    // instead of seeing neither a batch's old records nor its new ones.
    let removes = records::tombstones_after(conn, cid, after)?;
    index::forget(lock, &removes);
    let rows = records::Rows {
        cid,
        name,
        dim,
        now: None,
    };
    let mut upserted = 0;
    records::stream(conn, rows, Some(after), CHUNK, |chunk| {
        apply(lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        upserted += chunk.len();
        report(store, name, "replay", done, total);
        Ok(())
    })?;
    apply(lock, name, &[], &removes)?;
    done += removes.len() as u64;
    // Adds can orphan a node added before them, an earlier chunk's or the
    // snapshot's (see `relink`).
    if upserted >= RELINK_AFTER {
        persist::relink(conn, rows, lock)?;
    }
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
    let total = records::count(conn, cid, None)?;
    let lock = RwLock::new(Indexes::empty(config, total as usize, name)?);
    let mut done = 0u64;
    report(store, name, "rebuild", 0, total);
    let rows = records::Rows {
        cid,
        name,
        dim: config.dimension,
        now: None,
    };
    records::stream(conn, rows, None, CHUNK, |chunk| {
        apply(&lock, name, chunk, &[])?;
        done += chunk.len() as u64;
        report(store, name, "rebuild", done, total);
        Ok(())
    })?;
    if total as usize >= RELINK_AFTER {
        persist::relink(conn, rows, &lock)?;
    }
    Ok(lock.into_value())
}

/// A snapshot holding changes up to `applied` can have its tail replayed
/// only while the tombstones after it are kept (`pruned` is up to where
/// they are not).
fn replayable(applied: i64, pruned: i64) -> Result<(), String> {
    if pruned > applied {
        return Err(format!(
            "tombstones after the snapshot (sequence {applied}) were pruned, up to {pruned}"
        ));
    }
    Ok(())
}

/// Load indexes from the snapshot if it is usable; else `Err(reason)`.
/// `pruned` is up to where the collection's tombstones are pruned: a
/// snapshot older than that cannot be replayed (a build without usearch
/// prunes without writing snapshots, and may share the store).
pub(super) fn load_snapshot(
    store: &Db,
    conn: &Connection,
    cid: i64,
    config: &CollectionConfig,
    pruned: i64,
) -> Result<(Indexes, i64), String> {
    if !Indexes::HAS_GRAPH {
        return Err("built without usearch: the exact index loads from SQLite".into());
    }
    let dir = store.dir.as_ref().ok_or("in-memory store")?;
    let row = catalogue::snapshot_row(conn, cid)
        .map_err(|e| e.to_string())?
        .ok_or("no snapshot recorded")?;
    replayable(row.applied_seq, pruned)?;
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
    let (indexes, report, pending) =
        match load_snapshot(store, conn, row.cid, &row.config, row.pruned_seq) {
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
    /// False once the collection is gone from SQLite (another process or
    /// handle dropped it); costs a `data_version` check when nothing
    /// committed since this collection was last found current.
    pub(crate) fn still_exists(&self, store: &Db) -> Result<bool> {
        if self.is_dropped() {
            return Ok(false);
        }
        if store.dir.is_none() || store.data_version()? == self.seen_version.load(Ordering::SeqCst)
        {
            return Ok(true);
        }
        let exists = store
            .read(|conn| catalogue::by_cid(conn, self.cid))?
            .is_some();
        if !exists {
            self.mark_dropped();
        }
        Ok(exists)
    }

    /// A collection by name, its indexes not loaded yet (the first search
    /// loads them: [`CollState::catch_up_locked`]).
    pub(crate) fn find(store: &Db, name: &str) -> Result<Option<Arc<Self>>> {
        let row = store.read(|conn| catalogue::by_name(conn, name))?;
        row.map(|row| CollState::unloaded(row, name)).transpose()
    }

    /// Load the indexes from snapshot + tail, or rebuild them, at the view
    /// of `conn` (in a read transaction); `row` is the collection's row
    /// there. The caller holds `apply`.
    fn load_locked(
        &self,
        store: &Db,
        conn: &Connection,
        row: &catalogue::CollectionRow,
    ) -> Result<()> {
        let (indexes, load, pending) = load_indexes(store, conn, &self.name, row)?;
        let rebuilt = load.source == IndexSource::Rebuilt;
        *self.indexes.write_lock() = indexes;
        *self.config.write_lock() = row.config.clone();
        *self.load.locked() = load;
        self.applied_seq.store(row.seq, Ordering::SeqCst);
        self.loaded.store(true, Ordering::SeqCst);
        if !store.is_read_only() {
            self.claim(store);
            self.snapshots.locked().pending = 0;
            self.add_pending(pending);
            if rebuilt {
                self.rebuilt_unsaved.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
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
            let _apply = self.apply.locked();
            if !damaged(self) {
                return Ok(());
            }
            return store.read(|conn| {
                let read_tx = ReadTx::begin(conn)?;
                self.rebuild_locked(store, conn, REASON)?;
                read_tx.end()
            });
        }
        let mut conn = store.writer("rebuild")?;
        if !damaged(self) {
            return Ok(());
        }
        self.rebuild_now(store, &mut conn, REASON)
    }

    /// Swap in a rebuild from SQLite as `conn` shows it (in a read
    /// transaction), without snapshotting it; `applied_seq` becomes the
    /// sequence it holds. The caller holds `apply`.
    pub(super) fn rebuild_locked(&self, store: &Db, conn: &Connection, reason: &str) -> Result<()> {
        let started = Instant::now();
        let seq = catalogue::read_seq(conn, self.cid)?;
        let config = self.config();
        let fresh = rebuild(conn, store, &self.name, self.cid, &config)?;
        *self.indexes.write_lock() = fresh;
        self.applied_seq.store(seq, Ordering::SeqCst);
        self.loaded.store(true, Ordering::SeqCst);
        self.claim(store);
        *self.load.locked() = LoadReport {
            source: IndexSource::Rebuilt,
            reason: Some(reason.into()),
            tail_replayed: 0,
            millis: started.elapsed().as_secs_f64() * 1e3,
        };
        Ok(())
    }

    /// Replace the indexes with a rebuild from SQLite and snapshot them.
    /// The caller holds the writer connection.
    pub(super) fn rebuild_now(
        &self,
        store: &Db,
        conn: &mut Connection,
        reason: &str,
    ) -> Result<()> {
        {
            let _apply = self.apply.locked();
            let read_tx = ReadTx::begin(conn)?;
            self.rebuild_locked(store, conn, reason)?;
            read_tx.end()?;
        }
        let pending = self.indexes.read_lock().len() as u64;
        self.snapshots.locked().pending = 0;
        self.add_pending(pending.max(1));
        failpoint!(&format!("{reason}:before-snapshot"));
        self.snapshot(store, conn)
    }

    /// Inside [`Db::pinned`] on a store on disk, with the delete gate and
    /// `apply` held since before the pin: catch up to the pinned state.
    /// The index cannot be ahead of it (all it holds was committed before
    /// the pin), but this stays forward only. `seen_version` is left
    /// alone, so the next unpinned refresh still catches up with what
    /// came after.
    pub(super) fn catch_up_pinned(&self, store: &Db) -> Result<()> {
        store.read(|conn| {
            let Some(row) = catalogue::by_cid(conn, self.cid)? else {
                self.mark_dropped();
                return Err(Error::Dropped {
                    name: self.name.clone(),
                });
            };
            let applied = self.applied_seq.load(Ordering::SeqCst);
            // Forward only. A settings change alone (no new sequence) is
            // left to the next unpinned refresh, which compares them.
            if row.seq > applied || !self.is_loaded() {
                self.catch_up_locked(store, conn)?;
            }
            Ok(())
        })
    }

    /// Bring the indexes up to what `conn` shows (in a read transaction,
    /// or under the store's writer lock): replay every change after
    /// `applied_seq`, or load afresh when a tombstone the replay needs was
    /// pruned, the index settings changed, or a newer snapshot leaves a
    /// much shorter tail than this index's. The caller holds `apply`.
    ///
    /// # Errors
    /// [`Error::Dropped`] if the collection is gone; SQLite and index failures.
    pub(super) fn catch_up_locked(&self, store: &Db, conn: &Connection) -> Result<()> {
        let Some(row) = catalogue::by_cid(conn, self.cid)? else {
            self.mark_dropped();
            return Err(Error::Dropped {
                name: self.name.clone(),
            });
        };
        if !self.is_loaded() {
            return self.load_locked(store, conn, &row);
        }
        let applied = self.applied_seq.load(Ordering::SeqCst);
        let config = self.config();
        if row.config != config && row.config.same_index(&config) {
            // Only the model binding changed: nothing to rebuild.
            *self.config.write_lock() = row.config.clone();
        }
        let same_config = row.config == self.config();
        if row.seq == applied && same_config {
            return Ok(());
        }
        let reload = row.pruned_seq > applied
            || !same_config
            || row.seq < applied
            || self.newer_snapshot_is_shorter(conn, applied)?;
        let replayed = if reload {
            let (indexes, load, pending) = load_indexes(store, conn, &self.name, &row)?;
            let mut ix = self.indexes.write_lock();
            if same_config {
                // Keys keep their ids: carry the cache over.
                let ids = std::mem::take(&mut *ix.ids.write_lock());
                *indexes.ids.write_lock() = ids;
            }
            *ix = indexes;
            drop(ix);
            *self.config.write_lock() = row.config.clone();
            *self.load.locked() = load;
            self.snapshots.locked().pending = 0;
            pending
        } else {
            replay(
                conn,
                store,
                &self.name,
                self.cid,
                row.config.dimension,
                applied,
                &self.indexes,
            )?
        };
        self.applied_seq.store(row.seq, Ordering::SeqCst);
        if !store.is_read_only() {
            self.add_pending(replayed);
        }
        Ok(())
    }

    /// True when the recorded snapshot is newer than `applied` and its
    /// tail is under half of the tail after `applied` (and that is long):
    /// mapping it and replaying its tail is then cheaper than replaying.
    fn newer_snapshot_is_shorter(&self, conn: &Connection, applied: i64) -> Result<bool> {
        const LONG: u64 = 4096;
        if !Indexes::HAS_GRAPH {
            return Ok(false);
        }
        let Some(snap) = catalogue::snapshot_row(conn, self.cid)? else {
            return Ok(false);
        };
        if snap.applied_seq <= applied {
            return Ok(false);
        }
        let ours = catalogue::tail_len(conn, self.cid, applied)?;
        if ours < LONG {
            return Ok(false);
        }
        Ok(catalogue::tail_len(conn, self.cid, snap.applied_seq)? < ours / 2)
    }
}

impl Collection {
    /// Catch up with changes other processes committed since this handle
    /// last looked (a search does this first). Costs one `data_version`
    /// check when nothing else committed, and a look at the collection's
    /// row when only this process did.
    ///
    /// # Errors
    /// [`Error::Dropped`] if another process (or handle) dropped the
    /// collection; SQLite and index failures.
    pub fn refresh(&self) -> Result<()> {
        if self.store.dir.is_none() && self.state.is_loaded() {
            // In memory: nothing but this store writes it.
            return Ok(());
        }
        let st = &self.state;
        // Read before the check: a commit after this read moves it again.
        let version = self.store.data_version()?;
        if version == st.seen_version.load(Ordering::SeqCst) && st.is_loaded() {
            return Ok(());
        }
        let row = self.store.read(|conn| catalogue::by_cid(conn, st.cid))?;
        let Some(row) = row else {
            st.mark_dropped();
            return Err(Error::Dropped {
                name: st.name.clone(),
            });
        };
        let applied = st.applied_seq.load(Ordering::SeqCst);
        let only_own = row.seq <= st.own_committed.load(Ordering::SeqCst)
            && applied >= st.foreign_below_own.load(Ordering::SeqCst);
        if st.is_loaded() && row.config == st.config() && (row.seq == applied || only_own) {
            st.seen_version.store(version, Ordering::SeqCst);
            return Ok(());
        }
        {
            // As this process's own deletes do, a catch-up holds the delete
            // gate: a search that found a key the replay is removing
            // retries under the gate, so after the whole replay, never in
            // the middle of another one (a batch is seen whole).
            // Only if free: a thread holding the writer (a `Bulk`) may
            // refresh, and a delete holding the gate waits for the writer.
            // Without it a catch-up is still correct, only not held off
            // from an overlapping search.
            let _gate = st.delete_gate.try_write().ok();
            let _apply = st.apply.locked();
            self.store.read(|conn| {
                let read_tx = ReadTx::begin(conn)?;
                st.catch_up_locked(&self.store, conn)?;
                read_tx.end()
            })?;
        }
        st.seen_version.store(version, Ordering::SeqCst);
        if !self.store.is_read_only() {
            // Other processes' changes count toward this one's next
            // snapshot too: a process that holds the index loaded (and
            // the lease) keeps the tail short for one-shot writers.
            if let Some(mut conn) = self.store.try_writer() {
                st.maybe_snapshot(&self.store, &mut conn);
            }
        }
        if st.rebuilt_unsaved.swap(false, Ordering::SeqCst) {
            // Loading found no usable snapshot: write one now, so the next
            // open is fast (the search goes on if that fails).
            if let Err(e) = st.snapshot_if(&self.store, 1) {
                st.snapshots.locked().error = Some(e.to_string());
            }
        }
        Ok(())
    }
}

impl CollState {
    /// Replace a viewed snapshot (mapped, read-only) with an index in
    /// memory that can be saved: the snapshot loaded, then every change
    /// after it replayed from SQLite, at one read transaction's view.
    /// Runs under the writer connection and `apply`; searches go on against
    /// the old indexes meanwhile.
    pub(super) fn materialise(&self, store: &Db, conn: &mut Connection) -> Result<()> {
        let _apply = self.apply.locked();
        let config = self.config();
        let read_tx = ReadTx::begin(conn)?;
        let seq = catalogue::read_seq(conn, self.cid)?;
        let loaded = (|| -> std::result::Result<Indexes, String> {
            let dir = store.dir.as_ref().ok_or("in-memory store")?;
            let row = catalogue::snapshot_row(conn, self.cid)
                .map_err(|e| e.to_string())?
                .ok_or("no snapshot recorded")?;
            let pruned = db::changes::pruned_seq(conn, self.cid).map_err(|e| e.to_string())?;
            replayable(row.applied_seq, pruned)?;
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
                drop(ix);
                self.applied_seq.store(seq, Ordering::SeqCst);
            }
            Err(reason) => self.rebuild_locked(store, conn, &reason)?,
        }
        read_tx.end()
    }
}
