//! Kill soak: a writer child doing random upserts, deletes, deletes by
//! filter, flushes and compactions in one process is SIGKILLed at random
//! moments. After every kill: every acknowledged write is there, the write
//! in flight is all there or not at all, the text index agrees, and
//! `verify` is clean.
//!
//! Default: 10 cycles. The full soak (documented in RELIABILITY.md):
//!
//!     QUIVER_SOAK_CYCLES=1000 cargo test --release -p quiver-cli --test soak -- --nocapture
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{quiver, Rng};
use quiver::{SearchOptions, Store};
use serde_json::Value;

const DIM: usize = 8;
const POOL: u64 = 200;

// The writer's vector derivation (crates/quiver-cli/src/soak.rs).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn vector(n: u64, version: u64) -> Vec<f32> {
    let mut s = mix(n * 1_000_003 + version);
    (0..DIM)
        .map(|_| {
            s = mix(s);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0 + 1e-3
        })
        .collect()
}

/// id number → version, for every record present.
type State = BTreeMap<u64, u64>;

/// Read the store and name each record's version (one of the candidates).
fn observe(store: &Path, model: &State, in_flight: Option<u64>) -> State {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection("soak").unwrap();
    let mut out = State::new();
    for r in c.scan(None, None, 100_000).unwrap() {
        let n: u64 = r.id[1..].parse().unwrap();
        let candidates = model.get(&n).copied().into_iter().chain(in_flight);
        let v = candidates
            .into_iter()
            .find(|v| vector(n, *v) == r.vector)
            .unwrap_or_else(|| {
                panic!(
                    "record {} has a vector of no acknowledged or in-flight write",
                    r.id
                )
            });
        assert_eq!(
            r.text.as_deref(),
            Some(format!("v{v}").as_str()),
            "text of {}",
            r.id
        );
        out.insert(n, v);
    }
    // The text index: each version's word finds exactly its records.
    let versions: BTreeSet<u64> = out.values().copied().collect();
    for v in versions {
        let hits = c
            .search_text(&format!("v{v}"), &SearchOptions::new(1000))
            .unwrap()
            .hits;
        let want = out.values().filter(|x| **x == v).count();
        assert_eq!(hits.len(), want, "keyword search for v{v}");
    }
    out
}

#[test]
fn sigkill_soak_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("QUIVER_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let mut rng = Rng(0x50A4);
    let mut model = State::new();
    let (mut acked_total, mut kills_mid_op) = (0usize, 0usize);
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut child = Command::new(common::bin())
            .args([
                "--store",
                store.to_str().unwrap(),
                "debug-soak-writer",
                "--seed",
                &(cycle + 1).to_string(),
            ])
            .args(["--dim", &DIM.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                .collect::<Vec<Value>>()
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(400)));
        child.kill().unwrap();
        child.wait().unwrap();
        let events = reader.join().unwrap();

        // Apply acknowledged operations to the model; find the one in flight.
        let mut in_flight: Option<&Value> = None;
        for e in &events {
            if e.get("begin").is_some() {
                in_flight = Some(e);
            } else if let Some(step) = e.get("ack") {
                let op = in_flight.take().unwrap();
                assert_eq!(op["begin"], *step);
                apply(&mut model, op);
                acked_total += 1;
            }
        }
        kills_mid_op += usize::from(in_flight.is_some());
        let flight_version = in_flight.and_then(|op| op["version"].as_u64());
        let now = observe(&store, &model, flight_version);

        // Untouched records equal the model; the op in flight is all or nothing.
        let mut after = model.clone();
        if let Some(op) = in_flight {
            apply(&mut after, op);
        }
        let touched: BTreeSet<u64> = model
            .keys()
            .chain(after.keys())
            .filter(|n| model.get(n) != after.get(n))
            .copied()
            .collect();
        for n in model.keys().chain(now.keys()) {
            if !touched.contains(n) {
                assert_eq!(
                    now.get(n),
                    model.get(n),
                    "cycle {cycle}: untouched record s{n}"
                );
            }
        }
        let all_before = touched.iter().all(|n| now.get(n) == model.get(n));
        let all_after = touched.iter().all(|n| now.get(n) == after.get(n));
        assert!(
            all_before || all_after,
            "cycle {cycle}: {in_flight:?} is half applied"
        );

        let out = quiver(&store, &["verify", "soak", "--json"]);
        assert!(
            out.status.success(),
            "cycle {cycle}: verify: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        model = now;
    }
    println!(
        "soak: {cycles} kills, {acked_total} acknowledged writes checked, {kills_mid_op} kills in the middle of an operation, 0 lost, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(acked_total > 0);
}

fn apply(state: &mut State, op: &Value) {
    let ids = || {
        op["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
    };
    match op["op"].as_str().unwrap() {
        "upsert" => {
            let v = op["version"].as_u64().unwrap();
            for n in ids() {
                state.insert(n, v);
            }
        }
        "delete" => {
            for n in ids() {
                state.remove(&n);
            }
        }
        "delete_where" => {
            let (lo, hi) = (op["lo"].as_u64().unwrap(), op["hi"].as_u64().unwrap());
            state.retain(|n, _| !(lo..hi).contains(n));
        }
        _ => {}
    }
    assert!(state.keys().all(|n| *n < POOL));
}
