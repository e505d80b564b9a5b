//! The store: a directory with `quiver.db`, `index/` and `LOCK`.
//!
//! `Store` creates, lists and drops collections and keeps the registry of
//! those whose indexes are loaded (lazily, on first use); the connections
//! and the writer lock are `db`'s. Any number of processes may open one
//! store writable: each write takes the lock for its own transaction.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

use crate::collection::{CollState, Collection};
use crate::config::{validate_name, CollectionConfig, Metric};
use crate::db::{self, catalogue, Db, DB_FILE};
use crate::error::{Error, Result};
use crate::lock::LockFile;
use crate::options::StoreOptions;
use crate::snapshot;
use crate::sync::{MutexExt, RwLockExt};

/// A Quiver store. Cheap to share: `Send + Sync`, every method takes `&self`.
///
/// ```
/// use quiver::{CollectionConfig, Record, SearchOptions, Store};
///
/// let store = Store::open_in_memory()?;
/// let docs = store.create_collection("docs", &CollectionConfig::new(3))?;
/// docs.upsert(&[
///     Record::new("a", vec![1.0, 0.0, 0.0]),
///     Record::new("b", vec![0.0, 1.0, 0.0]),
/// ])?;
/// let result = docs.search(&[0.9, 0.1, 0.0], &SearchOptions::new(1))?;
/// assert_eq!(result.hits[0].id, "a");
/// # Ok::<(), quiver::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    db: Arc<Db>,
    registry: Arc<Registry>,
}

/// The collections this store has handed out, by name (their indexes are
/// loaded on first use).
struct Registry {
    map: RwLock<HashMap<String, Arc<CollState>>>,
    /// Held by [`Store::collection`] while it finds a collection.
    finding: Mutex<()>,
}

impl Registry {
    fn loaded(&self, name: &str) -> Option<Arc<CollState>> {
        self.map.read_lock().get(name).cloned()
    }

    fn loaded_all(&self) -> Vec<Arc<CollState>> {
        self.map.read_lock().values().cloned().collect()
    }

    fn register(&self, state: Arc<CollState>) {
        self.map.write_lock().insert(state.name.clone(), state);
    }

    fn unregister(&self, name: &str) -> Option<Arc<CollState>> {
        self.map.write_lock().remove(name)
    }

    /// Forget `state` if it is still what `name` maps to.
    fn unregister_if(&self, name: &str, state: &Arc<CollState>) {
        let mut map = self.map.write_lock();
        if map.get(name).is_some_and(|s| Arc::ptr_eq(s, state)) {
            map.remove(name);
        }
    }

