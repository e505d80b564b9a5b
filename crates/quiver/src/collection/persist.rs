//! Snapshots: serialise under the writer, write on a thread, install and
//! record under the store's writer lock, so one process at a time puts a
//! snapshot in place and never an older one over a newer.

use super::*;

impl CollState {
    /// Write a snapshot of the index and record it. The caller holds the
    /// writer connection, so no write runs meanwhile. A background snapshot
    /// still being written is waited for and installed first.
    pub(super) fn snapshot(&self, store: &Db, conn: &mut Connection) -> Result<()> {
        let Some(dir) = &store.dir else {
            return Ok(());
        };
        if !self.is_loaded() {
            return Ok(());
        }
        if !Indexes::HAS_GRAPH {
            return self.prune_without_snapshot(store, conn);
        }
        self.install_staged(store, conn, true);
        let options = snapshot::options_stamp(&self.config());
        let (bytes, applied, vectors) = self.serialise(store, conn)?;
        let tmp = snapshot::temp_path(dir, self.cid);
        snapshot::write_temp(dir, &tmp, &bytes)?;
        let file = Written {
            tmp,
            digest: snapshot::digest(&bytes),
            length: bytes.len(),
            bytes: Vec::new(),
        };
        self.install(store, conn, &file, vectors, &options, applied)?;
        let mut snapshots = self.snapshots.locked();
        snapshots.pending = 0;
        snapshots.pending_since = None;
        snapshots.error = None;
        Ok(())
    }

    /// Built without usearch there is nothing to snapshot (the exact index
    /// loads from SQLite), but the tombstones a snapshot would cover are
    /// pruned all the same, so they do not pile up: another process's
    /// index then reloads on its next catch-up, as after a snapshot.
    fn prune_without_snapshot(&self, store: &Db, conn: &mut Connection) -> Result<()> {
        let applied = self.applied_seq.load(Ordering::SeqCst);
        let tx = store.write_tx(conn, "prune tombstones")?;
        catalogue::prune_tombstones(&tx, self.cid, applied)?;
        tx.commit("prune tombstones")?;
        let mut snapshots = self.snapshots.locked();
        snapshots.pending = 0;
        snapshots.pending_since = None;
        snapshots.error = None;
        Ok(())
    }

    /// The index as snapshot bytes, the sequence they hold and their vector
    /// count. A viewed (mapped) snapshot is materialised first.
    pub(super) fn serialise(
        &self,
        store: &Db,
        conn: &mut Connection,
    ) -> Result<(Vec<u8>, i64, usize)> {
        if self.indexes.read_lock().is_viewed() {
            self.materialise(store, conn)?;
        }
        // Nothing changes the index from here to the bytes: this
        // process's writers are held off by the writer connection, and
        // catch-ups (other processes' changes) by `apply`. usearch must
        // not save while it adds.
        let _apply = self.apply.locked();
        self.relink_unreached(conn)?;
        let applied = self.applied_seq.load(Ordering::SeqCst);
        let spare = self.snapshots.locked().spare.take();
        let (bytes, vectors) = self
            .indexes
            .read_lock()
            .to_bytes(spare)
            .map_err(|m| index_err(&self.name, "serialise snapshot", m))?;
        Ok((bytes, applied, vectors))
    }

    /// [`relink`] this collection's index. The caller holds the writer
    /// and `apply`. Returns how many nodes were added again.
    pub(super) fn relink_unreached(&self, conn: &Connection) -> Result<usize> {
        relink(conn, self.rows(), &self.indexes)
    }

