//! The store: a directory with `quiver.db`, `index/` and `LOCK`.
//!
//! `Store` owns the SQLite connections (one writer behind a mutex, a pool of
//! readers), the writer lock, and the catalogue of collections whose indexes
//! are loaded (lazily, on first use).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::collection::{CollState, Collection};
use crate::config::{validate_name, CollectionConfig};
use crate::db::{not_a_store, unix_now, Db, DB_FILE};
use crate::error::{Error, Result, SqlContext};
use crate::lock::WriterLock;
use crate::options::StoreOptions;
use crate::schema;
use crate::snapshot;
use crate::sync::RwLockExt;

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

/// The collections whose indexes are loaded, by name.
struct Registry(RwLock<HashMap<String, Arc<CollState>>>);

impl Registry {
    fn loaded(&self, name: &str) -> Option<Arc<CollState>> {
        self.0.read_lock().get(name).cloned()
    }

    fn loaded_all(&self) -> Vec<Arc<CollState>> {
        self.0.read_lock().values().cloned().collect()
    }

    fn register(&self, state: Arc<CollState>) {
        self.0.write_lock().insert(state.name.clone(), state);
    }

    fn unregister(&self, name: &str) -> Option<Arc<CollState>> {
        self.0.write_lock().remove(name)
    }

