//! Open an arrowquant Parquet file, list its tensors, and reconstruct any tensor bit-exactly as
//! validation measured it. Every row is checked against the format's invariants on open, so a
//! foreign or damaged file is rejected with a message naming the column or tensor.

use std::collections::BTreeMap;

use arrow_array::{
    Array, BinaryArray, BooleanArray, Float16Array, Float32Array, Float64Array, Int32Array, ListArray, RecordBatch,
    StringArray, StructArray, UInt32Array, UInt64Array, UInt8Array,
};
use bytes::Bytes;
use half::f16;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::schema::*;
use super::{Metrics, SpatialMeta, Storage, Stored, TensorRow};
use crate::diffusion::timegroups::TimeGroup;
use crate::error::{AqError, Result};
use crate::format::safetensors::write_header;
use crate::quant::dtype::{decode_f32, Dtype};
use crate::quant::layout::{undo_equalization, ChannelLayout, Layout};
use crate::quant::tensor::{dequantize_parts, MAX_GROUP};
use crate::quant::width::Width;

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

fn perr(msg: impl Into<String>) -> AqError {
    AqError::Parquet(msg.into())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .ok_or_else(|| perr(format!("missing column '{name}'")))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| {
            perr(format!(
                "column '{name}' has type {}, not the one docs/FORMAT.md specifies",
                batch.column_by_name(name).map(|c| c.data_type().to_string()).unwrap_or_default()
            ))
        })
}

fn opt<T: Copy>(present: bool, v: T) -> Option<T> {
    present.then_some(v)
}

fn list_values<T: 'static>(list: &ListArray, i: usize, what: &str) -> Result<Option<std::sync::Arc<dyn Array>>> {
    if list.is_null(i) {
        return Ok(None);
    }
    let v = list.value(i);
    if v.as_any().downcast_ref::<T>().is_none() {
        return Err(perr(format!("column '{what}' has items of type {}", v.data_type())));
    }
    Ok(Some(v))
}

