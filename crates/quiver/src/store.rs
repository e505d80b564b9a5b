//! The store: a directory with `quiver.db`, `index/` and `LOCK`.
//!
//! `Store` owns the SQLite connections (one writer behind a mutex, a pool of
//! readers), the writer lock, and the catalogue of collections whose indexes
//! are loaded (lazily, on first use).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::collection::{CollState, Collection};
use crate::config::{validate_name, CollectionConfig};
use crate::error::{Error, Result, SqlContext};
use crate::lock::WriterLock;
use crate::schema;
use crate::snapshot;
use crate::sync::{MutexExt, RwLockExt};

/// File name of the database inside a store directory.
pub const DB_FILE: &str = "quiver.db";

/// Progress of long work (index rebuilds, tail replays), for progress bars.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Collection being worked on.
    pub collection: String,
    /// `"rebuild"` or `"replay"`.
    pub phase: &'static str,
    /// Items done so far.
    pub done: u64,
    /// Items in all.
    pub total: u64,
}

/// Callback receiving [`Progress`].
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How a store behaves. `StoreOptions::default()` gives the values below.
#[derive(Clone)]
pub struct StoreOptions {
    /// Snapshot a collection automatically once this many changes (or a
    /// quarter of the collection's size, whichever is larger) are not yet
    /// in its snapshot. Default 10,000. The write that crosses the line
    /// serialises the index; a background thread writes, hashes and
    /// fsyncs it, and a later write (or `flush`, or `close`) puts it in
    /// place.
    pub snapshot_every_changes: u64,
    /// Snapshot automatically on the next write once the oldest
    /// un-snapshotted change is this many seconds old. Default 300.
    pub snapshot_every_secs: u64,
    /// On close, snapshot only collections with at least this many
    /// un-snapshotted changes (or whose index was rebuilt): a small tail is
    /// cheaper to replay at the next open than a whole snapshot is to
    /// write. `flush` always snapshots. Default 1,000.
    pub close_snapshot_min_changes: u64,
    /// Called during rebuilds and replays.
    pub progress: Option<ProgressFn>,
    /// A filtered search whose filter matches at most this many records
    /// (or an eighth of the collection, if more) computes exact distances
    /// over just those; above, it runs a filtered HNSW search. Default
    /// 8,192 (measured, see `DEFAULT_EXACT_MAX`).
    pub filter_exact_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            snapshot_every_changes: 10_000,
            snapshot_every_secs: 300,
            close_snapshot_min_changes: 1_000,
            progress: None,
            filter_exact_max: crate::filtered::DEFAULT_EXACT_MAX,
        }
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("snapshot_every_changes", &self.snapshot_every_changes)
            .field("snapshot_every_secs", &self.snapshot_every_secs)
            .field(
                "close_snapshot_min_changes",
                &self.close_snapshot_min_changes,
            )
            .field("progress", &self.progress.is_some())
            .field("filter_exact_max", &self.filter_exact_max)
            .finish()
    }
}

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// `None` for an in-memory store (no snapshots, no lock).
    pub(crate) dir: Option<PathBuf>,
    pub(crate) options: StoreOptions,
    /// `None` when read-only.
    writer: Option<Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// Read-only stores: one connection kept only to ask SQLite's
    /// `data_version`, which moves when another connection commits. A
    /// search checks it (about a microsecond) instead of re-reading the
    /// collection row.
    watch: Mutex<Option<Connection>>,
    pub(crate) collections: RwLock<HashMap<String, Arc<CollState>>>,
    _lock: Option<WriterLock>,
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
        let conn = store.inner.open_reader()?;
        check_identity(&dir, &conn)?;
        let (_, version) = schema::identify(&conn)?;
        if version < crate::format::SCHEMA_VERSION {
            return Err(Error::OldSchema { path: dir, version });
        }
        store.inner.give_back(conn);
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
        Store {
            inner: Arc::new(Inner {
                dir,
                options,
                writer: writer.map(Mutex::new),
                readers: Mutex::new(Vec::new()),
                watch: Mutex::new(None),
                collections: RwLock::new(HashMap::new()),
                _lock: lock,
            }),
        }
    }

    /// The store directory (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// True if opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.writer.is_none()
    }

    /// Create a collection.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::InvalidConfig`],
    /// [`Error::CollectionExists`], [`Error::ReadOnly`].
    pub fn create_collection(&self, name: &str, config: &CollectionConfig) -> Result<Collection> {
        validate_name(name)?;
        config.validate()?;
        let mut conn = self.inner.writer("create collection")?;
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
        self.inner.register(state.clone());
        drop(conn);
        Ok(Collection::new(self.inner.clone(), state))
    }

    /// Open a collection by name, loading its index on first use
    /// (snapshot + tail, or a rebuild from SQLite when the snapshot is unusable).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; SQLite and I/O failures.
    pub fn collection(&self, name: &str) -> Result<Option<Collection>> {
        validate_name(name)?;
        if let Some(state) = self.inner.loaded(name) {
            return Ok(Some(Collection::new(self.inner.clone(), state)));
        }
        match CollState::load(&self.inner, name)? {
            Some(state) => Ok(Some(Collection::new(self.inner.clone(), state))),
            None => Ok(None),
        }
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
        self.inner.read(|conn| {
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
        let mut conn = self.inner.writer("drop collection")?;
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
        if let Some(state) = self.inner.unregister(name) {
            state.mark_dropped();
            state.discard_staged();
        }
        if let Some(dir) = &self.inner.dir {
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
        for state in self.inner.loaded_all() {
            Collection::new(self.inner.clone(), state).flush()?;
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
        self.inner.close_snapshots()
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

impl Inner {
    /// The write connection, or [`Error::ReadOnly`].
    pub(crate) fn writer(&self, operation: &'static str) -> Result<MutexGuard<'_, Connection>> {
        match &self.writer {
            Some(m) => Ok(m.locked()),
            None => Err(Error::ReadOnly { operation }),
        }
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    pub(crate) fn open_reader(&self) -> Result<Connection> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| Error::arg("in-memory store has no reader"))?;
        let db = dir.join(DB_FILE);
        // Read-write flags but `query_only`: SQLite refuses every write,
        // yet the last connection to close may remove the -wal and -shm
        // files it made (a read-only connection cannot), so reading a store
        // leaves its files as they were. Read-only files fall back below.
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| not_a_store(dir, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .during("set busy timeout")?;
        conn.execute_batch("PRAGMA query_only = 1")
            .during("make reader query-only")?;
        match conn.query_row("PRAGMA schema_version", [], |_| Ok(())) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                open_immutable(dir, &db)
            }
            _ => Ok(conn),
        }
    }

    /// SQLite's `data_version` on the watch connection: equal values mean
    /// no other connection committed in between.
    pub(crate) fn data_version(&self) -> Result<i64> {
        let mut watch = self.watch.locked();
        if watch.is_none() {
            *watch = Some(self.open_reader()?);
        }
        let conn = watch.as_ref().expect("set above");
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .during("read data_version")
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.readers.locked();
        if pool.len() < 32 {
            pool.push(conn);
        }
    }

    /// Run `f` on a read connection: a pooled reader for a store on disk,
    /// the writer for an in-memory store.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.dir.is_none() {
            let conn = self.writer("read")?;
            return f(&conn);
        }
        let pooled = self.readers.locked().pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        // A statement error can leave a read transaction open; end it.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.give_back(conn);
        out
    }

    pub(crate) fn loaded(&self, name: &str) -> Option<Arc<CollState>> {
        self.collections.read_lock().get(name).cloned()
    }

    fn loaded_all(&self) -> Vec<Arc<CollState>> {
        self.collections.read_lock().values().cloned().collect()
    }

    pub(crate) fn register(&self, state: Arc<CollState>) {
        self.collections
            .write_lock()
            .insert(state.name.clone(), state);
    }

    fn unregister(&self, name: &str) -> Option<Arc<CollState>> {
        self.collections.write_lock().remove(name)
    }

    fn close_snapshots(&self) -> Result<()> {
        if self.is_read_only() || self.dir.is_none() {
            return Ok(());
        }
        let mut first_err = None;
        for state in self.loaded_all() {
            if let Err(e) = state.snapshot_if(self, self.options.close_snapshot_min_changes) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for st in self.collections.read_lock().values() {
            st.stop_background();
        }
        let _ = self.close_snapshots();
    }
}

/// A WAL-mode database on files nobody may write cannot create its
/// shared-memory file, and SQLite refuses it. If there is no WAL holding
/// committed pages, nothing can change the files, and SQLite's `immutable`
/// mode reads them as they are. With such a WAL it would silently miss
/// those pages, so that is an error instead.
fn open_immutable(dir: &Path, db: &Path) -> Result<Connection> {
    let wal = dir.join(format!("{DB_FILE}-wal"));
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(Error::Io {
            operation: "open read-only store".into(),
            path: dir.to_path_buf(),
            message: "its files are read-only and its write-ahead log has changes not yet in the database; \
                      open it once with write access"
                .into(),
        });
    }
    let uri = format!("file:{}?immutable=1", percent_path(db));
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| not_a_store(dir, e))?;
    Ok(conn)
}

/// A path as a URI path: bytes outside the unreserved set percent-encoded.
fn percent_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in p.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

fn not_a_store(dir: &Path, e: rusqlite::Error) -> Error {
    Error::NotAStore {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
