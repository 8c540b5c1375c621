//! wasm-bindgen exports: the only place that knows about JS. Each export converts its inputs,
//! calls the core, and converts the result; every core error becomes a JS `Error` with `code`
//! (and `field` / `tensor` when known). Types for TypeScript come from tsify on the core structs
//! plus the declarations in `types.rs`.

mod bench;
mod types;

use js_sys::{Function, Object, Reflect, Uint16Array, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::calibration::Calibration;
use crate::config::QuantConfig;
use crate::error::AqError;
use crate::parquet::reader::QuantizedFile as CoreFile;
use crate::pipeline::{self, parse_export_dtype};
use crate::quant::tensor::Layout;
use crate::safetensors;
use crate::Dtype;

#[wasm_bindgen(start)]
fn start() {
    // A panic would otherwise surface as an opaque `unreachable` trap.
    console_error_panic_hook::set_once();
}

fn clock() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// Core error → JS `Error` with a stable `code`.
fn js_error(e: AqError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let obj: &JsValue = err.as_ref();
    let _ = Reflect::set(obj, &"code".into(), &e.code().into());
    if let Some(f) = e.field() {
        let _ = Reflect::set(obj, &"field".into(), &f.into());
    }
    if let Some(t) = e.tensor() {
        let _ = Reflect::set(obj, &"tensor".into(), &t.into());
    }
    err.into()
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    v.serialize(&ser).map_err(|e| js_error(AqError::State(format!("internal: cannot convert result: {e}"))))
}

fn set(obj: &Object, key: &str, v: &JsValue) {
    let _ = Reflect::set(obj, &key.into(), v);
}

/// JS config object (or undefined) → validated core config.
fn config_from_js(config: JsValue) -> Result<QuantConfig, JsValue> {
    if config.is_undefined() || config.is_null() {
        return Ok(QuantConfig::from_profile(crate::Profile::Local));
    }
    let value: serde_json::Value = serde_wasm_bindgen::from_value(config)
        .map_err(|e| js_error(AqError::config("config", "<object>", format!("a plain JSON-like object ({e})"))))?;
    QuantConfig::from_json(&value).map_err(js_error)
}

/// Calibration statistics from JS: a Uint8Array/ArrayBuffer holding the calibration safetensors
/// file (or JSON text), or a plain object `{ timesteps, layers }` (docs/CALIBRATION.md).
fn calibration_from_js(v: &JsValue) -> Result<Calibration, JsValue> {
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Calibration::from_bytes(&bytes.to_vec()).map_err(js_error);
    }
    if let Some(buf) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Calibration::from_bytes(&Uint8Array::new(buf).to_vec()).map_err(js_error);
    }
    if !v.is_object() {
        return Err(js_error(AqError::Calibration(
            "expected a Uint8Array (calibration safetensors file) or an object { timesteps, layers }".to_string(),
        )));
    }
    let value: serde_json::Value = serde_wasm_bindgen::from_value(v.clone())
        .map_err(|e| js_error(AqError::Calibration(format!("not a plain JSON-like object ({e})"))))?;
    Calibration::from_json(&value).map_err(js_error)
}

/// Validate calibration statistics without quantizing: a summary, or `E_CALIBRATION`.
#[wasm_bindgen(js_name = readCalibration, unchecked_return_type = "CalibrationSummary")]
pub fn read_calibration(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput")] calibration: JsValue,
) -> Result<JsValue, JsValue> {
    to_js(&types::CalibrationSummary::from_core(&calibration_from_js(&calibration)?))
}

/// A model summary from its safetensors header alone: tensor and parameter counts, dtypes,
/// detected modality (and the rule that decided), estimated output size per profile (plus
/// `current` for `config` when given). What a UI shows the moment a file is dropped.
#[wasm_bindgen(js_name = describeModel, unchecked_return_type = "ModelSummary")]
pub fn describe_model(
    header_bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    let h = safetensors::parse_header(header_bytes, file_size.map(|n| n as u64)).map_err(js_error)?;
    let cfg = if config.is_undefined() || config.is_null() { None } else { Some(config_from_js(config)?) };
    to_js(&crate::inspect::describe(&h, cfg.as_ref()))
}

