//! Catalogue rows: collections (settings, sequence numbers), their
//! snapshot records and field indexes, and the counts of their tails.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::schema;
use super::unix_now;
use crate::config::{CollectionConfig, Metric};
use crate::error::{Result, SqlContext};

/// A collection's row.
pub(crate) struct CollectionRow {
    pub(crate) cid: i64,
    pub(crate) config: CollectionConfig,
    /// The last committed sequence number.
    pub(crate) seq: i64,
    /// Tombstones stamped up to here are pruned.
    pub(crate) pruned_seq: i64,
}

/// A collection as [`list`] shows it.
pub(crate) struct Listed {
    pub(crate) name: String,
    pub(crate) config: CollectionConfig,
    pub(crate) seq: i64,
    pub(crate) count: i64,
}

/// What a collection's snapshot record says.
pub(crate) struct SnapshotRow {
    pub(crate) digest: String,
    pub(crate) length: u64,
    pub(crate) vectors: u64,
    /// The options stamp: what must match for the file to be used.
    pub(crate) options: String,
    pub(crate) usearch_version: String,
    pub(crate) applied_seq: i64,
    pub(crate) written_at: i64,
}

/// Columns 2..=8: dimension, metric, scalar, connectivity, expansion_add,
/// expansion_search, model; column 11: tokenizer; 12: the model binding
/// (JSON). A setting SQLite holds but this build cannot read is the inner
/// error.
fn config_from_row(r: &Row<'_>) -> rusqlite::Result<Result<CollectionConfig>> {
    let metric: String = r.get(3)?;
    let scalar: String = r.get(4)?;
    let tokenizer: String = r.get(11)?;
    let embedding: Option<String> = r.get(12)?;
    let build = || -> Result<CollectionConfig> {
        let embedding = match embedding {
            None => None,
            Some(json) => {
                Some(
                    serde_json::from_str(&json).map_err(|e| crate::Error::InvalidConfig {
                        reason: format!("the stored model binding is unreadable: {e}"),
                    })?,
                )
            }
        };
        Ok(CollectionConfig {
            dimension: r.get::<_, i64>(2).during("read config")? as usize,
            metric: Metric::from_column(&metric)?,
            scalar: scalar.parse()?,
            connectivity: r.get::<_, i64>(5).during("read config")? as usize,
            expansion_add: r.get::<_, i64>(6).during("read config")? as usize,
            expansion_search: r.get::<_, i64>(7).during("read config")? as usize,
            model: r.get(8).during("read config")?,
            embedding,
            tokenizer: tokenizer.parse()?,
        })
    };
    Ok(build())
}

const COLLECTION_ROW: &str =
    "SELECT cid, name, dimension, metric, scalar, connectivity, expansion_add,
        expansion_search, model, seq, pruned_seq, tokenizer, embedding FROM collections";

fn read_collection(
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

/// The collection named `name`, if there is one.
pub(crate) fn by_name(conn: &Connection, name: &str) -> Result<Option<CollectionRow>> {
    read_collection(conn, "name = ?1", &name)
}

/// Collection `cid`, if it still exists.
pub(crate) fn by_cid(conn: &Connection, cid: i64) -> Result<Option<CollectionRow>> {
    read_collection(conn, "cid = ?1", &cid)
}

/// Every collection with its record count, by name.
pub(crate) fn list(conn: &Connection) -> Result<Vec<Listed>> {
    let mut stmt = conn
        .prepare(
            "SELECT c.cid, c.name, c.dimension, c.metric, c.scalar, c.connectivity,
                    c.expansion_add, c.expansion_search, c.model, c.seq,
                    (SELECT count(*) FROM records r WHERE r.cid = c.cid), c.tokenizer,
                    c.embedding
             FROM collections c ORDER BY c.name",
        )
        .during("list collections")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                config_from_row(r)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
            ))
        })
        .during("list collections")?;
    let mut out = Vec::new();
    for row in rows {
        let (config, name, seq, count) = row.during("list collections")?;
        out.push(Listed {
            name,
            config: config?,
            seq,
            count,
        });
    }
    Ok(out)
}

