//! The orchestrator: plan → quantize → validate → fall back → record, one tensor at a time.
//!
//! * `decision` — how a tensor was stored and why, as a value (the reason text is rendered from it);
//! * `layer` — one tensor: decide, quantize, measure, fall back;
//! * `codec` — a layer's codes as ggml blocks (`codec: 'ggml' | 'auto'`);
//! * `equalization` — a layer's channel equalization, α fixed or searched;
//! * `run` — the streaming quantizer ([`ModelQuantizer`]): header, tensors, output, finish;
//! * `batches` — which byte ranges are read together;
//! * `summary` and `report` — the per-layer and model report;
//! * `whole_file` — a file held in memory, driven through `run`;
//! * `gguf` — the GGUF writer: types from the header, then each tensor's blocks, measured;
//! * `convert` — Parquet ⇄ GGUF without re-quantizing;
//! * `plan` — the measuring pass of `targetSizeMb`;
//! * `inspect` — what a UI shows before and after a run (model summary, error histogram).

pub mod batches;
pub mod codec;
pub mod convert;
pub mod decision;
pub mod equalization;
pub mod gguf;
pub mod inspect;
pub mod layer;
pub mod objective;
pub mod plan;
pub mod report;
pub mod run;
pub mod summary;
pub mod whole_file;

pub use layer::{quantize_layer, LayerCalibration, LayerContext, LayerOutcome};
pub use run::ModelQuantizer;
pub use whole_file::{quantize_model, quantize_model_chunks};

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