/// Histogram of ŵ − w for one tensor, re-quantized exactly as a run stored it: pass that run's
/// config with the stored width as a `layerBitWidths` entry for `name` (16 for f16), and the
/// same calibration. `bytes` are the tensor's bytes from the source file.
#[wasm_bindgen(js_name = layerErrorHistogram, unchecked_return_type = "ErrorHistogram")]
pub fn layer_error_histogram(
    name: &str,
    dtype: &str,
    #[wasm_bindgen(unchecked_param_type = "number[]")] shape: Vec<f64>,
    bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput | null | undefined")] calibration: JsValue,
    bins: u32,
) -> Result<JsValue, JsValue> {
    let cfg = config_from_js(config)?;
    let dtype =
        Dtype::parse(dtype).ok_or_else(|| js_error(AqError::dtype(name, format!("unknown dtype '{dtype}'"))))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let info = safetensors::TensorInfo { name: name.to_string(), dtype, shape, begin: 0, end: bytes.len() as u64 };
    if info.numel() * dtype.size_bytes() as u64 != bytes.len() as u64 {
        return Err(js_error(AqError::dtype(
            name,
            format!("{} bytes do not hold {:?} {}", bytes.len(), info.shape, dtype.name()),
        )));
    }
    let cal = if calibration.is_undefined() || calibration.is_null() {
        None
    } else {
        Some(calibration_from_js(&calibration)?)
    };
    let stats = cal.as_ref().and_then(|c| c.for_weight(name));
    let ctx = pipeline::LayerContext {
        cal: stats.map(|(layer, stats)| pipeline::LayerCalibration { layer, stats }),
        ..Default::default()
    };
    to_js(&crate::inspect::error_histogram(&cfg, &info, bytes, ctx, bins as usize).map_err(js_error)?)
}

/// Resolve and validate a config: returns the full config with every field filled in from the
/// profile, or throws `E_CONFIG` naming the bad field. Forms call it on every change.
#[wasm_bindgen(js_name = resolveConfig, unchecked_return_type = "QuantConfig")]
pub fn resolve_config(
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    to_js(&config_from_js(config)?)
}

/// Library version and build flavour.
#[wasm_bindgen(js_name = buildInfo, unchecked_return_type = "BuildInfo")]
pub fn build_info() -> Result<JsValue, JsValue> {
    to_js(&types::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        format_version: crate::parquet::schema::FORMAT_VERSION.to_string(),
        simd: cfg!(target_feature = "simd128"),
        threads: crate::parallel::available(),
        kernels: crate::kernels::active().name.to_string(),
    })
}

// The thread pool entry point (`initThreadPool(n)` in JS) of the threaded build. The export
// comes from wasm-bindgen-rayon's own #[wasm_bindgen]; this use keeps that crate linked in.
#[cfg(feature = "threads")]
#[allow(unused_imports)]
pub use wasm_bindgen_rayon::init_thread_pool;

/// How many distinct pool threads ran quantization blocks since the last call (0 in the
/// single-threaded build). Lets tests and the demo prove that threads really ran.
#[wasm_bindgen(js_name = threadsSeen)]
pub fn threads_seen() -> u32 {
    crate::parallel::take_threads_seen()
}

/// Use the scalar reference kernels instead of SIMD128 (`true`), or the fastest (`false`, the
/// default). Output is bit-identical either way; this exists for benchmarks and diagnosis.
#[wasm_bindgen(js_name = setReferenceKernels)]
pub fn set_reference_kernels(on: bool) {
    crate::kernels::set_reference_only(on);
}

