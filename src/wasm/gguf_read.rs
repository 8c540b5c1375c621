//! Reading GGUF files (ours or another writer's): whole in memory (`openGguf`), or by range
//! (`ggufHeaderNeeds` / `openGgufIndex`): the header from the first bytes, then each tensor from
//! its own bytes, so inspecting, dequantizing or converting a file larger than memory holds one
//! tensor at a time.

use js_sys::{Array, Float32Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::error::AqError;
use crate::format::gguf::container::{parse_header_prefix, HeaderPrefix, Value};
use crate::format::gguf::reader::{GgufFile as CoreFile, GgufIndex as CoreIndex};
use crate::format::parquet::reader::parse_export_dtype;
use crate::pipeline::convert::{gguf_to_parquet, GgufToParquet};

use super::convert::{bytes_to_js, file_size, set};

/// Every metadata key with a string or number value (other arrays as null).
fn metadata_js(index: &CoreIndex) -> JsValue {
    let o = Object::new();
    for (k, v) in &index.header.kv {
        let js: JsValue = match v {
            Value::U32(n) => (*n).into(),
            Value::I32(n) => (*n).into(),
            Value::U64(n) => (*n as f64).into(),
            Value::F32(n) => (*n).into(),
            Value::Bool(b) => (*b).into(),
            Value::String(s) => s.into(),
            Value::I32Array(a) => a.iter().map(|&d| JsValue::from(d)).collect::<Array>().into(),
            Value::Other(_) => JsValue::NULL,
        };
        set(&o, k, &js);
    }
    o.into()
}

/// `[{ name, shape, ggmlType, bytes, start, end }]` in file order (`start`/`end`: the tensor's
/// byte range in the file).
fn tensors_js(index: &CoreIndex) -> JsValue {
    let list = Array::new();
    for t in &index.tensors {
        let o = Object::new();
        set(&o, "name", &t.name.as_str().into());
        let shape: Array = t.shape.iter().map(|&d| JsValue::from(d as f64)).collect();
        set(&o, "shape", &shape.into());
        set(&o, "ggmlType", &t.ty.name().into());
        set(&o, "bytes", &((t.end - t.start) as f64).into());
        set(&o, "start", &(t.start as f64).into());
        set(&o, "end", &(t.end as f64).into());
        list.push(&o);
    }
    list.into()
}

/// A GGUF file opened for reading (ours or another writer's): `openGguf(bytes)`.
#[wasm_bindgen]
pub struct GgufFile {
    inner: CoreFile,
}

/// Open a GGUF file held in memory; its header and tensor table are checked (`E_GGUF`).
#[wasm_bindgen(js_name = openGguf)]
pub fn open_gguf(bytes: Vec<u8>) -> Result<GgufFile, JsValue> {
    Ok(GgufFile { inner: CoreFile::open(bytes)? })
}

#[wasm_bindgen]
impl GgufFile {
    /// The metadata: every key with its value (arrays other than i32 ones as null).
    #[wasm_bindgen(unchecked_return_type = "Record<string, string | number | boolean | number[] | null>")]
    pub fn metadata(&self) -> JsValue {
        metadata_js(&self.inner.index)
    }

    /// `[{ name, shape, ggmlType, bytes, start, end }]` in file order.
    #[wasm_bindgen(
        unchecked_return_type = "{ name: string, shape: number[], ggmlType: string, bytes: number, start: number, end: number }[]"
    )]
    pub fn tensors(&self) -> JsValue {
        tensors_js(&self.inner.index)
    }

    /// One tensor decoded to float32 (bit-identical to gguf-py's `dequantize`).
    pub fn dequantize(&self, name: &str) -> Result<Float32Array, JsValue> {
        Ok(Float32Array::from(self.inner.dequantize(name)?.as_slice()))
    }

    /// The file as an arrowquant Parquet file without re-quantizing: block types as `blocks`
    /// rows, every tensor's bytes as stored (docs/FORMAT.md).
    #[wasm_bindgen(js_name = toParquet)]
    pub fn to_parquet(&self) -> Result<Uint8Array, JsValue> {
        let (pieces, _) = gguf_to_parquet(&self.inner)?;
        Ok(bytes_to_js(&pieces))
    }

    /// The whole file as safetensors of `dtype` ('f32', default, or 'f16').
    #[wasm_bindgen(js_name = toSafetensors)]
    pub fn to_safetensors(&self, dtype: Option<String>) -> Result<Uint8Array, JsValue> {
        let float = parse_export_dtype(dtype.as_deref().unwrap_or("f32"))?;
        Ok(Uint8Array::from(self.inner.export_safetensors(float)?.as_slice()))
    }
}

