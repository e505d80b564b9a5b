//! The SQLite schema and its migrations.
//!
//! `PRAGMA application_id` marks a file as a Quiver store; `PRAGMA
//! user_version` is the schema version. Each migration moves the schema one
//! version up inside the caller's transaction.

use rusqlite::Connection;

use crate::config::Tokenizer;
use crate::error::{Result, SqlContext};
use crate::format::{APPLICATION_ID, SCHEMA_VERSION};

/// Version 1.
///
/// - `collections.seq` is the collection's change sequence: every committed
///   mutation takes the next value and stamps it on the rows it touched.
/// - `records.key` is the usearch key. `AUTOINCREMENT` means a key is never
///   reused, so a tombstone can never be mistaken for a later record.
/// - `tombstones` keep deleted keys with their stamp until a snapshot that
///   includes the delete makes them unnecessary; `collections.pruned_seq`
///   says up to where they were pruned, so a reader that has seen less than
///   that knows it must reload instead of replaying.
/// - `snapshots` describes the one snapshot file of a collection.
const V1: &str = "
CREATE TABLE collections (
    cid              INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    dimension        INTEGER NOT NULL,
    metric           TEXT NOT NULL,
    scalar           TEXT NOT NULL,
    connectivity     INTEGER NOT NULL,
    expansion_add    INTEGER NOT NULL,
    expansion_search INTEGER NOT NULL,
    model            TEXT,
    seq              INTEGER NOT NULL DEFAULT 0,
    pruned_seq       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE TABLE records (
    key      INTEGER PRIMARY KEY AUTOINCREMENT,
    cid      INTEGER NOT NULL REFERENCES collections(cid),
    id       TEXT NOT NULL,
    vector   BLOB NOT NULL,
    text     TEXT,
    metadata TEXT,
    seq      INTEGER NOT NULL,
    UNIQUE (cid, id)
);
CREATE INDEX records_by_seq ON records (cid, seq);
CREATE TABLE tombstones (
    cid INTEGER NOT NULL,
    key INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (cid, key)
) WITHOUT ROWID;
CREATE INDEX tombstones_by_seq ON tombstones (cid, seq);
CREATE TABLE snapshots (
    cid             INTEGER PRIMARY KEY,
    digest          TEXT NOT NULL,
    length          INTEGER NOT NULL,
    vectors         INTEGER NOT NULL,
    options         TEXT NOT NULL,
    usearch_version TEXT NOT NULL,
    applied_seq     INTEGER NOT NULL,
    written_at      INTEGER NOT NULL
);
";

/// Version 2: metadata field indexes and per-collection full-text tables.
///
/// - `field_indexes` lists the expression indexes made by `index_field`;
///   the index itself is named `qf_<cid>_<rowid>`.
/// - Each collection gets `fts_<cid>`, a contentless FTS5 table over record
///   text keyed by the record key (created in `store`; this migration makes
///   them for collections that predate it).
const V2: &str = "
CREATE TABLE field_indexes (
    id   INTEGER PRIMARY KEY,
    cid  INTEGER NOT NULL,
    path TEXT NOT NULL,
    UNIQUE (cid, path)
);
";

/// Version 1 to 2: the new table, and full-text tables (filled) for the
/// collections made before version 2.
fn to_v2(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(V2)?;
    let cids: Vec<i64> = tx
        .prepare("SELECT cid FROM collections")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for cid in cids {
        tx.execute_batch(&fts_table_sql(cid, Tokenizer::Unicode61))?;
        let fts = fts_table(cid);
        tx.execute(
            &format!("INSERT INTO {fts} (rowid, text) SELECT key, text FROM records WHERE cid = ?1 AND text IS NOT NULL"),
            [cid],
        )?;
    }
    Ok(())
}

/// Version 3: field indexes that see into arrays, and a tokenizer per
/// collection.
///
/// - `collections.tokenizer` names the FTS5 tokenizer its `fts_<cid>`
///   table was made with (`unicode61`, or `porter` for stemming).
/// - `field_indexes.json_path` is the SQLite JSON path of the field
///   (`$.a.b`, `$."file-path"`); `path` stays the name as written.
/// - `field_values` holds, for every indexed field of every record, one
///   row per value: the scalar itself, or each scalar element of an array
///   (nested arrays, objects and nulls are not entries); and, when the
///   field is present (not missing, null or an object), one row whose
///   value is the empty blob `x''`, so a negation can tell "present, no
///   match" from "missing" without reading the JSON. No filter value is
///   a blob, and a blob sorts above every number and text, so `value <
///   x''` keeps the marker out of a range. `value` has no declared type,
///   so no affinity: `'7'` stays text and `7` a number, as `json_extract`
///   returns them (declared `ANY` it would be NUMERIC and turn one into
///   the other). Filters read it (`db::filter`).
/// - Three triggers keep it in step with `records` in the writing
///   statement's own transaction, whichever path writes: a collection
///   without field indexes pays one lookup in `field_indexes` per row.
///   The upsert's `ON CONFLICT DO UPDATE` fires the update trigger, and
///   its conflict policy overrides any `OR IGNORE` in a trigger, so the
///   triggers insert `DISTINCT` rows (an array can hold a value twice).
/// - The expression indexes `qf_<cid>_<id>` stay, for ordering by a
///   field, and now end with the id (the order's tie-break).
const V3: &str = "
ALTER TABLE collections ADD COLUMN tokenizer TEXT NOT NULL DEFAULT 'unicode61';
ALTER TABLE field_indexes ADD COLUMN json_path TEXT;
UPDATE field_indexes SET json_path = '$.' || path;
CREATE TABLE field_values (
    cid   INTEGER NOT NULL,
    path  TEXT NOT NULL,
    value NOT NULL,
    key   INTEGER NOT NULL,
    PRIMARY KEY (cid, path, value, key)
) WITHOUT ROWID;
CREATE INDEX field_values_by_key ON field_values (key);
";

/// The `field_values` rows of `{r}` (a records row: `new`, or a table
/// alias joined with `field_indexes AS f` on the collection), for the
/// field indexes `f` ranges over.
fn entries_sql(r: &str, from: &str, cond: &str) -> String {
    format!(
        "SELECT DISTINCT {r}.cid, f.json_path, j.value, {r}.key
         FROM {from}, json_each({r}.metadata, f.json_path) AS j
         WHERE {cond} AND {r}.metadata IS NOT NULL AND j.type NOT IN ('object', 'array', 'null')
           AND json_type({r}.metadata, f.json_path) <> 'object'
         UNION ALL
         SELECT {r}.cid, f.json_path, x'', {r}.key FROM {from}
         WHERE {cond} AND json_type({r}.metadata, f.json_path) NOT IN ('null', 'object')"
    )
}

/// The triggers that keep `field_values` in step with `records`.
fn triggers_sql() -> String {
    let new = entries_sql("new", "field_indexes AS f", "f.cid = new.cid");
    format!(
        "CREATE TRIGGER field_values_insert AFTER INSERT ON records
         WHEN new.metadata IS NOT NULL AND EXISTS (SELECT 1 FROM field_indexes WHERE cid = new.cid)
         BEGIN
             INSERT INTO field_values (cid, path, value, key) {new};
         END;
         CREATE TRIGGER field_values_update AFTER UPDATE OF metadata ON records
         WHEN EXISTS (SELECT 1 FROM field_indexes WHERE cid = new.cid)
         BEGIN
             DELETE FROM field_values WHERE key = old.key;
             INSERT INTO field_values (cid, path, value, key) {new};
         END;
         CREATE TRIGGER field_values_delete AFTER DELETE ON records
         WHEN EXISTS (SELECT 1 FROM field_indexes WHERE cid = old.cid)
         BEGIN
             DELETE FROM field_values WHERE key = old.key;
         END;"
    )
}

/// Insert the entries of every record for the field indexes matching
/// `cond` (over `f`, the `field_indexes` row), with its parameters.
pub(crate) fn fill_sql(cond: &str) -> String {
    let rows = entries_sql(
        "r",
        "field_indexes AS f JOIN records AS r ON r.cid = f.cid",
        cond,
    );
    format!("INSERT INTO field_values (cid, path, value, key) {rows}")
}

/// Version 2 to 3: the new column, table and triggers, the entries of the
/// field indexes made before version 3, and their expression indexes made
/// again with the id after the value.
fn to_v3(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(V3)?;
    tx.execute_batch(&triggers_sql())?;
    tx.execute_batch(&fill_sql("1"))?;
    let old: Vec<(i64, i64, String)> = tx
        .prepare("SELECT id, cid, path FROM field_indexes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, cid, path) in old {
        // Version 2 paths were dotted names.
        let segs: Vec<String> = path.split('.').map(String::from).collect();
        tx.execute_batch(&drop_field_index_sql(cid, id))?;
        tx.execute_batch(&field_index_sql(cid, id, &segs))?;
    }
    Ok(())
}

/// Version 3 to 4: what a collection knows about its embedding model
/// ([`crate::config::ModelBinding`], as JSON).
const V4: &str = "ALTER TABLE collections ADD COLUMN embedding TEXT;";

/// Version 4 to 5: the change feed.
///
/// - `tombstones.id` is the deleted record's id, so a delete can be told
///   to a consumer of the feed (NULL for tombstones written before 5).
/// - `consumers` are the feed's registered readers: `seq` is the last
///   sequence each has applied. A snapshot prunes no tombstone a consumer
///   has not applied.
const V5: &str = "
ALTER TABLE tombstones ADD COLUMN id TEXT;
CREATE TABLE consumers (
    cid        INTEGER NOT NULL,
    name       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (cid, name)
) WITHOUT ROWID;
";

/// Version 5 to 6: record expiry. `expires_at` is Unix milliseconds (NULL:
/// never); the partial index finds the expired rows of a collection
/// without touching the rest.
const V6: &str = "
ALTER TABLE records ADD COLUMN expires_at INTEGER;
CREATE INDEX records_expiry ON records (cid, expires_at) WHERE expires_at IS NOT NULL;
";

type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Step i takes the schema from version i to i + 1.
const MIGRATIONS: &[Migration] = &[
    |tx| tx.execute_batch(V1),
    to_v2,
    to_v3,
    |tx| tx.execute_batch(V4),
    |tx| tx.execute_batch(V5),
    |tx| tx.execute_batch(V6),
];

/// The name of collection `cid`'s full-text table (a number, never a user string).
pub(crate) fn fts_table(cid: i64) -> String {
    format!("fts_{cid}")
}

/// DDL of a collection's full-text table. Contentless (the text lives in
/// `records`) with `contentless_delete` so rows can be deleted by key alone.
pub(crate) fn fts_table_sql(cid: i64, tokenizer: Tokenizer) -> String {
    let fts = fts_table(cid);
    let tokenize = tokenizer.fts5();
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(
             text, content = '', contentless_delete = 1,
             tokenize = '{tokenize}')"
    )
}

