//! `quiver export` and `quiver backup` through the real binary: an export
//! imported into a new store gives the same collection bit for bit, and a
//! backup taken while another process imports opens, verifies clean and
//! holds whole batches.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ok, quiver, store_bytes, Rng};
use quiver::{Record, Store};
use serde_json::json;

type Contents = BTreeMap<String, (Vec<u32>, Option<String>, Option<serde_json::Value>)>;

/// Every record, vectors as bits.
fn contents(store: &Path, name: &str) -> Contents {
    let s = Store::open_read_only(store).unwrap();
    let c = s.get_collection(name).unwrap();
    let mut out = BTreeMap::new();
    c.for_each_record(None, |r: Record| {
        let bits = r.vector.iter().map(|x| x.to_bits()).collect();
        out.insert(r.id, (bits, r.text, r.metadata));
        Ok(())
    })
    .unwrap();
    out
}

/// Vectors that are hard to print: subnormals, -0.0, extremes, and plain
/// random ones; texts and metadata with quotes, newlines and other scripts.
fn awkward_store(store: &Path) {
    ok(
        store,
        &[
            "create",
            "c",
            "--dim",
            "6",
            "--metric",
            "l2",
            "--connectivity",
            "12",
        ],
    );
    let mut rng = Rng(3);
    let mut lines = String::new();
    for i in 0..400 {
        let mut v: Vec<f32> = rng.vector(6);
        match i % 7 {
            0 => v[0] = f32::from_bits(1 + rng.below(1000) as u32), // subnormal
            1 => v[1] = -0.0,
            2 => v[2] = f32::MAX / (1.0 + rng.f32().abs()),
            3 => v[3] = f32::MIN_POSITIVE,
            4 => v[4] = 1e-30 * rng.f32(),
            _ => {}
        }
        let mut r = json!({"id": format!("id-{i:03} \"q\" ü"), "vector": v});
        if i % 3 != 0 {
            r["text"] = json!(format!("line one\nline \"two\" {i} — 日本"));
        }
        if i % 4 != 0 {
            r["metadata"] = json!({"n": i, "tags": ["a", format!("t{}", i % 5)], "f": i as f64 / 3.0, "nested": {"x": null}});
        }
        lines.push_str(&format!("{r}\n"));
    }
    let file = store.with_extension("in.jsonl");
    std::fs::write(&file, lines).unwrap();
    ok(
        store,
        &["import", "c", file.to_str().unwrap(), "--batch", "64"],
    );
    ok(store, &["index-field", "c", "tags"]);
    ok(store, &["index-field", "c", "\"n\""]);
}

