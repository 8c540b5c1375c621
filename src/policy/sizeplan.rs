//! `targetSizeMb`: choose per-layer widths so the file fits a size budget.
//!
//! A planning pass measures every plannable layer (a ≥2-D float weight that no `layerBitWidths`
//! entry or sensitive pattern fixes) at 2, 4, 8 bits and f16, through the same code path the
//! quantizer uses (equalization included), recording its stored bytes and its error
//! `numel · Σ(ŵ−w)² / Σw²` (relative squared error weighted by parameter count, so big and small
//! layers are compared per parameter). Fixed layers are measured at their fixed width.
//!
//! When the calibration says how much the model's output suffers from each layer
//! (`sensitivity`, measured by tools/calibrate.py: the ε-MSE growth with that layer alone
//! quantized min/max at 2, 4 and 8 bits), the error of a layer at a width is that growth, scaled
//! by how much smaller (or larger) this run's error at the width is than the min/max error the
//! growth was measured with — output errors where the calibration knows the layer's input, else
//! weight errors. Bits then go where the model's output needs them, not where weights are
//! hardest to fit. Layers without a sensitivity (when others have one) are put in the same units
//! with the median growth per unit of weight error of those that have one.
//!
//! Each layer starts at its cheapest width whose cosine meets `minAccuracy`; then the upgrade
//! with the largest error reduction per extra byte that still fits is applied, repeatedly, until
//! none fits. The same greedy also runs from every layer at `bitWidth` when that fits, and the
//! plan with the lower total error wins, so a plan never loses to the uniform file it could have
//! been. So the result can sit below `bitWidth` for easy layers and above it for hard ones.
//! The budget counts each row's data and params compressed on their own with the writer's codec
//! (zstd level 1), plus equalization scales, time groups and an allowance for Parquet's own
//! overhead. The writer compresses many rows together, which can only do better, so the file
//! never exceeds the target; on models with repeated tensors it can land well under it.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::error::{AqError, Result};
use crate::policy::config::QuantConfig;
use crate::quant::metrics::ErrorSums;

/// Widths a plan may choose (16 = f16).
pub const PLAN_WIDTHS: &[u8] = &[2, 4, 8, 16];
/// Parquet overhead allowance: footer and metadata, plus per row (name, shape, reason, …).
pub const FILE_OVERHEAD_BYTES: u64 = 8 * 1024;
pub const ROW_OVERHEAD_BYTES: u64 = 160;

#[derive(Debug, Clone)]
struct Choice {
    bits: u8,
    bytes: u64,
    /// Relative squared weight error times the parameter count.
    weight_error: f64,
    /// Estimated growth of the model's ε-MSE, when the layer's sensitivity is known.
    growth: Option<f64>,
    /// What the plan minimises: `growth`, or `weight_error` in growth units (see `finish`).
    error: f64,
}

#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    /// Feasible choices (meeting minAccuracy; f16 always), ascending in bytes.
    choices: Vec<Choice>,
    current: usize,
}

/// The outcome of a plan, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct SizePlan {
    /// `targetSizeMb` in bytes.
    pub target_bytes: u64,
    /// Stored bytes plus overhead allowance of the chosen widths (the file is at most this).
    pub planned_bytes: u64,
    /// The smallest plan that meets minAccuracy.
    pub minimum_bytes: u64,
    /// The same estimate with every plannable layer at `bitWidth` (the budget-free baseline).
    pub uniform_bytes: u64,
    /// Tensor name → width (2/4/8/16) for every plannable layer.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "Record<string, number>"))]
    pub layer_bits: std::collections::BTreeMap<String, u8>,
    /// Layers whose width the plan chose.
    pub planned_layers: u32,
    /// Planned layers whose errors are the model's measured sensitivity to them (the
    /// calibration's `sensitivity`) rather than their weight error; 0 without it.
    #[serde(default)]
    pub sensitivity_layers: u32,
    /// Layers outside the plan: overrides, sensitive layers, and tensors never quantized.
    pub fixed_layers: u32,
}

/// One width a plannable layer was measured at: its estimated stored bytes and its error.
#[derive(Debug, Clone)]
pub struct Measured {
    pub bits: u8,
    pub bytes: u64,
    pub sums: ErrorSums,
    /// Relative error of the layer's output, E‖(W − Ŵ)x‖² / E‖Wx‖², where the calibration
    /// knows the layer's input.
    pub output_error: Option<f64>,
}

