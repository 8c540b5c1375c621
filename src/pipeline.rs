//! The orchestrator: plan → quantize → validate → fall back → record, one tensor at a time.
//! [`ModelQuantizer`] is the streaming form (header first, then tensors in any order, output
//! taken in chunks); [`quantize_model`] drives it over a whole in-memory file.

use std::collections::HashMap;

use crate::calibration::{Calibration, LayerStats};
use crate::config::{Modality, QuantConfig};
use crate::dtype::Dtype;
use crate::error::{AqError, Result};
use crate::modality::{detect, Detection};
use crate::parquet::schema::*;
use crate::parquet::writer::TensorWriter;
use crate::parquet::SpatialMeta;
use crate::parquet::TensorRow;
use crate::quant::tensor::{decode_all, dequantize, layout_error_sums, quantize_source, store_f16, Layout, Source};
use crate::quant::ErrorSums;
use crate::report::{FeatureStatus, LayerCounts, LayerReport, ModelReport, Progress, SpatialSummary, Storage};
use crate::safetensors::{parse_header, Header, TensorInfo};
use crate::sizeplan::{PlanRun, SizePlan};
use crate::spatial::{
    equalization_scales, equalize, snr_db as spatial_snr_db, step_ranges, undo_equalization, weight_channel_absmax,
    weighted_error, ChannelLayout,
};
use crate::timegroups::time_groups;

/// Rows shorter than this are not group-quantized: a group of a few values costs 4 bytes of
/// params, more than the values themselves.
pub const MIN_ROW_LEN: usize = 8;

/// A Parquet BYTE_ARRAY value (and an Arrow binary array) holds at most i32::MAX bytes.
pub const MAX_VALUE_BYTES: usize = i32::MAX as usize;

/// The widths the fallback climbs through.
const FALLBACK_WIDTHS: &[u8] = &[2, 4, 8];

/// How a reason starts when a `targetSizeMb` plan chose the width.
pub const PLAN_REASON: &str = "targetSizeMb plan";

/// A clock in seconds, injected so the core needs no platform time source (wasm32 has none in std).
pub type Clock = fn() -> f64;

#[cfg(not(target_arch = "wasm32"))]
pub fn default_clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(target_arch = "wasm32")]
pub fn default_clock() -> f64 {
    0.0
}

