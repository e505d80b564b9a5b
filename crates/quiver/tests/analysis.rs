//! Joins, near-duplicates and clustering, on real collections (SQLite and
//! usearch), checked against brute force computed here.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::Rng;
use quiver::{
    ClusterOptions, Collection, CollectionConfig, DedupOptions, Error, Filter, JoinOptions,
    JoinPair, Metric, Record, Store,
};
use serde_json::json;

const DIM: usize = 24;

fn collection(store: &Store, name: &str, metric: Metric) -> Collection {
    let mut config = CollectionConfig::new(DIM);
    config.metric = metric;
    config.scalar = quiver::Scalar::default_for(metric);
    store.create_collection(name, &config).unwrap()
}

fn pairs(left: &Collection, right: &Collection, options: &JoinOptions) -> Vec<JoinPair> {
    let mut out = Vec::new();
    left.join(right, options, |p| {
        out.push(p);
        Ok(())
    })
    .unwrap();
    out
}

/// Records r0..r2999 around a few centres; LEFT holds 0..2000, RIGHT 1000..3000.
fn overlapping(store: &Store) -> (Collection, Collection, Vec<Record>) {
    let mut rng = Rng::new(5);
    let centres: Vec<Vec<f32>> = (0..8).map(|_| rng.vector(DIM)).collect();
    let all: Vec<Record> = (0..3000)
        .map(|i| {
            Record::new(format!("r{i:04}"), rng.clustered(DIM, &centres))
                .with_metadata(json!({"n": i}))
        })
        .collect();
    let left = collection(store, "left", Metric::Cos);
    let right = collection(store, "right", Metric::Cos);
    left.upsert(&all[..2000]).unwrap();
    right.upsert(&all[1000..]).unwrap();
    (left, right, all)
}

#[test]
fn a_join_of_overlapping_subsets_finds_the_shared_records_at_distance_zero() {
    let store = Store::open_in_memory().unwrap();
    let (left, right, all) = overlapping(&store);
    let got = pairs(&left, &right, &JoinOptions::default());
    assert_eq!(got.len(), 2000, "one pair per left record");
    for p in &got {
        let i: usize = p.left[1..].parse().unwrap();
        if i >= 1000 {
            assert_eq!(p.right, p.left, "{p:?}");
            assert_eq!(p.distance, 0.0, "{p:?}");
        } else {
            assert!(p.distance > 0.0, "{p:?}");
        }
        assert_eq!(p.rank, 1);
    }
    // Against brute force over RIGHT: the HNSW join's first matches agree
    // with the exact ones for nearly all of the left records.
    let right_data: Vec<(String, Vec<f32>)> = all[1000..]
        .iter()
        .map(|r| (r.id.clone(), r.vector.clone()))
        .collect();
    let agree = got
        .iter()
        .zip(&all[..2000])
        .filter(|(p, r)| common::brute_force(Metric::Cos, &right_data, &r.vector, 1)[0] == p.right)
        .count();
    assert!(agree >= 1980, "{agree} of 2000 agree with brute force");
    let exact = pairs(
        &left,
        &right,
        &JoinOptions {
            exact: true,
            ..JoinOptions::default()
        },
    );
    let exact_agree = exact
        .iter()
        .zip(&all[..2000])
        .filter(|(p, r)| common::brute_force(Metric::Cos, &right_data, &r.vector, 1)[0] == p.right)
        .count();
    assert_eq!(exact_agree, 2000, "the exact join is exact");
}

#[test]
fn join_k_ranks_max_distance_and_filters() {
    let store = Store::open_in_memory().unwrap();
    let (left, right, _) = overlapping(&store);
    let got = pairs(
        &left,
        &right,
        &JoinOptions {
            k: 3,
            left_filter: Some("n >= 1990".parse::<Filter>().unwrap()),
            ..JoinOptions::default()
        },
    );
    assert_eq!(got.len(), 30);
    for w in got.chunks(3) {
        assert!(w.iter().all(|p| p.left == w[0].left));
        assert_eq!(w.iter().map(|p| p.rank).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(w[0].distance <= w[1].distance && w[1].distance <= w[2].distance);
    }
    // A filter on the right side: no left record may match itself.
    let got = pairs(
        &left,
        &right,
        &JoinOptions {
            filter: Some("n >= 2000".parse::<Filter>().unwrap()),
            left_filter: Some("n >= 1500".parse::<Filter>().unwrap()),
            ..JoinOptions::default()
        },
    );
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|p| p.right.as_str() >= "r2000"));
    // A distance limit of 0: exactly the shared records, themselves.
    let got = pairs(
        &left,
        &right,
        &JoinOptions {
            max_distance: Some(0.0),
            ..JoinOptions::default()
        },
    );
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|p| p.left == p.right));
}

