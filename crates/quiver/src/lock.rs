//! The advisory `LOCK` file: one writer process per store.
//!
//! `flock` locks belong to the open file, so they vanish with the process
//! (no stale lock after `kill -9`) and a second open in the same process is
//! refused as well. The file itself is never written: the holder's pid for
//! the "locked by pid N" message comes from the kernel (`/proc/locks`), so
//! a refused or failed writer leaves the store's bytes as they were.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// Held for the life of a writable store; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub(crate) fn acquire(store_dir: &Path) -> Result<WriterLock> {
        let path = store_dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked {
                    path: store_dir.to_path_buf(),
                    pid: holder(&file).unwrap_or(0),
                });
            }
            return Err(Error::io("lock store", &path, err));
        }
        Ok(WriterLock { _file: file })
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
    fn second_lock_is_refused_with_pid_and_the_file_stays_empty() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        match WriterLock::acquire(dir.path()) {
            Err(Error::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(std::fs::read(dir.path().join("LOCK")).unwrap(), b"");
        drop(first);
        WriterLock::acquire(dir.path()).unwrap();
    }
}
