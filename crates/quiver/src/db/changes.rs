//! The change feed's rows: pages of a collection's changes in sequence
//! order, and the registered consumers whose unapplied tombstones a
//! snapshot must keep.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::records::{record_row_at, Rows};
use super::unix_now;
use crate::error::{Result, SqlContext};
use crate::record::Record;

/// One row of the feed: the record as it is now, or the id a tombstone
/// keeps (`None` for a tombstone written before the feed existed).
pub(crate) enum FeedRow {
    Upsert(Record),
    Delete(Option<String>),
}

/// Changes after position `after` (a sequence and a key: the records and
/// tombstones of one change are ordered by key), up to sequence `until`,
/// at most `limit`, in order. Each live record comes once, at the sequence
/// that last wrote it. A tombstone whose id is live again is left out: the
/// record's own later (or same) stamp supersedes it, and it may not come
/// before that stamp within a change.
pub(crate) fn page(
    conn: &Connection,
    rows: Rows<'_>,
    after: (i64, i64),
    until: i64,
    limit: usize,
) -> Result<Vec<(i64, i64, FeedRow)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, key, 0, id, vector, text, metadata, expires_at FROM records
                 WHERE cid = ?1 AND seq >= ?2 AND seq <= ?4 AND (seq > ?2 OR key > ?3)
             UNION ALL
             SELECT t.seq, t.key, 1, t.id, NULL, NULL, NULL, NULL FROM tombstones t
                 WHERE t.cid = ?1 AND t.seq >= ?2 AND t.seq <= ?4 AND (t.seq > ?2 OR t.key > ?3)
                   AND (t.id IS NULL OR NOT EXISTS
                        (SELECT 1 FROM records r WHERE r.cid = ?1 AND r.id = t.id))
             ORDER BY 1, 2 LIMIT ?5",
        )
        .during("prepare change feed")?;
    let raw = stmt
        .query_map(
            params![rows.cid, after.0, after.1, until, limit as i64],
            |r| {
                let seq: i64 = r.get(0)?;
                let key: i64 = r.get(1)?;
                let tomb: i64 = r.get(2)?;
                if tomb == 1 {
                    return Ok((seq, key, Err(r.get::<_, Option<String>>(3)?)));
                }
                Ok((seq, key, Ok(record_row_at(r, 3)?)))
            },
        )
        .during("read change feed")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .during("read change feed")?;
    raw.into_iter()
        .map(|(seq, key, row)| {
            Ok((
                seq,
                key,
                match row {
                    Ok(rec) => FeedRow::Upsert(rec.into_record(rows)?),
                    Err(id) => FeedRow::Delete(id),
                },
            ))
        })
        .collect()
}

/// The consumer `name`'s last applied sequence, if it is registered.
pub(crate) fn consumer(conn: &Connection, cid: i64, name: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT seq FROM consumers WHERE cid = ?1 AND name = ?2")
        .during("prepare consumer read")?
        .query_row(params![cid, name], |r| r.get(0))
        .optional()
        .during("read consumer")
}

/// Every consumer of the collection with its last applied sequence and
/// when it last moved (Unix seconds), by name.
pub(crate) fn consumers(conn: &Connection, cid: i64) -> Result<Vec<(String, i64, i64)>> {
    conn.prepare_cached("SELECT name, seq, updated_at FROM consumers WHERE cid = ?1 ORDER BY name")
        .during("prepare consumer list")?
        .query_map([cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .during("list consumers")?
        .collect::<rusqlite::Result<Vec<_>>>()
        .during("list consumers")
}

/// Set the consumer's last applied sequence (registering it if new), in
/// the caller's write transaction. With `exact` the sequence is set as
/// given; without, it never moves back.
pub(crate) fn set_consumer(
    tx: &Transaction<'_>,
    cid: i64,
    name: &str,
    seq: i64,
    exact: bool,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO consumers (cid, name, seq, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (cid, name) DO UPDATE
             SET seq = CASE WHEN ?5 THEN excluded.seq ELSE max(seq, excluded.seq) END,
                 updated_at = excluded.updated_at",
    )
    .during("prepare consumer write")?
    .execute(params![cid, name, seq, unix_now(), exact])
    .during("write consumer")?;
    Ok(())
}

/// Forget a consumer; returns whether it was registered.
pub(crate) fn remove_consumer(tx: &Transaction<'_>, cid: i64, name: &str) -> Result<bool> {
    let n = tx
        .prepare_cached("DELETE FROM consumers WHERE cid = ?1 AND name = ?2")
        .during("prepare consumer removal")?
        .execute(params![cid, name])
        .during("remove consumer")?;
    Ok(n > 0)
}

/// The smallest sequence any consumer has applied, if there is one: no
/// tombstone stamped after it may be pruned.
pub(crate) fn oldest_consumer(conn: &Connection, cid: i64) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT min(seq) FROM consumers WHERE cid = ?1")
        .during("prepare consumer minimum")?
        .query_row([cid], |r| r.get(0))
        .during("read consumer minimum")
}

/// Up to where the collection's tombstones are pruned: the feed has every
/// delete after it.
pub(crate) fn pruned_seq(conn: &Connection, cid: i64) -> Result<i64> {
    conn.prepare_cached("SELECT pruned_seq FROM collections WHERE cid = ?1")
        .during("prepare pruning read")?
        .query_row([cid], |r| r.get(0))
        .during("read pruning")
}
