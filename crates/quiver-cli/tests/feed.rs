//! `quiver changes` and `quiver consumers` through the real binary: the
//! feed piped into `apply` reproduces a collection bit for bit, from 0 and
//! incrementally through a registered consumer; `--follow` streams what
//! other processes commit; a feed that fell behind pruning, and other bad
//! input, is exit 2 with one line and leaves the store as it was.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, message_line, ok, quiver, store_bytes, Rng};
use quiver::{Record, Store};
use serde_json::{json, Value};

type Contents = BTreeMap<String, (Vec<u32>, Option<String>, Option<Value>)>;

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

/// `quiver ARGS` with `input` on stdin, to completion.
fn with_stdin(store: &Path, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `quiver ARGS` with `input` on stdin, which must succeed; its stdout.
fn piped(store: &Path, args: &[&str], input: &str) -> String {
    let out = with_stdin(store, args, input);
    assert!(
        out.status.success(),
        "quiver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Records with awkward floats, texts and metadata.
fn import_lines(rng: &mut Rng, from: usize, n: usize) -> String {
    let mut lines = String::new();
    for i in from..from + n {
        let mut v = rng.vector(6);
        match i % 5 {
            0 => v[0] = f32::from_bits(1 + rng.below(1000) as u32), // subnormal
            1 => v[1] = -0.0,
            2 => v[2] = 1e-30 * rng.f32(),
            _ => {}
        }
        let mut line = json!({"id": format!("r{i}"), "vector": v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()});
        if i % 2 == 0 {
            line["text"] = format!("line \"{i}\"\nπ {}", rng.below(100)).into();
        }
        if i % 3 != 0 {
            line["metadata"] = json!({"g": i % 4, "tags": ["a", format!("t{}", i % 7)]});
        }
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    lines
}

#[test]
fn the_feed_piped_into_apply_reproduces_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    for name in ["a", "b", "c"] {
        ok(store, &["create", name, "--dim", "6", "--metric", "l2"]);
    }
    let mut rng = Rng(11);
    piped(
        store,
        &["import", "a", "-"],
        &import_lines(&mut rng, 0, 300),
    );
    ok(store, &["delete", "a", "--filter", "g = 1"]);
    ok(store, &["delete", "a", "r0", "r2", "r4"]);
    ok(
        store,
        &["update", "a", "--id", "r6", "--merge", "{\"g\": 9}"],
    );
    ok(store, &["consumers", "a", "--register", "copy-b"]);
    // From 0: every record, as it is now.
    let feed = ok(store, &["changes", "a", "--consumer", "copy-b"]);
    let last = feed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap();
    piped(store, &["apply", "b", "-"], &feed);
    assert_eq!(contents(store, "b"), contents(store, "a"));
    ok(
        store,
        &[
            "consumers",
            "a",
            "--ack",
            "copy-b",
            "--seq",
            &last.to_string(),
        ],
    );

    // More writes, and snapshots that prune what copy-b acknowledged.
    piped(
        store,
        &["import", "a", "-"],
        &import_lines(&mut rng, 250, 100),
    );
    ok(store, &["delete", "a", "--filter", "g = 2"]);
    ok(store, &["flush", "a"]);
    ok(store, &["delete", "a", "r7", "r301"]);
    ok(store, &["update", "a", "--id", "r9", "--text", "changed"]);
    ok(store, &["flush", "a"]);
    let tail = ok(store, &["changes", "a", "--consumer", "copy-b"]);
    let ops: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        ops.iter().any(|o| o["op"] == "delete"),
        "deletes kept for copy-b"
    );
    assert!(ops.iter().all(|o| o["seq"].as_u64().unwrap() > last));
    piped(store, &["apply", "b", "-"], &tail);
    assert_eq!(contents(store, "b"), contents(store, "a"));

    // A feed from 0 into an empty collection is the same again.
    let all = ok(store, &["changes", "a"]);
    piped(store, &["apply", "c", "-"], &all);
    assert_eq!(contents(store, "c"), contents(store, "a"));

    // Listed with how far behind it is.
    let listed = ok(store, &["--json", "consumers", "a"]);
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["consumer"], "copy-b");
    assert_eq!(row["seq"], last);
    assert!(row["behind"].as_u64().unwrap() > 0);
}

#[test]
fn a_fallen_behind_feed_and_bad_input_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    ok(store, &["create", "a", "--dim", "6"]);
    let mut rng = Rng(5);
    piped(store, &["import", "a", "-"], &import_lines(&mut rng, 0, 20));
    ok(store, &["delete", "a", "r1"]);
    ok(store, &["flush", "a"]); // prunes the tombstone: nobody registered
    let before = store_bytes(store);
    let cases: &[(&[&str], &str)] = &[
        (&["changes", "a", "--since", "1"], "not all kept"),
        (&["changes", "nope"], "no collection"),
        (&["changes", "a", "--consumer", "ghost"], "no consumer"),
        (&["changes", "a", "--since", "x"], "invalid value"),
        (
            &["consumers", "a", "--ack", "ghost", "--seq", "1"],
            "no consumer",
        ),
        (&["consumers", "a", "--ack", "ghost"], "--seq"),
        (
            &["consumers", "a", "--register", "late", "--seq", "1"],
            "not all kept",
        ),
        (
            &["consumers", "a", "--register", "x", "--seq", "999"],
            "committed up to",
        ),
        (&["consumers", "a", "--seq", "3"], "--seq goes with"),
        (
            &["consumers", "a", "--register", "x", "--remove", "y"],
            "cannot be used",
        ),
    ];
    for (args, says) in cases {
        let out = quiver(store, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let line = message_line(&stderr);
        assert!(line.contains(says), "{args:?} said {line:?}, not {says:?}");
        assert_eq!(store_bytes(store), before, "{args:?} changed the store");
    }
    // `apply` refuses a bad seq, and a delete with both id and ids.
    let dir2 = tempfile::tempdir().unwrap();
    ok(dir2.path(), &["create", "b", "--dim", "6"]);
    for bad in [
        r#"{"seq": -1, "op": "delete", "id": "x"}"#,
        r#"{"seq": 1, "op": "delete", "id": "x", "ids": ["y"]}"#,
        r#"{"op": "delete", "id": 3}"#,
    ] {
        let out = with_stdin(dir2.path(), &["apply", "b", "-"], bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn follow_streams_what_other_processes_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    ok(store, &["create", "a", "--dim", "6"]);
    let mut rng = Rng(9);
    piped(store, &["import", "a", "-"], &import_lines(&mut rng, 0, 10));
    let mut follower = Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(["changes", "a", "--follow", "--poll-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let mut wait_for = |pred: &dyn Fn(&Value) -> bool, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if seen.iter().any(pred) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) => seen.push(v),
                Err(_) => panic!("--follow never printed {what}; saw {seen:?}"),
            }
        }
    };
    wait_for(&|v| v["id"] == "r9", "the first records");
    // Writes by other processes, while it follows.
    ok(
        store,
        &["upsert", "a", "--id", "late", "--vector", "[1,2,3,4,5,6]"],
    );
    wait_for(&|v| v["id"] == "late" && v["op"] == "upsert", "an upsert");
    ok(store, &["delete", "a", "r3"]);
    wait_for(&|v| v["id"] == "r3" && v["op"] == "delete", "a delete");
    follower.kill().unwrap();
    follower.wait().unwrap();
    let seqs: Vec<u64> = seen.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "in order: {seqs:?}");
}
