//! `quiver update` and `quiver apply` through the real binary: only what
//! is named changes, bad input writes nothing (exit 2, one line, the store
//! byte for byte as it was), and an `apply` is seen by a reader process
//! entirely or not at all.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{lines, ok, refused};
use serde_json::{json, Value};

fn get(store: &std::path::Path, id: &str) -> Value {
    lines(&ok(store, &["get", "c", id, "--include", "vector"])).remove(0)
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", "3"]);
    let file = dir.path().join("r.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..20 {
        writeln!(
            f,
            "{}",
            json!({"id": format!("r{i:02}"), "vector": [1.0, i as f32, 0.5], "text": format!("note {i}"),
                   "metadata": {"ns": if i % 2 == 0 { "agent" } else { "user" }, "n": i, "deep": {"a": 1, "b": 2}}})
        )
        .unwrap();
    }
    drop(f);
    ok(&store, &["import", "c", file.to_str().unwrap()]);
    (dir, store)
}

#[test]
fn update_changes_only_what_it_names() {
    let (_dir, store) = setup();
    let before = get(&store, "r03");
    let out = lines(&ok(
        &store,
        &[
            "update",
            "c",
            "--id",
            "r03",
            "--merge",
            r#"{"n": 33, "deep": {"b": null}, "new": true}"#,
        ],
    ));
    assert_eq!(out[0]["updated"], 1);
    let after = get(&store, "r03");
    assert_eq!(
        after["metadata"],
        json!({"ns": "user", "n": 33, "deep": {"a": 1}, "new": true})
    );
    assert_eq!(after["vector"], before["vector"]);
    assert_eq!(after["text"], before["text"]);
    // --metadata JSON --merge is the same spelling.
    ok(
        &store,
        &[
            "update",
            "c",
            "--id",
            "r03",
            "--metadata",
            r#"{"n": 3}"#,
            "--merge",
        ],
    );
    assert_eq!(get(&store, "r03")["metadata"]["n"], 3);
    // --metadata alone replaces; --text and --vector change those only.
    ok(
        &store,
        &[
            "update",
            "c",
            "--id",
            "r04",
            "--metadata",
            r#"{"only": 1}"#,
            "--text",
            "rewritten",
            "--vector",
            "[0, 0, 1]",
        ],
    );
    let r4 = get(&store, "r04");
    assert_eq!(r4["metadata"], json!({"only": 1}));
    assert_eq!(r4["text"], "rewritten");
    assert_eq!(r4["vector"], json!([0.0, 0.0, 1.0]));
    let hits = lines(&ok(
        &store,
        &["search", "c", "--mode", "keyword", "--text", "rewritten"],
    ));
    assert_eq!(hits[0]["hits"][0]["id"], "r04");
    // Many at once by filter: only the matches, only the patch's keys.
    let out = lines(&ok(
        &store,
        &[
            "update",
            "c",
            "--filter",
            "ns = 'agent'",
            "--merge",
            r#"{"seen": true}"#,
        ],
    ));
    assert_eq!(
        out[0]["updated"], 9,
        "ten agents, but r04's metadata was replaced"
    );
    assert_eq!(
        ok(&store, &["count", "c", "--filter", "seen = true"]).trim(),
        "9"
    );
    assert_eq!(
        ok(
            &store,
            &["count", "c", "--filter", "seen = true OR only = 1"]
        )
        .trim(),
        "10"
    );
    assert_eq!(
        get(&store, "r06")["metadata"],
        json!({"ns": "agent", "n": 6, "deep": {"a": 1, "b": 2}, "seen": true})
    );
    assert_eq!(get(&store, "r07")["metadata"]["seen"], Value::Null);

    refused(
        &store,
        &["update", "c", "--id", "nope", "--merge", "{}"],
        "no record \"nope\"",
    );
    refused(
        &store,
        &["update", "c", "--id", "r01", "--merge", "[1]"],
        "JSON object",
    );
    refused(
        &store,
        &["update", "c", "--id", "r01", "--vector", "[1, 2]"],
        "dimension",
    );
    refused(&store, &["update", "c", "--id", "r01"], "nothing to change");
    refused(
        &store,
        &[
            "update",
            "c",
            "--filter",
            "ns = 'agent'",
            "--metadata",
            "{}",
        ],
        "--merge",
    );
    refused(
        &store,
        &["update", "c", "--filter", "ns = ", "--merge", "{}"],
        "invalid filter",
    );
    ok(&store, &["verify", "c"]);
}