    /// Start a snapshot in the background: the index is serialised here,
    /// under the writer, and a thread writes and fsyncs the bytes to the
    /// staged file (hashing them on the way), so the writer goes on with
    /// the next batch. A later write, `flush` or `close` installs it with
    /// [`CollState::install_staged`]. Until then the live snapshot and its
    /// record are untouched: a crash leaves them and a longer tail.
    pub(super) fn stage(&self, store: &Db, conn: &mut Connection) -> Result<()> {
        let Some(dir) = store.dir.clone() else {
            return Ok(());
        };
        if !self.is_loaded() {
            return Ok(());
        }
        if !Indexes::HAS_GRAPH {
            return self.prune_without_snapshot(store, conn);
        }
        let options = snapshot::options_stamp(&self.config());
        let (bytes, applied, vectors) = self.serialise(store, conn)?;
        let changes = self.snapshots.locked().pending;
        let tmp = snapshot::temp_path(&dir, self.cid);
        let index_dir = snapshot::index_dir(&dir);
        let thread_tmp = tmp.clone();
        let thread = std::thread::Builder::new()
            .name("quiver-snapshot".into())
            .spawn(move || {
                let tmp = thread_tmp;
                snapshot::write_temp(&dir, &tmp, &bytes)?;
                Ok(Written {
                    tmp,
                    digest: snapshot::digest(&bytes),
                    length: bytes.len(),
                    bytes,
                })
            })
            .map_err(|e| Error::io("start a snapshot thread", index_dir, e))?;
        self.snapshots.locked().staged = Some(Staged {
            thread,
            tmp,
            applied,
            changes,
            vectors,
            options,
        });
        Ok(())
    }

