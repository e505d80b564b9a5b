//! Record rows: writes (upserts with their text, deletes with their
//! tombstones) and reads (by id, by key, counts, scans, the change tail,
//! and the rows a filter matches), each vector decoded in one place.

use std::fmt::Display;

use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, CachedStatement, Connection, OptionalExtension, Row};
use rusqlite::{ToSql, Transaction};
use serde_json::Value;

use super::filter::compile;
use super::schema;
use crate::error::{Error, Result, SqlContext};
use crate::filter::Filter;
use crate::record::{self, Record};

/// Whose rows, and how their vectors read: what every query that returns
/// vectors or records takes.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub(crate) cid: i64,
    /// The collection's name, for errors about a damaged row.
    pub(crate) name: &'a str,
    pub(crate) dim: usize,
    /// The time (Unix ms) reads compare expiry with: records expired by
    /// then are not returned. `None` for the store's own reads (rebuilds,
    /// verify, writes), which see every row.
    pub(crate) now: Option<i64>,
}

impl<'a> Rows<'a> {
    /// The same rows, as a read at `now` sees them (expired ones hidden).
    pub(crate) fn live(self, now: i64) -> Rows<'a> {
        Rows {
            now: Some(now),
            ..self
        }
    }

    /// `" AND <not expired>"` with its time pushed onto `params`, for a
    /// read that hides expired records; empty otherwise.
    fn unexpired(&self, params: &mut Vec<Sql>) -> String {
        match self.now {
            None => String::new(),
            Some(now) => {
                params.push(now.into());
                format!(" AND {}", unexpired_at(params.len()))
            }
        }
    }

    /// A stored vector, which must be exactly `dim` f32s; `record` names
    /// the row in the error (its id or its key).
    fn vector(&self, record: impl Display, blob: &[u8]) -> Result<Vec<f32>> {
        record::decode_stored(self.name, record, blob, self.dim)
    }

    fn metadata(&self, id: &str, text: Option<String>) -> Result<Option<Value>> {
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::Corrupt {
                collection: self.name.into(),
                reason: format!("record {id:?} has unreadable metadata: {e}"),
            })
        })
        .transpose()
    }
}

/// A record not expired at the time in parameter `?n`.
pub(crate) fn unexpired_at(n: usize) -> String {
    format!("(expires_at IS NULL OR expires_at > ?{n})")
}

/// Parameters: the collection's id, then a filter's values numbered from `?2`.
fn with_filter(conn: &Connection, cid: i64, filter: &Filter) -> Result<(String, Vec<Sql>)> {
    let c = compile(conn, cid, filter, 2)?;
    let mut params: Vec<Sql> = vec![cid.into()];
    params.extend(c.params);
    Ok((c.sql, params))
}

// ---- writes ----

/// The statements of one upsert transaction.
pub(crate) struct Upserter<'t> {
    cid: i64,
    seq: i64,
    /// The largest key before this change: a key above it is a new row,
    /// with no text indexed to delete.
    max_key: i64,
    upsert: CachedStatement<'t>,
    fts_del: CachedStatement<'t>,
    fts_add: CachedStatement<'t>,
}

impl<'t> Upserter<'t> {
    /// Prepare the upserts of change `seq` in `tx`.
    pub(crate) fn new(tx: &'t Transaction<'_>, cid: i64, seq: i64) -> Result<Self> {
        // Keys come from the table's rowids.
        let max_key: i64 = tx
            .query_row("SELECT coalesce(max(key), 0) FROM records", [], |r| {
                r.get(0)
            })
            .during("read the largest key")?;
        let upsert = tx
            .prepare_cached(
                "INSERT INTO records (cid, id, vector, text, metadata, seq, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (cid, id) DO UPDATE SET vector = excluded.vector, text = excluded.text,
                     metadata = excluded.metadata, seq = excluded.seq, expires_at = excluded.expires_at
                 RETURNING key",
            )
            .during("prepare upsert")?;
        let fts = schema::fts_table(cid);
        let fts_del = tx
            .prepare_cached(&format!("DELETE FROM {fts} WHERE rowid = ?1"))
            .during("prepare full-text delete")?;
        let fts_add = tx
            .prepare_cached(&format!("INSERT INTO {fts} (rowid, text) VALUES (?1, ?2)"))
            .during("prepare full-text insert")?;
        Ok(Upserter {
            cid,
            seq,
            max_key,
            upsert,
            fts_del,
            fts_add,
        })
    }

