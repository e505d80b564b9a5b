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

    /// Whether any record has metadata at `field` (a JSON null counts; the
    /// id always exists). It scans the collection when none has: meant for
    /// explaining a filter that matched nothing.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] for an invalid path; SQLite failures.
    pub fn has_field(&self, field: &crate::filter::Field) -> Result<bool> {
        self.alive()?;
        let crate::filter::Field::Meta(segs) = field else {
            return Ok(true);
        };
        field.check().map_err(|reason| Error::InvalidFilter {
            reason,
            column: None,
        })?;
        let cid = self.state.cid;
        self.store.read(|conn| records::has_field(conn, cid, segs))
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

    /// Number of records (not expired).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn count(&self) -> Result<u64> {
        self.alive()?;
        let now = self.now();
        self.store
            .read(|conn| records::count(conn, self.state.cid, Some(now)))
    }

    /// Number of records matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures.
    pub fn count_where(&self, filter: &Filter) -> Result<u64> {
        self.alive()?;
        // A bad filter is an error before a connection is taken.
        filter.validate()?;
        let now = self.now();
        self.store
            .read(|conn| records::count_matching(conn, self.state.cid, filter, Some(now)))
    }

    /// Records in id order, optionally only those matching a filter and
    /// only ids after `after` (for paging), at most `limit`. The short form
    /// of [`Collection::scan_page`].
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
            .read(|conn| records::scan(conn, rows, filter, after, false, limit))
    }

    /// One page of records: in id order, or by a metadata field (ties
    /// broken by id; records without the field, or with null there, after
    /// the rest, by id), ascending or descending (the id tie-break too),
    /// only those matching the filter. [`Page::next`] is set whenever the
    /// page stopped at its limit: pass it as [`ScanOptions::after`] for the
    /// next page, which starts exactly after this one's last record even
    /// while others write (a record written meanwhile shows up in a later
    /// page if it sorts after the cursor, never twice). A field holding an
    /// array or an object sorts as its JSON text, after every number.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`] (a bad filter or `order_by` path),
    /// [`Error::InvalidArgument`] (a cursor from another ordering, or not a
    /// cursor), SQLite failures, [`Error::Corrupt`].
    pub fn scan_page(&self, options: &ScanOptions) -> Result<Page> {
        self.alive()?;
        let filter = options.filter.as_ref();
        if let Some(f) = filter {
            f.validate()?;
        }
        let limit = options.limit;
        if limit == 0 {
            return Err(Error::InvalidArgument {
                reason: "a page holds at least one record (limit 0)".into(),
            });
        }
        let rows = self.rows();
        let Some(by) = options.order_by.as_deref().filter(|b| *b != "id") else {
            let after = options.after.as_deref();
            if let Some(by) = after.and_then(cursor::ordering) {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "that cursor continues an ordering by {by}; this scan is in id order"
                    ),
                });
            }
            let mut got = self.store.read(|conn| {
                records::scan(
                    conn,
                    rows,
                    filter,
                    after,
                    options.desc,
                    limit.saturating_add(1),
                )
            })?;
            let next = (got.len() > limit).then(|| {
                got.truncate(limit);
                got.last().map(|r| r.id.clone()).unwrap_or_default()
            });
            return Ok(Page { records: got, next });
        };
        let segs = crate::filter::parse::check_path(by)?;
        let by = crate::filter::Field::Meta(segs.clone()).to_string();
        let after = options
            .after
            .as_deref()
            .map(|c| cursor::decode(c, &by, options.desc))
            .transpose()?;
        let mut got = self.store.read(|conn| {
            records::page_by(
                conn,
                rows,
                filter,
                &segs,
                options.desc,
                after.as_ref(),
                limit.saturating_add(1),
            )
        })?;
        let next = if got.len() > limit {
            got.truncate(limit);
            got.last()
                .map(|(r, v)| cursor::encode(&by, options.desc, v, &r.id))
        } else {
            None
        };
        Ok(Page {
            records: got.into_iter().map(|(r, _)| r).collect(),
            next,
        })
    }

    /// Every record (or those matching `filter`), in id order, from one
    /// consistent state of the collection however long `f` takes (one read
    /// transaction; writers go on meanwhile). What `quiver export` reads.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], SQLite failures, [`Error::Corrupt`], and
    /// whatever `f` returns.
    pub fn for_each_record(
        &self,
        filter: Option<&Filter>,
        mut f: impl FnMut(Record) -> Result<()>,
    ) -> Result<()> {
        self.alive()?;
        if let Some(filter) = filter {
            filter.validate()?;
        }
        let rows = self.rows();
        self.store.read(|conn| {
            let tx = ReadTx::begin(conn)?;
            records::each(conn, rows, filter, &mut f)?;
            tx.end()
        })
    }

    /// Metadata paths with a field index.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn indexed_fields(&self) -> Result<Vec<String>> {
        self.store
            .read(|conn| catalogue::field_indexes(conn, self.state.cid))
    }

    /// Where this collection's rows are, for the record queries: as a
    /// read now sees them (expired records hidden).
    pub(super) fn rows(&self) -> Rows<'_> {
        self.state.rows().live(self.now())
    }

    /// The store clock's time, Unix milliseconds.
    pub(crate) fn now(&self) -> i64 {
        self.store.options.clock.now_ms()
    }
}

