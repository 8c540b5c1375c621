//! One tensor: decide how it is stored (policy), quantize it, measure what was stored, fall back
//! to a wider width while it misses `minAccuracy`, and record the row with its [`Decision`].

use crate::diffusion::calibration::LayerStats;
use crate::diffusion::spatial::{snr_db, step_ranges, weighted_error};
use crate::diffusion::timegroups::time_groups;
use crate::error::{AqError, Result};
use crate::format::parquet::{Metrics, SpatialMeta, Stored, TensorRow};
use crate::format::safetensors::TensorInfo;
use crate::pipeline::codec;
use crate::pipeline::decision::{
    CodecNote, Compared, Decision, F16Limit, F16Why, Fallback, Miss, Outcome, SpatialNote, TimeDecision, TimeNote,
    WeightDecision, MIN_ROW_LEN,
};
use crate::pipeline::equalization::{self, inference_weights, with_row_gains, Planned};
use crate::pipeline::objective::{Method, MethodNote, Objective};
use crate::policy::config::{Codec, QuantConfig};
use crate::policy::modality::Modality;
use crate::policy::width::{requested_width, LayerWidth, Requested, WidthRule};
use crate::quant::dtype::Dtype;
use crate::quant::f16_store::{store_f16, F16Store};
use crate::quant::ggml;
use crate::quant::gptq;
use crate::quant::layout::{ChannelLayout, Layout};
use crate::quant::metrics::{ColumnWeights, ErrorSums};
use crate::quant::output::{output_sums, Weighting};
use crate::quant::tensor::{decode_all, layout_error_sums, quantize_source_measured, ParamChoice, Source};
use crate::quant::width::Width;

/// A stored tensor, the error sums of what was stored (for the model summary), and why.
#[derive(Debug, Clone)]
pub struct LayerOutcome {
    pub row: TensorRow,
    pub sums: Option<ErrorSums>,
    pub decision: Decision,
}

/// What the quantizer knows about a tensor beyond its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerContext<'a> {
    pub cal: Option<LayerCalibration<'a>>,
    /// The model's modality (selects the default sensitive-layer patterns).
    pub modality: Option<Modality>,
    /// Width chosen by a size plan (`targetSizeMb`): stored exactly, without fallback.
    pub planned_bits: Option<u8>,
}

/// Calibration statistics matched to one weight tensor.
#[derive(Debug, Clone, Copy)]
pub struct LayerCalibration<'a> {
    /// The calibration's layer name (`L` for the weight `L.weight`).
    pub layer: &'a str,
    pub stats: &'a LayerStats,
}

/// A row before its reason is rendered. `crc32` of `data` when already known (the quantizer
/// computes it in parallel), else hashed here.
fn row(info: &TensorInfo, stored: Stored, requested: Option<u8>, data: Vec<u8>, crc32: Option<u32>) -> TensorRow {
    TensorRow {
        name: info.name.clone(),
        shape: info.shape.clone(),
        dtype: info.dtype,
        requested_bits: requested,
        stored,
        data_crc32: crc32.unwrap_or_else(|| crc32fast::hash(&data)),
        data,
        metrics: None,
        reason: String::new(),
        weighted_snr_db: None,
        output_snr_db: None,
        time_groups: None,
        spatial: None,
    }
}

/// A weight's row, its error sums and what happened, before the time note completes the decision.
struct WeightRow {
    row: TensorRow,
    sums: Option<ErrorSums>,
    outcome: Outcome,
    spatial: Option<SpatialNote>,
    method: Option<MethodNote>,
}

fn raw(info: &TensorInfo, bytes: &[u8], requested: Option<u8>) -> TensorRow {
    row(info, Stored::Raw, requested, bytes.to_vec(), None)
}

