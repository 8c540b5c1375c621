//! What a run reports: one row per tensor and a model summary.
//! Serialized camelCase; the TypeScript types are generated from these structs (tsify).

use serde::{Deserialize, Serialize};

use crate::diffusion::timegroups::TimeGroup;
pub use crate::format::parquet::Storage;
use crate::policy::sizeplan::SizePlan;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct LayerReport {
    pub name: String,
    pub shape: Vec<u64>,
    /// Source dtype, safetensors spelling (F32, BF16, …).
    pub dtype: String,
    pub params: u64,
    pub storage: Storage,
    /// The stored form as a short label: `int4/g64`, `f16` or `raw`.
    pub stored: String,
    /// Width asked for by config/overrides; null for tensors never meant to be quantized.
    pub requested_bits: Option<u8>,
    /// Width stored: 2/4/8 for quantized, 16 for f16, null for raw.
    pub bits: Option<u8>,
    pub group_size: Option<u32>,
    /// Why this storage and width: the rule that fired, including every fallback step.
    pub reason: String,
    /// Metrics of the stored values against the source (null for raw, which is exact).
    pub cosine: Option<f64>,
    pub snr_db: Option<f64>,
    pub rel_rmse: Option<f64>,
    pub max_abs_error: Option<f64>,
    pub source_bytes: u64,
    /// Bytes of data + scales + mins before Parquet compression.
    pub stored_bytes: u64,
    /// Activation-weighted SNR (dB): weight error weighted by the squared channel activation
    /// maxima of the calibration, so it tracks the layer's output error. Null without stats.
    pub weighted_snr_db: Option<f64>,
    /// Layer-output SNR (dB): E‖W x‖² over E‖(W − Ŵ) x‖² with the calibration's Gram matrix (or,
    /// with only per-channel second moments, its diagonal). Null without those statistics.
    pub output_snr_db: Option<f64>,
    /// Per-timestep-group activation params (time-aware quantization), null without calibration.
    pub time_groups: Option<Vec<TimeGroup>>,
    /// Channel equalization applied to this layer's stored weights, null when not applied.
    pub spatial: Option<SpatialSummary>,
    /// Wall time of this tensor's storage decision in ms — decoding, the search or GPTQ, the
    /// fallback widths and validation — measured on the thread that did it; null where no run
    /// clock exists (`quantizeTensor`). Not stored in the file.
    pub quantize_ms: Option<f64>,
}

/// A readable summary of a layer's equalization (the full scale vector is in the file and from
/// `QuantizedFile.spatial(name)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct SpatialSummary {
    pub alpha: f32,
    pub activation_smoothing: bool,
    pub channels: u32,
    pub scale_min: f32,
    pub scale_max: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct LayerCounts {
    pub bits2: u32,
    pub bits4: u32,
    pub bits8: u32,
    pub f16: u32,
    pub raw: u32,
}

/// Whether a diffusion feature was asked for and whether it ran, with the reason when it did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct FeatureStatus {
    pub requested: bool,
    pub applied: bool,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct ModelReport {
    pub format_version: String,
    pub library_version: String,
    pub profile: String,
    pub bit_width: u8,
    pub group_size: u32,
    /// text/code/image/audio, or "unknown".
    pub modality: String,
    /// Where the modality came from: "config", "metadata", "names" or "none".
    pub modality_source: String,
    /// The rule that decided, in words (e.g. which tensor-name rules matched).
    pub modality_rule: String,
    pub layers: Vec<LayerReport>,
    pub layer_counts: LayerCounts,
    pub params_total: u64,
    pub params_quantized: u64,
    /// Bytes of all tensors in the source file (header excluded).
    pub source_bytes: u64,
    /// Bytes of the whole Parquet output.
    pub output_bytes: u64,
    /// source_bytes ÷ output_bytes.
    pub compression_ratio: f64,
    /// output_bytes in MiB.
    pub model_size_mb: f64,
    /// Parameter-weighted mean cosine over lossy layers (quantized and f16); 1 when there are none.
    pub cosine_similarity: f64,
    pub min_cosine: f64,
    pub min_cosine_layer: Option<String>,
    /// 10·log10(Σw² / Σ(w−ŵ)²) pooled over the lossy layers.
    pub snr_db: f64,
    pub time_aware: FeatureStatus,
    pub spatial: FeatureStatus,
    /// The `targetSizeMb` plan the widths came from, null without a budget.
    pub size_plan: Option<SizePlan>,
    pub quantization_time_s: f64,
    /// What the run did that you may not have meant, or a result that is likely not usable.
    pub warnings: Vec<ReportWarning>,
}

/// One warning of a run: a stable `code`, the config `field` and `pattern` it is about (when it
/// is about one) and a message in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct ReportWarning {
    /// `unmatched_pattern` (a `layerBitWidths` or `sensitiveLayerPatterns` entry named no tensor)
    /// or `low_precision` (many parameters at 2 bits: diffusion output likely degraded).
    pub code: String,
    pub field: Option<String>,
    pub pattern: Option<String>,
    pub message: String,
}

/// Progress event passed to callbacks after each tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub done: u32,
    pub total: u32,
    pub name: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// One tensor done: the progress after it and its layer report (what streaming callers pass to
/// `onProgress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct TensorDone {
    #[serde(flatten)]
    pub progress: Progress,
    pub layer: LayerReport,
}