impl QuantizedFile {
    pub fn open(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() < 12 || &bytes[..4] != b"PAR1" || &bytes[bytes.len() - 4..] != b"PAR1" {
            return Err(perr(format!(
                "not a Parquet file ({} bytes; a Parquet file starts and ends with 'PAR1'; truncated?)",
                bytes.len()
            )));
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))?;
        let kv: BTreeMap<String, String> = builder
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
        let format_version = kv.get(KEY_FORMAT_VERSION).cloned().unwrap_or_default();
        let major = format_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
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
        let reader = builder.build()?;
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch?;
            read_batch(&batch, &mut rows)?;
        }
        for row in &rows {
            check_row(row)?;
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

fn read_batch(batch: &RecordBatch, rows: &mut Vec<TensorRow>) -> Result<()> {
    let name = column::<StringArray>(batch, "name")?;
    let shape = column::<ListArray>(batch, "shape")?;
    let dtype = column::<StringArray>(batch, "dtype")?;
    let storage = column::<StringArray>(batch, "storage")?;
    let requested_bits = column::<UInt8Array>(batch, "requested_bits")?;
    let bits = column::<UInt8Array>(batch, "bits")?;
    let group_size = column::<UInt32Array>(batch, "group_size")?;
    let data = column::<BinaryArray>(batch, "data")?;
    let crc = column::<UInt32Array>(batch, "data_crc32")?;
    let scales = column::<ListArray>(batch, "scales")?;
    let mins = column::<ListArray>(batch, "mins")?;
    let cosine = column::<Float64Array>(batch, "cosine")?;
    let snr = column::<Float64Array>(batch, "snr_db")?;
    let rel = column::<Float64Array>(batch, "rel_rmse")?;
    let maxe = column::<Float64Array>(batch, "max_abs_error")?;
    let reason = column::<StringArray>(batch, "reason")?;
    let time_groups = column::<ListArray>(batch, "time_groups")?;
    let spatial = column::<StructArray>(batch, "spatial")?;
    // Added in 2.1: a 2.0 file has no such column and every value is null.
    let weighted = match batch.column_by_name("weighted_snr_db") {
        None => None,
        Some(_) => Some(column::<Float64Array>(batch, "weighted_snr_db")?),
    };
    let f16s = |list: &ListArray, i: usize, what: &str| -> Result<Option<Vec<u16>>> {
        Ok(list_values::<Float16Array>(list, i, what)?.map(|a| {
            let a = a.as_any().downcast_ref::<Float16Array>().expect("checked");
            a.values().iter().map(|v| v.to_bits()).collect()
        }))
    };
    for i in 0..batch.num_rows() {
        let row_name = name.value(i).to_string();
        let shape_v = list_values::<UInt64Array>(shape, i, "shape")?
            .ok_or_else(|| perr(format!("tensor '{row_name}': shape is null")))?;
        let shape_v = shape_v.as_any().downcast_ref::<UInt64Array>().expect("checked").values().to_vec();
        let dtype_s = dtype.value(i);
        let storage_s = storage.value(i);
        let row_dtype =
            Dtype::parse(dtype_s).ok_or_else(|| perr(format!("tensor '{row_name}': unknown dtype '{dtype_s}'")))?;
        let storage = Storage::parse(storage_s)
            .ok_or_else(|| perr(format!("tensor '{row_name}': unknown storage '{storage_s}'")))?;
        let parts = StoredColumns {
            storage,
            bits: opt(bits.is_valid(i), bits.value(i)),
            group_size: opt(group_size.is_valid(i), group_size.value(i)),
            scales: f16s(scales, i, "scales")?,
            mins: f16s(mins, i, "mins")?,
        };
        let metric_columns = [cosine, snr, rel, maxe].map(|c| opt(c.is_valid(i), c.value(i)));
        let metrics = match metric_columns {
            [Some(cosine), Some(snr_db), Some(rel_rmse), Some(max_abs_error)] => {
                Some(Metrics { cosine, snr_db, rel_rmse, max_abs_error })
            }
            [None, None, None, None] => None,
            _ => {
                return Err(perr(format!(
                    "tensor '{row_name}': cosine, snr_db, rel_rmse and max_abs_error must be all set or all null"
                )))
            }
        };
        rows.push(TensorRow {
            stored: parts.into_stored(&row_name, &shape_v, row_dtype)?,
            dtype: row_dtype,
            shape: shape_v,
            requested_bits: opt(requested_bits.is_valid(i), requested_bits.value(i)),
            data: data.value(i).to_vec(),
            data_crc32: crc.value(i),
            metrics,
            reason: reason.value(i).to_string(),
            weighted_snr_db: weighted.and_then(|w| opt(w.is_valid(i), w.value(i))),
            time_groups: read_time_groups(time_groups, i, &row_name)?,
            spatial: read_spatial(spatial, i, &row_name)?,
            name: row_name,
        });
    }
    Ok(())
}

fn struct_child<'a, T: 'static>(s: &'a StructArray, name: &str, tensor: &str) -> Result<&'a T> {
    s.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| perr(format!("tensor '{tensor}': struct field '{name}' is missing or mistyped")))
}

fn read_time_groups(list: &ListArray, i: usize, tensor: &str) -> Result<Option<Vec<TimeGroup>>> {
    let Some(v) = list_values::<StructArray>(list, i, "time_groups")? else { return Ok(None) };
    let st = v.as_any().downcast_ref::<StructArray>().expect("checked");
    let t0 = struct_child::<UInt32Array>(st, "t_start", tensor)?;
    let t1 = struct_child::<UInt32Array>(st, "t_end", tensor)?;
    let sc = struct_child::<Float32Array>(st, "scale", tensor)?;
    let zp = struct_child::<Int32Array>(st, "zero_point", tensor)?;
    Ok(Some(
        (0..st.len())
            .map(|k| TimeGroup {
                t_start: t0.value(k),
                t_end: t1.value(k),
                scale: sc.value(k),
                zero_point: zp.value(k),
            })
            .collect(),
    ))
}

fn read_spatial(st: &StructArray, i: usize, tensor: &str) -> Result<Option<SpatialMeta>> {
    if st.is_null(i) {
        return Ok(None);
    }
    let scales = struct_child::<ListArray>(st, "equalization_scales", tensor)?;
    let values = list_values::<Float32Array>(scales, i, "spatial.equalization_scales")?
        .ok_or_else(|| perr(format!("tensor '{tensor}': spatial.equalization_scales is null")))?;
    Ok(Some(SpatialMeta {
        enabled: struct_child::<BooleanArray>(st, "enabled", tensor)?.value(i),
        channel_equalization: struct_child::<BooleanArray>(st, "channel_equalization", tensor)?.value(i),
        activation_smoothing: struct_child::<BooleanArray>(st, "activation_smoothing", tensor)?.value(i),
        alpha: struct_child::<Float32Array>(st, "alpha", tensor)?.value(i),
        scales: values.as_any().downcast_ref::<Float32Array>().expect("checked").values().to_vec(),
    }))
}

/// The storage columns of one row as read, before they are checked to form a [`Stored`].
struct StoredColumns {
    storage: Storage,
    bits: Option<u8>,
    group_size: Option<u32>,
    scales: Option<Vec<u16>>,
    mins: Option<Vec<u16>>,
}

impl StoredColumns {
    /// The stored form these columns describe, or `E_PARQUET` naming what does not fit: a
    /// quantized row has a width, a supported group size and one scale and min per group; f16
    /// and raw rows have no group params.
    fn into_stored(self, name: &str, shape: &[u64], dtype: Dtype) -> Result<Stored> {
        let bad = |what: String| perr(format!("tensor '{name}': {what}"));
        let has_params = self.group_size.is_some() || self.scales.is_some() || self.mins.is_some();
        if self.storage != Storage::Quantized && has_params {
            return Err(bad(format!("{} storage with group_size, scales or mins", self.storage.as_str())));
        }
        match self.storage {
            Storage::Quantized => {
                let width = self
                    .bits
                    .and_then(Width::from_bits)
                    .ok_or_else(|| bad(format!("quantized with bits {:?}", self.bits)))?;
                let g = self.group_size.unwrap_or(0) as usize;
                if g == 0 || g > MAX_GROUP || !(g * width.bits() as usize).is_multiple_of(8) {
                    return Err(bad(format!("group_size {:?} is not supported", self.group_size)));
                }
                let numel = shape
                    .iter()
                    .try_fold(1u64, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| bad("shape overflows".into()))?;
                if numel == 0 {
                    return Err(bad("quantized tensor has no elements".into()));
                }
                let groups = Layout::for_shape(shape, g).groups();
                for (what, v) in [("scales", &self.scales), ("mins", &self.mins)] {
                    let n = v.as_ref().map(|v| v.len());
                    if n != Some(groups) {
                        return Err(bad(format!(
                            "{what} has {n:?} values, expected {groups} (rows × ceil(row_len / group_size))"
                        )));
                    }
                }
                let (scales, mins) = (self.scales.expect("checked"), self.mins.expect("checked"));
                Ok(Stored::Quantized { width, group_size: g as u32, scales, mins })
            }
            Storage::F16 => {
                if !dtype.is_float() {
                    return Err(bad(format!("f16 storage of a {} tensor", dtype.name())));
                }
                if !matches!(self.bits, None | Some(16)) {
                    return Err(bad(format!("f16 storage with bits {:?}", self.bits)));
                }
                Ok(Stored::F16)
            }
            Storage::Raw => match self.bits {
                None => Ok(Stored::Raw),
                Some(b) => Err(bad(format!("raw storage with bits {b}"))),
            },
        }
    }
}

/// The invariants of docs/FORMAT.md for one row.
fn check_row(row: &TensorRow) -> Result<()> {
    let bad = |what: String| perr(format!("tensor '{}': {what}", row.name));
    let numel =
        row.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows".into()))?;
    if crc32fast::hash(&row.data) != row.data_crc32 {
        return Err(bad("data does not match its data_crc32 (damaged file)".into()));
    }
    let expected = match &row.stored {
        Stored::Quantized { width, group_size, .. } => {
            Layout::for_shape(&row.shape, *group_size as usize).codes_len(*width) as u64
        }
        Stored::F16 => numel * 2,
        Stored::Raw => numel * row.dtype.size_bytes() as u64,
    };
    if row.data.len() as u64 != expected {
        return Err(bad(format!("data has {} bytes, expected {expected} for its shape and storage", row.data.len())));
    }
    if let Some(sp) = &row.spatial {
        let channels = ChannelLayout::for_shape(&row.shape).map(|c| c.input);
        if row.stored.storage() != Storage::Quantized || channels != Some(sp.scales.len()) {
            return Err(bad(format!(
                "spatial.equalization_scales has {} values; expected one per input channel ({channels:?}) of a quantized row",
                sp.scales.len()
            )));
        }
        if let Some(j) = sp.scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad(format!("spatial.equalization_scales[{j}] = {} is not a positive number", sp.scales[j])));
        }
    }
    if let Some(groups) = &row.time_groups {
        let mut next = 0;
        for (k, g) in groups.iter().enumerate() {
            if g.t_start != next || g.t_end <= g.t_start || !(g.scale.is_finite() && g.scale > 0.0) {
                return Err(bad(format!(
                    "time_groups[{k}] = [{}, {}) scale {}: groups must tile the timesteps from 0 with positive scales",
                    g.t_start, g.t_end, g.scale
                )));
            }
            next = g.t_end;
        }
    }
    Ok(())
}
