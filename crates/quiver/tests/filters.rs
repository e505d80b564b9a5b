//! Filters, filtered search plans, field indexes, keyword and hybrid search.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{brute_force, recall, Rng};
use quiver::{
    CollectionConfig, Error, Filter, Fusion, Include, Metric, Plan, Record, SearchOptions, Store,
    StoreOptions,
};
use serde_json::{json, Value};

const DIM: usize = 16;
const GROUPS: [&str; 3] = ["a", "b", "c"];

struct Data {
    records: Vec<Record>,
}

fn data(n: usize) -> Data {
    data_seeded(n, 77)
}

fn data_seeded(n: usize, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..12).map(|_| rng.vector(DIM)).collect();
    let records = (0..n)
        .map(|i| {
            let mut meta = json!({
                "sel": i % 1000,
                "group": GROUPS[i % 3],
                "nested": {"v": i as f64 / 10.0, "flag": i % 2 == 0},
            });
            if i % 7 == 0 {
                meta.as_object_mut().unwrap().remove("group");
            }
            Record::new(format!("r{i:05}"), rng.clustered(DIM, &centres)).with_metadata(meta)
        })
        .collect();
    Data { records }
}

type Pred = fn(&Value, &str) -> bool;

fn sel(m: &Value) -> i64 {
    m["sel"].as_i64().unwrap()
}

fn cases() -> Vec<(&'static str, Pred)> {
    vec![
        ("sel < 1", |m, _| sel(m) < 1),
        ("sel < 4", |m, _| sel(m) < 4),
        ("sel < 10", |m, _| sel(m) < 10),
        ("sel < 100", |m, _| sel(m) < 100),
        ("sel >= 500", |m, _| sel(m) >= 500),
        ("sel <= 999", |m, _| sel(m) <= 999),
        ("group = 'a' AND sel < 300", |m, _| {
            m["group"] == "a" && sel(m) < 300
        }),
        ("group IN ('b', 'c') OR sel = 7", |m, _| {
            m["group"] == "b" || m["group"] == "c" || sel(m) == 7
        }),
        ("NOT group = 'a'", |m, _| {
            m["group"].is_string() && m["group"] != "a"
        }),
        ("group IS NULL", |m, _| m.get("group").is_none()),
        ("group NOT IN ('a') AND nested.flag = true", |m, _| {
            m["group"].is_string() && m["group"] != "a" && m["nested"]["flag"] == true
        }),
        ("nested.v > 150.5 AND nested.v <= 200", |m, _| {
            let v = m["nested"]["v"].as_f64().unwrap();
            v > 150.5 && v <= 200.0
        }),
        ("id = 'r00042'", |_, id| id == "r00042"),
        ("id >= 'r02990'", |_, id| id >= "r02990"),
        ("sel = 5000", |_, _| false),
    ]
}

#[test]
fn filtered_search_is_exact_or_close_at_every_selectivity() {
    // Several random stores, cos/f32 and l2/f16.
    for (seed, metric, scalar) in [
        (77, Metric::Cos, quiver::Scalar::F32),
        (78, Metric::L2, quiver::Scalar::F16),
        (79, Metric::Cos, quiver::Scalar::F32),
    ] {
        filtered_recall(seed, metric, scalar);
    }
}

