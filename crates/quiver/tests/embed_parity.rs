//! The local embedding engine against all-MiniLM-L6-v2's reference outputs
//! (sentence-transformers in Python): token counts, vectors, batching and
//! threading invariance, and model loading errors.
//!
//! The model directory is `$QUIVER_TEST_MODEL`, else
//! `.cache/models/all-MiniLM-L6-v2` at the workspace root, as fetched by
//! `scripts/fetch-model`. Without it these tests fail.

#![cfg(feature = "embed")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use quiver::embed::{Embedder, SentenceEmbedder};
use quiver::Error;

const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../.cache/models/all-MiniLM-L6-v2"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const MIN_COSINE: f32 = 0.999;

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("QUIVER_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    assert!(
        dir.join("model.safetensors").is_file(),
        "test model not found at {}: run scripts/fetch-model (or set QUIVER_TEST_MODEL to a model directory)",
        dir.display()
    );
    dir
}

fn model() -> &'static SentenceEmbedder {
    static MODEL: OnceLock<SentenceEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        // Two threads even on a one-core machine, so that batches are split.
        SentenceEmbedder::load(model_dir()).unwrap().with_threads(2)
    })
}

struct Case {
    text: String,
    tokens: Option<usize>,
    vector: Vec<f32>,
}

fn fixture(name: &str) -> Vec<Case> {
    let path = Path::new(FIXTURES).join(name);
    let body = std::fs::read_to_string(&path).unwrap();
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Case {
                text: v["text"].as_str().unwrap().to_string(),
                tokens: v.get("tokens").map(|t| t.as_u64().unwrap() as usize),
                vector: v["vector"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect(),
            }
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Embeds a fixture in one batch, checks token counts and cosines, and
/// returns the minimum cosine.
fn check_parity(name: &str, expected_lines: usize) -> f32 {
    let model = model();
    let cases = fixture(name);
    assert_eq!(cases.len(), expected_lines, "{name}: line count");
    let mut bad_tokens = Vec::new();
    for c in &cases {
        if let Some(want) = c.tokens {
            let got = model.tokenize(&c.text).len();
            if got != want {
                bad_tokens.push(format!("{:?}: {got} tokens, expected {want}", c.text));
            }
        }
    }
    assert!(
        bad_tokens.is_empty(),
        "{name}: token counts differ:\n{}",
        bad_tokens.join("\n")
    );
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let vectors = model.embed(&texts).unwrap();
    assert_eq!(vectors.len(), cases.len());
    let mut min = f32::INFINITY;
    let mut worst = String::new();
    let mut failures = Vec::new();
    for (c, v) in cases.iter().zip(&vectors) {
        assert_eq!(v.len(), c.vector.len(), "{name}: dimension");
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "{name}: norm {norm} for {:?}",
            c.text
        );
        let cos = cosine(v, &c.vector);
        if cos < min {
            min = cos;
            worst.clone_from(&c.text);
        }
        if cos.is_nan() || cos < MIN_COSINE {
            failures.push(format!("{cos:.6} for {:?}", c.text));
        }
    }
    println!("{name}: minimum cosine {min:.7} ({worst:?})");
    assert!(
        failures.is_empty(),
        "{name}: cosine below {MIN_COSINE}:\n{}",
        failures.join("\n")
    );
    min
}

#[test]
fn reference_fixture_matches_sentence_transformers() {
    check_parity("minilm-reference.jsonl", 22);
}

#[test]
fn query_fixture_matches_sentence_transformers() {
    check_parity("minilm-queries.jsonl", 100);
}

#[test]
fn model_facts() {
    let model = model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_tokens(), 256);
    let id = model.id();
    let (name, hash) = id.split_once('@').unwrap();
    assert_eq!(
        name,
        model_dir()
            .canonicalize()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    let weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    assert_eq!(hash, &blake3::hash(&weights).to_hex()[..16]);
    assert_eq!(
        model.tokenize("This is an example sentence"),
        [101, 2023, 2003, 2019, 2742, 6251, 102]
    );
    assert_eq!(model.tokenize(""), [101, 102]);
    assert!(model.embed(&[]).unwrap().is_empty());
    let empty = model.embed(&[""]).unwrap();
    assert_eq!(empty[0].len(), 384);
}

#[test]
fn vectors_do_not_depend_on_batching_or_threads() {
    let model = model();
    // Mixed lengths: the short reference texts, one past the token limit,
    // a few queries, an empty text and a one-letter one.
    let reference = fixture("minilm-reference.jsonl");
    let long = reference.iter().find(|c| c.tokens == Some(256)).unwrap();
    let mut texts: Vec<String> = reference
        .iter()
        .filter(|c| c.tokens.unwrap() < 256)
        .map(|c| c.text.clone())
        .collect();
    texts.push(long.text.clone());
    texts.extend(
        fixture("minilm-queries.jsonl")
            .into_iter()
            .take(4)
            .map(|c| c.text),
    );
    texts.push(String::new());
    texts.push("a".to_string());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let one_by_one: Vec<Vec<f32>> = refs
        .iter()
        .map(|t| model.embed(&[t]).unwrap().pop().unwrap())
        .collect();
    let all = model.embed(&refs).unwrap();
    let diff = max_abs_diff(&one_by_one, &all);
    println!("one batch vs one by one: max abs diff {diff:e}");
    assert!(diff <= 1e-6, "one batch vs one by one: max abs diff {diff}");

    // Shuffled, mixed-length batches of varying sizes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..2 {
        let mut order: Vec<usize> = (0..refs.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rand(i + 1));
        }
        let mut got = vec![Vec::new(); refs.len()];
        let mut rest = &order[..];
        while !rest.is_empty() {
            let size = (1 + rand(9)).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            let batch_texts: Vec<&str> = batch.iter().map(|&i| refs[i]).collect();
            for (&i, v) in batch.iter().zip(model.embed(&batch_texts).unwrap()) {
                got[i] = v;
            }
            rest = tail;
        }
        let diff = max_abs_diff(&one_by_one, &got);
        println!("shuffled batches (round {round}): max abs diff {diff:e}");
        assert!(
            diff <= 1e-6,
            "shuffled batches (round {round}): max abs diff {diff}"
        );
    }

    // A duplicated text in one batch gets the same vector twice.
    let dup = model.embed(&[refs[2], refs[6], refs[2]]).unwrap();
    assert_eq!(dup[0], dup[2]);

    // Thread count: the batch above ran on several threads (several
    // chunks); the same batch on one thread gives the same vectors.
    let single = SentenceEmbedder::load(model_dir()).unwrap().with_threads(1);
    let diff = max_abs_diff(&single.embed(&refs).unwrap(), &all);
    assert!(diff <= 1e-6, "one thread vs several: max abs diff {diff}");
}

