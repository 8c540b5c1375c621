//! arrowquant: quantize safetensors weights to 2/4/8-bit group-wise affine codes and write them as
//! one Parquet file ("V2 Extended", docs/FORMAT.md). Pure Rust, bytes in and bytes out: no
//! filesystem and no wasm types here; the wasm-bindgen layer lives in `wasm/` (wasm32 only).

pub mod diffusion;
pub mod error;
pub mod format;
pub mod kernels;
pub mod parallel;
pub mod pipeline;
pub mod policy;
pub mod quant;

#[cfg(target_arch = "wasm32")]
mod wasm;

// Threads on the web need shared memory; without +atomics rayon would silently run on one thread.
#[cfg(all(feature = "threads", target_arch = "wasm32", not(target_feature = "atomics")))]
compile_error!("the `threads` feature on wasm32 needs the shared-memory build: use `make build-threads`");

pub use error::{AqError, Result};
pub use format::parquet::reader::QuantizedFile;
pub use pipeline::report::{LayerReport, ModelReport, Progress, Storage};
pub use pipeline::{quantize_model, ModelQuantizer};
pub use policy::config::{Profile, QuantConfig, ScaleSearch};
pub use policy::modality::Modality;
pub use quant::dtype::Dtype;
