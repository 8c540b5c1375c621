//! The "V2 Extended" Parquet file: one row per tensor, typed columns, key-value metadata.
//! docs/FORMAT.md is the contract; `schema.rs` is its code form.

pub mod reader;
pub mod schema;
pub mod writer;

use crate::dtype::Dtype;
use crate::report::Storage;
use crate::timegroups::TimeGroup;

/// One row of the file: a stored tensor with its params and quality columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRow {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: Dtype,
    pub storage: Storage,
    pub requested_bits: Option<u8>,
    pub bits: Option<u8>,
    pub group_size: Option<u32>,
    pub data: Vec<u8>,
    pub data_crc32: u32,
    /// f16 bit patterns, one per group (quantized rows only).
    pub scales: Option<Vec<u16>>,
    pub mins: Option<Vec<u16>>,
    pub cosine: Option<f64>,
    pub snr_db: Option<f64>,
    pub rel_rmse: Option<f64>,
    pub max_abs_error: Option<f64>,
    pub reason: String,
    /// Σ_j a_j²·Σ W² over Σ_j a_j²·Σ (Ŵ−W)² in dB, when channel activation maxima exist.
    pub weighted_snr_db: Option<f64>,
    /// Per-timestep-group activation params (layers with calibration data).
    pub time_groups: Option<Vec<TimeGroup>>,
    /// Channel equalization applied to the stored weights.
    pub spatial: Option<SpatialMeta>,
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

impl TensorRow {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
    /// The source tensor this row came from (offsets relative to a file of this tensor alone).
    pub fn source_info(&self) -> crate::safetensors::TensorInfo {
        crate::safetensors::TensorInfo {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            begin: 0,
            end: self.numel() * self.dtype.size_bytes() as u64,
        }
    }

    /// Bytes of data + scales + mins, before Parquet encoding and compression.
    pub fn stored_bytes(&self) -> u64 {
        let params = self.scales.as_ref().map_or(0, |s| s.len()) + self.mins.as_ref().map_or(0, |m| m.len());
        (self.data.len() + 2 * params) as u64
    }
}
