//! Full-text queries: BM25 over a collection's FTS5 table, optionally
//! joined to the records a filter matches.

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection};

use super::filter::compile;
use super::schema;
use crate::error::{Result, SqlContext};
use crate::filter::Filter;

/// A keyword query over collection `cid`: an FTS5 match expression,
/// optionally only over the records matching a filter.
pub(crate) struct Keywords {
    fts: String,
    /// `FROM ... WHERE ...` with `?1` the match expression.
    from: String,
    /// `?2` the collection and `?3..` the filter's values, when filtered.
    filter_params: Vec<Sql>,
}

impl Keywords {
    /// # Errors
    /// [`crate::Error::InvalidFilter`].
    pub(crate) fn new(conn: &Connection, cid: i64, filter: Option<&Filter>) -> Result<Self> {
        let fts = schema::fts_table(cid);
        let (join, cond, filter_params) = match filter {
            Some(f) => {
                let c = compile(conn, cid, f, 3)?;
                let mut p: Vec<Sql> = vec![cid.into()];
                p.extend(c.params);
                (
                    " JOIN records r ON r.key = f.rowid",
                    format!(" AND r.cid = ?2 AND ({})", c.sql),
                    p,
                )
            }
            None => ("", String::new(), Vec::new()),
        };
        let from = format!("FROM {fts} f{join} WHERE {fts} MATCH ?1{cond}");
        Ok(Keywords {
            fts,
            from,
            filter_params,
        })
    }

    fn params(&self, query: &str) -> impl Iterator<Item = Sql> + '_ {
        std::iter::once(Sql::from(query.to_string())).chain(self.filter_params.iter().cloned())
    }

    /// The best `limit` keys for the match expression `query`, with their
    /// BM25 scores (higher is better), best first.
    pub(crate) fn top(
        &self,
        conn: &Connection,
        query: &str,
        limit: usize,
    ) -> Result<Vec<(u64, f32)>> {
        let Keywords { fts, from, .. } = self;
        let sql = format!("SELECT f.rowid, bm25({fts}) {from} ORDER BY bm25({fts}) LIMIT {limit}");
        let mut stmt = conn.prepare_cached(&sql).during("prepare keyword search")?;
        let rows = stmt
            .query_map(params_from_iter(self.params(query)), |r| {
                Ok((r.get::<_, i64>(0)? as u64, -(r.get::<_, f64>(1)? as f32)))
            })
            .during("keyword search")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .during("keyword search")
    }

    /// How many records the match expression `query` matches.
    pub(crate) fn count(&self, conn: &Connection, query: &str) -> Result<u64> {
        let n: i64 = conn
            .prepare_cached(&format!("SELECT count(*) {}", self.from))
            .during("prepare keyword count")?
            .query_row(params_from_iter(self.params(query)), |r| r.get(0))
            .during("count keyword matches")?;
        Ok(n as u64)
    }
}
