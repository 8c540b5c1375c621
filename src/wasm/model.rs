//! Quantizing a model: whole in memory (`quantizeModel`), streamed (`ModelQuantizer`), and the
//! planning pass of `targetSizeMb` (`SizePlanner`).

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use std::collections::BTreeMap;

use crate::error::AqError;
use crate::format::safetensors::write_header;
use crate::pipeline::{self, plan::PlanRun};
use crate::policy::config::QuantConfig;
use crate::policy::sizeplan::SizePlan;
use crate::Dtype;

use super::convert::{bytes_to_js, calibration_from_js, clock, config_from_js, header_to_js, result_object, to_js};

/// Quantize a whole safetensors file held in memory. `options.onProgress(progress)` is called
/// after each tensor; if it throws, the run stops and the error is rethrown.
#[wasm_bindgen(js_name = quantizeModel, unchecked_return_type = "QuantizeResult")]
pub fn quantize_model(
    bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
    #[wasm_bindgen(unchecked_param_type = "QuantizeOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let cfg = config_from_js(config)?;
    let option = |key: &str| -> Option<JsValue> {
        options
            .is_object()
            .then(|| Reflect::get(&options, &key.into()).ok())
            .flatten()
            .filter(|v| !v.is_undefined() && !v.is_null())
    };
    let callback: Option<Function> = option("onProgress").and_then(|f| f.dyn_into::<Function>().ok());
    let calibration = option("calibration").map(|c| calibration_from_js(&c)).transpose()?;
    let mut thrown: Option<JsValue> = None;
    let mut on_progress = |p: &crate::Progress| -> bool {
        let Some(f) = &callback else { return true };
        match to_js(p).and_then(|v| f.call1(&JsValue::NULL, &v)) {
            Ok(_) => true,
            Err(e) => {
                thrown = Some(e);
                false
            }
        }
    };
    match pipeline::quantize_model_chunks(bytes, cfg, calibration, clock, &mut on_progress) {
        Ok((parquet, report)) => result_object(&parquet, &report),
        Err(e) => Err(thrown.unwrap_or_else(|| e.into())),
    }
}

/// A throwaway quantization down the real path (safetensors in, Parquet out: decode, the
/// searches, validation, zstd, CRC) of a synthetic 256×4096 f32 tensor at each bit width's
/// default and at 4-bit min/max. V8 first runs new wasm code on its baseline compiler and swaps
/// in optimised code for a function only after it has run for a while, on its next call, so a
/// Worker calls this while the page waits for a file and the user's first model runs on
/// optimised code (`make bench`, "first run in a fresh Worker"). Returns its seconds.
#[wasm_bindgen(js_name = warmUp)]
pub fn warm_up() -> Result<f64, JsValue> {
    let t0 = clock();
    let (rows, cols) = (256u64, 4096u64);
    let mut model = write_header(&[("w.weight".to_string(), Dtype::F32, vec![rows, cols])], &BTreeMap::new());
    let mut s = 12345u32;
    for i in 0..rows * cols {
        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
        let v = (s as f32 / 4294967296.0 - 0.5) * (1 + i % 7) as f32;
        model.extend_from_slice(&v.to_le_bytes());
    }
    for (bits, search) in [(4, "auto"), (4, "off"), (2, "auto"), (8, "auto")] {
        let cfg = QuantConfig::from_json(&serde_json::json!({
            "bitWidth": bits, "groupSize": 64, "minAccuracy": 0, "scaleSearch": search
        }))?;
        pipeline::quantize_model_chunks(&model, cfg, None, clock, &mut |_| true)?;
    }
    Ok(clock() - t0)
}

/// Streaming quantizer for files larger than memory: `begin(headerBytes, fileSize)`, then for
/// each group of `readPlan()` the bytes `[start, end)` of the file to `addRange(start, bytes)`
/// (or each tensor to `addTensor(name, bytes)`), `takeOutput()` whenever convenient to drain
/// finished Parquet bytes, then `finish()`.
#[wasm_bindgen]
pub struct ModelQuantizer {
    inner: pipeline::ModelQuantizer,
    last_tensor: String,
}

