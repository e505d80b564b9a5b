//! Collection configuration: dimension, metric, index scalar kind, HNSW settings.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest dimension accepted. Generous (text models top out near 4k), but it
/// keeps a typo from allocating gigabytes.
pub const MAX_DIMENSION: usize = 65_536;

/// Distance function. Lower distances are closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine distance, `1 - cos(a, b)`. Vectors must have a non-zero norm.
    Cos,
    /// Inner-product distance, `1 - a·b`.
    Ip,
    /// Squared Euclidean distance.
    L2,
    /// Hamming distance over sign bits; only with [`Scalar::B1`].
    Hamming,
    /// Jaccard (Tanimoto) distance over sign bits, `1 - |a ∧ b| / |a ∨ b|`;
    /// only with [`Scalar::B1`]. Vectors need a positive component.
    Jaccard,
    /// `1 - r`, `r` the Pearson correlation of the components. Vectors
    /// must not be constant.
    Pearson,
    /// Great-circle distance in radians between two `[latitude, longitude]`
    /// points in degrees; dimension 2, scalar f32.
    Haversine,
    /// Jensen–Shannon divergence of two distributions (components ≥ 0, not
    /// all zero; usearch's definition, in nats, without normalising).
    Divergence,
    /// A distance implemented in Rust, registered in this process under a
    /// name ([`crate::Store::register_metric`]); scalar f32 only. The
    /// collection records the name: opening it in a process that has not
    /// registered that name is [`Error::UnknownMetric`].
    Custom(CustomMetric),
}

/// A distance implemented in Rust: lower is closer, `f(a, a)` should be
/// the least. It must not panic (a panic counts as the greatest distance)
/// and a name must always mean the same function: snapshots are built with
/// it.
pub type MetricFn = Arc<dyn Fn(&[f32], &[f32]) -> f32 + Send + Sync>;

/// A registered metric ([`Metric::Custom`]): a handle into this process's
/// registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomMetric(u32);

/// Every metric registered in this process, by handle. Names are leaked:
/// there are as many as a program registers, once each.
static REGISTRY: RwLock<Vec<(&'static str, MetricFn)>> = RwLock::new(Vec::new());

impl CustomMetric {
    /// The name it was registered under.
    pub fn name(self) -> &'static str {
        registry()[self.0 as usize].0
    }

    /// The registered metric called `name`, if any.
    pub fn find(name: &str) -> Option<CustomMetric> {
        registry()
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| CustomMetric(i as u32))
    }

    pub(crate) fn function(self) -> MetricFn {
        Arc::clone(&registry()[self.0 as usize].1)
    }

    /// Register `f` as `name` (see [`crate::Store::register_metric`]).
    pub(crate) fn register(name: &str, f: MetricFn) -> Result<CustomMetric> {
        validate_name(name).map_err(|_| Error::InvalidArgument {
            reason: format!("metric name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 _ -"),
        })?;
        if BUILTIN_METRICS
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(Error::InvalidArgument {
                reason: format!("{name:?} is a built-in metric"),
            });
        }
        let mut all = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
        if all.iter().any(|(n, _)| *n == name) {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "metric {name:?} is already registered in this process (a name must always mean one function)"
                ),
            });
        }
        all.push((Box::leak(name.to_string().into_boxed_str()), f));
        Ok(CustomMetric((all.len() - 1) as u32))
    }
}

fn registry() -> std::sync::RwLockReadGuard<'static, Vec<(&'static str, MetricFn)>> {
    REGISTRY.read().unwrap_or_else(|p| p.into_inner())
}

/// A registered metric's distance, never a panic and never NaN (either
/// counts as the greatest distance, so such a pair ranks last).
pub(crate) fn call_custom(f: &MetricFn, a: &[f32], b: &[f32]) -> f32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(a, b))) {
        Ok(d) if !d.is_nan() => d,
        _ => f32::MAX,
    }
}

const BUILTIN_METRICS: [(&str, Metric); 8] = [
    ("cos", Metric::Cos),
    ("ip", Metric::Ip),
    ("l2", Metric::L2),
    ("hamming", Metric::Hamming),
    ("jaccard", Metric::Jaccard),
    ("pearson", Metric::Pearson),
    ("haversine", Metric::Haversine),
    ("divergence", Metric::Divergence),
];

/// How the catalogue spells a custom metric.
const CUSTOM_PREFIX: &str = "custom:";

