//! How one tensor was stored and why, as a value. The report's `reason` (and the file's
//! `reason` column) is rendered from it; code that needs to know what happened (the size
//! planner, the report counts) matches on it instead of reading the text.

use crate::diffusion::timegroups::TimeGrouping;
use crate::pipeline::objective::MethodNote;
use crate::policy::width::{Requested, WidthRule};
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;
use crate::quant::width::Width;

/// Rows shorter than this are not group-quantized: a group of a few values costs 4 bytes of
/// params, more than the values themselves.
pub const MIN_ROW_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not a float tensor: its bytes as they are.
    NonFloat { dtype: Dtype },
    /// A bias, norm or scalar (0-D or 1-D): unquantized.
    NotMatrix { dims: usize },
    /// A weight: what was asked for, what was stored, and notes on the diffusion features.
    Weight(Box<WeightDecision>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightDecision {
    pub requested: Requested,
    pub outcome: Outcome,
    /// How a quantized layer's params and codes were found, when calibration chose the method.
    pub method: Option<MethodNote>,
    /// Channel equalization, when calibration statistics exist for the layer and it was asked for.
    pub spatial: Option<SpatialNote>,
    /// Time groups, when the layer has calibration statistics and time-aware is on.
    pub time: Option<TimeDecision>,
}

/// One width that missed `minAccuracy` on the way up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Miss {
    pub width: Width,
    pub cosine: f64,
    /// The cosine is of the layer's output (calibrated), not of its weights.
    pub output: bool,
}

/// Widths that missed `minAccuracy`, with the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub misses: Vec<Miss>,
    pub min_accuracy: f64,
}

impl Fallback {
    /// "2-bit cosine 0.91234, 4-bit cosine 0.98000 < minAccuracy 0.99"
    pub(crate) fn describe(&self) -> String {
        let misses: Vec<String> = self
            .misses
            .iter()
            .map(|m| format!("{}-bit {}cosine {:.5}", m.width.bits(), if m.output { "output " } else { "" }, m.cosine))
            .collect();
        format!("{} < minAccuracy {}", misses.join(", "), self.min_accuracy)
    }
}

/// How `codec` stored a quantized layer: as `ty` blocks, or (`auto`) as groups after comparing.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecNote {
    pub ty: GgmlType,
    pub blocks: bool,
    /// With `auto`: SNR of the groups and of the blocks, where the layer is judged, and whether
    /// the blocks took more bytes.
    pub compared: Option<Compared>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compared {
    pub group_size: u32,
    pub groups_db: f64,
    pub blocks_db: f64,
    pub at_output: bool,
    pub blocks_larger: bool,
}

impl CodecNote {
    fn describe(&self) -> String {
        let ty = self.ty.name();
        let Some(c) = self.compared else {
            return match self.blocks {
                true => format!("stored as {ty} blocks (codec ggml)"),
                false => "codec auto kept groups: their rows' output gains are matched, which blocks cannot be".into(),
            };
        };
        let at = if c.at_output { "at the layer's output" } else { "in the weights" };
        let (g, b) = (c.groups_db, c.blocks_db);
        if self.blocks {
            format!(
                "stored as {ty} blocks (codec auto: {b:.2} dB {at} against {g:.2} dB in groups of {})",
                c.group_size
            )
        } else if c.blocks_larger {
            format!("codec auto kept groups of {}: {ty} blocks would take more bytes", c.group_size)
        } else {
            format!("codec auto kept groups of {} ({g:.2} dB {at} against {b:.2} dB as {ty} blocks)", c.group_size)
        }
    }
}

/// Why a weight ended up as f16.
#[derive(Debug, Clone, PartialEq)]
pub enum F16Why {
    /// Asked for (16 in `layerBitWidths`, `sensitiveBits` or a plan).
    Requested,
    /// Rows shorter than [`MIN_ROW_LEN`].
    RowsTooShort { row_len: usize },
    /// Every width missed `minAccuracy`.
    FallbackExhausted(Fallback),
}

