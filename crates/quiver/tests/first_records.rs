//! Searching a collection from its very first record on: threads search a
//! fresh collection (plain, filtered exact, filtered HNSW, hybrid) while
//! its first records arrive through `upsert`, through `bulk()`, through a
//! read-only handle following a writer process, into the empty overlay
//! above a viewed snapshot, and while records are deleted, compacted and
//! the collection altered. usearch 2.26.6 crashed
//! (SIGSEGV) when a search overlapped the first add of an empty index; see
//! `vendor/usearch/quiver.patch`.
//!
//! Every search must succeed and never come back short: it returns at least
//! min(k, records written before it began) hits. `QUIVER_FIRST_RECORDS_CYCLES`
//! sets the cycles per mode (default 60; README "Longer runs").

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quiver::{
    Alter, Collection, CollectionConfig, Filter, Fusion, IndexSource, Plan, Record, SearchOptions,
    Store, StoreOptions,
};
use serde_json::json;

const DIM: usize = 16;
const K: usize = 8;
const BATCH: usize = 12;
const BATCHES: usize = 6;
/// Records fall into `GROUPS` groups by `g = i % GROUPS`: `g = 0` matches few
/// (the exact plan), `g != 0` most (the HNSW plan).
const GROUPS: usize = 16;

/// Up to 20 matches are searched exactly, more through the HNSW graph, so
/// that both filtered plans run on collections this small.
fn options() -> StoreOptions {
    StoreOptions {
        filter_exact_max: 20,
        ..StoreOptions::default()
    }
}

fn cycles() -> usize {
    std::env::var("QUIVER_FIRST_RECORDS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|j| {
            (((i * 31 + j * 17) % 29) as f32 - 14.0) / 7.0 + if j == i % DIM { 3.0 } else { 0.0 }
        })
        .collect()
}

fn record(prefix: &str, i: usize) -> Record {
    Record::new(format!("{prefix}{i}"), vector(i))
        .with_text(format!("alpha record {i} of group {}", i % GROUPS))
        .with_metadata(json!({ "g": i % GROUPS, "tmp": prefix == "tmp" }))
}

fn batch(prefix: &str, b: usize) -> Vec<Record> {
    (b * BATCH..(b + 1) * BATCH)
        .map(|i| record(prefix, i))
        .collect()
}

/// Of the first `n` records, how many a search of `kind` can match.
fn matching(kind: usize, n: usize) -> usize {
    let group0 = n.div_ceil(GROUPS);
    match kind {
        1 => group0,
        2 => n - group0,
        _ => n,
    }
}

#[derive(Default)]
struct Seen {
    searches: AtomicUsize,
    filter_exact: AtomicUsize,
    filter_hnsw: AtomicUsize,
    nonempty: AtomicUsize,
}

/// One search of `kind` (0 plain, 1 narrow filter, 2 broad filter, 3 hybrid)
/// that must return at least min(K, `at_least`) hits.
fn search(coll: &Collection, kind: usize, i: usize, at_least: usize, seen: &Seen) {
    let q = vector(i * 7 + kind);
    let opts = SearchOptions::new(K).ef([16, 64][i % 2]);
    let r = match kind {
        0 => coll.search(&q, &opts.exact(i % 5 == 0)),
        1 => coll.search(&q, &opts.filter(Filter::eq("g", 0))),
        2 => coll.search(&q, &opts.filter(Filter::ne("g", 0))),
        _ => coll.search_hybrid(&q, "alpha", &opts, &Fusion::default()),
    }
    .unwrap_or_else(|e| panic!("search kind {kind}: {e}"));
    let want = at_least.min(K);
    assert!(
        r.hits.len() >= want && r.hits.len() <= K,
        "kind {kind}: {} hits, at least {want} expected ({:?})",
        r.hits.len(),
        r.plan
    );
    // Vector hits by distance, ascending; hybrid ones by score, descending.
    let order = |h: &quiver::Hit| match (h.distance, h.score()) {
        (Some(d), None) => d,
        (None, Some(s)) => -s,
        _ => panic!("a hit has a distance or a score: {h:?}"),
    };
    assert!(r
        .hits
        .windows(2)
        .all(|w| order(&w[0]) <= order(&w[1]) + 1e-6));
    for h in &r.hits {
        assert!(order(h).is_finite(), "{h:?}");
        if kind == 1 {
            let n: usize =
                h.id.trim_start_matches(|c: char| c.is_alphabetic())
                    .parse()
                    .unwrap();
            assert_eq!(n % GROUPS, 0, "{} does not match the filter", h.id);
        }
    }
    match r.plan {
        Plan::FilterExact { .. } => seen.filter_exact.fetch_add(1, Ordering::Relaxed),
        Plan::FilterHnsw { .. } => seen.filter_hnsw.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    seen.searches.fetch_add(1, Ordering::Relaxed);
    if !r.hits.is_empty() {
        seen.nonempty.fetch_add(1, Ordering::Relaxed);
    }
}

/// Run `write` on this thread while one thread per search kind searches
/// `coll` in a loop, each search bounded below by `floor(kind)` read just
/// before it. The searchers are spinning before `write` starts.
fn with_searchers(
    coll: &Collection,
    seen: &Seen,
    floor: &(dyn Fn(usize) -> usize + Sync),
    write: impl FnOnce(),
) {
    let done = AtomicBool::new(false);
    let spinning = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for kind in 0..4 {
            let (done, spinning) = (&done, &spinning);
            s.spawn(move || {
                spinning.fetch_add(1, Ordering::AcqRel);
                let mut i = 0;
                while !done.load(Ordering::Acquire) {
                    i += 1;
                    let at_least = floor(kind);
                    search(coll, kind, i, at_least, seen);
                }
            });
        }
        while spinning.load(Ordering::Acquire) < 4 {
            std::thread::yield_now();
        }
        write();
        done.store(true, Ordering::Release);
    });
}