impl Measured {
    /// The output error where known, else the relative weight error.
    fn relative_error(&self) -> f64 {
        self.output_error.unwrap_or_else(|| self.sums.relative_error())
    }
}

/// A layer's measured sensitivity (from the calibration) and the layer's own relative error
/// (output error where known, else weight error) under the quantization it was measured with:
/// min/max params, groups of 64, at 2, 4 and 8 bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sensitivity {
    /// Relative ε-MSE growth with the layer alone at 2, 4 and 8 bits.
    pub growth: [f32; 3],
    pub reference_error: [f64; 3],
}

impl Sensitivity {
    /// Estimated ε-MSE growth at `m`: the measured growth at that width (8 bits for f16) times
    /// the ratio of this run's error to the reference error.
    fn growth_at(&self, m: &Measured) -> f64 {
        let k = match m.bits {
            2 => 0,
            4 => 1,
            _ => 2,
        };
        let (growth, reference) = (self.growth[k] as f64, self.reference_error[k]);
        if reference > 0.0 {
            growth * m.relative_error() / reference
        } else {
            growth
        }
    }
}

/// Collects what each layer costs at each width (the planning pass measures, one tensor at a
/// time, so it streams like the quantizer), then plans.
pub struct SizePlanner {
    cfg: QuantConfig,
    candidates: Vec<Candidate>,
    fixed_bytes: u64,
    fixed_layers: u32,
    rows: u64,
}

/// The median of `v` (NaN-free), None when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) })
}

impl SizePlanner {
    pub fn new(cfg: &QuantConfig) -> Result<Self> {
        if cfg.target_size_mb.is_none() {
            return Err(AqError::config("targetSizeMb", "null", "a size in MB to plan for"));
        }
        Ok(SizePlanner { cfg: cfg.clone(), candidates: Vec::new(), fixed_bytes: 0, fixed_layers: 0, rows: 0 })
    }

    /// A layer whose width is not the plan's to choose (an override, a sensitive pattern, its
    /// dtype or shape fixed it), with the bytes it will take.
    pub fn add_fixed(&mut self, stored_bytes: u64) {
        self.rows += 1;
        self.fixed_bytes += stored_bytes;
        self.fixed_layers += 1;
    }

    /// A layer the plan chooses for, measured at the plan widths (ascending), with its
    /// sensitivity when the calibration has one. Widths whose cosine misses `minAccuracy` are
    /// no choice; f16 always is.
    pub fn add_candidate(&mut self, name: &str, numel: u64, measured: Vec<Measured>, sensitivity: Option<Sensitivity>) {
        self.rows += 1;
        let min_accuracy = self.cfg.min_accuracy;
        let choices = measured
            .into_iter()
            .filter(|m| m.bits == 16 || min_accuracy <= 0.0 || m.sums.cosine() >= min_accuracy)
            .map(|m| {
                let weight_error = m.sums.relative_error() * numel as f64;
                let growth = sensitivity.map(|s| s.growth_at(&m));
                Choice { bits: m.bits, bytes: m.bytes, weight_error, growth, error: weight_error }
            })
            .collect();
        self.candidates.push(Candidate { name: name.to_string(), choices, current: 0 });
    }

    /// Put every choice's error in one unit: measured growth where known; elsewhere the weight
    /// error times the median growth per unit of weight error (at 4 bits) of the layers that have
    /// one. Without any sensitivity the weight errors stay as they are. Returns how many layers
    /// were planned by their sensitivity.
    fn settle_errors(&mut self) -> u32 {
        let at4 = |c: &Candidate| c.choices.iter().find(|ch| ch.bits == 4).cloned();
        let per_unit: Vec<f64> = self
            .candidates
            .iter()
            .filter_map(at4)
            .filter_map(|ch| ch.growth.filter(|_| ch.weight_error > 0.0).map(|g| g / ch.weight_error))
            .filter(|r| r.is_finite())
            .collect();
        let scale = median(per_unit);
        let mut with_sensitivity = 0;
        for c in &mut self.candidates {
            with_sensitivity += u32::from(c.choices.iter().any(|ch| ch.growth.is_some()));
            for ch in &mut c.choices {
                ch.error = match (ch.growth, scale) {
                    (Some(g), _) => g,
                    (None, Some(k)) => k * ch.weight_error,
                    (None, None) => ch.weight_error,
                };
            }
        }
        with_sensitivity
    }