    fn close_snapshots(&self, db: &Db) -> Result<()> {
        if db.is_read_only() || db.dir.is_none() {
            return Ok(());
        }
        let mut first_err = None;
        for state in self.loaded_all() {
            if let Err(e) = state.close_snapshot(db, db.options.close_snapshot_min_changes) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The last handle went: stop background work, snapshot what is due.
    fn close(&self, db: &Db) {
        for st in self.map.read_lock().values() {
            st.stop_background();
        }
        let _ = self.close_snapshots(db);
    }
}

static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (or create) a writable store in `dir`. Other processes may
    /// have it open, writable or not, at the same time: each write takes
    /// the store's writer lock for its own transaction, waiting up to
    /// [`StoreOptions::busy_timeout`] for another writer.
    ///
    /// # Errors
    /// [`Error::Busy`] if another writer held the lock past the timeout
    /// while this one created or migrated the schema; [`Error::NotAStore`]
    /// if `dir` holds something else; I/O and SQLite failures.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join(DB_FILE).exists() {
            prepare_new_dir(&dir)?;
        }
        let lock = LockFile::open(&dir)?;
        // Two processes may create or migrate one store at once.
        let conn = {
            let _held = lock.lock(options.busy_timeout)?;
            db::open_writer(&dir)?
        };
        snapshot::ensure_dir(&snapshot::index_dir(&dir))?;
        snapshot::remove_stale_temps(&dir, None);
        Ok(Store::from_parts(
            Some(dir),
            options,
            Some(conn),
            Some(lock),
        ))
    }

    /// Open an existing store for reading only. Works beside a live writer
    /// process; takes no lock and never writes.
    ///
    /// # Errors
    /// [`Error::NotAStore`] if there is no store in `dir`; SQLite failures.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_read_only_with(dir, StoreOptions::default())
    }

    /// [`Store::open_read_only`] with options (only `progress` applies).
    ///
    /// # Errors
    /// As [`Store::open_read_only`].
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join(DB_FILE).is_file() {
            return Err(Error::NotAStore {
                path: dir,
                reason: format!("no {DB_FILE}"),
            });
        }
        let store = Store::from_parts(Some(dir.clone()), options, None, None);
        let conn = store.inner.db.open_reader()?;
        db::check_readable(&dir, &conn)?;
        store.inner.db.give_back(conn);
        Ok(store)
    }

    /// A store that lives in memory only: for tests and examples.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn open_in_memory() -> Result<Store> {
        let n = MEMORY_STORES.fetch_add(1, Ordering::Relaxed);
        let conn = db::open_memory(n)?;
        Ok(Store::from_parts(
            None,
            StoreOptions::default(),
            Some(conn),
            None,
        ))
    }

    fn from_parts(
        dir: Option<PathBuf>,
        options: StoreOptions,
        writer: Option<Connection>,
        lock: Option<LockFile>,
    ) -> Store {
        let db = Arc::new(Db::new(dir, options, writer, lock));
        let registry = Arc::new(Registry {
            map: RwLock::new(HashMap::new()),
            finding: Mutex::new(()),
        });
        let on_close = Arc::clone(&registry);
        db.on_close(Box::new(move |db: &Db| on_close.close(db)));
        Store {
            inner: Arc::new(Inner { db, registry }),
        }
    }

    /// The store directory (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.db.dir.as_deref()
    }

    /// True if opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.db.is_read_only()
    }

    /// Register a distance implemented in Rust under `name`, for every
    /// store of this process, and return the [`Metric`] to create
    /// collections with (scalar f32). The exact index, the filtered plans
    /// and the HNSW graph all call this one function. The collection
    /// records the name; a process must register it (with the same
    /// function) before it opens such a collection, or the open is
    /// [`Error::UnknownMetric`]. `f` must not panic (a panic, or a NaN,
    /// counts as the greatest distance).
    ///
    /// ```
    /// use quiver::{CollectionConfig, Record, SearchOptions, Store};
    /// let store = Store::open_in_memory()?;
    /// // Manhattan distance.
    /// let l1 = store.register_metric("doc_l1", |a: &[f32], b: &[f32]| {
    ///     a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
    /// })?;
    /// let mut config = CollectionConfig::new(2);
    /// config.metric = l1;
    /// config.scalar = quiver::Scalar::F32;
    /// let coll = store.create_collection("points", &config)?;
    /// coll.upsert(&[Record::new("a", vec![0.0, 0.0]), Record::new("b", vec![3.0, 4.0])])?;
    /// let hits = coll.search(&[1.0, 1.0], &SearchOptions::new(1))?.hits;
    /// assert_eq!(hits[0].id, "a");
    /// assert_eq!(hits[0].distance, Some(2.0));
    /// # Ok::<(), quiver::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`]: a name that is not 1 to 64 characters of
    /// `A-Z a-z 0-9 _ -`, a built-in metric's name, or one this process
    /// has registered already.
    pub fn register_metric(
        &self,
        name: &str,
        f: impl Fn(&[f32], &[f32]) -> f32 + Send + Sync + 'static,
    ) -> Result<Metric> {
        crate::config::CustomMetric::register(name, std::sync::Arc::new(f)).map(Metric::Custom)
    }

    /// Create a collection.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidConfig`],
    /// [`Error::CollectionExists`], [`Error::ReadOnly`].
    pub fn create_collection(&self, name: &str, config: &CollectionConfig) -> Result<Collection> {
        validate_name(name)?;
        config.validate()?;
        let db = &self.inner.db;
        let mut conn = db.writer("create collection")?;
        let tx = db.write_tx(&mut conn, "create collection")?;
        let Some(cid) = catalogue::create(&tx, name, config)? else {
            return Err(Error::CollectionExists { name: name.into() });
        };
        tx.commit("create collection")?;
        let state = CollState::new_empty(cid, name, config.clone())?;
        state.claim(db);
        self.inner.registry.register(state.clone());
        drop(conn);
        Ok(Collection::new(self.inner.db.clone(), state))
    }

    /// Open a collection by name, loading its index on first use
    /// (snapshot + tail, or a rebuild from SQLite when the snapshot is unusable).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; SQLite and I/O failures.
    pub fn collection(&self, name: &str) -> Result<Option<Collection>> {
        validate_name(name)?;
        let (db, registry) = (&self.inner.db, &self.inner.registry);
        let open = |state| Collection::new(Arc::clone(db), state);
        // One thread finds it at a time, so two never both register it.
        let _finding = registry.finding.locked();
        if let Some(state) = registry.loaded(name) {
            // Another process may have dropped it (and made another of
            // that name) since: then find what the name is now.
            if state.still_exists(db)? {
                return Ok(Some(open(state)));
            }
            registry.unregister_if(name, &state);
        }
        let state = CollState::find(db, name)?;
        Ok(state.map(|s| {
            registry.register(Arc::clone(&s));
            open(s)
        }))
    }

    /// Like [`Store::collection`] but a missing collection is an error.
    ///
    /// # Errors
    /// [`Error::NoSuchCollection`] and as [`Store::collection`].
    pub fn get_collection(&self, name: &str) -> Result<Collection> {
        self.collection(name)?
            .ok_or_else(|| Error::NoSuchCollection { name: name.into() })
    }

    /// Names and configs of all collections, by name.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn list_collections(&self) -> Result<Vec<CollectionSummary>> {
        let listed = self.inner.db.read(catalogue::list)?;
        Ok(listed
            .into_iter()
            .map(|c| CollectionSummary {
                name: c.name,
                config: c.config,
                count: c.count as u64,
                seq: c.seq as u64,
            })
            .collect())
    }

    /// Drop a collection: its records, change log and snapshot. Returns
    /// false if there was none. Handles to it fail with [`Error::Dropped`].
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::ReadOnly`], SQLite and I/O failures.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let db = &self.inner.db;
        let mut conn = db.writer("drop collection")?;
        let tx = db.write_tx(&mut conn, "drop collection")?;
        let Some(cid) = catalogue::drop(&tx, name)? else {
            return Ok(false);
        };
        tx.commit("drop collection")?;
        if let Some(state) = self.inner.registry.unregister(name) {
            state.mark_dropped();
            state.discard_staged();
        }
        if let Some(dir) = &self.inner.db.dir {
            // The rows are gone; a leftover file is harmless (numbered by a
            // never-reused cid), so a failure here is not fatal.
            let _ = snapshot::remove(dir, cid);
        }
        Ok(true)
    }

    /// Snapshot every loaded collection with un-snapshotted changes.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], I/O and SQLite failures.
    pub fn flush(&self) -> Result<()> {
        for state in self.inner.registry.loaded_all() {
            Collection::new(self.inner.db.clone(), state).flush()?;
        }
        Ok(())
    }

    /// Close the store: snapshot collections with enough un-snapshotted
    /// changes (see [`StoreOptions::close_snapshot_min_changes`]). Dropping
    /// the store does the same but cannot report errors.
    ///
    /// # Errors
    /// I/O and SQLite failures while snapshotting.
    pub fn close(self) -> Result<()> {
        self.inner.registry.close_snapshots(&self.inner.db)
    }
}

impl Store {
    /// Copy the whole store into `dest` (a new or empty directory) while
    /// it may be written: the database through SQLite's online backup, one
    /// consistent state, and each snapshot file that matches the copy's
    /// record of it, checked by its digest. A snapshot replaced meanwhile
    /// does not match; its record is dropped from the copy, and the
    /// backup's first open rebuilds that index from the records (nothing
    /// is lost, the open is slower). The backup is a store like any other.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `dest` is not empty or not a
    /// directory; I/O and SQLite failures (a failed backup may leave a
    /// partial copy in `dest`, never a file named like a store's database).
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref();
        match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::InvalidArgument {
                        reason: format!("backup destination {} is not empty", dest.display()),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dest)
                .map_err(|e| Error::io("create backup directory", dest, e))?,
            Err(e) => {
                return Err(Error::InvalidArgument {
                    reason: format!("backup destination {}: {e}", dest.display()),
                })
            }
        }
        let partial = dest.join(".quiver.db.partial");
        let rows = self.inner.db.read(|conn| db::backup_into(conn, &partial))?;
        let mut report = BackupReport {
            database_bytes: fs::metadata(&partial).map(|m| m.len()).unwrap_or(0),
            ..BackupReport::default()
        };
        let mut dropped = Vec::new();
        let index = snapshot::index_dir(dest);
        for (cid, digest, length) in rows {
            let source = self.inner.db.dir.as_ref().map(|d| snapshot::path(d, cid));
            let bytes = source.and_then(|p| fs::read(p).ok());
            match bytes {
                Some(b) if b.len() as u64 == length && snapshot::digest(&b) == digest => {
                    snapshot::ensure_dir(&index)?;
                    let to = snapshot::path(dest, cid);
                    let tmp = index.join(format!(".{cid}.partial"));
                    snapshot::write_temp(dest, &tmp, &b)?;
                    fs::rename(&tmp, &to).map_err(|e| Error::io("place snapshot copy", &to, e))?;
                    report.snapshots += 1;
                    report.snapshot_bytes += length;
                }
                _ => dropped.push(cid),
            }
        }
        db::forget_snapshots(&partial, &dropped)?;
        report.rebuilt_on_open = dropped.len();
        fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("fsync backup database", &partial, e))?;
        let db_file = dest.join(DB_FILE);
        fs::rename(&partial, &db_file)
            .map_err(|e| Error::io("place backup database", &db_file, e))?;
        if index.is_dir() {
            snapshot::sync_dir(&index)?;
        }
        snapshot::sync_dir(dest)?;
        Ok(report)
    }
}

/// What [`Store::backup`] copied.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BackupReport {
    /// Size of the database copy.
    pub database_bytes: u64,
    /// Snapshot files copied (each matched the copy's record).
    pub snapshots: usize,
    /// Their bytes.
    pub snapshot_bytes: u64,
    /// Collections whose snapshot changed during the backup: their index
    /// is rebuilt from the records when the backup is first opened.
    pub rebuilt_on_open: usize,
}

/// One row of [`Store::list_collections`].
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSummary {
    /// Name.
    pub name: String,
    /// Settings.
    pub config: CollectionConfig,
    /// Records.
    pub count: u64,
    /// Change sequence number.
    pub seq: u64,
}

/// A store directory may be created, or used if it is empty.
fn prepare_new_dir(dir: &Path) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            let foreign = entries.any(|e| {
                e.map(|e| {
                    let name = e.file_name();
                    // Another process may be creating the store right now.
                    !matches!(
                        name.to_str(),
                        Some(
                            "LOCK"
                                | "index"
                                | "quiver.db"
                                | "quiver.db-wal"
                                | "quiver.db-shm"
                                | "quiver.db-journal"
                        )
                    )
                })
                .unwrap_or(true)
            });
            if foreign {
                return Err(Error::NotAStore {
                    path: dir.to_path_buf(),
                    reason: format!("directory is not empty and has no {DB_FILE}"),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create store directory", dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        }),
        Err(e) => Err(Error::io("read store directory", dir, e)),
    }
}
