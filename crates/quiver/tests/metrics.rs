//! The metrics beyond cos/ip/l2 (pearson, divergence, haversine, and
//! hamming/jaccard over sign bits): exact search equals brute force, HNSW
//! search finds nearly all of it and reports the distances brute force
//! computes (so Quiver's definitions are usearch's), both filtered plans
//! agree, and vectors a metric cannot measure are refused.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::Rng;
use quiver::{
    distance, Alter, CollectionConfig, Error, Filter, Metric, Record, Scalar, SearchOptions, Store,
    StoreOptions,
};
use serde_json::json;

const N: usize = 3000;
const K: usize = 10;

/// A valid vector for `metric`.
fn vector(metric: Metric, dim: usize, rng: &mut Rng) -> Vec<f32> {
    loop {
        let v: Vec<f32> = match metric {
            Metric::Haversine => vec![rng.f32() * 90.0, rng.f32() * 180.0],
            Metric::Divergence => (0..dim).map(|_| rng.f32().abs() + 0.01).collect(),
            _ => rng.vector(dim),
        };
        let ok = match metric {
            Metric::Jaccard => v.iter().any(|x| *x > 0.0),
            Metric::Pearson => v.iter().any(|x| *x != v[0]),
            _ => true,
        };
        if ok {
            return v;
        }
    }
}

fn check(metric: Metric, dim: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        // 900 matches run filtered HNSW, 300 exact distances.
        filter_exact_max: 500,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut config = CollectionConfig::new(dim);
    config.metric = metric;
    config.scalar = Scalar::default_for(metric);
    let coll = store.create_collection("m", &config).unwrap();
    let mut rng = Rng::new(metric.as_str().len() as u64 + dim as u64);
    let records: Vec<Record> = (0..N)
        .map(|i| {
            Record::new(format!("r{i:05}"), vector(metric, dim, &mut rng))
                .with_metadata(json!({"g": i % 10}))
        })
        .collect();
    coll.upsert(&records).unwrap();
    let data: Vec<(String, Vec<f32>)> = records
        .iter()
        .map(|r| (r.id.clone(), r.vector.clone()))
        .collect();
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 + 1e-3 * b.abs();
    let mut found = 0usize;
    let mut wanted = 0usize;
    for q in 0..40 {
        let query = vector(metric, dim, &mut rng);
        for (filter, plan) in [
            (None, "hnsw"),
            (Some("g < 3"), "filter-hnsw"),
            (Some("g = 0"), "filter-exact"),
        ] {
            let pool: Vec<(String, Vec<f32>)> = data
                .iter()
                .enumerate()
                .filter(|(i, _)| match filter {
                    None => true,
                    Some("g < 3") => i % 10 < 3,
                    _ => i % 10 == 0,
                })
                .map(|(_, d)| d.clone())
                .collect();
            let mut truth: Vec<f32> = pool
                .iter()
                .map(|(_, v)| distance(metric, &query, v))
                .collect();
            truth.sort_by(f32::total_cmp);
            let kth = truth[K - 1];
            let mut options = SearchOptions::new(K);
            if let Some(f) = filter {
                options = options.filter(f.parse::<Filter>().unwrap());
            }
            let approx = coll.search(&query, &options).unwrap();
            // Without usearch every plan is exact.
            if cfg!(feature = "usearch") {
                assert_eq!(approx.plan.name(), plan, "{metric} {filter:?}");
            }
            assert_eq!(approx.hits.len(), K);
            let exact = coll.search(&query, &options.clone().exact(true)).unwrap();
            // Exact: the k smallest distances, each as brute force computes it.
            let got: Vec<f32> = exact.hits.iter().map(|h| h.distance.unwrap()).collect();
            for (g, t) in got.iter().zip(&truth) {
                assert!(
                    close(*g, *t),
                    "{metric} {filter:?} query {q}: exact {got:?} truth {:?}",
                    &truth[..K]
                );
            }
            for h in &approx.hits {
                let v = &data.iter().find(|(id, _)| *id == h.id).unwrap().1;
                let d = distance(metric, &query, v);
                let reported = h.distance.unwrap();
                // bf16/f16 storage rounds; f32 and b1 measure exactly.
                assert!(
                    close(reported, d),
                    "{metric}: {} reported {reported}, brute force {d}",
                    h.id
                );
                found += usize::from(d <= kth + 1e-6);
            }
            wanted += K;
        }
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.9, "{metric}: recall {recall}");
    // Snapshot, reopen, search again: the metric is the collection's.
    store.flush().unwrap();
    drop(coll);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store.collection("m").unwrap().unwrap();
    assert_eq!(coll.config().metric, metric);
    let q = &records[7].vector;
    let hits = coll.search(q, &SearchOptions::new(1)).unwrap().hits;
    let d = hits[0].distance.unwrap();
    assert!(
        (d - distance(metric, q, q)).abs() <= 1e-4,
        "{metric}: itself at {d}"
    );
    assert!(coll.verify().unwrap().ok());
}

