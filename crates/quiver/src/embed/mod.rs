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
mod safetensors;
mod tokenizer;
mod unicode_tables;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use crate::config::{CollectionConfig, ModelBinding};
use crate::error::{Error, Result};
use crate::sync::MutexExt;
use bert::{Bert, BertConfig, Pooling};
use safetensors::SafeTensors;
use tokenizer::Tokenizer;

/// Something that turns texts into vectors.
///
/// A collection bound to an embedder ([`crate::Collection::bind_model`])
/// embeds texts given without vectors, and text queries, with it.
pub trait Embedder: Send + Sync {
    /// A stable identifier stamped on collections, e.g.
    /// `"all-MiniLM-L6-v2@<first 16 hex of blake3 of model.safetensors>"`.
    fn id(&self) -> &str;
    /// The length of every vector.
    fn dimension(&self) -> usize;
    /// Token limit, special tokens included (256 for all-MiniLM-L6-v2):
    /// longer texts are truncated.
    fn max_tokens(&self) -> usize;
    /// Embeds texts in order; every output vector has unit length unless
    /// [`ModelBinding::normalize`] says otherwise.
    ///
    /// # Errors
    /// [`Error::Model`] when the model cannot be run.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// What a collection bound to this model records about it. The default
    /// takes [`Embedder::id`] as the source, pooling `custom`, unit vectors
    /// and no prefixes.
    fn binding(&self) -> ModelBinding {
        ModelBinding {
            source: self.id().to_string(),
            id: self.id().to_string(),
            dimension: self.dimension(),
            pooling: "custom".into(),
            normalize: true,
            max_tokens: self.max_tokens(),
            query_prefix: String::new(),
            document_prefix: String::new(),
        }
    }
}

impl CollectionConfig {
    /// A config for the vectors of `embedder`: its dimension, bound to its
    /// model ([`ModelBinding`]), every other setting at its default.
    pub fn for_embedder(embedder: &dyn Embedder) -> Self {
        let binding = embedder.binding();
        CollectionConfig {
            model: Some(binding.id.clone()),
            embedding: Some(binding),
            ..CollectionConfig::new(embedder.dimension())
        }
    }
}

/// Token budget of one chunk of work: bounds the scratch memory of a
/// forward pass (about 15 KB per token for a 384-wide model).
const MAX_CHUNK_TOKENS: usize = 4096;

/// A sentence-transformers BERT model run locally: WordPiece tokenizer,
/// BERT encoder, pooling (mean, CLS, max or mean/sqrt(len), as the model's
/// files say) and L2 normalisation (when its `modules.json` has a
/// `Normalize` module, or has no `modules.json`).
///
/// The vector of a text does not depend on the other texts embedded with
/// it nor on the number of threads.
#[derive(Debug)]
pub struct SentenceEmbedder {
    id: String,
    source: String,
    tokenizer: Tokenizer,
    model: Bert,
    pooling: Pooling,
    normalize: bool,
    /// The `query` and `document` prompts of
    /// `config_sentence_transformers.json`, if any.
    prompts: (String, String),
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
    /// (`max_seq_length`, `do_lower_case`), `modules.json` (where the
    /// pooling settings are, whether vectors are normalised),
    /// `1_Pooling/config.json` (or the path `modules.json` gives) and
    /// `config_sentence_transformers.json` (query and document prompts).
    ///
    /// # Errors
    /// [`Error::Model`] when the directory or a file is missing or
    /// unreadable, a file is corrupt, the configuration is not supported
    /// (not BERT, hidden size not divisible by the heads, a pooling
    /// other than mean, CLS, max or mean/sqrt(len), a module other than
    /// Transformer, Pooling and Normalize, a non-WordPiece tokenizer), or a tensor is missing
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
        let (pooling_dir, normalize, listed) = read_modules(dir)?;
        let pooling = read_pooling(dir, &pooling_dir, listed, cfg.hidden)?;
        let prompts = read_prompts(dir)?;
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
        let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let name = absolute
            .file_name()
            .or_else(|| dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(SentenceEmbedder {
            id: format!("{name}@{}", &hash.as_str()[..16]),
            source: absolute.to_string_lossy().into_owned(),
            tokenizer,
            model,
            pooling,
            normalize,
            prompts,
            threads,
        })
    }

