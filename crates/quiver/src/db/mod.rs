//! The database beneath a store, and every line of SQL: its connections
//! (one writer behind a mutex, a pool of readers, a watch connection for
//! `data_version`), the writer lock, the store's settings, what runs when
//! the last handle on it goes; the schema (`schema`), transactions (`tx`),
//! catalogue rows (`catalogue`), record rows (`records`), full-text
//! queries (`fts`) and filters compiled to WHERE clauses (`filter`). It
//! never names a collection type: the store and collections use it, not
//! the other way round.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result, SqlContext};
use crate::format::{APPLICATION_ID, SCHEMA_VERSION};
use crate::lock::{Held, Lease, LockFile};
use crate::options::StoreOptions;
use crate::sync::MutexExt;

pub(crate) mod catalogue;
pub(crate) mod changes;
pub(crate) mod filter;
pub(crate) mod fts;
pub(crate) mod records;
pub(crate) mod schema;
pub(crate) mod tx;

/// What [`Db`] runs when it closes.
type OnClose = Box<dyn FnOnce(&Db) + Send>;

pub(crate) struct Db {
    /// `None` for an in-memory store (no snapshots, no lock).
    pub(crate) dir: Option<PathBuf>,
    pub(crate) options: StoreOptions,
    /// `None` when read-only.
    writer: Option<Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// One connection kept only to ask SQLite's `data_version`, which
    /// moves when another connection (of this process or another) commits.
    /// A search checks it (about a microsecond) instead of re-reading the
    /// collection row.
    watch: Mutex<Option<Connection>>,
    /// Run once, when the last handle goes (the store snapshots its
    /// collections there), before the connections close.
    on_close: Mutex<Option<OnClose>>,
    /// The store's `LOCK`, taken for each write transaction (`None` in
    /// memory and when read-only). Declared last: closed after the
    /// connections.
    lock: Option<LockFile>,
}

impl Db {
    pub(crate) fn new(
        dir: Option<PathBuf>,
        options: StoreOptions,
        writer: Option<Connection>,
        lock: Option<LockFile>,
    ) -> Db {
        Db {
            dir,
            options,
            writer: writer.map(Mutex::new),
            readers: Mutex::new(Vec::new()),
            watch: Mutex::new(None),
            on_close: Mutex::new(None),
            lock,
        }
    }

    /// Set what runs when the last handle goes.
    pub(crate) fn on_close(&self, f: OnClose) {
        *self.on_close.locked() = Some(f);
    }

