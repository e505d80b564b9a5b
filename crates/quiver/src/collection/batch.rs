//! Atomic batches: deletes, upserts and partial updates committed as one
//! transaction and applied to the index as one step.

use std::collections::HashSet;

use super::*;

/// A change to some fields of one record ([`Collection::update`]): what is
/// `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// The record to change; it must exist.
    pub id: String,
    /// A new vector.
    pub vector: Option<Vec<f32>>,
    /// A new text (the keyword index follows). In a collection bound to a
    /// model, a new text needs its new vector too: the library does not
    /// embed (the CLI does).
    pub text: Option<String>,
    /// New metadata: replaces the record's, or with `merge` is merged
    /// into it as a JSON merge patch (RFC 7386: each key given replaces
    /// that key, objects merge recursively, a null removes the key).
    pub metadata: Option<Value>,
    /// Merge `metadata` instead of replacing it.
    pub merge: bool,
    /// A new expiry (Unix ms), or `Some(None)` to keep the record for good.
    pub expires_at: Option<Option<i64>>,
}

impl Update {
    /// A change to record `id` that changes nothing yet.
    pub fn new(id: impl Into<String>) -> Update {
        Update {
            id: id.into(),
            ..Update::default()
        }
    }

    /// With a new vector.
    pub fn vector(mut self, vector: Vec<f32>) -> Update {
        self.vector = Some(vector);
        self
    }

    /// With a new text.
    pub fn text(mut self, text: impl Into<String>) -> Update {
        self.text = Some(text.into());
        self
    }

    /// With metadata replacing the record's.
    pub fn metadata(mut self, metadata: Value) -> Update {
        self.metadata = Some(metadata);
        self.merge = false;
        self
    }

    /// With metadata merged into the record's (a JSON merge patch).
    pub fn merge(mut self, patch: Value) -> Update {
        self.metadata = Some(patch);
        self.merge = true;
        self
    }

    /// With a new expiry (Unix milliseconds; `None`: never expires).
    pub fn expires_at(mut self, at: Option<i64>) -> Update {
        self.expires_at = Some(at);
        self
    }
}

/// The operations of one [`Collection::write`], checked as they are added
/// and carried out in order in one transaction: a later operation sees
/// what an earlier one did (a `delete_where` after an `upsert` deletes the
/// new records it matches).
pub struct Batch<'c> {
    coll: &'c Collection,
    ops: Vec<Op>,
}

enum Op {
    Upsert(Vec<Record>),
    Delete(Vec<String>),
    DeleteWhere(Filter),
    Update(Update),
    MergeWhere(Filter, Value),
}

impl Batch<'_> {
    /// Insert or replace records (a later one with the same id wins).
    ///
    /// # Errors
    /// What [`Collection::upsert`] checks before writing.
    pub fn upsert(&mut self, records: &[Record]) -> Result<&mut Self> {
        self.coll.check_batch(records)?;
        self.ops.push(Op::Upsert(records.to_vec()));
        Ok(self)
    }

    /// Delete records by id (those that do not exist are no error).
    ///
    /// # Errors
    /// [`Error::InvalidId`].
    pub fn delete<S: AsRef<str>>(&mut self, ids: &[S]) -> Result<&mut Self> {
        for id in ids {
            record::check_id(id.as_ref())?;
        }
        let ids = ids.iter().map(|id| id.as_ref().to_string()).collect();
        self.ops.push(Op::Delete(ids));
        Ok(self)
    }

    /// Delete every record matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`].
    pub fn delete_where(&mut self, filter: &Filter) -> Result<&mut Self> {
        filter.validate()?;
        self.ops.push(Op::DeleteWhere(filter.clone()));
        Ok(self)
    }

    /// Change some fields of one record.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::DimensionMismatch`],
    /// [`Error::InvalidVector`], [`Error::InvalidMetadata`], and
    /// [`Error::InvalidArgument`] for a new text without its vector in a
    /// collection bound to a model. An unknown id is
    /// [`Error::NoSuchRecord`] when the batch runs.
    pub fn update(&mut self, update: Update) -> Result<&mut Self> {
        record::check_id(&update.id)?;
        let config = self.coll.config();
        if let Some(v) = &update.vector {
            record::check_vector(&config, self.coll.name(), Some(&update.id), v)?;
        }
        if let Some(m) = &update.metadata {
            check_object(&update.id, m)?;
        }
        if update.text.is_some() && update.vector.is_none() {
            if let Some(model) = &config.model {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "collection {:?} is bound to model {model}: a new text for {:?} needs its new vector",
                        self.coll.name(),
                        update.id
                    ),
                });
            }
        }
        self.ops.push(Op::Update(update));
        Ok(self)
    }

    /// Merge `patch` (a JSON merge patch, as [`Update::merge`]) into the
    /// metadata of every record matching `filter`.
    ///
    /// # Errors
    /// [`Error::InvalidFilter`], [`Error::InvalidMetadata`].
    pub fn merge_where(&mut self, filter: &Filter, patch: &Value) -> Result<&mut Self> {
        filter.validate()?;
        check_object("(merge patch)", patch)?;
        self.ops.push(Op::MergeWhere(filter.clone(), patch.clone()));
        Ok(self)
    }
}

