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

/// How deeply a JS input may nest. Every input form (config, calibration, plan, index) is a few
/// levels deep; the bound keeps a deep or cyclic object from overflowing the wasm stack, which
/// would leave the instance unusable for every later call.
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a JS value is not JSON: the path of the offending part (`a.b[3]`), what was found there
/// and what is allowed.
pub struct NotJson {
    pub path: String,
    pub found: String,
    pub allowed: &'static str,
}

const FINITE: &str = "a finite number (JSON holds no NaN or Infinity)";

/// A JS value as JSON, converted iteratively level by level with at most [`MAX_JSON_DEPTH`]
/// levels: plain objects, arrays, typed arrays, strings, booleans, null (and `undefined`, as
/// null) and finite numbers. NaN, ±Infinity, BigInt, functions and symbols are refused with the
/// path of the value, as are getters that throw.
pub fn json_from_js(v: &JsValue, root: &str) -> Result<serde_json::Value, NotJson> {
    convert_json(v, &mut root.to_string(), 0)
}

fn convert_json(v: &JsValue, path: &mut String, depth: usize) -> Result<serde_json::Value, NotJson> {
    use serde_json::Value;
    fn fail(path: &str, found: String, allowed: &'static str) -> NotJson {
        NotJson { path: path.to_string(), found, allowed }
    }
    fn threw(path: &str, allowed: &'static str) -> NotJson {
        fail(path, "<object>".to_string(), allowed)
    }
    if v.is_undefined() || v.is_null() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = v.as_f64() {
        return number_json(n).ok_or_else(|| fail(path, format!("{n}"), FINITE));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::String(s));
    }
    if v.is_bigint() || v.is_function() || v.is_symbol() || !v.is_object() {
        return Err(fail(
            path,
            format!("{}", js_sys::JsString::from(v.js_typeof())),
            "a JSON value (not a BigInt, function or symbol)",
        ));
    }
    if depth >= MAX_JSON_DEPTH {
        return Err(fail(
            path,
            "<object>".to_string(),
            "at most 32 levels of nesting (MAX_JSON_DEPTH; a cyclic object has no end)",
        ));
    }
    let len = path.len();
    if js_sys::ArrayBuffer::is_view(v) && !v.is_instance_of::<js_sys::DataView>() {
        let items =
            js_array_from(v).map_err(|_| threw(path, "a typed array whose items can be read (reading threw)"))?;
        let mut out = Vec::with_capacity(items.length() as usize);
        for (i, item) in items.iter().enumerate() {
            let n = item.as_f64().unwrap_or(f64::NAN);
            out.push(number_json(n).ok_or_else(|| fail(&format!("{path}[{i}]"), format!("{n}"), FINITE))?);
        }
        return Ok(Value::Array(out));
    }
    let is_array =
        js_static("Array", "isArray", v).map_err(|_| threw(path, "a plain object or array (a revoked Proxy?)"))?;
    if is_array.is_truthy() {
        let items = js_array_from(v).map_err(|_| threw(path, "an array whose items can be read (reading threw)"))?;
        let mut out = Vec::with_capacity(items.length() as usize);
        for (i, item) in items.iter().enumerate() {
            path.push_str(&format!("[{i}]"));
            out.push(convert_json(&item, path, depth + 1)?);
            path.truncate(len);
        }
        return Ok(Value::Array(out));
    }
    let obj: &Object = v.unchecked_ref();
    let mut out = serde_json::Map::new();
    let keys = js_static("Object", "keys", obj)
        .map_err(|_| threw(path, "an object whose keys can be listed (listing them threw)"))?;
    for key in keys.unchecked_into::<js_sys::Array>().iter() {
        let name = key.as_string().unwrap_or_default();
        if path.is_empty() {
            path.push_str(&name);
        } else {
            path.push('.');
            path.push_str(&name);
        }
        let item =
            Reflect::get(obj, &key).map_err(|_| fail(path, "<getter>".to_string(), "a value (reading it threw)"))?;
        if !item.is_undefined() {
            out.insert(name, convert_json(&item, path, depth + 1)?);
        }
        path.truncate(len);
    }
    Ok(Value::Object(out))
}

/// `globalThis[class][method](arg)`, with a throw (a Proxy trap, a revoked Proxy, a getter) returned
/// as `Err` instead of unwinding through wasm: js_sys's own bindings of these functions do not
/// catch, and an exception crossing wasm frames skips the shadow-stack restore.
fn js_static(class: &str, method: &str, arg: &JsValue) -> Result<JsValue, JsValue> {
    let ctor = Reflect::get(&js_sys::global(), &class.into())?;
    let f: js_sys::Function = Reflect::get(&ctor, &method.into())?.dyn_into()?;
    Reflect::apply(&f, &ctor, &js_sys::Array::of1(arg))
}

/// `Array.from(v)`: a real array, whose items can then be read without running user code.
fn js_array_from(v: &JsValue) -> Result<js_sys::Array, JsValue> {
    Ok(js_static("Array", "from", v)?.unchecked_into())
}

/// A JS number as JSON: integers up to 2^53 as integers (so the readers' `as_u64` sees them), other
/// finite numbers as floats; `None` for NaN and ±Infinity, which JSON cannot hold.
fn number_json(n: f64) -> Option<serde_json::Value> {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    if !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() <= SAFE {
        return Some(if n >= 0.0 { (n as u64).into() } else { (n as i64).into() });
    }
    serde_json::Number::from_f64(n).map(serde_json::Value::Number)
}

/// A JS value as JSON for a config-like input: a bad part is `E_CONFIG` naming its path.
pub fn json_of(v: JsValue, field: &str, expected: &str) -> Result<serde_json::Value, JsValue> {
    json_from_js(&v, "").map_err(|e| {
        let at = if e.path.is_empty() { field.to_string() } else { e.path };
        AqError::config(&at, e.found, format!("{} ({expected})", e.allowed)).into()
    })
}

/// JS config object (or undefined) → validated core config.
pub fn config_from_js(config: JsValue) -> Result<QuantConfig, JsValue> {
    if is_absent(&config) {
        return Ok(QuantConfig::from_profile(crate::Profile::Local));
    }
    Ok(QuantConfig::from_json(&json_of(config, "config", "a plain JSON-like object")?)?)
}

/// A file size from JS (`fileSize`, a Content-Length): a non-negative integer, or `E_CONFIG`
/// naming it — never NaN or a fraction quietly truncated to another size.
pub fn file_size(v: Option<f64>) -> Result<Option<u64>, JsValue> {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    match v {
        None => Ok(None),
        Some(n) if n.fract() == 0.0 && (0.0..=SAFE).contains(&n) => Ok(Some(n as u64)),
        Some(n) => Err(AqError::config("fileSize", n, "a whole number of bytes (or undefined)").into()),
    }
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
    let value = json_from_js(v, "")
        .map_err(|e| AqError::Calibration(format!("'{}' = {}: expected {}", e.path, e.found, e.allowed)))?;
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
