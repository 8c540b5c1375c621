//! What a weight's quantization minimises, from what the calibration knows about its input:
//! nothing — the weights' own error (the range search); per-column second moments E[x_j²] — the
//! importance-weighted error; a Gram matrix E[x xᵀ] — the layer's output error, with GPTQ. The
//! same statistics measure the stored layer at its output (`quant::output`).

use crate::diffusion::calibration::LayerStats;
use crate::format::safetensors::TensorInfo;
use crate::policy::config::{QuantConfig, Switch};
use crate::quant::gptq::{self, Prepared, DENSE_LIMIT, SPLIT_BLOCK};
use crate::quant::gram::Gram;
use crate::quant::layout::{ChannelLayout, Layout};
use crate::quant::output::Weighting;

/// How the params and codes are found.
#[derive(Debug, Clone)]
pub enum Method {
    /// Min/max or the range search, on the weights.
    Weights,
    /// Group params weighted by each column's importance (per column of a row, stored space).
    Importance(Vec<f32>),
    Gptq(Prepared),
}

/// What the report says about the method.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodNote {
    Gptq {
        columns: usize,
        block: usize,
        damp: f64,
        act_order: bool,
    },
    Importance {
        from_gram: bool,
    },
    /// GPTQ was asked for but could not run (why), and what ran instead.
    GptqNotApplied {
        why: String,
        importance: bool,
    },
}

impl MethodNote {
    pub fn describe(&self) -> String {
        let importance = |from_gram: bool| {
            let source = if from_gram { "the Gram matrix's diagonal" } else { "input second moments" };
            format!("params weighted by {source}")
        };
        match self {
            MethodNote::Gptq { columns, block, damp, act_order } => {
                let blocks = if block >= columns { String::new() } else { format!(" in blocks of {block}") };
                let order = if *act_order { ", columns by decreasing E[x²]" } else { "" };
                format!("GPTQ with the calibration's Gram matrix over {columns} columns{blocks} (damp {damp}{order})")
            }
            MethodNote::Importance { from_gram } => importance(*from_gram),
            MethodNote::GptqNotApplied { why, importance: true } => {
                format!("GPTQ not applied ({why}); {}", importance(false))
            }
            MethodNote::GptqNotApplied { why, importance: false } => format!("GPTQ not applied ({why})"),
        }
    }
}

/// What the calibration knows about the `n` columns of a weight's rows (the unfolded input it
/// multiplies): its Gram matrix when that matches them, and the per-column second moments E[x_j²]
/// (the Gram matrix's diagonal, else the per-channel `sq_mean` spread over each channel's columns).
pub struct ColumnStats<'a> {
    pub gram: Option<&'a Gram>,
    pub diagonal: Option<Vec<f32>>,
}

impl<'a> ColumnStats<'a> {
    pub fn of(shape: &[u64], stats: &'a LayerStats, n: usize) -> Self {
        let channels = ChannelLayout::for_shape(shape);
        let channel = |j: usize| channels.map_or(0, |c| (j / c.inner.max(1)) % c.input.max(1));
        let gram = stats.gram.as_ref().filter(|g| match g {
            Gram::Blocks { size, .. } => g.n() >= n && g.n() - n < *size,
            _ => g.n() == n,
        });
        let sq = stats.sq_mean.as_deref().filter(|v| channels.is_some_and(|c| c.input == v.len()));
        let diagonal: Option<Vec<f32>> = match (gram, sq) {
            (Some(g), _) => Some(g.diagonal()[..n].iter().map(|&d| d as f32).collect()),
            (None, Some(v)) => Some((0..n).map(|j| v[channel(j)]).collect()),
            (None, None) => None,
        };
        ColumnStats { gram, diagonal }
    }
}

/// The importance of each column of the stored weights W·diag(s), which multiply X/s: E[x²]/s²
/// (E[x²] itself without equalization). Tiny scales can make that overflow or 0/0: the searches
/// take finite h ≥ 0.
pub fn stored_importance(diagonal: &[f32], column_scales: Option<&[f32]>) -> Vec<f32> {
    let usable = |h: f32| if h.is_nan() || h <= 0.0 { 0.0 } else { h.min(f32::MAX) };
    match column_scales {
        Some(s) => diagonal.iter().zip(s).map(|(h, s)| usable(h / (s * s))).collect(),
        None => diagonal.iter().map(|&h| usable(h)).collect(),
    }
}

