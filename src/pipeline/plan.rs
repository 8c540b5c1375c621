//! The planning pass of `targetSizeMb`: every tensor is quantized through the same code path as
//! the real run (equalization included) at each width a plan may choose, and its stored bytes and
//! error go to the planner (`policy::sizeplan`), which chooses the widths.

use crate::diffusion::calibration::Calibration;
use crate::error::{AqError, Result};
use crate::format::parquet::{codes_codec, CodesCodec, Stored};
use crate::format::safetensors::{Header, TensorInfo};
use crate::pipeline::batches::ReadGroup;
use crate::pipeline::layer::{quantize_layer, LayerContext, LayerOutcome};
use crate::pipeline::run::ModelQuantizer;
use crate::policy::config::{QuantConfig, ScaleSearch, Switch};
use crate::policy::sizeplan::{Measured, Sensitivity, SizePlan, SizePlanner, PLAN_WIDTHS};

/// Bytes a row will add to the file: its data and params as the writer stores them (zstd level 1,
/// or the codes uncompressed where the writer's [`codes_codec`] says zstd barely shrinks them;
/// packed codes of real weights shrink by up to 40 %), plus the equalization scales and time
/// groups.
fn stored_estimate(o: &LayerOutcome) -> u64 {
    let r = &o.row;
    let spatial = r.spatial.as_ref().map_or(0, |s| 4 * s.scales.len() as u64);
    let time = r.time_groups.as_ref().map_or(0, |g| 16 * g.len() as u64);
    let params: Vec<u8> = match &r.stored {
        Stored::Quantized { scales, mins, .. } => scales.iter().chain(mins).flat_map(|x| x.to_le_bytes()).collect(),
        _ => Vec::new(),
    };
    let data = match codes_codec(&r.data) {
        CodesCodec::Zstd => compressed_len(&r.data),
        CodesCodec::Uncompressed => r.data.len() as u64,
    };
    data + compressed_len(&params) + spatial + time
}

fn compressed_len(bytes: &[u8]) -> u64 {
    if bytes.is_empty() {
        return 0;
    }
    // Compression of an in-memory buffer cannot fail short of allocation failure; fall back
    // to the raw length (an over-estimate) rather than abort planning.
    zstd::bulk::compress(bytes, 1).map_or(bytes.len() as u64, |c| c.len().min(bytes.len()) as u64)
}

/// The layer's relative output error where the calibration measures it.
fn output_error(o: &LayerOutcome) -> Option<f64> {
    o.row.output_snr_db.map(|db| if db.is_finite() { 10f64.powf(-db / 10.0) } else { 0.0 })
}

/// The quantization tools/calibrate.py measures a layer's sensitivity with: min/max params in
/// groups of 64, no search, no GPTQ, no equalization, no fallback.
fn sensitivity_reference(cfg: &QuantConfig) -> QuantConfig {
    QuantConfig {
        group_size: 64,
        scale_search: ScaleSearch::Off,
        gptq: Switch::Off,
        importance: Switch::Off,
        match_gain: Switch::Off,
        enable_spatial: false,
        min_accuracy: 0.0,
        ..cfg.clone()
    }
}

/// The layer's sensitivity from its calibration, with its own error under the reference
/// quantization at 2, 4 and 8 bits (output error where known, as the plan's widths use).
fn sensitivity(cfg: &QuantConfig, info: &TensorInfo, bytes: &[u8], ctx: LayerContext) -> Result<Option<Sensitivity>> {
    let Some(growth) = ctx.cal.and_then(|c| c.stats.sensitivity) else { return Ok(None) };
    let reference = sensitivity_reference(cfg);
    let mut reference_error = [0f64; 3];
    for (k, bits) in [2u8, 4, 8].into_iter().enumerate() {
        let o = quantize_layer(&reference, info, bytes, LayerContext { planned_bits: Some(bits), ..ctx })?;
        let Some(sums) = o.sums else { return Ok(None) };
        reference_error[k] = output_error(&o).unwrap_or_else(|| sums.relative_error());
    }
    Ok(Some(Sensitivity { growth, reference_error }))
}

