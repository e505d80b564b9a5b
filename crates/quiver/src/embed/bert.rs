//! A BERT encoder (inference only) with mean or CLS pooling.
//!
//! The tokens of all sequences of a batch are packed into one matrix
//! without padding: the dense layers run as one matrix product over every
//! token, and attention runs per sequence over its own tokens only. Each
//! token's values therefore do not depend on the rest of the batch.

use serde_json::Value;

use super::safetensors::SafeTensors;
use crate::gemm::{gemm, View};

/// The activation of the intermediate layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// The exact GELU, `x · Φ(x)` (`gelu`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(0, x)`.
    Relu,
}

/// The settings of `config.json` that the encoder needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BertConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub vocab: usize,
    pub activation: Activation,
}

impl BertConfig {
    /// Reads and checks a `config.json` document.
    pub(crate) fn from_json(v: &Value) -> Result<BertConfig, String> {
        let model_type = v.get("model_type").and_then(Value::as_str);
        if let Some(t) = model_type {
            if t != "bert" {
                return Err(format!(
                    "config.json: unsupported model_type {t:?} (bert expected)"
                ));
            }
        } else {
            let archs = v.get("architectures").and_then(Value::as_array);
            let bert = archs.is_some_and(|a| {
                a.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.starts_with("Bert")))
            });
            if !bert {
                return Err("config.json: not a BERT model (no model_type \"bert\")".into());
            }
        }
        let size = |name: &str, default: Option<usize>| -> Result<usize, String> {
            match v.get(name) {
                None | Some(Value::Null) => {
                    default.ok_or_else(|| format!("config.json: missing {name}"))
                }
                Some(x) => x
                    .as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .filter(|&x| x > 0 && x <= 1 << 20)
                    .ok_or_else(|| format!("config.json: {name} = {x} is not a valid size")),
            }
        };
        let hidden = size("hidden_size", None)?;
        let heads = size("num_attention_heads", None)?;
        let cfg = BertConfig {
            hidden,
            layers: size("num_hidden_layers", None)?,
            heads,
            intermediate: size("intermediate_size", None)?,
            eps: match v.get("layer_norm_eps") {
                None | Some(Value::Null) => 1e-12,
                Some(x) => x
                    .as_f64()
                    .filter(|e| e.is_finite() && *e >= 0.0)
                    .ok_or_else(|| format!("config.json: layer_norm_eps = {x} is not valid"))?
                    as f32,
            },
            max_positions: size("max_position_embeddings", Some(512))?,
            type_vocab: size("type_vocab_size", Some(2))?,
            vocab: size("vocab_size", None)?,
            activation: match v.get("hidden_act").and_then(Value::as_str) {
                None | Some("gelu") => Activation::Gelu,
                Some("gelu_new") | Some("gelu_pytorch_tanh") => Activation::GeluTanh,
                Some("relu") => Activation::Relu,
                Some(other) => {
                    return Err(format!("config.json: unsupported hidden_act {other:?}"))
                }
            },
        };
        if hidden % heads != 0 {
            return Err(format!(
                "config.json: hidden_size {hidden} is not divisible by num_attention_heads {heads}"
            ));
        }
        if let Some(p) = v.get("position_embedding_type").and_then(Value::as_str) {
            if p != "absolute" {
                return Err(format!(
                    "config.json: unsupported position_embedding_type {p:?} (absolute expected)"
                ));
            }
        }
        Ok(cfg)
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// The mean over the tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// The largest value of each component over the tokens.
    Max,
    /// The sum over the tokens divided by the square root of their number.
    MeanSqrtLen,
}