/// The column blocks a Gram matrix measures a row's output error in when GPTQ did not choose
/// them: its own blocks, the whole matrix up to [`DENSE_LIMIT`] columns, else [`SPLIT_BLOCK`].
pub fn output_block(gram: &Gram, n: usize) -> usize {
    match gram {
        Gram::Blocks { size, .. } => *size,
        _ if n <= DENSE_LIMIT => n,
        _ => SPLIT_BLOCK,
    }
}

/// The method for one weight and the statistics its output is measured with.
pub struct Objective<'a> {
    pub method: Method,
    pub note: Option<MethodNote>,
    gram: Option<(&'a Gram, usize)>,
    /// E[x_j²] per column of a row, in the original weight space.
    diagonal: Option<Vec<f32>>,
}

impl<'a> Objective<'a> {
    /// `scales`: the equalization of the stored weights (W·diag(s)), per input channel.
    pub fn choose(
        cfg: &QuantConfig,
        info: &TensorInfo,
        layout: Layout,
        stats: Option<&'a LayerStats>,
        scales: Option<&[f32]>,
    ) -> Self {
        let n = layout.row_len;
        let none = Objective { method: Method::Weights, note: None, gram: None, diagonal: None };
        let Some(stats) = stats else { return none };
        let channels = ChannelLayout::for_shape(&info.shape);
        let channel = |j: usize| channels.map_or(0, |c| (j / c.inner.max(1)) % c.input.max(1));
        let ColumnStats { gram, diagonal } = ColumnStats::of(&info.shape, stats, n);
        let column_scales: Option<Vec<f32>> = scales.map(|s| (0..n).map(|j| s[channel(j)]).collect());
        let mut note = None;
        let mut method = Method::Weights;
        let mut block = None;
        match gram {
            Some(g) if cfg.gptq.wanted(true) => {
                match gptq::prepare(g, n, column_scales.as_deref(), cfg.gptq_damp, cfg.gptq_act_order) {
                    Ok(p) => {
                        note = Some(MethodNote::Gptq {
                            columns: n,
                            block: p.block,
                            damp: p.damp,
                            act_order: cfg.gptq_act_order,
                        });
                        block = Some(p.block);
                        method = Method::Gptq(p);
                    }
                    Err(e) => note = Some(MethodNote::GptqNotApplied { why: e.to_string(), importance: false }),
                }
            }
            None if cfg.gptq == Switch::On => {
                let why = match &stats.gram {
                    None => "no Gram matrix for this layer in the calibration".to_string(),
                    Some(g) => format!("the Gram matrix has {} columns, the weight's rows {n}", g.n()),
                };
                note = Some(MethodNote::GptqNotApplied { why, importance: false });
            }
            _ => {}
        }
        if matches!(method, Method::Weights) && cfg.importance.wanted(true) {
            if let Some(d) = &diagonal {
                method = Method::Importance(stored_importance(d, column_scales.as_deref()));
                note = Some(match note {
                    Some(MethodNote::GptqNotApplied { why, .. }) => {
                        MethodNote::GptqNotApplied { why, importance: true }
                    }
                    _ => MethodNote::Importance { from_gram: gram.is_some() },
                });
            }
        }
        let gram = gram.map(|g| (g, block.unwrap_or_else(|| output_block(g, n))));
        Objective { method, note, gram, diagonal }
    }

    /// What the layer's output error is measured with, when the calibration knows its input.
    pub fn weighting(&self) -> Option<Weighting<'_>> {
        match (&self.gram, &self.diagonal) {
            (Some((gram, block)), _) => Some(Weighting::Gram { gram, block: *block }),
            (None, Some(d)) => Some(Weighting::Diagonal(d)),
            (None, None) => None,
        }
    }
}
