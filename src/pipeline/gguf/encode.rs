//! One float tensor's GGUF bytes: decoded, checked, encoded and measured against its source, in
//! chunks on the pool when there is one, merged in chunk order — the same bytes and metrics for
//! any thread count, and never the whole tensor as f32 at once.

use crate::error::Result;
use crate::format::safetensors::TensorInfo;
use crate::quant::dtype::decode_f32;
use crate::quant::ggml::{self, gptq::unit_rows, GgmlType};
use crate::quant::gptq::Prepared;
use crate::quant::metrics::ErrorSums;
use crate::quant::output::{output_sums, OutputSums, Weighting};
use crate::quant::tensor::check_finite;

/// Values per unit of work: whole blocks of every type (a multiple of 256), small enough that a
/// chunk's f32 values and their decode stay in cache.
const CHUNK_VALUES: usize = 1 << 16;

/// How a tensor's blocks are found.
#[derive(Clone, Copy)]
pub enum Encoding<'a> {
    /// The type's block search; with calibration, each value's error weighted by its column's
    /// weight (one per column of a weight row).
    Search(Option<&'a [f32]>),
    /// GPTQ with the layer's prepared Gram matrix; block searches weight column j by
    /// (H_jj + damping)·scale.
    Gptq { prepared: &'a Prepared, damping: f32, scale: f32 },
}

impl<'a> Encoding<'a> {
    /// GPTQ with `prepared`, its block searches weighting column j by (H_jj + mean H) / (max H +
    /// mean H).
    pub fn gptq(prepared: &'a Prepared) -> Self {
        let h = prepared.importance();
        let top = h.iter().fold(0f32, |m, &v| m.max(v));
        let mean = mean(h);
        let scale = if top > 0.0 { 1.0 / (top + mean) } else { 1.0 };
        Encoding::Gptq { prepared, damping: mean, scale }
    }
}

fn mean(h: &[f32]) -> f32 {
    (h.iter().map(|&v| v as f64).sum::<f64>() / h.len().max(1) as f64) as f32
}

/// The block searches' column weights from the importance h: h_j + mean(h), damped so that
/// columns whose inputs the calibration saw near zero still count. On the bundled diffusion
/// models the undamped weights won at the layer outputs but lost at the model's output more
/// often (docs/GGUF.md, `make eval`).
pub fn search_weights(h: &[f32]) -> Vec<f32> {
    let m = mean(h);
    h.iter().map(|&v| v + m).collect()
}

/// A tensor's error against the source: in the weights and, with calibration, at the layer's
/// output.
pub struct Encoded {
    pub sums: ErrorSums,
    pub output: Option<OutputSums>,
}

fn add(a: &mut OutputSums, b: &OutputSums) {
    a.signal += b.signal;
    a.error += b.error;
    a.cross += b.cross;
}

/// Encode tensor `t` (rows of `n` values: its shape after the first dimension) from its source
/// `bytes` as `ty`, appending the blocks to `out` (each chunk's as it is merged: no second copy
/// of the tensor's output) and measuring the layer's output with `measure` when given.
/// `Ok(None)` when GPTQ gave up (a compensated value no longer finite; `out` as it was): the
/// caller searches instead.
pub fn encode(
    t: &TensorInfo,
    bytes: &[u8],
    ty: GgmlType,
    n: usize,
    encoding: Encoding,
    measure: Option<Weighting>,
    out: &mut Vec<u8>,
) -> Result<Option<Encoded>> {
    let count = t.numel() as usize;
    let width = t.dtype.size_bytes();
    // GPTQ and the layer-output sums need whole weight rows, and blocks must stay whole: chunks
    // of units (rows holding whole blocks).
    let whole_rows = matches!(encoding, Encoding::Gptq { .. }) || measure.is_some();
    let chunk = if whole_rows {
        let unit = unit_rows(n, ty) * n;
        unit * (CHUNK_VALUES / unit).max(1)
    } else {
        CHUNK_VALUES
    };
    let starts: Vec<usize> = (0..count).step_by(chunk).collect();
    let encoded = crate::parallel::map(starts, |start| -> Result<Option<(Vec<u8>, ErrorSums, OutputSums)>> {
        let end = (start + chunk).min(count);
        let mut values = vec![0f32; end - start];
        decode_f32(t.dtype, &bytes[start * width..end * width], &mut values);
        check_finite(&t.name, &values, start)?;
        let mut block = Vec::new();
        match encoding {
            Encoding::Search(weights) => {
                // Value i of the tensor multiplies input column i mod n.
                let weights: Option<Vec<f32>> = weights.map(|h| (start..end).map(|i| h[i % n]).collect());
                ggml::quantize(ty, &values, weights.as_deref(), &mut block)?;
            }
            Encoding::Gptq { prepared, damping, scale } => {
                if !ggml::gptq::quantize(ty, &values, prepared, damping, scale, &mut block) {
                    return Ok(None);
                }
            }
        }
        let back = ggml::dequantize(ty, &block, values.len())?;
        let mut s = ErrorSums::default();
        s.add(&values, &back);
        let output = measure.map_or_else(OutputSums::default, |m| output_sums(&values, &back, n, m));
        Ok(Some((block, s, output)))
    });
    let start = out.len();
    let mut sums = ErrorSums::default();
    let mut output = OutputSums::default();
    for chunk in encoded {
        let Some((block, s, o)) = chunk? else {
            out.truncate(start);
            return Ok(None);
        };
        out.extend_from_slice(&block);
        sums.merge(&s);
        add(&mut output, &o);
    }
    Ok(Some(Encoded { sums, output: measure.map(|_| output) }))
}
