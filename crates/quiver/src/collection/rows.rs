//! Rows of the catalogue and the records, read and decoded.

use super::*;

pub(crate) fn config_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CollectionConfig>> {
    // Columns 2..=8: dimension, metric, scalar, connectivity, expansion_add, expansion_search, model.
    let metric: String = r.get(3)?;
    let scalar: String = r.get(4)?;
    let build = || -> Result<CollectionConfig> {
        Ok(CollectionConfig {
            dimension: r.get::<_, i64>(2).during("read config")? as usize,
            metric: metric.parse()?,
            scalar: scalar.parse()?,
            connectivity: r.get::<_, i64>(5).during("read config")? as usize,
            expansion_add: r.get::<_, i64>(6).during("read config")? as usize,
            expansion_search: r.get::<_, i64>(7).during("read config")? as usize,
            model: r.get(8).during("read config")?,
        })
    };
    Ok(build())
}

pub(super) const COLLECTION_ROW: &str =
    "SELECT cid, name, dimension, metric, scalar, connectivity, expansion_add,
        expansion_search, model, seq, pruned_seq FROM collections";

pub(super) struct CollectionRow {
    pub(super) cid: i64,
    pub(super) config: CollectionConfig,
    pub(super) seq: i64,
    pub(super) pruned_seq: i64,
}

pub(super) fn read_collection(
    conn: &Connection,
    where_: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<CollectionRow>> {
    let row = conn
        .query_row(&format!("{COLLECTION_ROW} WHERE {where_}"), [arg], |r| {
            Ok((r.get(0)?, config_from_row(r)?, r.get(9)?, r.get(10)?))
        })
        .optional()
        .during("read collection")?;
    match row {
        None => Ok(None),
        Some((cid, config, seq, pruned_seq)) => Ok(Some(CollectionRow {
            cid,
            config: config?,
            seq,
            pruned_seq,
        })),
    }
}

pub(super) struct SnapshotRow {
    pub(super) info: SnapshotInfo,
    #[cfg_attr(not(feature = "usearch"), allow(dead_code))]
    pub(super) options: String,
}

pub(super) fn read_snapshot_row(conn: &Connection, cid: i64) -> Result<Option<SnapshotRow>> {
    conn.query_row(
        "SELECT digest, length, vectors, options, usearch_version, applied_seq, written_at
         FROM snapshots WHERE cid = ?1",
        [cid],
        |r| {
            Ok(SnapshotRow {
                info: SnapshotInfo {
                    digest: r.get(0)?,
                    bytes: r.get::<_, i64>(1)? as u64,
                    vectors: r.get::<_, i64>(2)? as u64,
                    usearch_version: r.get(4)?,
                    applied_seq: r.get::<_, i64>(5)? as u64,
                    written_at: r.get(6)?,
                },
                options: r.get(3)?,
            })
        },
    )
    .optional()
    .during("read snapshot record")
}

/// The options string stamped on a snapshot: what must match for it to be used.
pub(super) fn options_stamp(config: &CollectionConfig) -> String {
    format!(
        "dim={} metric={} scalar={} connectivity={}",
        config.dimension, config.metric, config.scalar, config.connectivity
    )
}

/// A read transaction: one consistent view of the database until it is
/// ended, or until it is dropped on any other way out (an error, an early
/// return), which rolls it back so the pooled connection is never left
/// inside a transaction.
pub(super) struct ReadTx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> ReadTx<'c> {
    pub(super) fn begin(conn: &'c Connection) -> Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")
            .during("begin read transaction")?;
        Ok(ReadTx { conn, open: true })
    }

    pub(super) fn end(mut self) -> Result<()> {
        self.open = false;
        self.conn
            .execute_batch("COMMIT")
            .during("end read transaction")
    }
}

impl Drop for ReadTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing was written; if even this fails, SQLite ends the
            // transaction when the connection is next used or closed.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// The collection's last committed sequence number.
pub(super) fn read_seq(conn: &Connection, cid: i64) -> Result<i64> {
    conn.prepare_cached("SELECT seq FROM collections WHERE cid = ?1")
        .during("prepare sequence read")?
        .query_row([cid], |r| r.get(0))
        .during("read sequence")
}

pub(super) fn parse_metadata(
    collection: &str,
    id: &str,
    text: Option<String>,
) -> Result<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| Error::Corrupt {
            collection: collection.into(),
            reason: format!("record {id:?} has unreadable metadata: {e}"),
        })
    })
    .transpose()
}

/// Changes stamped after sequence `after`: records written and tombstones
/// left. What a load replays, and what a snapshot does not hold yet.
pub(super) fn tail_len(conn: &Connection, cid: i64, after: i64) -> Result<u64> {
    let n: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM tombstones WHERE cid = ?1 AND seq > ?2)
                  + (SELECT count(*) FROM records WHERE cid = ?1 AND seq > ?2)",
            params![cid, after],
            |r| r.get(0),
        )
        .during("count tail")?;
    Ok(n as u64)
}

/// The columns of a whole record, in the order [`record_row`] reads them.
pub(super) const RECORD_COLUMNS: &str = "id, vector, text, metadata";

/// A record's columns as SQLite returned them ([`RECORD_COLUMNS`]).
pub(super) struct RecordRow {
    id: String,
    vector: Vec<u8>,
    text: Option<String>,
    metadata: Option<String>,
}

/// Read a row selected with [`RECORD_COLUMNS`].
pub(super) fn record_row(r: &Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: r.get(0)?,
        vector: r.get(1)?,
        text: r.get(2)?,
        metadata: r.get(3)?,
    })
}

impl RecordRow {
    /// Decode into a [`Record`]; a damaged vector or metadata is
    /// [`Error::Corrupt`].
    pub(super) fn into_record(self, collection: &str, dim: usize) -> Result<Record> {
        let id = self.id;
        Ok(Record {
            vector: record::decode_stored(collection, format_args!("{id:?}"), &self.vector, dim)?,
            metadata: parse_metadata(collection, &id, self.metadata)?,
            id,
            text: self.text,
        })
    }
}