/// f16 storage, or the source bytes when f16 cannot hold the values (beyond ±65504, or so small
/// that f16 would flush them).
fn f16_or_raw(info: &TensorInfo, src: Source, requested: u8, why: F16Why) -> Result<WeightRow> {
    let limit = match store_f16(src, info.numel() as usize)? {
        F16Store::Stored { data, sums } => {
            let mut row = row(info, Stored::F16, Some(requested), data, None);
            row.metrics = Some(Metrics::from(&sums));
            return Ok(WeightRow { row, sums: Some(sums), outcome: Outcome::F16(why), spatial: None, method: None });
        }
        F16Store::Overflow => F16Limit::Overflow,
        F16Store::Underflow { snr_db } => F16Limit::Underflow { snr_db },
    };
    let row = raw(info, src.bytes, Some(requested));
    Ok(WeightRow { row, sums: None, outcome: Outcome::RawBeyondF16(why, limit), spatial: None, method: None })
}

/// Decide how one tensor is stored and do it. `bytes` are the tensor's bytes as in the file.
pub fn quantize_layer(cfg: &QuantConfig, info: &TensorInfo, bytes: &[u8], ctx: LayerContext) -> Result<LayerOutcome> {
    if bytes.len() as u64 != info.byte_len() {
        return Err(AqError::Safetensors(format!(
            "tensor '{}': got {} bytes, the header says {}",
            info.name,
            bytes.len(),
            info.byte_len()
        )));
    }
    if !info.is_weight() {
        let decision = match info.dtype.is_float() {
            false => Decision::NonFloat { dtype: info.dtype },
            true => Decision::NotMatrix { dims: info.shape.len() },
        };
        let mut row = raw(info, bytes, None);
        row.reason = decision.reason();
        return Ok(LayerOutcome { row, sums: None, decision });
    }
    let gram = ctx.cal.is_some_and(|c| c.stats.gram.is_some());
    let requested = requested_width(cfg, ctx.modality, &info.name, ctx.planned_bits, gram);
    let WeightRow { mut row, sums, outcome, spatial, method } = store_weight(cfg, info, bytes, &requested, ctx.cal)?;
    let mut time = None;
    let float_input = cfg.float_sensitive_inputs && matches!(requested.rule, WidthRule::Sensitive { .. });
    if let (Some(_), true, true) = (ctx.cal, cfg.enable_time_aware, float_input) {
        time = Some(TimeDecision::FloatInput);
    } else if let (Some(cal), true) = (ctx.cal, cfg.enable_time_aware) {
        let scales = row.spatial.as_ref().map(|s| s.scales.as_slice());
        let ranges = step_ranges(cal.stats, scales);
        let groups = time_groups(
            &ranges,
            cfg.num_time_groups as usize,
            cfg.time_grouping,
            cfg.time_smoothing as f32,
            cfg.activation_bits,
        );
        let fewest = cal.stats.samples.iter().copied().filter(|&n| n > 0).min().unwrap_or(0);
        time = Some(TimeDecision::Groups(TimeNote {
            groups: groups.len(),
            grouping: cfg.time_grouping,
            timesteps: ranges.len(),
            layer: cal.layer.to_string(),
            equalized: scales.is_some(),
            missing: cal.stats.missing(),
            few_samples: (fewest < cfg.calibration_samples as u64).then_some((fewest, cfg.calibration_samples)),
        }));
        row.time_groups = Some(groups);
    }
    let decision = Decision::Weight(Box::new(WeightDecision { requested, outcome, method, spatial, time }));
    row.reason = decision.reason();
    Ok(LayerOutcome { row, sums, decision })
}

