//! Text in, text queries out: the CLI with a real all-MiniLM-L6-v2 model
//! (fetched by scripts/fetch-model; `QUIVER_TEST_MODEL` overrides the path).

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{json_vector, ok, quiver};
use quiver::embed::{Embedder, SentenceEmbedder};
use serde_json::Value;

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("QUIVER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/models/all-MiniLM-L6-v2"
            ))
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "no test model at {}: run scripts/fetch-model (./scripts/test does)",
        dir.display()
    );
    dir
}

/// A model directory at `to` whose files link to `model`'s: the same
/// weights (so the same digest) in another place.
fn linked_model(model: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir(to).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
    ] {
        std::os::unix::fs::symlink(model.join(f).canonicalize().unwrap(), to.join(f)).unwrap();
    }
    to.to_path_buf()
}

fn with_model<'a>(store: &Path, model: &'a Path, args: &[&'a str]) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--model", model.to_str().unwrap()]);
    quiver(store, &all)
}

fn ok_model(store: &Path, model: &Path, args: &[&str]) -> String {
    let out = with_model(store, model, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const DOCS: &[(&str, &str)] = &[
    (
        "db",
        "An embedded vector database with approximate nearest neighbour search",
    ),
    (
        "pasta",
        "A recipe for fresh pasta with tomato sauce and basil",
    ),
    (
        "rust",
        "A systems programming language focused on safety and speed",
    ),
    ("garden", "How to grow tomatoes and herbs in a small garden"),
    (
        "ml",
        "Training neural networks to produce sentence embeddings",
    ),
];

#[test]
fn text_in_text_queries_out() {
    let model = model_dir();
    let embedder = SentenceEmbedder::load(&model).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok_model(&store, &model, &["create", "docs"]);
    let info: Value = serde_json::from_str(&ok(&store, &["info", "docs", "--json"])).unwrap();
    assert_eq!(info["config"]["dimension"], 384);
    assert_eq!(info["config"]["model"], embedder.id());

    // Import: text-only lines are embedded; a line with a vector keeps it.
    let mut text: String = DOCS
        .iter()
        .map(|(id, t)| format!("{{\"id\": \"{id}\", \"text\": \"{t}\"}}\n"))
        .collect();
    let own = vec![0.05f32; 384];
    text.push_str(&format!(
        "{{\"id\": \"own\", \"text\": \"kept as given\", \"vector\": {}}}\n",
        json_vector(&own)
    ));
    let file = dir.path().join("docs.jsonl");
    std::fs::write(&file, text).unwrap();
    ok_model(
        &store,
        &model,
        &["import", "docs", file.to_str().unwrap(), "--batch", "2"],
    );
    let got = lines(&ok(
        &store,
        &["get", "docs", "pasta", "own", "--include", "vector"],
    ));
    let want = embedder.embed(&[DOCS[1].1]).unwrap().remove(0);
    let v: Vec<f32> = serde_json::from_value(got[0]["vector"].clone()).unwrap();
    assert_eq!(v, want, "import embeds exactly as the library does");
    let v: Vec<f32> = serde_json::from_value(got[1]["vector"].clone()).unwrap();
    assert_eq!(v, own);

    // A new text through update and apply is embedded with the model; a
    // text without the model is refused, nothing written.
    ok_model(
        &store,
        &model,
        &["update", "docs", "--id", "own", "--text", "a bowl of ramen"],
    );
    let ops = dir.path().join("ops.jsonl");
    std::fs::write(
        &ops,
        "{\"op\": \"update\", \"id\": \"garden\", \"text\": \"repotting a fern\"}\n\
         {\"op\": \"upsert\", \"id\": \"added\", \"text\": \"a new note\"}\n",
    )
    .unwrap();
    ok_model(&store, &model, &["apply", "docs", ops.to_str().unwrap()]);
    let got = lines(&ok(
        &store,
        &[
            "get",
            "docs",
            "own",
            "garden",
            "added",
            "--include",
            "vector",
        ],
    ));
    for (line, text) in got
        .iter()
        .zip(["a bowl of ramen", "repotting a fern", "a new note"])
    {
        let v: Vec<f32> = serde_json::from_value(line["vector"].clone()).unwrap();
        assert_eq!(v, embedder.embed(&[text]).unwrap()[0], "{text}");
        assert_eq!(line["text"], text);
    }
    let out = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args(["update", "docs", "--id", "own", "--text", "no model here"])
        .env_remove("QUIVER_MODEL")
        .output()
        .unwrap();
    // The collection knows its model: no --model needed.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(&ok(&store, &["get", "docs", "own", "--include", "vector"]));
    let v: Vec<f32> = serde_json::from_value(got[0]["vector"].clone()).unwrap();
    assert_eq!(v, embedder.embed(&["no model here"]).unwrap()[0]);
    // Back as imported, for what follows.
    ok(&store, &["delete", "docs", "added"]);
    ok_model(
        &store,
        &model,
        &["update", "docs", "--id", "garden", "--text", DOCS[3].1],
    );
    ok_model(
        &store,
        &model,
        &[
            "update",
            "docs",
            "--id",
            "own",
            "--vector",
            &json_vector(&own),
            "--text",
            "kept as given",
        ],
    );

    // Search by text, one query and a file of queries, and hybrid with text only.
    let r = &lines(&ok_model(
        &store,
        &model,
        &[
            "search",
            "docs",
            "--text",
            "vector similarity search engine",
            "-k",
            "2",
        ],
    ))[0];
    assert_eq!(r["hits"][0]["id"], "db");
    let q = dir.path().join("q.jsonl");
    std::fs::write(
        &q,
        "{\"text\": \"italian cooking\"}\n{\"text\": \"planting vegetables\"}\n",
    )
    .unwrap();
    let rs = lines(&ok_model(
        &store,
        &model,
        &[
            "search",
            "docs",
            "--query-texts",
            q.to_str().unwrap(),
            "-k",
            "1",
        ],
    ));
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0]["hits"][0]["id"], "pasta");
    assert_eq!(rs[1]["hits"][0]["id"], "garden");
    let r = &lines(&ok_model(
        &store,
        &model,
        &[
            "search", "docs", "--mode", "hybrid", "--text", "tomato", "-k", "2",
        ],
    ))[0];
    let ids = common::hit_ids(r);
    assert!(ids.contains(&"pasta") && ids.contains(&"garden"), "{ids:?}");

    // Upsert --text embeds too.
    ok_model(
        &store,
        &model,
        &[
            "upsert",
            "docs",
            "--id",
            "bike",
            "--text",
            "Repairing a bicycle chain",
        ],
    );
    let r = &lines(&ok_model(
        &store,
        &model,
        &["search", "docs", "--text", "fix my bike", "-k", "1"],
    ))[0];
    assert_eq!(r["hits"][0]["id"], "bike");

    // quiver embed: JSON lines or plain text in, vectors out, in order; raw f32 too.
    let embed = |args: &[&str], input: &str| {
        let mut child = Command::new(common::bin())
            .args(["embed", "--model", model.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let out = embed(
        &[],
        "{\"text\": \"first line\"}\nsecond line\n{\"text\": \"third\"}\n",
    );
    let vs = lines(&String::from_utf8(out).unwrap());
    assert_eq!(vs.len(), 3);
    let want = embedder
        .embed(&["first line", "second line", "third"])
        .unwrap();
    for (v, w) in vs.iter().zip(&want) {
        let v: Vec<f32> = serde_json::from_value(v["vector"].clone()).unwrap();
        assert_eq!(&v, w);
    }
    let raw = embed(&["--raw"], "second line\n");
    assert_eq!(raw.len(), 384 * 4);
    assert_eq!(
        f32::from_le_bytes(raw[0..4].try_into().unwrap()),
        want[1][0]
    );

    // reembed into a new collection bound to the model.
    let out = lines(&ok_model(
        &store,
        &model,
        &["reembed", "docs", "--into", "docs2", "--batch", "2"],
    ));
    assert_eq!(out[0]["reembedded"], 7);
    assert_eq!(out[0]["count"], 7);
    let got = lines(&ok(&store, &["get", "docs2", "own", "--include", "vector"]));
    let v: Vec<f32> = serde_json::from_value(got[0]["vector"].clone()).unwrap();
    assert_eq!(
        v,
        embedder.embed(&["kept as given"]).unwrap()[0],
        "reembed embeds the text"
    );
    // Running it again resumes after the last id: nothing left to do.
    let out = lines(&ok_model(
        &store,
        &model,
        &["reembed", "docs", "--into", "docs2"],
    ));
    assert_eq!(out[0]["resumed"], true);
    assert_eq!(out[0]["count"], 7);
}

#[test]
fn model_errors_are_clear_and_change_nothing() {
    let model = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok_model(&store, &model, &["create", "docs"]);
    ok(&store, &["create", "small", "--dim", "8"]);
    ok_model(
        &store,
        &model,
        &["upsert", "docs", "--id", "a", "--text", "hello"],
    );

    // Another model: same files but different weights.
    let other = dir.path().join("other-model");
    std::fs::create_dir(&other).unwrap();
    for f in ["config.json", "tokenizer.json", "sentence_bert_config.json"] {
        std::fs::copy(model.join(f), other.join(f)).unwrap();
    }
    let mut weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let last = weights.len() - 8;
    weights[last] ^= 1;
    std::fs::write(other.join("model.safetensors"), weights).unwrap();

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();

    let before = common::store_bytes(&store);
    let text_only = dir.path().join("t.jsonl");
    std::fs::write(&text_only, "{\"id\": \"b\", \"text\": \"needs a model\"}\n").unwrap();
    let blank = dir.path().join("blank.jsonl");
    std::fs::write(
        &blank,
        "{\"id\": \"b\", \"text\": \"fine\"}\n{\"id\": \"c\", \"text\": \"  \"}\n",
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, Option<&Path>, &str)> = vec![
        (
            vec!["search", "small", "--text", "x"],
            None,
            "bound to none",
        ),
        (
            vec!["search", "docs", "--text", "x"],
            Some(&other),
            "but collection \"docs\" is bound to all-MiniLM-L6-v2@",
        ),
        (
            vec!["upsert", "docs", "--id", "b", "--text", "x"],
            Some(&other),
            "is other-model@",
        ),
        (
            vec!["import", "small", text_only.to_str().unwrap()],
            None,
            "t.jsonl:1",
        ),
        (
            vec!["import", "docs", text_only.to_str().unwrap()],
            Some(&other),
            "is bound to all-MiniLM-L6-v2@",
        ),
        (
            vec!["import", "docs", blank.to_str().unwrap()],
            None,
            "blank.jsonl:2: record \"c\": an empty or blank text",
        ),
        (
            vec!["upsert", "docs", "--id", "c", "--text", " \t"],
            None,
            "empty or blank text",
        ),
        (
            vec!["alter", "docs"],
            Some(&other),
            "is bound to all-MiniLM-L6-v2@",
        ),
        (
            vec!["search", "small", "--text", "x"],
            Some(&model),
            "dimension 8",
        ),
        (
            vec!["search", "docs", "--text", "x"],
            Some(&broken),
            "model.safetensors",
        ),
        (
            vec!["search", "docs", "--text", "x"],
            Some(Path::new("/nonexistent")),
            "not found",
        ),
        (vec!["create", "c2", "--dim", "10"], Some(&model), "384-d"),
        (vec!["embed"], None, "--model"),
    ];
    for (args, m, needle) in cases {
        let out = match m {
            Some(m) => with_model(&store, m, &args),
            None => quiver(&store, &args),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr:?} should mention {needle:?}"
        );
        assert!(
            common::store_bytes(&store) == before,
            "{args:?} changed the store"
        );
    }
}

/// Models by Hub id: a cached copy is used as is; one that cannot be
/// fetched is a one-line error that leaves nothing behind.
#[test]
fn hub_ids_use_the_cache_and_fail_clearly() {
    let model = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cached = cache.join("someone--minilm");
    std::fs::create_dir_all(cached.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        std::fs::copy(model.join(f), cached.join(f)).unwrap();
    }
    let store = dir.path().join("s");
    let run = |args: &[&str]| {
        Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .env("QUIVER_MODEL_CACHE", &cache)
            .env_remove("QUIVER_MODEL")
            .output()
            .unwrap()
    };
    let out = run(&["create", "docs", "--model", "someone/minilm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "search",
        "docs",
        "--text",
        "anything",
        "--model",
        "someone/minilm",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let other = dir.path().join("other");
    let out = Command::new(common::bin())
        .arg("--store")
        .arg(&other)
        .args([
            "create",
            "docs",
            "--model",
            "quiver-tests-no-such-owner/no-such-model",
        ])
        .env("QUIVER_MODEL_CACHE", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("Hugging Face Hub"), "{stderr}");
    assert!(!other.exists(), "a failed create made a store");
}

/// A collection made with `--model` knows it: text in and text queries
/// out with no `--model` anywhere, and an import of texts killed half-way
/// embeds only the rest when run again.
#[test]
fn a_collection_knows_its_model_and_a_killed_import_resumes() {
    let model = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let created = lines(&ok_model(&store, &model, &["create", "notes"]));
    assert_eq!(created[0]["created"], "notes");
    let binding = &created[0]["config"]["embedding"];
    assert_eq!(binding["pooling"], "mean");
    assert_eq!(
        binding["source"],
        std::fs::canonicalize(&model).unwrap().to_str().unwrap()
    );
    let no_model = |args: &[&str]| -> String {
        let out = Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .env_remove("QUIVER_MODEL")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    no_model(&[
        "upsert",
        "notes",
        "--id",
        "cat",
        "--text",
        "a cat asleep on a warm windowsill",
    ]);

    // 400 texts, 25 per transaction; killed once some batches are in.
    let n = 400;
    let file = dir.path().join("texts.jsonl");
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!(
            "{{\"id\": \"n{i:04}\", \"text\": \"note number {i} about topic {}\", \"metadata\": {{\"i\": {i}}}}}\n",
            i % 17
        ));
    }
    std::fs::write(&file, body).unwrap();
    let mut child = Command::new(common::bin())
        .arg("--store")
        .arg(&store)
        .args([
            "import",
            "notes",
            file.to_str().unwrap(),
            "--batch",
            "25",
            "--report-commits",
        ])
        .env_remove("QUIVER_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        use std::io::BufRead;
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "import ended early"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["committed"].as_u64().is_some_and(|c| c >= 100) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let count = |s: &str| -> u64 { lines(s)[0].as_u64().unwrap() };
    let stored = count(&no_model(&["count", "notes"])) - 1;
    assert!(
        stored >= 100 && stored < n,
        "killed half-way: {stored} stored"
    );

    let started = std::time::Instant::now();
    let report = &lines(&no_model(&[
        "import",
        "notes",
        file.to_str().unwrap(),
        "--batch",
        "25",
    ]))[0];
    let again = started.elapsed();
    assert_eq!(report["unchanged"], stored, "{report}");
    assert_eq!(report["embedded"], n - stored, "{report}");
    assert_eq!(report["imported"], n - stored, "{report}");
    assert_eq!(count(&no_model(&["count", "notes"])), n + 1);
    // A third run embeds nothing.
    let report = &lines(&no_model(&["import", "notes", file.to_str().unwrap()]))[0];
    assert_eq!(
        (report["embedded"].as_u64(), report["unchanged"].as_u64()),
        (Some(0), Some(n))
    );
    eprintln!("resumed import of {} texts: {again:?}", n - stored);

    // Text queries, vector and hybrid, with the collection's own model.
    let r = &lines(&no_model(&[
        "search",
        "notes",
        "--text",
        "kitten napping in the sun",
        "-k",
        "1",
    ]))[0];
    assert_eq!(r["hits"][0]["id"], "cat", "{r}");
    let r = &lines(&no_model(&[
        "search",
        "notes",
        "--text",
        "note number 7",
        "--mode",
        "hybrid",
        "-k",
        "1",
    ]))[0];
    assert_eq!(r["hits"][0]["id"], "n0007", "{r}");
    assert!(no_model(&["verify", "notes"]).contains("\"ok\":true"));
}

/// A collection made with --dim is bound by its first text write, if it
/// was empty; one that holds vectors from elsewhere is not, and says so.
#[test]
fn the_first_text_write_binds_an_empty_collection() {
    let model = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    ok(&store, &["create", "plain", "--dim", "384"]);
    ok_model(
        &store,
        &model,
        &["upsert", "plain", "--id", "a", "--text", "hello there"],
    );
    let info: Value = serde_json::from_str(&ok(&store, &["info", "plain", "--json"])).unwrap();
    assert_eq!(
        info["config"]["embedding"]["id"],
        SentenceEmbedder::load(&model).unwrap().id()
    );

    ok(&store, &["create", "given", "--dim", "384"]);
    ok(
        &store,
        &[
            "upsert",
            "given",
            "--id",
            "v",
            "--vector",
            &json_vector(&[0.1; 384]),
        ],
    );
    let out = with_model(
        &store,
        &model,
        &["upsert", "given", "--id", "t", "--text", "now text"],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bound to no model"), "{stderr}");
    let info: Value = serde_json::from_str(&ok(&store, &["info", "given", "--json"])).unwrap();
    assert!(info["config"]["embedding"].is_null(), "{info}");
    // Binding it later is one command.
    ok_model(&store, &model, &["alter", "given"]);
    let info: Value = serde_json::from_str(&ok(&store, &["info", "given", "--json"])).unwrap();
    assert_eq!(info["config"]["embedding"]["pooling"], "mean");
}

/// A bound model that moved: text commands say so, and binding it again
/// from its new place (the same weights) mends the collection.
#[test]
fn a_moved_model_is_bound_again_from_its_new_place() {
    let real = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let first = linked_model(&real, &dir.path().join("models-old"));
    ok_model(&store, &first, &["create", "notes"]);
    ok(
        &store,
        &["upsert", "notes", "--id", "a", "--text", "moving house"],
    );
    let moved = dir.path().join("models-new");
    std::fs::rename(&first, &moved).unwrap();
    let out = quiver(&store, &["search", "notes", "--text", "relocation"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bind it again from its new place"),
        "{stderr}"
    );
    ok_model(&store, &moved, &["alter", "notes"]);
    let r: Value =
        serde_json::from_str(&ok(&store, &["search", "notes", "--text", "relocation"])).unwrap();
    assert_eq!(r["hits"][0]["id"], "a");
}

/// What a review of the model binding found, each checked: $QUIVER_MODEL
/// binds nothing that did not ask for a model; a bad alter writes no
/// binding either; the first write into an unbound collection uses the
/// model's own prompts, which binding keeps; a resumed import with a
/// repeated id ends with its last line.
#[test]
fn the_binding_changes_only_what_was_asked() {
    let model = model_dir();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let run_env = |args: &[&str]| {
        Command::new(common::bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .env("QUIVER_MODEL", &model)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // --dim with $QUIVER_MODEL set: a plain collection, not bound.
    let out = run_env(&["create", "small", "--dim", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_str(&ok(&store, &["info", "small", "--json"])).unwrap();
    assert!(info["config"]["embedding"].is_null(), "{info}");
    // alter of index settings with $QUIVER_MODEL set: still not bound.
    let out = run_env(&["alter", "small", "--expansion-search", "80"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_str(&ok(&store, &["info", "small", "--json"])).unwrap();
    assert!(info["config"]["embedding"].is_null(), "{info}");

    // A bad setting beside --model: nothing written, the binding neither.
    ok(&store, &["create", "plain", "--dim", "384"]);
    let out = with_model(&store, &model, &["alter", "plain", "--connectivity", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let info: Value = serde_json::from_str(&ok(&store, &["info", "plain", "--json"])).unwrap();
    assert!(info["config"]["embedding"].is_null(), "{info}");

    // A model with prompts: the first write into an unbound collection
    // uses its document prompt, and the binding keeps it.
    let e5 = linked_model(&model, &dir.path().join("with-prompts"));
    std::fs::write(
        e5.join("config_sentence_transformers.json"),
        r#"{"prompts": {"query": "query: ", "document": "passage: "}}"#,
    )
    .unwrap();
    ok_model(
        &store,
        &e5,
        &["upsert", "plain", "--id", "a", "--text", "ramen"],
    );
    let info: Value = serde_json::from_str(&ok(&store, &["info", "plain", "--json"])).unwrap();
    assert_eq!(info["config"]["embedding"]["document_prefix"], "passage: ");
    let embedder = SentenceEmbedder::load(&model).unwrap();
    let got = lines(&ok(&store, &["get", "plain", "a", "--include", "vector"]));
    let v: Vec<f32> = serde_json::from_value(got[0]["vector"].clone()).unwrap();
    assert_eq!(v, embedder.embed(&["passage: ramen"]).unwrap()[0]);

    // Resume with a repeated id: the last line wins.
    ok_model(&store, &model, &["create", "notes"]);
    let file = dir.path().join("repeat.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"m\": 2}}\n",
    )
    .unwrap();
    ok(&store, &["import", "notes", file.to_str().unwrap()]);
    std::fs::write(
        &file,
        "{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"m\": 1}}\n{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"m\": 2}}\n",
    )
    .unwrap();
    let report: Value =
        serde_json::from_str(ok(&store, &["import", "notes", file.to_str().unwrap()]).trim())
            .unwrap();
    assert_eq!(
        (report["embedded"].as_u64(), report["imported"].as_u64()),
        (Some(0), Some(1)),
        "{report}"
    );
    let got = lines(&ok(&store, &["get", "notes", "a"]));
    assert_eq!(got[0]["metadata"]["m"], 2);
}