/// Why f16 cannot hold a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum F16Limit {
    /// A value is beyond ±65504.
    Overflow,
    /// The values lie in f16's subnormal range: f16 would keep only `snr_db`.
    Underflow { snr_db: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Packed codes at `width`, after the widths in `fallback` (if any) missed `minAccuracy`.
    Quantized {
        width: Width,
        fallback: Option<Fallback>,
        /// What `codec` decided, when it was not `groups`.
        codec: Option<CodecNote>,
    },
    F16(F16Why),
    /// f16 was the choice but f16 cannot hold the values (`limit` says why): the source bytes.
    RawBeyondF16(F16Why, F16Limit),
    /// A group's params cannot be held in f16 (values beyond ±65504): the source bytes.
    RawBeyondParams,
    /// Every value is below f16's smallest normal (2⁻¹⁴), where f16 params keep too few bits
    /// (none at all below 2⁻²⁵): the source bytes, exact.
    RawBelowParams,
}

/// What channel equalization did for a quantized layer.
#[derive(Debug, Clone, PartialEq)]
pub enum SpatialNote {
    Applied {
        channels: usize,
        alpha: f64,
        scale_min: f32,
        scale_max: f32,
        /// How α was chosen, when it was searched.
        search: Option<AlphaSearch>,
    },
    /// The α search measured the layer best without equalization.
    SearchedOff(AlphaSearch),
    /// Statistics exist but could not be used (the reason in words).
    NotApplied(String),
}

/// What the error of the per-layer α search was measured with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlphaMeasure {
    /// The layer's output error with the Gram matrix.
    Gram,
    /// Σ_j E[x_j²]·(w_j − ŵ_j)².
    SecondMoments,
    /// Σ_j a_j²·(w_j − ŵ_j)² with the activation maxima a_j.
    ActivationMaxima,
}

/// The per-layer α search: each candidate's SNR at the layer's output.
#[derive(Debug, Clone, PartialEq)]
pub struct AlphaSearch {
    pub measure: AlphaMeasure,
    /// α (`None`: no equalization) and its SNR in dB (`None`: the equalized weights or their
    /// params would not fit f16), in the order tried.
    pub candidates: Vec<(Option<f64>, Option<f64>)>,
}

impl AlphaSearch {
    /// "layer-output SNR with the Gram matrix: off 31.20, 0 28.10, … dB"
    fn describe(&self) -> String {
        let by = match self.measure {
            AlphaMeasure::Gram => "layer-output SNR with the Gram matrix",
            AlphaMeasure::SecondMoments => "E[x²]-weighted SNR",
            AlphaMeasure::ActivationMaxima => "activation-maxima-weighted SNR",
        };
        let each: Vec<String> = self
            .candidates
            .iter()
            .map(|(a, snr)| {
                let a = a.map_or("off".to_string(), |a| a.to_string());
                match snr {
                    Some(s) => format!("{a} {s:.2}"),
                    None => format!("{a} beyond f16"),
                }
            })
            .collect();
        format!("{by}: {} dB", each.join(", "))
    }
}

/// What time-aware quantization did for a calibrated layer's input.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeDecision {
    Groups(TimeNote),
    /// A sensitive layer whose input stays in float (`floatSensitiveInputs`): no time groups.
    FloatInput,
}

/// The time groups a layer got.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeNote {
    pub groups: usize,
    pub grouping: TimeGrouping,
    pub timesteps: usize,
    /// The calibration layer the statistics came from.
    pub layer: String,
    /// The ranges are of the equalized activations X/s.
    pub equalized: bool,
    /// Timestep indices without data.
    pub missing: Vec<usize>,
    /// The fewest samples any timestep had, when below what `calibrationSamples` asks for.
    pub few_samples: Option<(u64, u32)>,
}

/// The first `limit` items joined by `sep`, then " and N more" — for messages that must stay short.
pub fn short_list<T: std::fmt::Display>(items: &[T], limit: usize, sep: &str) -> String {
    let shown: Vec<String> = items.iter().take(limit).map(|t| t.to_string()).collect();
    let more = if items.len() > limit { format!(" and {} more", items.len() - limit) } else { String::new() };
    format!("{}{more}", shown.join(sep))
}

