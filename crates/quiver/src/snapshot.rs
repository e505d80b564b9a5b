//! Snapshot files: `index/<cid>.usearch`, written atomically, checked before use.
//!
//! Writing: bytes → `<cid>.usearch.tmp` → fsync → rename over the live file →
//! fsync the directory. Only after that does the caller record the digest in
//! SQLite, so a crash at any step leaves either the old file with its old
//! record, or a file whose digest matches no record (which open rebuilds).
//!
//! Reading: the length and blake3 digest are checked against the record
//! before any byte reaches usearch, which trusts its input.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::failpoint::failpoint;

/// The directory holding snapshots.
pub(crate) fn index_dir(store: &Path) -> PathBuf {
    store.join("index")
}

/// Snapshot path of collection `cid`: named by number, never by a user string.
pub(crate) fn path(store: &Path, cid: i64) -> PathBuf {
    index_dir(store).join(format!("{cid}.usearch"))
}

/// Hex blake3 digest.
pub(crate) fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Create `dir` (owner-only) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create directory", dir, e)),
    }
}

/// Replace the snapshot of `cid` with `bytes`, durably.
pub(crate) fn write_atomic(store: &Path, cid: i64, bytes: &[u8]) -> Result<()> {
    let dir = index_dir(store);
    ensure_dir(&dir)?;
    let live = path(store, cid);
    let tmp = live.with_extension("usearch.tmp");
    let io = |op: &str, p: &Path, e| Error::io(op, p, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create snapshot temp file", &tmp, e))?;
    #[cfg(feature = "failpoints")]
    if std::env::var("QUIVER_FAILPOINT").is_ok_and(|v| v == "snapshot:partial-temp") {
        // Half the bytes reach the disk, then the process dies.
        let _ = f
            .write_all(&bytes[..bytes.len() / 2])
            .and_then(|_| f.sync_all());
        failpoint!("snapshot:partial-temp");
    }
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io("write snapshot temp file", &tmp, e))?;
    drop(f);
    failpoint!("snapshot:before-rename");
    fs::rename(&tmp, &live).map_err(|e| io("rename snapshot into place", &live, e))?;
    sync_dir(&dir)
}

/// fsync a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Why a snapshot file was not used.
pub(crate) type Rejected = String;

/// Read the snapshot of `cid` and check it against the recorded length and digest.
pub(crate) fn read_checked(
    store: &Path,
    cid: i64,
    length: u64,
    want_digest: &str,
) -> std::result::Result<Vec<u8>, Rejected> {
    let p = path(store, cid);
    let bytes = fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if bytes.len() as u64 != length {
        return Err(format!(
            "{} is {} bytes, {} were recorded",
            p.display(),
            bytes.len(),
            length
        ));
    }
    if digest(&bytes) != want_digest {
        return Err(format!(
            "{} does not match its recorded digest",
            p.display()
        ));
    }
    Ok(bytes)
}

/// Remove a collection's snapshot (and a leftover temp file), if present.
pub(crate) fn remove(store: &Path, cid: i64) -> Result<()> {
    let live = path(store, cid);
    for p in [live.with_extension("usearch.tmp"), live] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove snapshot", &p, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_checks_length_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"hello snapshot".to_vec();
        write_atomic(dir.path(), 7, &bytes).unwrap();
        let d = digest(&bytes);
        assert_eq!(
            read_checked(dir.path(), 7, bytes.len() as u64, &d).unwrap(),
            bytes
        );
        assert!(read_checked(dir.path(), 7, 3, &d).is_err());
        assert!(read_checked(dir.path(), 7, bytes.len() as u64, &digest(b"x")).is_err());
        assert!(read_checked(dir.path(), 8, bytes.len() as u64, &d).is_err());
        remove(dir.path(), 7).unwrap();
        assert!(!path(dir.path(), 7).exists());
    }
}
