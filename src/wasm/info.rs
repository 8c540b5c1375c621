//! Exports that describe rather than quantize: configs, headers, calibration, the model summary,
//! a layer's error histogram, the build.

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::error::AqError;
use crate::format::safetensors;
use crate::format::shards::{self, ShardHeader};
use crate::pipeline::layer::{LayerCalibration, LayerContext};
use crate::policy::config::{canonical_field, fields, input_from_text};
use crate::Dtype;

use super::convert::{calibration_from_js, config_from_js, header_to_js, json_of, optional, set, to_js};
use super::types;

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
    let h = safetensors::parse_header(header_bytes, super::convert::file_size(file_size)?)?;
    let cfg = optional(config).map(config_from_js).transpose()?;
    to_js(&crate::pipeline::inspect::describe(&h, cfg.as_ref()))
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
    let dtype = Dtype::parse(dtype).ok_or_else(|| AqError::dtype(name, format!("unknown dtype '{dtype}'")))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let info = safetensors::TensorInfo { name: name.to_string(), dtype, shape, begin: 0, end: bytes.len() as u64 };
    if info.numel() * dtype.size_bytes() as u64 != bytes.len() as u64 {
        return Err(AqError::dtype(
            name,
            format!("{} bytes do not hold {:?} {}", bytes.len(), info.shape, dtype.name()),
        )
        .into());
    }
    let cal = optional(calibration).map(|c| calibration_from_js(&c)).transpose()?;
    let stats = cal.as_ref().and_then(|c| c.for_weight(name));
    let ctx = LayerContext { cal: stats.map(|(layer, stats)| LayerCalibration { layer, stats }), ..Default::default() };
    to_js(&crate::pipeline::inspect::error_histogram(&cfg, &info, bytes, ctx, bins as usize)?)
}

/// Resolve and validate a config: returns the full config with every field filled in from the
/// profile, or throws `E_CONFIG` naming the bad field. Forms call it on every change.
#[wasm_bindgen(js_name = resolveConfig, unchecked_return_type = "QuantConfig")]
pub fn resolve_config(
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    to_js(&config_from_js(config)?)
}

/// Like `resolveConfig`, for a model that can be read only once (an HTTP request body): a size
/// plan (`targetSizeMb`) is refused with `E_CONFIG`.
#[wasm_bindgen(js_name = resolveSinglePassConfig, unchecked_return_type = "QuantConfig")]
pub fn resolve_single_pass_config(
    #[wasm_bindgen(unchecked_param_type = "QuantConfigInput | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    let cfg = config_from_js(config)?;
    cfg.check_single_pass()?;
    to_js(&cfg)
}

/// Every config field: `{ name, aliases, kind, allowed }` (kind: boolean, number, choice, list, map).
#[wasm_bindgen(js_name = configFields, unchecked_return_type = "ConfigField[]")]
pub fn config_fields() -> Result<JsValue, JsValue> {
    to_js(&fields())
}

/// The config field a flag or query parameter names (camelCase, kebab-case or an alias), or null.
#[wasm_bindgen(js_name = configField, unchecked_return_type = "ConfigField | null")]
pub fn config_field(name: &str) -> Result<JsValue, JsValue> {
    to_js(&canonical_field(name).and_then(|n| fields().into_iter().find(|f| f.name == n)))
}