/// DDL dropping a collection's full-text table.
pub(crate) fn drop_fts_table_sql(cid: i64) -> String {
    format!("DROP TABLE IF EXISTS {}", fts_table(cid))
}

/// DDL of the expression index of field index `id` of collection `cid`,
/// on the metadata path `segs` (checked by [`crate::filter::parse::check_path`]).
pub(crate) fn field_index_sql(cid: i64, id: i64, segs: &[String]) -> String {
    format!(
        "CREATE INDEX qf_{cid}_{id} ON records (cid, {}, id)",
        super::filter::path_expr(segs)
    )
}

/// DDL dropping field index `id` of collection `cid`.
pub(crate) fn drop_field_index_sql(cid: i64, id: i64) -> String {
    format!("DROP INDEX IF EXISTS qf_{cid}_{id}")
}

/// Create or upgrade the schema of a writable connection.
///
/// # Errors
/// SQLite failures.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    // Opening an up-to-date store must not write a byte.
    if identify(conn)? == (APPLICATION_ID, SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .during("begin schema migration")?;
    let version: i32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .during("read schema version")?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        step(&tx).during(&format!("migrate schema to version {}", i + 1))?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .during("stamp schema version")?;
    tx.commit().during("commit schema migration")
}

/// What a database file says about itself: (`application_id`, `user_version`).
pub(crate) fn identify(conn: &Connection) -> Result<(i32, i32)> {
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .during("read application id")?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .during("read schema version")?;
    Ok((app, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(identify(&conn).unwrap(), (APPLICATION_ID, SCHEMA_VERSION));
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(n >= 4);
    }
}
