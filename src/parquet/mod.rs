//! The "V2 Extended" Parquet file: one row per tensor, typed columns, key-value metadata.
//! docs/FORMAT.md is the contract; `schema.rs` is its code form.

pub mod reader;
pub mod schema;
pub mod writer;

use crate::dtype::Dtype;
use crate::report::Storage;

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
