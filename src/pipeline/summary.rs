//! The report of a run: one [`LayerReport`] per stored tensor, and the model summary assembled
//! from them once the file is closed.

use std::collections::HashSet;

use crate::diffusion::calibration::Calibration;
use crate::format::parquet::schema::FORMAT_VERSION;
use crate::format::parquet::{Storage, Stored, TensorRow};
use crate::format::safetensors::TensorInfo;
use crate::pipeline::decision::{short_list, Decision, TimeDecision};
use crate::pipeline::layer::LayerOutcome;
use crate::pipeline::report::{FeatureStatus, LayerCounts, LayerReport, ModelReport, ReportWarning, SpatialSummary};
use crate::policy::config::{QuantConfig, SpatialAlpha};
use crate::policy::glob::glob_match;
use crate::policy::modality::Detection;
use crate::policy::sizeplan::SizePlan;
use crate::quant::metrics::ErrorSums;
use crate::quant::width::Width;

/// The report row of one stored tensor.
pub fn layer_report(row: &TensorRow, info: &TensorInfo) -> LayerReport {
    LayerReport {
        name: row.name.clone(),
        shape: row.shape.clone(),
        dtype: row.dtype.name().to_string(),
        params: info.numel(),
        storage: row.stored.storage(),
        stored: row.stored.label(),
        requested_bits: row.requested_bits,
        bits: row.stored.bits(),
        group_size: row.stored.group_size(),
        reason: row.reason.clone(),
        cosine: row.metrics.map(|m| m.cosine),
        snr_db: row.metrics.map(|m| m.snr_db),
        rel_rmse: row.metrics.map(|m| m.rel_rmse),
        max_abs_error: row.metrics.map(|m| m.max_abs_error),
        source_bytes: info.byte_len(),
        stored_bytes: row.stored_bytes(),
        weighted_snr_db: row.weighted_snr_db,
        output_snr_db: row.output_snr_db,
        quantize_ms: None,
        time_groups: row.time_groups.clone(),
        spatial: row.spatial.as_ref().map(|sp| SpatialSummary {
            alpha: sp.alpha,
            activation_smoothing: sp.activation_smoothing,
            channels: sp.scales.len() as u32,
            scale_min: sp.scales.iter().copied().fold(f32::INFINITY, f32::min),
            scale_max: sp.scales.iter().copied().fold(0.0, f32::max),
        }),
    }
}

/// What a run has stored so far, as the model summary needs it.
#[derive(Debug, Default)]
pub struct Tally {
    pub layers: Vec<LayerReport>,
    counts: LayerCounts,
    /// Pooled error sums of the lossy layers.
    lossy: ErrorSums,
    /// Calibration layers matched to a weight so far, and weights (≥2-D float) without an entry.
    calibrated: Vec<String>,
    uncalibrated: u32,
    time_grouped: u32,
    /// Calibrated sensitive layers whose input stays in float (`floatSensitiveInputs`).
    float_inputs: u32,
    equalized: u32,
}

impl Tally {
    /// Count one stored tensor. `cal_layer` is the calibration layer it was matched to.
    pub fn record(&mut self, outcome: &LayerOutcome, report: LayerReport, is_weight: bool, cal_layer: Option<String>) {
        let row = &outcome.row;
        match &row.stored {
            Stored::Quantized { width: Width::W2, .. } => self.counts.bits2 += 1,
            Stored::Quantized { width: Width::W4, .. } => self.counts.bits4 += 1,
            Stored::Quantized { width: Width::W8, .. } => self.counts.bits8 += 1,
            Stored::F16 => self.counts.f16 += 1,
            Stored::Raw => self.counts.raw += 1,
            Stored::Blocks(_) => self.counts.blocks += 1,
        }
        if let Some(s) = &outcome.sums {
            self.lossy.count += s.count;
            self.lossy.sum_w2 += s.sum_w2;
            self.lossy.sum_e2 += s.sum_e2;
        }
        match cal_layer {
            Some(layer) => self.calibrated.push(layer),
            None if is_weight => self.uncalibrated += 1,
            None => {}
        }
        self.time_grouped += row.time_groups.is_some() as u32;
        if let Decision::Weight(w) = &outcome.decision {
            self.float_inputs += u32::from(w.time == Some(TimeDecision::FloatInput));
        }
        self.equalized += row.spatial.is_some() as u32;
        self.layers.push(report);
    }
}

