//! An arrowquant Parquet file read by byte range (`parquetTailNeeds` / `openQuantizedIndex`):
//! the footer from the file's last bytes, then the body in segments of whole row groups, each
//! checked as it arrives. A first pass (`scan`) lists the tensors and checks the body's checksum;
//! dequantizing, exporting to safetensors or converting to GGUF then reads the segments again, so
//! memory holds the footer, the tensor list and one segment.

use bytes::Bytes;
use js_sys::{Array, Object, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::error::AqError;
use crate::format::parquet::pages::DecodeBudget;
use crate::format::parquet::ranged::{tail_needs, BodyCheck, FileIndex};
use crate::format::parquet::reader::{parse_export_dtype, QuantizedFile as CoreFile};
use crate::format::parquet::{Stored, TensorRow};
use crate::pipeline::convert::GgufPlan;
use crate::pipeline::report::LayerReport;
use crate::pipeline::summary::layer_report;

use super::convert::{bytes_to_js, file_size, set, to_js};
use super::types;

/// How many last bytes of a Parquet file of `fileLength` bytes its footer needs (from at least
/// its last 8; `E_PARQUET` when they are not a Parquet footer).
#[wasm_bindgen(js_name = parquetTailNeeds)]
pub fn parquet_tail_needs(tail: &[u8], file_length: f64) -> Result<f64, JsValue> {
    Ok(tail_needs(tail, file_size(Some(file_length))?.unwrap_or(0))? as f64)
}

/// An arrowquant Parquet file read by range.
#[wasm_bindgen]
pub struct QuantizedIndex {
    index: FileIndex,
    /// The rows scanned so far without their bulk data (codes and params).
    rows: Vec<TensorRow>,
    reports: Vec<LayerReport>,
    /// The segment each scanned row is in.
    segment_of: Vec<usize>,
    body: Option<BodyCheck>,
    scanned: usize,
}

/// Open a Parquet file of `fileLength` bytes by range from its last bytes (`parquetTailNeeds`
/// of them): the footer and the arrowquant metadata are checked (`E_PARQUET`).
#[wasm_bindgen(js_name = openQuantizedIndex)]
pub fn open_quantized_index(tail: &[u8], file_length: f64) -> Result<QuantizedIndex, JsValue> {
    let index = FileIndex::open(tail, file_size(Some(file_length))?.unwrap_or(0))?;
    let body = Some(index.body_check());
    Ok(QuantizedIndex { index, rows: Vec::new(), reports: Vec::new(), segment_of: Vec::new(), body, scanned: 0 })
}

impl QuantizedIndex {
    fn rows_of(&self, i: usize, bytes: Vec<u8>) -> Result<Vec<TensorRow>, JsValue> {
        if i >= self.index.segments.len() {
            return Err(AqError::State(format!("no segment {i}")).into());
        }
        let mut budget = DecodeBudget::for_input(bytes.len() as u64);
        Ok(self.index.rows_in(i, Bytes::from(bytes), &mut budget)?)
    }

    fn scanned(&self) -> Result<(), JsValue> {
        match self.body {
            None => Ok(()),
            Some(_) => Err(AqError::State("scan every segment, then finishScan(), first".into()).into()),
        }
    }

    /// The file with `rows` (those of one segment) as a whole-file reader holds it.
    fn file_with(&self, rows: Vec<TensorRow>) -> CoreFile {
        CoreFile { rows, ..self.index.header.clone() }
    }
}

#[wasm_bindgen]
impl QuantizedIndex {
    /// `[{ start, end }]`: the body's byte ranges, each whole row groups, in file order.
    #[wasm_bindgen(unchecked_return_type = "{ start: number, end: number }[]")]
    pub fn segments(&self) -> JsValue {
        let list = Array::new();
        for s in &self.index.segments {
            let o = Object::new();
            set(&o, "start", &(s.start as f64).into());
            set(&o, "end", &(s.end as f64).into());
            list.push(&o);
        }
        list.into()
    }

    /// First pass: segment `i`'s bytes (segments in order, each once): its pages and rows are
    /// checked and its tensors listed.
    pub fn scan(&mut self, i: usize, bytes: Vec<u8>) -> Result<(), JsValue> {
        if i != self.scanned {
            return Err(AqError::State(format!("segment {} is next, not {i}", self.scanned)).into());
        }
        let body = self.body.as_mut().ok_or_else(|| JsValue::from(AqError::State("already scanned".into())))?;
        body.update(&self.index.segments[i], &bytes)?;
        for mut row in self.rows_of(i, bytes)? {
            self.reports.push(layer_report(&row, &row.source_info()));
            row.data = Vec::new();
            if let Stored::Quantized { scales, mins, .. } = &mut row.stored {
                (*scales, *mins) = (Vec::new(), Vec::new());
            }
            self.rows.push(row);
            self.segment_of.push(i);
        }
        self.scanned += 1;
        Ok(())
    }

    /// After the last segment: the body matches its checksum and the tensor count.
    #[wasm_bindgen(js_name = finishScan)]
    pub fn finish_scan(&mut self) -> Result<(), JsValue> {
        if self.scanned != self.index.segments.len() {
            return Err(
                AqError::State(format!("{} of {} segments scanned", self.scanned, self.index.segments.len())).into()
            );
        }
        let body = self.body.take().ok_or_else(|| JsValue::from(AqError::State("finishScan() called twice".into())))?;
        body.finish()?;
        Ok(self.index.check_tensor_count(self.rows.len())?)
    }

    /// Format, library version, config, modality and source metadata.
    #[wasm_bindgen(unchecked_return_type = "FileMetadata")]
    pub fn metadata(&self) -> Result<JsValue, JsValue> {
        to_js(&types::FileMetadata::from_file(&self.index.header))
    }

    /// One entry per tensor, in file order (after the scan).
    #[wasm_bindgen(unchecked_return_type = "LayerReport[]")]
    pub fn tensors(&self) -> Result<JsValue, JsValue> {
        self.scanned()?;
        to_js(&self.reports)
    }

    /// The segment holding tensor `name`.
    #[wasm_bindgen(js_name = segmentOf)]
    pub fn segment_of(&self, name: &str) -> Result<usize, JsValue> {
        self.scanned()?;
        let k = self.rows.iter().position(|r| r.name == name);
        k.map(|k| self.segment_of[k])
            .ok_or_else(|| AqError::State(format!("no tensor named '{name}' in this file")).into())
    }

    /// Tensor `name` as f32 from its segment's bytes: in the original weight space, or with
    /// `equalized` the stored W·diag(s) (as `QuantizedFile.dequantize`).
    pub fn dequantize(&self, name: &str, segment: usize, bytes: Vec<u8>, equalized: bool) -> Result<Vec<f32>, JsValue> {
        let file = self.file_with(self.rows_of(segment, bytes)?);
        Ok(if equalized { file.dequantize_equalized(name)? } else { file.dequantize(name)? })
    }

    /// The safetensors header for exporting every tensor as `dtype` ('f32' or 'f16').
    #[wasm_bindgen(js_name = exportHeader)]
    pub fn export_header(&self, dtype: &str) -> Result<Vec<u8>, JsValue> {
        self.scanned()?;
        Ok(self.file_with(self.rows.clone()).export_header(parse_export_dtype(dtype)?)?)
    }

    /// The export's bytes of every tensor in segment `i`, in file order, from its bytes.
    #[wasm_bindgen(js_name = exportSegment)]
    pub fn export_segment(&self, i: usize, bytes: Vec<u8>, dtype: &str) -> Result<Uint8Array, JsValue> {
        let float = parse_export_dtype(dtype)?;
        let file = self.file_with(self.rows_of(i, bytes)?);
        let pieces = file.rows.iter().map(|r| file.export_tensor(&r.name, float)).collect::<Result<Vec<_>, _>>()?;
        Ok(bytes_to_js(&pieces))
    }

    /// The GGUF file's header (`toGguf` by range): every tensor's type and offset planned from
    /// the scan; `E_CONVERT` names a tensor no GGUF type holds exactly.
    #[wasm_bindgen(js_name = ggufPlan)]
    pub fn gguf_plan(&self) -> Result<GgufWriter, JsValue> {
        self.scanned()?;
        Ok(GgufWriter { plan: GgufPlan::new(&self.file_with(self.rows.clone()))? })
    }
}

/// Parquet → GGUF by range: `header()`, then `segment(index, i, bytes)` for every segment in order.
#[wasm_bindgen]
pub struct GgufWriter {
    plan: GgufPlan,
}

#[wasm_bindgen]
impl GgufWriter {
    pub fn header(&self) -> Uint8Array {
        Uint8Array::from(self.plan.header())
    }

    /// The GGUF bytes of the tensors of segment `i` of `index`, from its bytes.
    pub fn segment(&self, index: &QuantizedIndex, i: usize, bytes: Vec<u8>) -> Result<Uint8Array, JsValue> {
        let rows = index.rows_of(i, bytes)?;
        let pieces = rows.iter().map(|r| self.plan.tensor(r)).collect::<Result<Vec<_>, _>>()?;
        Ok(bytes_to_js(&pieces))
    }
}
