//! Model-based tests: random operation sequences against a `BTreeMap`,
//! on a real store directory, with reopens; search checked against brute force.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;

use common::{assert_contents, brute_force, recall, Rng};
use proptest::prelude::*;
use quiver::{CollectionConfig, Metric, Record, Scalar, SearchOptions, Store, StoreOptions};

#[derive(Debug, Clone)]
enum Op {
    /// (id index, vector seed) pairs.
    Upsert(Vec<(u8, u64)>),
    Delete(Vec<u8>),
    Flush,
    Reopen,
    /// Drop the store without a clean close of its snapshot (the pending
    /// tail stays un-snapshotted) and reopen.
    ReopenDirty,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec((0u8..48, any::<u64>()), 1..12).prop_map(Op::Upsert),
        2 => prop::collection::vec(0u8..48, 1..6).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReopenDirty),
    ]
}

const DIM: usize = 8;

fn vector(seed: u64) -> Vec<f32> {
    Rng::new(seed).vector(DIM)
}

fn options() -> StoreOptions {
    // Small thresholds so automatic snapshots happen inside short sequences.
    StoreOptions {
        snapshot_every_changes: 20,
        close_snapshot_min_changes: 5,
        ..StoreOptions::default()
    }
}

fn run(ops: Vec<Op>, metric: Metric, scalar: Scalar) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(dir.path(), options()).unwrap();
    let mut config = CollectionConfig::new(DIM);
    config.metric = metric;
    config.scalar = scalar;
    store.create_collection("m", &config).unwrap();
    let mut model: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for op in ops {
        let coll = store.get_collection("m").unwrap();
        match op {
            Op::Upsert(items) => {
                let batch: Vec<Record> = items
                    .iter()
                    .map(|(i, s)| Record::new(format!("id{i}"), vector(*s)))
                    .collect();
                coll.upsert(&batch).unwrap();
                for r in batch {
                    model.insert(r.id, r.vector);
                }
            }
            Op::Delete(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| format!("id{i}")).collect();
                let existed = ids
                    .iter()
                    .filter(|i| model.contains_key(*i))
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                assert_eq!(coll.delete(&ids).unwrap(), existed);
                for id in &ids {
                    model.remove(id);
                }
            }
            Op::Flush => coll.flush().unwrap(),
            Op::Reopen => {
                drop(coll);
                store.close().unwrap();
                store = Store::open_with(dir.path(), options()).unwrap();
            }
            Op::ReopenDirty => {
                drop(coll);
                // Like a crash after the commits: no close-time snapshot.
                let big = StoreOptions {
                    close_snapshot_min_changes: u64::MAX,
                    ..options()
                };
                drop(store);
                let s = Store::open_with(dir.path(), big).unwrap();
                s.get_collection("m").unwrap();
                drop(s);
                store = Store::open_with(dir.path(), options()).unwrap();
            }
        }
        let coll = store.get_collection("m").unwrap();
        assert_contents(&coll, &model);
    }
    let coll = store.get_collection("m").unwrap();
    let report = coll.verify().unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    // Search: exact equals brute force; HNSW close to it.
    let data: Vec<(String, Vec<f32>)> = model.clone().into_iter().collect();
    let mut rng = Rng::new(7);
    for _ in 0..5 {
        let q = rng.vector(DIM);
        let want = brute_force(metric, &data, &q, 5);
        let exact = coll.search(&q, &SearchOptions::new(5).exact(true)).unwrap();
        let got: Vec<String> = exact.hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got, want);
        let approx = coll.search(&q, &SearchOptions::new(5)).unwrap();
        let got: Vec<String> = approx.hits.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got.len(), want.len());
        // Tiny collections: HNSW with ef 64 should be (almost) exact.
        assert!(recall(&got, &want) >= 0.8, "recall {got:?} vs {want:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model_cos_f32(ops in prop::collection::vec(op(), 1..30)) {
        run(ops, Metric::Cos, Scalar::F32);
    }

    #[test]
    fn store_matches_model_l2_f16(ops in prop::collection::vec(op(), 1..30)) {
        run(ops, Metric::L2, Scalar::F16);
    }
}

/// A larger collection with updates and deletes, reopened: recall of HNSW
/// against brute force stays above a floor.
#[test]
fn recall_floor_after_churn_and_reopen() {
    let dim = 24;
    let mut rng = Rng::new(42);
    let centres: Vec<Vec<f32>> = (0..20).map(|_| rng.vector(dim)).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("r", &CollectionConfig::new(dim))
        .unwrap();
    let mut model = BTreeMap::new();
    for round in 0..5 {
        let batch: Vec<Record> = (0..1000)
            .map(|i| {
                Record::new(
                    format!("r{}", (round * 700 + i) % 4000),
                    rng.clustered(dim, &centres),
                )
            })
            .collect();
        coll.upsert(&batch).unwrap();
        for r in batch {
            model.insert(r.id, r.vector);
        }
        let dels: Vec<String> = (0..150).map(|_| format!("r{}", rng.below(4000))).collect();
        coll.delete(&dels).unwrap();
        for d in &dels {
            model.remove(d);
        }
    }
    drop(coll);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store.get_collection("r").unwrap();
    if cfg!(feature = "usearch") {
        assert_eq!(
            coll.info().unwrap().load.source,
            quiver::IndexSource::Snapshot
        );
    }
    assert_contents(&coll, &model);
    let data: Vec<(String, Vec<f32>)> = model.into_iter().collect();
    let mut total = 0.0;
    for _ in 0..100 {
        let q = rng.clustered(dim, &centres);
        let want = brute_force(Metric::Cos, &data, &q, 10);
        let got: Vec<String> = coll
            .search(&q, &SearchOptions::new(10))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        total += recall(&got, &want);
        let exact: Vec<String> = coll
            .search(&q, &SearchOptions::new(10).exact(true))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(exact, want);
    }
    let mean = total / 100.0;
    assert!(mean >= 0.95, "recall@10 {mean}");
    assert!(coll.verify().unwrap().ok());
}
