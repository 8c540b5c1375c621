//! Re-containering without re-quantizing (`arrowquant convert`): a GGUF file's tensors as Parquet
//! rows — block types as `blocks` storage, float and integer tensors as their bytes — and a
//! Parquet file's rows as GGUF tensors wherever a GGUF type holds them exactly. The stored bytes
//! move unchanged (4-bit codes in groups of 32 are repacked into `Q4_1` blocks, whose arithmetic
//! is ours), so every value dequantizes to the same bits in both containers.

use std::collections::{BTreeMap, HashMap};

use crate::error::{AqError, Result};
use crate::format::gguf::arch;
use crate::format::gguf::container::{align, encode_header, TensorInfo, Value, ALIGNMENT};
use crate::format::gguf::reader::{GgufFile, GgufIndex, GgufTensor};
use crate::format::parquet::reader::QuantizedFile;
use crate::format::parquet::schema::*;
use crate::format::parquet::writer::TensorWriter;
use crate::format::parquet::{Stored, TensorRow};
use crate::pipeline::gguf::ggml_shape;
use crate::policy::gguf_mix::MIXES;
use crate::policy::modality::detect;
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;
use crate::quant::width::Width;

/// The `source_metadata` prefix of a GGUF file's metadata values.
const GGUF_PREFIX: &str = "gguf.";
/// GGUF keys a converted file writes itself rather than copies.
const DERIVED_KEYS: [&str; 4] =
    ["general.alignment", "general.file_type", "general.quantization_version", "arrowquant.version"];

fn unconvertible(tensor: &str, message: impl Into<String>) -> AqError {
    AqError::Convert { tensor: tensor.to_string(), message: message.into() }
}

/// A GGUF tensor of type `ty` as the row that holds its bytes.
fn row_of(name: &str, shape: Vec<u64>, ty: GgmlType, data: Vec<u8>) -> TensorRow {
    let (dtype, stored) = match ty {
        GgmlType::F32 => (Dtype::F32, Stored::Raw),
        GgmlType::F16 => (Dtype::F16, Stored::Raw),
        GgmlType::BF16 => (Dtype::BF16, Stored::Raw),
        GgmlType::I8 => (Dtype::I8, Stored::Raw),
        GgmlType::I16 => (Dtype::I16, Stored::Raw),
        GgmlType::I32 => (Dtype::I32, Stored::Raw),
        GgmlType::I64 => (Dtype::I64, Stored::Raw),
        // What ggml decodes a block type to.
        _ => (Dtype::F32, Stored::Blocks(ty)),
    };
    TensorRow {
        name: name.to_string(),
        shape,
        dtype,
        requested_bits: None,
        stored,
        data_crc32: crc32fast::hash(&data),
        data,
        metrics: None,
        reason: format!("converted from GGUF: {} as stored", ty.name()),
        weighted_snr_db: None,
        output_snr_db: None,
        time_groups: None,
        spatial: None,
    }
}

/// A GGUF file as an arrowquant Parquet file, written tensor by tensor as the tensors' bytes
/// arrive (in any order the caller likes; rows follow it), so a file read by range needs memory
/// for one tensor. Its string metadata and `general.file_type` are kept in
/// `arrowquant.source_metadata` under `gguf.`, and come back as such in [`parquet_to_gguf`].
pub struct GgufToParquet {
    writer: TensorWriter,
}

impl GgufToParquet {
    pub fn new(index: &GgufIndex) -> Result<Self> {
        let mut source = BTreeMap::new();
        for (key, value) in &index.header.kv {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::U32(v) if key == "general.file_type" => v.to_string(),
                _ => continue,
            };
            source.insert(format!("{GGUF_PREFIX}{key}"), text);
        }
        let modality = detect(None, None, index.tensors.iter().map(|t| t.name.as_str()));
        let metadata = vec![
            (KEY_FORMAT.to_string(), FORMAT_NAME.to_string()),
            (KEY_FORMAT_VERSION.to_string(), FORMAT_VERSION.to_string()),
            (KEY_LIBRARY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            // No quantizer config made these values.
            (KEY_CONFIG.to_string(), "null".to_string()),
            (KEY_MODALITY.to_string(), modality.name().to_string()),
            (KEY_SOURCE_METADATA.to_string(), serde_json::to_string(&source).expect("string map")),
            (KEY_CONVERTED_FROM.to_string(), "gguf".to_string()),
        ];
        Ok(GgufToParquet { writer: TensorWriter::new(metadata, modality.name())? })
    }

