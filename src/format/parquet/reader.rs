//! Open an arrowquant Parquet file, list its tensors, and reconstruct any tensor bit-exactly as
//! validation measured it. Every row is checked against the format's invariants on open, so a
//! foreign or damaged file is rejected with a message naming the column or tensor.

use std::collections::BTreeMap;

use bytes::Bytes;
use half::f16;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::pages;
use super::row_groups::{check_chunk_ranges, check_row, perr, read_row_group, Leaves};
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

/// The body checksum (2.3): the bytes before the footer are the ones written, before any page is
/// handed to the Parquet decoder (which may not survive a damaged page).
fn check_body(kv: &BTreeMap<String, String>, bytes: &[u8]) -> Result<()> {
    let number = |key: &str| kv.get(key).and_then(|v| v.parse::<u64>().ok());
    let (Some(len), Some(crc)) = (number(KEY_BODY_BYTES), number(KEY_BODY_CRC)) else {
        return Err(perr(format!("metadata keys '{KEY_BODY_BYTES}' and '{KEY_BODY_CRC}' are missing")));
    };
    if len > bytes.len() as u64 || crc32fast::hash(&bytes[..len as usize]) as u64 != crc {
        return Err(perr("the row groups do not match arrowquant.body_crc32 (damaged file)"));
    }
    Ok(())
}

/// The minor version of `arrowquant.format_version` (`2.3` → 3), compared as a number.
fn version_minor(kv: &BTreeMap<String, String>) -> Option<u32> {
    kv.get(KEY_FORMAT_VERSION)?.split('.').nth(1)?.parse().ok()
}

impl QuantizedFile {
    pub fn open(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 12 || &bytes[..4] != b"PAR1" || &bytes[bytes.len() - 4..] != b"PAR1" {
            return Err(perr(format!(
                "not a Parquet file ({} bytes; a Parquet file starts and ends with 'PAR1'; truncated?)",
                bytes.len()
            )));
        }
        let file_len = bytes.len() as u64;
        // The footer length is checked here, not by parquet-rs: on wasm32 a length near 2^32
        // overflows its 32-bit arithmetic or asks for a 4 GiB buffer, and either aborts.
        let footer_len = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().expect("4 bytes"));
        if footer_len as u64 + 12 > file_len {
            return Err(perr(format!(
                "the footer says its metadata is {footer_len} bytes long, but the file has only {file_len} bytes (damaged or truncated)"
            )));
        }
        pages::check_footer(&bytes, footer_len as usize)?;
        let bytes = Bytes::from(bytes);
        let reader = SerializedFileReader::new(bytes.clone())?;
        let kv: BTreeMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| kvs.iter().filter_map(|kv| kv.value.clone().map(|v| (kv.key.clone(), v))).collect())
            .unwrap_or_default();
        match kv.get(KEY_FORMAT) {
            Some(f) if f == FORMAT_NAME => {}
            Some(f) => {
                return Err(perr(format!("not an arrowquant file: {KEY_FORMAT} = '{f}', expected '{FORMAT_NAME}'")))
            }
            None => return Err(perr(format!("not an arrowquant file: metadata key '{KEY_FORMAT}' is missing"))),
        }
        match kv.get(KEY_METADATA_CRC) {
            Some(v)
                if v.parse::<u32>().ok() == Some(metadata_crc(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))) => {}
            Some(_) => {
                return Err(perr("the arrowquant.* metadata does not match arrowquant.metadata_crc32 (damaged file)"))
            }
            // Before 2.2 the metadata had no checksum.
            None if version_minor(&kv).is_some_and(|m| m >= 2) => {
                return Err(perr(format!("metadata key '{KEY_METADATA_CRC}' is missing")))
            }
            None => {}
        }
        let format_version = kv.get(KEY_FORMAT_VERSION).cloned().unwrap_or_default();
        let major = format_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
        let minor = version_minor(&kv).unwrap_or(0);
        if major != Some(FORMAT_MAJOR) {
            return Err(perr(format!(
                "format version '{format_version}' is not supported; this reader reads {FORMAT_MAJOR}.x"
            )));
        }
        let source_metadata = match kv.get(KEY_SOURCE_METADATA) {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| perr(format!("{KEY_SOURCE_METADATA} is not a JSON string map: {e}")))?,
            None => BTreeMap::new(),
        };
        if minor >= 3 {
            check_body(&kv, &bytes)?;
        }
        check_chunk_ranges(reader.metadata(), file_len)?;
        pages::check_pages(reader.metadata(), &bytes)?;
        let leaves = Leaves::find(reader.metadata().file_metadata().schema_descr())?;
        let mut rows = Vec::new();
        for i in 0..reader.num_row_groups() {
            read_row_group(reader.get_row_group(i)?.as_ref(), &leaves, &mut rows)?;
        }
        for row in &rows {
            check_row(row)?;
        }
        if minor >= 3 {
            let said = kv.get(KEY_TENSOR_COUNT).and_then(|v| v.parse::<usize>().ok());
            if said != Some(rows.len()) {
                return Err(perr(format!(
                    "the file holds {} tensors but its metadata says {} (damaged: row groups lost?)",
                    rows.len(),
                    kv.get(KEY_TENSOR_COUNT).map_or("nothing", String::as_str)
                )));
            }
        }
        Ok(QuantizedFile {
            format_version,
            library_version: kv.get(KEY_LIBRARY_VERSION).cloned().unwrap_or_default(),
            config_json: kv.get(KEY_CONFIG).cloned().unwrap_or_default(),
            modality: kv.get(KEY_MODALITY).cloned().unwrap_or_else(|| "unknown".to_string()),
            source_metadata,
            calibration_json: kv.get(KEY_CALIBRATION).cloned(),
            rows,
        })
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