fn filtered_recall(seed: u64, metric: Metric, scalar: quiver::Scalar) {
    let d = data_seeded(3000, seed);
    // A low switch point, so both plans run on small data.
    let opts = StoreOptions {
        filter_exact_max: 60,
        ..StoreOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), opts).unwrap();
    let mut config = CollectionConfig::new(DIM);
    config.metric = metric;
    config.scalar = scalar;
    let coll = store.create_collection("f", &config).unwrap();
    coll.upsert(&d.records).unwrap();
    let mut rng = Rng::new(seed + 1);
    let queries: Vec<Vec<f32>> = (0..20)
        .map(|_| d.records[rng.below(3000) as usize].vector.clone())
        .collect();
    let mut plans = BTreeSet::new();
    for (text, pred) in cases() {
        let filter: Filter = text.parse().unwrap();
        let matching: Vec<(String, Vec<f32>)> = d
            .records
            .iter()
            .filter(|r| pred(r.metadata.as_ref().unwrap(), &r.id))
            .map(|r| (r.id.clone(), r.vector.clone()))
            .collect();
        assert_eq!(
            coll.count_where(&filter).unwrap(),
            matching.len() as u64,
            "{text}: count"
        );
        let mut total = 0.0;
        for q in &queries {
            let r = coll
                .search(q, &SearchOptions::new(10).filter(filter.clone()))
                .unwrap();
            let want = brute_force(metric, &matching, q, 10);
            let got: Vec<String> = r.hits.iter().map(|h| h.id.clone()).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{text}: never fewer than min(k, matches)"
            );
            assert_eq!(r.plan.matches(), Some(matching.len() as u64), "{text}");
            plans.insert(r.plan.name());
            match r.plan {
                Plan::FilterExact { .. } => {
                    assert_eq!(got, want, "{text}: exact plan");
                    total += 1.0;
                }
                Plan::FilterHnsw { .. } => total += recall(&got, &want),
                other => panic!("{text}: unexpected plan {other:?}"),
            }
        }
        let mean = total / queries.len() as f64;
        assert!(mean >= 0.98, "{text} ({metric}/{scalar}): recall {mean}");
        // Exact on request: equal to brute force whatever the plan.
        let q = &queries[0];
        let r = coll
            .search(
                q,
                &SearchOptions::new(10).filter(filter.clone()).exact(true),
            )
            .unwrap();
        let got: Vec<String> = r.hits.into_iter().map(|h| h.id).collect();
        assert_eq!(
            got,
            brute_force(metric, &matching, q, 10),
            "{text}: --exact"
        );
    }
    // Without usearch every filtered search is exact.
    let want_hnsw = cfg!(feature = "usearch");
    assert!(
        plans.contains("filter-exact") && plans.contains("filter-hnsw") == want_hnsw,
        "{plans:?}"
    );
}

