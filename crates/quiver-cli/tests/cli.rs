//! The real `quiver` binary, end to end, in temporary stores.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use common::{json_vector, ok, quiver, store_bytes, Rng};
use serde_json::Value;

const DIM: usize = 8;

/// A store with collection "c" holding 300 records imported from JSONL.
fn populated() -> (tempfile::TempDir, std::path::PathBuf, Vec<Vec<f32>>) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let mut rng = Rng(11);
    let vectors: Vec<Vec<f32>> = (0..300).map(|_| rng.vector(DIM)).collect();
    let lines: Vec<String> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                r#"{{"id": "r{i}", "vector": {}, "text": "record {i}", "metadata": {{"n": {i}}}}}"#,
                json_vector(v)
            )
        })
        .collect();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = ok(
        &store,
        &["import", "c", file.to_str().unwrap(), "--batch", "64"],
    );
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["imported"], 300);
    assert_eq!(summary["batches"], 5);
    (dir, store, vectors)
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn full_round_trip() {
    let (dir, store, vectors) = populated();
    assert_eq!(ok(&store, &["count", "c"]).trim(), "300");

    // get: found and missing ids, in order.
    let got = lines(&ok(&store, &["get", "c", "r7", "nope"]));
    assert_eq!(got[0]["id"], "r7");
    assert_eq!(got[0]["text"], "record 7");
    assert_eq!(got[0]["metadata"]["n"], 7);
    assert!(got[0].get("vector").is_none(), "vectors only when asked");
    assert_eq!(got[1]["missing"], true);
    let got = lines(&ok(
        &store,
        &["get", "c", "r7", "nope", "--include", "vector"],
    ));
    let v: Vec<f32> = serde_json::from_value(got[0]["vector"].clone()).unwrap();
    assert_eq!(v, vectors[7]);
    assert_eq!(got[1]["missing"], true);

    // search by vector: the record itself comes first.
    let out = ok(
        &store,
        &[
            "search",
            "c",
            "--vector",
            &json_vector(&vectors[42]),
            "-k",
            "5",
            "--include",
            "text,metadata",
        ],
    );
    let r = &lines(&out)[0];
    assert_eq!(r["plan"], "hnsw");
    assert_eq!(r["hits"].as_array().unwrap().len(), 5);
    assert_eq!(r["hits"][0]["id"], "r42");
    assert_eq!(r["hits"][0]["text"], "record 42");
    assert!(r["hits"][0]["distance"].as_f64().unwrap() < 1e-5);

    // search --queries: one line per query, exact and approximate agree here.
    let qfile = dir.path().join("q.f32");
    let raw: Vec<u8> = vectors[..20]
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&qfile, raw).unwrap();
    let approx = lines(&ok(
        &store,
        &[
            "search",
            "c",
            "--queries",
            qfile.to_str().unwrap(),
            "-k",
            "3",
            "--ef",
            "128",
        ],
    ));
    let exact = lines(&ok(
        &store,
        &[
            "search",
            "c",
            "--queries",
            qfile.to_str().unwrap(),
            "-k",
            "3",
            "--exact",
        ],
    ));
    assert_eq!(approx.len(), 20);
    assert_eq!(exact[0]["plan"], "exact");
    for (i, (a, e)) in approx.iter().zip(&exact).enumerate() {
        assert_eq!(e["hits"][0]["id"], format!("r{i}"));
        assert_eq!(a["hits"][0]["id"], e["hits"][0]["id"]);
    }

    // upsert replaces, delete removes.
    let nv = vec![0.5f32; DIM];
    ok(
        &store,
        &[
            "upsert",
            "c",
            "--id",
            "r1",
            "--vector",
            &json_vector(&nv),
            "--metadata",
            r#"{"k": "v"}"#,
        ],
    );
    let got = lines(&ok(&store, &["get", "c", "r1"]));
    assert_eq!(got[0]["metadata"]["k"], "v");
    assert!(
        got[0].get("text").is_none(),
        "upsert replaces the whole record"
    );
    let out = ok(&store, &["delete", "c", "r2", "r3", "nope"]);
    assert_eq!(lines(&out)[0]["deleted"], 2);
    assert_eq!(ok(&store, &["count", "c"]).trim(), "298");

    // info: a clean reopen loads the snapshot and replays the short tail.
    let info: Value = serde_json::from_str(&ok(&store, &["info", "c", "--json"])).unwrap();
    assert_eq!(info["count"], 298);
    assert_eq!(info["load"]["source"], "snapshot");
    assert_eq!(info["snapshot"]["applied_seq"], 5);
    assert_eq!(
        info["tail"], 3,
        "one upsert + two tombstones after the snapshot"
    );
    assert_eq!(info["load"]["tail_replayed"], 3);
    ok(&store, &["flush", "c"]);
    let info: Value = serde_json::from_str(&ok(&store, &["info", "c", "--json"])).unwrap();
    assert_eq!(info["tail"], 0);
    assert_eq!(info["snapshot"]["applied_seq"], info["seq"]);

    let v: Value = serde_json::from_str(&ok(&store, &["verify", "c", "--json"])).unwrap();
    assert_eq!(v["ok"], true);

    // compact: forced rebuild reclaims the retired nodes.
    let c: Value = serde_json::from_str(&ok(&store, &["compact", "c", "--force"])).unwrap();
    assert_eq!(c["rebuilt"], true);
    assert!(c["deleted_slots_before"].as_u64().unwrap() >= 3);
    let info: Value = serde_json::from_str(&ok(&store, &["info", "c", "--json"])).unwrap();
    assert_eq!(info["index"]["deleted_slots"], 0);

    // alter: new index settings, same records.
    ok(
        &store,
        &["alter", "c", "--scalar", "f16", "--connectivity", "8"],
    );
    let info: Value = serde_json::from_str(&ok(&store, &["info", "c", "--json"])).unwrap();
    assert_eq!(info["config"]["scalar"], "f16");
    assert_eq!(info["config"]["connectivity"], 8);
    assert_eq!(info["load"]["source"], "snapshot");
    assert_eq!(info["index"]["vectors"], 298);
    let v: Value = serde_json::from_str(&ok(&store, &["verify", "c", "--json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");

    let list = lines(&ok(&store, &["list", "--json"]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "c");
    ok(&store, &["drop", "c"]);
    assert!(ok(&store, &["list", "--json"]).is_empty());
    assert!(
        std::fs::read_dir(store.join("index"))
            .unwrap()
            .next()
            .is_none(),
        "snapshot removed"
    );
}

/// DESIGN §8 through the CLI: exit 2, one line naming the problem, store unchanged.
/// `--queries -`: each row from stdin is answered before the next is
/// sent (the test waits for each line with stdin still open); a row cut
/// short at the end is bad input, after the whole rows' answers.
#[test]
fn queries_from_stdin_are_answered_as_they_arrive() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let (_dir, store, vectors) = populated();
    let mut child = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["search", "c", "--queries", "-", "-k", "3", "--timings"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for i in [5usize, 250, 17] {
        let row: Vec<u8> = vectors[i].iter().flat_map(|x| x.to_le_bytes()).collect();
        stdin.write_all(&row).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["hits"][0]["id"], format!("r{i}"), "{line}");
        assert_eq!(v["hits"].as_array().unwrap().len(), 3);
        assert!(v["took_us"].as_f64().unwrap() > 0.0, "{line}");
    }
    // Half a row, then the end of stdin.
    stdin.write_all(&[0u8; DIM * 2]).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("stdin ended 16 bytes into row 4"), "{err}");

    // Only vector mode reads vectors from stdin.
    let out = quiver(
        &store,
        &[
            "search",
            "c",
            "--queries",
            "-",
            "--mode",
            "hybrid",
            "--text",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let (dir, store, _) = populated();
    let d = dir.path();
    let write = |name: &str, text: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let v8 = json_vector(&[1.0; DIM]);
    let bad_json = write(
        "bad.jsonl",
        b"{\"id\": \"a\", \"vector\": [1,2,3,4,5,6,7,8]}\n{\"id\": \"b\", \"vector\": [1,2\n",
    );
    let bad_dim = write(
        "dim.jsonl",
        b"{\"id\": \"a\", \"vector\": [1,2,3,4,5,6,7,8]}\n{\"id\": \"b\", \"vector\": [1,2,3]}\n",
    );
    let bad_utf8 = write(
        "utf8.jsonl",
        b"{\"id\": \"\xff\xfe\", \"vector\": [1,2,3,4,5,6,7,8]}\n",
    );
    let no_vec = write("novec.jsonl", b"{\"id\": \"a\"}\n");
    let meta_arr = write(
        "meta.jsonl",
        b"{\"id\": \"a\", \"vector\": [1,2,3,4,5,6,7,8], \"metadata\": [1]}\n",
    );
    let unknown = write(
        "unknown.jsonl",
        b"{\"id\": \"a\", \"vector\": [1,2,3,4,5,6,7,8], \"metdata\": {}}\n",
    );
    let num_id = write(
        "numid.jsonl",
        b"{\"id\": 5, \"vector\": [1,2,3,4,5,6,7,8]}\n",
    );
    let two = write("two.jsonl", b"{\"id\": \"a\"}\n{\"id\": \"b\"}\n");
    let short_vecs = write("short.f32", &1.0f32.to_le_bytes().repeat(DIM));
    let nan_line = write(
        "nan.jsonl",
        b"{\"id\": \"a\", \"vector\": [NaN,1,1,1,1,1,1,1]}\n",
    );
    let plus_one = write(
        "plus1.jsonl",
        b"{\"id\": \"a\", \"vector\": [1,1,1,1,1,1,1,1,1]}\n",
    );
    let mut huge_line = b"{\"id\": \"a\", \"text\": \"".to_vec();
    huge_line.resize(huge_line.len() + (65 << 20), b'x');
    huge_line.extend_from_slice(b"\"}\n");
    let oversize = write("huge.jsonl", &huge_line);
    drop(huge_line);
    let v7 = json_vector(&[1.0; DIM - 1]);
    let v9 = json_vector(&[1.0; DIM + 1]);
    let odd = write("odd.f32", &[0u8; 10]);
    let huge = format!("[1e39{}]", ",1".repeat(DIM - 1));
    let long_id = "x".repeat(513);
    let long_name = "n".repeat(65);
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("NaN in JSON", vec!["import", "c", &nan_line], "nan.jsonl:1"),
        (
            "dimension plus one in file",
            vec!["import", "c", &plus_one],
            "got a vector of 9",
        ),
        (
            "oversize line",
            vec!["import", "c", &oversize],
            "longer than 64 MiB",
        ),
        (
            "dimension minus one",
            vec!["upsert", "c", "--id", "z", "--vector", &v7],
            "got a vector of 7",
        ),
        (
            "dimension plus one",
            vec!["upsert", "c", "--id", "z", "--vector", &v9],
            "got a vector of 9",
        ),
        (
            "query dimension plus one",
            vec!["search", "c", "--vector", &v9],
            "got a vector of 9",
        ),
        (
            "malformed JSON line",
            vec!["import", "c", &bad_json],
            "bad.jsonl:2",
        ),
        (
            "wrong dimension in file",
            vec!["import", "c", &bad_dim],
            "dimension 8",
        ),
        ("invalid UTF-8", vec!["import", "c", &bad_utf8], "UTF-8"),
        (
            "line without vector",
            vec!["import", "c", &no_vec],
            "no \"vector\"",
        ),
        (
            "metadata not an object",
            vec!["import", "c", &meta_arr],
            "metadata",
        ),
        ("unknown field", vec!["import", "c", &unknown], "metdata"),
        (
            "numeric id",
            vec!["import", "c", &num_id],
            "must be a string",
        ),
        (
            "too few vectors",
            vec!["import", "c", &two, "--vectors", &short_vecs],
            "short.f32",
        ),
        (
            "batch 0",
            vec!["import", "c", &bad_json, "--batch", "0"],
            "--batch",
        ),
        (
            "missing file",
            vec!["import", "c", "/nonexistent.jsonl"],
            "cannot open",
        ),
        (
            "wrong dimension",
            vec!["upsert", "c", "--id", "z", "--vector", "[1,2]"],
            "got a vector of 2",
        ),
        (
            "vector not JSON",
            vec!["upsert", "c", "--id", "z", "--vector", "[1,"],
            "--vector",
        ),
        (
            "overflow to inf",
            vec!["upsert", "c", "--id", "z", "--vector", &huge],
            "finite",
        ),
        (
            "empty id",
            vec!["upsert", "c", "--id", "", "--vector", &v8],
            "empty",
        ),
        (
            "oversize id",
            vec!["upsert", "c", "--id", &long_id, "--vector", &v8],
            "512 bytes",
        ),
        (
            "metadata not JSON",
            vec![
                "upsert",
                "c",
                "--id",
                "z",
                "--vector",
                &v8,
                "--metadata",
                "{",
            ],
            "--metadata",
        ),
        (
            "metadata not object",
            vec![
                "upsert",
                "c",
                "--id",
                "z",
                "--vector",
                &v8,
                "--metadata",
                "3",
            ],
            "JSON object",
        ),
        (
            "k = 0",
            vec!["search", "c", "--vector", &v8, "-k", "0"],
            "-k",
        ),
        (
            "absurd k",
            vec!["search", "c", "--vector", &v8, "-k", "1000000000"],
            "-k",
        ),
        (
            "ef = 0",
            vec!["search", "c", "--vector", &v8, "--ef", "0"],
            "ef",
        ),
        (
            "query dimension",
            vec!["search", "c", "--vector", "[1,2,3]"],
            "dimension 8",
        ),
        (
            "queries file size",
            vec!["search", "c", "--queries", &odd],
            "not a whole number",
        ),
        (
            "unknown include",
            vec!["search", "c", "--vector", &v8, "--include", "colour"],
            "colour",
        ),
        (
            "unknown collection",
            vec!["count", "nope"],
            "no collection named",
        ),
        (
            "unknown collection write",
            vec!["upsert", "nope", "--id", "z", "--vector", &v8],
            "no collection named",
        ),
        (
            "path traversal name",
            vec!["create", "../x", "--dim", "4"],
            "invalid collection name",
        ),
        (
            "slash name",
            vec!["count", "a/b"],
            "invalid collection name",
        ),
        (
            "empty name",
            vec!["create", "", "--dim", "4"],
            "invalid collection name",
        ),
        (
            "65-char name",
            vec!["create", &long_name, "--dim", "4"],
            "invalid collection name",
        ),
        (
            "existing collection",
            vec!["create", "c", "--dim", "4"],
            "already exists",
        ),
        (
            "unknown metric",
            vec!["create", "z", "--dim", "4", "--metric", "cosine"],
            "unknown metric",
        ),
        (
            "zero dimension",
            vec!["create", "z", "--dim", "0"],
            "dimension",
        ),
        ("alter nothing", vec!["alter", "c"], "nothing to change"),
        (
            "alter bad scalar",
            vec!["alter", "c", "--scalar", "f8"],
            "unknown scalar",
        ),
        ("unknown subcommand", vec!["frobnicate"], "frobnicate"),
        ("missing argument", vec!["create", "z"], "--dim"),
    ];
    let before = store_bytes(&store);
    for (what, args, needle) in cases {
        let out = quiver(&store, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        let first = common::message_line(&stderr);
        assert!(first.starts_with("quiver: "), "{what}: {stderr}");
        assert!(
            first.contains(needle),
            "{what}: {stderr:?} should mention {needle:?}"
        );
        assert!(store_bytes(&store) == before, "{what}: store changed");
    }
    // Invalid UTF-8 in an argument.
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"r\xff\xfe");
        let out = std::process::Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(["get", "c"])
            .arg(bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.lines().next().unwrap().contains("UTF-8"), "{stderr}");
        assert!(store_bytes(&store) == before);
    }
    assert_eq!(ok(&store, &["count", "c"]).trim(), "300");
}