/// A stored tensor plus the error sums of what was stored (for the model summary).
#[derive(Debug, Clone)]
pub struct LayerOutcome {
    pub row: TensorRow,
    pub sums: Option<ErrorSums>,
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

/// `crc32` of `data` when already known (the quantizer computes it in parallel), else hashed here.
fn base_row(
    info: &TensorInfo,
    storage: Storage,
    requested_bits: Option<u8>,
    data: Vec<u8>,
    crc32: Option<u32>,
    reason: String,
) -> TensorRow {
    TensorRow {
        name: info.name.clone(),
        shape: info.shape.clone(),
        dtype: info.dtype,
        storage,
        requested_bits,
        bits: None,
        group_size: None,
        data_crc32: crc32.unwrap_or_else(|| crc32fast::hash(&data)),
        data,
        scales: None,
        mins: None,
        cosine: None,
        snr_db: None,
        rel_rmse: None,
        max_abs_error: None,
        reason,
        weighted_snr_db: None,
        time_groups: None,
        spatial: None,
    }
}

fn raw_row(info: &TensorInfo, bytes: &[u8], requested_bits: Option<u8>, reason: String) -> LayerOutcome {
    LayerOutcome { row: base_row(info, Storage::Raw, requested_bits, bytes.to_vec(), None, reason), sums: None }
}

fn with_metrics(mut row: TensorRow, sums: &ErrorSums) -> TensorRow {
    row.cosine = Some(sums.cosine());
    row.snr_db = Some(sums.snr_db());
    row.rel_rmse = Some(sums.rel_rmse());
    row.max_abs_error = Some(sums.max_abs);
    row
}

/// f16 storage, or raw when a value does not fit f16.
fn f16_row(info: &TensorInfo, src: Source, requested_bits: Option<u8>, reason: String) -> Result<LayerOutcome> {
    let Some((data, sums)) = store_f16(src, info.numel() as usize)? else {
        return Ok(raw_row(
            info,
            src.bytes,
            requested_bits,
            format!("{reason}; values beyond the f16 range, stored as source bytes"),
        ));
    };
    let mut row = base_row(info, Storage::F16, requested_bits, data, None, reason);
    row.bits = Some(16);
    Ok(LayerOutcome { row: with_metrics(row, &sums), sums: Some(sums) })
}

/// The equalization chosen for one layer: scales, the weights they apply to, and why.
struct Equalization {
    channels: ChannelLayout,
    scales: Vec<f32>,
    /// The source weights as f32 (what metrics compare against).
    original: Vec<f32>,
    /// W·diag(s) as little-endian f32 bytes (what is quantized).
    equalized_bytes: Vec<u8>,
}

/// Decide whether channel equalization applies to this weight; `Err(note)` says why not.
fn plan_equalization(
    cfg: &QuantConfig,
    info: &TensorInfo,
    src: Source,
    cal: Option<LayerCalibration>,
) -> Result<std::result::Result<Equalization, String>> {
    let Some(cal) = cal else { return Ok(Err("no calibration entry".into())) };
    let Some(act) = cal.stats.channel_absmax.as_deref() else {
        return Ok(Err(format!("calibration layer '{}' has no channel_absmax", cal.layer)));
    };
    let Some(channels) = ChannelLayout::for_shape(&info.shape) else {
        return Ok(Err("not a weight with an input-channel axis".into()));
    };
    if channels.input != act.len() {
        return Ok(Err(format!(
            "channel_absmax has {} channels but the weight has {} input channels",
            act.len(),
            channels.input
        )));
    }
    let original = decode_all(src, info.numel() as usize)?;
    let scales = equalization_scales(act, &weight_channel_absmax(&original, channels), cfg.spatial_alpha as f32);
    let equalized = equalize(&original, channels, &scales);
    if equalized.iter().any(|x| x.abs() > F16_MAX) {
        return Ok(Err("equalized weights would exceed the f16 range of group params".into()));
    }
    let equalized_bytes = equalized.iter().flat_map(|x| x.to_le_bytes()).collect();
    Ok(Ok(Equalization { channels, scales, original, equalized_bytes }))
}

const F16_MAX: f32 = 65504.0;

/// Decide how one tensor is stored and do it. `bytes` are the tensor's bytes as in the file;
/// `cal` the calibration statistics of the layer it belongs to, if any.
pub fn quantize_layer(cfg: &QuantConfig, info: &TensorInfo, bytes: &[u8], ctx: LayerContext) -> Result<LayerOutcome> {
    let cal = ctx.cal;
    if bytes.len() as u64 != info.byte_len() {
        return Err(AqError::Safetensors(format!(
            "tensor '{}': got {} bytes, the header says {}",
            info.name,
            bytes.len(),
            info.byte_len()
        )));
    }
    if !info.dtype.is_float() {
        return Ok(raw_row(info, bytes, None, format!("non-float dtype {}: stored as is", info.dtype.name())));
    }
    if info.shape.len() < 2 {
        return Ok(raw_row(
            info,
            bytes,
            None,
            format!("{}-D tensor (bias, norm or scalar): stored unquantized", info.shape.len()),
        ));
    }
    let mut out = store_weight(cfg, info, bytes, ctx)?;
    if let (Some(cal), true) = (cal, cfg.enable_time_aware) {
        let scales = out.row.spatial.as_ref().map(|s| s.scales.as_slice());
        let ranges = step_ranges(cal.stats, scales);
        let groups = time_groups(
            &ranges,
            cfg.num_time_groups as usize,
            cfg.time_grouping,
            cfg.time_smoothing as f32,
            cfg.activation_bits,
        );
        let missing = cal.stats.missing();
        let mut note = format!(
            "; time-aware: {} {} group(s) over {} timesteps from calibration layer '{}'",
            groups.len(),
            cfg.time_grouping.as_str(),
            ranges.len(),
            cal.layer
        );
        if scales.is_some() {
            note.push_str(" (ranges of the equalized activations X/s)");
        }
        if !missing.is_empty() {
            note.push_str(&format!(
                ", no data at timestep index(es) {} (they use their group's params)",
                short_list(&missing, 8, ", ")
            ));
        }
        let fewest = cal.stats.samples.iter().copied().filter(|&n| n > 0).min().unwrap_or(0);
        if fewest < cfg.calibration_samples as u64 {
            note.push_str(&format!(
                ", as few as {fewest} samples per timestep (calibrationSamples asks for {})",
                cfg.calibration_samples
            ));
        }
        out.row.reason.push_str(&note);
        out.row.time_groups = Some(groups);
    }
    Ok(out)
}

/// The first `limit` items joined by `sep`, then " and N more" — for messages that must stay short.
fn short_list<T: std::fmt::Display>(items: &[T], limit: usize, sep: &str) -> String {
    let shown: Vec<String> = items.iter().take(limit).map(|t| t.to_string()).collect();
    let more = if items.len() > limit { format!(" and {} more", items.len() - limit) } else { String::new() };
    format!("{}{more}", shown.join(sep))
}

/// Storage of a ≥2-D float weight: sensitive/override/f16 rules, then quantization with the
/// fallback chain, with channel equalization when enabled and calibrated.
fn store_weight(cfg: &QuantConfig, info: &TensorInfo, bytes: &[u8], ctx: LayerContext) -> Result<LayerOutcome> {
    let cal = ctx.cal;
    let (mut requested, decided_by) = cfg.bits_for(&info.name);
    let src = Source { name: &info.name, dtype: info.dtype, bytes };
    let mut base_reason = match decided_by {
        Some(p) => format!("layerBitWidths['{p}'] = {requested}"),
        None => format!("bitWidth {requested}"),
    };
    // Precedence: your layerBitWidths, then sensitive layers, then a size plan, then bitWidth.
    let mut fallback = true;
    if decided_by.is_none() {
        if let Some((pattern, origin)) = cfg.sensitive_match(ctx.modality, &info.name) {
            requested = cfg.sensitive_bits;
            base_reason = format!("sensitive layer (matched '{pattern}', {origin}) at {requested} bits");
        } else if let Some(b) = ctx.planned_bits {
            requested = b;
            base_reason = format!("{PLAN_REASON}: {b} bits");
            fallback = false;
        }
    }
    if requested == 16 {
        return f16_row(info, src, Some(16), format!("{base_reason}: kept as f16"));
    }
    let layout = Layout::for_shape(&info.shape, cfg.group_size as usize);
    if layout.row_len < MIN_ROW_LEN {
        return f16_row(
            info,
            src,
            Some(requested),
            format!("rows of {} elements are too short to group (< {MIN_ROW_LEN}): kept as f16", layout.row_len),
        );
    }
    // Without calibration for this layer the model report already says spatial was not applied;
    // a per-layer note is only worth it when statistics exist but cannot be used.
    let (eq, spatial_note) = if cfg.enable_spatial && cal.is_some() {
        match plan_equalization(cfg, info, src, cal)? {
            Ok(eq) => (Some(eq), None),
            Err(why) => (None, Some(format!("; spatial: not applied ({why})"))),
        }
    } else {
        (None, None)
    };
    let act_absmax = cal.and_then(|c| c.stats.channel_absmax.as_deref());
    let qsrc = match &eq {
        Some(e) => Source { name: &info.name, dtype: Dtype::F32, bytes: &e.equalized_bytes },
        None => src,
    };
    // The activation-weighted error needs the source as f32; with equalization it is already
    // decoded, otherwise decode it once here rather than per fallback width.
    let weighted_channels = act_absmax.zip(ChannelLayout::for_shape(&info.shape)).filter(|(a, cl)| cl.input == a.len());
    let decoded = match (&eq, weighted_channels) {
        (None, Some(_)) => Some(decode_all(src, layout.numel())?),
        _ => None,
    };
    let mut misses: Vec<String> = Vec::new();
    let widths: Vec<u8> =
        FALLBACK_WIDTHS.iter().copied().filter(|&b| b >= requested).take(if fallback { 3 } else { 1 }).collect();
    for bits in widths {
        let search = cfg.scale_search.enabled_for(bits);
        let Some((t, mut sums)) = quantize_source(qsrc, layout, bits, search)? else {
            return Ok(raw_row(
                info,
                bytes,
                Some(requested),
                "values beyond ±65504 cannot have f16 scales: stored as source bytes".to_string(),
            ));
        };
        // With equalization the metrics are of the weights as inference sees them: dequantized
        // and divided back by s, against the original weights.
        let mut w_hat = None;
        if eq.is_some() || weighted_channels.is_some() {
            let mut v = vec![0f32; layout.numel()];
            dequantize(&t, &mut v);
            if let Some(e) = &eq {
                undo_equalization(&mut v, e.channels, &e.scales);
                sums = layout_error_sums(&e.original, &v, layout);
            }
            w_hat = Some(v);
        }
        let cosine = sums.cosine();
        if fallback && cfg.min_accuracy > 0.0 && cosine < cfg.min_accuracy {
            misses.push(format!("{bits}-bit cosine {cosine:.5}"));
            continue;
        }
        // Only the stored width needs its activation-weighted error.
        let weighted = weighted_channels.zip(w_hat.as_deref()).map(|((a, cl), w_hat)| {
            let original = eq.as_ref().map_or_else(|| decoded.as_deref().expect("decoded above"), |e| &e.original);
            let (sig, err) = weighted_error(original, w_hat, cl, a);
            spatial_snr_db(sig, err)
        });
        let mut reason = if misses.is_empty() {
            base_reason
        } else {
            format!("{base_reason}; fallback: {} < minAccuracy {}", misses.join(", "), cfg.min_accuracy)
        };
        let mut row = base_row(info, Storage::Quantized, Some(requested), t.codes, Some(t.crc32), String::new());
        row.bits = Some(bits);
        row.group_size = Some(cfg.group_size);
        row.scales = Some(t.scales);
        row.mins = Some(t.mins);
        row.weighted_snr_db = weighted;
        if let Some(e) = eq {
            let (lo, hi) = e.scales.iter().fold((f32::INFINITY, 0f32), |(l, h), &s| (l.min(s), h.max(s)));
            reason.push_str(&format!(
                "; spatial: {} input channels equalized (alpha {}, s in [{lo:.4}, {hi:.4}])",
                e.scales.len(),
                cfg.spatial_alpha
            ));
            row.spatial = Some(SpatialMeta {
                enabled: true,
                channel_equalization: true,
                activation_smoothing: cfg.spatial_alpha > 0.0,
                alpha: cfg.spatial_alpha as f32,
                scales: e.scales,
            });
        } else if let Some(n) = spatial_note {
            reason.push_str(&n);
        }
        row.reason = reason;
        return Ok(LayerOutcome { row: with_metrics(row, &sums), sums: Some(sums) });
    }
    let summary = format!("{} < minAccuracy {}", misses.join(", "), cfg.min_accuracy);
    if cfg.fail_fast {
        return Err(AqError::Accuracy {
            tensor: info.name.clone(),
            message: format!("{summary} at every width (failFast is on)"),
        });
    }
    f16_row(info, src, Some(requested), format!("{base_reason}; fallback: {summary}: kept as f16"))
}

/// Streaming quantizer: `begin` with the header, `add_tensor` for each tensor (in any order, each
/// once), `take_output` whenever convenient, then `finish`. Memory holds one tensor and at most
/// one open row group, never the model or the whole output.
pub struct ModelQuantizer {
    cfg: QuantConfig,
    clock: Clock,
    started_at: f64,
    header: Option<Header>,
    /// name → index in header.tensors; `done[i]` once written.
    index: HashMap<String, usize>,
    done: Vec<bool>,
    writer: Option<TensorWriter>,
    /// Rows quantized by the last `add_tensors` and not yet written. With a thread pool they are
    /// written while the next call's tensors are quantized (the writer is serial: zstd, Arrow
    /// encoding and CRC on one thread), so output lags one call behind; `finish` writes the rest.
    pending: Vec<TensorRow>,
    layers: Vec<LayerReport>,
    lossy: ErrorSums,
    modality: Detection,
    bytes_done: u64,
    row_group_bytes: usize,
    calibration: Option<Calibration>,
    /// Per-tensor widths from a size plan (`targetSizeMb`).
    plan: Option<SizePlan>,
    /// Calibration layers matched to a weight so far, and weights (≥2-D float) without an entry.
    calibrated: Vec<String>,
    uncalibrated: u32,
    time_grouped: u32,
    equalized: u32,
    /// Set after any error: the run cannot produce a valid file any more.
    failed: Option<String>,
}

impl ModelQuantizer {
    pub fn new(cfg: QuantConfig) -> Result<Self> {
        Self::with_clock(cfg, default_clock)
    }

