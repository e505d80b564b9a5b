//! Many processes, one store (DESIGN §3, step 5): writer processes taking
//! turns per write, each seeing the others' acknowledged writes at its next
//! search.
//!
//! `PROCS` child processes (this test binary, started on
//! `writer_process`) each upsert and delete their own ids in two
//! collections at the same time, appending every acknowledged write to a
//! log of their own. Before each of its searches a child reads the other
//! logs; the search that follows must find the last record each other
//! child acknowledged, by its own vector (a search that first caught up
//! with them). The parent then checks every log against the store: every
//! acknowledged upsert is there with its vector, every acknowledged delete
//! is gone, the counts are exact, and `verify` is clean from a fresh open.
//!
//! Default 4 processes × 2 collections × 300 writes (2,400 in all);
//! longer: QUIVER_PROCESSES_WRITES=3000 cargo test --release -p quiver --test processes

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use quiver::{CollectionConfig, Record, SearchOptions, Store};

const PROCS: usize = 4;
const DIM: usize = 16;
const COLLECTIONS: [&str; 2] = ["a", "b"];

fn writes() -> usize {
    std::env::var("QUIVER_PROCESSES_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A distinct vector for each (process, number).
fn vector(proc_: usize, n: usize) -> Vec<f32> {
    let mut state = ((proc_ as u64) << 32 | n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn log_path(dir: &Path, proc_: usize) -> PathBuf {
    dir.join(format!("acks-{proc_}.log"))
}

/// One acknowledged write: `up <coll> <n>` or `del <coll> <n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Up(usize, usize),
    Del(usize, usize),
}

fn read_log(path: &Path) -> Vec<Ack> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written has no newline yet: leave it for next time.
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    complete
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (c, n) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            match f[0] {
                "up" => Ack::Up(c, n),
                "del" => Ack::Del(c, n),
                other => panic!("bad log line {other:?}"),
            }
        })
        .collect()
}

#[test]
fn writer_processes_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    {
        let store = Store::open(&store_dir).unwrap();
        for name in COLLECTIONS {
            store
                .create_collection(name, &CollectionConfig::new(DIM))
                .unwrap();
        }
    }
    let n = writes();
    let children: Vec<_> = (0..PROCS)
        .map(|p| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "writer_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("QUIVER_PROC_STORE", &store_dir)
                .env("QUIVER_PROC_LOGS", dir.path())
                .env("QUIVER_PROC_ID", p.to_string())
                .env("QUIVER_PROC_WRITES", n.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer process failed");
    }
    // What every log says must be, checked from a fresh open.
    let store = Store::open_read_only(&store_dir).unwrap();
    let mut acked = 0;
    for (c, name) in COLLECTIONS.iter().enumerate() {
        let coll = store.get_collection(name).unwrap();
        let mut live: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for p in 0..PROCS {
            for ack in read_log(&log_path(dir.path(), p)) {
                match ack {
                    Ack::Up(cc, k) if cc == c => {
                        live.insert(format!("p{p}-{k}"), vector(p, k));
                    }
                    Ack::Del(cc, k) if cc == c => {
                        live.remove(&format!("p{p}-{k}"));
                    }
                    _ => continue,
                }
                acked += 1;
            }
        }
        assert_eq!(
            coll.count().unwrap(),
            live.len() as u64,
            "collection {name}"
        );
        for (id, v) in &live {
            let got = coll.get(id).unwrap().unwrap_or_else(|| panic!("{id} lost"));
            assert_eq!(&got.vector, v, "{id}");
        }
        let report = coll.verify().unwrap();
        assert!(report.ok(), "{name}: {:?}", report.problems);
        assert_eq!(report.records, live.len() as u64);
    }
    assert_eq!(acked, PROCS * COLLECTIONS.len() * n);
}

/// A writer of the test above; does nothing unless it started it.
#[test]
fn writer_process() {
    let (Ok(store), Ok(logs), Ok(me), Ok(n)) = (
        std::env::var("QUIVER_PROC_STORE"),
        std::env::var("QUIVER_PROC_LOGS"),
        std::env::var("QUIVER_PROC_ID"),
        std::env::var("QUIVER_PROC_WRITES"),
    ) else {
        return;
    };
    let (logs, me, n): (PathBuf, usize, usize) =
        (logs.into(), me.parse().unwrap(), n.parse().unwrap());
    // What is tested is what each process sees, not how long a lock is
    // held: on a loaded machine a snapshot's fsyncs have held it past the
    // default 5 s (CI, 2026-12-02), so wait longer.
    let options = quiver::StoreOptions {
        busy_timeout: std::time::Duration::from_secs(120),
        ..quiver::StoreOptions::default()
    };
    let store = Store::open_with(&store, options).unwrap();
    let colls: Vec<_> = COLLECTIONS
        .iter()
        .map(|name| store.get_collection(name).unwrap())
        .collect();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&logs, me))
        .unwrap();
    // Start together: each waits until every writer has the store open.
    std::fs::write(logs.join(format!("ready-{me}")), b"").unwrap();
    let started = std::time::Instant::now();
    while (0..PROCS).any(|p| !logs.join(format!("ready-{p}")).exists()) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the other writers never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let mut checked = 0usize;
    for i in 0..n {
        for (c, coll) in colls.iter().enumerate() {
            // Every fourth write deletes the record written three before
            // (whose number is divisible by four).
            if i % 4 == 3 {
                let k = i - 3;
                assert_eq!(coll.delete(&[format!("p{me}-{k}")]).unwrap(), 1);
                writeln!(log, "del {c} {k}").unwrap();
            } else {
                coll.upsert(&[Record::new(format!("p{me}-{i}"), vector(me, i))])
                    .unwrap();
                writeln!(log, "up {c} {i}").unwrap();
            }
        }
        log.flush().unwrap();
        // What the others acknowledged before this search began, it finds.
        if i % 5 == 0 {
            for other in (0..PROCS).filter(|&p| p != me) {
                let acks = read_log(&log_path(&logs, other));
                // The last record it acknowledged that is never deleted (a
                // delete, of numbers divisible by four, may be committed
                // and not yet acknowledged).
                let last_kept = acks.iter().rev().find_map(|a| match *a {
                    Ack::Up(c, k) if k % 4 != 0 => Some((c, k)),
                    _ => None,
                });
                let Some((c, k)) = last_kept else { continue };
                let id = format!("p{other}-{k}");
                let hits = colls[c]
                    .search(&vector(other, k), &SearchOptions::new(10).ef(256))
                    .unwrap()
                    .hits;
                if !hits
                    .iter()
                    .any(|h| h.id == id && h.distance.unwrap() < 1e-4)
                {
                    let exact = colls[c]
                        .search(&vector(other, k), &SearchOptions::new(10).exact(true))
                        .unwrap()
                        .hits;
                    let again = colls[c]
                        .search(&vector(other, k), &SearchOptions::new(10).ef(256))
                        .unwrap()
                        .hits;
                    let info = colls[c].info().unwrap();
                    panic!(
                        "process {me} does not see {id}, acknowledged by process {other}: exact finds it: {}, again: {}, seq {} applied {} get {:?}",
                        exact.iter().any(|h| h.id == id),
                        again.iter().any(|h| h.id == id),
                        info.seq,
                        info.applied_seq,
                        colls[c].get(&id).unwrap().is_some()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    for coll in &colls {
        let report = coll.verify().unwrap();
        assert!(report.ok(), "process {me}: {:?}", report.problems);
    }
}
