//! An opened arrowquant Parquet file: metadata, tensor list, dequantization and export.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::diffusion::timegroups::params_for_timestep;
use crate::error::AqError;
use crate::format::parquet::reader::{parse_export_dtype, QuantizedFile as CoreFile};
use crate::pipeline::summary::layer_report;

use super::convert::{set, to_js};
use super::types;

/// An opened arrowquant Parquet file.
#[wasm_bindgen]
pub struct QuantizedFile {
    inner: CoreFile,
}

/// Open an arrowquant Parquet file held in memory (throws `E_PARQUET` if it is not one).
#[wasm_bindgen(js_name = openQuantized)]
pub fn open_quantized(bytes: Vec<u8>) -> Result<QuantizedFile, JsValue> {
    Ok(QuantizedFile { inner: CoreFile::open(bytes)? })
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
        let list: Vec<_> = self.inner.rows.iter().map(|r| layer_report(r, &r.source_info())).collect();
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
        Ok(if equalized { self.inner.dequantize_equalized(name)? } else { self.inner.dequantize(name)? })
    }

    /// A layer's time groups `[{ tStart, tEnd, scale, zeroPoint }]`, or null without calibration.
    #[wasm_bindgen(js_name = timeGroups, unchecked_return_type = "TimeGroup[] | null")]
    pub fn time_groups(&self, name: &str) -> Result<JsValue, JsValue> {
        to_js(&self.inner.row(name)?.time_groups)
    }

    /// The activation params `{ tStart, tEnd, scale, zeroPoint }` in force at timestep index `t`
    /// (an index into the calibration's timesteps, see `metadata().calibration`). Throws
    /// `E_STATE` for a layer without time groups or a `t` outside them.
    #[wasm_bindgen(js_name = paramsForTimestep, unchecked_return_type = "TimeGroup")]
    pub fn params_for_timestep(&self, name: &str, t: u32) -> Result<JsValue, JsValue> {
        let row = self.inner.row(name)?;
        let Some(groups) = &row.time_groups else {
            return Err(AqError::State(format!("tensor '{name}' has no time groups (no calibration data)")).into());
        };
        match params_for_timestep(groups, t) {
            Some(g) => to_js(g),
            None => Err(AqError::State(format!(
                "tensor '{name}': timestep index {t} is outside its time groups (0..{})",
                groups.last().map_or(0, |g| g.t_end)
            ))
            .into()),
        }
    }

    /// A layer's channel equalization `{ alpha, activationSmoothing, scales: Float32Array }`,
    /// or null when none was applied. Inference divides input channel j by `scales[j]`.
    #[wasm_bindgen(
        unchecked_return_type = "{ alpha: number, activationSmoothing: boolean, channelEqualization: boolean, scales: Float32Array } | null"
    )]
    pub fn spatial(&self, name: &str) -> Result<JsValue, JsValue> {
        let row = self.inner.row(name)?;
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
        Ok(self.inner.export_header(parse_export_dtype(dtype)?)?)
    }

    /// One tensor's bytes for that export, in header order.
    #[wasm_bindgen(js_name = exportTensor)]
    pub fn export_tensor(&self, name: &str, dtype: &str) -> Result<Vec<u8>, JsValue> {
        Ok(self.inner.export_tensor(name, parse_export_dtype(dtype)?)?)
    }

    /// The file as a GGUF file without re-quantizing: `blocks` rows as their block type, f16
    /// and float/integer raw rows as themselves, 4-bit codes in groups of 32 as `Q4_1`; any
    /// other row is refused (`E_CONVERT`, naming the tensor).
    #[wasm_bindgen(js_name = toGguf)]
    pub fn to_gguf(&self) -> Result<js_sys::Uint8Array, JsValue> {
        let pieces = crate::pipeline::convert::parquet_to_gguf(&self.inner)?;
        Ok(super::convert::bytes_to_js(&pieces))
    }
}