impl Pooling {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanSqrtLen => "mean_sqrt_len",
        }
    }

    /// Pool `rows` (token vectors of width `h`, one sequence).
    pub(crate) fn pool(self, rows: &[f32], h: usize) -> Vec<f32> {
        let n = (rows.len() / h).max(1) as f32;
        match self {
            Pooling::Cls => rows[..h].to_vec(),
            Pooling::Max => {
                let mut v = vec![f32::NEG_INFINITY; h];
                for row in rows.chunks_exact(h) {
                    for (a, b) in v.iter_mut().zip(row) {
                        *a = a.max(*b);
                    }
                }
                v
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut v = vec![0.0f32; h];
                for row in rows.chunks_exact(h) {
                    for (a, b) in v.iter_mut().zip(row) {
                        *a += b;
                    }
                }
                let by = if self == Pooling::Mean { n } else { n.sqrt() };
                v.iter_mut().for_each(|a| *a /= by);
                v
            }
        }
    }
}

#[derive(Debug)]
struct Linear {
    /// `[out, in]`, row-major, as stored.
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Linear {
    fn load(st: &SafeTensors, name: &str, outputs: usize, inputs: usize) -> Result<Self, String> {
        Ok(Linear {
            w: st.get_f32(&format!("{name}.weight"), &[outputs, inputs])?,
            b: st.get_f32(&format!("{name}.bias"), &[outputs])?,
            inputs,
            outputs,
        })
    }

    /// Stacks linears with the same inputs (Q, K and V) into one.
    fn stack(parts: Vec<Linear>) -> Linear {
        let inputs = parts.first().map_or(0, |p| p.inputs);
        let mut out = Linear {
            w: Vec::new(),
            b: Vec::new(),
            inputs,
            outputs: 0,
        };
        for p in parts {
            out.w.extend_from_slice(&p.w);
            out.b.extend_from_slice(&p.b);
            out.outputs += p.outputs;
        }
        out
    }

    /// `y = x · Wᵀ + b` for the `rows` rows of `x`.
    fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let y = &mut y[..rows * self.outputs];
        for row in y.chunks_exact_mut(self.outputs) {
            row.copy_from_slice(&self.b);
        }
        gemm(
            rows,
            self.inputs,
            self.outputs,
            1.0,
            View::rows(x, 0, self.inputs),
            View::transposed(&self.w, 0, self.inputs),
            1.0,
            y,
            0,
            self.outputs,
        );
    }
}

