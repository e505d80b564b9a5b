//! A long-lived library process and CLI processes on one store, both ways
//! (DESIGN §3, step 5): this test keeps a `Store` open and writes through
//! it the whole time, while `quiver upsert` processes started at the same
//! moment all go in, and `quiver search` processes find the library's
//! writes. Each side sees the other's acknowledged writes at its next
//! search; the count is exact and `verify` clean at the end.
//!
//! Default 4 rounds (well under a second); minutes of it:
//! QUIVER_PROCESSES_ROUNDS=2000 cargo test --release -p quiver-cli --test processes

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{json_vector, ok, quiver, Rng};
use quiver::{CollectionConfig, Record, SearchOptions, Store};

const DIM: usize = 8;

/// A distinct vector for each number.
fn vector(n: usize) -> Vec<f32> {
    Rng(n as u64).vector(DIM)
}

#[test]
fn a_library_process_and_cli_processes_write_and_search_one_store() {
    const AT_ONCE: usize = 6;
    let rounds: usize = std::env::var("QUIVER_PROCESSES_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::open(&path).unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    let stop = AtomicBool::new(false);
    let library_acked = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // The library side: a write every few milliseconds, all along.
        s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                coll.upsert(&[Record::new(format!("lib{n}"), vector(n))])
                    .unwrap();
                n += 1;
                library_acked.store(n, Ordering::Release);
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        // Stop the writer however this side ends (a failed assertion too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        for round in 0..rounds {
            // Several CLI writers started at the same moment: all succeed.
            let started = Instant::now();
            let children: Vec<_> = (0..AT_ONCE)
                .map(|i| {
                    let n = 1_000_000 + round * AT_ONCE + i;
                    Command::new(common::bin())
                        .args(["--store", path.to_str().unwrap(), "upsert", "c"])
                        .args(["--id", &format!("cli{n}"), "--vector"])
                        .arg(json_vector(&vector(n)))
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for child in children {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "round {round}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let took = started.elapsed();
            assert!(took < Duration::from_secs(30), "{took:?}");
            // The library's next search finds every one of them.
            for i in 0..AT_ONCE {
                let n = 1_000_000 + round * AT_ONCE + i;
                let hits = coll
                    .search(&vector(n), &SearchOptions::new(3))
                    .unwrap()
                    .hits;
                assert_eq!(hits[0].id, format!("cli{n}"), "round {round}");
                assert!(hits[0].distance < 1e-4);
            }
            // A CLI search finds what the library acknowledged before it.
            let n = library_acked.load(Ordering::Acquire) - 1;
            let out = ok(
                &path,
                &[
                    "search",
                    "c",
                    "--vector",
                    &json_vector(&vector(n)),
                    "-k",
                    "3",
                    "--json",
                ],
            );
            let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(line["hits"][0]["id"], format!("lib{n}"), "round {round}");
        }
    });
    let want = library_acked.load(Ordering::Acquire) + rounds * AT_ONCE;
    assert_eq!(coll.count().unwrap(), want as u64);
    assert_eq!(ok(&path, &["count", "c"]).trim(), want.to_string());
    assert!(coll.verify().unwrap().ok());
    let out = quiver(&path, &["verify", "c"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
