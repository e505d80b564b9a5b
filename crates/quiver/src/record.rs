//! Records and their validation, and the f32 BLOB encoding.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{CollectionConfig, Metric};
use crate::error::{Error, Result};

/// Longest record id, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// A record: a string id, a vector, optional text and JSON-object metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique within its collection, 1..=512 bytes of UTF-8.
    pub id: String,
    /// Exactly `dimension` finite values.
    pub vector: Vec<f32>,
    /// Optional text (what keyword search will index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Optional metadata; must be a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// When the record expires, in milliseconds since the Unix epoch: from
    /// that instant on (by the store's [`crate::Clock`]) no read returns
    /// it, and the next write or `compact` deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Record {
    /// A record with an id and a vector, no text or metadata.
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> Self {
        Record {
            id: id.into(),
            vector,
            text: None,
            metadata: None,
            expires_at: None,
        }
    }

    /// Set the text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Set the metadata (a JSON object).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Expire the record at `at` (see [`Record::expires_at`]).
    pub fn with_expiry(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(crate::clock::to_ms(at));
        self
    }
}

/// Check an id.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "ids must not be empty"
    } else if id.len() > MAX_ID_BYTES {
        "ids must be at most 512 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        id: id.chars().take(80).collect(),
        reason: reason.into(),
    })
}

/// Check a vector against a collection: dimension, finite values, and a
/// non-zero norm under cosine (usearch would accept NaN and rank it first).
pub(crate) fn check_vector(
    config: &CollectionConfig,
    collection: &str,
    id: Option<&str>,
    v: &[f32],
) -> Result<()> {
    if v.len() != config.dimension {
        return Err(Error::DimensionMismatch {
            collection: collection.into(),
            expected: config.dimension,
            got: v.len(),
            id: id.map(Into::into),
        });
    }
    let invalid = |reason: String| Error::InvalidVector {
        id: id.map(Into::into),
        reason,
    };
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(invalid(format!(
            "component {i} is {} (values must be finite)",
            v[i]
        )));
    }
    match config.metric {
        Metric::Cos if v.iter().all(|x| *x == 0.0) => Err(invalid(
            "zero vector has no direction under the cos metric".into(),
        )),
        Metric::Jaccard if v.iter().all(|x| *x <= 0.0) => Err(invalid(
            "no positive component: no set bit for the jaccard metric to compare".into(),
        )),
        Metric::Pearson if v.iter().all(|x| *x == v[0]) => Err(invalid(
            "a constant vector has no pearson correlation".into(),
        )),
        Metric::Divergence => {
            if let Some(i) = v.iter().position(|x| *x < 0.0) {
                return Err(invalid(format!(
                    "component {i} is {}: the divergence metric compares distributions (components >= 0)",
                    v[i]
                )));
            }
            if v.iter().all(|x| *x == 0.0) {
                return Err(invalid("an all-zero vector is not a distribution".into()));
            }
            Ok(())
        }
        Metric::Haversine => {
            let (lat, lon) = (v[0], v[1]);
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(invalid(format!(
                    "[{lat}, {lon}] is not [latitude -90..=90, longitude -180..=180] in degrees"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn check_record(config: &CollectionConfig, collection: &str, r: &Record) -> Result<()> {
    check_id(&r.id)?;
    check_vector(config, collection, Some(&r.id), &r.vector)?;
    if let Some(m) = &r.metadata {
        if !m.is_object() {
            return Err(Error::InvalidMetadata {
                id: r.id.clone(),
                reason: format!("expected a JSON object, got {}", json_kind(m)),
            });
        }
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Little-endian f32 BLOB.
pub(crate) fn encode(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decode a record's stored vector, which must be exactly `dim` f32s:
/// anything else means the database was damaged. `record` names it in the
/// error (its id, or its key).
pub(crate) fn decode_stored(
    collection: &str,
    record: impl std::fmt::Display,
    blob: &[u8],
    dim: usize,
) -> Result<Vec<f32>> {
    decode(blob, dim).ok_or_else(|| Error::Corrupt {
        collection: collection.into(),
        reason: format!(
            "record {record} has a vector of {} bytes, expected {}",
            blob.len(),
            dim * 4
        ),
    })
}

/// Decode a BLOB of exactly `dim` f32s.
pub(crate) fn decode(blob: &[u8], dim: usize) -> Option<Vec<f32>> {
    if blob.len() != dim * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip() {
        let v = vec![1.5f32, -0.0, f32::MIN_POSITIVE, 3.25e10];
        assert_eq!(decode(&encode(&v), 4).unwrap(), v);
        assert!(decode(&encode(&v), 3).is_none());
    }

    #[test]
    fn vector_checks() {
        let c = CollectionConfig::new(3);
        assert!(check_vector(&c, "c", None, &[1.0, 0.0, 0.0]).is_ok());
        assert!(matches!(
            check_vector(&c, "c", None, &[1.0, 0.0]),
            Err(Error::DimensionMismatch {
                expected: 3,
                got: 2,
                ..
            })
        ));
        assert!(check_vector(&c, "c", None, &[f32::NAN, 0.0, 0.0]).is_err());
        assert!(check_vector(&c, "c", None, &[f32::INFINITY, 0.0, 0.0]).is_err());
        assert!(check_vector(&c, "c", None, &[0.0, 0.0, 0.0]).is_err());
        let mut l2 = c.clone();
        l2.metric = Metric::L2;
        assert!(check_vector(&l2, "c", None, &[0.0, 0.0, 0.0]).is_ok());
    }

    #[test]
    fn id_and_metadata_checks() {
        let c = CollectionConfig::new(1);
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(512)).is_ok());
        assert!(check_id(&"x".repeat(513)).is_err());
        let r = Record::new("a", vec![1.0]).with_metadata(serde_json::json!([1]));
        assert!(matches!(
            check_record(&c, "c", &r),
            Err(Error::InvalidMetadata { .. })
        ));
        let r = Record::new("a", vec![1.0]).with_metadata(serde_json::json!({"k": 1}));
        assert!(check_record(&c, "c", &r).is_ok());
    }
}
