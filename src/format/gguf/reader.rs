//! Reading a GGUF file (ours or another writer's): list its tensors from the header alone, decode
//! any of them to float32 in its original shape from its bytes, or export the file as safetensors —
//! with the file in memory, or read by range with memory bounded by the largest tensor.

use std::collections::BTreeMap;

use super::container::{parse_header, Parsed, Value};
use crate::error::{AqError, Result};
use crate::format::safetensors::write_header;
use crate::quant::dtype::Dtype;
use crate::quant::ggml::{self, GgmlType};

/// One tensor of a GGUF file, as a reader sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// Row-major shape (safetensors order): the recorded original shape when the writer reshaped.
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

/// A GGUF file's header and tensor table, checked against the file's length: what a reader needs
/// before any tensor's bytes, whether the file is in memory ([`GgufFile`]) or read by range.
#[derive(Debug, Clone)]
pub struct GgufIndex {
    pub header: Parsed,
    pub tensors: Vec<GgufTensor>,
    pub file_len: u64,
}

/// A whole GGUF file in memory.
pub struct GgufFile {
    pub index: GgufIndex,
    bytes: Vec<u8>,
}

fn gerr(msg: impl Into<String>) -> AqError {
    AqError::Gguf(msg.into())
}

impl GgufIndex {
    /// The index of a file of `file_len` bytes with this header: names unique, every tensor
    /// inside the file, none overlapping, recorded original shapes holding their tensor's values.
    pub fn new(header: Parsed, file_len: u64) -> Result<Self> {
        let mut tensors = Vec::with_capacity(header.tensors.len());
        let mut names = std::collections::HashSet::new();
        for t in &header.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(gerr(format!("tensor '{}' is listed twice", t.name)));
            }
            let len = t.bytes().expect("checked by parse_header");
            let start = header.data_start.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(len)).filter(|&e| e <= file_len);
            let (Some(start), Some(end)) = (start, end) else {
                return Err(gerr(format!(
                    "tensor '{}' ({len} bytes at data offset {}) runs past the end of the {file_len}-byte file (truncated?)",
                    t.name, t.offset,
                )));
            };
            let mut shape: Vec<u64> = t.dims.iter().rev().copied().collect();
            if let Some(Value::I32Array(orig)) = header.get(&format!("comfy.gguf.orig_shape.{}", t.name)) {
                let orig: Option<Vec<u64>> = orig.iter().map(|&d| u64::try_from(d).ok()).collect();
                let count = orig.as_ref().and_then(|o| o.iter().try_fold(1u64, |n, &d| n.checked_mul(d)));
                match (orig, count) {
                    (Some(o), Some(c)) if Some(c) == t.count() => shape = o,
                    _ => {
                        return Err(gerr(format!("comfy.gguf.orig_shape.{} does not hold the tensor's values", t.name)))
                    }
                }
            }
            tensors.push(GgufTensor { name: t.name.clone(), shape, ty: t.ty, start, end });
        }
        // Tensors must not overlap: a damaged offset table would make two tensors share bytes.
        let mut ranges: Vec<(u64, u64, &str)> = tensors.iter().map(|t| (t.start, t.end, t.name.as_str())).collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(gerr(format!("tensors '{}' and '{}' overlap", w[0].2, w[1].2)));
            }
        }
        Ok(GgufIndex { header, tensors, file_len })
    }

    pub fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| AqError::State(format!("no tensor named '{name}' in this file")))
    }

    /// The header of the file as a safetensors file of `float` (f32 or f16) tensors, in file
    /// order ([`GgufTensor::export`] gives each tensor's bytes); the GGUF metadata strings are kept
    /// in `__metadata__` under `gguf.*`.
    pub fn safetensors_header(&self, float: Dtype) -> Result<Vec<u8>> {
        if !matches!(float, Dtype::F32 | Dtype::F16) {
            return Err(AqError::config("dtype", float.name(), "'f32' or 'f16'"));
        }
        let mut metadata = BTreeMap::new();
        for (k, v) in &self.header.kv {
            if let Value::String(s) = v {
                metadata.insert(format!("gguf.{k}"), s.clone());
            }
        }
        let list: Vec<(String, Dtype, Vec<u64>)> =
            self.tensors.iter().map(|t| (t.name.clone(), float, t.shape.clone())).collect();
        Ok(write_header(&list, &metadata))
    }
}

