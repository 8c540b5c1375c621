//! Containers: how tensors and their metadata are laid out in files. `safetensors` is what we
//! read, `parquet` what we write (and read back), `calibration` the statistics file of
//! docs/CALIBRATION.md, `shards` several safetensors files seen as one.

pub mod calibration;
pub mod gguf;
pub mod parquet;
pub mod safetensors;
pub mod shards;
