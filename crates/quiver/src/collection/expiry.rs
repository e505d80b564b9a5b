//! Record expiry: which records a read must hide (expired, not yet
//! purged), and the purge itself, a delete like any other (tombstones, the
//! change feed), run before each write and by `compact`.

use std::collections::HashSet;

use super::*;

impl Collection {
    /// Keys of the records expired by now and not yet purged, which reads
    /// must hide. Usually none, known without a query: the earliest expiry
    /// is cached until the collection changes.
    pub(super) fn expired_now(&self) -> Result<HashSet<u64>> {
        let now = self.now();
        let seq = self.state.applied_seq.load(Ordering::SeqCst);
        let cached = *self.state.expiry.locked();
        if cached.seq == seq && cached.next.is_none_or(|next| next > now) {
            return Ok(HashSet::new());
        }
        let cid = self.state.cid;
        let (next, keys) = self.store.read(|conn| {
            Ok((
                records::next_expiry(conn, cid)?,
                records::expired_keys(conn, cid, now)?,
            ))
        })?;
        // Read after `seq` was: at least as new, so safe to keep for it.
        *self.state.expiry.locked() = ExpiryCache { seq, next };
        Ok(keys.into_iter().collect())
    }

    /// Delete the records expired by now, in one delete transaction of
    /// their own (tombstones and all); returns how many. A read-only store
    /// purges nothing (its reads hide them all the same).
    pub(super) fn purge_expired(&self) -> Result<usize> {
        if self.store.is_read_only() {
            return Ok(0);
        }
        let now = self.now();
        let cid = self.state.cid;
        let due = self
            .store
            .read(|conn| records::expired_keys(conn, cid, now))?;
        if due.is_empty() {
            return Ok(0);
        }
        self.delete_keys(|tx, cid| records::delete_expired(tx, cid, now))
    }
}

/// `options` asking for `hidden.len()` more hits, to make up for hidden
/// ones dropped afterwards ([`visible`]).
pub(super) fn widened(options: &SearchOptions, hidden: &HashSet<u64>) -> SearchOptions {
    SearchOptions {
        k: options.k + hidden.len(),
        ..options.clone()
    }
}

/// `found` without the hidden keys, at most `k`.
pub(super) fn visible<T>(
    mut found: Vec<(u64, f32, T)>,
    hidden: &HashSet<u64>,
    k: usize,
) -> Vec<(u64, f32, T)> {
    if !hidden.is_empty() {
        found.retain(|(key, _, _)| !hidden.contains(key));
    }
    found.truncate(k);
    found
}
