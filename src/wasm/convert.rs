//! Conversions between JS values and the core's types, and the one conversion of core errors
//! into JS `Error`s.

use js_sys::{Object, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::diffusion::calibration::Calibration;
use crate::error::AqError;
use crate::format::safetensors::Header;
use crate::policy::config::QuantConfig;

use super::types;

/// Core error → JS `Error` with a stable `code`, plus `field` and `detail` (the message without
/// its "invalid config: " prefix, for forms) for config errors and `tensor` when one is at fault.
impl From<AqError> for JsValue {
    fn from(e: AqError) -> JsValue {
        let err = js_sys::Error::new(&e.to_string());
        let obj: &JsValue = err.as_ref();
        let _ = Reflect::set(obj, &"code".into(), &e.code().into());
        if let AqError::Config { field, value, expected } = &e {
            let _ = Reflect::set(obj, &"field".into(), &field.into());
            let _ = Reflect::set(obj, &"detail".into(), &format!("{field} = {value}: {expected}").into());
        }
        if let Some(t) = e.tensor() {
            let _ = Reflect::set(obj, &"tensor".into(), &t.into());
        }
        err.into()
    }
}

pub fn clock() -> f64 {
    js_sys::Date::now() / 1000.0
}

pub fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    v.serialize(&ser).map_err(|e| AqError::State(format!("internal: cannot convert result: {e}")).into())
}

pub fn set(obj: &Object, key: &str, v: &JsValue) {
    let _ = Reflect::set(obj, &key.into(), v);
}

fn is_absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// A JS value as JSON, for the core's readers of the input forms.
pub fn json_of(v: JsValue, field: &str, expected: &str) -> Result<serde_json::Value, JsValue> {
    serde_wasm_bindgen::from_value(v)
        .map_err(|e| AqError::config(field, "<object>", format!("{expected} ({e})")).into())
}

/// JS config object (or undefined) → validated core config.
pub fn config_from_js(config: JsValue) -> Result<QuantConfig, JsValue> {
    if is_absent(&config) {
        return Ok(QuantConfig::from_profile(crate::Profile::Local));
    }
    Ok(QuantConfig::from_json(&json_of(config, "config", "a plain JSON-like object")?)?)
}

/// An optional argument: `None` when undefined or null.
pub fn optional(v: JsValue) -> Option<JsValue> {
    (!is_absent(&v)).then_some(v)
}

/// Calibration statistics from JS: a Uint8Array/ArrayBuffer holding the calibration safetensors
/// file (or JSON text), or a plain object `{ timesteps, layers }` (docs/CALIBRATION.md).
pub fn calibration_from_js(v: &JsValue) -> Result<Calibration, JsValue> {
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Calibration::from_bytes(&bytes.to_vec())?);
    }
    if let Some(buf) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Calibration::from_bytes(&Uint8Array::new(buf).to_vec())?);
    }
    if !v.is_object() {
        return Err(AqError::Calibration(
            "expected a Uint8Array (calibration safetensors file) or an object { timesteps, layers }".to_string(),
        )
        .into());
    }
    let value: serde_json::Value = serde_wasm_bindgen::from_value(v.clone())
        .map_err(|e| AqError::Calibration(format!("not a plain JSON-like object ({e})")))?;
    Ok(Calibration::from_json(&value)?)
}

/// One JS `Uint8Array` holding the pieces back to back (copied straight out of wasm memory).
pub fn bytes_to_js(chunks: &[Vec<u8>]) -> Uint8Array {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let out = Uint8Array::new_with_length(total as u32);
    let mut at = 0u32;
    for c in chunks {
        out.subarray(at, at + c.len() as u32).copy_from(c);
        at += c.len() as u32;
    }
    out
}

pub fn header_to_js(h: &Header) -> Result<JsValue, JsValue> {
    to_js(&types::SafetensorsHeader::from_core(h))
}

/// `{ parquet, report }`.
pub fn result_object(parquet: &[Vec<u8>], report: &crate::ModelReport) -> Result<JsValue, JsValue> {
    let o = Object::new();
    set(&o, "parquet", &bytes_to_js(parquet).into());
    set(&o, "report", &to_js(report)?);
    Ok(o.into())
}