/// Bytes to read from the start of a safetensors file to get its whole header, given at least
/// its first 8 bytes.
#[wasm_bindgen(js_name = safetensorsHeaderSize)]
pub fn safetensors_header_size(prefix: &[u8]) -> Result<f64, JsValue> {
    safetensors::header_size(prefix).map(|n| n as f64).map_err(js_error)
}

fn header_to_js(h: &safetensors::Header) -> Result<JsValue, JsValue> {
    to_js(&types::SafetensorsHeader::from_core(h))
}

/// Parse a safetensors header without quantizing anything (tensor list, dtypes, offsets).
#[wasm_bindgen(js_name = readSafetensorsHeader, unchecked_return_type = "SafetensorsHeader")]
pub fn read_safetensors_header(
    header_bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
) -> Result<JsValue, JsValue> {
    let h = safetensors::parse_header(header_bytes, file_size.map(|n| n as u64)).map_err(js_error)?;
    header_to_js(&h)
}

/// One JS `Uint8Array` holding the pieces back to back (copied straight out of wasm memory).
fn bytes_to_js(chunks: &[Vec<u8>]) -> Uint8Array {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let out = Uint8Array::new_with_length(total as u32);
    let mut at = 0u32;
    for c in chunks {
        out.subarray(at, at + c.len() as u32).copy_from(c);
        at += c.len() as u32;
    }
    out
}

fn result_object(parquet: &[Vec<u8>], report: &crate::ModelReport) -> Result<JsValue, JsValue> {
    let o = Object::new();
    set(&o, "parquet", &bytes_to_js(parquet).into());
    set(&o, "report", &to_js(report)?);
    Ok(o.into())
}

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
        Err(e) => Err(thrown.unwrap_or_else(|| js_error(e))),
    }
}

/// Streaming quantizer for files larger than memory: `begin(headerBytes, fileSize)`, then
/// `addTensor(name, bytes)` for every tensor (reading each byte range from the file),
/// `takeOutput()` whenever convenient to drain finished Parquet bytes, then `finish()`.
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
        Ok(ModelQuantizer {
            inner: pipeline::ModelQuantizer::with_clock(cfg, clock).map_err(js_error)?,
            last_tensor: String::new(),
        })
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
        let cal = calibration_from_js(&calibration)?;
        self.inner.set_calibration(cal).map_err(js_error)
    }

    /// Per-layer widths from `SizePlanner.finish()` (needed for `targetSizeMb`; before `begin`).
    #[wasm_bindgen(js_name = setPlan)]
    pub fn set_plan(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "SizePlan")] plan: JsValue,
    ) -> Result<(), JsValue> {
        let plan: crate::sizeplan::SizePlan = serde_wasm_bindgen::from_value(plan).map_err(|e| {
            js_error(AqError::config("plan", "<object>", format!("the object SizePlanner.finish() returned ({e})")))
        })?;
        self.inner.set_plan(plan).map_err(js_error)
    }

    /// Parse the header (`headerBytes` holds at least `safetensorsHeaderSize(first8)` bytes).
    /// `fileSize`, when given, is checked against every tensor's offsets.
    #[wasm_bindgen(unchecked_return_type = "SafetensorsHeader")]
    pub fn begin(
        &mut self,
        header_bytes: &[u8],
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let h = self.inner.begin(header_bytes, file_size.map(|n| n as u64)).map_err(js_error)?;
        header_to_js(h)
    }

    /// Quantize one tensor; returns its layer report.
    #[wasm_bindgen(js_name = addTensor, unchecked_return_type = "LayerReport")]
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let r = self.inner.add_tensor(name, bytes).map_err(js_error)?;
        self.last_tensor = name.to_string();
        to_js(&r)
    }

    /// Quantize several tensors together (in parallel in the threaded build), appended in the
    /// order given; the file is the same as with `addTensor` one by one. Returns their reports.
    #[wasm_bindgen(js_name = addTensors, unchecked_return_type = "LayerReport[]")]
    pub fn add_tensors(&mut self, names: Vec<String>, tensors: Vec<Uint8Array>) -> Result<JsValue, JsValue> {
        if names.len() != tensors.len() {
            return Err(js_error(AqError::State(format!(
                "addTensors(): {} names but {} byte arrays",
                names.len(),
                tensors.len()
            ))));
        }
        let owned: Vec<Vec<u8>> = tensors.iter().map(|t| t.to_vec()).collect();
        let items: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(owned.iter().map(Vec::as_slice)).collect();
        let r = self.inner.add_tensors(&items).map_err(js_error)?;
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
    /// the threaded build a call's rows are written during the next `addTensor(s)` (beside its
    /// quantizing) or by `finish`, so output arrives one call later; the file is the same.
    #[wasm_bindgen(js_name = takeOutput)]
    pub fn take_output(&mut self) -> Uint8Array {
        bytes_to_js(&self.inner.take_output_chunks())
    }

    /// Close the file: `{ parquet, report }`, where `parquet` holds only the bytes not yet taken.
    #[wasm_bindgen(unchecked_return_type = "QuantizeResult")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let (rest, report) = self.inner.finish_chunks().map_err(js_error)?;
        result_object(&rest, &report)
    }
}