    /// Add one tensor as its stored `bytes` (its whole range in the file); returns the Parquet
    /// bytes finished so far.
    pub fn add(&mut self, tensor: &GgufTensor, bytes: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        tensor.check_len(&bytes)?;
        self.writer.write(row_of(&tensor.name, tensor.shape.clone(), tensor.ty, bytes))?;
        Ok(self.writer.take_output())
    }

    /// The rest of the file; with everything handed out before, the file and its length.
    pub fn finish(self) -> Result<(Vec<Vec<u8>>, u64)> {
        self.writer.finish(Vec::new())
    }
}

/// A GGUF file held in memory as an arrowquant Parquet file, one row per tensor in file order
/// ([`GgufToParquet`]). Returns the file's pieces and its length.
pub fn gguf_to_parquet(file: &GgufFile) -> Result<(Vec<Vec<u8>>, u64)> {
    let mut convert = GgufToParquet::new(&file.index)?;
    let mut out = Vec::new();
    for t in &file.index.tensors {
        out.extend(convert.add(t, file.raw(&t.name)?.to_vec())?);
    }
    let (rest, len) = convert.finish()?;
    out.extend(rest);
    Ok((out, len))
}

/// The GGUF type that holds one row's values exactly, from its descriptive columns alone, or
/// `E_CONVERT` naming it when there is none.
fn gguf_type(row: &TensorRow) -> Result<GgmlType> {
    match &row.stored {
        Stored::Blocks(ty) => Ok(*ty),
        Stored::F16 => Ok(GgmlType::F16),
        Stored::Raw => match row.dtype {
            Dtype::F32 => Ok(GgmlType::F32),
            Dtype::F16 => Ok(GgmlType::F16),
            Dtype::BF16 => Ok(GgmlType::BF16),
            Dtype::I8 => Ok(GgmlType::I8),
            Dtype::I16 => Ok(GgmlType::I16),
            Dtype::I32 => Ok(GgmlType::I32),
            Dtype::I64 => Ok(GgmlType::I64),
            other => Err(unconvertible(&row.name, format!("no GGUF type holds {} values", other.name()))),
        },
        Stored::Quantized { .. } if row.spatial.is_some() => Err(unconvertible(
            &row.name,
            "its weights are stored equalized (W·diag(s)), which a GGUF runtime cannot undo",
        )),
        Stored::Quantized { width: Width::W4, group_size: 32, .. } => {
            let row_len = row.shape.iter().skip(1).product::<u64>();
            if row.shape.len() < 2 || !row_len.is_multiple_of(32) {
                return Err(unconvertible(&row.name, format!("rows of {row_len} values are not whole Q4_1 blocks")));
            }
            Ok(GgmlType::Q4_1)
        }
        Stored::Quantized { width, group_size, .. } => Err(unconvertible(
            &row.name,
            format!(
                "{}-bit codes in groups of {group_size} have no GGUF type with the same arithmetic (only 4-bit \
                 groups of 32 do: Q4_1); quantize the source to GGUF instead (-o model.gguf)",
                width.bits()
            ),
        )),
    }
}

/// The bytes of a row as GGUF type `ty` ([`gguf_type`]): its stored bytes, or its codes and
/// params repacked into `Q4_1` blocks.
fn gguf_data(row: &TensorRow, ty: GgmlType) -> Vec<u8> {
    match &row.stored {
        Stored::Quantized { scales, mins, .. } if ty == GgmlType::Q4_1 => q4_1_blocks(&row.data, scales, mins),
        _ => row.data.clone(),
    }
}

