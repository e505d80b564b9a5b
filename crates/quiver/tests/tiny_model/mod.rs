//! A tiny BERT sentence model written by the tests themselves: random
//! weights (seeded), a 40-word WordPiece vocabulary, hidden size 16, two
//! heads, one layer. Small enough to load in a millisecond, real enough to
//! run every step of the encoder, and free of any download.

use std::path::Path;

pub const HIDDEN: usize = 16;
const HEADS: usize = 2;
const INTERMEDIATE: usize = 32;
const POSITIONS: usize = 64;

/// The vocabulary: specials first, then words and a few suffixes.
const VOCAB: &[&str] = &[
    "[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat",
    "vector", "store", "search", "query", "text", "model", "pool", "token", "one", "two", "three",
    "red", "blue", "green", "fast", "slow", "local", "first", "##s", "##ing", "##ed", "and", "of",
    "to", "in", "is", "it", ".",
];

/// A small deterministic generator (xorshift), values in -0.5..0.5.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Write a model directory to `dir`: `config.json`, `tokenizer.json` and
/// `model.safetensors` from `seed` (another seed: another model of the
/// same shape), plus each `(path, contents)` of `extra`.
pub fn write(dir: &Path, seed: u64, extra: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "model_type": "bert",
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "num_hidden_layers": 1,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": POSITIONS,
        "type_vocab_size": 2,
        "vocab_size": VOCAB.len(),
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = VOCAB
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .collect();
    let tokenizer = serde_json::json!({
        "model": {
            "type": "WordPiece",
            "vocab": vocab,
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
        },
        "normalizer": {"type": "BertNormalizer", "lowercase": true, "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 1], "sep": ["[SEP]", 2]},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();

    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: &str, shape: &[usize], fill: Option<f32>| {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| fill.unwrap_or_else(|| rng.next())).collect();
        tensors.push((name.to_string(), shape.to_vec(), data));
    };
    let (h, i) = (HIDDEN, INTERMEDIATE);
    add("embeddings.word_embeddings.weight", &[VOCAB.len(), h], None);
    add(
        "embeddings.position_embeddings.weight",
        &[POSITIONS, h],
        None,
    );
    add("embeddings.token_type_embeddings.weight", &[2, h], None);
    add("embeddings.LayerNorm.weight", &[h], Some(1.0));
    add("embeddings.LayerNorm.bias", &[h], Some(0.0));
    let l = "encoder.layer.0";
    for part in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        add(&format!("{l}.{part}.weight"), &[h, h], None);
        add(&format!("{l}.{part}.bias"), &[h], None);
    }
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        add(&format!("{l}.{norm}.weight"), &[h], Some(1.0));
        add(&format!("{l}.{norm}.bias"), &[h], Some(0.0));
    }
    add(&format!("{l}.intermediate.dense.weight"), &[i, h], None);
    add(&format!("{l}.intermediate.dense.bias"), &[i], None);
    add(&format!("{l}.output.dense.weight"), &[h, i], None);
    add(&format!("{l}.output.dense.bias"), &[h], None);
    std::fs::write(dir.join("model.safetensors"), safetensors(&tensors)).unwrap();

    for (path, body) in extra {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// The safetensors format: an 8-byte little-endian header length, the
/// JSON header (dtype, shape, data offsets per tensor), the raw data.
fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}