/// The planning pass of `targetSizeMb` for streamed models: `setCalibration` (optional),
/// `begin(headerBytes, fileSize)`, `addTensor(name, bytes)` for every tensor, then `finish()`
/// → a `SizePlan` to pass to `ModelQuantizer.setPlan` before its own `begin`.
#[wasm_bindgen]
pub struct SizePlanner {
    inner: Option<crate::sizeplan::PlanRun>,
}

#[wasm_bindgen]
impl SizePlanner {
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
    ) -> Result<SizePlanner, JsValue> {
        let cfg = config_from_js(config)?;
        Ok(SizePlanner { inner: Some(crate::sizeplan::PlanRun::new(cfg).map_err(js_error)?) })
    }

    fn run(&mut self) -> Result<&mut crate::sizeplan::PlanRun, JsValue> {
        self.inner.as_mut().ok_or_else(|| js_error(AqError::State("this plan already finished".to_string())))
    }

    #[wasm_bindgen(js_name = setCalibration)]
    pub fn set_calibration(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput")] calibration: JsValue,
    ) -> Result<(), JsValue> {
        let cal = calibration_from_js(&calibration)?;
        self.run()?.set_calibration(cal).map_err(js_error)
    }

    #[wasm_bindgen(unchecked_return_type = "SafetensorsHeader")]
    pub fn begin(
        &mut self,
        header_bytes: &[u8],
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
    ) -> Result<JsValue, JsValue> {
        let h = self.run()?.begin(header_bytes, file_size.map(|n| n as u64)).map_err(js_error)?.clone();
        header_to_js(&h)
    }

    #[wasm_bindgen(js_name = addTensor)]
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(), JsValue> {
        self.run()?.add_tensor(name, bytes).map_err(js_error)
    }

    #[wasm_bindgen(unchecked_return_type = "SizePlan")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let run =
            self.inner.take().ok_or_else(|| js_error(AqError::State("this plan already finished".to_string())))?;
        to_js(&run.finish().map_err(js_error)?)
    }
}