    pub fn with_clock(cfg: QuantConfig, clock: Clock) -> Result<Self> {
        cfg.validate()?;
        Ok(ModelQuantizer {
            cfg,
            clock,
            started_at: clock(),
            header: None,
            index: HashMap::new(),
            done: Vec::new(),
            writer: None,
            pending: Vec::new(),
            layers: Vec::new(),
            lossy: ErrorSums::default(),
            modality: detect(None, None, std::iter::empty()),
            bytes_done: 0,
            row_group_bytes: ROW_GROUP_TARGET_BYTES,
            calibration: None,
            plan: None,
            calibrated: Vec::new(),
            uncalibrated: 0,
            time_grouped: 0,
            equalized: 0,
            failed: None,
        })
    }

    /// Row-group size target: output becomes available in chunks of about this size.
    /// Call before `begin`. Default 8 MiB.
    pub fn set_row_group_bytes(&mut self, bytes: usize) {
        self.row_group_bytes = bytes;
    }

    /// Calibration, modality and planned width for one tensor of the header.
    pub fn context_for(&self, info: &TensorInfo) -> LayerContext<'_> {
        let is_weight = info.dtype.is_float() && info.shape.len() >= 2;
        let cal = self.calibration.as_ref().filter(|_| is_weight).and_then(|c| c.for_weight(&info.name));
        LayerContext {
            cal: cal.map(|(layer, stats)| LayerCalibration { layer, stats }),
            modality: self.modality.modality,
            planned_bits: self.plan.as_ref().and_then(|p| p.layer_bits.get(&info.name).copied()),
        }
    }

