//! Fuzz the JSONL import line parser and record validation.
//!
//! For any bytes, `quiver::jsonl::parse_line` must not panic; a parsed line
//! turned into a record must validate or fail with a one-line typed error.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver::{jsonl, CollectionConfig, Record, Store};

fn collection() -> &'static quiver::Collection {
    static C: OnceLock<quiver::Collection> = OnceLock::new();
    C.get_or_init(|| {
        let store = Store::open_in_memory().expect("in-memory store");
        store.create_collection("f", &CollectionConfig::new(4)).expect("collection")
    })
}

fuzz_target!(|data: &[u8]| {
    match jsonl::parse_line(data) {
        Ok(None) => {}
        Ok(Some(line)) => {
            let record = Record {
                id: line.id,
                vector: line.vector.unwrap_or_default(),
                text: line.text,
                metadata: line.metadata,
            };
            if let Err(e) = collection().validate(&record) {
                assert!(e.is_bad_input(), "{e:?}");
                assert!(!e.to_string().contains(['\n', '\r']), "{e}");
            }
        }
        Err(msg) => assert!(!msg.contains(['\n', '\r']), "{msg:?}"),
    }
});
