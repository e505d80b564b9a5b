//! A collection's model: pooling as the model's files say (on a tiny BERT
//! these tests write themselves, `tiny_model`), binding, text in and text
//! queries out through the library with all-MiniLM-L6-v2, and a different
//! model (one flipped weight bit) refused.
//!
//! The model directory is `$QUIVER_TEST_MODEL`, else
//! `.cache/models/all-MiniLM-L6-v2` at the workspace root, as fetched by
//! `scripts/fetch-model`. Without it these tests fail.

#![cfg(feature = "embed")]
#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quiver::embed::{Embedder, SentenceEmbedder};
use quiver::{CollectionConfig, Error, Record, SearchOptions, Store};

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
        "test model not found at {}: run scripts/fetch-model",
        dir.display()
    );
    dir
}

mod tiny_model;

/// A tiny model (see `tiny_model`) with the given extra files.
fn variant(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model::write(tmp.path(), 7, extra);
    tmp
}

fn pooling(mode: &str) -> String {
    format!(
        "{{\"word_embedding_dimension\": {}, \"pooling_mode_{mode}\": true}}",
        tiny_model::HIDDEN
    )
}

const MODULES: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
  {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
]"#;

/// Without the Normalize module.
const MODULES_RAW: &str = r#"[
  {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}
]"#;

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{what}: differs by {worst}");
}

#[test]
fn pooling_and_normalisation_follow_the_model_files() {
    let text = "the red cats sat on a mat and the dog is first";
    // No modules.json, no pooling settings: mean, normalised.
    let plain = variant(&[]);
    let base = SentenceEmbedder::load(plain.path()).unwrap();
    let tokens = base.token_vectors(text);
    assert_eq!(tokens.len(), base.tokenize(text).len());
    assert!(tokens.len() > 10, "{} tokens", tokens.len());
    let h = base.dimension();
    assert_eq!(h, tiny_model::HIDDEN);
    let sum: Vec<f32> = (0..h).map(|j| tokens.iter().map(|t| t[j]).sum()).collect();
    let n = tokens.len() as f32;
    let mean = unit(sum.iter().map(|x| x / n).collect());
    close(&base.embed(&[text]).unwrap()[0], &mean, "default mean");

    let dir = variant(&[
        ("modules.json", MODULES),
        ("1_Pooling/config.json", &pooling("mean_tokens")),
    ]);
    let m = SentenceEmbedder::load(dir.path()).unwrap();
    close(&m.embed(&[text]).unwrap()[0], &mean, "mean");
    assert_eq!(
        (m.binding().pooling.as_str(), m.binding().normalize),
        ("mean", true)
    );

    let dir = variant(&[
        ("modules.json", MODULES),
        ("1_Pooling/config.json", &pooling("cls_token")),
    ]);
    let m = SentenceEmbedder::load(dir.path()).unwrap();
    close(
        &m.embed(&[text]).unwrap()[0],
        &unit(tokens[0].clone()),
        "cls",
    );
    assert_eq!(m.binding().pooling, "cls");

    let dir = variant(&[
        ("modules.json", MODULES),
        ("1_Pooling/config.json", &pooling("max_tokens")),
    ]);
    let m = SentenceEmbedder::load(dir.path()).unwrap();
    let max: Vec<f32> = (0..h)
        .map(|j| {
            tokens
                .iter()
                .map(|t| t[j])
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    close(&m.embed(&[text]).unwrap()[0], &unit(max), "max");
    assert_eq!(m.binding().pooling, "max");

    // No Normalize module, pooling settings at the path modules.json gives.
    let dir = variant(&[
        ("modules.json", MODULES_RAW),
        ("pool/config.json", &pooling("mean_sqrt_len_tokens")),
    ]);
    let m = SentenceEmbedder::load(dir.path()).unwrap();
    let raw: Vec<f32> = sum.iter().map(|x| x / n.sqrt()).collect();
    close(
        &m.embed(&[text]).unwrap()[0],
        &raw,
        "mean_sqrt_len, not normalised",
    );
    assert!(!m.binding().normalize);
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 0.01, "a raw vector: norm {norm}");

    // Prompts become the binding's prefixes.
    let dir = variant(&[(
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "query: ", "passage": "passage: "}}"#,
    )]);
    let b = SentenceEmbedder::load(dir.path()).unwrap().binding();
    assert_eq!(
        (b.query_prefix.as_str(), b.document_prefix.as_str()),
        ("query: ", "passage: ")
    );

    // Another seed is another model: other vectors, another digest.
    let other = tempfile::tempdir().unwrap();
    tiny_model::write(other.path(), 8, &[]);
    let o = SentenceEmbedder::load(other.path()).unwrap();
    assert_ne!(o.id(), base.id());
    assert_ne!(o.embed(&[text]).unwrap(), base.embed(&[text]).unwrap());
}

