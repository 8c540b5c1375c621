//! One row of the file: a stored tensor, its params and its quality columns, with the stored form
//! as a type — a quantized row always has its width, group size, scales and mins; f16 and raw rows
//! have none of them.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::diffusion::timegroups::TimeGroup;
use crate::format::safetensors::TensorInfo;
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;
use crate::quant::metrics::ErrorSums;
use crate::quant::width::Width;

/// How a tensor is stored (the `storage` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Packed 2/4/8-bit codes with f16 scale and min per group.
    Quantized,
    /// IEEE half precision, little-endian.
    F16,
    /// The source bytes unchanged (non-float tensors, 1-D tensors, values beyond f16).
    Raw,
    /// ggml/GGUF blocks of one block type (`block_type`, 2.4).
    Blocks,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Quantized => "quantized",
            Storage::F16 => "f16",
            Storage::Raw => "raw",
            Storage::Blocks => "blocks",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quantized" => Some(Storage::Quantized),
            "f16" => Some(Storage::F16),
            "raw" => Some(Storage::Raw),
            "blocks" => Some(Storage::Blocks),
            _ => None,
        }
    }
}

/// What `data` holds, with what a reader needs to decode it.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// Packed codes, every row starting on a byte; one f16 scale and min per group (bit patterns,
    /// row-major).
    Quantized { width: Width, group_size: u32, scales: Vec<u16>, mins: Vec<u16> },
    /// Little-endian f16 values.
    F16,
    /// The source bytes in the source dtype.
    Raw,
    /// The values in blocks of a ggml block type, as a GGUF file holds them.
    Blocks(GgmlType),
}

impl Stored {
    pub fn storage(&self) -> Storage {
        match self {
            Stored::Quantized { .. } => Storage::Quantized,
            Stored::F16 => Storage::F16,
            Stored::Raw => Storage::Raw,
            Stored::Blocks(_) => Storage::Blocks,
        }
    }
    /// The `bits` column: 2/4/8 for codes, 16 for f16, none for raw; a block type's code width.
    pub fn bits(&self) -> Option<u8> {
        match self {
            Stored::Quantized { width, .. } => Some(width.bits()),
            Stored::F16 => Some(16),
            Stored::Raw => None,
            Stored::Blocks(ty) => Some(ty.code_bits()),
        }
    }
    /// The `group_size` column: values per group, or per block.
    pub fn group_size(&self) -> Option<u32> {
        match self {
            Stored::Quantized { group_size, .. } => Some(*group_size),
            Stored::Blocks(ty) => Some(ty.block_values() as u32),
            _ => None,
        }
    }
    /// The `block_type` column.
    pub fn block_type(&self) -> Option<GgmlType> {
        match self {
            Stored::Blocks(ty) => Some(*ty),
            _ => None,
        }
    }
    /// A short label: `int4/g64`, `f16` or `raw`.
    pub fn label(&self) -> String {
        match self {
            Stored::Quantized { width, group_size, .. } => format!("int{}/g{group_size}", width.bits()),
            Stored::F16 => "f16".into(),
            Stored::Raw => "raw".into(),
            Stored::Blocks(ty) => ty.name().into(),
        }
    }
    /// f16 params (scales and mins) stored beside the data.
    pub fn params_len(&self) -> usize {
        match self {
            Stored::Quantized { scales, mins, .. } => scales.len() + mins.len(),
            _ => 0,
        }
    }
}

/// Error of the stored values against the source (the quality columns; none for raw rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub cosine: f64,
    pub snr_db: f64,
    pub rel_rmse: f64,
    pub max_abs_error: f64,
}

impl From<&ErrorSums> for Metrics {
    fn from(s: &ErrorSums) -> Self {
        Metrics { cosine: s.cosine(), snr_db: s.snr_db(), rel_rmse: s.rel_rmse(), max_abs_error: s.max_abs }
    }
}

