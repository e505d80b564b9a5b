//! Ordered, paged scans: the order of a model (sort value, then id;
//! records without the field last), every record exactly once across the
//! pages, a cursor that says where the next page starts, and paging that
//! holds while another store handle writes.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use common::Rng;
use quiver::{Collection, CollectionConfig, Error, Filter, Record, ScanOptions, Store};
use serde_json::{json, Value};

const DIM: usize = 2;

/// SQLite's order of `json_extract` results: numbers (booleans as 0 and 1)
/// by value, then text by bytes (arrays and objects as their JSON text).
fn sort_value(m: &Value, field: &str) -> Option<Value> {
    match m.get(field)? {
        Value::Null => None,
        Value::Bool(b) => Some(json!(u8::from(*b))),
        v @ (Value::Array(_) | Value::Object(_)) => Some(json!(v.to_string())),
        v => Some(v.clone()),
    }
}

fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap(),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a
            .as_str()
            .unwrap()
            .as_bytes()
            .cmp(b.as_str().unwrap().as_bytes()),
    }
}

/// The ids in the order a scan by `field` must give.
fn model_order(model: &[(String, Value)], field: &str, desc: bool) -> Vec<String> {
    let mut with: Vec<(Value, &str)> = Vec::new();
    let mut without: Vec<&str> = Vec::new();
    for (id, m) in model {
        match sort_value(m, field) {
            Some(v) => with.push((v, id)),
            None => without.push(id),
        }
    }
    with.sort_by(|a, b| cmp_values(&a.0, &b.0).then(a.1.cmp(b.1)));
    without.sort();
    if desc {
        with.reverse();
        without.reverse();
    }
    with.into_iter()
        .map(|(_, id)| id.to_string())
        .chain(without.into_iter().map(String::from))
        .collect()
}

fn all_pages(coll: &Collection, mut options: ScanOptions) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    loop {
        let page = coll.scan_page(&options).unwrap();
        assert!(page.records.len() <= options.limit);
        pages.push(page.records.into_iter().map(|r| r.id).collect());
        match page.next {
            Some(next) => options.after = Some(next),
            None => return pages,
        }
    }
}

#[test]
fn ordered_pages_follow_the_model_in_both_directions() {
    let mut rng = Rng::new(5);
    let model: Vec<(String, Value)> = (0..300)
        .map(|i| {
            let v = match rng.below(9) {
                0 => json!(rng.below(20)),
                1 => json!(rng.below(20) as f64 / 4.0),
                2 => json!(["b", "a", "c", "B"][rng.below(4) as usize]),
                3 => json!(null),
                4 => json!(true),
                5 => json!([rng.below(3)]),
                6 => json!({"k": rng.below(2)}),
                7 => json!(-(rng.below(5) as i64)),
                _ => json!(format!("t{}", rng.below(50))),
            };
            let group = ["x", "y"][rng.below(2) as usize];
            let mut m = json!({ "group": group });
            if rng.below(6) != 0 {
                m["at"] = v;
            }
            (format!("r{:03}", rng.below(1000) * 1000 + i), m)
        })
        .collect();
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    let records: Vec<Record> = model
        .iter()
        .map(|(id, m)| Record::new(id.clone(), vec![1.0, 0.0]).with_metadata(m.clone()))
        .collect();
    coll.upsert(&records).unwrap();
    for indexed in [false, true] {
        if indexed {
            coll.index_field("at").unwrap();
        }
        for desc in [false, true] {
            for limit in [1, 7, 300, 301] {
                let pages = all_pages(&coll, ScanOptions::new(limit).order_by("at", desc));
                let got: Vec<String> = pages.iter().flatten().cloned().collect();
                assert_eq!(
                    got,
                    model_order(&model, "at", desc),
                    "desc {desc}, limit {limit}"
                );
                // Only the last page is short, and only it has no cursor.
                assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == limit));
                assert_eq!(pages.len(), 300usize.div_ceil(limit));
            }
            // With a filter: the model's order of the matches.
            let f: Filter = "group = 'x'".parse().unwrap();
            let pages = all_pages(&coll, ScanOptions::new(9).filter(f).order_by("at", desc));
            let got: Vec<String> = pages.into_iter().flatten().collect();
            let matching: Vec<(String, Value)> = model
                .iter()
                .filter(|(_, m)| m["group"] == "x")
                .cloned()
                .collect();
            assert_eq!(got, model_order(&matching, "at", desc));
        }
    }
    // Id order pages too, both ways, and its cursor is the last id.
    let mut ids: Vec<String> = model.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    let asc: Vec<String> = all_pages(&coll, ScanOptions::new(8))
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(asc, ids);
    let mut opts = ScanOptions::new(8);
    opts.desc = true;
    let desc: Vec<String> = all_pages(&coll, opts).into_iter().flatten().collect();
    ids.reverse();
    assert_eq!(desc, ids);
    let first = coll.scan_page(&ScanOptions::new(3)).unwrap();
    assert_eq!(first.next.as_deref(), Some(first.records[2].id.as_str()));
}