/// The run's facts the summary states beside the tally.
pub struct RunFacts<'a> {
    pub cfg: &'a QuantConfig,
    pub modality: &'a Detection,
    pub calibration: Option<&'a Calibration>,
    pub plan: Option<&'a SizePlan>,
    pub source_bytes: u64,
    pub output_bytes: u64,
    pub seconds: f64,
}

pub fn model_report(tally: &Tally, run: RunFacts) -> ModelReport {
    let (mut wsum, mut wcount) = (0.0f64, 0u64);
    let mut min_cos: Option<(f64, &str)> = None;
    let mut params_total = 0;
    let mut params_quantized = 0;
    for l in &tally.layers {
        params_total += l.params;
        if l.storage == Storage::Quantized {
            params_quantized += l.params;
        }
        if let Some(c) = l.cosine {
            wsum += c * l.params as f64;
            wcount += l.params;
            if min_cos.is_none_or(|(m, _)| c < m) {
                min_cos = Some((c, &l.name));
            }
        }
    }
    let (time_aware, spatial) = feature_status(tally, run.cfg, run.calibration);
    let lossy = &tally.lossy;
    ModelReport {
        format_version: FORMAT_VERSION.to_string(),
        library_version: env!("CARGO_PKG_VERSION").to_string(),
        profile: run.cfg.profile.as_str().to_string(),
        bit_width: run.cfg.bit_width,
        group_size: run.cfg.group_size,
        modality: run.modality.name().to_string(),
        modality_source: run.modality.source.to_string(),
        modality_rule: run.modality.rule.clone(),
        layers: tally.layers.clone(),
        layer_counts: tally.counts.clone(),
        params_total,
        params_quantized,
        source_bytes: run.source_bytes,
        output_bytes: run.output_bytes,
        compression_ratio: run.source_bytes as f64 / run.output_bytes as f64,
        model_size_mb: run.output_bytes as f64 / (1024.0 * 1024.0),
        cosine_similarity: if wcount > 0 { wsum / wcount as f64 } else { 1.0 },
        min_cosine: min_cos.map_or(1.0, |(c, _)| c),
        min_cosine_layer: min_cos.map(|(_, n)| n.to_string()),
        snr_db: if lossy.sum_e2 > 0.0 { 10.0 * (lossy.sum_w2 / lossy.sum_e2).log10() } else { f64::INFINITY },
        time_aware,
        spatial,
        size_plan: run.plan.cloned(),
        quantization_time_s: run.seconds,
        warnings: warnings(tally, run.cfg),
    }
}

/// Share of the quantized parameters at 2 bits from which the report warns. On the bundled
/// diffusion models every layer at 2 bits multiplies the noise-prediction error 7× with GPTQ and
/// 30–90× without (`make eval`): a model mostly at 2 bits rarely generates.
const LOW_PRECISION_SHARE: f64 = 0.25;