/// Quantize one tensor given as f32 values: `{ codes, scales, mins, bits, groupSize, report }`.
/// `codes` are packed as in the file; `scales`/`mins` are f16 bit patterns (Uint16Array).
/// Applies the same fallback as a model run; the report says which width was stored.
#[wasm_bindgen(js_name = quantizeTensor, unchecked_return_type = "QuantizedTensorResult")]
pub fn quantize_tensor(
    values: &[f32],
    #[wasm_bindgen(unchecked_param_type = "number[]")] shape: Vec<f64>,
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    let cfg = config_from_js(config)?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let numel: u64 = shape.iter().product();
    if numel != values.len() as u64 || shape.len() < 2 {
        return Err(js_error(AqError::config(
            "shape",
            format!("{shape:?}"),
            format!("at least 2 dimensions whose product is the number of values ({})", values.len()),
        )));
    }
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let info =
        safetensors::TensorInfo { name: "tensor".into(), dtype: Dtype::F32, shape, begin: 0, end: bytes.len() as u64 };
    let outcome = pipeline::quantize_layer(&cfg, &info, &bytes, Default::default()).map_err(js_error)?;
    let row = &outcome.row;
    let o = Object::new();
    set(&o, "storage", &row.storage.as_str().into());
    set(&o, "bits", &row.bits.map_or(JsValue::NULL, |b| b.into()));
    set(&o, "groupSize", &row.group_size.map_or(JsValue::NULL, |g| g.into()));
    set(&o, "codes", &Uint8Array::from(row.data.as_slice()).into());
    let u16s = |v: &Option<Vec<u16>>| v.as_ref().map_or(JsValue::NULL, |v| Uint16Array::from(v.as_slice()).into());
    set(&o, "scales", &u16s(&row.scales));
    set(&o, "mins", &u16s(&row.mins));
    let report = pipeline::layer_report(row, &info);
    set(&o, "report", &to_js(&report)?);
    Ok(o.into())
}

/// Reconstruct values from `quantizeTensor` output (the same formula the file reader uses).
#[wasm_bindgen(js_name = dequantizeTensor)]
pub fn dequantize_tensor(
    codes: &[u8],
    scales: &[u16],
    mins: &[u16],
    #[wasm_bindgen(unchecked_param_type = "number[]")] shape: Vec<f64>,
    bits: u8,
    group_size: u32,
) -> Result<Vec<f32>, JsValue> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let g = group_size as usize;
    if ![2, 4, 8].contains(&bits) || !crate::config::ALLOWED_GROUP_SIZES.contains(&group_size) {
        return Err(js_error(AqError::config(
            "bits/groupSize",
            format!("{bits}/{group_size}"),
            "2, 4 or 8 / 32, 64, 128 or 256",
        )));
    }
    let layout = Layout::for_shape(&shape, g);
    if codes.len() != layout.codes_len(bits) || scales.len() != layout.groups() || mins.len() != layout.groups() {
        return Err(js_error(AqError::config(
            "codes/scales/mins",
            format!("{}/{}/{} values", codes.len(), scales.len(), mins.len()),
            format!("{}/{}/{} for shape {shape:?}", layout.codes_len(bits), layout.groups(), layout.groups()),
        )));
    }
    let mut out = vec![0f32; layout.numel()];
    crate::quant::tensor::dequantize_parts(bits, layout, codes, scales, mins, &mut out);
    Ok(out)
}

/// An opened arrowquant Parquet file.
#[wasm_bindgen]
pub struct QuantizedFile {
    inner: CoreFile,
}

/// Open an arrowquant Parquet file held in memory (throws `E_PARQUET` if it is not one).
#[wasm_bindgen(js_name = openQuantized)]
pub fn open_quantized(bytes: Vec<u8>) -> Result<QuantizedFile, JsValue> {
    Ok(QuantizedFile { inner: CoreFile::open(bytes).map_err(js_error)? })
}

#[wasm_bindgen]
impl QuantizedFile {
    /// Format, library version, config, modality and source metadata.
    #[wasm_bindgen(unchecked_return_type = "FileMetadata")]
    pub fn metadata(&self) -> Result<JsValue, JsValue> {
        to_js(&types::FileMetadata::from_file(&self.inner))
    }

