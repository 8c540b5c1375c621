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
    /// Tensor name as in the source file.
    pub name: String,
    /// Source shape (row-major, as in the safetensors header).
    pub shape: Vec<u64>,
    /// Source dtype, safetensors spelling (F32, BF16, …).
    pub dtype: String,
    /// Number of values in the tensor.
    pub params: u64,
    /// How the tensor is stored: `quantized` (packed codes), `blocks` (a ggml block type), `f16`
    /// or `raw` (source bytes).
    pub storage: Storage,
    /// The stored form as a short label: `int4/g64`, `Q4_K`, `f16` or `raw`.
    pub stored: String,
    /// Width asked for by config/overrides; null for tensors never meant to be quantized.
    pub requested_bits: Option<u8>,
    /// Width stored: 2/4/8 for quantized, the code width of a block type, 16 for f16, null for raw.
    pub bits: Option<u8>,
    /// Values per scale/min group, or per block; null for f16 and raw.
    pub group_size: Option<u32>,
    /// Why this storage and width: the rule that fired, including every fallback step.
    pub reason: String,
    /// Metrics of the stored values against the source (null for raw, which is exact).
    pub cosine: Option<f64>,
    /// 10·log10(Σw² / Σ(w−ŵ)²) of this tensor; Infinity for an exact reconstruction.
    pub snr_db: Option<f64>,
    /// √(Σ(w−ŵ)² / Σw²); 0 for an exact reconstruction.
    pub rel_rmse: Option<f64>,
    /// max |w − ŵ| over the tensor.
    pub max_abs_error: Option<f64>,
    /// Bytes of the tensor in the source file.
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
    /// Migration strength α of s_j = a_j^α / max|W[:, j]|^(1−α) (docs/FORMAT.md, section 4.1).
    pub alpha: f32,
    /// True when α > 0: the calibration's activation maxima shaped the scales.
    pub activation_smoothing: bool,
    /// Input channels equalized (length of the scale vector).
    pub channels: u32,
    /// Smallest equalization scale s_j.
    pub scale_min: f32,
    /// Largest equalization scale s_j.
    pub scale_max: f32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct LayerCounts {
    /// Tensors stored as 2-bit codes.
    pub bits2: u32,
    /// Tensors stored as 4-bit codes.
    pub bits4: u32,
    /// Tensors stored as 8-bit codes.
    pub bits8: u32,
    /// Tensors stored as f16.
    pub f16: u32,
    /// Tensors stored as their source bytes.
    pub raw: u32,
    /// Tensors stored in ggml block types (`blocks` storage).
    #[serde(default)]
    pub blocks: u32,
}

/// Whether a diffusion feature was asked for and whether it ran, with the reason when it did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct FeatureStatus {
    /// Whether the config asked for the feature.
    pub requested: bool,
    /// Whether it ran on at least one layer.
    pub applied: bool,
    /// What happened in words: how many layers, or why it did not run.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct ModelReport {
    /// Version of the Parquet format written (docs/FORMAT.md).
    pub format_version: String,
    /// arrowquant version that wrote the file.
    pub library_version: String,
    /// The profile whose defaults the config started from (`edge`, `local`, `cloud`, `base`).
    pub profile: String,
    /// Default width of quantized layers (2, 4 or 8).
    pub bit_width: u8,
    /// Values per scale/min group.
    pub group_size: u32,
    /// text/code/image/audio, or "unknown".
    pub modality: String,
    /// Where the modality came from: "config", "metadata", "names" or "none".
    pub modality_source: String,
    /// The rule that decided, in words (e.g. which tensor-name rules matched).
    pub modality_rule: String,
    /// One entry per tensor, in file order.
    pub layers: Vec<LayerReport>,
    /// How many tensors ended in each stored form.
    pub layer_counts: LayerCounts,
    /// Values in all tensors.
    pub params_total: u64,
    /// Values stored as 2/4/8-bit codes.
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
    /// Lowest cosine similarity of any lossy layer (1 when there are none).
    pub min_cosine: f64,
    /// The layer with `minCosine`; null when no layer is lossy.
    pub min_cosine_layer: Option<String>,
    /// 10·log10(Σw² / Σ(w−ŵ)²) pooled over the lossy layers.
    pub snr_db: f64,
    /// Time-aware activation params (`timeGroups` of each layer): asked for, applied, why not.
    pub time_aware: FeatureStatus,
    /// Channel equalization (`enableSpatial`): asked for, applied, why not.
    pub spatial: FeatureStatus,
    /// The `targetSizeMb` plan the widths came from, null without a budget.
    pub size_plan: Option<SizePlan>,
    /// Wall time of the run in seconds.
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
    /// The config field the warning is about (e.g. `layerBitWidths`), if any.
    pub field: Option<String>,
    /// The pattern of that field the warning is about, if any.
    pub pattern: Option<String>,
    /// The warning in words.
    pub message: String,
}

/// Progress event passed to callbacks after each tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Tensors finished so far (this one included).
    pub done: u32,
    /// Tensors in the model.
    pub total: u32,
    /// The tensor just finished.
    pub name: String,
    /// Source bytes of the finished tensors.
    pub bytes_done: u64,
    /// Source bytes of all tensors.
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
    /// The finished tensor's report row.
    pub layer: LayerReport,
}