    /// Insert or replace `r` (its metadata already serialised), and its
    /// text in the full-text index. Returns its key.
    pub(crate) fn put(&mut self, r: &Record, metadata: Option<&String>) -> Result<u64> {
        let key: i64 = self
            .upsert
            .query_row(
                params![
                    self.cid,
                    r.id,
                    record::encode(&r.vector),
                    r.text,
                    metadata,
                    self.seq,
                    r.expires_at
                ],
                |row| row.get(0),
            )
            .during("upsert record")?;
        // The text index changes in the same transaction.
        if key <= self.max_key {
            self.fts_del
                .execute([key])
                .during("update full-text index")?;
        }
        if let Some(text) = &r.text {
            self.fts_add
                .execute(params![key, text])
                .during("update full-text index")?;
        }
        Ok(key as u64)
    }
}

/// A deleted record: its key and its id, what its tombstone keeps.
pub(crate) type Gone = (i64, String);

/// Delete the records with these ids; returns those that existed.
pub(crate) fn delete_ids<S: AsRef<str>>(
    tx: &Transaction<'_>,
    cid: i64,
    ids: &[S],
) -> Result<Vec<Gone>> {
    let mut del = tx
        .prepare_cached("DELETE FROM records WHERE cid = ?1 AND id = ?2 RETURNING key")
        .during("prepare delete")?;
    let mut gone = Vec::new();
    for id in ids {
        let key: Option<i64> = del
            .query_row(params![cid, id.as_ref()], |r| r.get(0))
            .optional()
            .during("delete record")?;
        gone.extend(key.map(|k| (k, id.as_ref().to_string())));
    }
    Ok(gone)
}

/// Delete the records matching `filter`; returns them.
pub(crate) fn delete_matching(
    tx: &Transaction<'_>,
    cid: i64,
    filter: &Filter,
) -> Result<Vec<Gone>> {
    let (where_, params) = with_filter(tx, cid, filter)?;
    delete_where_sql(tx, &where_, params)
}

/// Delete the records of `cid` (`?1`) for which `where_` holds; returns them.
fn delete_where_sql(tx: &Transaction<'_>, where_: &str, params: Vec<Sql>) -> Result<Vec<Gone>> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "DELETE FROM records WHERE cid = ?1 AND ({where_}) RETURNING key, id"
        ))
        .during("prepare delete by filter")?;
    let gone = stmt
        .query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))
        .during("delete by filter")?
        .collect::<rusqlite::Result<Vec<Gone>>>()
        .during("delete by filter");
    gone
}

/// Leave a tombstone stamped `seq` for each deleted record, and take its
/// text out of the full-text index.
pub(crate) fn bury(tx: &Transaction<'_>, cid: i64, gone: &[Gone], seq: i64) -> Result<()> {
    let mut tomb = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO tombstones (cid, key, seq, id) VALUES (?1, ?2, ?3, ?4)",
        )
        .during("prepare tombstone")?;
    let mut fts = tx
        .prepare_cached(&format!(
            "DELETE FROM {} WHERE rowid = ?1",
            schema::fts_table(cid)
        ))
        .during("prepare full-text delete")?;
    for (key, id) in gone {
        tomb.execute(params![cid, key, seq, id])
            .during("write tombstone")?;
        fts.execute([key]).during("update full-text index")?;
    }
    Ok(())
}

// ---- whole records ----

/// The columns of a whole record, in the order [`record_row`] reads them.
const RECORD_COLUMNS: &str = "id, vector, text, metadata, expires_at";

/// A record's columns as SQLite returned them ([`RECORD_COLUMNS`]).
pub(crate) struct RecordRow {
    id: String,
    vector: Vec<u8>,
    text: Option<String>,
    metadata: Option<String>,
    expires_at: Option<i64>,
}

fn record_row(r: &Row<'_>) -> rusqlite::Result<RecordRow> {
    record_row_at(r, 0)
}

