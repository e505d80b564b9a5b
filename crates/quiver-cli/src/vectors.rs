//! Vectors from the command line: a JSON array in a flag, raw
//! little-endian f32 rows in a file or in bytes. A leaf: the commands, the
//! importer and the demo use it.

use std::path::Path;

use crate::output::{input, CliResult};

/// Parse a JSON array of numbers into f32s.
pub(crate) fn parse_vector(flag: &str, text: &str) -> CliResult<Vec<f32>> {
    match serde_json::from_str::<Vec<f64>>(text) {
        Ok(v) => Ok(v.into_iter().map(|x| x as f32).collect()),
        Err(e) => input(format!("{flag}: expected a JSON array of numbers ({e})")),
    }
}

/// Read a raw little-endian f32 file of rows of `dim`.
pub(crate) fn read_f32_rows(path: &Path, dim: usize, flag: &str) -> CliResult<Vec<f32>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return input(format!("{flag}: cannot read {}: {e}", path.display())),
    };
    let row = dim * 4;
    if bytes.is_empty() || bytes.len() % row != 0 {
        return input(format!(
            "{flag}: {} is {} bytes, not a whole number of {dim}-d f32 rows ({row} bytes each)",
            path.display(),
            bytes.len()
        ));
    }
    Ok(le_f32s(&bytes))
}

/// Little-endian f32s from raw bytes (a whole number of rows).
pub(crate) fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