#[test]
fn bad_cursors_and_limits_are_typed_errors() {
    let store = Store::open_in_memory().unwrap();
    let coll = store
        .create_collection("c", &CollectionConfig::new(DIM))
        .unwrap();
    let records: Vec<Record> = (0..5)
        .map(|i| {
            Record::new(format!("r{i}"), vec![1.0, 0.0]).with_metadata(json!({"n": i, "m": -i}))
        })
        .collect();
    coll.upsert(&records).unwrap();
    let next = coll
        .scan_page(&ScanOptions::new(2).order_by("n", false))
        .unwrap()
        .next
        .unwrap();
    let bad = |options: ScanOptions| match coll.scan_page(&options) {
        Err(e @ Error::InvalidArgument { .. }) => e.to_string(),
        other => panic!("{options:?}: {other:?}"),
    };
    assert!(
        bad(ScanOptions::new(2).order_by("m", false).after(next.clone())).contains("ordering by n")
    );
    assert!(
        bad(ScanOptions::new(2).order_by("n", true).after(next.clone())).contains("descending")
    );
    assert!(bad(ScanOptions::new(2).after(next.clone())).contains("id order"));
    assert!(bad(ScanOptions::new(2).order_by("n", false).after("r1")).contains("not a cursor"));
    assert!(bad(ScanOptions::new(2).order_by("n", false).after("@zz")).contains("damaged"));
    assert!(bad(ScanOptions::new(0)).contains("limit 0"));
    assert!(matches!(
        coll.scan_page(&ScanOptions::new(2).order_by("a\"b", false)),
        Err(Error::InvalidFilter { .. })
    ));
    // The good cursor still works.
    let rest = coll
        .scan_page(&ScanOptions::new(10).order_by("n", false).after(next))
        .unwrap();
    let ids: Vec<&str> = rest.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r2", "r3", "r4"]);
    assert_eq!(rest.next, None);
}

/// 2,000 records that stay, paged 50 at a time by a field while another
/// store handle on the same directory (another process, as far as the
/// store can tell) adds records, rewrites others and deletes them: each
/// record that stayed comes exactly once, in order.
#[test]
fn paging_while_another_handle_writes_returns_every_stable_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let stable: Vec<Record> = (0..2000)
        .map(|i| {
            Record::new(format!("s{i:04}"), vec![1.0, 0.0])
                .with_metadata(json!({"created_at": (i * 7919) % 2000, "kind": "stable"}))
        })
        .collect();
    {
        let store = Store::open(dir.path()).unwrap();
        let coll = store
            .create_collection("c", &CollectionConfig::new(DIM))
            .unwrap();
        coll.upsert(&stable).unwrap();
        store.close().unwrap();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let store = Store::open(dir.path()).unwrap();
            let coll = store.get_collection("c").unwrap();
            let mut i = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && i < 400 {
                // New records interleaved with the stable ones' values,
                // one rewritten, one deleted.
                let churn: Vec<Record> = (0..5)
                    .map(|j| {
                        Record::new(format!("w{i}-{j}"), vec![0.0, 1.0])
                            .with_metadata(json!({"created_at": ((i * 5 + j) * 131) % 2000}))
                    })
                    .collect();
                coll.upsert(&churn).unwrap();
                coll.delete(&[format!("w{}-0", i.saturating_sub(1))])
                    .unwrap();
                i += 1;
            }
        });
        let store = Store::open_read_only(dir.path()).unwrap();
        let coll = store.get_collection("c").unwrap();
        let mut seen = Vec::new();
        let mut options = ScanOptions::new(50).order_by("created_at", false);
        loop {
            let page = coll.scan_page(&options).unwrap();
            seen.extend(page.records.into_iter().filter(|r| r.id.starts_with('s')));
            std::thread::yield_now();
            match page.next {
                Some(next) => options.after = Some(next),
                None => break,
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<&str> = seen.iter().map(|r| r.id.as_str()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), 2000, "each stable record once");
        assert_eq!(unique.len(), 2000);
        let keys: Vec<(i64, &str)> = seen
            .iter()
            .map(|r| {
                (
                    r.metadata.as_ref().unwrap()["created_at"].as_i64().unwrap(),
                    r.id.as_str(),
                )
            })
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "in order");
    });
}