/// Create a collection and its full-text table, in the caller's write
/// transaction. Returns its cid, or `None` if the name is taken.
pub(crate) fn create(
    tx: &Transaction<'_>,
    name: &str,
    config: &CollectionConfig,
) -> Result<Option<i64>> {
    let exists: bool = tx
        .query_row("SELECT 1 FROM collections WHERE name = ?1", [name], |_| {
            Ok(true)
        })
        .optional()
        .during("look up collection")?
        .unwrap_or(false);
    if exists {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO collections (name, dimension, metric, scalar, connectivity, expansion_add,
                                  expansion_search, model, created_at, tokenizer, embedding)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            name,
            config.dimension as i64,
            config.metric.to_column(),
            config.scalar.as_str(),
            config.connectivity as i64,
            config.expansion_add as i64,
            config.expansion_search as i64,
            config.model,
            unix_now(),
            config.tokenizer.as_str(),
            binding_json(config),
        ],
    )
    .during("insert collection")?;
    let cid = tx.last_insert_rowid();
    tx.execute_batch(&schema::fts_table_sql(cid, config.tokenizer))
        .during("create full-text table")?;
    Ok(Some(cid))
}

/// Drop a collection's rows of every table, its field indexes and its
/// full-text table, in the caller's write transaction. Returns its cid, or
/// `None` if there was none.
pub(crate) fn drop(tx: &Transaction<'_>, name: &str) -> Result<Option<i64>> {
    let cid: Option<i64> = tx
        .query_row("SELECT cid FROM collections WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .during("look up collection")?;
    let Some(cid) = cid else {
        return Ok(None);
    };
    let field_indexes: Vec<i64> = tx
        .prepare("SELECT id FROM field_indexes WHERE cid = ?1")
        .and_then(|mut s| s.query_map([cid], |r| r.get(0))?.collect())
        .during("list field indexes")?;
    for id in field_indexes {
        tx.execute_batch(&schema::drop_field_index_sql(cid, id))
            .during("drop field index")?;
    }
    tx.execute_batch(&schema::drop_fts_table_sql(cid))
        .during("drop full-text table")?;
    for sql in [
        "DELETE FROM records WHERE cid = ?1",
        "DELETE FROM tombstones WHERE cid = ?1",
        "DELETE FROM consumers WHERE cid = ?1",
        "DELETE FROM snapshots WHERE cid = ?1",
        "DELETE FROM field_values WHERE cid = ?1",
        "DELETE FROM field_indexes WHERE cid = ?1",
        "DELETE FROM collections WHERE cid = ?1",
    ] {
        tx.execute(sql, [cid]).during("drop collection")?;
    }
    Ok(Some(cid))
}

/// Take the collection's next sequence number, in the mutation's transaction.
pub(crate) fn next_seq(tx: &Transaction<'_>, cid: i64) -> Result<i64> {
    let seq: i64 = tx
        .query_row(
            "UPDATE collections SET seq = seq + 1 WHERE cid = ?1 RETURNING seq",
            [cid],
            |r| r.get(0),
        )
        .during("advance sequence")?;
    Ok(seq)
}

/// The collection's last committed sequence number.
pub(crate) fn read_seq(conn: &Connection, cid: i64) -> Result<i64> {
    conn.prepare_cached("SELECT seq FROM collections WHERE cid = ?1")
        .during("prepare sequence read")?
        .query_row([cid], |r| r.get(0))
        .during("read sequence")
}

/// The collection's record count and last sequence number, read together.
pub(crate) fn count_and_seq(conn: &Connection, cid: i64) -> Result<(i64, i64)> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM records WHERE cid = ?1), seq FROM collections WHERE cid = ?1",
        [cid],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .during("read collection info")
}

/// Store new index settings (everything but the dimension and model).
pub(crate) fn set_index_settings(
    conn: &Connection,
    cid: i64,
    config: &CollectionConfig,
) -> Result<()> {
    conn.execute(
        "UPDATE collections SET metric = ?2, scalar = ?3, connectivity = ?4, expansion_add = ?5,
                expansion_search = ?6 WHERE cid = ?1",
        params![
            cid,
            config.metric.to_column(),
            config.scalar.as_str(),
            config.connectivity as i64,
            config.expansion_add as i64,
            config.expansion_search as i64
        ],
    )
    .during("update collection settings")?;
    Ok(())
}

fn binding_json(config: &CollectionConfig) -> Option<String> {
    config
        .embedding
        .as_ref()
        .and_then(|b| serde_json::to_string(b).ok())
}

/// Store the collection's model (its id and binding).
pub(crate) fn set_model(conn: &Connection, cid: i64, config: &CollectionConfig) -> Result<()> {
    conn.execute(
        "UPDATE collections SET model = ?2, embedding = ?3 WHERE cid = ?1",
        params![cid, config.model, binding_json(config)],
    )
    .during("update collection model")?;
    Ok(())
}

