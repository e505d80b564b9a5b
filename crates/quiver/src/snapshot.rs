//! Snapshot files: `index/<cid>.usearch`, written atomically, checked before use.
//!
//! Writing: bytes → `<cid>.usearch.tmp` → fsync → rename over the live file →
//! fsync the directory. Only after that does the caller record the digest in
//! SQLite, so a crash at any step leaves either the old file with its old
//! record, or a file whose digest matches no record (which open rebuilds).
//! Automatic snapshots write and fsync the temp file on a background
//! thread; the writer later renames and records it the same way (one
//! snapshot at a time, so they share the temp file). A crash before that
//! leaves the live file and its record as they were.
//!
//! Reading: the length and blake3 digest are checked against the record
//! before any byte reaches usearch, which trusts its input.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::CollectionConfig;
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

/// The digest recorded for a snapshot: `s:<blake3 of the structure>.v:<blake3
/// of the vectors>`, or one blake3 of the whole file when the bytes do not
/// have usearch's layout (and in snapshots written before the split).
///
/// usearch lays a file out as: rows (u32), bytes per row (u32), the vectors,
/// then the head and the graph. Damage to the structure (sizes, head,
/// graph) can crash usearch, so it is checked before usearch sees a byte.
/// Damage to the vectors can only misrank, so at open their digest is
/// checked on a background thread while the first searches run (see
/// `HnswIndex::view`): at 1M × 384 f32 they are 90% of the file.
pub(crate) fn digest(bytes: &[u8]) -> String {
    match vector_region(bytes) {
        Some(r) => format!(
            "s:{}.v:{}",
            structure_digest(bytes, &r),
            blake3::hash(&bytes[r]).to_hex()
        ),
        None => blake3::hash(bytes).to_hex().to_string(),
    }
}

/// Where the vectors lie in a usearch file, if its size prefix fits.
fn vector_region(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let word = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let end = word(0)?.checked_mul(word(4)?)?.checked_add(8)?;
    (end <= bytes.len()).then_some(8..end)
}

fn structure_digest(bytes: &[u8], vectors: &std::ops::Range<usize>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..vectors.start]);
    h.update(&bytes[vectors.end..]);
    h.finalize().to_hex().to_string()
}

/// What is left to check after [`check_structure`]: the vectors' digest.
#[derive(Clone)]
pub(crate) struct VectorCheck {
    range: std::ops::Range<usize>,
    want: String,
}

impl VectorCheck {
    pub(crate) fn passes(&self, bytes: &[u8]) -> bool {
        bytes
            .get(self.range.clone())
            .is_some_and(|v| blake3::hash(v).to_hex().as_str() == self.want)
    }
}

/// Check a snapshot's length and every byte usearch parses as structure.
/// With a split digest the vectors are left to the caller (returned);
/// with a whole-file digest everything is checked here.
pub(crate) fn check_structure(
    bytes: &[u8],
    length: u64,
    want: &str,
) -> std::result::Result<Option<VectorCheck>, Rejected> {
    if bytes.len() as u64 != length {
        return Err(format!(
            "snapshot is {} bytes, {length} were recorded",
            bytes.len()
        ));
    }
    let mismatch = || Err("snapshot does not match its recorded digest".to_string());
    match want
        .strip_prefix("s:")
        .and_then(|rest| rest.split_once(".v:"))
    {
        Some((structure, vectors)) => {
            let Some(range) = vector_region(bytes) else {
                return mismatch();
            };
            if structure_digest(bytes, &range) != structure {
                return mismatch();
            }
            Ok(Some(VectorCheck {
                range,
                want: vectors.to_string(),
            }))
        }
        None if blake3::hash(bytes).to_hex().as_str() == want => Ok(None),
        None => mismatch(),
    }
}

/// Check length and the whole digest, whichever form it has.
pub(crate) fn check_all(
    bytes: &[u8],
    length: u64,
    want: &str,
) -> std::result::Result<(), Rejected> {
    match check_structure(bytes, length, want)? {
        Some(v) if !v.passes(bytes) => {
            Err("snapshot's vectors do not match their recorded digest".into())
        }
        _ => Ok(()),
    }
}

