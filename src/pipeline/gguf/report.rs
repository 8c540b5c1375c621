//! The GGUF run's report: every tensor's type, why, and its error against the source.

use serde::Serialize;
#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::pipeline::report::ReportWarning;

/// One tensor of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct GgufLayer {
    /// Tensor name as in the source file (the GGUF tensor has the same name).
    pub name: String,
    /// The source (safetensors, row-major) shape.
    pub shape: Vec<u64>,
    /// Source dtype, safetensors spelling (F32, BF16, …).
    pub dtype: String,
    /// The ggml type written (`Q4_0`, `F16`, …).
    pub ggml_type: String,
    /// Why this type: the mix's rule, an override, the size budget or a fallback.
    pub reason: String,
    /// Number of values in the tensor.
    pub params: u64,
    /// Bytes of the tensor in the source file.
    pub source_bytes: u64,
    /// Bytes of the tensor's data in the GGUF file.
    pub stored_bytes: u64,
    /// stored_bytes · 8 / params.
    pub bits_per_value: f64,
    /// Metrics of the stored values against the source; null for exact pass-through (integers).
    pub cosine: Option<f64>,
    /// 10·log10(Σw² / Σ(w−ŵ)²) of this tensor; Infinity for an exact reconstruction.
    pub snr_db: Option<f64>,
    /// √(Σ(w−ŵ)² / Σw²); 0 for an exact reconstruction.
    pub rel_rmse: Option<f64>,
    /// max |w − ŵ| over the tensor.
    pub max_abs_error: Option<f64>,
    /// The calibration layer whose statistics this tensor was coded with: its input second
    /// moments weighting the block searches (llama.cpp's importance matrix) and, with `gptq`,
    /// its Gram matrix; null when none.
    pub importance_from: Option<String>,
    /// Wall time of this tensor in ms — decoding, the block searches or GPTQ, and measuring what
    /// was stored; null where no run clock exists. Not stored in the file.
    pub quantize_ms: Option<f64>,
    /// Whether the codes were chosen by GPTQ with the calibration's Gram matrix of this layer
    /// (each value's error compensated in the values still to come).
    pub gptq: bool,
    /// With calibration statistics for the layer: its output SNR, 10·log10(Σ wᵀGw / Σ eᵀGe)
    /// over the rows (e = w − ŵ) with the Gram matrix G when the calibration has one; else
    /// estimated from the second moments alone, 10·log10(Σ h·w² / Σ h·e²) with h_j = E[x_j²]
    /// of the input column each weight multiplies (correlations between inputs ignored).
    pub output_snr_db: Option<f64>,
}

/// The report of a GGUF run: every tensor's type, why, and its error against the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct GgufReport {
    /// The mix asked for (`Q4_K_M`, `Q8_0`, …).
    pub ggml_type: String,
    /// `general.architecture` written (flux, sd3, sdxl, sd1, …, or the fallback; docs/GGUF.md).
    pub architecture: String,
    /// The tensor names that decided the architecture (or why none did).
    pub architecture_rule: String,
    /// One entry per tensor, in file order.
    pub layers: Vec<GgufLayer>,
    /// Values in all tensors.
    pub params_total: u64,
    /// Bytes of all tensors in the source file.
    pub source_bytes: u64,
    /// Bytes of the whole GGUF file.
    pub output_bytes: u64,
    /// source_bytes ÷ output_bytes.
    pub compression_ratio: f64,
    /// 10·log10(Σw² / Σ(w−ŵ)²) pooled over every float tensor.
    pub snr_db: f64,
    /// Lowest cosine similarity of any lossy tensor (1 when there are none).
    pub min_cosine: f64,
    /// The tensor with `minCosine`; null when none is lossy.
    pub min_cosine_layer: Option<String>,
    /// With calibration: how many block-quantized tensors were searched with importance weights,
    /// and the names of those that had no calibration entry. Null without calibration.
    pub calibration: Option<GgufCalibrationSummary>,
    /// `unmatched_pattern`: a `layerBitWidths` entry that names no tensor of this model.
    pub warnings: Vec<ReportWarning>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct GgufCalibrationSummary {
    /// Block-quantized tensors whose searches were weighted by calibration importance.
    pub weighted: u32,
    /// Of those, the tensors coded by GPTQ with their layer's Gram matrix.
    pub gptq: u32,
    /// Block-quantized tensors the calibration had no statistics for (searched unweighted).
    pub without_statistics: Vec<String>,
    /// The layers' `outputSnrDb` pooled over the tensors that have one (each tensor's sums
    /// normalised to its own signal, so every layer counts alike, as the per-layer numbers do).
    pub output_snr_db: Option<f64>,
}
