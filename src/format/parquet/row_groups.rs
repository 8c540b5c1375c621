//! A row group's columns read back into rows, each checked against the format's invariants
//! (docs/FORMAT.md): the reader's half that knows the columns, apart from the file-level checks
//! in `reader`.

use parquet::basic::Type as PhysicalType;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::RowGroupReader;
use parquet::schema::types::SchemaDescriptor;

use super::columns::{self, find_leaf, Leaf};
use super::{Metrics, SpatialMeta, Storage, Stored, TensorRow};
use crate::diffusion::timegroups::TimeGroup;
use crate::error::{AqError, Result};
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;
use crate::quant::layout::{ChannelLayout, Layout};
use crate::quant::tensor::MAX_GROUP;
use crate::quant::width::Width;

pub(super) fn perr(msg: impl Into<String>) -> AqError {
    AqError::Parquet(msg.into())
}

/// Every column chunk lies inside the file: parquet-rs asserts (panics) on negative offsets and
/// sizes, and a chunk that runs past the end is damage, not something to read.
pub(super) fn check_chunk_ranges(meta: &ParquetMetaData, file_len: u64) -> Result<()> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(perr(format!("row group {g} has a negative row count")));
        }
        for col in rg.columns() {
            let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
            let len = col.compressed_size();
            let inside =
                start >= 0 && len >= 0 && (start as u64).checked_add(len as u64).is_some_and(|end| end <= file_len);
            if !inside {
                return Err(perr(format!(
                    "column '{}' of row group {g} claims bytes {start}..+{len} of a {file_len}-byte file (damaged file)",
                    col.column_path().string()
                )));
            }
        }
    }
    Ok(())
}

/// The leaf columns of the schema (docs/FORMAT.md), located by name in the file's own schema.
pub(super) struct Leaves {
    name: Leaf,
    shape: Leaf,
    dtype: Leaf,
    storage: Leaf,
    requested_bits: Leaf,
    bits: Leaf,
    group_size: Leaf,
    data: Leaf,
    data_crc32: Leaf,
    scales: Leaf,
    mins: Leaf,
    metrics: [Leaf; 4],
    reason: Leaf,
    tg_start: Leaf,
    tg_end: Leaf,
    tg_scale: Leaf,
    tg_zero_point: Leaf,
    sp_enabled: Leaf,
    sp_channel_equalization: Leaf,
    sp_activation_smoothing: Leaf,
    sp_alpha: Leaf,
    sp_scales: Leaf,
    /// Added in 2.1: a 2.0 file has no such column and every value is null.
    weighted: Option<Leaf>,
    /// Added in 2.2.
    output: Option<Leaf>,
    row_crc: Option<Leaf>,
    /// Added in 2.4.
    block_type: Option<Leaf>,
}

impl Leaves {
    pub(super) fn find(schema: &SchemaDescriptor) -> Result<Self> {
        use PhysicalType as P;
        let need = |path: &[&str], t: P| -> Result<Leaf> {
            find_leaf(schema, path, t)?.ok_or_else(|| perr(format!("missing column '{}'", path[0])))
        };
        let list = |name: &str, t: P| need(&[name, "*", "*"], t);
        Ok(Leaves {
            name: need(&["name"], P::BYTE_ARRAY)?,
            shape: list("shape", P::INT64)?,
            dtype: need(&["dtype"], P::BYTE_ARRAY)?,
            storage: need(&["storage"], P::BYTE_ARRAY)?,
            requested_bits: need(&["requested_bits"], P::INT32)?,
            bits: need(&["bits"], P::INT32)?,
            group_size: need(&["group_size"], P::INT32)?,
            data: need(&["data"], P::BYTE_ARRAY)?,
            data_crc32: need(&["data_crc32"], P::INT32)?,
            scales: list("scales", P::FIXED_LEN_BYTE_ARRAY)?,
            mins: list("mins", P::FIXED_LEN_BYTE_ARRAY)?,
            metrics: [
                need(&["cosine"], P::DOUBLE)?,
                need(&["snr_db"], P::DOUBLE)?,
                need(&["rel_rmse"], P::DOUBLE)?,
                need(&["max_abs_error"], P::DOUBLE)?,
            ],
            reason: need(&["reason"], P::BYTE_ARRAY)?,
            tg_start: need(&["time_groups", "*", "*", "t_start"], P::INT32)?,
            tg_end: need(&["time_groups", "*", "*", "t_end"], P::INT32)?,
            tg_scale: need(&["time_groups", "*", "*", "scale"], P::FLOAT)?,
            tg_zero_point: need(&["time_groups", "*", "*", "zero_point"], P::INT32)?,
            sp_enabled: need(&["spatial", "enabled"], P::BOOLEAN)?,
            sp_channel_equalization: need(&["spatial", "channel_equalization"], P::BOOLEAN)?,
            sp_activation_smoothing: need(&["spatial", "activation_smoothing"], P::BOOLEAN)?,
            sp_alpha: need(&["spatial", "alpha"], P::FLOAT)?,
            sp_scales: need(&["spatial", "equalization_scales", "*", "*"], P::FLOAT)?,
            weighted: find_leaf(schema, &["weighted_snr_db"], P::DOUBLE)?,
            output: find_leaf(schema, &["output_snr_db"], P::DOUBLE)?,
            row_crc: find_leaf(schema, &["row_crc32"], P::INT32)?,
            block_type: find_leaf(schema, &["block_type"], P::BYTE_ARRAY)?,
        })
    }
}