fn check_object(id: &str, m: &Value) -> Result<()> {
    if m.is_object() {
        Ok(())
    } else {
        Err(Error::InvalidMetadata {
            id: id.to_string(),
            reason: "metadata and merge patches are JSON objects".into(),
        })
    }
}

/// RFC 7386: merge `patch` into `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in fields {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// What a [`Collection::write`] changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteReport {
    /// The sequence number the batch committed as (0 if it changed nothing
    /// and so committed nothing).
    pub seq: u64,
    /// Records inserted or replaced by upserts.
    pub upserted: usize,
    /// Records changed by updates and merges.
    pub updated: usize,
    /// Records deleted.
    pub deleted: usize,
}

/// The index step of a batch: its final vector per key, and the records it
/// removed, each once.
#[derive(Default)]
struct Effects {
    vectors: HashMap<u64, Vec<f32>>,
    order: Vec<u64>,
    removed: Vec<records::Gone>,
    ids: Vec<(u64, String)>,
}

impl Effects {
    fn put(&mut self, key: u64, vector: Option<Vec<f32>>, id: &str) {
        if let Some(v) = vector {
            if self.vectors.insert(key, v).is_none() {
                self.order.push(key);
            }
        }
        self.ids.push((key, id.to_string()));
    }

    /// Keys deleted: no vector for them and, as the index step takes
    /// them out of the id cache, no id either.
    fn remove(&mut self, removed: Vec<records::Gone>) {
        let gone: HashSet<u64> = removed.iter().map(|(k, _)| *k as u64).collect();
        self.vectors.retain(|k, _| !gone.contains(k));
        self.ids.retain(|(k, _)| !gone.contains(k));
        self.removed.extend(removed);
    }
}