/// The `spatial` column of one row (docs/FORMAT.md section 4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct SpatialMeta {
    pub enabled: bool,
    pub channel_equalization: bool,
    /// Activation statistics fed the scales (α > 0): the activations' outliers were migrated.
    pub activation_smoothing: bool,
    pub alpha: f32,
    /// s_j per input channel: stored weights are W·diag(s); inference divides activations by s.
    pub scales: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorRow {
    pub name: String,
    pub shape: Vec<u64>,
    /// The source dtype.
    pub dtype: Dtype,
    /// Width asked for (2/4/8/16); none for tensors never meant to be quantized.
    pub requested_bits: Option<u8>,
    pub stored: Stored,
    pub data: Vec<u8>,
    pub data_crc32: u32,
    pub metrics: Option<Metrics>,
    pub reason: String,
    /// Σ_j a_j²·Σ W² over Σ_j a_j²·Σ (Ŵ−W)² in dB, when channel activation maxima exist.
    pub weighted_snr_db: Option<f64>,
    /// E‖W x‖² over E‖(W − Ŵ) x‖² in dB, with the calibration's Gram matrix (or its diagonal).
    pub output_snr_db: Option<f64>,
    /// Per-timestep-group activation params (layers with calibration data).
    pub time_groups: Option<Vec<TimeGroup>>,
    /// Channel equalization applied to the stored weights.
    pub spatial: Option<SpatialMeta>,
}

impl TensorRow {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
    /// The source tensor this row came from (offsets relative to a file of this tensor alone).
    pub fn source_info(&self) -> TensorInfo {
        TensorInfo {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            begin: 0,
            end: self.numel() * self.dtype.size_bytes() as u64,
        }
    }

    /// CRC-32 of every column a reader returns besides `data` (which has its own `data_crc32`,
    /// included here): the `row_crc32` column. The bytes hashed, in order, are
    /// specified in docs/FORMAT.md §4.3.
    pub fn integrity_crc(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        let text = |h: &mut crc32fast::Hasher, s: &str| {
            h.update(s.as_bytes());
            h.update(&[0]);
        };
        const NULL32: u32 = u32::MAX;
        text(&mut h, &self.name);
        text(&mut h, self.dtype.name());
        text(&mut h, self.stored.storage().as_str());
        h.update(&(self.shape.len() as u32).to_le_bytes());
        self.shape.iter().for_each(|d| h.update(&d.to_le_bytes()));
        h.update(&[self.requested_bits.unwrap_or(0xff), self.stored.bits().unwrap_or(0xff)]);
        h.update(&self.stored.group_size().unwrap_or(NULL32).to_le_bytes());
        h.update(&self.data_crc32.to_le_bytes());
        let halfs = |h: &mut crc32fast::Hasher, v: Option<&[u16]>| match v {
            None => h.update(&NULL32.to_le_bytes()),
            Some(v) => {
                h.update(&(v.len() as u32).to_le_bytes());
                v.iter().for_each(|x| h.update(&x.to_le_bytes()));
            }
        };
        let (scales, mins) = match &self.stored {
            Stored::Quantized { scales, mins, .. } => (Some(scales.as_slice()), Some(mins.as_slice())),
            _ => (None, None),
        };
        halfs(&mut h, scales);
        halfs(&mut h, mins);
        match &self.time_groups {
            None => h.update(&NULL32.to_le_bytes()),
            Some(groups) => {
                h.update(&(groups.len() as u32).to_le_bytes());
                for g in groups {
                    h.update(&g.t_start.to_le_bytes());
                    h.update(&g.t_end.to_le_bytes());
                    h.update(&g.scale.to_bits().to_le_bytes());
                    h.update(&g.zero_point.to_le_bytes());
                }
            }
        }
        let float = |h: &mut crc32fast::Hasher, v: Option<f64>| match v {
            None => h.update(&[0]),
            Some(x) => {
                h.update(&[1]);
                h.update(&x.to_bits().to_le_bytes());
            }
        };
        let m = self.metrics;
        for v in [m.map(|m| m.cosine), m.map(|m| m.snr_db), m.map(|m| m.rel_rmse), m.map(|m| m.max_abs_error)] {
            float(&mut h, v);
        }
        float(&mut h, self.weighted_snr_db);
        float(&mut h, self.output_snr_db);
        text(&mut h, &self.reason);
        match &self.spatial {
            None => h.update(&[0]),
            Some(sp) => {
                h.update(&[1, sp.enabled as u8, sp.channel_equalization as u8, sp.activation_smoothing as u8]);
                h.update(&sp.alpha.to_bits().to_le_bytes());
                h.update(&(sp.scales.len() as u32).to_le_bytes());
                sp.scales.iter().for_each(|x| h.update(&x.to_bits().to_le_bytes()));
            }
        }
        // 2.4: nothing for a null block type, so other rows hash as they did before.
        if let Some(ty) = self.stored.block_type() {
            text(&mut h, ty.name());
        }
        h.finalize()
    }

    /// Bytes of data + scales + mins, before Parquet encoding and compression.
    pub fn stored_bytes(&self) -> u64 {
        (self.data.len() + 2 * self.stored.params_len()) as u64
    }
}