    /// Choose widths for the budget. `E_CONFIG` (field `targetSizeMb`) when even the smallest
    /// plan meeting minAccuracy does not fit.
    pub fn finish(mut self) -> Result<SizePlan> {
        let sensitivity_layers = self.settle_errors();
        let target_mb = self.cfg.target_size_mb.expect("checked in new");
        // Rounded, not truncated: a budget given as bytes / 2^20 must come back as those bytes.
        let target = (target_mb * 1024.0 * 1024.0).round() as u64;
        let overhead = FILE_OVERHEAD_BYTES + ROW_OVERHEAD_BYTES * self.rows;
        let minimum: u64 =
            self.fixed_bytes + overhead + self.candidates.iter().map(|c| c.choices[0].bytes).sum::<u64>();
        if minimum > target {
            return Err(AqError::config(
                "targetSizeMb",
                target_mb,
                format!(
                    "at least {:.3} MB: the smallest file whose layers all meet minAccuracy {} (lower minAccuracy or raise the target)",
                    minimum as f64 / (1024.0 * 1024.0),
                    self.cfg.min_accuracy
                ),
            ));
        }
        let bw = self.cfg.bit_width;
        let uniform_pick: Vec<usize> = self
            .candidates
            .iter()
            .map(|c| c.choices.iter().position(|ch| ch.bits >= bw).unwrap_or(c.choices.len() - 1))
            .collect();
        let uniform = self.fixed_bytes + overhead + self.bytes_of(&uniform_pick);
        // Greedy upgrades from the smallest plan, and — when it fits — from uniform `bitWidth`:
        // the greedy choice per byte can paint itself into a corner (cheap upgrades that use up the
        // budget a better one needed), so a plan must never lose to the uniform file it could
        // have been. The lower total error wins.
        let mut plan = self.upgrade(vec![0; self.candidates.len()], target);
        if uniform <= target {
            let from_uniform = self.upgrade(uniform_pick, target);
            if self.error_of(&from_uniform) < self.error_of(&plan) {
                plan = from_uniform;
            }
        }
        let used = self.fixed_bytes + overhead + self.bytes_of(&plan);
        for (c, &k) in self.candidates.iter_mut().zip(&plan) {
            c.current = k;
        }
        Ok(SizePlan {
            target_bytes: target,
            planned_bytes: used,
            minimum_bytes: minimum,
            uniform_bytes: uniform,
            layer_bits: self.candidates.iter().map(|c| (c.name.clone(), c.choices[c.current].bits)).collect(),
            planned_layers: self.candidates.len() as u32,
            fixed_layers: self.fixed_layers,
            sensitivity_layers,
        })
    }

    /// Stored bytes of the candidates at choice indexes `pick` (fixed layers and overhead apart).
    fn bytes_of(&self, pick: &[usize]) -> u64 {
        self.candidates.iter().zip(pick).map(|(c, &k)| c.choices[k].bytes).sum()
    }

    fn error_of(&self, pick: &[usize]) -> f64 {
        self.candidates.iter().zip(pick).map(|(c, &k)| c.choices[k].error).sum()
    }

    /// From `pick`, apply the upgrade (to any larger choice) with the best error reduction per
    /// byte that still fits `target`, until none does.
    fn upgrade(&self, mut pick: Vec<usize>, target: u64) -> Vec<usize> {
        let overhead = FILE_OVERHEAD_BYTES + ROW_OVERHEAD_BYTES * self.rows;
        let mut used = self.fixed_bytes + overhead + self.bytes_of(&pick);
        loop {
            let mut best: Option<(f64, usize, usize)> = None;
            for (i, c) in self.candidates.iter().enumerate() {
                let cur = &c.choices[pick[i]];
                for (j, next) in c.choices.iter().enumerate().skip(pick[i] + 1) {
                    let extra = next.bytes.saturating_sub(cur.bytes);
                    let gain = cur.error - next.error;
                    if gain <= 0.0 || used + extra > target {
                        continue;
                    }
                    let ratio = gain / extra.max(1) as f64;
                    if best.is_none_or(|(r, _, _)| ratio > r) {
                        best = Some((ratio, i, j));
                    }
                }
            }
            let Some((_, i, j)) = best else { return pick };
            used += self.candidates[i].choices[j].bytes - self.candidates[i].choices[pick[i]].bytes;
            pick[i] = j;
        }
    }
}
