//! Bulk loads: batch N+1 committed while batch N goes into the index.

use super::*;

/// A bulk load into one collection, from [`Collection::bulk`].
///
/// Each [`Bulk::upsert`] commits its batch in its own transaction, exactly
/// as [`Collection::upsert`] does, and returns once the batch is durable.
/// The batch then goes into the index on other threads while the caller
/// prepares and commits the next one, so SQLite's work and its fsync
/// overlap the index's. A batch is in the index (and searches find it) by
/// the time the next `upsert` or [`Bulk::finish`] returns. A crash at any
/// point loses no committed batch: the next open replays what the index
/// had not taken, as after any write.
///
/// This process's writer connection is held until the `Bulk` is finished
/// or dropped: other threads' writes wait. The store's writer lock is
/// taken for each batch's transaction only, so other processes' writes go
/// in between batches, each waiting at most about one batch. Dropping it without `finish` still completes the
/// last batch, but an error doing so is then only kept for
/// [`Collection::info`].
///
/// ```no_run
/// # fn main() -> quiver::Result<()> {
/// # let store = quiver::Store::open("store")?;
/// # let coll = store.get_collection("docs")?;
/// # let batches: Vec<Vec<quiver::Record>> = Vec::new();
/// let mut bulk = coll.bulk()?;
/// for batch in &batches {
///     bulk.upsert(batch)?; // durable here
/// }
/// bulk.finish()?; // every batch searchable here
/// # Ok(())
/// # }
/// ```
pub struct Bulk<'a> {
    coll: &'a Collection,
    conn: MutexGuard<'a, Connection>,
    adding: Option<Adding>,
}

/// A committed batch being added to the index on its own thread.
pub(super) struct Adding {
    changes: u64,
    ids: Vec<(u64, String)>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Bulk<'_> {
    /// Validate and commit one batch, as [`Collection::upsert`]; returns
    /// its sequence number once it is durable. The previous batch is then
    /// in the index.
    ///
    /// # Errors
    /// As [`Collection::upsert`]. On an error this batch is not written;
    /// the batches before it are committed and in the index.
    pub fn upsert(&mut self, records: &[Record]) -> Result<u64> {
        let coll = self.coll;
        let committed = coll
            .check_batch(records)
            .and_then(|()| coll.alive())
            .and_then(|()| coll.commit_upsert(&mut self.conn, records));
        // Whatever happened to this batch, the one before it is finished.
        let rebuilt = self.settle()?;
        let c = committed?;
        if rebuilt {
            // The rebuild read SQLite after this batch committed.
            coll.cache_ids(c.ids);
            return Ok(c.seq as u64);
        }
        let (state, store) = (Arc::clone(&coll.state), Arc::clone(&coll.store));
        let upserts = c.upserts;
        let changes = upserts.len() as u64;
        let seq = c.seq;
        let thread = std::thread::Builder::new()
            .name("quiver-bulk".into())
            .spawn(move || state.apply_own(&store, seq, &upserts, &[]))
            .map_err(|e| Error::io("start a bulk-load thread", "", e))?;
        self.adding = Some(Adding {
            changes,
            ids: c.ids,
            thread,
        });
        Ok(c.seq as u64)
    }

    /// Wait for the last batch to be in the index.
    ///
    /// # Errors
    /// SQLite, I/O and index failures (adding the batch failed and so did
    /// the rebuild that follows such a failure).
    pub fn finish(mut self) -> Result<()> {
        self.settle().map(|_| ())
    }

    /// Wait for the batch being added, then record it as applied (or
    /// rebuild the index if adding it failed). True after a rebuild.
    fn settle(&mut self) -> Result<bool> {
        let Some(a) = self.adding.take() else {
            return Ok(false);
        };
        let coll = self.coll;
        let added = a.thread.join().unwrap_or_else(|_| {
            Err(index_err(
                &coll.state.name,
                "add",
                "the bulk-load thread panicked".into(),
            ))
        });
        let rebuilt = coll.after_apply(&mut self.conn, a.changes, added)?;
        coll.cache_ids(a.ids);
        Ok(rebuilt)
    }
}

impl Drop for Bulk<'_> {
    fn drop(&mut self) {
        let settled = self.settle();
        let mut snapshots = self.coll.state.snapshots.locked();
        if let Err(e) = settled {
            snapshots.error = Some(e.to_string());
        }
        snapshots.bulk_loading = false;
        // A snapshot still being written hands its buffer back to no one.
        snapshots.spare = None;
    }
}

impl Collection {
    /// Start a bulk load: batches committed one by one as [`Collection::upsert`]
    /// commits them, each going into the index while the next is written
    /// to SQLite. See [`Bulk`].
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Dropped`].
    pub fn bulk(&self) -> Result<Bulk<'_>> {
        // A bulk load builds the index as it goes: load it first.
        self.refresh()?;
        self.purge_expired()?;
        let conn = self.store.writer("upsert")?;
        self.alive()?;
        self.state.snapshots.locked().bulk_loading = true;
        Ok(Bulk {
            coll: self,
            conn,
            adding: None,
        })
    }
}
