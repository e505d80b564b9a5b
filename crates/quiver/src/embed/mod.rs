//! Local sentence embeddings (feature `embed`): text in, vectors out, in
//! pure Rust, from a Hugging Face model directory.
//!
//! [`SentenceEmbedder`] loads a BERT-family sentence-transformers model
//! (for example all-MiniLM-L6-v2) from a directory holding `config.json`,
//! `tokenizer.json` and `model.safetensors` (plus, optionally,
//! `sentence_bert_config.json` and `1_Pooling/config.json`), and produces
//! the same unit-length vectors as the Python `sentence-transformers`.
//!
//! ```no_run
//! use quiver::embed::{Embedder, SentenceEmbedder};
//!
//! let model = SentenceEmbedder::load(".cache/models/all-MiniLM-L6-v2")?;
//! let vectors = model.embed(&["a local vector store", "embedded search"])?;
//! assert_eq!(vectors[0].len(), model.dimension());
//! # Ok::<(), quiver::Error>(())
//! ```

mod bert;
mod gemm;
mod safetensors;
mod tokenizer;
mod unicode_tables;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::sync::MutexExt;
use bert::{Bert, BertConfig, Pooling};
use safetensors::SafeTensors;
use tokenizer::Tokenizer;

/// Something that turns texts into vectors.
pub trait Embedder: Send + Sync {
    /// A stable identifier stamped on collections, e.g.
    /// `"all-MiniLM-L6-v2@<first 16 hex of blake3 of model.safetensors>"`.
    fn id(&self) -> &str;
    /// The length of every vector.
    fn dimension(&self) -> usize;
    /// Token limit, special tokens included (256 for all-MiniLM-L6-v2):
    /// longer texts are truncated.
    fn max_tokens(&self) -> usize;
    /// Embeds texts in order; every output vector has unit length.
    ///
    /// # Errors
    /// [`Error::Model`] when the model cannot be run.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// Token budget of one chunk of work: bounds the scratch memory of a
/// forward pass (about 15 KB per token for a 384-wide model).
const MAX_CHUNK_TOKENS: usize = 4096;

/// A sentence-transformers BERT model run locally: WordPiece tokenizer,
/// BERT encoder, mean (or CLS) pooling and L2 normalisation.
///
/// The vector of a text does not depend on the other texts embedded with
/// it nor on the number of threads.
#[derive(Debug)]
pub struct SentenceEmbedder {
    id: String,
    tokenizer: Tokenizer,
    model: Bert,
    pooling: Pooling,
    threads: usize,
}

fn model_err(dir: &Path, reason: impl Into<String>) -> Error {
    Error::Model {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a required file of the model directory.
fn read_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => model_err(dir, format!("missing {name}")),
        _ => model_err(dir, format!("cannot read {name}: {e}")),
    })
}

/// Reads an optional JSON file of the model directory.
fn read_json(dir: &Path, name: &str, required: bool) -> Result<Option<Value>> {
    let bytes = match read_file(dir, name) {
        Ok(b) => b,
        Err(_) if !required && !dir.join(name).exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| model_err(dir, format!("{name} is not valid JSON: {e}")))
}

