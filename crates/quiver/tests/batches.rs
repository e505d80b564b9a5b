//! Partial updates and atomic batches: `update` changes only what it is
//! given, `merge_where` only the keys of its patch, and `write` commits
//! deletes, upserts and updates as one transaction and one index step,
//! which a concurrent reader sees entirely or not at all.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use quiver::{CollectionConfig, Error, Filter, Include, Record, SearchOptions, Store, Update};
use serde_json::{json, Value};

const DIM: usize = 4;

/// Each record's vector, text and metadata, by id.
type Contents = BTreeMap<String, (Vec<f32>, Option<String>, Option<Value>)>;

fn everything(coll: &quiver::Collection) -> Contents {
    coll.scan(None, None, 100_000)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, (r.vector, r.text, r.metadata)))
        .collect()
}

#[test]
fn update_changes_only_what_it_is_given() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    coll.index_field("tags").unwrap();
    coll.upsert(&[
        Record::new("a", vec![1.0, 0.0, 0.0, 0.0])
            .with_text("the old words")
            .with_metadata(json!({"tags": ["x"], "keep": 1, "nested": {"a": 1, "b": 2}})),
        Record::new("b", vec![0.0, 1.0, 0.0, 0.0]).with_metadata(json!({"tags": ["x"]})),
    ])
    .unwrap();
    let before = everything(&coll);

    // Merge: named keys only (nested objects merge, null removes).
    coll.update(Update::new("a").merge(json!({"tags": ["y"], "nested": {"b": null, "c": 3}})))
        .unwrap();
    let a = coll.get("a").unwrap().unwrap();
    assert_eq!(
        a.metadata,
        Some(json!({"tags": ["y"], "keep": 1, "nested": {"a": 1, "c": 3}}))
    );
    assert_eq!(a.vector, before["a"].0);
    assert_eq!(a.text, before["a"].1);
    // The field index followed.
    let ids = |f: &str| -> Vec<String> {
        coll.scan(Some(&f.parse().unwrap()), None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids("tags CONTAINS 'y'"), ["a"]);
    assert_eq!(ids("tags CONTAINS 'x'"), ["b"]);

    // Replace metadata; a new text moves the keyword index; a new vector the graph.
    coll.update(
        Update::new("a")
            .metadata(json!({"only": true}))
            .text("fresh phrasing")
            .vector(vec![0.0, 0.0, 1.0, 0.0]),
    )
    .unwrap();
    let a = coll.get("a").unwrap().unwrap();
    assert_eq!(a.metadata, Some(json!({"only": true})));
    assert_eq!(a.text.as_deref(), Some("fresh phrasing"));
    let hits = |text: &str| -> Vec<String> {
        coll.search_keyword(text, &SearchOptions::new(5))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect()
    };
    assert_eq!(hits("fresh"), ["a"]);
    assert!(hits("old").is_empty());
    let near = coll
        .search(&[0.0, 0.0, 1.0, 0.0], &SearchOptions::new(1))
        .unwrap();
    assert_eq!(near.hits[0].id, "a");
    assert!(near.hits[0].distance.unwrap().abs() < 1e-6);
    assert_eq!(
        coll.get("b").unwrap().unwrap().metadata,
        Some(json!({"tags": ["x"]}))
    );

    // Bad input and unknown ids write nothing.
    let now = everything(&coll);
    let seq = coll.info().unwrap().seq;
    for bad in [
        Update::new("nope").merge(json!({"k": 1})),
        Update::new("a").vector(vec![1.0]),
        Update::new("a").metadata(json!([1, 2])),
        Update::new("a").merge(json!("x")),
        Update::new("").text("t"),
    ] {
        let e = coll.update(bad.clone()).unwrap_err();
        assert!(e.is_bad_input(), "{bad:?}: {e}");
    }
    assert!(matches!(
        coll.update(Update::new("nope").text("t")),
        Err(Error::NoSuchRecord { .. })
    ));
    assert_eq!(everything(&coll), now);
    assert_eq!(coll.info().unwrap().seq, seq);
    assert!(coll.verify().unwrap().problems.is_empty());
}