/// A record's columns ([`RECORD_COLUMNS`]) from column `first` on.
pub(crate) fn record_row_at(r: &Row<'_>, first: usize) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        id: r.get(first)?,
        vector: r.get(first + 1)?,
        text: r.get(first + 2)?,
        metadata: r.get(first + 3)?,
        expires_at: r.get(first + 4)?,
    })
}

impl RecordRow {
    /// Decode into a [`Record`]; a damaged vector or metadata is
    /// [`Error::Corrupt`].
    pub(crate) fn into_record(self, rows: Rows<'_>) -> Result<Record> {
        let id = self.id;
        Ok(Record {
            vector: rows.vector(format_args!("{id:?}"), &self.vector)?,
            metadata: rows.metadata(&id, self.metadata)?,
            id,
            text: self.text,
            expires_at: self.expires_at,
        })
    }
}

/// The record with this id.
pub(crate) fn get(conn: &Connection, rows: Rows<'_>, id: &str) -> Result<Option<Record>> {
    let mut params: Vec<Sql> = vec![rows.cid.into(), id.to_string().into()];
    let live = rows.unexpired(&mut params);
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE cid = ?1 AND id = ?2{live}"
    ))
    .during("prepare get")?
    .query_row(params_from_iter(params), record_row)
    .optional()
    .during("get record")?
    .map(|row| row.into_record(rows))
    .transpose()
}

/// Records in id order (descending with `desc`), only those matching
/// `filter` and with ids after `after` (in that order) when given, at most
/// `limit`.
pub(crate) fn scan(
    conn: &Connection,
    rows: Rows<'_>,
    filter: Option<&Filter>,
    after: Option<&str>,
    desc: bool,
    limit: usize,
) -> Result<Vec<Record>> {
    let mut params: Vec<Sql> = vec![rows.cid.into()];
    let live = rows.unexpired(&mut params);
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE cid = ?1{live}");
    if let Some(after) = after {
        params.push(after.to_string().into());
        let cmp = if desc { "<" } else { ">" };
        sql.push_str(&format!(" AND id {cmp} ?{}", params.len()));
    }
    if let Some(f) = filter {
        let c = compile(conn, rows.cid, f, params.len() + 1)?;
        sql.push_str(&format!(" AND ({})", c.sql));
        params.extend(c.params);
    }
    params.push((limit.min(i64::MAX as usize) as i64).into());
    let dir = if desc { " DESC" } else { "" };
    sql.push_str(&format!(" ORDER BY id{dir} LIMIT ?{}", params.len()));
    let mut stmt = conn.prepare_cached(&sql).during("prepare scan")?;
    let found = stmt
        .query_map(params_from_iter(params), record_row)
        .during("scan")?;
    let mut out = Vec::new();
    for row in found {
        out.push(row.during("scan")?.into_record(rows)?);
    }
    Ok(out)
}

/// Where a page of an ordered scan starts: after this sort value (NULL
/// for the records without the field, which come last) and id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct After {
    pub(crate) value: Sql,
    pub(crate) id: String,
}