impl Metric {
    /// The name used on the command line and in the database (a custom
    /// metric's registered name).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Custom(c) => c.name(),
            m => BUILTIN_METRICS
                .iter()
                .find(|(_, b)| *b == m)
                .map_or("unknown", |(n, _)| n),
        }
    }

    /// The catalogue's column: the name, `custom:NAME` for a custom metric.
    pub(crate) fn to_column(self) -> String {
        match self {
            Metric::Custom(c) => format!("{CUSTOM_PREFIX}{}", c.name()),
            m => m.as_str().to_string(),
        }
    }

    /// Read the catalogue's column.
    pub(crate) fn from_column(s: &str) -> Result<Metric> {
        match s.strip_prefix(CUSTOM_PREFIX) {
            Some(name) => CustomMetric::find(name)
                .map(Metric::Custom)
                .ok_or_else(|| Error::UnknownMetric { name: name.into() }),
            None => s.parse(),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;
    /// A built-in metric's name (any case), or a registered one's.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        if let Some((_, m)) = BUILTIN_METRICS.iter().find(|(n, _)| *n == lower) {
            return Ok(*m);
        }
        if let Some(c) = CustomMetric::find(s) {
            return Ok(Metric::Custom(c));
        }
        let names: Vec<&str> = BUILTIN_METRICS.iter().map(|(n, _)| *n).collect();
        Err(Error::InvalidConfig {
            reason: format!(
                "unknown metric {s:?} (expected one of: {}, or a metric registered with Store::register_metric)",
                names.join(", ")
            ),
        })
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the index stores vector components. SQLite always keeps full f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit integer; usearch normalises these, so only with cosine.
    I8,
    /// One bit per component (the sign); only with hamming.
    B1,
}

/// How keyword search splits text into words (SQLite FTS5 tokenizers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// Unicode word boundaries, case and diacritics folded: `Databases`
    /// matches `databases`, not `database`. Works for every language.
    #[default]
    Unicode61,
    /// The same, then the Porter stemmer: `databases` and `Database` match
    /// each other. English only: it would stem other languages' words
    /// wrongly, which is why it is not the default.
    Porter,
}

impl Tokenizer {
    /// FTS5's `tokenize` option for it.
    pub(crate) fn fts5(self) -> &'static str {
        match self {
            Tokenizer::Unicode61 => "unicode61 remove_diacritics 2",
            Tokenizer::Porter => "porter unicode61 remove_diacritics 2",
        }
    }
}

macro_rules! names {
    ($ty:ty, $what:literal, $($variant:path => $name:literal),+) => {
        impl $ty {
            /// The lower-case name used on the command line and in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($variant),)+
                    _ => Err(Error::InvalidConfig {
                        reason: format!(concat!("unknown ", $what, " {:?} (expected one of: {})"), s, [$($name),+].join(", ")),
                    }),
                }
            }
        }
    };
}

names!(Tokenizer, "tokenizer", Tokenizer::Unicode61 => "unicode61", Tokenizer::Porter => "porter");
/// The default search ef. On pypi-minilm-20k (19,993 MiniLM vectors,
/// bf16) ef 128 reaches recall@10 0.991 and 160 0.993: 160 leaves room
/// for larger collections, whose recall at a given ef is lower
/// (BENCHMARKS.md, "Defaults").
pub const DEFAULT_EXPANSION_SEARCH: usize = 160;

impl Scalar {
    /// The storage a new collection of `metric` gets unless told:
    /// bf16 for cosine and inner product (text embeddings rank almost as
    /// they do at f32), f32 for `l2` (distances between raw magnitudes),
    /// b1 for `hamming` (the only kind it takes).
    pub fn default_for(metric: Metric) -> Scalar {
        match metric {
            Metric::Cos | Metric::Ip => Scalar::Bf16,
            Metric::L2
            | Metric::Pearson
            | Metric::Haversine
            | Metric::Divergence
            | Metric::Custom(_) => Scalar::F32,
            Metric::Hamming | Metric::Jaccard => Scalar::B1,
        }
    }
}

names!(Scalar, "scalar kind", Scalar::F32 => "f32", Scalar::F16 => "f16", Scalar::Bf16 => "bf16", Scalar::I8 => "i8", Scalar::B1 => "b1");

