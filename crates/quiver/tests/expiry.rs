//! Record expiry with an injected clock: an expired record vanishes from
//! every read at its expiry instant, in this process and another, before
//! it is purged; the next write purges it (with a tombstone the change
//! feed reports), and `compact` takes it off the disk.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::Rng;
use quiver::{
    Change, CollectionConfig, Filter, ManualClock, Record, ScanOptions, SearchOptions, Store,
    StoreOptions, Update,
};
use serde_json::json;

const DIM: usize = 16;
/// 2026-12-01T00:00:00Z.
const T0: u64 = 1_796_083_200;

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn ms(secs: u64) -> i64 {
    ((T0 + secs) * 1000) as i64
}

fn options(clock: &Arc<ManualClock>) -> StoreOptions {
    StoreOptions {
        clock: clock.clone(),
        ..StoreOptions::default()
    }
}

/// Ids every read path returns, each sorted.
fn everything(coll: &quiver::Collection, probe: &[f32], n: usize) -> Vec<Vec<String>> {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let scan = sorted(
        coll.scan(None, None, 10_000)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect(),
    );
    let page = sorted(
        coll.scan_page(&ScanOptions::new(10_000).order_by("n", false))
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect(),
    );
    let mut exported = Vec::new();
    coll.for_each_record(None, |r| {
        exported.push(r.id);
        Ok(())
    })
    .unwrap();
    let search = |o: SearchOptions| -> Vec<String> {
        sorted(
            coll.search(probe, &o)
                .unwrap()
                .hits
                .into_iter()
                .map(|h| h.id)
                .collect(),
        )
    };
    let hnsw = search(SearchOptions::new(n));
    let exact = search(SearchOptions::new(n).exact(true));
    let filtered = search(SearchOptions::new(n).filter("n >= 0".parse::<Filter>().unwrap()));
    let keyword = sorted(
        coll.search_keyword("memo", &SearchOptions::new(n))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect(),
    );
    let count = coll.count().unwrap() as usize;
    let count_where = coll.count_where(&"n >= 0".parse().unwrap()).unwrap() as usize;
    assert_eq!(count, scan.len(), "count agrees with scan");
    assert_eq!(count_where, scan.len(), "count_where agrees with scan");
    vec![scan, page, sorted(exported), hnsw, exact, filtered, keyword]
}

#[test]
fn expired_records_vanish_from_every_read_at_the_instant_then_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(at(0)));
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    let coll = store
        .create_collection("m", &CollectionConfig::new(DIM))
        .unwrap();
    let mut rng = Rng::new(3);
    let mut records: Vec<Record> = (0..60)
        .map(|i| {
            Record::new(format!("r{i:02}"), rng.vector(DIM))
                .with_text(format!("memo number {i}"))
                .with_metadata(json!({"n": i}))
        })
        .collect();
    // r00..r09 expire at +10 s, r10..r19 at +20 s (the marker text lets
    // the test look for them in the file), the rest never.
    for (i, r) in records.iter_mut().enumerate().take(20) {
        r.expires_at = Some(if i < 10 { ms(10) } else { ms(20) });
        r.text = Some(format!("memo secret-{i:02}-zq"));
    }
    coll.upsert(&records).unwrap();
    let probe = records[0].vector.clone();
    let ids = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("r{i:02}")).collect()
    };

    // A reader in another handle of the store (as another process would
    // be), with the same clock.
    let reader = Store::open_read_only_with(dir.path(), options(&clock)).unwrap();
    let rcoll = reader.collection("m").unwrap().unwrap();

    clock.set(at(10) - Duration::from_millis(1));
    for got in everything(&coll, &probe, 60) {
        assert_eq!(got, ids(0..60), "all there a millisecond before");
    }
    clock.set(at(10));
    for c in [&coll, &rcoll] {
        for got in everything(c, &probe, 60) {
            assert_eq!(got, ids(10..60), "gone at the instant");
        }
        assert_eq!(c.get("r00").unwrap(), None);
        assert!(c.get("r10").unwrap().is_some());
        // k counts live records: never short while k of them exist.
        let hits = c.search(&probe, &SearchOptions::new(50)).unwrap().hits;
        assert_eq!(hits.len(), 50);
    }
    // Not yet purged: the rows are still in SQLite.
    let raw = rusqlite::Connection::open(dir.path().join(quiver::DB_FILE)).unwrap();
    let rows = |raw: &rusqlite::Connection| -> i64 {
        raw.query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&raw), 60);

    // The next write purges them, with tombstones the feed reports.
    let seq = coll.info().unwrap().seq;
    coll.upsert(&[Record::new("new", rng.vector(DIM))
        .with_text("memo new")
        .with_metadata(json!({"n": 100}))])
        .unwrap();
    assert_eq!(rows(&raw), 51);
    let deleted: Vec<String> = coll
        .changes(seq)
        .unwrap()
        .filter_map(|c| match c.unwrap().1 {
            Change::Delete(id) => Some(id),
            Change::Upsert(_) => None,
        })
        .collect();
    assert_eq!(deleted, ids(0..10));
    assert!(coll.verify().unwrap().ok());

    // An update can move an expiry, or drop it.
    coll.update(Update::new("r15").expires_at(None)).unwrap();
    assert_eq!(coll.get("r15").unwrap().unwrap().expires_at, None);
    clock.set(at(20));
    let left: Vec<String> = ids(20..60);
    let mut want = left.clone();
    want.push("new".into());
    want.push("r15".into());
    want.sort();
    assert_eq!(everything(&coll, &probe, 60)[0], want);

    // compact purges and reclaims: the expired texts are gone from the file.
    coll.compact(false).unwrap();
    assert_eq!(rows(&raw), 42);
    drop(raw);
    drop(rcoll);
    drop(reader);
    drop(coll);
    store.close().unwrap();
    let bytes = std::fs::read(dir.path().join(quiver::DB_FILE)).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for i in 0..20 {
        let marker = format!("secret-{i:02}-zq");
        assert_eq!(text.contains(&marker), i == 15, "{marker}");
    }
}

#[test]
fn expiry_round_trips_and_bad_reads_write_nothing() {
    let clock = Arc::new(ManualClock::new(at(0)));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(&clock)).unwrap();
    let coll = store
        .create_collection("m", &CollectionConfig::new(DIM))
        .unwrap();
    let r = Record::new("a", vec![1.0; DIM]).with_expiry(at(30));
    assert_eq!(r.expires_at, Some(ms(30)));
    coll.upsert(std::slice::from_ref(&r)).unwrap();
    assert_eq!(coll.get("a").unwrap().unwrap(), r);
    // Reads at any time write nothing, not even a purge.
    clock.set(at(31));
    let seq = coll.info().unwrap().seq;
    assert_eq!(coll.count().unwrap(), 0);
    assert!(coll
        .search(&[1.0; DIM], &SearchOptions::new(1))
        .unwrap()
        .hits
        .is_empty());
    assert_eq!(coll.info().unwrap().seq, seq);
}