#[derive(Debug)]
struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(st: &SafeTensors, name: &str, size: usize, eps: f32) -> Result<Self, String> {
        // Old TF-converted checkpoints name the parameters gamma and beta.
        let (g, b) = if st.contains(&format!("{name}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(LayerNorm {
            gamma: st.get_f32(&format!("{name}.{g}"), &[size])?,
            beta: st.get_f32(&format!("{name}.{b}"), &[size])?,
            eps,
        })
    }

    /// Normalizes every row of `x` in place.
    fn apply(&self, x: &mut [f32]) {
        let n = self.gamma.len();
        for row in x.chunks_exact_mut(n) {
            let mean = row.iter().sum::<f32>() / n as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    /// Q, K and V stacked: `[3·hidden, hidden]`.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A loaded BERT encoder.
#[derive(Debug)]
pub(crate) struct Bert {
    cfg: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token type embeddings (every token has type 0).
    token_type: Vec<f32>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Scratch buffers of one forward pass.
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

impl Bert {
    /// Loads the weights from `st`, with or without a `bert.` prefix.
    pub(crate) fn load(cfg: BertConfig, st: &SafeTensors) -> Result<Bert, String> {
        let p = if st.contains("embeddings.word_embeddings.weight") {
            ""
        } else if st.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            return Err(
                "model.safetensors has no embeddings.word_embeddings.weight: not a BERT model"
                    .into(),
            );
        };
        let h = cfg.hidden;
        let word = st.get_f32(
            &format!("{p}embeddings.word_embeddings.weight"),
            &[cfg.vocab, h],
        )?;
        let position = st.get_f32(
            &format!("{p}embeddings.position_embeddings.weight"),
            &[cfg.max_positions, h],
        )?;
        let mut token_type = st.get_f32(
            &format!("{p}embeddings.token_type_embeddings.weight"),
            &[cfg.type_vocab, h],
        )?;
        token_type.truncate(h);
        let embedding_norm = LayerNorm::load(st, &format!("{p}embeddings.LayerNorm"), h, cfg.eps)?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let l = format!("{p}encoder.layer.{i}");
            let qkv = Linear::stack(vec![
                Linear::load(st, &format!("{l}.attention.self.query"), h, h)?,
                Linear::load(st, &format!("{l}.attention.self.key"), h, h)?,
                Linear::load(st, &format!("{l}.attention.self.value"), h, h)?,
            ]);
            layers.push(Layer {
                qkv,
                attention_out: Linear::load(st, &format!("{l}.attention.output.dense"), h, h)?,
                attention_norm: LayerNorm::load(
                    st,
                    &format!("{l}.attention.output.LayerNorm"),
                    h,
                    cfg.eps,
                )?,
                intermediate: Linear::load(
                    st,
                    &format!("{l}.intermediate.dense"),
                    cfg.intermediate,
                    h,
                )?,
                output: Linear::load(st, &format!("{l}.output.dense"), h, cfg.intermediate)?,
                output_norm: LayerNorm::load(st, &format!("{l}.output.LayerNorm"), h, cfg.eps)?,
            });
        }
        if st.contains(&format!(
            "{p}encoder.layer.{}.output.dense.weight",
            cfg.layers
        )) {
            return Err(format!(
                "model.safetensors has more layers than num_hidden_layers = {}",
                cfg.layers
            ));
        }
        Ok(Bert {
            cfg,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Encodes sequences of token ids (each non-empty, at most
    /// `max_positions` long, every id below `vocab`) into sentence
    /// vectors: pooled, then L2-normalized if `normalize`.
    pub(crate) fn embed(
        &self,
        seqs: &[&[u32]],
        pooling: Pooling,
        normalize: bool,
    ) -> Vec<Vec<f32>> {
        let h = self.cfg.hidden;
        let x = self.token_vectors(seqs);
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for seq in seqs {
            let mut v = pooling.pool(&x[start * h..(start + seq.len()) * h], h);
            if normalize {
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
            }
            out.push(v);
            start += seq.len();
        }
        out
    }

    /// The last layer's token vectors of every sequence, one after the
    /// other (`hidden` values per token).
    pub(crate) fn token_vectors(&self, seqs: &[&[u32]]) -> Vec<f32> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let h = self.cfg.hidden;
        let mut s = Scratch {
            x: vec![0.0; total * h],
            qkv: vec![0.0; total * 3 * h],
            context: vec![0.0; total * h],
            tmp: vec![0.0; total * h],
            inter: vec![0.0; total * self.cfg.intermediate],
            scores: vec![0.0; longest * longest],
        };
        self.embeddings(seqs, &mut s.x);
        for layer in &self.layers {
            self.layer(layer, seqs, total, &mut s);
        }
        s.x
    }

    /// Word + position + token type embeddings, then LayerNorm.
    fn embeddings(&self, seqs: &[&[u32]], x: &mut [f32]) {
        let h = self.cfg.hidden;
        let mut rows = x.chunks_exact_mut(h);
        for seq in seqs {
            for (pos, &id) in seq.iter().enumerate() {
                let Some(row) = rows.next() else { return };
                let id = id as usize;
                let word = &self.word[id * h..(id + 1) * h];
                let position = &self.position[pos * h..(pos + 1) * h];
                for (((r, w), p), t) in row.iter_mut().zip(word).zip(position).zip(&self.token_type)
                {
                    *r = w + p + t;
                }
            }
        }
        self.embedding_norm.apply(x);
    }

    fn layer(&self, layer: &Layer, seqs: &[&[u32]], total: usize, s: &mut Scratch) {
        let h = self.cfg.hidden;
        layer.qkv.forward(&s.x, total, &mut s.qkv);
        self.attention(seqs, s);
        layer.attention_out.forward(&s.context, total, &mut s.tmp);
        add_assign(&mut s.tmp, &s.x);
        layer.attention_norm.apply(&mut s.tmp);
        std::mem::swap(&mut s.x, &mut s.tmp);
        layer.intermediate.forward(&s.x, total, &mut s.inter);
        activate(
            self.cfg.activation,
            &mut s.inter[..total * self.cfg.intermediate],
        );
        layer.output.forward(&s.inter, total, &mut s.tmp);
        add_assign(&mut s.tmp[..total * h], &s.x);
        layer.output_norm.apply(&mut s.tmp[..total * h]);
        std::mem::swap(&mut s.x, &mut s.tmp);
    }

    /// Multi-head self-attention of each sequence over its own tokens:
    /// `s.qkv` in, `s.context` out.
    fn attention(&self, seqs: &[&[u32]], s: &mut Scratch) {
        let h = self.cfg.hidden;
        let heads = self.cfg.heads;
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut start = 0;
        for seq in seqs {
            let n = seq.len();
            let scores = &mut s.scores[..n * n];
            for head in 0..heads {
                let q = start * 3 * h + head * d;
                let k = q + h;
                let v = q + 2 * h;
                // scores = scale · Q Kᵀ
                gemm(
                    n,
                    d,
                    n,
                    scale,
                    View::rows(&s.qkv, q, 3 * h),
                    View::transposed(&s.qkv, k, 3 * h),
                    0.0,
                    scores,
                    0,
                    n,
                );
                for row in scores.chunks_exact_mut(n) {
                    softmax(row);
                }
                // context = softmax(scores) · V
                gemm(
                    n,
                    n,
                    d,
                    1.0,
                    View::rows(scores, 0, n),
                    View::rows(&s.qkv, v, 3 * h),
                    0.0,
                    &mut s.context,
                    start * h + head * d,
                    h,
                );
            }
            start += n;
        }
    }
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

fn activate(act: Activation, x: &mut [f32]) {
    match act {
        Activation::Gelu => x.iter_mut().for_each(|v| *v = gelu(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| {
            let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            *v = 0.5 * *v * (1.0 + u.tanh());
        }),
        Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// The exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
#[inline]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf` to about 1.5e-7 absolute error (Abramowitz & Stegun 7.1.26, the
/// approximation PyTorch's vectorized CPU GELU uses).
#[inline]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - poly * (-a * a).exp();
    y.copysign(x)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn erf_is_accurate() {
        // Reference values of erf.
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (-1.0, -0.842_700_8),
        ] {
            assert!((erf(x) - want).abs() < 3e-7, "erf({x}) = {}", erf(x));
        }
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-3.0) - -0.004_049_6).abs() < 1e-6);
        assert_eq!(gelu(-20.0), 0.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row = [1.0f32, 2.0, 3.0, 1000.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[3] > 0.99);
    }

    fn config() -> Value {
        serde_json::json!({
            "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
            "type_vocab_size": 2, "vocab_size": 30522,
            "position_embedding_type": "absolute"
        })
    }

    #[test]
    fn config_is_checked() {
        let cfg = BertConfig::from_json(&config()).unwrap();
        assert_eq!((cfg.hidden, cfg.heads, cfg.layers), (384, 12, 6));
        assert_eq!(cfg.activation, Activation::Gelu);
        for (key, value) in [
            ("num_attention_heads", serde_json::json!(7)),
            ("hidden_size", serde_json::json!(0)),
            ("hidden_size", serde_json::json!("big")),
            ("hidden_act", serde_json::json!("swish")),
            ("model_type", serde_json::json!("gpt2")),
            ("position_embedding_type", serde_json::json!("relative_key")),
            ("layer_norm_eps", serde_json::json!("x")),
        ] {
            let mut v = config();
            v[key] = value;
            assert!(BertConfig::from_json(&v).is_err(), "{key}");
        }
        let mut v = config();
        v.as_object_mut().unwrap().remove("vocab_size");
        assert!(BertConfig::from_json(&v).is_err());
    }
}