fn check_seen(seen: &Seen, cycles: usize) {
    let n = seen.searches.load(Ordering::Relaxed);
    assert!(n >= cycles * 4, "only {n} searches in {cycles} cycles");
    assert!(seen.nonempty.load(Ordering::Relaxed) > 0);
    // Both filtered plans ran at least once (without usearch every search
    // is exact).
    assert!(seen.filter_exact.load(Ordering::Relaxed) > 0);
    assert_eq!(
        seen.filter_hnsw.load(Ordering::Relaxed) > 0,
        cfg!(feature = "usearch")
    );
}

/// `cycles()` times: a fresh collection searched by `with_searchers` while
/// `write(coll, applied, cycle)` writes its first records, storing in
/// `applied` how many of them are in the index; then checked and dropped.
fn fresh_collections(write: impl Fn(&Collection, &AtomicUsize, usize)) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let seen = Seen::default();
    let cycles = cycles();
    for cycle in 0..cycles {
        let name = format!("c{cycle}");
        let coll = store
            .create_collection(&name, &CollectionConfig::new(DIM))
            .unwrap();
        let applied = AtomicUsize::new(0);
        let floor = |kind| matching(kind, applied.load(Ordering::Acquire));
        with_searchers(&coll, &seen, &floor, || write(&coll, &applied, cycle));
        assert_eq!(coll.count().unwrap(), (BATCHES * BATCH) as u64);
        assert!(coll.verify().unwrap().ok());
        store.drop_collection(&name).unwrap();
    }
    check_seen(&seen, cycles);
}

#[test]
fn first_records_through_upsert() {
    fresh_collections(|coll, applied, cycle| {
        // Every other cycle starts with one record alone, which the first
        // batch then replaces.
        if cycle % 2 == 0 {
            coll.upsert(&batch("r", 0)[..1]).unwrap();
            applied.store(1, Ordering::Release);
        }
        for b in 0..BATCHES {
            coll.upsert(&batch("r", b)).unwrap();
            applied.store((b + 1) * BATCH, Ordering::Release);
        }
    });
}

#[test]
fn first_records_through_bulk() {
    fresh_collections(|coll, applied, _| {
        let mut bulk = coll.bulk().unwrap();
        for b in 0..BATCHES {
            bulk.upsert(&batch("r", b)).unwrap();
            // Returned: this batch committed, the one before it applied.
            applied.store(b * BATCH, Ordering::Release);
        }
        bulk.finish().unwrap();
        applied.store(BATCHES * BATCH, Ordering::Release);
    });
}

#[test]
fn first_records_while_deleting_compacting_and_altering() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let seen = Seen::default();
    let cycles = cycles() / 2;
    for cycle in 0..cycles {
        let name = format!("c{cycle}");
        let coll = store
            .create_collection(&name, &CollectionConfig::new(DIM))
            .unwrap();
        // Only `keep` records count towards the floor: the others come and go.
        let kept = AtomicUsize::new(0);
        let floor = |kind| matching(kind, kept.load(Ordering::Acquire));
        with_searchers(&coll, &seen, &floor, || {
            for b in 0..BATCHES {
                coll.upsert(&batch("tmp", b)).unwrap();
                let ids: Vec<String> = (b * BATCH..(b + 1) * BATCH)
                    .step_by(2)
                    .map(|i| format!("tmp{i}"))
                    .collect();
                coll.delete(&ids).unwrap();
                if b % 2 == 0 {
                    coll.upsert(&batch("keep", b / 2)).unwrap();
                    kept.store((b / 2 + 1) * BATCH, Ordering::Release);
                }
                match (b + cycle) % 3 {
                    0 => {
                        coll.compact(true).unwrap();
                    }
                    1 => {
                        let ef = [16, 48][(b + cycle) % 2];
                        coll.alter(&Alter {
                            expansion_search: Some(ef),
                            ..Alter::default()
                        })
                        .unwrap();
                    }
                    _ => {
                        let g = (b % GROUPS) as i64;
                        coll.delete_where(&Filter::eq("tmp", true).and(Filter::eq("g", g)))
                            .unwrap();
                    }
                }
            }
            coll.alter(&Alter {
                connectivity: Some(8),
                ..Alter::default()
            })
            .unwrap();
        });
        assert!(coll.verify().unwrap().ok());
        store.drop_collection(&name).unwrap();
    }
    check_seen(&seen, cycles);
}

