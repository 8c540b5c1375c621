//! Open an arrowquant Parquet file, list its tensors, and reconstruct any tensor bit-exactly as
//! validation measured it. Every row is checked against the format's invariants on open, so a
//! foreign or damaged file is rejected with a message naming the column or tensor.

use std::collections::BTreeMap;

use bytes::Bytes;
use half::f16;

use super::pages::DecodeBudget;
use super::ranged::FileIndex;
use super::row_groups::perr;
use super::schema::*;
use super::{Stored, TensorRow};
use crate::error::{AqError, Result};
use crate::format::safetensors::write_header;
use crate::quant::dtype::{decode_f32, Dtype};
use crate::quant::ggml;
use crate::quant::layout::{undo_equalization, ChannelLayout, Layout};
use crate::quant::tensor::dequantize_parts;

/// An opened file: its metadata and rows.
#[derive(Debug, Clone)]
pub struct QuantizedFile {
    pub format_version: String,
    pub library_version: String,
    /// The config the file was written with, as JSON text.
    pub config_json: String,
    pub modality: String,
    /// The source safetensors `__metadata__`.
    pub source_metadata: BTreeMap<String, String>,
    /// `arrowquant.calibration` (JSON text) when the file was made with calibration statistics.
    pub calibration_json: Option<String>,
    pub rows: Vec<TensorRow>,
}

impl QuantizedFile {
    /// Open a file held whole: [`FileIndex`]'s checks of the footer, the body checksum over every
    /// byte before any page is handed to the Parquet decoder (which may not survive a damaged
    /// page), then each segment's pages and rows.
    pub fn open(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 12 || &bytes[..4] != b"PAR1" || &bytes[bytes.len() - 4..] != b"PAR1" {
            return Err(perr(format!(
                "not a Parquet file ({} bytes; a Parquet file starts and ends with 'PAR1'; truncated?)",
                bytes.len()
            )));
        }
        let file_len = bytes.len() as u64;
        let index = FileIndex::open(&bytes, file_len)?;
        let mut body = index.body_check();
        for seg in &index.segments {
            body.update(seg, &bytes[seg.start as usize..seg.end as usize])?;
        }
        body.finish()?;
        let bytes = Bytes::from(bytes);
        let mut budget = DecodeBudget::for_input(file_len);
        let mut rows = Vec::new();
        for (i, seg) in index.segments.iter().enumerate() {
            rows.extend(index.rows_in(i, bytes.slice(seg.start as usize..seg.end as usize), &mut budget)?);
        }
        index.check_tensor_count(rows.len())?;
        Ok(QuantizedFile { rows, ..index.header })
    }

    pub fn row(&self, name: &str) -> Result<&TensorRow> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| AqError::State(format!("no tensor named '{name}' in this file")))
    }

    /// Reconstruct a float tensor as f32 (row-major), in the original weight space: quantized
    /// rows give exactly the values validation measured (channel equalization undone); f16 and
    /// raw rows give their stored values. A drop-in replacement for the source weights.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let mut out = self.dequantize_equalized(name)?;
        let row = self.row(name)?;
        if let (Some(sp), Some(cl)) = (&row.spatial, ChannelLayout::for_shape(&row.shape)) {
            undo_equalization(&mut out, cl, &sp.scales);
        }
        Ok(out)
    }

    /// The stored values as they are, W·diag(s) for an equalized layer: what an inference engine
    /// that divides its activations by `spatial.equalization_scales` multiplies with.
    pub fn dequantize_equalized(&self, name: &str) -> Result<Vec<f32>> {
        let row = self.row(name)?;
        let n = row.numel() as usize;
        let mut out = vec![0f32; n];
        match &row.stored {
            // Lengths were checked on open.
            Stored::Quantized { width, group_size, scales, mins } => {
                let layout = Layout::for_shape(&row.shape, *group_size as usize);
                dequantize_parts(*width, layout, &row.data, scales, mins, &mut out);
            }
            Stored::F16 => decode_f32(Dtype::F16, &row.data, &mut out),
            Stored::Blocks(ty) => out = ggml::dequantize(*ty, &row.data, n)?,
            Stored::Raw if row.dtype.is_float() => decode_f32(row.dtype, &row.data, &mut out),
            Stored::Raw => {
                return Err(AqError::dtype(
                    name,
                    format!("is a {} tensor, not a float tensor; read its raw bytes instead", row.dtype.name()),
                ))
            }
        }
        Ok(out)
    }

    /// Output dtype of a tensor when exporting to safetensors as `float` (F32 or F16): float
    /// tensors take `float`, others keep their dtype.
    fn export_dtype(row: &TensorRow, float: Dtype) -> Dtype {
        if row.dtype.is_float() {
            float
        } else {
            row.dtype
        }
    }

    /// The safetensors header for exporting every tensor in file order as `float` (F32 or F16).
    pub fn export_header(&self, float: Dtype) -> Result<Vec<u8>> {
        if !matches!(float, Dtype::F32 | Dtype::F16) {
            return Err(AqError::config("dtype", float.name(), "'f32' or 'f16'"));
        }
        let tensors: Vec<_> =
            self.rows.iter().map(|r| (r.name.clone(), Self::export_dtype(r, float), r.shape.clone())).collect();
        let mut meta = self.source_metadata.clone();
        meta.insert("arrowquant.dequantized_from".to_string(), format!("{FORMAT_NAME} {}", self.format_version));
        Ok(write_header(&tensors, &meta))
    }

    /// One tensor's bytes for the export (little-endian), matching [`export_header`](Self::export_header).
    pub fn export_tensor(&self, name: &str, float: Dtype) -> Result<Vec<u8>> {
        let row = self.row(name)?;
        if !row.dtype.is_float() {
            return Ok(row.data.clone());
        }
        if row.stored == Stored::F16 && float == Dtype::F16 {
            return Ok(row.data.clone());
        }
        let values = self.dequantize(name)?;
        Ok(match float {
            Dtype::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
    }
}

/// The float dtype a file is exported as, from a user string ('f32' or 'f16').
pub fn parse_export_dtype(s: &str) -> Result<Dtype> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(Dtype::F32),
        "f16" | "float16" => Ok(Dtype::F16),
        _ => Err(AqError::config("dtype", format!("'{s}'"), "'f32' or 'f16'")),
    }
}
