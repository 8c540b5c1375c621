//! The orchestrator: plan → quantize → validate → fall back → record, one tensor at a time.
//! [`ModelQuantizer`] is the streaming form (header first, then tensors in any order, output
//! taken in chunks); [`quantize_model`] drives it over a whole in-memory file.

use std::collections::HashMap;

use crate::config::{Modality, QuantConfig};
use crate::dtype::Dtype;
use crate::error::{AqError, Result};
use crate::parquet::schema::*;
use crate::parquet::writer::TensorWriter;
use crate::parquet::TensorRow;
use crate::quant::tensor::{quantize_source, store_f16, Layout, Source};
use crate::quant::ErrorSums;
use crate::report::{FeatureStatus, LayerCounts, LayerReport, ModelReport, Progress, Storage};
use crate::safetensors::{parse_header, Header, TensorInfo};

/// Rows shorter than this are not group-quantized: a group of a few values costs 4 bytes of
/// params, more than the values themselves.
pub const MIN_ROW_LEN: usize = 8;

/// A Parquet BYTE_ARRAY value (and an Arrow binary array) holds at most i32::MAX bytes.
pub const MAX_VALUE_BYTES: usize = i32::MAX as usize;

/// The widths the fallback climbs through.
const FALLBACK_WIDTHS: &[u8] = &[2, 4, 8];

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
pub struct LayerOutcome {
    pub row: TensorRow,
    pub sums: Option<ErrorSums>,
}

fn raw_row(info: &TensorInfo, bytes: &[u8], requested_bits: Option<u8>, reason: String) -> LayerOutcome {
    LayerOutcome {
        row: TensorRow {
            name: info.name.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype,
            storage: Storage::Raw,
            requested_bits,
            bits: None,
            group_size: None,
            data: bytes.to_vec(),
            data_crc32: crc32fast::hash(bytes),
            scales: None,
            mins: None,
            cosine: None,
            snr_db: None,
            rel_rmse: None,
            max_abs_error: None,
            reason,
        },
        sums: None,
    }
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
    let row = TensorRow {
        name: info.name.clone(),
        shape: info.shape.clone(),
        dtype: info.dtype,
        storage: Storage::F16,
        requested_bits,
        bits: Some(16),
        group_size: None,
        data_crc32: crc32fast::hash(&data),
        data,
        scales: None,
        mins: None,
        cosine: None,
        snr_db: None,
        rel_rmse: None,
        max_abs_error: None,
        reason,
    };
    Ok(LayerOutcome { row: with_metrics(row, &sums), sums: Some(sums) })
}

