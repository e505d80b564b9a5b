//! The SQLite schema and its migrations.
//!
//! `PRAGMA application_id` marks a file as a Quiver store; `PRAGMA
//! user_version` is the schema version. Each migration moves the schema one
//! version up inside the caller's transaction.

use rusqlite::Connection;

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
        tx.execute_batch(&fts_table_sql(cid))?;
        let fts = fts_table(cid);
        tx.execute(
            &format!("INSERT INTO {fts} (rowid, text) SELECT key, text FROM records WHERE cid = ?1 AND text IS NOT NULL"),
            [cid],
        )?;
    }
    Ok(())
}

type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Step i takes the schema from version i to i + 1.
const MIGRATIONS: &[Migration] = &[|tx| tx.execute_batch(V1), to_v2];

/// The name of collection `cid`'s full-text table (a number, never a user string).
pub(crate) fn fts_table(cid: i64) -> String {
    format!("fts_{cid}")
}

/// DDL of a collection's full-text table. Contentless (the text lives in
/// `records`) with `contentless_delete` so rows can be deleted by key alone.
pub(crate) fn fts_table_sql(cid: i64) -> String {
    let fts = fts_table(cid);
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(
             text, content = '', contentless_delete = 1,
             tokenize = 'unicode61 remove_diacritics 2')"
    )
}

/// DDL dropping a collection's full-text table.
pub(crate) fn drop_fts_table_sql(cid: i64) -> String {
    format!("DROP TABLE IF EXISTS {}", fts_table(cid))
}

/// DDL of field index `id` of collection `cid`, on the metadata path
/// `segs` (checked by [`crate::filter::check_path`]).
pub(crate) fn field_index_sql(cid: i64, id: i64, segs: &[String]) -> String {
    format!(
        "CREATE INDEX qf_{cid}_{id} ON records (cid, {})",
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