#[test]
fn no_store_is_exit_2_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("absent");
    for args in [
        vec!["count", "c"],
        vec!["list"],
        vec!["upsert", "c", "--id", "a", "--vector", "[1]"],
    ] {
        let out = quiver(&store, &args);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no quiver store"));
    }
    assert!(!store.exists());
    // A directory holding something else is not taken over.
    std::fs::write(dir.path().join("file.txt"), "x").unwrap();
    let out = quiver(dir.path(), &["create", "c", "--dim", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a quiver store"));
}

/// Writers take turns per write (DESIGN §3, step 5): a library process
/// holding the store open does not keep CLI writers out, and each sees the
/// other's writes. A write that finds the lock held waits `--wait`
/// seconds, then gives up with exit code 75 naming the holder, and leaves
/// the store as it was.
#[test]
fn writer_processes_take_turns_and_a_held_lock_is_busy_after_the_wait() {
    let (_dir, store, _) = populated();
    let holder = quiver::Store::open(&store).unwrap();
    let coll = holder.get_collection("c").unwrap();
    let upsert = |id: &str, extra: &[&str]| {
        let v = json_vector(&[1.0; DIM]);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["upsert", "c", "--id", id, "--vector", &v]);
        quiver(&store, &args)
    };
    let out = upsert("from-cli", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(coll.count().unwrap(), 301);
    let hits = coll
        .search(&[1.0; DIM], &quiver::SearchOptions::new(1))
        .unwrap()
        .hits;
    assert_eq!(hits[0].id, "from-cli");
    coll.upsert(&[quiver::Record::new("from-library", vec![1.0; DIM])])
        .unwrap();
    assert_eq!(ok(&store, &["count", "c"]).trim(), "302");
    // Another process holds the writer lock: wait, then exit 75.
    let lock = std::fs::File::open(store.join("LOCK")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let started = std::time::Instant::now();
    let out = upsert("z", &["--wait", "0.5"]);
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("busy") && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        waited >= std::time::Duration::from_millis(500),
        "{waited:?}"
    );
    // QUIVER_WAIT=0: at once.
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["--store"])
        .arg(&store)
        .args(["delete", "c", "from-cli"])
        .env("QUIVER_WAIT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Nothing was written, and readers never wait.
    assert_eq!(ok(&store, &["count", "c"]).trim(), "302");
    assert_eq!(ok(&store, &["get", "c", "from-cli"]).lines().count(), 1);
    assert!(coll.get("z").unwrap().is_none());
    // A bad --wait is bad input.
    assert_eq!(upsert("z", &["--wait", "soon"]).status.code(), Some(2));
    drop(lock);
    let out = upsert("z", &["--wait", "0.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(coll.count().unwrap(), 303);
    assert!(coll.verify().unwrap().ok());
}

#[test]
fn demo_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["demo"]);
    assert!(out.contains("recall@10"), "{out}");
    assert!(out.contains("verify   ok"), "{out}");
    // Recall at ef 128 on the bundled sample.
    let line = out.lines().find(|l| l.contains("ef 128")).unwrap();
    let recall: f64 = line
        .split("recall@10 ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(recall >= 0.99, "{line}");
}

#[test]
fn closed_pipe_is_success() {
    let (_dir, store, _) = populated();
    let mut child = std::process::Command::new(common::bin())
        .args(["--store", store.to_str().unwrap(), "get", "c"])
        .args((0..300).map(|i| format!("r{i}")))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert!(child.wait().unwrap().success());
}

/// Filters, field indexes, keyword and hybrid search through the binary.
#[test]
fn filters_keyword_and_hybrid() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["create", "docs", "--dim", "2"]);
    let lines = [
        r#"{"id": "a", "vector": [1, 0], "text": "an embedded vector database", "metadata": {"lang": "rust", "stars": 50}}"#,
        r#"{"id": "b", "vector": [0.9, 0.1], "text": "vector math", "metadata": {"lang": "go", "stars": 5}}"#,
        r#"{"id": "c", "vector": [0, 1], "text": "a database of recipes", "metadata": {"lang": "rust", "stars": 500}}"#,
        r#"{"id": "d", "vector": [-1, 0], "text": "nothing related", "metadata": {"lang": "c"}}"#,
        r#"{"id": "e", "vector": [0.5, 0.5], "text": "vector database in rust", "metadata": {"lang": "rust", "stars": 7, "x'); DROP TABLE records; --": 1}}"#,
    ];
    let file = dir.path().join("d.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&store, &["import", "docs", file.to_str().unwrap()]);

    assert_eq!(
        ok(&store, &["count", "docs", "--filter", "lang = 'rust'"]).trim(),
        "3"
    );
    assert_eq!(
        ok(&store, &["count", "docs", "--filter", "stars IS NULL"]).trim(),
        "1"
    );
    let out = ok(
        &store,
        &[
            "search",
            "docs",
            "--vector",
            "[1, 0]",
            "-k",
            "2",
            "--filter",
            "lang = 'rust' AND stars >= 10",
        ],
    );
    let r = &lines_of(&out)[0];
    assert_eq!(r["plan"], "filter-exact");
    assert_eq!(r["matches"], 2);
    let ids = common::hit_ids(r);
    assert_eq!(ids, ["a", "c"]);

    // Scans with a filter and a limit, in id order, with paging.
    let got = lines_of(&ok(
        &store,
        &[
            "get",
            "docs",
            "--filter",
            "lang IN ('rust', 'go')",
            "--limit",
            "2",
        ],
    ));
    assert_eq!(
        got.iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    let got = lines_of(&ok(
        &store,
        &[
            "get",
            "docs",
            "--filter",
            "lang IN ('rust', 'go')",
            "--after",
            "b",
        ],
    ));
    assert_eq!(
        got.iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["c", "e"]
    );

    // A porter collection finds word forms the default one does not.
    ok(
        &store,
        &["create", "stem", "--dim", "2", "--tokenizer", "porter"],
    );
    ok(
        &store,
        &[
            "upsert",
            "stem",
            "--id",
            "s",
            "--vector",
            "[1, 0]",
            "--text",
            "Databases everywhere",
        ],
    );
    let out = ok(
        &store,
        &["search", "stem", "--mode", "keyword", "--text", "database"],
    );
    assert_eq!(lines_of(&out)[0]["hits"][0]["id"], "s");
    ok(&store, &["drop", "stem"]);

    // Keyword: records with both words first, best first.
    let out = ok(
        &store,
        &[
            "search",
            "docs",
            "--mode",
            "keyword",
            "--text",
            "vector database",
            "--include",
            "text",
        ],
    );
    let r = &lines_of(&out)[0];
    assert_eq!(r["plan"], "keyword");
    assert_eq!(r["matches"], 2);
    let hits = r["hits"].as_array().unwrap();
    for h in &hits[..2] {
        let t = h["text"].as_str().unwrap();
        assert!(t.contains("vector") && t.contains("database"), "{t}");
        assert!(h["keyword_rank"].as_u64().is_some());
    }
    assert!(
        hits[0]["keyword_score"].as_f64().unwrap() >= hits[1]["keyword_score"].as_f64().unwrap()
    );
    assert!(!hits.iter().any(|h| h["id"] == "d"));
    // Keyword hits carry a score (BM25, higher is better), not a distance.
    for w in hits.windows(2) {
        assert!(w[0]["score"].as_f64().unwrap() >= w[1]["score"].as_f64().unwrap());
    }
    for h in hits {
        assert!(h.get("distance").is_none(), "{h}");
        assert!(h["score"].as_f64().unwrap() > 0.0, "{h}");
        assert_eq!(h["score"], h["keyword_score"]);
    }

    // Keyword with query texts from a file, and with a filter.
    let qt = dir.path().join("q.jsonl");
    std::fs::write(&qt, "{\"text\": \"recipes\"}\n{\"text\": \"math\"}\n").unwrap();
    let out = lines_of(&ok(
        &store,
        &[
            "search",
            "docs",
            "--mode",
            "keyword",
            "--query-texts",
            qt.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["hits"][0]["id"], "c");
    assert_eq!(out[1]["hits"][0]["id"], "b");
    let out = ok(
        &store,
        &[
            "search",
            "docs",
            "--mode",
            "keyword",
            "--text",
            "vector",
            "--filter",
            "lang = 'go'",
        ],
    );
    assert_eq!(lines_of(&out)[0]["hits"].as_array().unwrap().len(), 1);

    // Hybrid: both ranks on each hit.
    let out = ok(
        &store,
        &[
            "search", "docs", "--mode", "hybrid", "--vector", "[1, 0]", "--text", "database", "-k",
            "3",
        ],
    );
    let r = &lines_of(&out)[0];
    assert_eq!(r["plan"], "hybrid");
    assert_eq!(r["hits"][0]["id"], "a");
    assert_eq!(r["hits"][0]["vector_rank"], 1);
    assert!(r["hits"][0]["keyword_rank"].as_u64().is_some());
    assert!(r["hits"][0]["score"].as_f64().unwrap() > 0.0);
    assert!(r["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h.get("distance").is_none()));
    let out = ok(
        &store,
        &[
            "search",
            "docs",
            "--mode",
            "hybrid",
            "--vector",
            "[1, 0]",
            "--text",
            "recipes",
            "--vector-weight",
            "0",
        ],
    );
    assert_eq!(lines_of(&out)[0]["hits"][0]["id"], "c");

    // Field index, listed by info.
    let out = ok(&store, &["index-field", "docs", "stars"]);
    assert_eq!(lines_of(&out)[0]["created"], true);
    let info: Value = serde_json::from_str(&ok(&store, &["info", "docs", "--json"])).unwrap();
    assert_eq!(info["indexed_fields"][0], "stars");

    // Delete by filter: one transaction, reports how many, text index follows.
    let out = ok(
        &store,
        &[
            "delete",
            "docs",
            "--filter",
            "lang = 'rust' AND stars < 100",
        ],
    );
    assert_eq!(lines_of(&out)[0]["deleted"], 2);
    assert_eq!(ok(&store, &["count", "docs"]).trim(), "3");
    let out = ok(
        &store,
        &["search", "docs", "--mode", "keyword", "--text", "embedded"],
    );
    assert!(lines_of(&out)[0]["hits"].as_array().unwrap().is_empty());
    let v: Value = serde_json::from_str(&ok(&store, &["verify", "docs", "--json"])).unwrap();
    assert_eq!(v["ok"], true);

    // Bad filters and modes: exit 2, one line, the column, nothing changed.
    let before = store_bytes(&store);
    for (args, needle) in [
        (
            vec!["count", "docs", "--filter", "lang = 'go' )"],
            "unexpected token ')' at 13",
        ),
        (
            vec!["search", "docs", "--vector", "[1,0]", "--filter", "lang = "],
            "at 8",
        ),
        (
            vec!["delete", "docs", "--filter", "x'); DROP TABLE records; --"],
            "invalid filter",
        ),
        (
            vec!["delete", "docs", "--filter", "' OR 1=1 --"],
            "invalid filter",
        ),
        (
            vec!["get", "docs", "--filter", "a..b = 1"],
            "invalid filter",
        ),
        (vec!["index-field", "docs", "a\"b"], "invalid field"),
        (
            vec!["create", "t", "--dim", "2", "--tokenizer", "snowball"],
            "unknown tokenizer",
        ),
        (
            vec!["search", "docs", "--mode", "keyword", "--text", "-- !!"],
            "no words",
        ),
        (
            vec!["search", "docs", "--mode", "keyword", "--vector", "[1,0]"],
            "needs --text",
        ),
        (
            vec!["search", "docs", "--text", "x"],
            "needs an embedding model",
        ),
        (
            vec!["search", "docs", "--mode", "hybrid", "--text", "x"],
            "needs an embedding model",
        ),
        (
            vec![
                "search", "docs", "--mode", "hybrid", "--vector", "[1,0]", "--text", "x",
                "--rrf-k", "-1",
            ],
            "rrf",
        ),
        (
            vec!["search", "docs", "--mode", "fuzzy", "--vector", "[1,0]"],
            "fuzzy",
        ),
        (vec!["delete", "docs"], "--filter"),
    ] {
        let out = quiver(&store, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = common::message_line(&stderr);
        assert!(
            first.contains(needle),
            "{args:?}: {stderr:?} should mention {needle:?}"
        );
        assert!(store_bytes(&store) == before, "{args:?} changed the store");
    }
    // Injection strings as literal values match literally and change nothing.
    assert_eq!(
        ok(
            &store,
            &[
                "count",
                "docs",
                "--filter",
                "lang = 'x''); DROP TABLE records; --'"
            ]
        )
        .trim(),
        "0"
    );
    assert_eq!(
        ok(
            &store,
            &["count", "docs", "--filter", "lang = ''' OR 1=1 --'"]
        )
        .trim(),
        "0"
    );
    assert_eq!(ok(&store, &["count", "docs"]).trim(), "3");
}

fn lines_of(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An import reads its input once: from `-` (stdin), `/dev/stdin` and a
/// process substitution every record arrives, the count is the number of
/// distinct ids written, and a bad line late in a pipe writes nothing.
#[test]
fn imports_from_pipes_store_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    ok(&store, &["create", "c", "--dim", &DIM.to_string()]);
    let mut rng = Rng(12);
    let lines = |prefix: &str, n: usize, rng: &mut Rng| -> String {
        let mut out: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"id": "{prefix}{i}", "vector": {}}}"#,
                    json_vector(&rng.vector(DIM))
                )
            })
            .collect();
        // The first id again: replaced, not counted twice.
        out.push(format!(
            r#"{{"id": "{prefix}0", "vector": {}}}"#,
            json_vector(&rng.vector(DIM))
        ));
        out.join("\n") + "\n"
    };
    let piped = |args: &[&str], body: String| {
        let mut child = std::process::Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(body.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    };
    let mut want = 0;
    for (prefix, file) in [("dash", "-"), ("devstdin", "/dev/stdin")] {
        let out = piped(&["import", "c", file], lines(prefix, 1500, &mut rng));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["imported"], 1500, "{file}: {summary}");
        assert_eq!(summary["lines"], 1501, "{file}: {summary}");
        want += 1500;
        assert_eq!(ok(&store, &["count", "c"]).trim(), want.to_string());
    }
    // A process substitution, through bash.
    let body = dir.path().join("sub.jsonl");
    std::fs::write(&body, lines("sub", 700, &mut rng)).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} --store {} import c <(cat {})",
            common::bin().display(),
            store.display(),
            body.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["imported"], 700, "{summary}");
    want += 700;
    assert_eq!(ok(&store, &["count", "c"]).trim(), want.to_string());
    // A bad line far into a pipe: exit 2, nothing written.
    let before = store_bytes(&store);
    let mut bad = lines("late", 3000, &mut rng);
    bad.push_str("{\"id\": \"broken\", \"vector\": [1, 2]}\n");
    let out = piped(&["import", "c", "-"], bad);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("-:3002"), "{stderr}");
    assert_eq!(store_bytes(&store), before);
    // --query-texts - reads stdin.
    let out = piped(
        &["search", "c", "--query-texts", "-", "--mode", "keyword"],
        "{\"text\": \"nothing\"}\n".into(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["plan"], "keyword", "{line}");
}