#[wasm_bindgen]
impl ModelQuantizer {
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
    ) -> Result<ModelQuantizer, JsValue> {
        let cfg = config_from_js(config)?;
        Ok(ModelQuantizer { inner: pipeline::ModelQuantizer::with_clock(cfg, clock)?, last_tensor: String::new() })
    }

    /// The resolved config this run uses.
    #[wasm_bindgen(getter, unchecked_return_type = "QuantConfig")]
    pub fn config(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.config())
    }

    /// Close row groups at about this many bytes (default 8 MiB); smaller means smaller output
    /// chunks and less memory. Call before `begin`.
    #[wasm_bindgen(js_name = setRowGroupBytes)]
    pub fn set_row_group_bytes(&mut self, bytes: u32) {
        self.inner.set_row_group_bytes(bytes as usize);
    }

    /// Calibration statistics for time-aware and spatial quantization (before `begin`): the
    /// calibration safetensors file as a Uint8Array, or an object `{ timesteps, layers }`.
    #[wasm_bindgen(js_name = setCalibration)]
    pub fn set_calibration(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput")] calibration: JsValue,
    ) -> Result<(), JsValue> {
        Ok(self.inner.set_calibration(calibration_from_js(&calibration)?)?)
    }

    /// Per-layer widths from `SizePlanner.finish()` (needed for `targetSizeMb`; before `begin`).
    #[wasm_bindgen(js_name = setPlan)]
    pub fn set_plan(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "SizePlan")] plan: JsValue,
    ) -> Result<(), JsValue> {
        let expected = "the object SizePlanner.finish() returned";
        let plan: SizePlan = serde_json::from_value(super::convert::json_of(plan, "plan", expected)?).map_err(|e| {
            AqError::config("plan", "<object>", format!("the object SizePlanner.finish() returned ({e})"))
        })?;
        Ok(self.inner.set_plan(plan)?)
    }

    /// Parse the header (`headerBytes` holds at least `safetensorsHeaderSize(first8)` bytes).
    /// `fileSize`, when given, is checked against every tensor's offsets.
    #[wasm_bindgen(unchecked_return_type = "SafetensorsHeader")]
    pub fn begin(
        &mut self,
        header_bytes: &[u8],
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        header_to_js(self.inner.begin(header_bytes, super::convert::file_size(file_size)?)?)
    }

    /// The reads that cover every tensor, in file order: `[{ start, end, tensors, readAhead }]`.
    /// Read each range in one piece and pass it to `addRange`; `readAhead` says whether to read
    /// it while the previous one is being quantized.
    #[wasm_bindgen(js_name = readPlan, unchecked_return_type = "ReadGroup[]")]
    pub fn read_plan(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.read_plan()?)
    }

    /// Quantize every tensor inside the file bytes `[start, start + bytes.length)` (a group of
    /// `readPlan()`), in parallel in the threaded build. Returns one event per tensor — its
    /// progress and layer report — as if they had been added one at a time.
    #[wasm_bindgen(js_name = addRange, unchecked_return_type = "TensorDone[]")]
    pub fn add_range(&mut self, start: f64, bytes: Vec<u8>) -> Result<JsValue, JsValue> {
        let events = self.inner.add_range_owned(start as u64, bytes)?;
        if let Some(last) = events.last() {
            self.last_tensor = last.progress.name.clone();
        }
        to_js(&events)
    }

    /// Quantize one tensor; returns its layer report.
    #[wasm_bindgen(js_name = addTensor, unchecked_return_type = "LayerReport")]
    pub fn add_tensor(&mut self, name: &str, bytes: Vec<u8>) -> Result<JsValue, JsValue> {
        let r = self.inner.add_tensor_owned(name, bytes)?;
        self.last_tensor = name.to_string();
        to_js(&r)
    }

    /// Quantize several tensors together (in parallel in the threaded build), appended in the
    /// order given; the file is the same as with `addTensor` one by one. Returns their reports.
    #[wasm_bindgen(js_name = addTensors, unchecked_return_type = "LayerReport[]")]
    pub fn add_tensors(&mut self, names: Vec<String>, tensors: Vec<Uint8Array>) -> Result<JsValue, JsValue> {
        if names.len() != tensors.len() {
            let msg = format!("addTensors(): {} names but {} byte arrays", names.len(), tensors.len());
            return Err(AqError::State(msg).into());
        }
        let owned: Vec<Vec<u8>> = tensors.iter().map(|t| t.to_vec()).collect();
        let r = self.inner.add_tensors_owned(&names, owned)?;
        if let Some(last) = names.last() {
            self.last_tensor = last.clone();
        }
        to_js(&r)
    }

    /// Progress after the last tensor.
    #[wasm_bindgen(unchecked_return_type = "Progress")]
    pub fn progress(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.progress(&self.last_tensor))
    }

    /// Parquet bytes finished since the last call (may be empty). Append them to the output. In
    /// the threaded build a call's rows are written during the next `addRange`/`addTensor(s)`
    /// (beside its quantizing) or by `finish`, so output arrives one call later; the file is the same.
    #[wasm_bindgen(js_name = takeOutput)]
    pub fn take_output(&mut self) -> Uint8Array {
        bytes_to_js(&self.inner.take_output_chunks())
    }

    /// Close the file: `{ parquet, report }`, where `parquet` holds only the bytes not yet taken.
    #[wasm_bindgen(unchecked_return_type = "QuantizeResult")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let (rest, report) = self.inner.finish_chunks()?;
        result_object(&rest, &report)
    }
}

