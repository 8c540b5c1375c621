//! GGUF output: a whole file in memory (`quantizeModelGguf`) or streamed (`GgufQuantizer`).

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use crate::error::AqError;
use crate::pipeline::gguf::{self, quantize_model_gguf, GgufOptions};
use crate::policy::config::QuantConfig;
use crate::policy::gguf_mix::GgufMix;

use super::convert::{calibration_from_js, clock, file_size, json_of, optional, set, to_js};

/// The config fields a GGUF run takes; the others describe the Parquet format.
const GGUF_CONFIG_FIELDS: &[&str] = &["layerBitWidths", "targetSizeMb", "gptq", "gptqDamp", "gptqActOrder"];

/// GGUF options from JS: calibration (bytes or an object) and `{ layerBitWidths, targetSizeMb,
/// gptq, gptqDamp, gptqActOrder }`, validated as the config validates them; any other config
/// field is `E_CONFIG`.
fn gguf_options(calibration: JsValue, config: JsValue) -> Result<GgufOptions, JsValue> {
    let calibration = optional(calibration).map(|c| calibration_from_js(&c)).transpose()?;
    let Some(config) = optional(config) else {
        return Ok(GgufOptions { calibration, clock, ..Default::default() });
    };
    let value = json_of(config, "config", "a plain JSON-like object")?;
    if let Some(obj) = value.as_object() {
        if let Some((k, v)) = obj.iter().find(|(k, _)| !GGUF_CONFIG_FIELDS.contains(&k.as_str())) {
            let shown: String = v.to_string().chars().take(60).collect();
            return Err(AqError::config(
                k,
                shown,
                "not for GGUF output: it takes layerBitWidths, targetSizeMb, gptq, gptqDamp and gptqActOrder (the other fields describe the Parquet format)",
            )
            .into());
        }
    }
    let cfg = QuantConfig::from_json(&value)?;
    Ok(GgufOptions { clock, ..GgufOptions::from_config(calibration, cfg) })
}

/// Quantize a whole safetensors file held in memory into a GGUF file of `ggmlType` (`Q8_0`,
/// `Q4_0`, …; docs/GGUF.md). `calibration` (docs/CALIBRATION.md), when given, codes each layer
/// that has a Gram matrix by GPTQ and weights the other block searches by the layer's input
/// second moments, as llama.cpp's importance matrix; `config` (`{ layerBitWidths, targetSizeMb,
/// gptq, gptqDamp, gptqActOrder }`) changes types and GPTQ (docs/GGUF.md). Returns `{ gguf, report }`.
#[wasm_bindgen(js_name = quantizeModelGguf, unchecked_return_type = "{ gguf: Uint8Array, report: GgufReport }")]
pub fn quantize_model_gguf_js(
    bytes: &[u8],
    #[wasm_bindgen(js_name = ggmlType, unchecked_param_type = "GgmlTypeName")] ggml_type: &str,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput | null | undefined")] calibration: JsValue,
    #[wasm_bindgen(unchecked_param_type = "GgufConfigInput | null | undefined")] config: JsValue,
) -> Result<JsValue, JsValue> {
    let mix = GgufMix::parse(ggml_type)?;
    let (out, report) = quantize_model_gguf(bytes, mix, gguf_options(calibration, config)?)?;
    let o = js_sys::Object::new();
    set(&o, "gguf", &Uint8Array::from(out.as_slice()).into());
    set(&o, "report", &to_js(&report)?);
    Ok(o.into())
}

/// Streaming GGUF writer: `new GgufQuantizer(headerBytes, fileSize, ggmlType, calibration?, config?)`
/// (`config`: `{ layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder }`), then `takeHeader()`
/// (the output's first bytes), then while `nextTensor()` names one, its bytes `[start, end)` of
/// the source to `addTensor(name, bytes)` (the output's next bytes), then `finish()` (the report).
#[wasm_bindgen]
pub struct GgufQuantizer {
    inner: Option<gguf::GgufQuantizer>,
    header: Vec<u8>,
}

