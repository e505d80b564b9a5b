//! The advisory `LOCK` file: the store's writer lock, taken for one write
//! transaction at a time by any process (DESIGN §3, step 5).
//!
//! `flock` locks belong to the open file description, so they vanish with
//! the process (no stale lock after `kill -9`), and two stores open on one
//! directory in one process exclude each other as two processes do. The
//! file itself is never written: the holder's pid for the busy error comes
//! from the kernel (`/proc/locks`), so a writer that gave up leaves the
//! store's bytes as they were.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sync::MutexExt;

/// A store's `LOCK`, open for the life of a writable store, locked only
/// while a write runs.
///
/// Waiting is fair enough that no writer starves: a waiter marks itself
/// (a read lock on byte 0), and a holder that lets the lock go while
/// someone waits holds off its own next try for a moment, so a process
/// writing in a tight loop cannot take the lock back every time before a
/// waiter's next look (seen: three of four writer processes without a
/// single write while the fourth wrote 600).
#[derive(Debug)]
pub(crate) struct LockFile {
    file: File,
    store: PathBuf,
    /// One holder per open file in this process too: a second `flock` on
    /// the same description would succeed without waiting.
    held: Mutex<()>,
    /// Set when the lock was let go while another waited: the next try
    /// waits until then.
    yield_until: Mutex<Option<Instant>>,
}

/// How long a holder that let the lock go to a waiter stays off it.
const YIELD: Duration = Duration::from_millis(2);

/// How often a waiter looks.
const POLL: Duration = Duration::from_micros(250);

/// Waiters mark byte 0 of `LOCK`: [`ofd_lock`] locks byte `1 + cid`.
const WAITERS: i64 = -1;

/// The writer lock, held until dropped.
pub(crate) struct Held<'a> {
    lock: &'a LockFile,
    _in_process: MutexGuard<'a, ()>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own; no memory is shared.
        unsafe {
            libc::flock(self.lock.file.as_raw_fd(), libc::LOCK_UN);
        }
        if self.lock.waited_for() {
            *self.lock.yield_until.locked() = Some(Instant::now() + YIELD);
        }
    }
}

impl LockFile {
    /// Open (creating it if need be) the `LOCK` of `store_dir`.
    pub(crate) fn open(store_dir: &Path) -> Result<LockFile> {
        let path = store_dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        Ok(LockFile {
            file,
            store: store_dir.to_path_buf(),
            held: Mutex::new(()),
            yield_until: Mutex::new(None),
        })
    }

    /// Take the lock, waiting up to `timeout` for another holder to let
    /// it go; then [`Error::Busy`] naming the holder.
    pub(crate) fn lock(&self, timeout: Duration) -> Result<Held<'_>> {
        let in_process = self.held.locked();
        let started = Instant::now();
        if let Some(until) = self.yield_until.locked().take() {
            let now = Instant::now();
            if until > now {
                std::thread::sleep((until - now).min(timeout));
            }
        }
        let mut waiting = false;
        let out = loop {
            // SAFETY: flock on a descriptor we own; no memory is shared.
            let rc = unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break Ok(Held {
                    lock: self,
                    _in_process: in_process,
                });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                break Err(Error::io("lock store", self.store.join("LOCK"), err));
            }
            let waited = started.elapsed();
            if waited >= timeout {
                break Err(Error::Busy {
                    path: self.store.clone(),
                    pid: holder(&self.file).unwrap_or(0),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            if !waiting {
                // Best effort: without the mark, waiting is only less fair.
                waiting = ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_RDLCK, WAITERS).is_ok();
            }
            std::thread::sleep(POLL.min(timeout - waited));
        };
        if waiting {
            let _ = ofd_lock(&self.file, libc::F_OFD_SETLK, libc::F_UNLCK, WAITERS);
        }
        out
    }

    /// Whether another waiter has marked itself (see [`LockFile`]).
    fn waited_for(&self) -> bool {
        ofd_lock(&self.file, libc::F_OFD_GETLK, libc::F_WRLCK, WAITERS)
            .is_ok_and(|fl| fl.l_type != libc::F_UNLCK as libc::c_short)
    }
}

/// A claim on one collection by a process whose writable handle has its
/// indexes loaded (byte 0 of `LOCK` is the waiters' mark, byte `1 + cid`
/// collection `cid`'s claims): that process snapshots the collection on its own
/// schedule, so a one-shot writer beside it (one `quiver upsert`) need not
/// load the index to do it at close. An open-file-description read lock
/// on byte `1 + cid` of `LOCK` (apart from the writer lock's `flock`, and
/// like it gone with the process); claims never exclude each other.
#[derive(Debug)]
pub(crate) struct Lease {
    _file: File,
}