/// The README's table of exit codes is what the commands return: each
/// code it lists is produced here the way its example says, and no code
/// is missing from it.
#[test]
fn the_readme_exit_code_table_is_true() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let codes: Vec<u8> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| code | meaning"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').nth(1).unwrap().trim().parse().unwrap())
        .collect();
    assert_eq!(codes, [0, 1, 2, 75], "the README's table");

    let (dir, store, _) = populated();
    let code = |args: &[&str]| quiver(&store, args).status.code();
    // 0: `quiver count docs`.
    assert_eq!(code(&["count", "c"]), Some(0));
    // 2: `quiver count nosuch`, and a usage error.
    assert_eq!(code(&["count", "nosuch"]), Some(2));
    assert_eq!(code(&["count"]), Some(2));
    // 75: a write while another process holds the writer lock.
    {
        let lock = std::fs::File::open(store.join("LOCK")).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        let held = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(held, 0);
        let v = json_vector(&[1.0; DIM]);
        assert_eq!(
            code(&["--wait", "0", "upsert", "c", "--id", "x", "--vector", &v]),
            Some(75)
        );
    }
    // 1: `verify` on a damaged store: a record SQLite has and the index
    // lacks (written behind Quiver's back, with an old sequence number).
    ok(&store, &["flush", "c"]);
    let conn = rusqlite::Connection::open(store.join("quiver.db")).unwrap();
    conn.execute(
        "INSERT INTO records (cid, id, vector, seq) SELECT cid, 'ghost', vector, 1 FROM records LIMIT 1",
        [],
    )
    .unwrap();
    drop(conn);
    assert_eq!(code(&["verify", "c"]), Some(1));
    drop(dir);
}

