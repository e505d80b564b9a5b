//! Fuzz the filter-expression parser and the SQL it compiles to.
//!
//! For any UTF-8 input, `parse::<Filter>()` must not panic. On success, the
//! printed filter must parse back to an equal filter, and `validate()` must
//! not panic; a filter that validates must run against a real store (an
//! in-memory one whose records hold arrays, nested objects, nulls and keys
//! that need quoting, with two fields indexed) and fail, if at all, only as
//! bad input: never an SQLite error from the SQL it compiled to. On
//! failure, the error message must be a single line.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver::{Collection, CollectionConfig, Filter, Record, Store};

fn collection() -> &'static Collection {
    static COLL: OnceLock<(Store, Collection)> = OnceLock::new();
    &COLL
        .get_or_init(|| {
            let store = Store::open_in_memory().unwrap();
            let coll = store
                .create_collection("f", &CollectionConfig::new(2))
                .unwrap();
            let metas = [
                r#"{"tags": ["db", "billing", 3, null, ["x"], {"a": 1}], "path": "src/a.rs"}"#,
                r#"{"tags": "db", "n": 2.5, "file-path": "x", "a.b": 1, "a": {"b": 2}}"#,
                r#"{"tags": [], "n": [1, 2], "id": "meta-id", "and": true}"#,
                r#"{"tags": {"db": 1}, "n": null, "path": "docs/%_*?[.md"}"#,
                r#"{}"#,
            ];
            let records: Vec<Record> = metas
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    Record::new(format!("r{i}"), vec![1.0, i as f32])
                        .with_metadata(serde_json::from_str(m).unwrap())
                })
                .collect();
            coll.upsert(&records).unwrap();
            coll.index_field("tags").unwrap();
            coll.index_field("n").unwrap();
            (store, coll)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Filter>() {
        Ok(filter) => {
            let printed = filter.to_string();
            match printed.parse::<Filter>() {
                Ok(back) => assert_eq!(
                    back, filter,
                    "round trip changed the filter\n input: {text:?}\n printed: {printed:?}"
                ),
                Err(e) => panic!(
                    "printed filter does not parse: {e}\n input: {text:?}\n printed: {printed:?}"
                ),
            }
            if filter.validate().is_ok() {
                if let Err(e) = collection().count_where(&filter) {
                    assert!(
                        e.is_bad_input(),
                        "a valid filter failed to run: {e}\n input: {text:?}"
                    );
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                !msg.contains(['\n', '\r']),
                "error message spans several lines\n input: {text:?}\n message: {msg:?}"
            );
        }
    }
});
