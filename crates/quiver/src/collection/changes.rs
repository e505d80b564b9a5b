//! The change feed: a collection's changes in sequence order, and the
//! named consumers that keep the tombstones they have not applied.
//!
//! The feed is the state after each change, not a history of versions: a
//! record written three times since `since` comes once, at the sequence
//! that last wrote it, as it is now. Applying the feed in order to a copy
//! that was equal at `since` makes it equal at [`Changes::until`].

use super::*;
use crate::db::changes::{self, FeedRow};
use std::collections::VecDeque;

/// Changes read from SQLite per page.
const PAGE: usize = 1024;

/// Longest consumer name, in bytes.
pub const MAX_CONSUMER_NAME: usize = 512;

/// One change of the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The record was written (inserted, replaced or updated); this is
    /// how it is now.
    Upsert(Record),
    /// The record with this id was deleted.
    Delete(String),
}

impl Change {
    /// The id of the record changed.
    pub fn id(&self) -> &str {
        match self {
            Change::Upsert(r) => &r.id,
            Change::Delete(id) => id,
        }
    }
}

/// A consumer of the change feed, as [`Collection::consumers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// The last sequence it acknowledged: tombstones after it are kept.
    pub seq: u64,
    /// When it last registered or acknowledged (Unix seconds).
    pub updated_at: i64,
}

/// The changes after a sequence number, in order: see
/// [`Collection::changes`]. Each item is the sequence that made the change
/// and the change.
pub struct Changes<'c> {
    coll: &'c Collection,
    since: i64,
    /// The last change handed out: its sequence and key.
    at: (i64, i64),
    until: i64,
    buffer: VecDeque<(u64, Change)>,
    done: bool,
}

impl Changes<'_> {
    /// The last committed sequence when the feed was opened: the feed ends
    /// there, and a consumer that applied all of it is at this sequence.
    pub fn until(&self) -> u64 {
        self.until as u64
    }

    fn fill(&mut self) -> Result<()> {
        let coll = self.coll;
        let rows = coll.rows();
        let (at, until) = (self.at, self.until);
        let page = coll.store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
            let pruned = changes::pruned_seq(conn, rows.cid)?;
            // Pruned past where the feed is, or up to a sequence it is in
            // the middle of (a page ended inside one change): deletes may
            // be gone.
            let inside = at.1 != i64::MAX;
            if at.0 > 0 && (pruned > at.0 || (pruned == at.0 && inside)) {
                return Err(coll.pruned(at.0, pruned));
            }
            let page = changes::page(conn, rows, at, until, PAGE)?;
            read_tx.end()?;
            Ok(page)
        })?;
        let last_page = page.len() < PAGE;
        // Handed out only once the whole page checked out.
        let mut got = Vec::with_capacity(page.len());
        let mut at = self.at;
        for (seq, key, row) in page {
            at = (seq, key);
            let change = match row {
                FeedRow::Upsert(r) => Change::Upsert(r),
                FeedRow::Delete(Some(id)) => Change::Delete(id),
                // Written before the store had a change feed: which record
                // it was is not known. A feed from 0 has no use for it (the
                // record was gone before the feed began).
                FeedRow::Delete(None) if self.since == 0 => continue,
                FeedRow::Delete(None) => return Err(coll.pruned(self.since, seq)),
            };
            got.push((seq as u64, change));
        }
        self.at = at;
        self.done = last_page;
        self.buffer.extend(got);
        Ok(())
    }
}