fn ofd_lock(
    file: &File,
    cmd: libc::c_int,
    kind: libc::c_int,
    cid: i64,
) -> std::io::Result<libc::flock> {
    // SAFETY: an all-zero flock is a valid value of the plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 1 + cid;
    fl.l_len = 1;
    // SAFETY: fcntl on a descriptor we own with a valid flock struct.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if rc == 0 {
        Ok(fl)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl LockFile {
    /// Claim collection `cid` for this handle (see [`Lease`]).
    pub(crate) fn lease(&self, cid: i64) -> Result<Lease> {
        let path = self.store.join("LOCK");
        let file = File::open(&path).map_err(|e| Error::io("open lock file", &path, e))?;
        ofd_lock(&file, libc::F_OFD_SETLK, libc::F_RDLCK, cid)
            .map_err(|e| Error::io("claim a collection", &path, e))?;
        Ok(Lease { _file: file })
    }

    /// Whether some handle (of any process) has claimed collection `cid`.
    pub(crate) fn leased(&self, cid: i64) -> Result<bool> {
        let fl = ofd_lock(&self.file, libc::F_OFD_GETLK, libc::F_WRLCK, cid)
            .map_err(|e| Error::io("look for a claim", self.store.join("LOCK"), e))?;
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }
}

/// The pid holding an flock on `file`, from `/proc/locks` (Linux).
fn holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    // The kernel lists /proc/locks a page per read call, by position: a
    // line can be skipped when other locks come and go between two calls
    // (seen in CI: pid 0 while other tests opened stores). Look again.
    // Room for a page or more per call also avoids a tiny first read.
    (0..5).find_map(|_| {
        use std::io::Read;
        let mut locks = String::with_capacity(1 << 16);
        File::open("/proc/locks")
            .ok()?
            .read_to_string(&mut locks)
            .ok()?;
        find_holder(&locks, major, minor, meta.ino())
    })
}

fn find_holder(locks: &str, major: u32, minor: u32, ino: u64) -> Option<u32> {
    // "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let (pid, id) = (fields.get(4)?, fields.get(5)?);
        let mut parts = id.split(':');
        let maj = u32::from_str_radix(parts.next()?, 16).ok()?;
        let min = u32::from_str_radix(parts.next()?, 16).ok()?;
        let node: u64 = parts.next()?.parse().ok()?;
        (maj == major && min == minor && node == ino).then(|| pid.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_seen_by_others_and_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let a = LockFile::open(dir.path()).unwrap();
        let b = LockFile::open(dir.path()).unwrap();
        assert!(!b.leased(7).unwrap());
        let lease = a.lease(7).unwrap();
        let second = b.lease(7).unwrap();
        assert!(b.leased(7).unwrap() && a.leased(7).unwrap());
        assert!(!b.leased(8).unwrap());
        drop(lease);
        assert!(a.leased(7).unwrap());
        drop(second);
        assert!(!a.leased(7).unwrap());
        // The writer lock is apart from the claims.
        let _held = a.lock(Duration::ZERO).unwrap();
        assert!(!b.leased(7).unwrap());
        assert_eq!(std::fs::read(dir.path().join("LOCK")).unwrap(), b"");
    }

    #[test]
    fn a_held_lock_makes_others_wait_then_fail_busy_with_pid_and_the_file_stays_empty() {
        let dir = tempfile::tempdir().unwrap();
        let first = LockFile::open(dir.path()).unwrap();
        let second = LockFile::open(dir.path()).unwrap();
        let held = first.lock(Duration::ZERO).unwrap();
        let started = Instant::now();
        match second.lock(Duration::from_millis(150)) {
            Err(Error::Busy { pid, waited_ms, .. }) => {
                assert_eq!(pid, std::process::id());
                assert!(waited_ms >= 150, "{waited_ms}");
            }
            other => panic!("expected Busy, got {:?}", other.map(|_| ())),
        }
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(matches!(
            second.lock(Duration::ZERO),
            Err(Error::Busy { .. })
        ));
        assert_eq!(std::fs::read(dir.path().join("LOCK")).unwrap(), b"");
        // Released on drop: the waiter gets it as soon as it is free.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| second.lock(Duration::from_secs(5)).map(|_| ()));
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            waiter.join().unwrap().unwrap();
        });
    }
}