/// Writes between filtered searches: upserts moving records into and out
/// of each filter, new records, deletes by id and by filter, and now and
/// then a flush (whose snapshot prunes the tombstones the cached sets
/// would need). After every write each filter's count and results match
/// a model of the collection: exact plans equal to brute force, the
/// bitmap plan at full recall here, `exact` equal to brute force.
#[test]
fn match_sets_follow_writes_between_filtered_searches() {
    for scalar in [quiver::Scalar::F32, quiver::Scalar::F16] {
        let dir = tempfile::tempdir().unwrap();
        // Few enough matches for the exact plan in two filters, not the third.
        let opts = StoreOptions {
            filter_exact_max: 400,
            ..StoreOptions::default()
        };
        let store = Store::open_with(dir.path(), opts).unwrap();
        let mut config = CollectionConfig::new(DIM);
        config.scalar = scalar;
        let coll = store.create_collection("f", &config).unwrap();
        let mut rng = Rng::new(5);
        let mut model: BTreeMap<String, (Vec<f32>, i64)> = BTreeMap::new();
        type Model = BTreeMap<String, (Vec<f32>, i64)>;
        fn write(coll: &quiver::Collection, ids: Vec<usize>, rng: &mut Rng, model: &mut Model) {
            let records: Vec<Record> = ids
                .into_iter()
                .map(|i| {
                    let sel = rng.below(1000) as i64;
                    Record::new(format!("r{i:05}"), rng.vector(DIM))
                        .with_metadata(json!({ "sel": sel }))
                })
                .collect();
            coll.upsert(&records).unwrap();
            for r in records {
                let sel = r.metadata.as_ref().unwrap()["sel"].as_i64().unwrap();
                model.insert(r.id, (r.vector, sel));
            }
        }
        write(&coll, (0..2000).collect(), &mut rng, &mut model);
        type SelPred = fn(i64) -> bool;
        let filters: [(&str, SelPred); 3] = [
            ("sel < 10", |s| s < 10),
            ("sel < 150", |s| s < 150),
            ("sel >= 500", |s| s >= 500),
        ];
        let queries: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(DIM)).collect();
        for round in 0..14 {
            if round > 0 {
                // Existing ids get new metadata (in or out of each filter)
                // and vectors; some ids are new.
                let ids: Vec<usize> = (0..40).map(|_| rng.below(2300) as usize).collect();
                let mut unique = ids.clone();
                unique.sort_unstable();
                unique.dedup();
                write(&coll, unique, &mut rng, &mut model);
                let gone: Vec<String> = (0..10)
                    .map(|_| format!("r{:05}", rng.below(2300)))
                    .collect();
                coll.delete(&gone).unwrap();
                for id in &gone {
                    model.remove(id);
                }
            }
            if round % 4 == 3 {
                let f: Filter = "sel >= 995".parse().unwrap();
                let n = coll.delete_where(&f).unwrap();
                let before = model.len();
                model.retain(|_, (_, s)| *s < 995);
                assert_eq!(n, before - model.len());
            }
            if round % 5 == 4 {
                coll.flush().unwrap();
            }
            for (text, pred) in &filters {
                let filter: Filter = text.parse().unwrap();
                let matching: Vec<(String, Vec<f32>)> = model
                    .iter()
                    .filter(|(_, (_, s))| pred(*s))
                    .map(|(id, (v, _))| (id.clone(), v.clone()))
                    .collect();
                let n = matching.len() as u64;
                assert_eq!(
                    coll.count_where(&filter).unwrap(),
                    n,
                    "{text} round {round}"
                );
                for q in &queries {
                    let want = brute_force(Metric::Cos, &matching, q, 10);
                    let r = coll
                        .search(q, &SearchOptions::new(10).filter(filter.clone()))
                        .unwrap();
                    assert_eq!(r.plan.matches(), Some(n), "{text} round {round}");
                    let got: Vec<String> = r.hits.into_iter().map(|h| h.id).collect();
                    match r.plan {
                        Plan::FilterExact { .. } => {
                            assert_eq!(got, want, "{text} round {round} ({scalar})");
                        }
                        _ => {
                            assert_eq!(got.len(), want.len(), "{text} round {round}");
                            let rc = recall(&got, &want);
                            assert!(rc >= 0.8, "{text} round {round}: recall {rc}");
                        }
                    }
                    let r = coll
                        .search(
                            q,
                            &SearchOptions::new(10).filter(filter.clone()).exact(true),
                        )
                        .unwrap();
                    let got: Vec<String> = r.hits.into_iter().map(|h| h.id).collect();
                    assert_eq!(got, want, "{text} round {round}: exact");
                }
            }
        }
    }
}

#[test]
fn injection_attempts_are_literal_text() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(2))
        .unwrap();
    let nasty = [
        "x'); DROP TABLE records; --",
        "' OR 1=1 --",
        "\"; DELETE FROM records; --",
        "%",
        "_",
    ];
    let mut recs: Vec<Record> = nasty
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Record::new(format!("n{i}"), vec![1.0, i as f32]).with_metadata(json!({"name": n}))
        })
        .collect();
    recs.push(Record::new("plain", vec![0.0, 1.0]).with_metadata(json!({"name": "plain"})));
    coll.upsert(&recs).unwrap();
    for (i, n) in nasty.iter().enumerate() {
        for filter in [
            Filter::eq("name", *n),
            format!("name = '{}'", n.replace('\'', "''"))
                .parse()
                .unwrap(),
        ] {
            let hits = coll.scan(Some(&filter), None, 100).unwrap();
            assert_eq!(hits.len(), 1, "{n}");
            assert_eq!(hits[0].id, format!("n{i}"));
            assert_eq!(coll.count_where(&filter).unwrap(), 1);
            let r = coll
                .search(&[1.0, 0.0], &SearchOptions::new(10).filter(filter))
                .unwrap();
            assert_eq!(r.hits.len(), 1);
        }
    }
    // An id that looks like SQL is just an id.
    let f = Filter::eq("id", "' OR 1=1 --");
    assert_eq!(coll.count_where(&f).unwrap(), 0);
    assert_eq!(coll.delete_where(&f).unwrap(), 0);
    assert_eq!(coll.count().unwrap(), 6);
    let r = coll
        .search_keyword("x'); DROP TABLE records; --", &SearchOptions::new(5))
        .unwrap();
    assert!(r.hits.is_empty());
    assert_eq!(coll.count().unwrap(), 6);
}

