//! The streaming quantizer: `begin` with the header, then the tensors (by name, or as the byte
//! ranges of the read plan), output taken whenever convenient, then `finish`. Memory holds the
//! tensors being quantized and at most one open row group, never the model or the whole output.

use std::collections::{HashMap, HashSet};

use crate::diffusion::calibration::Calibration;
use crate::error::{AqError, Result};
use crate::format::parquet::schema::*;
use crate::format::parquet::writer::TensorWriter;
use crate::format::parquet::TensorRow;
use crate::format::safetensors::{parse_header, Header, TensorInfo};
use crate::pipeline::batches::{read_groups, ReadGroup, BATCH_BYTES};
use crate::pipeline::decision::short_list;
use crate::pipeline::layer::{quantize_layer, LayerCalibration, LayerContext, LayerOutcome};
use crate::pipeline::report::{LayerReport, ModelReport, Progress, TensorDone};
use crate::pipeline::summary::{layer_report, model_report, RunFacts, Tally};
use crate::pipeline::{default_clock, Clock};
use crate::policy::config::QuantConfig;
use crate::policy::modality::{detect, Detection};
use crate::policy::sizeplan::SizePlan;

/// A Parquet BYTE_ARRAY value holds at most i32::MAX bytes.
pub const MAX_VALUE_BYTES: usize = i32::MAX as usize;