/// A temporary model directory with links to the named real files.
fn partial_model(files: &[&str]) -> tempfile::TempDir {
    let real = model_dir();
    let tmp = tempfile::tempdir().unwrap();
    for f in files {
        std::os::unix::fs::symlink(real.join(f).canonicalize().unwrap(), tmp.path().join(f))
            .unwrap();
    }
    tmp
}

fn load_error(dir: &Path) -> String {
    match SentenceEmbedder::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e @ Error::Model { .. }) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line message: {msg}");
            msg
        }
        Err(e) => panic!("expected Error::Model, got {e:?}"),
    }
}

const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

#[test]
fn missing_directory_and_files_are_model_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = load_error(&tmp.path().join("nope"));
    assert!(msg.contains("not found"), "{msg}");

    for missing in FILES {
        let keep: Vec<&str> = FILES.iter().copied().filter(|f| *f != missing).collect();
        let dir = partial_model(&keep);
        let msg = load_error(dir.path());
        assert!(msg.contains(missing), "missing {missing}: {msg}");
    }
    // All three present (no sentence-transformers files): loads, with the
    // 512-token default limit.
    let dir = partial_model(&FILES);
    let m = SentenceEmbedder::load(dir.path()).unwrap();
    assert_eq!(m.max_tokens(), 512);
    assert_eq!(m.dimension(), 384);
}

#[test]
fn corrupt_safetensors_is_a_model_error() {
    let real = model_dir().join("model.safetensors");
    let bytes = std::fs::read(&real).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("short", bytes[..5].to_vec()),
        ("truncated header", bytes[..200].to_vec()),
        ("truncated data", bytes[..bytes.len() / 2].to_vec()),
        (
            "garbage",
            b"this is not a safetensors file at all".repeat(100),
        ),
        ("huge header length", {
            let mut b = bytes[..4096].to_vec();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("bad json", {
            let mut b = bytes[..4096].to_vec();
            b[8] = b'x';
            b
        }),
    ];
    for (what, content) in cases {
        let dir = partial_model(&["config.json", "tokenizer.json"]);
        std::fs::write(dir.path().join("model.safetensors"), content).unwrap();
        let msg = load_error(dir.path());
        assert!(msg.contains("safetensors"), "{what}: {msg}");
    }
}

#[test]
fn unsupported_configs_are_model_errors() {
    let real = model_dir();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real.join("config.json")).unwrap()).unwrap();
    let edits: Vec<(&str, serde_json::Value, &str)> = vec![
        ("num_attention_heads", serde_json::json!(7), "divisible"),
        ("hidden_act", serde_json::json!("swish"), "hidden_act"),
        ("model_type", serde_json::json!("gpt2"), "model_type"),
        // Consistent config, but the tensors have other shapes.
        ("hidden_size", serde_json::json!(768), "shape"),
        ("intermediate_size", serde_json::json!(3072), "shape"),
        ("vocab_size", serde_json::json!(1000), "vocab"),
    ];
    for (key, value, expect) in edits {
        let dir = partial_model(&["tokenizer.json", "model.safetensors"]);
        let mut c = config.clone();
        c[key] = value;
        std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
        let msg = load_error(dir.path());
        assert!(msg.contains(expect), "{key}: {msg}");
    }
    // Malformed JSON files.
    for broken in ["config.json", "tokenizer.json"] {
        let keep: Vec<&str> = FILES.iter().copied().filter(|f| *f != broken).collect();
        let dir = partial_model(&keep);
        std::fs::write(dir.path().join(broken), "{ not json").unwrap();
        let msg = load_error(dir.path());
        assert!(msg.contains(broken), "{broken}: {msg}");
    }
    // Unsupported pooling.
    let dir = partial_model(&FILES);
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_weightedmean_tokens": true}"#,
    )
    .unwrap();
    let msg = load_error(dir.path());
    assert!(msg.contains("pooling"), "{msg}");
}