fn warnings(tally: &Tally, cfg: &QuantConfig) -> Vec<ReportWarning> {
    let mut out = Vec::new();
    let names: Vec<&str> = tally.layers.iter().map(|l| l.name.as_str()).collect();
    let unmatched = |field: &str, pattern: &str, found: bool| {
        (!found).then(|| ReportWarning {
            code: "unmatched_pattern".into(),
            field: Some(field.into()),
            pattern: Some(pattern.into()),
            message: format!("{field} entry '{pattern}' matches no tensor of this model (a typo?)"),
        })
    };
    for pattern in cfg.layer_bit_widths.keys() {
        let found = names.iter().any(|n| *n == pattern || glob_match(pattern, n));
        out.extend(unmatched("layerBitWidths", pattern, found));
    }
    for pattern in &cfg.sensitive_layer_patterns {
        let p = pattern.to_ascii_lowercase();
        let found = names.iter().any(|n| glob_match(&p, &n.to_ascii_lowercase()));
        out.extend(unmatched("sensitiveLayerPatterns", pattern, found));
    }
    let quantized: u64 = tally.layers.iter().filter(|l| l.storage == Storage::Quantized).map(|l| l.params).sum();
    let at2: u64 = tally.layers.iter().filter(|l| l.bits == Some(2)).map(|l| l.params).sum();
    if quantized > 0 && at2 as f64 >= LOW_PRECISION_SHARE * quantized as f64 {
        out.push(ReportWarning {
            code: "low_precision".into(),
            field: None,
            pattern: None,
            message: format!(
                "{:.0}% of the quantized parameters ({} layers) are at 2 bits: a diffusion model's output is likely \
                 degraded or unusable (2 bits everywhere multiplies its noise-prediction error 7× with calibration \
                 and GPTQ, 30× or more without); keep more layers at 4 bits (profile local, or a targetSizeMb budget)",
                100.0 * at2 as f64 / quantized as f64,
                tally.counts.bits2
            ),
        });
    }
    out
}

/// What the diffusion features did, in words a person can check against the layer table.
fn feature_status(
    tally: &Tally,
    cfg: &QuantConfig,
    calibration: Option<&Calibration>,
) -> (FeatureStatus, FeatureStatus) {
    let Some(cal) = calibration else {
        let none = |requested: bool| FeatureStatus {
            requested,
            applied: false,
            note: "not applied: no calibration statistics given (docs/CALIBRATION.md)".to_string(),
        };
        return (none(cfg.enable_time_aware), none(cfg.enable_spatial));
    };
    let matched: HashSet<&str> = tally.calibrated.iter().map(String::as_str).collect();
    let unused: Vec<&str> = cal.layers.keys().map(String::as_str).filter(|l| !matched.contains(l)).collect();
    let mut coverage =
        format!("{} weight(s) matched a calibration layer, {} had none", tally.calibrated.len(), tally.uncalibrated);
    if !unused.is_empty() {
        let quoted: Vec<String> = unused.iter().map(|n| format!("'{n}'")).collect();
        coverage.push_str(&format!("; calibration layers not in the model: {}", short_list(&quoted, 5, ", ")));
    }
    let time = FeatureStatus {
        requested: cfg.enable_time_aware,
        applied: tally.time_grouped > 0,
        note: if cfg.enable_time_aware {
            let float_inputs = match tally.float_inputs {
                0 => String::new(),
                n => format!(" ({n} sensitive layer input(s) left in float)"),
            };
            format!(
                "{} layer(s) got up to {} {} time group(s) over {} calibrated timesteps{float_inputs}; {coverage}",
                tally.time_grouped,
                cfg.num_time_groups,
                cfg.time_grouping.as_str(),
                cal.num_timesteps()
            )
        } else {
            "not requested (enableTimeAware is false)".to_string()
        },
    };
    let spatial = FeatureStatus {
        requested: cfg.enable_spatial,
        applied: tally.equalized > 0,
        note: if cfg.enable_spatial {
            let alpha = match cfg.spatial_alpha {
                SpatialAlpha::Fixed(a) => format!("alpha {a}"),
                SpatialAlpha::Search => "alpha searched per layer".to_string(),
            };
            format!("{} quantized layer(s) channel-equalized with {alpha}; {coverage}", tally.equalized)
        } else {
            "not requested (enableSpatial is false)".to_string()
        },
    };
    (time, spatial)
}