/// Storage of a ≥2-D float weight at its requested width: f16 when asked or when rows are too
/// short to group, else quantization with the fallback chain, with channel equalization when
/// enabled and calibrated.
fn store_weight(
    cfg: &QuantConfig,
    info: &TensorInfo,
    bytes: &[u8],
    requested: &Requested,
    cal: Option<LayerCalibration>,
) -> Result<WeightRow> {
    let src = Source { name: &info.name, dtype: info.dtype, bytes };
    let asked = requested.width.bits();
    let LayerWidth::Codes(first) = requested.width else {
        return f16_or_raw(info, src, asked, F16Why::Requested);
    };
    let layout = Layout::for_shape(&info.shape, cfg.group_size as usize);
    if layout.row_len < MIN_ROW_LEN {
        return f16_or_raw(info, src, asked, F16Why::RowsTooShort { row_len: layout.row_len });
    }
    // Without calibration for this layer the model report already says spatial was not applied;
    // a per-layer note is only worth it when statistics exist but cannot be used.
    let (eq, mut spatial) = match cal.filter(|_| cfg.enable_spatial) {
        Some(cal) => match equalization::plan(cfg, info, src, layout, first, (cal.layer, cal.stats))? {
            Planned::Equalize(eq) => (Some(eq), None),
            Planned::Off(search) => (None, Some(SpatialNote::SearchedOff(search))),
            Planned::NotApplied(why) => (None, Some(SpatialNote::NotApplied(why))),
        },
        None => (None, None),
    };
    let act_absmax = cal.and_then(|c| c.stats.channel_absmax.as_deref());
    let qsrc = match &eq {
        Some(e) => Source { name: &info.name, dtype: Dtype::F32, bytes: &e.equalized_bytes },
        None => src,
    };
    let objective =
        Objective::choose(cfg, info, layout, cal.map(|c| c.stats), eq.as_ref().map(|e| e.scales.as_slice()));
    let weighted_channels = act_absmax.zip(ChannelLayout::for_shape(&info.shape)).filter(|(a, cl)| cl.input == a.len());
    let measure_output = objective.weighting().is_some();
    // Where the stored weights are the original ones (no equalization) and the output error needs
    // only per-column weights (no Gram matrix), the validation pass adds up the output and
    // activation-weighted errors itself. Otherwise they need the source as f32: with equalization
    // it is already decoded, else decode it once here rather than per fallback width.
    let in_pass = eq.is_none() && !matches!(objective.weighting(), Some(Weighting::Gram { .. }));
    let output_weights: Option<Vec<f64>> = match objective.weighting() {
        Some(Weighting::Diagonal(h)) if in_pass => Some(h.iter().map(|&g| g as f64).collect()),
        _ => None,
    };
    let channel_weights: Option<Vec<f64>> = weighted_channels.filter(|_| in_pass).map(|(a, cl)| {
        (0..layout.row_len)
            .map(|j| {
                let a = a[cl.channel_of(j)] as f64;
                a * a
            })
            .collect()
    });
    let columns = ColumnWeights {
        weights: [output_weights.as_deref(), channel_weights.as_deref()],
        group_size: layout.group_size,
        groups_per_row: layout.groups_per_row(),
    };
    let decoded = match (&eq, !in_pass && (weighted_channels.is_some() || measure_output)) {
        (None, true) => Some(decode_all(src, layout.numel())?),
        _ => None,
    };
    let fall_back = requested.may_fall_back();
    let store_blocks = |b: codec::Blocks, width, misses: Vec<Miss>, codec, spatial| -> Result<WeightRow> {
        let (row, sums) = blocks_row(info, src, Some(asked), b, weighted_channels)?;
        let fallback = (!misses.is_empty()).then_some(Fallback { misses, min_accuracy: cfg.min_accuracy });
        let outcome = Outcome::Quantized { width, fallback, codec: Some(codec) };
        Ok(WeightRow { row, sums: Some(sums), outcome, spatial, method: objective.note.clone() })
    };
    let mut misses: Vec<Miss> = Vec::new();
    let widths = Width::ALL.into_iter().filter(|&w| w >= first).take(if fall_back { 3 } else { 1 });
    for width in widths {
        let block_type = codec::block_type(cfg.codec_in_effect(), width, eq.is_some(), layout.numel() as u64);
        // `codec: 'ggml'`: the blocks alone, no groups to compare with.
        if let (Codec::Ggml, Some(ty)) = (cfg.codec_in_effect(), block_type) {
            let b = codec::encode_blocks(info, bytes, ty, layout.row_len, &objective.method, objective.weighting())?;
            let cosine = b.cosine();
            if fall_back && cfg.min_accuracy > 0.0 && cosine < cfg.min_accuracy {
                misses.push(Miss { width, cosine, output: b.output.is_some() });
                continue;
            }
            return store_blocks(b, width, misses, CodecNote { ty, blocks: true, compared: None }, spatial);
        }
        let match_gain = cfg.match_gain.wanted(true);
        let choice = match &objective.method {
            Method::Importance(h) => ParamChoice::Weighted { importance: h, match_gain },
            _ if cfg.scale_search.enabled() => ParamChoice::Search { match_gain },
            _ => ParamChoice::MinMax,
        };
        let quantized = match &objective.method {
            Method::Gptq(prepared) => gptq::quantize(qsrc, layout, width, prepared)?,
            _ => quantize_source_measured(qsrc, layout, width, choice, &columns)?,
        };
        let Some((mut t, mut sums)) = quantized else {
            let row = raw(info, bytes, Some(asked));
            return Ok(WeightRow { row, sums: None, outcome: Outcome::RawBeyondParams, spatial: None, method: None });
        };
        if t.below_f16_normal(sums.sum_w2) {
            let row = raw(info, bytes, Some(asked));
            return Ok(WeightRow { row, sums: None, outcome: Outcome::RawBelowParams, spatial: None, method: None });
        }
        let original = || eq.as_ref().map_or_else(|| decoded.as_deref().expect("decoded above"), |e| &e.original[..]);
        let undo = eq.as_ref().map(|e| (e.channels, e.scales.as_slice()));
        // With a Gram matrix each row keeps its output gain (after GPTQ or any other choice).
        let (mut w_hat, mut rescaled) = (None, false);
        if let Some(gram @ Weighting::Gram { .. }) = objective.weighting().filter(|_| match_gain) {
            let (v, changed) = with_row_gains(&mut t, original(), undo, gram);
            (w_hat, rescaled) = (Some(v), changed);
        }
        // The metrics are of the weights as inference sees them, against the original weights.
        if w_hat.is_none() && (eq.is_some() || (!in_pass && (weighted_channels.is_some() || measure_output))) {
            w_hat = Some(inference_weights(&t, undo));
        }
        if let (true, Some(v)) = (eq.is_some() || rescaled, w_hat.as_deref()) {
            sums = layout_error_sums(original(), v, layout);
        }
        // With calibration, accuracy is judged where it matters: at the layer's output.
        let output = if in_pass {
            output_weights.is_some().then_some(sums.columns[0])
        } else {
            objective
                .weighting()
                .zip(w_hat.as_deref())
                .map(|(wt, w_hat)| output_sums(original(), w_hat, layout.row_len, wt))
        };
        let mut cosine = output.map_or(sums.cosine(), |o| o.cosine());
        // `codec: 'auto'`: the blocks when no larger and more accurate where the layer is judged.
        // Groups whose rows' output gains are matched (a Gram matrix) stay: blocks span rows and
        // cannot be, and on the bundled DiT such blocks lost at the model's output though their
        // layer-output error was smaller (`make eval`, the codec rows).
        let mut codec = None;
        let mut blocks = None;
        let row_gains = match_gain && matches!(objective.weighting(), Some(Weighting::Gram { .. }));
        if let (Some(ty), true) = (block_type, row_gains) {
            codec = Some(CodecNote { ty, blocks: false, compared: None });
        } else if let Some(ty) = block_type {
            let b = codec::encode_blocks(info, bytes, ty, layout.row_len, &objective.method, objective.weighting())?;
            let groups_bytes = (t.codes.len() + 4 * t.scales.len()) as u64;
            let compared = Compared {
                group_size: cfg.group_size,
                groups_db: output.map_or(sums.snr_db(), |o| o.snr_db()),
                blocks_db: b.output.map_or(b.sums.snr_db(), |o| o.snr_db()),
                at_output: output.is_some(),
                blocks_larger: b.data.len() as u64 > groups_bytes,
            };
            let keep = codec::blocks_win(&b, groups_bytes, &sums, output);
            codec = Some(CodecNote { ty, blocks: keep, compared: Some(compared) });
            if keep {
                cosine = b.cosine();
                blocks = Some(b);
            }
        }
        if fall_back && cfg.min_accuracy > 0.0 && cosine < cfg.min_accuracy {
            misses.push(Miss { width, cosine, output: output.is_some() });
            continue;
        }
        if let (Some(b), Some(note)) = (blocks, codec.clone()) {
            return store_blocks(b, width, misses, note, spatial);
        }
        // Only the stored width needs its activation-weighted error.
        let weighted = if in_pass {
            channel_weights.is_some().then(|| snr_db(sums.columns[1].signal, sums.columns[1].error))
        } else {
            weighted_channels.zip(w_hat.as_deref()).map(|((a, cl), w_hat)| {
                let (sig, err) = weighted_error(original(), w_hat, cl, a);
                snr_db(sig, err)
            })
        };
        let stored = Stored::Quantized { width, group_size: cfg.group_size, scales: t.scales, mins: t.mins };
        let mut row = row(info, stored, Some(asked), t.codes, Some(t.crc32));
        row.weighted_snr_db = weighted;
        row.output_snr_db = output.map(|o| o.snr_db());
        row.metrics = Some(Metrics::from(&sums));
        if let Some(e) = eq {
            let (lo, hi) = e.scales.iter().fold((f32::INFINITY, 0f32), |(l, h), &s| (l.min(s), h.max(s)));
            spatial = Some(SpatialNote::Applied {
                channels: e.scales.len(),
                alpha: e.alpha,
                scale_min: lo,
                scale_max: hi,
                search: e.search,
            });
            row.spatial = Some(SpatialMeta {
                enabled: true,
                channel_equalization: true,
                activation_smoothing: e.alpha > 0.0,
                alpha: e.alpha as f32,
                scales: e.scales,
            });
        }
        let fallback = (!misses.is_empty()).then_some(Fallback { misses, min_accuracy: cfg.min_accuracy });
        let method = objective.note.clone();
        return Ok(WeightRow {
            row,
            sums: Some(sums),
            outcome: Outcome::Quantized { width, fallback, codec },
            spatial,
            method,
        });
    }
    let fallback = Fallback { misses, min_accuracy: cfg.min_accuracy };
    if cfg.fail_fast {
        return Err(AqError::Accuracy {
            tensor: info.name.clone(),
            message: format!("{} at every width (failFast is on)", fallback.describe()),
        });
    }
    f16_or_raw(info, src, asked, F16Why::FallbackExhausted(fallback))
}

/// A layer stored as ggml blocks: its row, with the metrics of what the blocks decode to.
fn blocks_row(
    info: &TensorInfo,
    src: Source,
    requested: Option<u8>,
    b: codec::Blocks,
    weighted_channels: Option<(&[f32], ChannelLayout)>,
) -> Result<(TensorRow, ErrorSums)> {
    let weighted = match weighted_channels {
        Some((a, cl)) => {
            let numel = info.numel() as usize;
            let w_hat = ggml::dequantize(b.ty, &b.data, numel)?;
            let (sig, err) = weighted_error(&decode_all(src, numel)?, &w_hat, cl, a);
            Some(snr_db(sig, err))
        }
        None => None,
    };
    let mut row = row(info, Stored::Blocks(b.ty), requested, b.data, None);
    row.metrics = Some(Metrics::from(&b.sums));
    row.output_snr_db = b.output.map(|o| o.snr_db());
    row.weighted_snr_db = weighted;
    Ok((row, b.sums))
}