    /// Per-layer widths from a [`SizePlanner`] run over this model (before `begin`).
    pub fn set_plan(&mut self, plan: SizePlan) -> Result<()> {
        if self.header.is_some() {
            return Err(AqError::State("setPlan() must come before begin()".to_string()));
        }
        self.plan = Some(plan);
        Ok(())
    }

    fn modality_name(&self) -> &'static str {
        self.modality.modality.map_or("unknown", |m| m.as_str())
    }

    /// Calibration statistics for time-aware and spatial quantization. Call before `begin`.
    pub fn set_calibration(&mut self, cal: Calibration) -> Result<()> {
        if self.header.is_some() {
            return Err(AqError::State("setCalibration() must come before begin()".to_string()));
        }
        self.calibration = Some(cal);
        Ok(())
    }

    pub fn config(&self) -> &QuantConfig {
        &self.cfg
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Whether this run still needs a plan: `targetSizeMb` is set and `set_plan` was not called.
    pub fn needs_plan(&self) -> bool {
        self.cfg.target_size_mb.is_some() && self.plan.is_none()
    }

    fn check_alive(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(AqError::State(format!("this run already failed ({why}); start a new one"))),
            None => Ok(()),
        }
    }

    fn fail<T>(&mut self, e: AqError) -> Result<T> {
        self.failed = Some(e.to_string());
        self.writer = None;
        self.pending.clear();
        Err(e)
    }

    /// Parse the header (at least its first `header_size` bytes). `file_len`, when known, checks
    /// every tensor's offsets against the real file size.
    pub fn begin(&mut self, header_bytes: &[u8], file_len: Option<u64>) -> Result<&Header> {
        self.check_alive()?;
        if self.header.is_some() {
            return Err(AqError::State("begin() was already called for this run".to_string()));
        }
        if self.needs_plan() {
            return Err(AqError::State(
                "targetSizeMb needs a planning pass first: run SizePlanner over the model and pass its plan to setPlan()"
                    .to_string(),
            ));
        }
        let header = parse_header(header_bytes, file_len)?;
        self.modality = detect(
            self.cfg.modality,
            header.metadata.get("modality").map(String::as_str),
            header.tensors.iter().map(|t| t.name.as_str()),
        );
        let metadata = vec![
            (KEY_FORMAT.to_string(), FORMAT_NAME.to_string()),
            (KEY_FORMAT_VERSION.to_string(), FORMAT_VERSION.to_string()),
            (KEY_LIBRARY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (KEY_CONFIG.to_string(), self.cfg.to_json()),
            (KEY_MODALITY.to_string(), self.modality_name().to_string()),
            (KEY_SOURCE_METADATA.to_string(), serde_json::to_string(&header.metadata).expect("string map")),
        ];
        let mut metadata = metadata;
        if let Some(cal) = &self.calibration {
            let info = serde_json::json!({
                "timesteps": cal.timesteps,
                "layers": cal.layers.len(),
                "activationBits": self.cfg.activation_bits,
                "timeGrouping": self.cfg.time_grouping.as_str(),
                "timeSmoothing": self.cfg.time_smoothing,
            });
            metadata.push((KEY_CALIBRATION.to_string(), info.to_string()));
        }
        let mut writer = TensorWriter::new(metadata, self.modality_name())?;
        writer.set_row_group_bytes(self.row_group_bytes);
        self.writer = Some(writer);
        self.index = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        self.done = vec![false; header.tensors.len()];
        self.header = Some(header);
        Ok(self.header.as_ref().expect("just set"))
    }

    /// Quantize one tensor from its bytes and append it to the output.
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<LayerReport> {
        Ok(self.add_tensors(&[(name, bytes)])?.pop().expect("one report per tensor"))
    }

    /// Quantize several tensors at once — in parallel on the thread pool when this build has one
    /// (each tensor also splits into blocks) — and append them to the output in the order given.
    /// The file is byte-identical to adding them one at a time; this is how many small tensors
    /// keep every thread busy. A failure stops the run at that tensor: the ones before it are in
    /// the output, as with `add_tensor`.
    pub fn add_tensors(&mut self, items: &[(&str, &[u8])]) -> Result<Vec<LayerReport>> {
        self.check_alive()?;
        let Some(header) = &self.header else {
            return Err(AqError::State("addTensor() before begin(): pass the safetensors header first".to_string()));
        };
        let mut indices = Vec::with_capacity(items.len());
        for (k, &(name, _)) in items.iter().enumerate() {
            let Some(&i) = self.index.get(name) else {
                return Err(AqError::State(format!("tensor '{name}' is not in this file's header")));
            };
            if self.done[i] || items[..k].iter().any(|&(n, _)| n == name) {
                return Err(AqError::State(format!("tensor '{name}' was already added")));
            }
            indices.push(i);
        }
        // Taken out for the join below (given back before anything can return).
        let mut writer = self.writer.take().expect("alive run has a writer");
        let pending = std::mem::take(&mut self.pending);
        let jobs: Vec<_> = indices
            .iter()
            .zip(items)
            .map(|(&i, &(_, bytes))| {
                let info = &header.tensors[i];
                let ctx = self.context_for(info);
                let cal_layer = ctx.cal.map(|c| c.layer.to_string());
                (info, bytes, ctx, cal_layer)
            })
            .collect();
        let cfg = &self.cfg;
        // The previous call's rows are written on one pool thread while the others quantize
        // these tensors (without a pool: first written, then quantized). Rows reach the writer
        // in the order they were added either way, so the file does not change.
        let (written, outcomes) = crate::parallel::join(
            || pending.into_iter().try_for_each(|row| writer.write(row)),
            || {
                crate::parallel::map(jobs, |(info, bytes, ctx, cal_layer)| {
                    (quantize_layer(cfg, info, bytes, ctx), cal_layer)
                })
            },
        );
        self.writer = Some(writer);
        if let Err(e) = written {
            return self.fail(e);
        }
        let mut reports = Vec::with_capacity(items.len());
        for ((i, &(name, _)), (outcome, cal_layer)) in indices.into_iter().zip(items).zip(outcomes) {
            reports.push(self.commit(i, name, outcome, cal_layer)?);
        }
        Ok(reports)
    }

    /// Append one quantized tensor (header entry `i`) to the output and to the report.
    fn commit(
        &mut self,
        i: usize,
        name: &str,
        outcome: Result<LayerOutcome>,
        cal_layer: Option<String>,
    ) -> Result<LayerReport> {
        let outcome = match outcome {
            Ok(o) if o.row.data.len() > MAX_VALUE_BYTES => {
                let e = AqError::TooLarge(format!(
                    "tensor '{name}': {} stored bytes exceed the {MAX_VALUE_BYTES}-byte limit of one Parquet value",
                    o.row.data.len()
                ));
                return self.fail(e);
            }
            Ok(o) => o,
            Err(e) => return self.fail(e),
        };
        let info = &self.header.as_ref().expect("begun").tensors[i];
        let is_weight = info.dtype.is_float() && info.shape.len() >= 2;
        let byte_len = info.byte_len();
        // The report is taken first: the writer consumes the row (its codes move into Arrow
        // without a copy).
        let report = layer_report(&outcome.row, info);
        let (time_grouped, equalized) = (outcome.row.time_groups.is_some(), outcome.row.spatial.is_some());
        if crate::parallel::enabled() {
            self.pending.push(outcome.row);
        } else if let Err(e) = self.writer.as_mut().expect("alive run has a writer").write(outcome.row) {
            return self.fail(e);
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
        self.time_grouped += time_grouped as u32;
        self.equalized += equalized as u32;
        self.done[i] = true;
        self.bytes_done += byte_len;
        self.layers.push(report.clone());
        Ok(report)
    }

    /// Progress after the last tensor added.
    pub fn progress(&self, last: &str) -> Progress {
        Progress {
            done: self.done.iter().filter(|d| **d).count() as u32,
            total: self.done.len() as u32,
            name: last.to_string(),
            bytes_done: self.bytes_done,
            bytes_total: self.header.as_ref().map_or(0, |h| h.tensor_bytes()),
        }
    }

    /// Output bytes produced so far (a prefix of the file). Empty until a row group closes.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.take_output_chunks().concat()
    }

    /// [`take_output`](Self::take_output) in the pieces the writer produced (no concatenation).
    pub fn take_output_chunks(&mut self) -> Vec<Vec<u8>> {
        self.writer.as_mut().map(|w| w.take_output()).unwrap_or_default()
    }

    /// Close the file. Returns the last output bytes and the model report. Every tensor of the
    /// header must have been added.
    pub fn finish(&mut self) -> Result<(Vec<u8>, ModelReport)> {
        let (rest, report) = self.finish_chunks()?;
        Ok((rest.concat(), report))
    }

    /// [`finish`](Self::finish) with the last bytes in the pieces the writer produced.
    pub fn finish_chunks(&mut self) -> Result<(Vec<Vec<u8>>, ModelReport)> {
        self.check_alive()?;
        let Some(header) = &self.header else {
            return Err(AqError::State("finish() before begin()".to_string()));
        };
        let missing: Vec<&str> =
            header.tensors.iter().zip(&self.done).filter(|(_, d)| !**d).map(|(t, _)| t.name.as_str()).collect();
        if !missing.is_empty() {
            let quoted: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
            let e = AqError::State(format!(
                "finish(): {} tensor(s) never added: {}",
                missing.len(),
                short_list(&quoted, 5, ", ")
            ));
            return self.fail(e);
        }
        let source_bytes = header.tensor_bytes();
        let mut writer = self.writer.take().expect("alive run has a writer");
        if let Err(e) = std::mem::take(&mut self.pending).into_iter().try_for_each(|row| writer.write(row)) {
            return self.fail(e);
        }
        let (rest, output_bytes) = match writer.finish(Vec::new()) {
            Ok(r) => r,
            Err(e) => return self.fail(e),
        };
        self.failed = Some("finish() already returned the file".to_string());
        let report = self.model_report(source_bytes, output_bytes);
        Ok((rest, report))
    }

    fn model_report(&self, source_bytes: u64, output_bytes: u64) -> ModelReport {
        let mut counts = LayerCounts::default();
        let (mut wsum, mut wcount) = (0.0f64, 0u64);
        let mut min_cos: Option<(f64, &str)> = None;
        let mut params_total = 0;
        let mut params_quantized = 0;
        for l in &self.layers {
            params_total += l.params;
            match (l.storage, l.bits) {
                (Storage::Quantized, Some(2)) => counts.bits2 += 1,
                (Storage::Quantized, Some(4)) => counts.bits4 += 1,
                (Storage::Quantized, _) => counts.bits8 += 1,
                (Storage::F16, _) => counts.f16 += 1,
                (Storage::Raw, _) => counts.raw += 1,
            }
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
        let (time_aware, spatial) = self.feature_status();
        ModelReport {
            format_version: FORMAT_VERSION.to_string(),
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            profile: self.cfg.profile.as_str().to_string(),
            bit_width: self.cfg.bit_width,
            group_size: self.cfg.group_size,
            modality: self.modality_name().to_string(),
            modality_source: self.modality.source.to_string(),
            modality_rule: self.modality.rule.clone(),
            layers: self.layers.clone(),
            layer_counts: counts,
            params_total,
            params_quantized,
            source_bytes,
            output_bytes,
            compression_ratio: source_bytes as f64 / output_bytes as f64,
            model_size_mb: output_bytes as f64 / (1024.0 * 1024.0),
            cosine_similarity: if wcount > 0 { wsum / wcount as f64 } else { 1.0 },
            min_cosine: min_cos.map_or(1.0, |(c, _)| c),
            min_cosine_layer: min_cos.map(|(_, n)| n.to_string()),
            snr_db: if self.lossy.sum_e2 > 0.0 {
                10.0 * (self.lossy.sum_w2 / self.lossy.sum_e2).log10()
            } else {
                f64::INFINITY
            },
            time_aware,
            spatial,
            size_plan: self.plan.clone(),
            quantization_time_s: (self.clock)() - self.started_at,
        }
    }
}

impl ModelQuantizer {
    /// What the diffusion features did, in words a person can check against the layer table.
    fn feature_status(&self) -> (FeatureStatus, FeatureStatus) {
        let Some(cal) = &self.calibration else {
            let none = |requested: bool| FeatureStatus {
                requested,
                applied: false,
                note: "not applied: no calibration statistics given (docs/CALIBRATION.md)".to_string(),
            };
            return (none(self.cfg.enable_time_aware), none(self.cfg.enable_spatial));
        };
        let matched: std::collections::HashSet<&str> = self.calibrated.iter().map(String::as_str).collect();
        let unused: Vec<&str> = cal.layers.keys().map(String::as_str).filter(|l| !matched.contains(l)).collect();
        let mut coverage =
            format!("{} weight(s) matched a calibration layer, {} had none", self.calibrated.len(), self.uncalibrated);
        if !unused.is_empty() {
            let quoted: Vec<String> = unused.iter().map(|n| format!("'{n}'")).collect();
            coverage.push_str(&format!("; calibration layers not in the model: {}", short_list(&quoted, 5, ", ")));
        }
        let time = FeatureStatus {
            requested: self.cfg.enable_time_aware,
            applied: self.time_grouped > 0,
            note: if self.cfg.enable_time_aware {
                format!(
                    "{} layer(s) got up to {} {} time group(s) over {} calibrated timesteps; {coverage}",
                    self.time_grouped,
                    self.cfg.num_time_groups,
                    self.cfg.time_grouping.as_str(),
                    cal.num_timesteps()
                )
            } else {
                "not requested (enableTimeAware is false)".to_string()
            },
        };
        let spatial = FeatureStatus {
            requested: self.cfg.enable_spatial,
            applied: self.equalized > 0,
            note: if self.cfg.enable_spatial {
                format!(
                    "{} quantized layer(s) channel-equalized with alpha {}; {coverage}",
                    self.equalized, self.cfg.spatial_alpha
                )
            } else {
                "not requested (enableSpatial is false)".to_string()
            },
        };
        (time, spatial)
    }
}

/// The report row of one stored tensor.
pub fn layer_report(row: &TensorRow, info: &TensorInfo) -> LayerReport {
    LayerReport {
        name: row.name.clone(),
        shape: row.shape.clone(),
        dtype: row.dtype.name().to_string(),
        params: info.numel(),
        storage: row.storage,
        requested_bits: row.requested_bits,
        bits: row.bits,
        group_size: row.group_size,
        reason: row.reason.clone(),
        cosine: row.cosine,
        snr_db: row.snr_db,
        rel_rmse: row.rel_rmse,
        max_abs_error: row.max_abs_error,
        source_bytes: info.byte_len(),
        stored_bytes: row.stored_bytes(),
        weighted_snr_db: row.weighted_snr_db,
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

/// Source bytes quantized together by [`quantize_model`] (and by the JS stream with threads): big
/// enough to give every thread a tensor, small enough that the batch's outputs stay a fraction of
/// the model.
pub const BATCH_BYTES: u64 = 16 << 20;

/// Quantize a whole safetensors file held in memory. `on_progress` is called after each tensor;
/// returning `false` cancels the run (error `E_CANCELLED`).
pub fn quantize_model(
    bytes: &[u8],
    cfg: QuantConfig,
    calibration: Option<Calibration>,
    clock: Clock,
    on_progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(Vec<u8>, ModelReport)> {
    let (chunks, report) = quantize_model_chunks(bytes, cfg, calibration, clock, on_progress)?;
    Ok((chunks.concat(), report))
}

/// [`quantize_model`] returning the file in the pieces the writer produced, so a caller that
/// copies them elsewhere (the wasm binding, into one JS array) never holds the file twice.
pub fn quantize_model_chunks(
    bytes: &[u8],
    cfg: QuantConfig,
    calibration: Option<Calibration>,
    clock: Clock,
    on_progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(Vec<Vec<u8>>, ModelReport)> {
    let started = clock();
    let plan = match cfg.target_size_mb {
        None => None,
        Some(_) => {
            // Planning pass: measure every layer with the context the quantizer will use.
            let mut run = PlanRun::new(cfg.clone())?;
            if let Some(c) = &calibration {
                run.set_calibration(c.clone())?;
            }
            let header = run.begin(bytes, Some(bytes.len() as u64))?.clone();
            for t in &header.tensors {
                let (a, b) = header.file_range(t);
                run.add_tensor(&t.name, &bytes[a as usize..b as usize])?;
            }
            Some(run.finish()?)
        }
    };
    let mut q = ModelQuantizer::with_clock(cfg, clock)?;
    q.started_at = started;
    if let Some(c) = calibration {
        q.set_calibration(c)?;
    }
    if let Some(p) = plan {
        q.set_plan(p)?;
    }
    let tensors = q.begin(bytes, Some(bytes.len() as u64))?.tensors.clone();
    let data_offset = q.header().expect("begun").data_offset;
    let mut out = Vec::new();
    // Consecutive tensors are quantized together (in parallel with threads) up to a batch of
    // about BATCH_BYTES of source; a larger tensor is a batch of its own.
    let mut start = 0;
    while start < tensors.len() {
        let mut end = start + 1;
        let mut batch_bytes = tensors[start].byte_len();
        while end < tensors.len() && batch_bytes + tensors[end].byte_len() <= BATCH_BYTES {
            batch_bytes += tensors[end].byte_len();
            end += 1;
        }
        let items: Vec<(&str, &[u8])> = tensors[start..end]
            .iter()
            .map(|t| (t.name.as_str(), &bytes[(data_offset + t.begin) as usize..(data_offset + t.end) as usize]))
            .collect();
        q.add_tensors(&items)?;
        out.extend(q.take_output_chunks());
        for t in &tensors[start..end] {
            if !on_progress(&q.progress(&t.name)) {
                return Err(AqError::Cancelled(format!("cancelled after tensor '{}'", t.name)));
            }
        }
        start = end;
    }
    let (rest, report) = q.finish_chunks()?;
    out.extend(rest);
    Ok((out, report))
}

/// The dtype a float tensor is exported as, from a user string.
pub fn parse_export_dtype(s: &str) -> Result<Dtype> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(Dtype::F32),
        "f16" | "float16" => Ok(Dtype::F16),
        _ => Err(AqError::config("dtype", format!("'{s}'"), "'f32' or 'f16'")),
    }
}