#[test]
fn pearson() {
    check(Metric::Pearson, 24);
}

#[test]
fn divergence() {
    check(Metric::Divergence, 24);
}

#[test]
fn haversine() {
    check(Metric::Haversine, 2);
}

#[test]
fn jaccard() {
    check(Metric::Jaccard, 64);
}

#[test]
fn hamming() {
    check(Metric::Hamming, 64);
}

#[test]
fn vectors_a_metric_cannot_measure_are_refused() {
    let store = Store::open_in_memory().unwrap();
    let make = |name: &str, metric: Metric, dim: usize| {
        let mut c = CollectionConfig::new(dim);
        c.metric = metric;
        c.scalar = Scalar::default_for(metric);
        store.create_collection(name, &c)
    };
    let bad = |name: &str, metric: Metric, dim: usize, v: Vec<f32>, needle: &str| {
        let coll = make(name, metric, dim).unwrap();
        match coll.upsert(&[Record::new("x", v)]) {
            Err(Error::InvalidVector { reason, .. }) => {
                assert!(reason.contains(needle), "{reason}")
            }
            other => panic!("{metric}: {other:?}"),
        }
        assert_eq!(coll.count().unwrap(), 0);
    };
    bad("h", Metric::Haversine, 2, vec![91.0, 0.0], "latitude");
    bad("h2", Metric::Haversine, 2, vec![0.0, 181.0], "longitude");
    bad("d", Metric::Divergence, 3, vec![0.5, -0.1, 0.6], ">= 0");
    bad("d2", Metric::Divergence, 3, vec![0.0; 3], "all-zero");
    bad("p", Metric::Pearson, 3, vec![2.0; 3], "constant");
    bad("j", Metric::Jaccard, 8, vec![-1.0; 8], "positive");
    for (metric, dim, scalar) in [
        (Metric::Haversine, 3, Scalar::F32),
        (Metric::Haversine, 2, Scalar::Bf16),
        (Metric::Jaccard, 8, Scalar::F32),
        (Metric::Pearson, 8, Scalar::B1),
    ] {
        let mut c = CollectionConfig::new(dim);
        c.metric = metric;
        c.scalar = scalar;
        let Err(err) = store.create_collection("bad", &c) else {
            panic!("{metric} {scalar} was accepted");
        };
        assert!(
            matches!(err, Error::InvalidConfig { .. }),
            "{metric} {scalar}: {err}"
        );
    }
    // Altering onto a metric some vector does not fit: refused, nothing changed.
    let mut c = CollectionConfig::new(2);
    c.metric = Metric::L2;
    let coll = store.create_collection("l2", &c).unwrap();
    coll.upsert(&[
        Record::new("a", vec![0.2, 0.8]),
        Record::new("b", vec![-0.5, 1.5]),
    ])
    .unwrap();
    let change = Alter {
        metric: Some(Metric::Divergence),
        ..Alter::default()
    };
    let err = coll.alter(&change).unwrap_err();
    assert!(err.to_string().contains("\"b\""), "{err}");
    assert_eq!(coll.config().metric, Metric::L2);
}