#[test]
fn merge_where_patches_every_match_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("mem", &CollectionConfig::new(DIM))
        .unwrap();
    let records: Vec<Record> = (0..50)
        .map(|i| {
            Record::new(format!("m{i:02}"), vec![1.0, i as f32, 0.0, 0.0])
                .with_metadata(json!({"ns": if i % 3 == 0 { "agent" } else { "user" }, "n": i}))
        })
        .collect();
    coll.upsert(&records).unwrap();
    let before = everything(&coll);
    let f: Filter = "ns = 'agent' AND n < 30".parse().unwrap();
    assert_eq!(
        coll.merge_where(&f, &json!({"stale": true, "n": null}))
            .unwrap(),
        10
    );
    let after = everything(&coll);
    for (id, (v, t, m)) in &after {
        let (v0, t0, m0) = &before[id];
        assert_eq!((v, t), (v0, t0), "{id}");
        let n = m0.as_ref().unwrap()["n"].as_i64().unwrap();
        if n % 3 == 0 && n < 30 {
            assert_eq!(m, &Some(json!({"ns": "agent", "stale": true})), "{id}");
        } else {
            assert_eq!(m, m0, "{id}");
        }
    }
    assert_eq!(
        coll.merge_where(&"n > 100".parse().unwrap(), &json!({"x": 1}))
            .unwrap(),
        0
    );
    assert!(coll
        .merge_where(&f, &json!([1]))
        .unwrap_err()
        .is_bad_input());
    assert_eq!(everything(&coll), after);
}

#[test]
fn a_failing_batch_writes_nothing() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    coll.upsert(&[
        Record::new("a", vec![1.0; DIM]),
        Record::new("b", vec![2.0; DIM]),
    ])
    .unwrap();
    let before = everything(&coll);
    // The delete and the upsert ran inside the transaction; the update of
    // an unknown id after them rolls everything back.
    let e = coll
        .write(|b| {
            b.delete(&["a"])?;
            b.upsert(&[Record::new("c", vec![3.0; DIM])])?;
            b.update(Update::new("missing").merge(json!({"k": 1})))?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, Error::NoSuchRecord { .. }), "{e}");
    // A check that fails while building: nothing runs.
    assert!(coll
        .write(|b| {
            b.delete(&["a"])?;
            b.upsert(&[Record::new("d", vec![1.0])])?;
            Ok(())
        })
        .unwrap_err()
        .is_bad_input());
    assert_eq!(everything(&coll), before);
    assert_eq!(
        coll.search(&[3.0; DIM], &SearchOptions::new(5))
            .unwrap()
            .hits
            .len(),
        2
    );
    // A batch that changes nothing spends no sequence number.
    let seq = coll.info().unwrap().seq;
    let r = coll.write(|b| b.delete(&["zz"]).map(drop)).unwrap();
    assert_eq!((r.seq, r.deleted), (0, 0));
    assert_eq!(coll.info().unwrap().seq, seq);
    // Ops see each other in order: upsert then delete_where of the same.
    let r = coll
        .write(|b| {
            b.upsert(&[Record::new("e", vec![1.0; DIM]).with_metadata(json!({"tmp": true}))])?;
            b.delete_where(&"tmp = true".parse().unwrap())?;
            Ok(())
        })
        .unwrap();
    assert_eq!((r.upserted, r.deleted), (1, 1));
    assert!(coll.get("e").unwrap().is_none());
    assert!(coll.verify().unwrap().problems.is_empty());
}

/// A code index replacing a file's chunks: generation g has 3 + g % 2
/// chunks. While a writer swaps generations with one `write` (delete by
/// filter, then upsert), readers search next to the file (the graph, exact
/// and filtered plans) and scan it: every answer holds one generation,
/// whole. Readers on the writer's own handle see its index step; readers
/// on another handle (another process, to the store) replay it.
#[test]
fn a_replaced_file_is_seen_whole_by_concurrent_readers() {
    replaced_file(false);
}

#[test]
fn a_replaced_file_is_seen_whole_by_readers_of_another_handle() {
    replaced_file(true);
}

