//! Plain reads: records by id, counts, scans, field indexes.

use super::*;

/// Rows are applied to the index in chunks of this size during replay and rebuild.
pub(super) const CHUNK: usize = 4096;

impl Collection {
    /// Look up one record.
    ///
    /// # Errors
    /// [`Error::InvalidId`], SQLite failures, [`Error::Corrupt`].
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        record::check_id(id)?;
        self.alive()?;
        let dim = self.config().dimension;
        let name = &self.state.name;
        self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE cid = ?1 AND id = ?2"
            ))
            .during("prepare get")?
            .query_row(params![self.state.cid, id], record_row)
            .optional()
            .during("get record")?
            .map(|row| row.into_record(name, dim))
            .transpose()
        })
    }

    /// The greatest record id (in byte order), if there are records: where
    /// a copy made in id order left off.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn last_id(&self) -> Result<Option<String>> {
        self.alive()?;
        self.store.read(|conn| {
            conn.prepare_cached("SELECT max(id) FROM records WHERE cid = ?1")
                .during("prepare last id")?
                .query_row([self.state.cid], |r| r.get(0))
                .during("read last id")
        })
    }

    /// Number of records.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn count(&self) -> Result<u64> {
        self.alive()?;
        self.store.read(|conn| {
            conn.prepare_cached("SELECT count(*) FROM records WHERE cid = ?1")
                .during("prepare count")?
                .query_row([self.state.cid], |r| r.get::<_, i64>(0))
                .during("count records")
                .map(|n| n as u64)
        })
    }

    /// Number of records matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures.
    pub fn count_where(&self, filter: &Filter) -> Result<u64> {
        self.alive()?;
        let c = filter::sql::compile(filter, 2)?;
        let mut params: Vec<rusqlite::types::Value> = vec![self.state.cid.into()];
        params.extend(c.params);
        self.store.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT count(*) FROM records WHERE cid = ?1 AND ({})",
                c.sql
            ))
            .during("prepare count")?
            .query_row(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0))
            .during("count matches")
            .map(|n| n as u64)
        })
    }

    /// Records in id order, optionally only those matching a filter and
    /// only ids after `after` (for paging), at most `limit`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures, [`Error::Corrupt`].
    pub fn scan(
        &self,
        filter: Option<&Filter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        self.alive()?;
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE cid = ?1");
        let mut params: Vec<rusqlite::types::Value> = vec![self.state.cid.into()];
        if let Some(after) = after {
            params.push(after.to_string().into());
            sql.push_str(&format!(" AND id > ?{}", params.len()));
        }
        if let Some(f) = filter {
            let c = filter::sql::compile(f, params.len() + 1)?;
            sql.push_str(&format!(" AND ({})", c.sql));
            params.extend(c.params);
        }
        params.push((limit.min(i64::MAX as usize) as i64).into());
        sql.push_str(&format!(" ORDER BY id LIMIT ?{}", params.len()));
        let dim = self.config().dimension;
        let name = &self.state.name;
        self.store.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).during("prepare scan")?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), record_row)
                .during("scan")?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.during("scan")?.into_record(name, dim)?);
            }
            Ok(out)
        })
    }

    /// Metadata paths with a field index.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn indexed_fields(&self) -> Result<Vec<String>> {
        self.store.read(|conn| {
            conn.prepare_cached("SELECT path FROM field_indexes WHERE cid = ?1 ORDER BY path")
                .during("list field indexes")?
                .query_map([self.state.cid], |r| r.get(0))
                .during("list field indexes")?
                .collect::<rusqlite::Result<Vec<String>>>()
                .during("list field indexes")
        })
    }
}