/// 4-bit codes in groups of 32 (two per byte, element 2k in the low nibble), with an f16 scale
/// and min per group, as `Q4_1` blocks: the same `q·d + m` in f32, with the block's codes
/// ordered as ggml stores them (element j in the low nibble of byte j, element j + 16 in its
/// high nibble).
fn q4_1_blocks(codes: &[u8], scales: &[u16], mins: &[u16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(scales.len() * GgmlType::Q4_1.block_bytes());
    for ((packed, d), m) in codes.chunks_exact(16).zip(scales).zip(mins) {
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
        let q = |i: usize| (packed[i / 2] >> (4 * (i % 2))) & 0x0F;
        out.extend((0..16).map(|j| q(j) | (q(j + 16) << 4)));
    }
    out
}

/// ggml's dims (innermost first) for a row of `shape` stored as `ty` in a file of
/// `architecture`, and the shape to record as `comfy.gguf.orig_shape` when the tensor is written
/// reshaped — by the GGUF writer's rule ([`ggml_shape`]), so a file it wrote converts back to the
/// same dims, else as the Parquet format's rows when ggml's rows would not be whole blocks.
fn gguf_dims(name: &str, shape: &[u64], ty: GgmlType, architecture: &str) -> Result<(Vec<u64>, Option<Vec<u64>>)> {
    let float = !matches!(ty, GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64);
    let block = ty.block_values() as u64;
    let mut reshaped = ggml_shape(shape, float, architecture);
    let mut written = match &reshaped {
        Some(r) => r.clone(),
        None if shape.is_empty() => vec![1],
        None => shape.to_vec(),
    };
    // A conv kernel's last dimension is rarely whole blocks; its rows as the Parquet format
    // views them (`[out, in·kh·kw]`, section 4) hold the same values in the same order.
    let row_len: u64 = shape.iter().skip(1).product();
    if !written.last().is_some_and(|r| r.is_multiple_of(block)) && shape.len() > 2 && row_len.is_multiple_of(block) {
        written = vec![shape[0], row_len];
        reshaped = Some(written.clone());
    }
    let row = written.last().copied().unwrap_or(1);
    if !row.is_multiple_of(block) {
        return Err(unconvertible(
            name,
            format!("rows of {row} values (shape {shape:?}) are not whole {} blocks, as ggml needs", ty.name()),
        ));
    }
    Ok((written.iter().rev().copied().collect(), reshaped.map(|_| shape.to_vec())))
}

/// A Parquet file's GGUF form, decided from the rows' descriptive columns alone (a file read by
/// range keeps no tensor data until it writes it): every tensor's type, dims and offset, and the
/// header they make. Rows no GGUF type holds exactly are refused (`E_CONVERT`, naming the tensor).
pub struct GgufPlan {
    header: Vec<u8>,
    /// Per tensor name: its type and byte size.
    tensors: HashMap<String, (GgmlType, u64)>,
}

impl GgufPlan {
    pub fn new(file: &QuantizedFile) -> Result<Self> {
        let mut infos = Vec::with_capacity(file.rows.len());
        let mut tensors = HashMap::with_capacity(file.rows.len());
        let mut kv: Vec<(String, Value)> = Vec::new();
        let mut reshaped = Vec::new();
        let mut offset = 0u64;
        let mut bytes_by_type: BTreeMap<u32, u64> = BTreeMap::new();
        let source = |key: &str| file.source_metadata.get(&format!("{GGUF_PREFIX}{key}"));
        let architecture = match source("general.architecture") {
            Some(a) => a.clone(),
            None => arch::detect(file.rows.iter().map(|r| r.name.as_str()))
                .map_or("unknown".to_string(), |(a, _)| a.to_string()),
        };
        for row in &file.rows {
            let ty = gguf_type(row)?;
            let size = ty.bytes_for(row.numel()).ok_or_else(|| {
                unconvertible(&row.name, format!("{} values are not whole {} blocks", row.numel(), ty.name()))
            })?;
            let (dims, orig) = gguf_dims(&row.name, &row.shape, ty, &architecture)?;
            if let Some(orig) = orig {
                let orig: Vec<i32> =
                    row.shape.iter().map(|&d| i32::try_from(d)).collect::<std::result::Result<_, _>>().map_err(
                        |_| unconvertible(&row.name, format!("dimension of {orig:?} beyond 2^31 cannot be recorded")),
                    )?;
                reshaped.push((format!("comfy.gguf.orig_shape.{}", row.name), Value::I32Array(orig)));
            }
            *bytes_by_type.entry(ty.id()).or_default() += size;
            infos.push(TensorInfo { name: row.name.clone(), dims, ty, offset });
            if tensors.insert(row.name.clone(), (ty, size)).is_some() {
                return Err(unconvertible(&row.name, "the file holds two tensors of this name, which GGUF cannot"));
            }
            offset = offset
                .checked_add(size)
                .and_then(align)
                .ok_or_else(|| AqError::TooLarge("the GGUF data section overflows 64 bits".into()))?;
        }
        // The type holding most bytes names the file, as a mix would.
        let main = bytes_by_type.iter().max_by_key(|(_, b)| **b).and_then(|(id, _)| GgmlType::from_id(*id));
        let file_type = source("general.file_type")
            .and_then(|v| v.parse::<u32>().ok())
            .or_else(|| main.and_then(|m| MIXES.iter().find(|x| x.main == m)).map(|x| x.file_type))
            .unwrap_or(0);
        kv.push(("general.architecture".to_string(), Value::String(architecture)));
        kv.push(("general.quantization_version".to_string(), Value::U32(2)));
        kv.push(("general.file_type".to_string(), Value::U32(file_type)));
        kv.push(("general.alignment".to_string(), Value::U32(ALIGNMENT as u32)));
        // In the GGUF writer's order, so that a file it wrote comes back byte for byte.
        if let Some(name) = source("general.name") {
            kv.push(("general.name".to_string(), Value::String(name.clone())));
        }
        kv.push(("arrowquant.version".to_string(), Value::String(env!("CARGO_PKG_VERSION").to_string())));
        for (key, value) in &file.source_metadata {
            let Some(key) = key.strip_prefix(GGUF_PREFIX) else { continue };
            if !["general.architecture", "general.name"].contains(&key) && !DERIVED_KEYS.contains(&key) {
                kv.push((key.to_string(), Value::String(value.clone())));
            }
        }
        kv.extend(reshaped);
        Ok(GgufPlan { header: encode_header(&kv, &infos), tensors })
    }

    /// The header and everything before the first tensor's bytes.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Row `row` (with its data) as the plan's type, padded to the alignment.
    pub fn tensor(&self, row: &TensorRow) -> Result<Vec<u8>> {
        let (ty, size) = self
            .tensors
            .get(&row.name)
            .ok_or_else(|| AqError::State(format!("tensor '{}' is not in the planned GGUF file", row.name)))?;
        let mut data = gguf_data(row, *ty);
        if data.len() as u64 != *size {
            return Err(unconvertible(
                &row.name,
                format!("{} bytes where {} were planned (damaged row)", data.len(), size),
            ));
        }
        data.resize(align(*size).expect("checked in the plan") as usize, 0);
        Ok(data)
    }
}

/// An arrowquant Parquet file held whole as a GGUF file, tensor bytes in row order; the pieces
/// are the header, then each tensor padded to the alignment ([`GgufPlan`]).
pub fn parquet_to_gguf(file: &QuantizedFile) -> Result<Vec<Vec<u8>>> {
    let plan = GgufPlan::new(file)?;
    let mut out = vec![plan.header().to_vec()];
    for row in &file.rows {
        out.push(plan.tensor(row)?);
    }
    Ok(out)
}