/// One page of records ordered by the metadata path `segs` (spelt as the
/// field index's expression, so one serves the order), ties broken by id, both descending with `desc`; the records
/// without the field after the rest, by id. At most `limit`, with each
/// one's sort value. Keyset paging: a page starts strictly after `after`,
/// so rows written meanwhile neither repeat nor shift a page.
pub(crate) fn page_by(
    conn: &Connection,
    rows: Rows<'_>,
    filter: Option<&Filter>,
    segs: &[String],
    desc: bool,
    after: Option<&After>,
    limit: usize,
) -> Result<Vec<(Record, Sql)>> {
    let expr = super::filter::path_expr(segs);
    let (cmp, dir) = if desc { ("<", " DESC") } else { (">", "") };
    let mut out = Vec::new();
    // The records with the field, then (past them) those without.
    for with_field in [true, false] {
        if out.len() >= limit {
            break;
        }
        let past_values = after.is_some_and(|a| a.value == Sql::Null);
        if with_field && past_values {
            continue;
        }
        let mut params: Vec<Sql> = vec![rows.cid.into()];
        let mut sql = format!("SELECT {RECORD_COLUMNS}, {expr} FROM records WHERE cid = ?1");
        let live = rows.unexpired(&mut params);
        sql.push_str(&live);
        if with_field {
            sql.push_str(&format!(" AND {expr} IS NOT NULL"));
        } else {
            sql.push_str(&format!(" AND {expr} IS NULL"));
        }
        match after {
            Some(a) if with_field => {
                params.push(a.value.clone());
                params.push(a.id.clone().into());
                let n = params.len();
                sql.push_str(&format!(" AND ({expr}, id) {cmp} (?{}, ?{n})", n - 1));
            }
            Some(a) if past_values => {
                params.push(a.id.clone().into());
                sql.push_str(&format!(" AND id {cmp} ?{}", params.len()));
            }
            _ => {}
        }
        if let Some(f) = filter {
            let c = compile(conn, rows.cid, f, params.len() + 1)?;
            sql.push_str(&format!(" AND ({})", c.sql));
            params.extend(c.params);
        }
        params.push(((limit - out.len()).min(i64::MAX as usize) as i64).into());
        let order = if with_field {
            format!("{expr}{dir}, id{dir}")
        } else {
            format!("id{dir}")
        };
        sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", params.len()));
        let mut stmt = conn.prepare_cached(&sql).during("prepare ordered scan")?;
        let found = stmt
            .query_map(params_from_iter(params), |r| {
                Ok((record_row(r)?, r.get::<_, Sql>(5)?))
            })
            .during("ordered scan")?;
        for row in found {
            let (row, value) = row.during("ordered scan")?;
            out.push((row.into_record(rows)?, value));
        }
    }
    Ok(out)
}

/// The greatest record id (in byte order), if there are records.
pub(crate) fn last_id(conn: &Connection, cid: i64) -> Result<Option<String>> {
    conn.prepare_cached("SELECT max(id) FROM records WHERE cid = ?1")
        .during("prepare last id")?
        .query_row([cid], |r| r.get(0))
        .during("read last id")
}

/// Number of records (of those not expired at `now`, when given).
pub(crate) fn count(conn: &Connection, cid: i64, now: Option<i64>) -> Result<u64> {
    let counted = match now {
        None => conn
            .prepare_cached("SELECT count(*) FROM records WHERE cid = ?1")
            .during("prepare count")?
            .query_row([cid], |r| r.get::<_, i64>(0)),
        Some(now) => conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM records WHERE cid = ?1 AND {}",
                unexpired_at(2)
            ))
            .during("prepare count")?
            .query_row(params![cid, now], |r| r.get::<_, i64>(0)),
    };
    counted.during("count records").map(|n| n as u64)
}

/// Number of records matching `filter` (of those not expired at `now`,
/// when given).
pub(crate) fn count_matching(
    conn: &Connection,
    cid: i64,
    filter: &Filter,
    now: Option<i64>,
) -> Result<u64> {
    let (where_, mut params) = with_filter(conn, cid, filter)?;
    let live = match now {
        Some(now) => {
            params.push(now.into());
            format!(" AND {}", unexpired_at(params.len()))
        }
        None => String::new(),
    };
    conn.prepare_cached(&format!(
        "SELECT count(*) FROM records WHERE cid = ?1 AND ({where_}){live}"
    ))
    .during("prepare count")?
    .query_row(params_from_iter(params), |r| r.get::<_, i64>(0))
    .during("count matches")
    .map(|n| n as u64)
}

/// The id of some record whose vector is all zeros.
pub(crate) fn zero_vector_id(conn: &Connection, cid: i64, dim: usize) -> Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM records WHERE cid = ?1 AND vector = zeroblob(?2) LIMIT 1",
        params![cid, (dim * 4) as i64],
        |r| r.get(0),
    )
    .optional()
    .during("look for zero vectors")
}

// ---- by key ----

/// Which columns [`hit_rows`] reads besides the id.
#[derive(Clone, Copy)]
pub(crate) struct Columns {
    pub(crate) text: bool,
    pub(crate) metadata: bool,
    pub(crate) vector: bool,
}

/// A search hit's row: the id and the columns asked for.
pub(crate) struct HitRow {
    pub(crate) id: String,
    pub(crate) text: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) vector: Option<Vec<f32>>,
}

