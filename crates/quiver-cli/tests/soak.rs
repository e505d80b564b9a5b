//! Kill soak: a writer child doing random upserts, deletes, deletes by
//! filter, flushes and compactions in one process is SIGKILLed at random
//! moments. After every kill: every acknowledged write is there, the write
//! in flight is all there or not at all, the text index agrees, and
//! `verify` is clean. The second test runs several such writers at once
//! on one store, each on its own ids, and kills them one by one at random
//! moments while the others go on.
//!
//! Default: 10 cycles, and 6 of the several-writer soak. The full soaks
//! (documented in RELIABILITY.md):
//!
//!     QUIVER_SOAK_CYCLES=1000 cargo test --release -p quiver-cli --test soak -- --nocapture
//!     QUIVER_MULTI_SOAK_CYCLES=300 cargo test --release -p quiver-cli --test soak several -- --nocapture
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

/// Read the store and name each record's version (one of the candidates:
/// the model's, or the version `in_flight(n)` of a write in flight).
fn observe(store: &Path, model: &State, in_flight: &dyn Fn(u64) -> Option<u64>) -> State {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection("soak").unwrap();
    let mut out = State::new();
    for r in c.scan(None, None, 100_000).unwrap() {
        let n: u64 = r.id[1..].parse().unwrap();
        let candidates = model.get(&n).copied().into_iter().chain(in_flight(n));
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
            .search_keyword(&format!("v{v}"), &SearchOptions::new(1000))
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
                assert!(model.keys().all(|n| *n < POOL));
                acked_total += 1;
            }
        }
        kills_mid_op += usize::from(in_flight.is_some());
        let flight_version = in_flight.and_then(|op| op["version"].as_u64());
        let now = observe(&store, &model, &|_| flight_version);

        // Untouched records equal the model; the op in flight is all or nothing.
        let mut after = model.clone();
        if let Some(op) = in_flight {
            apply(&mut after, op);
        }
        check_all_or_nothing(
            &model,
            &after,
            &now,
            |_| true,
            &format!("cycle {cycle}"),
            in_flight,
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

/// Several writers at once on one store (DESIGN §3, step 5), each on its
/// own ids, SIGKILLed one after another at random moments while the others
/// go on: for each, every acknowledged write is there and its write in
/// flight is all there or not at all; a killed writer never leaves the lock
/// held; `verify` is clean after every round.
#[test]
fn sigkill_among_several_writers_loses_no_acknowledged_write() {
    const WRITERS: u64 = 3;
    let cycles: u64 = std::env::var("QUIVER_MULTI_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    assert!(
        quiver(&store, &["create", "soak", "--dim", &DIM.to_string()])
            .status
            .success()
    );
    let mut rng = Rng(0x50A5);
    let mut model = State::new();
    let (mut acked_total, mut kills_mid_op) = (0usize, 0usize);
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let mut child = Command::new(common::bin())
                    .args(["--store", store.to_str().unwrap(), "debug-soak-writer"])
                    .args(["--seed", &(cycle * WRITERS + w + 1).to_string()])
                    .args(["--writer", &w.to_string(), "--dim", &DIM.to_string()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let stdout = child.stdout.take().unwrap();
                let events = std::thread::spawn(move || {
                    BufReader::new(stdout)
                        .lines()
                        .map_while(Result::ok)
                        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                        .collect::<Vec<Value>>()
                });
                (w, child, events)
            })
            .collect();
        // Kill them one by one, in a random order, the others writing on.
        let mut events_of = BTreeMap::new();
        while !writers.is_empty() {
            std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
            let (w, mut child, events) = writers.remove(rng.below(writers.len() as u64) as usize);
            child.kill().unwrap();
            child.wait().unwrap();
            events_of.insert(w, events.join().unwrap());
        }
        // Each writer's acknowledged writes, and its write in flight.
        let mut flights: BTreeMap<u64, &Value> = BTreeMap::new();
        for (w, events) in &events_of {
            let mut in_flight: Option<&Value> = None;
            for e in events {
                if e.get("begin").is_some() {
                    in_flight = Some(e);
                } else if let Some(step) = e.get("ack") {
                    let op = in_flight.take().unwrap();
                    assert_eq!(op["begin"], *step);
                    apply(&mut model, op);
                    assert!(model.keys().all(|n| *n < WRITERS * POOL));
                    acked_total += 1;
                }
            }
            if let Some(op) = in_flight {
                flights.insert(*w, op);
                kills_mid_op += 1;
            }
        }
        let version_in_flight = |n: u64| {
            flights
                .get(&(n / POOL))
                .and_then(|op| op["version"].as_u64())
        };
        let now = observe(&store, &model, &version_in_flight);
        for w in 0..WRITERS {
            let mut after = model.clone();
            if let Some(op) = flights.get(&w) {
                apply(&mut after, op);
            }
            let what = format!("cycle {cycle}: writer {w}");
            check_all_or_nothing(
                &model,
                &after,
                &now,
                |n| n / POOL == w,
                &what,
                flights.get(&w).copied(),
            );
        }
        // No killed writer left the lock held: a write goes in at once.
        let probe = format!("s{}", WRITERS * POOL);
        let v = serde_json::to_string(&vec![0.5f32; DIM]).unwrap();
        for args in [
            vec![
                "--wait", "2", "upsert", "soak", "--id", &probe, "--vector", &v,
            ],
            vec!["--wait", "2", "delete", "soak", &probe],
        ] {
            let out = quiver(&store, &args);
            assert!(
                out.status.success(),
                "cycle {cycle}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = quiver(&store, &["verify", "soak", "--json"]);
        assert!(
            out.status.success(),
            "cycle {cycle}: verify: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        model = now;
    }
    println!(
        "several-writer soak: {cycles} rounds of {WRITERS} writers killed one by one, {acked_total} acknowledged writes checked, {kills_mid_op} kills in the middle of an operation, 0 lost, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(acked_total > 0);
}

/// Untouched records (among those `mine` selects) are as `model` says,
/// and the ones the write in flight touches are all as before it
/// (`model`) or all as after it (`after`).
fn check_all_or_nothing(
    model: &State,
    after: &State,
    now: &State,
    mine: impl Fn(&u64) -> bool,
    what: &str,
    in_flight: Option<&Value>,
) {
    let touched: BTreeSet<u64> = model
        .keys()
        .chain(after.keys())
        .filter(|n| mine(n) && model.get(n) != after.get(n))
        .copied()
        .collect();
    for n in model.keys().chain(now.keys()).filter(|n| mine(n)) {
        if !touched.contains(n) {
            assert_eq!(now.get(n), model.get(n), "{what}: untouched record s{n}");
        }
    }
    let all_before = touched.iter().all(|n| now.get(n) == model.get(n));
    let all_after = touched.iter().all(|n| now.get(n) == after.get(n));
    assert!(
        all_before || all_after,
        "{what}: {in_flight:?} is half applied"
    );
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
}