/// After a reopen, the index is the viewed snapshot with an empty owned
/// graph above it for the changes to come: its first adds are searched too.
#[test]
fn first_records_into_the_overlay_above_a_viewed_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Seen::default();
    let cycles = (cycles() / 3).max(2);
    // Of the records written so far, how many each search kind can match.
    let written = [0, 1, 2].map(|_| AtomicUsize::new(0));
    let count = |recs: &[Record]| {
        for r in recs {
            let n: usize = r.id[1..].parse().unwrap();
            written[0].fetch_add(1, Ordering::AcqRel);
            written[if n % GROUPS == 0 { 1 } else { 2 }].fetch_add(1, Ordering::AcqRel);
        }
    };
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let coll = store
            .create_collection("c", &CollectionConfig::new(DIM))
            .unwrap();
        for b in 0..BATCHES {
            coll.upsert(&batch("r", b)).unwrap();
            count(&batch("r", b));
        }
        coll.flush().unwrap();
    }
    for cycle in 1..=cycles {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let coll = store.get_collection("c").unwrap();
        let info = coll.info().unwrap();
        if cfg!(feature = "usearch") {
            assert_eq!(info.load.source, IndexSource::Snapshot);
            assert_eq!(info.load.tail_replayed, 0);
        }
        // Hybrid (kind 3) is bounded by its vector list, as plain search is.
        let floor = |kind: usize| written[if kind == 3 { 0 } else { kind }].load(Ordering::Acquire);
        with_searchers(&coll, &seen, &floor, || {
            for b in 0..BATCHES {
                let recs: Vec<Record> = (b * BATCH..(b + 1) * BATCH)
                    .map(|i| record("o", cycle * 1000 + i))
                    .collect();
                coll.upsert(&recs).unwrap();
                count(&recs);
            }
        });
        assert!(coll.verify().unwrap().ok());
        // The next cycle opens a snapshot of everything: its overlay starts empty.
        coll.flush().unwrap();
    }
    check_seen(&seen, cycles);
}

/// Wait for `path` to exist (the other process's signal).
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

/// A read-only handle follows a writer in another process: its searches
/// replay each new commit into an index that starts empty, while its own
/// threads search it.
#[test]
fn first_records_through_a_read_only_handle_following_a_writer_process() {
    let dir = tempfile::tempdir().unwrap();
    let signals = tempfile::tempdir().unwrap();
    let cycles = (cycles() / 3).max(2);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "follower_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUIVER_FOLLOW_STORE", dir.path())
        .env("QUIVER_FOLLOW_SIGNALS", signals.path())
        .env("QUIVER_FOLLOW_CYCLES", cycles.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let at = |what: &str, cycle: usize| signals.path().join(format!("{what}{cycle}"));
    let seen = Seen::default();
    wait_for(&at("created", 0));
    let reader = Store::open_read_only_with(dir.path(), options()).unwrap();
    for cycle in 0..cycles {
        wait_for(&at("created", cycle));
        let coll = reader.get_collection(&format!("c{cycle}")).unwrap();
        // What the writer has committed bounds what a search (which first
        // catches up with it) must find.
        let floor = |kind| match kind {
            1 => coll.count_where(&Filter::eq("g", 0)).unwrap() as usize,
            2 => coll.count_where(&Filter::ne("g", 0)).unwrap() as usize,
            _ => coll.count().unwrap() as usize,
        };
        with_searchers(&coll, &seen, &floor, || {
            signal(&at("ready", cycle));
            wait_for(&at("written", cycle));
        });
        assert_eq!(coll.count().unwrap(), (BATCHES * BATCH) as u64);
        let r = coll.search(&vector(3), &SearchOptions::new(K)).unwrap();
        assert_eq!(r.hits.len(), K);
        signal(&at("stop", cycle));
    }
    assert!(child.wait().unwrap().success(), "the writer process failed");
    check_seen(&seen, cycles);
}

/// The writer process of the test above; does nothing unless it started it.
#[test]
fn follower_writer_process() {
    let (Ok(store), Ok(signals), Ok(cycles)) = (
        std::env::var("QUIVER_FOLLOW_STORE"),
        std::env::var("QUIVER_FOLLOW_SIGNALS"),
        std::env::var("QUIVER_FOLLOW_CYCLES"),
    ) else {
        return;
    };
    let signals = Path::new(&signals);
    let at = |what: &str, cycle: usize| signals.join(format!("{what}{cycle}"));
    let store = Store::open(&store).unwrap();
    for cycle in 0..cycles.parse().unwrap() {
        let name = format!("c{cycle}");
        let coll = store
            .create_collection(&name, &CollectionConfig::new(DIM))
            .unwrap();
        signal(&at("created", cycle));
        wait_for(&at("ready", cycle));
        for b in 0..BATCHES {
            coll.upsert(&batch("r", b)).unwrap();
        }
        signal(&at("written", cycle));
        wait_for(&at("stop", cycle));
        store.drop_collection(&name).unwrap();
    }
}