#[test]
fn a_one_to_one_join_uses_every_record_once_and_takes_the_closest_pairs_first() {
    let store = Store::open_in_memory().unwrap();
    let left = collection(&store, "l", Metric::L2);
    let right = collection(&store, "r", Metric::L2);
    let at = |x: f32| {
        let mut v = vec![0.0; DIM];
        v[0] = x;
        v
    };
    // a1 and a2 both want b1; a1 is closer, so a2 gets b2.
    left.upsert(&[Record::new("a1", at(1.0)), Record::new("a2", at(1.3))])
        .unwrap();
    right
        .upsert(&[Record::new("b1", at(1.1)), Record::new("b2", at(2.0))])
        .unwrap();
    let got = pairs(
        &left,
        &right,
        &JoinOptions {
            one_to_one: true,
            ..JoinOptions::default()
        },
    );
    let got: Vec<(&str, &str)> = got.iter().map(|p| (&*p.left, &*p.right)).collect();
    assert_eq!(got, [("a1", "b1"), ("a2", "b2")]);

    // Larger: LEFT 0..2000 and RIGHT 1000..3000 of one set. Every record is
    // used at most once, and the shared records are matched with themselves.
    let store = Store::open_in_memory().unwrap();
    let (left, right, _) = overlapping(&store);
    let got = pairs(
        &left,
        &right,
        &JoinOptions {
            one_to_one: true,
            ..JoinOptions::default()
        },
    );
    let lefts: HashSet<&str> = got.iter().map(|p| &*p.left).collect();
    let rights: HashSet<&str> = got.iter().map(|p| &*p.right).collect();
    assert_eq!(lefts.len(), got.len());
    assert_eq!(rights.len(), got.len());
    // RIGHT has 2,000 records for LEFT's 2,000: each left gets one
    // (candidates are widened while they are all taken).
    assert_eq!(got.len(), 2000);
    let selves = got.iter().filter(|p| p.left == p.right).count();
    assert_eq!(selves, 1000);
}