/// The command line's manners: a JSON line from every write, "did you
/// mean" for a misspelled collection, a warning for a filter on a field no
/// record has, a delete that says how, completions and a man page.
#[test]
fn the_command_line_says_what_happened_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let json = |args: &[&str]| -> Value { serde_json::from_str(ok(&store, args).trim()).unwrap() };
    assert_eq!(json(&["create", "notes", "--dim", "4"])["created"], "notes");
    let v = json_vector(&[1.0, 0.0, 0.0, 0.0]);
    json(&[
        "upsert",
        "notes",
        "--id",
        "a",
        "--vector",
        &v,
        "--metadata",
        r#"{"tags": ["x"]}"#,
    ]);
    assert_eq!(json(&["flush", "notes"])["flushed"], "notes");
    assert_eq!(json(&["index-field", "notes", "tags"])["indexed"], "tags");

    let out = quiver(&store, &["count", "note"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean \"notes\"?"), "{stderr}");

    let out = quiver(&store, &["count", "notes", "--filter", "tgas CONTAINS 'x'"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: no record of \"notes\" has a field tgas"),
        "{stderr}"
    );
    // A field some record has: no warning, even when nothing matches.
    let out = quiver(&store, &["count", "notes", "--filter", "tags CONTAINS 'y'"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = quiver(&store, &["delete", "notes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--filter"));

    // --model only where text is embedded; --store not where no store is opened.
    let help = |args: &[&str]| String::from_utf8(quiver(&store, args).stdout).unwrap();
    assert!(!help(&["count", "--help"]).contains("--model"));
    assert!(help(&["search", "--help"]).contains("--model"));
    assert!(!help(&["completions", "--help"]).contains("--store"));
    assert!(help(&["--help"]).contains("Maintenance:"));

    let script = help(&["completions", "bash"]);
    assert!(
        script.contains("_quiver") && script.contains("index-field"),
        "bash completion"
    );
    assert!(help(&["man"]).contains(".TH quiver 1"));

    assert_eq!(json(&["drop", "notes"])["dropped"], "notes");
}