/// The rows of these keys, `None` for a key deleted since it was found.
pub(crate) fn hit_rows(
    conn: &Connection,
    rows: Rows<'_>,
    keys: impl Iterator<Item = u64>,
    columns: Columns,
) -> Result<Vec<Option<HitRow>>> {
    let sql = format!(
        "SELECT id, {}, {}, {} FROM records WHERE key = ?1 AND cid = ?2",
        if columns.text { "text" } else { "NULL" },
        if columns.metadata { "metadata" } else { "NULL" },
        if columns.vector { "vector" } else { "NULL" },
    );
    let mut stmt = conn.prepare_cached(&sql).during("prepare hit lookup")?;
    let mut out = Vec::with_capacity(keys.size_hint().0);
    for key in keys {
        let row = stmt
            .query_row(params![key as i64, rows.cid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })
            .optional()
            .during("look up hit")?;
        let Some((id, text, meta, blob)) = row else {
            out.push(None);
            continue;
        };
        let vector = match blob {
            Some(b) => Some(rows.vector(format_args!("{id:?}"), &b)?),
            None => None,
        };
        let metadata = rows.metadata(&id, meta)?;
        out.push(Some(HitRow {
            id,
            text,
            metadata,
            vector,
        }));
    }
    Ok(out)
}

/// The ids of these keys, `None` for a key deleted since it was found.
pub(crate) fn ids_of(
    conn: &Connection,
    cid: i64,
    keys: impl Iterator<Item = u64>,
) -> Result<Vec<Option<String>>> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM records WHERE key = ?1 AND cid = ?2")
        .during("prepare hit lookup")?;
    let mut out = Vec::with_capacity(keys.size_hint().0);
    for key in keys {
        out.push(
            stmt.query_row(params![key as i64, cid], |r| r.get(0))
                .optional()
                .during("look up hit")?,
        );
    }
    Ok(out)
}