impl GgufTensor {
    /// `bytes` are as many as the tensor's range in the file holds (`E_STATE` otherwise): what
    /// every user of a tensor's bytes read by range checks first.
    pub fn check_len(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.end - self.start {
            return Err(AqError::State(format!(
                "tensor '{}' is {} bytes, {} were given",
                self.name,
                self.end - self.start,
                bytes.len()
            )));
        }
        Ok(())
    }

    /// The tensor decoded to float32 from its stored `bytes`, exactly as gguf-py's `dequantize`
    /// decodes it.
    pub fn dequantize(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        self.check_len(bytes)?;
        let count = usize::try_from(self.shape.iter().product::<u64>())
            .map_err(|_| AqError::TooLarge(format!("tensor '{}' is too large for this build", self.name)))?;
        ggml::dequantize(self.ty, bytes, count)
    }

    /// The tensor's values as `float` (f32 or f16) bytes, as [`GgufIndex::safetensors_header`]
    /// lists them.
    pub fn export(&self, bytes: &[u8], float: Dtype) -> Result<Vec<u8>> {
        let values = self.dequantize(bytes)?;
        Ok(match float {
            Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }
}

impl GgufFile {
    pub fn open(bytes: Vec<u8>) -> Result<Self> {
        let index = GgufIndex::new(parse_header(&bytes)?, bytes.len() as u64)?;
        Ok(GgufFile { index, bytes })
    }

    /// The stored bytes of a tensor.
    pub fn raw(&self, name: &str) -> Result<&[u8]> {
        let t = self.index.tensor(name)?;
        Ok(&self.bytes[t.start as usize..t.end as usize])
    }

    /// A tensor decoded to float32 exactly as gguf-py's `dequantize` decodes it.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        self.index.tensor(name)?.dequantize(self.raw(name)?)
    }

    /// The whole file as a safetensors file of `float` (f32 or f16) tensors, in file order.
    pub fn export_safetensors(&self, float: Dtype) -> Result<Vec<u8>> {
        let mut out = self.index.safetensors_header(float)?;
        for t in &self.index.tensors {
            out.extend(t.export(self.raw(&t.name)?, float)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::gguf::quantize_model_gguf;
    use crate::policy::gguf_mix::GgufMix;

    #[test]
    fn reads_back_what_the_writer_wrote_and_refuses_damage() {
        let mut rng = 1u32;
        let mut values = || {
            rng = rng.wrapping_mul(1664525).wrapping_add(1013904223);
            (rng >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let w: Vec<f32> = (0..64 * 96).map(|_| values()).collect();
        let b: Vec<f32> = (0..64).map(|_| values()).collect();
        let deep: Vec<f32> = (0..2 * 2 * 2 * 4 * 64).map(|_| values()).collect();
        let tensors = vec![
            ("w".to_string(), Dtype::F32, vec![64, 96]),
            ("b".to_string(), Dtype::F32, vec![64]),
            ("deep".to_string(), Dtype::F32, vec![2, 2, 2, 4, 64]),
        ];
        let mut st = write_header(&tensors, &BTreeMap::new());
        for v in w.iter().chain(&b).chain(&deep) {
            st.extend_from_slice(&v.to_le_bytes());
        }
        let (gguf, report) = quantize_model_gguf(&st, GgufMix::parse("Q4_0").unwrap(), Default::default()).unwrap();
        assert_eq!(report.output_bytes, gguf.len() as u64);
        let f = GgufFile::open(gguf.clone()).unwrap();
        assert_eq!(f.index.tensor("w").unwrap().ty, GgmlType::Q4_0);
        assert_eq!(f.index.tensor("b").unwrap().ty, GgmlType::F32);
        assert_eq!(f.index.tensor("deep").unwrap().shape, vec![2, 2, 2, 4, 64]);
        assert_eq!(f.dequantize("b").unwrap(), b);
        let back = f.dequantize("w").unwrap();
        let layer = &report.layers[0];
        let err: f64 = w.iter().zip(&back).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let sig: f64 = w.iter().map(|a| (*a as f64).powi(2)).sum();
        assert!((10.0 * (sig / err).log10() - layer.snr_db.unwrap()).abs() < 1e-9);
        // Truncation anywhere is an error, never a panic.
        let last_end = f.index.tensors.iter().map(|t| t.end).max().unwrap() as usize;
        for n in (0..last_end).step_by(7) {
            assert!(GgufFile::open(gguf[..n].to_vec()).is_err(), "{n}");
        }
    }
}