#[test]
fn unsupported_model_files_name_the_file_and_field() {
    let cases = [
        (
            vec![("1_Pooling/config.json", pooling("weightedmean_tokens"))],
            "1_Pooling/config.json: unsupported pooling",
        ),
        (
            vec![(
                "modules.json",
                MODULES.replace("models.Normalize", "models.Dense"),
            )],
            "modules.json: module \"sentence_transformers.models.Dense\"",
        ),
        (
            vec![("modules.json", "{\"not\": \"a list\"}".to_string())],
            "modules.json: a list of modules expected",
        ),
        (
            vec![("modules.json", MODULES.to_string())],
            "missing 1_Pooling/config.json",
        ),
        (
            vec![(
                "1_Pooling/config.json",
                "{\"word_embedding_dimension\": 384, \"pooling_mode_mean_tokens\": true}"
                    .to_string(),
            )],
            "word_embedding_dimension 384, but hidden_size is 16",
        ),
    ];
    for (files, needle) in cases {
        let extra: Vec<(&str, &str)> = files.iter().map(|(p, b)| (*p, b.as_str())).collect();
        let dir = variant(&extra);
        match SentenceEmbedder::load(dir.path()) {
            Err(e @ Error::Model { .. }) => {
                assert!(e.to_string().contains(needle), "{e} should say {needle:?}")
            }
            Err(e) => panic!("expected a model error, got {e:?}"),
            Ok(_) => panic!("{needle}: loaded"),
        }
    }
}

/// The same files with one weight bit flipped: another model of the same shape.
fn other_model(dir: &Path) -> PathBuf {
    let real = model_dir();
    let other = dir.join("other-model");
    std::fs::create_dir(&other).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(real.join(f), other.join(f)).unwrap();
    }
    let mut weights = std::fs::read(real.join("model.safetensors")).unwrap();
    let last = weights.len() - 8;
    weights[last] ^= 1;
    std::fs::write(other.join("model.safetensors"), weights).unwrap();
    other
}

#[test]
fn a_bound_collection_embeds_its_texts_in_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let model = Arc::new(SentenceEmbedder::load(model_dir()).unwrap());
    {
        let store = Store::open(&path).unwrap();
        let notes = store
            .create_collection("notes", &CollectionConfig::for_embedder(&*model))
            .unwrap();
        let texts = [
            ("cat", "a cat asleep on a warm windowsill"),
            ("db", "an embedded vector database on one machine"),
            ("rain", "heavy rain is expected on tuesday"),
        ];
        let records: Vec<Record> = texts
            .iter()
            .map(|(id, t)| Record::new(*id, Vec::new()).with_text(*t))
            .collect();
        notes.upsert_texts(&records).unwrap();
        let blank = [Record::new("x", Vec::new()).with_text(" \n")];
        assert!(matches!(
            notes.upsert_texts(&blank),
            Err(Error::InvalidText { .. })
        ));
        let given = [Record::new("x", vec![0.5; 384]).with_text("has a vector")];
        assert!(matches!(
            notes.upsert_texts(&given),
            Err(Error::InvalidVector { .. })
        ));
        assert_eq!(notes.count().unwrap(), 3);
        store.close().unwrap();
    }
    // A new handle (another process, to the store) finds the model itself.
    let store = Store::open_read_only(&path).unwrap();
    let notes = store.get_collection("notes").unwrap();
    let hits = notes
        .query_text("kitten napping", &SearchOptions::new(1))
        .unwrap()
        .hits;
    assert_eq!(hits[0].id, "cat");
    let want = model.embed(&["a cat asleep on a warm windowsill"]).unwrap();
    let got = notes.get("cat").unwrap().unwrap().vector;
    assert_eq!(got, want[0]);
    let binding = notes.model().unwrap().unwrap();
    assert_eq!(binding.id, model.id());
    assert_eq!(
        binding.source,
        std::fs::canonicalize(model_dir())
            .unwrap()
            .to_str()
            .unwrap()
    );

    // Another model is refused, naming both.
    let other = SentenceEmbedder::load(other_model(dir.path())).unwrap();
    let e = notes.use_embedder(Arc::new(other)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    assert!(
        msg.contains("other-model@") && msg.contains(model.id()),
        "{msg}"
    );
}

#[test]
fn a_model_is_bound_later_and_only_to_its_dimension() {
    let store = Store::open_in_memory().unwrap();
    let model = Arc::new(SentenceEmbedder::load(model_dir()).unwrap());
    let plain = store
        .create_collection("plain", &CollectionConfig::new(384))
        .unwrap();
    assert!(matches!(plain.embed_query("x"), Err(Error::Model { .. })));
    plain.bind_embedder(model.clone()).unwrap();
    assert_eq!(plain.model().unwrap().unwrap().id, model.id());
    let mut binding = plain.model().unwrap().unwrap();
    binding.query_prefix = "query: ".into();
    plain.bind_model(&binding).unwrap();
    // The prefix goes before the query.
    let q = plain.embed_query("rain").unwrap();
    assert_eq!(q, model.embed(&["query: rain"]).unwrap()[0]);
    let small = store
        .create_collection("small", &CollectionConfig::new(8))
        .unwrap();
    assert!(matches!(
        small.bind_embedder(model),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(small.model().unwrap().is_none());
}