    /// Records `source` as where the model came from (a Hugging Face Hub
    /// id, say, for a model loaded from the Hub's cache) instead of its
    /// directory.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The last layer's vector of every token of `text` (after truncation,
    /// `[CLS]` and `[SEP]` included): what pooling makes one vector of.
    pub fn token_vectors(&self, text: &str) -> Vec<Vec<f32>> {
        let ids = self.tokenizer.encode(text);
        let h = self.model.config().hidden;
        self.model
            .token_vectors(&[&ids])
            .chunks_exact(h)
            .map(<[f32]>::to_vec)
            .collect()
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

/// Reads `modules.json`, if present: the directory of the `Pooling`
/// module, whether a `Normalize` module follows, and whether the file was
/// there. Without the file: `1_Pooling`, normalised (all-MiniLM-L6-v2's
/// layout).
fn read_modules(dir: &Path) -> Result<(String, bool, bool)> {
    let Some(v) = read_json(dir, "modules.json", false)? else {
        return Ok(("1_Pooling".into(), true, false));
    };
    let modules = v
        .as_array()
        .ok_or_else(|| model_err(dir, "modules.json: a list of modules expected"))?;
    let (mut pooling, mut normalize, mut transformer) = (None, false, false);
    for m in modules {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
        let path = m.get("path").and_then(Value::as_str).unwrap_or("");
        match kind.rsplit('.').next().unwrap_or("") {
            "Transformer" => transformer = true,
            "Pooling" => pooling = Some(path.to_string()),
            "Normalize" => normalize = true,
            _ => {
                return Err(model_err(
                    dir,
                    format!("modules.json: module {kind:?} (at {path:?}) is not supported: Transformer, Pooling and Normalize are"),
                ))
            }
        }
    }
    if !transformer {
        return Err(model_err(dir, "modules.json: no Transformer module"));
    }
    let pooling = pooling.ok_or_else(|| model_err(dir, "modules.json: no Pooling module"))?;
    if pooling.is_empty() || pooling.contains("..") || pooling.starts_with('/') {
        return Err(model_err(
            dir,
            format!("modules.json: bad Pooling path {pooling:?}"),
        ));
    }
    Ok((pooling, normalize, true))
}

/// Reads `<pooling_dir>/config.json`: required when `modules.json` named
/// the directory (guessing mean would embed wrongly without a word), mean
/// pooling when absent otherwise.
fn read_pooling(dir: &Path, pooling_dir: &str, listed: bool, hidden: usize) -> Result<Pooling> {
    let file = format!("{pooling_dir}/config.json");
    let Some(v) = read_json(dir, &file, listed)? else {
        return Ok(Pooling::Mean);
    };
    if let Some(dim) = v.get("word_embedding_dimension").and_then(Value::as_u64) {
        if dim != hidden as u64 {
            return Err(model_err(
                dir,
                format!("{file}: word_embedding_dimension {dim}, but hidden_size is {hidden}"),
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
        ["pooling_mode_max_tokens"] => Ok(Pooling::Max),
        ["pooling_mode_mean_sqrt_len_tokens"] => Ok(Pooling::MeanSqrtLen),
        _ => Err(model_err(
            dir,
            format!("{file}: unsupported pooling {chosen:?} (exactly one of mean, cls, max, mean_sqrt_len expected)"),
        )),
    }
}

/// The `query` and `document` (or `passage`) prompts of
/// `config_sentence_transformers.json`, empty when absent.
fn read_prompts(dir: &Path) -> Result<(String, String)> {
    let Some(v) = read_json(dir, "config_sentence_transformers.json", false)? else {
        return Ok(Default::default());
    };
    let prompt = |names: &[&str]| -> String {
        names
            .iter()
            .find_map(|n| v.get("prompts")?.get(n)?.as_str())
            .unwrap_or("")
            .to_string()
    };
    Ok((prompt(&["query"]), prompt(&["document", "passage"])))
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

    fn binding(&self) -> ModelBinding {
        ModelBinding {
            source: self.source.clone(),
            id: self.id.clone(),
            dimension: self.dimension(),
            pooling: self.pooling.as_str().into(),
            normalize: self.normalize,
            max_tokens: self.max_tokens(),
            query_prefix: self.prompts.0.clone(),
            document_prefix: self.prompts.1.clone(),
        }
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
            self.model.embed(&seqs, self.pooling, self.normalize)
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