fn vocab_text(rng: &mut Rng) -> String {
    const WORDS: [&str; 8] = [
        "vector", "database", "graph", "rust", "python", "search", "Café", "日本",
    ];
    (0..1 + rng.below(4))
        .map(|_| WORDS[rng.below(8) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids whose text has every word of `query` (case-insensitively), by the model.
fn model_matches(model: &BTreeMap<String, (String, i64)>, word: &str) -> BTreeSet<String> {
    model
        .iter()
        .filter(|(_, (t, _))| {
            t.split(' ')
                .any(|w| w.to_lowercase() == word.to_lowercase())
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[test]
fn keyword_index_follows_upserts_deletes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(9);
    let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut store = Some(Store::open(dir.path()).unwrap());
    store
        .as_ref()
        .unwrap()
        .create_collection("t", &CollectionConfig::new(4))
        .unwrap();
    for step in 0..60 {
        let s = store.as_ref().unwrap();
        let coll = s.get_collection("t").unwrap();
        match rng.below(6) {
            0..=2 => {
                let batch: Vec<Record> = (0..5)
                    .map(|_| {
                        let id = format!("d{}", rng.below(40));
                        let n = rng.below(10) as i64;
                        let text = vocab_text(&mut rng);
                        model.insert(id.clone(), (text.clone(), n));
                        Record::new(id, rng.vector(4))
                            .with_text(text)
                            .with_metadata(json!({"n": n}))
                    })
                    .collect();
                // Later duplicates win in the model too: re-apply in order.
                for r in &batch {
                    model.insert(
                        r.id.clone(),
                        (
                            r.text.clone().unwrap(),
                            r.metadata.as_ref().unwrap()["n"].as_i64().unwrap(),
                        ),
                    );
                }
                coll.upsert(&batch).unwrap();
            }
            3 => {
                let ids: Vec<String> = (0..3).map(|_| format!("d{}", rng.below(40))).collect();
                coll.delete(&ids).unwrap();
                for id in &ids {
                    model.remove(id);
                }
            }
            4 => {
                let t = rng.below(10) as i64;
                let n = coll.delete_where(&Filter::lt("n", t)).unwrap();
                let before = model.len();
                model.retain(|_, (_, v)| *v >= t);
                assert_eq!(n, before - model.len(), "step {step}: delete_where count");
            }
            _ => {
                // Reopen without a clean close.
                drop(coll);
                // The old store must be gone (lock released) before the reopen.
                drop(store.take());
                store = Some(Store::open(dir.path()).unwrap());
            }
        }
        let s = store.as_ref().unwrap();
        let coll = s.get_collection("t").unwrap();
        for word in ["vector", "DATABASE", "cafe", "日本", "rust"] {
            let got: BTreeSet<String> = coll
                .search_keyword(word, &SearchOptions::new(100))
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect();
            let want = if word == "cafe" {
                model_matches(&model, "café")
            } else {
                model_matches(&model, word)
            };
            assert_eq!(got, want, "step {step}: keyword {word}");
        }
    }
}

#[test]
fn keyword_search_ranks_all_words_first_and_filters() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("k", &CollectionConfig::new(2))
        .unwrap();
    let texts = [
        ("both", "an embedded vector database for rust", 1),
        ("both2", "vector database vector database", 2),
        ("vec", "vector math library", 1),
        ("db", "a relational database", 1),
        ("none", "something else entirely", 1),
    ];
    let recs: Vec<Record> = texts
        .iter()
        .map(|(id, t, n)| {
            Record::new(*id, vec![1.0, 0.5])
                .with_text(*t)
                .with_metadata(json!({"n": n}))
        })
        .collect();
    coll.upsert(&recs).unwrap();
    let r = coll
        .search_keyword(
            "Vector database",
            &SearchOptions::new(10).include(Include {
                text: true,
                ..Default::default()
            }),
        )
        .unwrap();
    let ids: Vec<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(r.plan, Plan::Keyword { matches: 2 });
    assert_eq!(ids.len(), 4);
    assert!(
        ids[..2].contains(&"both") && ids[..2].contains(&"both2"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"none"));
    for h in &r.hits[..2] {
        let t = h.text.as_deref().unwrap();
        assert!(t.contains("vector") && t.contains("database"));
    }
    let scores: Vec<f32> = r
        .hits
        .iter()
        .map(|h| h.ranks.as_ref().unwrap().keyword_score.unwrap())
        .collect();
    assert!(scores[0] >= scores[1], "best first");
    let r = coll
        .search_keyword(
            "vector database",
            &SearchOptions::new(10).filter(Filter::eq("n", 1)),
        )
        .unwrap();
    let ids: Vec<&str> = r.hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids[0], "both");
    assert!(!ids.contains(&"both2"));
    assert!(matches!(
        coll.search_keyword("  !! ", &SearchOptions::new(3)),
        Err(Error::InvalidSearch { .. })
    ));
}

#[test]
fn hybrid_fuses_both_lists_with_their_ranks() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("h", &CollectionConfig::new(2))
        .unwrap();
    coll.upsert(&[
        Record::new("near-and-words", vec![1.0, 0.05]).with_text("quiver vector store"),
        Record::new("near-only", vec![1.0, 0.0]).with_text("unrelated text"),
        Record::new("words-only", vec![-1.0, 0.2]).with_text("quiver vector store quiver"),
        Record::new("neither", vec![-1.0, -1.0]).with_text("nothing here"),
    ])
    .unwrap();
    let q = [1.0, 0.0];
    let opts = SearchOptions::new(3);
    let r = coll
        .search_hybrid(&q, "quiver vector", &opts, &Fusion::default())
        .unwrap();
    assert_eq!(r.hits[0].id, "near-and-words");
    let top = r.hits[0].ranks.as_ref().unwrap();
    assert_eq!(top.vector_rank, Some(2));
    assert!(top.keyword_rank.is_some() && top.score.is_some());
    assert!(matches!(r.plan, Plan::Hybrid { .. }));
    // Weight 0 on keywords: the vector order.
    let vec_only = Fusion {
        keyword_weight: 0.0,
        ..Fusion::default()
    };
    let r = coll
        .search_hybrid(&q, "quiver vector", &opts, &vec_only)
        .unwrap();
    assert_eq!(r.hits[0].id, "near-only");
    let kw_only = Fusion {
        vector_weight: 0.0,
        ..Fusion::default()
    };
    let r = coll
        .search_hybrid(&q, "quiver vector", &opts, &kw_only)
        .unwrap();
    assert_eq!(r.hits[0].id, "words-only");
    let bad = Fusion {
        rrf_k: f32::NAN,
        ..Fusion::default()
    };
    assert!(coll.search_hybrid(&q, "x", &opts, &bad).is_err());
    // Filters apply to both lists.
    let r = coll
        .search_hybrid(
            &q,
            "quiver",
            &opts.clone().filter(Filter::eq("id", "words-only")),
            &Fusion::default(),
        )
        .unwrap();
    assert_eq!(r.hits.len(), 1);
}

#[test]
fn field_indexes_are_used_by_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let coll = store
        .create_collection("i", &CollectionConfig::new(DIM))
        .unwrap();
    coll.upsert(&data(500).records).unwrap();
    assert!(coll.index_field("sel").unwrap());
    assert!(!coll.index_field("sel").unwrap());
    assert!(coll.index_field("nested.v").unwrap());
    assert!(matches!(
        coll.index_field("a\"b"),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        coll.index_field("a..b"),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        coll.index_field("id"),
        Err(Error::InvalidFilter { .. })
    ));
    assert_eq!(coll.info().unwrap().indexed_fields, vec!["nested.v", "sel"]);
    assert_eq!(coll.count_where(&"sel < 10".parse().unwrap()).unwrap(), 10);
    drop(coll);
    store.close().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
    // Per record and field, its value and the marker of a present field.
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM field_values WHERE cid = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(entries, 2000);
    // The expression index, for ordering by the field.
    let plan: Vec<String> = conn
        .prepare("EXPLAIN QUERY PLAN SELECT id FROM records WHERE cid = 1 ORDER BY json_extract(metadata, '$.sel')")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(plan.iter().any(|p| p.contains("qf_1_")), "{plan:?}");
    // Dropping the collection drops its indexes.
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    store.drop_collection("i").unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'qf_%' OR name LIKE 'fts_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM field_values", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 0);
}

#[test]
fn invalid_filters_are_typed_with_columns() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(2))
        .unwrap();
    let e = "a = 1 )".parse::<Filter>().unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidFilter {
            column: Some(7),
            ..
        }
    ));
    assert!(e.is_bad_input());
    let bad = Filter::eq("a..b", 1);
    assert!(matches!(
        coll.count_where(&bad),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        coll.search(&[1.0, 0.0], &SearchOptions::new(1).filter(bad.clone())),
        Err(Error::InvalidFilter { .. })
    ));
    assert!(matches!(
        coll.delete_where(&bad),
        Err(Error::InvalidFilter { .. })
    ));
}