impl Iterator for Changes<'_> {
    type Item = Result<(u64, Change)>;

    fn next(&mut self) -> Option<Self::Item> {
        // A page can hand out nothing (only tombstones from before the
        // feed existed): read on until something or the end.
        while self.buffer.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl Collection {
    /// The changes committed after sequence `since` up to the last one
    /// committed now ([`Changes::until`]), in sequence order, read a page
    /// at a time (each page one consistent read; writes committed while
    /// it is read come at their new sequence, after `until`, so the next
    /// feed from `until` has them).
    ///
    /// `since` 0 is every record, for a consumer that starts empty: it
    /// needs no deletes from before it began, so it never fails at the
    /// start. A delete is given only when the record is not live again; a
    /// record deleted and written again since comes once, as an upsert.
    ///
    /// # Errors
    /// [`Error::ChangesPruned`] when a snapshot pruned tombstones after
    /// `since` (at the start, or, after the first change, while the feed
    /// is read): the deletes since
    /// then are not all known, and a consumer must copy the collection
    /// whole. Register a consumer ([`Collection::register_consumer`]) so
    /// that this cannot happen. SQLite failures, [`Error::Corrupt`].
    pub fn changes(&self, since: u64) -> Result<Changes<'_>> {
        self.alive()?;
        let since = to_seq(since)?;
        let cid = self.state.cid;
        let (pruned, seq) = self.store.read(|conn| {
            let read_tx = ReadTx::begin(conn)?;
            let pruned = changes::pruned_seq(conn, cid)?;
            let seq = catalogue::read_seq(conn, cid)?;
            read_tx.end()?;
            Ok((pruned, seq))
        })?;
        // From 0, deletes do not matter: the consumer starts empty.
        if since > 0 && pruned > since {
            return Err(self.pruned(since, pruned));
        }
        Ok(Changes {
            coll: self,
            since,
            at: (since, i64::MAX),
            until: seq,
            buffer: VecDeque::new(),
            done: since >= seq,
        })
    }

    /// The last committed sequence number.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn seq(&self) -> Result<u64> {
        self.alive()?;
        let cid = self.state.cid;
        let seq = self.store.read(|conn| catalogue::read_seq(conn, cid))?;
        Ok(seq as u64)
    }

    /// Register the change-feed consumer `name` as having applied every
    /// change up to `seq` (or move a registered one there, back or
    /// forward): from now on no snapshot prunes a tombstone after the
    /// sequence it last acknowledged.
    ///
    /// # Errors
    /// [`Error::ChangesPruned`] when tombstones after `seq` are already
    /// pruned; [`Error::InvalidArgument`] for an empty or over-long name or
    /// a sequence not yet committed; [`Error::ReadOnly`]; SQLite failures.
    pub fn register_consumer(&self, name: &str, seq: u64) -> Result<()> {
        self.move_consumer(name, seq, true)
    }

    /// Record that consumer `name` has applied every change up to `seq`,
    /// which lets snapshots prune the tombstones up to it. A sequence
    /// below the one acknowledged before changes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a consumer not registered or a
    /// sequence not yet committed; [`Error::ReadOnly`]; SQLite failures.
    pub fn acknowledge(&self, name: &str, seq: u64) -> Result<()> {
        self.move_consumer(name, seq, false)
    }

    /// The last sequence consumer `name` acknowledged, if it is registered.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn consumer(&self, name: &str) -> Result<Option<u64>> {
        self.alive()?;
        let cid = self.state.cid;
        let seq = self.store.read(|conn| changes::consumer(conn, cid, name))?;
        Ok(seq.map(|s| s as u64))
    }

    /// The registered consumers, by name.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        self.alive()?;
        let cid = self.state.cid;
        let all = self.store.read(|conn| changes::consumers(conn, cid))?;
        Ok(all
            .into_iter()
            .map(|(name, seq, updated_at)| ConsumerInfo {
                name,
                seq: seq as u64,
                updated_at,
            })
            .collect())
    }

    /// Forget consumer `name`, so that its tombstones can be pruned.
    /// Returns whether it was registered.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; SQLite failures.
    pub fn remove_consumer(&self, name: &str) -> Result<bool> {
        let mut conn = self.store.writer("remove consumer")?;
        self.alive()?;
        let tx = self.store.write_tx(&mut conn, "remove consumer")?;
        let removed = changes::remove_consumer(&tx, self.state.cid, name)?;
        tx.commit("remove consumer")?;
        Ok(removed)
    }

    fn move_consumer(&self, name: &str, seq: u64, register: bool) -> Result<()> {
        if name.is_empty() || name.len() > MAX_CONSUMER_NAME {
            return Err(Error::arg(format!(
                "a consumer name must be 1 to {MAX_CONSUMER_NAME} bytes"
            )));
        }
        let seq = to_seq(seq)?;
        let operation = if register {
            "register consumer"
        } else {
            "acknowledge"
        };
        let mut conn = self.store.writer(operation)?;
        self.alive()?;
        let cid = self.state.cid;
        let tx = self.store.write_tx(&mut conn, operation)?;
        let last = catalogue::read_seq(&tx, cid)?;
        if seq > last {
            return Err(Error::arg(format!(
                "collection {:?} has committed up to sequence {last}, not {seq}",
                self.state.name
            )));
        }
        let known = changes::consumer(&tx, cid, name)?;
        if register {
            let pruned = changes::pruned_seq(&tx, cid)?;
            if seq > 0 && pruned > seq {
                return Err(self.pruned(seq, pruned));
            }
        } else if known.is_none() {
            return Err(Error::arg(format!(
                "collection {:?} has no consumer {name:?}",
                self.state.name
            )));
        }
        changes::set_consumer(&tx, cid, name, seq, register)?;
        tx.commit(operation)?;
        Ok(())
    }

    fn pruned(&self, since: i64, pruned: i64) -> Error {
        Error::ChangesPruned {
            collection: self.state.name.clone(),
            since: since as u64,
            pruned: pruned as u64,
        }
    }
}

fn to_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::arg(format!("sequence {seq} is out of range")))
}