impl SentenceEmbedder {
    /// Loads a model directory: `config.json`, `tokenizer.json`,
    /// `model.safetensors`, and optionally `sentence_bert_config.json`
    /// (`max_seq_length`, `do_lower_case`) and `1_Pooling/config.json`.
    ///
    /// # Errors
    /// [`Error::Model`] when the directory or a file is missing or
    /// unreadable, a file is corrupt, the configuration is not supported
    /// (not BERT, hidden size not divisible by the heads, a pooling other
    /// than mean or CLS, a non-WordPiece tokenizer), or a tensor is missing
    /// or has the wrong shape.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(model_err(dir, "model directory not found"));
        }
        let config = read_json(dir, "config.json", true)?.unwrap_or(Value::Null);
        let cfg = BertConfig::from_json(&config).map_err(|r| model_err(dir, r))?;
        let tokenizer_json = read_json(dir, "tokenizer.json", true)?.unwrap_or(Value::Null);
        let st_config = read_json(dir, "sentence_bert_config.json", false)?;
        let max_len = match st_config.as_ref().and_then(|c| c.get("max_seq_length")) {
            None | Some(Value::Null) => cfg.max_positions.min(512),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    model_err(
                        dir,
                        format!("sentence_bert_config.json: bad max_seq_length {v}"),
                    )
                })?
                .min(cfg.max_positions),
        };
        let pre_lowercase = st_config
            .as_ref()
            .and_then(|c| c.get("do_lower_case"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let pooling = read_pooling(dir, cfg.hidden)?;
        let tokenizer = Tokenizer::from_json(&tokenizer_json, max_len, pre_lowercase)
            .map_err(|r| model_err(dir, r))?;
        let max_id = tokenizer.max_id() as usize;
        if max_id >= cfg.vocab {
            return Err(model_err(
                dir,
                format!(
                    "tokenizer.json has token id {max_id}, beyond vocab_size {}",
                    cfg.vocab
                ),
            ));
        }
        let bytes = read_file(dir, "model.safetensors")?;
        let hash = blake3::hash(&bytes).to_hex();
        let st = SafeTensors::parse(bytes).map_err(|r| model_err(dir, r))?;
        let model = Bert::load(cfg, &st).map_err(|r| model_err(dir, r))?;
        drop(st);
        let name = std::fs::canonicalize(dir)
            .ok()
            .as_deref()
            .and_then(Path::file_name)
            .or_else(|| dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(SentenceEmbedder {
            id: format!("{name}@{}", &hash.as_str()[..16]),
            tokenizer,
            model,
            pooling,
            threads,
        })
    }

    /// Uses at most `threads` threads per [`Embedder::embed`] call (at
    /// least one; the default is the machine's available parallelism).
    /// The vectors do not depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Token ids after truncation, `[CLS]` and `[SEP]` included.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text)
    }
}

/// Reads `1_Pooling/config.json` (mean pooling when absent).
fn read_pooling(dir: &Path, hidden: usize) -> Result<Pooling> {
    let Some(v) = read_json(dir, "1_Pooling/config.json", false)? else {
        return Ok(Pooling::Mean);
    };
    if let Some(dim) = v.get("word_embedding_dimension").and_then(Value::as_u64) {
        if dim != hidden as u64 {
            return Err(model_err(
                dir,
                format!("1_Pooling/config.json: word_embedding_dimension {dim}, but hidden_size is {hidden}"),
            ));
        }
    }
    let on = |k: &str| v.get(k).and_then(Value::as_bool) == Some(true);
    let modes = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ];
    let chosen: Vec<&str> = modes.iter().copied().filter(|m| on(m)).collect();
    match chosen.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        _ => Err(model_err(
            dir,
            format!("1_Pooling/config.json: unsupported pooling {chosen:?} (mean or cls expected)"),
        )),
    }
}

impl Embedder for SentenceEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimension(&self) -> usize {
        self.model.config().hidden
    }

    fn max_tokens(&self) -> usize {
        self.tokenizer.max_len()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenizer.encode(t)).collect();
        // Longest first, so that the big chunks start early and the threads
        // finish together; the order does not change any vector.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let total: usize = ids.iter().map(Vec::len).sum();
        let threads = self.threads.min(texts.len()).max(1);
        // Several chunks per thread for balance, each a single matrix
        // product over all its tokens.
        let target = (total / (threads * 4)).clamp(256, MAX_CHUNK_TOKENS);
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut tokens = 0;
        for &i in &order {
            if chunks.is_empty() || tokens + ids[i].len() > target {
                chunks.push(Vec::new());
                tokens = 0;
            }
            tokens += ids[i].len();
            if let Some(last) = chunks.last_mut() {
                last.push(i);
            }
        }
        let run = |chunk: &[usize]| {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            self.model.embed(&seqs, self.pooling)
        };
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        if threads == 1 || chunks.len() == 1 {
            for chunk in &chunks {
                for (&i, v) in chunk.iter().zip(run(chunk)) {
                    out[i] = v;
                }
            }
            return Ok(out);
        }
        let next = AtomicUsize::new(0);
        let done = Mutex::new(&mut out);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(chunks.len()) {
                scope.spawn(|| loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(c) else { break };
                    let vectors = run(chunk);
                    let mut out = done.locked();
                    for (&i, v) in chunk.iter().zip(vectors) {
                        out[i] = v;
                    }
                });
            }
        });
        Ok(out)
    }
}
