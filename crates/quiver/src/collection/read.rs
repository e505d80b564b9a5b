//! Plain reads: records by id, counts, scans, field indexes.

use super::*;

impl Collection {
    /// Look up one record.
    ///
    /// # Errors
    /// [`Error::InvalidId`], SQLite failures, [`Error::Corrupt`].
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        record::check_id(id)?;
        self.alive()?;
        let rows = self.rows();
        self.store.read(|conn| records::get(conn, rows, id))
    }

    /// The greatest record id (in byte order), if there are records: where
    /// a copy made in id order left off.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn last_id(&self) -> Result<Option<String>> {
        self.alive()?;
        self.store
            .read(|conn| records::last_id(conn, self.state.cid))
    }

    /// Number of records.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn count(&self) -> Result<u64> {
        self.alive()?;
        self.store.read(|conn| records::count(conn, self.state.cid))
    }

    /// Number of records matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures.
    pub fn count_where(&self, filter: &Filter) -> Result<u64> {
        self.alive()?;
        // A bad filter is an error before a connection is taken.
        filter.validate()?;
        self.store
            .read(|conn| records::count_matching(conn, self.state.cid, filter))
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
        if let Some(f) = filter {
            f.validate()?;
        }
        let rows = self.rows();
        self.store
            .read(|conn| records::scan(conn, rows, filter, after, limit))
    }

    /// Metadata paths with a field index.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn indexed_fields(&self) -> Result<Vec<String>> {
        self.store
            .read(|conn| catalogue::field_indexes(conn, self.state.cid))
    }

    /// Where this collection's rows are, for the record queries.
    pub(super) fn rows(&self) -> Rows<'_> {
        self.state.rows()
    }
}