    /// Install the background snapshot if its thread has finished (or, with
    /// `wait`, once it has): rename it over the live file and record it.
    /// The caller holds the writer. A failure is kept for `info`; the
    /// changes stay pending, so a later snapshot covers them. Returns true
    /// while one is still being written (only without `wait`).
    pub(super) fn install_staged(&self, store: &Db, conn: &mut Connection, wait: bool) -> bool {
        let staged = {
            let mut snapshots = self.snapshots.locked();
            let slot = &mut snapshots.staged;
            match slot.take() {
                Some(s) if wait || s.thread.is_finished() => s,
                other => {
                    let busy = other.is_some();
                    *slot = other;
                    return busy;
                }
            }
        };
        let staged_path = staged.tmp.clone();
        let written = staged.thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                "write a snapshot",
                &staged_path,
                std::io::Error::other("the snapshot thread panicked"),
            ))
        });
        let written = written.map(|mut w| {
            let mut snapshots = self.snapshots.locked();
            if snapshots.bulk_loading {
                snapshots.spare = Some(std::mem::take(&mut w.bytes));
            }
            w
        });
        let installed = written.and_then(|w| {
            self.install(
                store,
                conn,
                &w,
                staged.vectors,
                &staged.options,
                staged.applied,
            )
        });
        let mut snapshots = self.snapshots.locked();
        match installed {
            Ok(_) => {
                let left = snapshots.pending.saturating_sub(staged.changes);
                snapshots.pending = left;
                // The oldest change left is younger than the snapshot.
                snapshots.pending_since = (left > 0).then(Instant::now);
                snapshots.error = None;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&staged_path);
                snapshots.error = Some(e.to_string());
            }
        }
        false
    }

    /// Wait for a background snapshot and throw it away (the collection is
    /// being dropped).
    pub(crate) fn discard_staged(&self) {
        let staged = self.snapshots.locked().staged.take();
        if let Some(s) = staged {
            if let Ok(Ok(w)) = s.thread.join() {
                let _ = std::fs::remove_file(w.tmp);
            }
        }
    }

    /// Put a written snapshot file in place and record it (pruning the
    /// tombstones it covers), in one write transaction under the store's
    /// writer lock. If the catalogue already records a newer snapshot
    /// (another process's), or the collection's settings moved on or it
    /// was dropped, the file is thrown away instead: installing an older
    /// snapshot would need tombstones the newer one pruned. Returns
    /// whether it was installed.
    pub(super) fn install(
        &self,
        store: &Db,
        conn: &mut Connection,
        file: &Written,
        vectors: usize,
        options: &str,
        applied: i64,
    ) -> Result<bool> {
        let dir = store
            .dir
            .as_ref()
            .expect("snapshots are written on disk only");
        let tx = store.write_tx(conn, "snapshot record")?;
        let current = catalogue::by_cid(&tx, self.cid)?;
        let recorded = catalogue::snapshot_row(&tx, self.cid)?;
        let superseded = match &current {
            None => true,
            Some(row) => {
                snapshot::options_stamp(&row.config) != options
                    || recorded.is_some_and(|r| r.options == options && r.applied_seq > applied)
                    // Tombstones after it are gone: it could not be replayed.
                    || row.pruned_seq > applied
            }
        };
        if superseded {
            drop(tx);
            let _ = std::fs::remove_file(&file.tmp);
            return Ok(false);
        }
        snapshot::install(dir, self.cid, &file.tmp)?;
        failpoint!("snapshot:after-rename");
        let row = catalogue::SnapshotRow {
            digest: file.digest.clone(),
            length: file.length as u64,
            vectors: vectors as u64,
            options: options.into(),
            usearch_version: index::engine_version().into(),
            applied_seq: applied,
            written_at: unix_now(),
        };
        catalogue::record_snapshot(&tx, self.cid, &row)?;
        tx.commit("snapshot record")?;
        Ok(true)
    }

    /// Install a background snapshot, waiting for it; then snapshot if at
    /// least `min` changes (and at least one) are not in the snapshot:
    /// counted by this process when its indexes are loaded, else read from
    /// SQLite (and the indexes loaded to write it).
    pub(crate) fn snapshot_if(&self, store: &Db, min: u64) -> Result<()> {
        let mut conn = store.writer("snapshot")?;
        if self.dropped.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.install_staged(store, &mut conn, true);
        if !self.is_loaded() {
            if self.unsnapshotted(&conn)? < min.max(1) {
                return Ok(());
            }
            self.load_under_writer(store, &conn)?;
        }
        let pending = self.snapshots.locked().pending;
        if pending >= min.max(1) {
            self.snapshot(store, &mut conn)?;
        }
        Ok(())
    }

    /// What the last handle on a store does: [`CollState::snapshot_if`],
    /// but only when no other process committed to the collection since
    /// this one last wrote or caught up. While another process writes (an
    /// import, say) it snapshots on its own schedule, and a one-record
    /// `quiver upsert` beside it must not rewrite the whole index.
    pub(crate) fn close_snapshot(&self, store: &Db, min: u64) -> Result<()> {
        if self.is_dropped() || store.dir.is_none() {
            return Ok(());
        }
        let seq = match store.read(|conn| catalogue::by_cid(conn, self.cid))? {
            Some(row) => row.seq,
            None => return Ok(()),
        };
        let last = if self.is_loaded() {
            self.applied_seq.load(Ordering::SeqCst)
        } else {
            self.own_committed.load(Ordering::SeqCst)
        };
        // Not loaded here, and some handle has it loaded: that one
        // snapshots it, without this process loading the whole index;
        // unless the tail has grown to twice what would have made that
        // one snapshot (it sits idle, searching nothing).
        let defer = seq != last
            || (!self.is_loaded() && store.leased(self.cid)? && !self.overdue(store)?);
        if defer {
            // Still install what this process staged, if anything.
            if self.snapshots.locked().staged.is_some() {
                let mut conn = store.writer("snapshot")?;
                self.install_staged(store, &mut conn, true);
            }
            return Ok(());
        }
        self.snapshot_if(store, min)
    }

    /// Whether the changes not in the recorded snapshot reach twice the
    /// automatic snapshot threshold (max(`snapshot_every_changes`, a
    /// quarter of the records)).
    fn overdue(&self, store: &Db) -> Result<bool> {
        store.read(|conn| {
            let tail = self.unsnapshotted(conn)?;
            let records = records::count(conn, self.cid, None)?;
            Ok(tail >= 2 * store.options.snapshot_every_changes.max(records / 4))
        })
    }

    /// Changes (record versions and tombstones) not in the recorded snapshot.
    fn unsnapshotted(&self, conn: &Connection) -> Result<u64> {
        let after = catalogue::snapshot_row(conn, self.cid)?.map_or(-1, |r| r.applied_seq);
        catalogue::tail_len(conn, self.cid, after)
    }

    /// Load the indexes, holding the writer connection `conn`.
    fn load_under_writer(&self, store: &Db, conn: &Connection) -> Result<()> {
        let _apply = self.apply.locked();
        let read_tx = ReadTx::begin(conn)?;
        self.catch_up_locked(store, conn)?;
        read_tx.end()
    }

    /// After a write: install a finished background snapshot, and start
    /// one when the tail has grown past the threshold and none is being
    /// written. The threshold grows with the collection (a quarter of its
    /// slots), so the bytes written by snapshots stay proportional to the
    /// bytes ingested.
    pub(super) fn maybe_snapshot(&self, store: &Db, conn: &mut Connection) {
        if self.install_staged(store, conn, false) {
            return;
        }
        let (pending, since) = {
            let snapshots = self.snapshots.locked();
            (snapshots.pending, snapshots.pending_since)
        };
        if pending == 0 {
            return;
        }
        let slots = self.indexes.read_lock().slots() as u64;
        let by_count = pending >= store.options.snapshot_every_changes.max(slots / 4);
        let by_age =
            since.is_some_and(|t| t.elapsed().as_secs() >= store.options.snapshot_every_secs);
        if by_count || by_age {
            // The write itself is committed; a failed snapshot only means a
            // longer replay later. Keep the error for `info`.
            if let Err(e) = self.stage(store, conn) {
                self.snapshots.locked().error = Some(e.to_string());
            }
        }
    }
}

