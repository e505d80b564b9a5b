//! Fuzz snapshot loading: arbitrary bytes in place of a real store's
//! snapshot must lead to a rebuild from SQLite with nothing lost, never a
//! crash and never an error.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver::{CollectionConfig, IndexSource, Record, SearchOptions, Store};

const N: usize = 50;

/// A store with N records and a snapshot, made once per process.
fn store_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let store = Store::open(&dir).expect("store");
        let coll = store.create_collection("s", &CollectionConfig::new(4)).expect("collection");
        let records: Vec<Record> =
            (0..N).map(|i| Record::new(format!("r{i}"), vec![1.0, i as f32, 0.5, -(i as f32)])).collect();
        coll.upsert(&records).expect("upsert");
        coll.flush().expect("flush");
        drop(coll);
        store.close().expect("close");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = store_dir();
    let snapshot = dir.join("index").join("1.usearch");
    std::fs::write(&snapshot, data).expect("write snapshot");
    let store = Store::open_read_only(dir).expect("open");
    let coll = store.get_collection("s").expect("collection");
    let info = coll.info().expect("info");
    // Only the exact bytes recorded could be loaded; anything else rebuilds.
    assert_eq!(info.load.source, IndexSource::Rebuilt);
    assert_eq!(coll.count().expect("count"), N as u64);
    let hits = coll.search(&[1.0, 7.0, 0.5, -7.0], &SearchOptions::new(1)).expect("search").hits;
    assert_eq!(hits[0].id, "r7");
});