#[wasm_bindgen]
impl GgufQuantizer {
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = headerBytes)] header_bytes: &[u8],
        #[wasm_bindgen(js_name = fileSize)] file_size_bytes: Option<f64>,
        #[wasm_bindgen(js_name = ggmlType, unchecked_param_type = "GgmlTypeName")] ggml_type: &str,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | CalibrationInput | null | undefined")] calibration: JsValue,
        #[wasm_bindgen(unchecked_param_type = "GgufConfigInput | null | undefined")] config: JsValue,
    ) -> Result<GgufQuantizer, JsValue> {
        let mix = GgufMix::parse(ggml_type)?;
        let options = gguf_options(calibration, config)?;
        let (inner, header) = gguf::GgufQuantizer::begin(header_bytes, file_size(file_size_bytes)?, mix, options)?;
        Ok(GgufQuantizer { inner: Some(inner), header })
    }

    fn run(&mut self) -> Result<&mut gguf::GgufQuantizer, JsValue> {
        self.inner.as_mut().ok_or_else(|| AqError::State("this GgufQuantizer has finished".into()).into())
    }

    /// The GGUF header (tensor infos and offsets included); the output's first bytes.
    #[wasm_bindgen(js_name = takeHeader)]
    pub fn take_header(&mut self) -> Uint8Array {
        Uint8Array::from(std::mem::take(&mut self.header).as_slice())
    }

    /// Bytes of the whole output, known from the header.
    #[wasm_bindgen(getter, js_name = outputBytes)]
    pub fn output_bytes(&mut self) -> Result<f64, JsValue> {
        Ok(self.run()?.output_len() as f64)
    }

    /// How many tensors the output holds.
    #[wasm_bindgen(getter, js_name = tensorCount)]
    pub fn tensor_count(&mut self) -> Result<u32, JsValue> {
        Ok(self.run()?.header().tensors.len() as u32)
    }

    /// `{ name, start, end }`: the next tensor to add and its byte range in the source file; null
    /// when every tensor has been added.
    #[wasm_bindgen(js_name = nextTensor, unchecked_return_type = "{ name: string, start: number, end: number } | null")]
    pub fn next_tensor(&mut self) -> Result<JsValue, JsValue> {
        let q = self.run()?;
        let Some(name) = q.next_tensor() else { return Ok(JsValue::NULL) };
        let h = q.header();
        let t = h.find(name).expect("planned from the header");
        let (start, end) = h.file_range(t);
        let o = js_sys::Object::new();
        set(&o, "name", &name.into());
        set(&o, "start", &(start as f64).into());
        set(&o, "end", &(end as f64).into());
        Ok(o.into())
    }

    /// Quantize the next tensor; returns `{ bytes, layer }` — the output's next bytes and the
    /// tensor's report line.
    #[wasm_bindgen(js_name = addTensor, unchecked_return_type = "{ bytes: Uint8Array, layer: GgufLayer }")]
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<JsValue, JsValue> {
        let (out, layer) = self.run()?.add_tensor(name, bytes)?;
        let o = js_sys::Object::new();
        set(&o, "bytes", &Uint8Array::from(out.as_slice()).into());
        set(&o, "layer", &to_js(&layer)?);
        Ok(o.into())
    }

    /// The report, once every tensor has been added.
    #[wasm_bindgen(unchecked_return_type = "GgufReport")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        let q = self.inner.take().ok_or_else(|| JsValue::from(AqError::State("finish() called twice".into())))?;
        to_js(&q.finish()?)
    }
}

/// A GGUF file opened for reading (ours or another writer's): `openGguf(bytes)`.
#[wasm_bindgen]
pub struct GgufFile {
    inner: crate::format::gguf::reader::GgufFile,
}

/// Open a GGUF file held in memory; its header and tensor table are checked (`E_GGUF`).
#[wasm_bindgen(js_name = openGguf)]
pub fn open_gguf(bytes: Vec<u8>) -> Result<GgufFile, JsValue> {
    Ok(GgufFile { inner: crate::format::gguf::reader::GgufFile::open(bytes)? })
}

#[wasm_bindgen]
impl GgufFile {
    /// The metadata: every key with a string or number value (arrays as their type only).
    #[wasm_bindgen(unchecked_return_type = "Record<string, string | number | boolean | number[] | null>")]
    pub fn metadata(&self) -> JsValue {
        use crate::format::gguf::container::Value;
        let o = js_sys::Object::new();
        for (k, v) in &self.inner.header.kv {
            let js: JsValue = match v {
                Value::U32(n) => (*n).into(),
                Value::I32(n) => (*n).into(),
                Value::U64(n) => (*n as f64).into(),
                Value::F32(n) => (*n).into(),
                Value::Bool(b) => (*b).into(),
                Value::String(s) => s.into(),
                Value::I32Array(a) => a.iter().map(|&d| JsValue::from(d)).collect::<js_sys::Array>().into(),
                Value::Other(_) => JsValue::NULL,
            };
            set(&o, k, &js);
        }
        o.into()
    }

    /// `[{ name, shape, ggmlType, bytes }]` in file order.
    #[wasm_bindgen(unchecked_return_type = "{ name: string, shape: number[], ggmlType: string, bytes: number }[]")]
    pub fn tensors(&self) -> JsValue {
        let list = js_sys::Array::new();
        for t in &self.inner.tensors {
            let o = js_sys::Object::new();
            set(&o, "name", &t.name.as_str().into());
            let shape: js_sys::Array = t.shape.iter().map(|&d| JsValue::from(d as f64)).collect();
            set(&o, "shape", &shape.into());
            set(&o, "ggmlType", &t.ty.name().into());
            set(&o, "bytes", &((t.end - t.start) as f64).into());
            list.push(&o);
        }
        list.into()
    }

    /// One tensor decoded to float32 (bit-identical to gguf-py's `dequantize`).
    pub fn dequantize(&self, name: &str) -> Result<js_sys::Float32Array, JsValue> {
        Ok(js_sys::Float32Array::from(self.inner.dequantize(name)?.as_slice()))
    }

    /// The file as an arrowquant Parquet file without re-quantizing: block types as `blocks`
    /// rows, every tensor's bytes as stored (docs/FORMAT.md).
    #[wasm_bindgen(js_name = toParquet)]
    pub fn to_parquet(&self) -> Result<Uint8Array, JsValue> {
        let (pieces, _) = crate::pipeline::convert::gguf_to_parquet(&self.inner)?;
        Ok(super::convert::bytes_to_js(&pieces))
    }

    /// The whole file as safetensors of `dtype` ('f32', default, or 'f16').
    #[wasm_bindgen(js_name = toSafetensors)]
    pub fn to_safetensors(&self, dtype: Option<String>) -> Result<Uint8Array, JsValue> {
        let float = crate::format::parquet::reader::parse_export_dtype(dtype.as_deref().unwrap_or("f32"))?;
        Ok(Uint8Array::from(self.inner.export_safetensors(float)?.as_slice()))
    }
}