impl Collection {
    /// Snapshot the index now if it has changes not in the snapshot.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], I/O and SQLite failures.
    pub fn flush(&self) -> Result<()> {
        self.alive()?;
        self.state.snapshot_if(&self.store, 1)
    }
}

/// Add again, one at a time, the live nodes no search can reach. The write
/// path checks each parallel add, but a node shown reachable then can lose
/// its last in-link later, when usearch prunes a neighbour's list for a
/// newer node: an exact count after a 1M ingest found 2 (usearch's own
/// build: 11). So this runs before every snapshot and after every replay
/// or rebuild of many records (`load::RELINK_AFTER`). A walk of the links
/// (`HnswIndex::walk`) finds them; only when it reaches fewer live nodes
/// than the index holds are the collection's keys read to name them. The
/// caller keeps the keys and the index still: the writer or a read
/// transaction, and `apply` (or sole ownership of `lock`). A node added
/// again can itself, by pruning a neighbour's list, take another's last
/// in-link, so the walk is made again after each round that added any
/// (at most [`RELINK_ROUNDS`]). Returns how many were added again.
pub(super) fn relink(conn: &Connection, rows: Rows<'_>, lock: &RwLock<Indexes>) -> Result<usize> {
    let mut added = 0;
    for _ in 0..RELINK_ROUNDS {
        match relink_once(conn, rows, lock)? {
            0 => break,
            n => added += n,
        }
    }
    Ok(added)
}

/// Rounds of [`relink`]; one is almost always enough (a 1M bf16 ingest
/// was once left with one node unreachable after it).
const RELINK_ROUNDS: usize = 4;

fn relink_once(conn: &Connection, rows: Rows<'_>, lock: &RwLock<Indexes>) -> Result<usize> {
    let lost: Vec<u64> = {
        let ix = lock.read_lock();
        if ix.unreached(std::iter::empty()).is_none() {
            return Ok(0);
        }
        let mut keys = Vec::new();
        records::for_each_key(conn, rows.cid, |key| keys.push(key))?;
        ix.unreached(keys.into_iter()).unwrap_or_default()
    };
    if lost.is_empty() {
        return Ok(0);
    }
    let mut vectors = records::VectorLookup::new(conn, rows)?;
    let mut upserts = Vec::with_capacity(lost.len());
    for key in lost {
        if let Some(v) = vectors.get(key)? {
            upserts.push((key, v));
        }
    }
    // A handful: `apply` adds them one at a time (checked, were there many).
    apply(lock, rows.name, &upserts, &[])?;
    Ok(upserts.len())
}