/// A page of (key, id) pairs with keys above `after`, in key order.
pub(crate) fn ids_after(
    conn: &Connection,
    cid: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>> {
    conn.prepare_cached(
        "SELECT key, id FROM records WHERE cid = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
    )
    .during("prepare id warm-up")?
    .query_map(params![cid, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))
    .during("read ids")?
    .collect::<rusqlite::Result<_>>()
    .during("read ids")
}

/// The vectors of these keys, in one statement; a key deleted since is
/// left out.
pub(crate) fn vectors_of(
    conn: &Connection,
    rows: Rows<'_>,
    keys: &[u64],
) -> Result<Vec<(u64, Vec<f32>)>> {
    // One statement for all keys: per-statement overhead was half the cost
    // with one lookup each (measured: 160 µs for 40 rescoring candidates).
    // By key alone: with `cid = ?` in the clause SQLite chose an index on
    // cid and scanned the whole collection (measured: 1.4 ms).
    let sql = format!(
        "SELECT key, vector FROM records WHERE key IN ({}) AND cid + 0 = ?",
        vec!["?"; keys.len()].join(",")
    );
    let mut stmt = conn.prepare_cached(&sql).during("prepare rescoring")?;
    let params = keys
        .iter()
        .map(|k| *k as i64)
        .chain(std::iter::once(rows.cid));
    let found = stmt
        .query_map(params_from_iter(params), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .during("read vectors for rescoring")?;
    let mut out = Vec::with_capacity(keys.len());
    for row in found {
        let (key, blob) = row.during("read vectors for rescoring")?;
        out.push((key as u64, rows.vector(format_args!("key {key}"), &blob)?));
    }
    Ok(out)
}

/// Vectors looked up one key at a time, through one prepared statement.
pub(crate) struct VectorLookup<'c, 'a> {
    stmt: CachedStatement<'c>,
    rows: Rows<'a>,
}

impl<'c, 'a> VectorLookup<'c, 'a> {
    pub(crate) fn new(conn: &'c Connection, rows: Rows<'a>) -> Result<Self> {
        let stmt = conn
            .prepare_cached("SELECT vector FROM records WHERE key = ?1")
            .during("prepare vector lookup")?;
        Ok(VectorLookup { stmt, rows })
    }

    /// The vector of `key`, `None` if no record has it.
    pub(crate) fn get(&mut self, key: u64) -> Result<Option<Vec<f32>>> {
        let blob: Option<Vec<u8>> = self
            .stmt
            .query_row([key as i64], |r| r.get(0))
            .optional()
            .during("read vector")?;
        blob.map(|b| self.rows.vector(format_args!("key {key}"), &b))
            .transpose()
    }

    /// The vector of `key`, which the caller's transaction has seen: a
    /// missing row is [`Error::Corrupt`].
    pub(crate) fn require(&mut self, key: u64) -> Result<Vec<f32>> {
        self.get(key)?.ok_or_else(|| Error::Corrupt {
            collection: self.rows.name.into(),
            reason: format!("record key {key} vanished inside a read transaction"),
        })
    }
}

/// Every key of the collection, in no particular order.
pub(crate) fn for_each_key(conn: &Connection, cid: i64, mut f: impl FnMut(u64)) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("SELECT key FROM records WHERE cid = ?1")
        .during("prepare key scan")?;
    let keys = stmt
        .query_map([cid], |r| r.get::<_, i64>(0))
        .during("read keys")?;
    for key in keys {
        f(key.during("read keys")? as u64);
    }
    Ok(())
}

// ---- the change tail ----

/// Every record matching `filter` (all without one), in id order, one at
/// a time: one statement, so one consistent state when the caller holds a
/// read transaction.
pub(crate) fn each(
    conn: &Connection,
    rows: Rows<'_>,
    filter: Option<&Filter>,
    mut f: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut params: Vec<Sql> = vec![rows.cid.into()];
    let live = rows.unexpired(&mut params);
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE cid = ?1{live}");
    if let Some(filter) = filter {
        let c = compile(conn, rows.cid, filter, params.len() + 1)?;
        sql.push_str(&format!(" AND ({})", c.sql));
        params.extend(c.params);
    }
    sql.push_str(" ORDER BY id");
    let mut stmt = conn.prepare(&sql).during("prepare export")?;
    let mut found = stmt
        .query(params_from_iter(params))
        .during("read records")?;
    while let Some(row) = found.next().during("read records")? {
        f(record_row(row).during("read records")?.into_record(rows)?)?;
    }
    Ok(())
}

/// Feed `(key, vector)` rows in key order, only those stamped after
/// `after` when given, in chunks of `chunk`.
pub(crate) fn stream(
    conn: &Connection,
    rows: Rows<'_>,
    after: Option<i64>,
    chunk: usize,
    mut f: impl FnMut(&[(u64, Vec<f32>)]) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("SELECT key, vector FROM records WHERE cid = ?1 AND seq > ?2 ORDER BY key")
        .during("read records")?;
    let mut found = stmt
        .query(params![rows.cid, after.unwrap_or(-1)])
        .during("read records")?;
    let mut batch = Vec::with_capacity(chunk);
    while let Some(row) = found.next().during("read records")? {
        let key: i64 = row.get(0).during("read records")?;
        let blob = row
            .get_ref(1)
            .during("read records")?
            .as_blob()
            .unwrap_or(&[]);
        batch.push((key as u64, rows.vector(format_args!("key {key}"), blob)?));
        if batch.len() == chunk {
            f(&batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        f(&batch)?;
    }
    Ok(())
}

/// Keys deleted by changes stamped after `after`.
pub(crate) fn tombstones_after(conn: &Connection, cid: i64, after: i64) -> Result<Vec<u64>> {
    conn.prepare_cached("SELECT key FROM tombstones WHERE cid = ?1 AND seq > ?2")
        .during("read tombstones")?
        .query_map(params![cid, after], |r| r.get::<_, i64>(0))
        .during("read tombstones")?
        .map(|k| k.map(|k| k as u64))
        .collect::<rusqlite::Result<_>>()
        .during("read tombstones")
}

// ---- what a filter matches ----

/// The records matching `filter`, in key order: each key, with its vector
/// when `with_vectors`.
pub(crate) fn for_each_match(
    conn: &Connection,
    rows: Rows<'_>,
    filter: &Filter,
    with_vectors: bool,
    mut f: impl FnMut(u64, Option<Vec<f32>>) -> Result<()>,
) -> Result<()> {
    let (where_, params) = with_filter(conn, rows.cid, filter)?;
    // The keys come sorted from the field index through a temp b-tree;
    // with the vectors in the same select, SQLite sorted the 1.5 KB blobs
    // too (about 5x slower at 20k matches of 200k). So the vectors are read
    // by key, in key order, after the keys are sorted.
    let sql = if with_vectors {
        format!(
            "SELECT key, vector FROM records WHERE key IN \
             (SELECT key FROM records WHERE cid = ?1 AND ({where_})) ORDER BY key"
        )
    } else {
        format!("SELECT key FROM records WHERE cid = ?1 AND ({where_}) ORDER BY key")
    };
    let mut stmt = conn.prepare_cached(&sql).during("prepare filter scan")?;
    let mut found = stmt
        .query(params_from_iter(params.iter()))
        .during("scan filter matches")?;
    while let Some(row) = found.next().during("scan filter matches")? {
        let key: i64 = row.get(0).during("scan filter matches")?;
        let vector = if with_vectors {
            let blob = row
                .get_ref(1)
                .during("scan filter matches")?
                .as_blob()
                .unwrap_or(&[]);
            Some(rows.vector(format_args!("key {key}"), blob)?)
        } else {
            None
        };
        f(key as u64, vector)?;
    }
    Ok(())
}

/// Every record written by a change stamped after `after`, in key order,
/// and whether it matches `filter` now.
pub(crate) fn changed_since(
    conn: &Connection,
    cid: i64,
    filter: &Filter,
    after: i64,
    mut f: impl FnMut(u64, bool),
) -> Result<()> {
    let (where_, mut params) = with_filter(conn, cid, filter)?;
    params.push(after.into());
    // In one pass by the sequence index: left to itself SQLite took the
    // filter's field index (or scanned the table) and read every match's
    // row, 10-70x the cost of computing the set afresh at 200k records.
    let sql = format!(
        "SELECT key, coalesce(({where_}), 0) FROM records INDEXED BY records_by_seq \
         WHERE cid = ?1 AND seq > ?{} ORDER BY key",
        params.len()
    );
    let mut stmt = conn.prepare_cached(&sql).during("prepare filter changes")?;
    let mut found = stmt
        .query(params_from_iter(params.iter().map(|p| p as &dyn ToSql)))
        .during("read filter changes")?;
    while let Some(row) = found.next().during("read filter changes")? {
        let key = row.get::<_, i64>(0).during("read filter changes")? as u64;
        f(
            key,
            row.get::<_, i64>(1).during("read filter changes")? != 0,
        );
    }
    Ok(())
}

/// Whether some record of collection `cid` has metadata at `segs` (a null
/// counts). A scan when none has: for a warning after a filter matched
/// nothing, not for every query.
pub(crate) fn has_field(conn: &Connection, cid: i64, segs: &[String]) -> Result<bool> {
    let path = crate::filter::Field::json_path(segs);
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM records WHERE cid = ?1 AND json_type(metadata, ?2) IS NOT NULL)",
        params![cid, path],
        |r| r.get(0),
    )
    .during("look for a field")
}

// ---- expiry ----

/// Keys of the records expired at `now` (none if nothing expires).
pub(crate) fn expired_keys(conn: &Connection, cid: i64, now: i64) -> Result<Vec<u64>> {
    conn.prepare_cached(
        "SELECT key FROM records WHERE cid = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2",
    )
    .during("prepare expiry lookup")?
    .query_map(params![cid, now], |r| r.get::<_, i64>(0))
    .during("find expired records")?
    .map(|k| k.map(|k| k as u64).during("find expired records"))
    .collect()
}

/// The earliest expiry of any record (`None` if none expires).
pub(crate) fn next_expiry(conn: &Connection, cid: i64) -> Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT min(expires_at) FROM records WHERE cid = ?1 AND expires_at IS NOT NULL",
    )
    .during("prepare expiry lookup")?
    .query_row([cid], |r| r.get(0))
    .during("find the next expiry")
}

/// Delete the records expired at `now`; returns them.
pub(crate) fn delete_expired(tx: &Transaction<'_>, cid: i64, now: i64) -> Result<Vec<Gone>> {
    delete_where_sql(
        tx,
        "expires_at IS NOT NULL AND expires_at <= ?2",
        vec![cid.into(), now.into()],
    )
}
