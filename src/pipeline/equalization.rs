//! Channel equalization of one layer (docs/FORMAT.md, section 4.1): the scales of a fixed α, or α
//! searched per layer, AWQ-style.
//!
//! The search quantizes the layer without equalization and at every α of [`SpatialAlpha::GRID`],
//! each with the params search the layer will use (importance-weighted by E[x²]/s² when second
//! moments exist), and keeps the candidate whose error at the layer's output — in the original
//! weight space, after dividing the equalization back out — is smallest. That error is measured
//! with the Gram matrix when the calibration has one, else with the per-column second moments
//! E[x_j²], else with the squared activation maxima a_j². "No equalization" is the first
//! candidate and wins ties, so a searched layer is never worse on that measure than an
//! unequalized one. A GPTQ layer is scored with the importance-weighted search too (GPTQ per
//! candidate would cost a factorization each) and GPTQ then runs once at the chosen α.

use crate::diffusion::calibration::LayerStats;
use crate::diffusion::spatial::{equalization_scales, snr_db, weight_channel_absmax};
use crate::error::Result;
use crate::format::safetensors::TensorInfo;
use crate::pipeline::decision::{AlphaMeasure, AlphaSearch};
use crate::pipeline::objective::{output_block, stored_importance, ColumnStats};
use crate::policy::config::{QuantConfig, SpatialAlpha};
use crate::quant::dtype::{Dtype, F16_MAX};
use crate::quant::layout::{undo_equalization, ChannelLayout, Layout};
use crate::quant::metrics::ColumnWeights;
use crate::quant::output::{output_gains, output_sums, Weighting};
use crate::quant::tensor::{
    decode_all, dequantize, quantize_source_measured, scale_rows, ParamChoice, QuantizedTensor, Source,
};
use crate::quant::width::Width;

/// The equalization chosen for one layer.
pub struct Equalization {
    pub channels: ChannelLayout,
    pub scales: Vec<f32>,
    pub alpha: f64,
    /// The source weights as f32 (what metrics compare against).
    pub original: Vec<f32>,
    /// W·diag(s) as little-endian f32 bytes (what is quantized).
    pub equalized_bytes: Vec<u8>,
    /// What the α search measured, when α was searched.
    pub search: Option<AlphaSearch>,
}

/// What the planner decided for one layer.
pub enum Planned {
    Equalize(Equalization),
    /// The α search measured the layer best without equalization.
    Off(AlphaSearch),
    /// Equalization cannot apply (why, in words).
    NotApplied(String),
}

/// The scales of one α and the weights they apply to; `None` when the equalized weights would
/// exceed the f16 range of group params.
fn equalize_at(
    original: &[f32],
    channels: ChannelLayout,
    act: &[f32],
    weight_max: &[f32],
    alpha: f64,
) -> Option<Equalization> {
    let scales = equalization_scales(act, weight_max, alpha as f32);
    // W·diag(s) straight to bytes (as `layout::equalize` computes it): a layer's f32 copy less.
    let mut equalized_bytes = Vec::with_capacity(original.len() * 4);
    for (k, &x) in original.iter().enumerate() {
        let v = x * scales[channels.channel_of(k)];
        if v.abs() > F16_MAX {
            return None;
        }
        equalized_bytes.extend_from_slice(&v.to_le_bytes());
    }
    Some(Equalization { channels, scales, alpha, original: Vec::new(), equalized_bytes, search: None })
}

/// Decide the equalization of one weight with the statistics of calibration layer `layer`,
/// quantized at `width` when α is searched.
pub fn plan(
    cfg: &QuantConfig,
    info: &TensorInfo,
    src: Source,
    layout: Layout,
    width: Width,
    (layer, stats): (&str, &LayerStats),
) -> Result<Planned> {
    let Some(act) = stats.channel_absmax.as_deref() else {
        return Ok(Planned::NotApplied(format!("calibration layer '{layer}' has no channel_absmax")));
    };
    let Some(channels) = ChannelLayout::for_shape(&info.shape) else {
        return Ok(Planned::NotApplied("not a weight with an input-channel axis".into()));
    };
    if channels.input != act.len() {
        return Ok(Planned::NotApplied(format!(
            "channel_absmax has {} channels but the weight has {} input channels",
            act.len(),
            channels.input
        )));
    }
    let original = decode_all(src, layout.numel())?;
    let weight_max = weight_channel_absmax(&original, channels);
    let alpha = match cfg.spatial_alpha {
        SpatialAlpha::Fixed(alpha) => alpha,
        SpatialAlpha::Search => {
            let searcher = Searcher { cfg, layout, width, channels, stats, info, src, original: &original };
            return searcher.run(act, &weight_max).map(|p| match p {
                Planned::Equalize(eq) => Planned::Equalize(Equalization { original, ..eq }),
                other => other,
            });
        }
    };
    Ok(match equalize_at(&original, channels, act, &weight_max, alpha) {
        Some(eq) => Planned::Equalize(Equalization { original, ..eq }),
        None => Planned::NotApplied("equalized weights would exceed the f16 range of group params".into()),
    })
}