fn replaced_file(elsewhere: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("code", &CollectionConfig::new(DIM))
        .unwrap();
    coll.index_field("file").unwrap();
    // a.rs's chunks lie close around a centre, each generation's a little
    // differently; the other files' are spread everywhere else.
    let centre = [1.0, 1.0, 1.0, 1.0];
    let chunks = |generation: usize| -> Vec<Record> {
        let mut rng = common::Rng::new(generation as u64 + 1);
        (0..3 + generation % 2)
            .map(|i| {
                let v: Vec<f32> = centre.iter().map(|c| c + 0.02 * rng.f32()).collect();
                Record::new(format!("a.rs#{generation}-{i}"), v)
                    .with_metadata(json!({"file": "a.rs", "generation": generation}))
            })
            .collect()
    };
    let mut rng = common::Rng::new(99);
    let others: Vec<Record> = (0..300)
        .map(|i| {
            let mut v = rng.vector(DIM);
            v[0] = -v[0].abs() - 0.5;
            Record::new(format!("o{i}"), v)
                .with_metadata(json!({"file": format!("f{}.rs", i % 30)}))
        })
        .collect();
    coll.upsert(&others).unwrap();
    coll.upsert(&chunks(0)).unwrap();
    let stop = AtomicBool::new(false);
    let checks = AtomicUsize::new(0);
    let file: Filter = "file = 'a.rs'".parse().unwrap();
    let other = elsewhere.then(|| Store::open_read_only(dir.path()).unwrap());
    let read_coll = match &other {
        Some(s) => s.get_collection("code").unwrap(),
        None => coll.clone(),
    };
    std::thread::scope(|s| {
        for reader in 0..2 {
            let (coll, stop, checks, file) = (&read_coll, &stop, &checks, &file);
            s.spawn(move || {
                let whole = |hits: &[(String, Option<Value>)], how: &str| {
                    let gens: Vec<u64> = hits
                        .iter()
                        .filter(|(id, _)| id.starts_with("a.rs"))
                        .map(|(id, _)| id[5..].split('-').next().unwrap().parse().unwrap())
                        .collect();
                    assert!(
                        !gens.is_empty(),
                        "{how}: a moment without the file: {hits:?}"
                    );
                    let g = gens[0];
                    assert!(gens.iter().all(|x| *x == g), "{how}: mixed {gens:?}");
                    assert_eq!(
                        gens.len() as u64,
                        3 + g % 2,
                        "{how}: part of generation {g}: {hits:?}"
                    );
                };
                while !stop.load(Ordering::SeqCst) {
                    let q = centre;
                    let ids = |r: quiver::SearchResult| -> Vec<(String, Option<Value>)> {
                        r.hits.into_iter().map(|h| (h.id, h.metadata)).collect()
                    };
                    let plain = SearchOptions::new(4);
                    whole(&ids(coll.search(&q, &plain).unwrap()), "hnsw");
                    let exact = SearchOptions::new(4).exact(true);
                    whole(&ids(coll.search(&q, &exact).unwrap()), "exact");
                    let with = SearchOptions::new(4).include(Include {
                        metadata: true,
                        ..Include::default()
                    });
                    whole(&ids(coll.search(&q, &with).unwrap()), "hnsw+metadata");
                    let filtered = SearchOptions::new(10).filter(file.clone());
                    whole(&ids(coll.search(&q, &filtered).unwrap()), "filtered");
                    let scanned: Vec<(String, Option<Value>)> = coll
                        .scan(Some(file), None, 100)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.id, r.metadata))
                        .collect();
                    whole(&scanned, "scan");
                    checks.fetch_add(1, Ordering::Relaxed);
                    let _ = reader;
                }
            });
        }
        for generation in 1..=60 {
            let next = chunks(generation);
            coll.write(|b| {
                b.delete_where(&file)?;
                b.upsert(&next)?;
                Ok(())
            })
            .unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(checks.load(Ordering::Relaxed) > 20, "readers ran alongside");
    assert_eq!(coll.count_where(&file).unwrap(), 3);
    assert!(coll.verify().unwrap().problems.is_empty());
}