#[test]
fn a_version_1_store_is_migrated_with_its_text_indexed() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The version 1 schema, as the first release wrote it.
        let conn = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
        conn.execute_batch(include_str!("fixtures/schema-v1.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO collections (name, dimension, metric, scalar, connectivity, expansion_add, expansion_search, seq, created_at)
                 VALUES ('old', 2, 'cos', 'f32', 16, 128, 64, 1, 0);
             INSERT INTO records (cid, id, vector, text, seq) VALUES (1, 'a', x'0000803f00000000', 'legacy vector text', 1);
             PRAGMA application_id = 1364611633; PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(Error::OldSchema { version: 1, .. })
    ));
    let store = Store::open(dir.path()).unwrap();
    let coll = store.get_collection("old").unwrap();
    assert_eq!(coll.get("a").unwrap().unwrap().vector, vec![1.0, 0.0]);
    let r = coll
        .search_keyword("legacy", &SearchOptions::new(3))
        .unwrap();
    assert_eq!(r.hits[0].id, "a");
    assert_eq!(
        coll.search(&[1.0, 0.1], &SearchOptions::new(1))
            .unwrap()
            .hits[0]
            .id,
        "a"
    );
}

#[test]
fn a_version_2_store_is_migrated_with_its_field_indexes_filled() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Version 1, then version 2's table and one field index as version
        // 2 made it (an expression index, no entries).
        let conn = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
        conn.execute_batch(include_str!("fixtures/schema-v1.sql"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE field_indexes (id INTEGER PRIMARY KEY, cid INTEGER NOT NULL, path TEXT NOT NULL, UNIQUE (cid, path));
             CREATE VIRTUAL TABLE fts_1 USING fts5(text, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO collections (name, dimension, metric, scalar, connectivity, expansion_add, expansion_search, seq, created_at)
                 VALUES ('old', 2, 'cos', 'f32', 16, 128, 64, 1, 0);
             INSERT INTO records (cid, id, vector, metadata, seq) VALUES
                 (1, 'a', x'0000803f00000000', '{\"tags\": [\"db\", \"x\"]}', 1),
                 (1, 'b', x'000000000000803f', '{\"tags\": \"db\"}', 1),
                 (1, 'c', x'0000803f0000803f', '{\"tags\": [\"y\"]}', 1);
             INSERT INTO field_indexes (cid, path) VALUES (1, 'tags');
             CREATE INDEX qf_1_1 ON records (cid, json_extract(metadata, '$.tags'));
             PRAGMA application_id = 1364611633; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    assert!(matches!(
        Store::open_read_only(dir.path()),
        Err(Error::OldSchema { version: 2, .. })
    ));
    let store = Store::open(dir.path()).unwrap();
    let coll = store.get_collection("old").unwrap();
    let ids = |f: &str| -> Vec<String> {
        coll.scan(Some(&f.parse().unwrap()), None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids("tags CONTAINS 'db'"), ["a", "b"]);
    assert_eq!(ids("tags = 'y'"), ["c"]);
    // The entries follow writes from here on.
    coll.upsert(&[Record::new("c", vec![1.0, 0.5]).with_metadata(json!({"tags": ["db"]}))])
        .unwrap();
    assert_eq!(ids("tags CONTAINS 'db'"), ["a", "b", "c"]);
    drop(coll);
    store.close().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM field_values", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 7, "a: db, x; b: db; c: db; and a marker each");
}

#[test]
fn a_porter_collection_finds_word_forms_and_hits_carry_scores() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut porter = CollectionConfig::new(2);
    porter.tokenizer = quiver::Tokenizer::Porter;
    let stemmed = store.create_collection("stemmed", &porter).unwrap();
    let plain = store
        .create_collection("plain", &CollectionConfig::new(2))
        .unwrap();
    let records = [
        Record::new("a", vec![1.0, 0.0]).with_text("An embedded Database for vectors"),
        Record::new("b", vec![0.0, 1.0]).with_text("Running shoes and jogging"),
        Record::new("c", vec![1.0, 1.0]).with_text("Nothing relevant here"),
    ];
    stemmed.upsert(&records).unwrap();
    plain.upsert(&records).unwrap();
    let ids = |c: &quiver::Collection, q: &str| -> Vec<String> {
        c.search_keyword(q, &SearchOptions::new(5))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect()
    };
    assert_eq!(ids(&stemmed, "databases"), ["a"]);
    assert_eq!(ids(&stemmed, "run"), ["b"]);
    assert!(ids(&plain, "databases").is_empty());
    assert_eq!(ids(&plain, "database"), ["a"]);
    // The tokenizer is part of the settings, kept across a reopen.
    drop((stemmed, plain));
    store.close().unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let stemmed = store.get_collection("stemmed").unwrap();
    assert_eq!(stemmed.config().tokenizer, quiver::Tokenizer::Porter);
    assert_eq!(ids(&stemmed, "databases"), ["a"]);
    // Keyword and hybrid hits: a score, higher is better, and no distance;
    // vector hits: a distance and no score.
    let kw = stemmed
        .search_keyword("database vectors", &SearchOptions::new(3))
        .unwrap();
    assert!(kw
        .hits
        .iter()
        .all(|h| h.distance.is_none() && h.score().unwrap() > 0.0));
    let hy = stemmed
        .search_hybrid(
            &[1.0, 0.0],
            "database",
            &SearchOptions::new(3),
            &Fusion::default(),
        )
        .unwrap();
    assert!(hy.hits.windows(2).all(|w| w[0].score() >= w[1].score()));
    assert!(hy
        .hits
        .iter()
        .all(|h| h.distance.is_none() && h.score().unwrap() > 0.0));
    let v = stemmed.search(&[1.0, 0.0], &SearchOptions::new(3)).unwrap();
    assert!(v
        .hits
        .iter()
        .all(|h| h.distance.is_some() && h.score().is_none()));
    assert!("stemming".parse::<quiver::Tokenizer>().is_err());
}