/// Measure one tensor for the planner: a layer the plan decides is measured at every plan width;
/// any other (fixed by an override, a sensitive pattern, its dtype or shape) once, as it will be
/// stored.
pub fn measure(
    planner: &mut SizePlanner,
    cfg: &QuantConfig,
    info: &TensorInfo,
    bytes: &[u8],
    ctx: LayerContext,
) -> Result<()> {
    let at = |bits: u8| quantize_layer(cfg, info, bytes, LayerContext { planned_bits: Some(bits), ..ctx });
    let probe = at(PLAN_WIDTHS[0])?;
    if !probe.decision.stored_as_planned() {
        planner.add_fixed(stored_estimate(&probe));
        return Ok(());
    }
    let mut measured = Vec::new();
    for &bits in PLAN_WIDTHS {
        let o = if bits == PLAN_WIDTHS[0] { probe.clone() } else { at(bits)? };
        // A width whose values cannot be held (stored as source bytes) is no choice.
        if let Some(sums) = o.sums {
            measured.push(Measured { bits, bytes: stored_estimate(&o), sums, output_error: output_error(&o) });
        }
    }
    let sensitivity = sensitivity(cfg, info, bytes, ctx)?;
    planner.add_candidate(&info.name, info.numel(), measured, sensitivity);
    Ok(())
}

/// The planning pass as a stream, mirroring [`ModelQuantizer`]: `set_calibration`, `begin`,
/// the tensors (by name or by read-plan range), `finish` → the plan to hand to the quantizer.
pub struct PlanRun {
    /// Resolves each tensor's context (modality, calibration) exactly as the quantizing run will.
    probe: ModelQuantizer,
    planner: SizePlanner,
    cfg: QuantConfig,
    added: Vec<bool>,
    done: usize,
}

impl PlanRun {
    pub fn new(cfg: QuantConfig) -> Result<Self> {
        // The probe only resolves contexts and never writes, so it needs no plan of its own.
        let probe_cfg = QuantConfig { target_size_mb: None, ..cfg.clone() };
        Ok(PlanRun {
            planner: SizePlanner::new(&cfg)?,
            probe: ModelQuantizer::new(probe_cfg)?,
            cfg,
            added: Vec::new(),
            done: 0,
        })
    }
    pub fn set_calibration(&mut self, cal: Calibration) -> Result<()> {
        self.probe.set_calibration(cal)
    }
    pub fn begin(&mut self, header_bytes: &[u8], file_len: Option<u64>) -> Result<&Header> {
        let h = self.probe.begin(header_bytes, file_len)?;
        self.added = vec![false; h.tensors.len()];
        Ok(h)
    }
    pub fn read_plan(&self) -> Result<Vec<ReadGroup>> {
        self.probe.read_plan()
    }
    fn header(&self) -> Result<&Header> {
        self.probe.header().ok_or_else(|| AqError::State("addTensor() before begin()".to_string()))
    }
    fn add_index(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let header = self.probe.header().expect("begun");
        let info = &header.tensors[i];
        if self.added[i] {
            return Err(AqError::State(format!("tensor '{}' was already added", info.name)));
        }
        if bytes.len() as u64 != info.byte_len() {
            return Err(AqError::Safetensors(format!(
                "tensor '{}': got {} bytes, the header says {}",
                info.name,
                bytes.len(),
                info.byte_len()
            )));
        }
        measure(&mut self.planner, &self.cfg, info, bytes, self.probe.context_for(info))?;
        self.added[i] = true;
        self.done += 1;
        Ok(())
    }
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.header()?;
        let i = self
            .probe
            .index_of(name)
            .ok_or_else(|| AqError::State(format!("tensor '{name}' is not in this file's header")))?;
        self.add_index(i, bytes)
    }
    /// Every tensor wholly inside the file bytes `[start, start + bytes.len())` not added yet.
    pub fn add_range(&mut self, start: u64, bytes: &[u8]) -> Result<usize> {
        let header = self.header()?;
        let end = start.checked_add(bytes.len() as u64).ok_or_else(|| AqError::State("range overflows".into()))?;
        let inside: Vec<(usize, u64, u64)> = header
            .tensors_within(start, end)
            .map(|i| {
                let (a, b) = header.file_range(&header.tensors[i]);
                (i, a, b)
            })
            .collect();
        let mut n = 0;
        for (i, a, b) in inside {
            if !self.added[i] {
                self.add_index(i, &bytes[(a - start) as usize..(b - start) as usize])?;
                n += 1;
            }
        }
        Ok(n)
    }
    pub fn finish(self) -> Result<SizePlan> {
        let total = self.probe.header().map_or(0, |h| h.tensors.len());
        if self.done != total {
            return Err(AqError::State(format!("plan finish(): {} of {total} tensors were added", self.done)));
        }
        self.planner.finish()
    }
}