/// A file mapped read-only into memory.
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and lives until drop; sharing `&[u8]`
// views of it across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn open(path: &Path) -> std::io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        let f = File::open(path)?;
        let len = usize::try_from(f.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a fresh read-only private mapping of an open file; the
        // result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `self` drops.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `open` mapped, once.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Map a snapshot and check its structure (see [`digest`]).
pub(crate) fn map_checked(
    store: &Path,
    cid: i64,
    length: u64,
    want_digest: &str,
) -> std::result::Result<(Mapping, Option<VectorCheck>), Rejected> {
    let p = path(store, cid);
    let map = Mapping::open(&p).map_err(|e| format!("cannot map {}: {e}", p.display()))?;
    let rest = check_structure(map.bytes(), length, want_digest)
        .map_err(|e| format!("{}: {e}", p.display()))?;
    Ok((map, rest))
}

/// The options string stamped on a snapshot: what must match for it to be used.
/// A cosine graph in bf16 or f16 holds unit vectors since issue 21 (its
/// searches walk by inner product, which ranks as cosine only on them):
/// one written before, with the vectors as given, is rebuilt once.
pub(crate) fn options_stamp(config: &CollectionConfig) -> String {
    let unit = config.cosine_in_half_precision();
    format!(
        "dim={} metric={} scalar={} connectivity={}{}",
        config.dimension,
        config.metric,
        config.scalar,
        config.connectivity,
        if unit { " vectors=unit" } else { "" }
    )
}

/// Create `dir` (owner-only) if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create directory", dir, e)),
    }
}

/// A fresh temp file for a snapshot of `cid`, until it is renamed into
/// place: `<cid>.<pid>-<n>.usearch.tmp`, so that processes writing
/// snapshots of one collection at once never share one.
pub(crate) fn temp_path(store: &Path, cid: i64) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    index_dir(store).join(format!("{cid}.{}-{n}.usearch.tmp", std::process::id()))
}

/// The collection and process of a temp file's name, if it is one.
fn temp_owner(name: &str) -> Option<(i64, u32)> {
    let rest = name.strip_suffix(".usearch.tmp")?;
    let (cid, rest) = rest.split_once('.')?;
    let (pid, _) = rest.split_once('-')?;
    Some((cid.parse().ok()?, pid.parse().ok()?))
}

/// Remove temp files of `cid` (or of every collection) left by processes
/// no longer running (a crash mid-snapshot), and by the older, unnumbered
/// naming. Best effort: a file that cannot be removed is left.
pub(crate) fn remove_stale_temps(store: &Path, cid: Option<i64>) {
    let Ok(entries) = fs::read_dir(index_dir(store)) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match temp_owner(name) {
            Some((c, pid)) => {
                cid.is_none_or(|want| want == c) && !Path::new(&format!("/proc/{pid}")).exists()
            }
            None => name
                .strip_suffix(".usearch.tmp")
                .is_some_and(|c| c.parse::<i64>().is_ok_and(|c| cid.is_none_or(|w| w == c))),
        };
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Write `bytes` to the temp file `tmp` (from [`temp_path`]) and fsync it.
pub(crate) fn write_temp(store: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let dir = index_dir(store);
    ensure_dir(&dir)?;
    let io = |op: &str, p: &Path, e| Error::io(op, p, e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| io("create snapshot temp file", tmp, e))?;
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
        .map_err(|e| io("write snapshot temp file", tmp, e))
}

/// Rename a written temp file over the live snapshot of `cid`, durably.
pub(crate) fn install(store: &Path, cid: i64, tmp: &Path) -> Result<()> {
    failpoint!("snapshot:before-rename");
    let live = path(store, cid);
    fs::rename(tmp, &live).map_err(|e| Error::io("rename snapshot into place", &live, e))?;
    sync_dir(&index_dir(store))
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
    check_all(&bytes, length, want_digest).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(bytes)
}

/// Remove a collection's snapshot (and temp files left by processes no
/// longer running), if present.
pub(crate) fn remove(store: &Path, cid: i64) -> Result<()> {
    remove_stale_temps(store, Some(cid));
    let live = path(store, cid);
    match fs::remove_file(&live) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove snapshot", &live, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_checks_length_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"hello snapshot".to_vec();
        let tmp = temp_path(dir.path(), 7);
        write_temp(dir.path(), &tmp, &bytes).unwrap();
        install(dir.path(), 7, &tmp).unwrap();
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
