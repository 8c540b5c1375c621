//! One tensor in, one tensor out: `quantizeTensor` and its inverse `dequantizeTensor`.

use js_sys::{Object, Uint16Array, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::error::AqError;
use crate::format::parquet::Stored;
use crate::format::safetensors::TensorInfo;
use crate::pipeline::{quantize_layer, summary::layer_report};
use crate::policy::config::ALLOWED_GROUP_SIZES;
use crate::quant::layout::Layout;
use crate::quant::tensor::dequantize_parts;
use crate::quant::width::Width;
use crate::Dtype;

use super::convert::{config_from_js, set, to_js};

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
    let shape = shape_from_js(&shape)?;
    if Layout::checked(&shape, 1).map(|l| l.numel()) != Some(values.len()) || shape.len() < 2 {
        return Err(AqError::config(
            "shape",
            format!("{shape:?}"),
            format!("at least 2 dimensions whose product is the number of values ({})", values.len()),
        )
        .into());
    }
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let info = TensorInfo { name: "tensor".into(), dtype: Dtype::F32, shape, begin: 0, end: bytes.len() as u64 };
    let outcome = quantize_layer(&cfg, &info, &bytes, Default::default())?;
    let row = &outcome.row;
    let o = Object::new();
    set(&o, "storage", &row.stored.storage().as_str().into());
    set(&o, "bits", &row.stored.bits().map_or(JsValue::NULL, |b| b.into()));
    set(&o, "groupSize", &row.stored.group_size().map_or(JsValue::NULL, |g| g.into()));
    set(&o, "codes", &Uint8Array::from(row.data.as_slice()).into());
    let (scales, mins) = match &row.stored {
        Stored::Quantized { scales, mins, .. } => {
            (Uint16Array::from(scales.as_slice()).into(), Uint16Array::from(mins.as_slice()).into())
        }
        _ => (JsValue::NULL, JsValue::NULL),
    };
    set(&o, "scales", &scales);
    set(&o, "mins", &mins);
    set(&o, "report", &to_js(&layer_report(row, &info))?);
    Ok(o.into())
}

/// A shape from JS: every dimension a non-negative integer (at most 2^53), not truncated or wrapped.
fn shape_from_js(shape: &[f64]) -> Result<Vec<u64>, JsValue> {
    const SAFE: f64 = 9_007_199_254_740_992.0;
    if let Some((k, d)) = shape.iter().enumerate().find(|(_, d)| !(d.fract() == 0.0 && (0.0..=SAFE).contains(*d))) {
        return Err(AqError::config(&format!("shape[{k}]"), d, "a non-negative integer").into());
    }
    Ok(shape.iter().map(|&d| d as u64).collect())
}

/// Reconstruct values from `quantizeTensor` output (the same formula the file reader uses).
#[wasm_bindgen(js_name = dequantizeTensor)]
pub fn dequantize_tensor(
    codes: &[u8],
    scales: &[u16],
    mins: &[u16],
    #[wasm_bindgen(unchecked_param_type = "number[]")] shape: Vec<f64>,
    #[wasm_bindgen(unchecked_param_type = "2 | 4 | 8")] bits: f64,
    #[wasm_bindgen(js_name = groupSize, unchecked_param_type = "32 | 64 | 128 | 256")] group_size: f64,
) -> Result<Vec<f32>, JsValue> {
    let shape = shape_from_js(&shape)?;
    // Numbers, not u8/u32 parameters: those would wrap 260 to 4 before we could see it.
    let width = Width::ALL.into_iter().find(|w| w.bits() as f64 == bits);
    let group = ALLOWED_GROUP_SIZES.iter().copied().find(|&g| g as f64 == group_size);
    let (Some(width), Some(group)) = (width, group) else {
        return Err(AqError::config(
            "bits/groupSize",
            format!("{bits}/{group_size}"),
            "2, 4 or 8 / 32, 64, 128 or 256",
        )
        .into());
    };
    let layout = Layout::checked(&shape, group as usize)
        .ok_or_else(|| AqError::config("shape", format!("{shape:?}"), "a shape whose element count fits in memory"))?;
    if codes.len() != layout.codes_len(width) || scales.len() != layout.groups() || mins.len() != layout.groups() {
        return Err(AqError::config(
            "codes/scales/mins",
            format!("{}/{}/{} values", codes.len(), scales.len(), mins.len()),
            format!("{}/{}/{} for shape {shape:?}", layout.codes_len(width), layout.groups(), layout.groups()),
        )
        .into());
    }
    let mut out = vec![0f32; layout.numel()];
    dequantize_parts(width, layout, codes, scales, mins, &mut out);
    Ok(out)
}