/// Decide how one tensor is stored and do it. `bytes` are the tensor's bytes as in the file.
pub fn quantize_layer(cfg: &QuantConfig, info: &TensorInfo, bytes: &[u8]) -> Result<LayerOutcome> {
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
    let (requested, decided_by) = cfg.bits_for(&info.name);
    let src = Source { name: &info.name, dtype: info.dtype, bytes };
    if decided_by.is_none() {
        if let Some(pattern) = cfg.sensitive_match(&info.name) {
            return f16_row(info, src, Some(requested), format!("sensitive layer (matched '{pattern}'): kept as f16"));
        }
    }
    let base_reason = match decided_by {
        Some(p) => format!("layerBitWidths['{p}'] = {requested}"),
        None => format!("bitWidth {requested}"),
    };
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
    let mut misses: Vec<String> = Vec::new();
    for &bits in FALLBACK_WIDTHS.iter().filter(|&&b| b >= requested) {
        let search = cfg.scale_search.enabled_for(bits);
        let Some((t, sums)) = quantize_source(src, layout, bits, search)? else {
            return Ok(raw_row(
                info,
                bytes,
                Some(requested),
                "values beyond ±65504 cannot have f16 scales: stored as source bytes".to_string(),
            ));
        };
        let cosine = sums.cosine();
        if cfg.min_accuracy > 0.0 && cosine < cfg.min_accuracy {
            misses.push(format!("{bits}-bit cosine {cosine:.5}"));
            continue;
        }
        let reason = if misses.is_empty() {
            base_reason
        } else {
            format!("{base_reason}; fallback: {} < minAccuracy {}", misses.join(", "), cfg.min_accuracy)
        };
        let row = TensorRow {
            name: info.name.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype,
            storage: Storage::Quantized,
            requested_bits: Some(requested),
            bits: Some(bits),
            group_size: Some(cfg.group_size),
            data_crc32: crc32fast::hash(&t.codes),
            data: t.codes,
            scales: Some(t.scales),
            mins: Some(t.mins),
            cosine: None,
            snr_db: None,
            rel_rmse: None,
            max_abs_error: None,
            reason,
        };
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
    layers: Vec<LayerReport>,
    lossy: ErrorSums,
    modality: (String, String),
    bytes_done: u64,
    row_group_bytes: usize,
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
            layers: Vec::new(),
            lossy: ErrorSums::default(),
            modality: ("unknown".to_string(), "none".to_string()),
            bytes_done: 0,
            row_group_bytes: ROW_GROUP_TARGET_BYTES,
            failed: None,
        })
    }

    /// Row-group size target: output becomes available in chunks of about this size.
    /// Call before `begin`. Default 8 MiB.
    pub fn set_row_group_bytes(&mut self, bytes: usize) {
        self.row_group_bytes = bytes;
    }

    pub fn config(&self) -> &QuantConfig {
        &self.cfg
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
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
        Err(e)
    }

    /// Parse the header (at least its first `header_size` bytes). `file_len`, when known, checks
    /// every tensor's offsets against the real file size.
    pub fn begin(&mut self, header_bytes: &[u8], file_len: Option<u64>) -> Result<&Header> {
        self.check_alive()?;
        if self.header.is_some() {
            return Err(AqError::State("begin() was already called for this run".to_string()));
        }
        let header = parse_header(header_bytes, file_len)?;
        self.modality = match (self.cfg.modality, header.metadata.get("modality").and_then(|m| Modality::parse(m))) {
            (Some(m), _) => (m.as_str().to_string(), "config".to_string()),
            (None, Some(m)) => (m.as_str().to_string(), "metadata".to_string()),
            (None, None) => ("unknown".to_string(), "none".to_string()),
        };
        let metadata = vec![
            (KEY_FORMAT.to_string(), FORMAT_NAME.to_string()),
            (KEY_FORMAT_VERSION.to_string(), FORMAT_VERSION.to_string()),
            (KEY_LIBRARY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (KEY_CONFIG.to_string(), self.cfg.to_json()),
            (KEY_MODALITY.to_string(), self.modality.0.clone()),
            (KEY_SOURCE_METADATA.to_string(), serde_json::to_string(&header.metadata).expect("string map")),
        ];
        let mut writer = TensorWriter::new(metadata, &self.modality.0)?;
        writer.set_row_group_bytes(self.row_group_bytes);
        self.writer = Some(writer);
        self.index = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        self.done = vec![false; header.tensors.len()];
        self.header = Some(header);
        Ok(self.header.as_ref().expect("just set"))
    }

    /// Quantize one tensor from its bytes and append it to the output.
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<LayerReport> {
        self.check_alive()?;
        let Some(header) = &self.header else {
            return Err(AqError::State("addTensor() before begin(): pass the safetensors header first".to_string()));
        };
        let Some(&i) = self.index.get(name) else {
            return Err(AqError::State(format!("tensor '{name}' is not in this file's header")));
        };
        if self.done[i] {
            return Err(AqError::State(format!("tensor '{name}' was already added")));
        }
        let info = &header.tensors[i];
        let outcome = match quantize_layer(&self.cfg, info, bytes) {
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
        if let Err(e) = self.writer.as_mut().expect("alive run has a writer").write(&outcome.row) {
            return self.fail(e);
        }
        if let Some(s) = &outcome.sums {
            self.lossy.count += s.count;
            self.lossy.sum_w2 += s.sum_w2;
            self.lossy.sum_e2 += s.sum_e2;
        }
        self.done[i] = true;
        self.bytes_done += info.byte_len();
        let report = layer_report(&outcome.row, info);
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
        self.writer.as_mut().map(|w| w.take_output()).unwrap_or_default()
    }

    /// Close the file. Returns the last output bytes and the model report. Every tensor of the
    /// header must have been added.
    pub fn finish(&mut self) -> Result<(Vec<u8>, ModelReport)> {
        self.check_alive()?;
        let Some(header) = &self.header else {
            return Err(AqError::State("finish() before begin()".to_string()));
        };
        let missing: Vec<&str> =
            header.tensors.iter().zip(&self.done).filter(|(_, d)| !**d).map(|(t, _)| t.name.as_str()).collect();
        if !missing.is_empty() {
            let shown = missing.iter().take(5).copied().collect::<Vec<_>>().join("', '");
            let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
            let e = AqError::State(format!("finish(): {} tensor(s) never added: '{shown}'{more}", missing.len()));
            return self.fail(e);
        }
        let source_bytes = header.tensor_bytes();
        let writer = self.writer.take().expect("alive run has a writer");
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
        let not_applied = "not applied: no calibration data".to_string();
        ModelReport {
            format_version: FORMAT_VERSION.to_string(),
            library_version: env!("CARGO_PKG_VERSION").to_string(),
            profile: self.cfg.profile.as_str().to_string(),
            bit_width: self.cfg.bit_width,
            group_size: self.cfg.group_size,
            modality: self.modality.0.clone(),
            modality_source: self.modality.1.clone(),
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
            time_aware: FeatureStatus {
                requested: self.cfg.enable_time_aware,
                applied: false,
                note: not_applied.clone(),
            },
            spatial: FeatureStatus { requested: self.cfg.enable_spatial, applied: false, note: not_applied },
            quantization_time_s: (self.clock)() - self.started_at,
        }
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
    }
}

/// Quantize a whole safetensors file held in memory. `on_progress` is called after each tensor;
/// returning `false` cancels the run (error `E_CANCELLED`).
pub fn quantize_model(
    bytes: &[u8],
    cfg: QuantConfig,
    clock: Clock,
    on_progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(Vec<u8>, ModelReport)> {
    let mut q = ModelQuantizer::with_clock(cfg, clock)?;
    let tensors = q.begin(bytes, Some(bytes.len() as u64))?.tensors.clone();
    let data_offset = q.header().expect("begun").data_offset;
    let mut out = Vec::new();
    for t in &tensors {
        let (a, b) = ((data_offset + t.begin) as usize, (data_offset + t.end) as usize);
        q.add_tensor(&t.name, &bytes[a..b])?;
        out.extend_from_slice(&q.take_output());
        if !on_progress(&q.progress(&t.name)) {
            return Err(AqError::Cancelled(format!("cancelled after tensor '{}'", t.name)));
        }
    }
    let (rest, report) = q.finish()?;
    out.extend_from_slice(&rest);
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
