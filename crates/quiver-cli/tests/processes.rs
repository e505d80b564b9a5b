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
                assert!(hits[0].distance.unwrap() < 1e-4);
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

/// The check, through the CLI: 20,000 records paged by a field,
/// 100 at a time with `--paged` cursors, while another `quiver` process
/// imports 10,000 more whose values fall between theirs. Every record that
/// existed throughout comes exactly once and in order; a page that stops
/// at its limit says so on stderr.
#[test]
fn paging_by_a_field_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let line = |id: String, at: usize| {
        format!(
            "{{\"id\": \"{id}\", \"vector\": [1, 0, 0, 0, 0, 0, 0, 0], \"metadata\": {{\"created_at\": {at}}}}}\n"
        )
    };
    // Ties on purpose: four records share each value.
    let base: String = (0..20_000)
        .map(|i| line(format!("s{i:05}"), (i * 7_919) % 5_000))
        .collect();
    let more: String = (0..10_000)
        .map(|i| line(format!("w{i:05}"), (i * 104_729) % 5_000))
        .collect();
    std::fs::write(dir.path().join("base.jsonl"), base).unwrap();
    std::fs::write(dir.path().join("more.jsonl"), more).unwrap();
    ok(&store, &["create", "c", "--dim", "8"]);
    let base_file = dir.path().join("base.jsonl");
    ok(&store, &["import", "c", base_file.to_str().unwrap()]);
    ok(&store, &["index-field", "c", "created_at"]);
    let mut writer = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["import", "c"])
        .arg(dir.path().join("more.jsonl"))
        .args(["--batch", "25"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    let mut wrote_meanwhile = false;
    loop {
        let mut args = vec![
            "get",
            "c",
            "--order-by",
            "created_at",
            "--limit",
            "100",
            "--paged",
        ];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let out = quiver(&store, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let next = lines.pop().unwrap();
        assert!(lines.len() <= 100);
        for r in &lines {
            assert!(r.get("vector").is_none());
            let id = r["id"].as_str().unwrap().to_string();
            if id.starts_with('w') {
                wrote_meanwhile = true;
            } else {
                seen.push((r["metadata"]["created_at"].as_i64().unwrap(), id));
            }
        }
        pages += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match next["next"].as_str() {
            Some(cursor) => {
                assert_eq!(lines.len(), 100);
                assert!(stderr.contains("--after"), "{stderr}");
                after = Some(cursor.to_string());
            }
            None => {
                assert!(next["next"].is_null(), "{next}");
                assert!(!stderr.contains("--after"), "{stderr}");
                break;
            }
        }
    }
    assert!(writer.wait().unwrap().success());
    assert!(
        wrote_meanwhile,
        "the writer's records showed up between pages"
    );
    assert!(pages >= 200, "{pages} pages");
    assert_eq!(seen.len(), 20_000, "each record that stayed, once");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in (created_at, id) order"
    );
    assert_eq!(ok(&store, &["count", "c"]).trim(), "30000");
}
