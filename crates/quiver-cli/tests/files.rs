//! File-level faults through the real binary: permissions, a store whose
//! files are read-only, and a full disk.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{json_vector, ok, quiver, Rng};

const DIM: usize = 8;

fn jsonl(dir: &Path, name: &str, n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"{name}{i}\", \"vector\": {}, \"text\": \"some words {i}\"}}\n",
                json_vector(&rng.vector(DIM))
            )
        })
        .collect();
    let p = dir.join(format!("{name}.jsonl"));
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_files_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let file = jsonl(dir.path(), "r", 300, 1);
    ok(&store, &["import", "c", &file]);
    // A live writer has the WAL and shared-memory files open.
    let holder = quiver::Store::open(&store).unwrap();
    holder
        .get_collection("c")
        .unwrap()
        .upsert(&[quiver::Record::new("x", vec![1.0; DIM])])
        .unwrap();
    assert_eq!(mode(&store), 0o700, "store directory");
    assert_eq!(mode(&store.join("index")), 0o700, "index directory");
    let mut seen = Vec::new();
    for p in [store.clone(), store.join("index")] {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_file() {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen.push(path.file_name().unwrap().to_string_lossy().to_string());
            }
        }
    }
    for want in [
        "quiver.db",
        "quiver.db-wal",
        "quiver.db-shm",
        "LOCK",
        "1.usearch",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} not among {seen:?}");
    }
}

/// Run quiver as a user who owns the store but whose files are read-only
/// (as root, permission bits do not bind, so the child drops to `nobody`).
fn as_reader(store: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    cmd.output().unwrap()
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn chmod_tree(p: &Path, dir_mode: u32, file_mode: u32) {
    let m = if p.is_dir() { dir_mode } else { file_mode };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chmod_tree(&e.unwrap().path(), dir_mode, file_mode);
        }
    }
}

#[test]
fn read_only_files_serve_reads_and_refuse_writes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let file = jsonl(dir.path(), "r", 200, 2);
    ok(&store, &["import", "c", &file]);
    ok(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "tail",
            "--vector",
            &json_vector(&[1.0; DIM]),
        ],
    );
    let before = common::store_bytes(&store);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        chown_tree(&store, 65534, 65534);
    }
    chmod_tree(&store, 0o500, 0o400);

    let out = as_reader(&store, &["count", "c"]);
    assert!(
        out.status.success(),
        "count: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "201");
    let out = as_reader(
        &store,
        &[
            "search",
            "c",
            "--vector",
            &json_vector(&[1.0; DIM]),
            "-k",
            "1",
        ],
    );
    assert!(
        out.status.success(),
        "search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"tail\""));
    let out = as_reader(&store, &["verify", "c"]);
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = as_reader(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "x",
            "--vector",
            &json_vector(&[1.0; DIM]),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Permission denied") || stderr.contains("read-only"),
        "{stderr}"
    );

    chmod_tree(&store, 0o700, 0o600);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        chown_tree(&store, 0, 0);
    }
    assert!(
        common::store_bytes(&store) == before,
        "reads changed the store"
    );
}

#[test]
fn a_full_disk_fails_the_write_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let first = jsonl(dir.path(), "a", 500, 3);
    ok(&store, &["import", "c", &first]);
    let size: u64 = ["quiver.db", "quiver.db-wal"]
        .iter()
        .map(|f| std::fs::metadata(store.join(f)).map_or(0, |m| m.len()))
        .sum();
    // Files may grow to the current size plus a little: the big import must hit the wall.
    let limit = size + 256 * 1024;
    let big = jsonl(dir.path(), "b", 20_000, 4);
    let mut cmd = Command::new(common::bin());
    cmd.arg("--store").arg(&store).args([
        "import",
        "c",
        &big,
        "--batch",
        "500",
        "--report-commits",
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            // A write past the limit then fails with EFBIG instead of killing us.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the import should fail: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("full") || stderr.contains("too large") || stderr.contains("I/O"),
        "{stderr}"
    );
    let committed: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["committed"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(committed < 20_000);

    // Without the limit: everything committed before is there, whole batches only.
    let out = quiver(&store, &["verify", "c", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let count: u64 = ok(&store, &["count", "c"]).trim().parse().unwrap();
    assert!(count >= 500 + committed, "{count} < 500 + {committed}");
    assert_eq!((count - 500) % 500, 0, "whole batches only");
    let got = ok(&store, &["get", "c", "a0", "a499"]);
    assert!(!got.contains("missing"));
    // And the store takes writes again.
    ok(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "after",
            "--vector",
            &json_vector(&[1.0; DIM]),
        ],
    );
}
