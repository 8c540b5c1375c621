//! arrowquant: quantize safetensors weights to 2/4/8-bit group-wise affine codes and write them as
//! one Parquet file ("V2 Extended", docs/FORMAT.md). Pure Rust, bytes in and bytes out: no
//! filesystem and no wasm types here; the wasm-bindgen layer lives in `wasm/` (wasm32 only).

pub mod calibration;
pub mod config;
pub mod dtype;
pub mod error;
pub mod inspect;
pub mod kernels;
pub mod modality;
pub mod parallel;
pub mod parquet;
pub mod pipeline;
pub mod quant;
pub mod report;
pub mod safetensors;
pub mod sizeplan;
pub mod spatial;
pub mod timegroups;

#[cfg(target_arch = "wasm32")]
mod wasm;

// Threads on the web need shared memory; without +atomics rayon would silently run on one thread.
#[cfg(all(feature = "threads", target_arch = "wasm32", not(target_feature = "atomics")))]
compile_error!("the `threads` feature on wasm32 needs the shared-memory build: use `make build-threads`");

pub use config::{Modality, Profile, QuantConfig, ScaleSearch};
pub use dtype::Dtype;
pub use error::{AqError, Result};
pub use parquet::reader::QuantizedFile;
pub use pipeline::{quantize_model, ModelQuantizer};
pub use report::{LayerReport, ModelReport, Progress, Storage};