impl Decision {
    /// Whether a size plan's width was the one stored (the planner measures such layers).
    pub fn stored_as_planned(&self) -> bool {
        matches!(
            self,
            Decision::Weight(w) if w.requested.rule == WidthRule::Planned && matches!(w.outcome, Outcome::Quantized { .. })
        )
    }

    /// The reason in words: the rule that fired, every fallback step, what the diffusion
    /// features did.
    pub fn reason(&self) -> String {
        match self {
            Decision::NonFloat { dtype } => format!("non-float dtype {}: stored as is", dtype.name()),
            Decision::NotMatrix { dims } => format!("{dims}-D tensor (bias, norm or scalar): stored unquantized"),
            Decision::Weight(w) => w.reason(),
        }
    }
}

impl WeightDecision {
    fn reason(&self) -> String {
        let rule = self.requested.describe();
        let f16 = |why: &F16Why| match why {
            F16Why::Requested => format!("{rule}: kept as f16"),
            F16Why::RowsTooShort { row_len } => {
                format!("rows of {row_len} elements are too short to group (< {MIN_ROW_LEN}): kept as f16")
            }
            F16Why::FallbackExhausted(f) => format!("{rule}; fallback: {}: kept as f16", f.describe()),
        };
        let mut out = match &self.outcome {
            Outcome::Quantized { fallback: None, .. } => rule.clone(),
            Outcome::Quantized { fallback: Some(f), .. } => format!("{rule}; fallback: {}", f.describe()),
            Outcome::F16(why) => f16(why),
            Outcome::RawBeyondF16(why, F16Limit::Overflow) => {
                format!("{}; values beyond the f16 range, stored as source bytes", f16(why))
            }
            Outcome::RawBeyondF16(why, F16Limit::Underflow { snr_db }) => format!(
                "{}; values below f16's normal range (f16 would keep only {snr_db:.1} dB of them), stored as source bytes",
                f16(why)
            ),
            Outcome::RawBelowParams => {
                "every value is below 2^-14, where f16 group params lose their precision: stored as source bytes".into()
            }
            Outcome::RawBeyondParams => "values beyond ±65504 cannot have f16 scales: stored as source bytes".into(),
        };
        if let (Outcome::Quantized { .. }, Some(m)) = (&self.outcome, &self.method) {
            out.push_str("; ");
            out.push_str(&m.describe());
        }
        if let Outcome::Quantized { codec: Some(c), .. } = &self.outcome {
            out.push_str("; ");
            out.push_str(&c.describe());
        }
        match &self.spatial {
            Some(SpatialNote::Applied { channels, alpha, scale_min, scale_max, search }) => {
                out.push_str(&format!(
                    "; spatial: {channels} input channels equalized (alpha {alpha}, s in [{scale_min:.4}, {scale_max:.4}])"
                ));
                if let Some(search) = search {
                    out.push_str(&format!(", alpha searched by {}", search.describe()));
                }
            }
            Some(SpatialNote::SearchedOff(search)) => out.push_str(&format!(
                "; spatial: not applied (no equalization measured best; alpha searched by {})",
                search.describe()
            )),
            Some(SpatialNote::NotApplied(why)) => out.push_str(&format!("; spatial: not applied ({why})")),
            None => {}
        }
        if let Some(TimeDecision::FloatInput) = &self.time {
            out.push_str("; time-aware: input left in float (sensitive layer, floatSensitiveInputs)");
        }
        if let Some(TimeDecision::Groups(t)) = &self.time {
            out.push_str(&format!(
                "; time-aware: {} {} group(s) over {} timesteps from calibration layer '{}'",
                t.groups,
                t.grouping.as_str(),
                t.timesteps,
                t.layer
            ));
            if t.equalized {
                out.push_str(" (ranges of the equalized activations X/s)");
            }
            if !t.missing.is_empty() {
                out.push_str(&format!(
                    ", no data at timestep index(es) {} (they use their group's params)",
                    short_list(&t.missing, 8, ", ")
                ));
            }
            if let Some((fewest, asked)) = t.few_samples {
                out.push_str(&format!(
                    ", as few as {fewest} samples per timestep (calibrationSamples asks for {asked})"
                ));
            }
        }
        out
    }
}