pub struct ModelQuantizer {
    cfg: QuantConfig,
    clock: Clock,
    pub(crate) started_at: f64,
    header: Option<Header>,
    /// name → index in header.tensors; `done[i]` once written.
    index: HashMap<String, usize>,
    done: Vec<bool>,
    done_count: u32,
    writer: Option<TensorWriter>,
    /// Rows quantized by the last `add_tensors` and not yet written. With a thread pool they are
    /// written while the next call's tensors are quantized (the writer is serial: zstd, page
    /// encoding and CRC on one thread), so output lags one call behind; `finish` writes the rest.
    pending: Vec<TensorRow>,
    tally: Tally,
    modality: Detection,
    bytes_done: u64,
    /// The header's tensor bytes, summed once (progress reports it after every tensor).
    bytes_total: u64,
    row_group_bytes: usize,
    calibration: Option<Calibration>,
    /// Per-tensor widths from a size plan (`targetSizeMb`).
    plan: Option<SizePlan>,
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
            done_count: 0,
            writer: None,
            pending: Vec::new(),
            tally: Tally::default(),
            modality: detect(None, None, std::iter::empty()),
            bytes_done: 0,
            bytes_total: 0,
            row_group_bytes: ROW_GROUP_TARGET_BYTES,
            calibration: None,
            plan: None,
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
        let cal = self.calibration.as_ref().filter(|_| info.is_weight()).and_then(|c| c.for_weight(&info.name));
        LayerContext {
            cal: cal.map(|(layer, stats)| LayerCalibration { layer, stats }),
            modality: self.modality.modality,
            planned_bits: self.plan.as_ref().and_then(|p| p.layer_bits.get(&info.name).copied()),
        }
    }

    /// Per-layer widths from a planning run over this model (before `begin`).
    pub fn set_plan(&mut self, plan: SizePlan) -> Result<()> {
        if self.header.is_some() {
            return Err(AqError::State("setPlan() must come before begin()".to_string()));
        }
        self.plan = Some(plan);
        Ok(())
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

    /// The header index of the tensor called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
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
        let mut metadata = vec![
            (KEY_FORMAT.to_string(), FORMAT_NAME.to_string()),
            (KEY_FORMAT_VERSION.to_string(), FORMAT_VERSION.to_string()),
            (KEY_LIBRARY_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (KEY_CONFIG.to_string(), self.cfg.to_json()),
            (KEY_MODALITY.to_string(), self.modality.name().to_string()),
            (KEY_SOURCE_METADATA.to_string(), serde_json::to_string(&header.metadata).expect("string map")),
        ];
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
        let mut writer = TensorWriter::new(metadata, self.modality.name())?;
        writer.set_row_group_bytes(self.row_group_bytes);
        self.writer = Some(writer);
        self.index = header.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        self.done = vec![false; header.tensors.len()];
        self.bytes_total = header.tensor_bytes();
        self.header = Some(header);
        Ok(self.header.as_ref().expect("just set"))
    }

    /// The reads that cover every tensor, in file order, and the units to quantize them in
    /// (see `batches`).
    pub fn read_plan(&self) -> Result<Vec<ReadGroup>> {
        let header = self.header.as_ref().ok_or_else(|| AqError::State("readPlan() before begin()".to_string()))?;
        Ok(read_groups(header, BATCH_BYTES, crate::parallel::enabled()))
    }

    /// Quantize one tensor from its bytes and append it to the output.
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<LayerReport> {
        Ok(self.add_tensors(&[(name, bytes)])?.pop().expect("one report per tensor"))
    }

    /// [`add_tensor`](Self::add_tensor) on bytes the run may drop: they are freed before the row
    /// is encoded, so a large tensor's source and its Parquet pages are never held together.
    pub fn add_tensor_owned(&mut self, name: &str, bytes: Vec<u8>) -> Result<LayerReport> {
        let report = self.quantize_tensors(&[(name, &bytes)]);
        drop(bytes);
        self.write_unless_pooled()?;
        Ok(report?.pop().expect("one report per tensor"))
    }

    /// [`add_range`](Self::add_range) on bytes the run may drop before the rows are encoded.
    pub fn add_range_owned(&mut self, start: u64, bytes: Vec<u8>) -> Result<Vec<TensorDone>> {
        let events = self.quantize_range(start, &bytes);
        drop(bytes);
        self.write_unless_pooled()?;
        events
    }

    /// [`add_tensors`](Self::add_tensors) on byte arrays the run may drop before encoding.
    pub fn add_tensors_owned(&mut self, names: &[String], tensors: Vec<Vec<u8>>) -> Result<Vec<LayerReport>> {
        let items: Vec<(&str, &[u8])> =
            names.iter().map(String::as_str).zip(tensors.iter().map(Vec::as_slice)).collect();
        let reports = self.quantize_tensors(&items);
        drop(items);
        drop(tensors);
        self.write_unless_pooled()?;
        reports
    }

    /// Without a pool the rows of a call are written at its end (after its input is dropped,
    /// on the owned paths); with one, during the next call, while it quantizes.
    fn write_unless_pooled(&mut self) -> Result<()> {
        if crate::parallel::enabled() || self.failed.is_some() {
            return Ok(());
        }
        let Some(writer) = self.writer.as_mut() else { return Ok(()) };
        if let Err(e) = std::mem::take(&mut self.pending).into_iter().try_for_each(|row| writer.write(row)) {
            return self.fail(e);
        }
        Ok(())
    }

    /// Quantize every tensor that lies wholly inside the file bytes `[start, start + bytes.len())`
    /// and was not added yet — a group of the read plan, read in one piece — in file order.
    /// Returns one progress event per tensor, as if they had been added one at a time.
    pub fn add_range(&mut self, start: u64, bytes: &[u8]) -> Result<Vec<TensorDone>> {
        let events = self.quantize_range(start, bytes);
        self.write_unless_pooled()?;
        events
    }

    fn quantize_range(&mut self, start: u64, bytes: &[u8]) -> Result<Vec<TensorDone>> {
        self.check_alive()?;
        let header = self.header.as_ref().ok_or_else(|| AqError::State("addRange() before begin()".to_string()))?;
        let end = start.checked_add(bytes.len() as u64).ok_or_else(|| AqError::State("range overflows".into()))?;
        let mut names = Vec::new();
        let mut items = Vec::new();
        for i in header.tensors_within(start, end) {
            let t = &header.tensors[i];
            if !self.done[i] {
                let (a, b) = header.file_range(t);
                names.push((t.name.clone(), t.byte_len()));
                items.push(((a - start) as usize, (b - start) as usize));
            }
        }
        let pieces: Vec<(&str, &[u8])> =
            names.iter().zip(&items).map(|((n, _), &(a, b))| (n.as_str(), &bytes[a..b])).collect();
        let (done_before, bytes_before) = (self.done_count, self.bytes_done);
        let layers = self.quantize_tensors(&pieces)?;
        let total = self.done.len() as u32;
        let bytes_total = self.bytes_total;
        let mut bytes_done = bytes_before;
        Ok(layers
            .into_iter()
            .zip(names)
            .enumerate()
            .map(|(k, (layer, (name, len)))| {
                bytes_done += len;
                let progress = Progress { done: done_before + k as u32 + 1, total, name, bytes_done, bytes_total };
                TensorDone { progress, layer }
            })
            .collect())
    }

    /// Quantize several tensors at once — in parallel on the thread pool when this build has one
    /// (each tensor also splits into blocks) — and append them to the output in the order given.
    /// The file is byte-identical to adding them one at a time; this is how many small tensors
    /// keep every thread busy. A failure stops the run at that tensor: the ones before it are in
    /// the output, as with `add_tensor`.
    pub fn add_tensors(&mut self, items: &[(&str, &[u8])]) -> Result<Vec<LayerReport>> {
        let reports = self.quantize_tensors(items);
        self.write_unless_pooled()?;
        reports
    }

    /// Quantize `items` and queue their rows (`pending`), writing the previous call's rows.
    fn quantize_tensors(&mut self, items: &[(&str, &[u8])]) -> Result<Vec<LayerReport>> {
        self.check_alive()?;
        let Some(header) = &self.header else {
            return Err(AqError::State("addTensor() before begin(): pass the safetensors header first".to_string()));
        };
        let mut indices = Vec::with_capacity(items.len());
        let mut in_call = HashSet::with_capacity(items.len());
        for &(name, _) in items {
            let Some(&i) = self.index.get(name) else {
                return Err(AqError::State(format!("tensor '{name}' is not in this file's header")));
            };
            if self.done[i] || !in_call.insert(i) {
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
        let (cfg, clock) = (&self.cfg, self.clock);
        // The previous call's rows are written on one pool thread while the others quantize
        // these tensors (without a pool: first written, then quantized). Rows reach the writer
        // in the order they were added either way, so the file does not change.
        let (written, outcomes) = crate::parallel::join(
            || pending.into_iter().try_for_each(|row| writer.write(row)),
            || {
                crate::parallel::map(jobs, |(info, bytes, ctx, cal_layer)| {
                    let started = clock();
                    let outcome = quantize_layer(cfg, info, bytes, ctx);
                    (outcome, cal_layer, (clock() - started) * 1000.0)
                })
            },
        );
        self.writer = Some(writer);
        if let Err(e) = written {
            return self.fail(e);
        }
        let mut reports = Vec::with_capacity(items.len());
        for ((i, &(name, _)), (outcome, cal_layer, ms)) in indices.into_iter().zip(items).zip(outcomes) {
            reports.push(self.commit(i, name, outcome, cal_layer, ms)?);
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
        quantize_ms: f64,
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
        let (is_weight, byte_len) = (info.is_weight(), info.byte_len());
        let report = LayerReport { quantize_ms: Some(quantize_ms), ..layer_report(&outcome.row, info) };
        self.tally.record(&outcome, report.clone(), is_weight, cal_layer);
        // Queued for the writer, which consumes the row (its codes move into the page writer
        // without a copy): at the end of the call, or during the next one with a pool.
        self.pending.push(outcome.row);
        self.done[i] = true;
        self.done_count += 1;
        self.bytes_done += byte_len;
        Ok(report)
    }

    /// Progress after the last tensor added.
    pub fn progress(&self, last: &str) -> Progress {
        Progress {
            done: self.done_count,
            total: self.done.len() as u32,
            name: last.to_string(),
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
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
        if self.done_count as usize != self.done.len() {
            let missing: Vec<String> = header
                .tensors
                .iter()
                .zip(&self.done)
                .filter(|(_, d)| !**d)
                .map(|(t, _)| format!("'{}'", t.name))
                .collect();
            let e = AqError::State(format!(
                "finish(): {} tensor(s) never added: {}",
                missing.len(),
                short_list(&missing, 5, ", ")
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
        let facts = RunFacts {
            cfg: &self.cfg,
            modality: &self.modality,
            calibration: self.calibration.as_ref(),
            plan: self.plan.as_ref(),
            source_bytes,
            output_bytes,
            seconds: (self.clock)() - self.started_at,
        };
        Ok((rest, model_report(&self.tally, facts)))
    }
}