fn utf8(v: ByteArray, column: &str) -> Result<String> {
    String::from_utf8(v.data().to_vec()).map_err(|_| perr(format!("column '{column}' holds bytes that are not UTF-8")))
}

/// The rows of one row group.
pub(super) fn read_row_group(rg: &dyn RowGroupReader, l: &Leaves, out: &mut Vec<TensorRow>) -> Result<()> {
    let n = usize::try_from(rg.metadata().num_rows()).map_err(|_| perr("a row group has a negative row count"))?;
    let strings = |leaf: Leaf, what: &str| -> Result<Vec<String>> {
        columns::read::<ByteArrayType>(rg, leaf, n)?.required(n)?.into_iter().map(|v| utf8(v, what)).collect()
    };
    let names = strings(l.name, "name")?;
    let dtypes = strings(l.dtype, "dtype")?;
    let storages = strings(l.storage, "storage")?;
    let reasons = strings(l.reason, "reason")?;
    let shapes = columns::read::<Int64Type>(rg, l.shape, n)?.lists(n)?;
    let i32s = |leaf: Leaf| columns::read::<Int32Type>(rg, leaf, n)?.optional(n);
    let (requested, bits, groups) = (i32s(l.requested_bits)?, i32s(l.bits)?, i32s(l.group_size)?);
    let data = columns::read::<ByteArrayType>(rg, l.data, n)?.required(n)?;
    let crcs = columns::read::<Int32Type>(rg, l.data_crc32, n)?.required(n)?;
    let halfs = |leaf: Leaf| -> Result<Vec<Option<Vec<u16>>>> {
        columns::read::<FixedLenByteArrayType>(rg, leaf, n)?
            .lists(n)?
            .into_iter()
            .map(|list| {
                list.map(|items| {
                    items
                        .iter()
                        .map(|b| match b.data() {
                            &[lo, hi] => Ok(u16::from_le_bytes([lo, hi])),
                            _ => Err(perr("a scale or min is not a 2-byte f16")),
                        })
                        .collect()
                })
                .transpose()
            })
            .collect()
    };
    let (scales, mins) = (halfs(l.scales)?, halfs(l.mins)?);
    let doubles = |leaf: Leaf| columns::read::<DoubleType>(rg, leaf, n)?.optional(n);
    let metrics: Vec<Vec<Option<f64>>> = l.metrics.iter().map(|&m| doubles(m)).collect::<Result<_>>()?;
    let weighted = match l.weighted {
        Some(w) => doubles(w)?,
        None => vec![None; n],
    };
    let row_crcs = match l.row_crc {
        Some(c) => columns::read::<Int32Type>(rg, c, n)?.optional(n)?,
        None => vec![None; n],
    };
    let output = match l.output {
        Some(o) => doubles(o)?,
        None => vec![None; n],
    };
    let block_types: Vec<Option<String>> = match l.block_type {
        Some(b) => columns::read::<ByteArrayType>(rg, b, n)?
            .optional(n)?
            .into_iter()
            .map(|v| v.map(|v| utf8(v, "block_type")).transpose())
            .collect::<Result<_>>()?,
        None => vec![None; n],
    };
    let tg_lists = |leaf: Leaf| columns::read::<Int32Type>(rg, leaf, n)?.lists(n);
    let (tg_start, tg_end, tg_zp) = (tg_lists(l.tg_start)?, tg_lists(l.tg_end)?, tg_lists(l.tg_zero_point)?);
    let tg_scale = columns::read::<FloatType>(rg, l.tg_scale, n)?.lists(n)?;
    let bools = |leaf: Leaf| columns::read::<BoolType>(rg, leaf, n)?.optional(n);
    let (sp_on, sp_ce, sp_as) =
        (bools(l.sp_enabled)?, bools(l.sp_channel_equalization)?, bools(l.sp_activation_smoothing)?);
    let sp_alpha = columns::read::<FloatType>(rg, l.sp_alpha, n)?.optional(n)?;
    let sp_scales = columns::read::<FloatType>(rg, l.sp_scales, n)?.lists(n)?;
    let rows = names.into_iter().zip(data).enumerate();
    for (i, (name, data)) in rows {
        let bad = |what: &str| perr(format!("tensor '{name}': {what}"));
        let shape: Vec<u64> = shapes[i]
            .clone()
            .ok_or_else(|| bad("shape is null"))?
            .into_iter()
            .map(|d| u64::try_from(d).map_err(|_| bad(&format!("shape has a negative dimension {d}"))))
            .collect::<Result<_>>()?;
        let dtype = Dtype::parse(&dtypes[i]).ok_or_else(|| bad(&format!("unknown dtype '{}'", dtypes[i])))?;
        let storage = Storage::parse(&storages[i]).ok_or_else(|| bad(&format!("unknown storage '{}'", storages[i])))?;
        let narrow = |v: Option<i32>, what: &str| -> Result<Option<u8>> {
            v.map(|b| u8::try_from(b).map_err(|_| bad(&format!("{what} {b} is out of range")))).transpose()
        };
        let parts = StoredColumns {
            storage,
            bits: narrow(bits[i], "bits")?,
            group_size: groups[i].map(|g| g as u32),
            scales: scales[i].clone(),
            mins: mins[i].clone(),
            block_type: block_types[i].clone(),
        };
        let metrics = match [metrics[0][i], metrics[1][i], metrics[2][i], metrics[3][i]] {
            [Some(cosine), Some(snr_db), Some(rel_rmse), Some(max_abs_error)] => {
                Some(Metrics { cosine, snr_db, rel_rmse, max_abs_error })
            }
            [None, None, None, None] => None,
            _ => return Err(bad("cosine, snr_db, rel_rmse and max_abs_error must be all set or all null")),
        };
        let time_groups = match (&tg_start[i], &tg_end[i], &tg_scale[i], &tg_zp[i]) {
            (None, None, None, None) => None,
            (Some(a), Some(b), Some(c), Some(d)) if a.len() == b.len() && b.len() == c.len() && c.len() == d.len() => {
                Some(
                    (0..a.len())
                        .map(|k| TimeGroup { t_start: a[k] as u32, t_end: b[k] as u32, scale: c[k], zero_point: d[k] })
                        .collect(),
                )
            }
            _ => return Err(bad("time_groups fields disagree")),
        };
        let spatial = match (sp_on[i], sp_ce[i], sp_as[i], sp_alpha[i], &sp_scales[i]) {
            (None, None, None, None, None) => None,
            (Some(enabled), Some(channel_equalization), Some(activation_smoothing), Some(alpha), Some(scales)) => {
                Some(SpatialMeta { enabled, channel_equalization, activation_smoothing, alpha, scales: scales.clone() })
            }
            (_, _, _, _, None) => return Err(bad("spatial.equalization_scales is null")),
            _ => return Err(bad("spatial fields disagree")),
        };
        let row = TensorRow {
            stored: parts.into_stored(&name, &shape, dtype)?,
            dtype,
            shape,
            requested_bits: narrow(requested[i], "requested_bits")?,
            data: data.data().to_vec(),
            data_crc32: crcs[i] as u32,
            metrics,
            reason: reasons[i].clone(),
            weighted_snr_db: weighted[i],
            output_snr_db: output[i],
            time_groups,
            spatial,
            name,
        };
        // 2.2 files protect every field a reader reconstructs with; a 2.1 file has no row_crc32.
        if let Some(crc) = row_crcs[i] {
            if crc as u32 != row.integrity_crc() {
                return Err(perr(format!(
                    "tensor '{}': its name, shape, storage, params, time groups or equalization do not match row_crc32 (damaged file)",
                    row.name
                )));
            }
        } else if l.row_crc.is_some() {
            return Err(perr(format!("tensor '{}': row_crc32 is null", row.name)));
        }
        out.push(row);
    }
    Ok(())
}