#[test]
fn dedup_finds_planted_duplicates() {
    let store = Store::open_in_memory().unwrap();
    let coll = collection(&store, "docs", Metric::Cos);
    let mut rng = Rng::new(17);
    let mut records: Vec<Record> = (0..1500)
        .map(|i| Record::new(format!("d{i:04}"), rng.vector(DIM)))
        .collect();
    // 40 pairs and 10 triples of near-copies (a tiny nudge of one original).
    let mut planted: BTreeSet<Vec<String>> = BTreeSet::new();
    for g in 0..50 {
        let original = records[g * 7].clone();
        let mut group = vec![original.id.clone()];
        for c in 0..(if g < 40 { 1 } else { 2 }) {
            let mut v = original.vector.clone();
            v[c] += 1e-3;
            let id = format!("copy{g:02}-{c}");
            group.push(id.clone());
            records.push(Record::new(id, v));
        }
        group.sort();
        planted.insert(group);
    }
    coll.upsert(&records).unwrap();
    for exact in [false, true] {
        let mut found = BTreeSet::new();
        let mut options = DedupOptions::new(1e-4);
        options.exact = exact;
        let n = coll
            .dedup(&options, |g| {
                assert!(g.max_distance <= 1e-4);
                found.insert(g.ids);
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 50);
        assert_eq!(found, planted, "exact: {exact}");
    }
}

#[test]
fn cluster_finds_separated_groups_writes_nothing_and_is_deterministic() {
    let store = Store::open_in_memory().unwrap();
    let coll = collection(&store, "pts", Metric::L2);
    let mut rng = Rng::new(23);
    let centres: Vec<Vec<f32>> = (0..5)
        .map(|i| {
            let mut c = vec![0.0; DIM];
            c[i] = 20.0;
            c
        })
        .collect();
    let records: Vec<Record> = (0..1000)
        .map(|i| {
            let c = &centres[i % 5];
            let v: Vec<f32> = c.iter().map(|x| x + rng.f32()).collect();
            Record::new(format!("p{i:04}"), v).with_metadata(json!({"group": i % 5}))
        })
        .collect();
    coll.upsert(&records).unwrap();
    let seq = coll.info().unwrap().seq;
    let found = coll.cluster(&ClusterOptions::new(5).seed(3)).unwrap();
    assert_eq!(coll.info().unwrap().seq, seq, "clustering writes nothing");
    assert_eq!(found.assignments.len(), 1000);
    assert!(!found.spherical);
    // Each true group is exactly one cluster.
    let mut by_group: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (id, c) in &found.assignments {
        let i: usize = id[1..].parse().unwrap();
        by_group.entry(i % 5).or_default().insert(*c);
    }
    assert!(by_group.values().all(|s| s.len() == 1), "{by_group:?}");
    let clusters: BTreeSet<usize> = by_group.values().flatten().copied().collect();
    assert_eq!(clusters.len(), 5);
    for c in &found.clusters {
        assert_eq!(c.size, 200);
        let medoid = c.medoid.as_ref().unwrap();
        let m = coll.get(medoid).unwrap().unwrap().vector;
        // The medoid is the member nearest the centroid.
        let d = quiver::distance(Metric::L2, &m, &c.centroid);
        for (id, n) in &found.assignments {
            if found.clusters[*n].medoid.as_deref() == Some(medoid.as_str()) {
                let v = coll.get(id).unwrap().unwrap().vector;
                assert!(quiver::distance(Metric::L2, &v, &c.centroid) >= d);
            }
        }
    }
    let again = coll.cluster(&ClusterOptions::new(5).seed(3)).unwrap();
    assert_eq!(again.assignments, found.assignments);
    assert_eq!(again.inertia.to_bits(), found.inertia.to_bits());

    // A filter: only group 0's and 1's records, in two clusters.
    let two = coll
        .cluster(&ClusterOptions::new(2).filter("group < 2".parse().unwrap()))
        .unwrap();
    assert_eq!(two.assignments.len(), 400);
    assert_eq!(
        two.clusters.iter().map(|c| c.size).collect::<Vec<_>>(),
        [200, 200]
    );
}

#[test]
fn spherical_clusters_for_cosine_and_clear_errors() {
    let store = Store::open_in_memory().unwrap();
    let coll = collection(&store, "c", Metric::Cos);
    let mut rng = Rng::new(29);
    coll.upsert(&common::records(&mut rng, 300, DIM, "x"))
        .unwrap();
    let found = coll.cluster(&ClusterOptions::new(6)).unwrap();
    assert!(found.spherical);
    for c in &found.clusters {
        let n: f32 = c.centroid.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
    let bad = |o: ClusterOptions| match coll.cluster(&o) {
        Err(Error::InvalidArgument { reason }) => reason,
        other => panic!("{other:?}"),
    };
    assert!(bad(ClusterOptions::new(0)).contains("at least 1"));
    assert!(bad(ClusterOptions::new(301)).contains("only 300 records"));
    assert!(bad(ClusterOptions::new(3).runs(0)).contains("runs"));

    // Join errors: another dimension, a negative distance.
    let mut config = CollectionConfig::new(DIM + 1);
    config.metric = Metric::Cos;
    let other = store.create_collection("other", &config).unwrap();
    let err = coll
        .join(&other, &JoinOptions::default(), |_| Ok(()))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    let err = coll
        .join(
            &coll,
            &JoinOptions {
                max_distance: Some(-1.0),
                ..JoinOptions::default()
            },
            |_| Ok(()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("maximum distance"), "{err}");
    let err = coll
        .dedup(&DedupOptions::new(f32::NAN), |_| Ok(()))
        .unwrap_err();
    assert!(err.to_string().contains("maximum distance"), "{err}");
}