/// One layer's α search.
struct Searcher<'a> {
    cfg: &'a QuantConfig,
    layout: Layout,
    width: Width,
    channels: ChannelLayout,
    stats: &'a LayerStats,
    info: &'a TensorInfo,
    src: Source<'a>,
    original: &'a [f32],
}

impl Searcher<'_> {
    fn run(&self, act: &[f32], weight_max: &[f32]) -> Result<Planned> {
        let n = self.layout.row_len;
        let stats = ColumnStats::of(&self.info.shape, self.stats, n);
        let gram = stats.gram.map(|g| Weighting::Gram { gram: g, block: output_block(g, n) });
        // Each column's weight in the output error of the original weights.
        let (measure, base): (AlphaMeasure, Vec<f64>) = match (&gram, &stats.diagonal) {
            (Some(_), Some(d)) => (AlphaMeasure::Gram, d.iter().map(|&h| h as f64).collect()),
            (None, Some(d)) => (AlphaMeasure::SecondMoments, d.iter().map(|&h| h as f64).collect()),
            _ => (
                AlphaMeasure::ActivationMaxima,
                (0..n).map(|j| (act[self.channels.channel_of(j)] as f64).powi(2)).collect(),
            ),
        };
        let importance = stats.diagonal.as_deref().filter(|_| self.cfg.importance.wanted(true));
        let mut candidates = Vec::with_capacity(SpatialAlpha::GRID.len() + 1);
        let mut best: Option<(f64, Option<Equalization>)> = None;
        for alpha in std::iter::once(None).chain(SpatialAlpha::GRID.map(Some)) {
            let eq = match alpha {
                None => None,
                Some(a) => match equalize_at(self.original, self.channels, act, weight_max, a) {
                    Some(eq) => Some(eq),
                    None => {
                        candidates.push((alpha, None));
                        continue;
                    }
                },
            };
            let snr = self.score(eq.as_ref(), &base, importance, gram)?;
            candidates.push((alpha, snr));
            if let Some(snr) = snr.filter(|&s| best.as_ref().is_none_or(|(b, _)| s > *b)) {
                best = Some((snr, eq));
            }
        }
        let search = AlphaSearch { measure, candidates };
        Ok(match best {
            Some((_, Some(eq))) => Planned::Equalize(Equalization { search: Some(search), ..eq }),
            _ => Planned::Off(search),
        })
    }

    /// The layer-output SNR of one candidate (`None`: its params do not fit f16).
    fn score(
        &self,
        eq: Option<&Equalization>,
        base: &[f64],
        importance: Option<&[f32]>,
        gram: Option<Weighting>,
    ) -> Result<Option<f64>> {
        let n = self.layout.row_len;
        let column_scales: Option<Vec<f32>> =
            eq.map(|e| (0..n).map(|j| e.scales[self.channels.channel_of(j)]).collect());
        let src = match eq {
            Some(e) => Source { name: &self.info.name, dtype: Dtype::F32, bytes: &e.equalized_bytes },
            None => self.src,
        };
        // (W'−Ŵ')/s is the error of the original weights: column j's weight divides by s_j².
        let weights: Vec<f64> = match &column_scales {
            Some(s) => base.iter().zip(s).map(|(&b, &s)| b / (s as f64 * s as f64)).collect(),
            None => base.to_vec(),
        };
        let columns = ColumnWeights {
            weights: [Some(weights.as_slice()), None],
            group_size: self.layout.group_size,
            groups_per_row: self.layout.groups_per_row(),
        };
        let match_gain = self.cfg.match_gain.wanted(true);
        let stored_h = importance.map(|d| stored_importance(d, column_scales.as_deref()));
        let choice = match &stored_h {
            Some(h) => ParamChoice::Weighted { importance: h, match_gain },
            None if self.cfg.scale_search.enabled() => ParamChoice::Search { match_gain },
            None => ParamChoice::MinMax,
        };
        let Some((mut t, sums)) = quantize_source_measured(src, self.layout, self.width, choice, &columns)? else {
            return Ok(None);
        };
        let Some(gram) = gram else {
            return Ok(Some(snr_db(sums.columns[0].signal, sums.columns[0].error)));
        };
        let undo = eq.map(|e| (self.channels, e.scales.as_slice()));
        // As the layer will be stored: with a Gram matrix each row keeps its output gain.
        let w_hat = match match_gain {
            true => with_row_gains(&mut t, self.original, undo, gram).0,
            false => inference_weights(&t, undo),
        };
        Ok(Some(output_sums(self.original, &w_hat, n, gram).snr_db()))
    }
}