    /// The store's writer lock, waiting up to the busy timeout (`None` for
    /// an in-memory store: nothing else can write it). Every write
    /// transaction holds it ([`Db::write_tx`]); other work that must not
    /// overlap another process's writes (installing a snapshot file,
    /// VACUUM) takes it here.
    pub(crate) fn lock(&self) -> Result<Option<Held<'_>>> {
        self.lock
            .as_ref()
            .map(|l| l.lock(self.options.busy_timeout))
            .transpose()
    }

    /// Claim collection `cid` for a handle that has its indexes loaded
    /// (`None` in memory and when read-only: such a handle never
    /// snapshots). See [`Lease`].
    pub(crate) fn lease(&self, cid: i64) -> Result<Option<Lease>> {
        match (&self.lock, self.writer.is_some()) {
            (Some(l), true) => l.lease(cid).map(Some),
            _ => Ok(None),
        }
    }

    /// Whether some handle (of this process or another) has claimed `cid`.
    pub(crate) fn leased(&self, cid: i64) -> Result<bool> {
        match &self.lock {
            Some(l) => l.leased(cid),
            None => Ok(false),
        }
    }

    /// The write connection if no other thread of this process holds it.
    pub(crate) fn try_writer(&self) -> Option<MutexGuard<'_, Connection>> {
        self.writer.as_ref().and_then(|m| match m.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        })
    }

    /// Begin a write transaction on the write connection `conn`: the
    /// writer lock first, then SQLite's (`BEGIN IMMEDIATE`). See
    /// [`tx::WriteTx`].
    pub(crate) fn write_tx<'c>(
        &'c self,
        conn: &'c mut Connection,
        operation: &str,
    ) -> Result<tx::WriteTx<'c>> {
        let held = self.lock()?;
        let before = self.data_version()?;
        tx::WriteTx::begin(self, conn, held, before, operation)
    }

    /// The write connection, or [`Error::ReadOnly`]. Held, it keeps other
    /// threads of this process from writing; other processes are kept out
    /// by the writer lock each write transaction takes.
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
    /// no other connection committed in between. Always 0 in memory,
    /// where the one connection is the writer.
    pub(crate) fn data_version(&self) -> Result<i64> {
        if self.dir.is_none() {
            return Ok(0);
        }
        let mut watch = self.watch.locked();
        if watch.is_none() {
            *watch = Some(self.open_reader()?);
        }
        let conn = watch.as_ref().expect("set above");
        // Cached: every search asks, and parsing the pragma each time
        // cost about as much as a filter-exact search's distances.
        conn.prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .during("read data_version")
    }

    pub(crate) fn give_back(&self, conn: Connection) {
        let mut pool = self.readers.locked();
        if pool.len() < 32 {
            pool.push(conn);
        }
    }

    /// Run `f` on a read connection: a pooled reader for a store on disk
    /// (the pinned one, inside [`Db::pinned`]), the writer for an
    /// in-memory store.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.dir.is_none() {
            let conn = self.writer("read")?;
            return f(&conn);
        }
        if let Some(conn) = self.pinned_conn() {
            return f(&conn);
        }
        self.read_pooled(f)
    }

    /// `f` on a pooled reader (a new one if the pool is empty), which goes
    /// back to the pool after it, never inside a transaction.
    fn read_pooled<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.pooled()?;
        let out = f(&conn);
        // A statement error can leave a read transaction open; end it.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        self.give_back(conn);
        out
    }

    fn pooled(&self) -> Result<Connection> {
        let pooled = self.readers.locked().pop();
        match pooled {
            Some(c) => Ok(c),
            None => self.open_reader(),
        }
    }

    /// Run `f` with every read of this store on this thread going to one
    /// connection inside one read transaction: one consistent state of the
    /// database for the whole of `f`, however many reads it makes and
    /// whatever other connections commit meanwhile. In memory (one
    /// connection, the writer) and when already pinned, just `f`.
    pub(crate) fn pinned<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.dir.is_none() || self.pinned_conn().is_some() {
            return f();
        }
        let conn = self.pooled()?;
        // The snapshot starts at the first read.
        conn.execute_batch("BEGIN DEFERRED; SELECT count(*) FROM collections;")
            .during("begin pinned read transaction")?;
        let conn = std::rc::Rc::new(conn);
        let id = self.id();
        PINNED.with(|p| p.borrow_mut().push((id, conn.clone())));
        // Unpinned however `f` ends, a panic included.
        struct Unpin(usize);
        impl Drop for Unpin {
            fn drop(&mut self) {
                PINNED.with(|p| p.borrow_mut().retain(|(i, _)| *i != self.0));
            }
        }
        let out = {
            let _unpin = Unpin(id);
            f()
        };
        if let Ok(conn) = std::rc::Rc::try_unwrap(conn) {
            if conn.execute_batch("ROLLBACK").is_ok() {
                self.give_back(conn);
            }
        }
        out
    }

    /// Whether this thread is inside [`Db::pinned`] for this store.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned_conn().is_some()
    }

    fn id(&self) -> usize {
        self as *const Db as usize
    }

    fn pinned_conn(&self) -> Option<std::rc::Rc<Connection>> {
        let id = self.id();
        PINNED.with(|p| {
            p.borrow()
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, c)| c.clone())
        })
    }

    /// [`Db::read`] on a connection of its own even inside [`Db::pinned`]:
    /// for what must see the latest state, not the pinned one.
    pub(crate) fn read_latest<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.dir.is_none() {
            return self.read(f);
        }
        self.read_pooled(f)
    }

    /// [`Db::read`] for full-text queries: a pooled reader whose full-text
    /// table was dropped and made again, or rewritten by VACUUM, by
    /// another connection can fail to connect to it ("vtable constructor
    /// failed", seen once in about 15 runs of `first_records`' compact
    /// mode); that connection is closed and the read tried once more on
    /// a fresh one.
    pub(crate) fn read_fts<T>(&self, f: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        match self.read(&f) {
            Err(Error::Sqlite { message, .. })
                if self.dir.is_some() && message.contains("vtable constructor failed") =>
            {
                // Every pooled reader may hold the same stale state (and a
                // pinned one would fail again).
                self.readers.locked().clear();
                self.read_latest(f)
            }
            out => out,
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(f) = self.on_close.locked().take() {
            f(self);
        }
    }
}

