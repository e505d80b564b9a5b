//! The crash matrix: the real `quiver` binary, built with the `failpoints`
//! feature, stopped (`_exit`, as SIGKILL would) at every step of every
//! write path. After each stop: `verify` passes, and the store holds exactly
//! what had been committed.
//!
//!     cargo test -p quiver-cli --features failpoints --test failpoints
#![cfg(feature = "failpoints")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{json_vector, ok, quiver, Rng};
use quiver::Store;

const DIM: usize = 8;

/// A store with 200 snapshotted records, a tail of 30 changes, and a field index.
fn setup(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let store = dir.join("s");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let mut rng = Rng(1);
    let mut model = BTreeMap::new();
    let mut lines = String::new();
    for i in 0..200 {
        let v = rng.vector(DIM);
        lines.push_str(&format!(
            "{{\"id\": \"r{i}\", \"vector\": {}, \"text\": \"word{i}\"}}\n",
            json_vector(&v)
        ));
        model.insert(format!("r{i}"), v);
    }
    let file = dir.join("in.jsonl");
    std::fs::write(&file, lines).unwrap();
    ok(
        &store,
        &["import", "c", file.to_str().unwrap(), "--batch", "50"],
    );
    for i in 0..30 {
        let v = rng.vector(DIM);
        ok(
            &store,
            &[
                "upsert",
                "c",
                "--id",
                &format!("t{i}"),
                "--vector",
                &json_vector(&v),
            ],
        );
        model.insert(format!("t{i}"), v);
    }
    model
}

fn contents(store: &Path) -> BTreeMap<String, Vec<f32>> {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection("c").unwrap();
    let all = c.scan(None, None, 100_000).unwrap();
    assert_eq!(c.count().unwrap(), all.len() as u64);
    all.into_iter().map(|r| (r.id, r.vector)).collect()
}