/// Manhattan distance, the test's own metric.
fn l1(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

const CHILD_STORE: &str = "QUIVER_TEST_CUSTOM_METRIC_STORE";

#[test]
fn a_registered_metric_serves_every_plan_and_another_process_must_register_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        filter_exact_max: 500,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let metric = store.register_metric("test_l1", l1).unwrap();
    assert_eq!(metric.to_string(), "test_l1");
    // Registered once per process; built-in names are not for the taking.
    assert!(store.register_metric("test_l1", l1).is_err());
    assert!(store.register_metric("cos", l1).is_err());
    assert!(store.register_metric("bad name", l1).is_err());
    let mut config = CollectionConfig::new(8);
    config.metric = metric;
    config.scalar = Scalar::Bf16;
    assert!(
        store.create_collection("c", &config).is_err(),
        "custom metrics are f32"
    );
    config.scalar = Scalar::F32;
    let coll = store.create_collection("c", &config).unwrap();
    let mut rng = Rng::new(77);
    let records: Vec<Record> = (0..N)
        .map(|i| Record::new(format!("r{i:05}"), rng.vector(8)).with_metadata(json!({"g": i % 10})))
        .collect();
    coll.upsert(&records).unwrap();
    let mut found = 0;
    for _ in 0..30 {
        let q = rng.vector(8);
        for (filter, plan, keep) in [
            (None, "hnsw", 10),
            (Some("g < 3"), "filter-hnsw", 3),
            (Some("g = 0"), "filter-exact", 1),
        ] {
            let mut truth: Vec<(f32, &str)> = records
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 10 < keep)
                .map(|(_, r)| (l1(&q, &r.vector), r.id.as_str()))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut options = SearchOptions::new(K);
            if let Some(f) = filter {
                options = options.filter(f.parse::<Filter>().unwrap());
            }
            let got = coll.search(&q, &options).unwrap();
            if cfg!(feature = "usearch") {
                assert_eq!(got.plan.name(), plan);
            }
            let exact = coll.search(&q, &options.clone().exact(true)).unwrap();
            let want: Vec<&str> = truth.iter().take(K).map(|t| t.1).collect();
            let exact_ids: Vec<&str> = exact.hits.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(
                exact_ids, want,
                "the exact plan is the function's brute force"
            );
            for h in &got.hits {
                let r = records.iter().find(|r| r.id == h.id).unwrap();
                assert_eq!(
                    h.distance.unwrap(),
                    l1(&q, &r.vector),
                    "the graph measures with it too"
                );
                found += usize::from(want.contains(&h.id.as_str()));
            }
        }
    }
    assert!(
        found as f64 / (30.0 * 3.0 * K as f64) >= 0.9,
        "recall {found}"
    );
    store.flush().unwrap();
    drop(coll);
    store.close().unwrap();

    // Another process, which has not registered test_l1: a typed error
    // naming it. After registering it: the same answers.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_side_of_the_custom_metric_test",
            "--nocapture",
        ])
        .env(CHILD_STORE, dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("child checked the store"), "{text}");
}

/// Run by the test above in a child process (with its store in the
/// environment); alone, it has nothing to check and returns.
#[test]
fn child_process_side_of_the_custom_metric_test() {
    let Some(dir) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    match store.collection("c") {
        Err(Error::UnknownMetric { name }) => assert_eq!(name, "test_l1"),
        Err(e) => panic!("expected UnknownMetric, got {e}"),
        Ok(_) => panic!("opened a collection whose metric is not registered"),
    }
    let err = store.collection("c").err().unwrap();
    assert!(
        err.to_string().contains("register_metric(\"test_l1\""),
        "{err}"
    );
    store.register_metric("test_l1", l1).unwrap();
    let coll = store.collection("c").unwrap().unwrap();
    let q = [0.1f32; 8];
    let hits = coll.search(&q, &SearchOptions::new(5)).unwrap().hits;
    let exact = coll
        .search(&q, &SearchOptions::new(5).exact(true))
        .unwrap()
        .hits;
    assert_eq!(hits[0].id, exact[0].id);
    assert_eq!(
        hits[0].distance.unwrap(),
        l1(&q, &coll.get(&hits[0].id).unwrap().unwrap().vector)
    );
    let load = coll.info().unwrap().load;
    if cfg!(feature = "usearch") {
        assert_eq!(load.source, quiver::IndexSource::Snapshot, "{load:?}");
    }
    assert!(coll.verify().unwrap().ok());
    println!("child checked the store");
}