/// The storage columns of one row as read, before they are checked to form a [`Stored`].
struct StoredColumns {
    storage: Storage,
    bits: Option<u8>,
    group_size: Option<u32>,
    scales: Option<Vec<u16>>,
    mins: Option<Vec<u16>>,
    block_type: Option<String>,
}

impl StoredColumns {
    /// The stored form these columns describe, or `E_PARQUET` naming what does not fit: a
    /// quantized row has a width, a supported group size and one scale and min per group; a
    /// blocks row a block type with its code width and block length; f16 and raw rows have none.
    fn into_stored(self, name: &str, shape: &[u64], dtype: Dtype) -> Result<Stored> {
        let bad = |what: String| perr(format!("tensor '{name}': {what}"));
        let has_params = self.group_size.is_some() || self.scales.is_some() || self.mins.is_some();
        let blocks = self.storage == Storage::Blocks;
        if self.storage != Storage::Quantized && !blocks && has_params {
            return Err(bad(format!("{} storage with group_size, scales or mins", self.storage.as_str())));
        }
        if self.block_type.is_some() != blocks {
            return Err(bad(format!("{} storage with block_type {:?}", self.storage.as_str(), self.block_type)));
        }
        match self.storage {
            Storage::Blocks => {
                let named = self.block_type.as_deref().unwrap_or_default();
                let ty = GgmlType::parse_block_type(named)
                    .filter(|t| t.name() == named)
                    .ok_or_else(|| bad(format!("unknown block_type '{named}'")))?;
                if self.bits != Some(ty.code_bits()) || self.group_size != Some(ty.block_values() as u32) {
                    return Err(bad(format!(
                        "{} blocks with bits {:?} and group_size {:?} (expected {} and {})",
                        ty.name(),
                        self.bits,
                        self.group_size,
                        ty.code_bits(),
                        ty.block_values()
                    )));
                }
                if self.scales.is_some() || self.mins.is_some() {
                    return Err(bad("blocks storage with scales or mins".into()));
                }
                if !dtype.is_float() {
                    return Err(bad(format!("blocks storage of a {} tensor", dtype.name())));
                }
                Ok(Stored::Blocks(ty))
            }
            Storage::Quantized => {
                let width = self
                    .bits
                    .and_then(Width::from_bits)
                    .ok_or_else(|| bad(format!("quantized with bits {:?}", self.bits)))?;
                let g = self.group_size.unwrap_or(0) as usize;
                if g == 0 || g > MAX_GROUP || !(g * width.bits() as usize).is_multiple_of(8) {
                    return Err(bad(format!("group_size {:?} is not supported", self.group_size)));
                }
                let layout = Layout::checked(shape, g).ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
                if layout.numel() == 0 {
                    return Err(bad("quantized tensor has no elements".into()));
                }
                let groups = layout.groups();
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
pub(super) fn check_row(row: &TensorRow) -> Result<()> {
    let bad = |what: String| perr(format!("tensor '{}': {what}", row.name));
    let overflow = || bad(format!("shape {:?} overflows", row.shape));
    let layout = Layout::checked(&row.shape, 1).ok_or_else(overflow)?;
    if crc32fast::hash(&row.data) != row.data_crc32 {
        return Err(bad("data does not match its data_crc32 (damaged file)".into()));
    }
    // Layout::checked bounds the element count by usize::MAX / 4, so none of these wraps.
    let expected = match &row.stored {
        Stored::Quantized { width, group_size, .. } => {
            Layout::checked(&row.shape, *group_size as usize).ok_or_else(overflow)?.codes_len(*width) as u64
        }
        Stored::F16 => layout.numel() as u64 * 2,
        Stored::Raw => layout.numel() as u64 * row.dtype.size_bytes() as u64,
        Stored::Blocks(ty) => ty
            .bytes_for(layout.numel() as u64)
            .ok_or_else(|| bad(format!("{} values are not a whole number of {} blocks", layout.numel(), ty.name())))?,
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