/// How many first bytes of a GGUF file of `fileLength` bytes its header needs: 0 when `prefix`
/// holds it, else more than `prefix.length` (`E_GGUF` for a header that lies about its sizes or
/// is longer than 256 MiB).
#[wasm_bindgen(js_name = ggufHeaderNeeds)]
pub fn gguf_header_needs(prefix: &[u8], file_length: f64) -> Result<f64, JsValue> {
    let len = file_size(Some(file_length))?.unwrap_or(0);
    Ok(match parse_header_prefix(prefix, len)? {
        HeaderPrefix::Complete(_) => 0.0,
        HeaderPrefix::NeedsBytes(n) => n as f64,
    })
}

/// A GGUF file's header and tensor table, read from its first bytes (`ggufHeaderNeeds` says how
/// many); each tensor is then read by its byte range and handed in.
#[wasm_bindgen]
pub struct GgufIndex {
    inner: CoreIndex,
}

/// Open the index of a GGUF file of `fileLength` bytes from its first bytes (`E_GGUF` when they
/// do not hold the whole header, or it is damaged).
#[wasm_bindgen(js_name = openGgufIndex)]
pub fn open_gguf_index(prefix: &[u8], file_length: f64) -> Result<GgufIndex, JsValue> {
    let len = file_size(Some(file_length))?.unwrap_or(0);
    match parse_header_prefix(prefix, len)? {
        HeaderPrefix::Complete(header) => Ok(GgufIndex { inner: CoreIndex::new(header, len)? }),
        HeaderPrefix::NeedsBytes(n) => Err(AqError::Gguf(format!(
            "the header needs the first {n} bytes; {} were given (ggufHeaderNeeds says how many)",
            prefix.len()
        ))
        .into()),
    }
}

#[wasm_bindgen]
impl GgufIndex {
    /// The metadata: every key with its value (arrays other than i32 ones as null).
    #[wasm_bindgen(unchecked_return_type = "Record<string, string | number | boolean | number[] | null>")]
    pub fn metadata(&self) -> JsValue {
        metadata_js(&self.inner)
    }

    /// `[{ name, shape, ggmlType, bytes, start, end }]` in file order: read `[start, end)` of the
    /// file for a tensor's bytes.
    #[wasm_bindgen(
        unchecked_return_type = "{ name: string, shape: number[], ggmlType: string, bytes: number, start: number, end: number }[]"
    )]
    pub fn tensors(&self) -> JsValue {
        tensors_js(&self.inner)
    }

    /// Tensor `name` decoded to float32 from its stored `bytes` (bit-identical to gguf-py).
    pub fn dequantize(&self, name: &str, bytes: &[u8]) -> Result<Float32Array, JsValue> {
        Ok(Float32Array::from(self.inner.tensor(name)?.dequantize(bytes)?.as_slice()))
    }

    /// The header of the file as safetensors of `dtype` ('f32', default, or 'f16'); each tensor's
    /// bytes follow in file order (`safetensorsTensor`).
    #[wasm_bindgen(js_name = safetensorsHeader)]
    pub fn safetensors_header(&self, dtype: Option<String>) -> Result<Uint8Array, JsValue> {
        let float = parse_export_dtype(dtype.as_deref().unwrap_or("f32"))?;
        Ok(Uint8Array::from(self.inner.safetensors_header(float)?.as_slice()))
    }

    /// Tensor `name`'s values as `dtype` bytes, from its stored `bytes`.
    #[wasm_bindgen(js_name = safetensorsTensor)]
    pub fn safetensors_tensor(&self, name: &str, bytes: &[u8], dtype: Option<String>) -> Result<Uint8Array, JsValue> {
        let float = parse_export_dtype(dtype.as_deref().unwrap_or("f32"))?;
        Ok(Uint8Array::from(self.inner.tensor(name)?.export(bytes, float)?.as_slice()))
    }

    /// A writer of the file as an arrowquant Parquet file: `add(name, bytes)` per tensor, then
    /// `finish()`.
    #[wasm_bindgen(js_name = parquetWriter)]
    pub fn parquet_writer(&self) -> Result<GgufParquetWriter, JsValue> {
        Ok(GgufParquetWriter { index: self.inner.clone(), inner: Some(GgufToParquet::new(&self.inner)?) })
    }
}

/// GGUF → Parquet, tensor by tensor (`GgufIndex.parquetWriter()`).
#[wasm_bindgen]
pub struct GgufParquetWriter {
    index: CoreIndex,
    inner: Option<GgufToParquet>,
}

#[wasm_bindgen]
impl GgufParquetWriter {
    /// Add tensor `name` from its stored `bytes`; returns the Parquet bytes finished so far.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<Uint8Array, JsValue> {
        let w = self.inner.as_mut().ok_or_else(|| JsValue::from(AqError::State("add() after finish()".into())))?;
        let t = self.index.tensor(name)?;
        Ok(bytes_to_js(&w.add(t, bytes)?))
    }

    /// The rest of the file.
    pub fn finish(&mut self) -> Result<Uint8Array, JsValue> {
        let w = self.inner.take().ok_or_else(|| JsValue::from(AqError::State("finish() called twice".into())))?;
        Ok(bytes_to_js(&w.finish()?.0))
    }
}