/// Settings of a collection. Build one with [`CollectionConfig::new`] and
/// adjust the public fields.
///
/// Defaults: metric `cos`, scalar `bf16` (the database keeps f32 either
/// way), connectivity (M) 16, expansion_add 128, expansion_search
/// [`DEFAULT_EXPANSION_SEARCH`], no model. Chosen by measurement
/// (BENCHMARKS.md, "Defaults"): on text embeddings bf16's recall@10 is
/// within 0.0015 of f32's, at half the memory and about 0.7× the search
/// time. A
/// collection made with another metric should take its scalar from
/// [`Scalar::default_for`] (f32 for `l2`, b1 for `hamming`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// Number of f32 components in every vector.
    pub dimension: usize,
    /// Distance function.
    pub metric: Metric,
    /// Index storage kind.
    pub scalar: Scalar,
    /// HNSW connectivity (M): edges per node.
    pub connectivity: usize,
    /// HNSW candidate list size while inserting (ef_construction).
    pub expansion_add: usize,
    /// Default HNSW candidate list size while searching (ef); per-query `ef` overrides it.
    pub expansion_search: usize,
    /// Name of the embedding model that produced the vectors, if any
    /// (`name@digest`; see [`ModelBinding`] for the rest of what the
    /// collection knows about it).
    pub model: Option<String>,
    /// The embedding model the collection is bound to: texts given without
    /// a vector are embedded with it, and text queries too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<ModelBinding>,
    /// How keyword search splits text into words; fixed when the
    /// collection is made.
    #[serde(default)]
    pub tokenizer: Tokenizer,
}

impl CollectionConfig {
    /// A cosine collection stored in bf16 or f16: its graph holds unit
    /// vectors, is built by cosine and searched by inner product (see
    /// `index::hnsw`), and its snapshots are stamped so.
    pub(crate) fn cosine_in_half_precision(&self) -> bool {
        self.metric == Metric::Cos && matches!(self.scalar, Scalar::Bf16 | Scalar::F16)
    }

    /// A config of the given dimension with every other setting at its default.
    pub fn new(dimension: usize) -> Self {
        CollectionConfig {
            dimension,
            metric: Metric::Cos,
            scalar: Scalar::default_for(Metric::Cos),
            connectivity: 16,
            expansion_add: 128,
            expansion_search: DEFAULT_EXPANSION_SEARCH,
            model: None,
            embedding: None,
            tokenizer: Tokenizer::Unicode61,
        }
    }

    /// Whether `other` has the same index settings (dimension, metric,
    /// scalar, connectivity, expansions): a change of any of these is
    /// picked up by rebuilding or reloading the index (the default search
    /// ef lives in it); the model binding is not.
    pub(crate) fn same_index(&self, other: &CollectionConfig) -> bool {
        (
            self.dimension,
            self.metric,
            self.scalar,
            self.connectivity,
            self.expansion_add,
            self.expansion_search,
        ) == (
            other.dimension,
            other.metric,
            other.scalar,
            other.connectivity,
            other.expansion_add,
            other.expansion_search,
        )
    }

    /// Check the settings.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return bad(format!(
                "dimension must be 1..={MAX_DIMENSION}, got {}",
                self.dimension
            ));
        }
        if !(2..=1024).contains(&self.connectivity) {
            return bad(format!(
                "connectivity must be 2..=1024, got {}",
                self.connectivity
            ));
        }
        for (name, value) in [
            ("expansion_add", self.expansion_add),
            ("expansion_search", self.expansion_search),
        ] {
            if !(1..=100_000).contains(&value) {
                return bad(format!("{name} must be 1..=100000, got {value}"));
            }
        }
        match (self.metric, self.scalar) {
            (Metric::Hamming | Metric::Jaccard, Scalar::B1) if self.dimension % 8 == 0 => {}
            (m @ (Metric::Hamming | Metric::Jaccard), Scalar::B1) => {
                return bad(format!(
                    "metric {m} packs sign bits into bytes: the dimension must be a multiple of 8, not {}",
                    self.dimension
                ))
            }
            (m @ (Metric::Hamming | Metric::Jaccard), s) => {
                return bad(format!("metric {m} needs scalar b1, not {s}"))
            }
            (m, Scalar::B1) => {
                return bad(format!("scalar b1 needs metric hamming or jaccard, not {m}"))
            }
            (Metric::Haversine, Scalar::F32) if self.dimension == 2 => {}
            (Metric::Haversine, Scalar::F32) => {
                return bad(format!(
                    "metric haversine takes [latitude, longitude]: dimension 2, not {}",
                    self.dimension
                ))
            }
            (Metric::Haversine, s) => return bad(format!("metric haversine needs scalar f32, not {s}")),
            (Metric::Custom(_), Scalar::F32) => {}
            (m @ Metric::Custom(_), s) => {
                return bad(format!(
                    "metric {m} is a Rust function of f32 vectors: it needs scalar f32, not {s}"
                ))
            }
            (Metric::Cos, Scalar::I8) => {}
            (m, Scalar::I8) => {
                return bad(format!(
                    "scalar i8 is only meaningful with metric cos (the index normalises i8 vectors), not {m}"
                ))
            }
            _ => {}
        }
        if let Some(model) = &self.model {
            if model.is_empty() || model.len() > 512 {
                return bad("model name must be 1..=512 bytes".into());
            }
        }
        if let Some(b) = &self.embedding {
            b.validate()?;
            if b.dimension != self.dimension {
                return bad(format!(
                    "the model {} makes {}-d vectors, the collection is {}-d",
                    b.source, b.dimension, self.dimension
                ));
            }
        }
        Ok(())
    }
}

