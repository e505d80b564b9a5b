//! A real `quiver` child process killed with SIGKILL at random moments,
//! during imports and during single upserts/deletes. After every kill: the
//! store verifies clean, every write the child acknowledged is there with
//! the right vector, and nothing is half there.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{json_vector, ok, quiver, Rng};
use quiver::Store;

const DIM: usize = 32;
const N: usize = 3000;
const BATCH: usize = 100;

fn vector(i: usize, cycle: usize) -> Vec<f32> {
    Rng((i * 7919 + cycle) as u64).vector(DIM)
}

/// The current contents of collection "c": id → vector.
fn contents(store: &Path) -> BTreeMap<String, Vec<f32>> {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection("c").unwrap();
    let mut out = BTreeMap::new();
    for i in 0..N {
        for id in [format!("r{i}"), format!("u{i}")] {
            if let Some(r) = c.get(&id).unwrap() {
                out.insert(id, r.vector);
            }
        }
    }
    assert_eq!(c.count().unwrap(), out.len() as u64);
    out
}

/// The text index agrees with the records: each cycle's word finds exactly
/// the records last written by that cycle.
fn check_text(store: &Path, cycle_of: &BTreeMap<String, usize>, cycles: usize) {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection("c").unwrap();
    for cycle in 0..=cycles {
        let opts = quiver::SearchOptions::new(N);
        let got = c
            .search_keyword(&format!("cycle{cycle}"), &opts)
            .unwrap()
            .hits
            .len();
        let want = cycle_of.values().filter(|c| **c == cycle).count();
        assert_eq!(got, want, "keyword search for cycle{cycle}");
    }
}

fn verify(store: &Path) {
    let out = quiver(store, &["verify", "c", "--json"]);
    assert!(
        out.status.success(),
        "verify failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_cycle_files(dir: &Path, cycle: usize) -> (String, String) {
    let jsonl = dir.join(format!("c{cycle}.jsonl"));
    let f32s = dir.join(format!("c{cycle}.f32"));
    let mut text = String::new();
    let mut raw = Vec::new();
    for i in 0..N {
        text.push_str(&format!(
            "{{\"id\": \"r{i}\", \"text\": \"record r{i} of cycle{cycle}\", \"metadata\": {{\"cycle\": {cycle}}}}}\n"
        ));
        raw.extend(vector(i, cycle).iter().flat_map(|x| x.to_le_bytes()));
    }
    std::fs::write(&jsonl, text).unwrap();
    std::fs::write(&f32s, raw).unwrap();
    (
        jsonl.to_str().unwrap().into(),
        f32s.to_str().unwrap().into(),
    )
}

/// Start an import; returns the child and the highest batch it reported committed.
fn spawn_import(
    store: &Path,
    jsonl: &str,
    f32s: &str,
) -> (
    std::process::Child,
    Arc<AtomicU64>,
    std::thread::JoinHandle<()>,
) {
    let mut child = Command::new(common::bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "import",
            "c",
            jsonl,
            "--vectors",
            f32s,
        ])
        .args(["--batch", &BATCH.to_string(), "--report-commits"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let committed = Arc::new(AtomicU64::new(0));
    let seen = committed.clone();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(n) = v["committed"].as_u64() {
                    seen.store(n, Ordering::SeqCst);
                }
            }
        }
    });
    (child, committed, reader)
}

#[test]
fn sigkill_during_import_and_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let mut rng = Rng(0xC0FFEE);
    let mut model: BTreeMap<String, Vec<f32>> = BTreeMap::new();

    // Cycle 0 runs to the end: its duration sets the range of kill times.
    let (jsonl, f32s) = write_cycle_files(dir.path(), 0);
    let started = Instant::now();
    let (mut child, _, reader) = spawn_import(&store, &jsonl, &f32s);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let full = started.elapsed();
    let mut cycle_of = BTreeMap::new();
    for i in 0..N {
        model.insert(format!("r{i}"), vector(i, 0));
        cycle_of.insert(format!("r{i}"), 0);
    }
    assert_eq!(contents(&store), model);
    check_text(&store, &cycle_of, 0);

    // Imports killed at random moments.
    let mut kills = 0;
    for cycle in 1..=8 {
        let (jsonl, f32s) = write_cycle_files(dir.path(), cycle);
        let (mut child, committed, reader) = spawn_import(&store, &jsonl, &f32s);
        let delay = Duration::from_micros(rng.below(full.as_micros() as u64 + 1));
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        kills += usize::from(status.signal() == Some(libc::SIGKILL));
        let acknowledged = committed.load(Ordering::SeqCst) as usize;

        verify(&store);
        let now = contents(&store);
        // The records of this cycle form a prefix of whole batches.
        let prefix = (0..N)
            .take_while(|i| now.get(&format!("r{i}")) == Some(&vector(*i, cycle)))
            .count();
        assert!(
            prefix >= acknowledged,
            "cycle {cycle}: {prefix} records but {acknowledged} acknowledged"
        );
        assert!(
            prefix % BATCH == 0 || prefix == N,
            "cycle {cycle}: {prefix} is not whole batches"
        );
        for i in 0..N {
            let id = format!("r{i}");
            let want = if i < prefix {
                vector(i, cycle)
            } else {
                model[&id].clone()
            };
            assert_eq!(now.get(&id), Some(&want), "cycle {cycle}: record {id}");
            if i < prefix {
                cycle_of.insert(id, cycle);
            }
        }
        check_text(&store, &cycle_of, cycle);
        model = now;
    }
    assert!(kills >= 4, "only {kills} imports were killed mid-run");

    // Single upserts and deletes, each in its own process, killed at random.
    let mut op_time = Duration::ZERO;
    for step in 0..60 {
        let id = format!("u{}", rng.below(12));
        let v = rng.vector(DIM);
        let args: Vec<String> = if rng.below(3) == 0 {
            vec!["delete".into(), "c".into(), id.clone()]
        } else {
            vec![
                "upsert".into(),
                "c".into(),
                "--id".into(),
                id.clone(),
                "--vector".into(),
                json_vector(&v),
            ]
        };
        let is_delete = args[0] == "delete";
        let started = Instant::now();
        let mut child = Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if step >= 10 {
            // After 10 uninterrupted ops, kill within the typical op time.
            std::thread::sleep(Duration::from_micros(
                rng.below(op_time.as_micros() as u64 / 10 + 1),
            ));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        if step < 10 {
            op_time += started.elapsed();
        }
        let after = if is_delete { None } else { Some(v.clone()) };
        let now = contents(&store);
        if status.success() {
            // Acknowledged: it must be there exactly.
            assert_eq!(
                now.get(&id),
                after.as_ref(),
                "step {step}: acknowledged {args:?} lost"
            );
        } else {
            // Killed: all or nothing.
            let before = model.get(&id);
            let got = now.get(&id);
            assert!(
                got == before || got == after.as_ref(),
                "step {step}: {id} half-written"
            );
        }
        // Nothing else changed.
        for (k, want) in &model {
            if *k != id {
                assert_eq!(now.get(k), Some(want), "step {step}: {k} changed");
            }
        }
        model = now;
        if step % 10 == 9 {
            verify(&store);
        }
    }
    verify(&store);
}