/// Run `quiver ARGS` with a failpoint armed; it must stop there.
fn crash(store: &Path, failpoint: &str, args: &[&str]) {
    let out = Command::new(common::bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .env("QUIVER_FAILPOINT", failpoint)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(quiver::failpoint::EXIT_CODE),
        "{failpoint}: {args:?} did not stop at the failpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(store: &Path, why: &str) {
    let out = quiver(store, &["verify", "c", "--json"]);
    assert!(
        out.status.success(),
        "{why}: verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// After a crash: verified, contents as expected, and a writer can open and
/// write again (the lock died with the process).
fn check(store: &Path, want: &BTreeMap<String, Vec<f32>>, why: &str) {
    verify(store, why);
    assert_eq!(&contents(store), want, "{why}");
    ok(
        store,
        &[
            "upsert",
            "c",
            "--id",
            "after",
            "--vector",
            &json_vector(&[1.0; DIM]),
        ],
    );
    ok(store, &["delete", "c", "after"]);
    verify(store, why);
    // The text index agrees too.
    let out = ok(store, &["count", "c"]);
    assert_eq!(out.trim(), want.len().to_string(), "{why}");
}

#[test]
fn every_failpoint_leaves_exactly_the_committed_state() {
    let v = json_vector(&[0.5; DIM]);
    type Case<'a> = (&'a str, Vec<&'a str>, bool);
    // (failpoint, command, whether the command's change is committed)
    let cases: Vec<Case> = vec![
        (
            "upsert:before-commit",
            vec!["upsert", "c", "--id", "new", "--vector", &v],
            false,
        ),
        (
            "upsert:after-commit",
            vec!["upsert", "c", "--id", "new", "--vector", &v],
            true,
        ),
        (
            "delete:before-commit",
            vec!["delete", "c", "r5", "t3"],
            false,
        ),
        ("delete:after-commit", vec!["delete", "c", "r5", "t3"], true),
        (
            "delete:after-commit",
            vec!["delete", "c", "--filter", "id >= 'r50' AND id < 'r60'"],
            true,
        ),
        ("snapshot:partial-temp", vec!["flush", "c"], false),
        ("snapshot:before-rename", vec!["flush", "c"], false),
        ("snapshot:after-rename", vec!["flush", "c"], false),
        ("repair:before-snapshot", vec!["repair", "c"], false),
        (
            "compact:before-snapshot",
            vec!["compact", "c", "--force"],
            false,
        ),
        (
            "compact:before-vacuum",
            vec!["compact", "c", "--force"],
            false,
        ),
        (
            "alter:after-update",
            vec!["alter", "c", "--connectivity", "8"],
            false,
        ),
        (
            "alter:before-snapshot",
            vec!["alter", "c", "--scalar", "f16"],
            false,
        ),
        (
            "upsert:after-commit@3",
            vec!["import", "c", "IMPORT", "--batch", "10"],
            true,
        ),
        (
            "upsert:before-commit@3",
            vec!["import", "c", "IMPORT", "--batch", "10"],
            true,
        ),
    ];
    for (failpoint, args, committed) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut want = setup(dir.path());
        let store = dir.path().join("s");
        // An import of 50 new records, used by the import cases.
        let import = dir.path().join("more.jsonl");
        let mut rng = Rng(99);
        let more: Vec<(String, Vec<f32>)> = (0..50)
            .map(|i| (format!("m{i:02}"), rng.vector(DIM)))
            .collect();
        let text: String = more
            .iter()
            .map(|(id, v)| format!("{{\"id\": \"{id}\", \"vector\": {}}}\n", json_vector(v)))
            .collect();
        std::fs::write(&import, text).unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "IMPORT" {
                    import.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();

        crash(&store, failpoint, &args);
        let why = format!("{failpoint} during {args:?}");
        match (args[0], committed) {
            ("upsert", true) => {
                want.insert("new".into(), vec![0.5; DIM]);
            }
            ("delete", true) if args[2] == "--filter" => {
                want.retain(|id, _| !(id.as_str() >= "r50" && id.as_str() < "r60"));
            }
            ("delete", true) => {
                want.remove("r5");
                want.remove("t3");
            }
            ("import", true) => {
                // Batches 1 and 2 committed; the third committed only if the
                // stop came after its commit.
                let batches = if failpoint.starts_with("upsert:after") {
                    3
                } else {
                    2
                };
                for (id, v) in &more[..batches * 10] {
                    want.insert(id.clone(), v.clone());
                }
            }
            _ => {}
        }
        check(&store, &want, &why);
        if failpoint == "alter:after-update" {
            // The settings change was committed; the index follows them.
            let info: serde_json::Value =
                serde_json::from_str(&ok(&store, &["info", "c", "--json"])).unwrap();
            assert_eq!(info["config"]["connectivity"], 8, "{why}");
        }
    }
}

/// An import long enough to start an automatic snapshot (10,000 changes),
/// stopped while the background thread writes it and while the writer puts
/// it in place: every batch that committed is there, whole. (Had no
/// background snapshot started, the close's snapshot would stop at the same
/// failpoints after batch 21: the background path itself is checked by
/// `faults.rs`, `background_snapshots_are_installed_and_cleaned_up`.)
#[test]
fn background_snapshot_stopped_anywhere_loses_nothing() {
    let mut rng = Rng(7);
    let more: Vec<(String, Vec<f32>)> = (0..10_500)
        .map(|i| (format!("m{i:05}"), rng.vector(DIM)))
        .collect();
    let text: String = more
        .iter()
        .map(|(id, v)| format!("{{\"id\": \"{id}\", \"vector\": {}}}\n", json_vector(v)))
        .collect();
    for failpoint in [
        "snapshot:partial-temp",
        "snapshot:before-rename",
        "snapshot:after-rename",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let base = setup(dir.path());
        let store = dir.path().join("s");
        let import = dir.path().join("more.jsonl");
        std::fs::write(&import, &text).unwrap();
        crash(
            &store,
            failpoint,
            &["import", "c", import.to_str().unwrap(), "--batch", "500"],
        );
        // The snapshot starts after batch 20 commits; the stop comes before
        // or after batch 21 commits, depending on the thread.
        let got = contents(&store);
        let batches = (got.len() - base.len()) / 500;
        assert!(
            (20..=21).contains(&batches),
            "{failpoint}: {} records",
            got.len()
        );
        let mut want = base.clone();
        want.extend(more[..batches * 500].iter().cloned());
        check(&store, &want, failpoint);
    }
}

/// `reembed` stopped after its second batch commits, then run again: it
/// resumes and ends with every record embedded from its text.
#[test]
fn reembed_resumes_after_a_crash() {
    let model = std::env::var_os("QUIVER_TEST_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/models/all-MiniLM-L6-v2"
            )
            .into()
        });
    assert!(
        model.join("model.safetensors").is_file(),
        "run scripts/fetch-model"
    );
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "src", "--dim", "4"]);
    let lines: String = (0..9)
        .map(|i| format!("{{\"id\": \"d{i}\", \"vector\": [1, {i}, 0, 1], \"text\": \"document number {i}\"}}\n"))
        .collect();
    let file = dir.path().join("d.jsonl");
    std::fs::write(&file, lines).unwrap();
    ok(&store, &["import", "src", file.to_str().unwrap()]);
    crash(
        &store,
        "upsert:after-commit@2",
        &[
            "reembed", "src", "--into", "dst", "--batch", "2", "--model", m,
        ],
    );
    assert_eq!(
        ok(&store, &["count", "dst"]).trim(),
        "4",
        "two batches of two committed"
    );
    let out = ok(
        &store,
        &[
            "reembed", "src", "--into", "dst", "--batch", "2", "--model", m,
        ],
    );
    assert!(out.contains("\"resumed\":true"), "{out}");
    assert_eq!(ok(&store, &["count", "dst"]).trim(), "9");
    let embedder = quiver::embed::SentenceEmbedder::load(&model).unwrap();
    let s = Store::open_read_only(&store).unwrap();
    let dst = s.get_collection("dst").unwrap();
    for r in dst.scan(None, None, 100).unwrap() {
        let want = quiver::embed::Embedder::embed(&embedder, &[r.text.as_deref().unwrap()])
            .unwrap()
            .remove(0);
        assert_eq!(r.vector, want, "{}", r.id);
    }
    verify_named(&store, "dst");
}

fn verify_named(store: &Path, name: &str) {
    let out = quiver(store, &["verify", name, "--json"]);
    assert!(
        out.status.success(),
        "verify {name}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