/// Cursors of field-ordered pages: `@` and the hex of a small JSON object
/// naming the ordering, the last sort value and the last id (shell-safe,
/// opaque to the caller, checked against the ordering it is used with).
/// An id-ordered page's cursor is its last id.
mod cursor {
    use rusqlite::types::Value as Sql;
    use serde_json::{json, Value};

    use crate::db::records::After;
    use crate::error::{Error, Result};

    pub(super) fn encode(by: &str, desc: bool, value: &Sql, id: &str) -> String {
        let (t, v) = match value {
            Sql::Null => ("n", Value::Null),
            Sql::Integer(n) => ("i", json!(n)),
            Sql::Real(x) => ("r", json!(x)),
            Sql::Text(s) => ("s", json!(s)),
            Sql::Blob(b) => ("b", json!(b)),
        };
        let text = json!({"by": by, "desc": desc, "t": t, "v": v, "id": id}).to_string();
        let mut out = String::with_capacity(1 + 2 * text.len());
        out.push('@');
        for b in text.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The field a cursor orders by, if it is one.
    pub(super) fn ordering(cursor: &str) -> Option<String> {
        let v = json(cursor)?;
        v["by"].as_str().map(String::from)
    }

    fn json(cursor: &str) -> Option<Value> {
        let hex = cursor.strip_prefix('@')?;
        if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
            .collect();
        serde_json::from_slice(&bytes).ok()
    }

    pub(super) fn decode(cursor: &str, by: &str, desc: bool) -> Result<After> {
        let bad = |why: &str| Error::InvalidArgument {
            reason: format!("cursor {}: {why}", short(cursor)),
        };
        if !cursor.starts_with('@') {
            return Err(bad("not a cursor of an ordered scan (those start with @)"));
        }
        let v = json(cursor).ok_or_else(|| bad("damaged"))?;
        if !v["by"].is_string() || !v["desc"].is_boolean() {
            return Err(bad("damaged"));
        }
        if v["by"] != json!(by) || v["desc"] != json!(desc) {
            return Err(bad(&format!(
                "it continues an ordering by {} {}, not by {by} {}",
                v["by"].as_str().unwrap_or("?"),
                if v["desc"] == json!(true) {
                    "descending"
                } else {
                    "ascending"
                },
                if desc { "descending" } else { "ascending" },
            )));
        }
        let value = match (v["t"].as_str(), &v["v"]) {
            (Some("n"), Value::Null) => Sql::Null,
            (Some("i"), x) if x.is_i64() => Sql::Integer(x.as_i64().unwrap_or_default()),
            (Some("r"), x) if x.is_number() => Sql::Real(x.as_f64().unwrap_or_default()),
            (Some("s"), Value::String(s)) => Sql::Text(s.clone()),
            (Some("b"), x) => {
                Sql::Blob(serde_json::from_value(x.clone()).map_err(|_| bad("damaged"))?)
            }
            _ => return Err(bad("damaged")),
        };
        let id = v["id"].as_str().ok_or_else(|| bad("damaged"))?.to_string();
        Ok(After { value, id })
    }

    fn short(s: &str) -> String {
        let cut: String = s.chars().take(24).collect();
        if cut.len() < s.len() {
            format!("{cut:?}...")
        } else {
            format!("{cut:?}")
        }
    }
}