/// The collection's snapshot record, if one is recorded.
pub(crate) fn snapshot_row(conn: &Connection, cid: i64) -> Result<Option<SnapshotRow>> {
    conn.query_row(
        "SELECT digest, length, vectors, options, usearch_version, applied_seq, written_at
         FROM snapshots WHERE cid = ?1",
        [cid],
        |r| {
            Ok(SnapshotRow {
                digest: r.get(0)?,
                length: r.get::<_, i64>(1)? as u64,
                vectors: r.get::<_, i64>(2)? as u64,
                options: r.get(3)?,
                usearch_version: r.get(4)?,
                applied_seq: r.get(5)?,
                written_at: r.get(6)?,
            })
        },
    )
    .optional()
    .during("read snapshot record")
}

/// Record a snapshot now in place, and prune the tombstones it covers
/// that every consumer of the change feed has applied (noting up to
/// where), in the caller's write transaction.
pub(crate) fn record_snapshot(tx: &Transaction<'_>, cid: i64, row: &SnapshotRow) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO snapshots
             (cid, digest, length, vectors, options, usearch_version, applied_seq, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            cid,
            row.digest,
            row.length as i64,
            row.vectors as i64,
            row.options,
            row.usearch_version,
            row.applied_seq,
            row.written_at
        ],
    )
    .during("record snapshot")?;
    prune_tombstones(tx, cid, row.applied_seq)
}

/// Prune the tombstones stamped up to `applied` (what a snapshot, or an
/// index with nothing to snapshot, no longer needs) that every consumer of
/// the change feed has applied, and note up to where, in the caller's
/// write transaction.
pub(crate) fn prune_tombstones(tx: &Transaction<'_>, cid: i64, applied: i64) -> Result<()> {
    // A registered consumer of the change feed keeps the tombstones it
    // has not applied.
    let upto = match super::changes::oldest_consumer(tx, cid)? {
        Some(consumer) => consumer.min(applied),
        None => applied,
    };
    tx.execute(
        "DELETE FROM tombstones WHERE cid = ?1 AND seq <= ?2",
        params![cid, upto],
    )
    .during("prune tombstones")?;
    tx.execute(
        "UPDATE collections SET pruned_seq = max(pruned_seq, ?2) WHERE cid = ?1",
        params![cid, upto],
    )
    .during("record pruning")?;
    Ok(())
}

/// Record a field index on the metadata path `segs` (named `name`, as
/// written in a filter), create its expression index and fill its
/// entries, in the caller's write transaction. Returns false if the path
/// was indexed already.
pub(crate) fn add_field_index(
    tx: &Transaction<'_>,
    cid: i64,
    name: &str,
    segs: &[String],
) -> Result<bool> {
    let json_path = crate::filter::Field::json_path(segs);
    let known: Option<i64> = tx
        .query_row(
            "SELECT id FROM field_indexes WHERE cid = ?1 AND json_path = ?2",
            params![cid, json_path],
            |r| r.get(0),
        )
        .optional()
        .during("look up field index")?;
    if known.is_some() {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO field_indexes (cid, path, json_path) VALUES (?1, ?2, ?3)",
        params![cid, name, json_path],
    )
    .during("record field index")?;
    let id = tx.last_insert_rowid();
    tx.execute_batch(&schema::field_index_sql(cid, id, segs))
        .during("create field index")?;
    tx.execute(&schema::fill_sql("f.id = ?1"), [id])
        .during("fill field index")?;
    Ok(true)
}

/// Metadata paths with a field index, in order.
pub(crate) fn field_indexes(conn: &Connection, cid: i64) -> Result<Vec<String>> {
    conn.prepare_cached("SELECT path FROM field_indexes WHERE cid = ?1 ORDER BY path")
        .during("list field indexes")?
        .query_map([cid], |r| r.get(0))
        .during("list field indexes")?
        .collect::<rusqlite::Result<Vec<String>>>()
        .during("list field indexes")
}

/// Changes stamped after sequence `after`: records written and tombstones
/// left. What a load replays, and what a snapshot does not hold yet.
pub(crate) fn tail_len(conn: &Connection, cid: i64, after: i64) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM tombstones WHERE cid = ?1 AND seq > ?2)
                  + (SELECT count(*) FROM records WHERE cid = ?1 AND seq > ?2)",
        )
        .during("prepare tail count")?
        .query_row(params![cid, after], |r| r.get(0))
        .during("count tail")?;
    Ok(n as u64)
}

/// Up to where tombstones are pruned, and the changes stamped after `after`
/// ([`tail_len`]), read in the caller's transaction.
pub(crate) fn pruned_and_tail(conn: &Connection, cid: i64, after: i64) -> Result<(i64, u64)> {
    let pruned: i64 = conn
        .prepare_cached("SELECT pruned_seq FROM collections WHERE cid = ?1")
        .during("prepare pruning read")?
        .query_row([cid], |r| r.get(0))
        .during("read pruning")?;
    Ok((pruned, tail_len(conn, cid, after)?))
}
