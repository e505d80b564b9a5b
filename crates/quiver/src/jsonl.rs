//! The JSON Lines record format of `quiver import`:
//! `{"id": "..", "vector": [..]?, "text": ".."?, "metadata": {..}?, "expires_at": ".."?}`.
//!
//! Parsing is separate from validation against a collection
//! ([`crate::Collection::validate`]), so the parser can be fuzzed alone.

use serde::Deserialize;
use serde_json::Value;

/// Longest accepted line (a 65,536-d vector in JSON is about 1.5 MB).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The record id.
    pub id: String,
    /// The vector, if the line has one.
    pub vector: Option<Vec<f32>>,
    /// The text, if any.
    pub text: Option<String>,
    /// The metadata, if any (not yet checked to be an object).
    pub metadata: Option<Value>,
    /// When the record expires (Unix milliseconds), if the line says:
    /// `"expires_at"` is an RFC 3339 time or a number of milliseconds.
    pub expires_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: Value,
    #[serde(default)]
    vector: Option<Vec<f64>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    expires_at: Option<Value>,
}

/// Parse one line (without its newline). `Ok(None)` for a blank line.
///
/// # Errors
/// A one-line description: too long, not UTF-8, not JSON, unknown field,
/// an id that is not a string. Numbers beyond f32 become infinite here and
/// are rejected by validation.
pub fn parse_line(bytes: &[u8]) -> Result<Option<Line>, String> {
    if bytes.len() > MAX_LINE_BYTES {
        return Err(format!("line longer than {} MiB", MAX_LINE_BYTES >> 20));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 ({e})"))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    let id = match raw.id {
        Value::String(s) => s,
        other => return Err(format!("\"id\" must be a string, got {other}")),
    };
    let expires_at =
        match raw.expires_at {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(crate::clock::parse_rfc3339(&s).ok_or_else(|| {
                one_line(&format!(
                    "\"expires_at\" {s:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"
                ))
            })?),
            Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
                format!("\"expires_at\" {n} is not a whole number of milliseconds")
            })?),
            Some(other) => {
                return Err(format!(
                    "\"expires_at\" must be an RFC 3339 time or milliseconds, got {other}"
                ))
            }
        };
    Ok(Some(Line {
        id,
        expires_at,
        vector: raw
            .vector
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        text: raw.text,
        metadata: raw.metadata,
    }))
}

/// serde's messages quote input (an unknown field's name, say), which may
/// hold control characters: escape them so an error stays one line.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let l =
            parse_line(br#"{"id": "a", "vector": [1, 2.5], "text": "t", "metadata": {"k": 1}}"#)
                .unwrap()
                .unwrap();
        assert_eq!(l.id, "a");
        assert_eq!(l.vector, Some(vec![1.0, 2.5]));
        assert_eq!(parse_line(b"   \r").unwrap(), None);
        assert!(parse_line(br#"{"id": 1}"#)
            .unwrap_err()
            .contains("must be a string"));
        assert!(parse_line(br#"{"id": "a", "vectr": []}"#)
            .unwrap_err()
            .contains("vectr"));
        // Found by fuzzing: a field name with a newline in it.
        let e = parse_line(br#"{"id": "a", "t_tex\n  ": 1}"#).unwrap_err();
        assert!(!e.contains('\n') && e.contains("t_tex\\n"), "{e}");
        assert!(parse_line(b"{\"id\": \"\xff\"}")
            .unwrap_err()
            .contains("UTF-8"));
        assert!(parse_line(br#"{"id": "a", "vector": [1e39]}"#)
            .unwrap()
            .unwrap()
            .vector
            .unwrap()[0]
            .is_infinite());
    }
}
