//! `--ttl` and `--expires-at` through the real binary: an expired record
//! is in no read (get, count, search, export), `compact` takes it off the
//! disk, exports carry expiries back through import, and bad times exit 2
//! with one line and the store as it was.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::io::Write;

use common::{lines, ok, quiver, refused};
use serde_json::json;

fn ids(text: &str) -> Vec<String> {
    // (An export's first line is its settings, without an id.)
    let mut v: Vec<String> = lines(text)
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn expired_records_are_in_no_read_and_compact_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", "3"]);
    let file = dir.path().join("r.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "{}", json!({"id": "past", "vector": [1, 0, 0], "text": "gone-marker-qq", "expires_at": "2001-01-01T00:00:00Z"})).unwrap();
    writeln!(
        f,
        "{}",
        json!({"id": "ms", "vector": [1, 0.1, 0], "expires_at": 4_102_444_800_000i64})
    )
    .unwrap();
    writeln!(f, "{}", json!({"id": "default", "vector": [1, 0.2, 0]})).unwrap();
    drop(f);
    // Lines without their own expiry get --ttl's.
    ok(
        &store,
        &["import", "c", file.to_str().unwrap(), "--ttl", "30d"],
    );
    ok(
        &store,
        &["upsert", "c", "--id", "kept", "--vector", "[1, 0.3, 0]"],
    );
    ok(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "soon",
            "--vector",
            "[1, 0.4, 0]",
            "--expires-at",
            "2099-06-01T12:00:00+02:00",
        ],
    );

    let all = ids(&ok(&store, &["get", "c"]));
    assert_eq!(all, ["default", "kept", "ms", "soon"]);
    assert_eq!(ok(&store, &["count", "c"]).trim(), "4");
    let found = lines(&ok(
        &store,
        &["search", "c", "--vector", "[1, 0, 0]", "-k", "10"],
    ))
    .remove(0);
    let mut hits: Vec<String> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    hits.sort();
    assert_eq!(hits, all);
    assert_eq!(
        lines(&ok(&store, &["get", "c", "past"])),
        [json!({"id": "past", "missing": true})],
        "an expired id is not found"
    );
    let got = lines(&ok(&store, &["get", "c", "soon", "ms", "kept"]));
    assert_eq!(got[0]["expires_at"], "2099-06-01T10:00:00Z");
    assert_eq!(got[1]["expires_at"], "2100-01-01T00:00:00Z");
    assert!(got[2].get("expires_at").is_none());
    // --ttl 30d from the time of the import: within a minute of it.
    let d = lines(&ok(&store, &["get", "c", "default"])).remove(0);
    let at = quiver::clock::parse_rfc3339(d["expires_at"].as_str().unwrap()).unwrap();
    let want = quiver::clock::to_ms(std::time::SystemTime::now()) + 30 * 86_400_000;
    assert!((at - want).abs() < 60_000, "{at} vs {want}");

    // Export carries expiries; its import gives the same records.
    let exported = ok(&store, &["export", "c"]);
    assert_eq!(ids(&exported).len(), 4);
    let copy = dir.path().join("copy");
    let dump = dir.path().join("dump.jsonl");
    std::fs::write(&dump, &exported).unwrap();
    ok(&copy, &["import", "c", dump.to_str().unwrap()]);
    assert_eq!(ok(&copy, &["get", "c"]), ok(&store, &["get", "c"]));

    // update: a new expiry in the past hides the record; --no-expiry keeps one.
    ok(&store, &["update", "c", "--id", "soon", "--no-expiry"]);
    assert!(lines(&ok(&store, &["get", "c", "soon"]))[0]
        .get("expires_at")
        .is_none());
    ok(
        &store,
        &[
            "update",
            "c",
            "--id",
            "kept",
            "--expires-at",
            "2002-01-01T00:00:00Z",
        ],
    );
    assert_eq!(ok(&store, &["count", "c"]).trim(), "3");

    // compact purges what expired: no row, and no trace in the file.
    ok(&store, &["compact", "c"]);
    let raw = rusqlite::Connection::open(store.join("quiver.db")).unwrap();
    let rows: i64 = raw
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);
    drop(raw);
    let bytes = std::fs::read(store.join("quiver.db")).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("gone-marker-qq"));
    assert!(quiver(&store, &["verify", "c"]).status.success());

    refused(
        &store,
        &[
            "upsert", "c", "--id", "x", "--vector", "[1,0,0]", "--ttl", "10y",
        ],
        "--ttl",
    );
    refused(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "x",
            "--vector",
            "[1,0,0]",
            "--expires-at",
            "tomorrow",
        ],
        "RFC 3339",
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"x\", \"vector\": [1,0,0], \"expires_at\": \"soon\"}\n",
    )
    .unwrap();
    refused(
        &store,
        &["import", "c", bad.to_str().unwrap()],
        "expires_at",
    );
}