thread_local! {
    /// The connections [`Db::pinned`] holds on this thread, by store.
    static PINNED: std::cell::RefCell<Vec<(usize, std::rc::Rc<Connection>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// File name of the database inside a store directory.
pub const DB_FILE: &str = "quiver.db";

/// Open the database of store directory `dir` for writing, creating it if
/// need be, configured and with its schema current.
///
/// # Errors
/// [`Error::NotAStore`] if it is another application's file or of a newer
/// schema; SQLite failures.
pub(crate) fn open_writer(dir: &Path) -> Result<Connection> {
    let db = dir.join(DB_FILE);
    let mut conn = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| not_a_store(dir, e))?;
    set_owner_only(&db);
    check_identity(dir, &conn)?;
    configure(&conn, true).map_err(|e| not_a_store(dir, e))?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// A fresh in-memory database with the schema, the `n`th of this process.
pub(crate) fn open_memory(n: u64) -> Result<Connection> {
    let mut conn = Connection::open_in_memory().during(&format!("open in-memory store {n}"))?;
    configure(&conn, false).during("configure in-memory store")?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// Check that a reader's database is a store this build can read as it is.
///
/// # Errors
/// [`Error::NotAStore`], [`Error::OldSchema`].
pub(crate) fn check_readable(dir: &Path, conn: &Connection) -> Result<()> {
    check_identity(dir, conn)?;
    let (_, version) = schema::identify(conn)?;
    if version < SCHEMA_VERSION {
        return Err(Error::OldSchema {
            path: dir.to_path_buf(),
            version,
        });
    }
    Ok(())
}

impl Db {
    /// SQLite's own `quick_check`: "ok", or what is wrong. On disk it runs
    /// on a connection opened for it: a pooled reader that had read a
    /// full-text table while other connections wrote it reported
    /// "malformed inverted index" for that table (once in 20 to 40 of
    /// `first_records`' cycles) while its keyword results matched a fresh
    /// reader's exactly and a fresh connection found the file sound. `conn`
    /// is used in memory, where it is the only connection.
    pub(crate) fn quick_check(&self, conn: &Connection) -> Result<String> {
        let fresh = match self.dir {
            Some(_) => Some(self.open_reader()?),
            None => None,
        };
        fresh
            .as_ref()
            .unwrap_or(conn)
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .during("sqlite quick_check")
    }
}

/// Give the space of deleted rows back to the file system, and empty the
/// write-ahead log.
pub(crate) fn vacuum(conn: &Connection) -> Result<()> {
    conn.execute_batch("VACUUM").during("vacuum")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .during("checkpoint")
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
    if app != APPLICATION_ID && !(app == 0 && version == 0 && is_empty_db(conn)) {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("{DB_FILE} is an SQLite file of another application"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("schema version {version} is newer than this build ({SCHEMA_VERSION})"),
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

fn not_a_store(dir: &Path, e: rusqlite::Error) -> Error {
    Error::NotAStore {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Copy the database into a new file at `dest` with SQLite's online
/// backup, in one step: the copy is one consistent state, however many
/// writers commit meanwhile (they wait only for WAL checkpoints, never for
/// the copy). Returns the copy's snapshot records: cid, digest, length.
pub(crate) fn backup_into(source: &Connection, dest: &Path) -> Result<Vec<(i64, String, u64)>> {
    let mut to = Connection::open(dest).during("open the backup's database")?;
    {
        let backup = rusqlite::backup::Backup::new(source, &mut to).during("start the backup")?;
        // -1: every page in one step, under one read of the source. A
        // step that finds the source locked is tried again.
        loop {
            match backup.step(-1).during("copy the database")? {
                rusqlite::backup::StepResult::Done => break,
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    }
    let rows = to
        .prepare("SELECT cid, digest, length FROM snapshots ORDER BY cid")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect()
        })
        .during("read the backup's snapshot records")?;
    Ok(rows)
}

/// In a backup's database: drop the records of snapshots whose files did
/// not come along (the backup's first open rebuilds those indexes from
/// its records, losing nothing).
pub(crate) fn forget_snapshots(dest: &Path, cids: &[i64]) -> Result<()> {
    let conn = Connection::open(dest).during("open the backup's database")?;
    for cid in cids {
        conn.execute("DELETE FROM snapshots WHERE cid = ?1", [cid])
            .during("drop a snapshot record from the backup")?;
    }
    Ok(())
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