#[test]
fn apply_is_all_or_nothing() {
    let (dir, store) = setup();
    let ops = dir.path().join("ops.jsonl");
    std::fs::write(
        &ops,
        [
            json!({"op": "delete", "filter": "ns = 'agent' AND n < 10"}),
            json!({"op": "upsert", "id": "new1", "vector": [0.5, 0.5, 0.5], "metadata": {"ns": "agent"}}),
            json!({"op": "delete", "ids": ["r01", "missing"]}),
            json!({"op": "update", "id": "r03", "metadata": {"tag": "x"}, "merge": true}),
            json!({"op": "update", "filter": "ns = 'user'", "metadata": {"u": 1}, "merge": true}),
        ]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>(),
    )
    .unwrap();
    let out = lines(&ok(&store, &["apply", "c", ops.to_str().unwrap()]));
    assert_eq!(out[0]["deleted"], 6, "{out:?}");
    assert_eq!(out[0]["upserted"], 1);
    assert_eq!(out[0]["updated"], 1 + 9);
    assert_eq!(out[0]["operations"], 5);
    assert_eq!(ok(&store, &["count", "c"]).trim(), "15");
    assert_eq!(get(&store, "r03")["metadata"]["tag"], "x");
    assert_eq!(get(&store, "r03")["metadata"]["u"], 1);
    // From stdin too.
    let mut child = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["apply", "c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"op\": \"delete\", \"ids\": [\"new1\"]}\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(ok(&store, &["count", "c"]).trim(), "14");

    // Any bad line, or an update of an unknown id after good operations:
    // nothing written.
    let bad = |name: &str, lines: &[Value], needle: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            lines.iter().map(|v| format!("{v}\n")).collect::<String>(),
        )
        .unwrap();
        refused(&store, &["apply", "c", path.to_str().unwrap()], needle);
    };
    let good = json!({"op": "delete", "filter": "n >= 0"});
    bad(
        "a.jsonl",
        &[
            good.clone(),
            json!({"op": "upsert", "id": "x", "vector": [1, 2]}),
        ],
        "a.jsonl:2",
    );
    bad(
        "b.jsonl",
        &[good.clone(), json!({"op": "frobnicate"})],
        "unknown op",
    );
    bad(
        "c.jsonl",
        &[
            good.clone(),
            json!({"op": "update", "id": "nope", "metadata": {}, "merge": true}),
        ],
        "no record",
    );
    bad(
        "d.jsonl",
        &[good.clone(), json!({"op": "delete", "filter": "n >"})],
        "invalid filter",
    );
    bad(
        "e.jsonl",
        &[
            good.clone(),
            json!({"op": "delete", "ids": ["a"], "extra": 1}),
        ],
        "unknown field",
    );
    bad(
        "f.jsonl",
        &[
            good,
            json!({"op": "update", "filter": "n > 1", "metadata": {}}),
        ],
        "merge",
    );
    ok(&store, &["verify", "c"]);
}

/// A reader process at a time, over and over, while `apply` swaps a file's
/// chunks (delete by filter, then the next generation's upserts): every
/// read sees one generation, whole.
#[test]
fn a_reader_process_sees_an_apply_entirely_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", "3"]);
    let generation = |g: usize| -> String {
        let mut ops = format!("{}\n", json!({"op": "delete", "filter": "file = 'a.rs'"}));
        for i in 0..3 + g % 2 {
            ops.push_str(&format!(
                "{}\n",
                json!({"op": "upsert", "id": format!("a.rs#{g}-{i}"), "vector": [1.0, 1.0 + 0.01 * i as f32, 1.0],
                       "metadata": {"file": "a.rs", "generation": g}})
            ));
        }
        ops
    };
    let path = |g: usize| dir.path().join(format!("g{g}.jsonl"));
    for g in 0..=12 {
        std::fs::write(path(g), generation(g)).unwrap();
    }
    ok(&store, &["apply", "c", path(0).to_str().unwrap()]);
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let got = lines(&ok(&store, &["get", "c", "--filter", "file = 'a.rs'"]));
                let gens: Vec<i64> = got
                    .iter()
                    .map(|r| r["metadata"]["generation"].as_i64().unwrap())
                    .collect();
                assert!(!gens.is_empty(), "a moment without the file");
                assert!(gens.iter().all(|g| *g == gens[0]), "mixed {gens:?}");
                assert_eq!(
                    gens.len() as i64,
                    3 + gens[0] % 2,
                    "part of generation {}",
                    gens[0]
                );
                let hits = lines(&ok(
                    &store,
                    &["search", "c", "--vector", "[1, 1, 1]", "-k", "8"],
                ));
                let n = hits[0]["hits"].as_array().unwrap().len() as i64;
                assert!(n == 3 || n == 4, "search saw {n} chunks");
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        for g in 1..=12 {
            ok(&store, &["apply", "c", path(g).to_str().unwrap()]);
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert!(
        reads.load(Ordering::Relaxed) >= 2,
        "the reader ran alongside"
    );
    assert_eq!(ok(&store, &["count", "c"]).trim(), "3");
}