    fn close_snapshots(&self, db: &Db) -> Result<()> {
        if db.is_read_only() || db.dir.is_none() {
            return Ok(());
        }
        let mut first_err = None;
        for state in self.loaded_all() {
            if let Err(e) = state.snapshot_if(db, db.options.close_snapshot_min_changes) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The last handle went: stop background work, snapshot what is due.
    fn close(&self, db: &Db) {
        for st in self.0.read_lock().values() {
            st.stop_background();
        }
        let _ = self.close_snapshots(db);
    }
}

static MEMORY_STORES: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (or create) a writable store in `dir`, taking the writer lock.
    ///
    /// # Errors
    /// [`Error::Locked`] if another writer holds the store;
    /// [`Error::NotAStore`] if `dir` holds something else; I/O and SQLite failures.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let db = dir.join(DB_FILE);
        if !db.exists() {
            prepare_new_dir(&dir)?;
        }
        let lock = WriterLock::acquire(&dir)?;
        let mut conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| not_a_store(&dir, e))?;
        set_owner_only(&db);
        check_identity(&dir, &conn)?;
        configure(&conn, true).map_err(|e| not_a_store(&dir, e))?;
        schema::migrate(&mut conn)?;
        snapshot::ensure_dir(&snapshot::index_dir(&dir))?;
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
        let db = dir.join(DB_FILE);
        if !db.is_file() {
            return Err(Error::NotAStore {
                path: dir,
                reason: format!("no {DB_FILE}"),
            });
        }
        let store = Store::from_parts(Some(dir.clone()), options, None, None);
        let conn = store.inner.db.open_reader()?;
        check_identity(&dir, &conn)?;
        let (_, version) = schema::identify(&conn)?;
        if version < crate::format::SCHEMA_VERSION {
            return Err(Error::OldSchema { path: dir, version });
        }
        store.inner.db.give_back(conn);
        Ok(store)
    }

    /// A store that lives in memory only: for tests and examples.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn open_in_memory() -> Result<Store> {
        let n = MEMORY_STORES.fetch_add(1, Ordering::Relaxed);
        let mut conn = Connection::open_in_memory().during(&format!("open in-memory store {n}"))?;
        configure(&conn, false).during("configure in-memory store")?;
        schema::migrate(&mut conn)?;
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
        lock: Option<WriterLock>,
    ) -> Store {
        let db = Arc::new(Db::new(dir, options, writer, lock));
        let registry = Arc::new(Registry(RwLock::new(HashMap::new())));
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

    /// Create a collection.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidConfig`],
    /// [`Error::CollectionExists`], [`Error::ReadOnly`].
    pub fn create_collection(&self, name: &str, config: &CollectionConfig) -> Result<Collection> {
        validate_name(name)?;
        config.validate()?;
        let mut conn = self.inner.db.writer("create collection")?;
        let tx = conn.transaction().during("begin create collection")?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM collections WHERE name = ?1", [name], |_| {
                Ok(true)
            })
            .optional()
            .during("look up collection")?
            .unwrap_or(false);
        if exists {
            return Err(Error::CollectionExists { name: name.into() });
        }
        tx.execute(
            "INSERT INTO collections (name, dimension, metric, scalar, connectivity, expansion_add,
                                      expansion_search, model, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                name,
                config.dimension as i64,
                config.metric.as_str(),
                config.scalar.as_str(),
                config.connectivity as i64,
                config.expansion_add as i64,
                config.expansion_search as i64,
                config.model,
                unix_now(),
            ],
        )
        .during("insert collection")?;
        let cid = tx.last_insert_rowid();
        tx.execute_batch(&schema::fts_table_sql(cid))
            .during("create full-text table")?;
        tx.commit().during("commit create collection")?;
        let state = CollState::new_empty(cid, name, config.clone())?;
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
        if let Some(state) = registry.loaded(name) {
            return Ok(Some(open(state)));
        }
        if db.is_read_only() {
            let state = CollState::load_read_only(db, name)?;
            return Ok(state.map(|s| {
                registry.register(Arc::clone(&s));
                open(s)
            }));
        }
        // Hold the writer from the check to the registration, so two
        // threads cannot both load it and no write slips in between.
        let mut conn = db.writer("open collection")?;
        if let Some(state) = registry.loaded(name) {
            return Ok(Some(open(state)));
        }
        let state = CollState::load_writable(db, &mut conn, name)?;
        if let Some(s) = &state {
            registry.register(Arc::clone(s));
        }
        drop(conn);
        Ok(state.map(open))
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
        self.inner.db.read(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT c.cid, c.name, c.dimension, c.metric, c.scalar, c.connectivity,
                            c.expansion_add, c.expansion_search, c.model, c.seq,
                            (SELECT count(*) FROM records r WHERE r.cid = c.cid)
                     FROM collections c ORDER BY c.name",
                )
                .during("list collections")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        crate::collection::config_from_row(r)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(9)?,
                        r.get::<_, i64>(10)?,
                    ))
                })
                .during("list collections")?;
            let mut out = Vec::new();
            for row in rows {
                let (config, name, seq, count) = row.during("list collections")?;
                out.push(CollectionSummary {
                    name,
                    config: config?,
                    count: count as u64,
                    seq: seq as u64,
                });
            }
            Ok(out)
        })
    }

    /// Drop a collection: its records, change log and snapshot. Returns
    /// false if there was none. Handles to it fail with [`Error::Dropped`].
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::ReadOnly`], SQLite and I/O failures.
    pub fn drop_collection(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let mut conn = self.inner.db.writer("drop collection")?;
        let tx = conn.transaction().during("begin drop collection")?;
        let cid: Option<i64> = tx
            .query_row("SELECT cid FROM collections WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .during("look up collection")?;
        let Some(cid) = cid else {
            return Ok(false);
        };
        let field_indexes: Vec<i64> = tx
            .prepare("SELECT id FROM field_indexes WHERE cid = ?1")
            .and_then(|mut s| s.query_map([cid], |r| r.get(0))?.collect())
            .during("list field indexes")?;
        for id in field_indexes {
            tx.execute_batch(&format!("DROP INDEX IF EXISTS qf_{cid}_{id}"))
                .during("drop field index")?;
        }
        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", schema::fts_table(cid)))
            .during("drop full-text table")?;
        for sql in [
            "DELETE FROM records WHERE cid = ?1",
            "DELETE FROM tombstones WHERE cid = ?1",
            "DELETE FROM snapshots WHERE cid = ?1",
            "DELETE FROM field_indexes WHERE cid = ?1",
            "DELETE FROM collections WHERE cid = ?1",
        ] {
            tx.execute(sql, [cid]).during("drop collection")?;
        }
        tx.commit().during("commit drop collection")?;
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
    /// changes (see [`StoreOptions::close_snapshot_min_changes`]) and release
    /// the lock. Dropping the store does the same but cannot report errors.
    ///
    /// # Errors
    /// I/O and SQLite failures while snapshotting.
    pub fn close(self) -> Result<()> {
        self.inner.registry.close_snapshots(&self.inner.db)
    }
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
                    !matches!(name.to_str(), Some("LOCK" | "index"))
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

fn set_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
}

fn configure(conn: &Connection, on_disk: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if on_disk {
        // FULL: a committed transaction survives power loss too, not just a
        // process crash; that is the promise.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    }
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA cache_size = -65536;")
}

fn check_identity(dir: &Path, conn: &Connection) -> Result<()> {
    let (app, version) = schema::identify(conn).map_err(|e| Error::NotAStore {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    if app != crate::format::APPLICATION_ID && !(app == 0 && version == 0 && is_empty_db(conn)) {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("{DB_FILE} is an SQLite file of another application"),
        });
    }
    if version > crate::format::SCHEMA_VERSION {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!(
                "schema version {version} is newer than this build ({})",
                crate::format::SCHEMA_VERSION
            ),
        });
    }
    Ok(())
}

fn is_empty_db(conn: &Connection) -> bool {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n == 0)
    .unwrap_or(false)
}
