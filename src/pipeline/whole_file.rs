//! A whole safetensors file held in memory, driven through the streaming quantizer along the
//! read plan (the planning pass first when `targetSizeMb` asks for one).

use crate::diffusion::calibration::Calibration;
use crate::error::{AqError, Result};
use crate::pipeline::plan::PlanRun;
use crate::pipeline::report::{ModelReport, Progress};
use crate::pipeline::run::ModelQuantizer;
use crate::pipeline::Clock;
use crate::policy::config::QuantConfig;

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
    let file_len = Some(bytes.len() as u64);
    let range = |start: u64, end: u64| &bytes[start as usize..end as usize];
    let plan = match cfg.target_size_mb {
        None => None,
        Some(_) => {
            // Planning pass: measure every layer with the context the quantizer will use.
            let mut run = PlanRun::new(cfg.clone())?;
            if let Some(c) = &calibration {
                run.set_calibration(c.clone())?;
            }
            run.begin(bytes, file_len)?;
            for g in run.read_plan()? {
                run.add_range(g.start, range(g.start, g.end))?;
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
    q.begin(bytes, file_len)?;
    let mut out = Vec::new();
    // The whole file is in memory: each group goes in one call (the units only matter to a
    // stream, whose output and progress they pace).
    for g in q.read_plan()? {
        let events = q.add_range(g.start, range(g.start, g.end))?;
        out.extend(q.take_output_chunks());
        for e in &events {
            if !on_progress(&e.progress) {
                return Err(AqError::Cancelled(format!("cancelled after tensor '{}'", e.progress.name)));
            }
        }
    }
    let (rest, report) = q.finish_chunks()?;
    out.extend(rest);
    Ok((out, report))
}
