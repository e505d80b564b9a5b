//! Sustained concurrent use: 8 searching threads and 1 writer in this
//! process, plus `quiver` reader processes beside them, for a fixed time.
//! No errors, no short results, a writer process's writes go in beside the
//! in-process writer and its searches find them, and memory stays flat.
//!
//! Default 5 s; longer: QUIVER_LOAD_SECS=600 cargo test --release -p quiver-cli --test load -- --nocapture

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{json_vector, quiver, Rng};
use quiver::{CollectionConfig, Filter, Record, SearchOptions, Store};
use serde_json::json;

const DIM: usize = 32;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn sustained_load_without_errors_or_growth() {
    let secs: u64 = std::env::var("QUIVER_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let store = Store::open(&path).unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    let mut rng = Rng(7);
    let base: Vec<Record> = (0..5000)
        .map(|i| {
            Record::new(format!("base{i}"), rng.vector(DIM))
                .with_text(format!("base record number {i}"))
                .with_metadata(json!({"g": i % 10}))
        })
        .collect();
    coll.upsert(&base).unwrap();
    coll.flush().unwrap();

    let stop = AtomicBool::new(false);
    let (searches, writes, reads) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let mut rss = (0, 0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (coll, stop, searches) = (&coll, &stop, &searches);
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                while !stop.load(Ordering::Relaxed) {
                    let q = rng.vector(DIM);
                    let r = match rng.below(4) {
                        0 => coll.search(
                            &q,
                            &SearchOptions::new(10).filter(Filter::eq("g", rng.below(10) as i64)),
                        ),
                        1 => coll.search_keyword("record number", &SearchOptions::new(10)),
                        _ => coll.search(
                            &q,
                            &SearchOptions::new(10).ef(16 + 16 * rng.below(8) as usize),
                        ),
                    }
                    .unwrap();
                    // Base records are never deleted: 10 hits always exist.
                    assert_eq!(r.hits.len(), 10, "{:?}", r.plan);
                    assert!(r
                        .hits
                        .iter()
                        .all(|h| h.id.starts_with("base") || h.id.starts_with('w')));
                    searches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            let (coll, stop, writes) = (&coll, &stop, &writes);
            s.spawn(move || {
                let mut rng = Rng(9);
                let mut last_compact = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Record> = (0..20)
                        .map(|_| {
                            Record::new(format!("w{}", rng.below(2000)), rng.vector(DIM))
                                .with_metadata(json!({"g": 99}))
                        })
                        .collect();
                    coll.upsert(&batch).unwrap();
                    let dels: Vec<String> =
                        (0..5).map(|_| format!("w{}", rng.below(2000))).collect();
                    coll.delete(&dels).unwrap();
                    if last_compact.elapsed() > Duration::from_secs(2) {
                        coll.compact(false).unwrap();
                        last_compact = Instant::now();
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            // Another process reading the same store, again and again.
            let (path, stop, reads) = (&path, &stop, &reads);
            s.spawn(move || {
                let v = json_vector(&[0.5; DIM]);
                while !stop.load(Ordering::Relaxed) {
                    let out = quiver(
                        path,
                        &[
                            "search", "c", "--vector", &v, "-k", "10", "--filter", "g < 5",
                        ],
                    );
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert_eq!(line["hits"].as_array().unwrap().len(), 10);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        rss.0 = rss_kib();
        // A writer process goes in beside this one's writer, in turn, and
        // this process's searches find its record at once.
        let started = Instant::now();
        let out = quiver(
            &path,
            &[
                "upsert",
                "c",
                "--id",
                "w-cli",
                "--vector",
                &json_vector(&[1.0; DIM]),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let hits = coll
            .search(&[1.0; DIM], &SearchOptions::new(1))
            .unwrap()
            .hits;
        assert_eq!(hits[0].id, "w-cli");
        std::thread::sleep(Duration::from_secs(secs.saturating_sub(1)));
        rss.1 = rss_kib();
        stop.store(true, Ordering::Relaxed);
    });
    let report = coll.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    println!(
        "load: {secs} s, {} searches, {} write rounds, {} reader processes, RSS {} MiB at start, {} MiB at end",
        searches.load(Ordering::Relaxed),
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        rss.0 / 1024,
        rss.1 / 1024
    );
    assert!(
        searches.load(Ordering::Relaxed) > 0
            && writes.load(Ordering::Relaxed) > 0
            && reads.load(Ordering::Relaxed) > 0
    );
    assert!(
        rss.1 <= rss.0 * 3 / 2 + 32 * 1024,
        "RSS grew from {} to {} KiB",
        rss.0,
        rss.1
    );
}