/// Longest model source, prefix or pooling name kept on a collection.
const MAX_BINDING_TEXT: usize = 4096;

/// What a collection knows about the embedding model it is bound to:
/// where it came from, which weights, and how it turns text into vectors.
/// Set with [`crate::Collection::bind_model`] or at creation
/// ([`CollectionConfig::embedding`]); shown by `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelBinding {
    /// Where the model came from: a Hugging Face Hub id (`owner/name`) or
    /// the absolute path of a local model directory.
    pub source: String,
    /// The model's name and weights digest, as [`crate::embed::Embedder`]'s
    /// `id` gives it (`name@digest`); a different model is refused.
    pub id: String,
    /// The length of its vectors.
    pub dimension: usize,
    /// How token vectors become one: `mean`, `cls`, `max`, `mean_sqrt_len`
    /// (informational; the model's own files decide).
    pub pooling: String,
    /// Whether its vectors have unit length.
    pub normalize: bool,
    /// Token limit; longer texts are truncated.
    pub max_tokens: usize,
    /// Put before every text query before it is embedded (E5: `"query: "`).
    #[serde(default)]
    pub query_prefix: String,
    /// Put before every record's text before it is embedded (E5:
    /// `"passage: "`). Not stored with the text.
    #[serde(default)]
    pub document_prefix: String,
}

impl ModelBinding {
    /// The digest part of the id: what two models must share to be one.
    pub fn digest(&self) -> &str {
        digest_of(&self.id)
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidConfig { reason });
        for (name, v) in [
            ("model source", &self.source),
            ("model id", &self.id),
            ("pooling", &self.pooling),
        ] {
            if v.is_empty() || v.len() > MAX_BINDING_TEXT {
                return bad(format!("{name} must be 1..={MAX_BINDING_TEXT} bytes"));
            }
        }
        for (name, v) in [
            ("query prefix", &self.query_prefix),
            ("document prefix", &self.document_prefix),
        ] {
            if v.len() > MAX_BINDING_TEXT {
                return bad(format!("{name} must be at most {MAX_BINDING_TEXT} bytes"));
            }
        }
        if self.dimension == 0 || self.max_tokens == 0 {
            return bad("a model's dimension and token limit must be at least 1".into());
        }
        Ok(())
    }
}

/// The digest part of a model id `name@digest` (the whole id without `@`).
pub(crate) fn digest_of(id: &str) -> &str {
    id.rsplit_once('@').map_or(id, |(_, d)| d)
}

/// Check a collection name against `[A-Za-z0-9_-]{1,64}`.
///
/// # Errors
/// [`Error::InvalidName`].
pub fn validate_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in [Metric::Cos, Metric::Ip, Metric::L2, Metric::Hamming] {
            assert_eq!(m.as_str().parse::<Metric>().unwrap(), m);
        }
        for s in [
            Scalar::F32,
            Scalar::F16,
            Scalar::Bf16,
            Scalar::I8,
            Scalar::B1,
        ] {
            assert_eq!(s.as_str().parse::<Scalar>().unwrap(), s);
        }
        assert!("cosine".parse::<Metric>().is_err());
    }

    #[test]
    fn config_validation() {
        assert!(CollectionConfig::new(384).validate().is_ok());
        assert!(CollectionConfig::new(0).validate().is_err());
        let mut c = CollectionConfig::new(8);
        c.scalar = Scalar::I8;
        c.metric = Metric::L2;
        assert!(c.validate().is_err());
        c.metric = Metric::Cos;
        assert!(c.validate().is_ok());
        c.scalar = Scalar::B1;
        assert!(c.validate().is_err());
        c.metric = Metric::Hamming;
        assert!(c.validate().is_ok());
        c.connectivity = 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn collection_names() {
        for ok in ["a", "docs_v2", "A-b_9", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a b", "é", &"x".repeat(65), "a.b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
