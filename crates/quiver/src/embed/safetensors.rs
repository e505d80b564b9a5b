//! A minimal reader of the safetensors format: an 8-byte little-endian
//! header length, a JSON header mapping tensor names to
//! `{dtype, shape, data_offsets}`, then the raw little-endian data.
//! Tensors are read as `f32` (from F32, F16, BF16 or F64).

use std::collections::HashMap;

use serde_json::Value;

/// Upper bound on the JSON header, as in the reference implementation.
const MAX_HEADER: usize = 100 << 20;

/// An element type of a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    /// Any other type, with its size in bytes when known.
    Other(String, Option<usize>),
}

impl Dtype {
    fn parse(s: &str) -> Dtype {
        match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            _ => {
                let size = match s {
                    "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => Some(1),
                    "I16" | "U16" => Some(2),
                    "I32" | "U32" => Some(4),
                    "I64" | "U64" => Some(8),
                    _ => None,
                };
                Dtype::Other(s.to_string(), size)
            }
        }
    }

    fn size(&self) -> Option<usize> {
        match self {
            Dtype::F32 => Some(4),
            Dtype::F16 | Dtype::BF16 => Some(2),
            Dtype::F64 => Some(8),
            Dtype::Other(_, size) => *size,
        }
    }
}

#[derive(Debug)]
struct TensorInfo {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// A parsed safetensors file held in memory.
#[derive(Debug)]
pub(crate) struct SafeTensors {
    bytes: Vec<u8>,
    tensors: HashMap<String, TensorInfo>,
}

impl SafeTensors {
    /// Parses and validates the header of a whole file's `bytes`: every
    /// tensor's range must lie in the data section and match its shape.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<SafeTensors, String> {
        let Some(len_bytes) = bytes.get(..8) else {
            return Err(format!(
                "model.safetensors is truncated ({} bytes)",
                bytes.len()
            ));
        };
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let header_len = u64::from_le_bytes(len8);
        let data_start = usize::try_from(header_len)
            .ok()
            .filter(|&n| n <= MAX_HEADER)
            .and_then(|n| n.checked_add(8))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "model.safetensors: header length {header_len} does not fit in the file ({} bytes)",
                    bytes.len()
                )
            })?;
        let header: Value = serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| format!("model.safetensors: bad JSON header: {e}"))?;
        let Value::Object(entries) = header else {
            return Err("model.safetensors: the header is not a JSON object".into());
        };
        let data_len = bytes.len() - data_start;
        let mut tensors = HashMap::with_capacity(entries.len());
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            let bad = |what: &str| format!("model.safetensors: tensor {name:?}: {what}");
            let dtype = entry
                .get("dtype")
                .and_then(Value::as_str)
                .map(Dtype::parse)
                .ok_or_else(|| bad("no dtype"))?;
            let shape = entry
                .get("shape")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| bad("bad shape"))?;
            let offsets = entry
                .get("data_offsets")
                .and_then(Value::as_array)
                .filter(|o| o.len() == 2)
                .and_then(|o| {
                    let a = o[0].as_u64().and_then(|a| usize::try_from(a).ok())?;
                    let b = o[1].as_u64().and_then(|b| usize::try_from(b).ok())?;
                    Some((a, b))
                })
                .ok_or_else(|| bad("bad data_offsets"))?;
            let (a, b) = offsets;
            if a > b || b > data_len {
                return Err(bad(&format!(
                    "data_offsets [{a}, {b}] outside the data section ({data_len} bytes): the file is truncated or corrupt"
                )));
            }
            if let Some(size) = dtype.size() {
                let expected = shape
                    .iter()
                    .try_fold(size, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| bad("shape overflows"))?;
                if expected != b - a {
                    return Err(bad(&format!(
                        "{} bytes of data for shape {shape:?}, expected {expected}",
                        b - a
                    )));
                }
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype,
                    shape,
                    start: data_start + a,
                    end: data_start + b,
                },
            );
        }
        Ok(SafeTensors { bytes, tensors })
    }

    /// True when a tensor of that name exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name` as `f32`, checked against `shape`.
    pub(crate) fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("model.safetensors has no tensor {name:?}"))?;
        if info.shape != shape {
            return Err(format!(
                "tensor {name:?} has shape {:?}, expected {shape:?}",
                info.shape
            ));
        }
        let raw = &self.bytes[info.start..info.end];
        Ok(match &info.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            Dtype::Other(dtype, _) => {
                return Err(format!(
                    "tensor {name:?} has dtype {dtype}, expected F32, F16 or BF16"
                ))
            }
        })
    }
}

/// IEEE half precision to single precision (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match exp {
        // Zero and subnormals: mant · 2^-24, exact in f32.
        0 => sign * (mant as f32) * (1.0 / 16_777_216.0),
        0x1f => {
            let bits = (u32::from(h & 0x8000) << 16) | 0x7f80_0000 | (mant << 13);
            f32::from_bits(bits)
        }
        _ => f32::from_bits((u32::from(h & 0x8000) << 16) | ((exp + 112) << 23) | (mant << 13)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_f16_bf16() {
        let mut data = Vec::new();
        for v in [1.5f32, -2.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        // F16: 1.0 = 0x3c00, -0.5 = 0xb800.
        data.extend_from_slice(&0x3c00u16.to_le_bytes());
        data.extend_from_slice(&0xb800u16.to_le_bytes());
        // BF16: 3.0 = 0x4040.
        data.extend_from_slice(&0x4040u16.to_le_bytes());
        let header = r#"{"__metadata__":{"format":"pt"},
            "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
            "h":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]},
            "b":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]},
            "i":{"dtype":"I64","shape":[0],"data_offsets":[14,14]}}"#;
        let st = SafeTensors::parse(file(header, &data)).unwrap();
        assert_eq!(st.get_f32("a", &[2]).unwrap(), [1.5, -2.0]);
        assert_eq!(st.get_f32("h", &[1, 2]).unwrap(), [1.0, -0.5]);
        assert_eq!(st.get_f32("b", &[1]).unwrap(), [3.0]);
        assert!(st.get_f32("a", &[1, 2]).is_err());
        assert!(st.get_f32("i", &[0]).is_err());
        assert!(st.get_f32("missing", &[1]).is_err());
        assert!(st.contains("a") && !st.contains("__metadata__"));
    }

    #[test]
    fn rejects_corrupt_files() {
        assert!(SafeTensors::parse(vec![1, 2, 3]).is_err());
        assert!(SafeTensors::parse(file("{", &[])).is_err());
        assert!(SafeTensors::parse(file("[]", &[])).is_err());
        let mut huge = file("{}", &[]);
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SafeTensors::parse(huge).is_err());
        // Data past the end (a truncated file).
        let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        assert!(SafeTensors::parse(file(h, &[0; 8])).is_err());
        // Size that disagrees with the shape.
        let h = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(SafeTensors::parse(file(h, &[0; 8])).is_err());
        assert!(SafeTensors::parse(file("{}", &[])).is_ok());
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