/// The planning pass of `targetSizeMb` for streamed models: `setCalibration` (optional),
/// `begin(headerBytes, fileSize)`, the ranges of `readPlan()` to `addRange` (or every tensor to
/// `addTensor`), then `finish()` → a `SizePlan` to pass to `ModelQuantizer.setPlan` before its
/// own `begin`.
#[wasm_bindgen]
pub struct SizePlanner {
    inner: Option<PlanRun>,
}

#[wasm_bindgen]
impl SizePlanner {
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
    ) -> Result<SizePlanner, JsValue> {
        Ok(SizePlanner { inner: Some(PlanRun::new(config_from_js(config)?)?) })
    }

    fn run(&mut self) -> Result<&mut PlanRun, JsValue> {
        self.inner.as_mut().ok_or_else(|| AqError::State("this plan already finished".to_string()).into())
    }

    #[wasm_bindgen(js_name = setCalibration)]
    pub fn set_calibration(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput")] calibration: JsValue,
    ) -> Result<(), JsValue> {
        let cal = calibration_from_js(&calibration)?;
        Ok(self.run()?.set_calibration(cal)?)
    }

    #[wasm_bindgen(unchecked_return_type = "SafetensorsHeader")]
    pub fn begin(
        &mut self,
        header_bytes: &[u8],
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let h = self.run()?.begin(header_bytes, super::convert::file_size(file_size)?)?.clone();
        header_to_js(&h)
    }

    #[wasm_bindgen(js_name = readPlan, unchecked_return_type = "ReadGroup[]")]
    pub fn read_plan(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.run()?.read_plan()?)
    }

    /// Measure every tensor inside `[start, start + bytes.length)`; returns how many.
    #[wasm_bindgen(js_name = addRange)]
    pub fn add_range(&mut self, start: f64, bytes: &[u8]) -> Result<u32, JsValue> {
        Ok(self.run()?.add_range(start as u64, bytes)? as u32)
    }

    #[wasm_bindgen(js_name = addTensor)]
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(), JsValue> {
        Ok(self.run()?.add_tensor(name, bytes)?)
    }

    #[wasm_bindgen(unchecked_return_type = "SizePlan")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let run = self.inner.take().ok_or_else(|| AqError::State("this plan already finished".to_string()))?;
        to_js(&run.finish()?)
    }
}
