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
    pub name: String,
    /// The source (safetensors, row-major) shape.
    pub shape: Vec<u64>,
    pub dtype: String,
    /// The ggml type written (`Q4_0`, `F16`, …).
    pub ggml_type: String,
    pub reason: String,
    pub params: u64,
    pub source_bytes: u64,
    pub stored_bytes: u64,
    pub bits_per_value: f64,
    /// Metrics of the stored values against the source; null for exact pass-through (integers).
    pub cosine: Option<f64>,
    pub snr_db: Option<f64>,
    pub rel_rmse: Option<f64>,
    pub max_abs_error: Option<f64>,
    /// The calibration layer whose input second moments weighted this tensor's block searches
    /// (llama.cpp's importance matrix), if any.
    pub importance_from: Option<String>,
    /// With those statistics: the layer-output SNR estimated from them, 10·log10(Σ h·w² /
    /// Σ h·(w − ŵ)²) with h_j = E[x_j²] of the input column each weight multiplies (the Gram
    /// matrix's diagonal: correlations between inputs ignored).
    pub output_snr_db: Option<f64>,
}

/// The report of a GGUF run: every tensor's type, why, and its error against the source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct GgufReport {
    pub ggml_type: String,
    pub architecture: String,
    /// The tensor names that decided the architecture (or why none did).
    pub architecture_rule: String,
    pub layers: Vec<GgufLayer>,
    pub params_total: u64,
    pub source_bytes: u64,
    pub output_bytes: u64,
    pub compression_ratio: f64,
    /// 10·log10(Σw² / Σ(w−ŵ)²) pooled over every float tensor.
    pub snr_db: f64,
    pub min_cosine: f64,
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
    pub weighted: u32,
    pub without_statistics: Vec<String>,
    /// The layers' `outputSnrDb` pooled over the weighted tensors (each tensor's sums normalised
    /// to its own signal, so every layer counts alike, as the per-layer numbers do).
    pub output_snr_db: Option<f64>,
}
