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
