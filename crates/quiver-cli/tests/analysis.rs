//! `quiver cluster`, `join` and `dedup` through the real binary: JSON
//! Lines out, `--into` writes one transaction, bad input exits 2 with one
//! line and leaves the store as it was.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::io::Write;

use common::{lines, ok, refused, Rng};
use serde_json::json;

/// Collections `a` (records 0..300) and `b` (200..500) of one set of
/// 16-d points around four centres, plus a near-copy of p0010 in `a`.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let mut rng = Rng(3);
    let centres: Vec<Vec<f32>> = (0..4).map(|_| rng.vector(16)).collect();
    let points: Vec<Vec<f32>> = (0..500)
        .map(|i| centres[i % 4].iter().map(|c| c + 0.2 * rng.f32()).collect())
        .collect();
    for (name, range) in [("a", 0..300), ("b", 200..500)] {
        ok(&store, &["create", name, "--dim", "16"]);
        let file = dir.path().join(format!("{name}.jsonl"));
        let mut f = std::fs::File::create(&file).unwrap();
        for i in range {
            let line = json!({"id": format!("p{i:04}"), "vector": points[i], "metadata": {"group": i % 4}});
            writeln!(f, "{line}").unwrap();
        }
        if name == "a" {
            let mut v = points[10].clone();
            v[0] += 1e-4;
            writeln!(f, "{}", json!({"id": "copy-of-p0010", "vector": v})).unwrap();
        }
        drop(f);
        ok(&store, &["import", name, file.to_str().unwrap()]);
    }
    (dir, store)
}

#[test]
fn cluster_prints_clusters_and_into_writes_each_records_number() {
    let (_dir, store) = setup();
    let out = lines(&ok(&store, &["cluster", "b", "-k", "4", "--seed", "1"]));
    assert_eq!(out.len(), 5, "four clusters and a summary");
    let summary = &out[4];
    assert_eq!(summary["records"], 300);
    assert_eq!(summary["spherical"], true);
    assert!(summary["inertia"].as_f64().unwrap() > 0.0);
    assert_eq!(
        out[..4]
            .iter()
            .map(|c| c["size"].as_u64().unwrap())
            .sum::<u64>(),
        300
    );
    assert!(out[..4].iter().all(|c| c.get("centroid").is_none()));
    let with = lines(&ok(
        &store,
        &["cluster", "b", "-k", "4", "--seed", "1", "--centroids"],
    ));
    assert_eq!(with[0]["centroid"].as_array().unwrap().len(), 16);

    let out = lines(&ok(
        &store,
        &["cluster", "b", "-k", "4", "--seed", "1", "--into", "topic"],
    ));
    assert_eq!(out[4]["written"], 300);
    // The four true groups are the four clusters, and every record says which.
    let got = lines(&ok(
        &store,
        &["get", "b", "--filter", "group = 0", "--limit", "1000"],
    ));
    assert_eq!(got.len(), 75);
    let topic = &got[0]["metadata"]["topic"];
    assert!(topic.is_u64());
    assert!(got.iter().all(|r| &r["metadata"]["topic"] == topic));
    assert_eq!(got[0]["metadata"]["group"], 0, "other metadata is kept");

    refused(&store, &["cluster", "b", "-k", "0"], "at least 1");
    refused(&store, &["cluster", "b", "-k", "301"], "only 300 records");
    refused(
        &store,
        &["cluster", "b", "-k", "2", "--into", "a.b"],
        "--into",
    );
    refused(
        &store,
        &["cluster", "b", "-k", "2", "--filter", "group >"],
        "filter",
    );
    refused(&store, &["cluster", "nope", "-k", "2"], "nope");
}

#[test]
fn join_streams_pairs_and_dedup_finds_the_copy() {
    let (_dir, store) = setup();
    let out = lines(&ok(&store, &["join", "a", "b"]));
    assert_eq!(out.len(), 301);
    for p in &out {
        let left = p["left"].as_str().unwrap();
        if ("p0200".."p0300").contains(&left) {
            assert_eq!(p["right"], p["left"]);
            assert_eq!(p["distance"], 0.0);
        }
    }
    let within = lines(&ok(
        &store,
        &["join", "a", "b", "--max-distance", "0", "--exact"],
    ));
    assert_eq!(within.len(), 100);
    let one = lines(&ok(&store, &["join", "a", "b", "--one-to-one"]));
    let rights: std::collections::HashSet<&str> =
        one.iter().map(|p| p["right"].as_str().unwrap()).collect();
    assert_eq!(rights.len(), one.len(), "each right record at most once");
    assert_eq!(one.len(), 300, "b has 300 records for a's 301");

    let groups = lines(&ok(&store, &["dedup", "a", "--max-distance", "0.001"]));
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["ids"], json!(["copy-of-p0010", "p0010"]));

    refused(&store, &["join", "a", "nope"], "nope");
    refused(
        &store,
        &["join", "a", "b", "--max-distance", "-1"],
        "maximum distance",
    );
    refused(&store, &["join", "a", "b", "-k", "0"], "k must be");
    refused(
        &store,
        &["dedup", "a", "--max-distance", "NaN"],
        "maximum distance",
    );
}