#[test]
fn export_then_import_gives_the_same_collection() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    awkward_store(&src);
    let want = contents(&src, "c");

    // Through a pipe into a store that does not exist yet.
    let exported = ok(&src, &["export", "c"]);
    let first: serde_json::Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(first["quiver_settings"]["config"]["metric"], "l2");
    let dst = dir.path().join("dst");
    let mut child = Command::new(common::bin())
        .arg("--store")
        .arg(&dst)
        .args(["import", "c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exported.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contents(&dst, "c"), want);
    let (a, b) = (
        Store::open_read_only(&src)
            .unwrap()
            .get_collection("c")
            .unwrap(),
        Store::open_read_only(&dst)
            .unwrap()
            .get_collection("c")
            .unwrap(),
    );
    assert_eq!(a.config(), b.config());
    assert_eq!(a.indexed_fields().unwrap(), b.indexed_fields().unwrap());
    drop((a, b));
    ok(&dst, &["verify", "c"]);

    // With the vectors in a raw f32 file, into a collection of another name.
    let vectors = dir.path().join("v.f32");
    let text = ok(
        &src,
        &["export", "c", "--vectors", vectors.to_str().unwrap()],
    );
    assert!(!text.contains("\"vector\""));
    let file = dir.path().join("e.jsonl");
    std::fs::write(&file, &text).unwrap();
    ok(
        &dst,
        &[
            "import",
            "d",
            file.to_str().unwrap(),
            "--vectors",
            vectors.to_str().unwrap(),
        ],
    );
    assert_eq!(contents(&dst, "d"), want);

    // A filtered export holds the matches only.
    let some = ok(
        &src,
        &[
            "export",
            "c",
            "--filter",
            "tags CONTAINS 't1'",
            "--no-settings",
        ],
    );
    let n: usize = ok(&src, &["count", "c", "--filter", "tags CONTAINS 't1'"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(some.lines().count(), n);
    assert!(n > 0);

    // An export into a collection of another shape: refused, nothing written.
    ok(&dst, &["create", "small", "--dim", "2"]);
    let before = store_bytes(&dst);
    let out = quiver(
        &dst,
        &[
            "import",
            "small",
            file.to_str().unwrap(),
            "--vectors",
            vectors.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("6-d"));
    assert!(store_bytes(&dst) == before);
    // A backup of the quiet source carries its snapshot; with the snapshot
    // no longer matching its record, the backup leaves it out and its
    // first open rebuilds the index: the same records either way.
    let b1 = dir.path().join("b1");
    let r: serde_json::Value =
        serde_json::from_str(&ok(&src, &["backup", b1.to_str().unwrap()])).unwrap();
    assert_eq!(
        (r["snapshots"].as_u64(), r["rebuilt_on_open"].as_u64()),
        (Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(contents(&b1, "c"), want);
    ok(&b1, &["verify", "c"]);
    let snap = src.join("index").join("1.usearch");
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&snap, bytes).unwrap();
    let b2 = dir.path().join("b2");
    let r: serde_json::Value =
        serde_json::from_str(&ok(&src, &["backup", b2.to_str().unwrap()])).unwrap();
    assert_eq!(
        (r["snapshots"].as_u64(), r["rebuilt_on_open"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert!(!b2.join("index").join("1.usearch").exists());
    assert_eq!(contents(&b2, "c"), want);
    let v = ok(&b2, &["verify", "c", "--json"]);
    assert!(v.contains("\"ok\":true"), "{v}");
    // A bad line in an export for a new store: no store is made.
    let broken = dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        format!("{}\n{{\"id\": 5}}\n", exported.lines().next().unwrap()),
    )
    .unwrap();
    let nowhere = dir.path().join("nowhere");
    let out = quiver(&nowhere, &["import", "c", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!nowhere.exists());
    // Nor for settings naming a field that cannot be indexed.
    let mut settings: serde_json::Value =
        serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    settings["quiver_settings"]["indexed_fields"] = json!(["id"]);
    let bad_settings = dir.path().join("bad-settings.jsonl");
    std::fs::write(&bad_settings, format!("{settings}\n")).unwrap();
    let out = quiver(&nowhere, &["import", "c", bad_settings.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!nowhere.exists());
}

#[test]
fn a_backup_taken_during_an_import_opens_and_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "c", "--dim", "8"]);
    let mut rng = Rng(9);
    let lines: String = (0..30_000)
        .map(|i| {
            format!(
                "{}\n",
                json!({"id": format!("r{i:05}"), "vector": rng.vector(8), "metadata": {"i": i}})
            )
        })
        .collect();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines).unwrap();
    let mut writer = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["import", "c", file.to_str().unwrap(), "--batch", "500"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Backups while the import runs, and one after.
    let mut backups = Vec::new();
    for i in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let dest = dir.path().join(format!("b{i}"));
        let report: serde_json::Value =
            serde_json::from_str(&ok(&store, &["backup", dest.to_str().unwrap()])).unwrap();
        backups.push((dest, report));
    }
    assert!(writer.wait().unwrap().success());
    let last = dir.path().join("after");
    ok(&store, &["backup", last.to_str().unwrap()]);
    backups.push((last, json!({})));
    let mut counts = Vec::new();
    for (dest, report) in &backups {
        let n: u64 = ok(dest, &["count", "c"]).trim().parse().unwrap();
        assert_eq!(
            n % 500,
            0,
            "{}: whole batches only ({n}), {report}",
            dest.display()
        );
        counts.push(n);
        let v = ok(dest, &["verify", "c", "--json"]);
        assert!(v.contains("\"ok\":true"), "{}: {v}", dest.display());
        // Every command works on it: a search finds a record by its vector.
        if n > 0 {
            let got = ok(dest, &["get", "c", "r00000", "--include", "vector"]);
            let r: serde_json::Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
            let hits = ok(
                dest,
                &[
                    "search",
                    "c",
                    "--vector",
                    &r["vector"].to_string(),
                    "-k",
                    "1",
                ],
            );
            assert!(hits.contains("r00000"), "{hits}");
        }
        ok(
            dest,
            &[
                "upsert",
                "c",
                "--id",
                "after",
                "--vector",
                "[1,0,0,0,0,0,0,0]",
            ],
        );
    }
    assert_eq!(*counts.last().unwrap(), 30_000);
    eprintln!(
        "backup counts: {counts:?}; reports: {:?}",
        backups.iter().map(|b| &b.1).collect::<Vec<_>>()
    );
    assert!(
        counts.iter().any(|n| *n > 0 && *n < 30_000),
        "no backup overlapped the import: {counts:?}"
    );
    assert!(counts.windows(2).all(|w| w[0] <= w[1]));
    // Not into a directory that holds something.
    let out = quiver(&store, &["backup", backups[0].0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}