impl Collection {
    /// Carry out a batch of deletes, upserts and updates as one
    /// transaction and one index step: readers see all of it or none of it
    /// (a search in this process waits for the index step, as it does for
    /// a delete). `build` adds the operations; an error from it, from a
    /// check, or from any operation (such as an update of an unknown id)
    /// writes nothing.
    ///
    /// ```
    /// # use quiver::{Store, CollectionConfig, Record, Filter};
    /// # let store = Store::open_in_memory()?;
    /// # let code = store.create_collection("code", &CollectionConfig::new(2))?;
    /// let chunks = vec![Record::new("a.rs#0", vec![1.0, 0.0]).with_metadata(serde_json::json!({"file": "a.rs"}))];
    /// let report = code.write(|b| {
    ///     b.delete_where(&Filter::eq("file", "a.rs"))?;
    ///     b.upsert(&chunks)?;
    ///     Ok(())
    /// })?;
    /// assert_eq!(report.upserted, 1);
    /// # Ok::<(), quiver::Error>(())
    /// ```
    ///
    /// # Errors
    /// What the operations check ([`Batch`]), [`Error::NoSuchRecord`],
    /// [`Error::ReadOnly`], SQLite, I/O and index failures.
    pub fn write(&self, build: impl FnOnce(&mut Batch<'_>) -> Result<()>) -> Result<WriteReport> {
        let mut batch = Batch {
            coll: self,
            ops: Vec::new(),
        };
        build(&mut batch)?;
        let ops = batch.ops;
        self.purge_expired()?;
        let removes = ops
            .iter()
            .any(|op| matches!(op, Op::Delete(_) | Op::DeleteWhere(_)));
        // As for a delete: gate before writer, held through the index step.
        let _gate = removes.then(|| self.state.delete_gate.write_lock());
        let mut conn = self.store.writer("write")?;
        self.alive()?;
        let cid = self.state.cid;
        let tx = self.store.write_tx(&mut conn, "write")?;
        let seq = catalogue::next_seq(&tx, cid)?;
        let config = match catalogue::by_cid(&tx, cid)? {
            Some(row) => row.config,
            None => {
                return Err(Error::Dropped {
                    name: self.state.name.clone(),
                })
            }
        };
        let mut report = WriteReport::default();
        let mut fx = Effects::default();
        let rows = self.rows_of(config.dimension);
        for op in &ops {
            match op {
                Op::Upsert(records) => {
                    for r in records {
                        check_record(&config, &self.state.name, r)?;
                    }
                    let mut last: HashMap<&str, usize> = HashMap::new();
                    for (i, r) in records.iter().enumerate() {
                        last.insert(r.id.as_str(), i);
                    }
                    let mut put = records::Upserter::new(&tx, cid, seq)?;
                    for (i, r) in records.iter().enumerate() {
                        if last.get(r.id.as_str()) != Some(&i) {
                            continue;
                        }
                        let meta = r.metadata.as_ref().map(|m| m.to_string());
                        let key = put.put(r, meta.as_ref())?;
                        fx.put(key, Some(r.vector.clone()), &r.id);
                        report.upserted += 1;
                    }
                }
                Op::Delete(ids) => {
                    let gone = records::delete_ids(&tx, cid, ids)?;
                    report.deleted += gone.len();
                    fx.remove(gone);
                }
                Op::DeleteWhere(filter) => {
                    let gone = records::delete_matching(&tx, cid, filter)?;
                    report.deleted += gone.len();
                    fx.remove(gone);
                }
                Op::Update(u) => {
                    let Some(mut r) = records::get(&tx, rows, &u.id)? else {
                        return Err(Error::NoSuchRecord {
                            collection: self.state.name.clone(),
                            id: u.id.clone(),
                        });
                    };
                    if let Some(v) = &u.vector {
                        r.vector = v.clone();
                    }
                    if let Some(t) = &u.text {
                        r.text = Some(t.clone());
                    }
                    if let Some(at) = u.expires_at {
                        r.expires_at = at;
                    }
                    match (&u.metadata, u.merge) {
                        (Some(patch), true) => {
                            let mut m = r.metadata.take().unwrap_or(Value::Null);
                            merge_patch(&mut m, patch);
                            r.metadata = Some(m);
                        }
                        (Some(m), false) => r.metadata = Some(m.clone()),
                        (None, _) => {}
                    }
                    check_record(&config, &self.state.name, &r)?;
                    let meta = r.metadata.as_ref().map(|m| m.to_string());
                    let key = records::Upserter::new(&tx, cid, seq)?.put(&r, meta.as_ref())?;
                    fx.put(key, u.vector.clone(), &r.id);
                    report.updated += 1;
                }
                Op::MergeWhere(filter, patch) => {
                    let found = records::scan(&tx, rows, Some(filter), None, false, usize::MAX)?;
                    let mut put = records::Upserter::new(&tx, cid, seq)?;
                    for mut r in found {
                        let mut m = r.metadata.take().unwrap_or(Value::Null);
                        merge_patch(&mut m, patch);
                        r.metadata = Some(m);
                        let meta = r.metadata.as_ref().map(|m| m.to_string());
                        let key = put.put(&r, meta.as_ref())?;
                        fx.put(key, None, &r.id);
                        report.updated += 1;
                    }
                }
            }
        }
        if report.upserted + report.updated + report.deleted == 0 {
            // Nothing changed: no sequence number spent (the rollback).
            return Ok(report);
        }
        if !fx.removed.is_empty() {
            records::bury(&tx, cid, &fx.removed, seq)?;
        }
        failpoint!("write:before-commit");
        let versions = tx.commit("write")?;
        self.state.committed(seq, versions);
        failpoint!("write:after-commit");
        report.seq = seq as u64;
        let upserts: Vec<(u64, Vec<f32>)> = fx
            .order
            .iter()
            .filter_map(|k| fx.vectors.remove(k).map(|v| (*k, v)))
            .collect();
        let removed: Vec<u64> = fx.removed.iter().map(|(k, _)| *k as u64).collect();
        self.after_commit(&mut conn, seq, &upserts, &removed)?;
        self.cache_ids(fx.ids);
        Ok(report)
    }

    /// Change some fields of one record, in one transaction: see [`Update`].
    ///
    /// # Errors
    /// [`Error::NoSuchRecord`], and what [`Batch::update`] checks.
    pub fn update(&self, update: Update) -> Result<WriteReport> {
        self.write(|b| b.update(update).map(drop))
    }

    /// Merge `patch` into the metadata of every record matching `filter`,
    /// in one transaction (Qdrant's `set_payload`). Returns how many.
    ///
    /// # Errors
    /// What [`Batch::merge_where`] checks, and what [`Collection::write`] can fail with.
    pub fn merge_where(&self, filter: &Filter, patch: &Value) -> Result<usize> {
        self.write(|b| b.merge_where(filter, patch).map(drop))
            .map(|r| r.updated)
    }
}