/// The config object that text pairs stand for — CLI flags, URL query parameters: names in
/// camelCase or kebab-case, values as text (booleans also on/off, yes/no, 1/0 or empty; lists
/// comma-separated; `layerBitWidths` as `glob=bits,…`). Not validated: pass it to
/// `resolveConfig` or a quantizer, which names any bad field.
#[wasm_bindgen(js_name = configFromText, unchecked_return_type = "QuantConfigInput")]
pub fn config_from_text(
    #[wasm_bindgen(unchecked_param_type = "[string, string][]")] pairs: JsValue,
) -> Result<JsValue, JsValue> {
    let pairs: Vec<(String, String)> =
        serde_json::from_value(json_of(pairs, "config", "[name, text] pairs of strings")?)
            .map_err(|e| AqError::config("config", "<pairs>", format!("[name, text] pairs of strings ({e})")))?;
    to_js(&input_from_text(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?)
}

/// Library version and build flavour.
#[wasm_bindgen(js_name = buildInfo, unchecked_return_type = "BuildInfo")]
pub fn build_info() -> Result<JsValue, JsValue> {
    to_js(&types::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        format_version: crate::format::parquet::schema::FORMAT_VERSION.to_string(),
        simd: cfg!(target_feature = "simd128"),
        threads: crate::parallel::available(),
        kernels: crate::kernels::active().name.to_string(),
    })
}

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

/// Current size of the wasm linear memory in bytes (it only grows; after a run this is the peak).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}

/// Bytes to read from the start of a safetensors file to get its whole header, given at least
/// its first 8 bytes.
#[wasm_bindgen(js_name = safetensorsHeaderSize)]
pub fn safetensors_header_size(prefix: &[u8]) -> Result<f64, JsValue> {
    Ok(safetensors::header_size(prefix)? as f64)
}

/// Parse a safetensors header without quantizing anything (tensor list, dtypes, offsets).
#[wasm_bindgen(js_name = readSafetensorsHeader, unchecked_return_type = "SafetensorsHeader")]
pub fn read_safetensors_header(
    header_bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "number | undefined")] file_size: Option<f64>,
) -> Result<JsValue, JsValue> {
    header_to_js(&safetensors::parse_header(header_bytes, super::convert::file_size(file_size)?)?)
}

/// Several safetensors shards seen as one file (see `format::shards`): `shards` is
/// `[{ name, size, header }]` with `header` holding at least each file's whole header, `index`
/// the parsed `model.safetensors.index.json` (optional). Returns `{ header, size, segments,
/// shards }`: the virtual file's header bytes, its size, and where each byte range of its data
/// lives (`{ start, end, shard, offset }`, `shard` indexing the list as given).
#[wasm_bindgen(js_name = mergeShards, unchecked_return_type = "MergedShards")]
pub fn merge_shards(
    #[wasm_bindgen(unchecked_param_type = "{ name: string; size: number; header: Uint8Array }[]")] shards: JsValue,
    #[wasm_bindgen(unchecked_param_type = "object | undefined")] index: JsValue,
) -> Result<JsValue, JsValue> {
    let list =
        shards.dyn_into::<js_sys::Array>().map_err(|_| AqError::Safetensors("shards must be an array".into()))?;
    let mut given = Vec::new();
    for (k, item) in list.iter().enumerate() {
        let get = |key: &str| Reflect::get(&item, &key.into()).ok().filter(|v| !v.is_undefined());
        let bad = || AqError::Safetensors(format!("shards[{k}] must be {{ name, size, header: Uint8Array }}"));
        let name = get("name").and_then(|v| v.as_string()).ok_or_else(bad)?;
        let size = get("size").and_then(|v| v.as_f64()).filter(|n| n.is_finite() && *n >= 0.0).ok_or_else(bad)?;
        let header = get("header").and_then(|v| v.dyn_into::<Uint8Array>().ok()).ok_or_else(bad)?.to_vec();
        given.push((name, size as u64, header));
    }
    let index = optional(index).map(|v| json_of(v, "index", "the parsed index JSON")).transpose()?;
    let headers: Vec<ShardHeader> =
        given.iter().map(|(name, size, header)| ShardHeader { name, size: *size, header }).collect();
    let merged = shards::merge_shards(&headers, index.as_ref())?;
    let o = Object::new();
    set(&o, "header", &Uint8Array::from(merged.header.as_slice()).into());
    set(&o, "size", &(merged.size as f64).into());
    set(&o, "segments", &to_js(&merged.segments)?);
    set(&o, "shards", &to_js(&merged.shards)?);
    Ok(o.into())
}