    /// One entry per tensor, in file order (no bulk data): the same rows a run's report has.
    #[wasm_bindgen(unchecked_return_type = "LayerReport[]")]
    pub fn tensors(&self) -> Result<JsValue, JsValue> {
        let list: Vec<_> = self.inner.rows.iter().map(|r| pipeline::layer_report(r, &r.source_info())).collect();
        to_js(&list)
    }

    /// Reconstruct a float tensor as f32 in the original weight space (bit-exact with what
    /// validation measured; channel equalization undone). `{ equalized: true }` returns the stored
    /// W·diag(s) instead, for engines that divide their activations by the scales.
    pub fn dequantize(
        &self,
        name: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "{ equalized?: boolean }")] options: Option<Object>,
    ) -> Result<Vec<f32>, JsValue> {
        let equalized =
            options.and_then(|o| Reflect::get(&o, &"equalized".into()).ok()).and_then(|v| v.as_bool()).unwrap_or(false);
        if equalized {
            self.inner.dequantize_equalized(name).map_err(js_error)
        } else {
            self.inner.dequantize(name).map_err(js_error)
        }
    }

    /// A layer's time groups `[{ tStart, tEnd, scale, zeroPoint }]`, or null without calibration.
    #[wasm_bindgen(js_name = timeGroups, unchecked_return_type = "TimeGroup[] | null")]
    pub fn time_groups(&self, name: &str) -> Result<JsValue, JsValue> {
        to_js(&self.inner.row(name).map_err(js_error)?.time_groups)
    }

    /// The activation params `{ tStart, tEnd, scale, zeroPoint }` in force at timestep index `t`
    /// (an index into the calibration's timesteps, see `metadata().calibration`). Throws
    /// `E_STATE` for a layer without time groups or a `t` outside them.
    #[wasm_bindgen(js_name = paramsForTimestep, unchecked_return_type = "TimeGroup")]
    pub fn params_for_timestep(&self, name: &str, t: u32) -> Result<JsValue, JsValue> {
        let row = self.inner.row(name).map_err(js_error)?;
        let Some(groups) = &row.time_groups else {
            return Err(js_error(AqError::State(format!("tensor '{name}' has no time groups (no calibration data)"))));
        };
        match crate::timegroups::params_for_timestep(groups, t) {
            Some(g) => to_js(g),
            None => Err(js_error(AqError::State(format!(
                "tensor '{name}': timestep index {t} is outside its time groups (0..{})",
                groups.last().map_or(0, |g| g.t_end)
            )))),
        }
    }

    /// A layer's channel equalization `{ alpha, activationSmoothing, scales: Float32Array }`,
    /// or null when none was applied. Inference divides input channel j by `scales[j]`.
    pub fn spatial(&self, name: &str) -> Result<JsValue, JsValue> {
        let row = self.inner.row(name).map_err(js_error)?;
        let Some(sp) = &row.spatial else { return Ok(JsValue::NULL) };
        let o = Object::new();
        set(&o, "alpha", &sp.alpha.into());
        set(&o, "activationSmoothing", &sp.activation_smoothing.into());
        set(&o, "channelEqualization", &sp.channel_equalization.into());
        set(&o, "scales", &js_sys::Float32Array::from(sp.scales.as_slice()).into());
        Ok(o.into())
    }

    /// safetensors header for exporting every tensor as `dtype` ('f32' or 'f16').
    #[wasm_bindgen(js_name = exportHeader)]
    pub fn export_header(&self, dtype: &str) -> Result<Vec<u8>, JsValue> {
        let d = parse_export_dtype(dtype).map_err(js_error)?;
        self.inner.export_header(d).map_err(js_error)
    }

    /// One tensor's bytes for that export, in header order.
    #[wasm_bindgen(js_name = exportTensor)]
    pub fn export_tensor(&self, name: &str, dtype: &str) -> Result<Vec<u8>, JsValue> {
        let d = parse_export_dtype(dtype).map_err(js_error)?;
        self.inner.export_tensor(name, d).map_err(js_error)
    }
}