/// The weights as inference sees them: `t` dequantized and, when it was equalized (its channel
/// layout and scales s), divided back by s.
pub fn inference_weights(t: &QuantizedTensor, equalized: Option<(ChannelLayout, &[f32])>) -> Vec<f32> {
    let mut w_hat = vec![0f32; t.layout.numel()];
    dequantize(t, &mut w_hat);
    if let Some((channels, scales)) = equalized {
        undo_equalization(&mut w_hat, channels, scales);
    }
    w_hat
}

/// Each row of `t` rescaled to keep its output gain under `gram` against the `original` weights
/// ([`output_gains`]): the weights as inference then sees them ([`inference_weights`]), and
/// whether any param changed.
pub fn with_row_gains(
    t: &mut QuantizedTensor,
    original: &[f32],
    equalized: Option<(ChannelLayout, &[f32])>,
    gram: Weighting,
) -> (Vec<f32>, bool) {
    let w_hat = inference_weights(t, equalized);
    match scale_rows(t, &output_gains(original, &w_hat, t.layout.row_len, gram)) {
        true => (inference_weights(t, equalized), true),
        false => (w_hat, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The α search of one f32 Linear `[rows, cols]` at 4 bits, group 64.
    fn search(weights: &[f32], rows: usize, stats: &LayerStats) -> (Option<f64>, AlphaSearch) {
        let bytes: Vec<u8> = weights.iter().flat_map(|x| x.to_le_bytes()).collect();
        let shape = vec![rows as u64, (weights.len() / rows) as u64];
        let info = TensorInfo { name: "l.weight".into(), dtype: Dtype::F32, shape, begin: 0, end: bytes.len() as u64 };
        let mut cfg = QuantConfig::base_mode();
        (cfg.enable_spatial, cfg.spatial_alpha) = (true, SpatialAlpha::Search);
        let src = Source { name: &info.name, dtype: Dtype::F32, bytes: &bytes };
        let layout = Layout::for_shape(&info.shape, 64);
        match plan(&cfg, &info, src, layout, Width::W4, ("l", stats)).unwrap() {
            Planned::Equalize(eq) => {
                let (channels, original) = (eq.channels, eq.original);
                assert_eq!(original, weights);
                // The chosen α's scales, applied as `layout::equalize` does.
                let act = stats.channel_absmax.as_ref().unwrap();
                let scales = equalization_scales(act, &weight_channel_absmax(weights, channels), eq.alpha as f32);
                assert_eq!(eq.scales, scales);
                let want = crate::quant::layout::equalize(weights, channels, &scales);
                assert_eq!(eq.equalized_bytes, want.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
                (Some(eq.alpha), eq.search.unwrap())
            }
            Planned::Off(search) => (None, search),
            Planned::NotApplied(why) => panic!("{why}"),
        }
    }

    /// A few input channels carry most of the activation power: scaling them up before
    /// quantization (α > 0) protects them, and the search must find that.
    #[test]
    fn salient_channels_are_equalized() {
        let (rows, cols) = (16usize, 128usize);
        let w: Vec<f32> = (0..rows * cols).map(|k| ((k * 7919 % 997) as f32 / 997.0 - 0.5) * 0.1).collect();
        let act: Vec<f32> = (0..cols).map(|j| if j % 16 == 3 { 40.0 } else { 1.0 }).collect();
        let stats = LayerStats { channel_absmax: Some(act), ..Default::default() };
        let (chosen, search) = search(&w, rows, &stats);
        assert_eq!(search.measure, AlphaMeasure::ActivationMaxima);
        assert_eq!(search.candidates.len(), 1 + SpatialAlpha::GRID.len());
        let off = search.candidates[0].1.unwrap();
        let best = search.candidates.iter().filter_map(|c| c.1).fold(f64::MIN, f64::max);
        let of_chosen = search.candidates.iter().find(|c| c.0 == chosen).unwrap().1;
        assert_eq!(of_chosen, Some(best));
        assert!(chosen.is_some() && best > off + 1.0, "equalization should help salient channels: {search:?}");
    }

    /// Candidates whose equalized weights leave the f16 range are reported as such, not chosen.
    #[test]
    fn candidates_beyond_f16_are_skipped() {
        let (rows, cols) = (4usize, 64usize);
        let w: Vec<f32> = (0..rows * cols).map(|k| if k % cols == 5 { 60000.0 } else { (k % 13) as f32 }).collect();
        let act: Vec<f32> = (0..cols).map(|j| if j == 5 { 1e6 } else { 1.0 }).collect();
        let stats = LayerStats { channel_absmax: Some(act), ..Default::default() };
        let (chosen, search) = search(&w, rows, &stats);
        assert_eq!(search.candidates.last(), Some(&(Some(1.0), None)), "{search:?}");
        assert!(search.candidates[0].1.is_some() && chosen != Some(1.0));
    }
}
