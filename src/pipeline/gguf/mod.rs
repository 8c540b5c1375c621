//! The GGUF writer over a safetensors source, tensor by tensor. Every tensor's type comes from its
//! name, dtype and shape (policy/gguf_mix.rs), so the whole header — tensor infos and offsets — is
//! written first, and each tensor's bytes follow as it is quantized: memory is bounded by the
//! largest tensor, as on the Parquet path. Each tensor is measured against its source (the same
//! metrics as the Parquet report).

mod budget;
mod report;

use std::collections::BTreeMap;

pub use report::{GgufCalibrationSummary, GgufLayer, GgufReport};

use budget::{fit_budget, Planned};

use crate::diffusion::calibration::Calibration;
use crate::error::{AqError, Result};
use crate::format::gguf::arch;
use crate::format::gguf::container::{align, encode_header, TensorInfo as GgufTensor, Value, ALIGNMENT};
use crate::format::safetensors::{parse_header, Header};
use crate::pipeline::objective::ColumnStats;
use crate::pipeline::report::ReportWarning;
use crate::policy::gguf_mix::{choose, override_type, GgufMix, TypeRule};
use crate::policy::glob::glob_match;
use crate::quant::dtype::{decode_f32, Dtype};
use crate::quant::ggml::{self, GgmlType};
use crate::quant::metrics::ErrorSums;
use crate::quant::tensor::check_finite;

/// Architectures whose tensors are re-rowed to 256 values when their rows are not whole blocks
/// (3×3 convolutions), as ComfyUI-GGUF's converter does for them; transformers never are.
const RESHAPE_ARCHITECTURES: &[&str] = &["sd1", "sdxl"];

/// Smallest tensor re-rowed (ComfyUI-GGUF's REARRANGE_THRESHOLD).
const RESHAPE_MIN_VALUES: u64 = 512;

/// Values per unit of work: whole blocks of every type (a multiple of 256), small enough that a
/// chunk's f32 values and their decode stay in cache and a tensor is never held as f32 whole.
const CHUNK_VALUES: usize = 1 << 16;

/// Which ggml type a source dtype that is not quantized keeps (integers pass through exactly).
fn integer_type(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::I8 => Some(GgmlType::I8),
        Dtype::I16 => Some(GgmlType::I16),
        Dtype::I32 => Some(GgmlType::I32),
        Dtype::I64 => Some(GgmlType::I64),
        _ => None,
    }
}

/// What a GGUF run takes beyond the mix: calibration (importance-weighted block searches), per-layer
/// widths and a size budget — `layerBitWidths` and `targetSizeMb` of the Parquet config, mapped
/// onto ggml types (policy/gguf_mix.rs).
#[derive(Debug, Clone, Default)]
pub struct GgufOptions {
    pub calibration: Option<Calibration>,
    pub layer_bit_widths: BTreeMap<String, u8>,
    pub target_size_mb: Option<f64>,
}

/// The streaming GGUF writer: `begin` gives the header bytes, `add_tensor` each tensor's bytes in
/// the source's order, `finish` the report.
pub struct GgufQuantizer {
    mix: GgufMix,
    header: Header,
    plan: Vec<Planned>,
    architecture: (String, String),
    header_bytes: u64,
    next: usize,
    layers: Vec<GgufLayer>,
    pooled: ErrorSums,
    calibration: Option<Calibration>,
    /// Σ over the weighted tensors of error/signal at their outputs, and how many.
    output_error_share: (f64, u32),
    warnings: Vec<ReportWarning>,
}

/// Types whose block searches take importance weights (Q8_0's scale is fixed by its extreme).
fn searched(ty: GgmlType) -> bool {
    ty.is_quantized() && ty != GgmlType::Q8_0
}

/// E[x_j²] per column of `name`'s rows (the unfolded input, as the calibration records it),
/// scaled to a maximum of 1 so the searches' f32 sums cannot overflow; with the calibration layer
/// it came from. `None` without usable statistics (no entry, no matching shape, all zero).
fn column_importance(cal: &Calibration, name: &str, shape: &[u64]) -> Option<(Vec<f32>, String)> {
    let (layer, stats) = cal.for_weight(name)?;
    let n = usize::try_from(shape.iter().skip(1).product::<u64>()).ok()?;
    let mut h = ColumnStats::of(shape, stats, n).diagonal?;
    let top = h.iter().fold(0f32, |m, &v| m.max(v));
    if !(top.is_finite() && top > 0.0) || h.iter().any(|v| !v.is_finite()) {
        return None;
    }
    h.iter_mut().for_each(|v| *v /= top);
    Some((h, layer.to_string()))
}

impl GgufQuantizer {
    /// Parse the safetensors header, decide every tensor's type and return the GGUF header.
    /// `options.calibration`, when given, weights the block searches of each tensor it has
    /// statistics for by its input's per-column second moments (the types do not change);
    /// `layerBitWidths` and `targetSizeMb` change types (docs/GGUF.md).
    pub fn begin(
        header_bytes: &[u8],
        file_len: Option<u64>,
        mix: GgufMix,
        options: GgufOptions,
    ) -> Result<(Self, Vec<u8>)> {
        let GgufOptions { calibration, layer_bit_widths, target_size_mb } = options;
        let header = parse_header(header_bytes, file_len)?;
        let architecture = match arch::detect(header.tensors.iter().map(|t| t.name.as_str())) {
            Some((a, names)) => (a.to_string(), format!("tensor names present: {names}")),
            None => ("unknown".to_string(), "no architecture's identifying tensor names are present".to_string()),
        };
        let mut plan = Vec::with_capacity(header.tensors.len());
        let mut kv = vec![
            ("general.architecture".to_string(), Value::String(architecture.0.clone())),
            ("general.quantization_version".to_string(), Value::U32(2)),
            ("general.file_type".to_string(), Value::U32(mix.file_type)),
            ("general.alignment".to_string(), Value::U32(ALIGNMENT as u32)),
        ];
        if let Some(name) = header.metadata.get("name").or_else(|| header.metadata.get("modelspec.title")) {
            kv.push(("general.name".to_string(), Value::String(name.clone())));
        }
        kv.push(("arrowquant.version".to_string(), Value::String(env!("CARGO_PKG_VERSION").to_string())));
        kv.push(("arrowquant.ggml_type".to_string(), Value::String(mix.name.to_string())));
        let reshape_rows = RESHAPE_ARCHITECTURES.contains(&architecture.0.as_str());
        let mut shapes = Vec::with_capacity(header.tensors.len());
        for (source, t) in header.tensors.iter().enumerate() {
            let count = t.numel();
            let last = t.shape.last().copied().unwrap_or(1);
            // ggml holds at most 4 dimensions, so a deeper tensor is written as rows of its last
            // dimension; and in convolutional UNets (ComfyUI-GGUF's `shape_fix` architectures) a
            // tensor whose rows are not whole 256-value blocks is written as rows of 256 when its
            // size allows. Either way the shape is recorded where ComfyUI-GGUF's loader (and ours)
            // looks for it.
            let reshaped = if t.shape.len() > 4 {
                Some(vec![count / last.max(1), last])
            } else if reshape_rows
                && t.dtype.is_float()
                && t.shape.len() > 1
                && count >= RESHAPE_MIN_VALUES
                && count.is_multiple_of(256)
                && !last.is_multiple_of(256)
            {
                Some(vec![count / 256, 256])
            } else {
                None
            };
            if reshaped.is_some() {
                kv.push((
                    format!("comfy.gguf.orig_shape.{}", t.name),
                    Value::I32Array(
                        t.shape
                            .iter()
                            .map(|&d| i32::try_from(d))
                            .collect::<std::result::Result<_, _>>()
                            .map_err(|_| AqError::dtype(&t.name, "a dimension beyond 2^31 cannot be recorded"))?,
                    ),
                ));
            }
            let shape = reshaped.unwrap_or_else(|| if t.shape.is_empty() { vec![1] } else { t.shape.clone() });
            let (ty, rule) = if t.dtype.is_float() {
                let (ty, rule) = override_type(&layer_bit_widths, &t.name, t.dtype, &shape, mix)
                    .unwrap_or_else(|| choose(&t.name, t.dtype, &shape, mix));
                (ty, Some(rule))
            } else {
                let ty = integer_type(t.dtype)
                    .ok_or_else(|| AqError::dtype(&t.name, format!("no GGUF type holds {} values", t.dtype.name())))?;
                (ty, None)
            };
            let bytes = ty.bytes_for(count).ok_or_else(|| {
                AqError::dtype(&t.name, format!("{} values are not whole {} blocks", count, ty.name()))
            })?;
            let sensitive = matches!(rule, Some(TypeRule::Sensitive(_)));
            let row = *shape.last().unwrap_or(&1);
            plan.push(Planned { source, ty, rule, sensitive, row, count, bytes, offset: 0 });
            shapes.push(shape);
        }
        let warnings: Vec<ReportWarning> = layer_bit_widths
            .keys()
            .filter(|p| !header.tensors.iter().any(|t| t.name == **p || glob_match(p, &t.name)))
            .map(|p| ReportWarning {
                code: "unmatched_pattern".into(),
                field: Some("layerBitWidths".into()),
                pattern: Some(p.clone()),
                message: format!("layerBitWidths entry '{p}' matches no tensor of this model (a typo?)"),
            })
            .collect();
        let infos_of = |plan: &[Planned]| -> Result<Vec<GgufTensor>> {
            let mut offset = 0u64;
            let mut infos = Vec::with_capacity(plan.len());
            for (p, shape) in plan.iter().zip(&shapes) {
                let dims: Vec<u64> = shape.iter().rev().copied().collect();
                infos.push(GgufTensor { name: header.tensors[p.source].name.clone(), dims, ty: p.ty, offset });
                offset = offset
                    .checked_add(p.bytes)
                    .and_then(align)
                    .ok_or_else(|| AqError::TooLarge("the GGUF data section overflows 64 bits".into()))?;
            }
            Ok(infos)
        };
        if let Some(target_mb) = target_size_mb {
            // The header's length does not depend on the types (each is a u32 id).
            let fixed = encode_header(&kv, &infos_of(&plan)?).len() as u64;
            let budget = (target_mb * 1048576.0) as u64;
            if let Err(least) = fit_budget(&mut plan, fixed, budget, target_mb) {
                return Err(AqError::config(
                    "targetSizeMb",
                    target_mb,
                    format!(
                        "at least {:.2} MiB for this model as {} (every tensor the budget may move at its smallest type)",
                        least as f64 / 1048576.0,
                        mix.name
                    ),
                ));
            }
        }
        let infos = infos_of(&plan)?;
        for (p, info) in plan.iter_mut().zip(&infos) {
            p.offset = info.offset;
        }
        let out = encode_header(&kv, &infos);
        let q = GgufQuantizer {
            mix,
            header,
            plan,
            architecture,
            header_bytes: out.len() as u64,
            next: 0,
            layers: Vec::new(),
            pooled: ErrorSums::default(),
            calibration,
            output_error_share: (0.0, 0),
            warnings,
        };
        Ok((q, out))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of the whole output, known before any tensor is quantized.
    pub fn output_len(&self) -> u64 {
        self.plan
            .last()
            .map_or(self.header_bytes, |p| self.header_bytes + align(p.offset + p.bytes).unwrap_or(u64::MAX))
    }

    /// Quantize the next tensor (in the source's order) from its bytes; returns its bytes in the
    /// output, padding included, and its report line.
    pub fn add_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(Vec<u8>, GgufLayer)> {
        let Some(p) = self.plan.get(self.next).cloned() else {
            return Err(AqError::State(format!("tensor '{name}' is one more than the header lists")));
        };
        let t = &self.header.tensors[p.source];
        if t.name != name {
            return Err(AqError::State(format!(
                "expected tensor '{}' next (the source's order), got '{name}'",
                t.name
            )));
        }
        if bytes.len() as u64 != t.byte_len() {
            return Err(AqError::dtype(name, format!("{} bytes given, the header says {}", bytes.len(), t.byte_len())));
        }
        let mut out = Vec::with_capacity(align(p.bytes).unwrap_or(p.bytes) as usize);
        let mut sums = None;
        let mut output_snr = None;
        let importance = match &self.calibration {
            Some(cal) if searched(p.ty) && t.shape.len() >= 2 => column_importance(cal, name, &t.shape),
            _ => None,
        };
        // The searches weight column j by h_j + mean(h): the importance, damped so that columns
        // whose inputs the calibration saw near zero still count. On the bundled diffusion
        // models the undamped weights won at the layer outputs but lost at the model's output
        // more often (docs/GGUF.md, `make eval`); the report measures with the plain h.
        let search_weights: Option<Vec<f32>> = importance.as_ref().map(|(h, _)| {
            let mean = (h.iter().map(|&v| v as f64).sum::<f64>() / h.len() as f64) as f32;
            h.iter().map(|&v| v + mean).collect()
        });
        if t.dtype.is_float() {
            // In chunks of whole blocks: decode, check, encode, decode what was stored and measure
            // it — on the pool when there is one, merged in chunk order (the same bytes and
            // metrics for any thread count), never the whole tensor as f32 at once.
            let count = t.numel() as usize;
            let width = t.dtype.size_bytes();
            let chunks: Vec<usize> = (0..count).step_by(CHUNK_VALUES).collect();
            let encoded = crate::parallel::map(chunks, |start| -> Result<(Vec<u8>, ErrorSums, [f64; 2])> {
                let end = (start + CHUNK_VALUES).min(count);
                let mut values = vec![0f32; end - start];
                decode_f32(t.dtype, &bytes[start * width..end * width], &mut values);
                check_finite(name, &values, start)?;
                // Value i of the tensor multiplies input column i mod n (row-major rows of n).
                let weights: Option<Vec<f32>> =
                    search_weights.as_ref().map(|h| (start..end).map(|i| h[i % h.len()]).collect());
                let mut block = Vec::new();
                ggml::quantize(p.ty, &values, weights.as_deref(), &mut block)?;
                let back = ggml::dequantize(p.ty, &block, values.len())?;
                let mut s = ErrorSums::default();
                s.add(&values, &back);
                let mut output = [0f64; 2];
                if let Some((h, _)) = &importance {
                    for (i, (&w, &q)) in (start..end).zip(values.iter().zip(&back)) {
                        let hj = h[i % h.len()] as f64;
                        output[0] += hj * (w as f64) * (w as f64);
                        output[1] += hj * (w as f64 - q as f64).powi(2);
                    }
                }
                Ok((block, s, output))
            });
            let mut total = ErrorSums::default();
            let mut output = [0f64; 2];
            for chunk in encoded {
                let (block, s, o) = chunk?;
                out.extend_from_slice(&block);
                total.merge(&s);
                output[0] += o[0];
                output[1] += o[1];
            }
            self.pooled.merge(&total);
            sums = Some(total);
            if importance.is_some() && output[0] > 0.0 {
                self.output_error_share.0 += output[1] / output[0];
                self.output_error_share.1 += 1;
                output_snr = Some(if output[1] > 0.0 { 10.0 * (output[0] / output[1]).log10() } else { f64::INFINITY });
            }
        } else {
            out.extend_from_slice(bytes);
        }
        debug_assert_eq!(out.len() as u64, p.bytes);
        out.resize(align(p.bytes).expect("planned") as usize, 0);
        let mut reason = match &p.rule {
            Some(rule) => rule.describe(p.ty, self.mix),
            None => format!("{}: integer values, copied", p.ty.name()),
        };
        if let Some((_, layer)) = &importance {
            reason.push_str(&format!(
                "; block params weighted by the input second moments of calibration layer '{layer}'"
            ));
        }
        let layer = GgufLayer {
            name: name.to_string(),
            shape: t.shape.clone(),
            dtype: t.dtype.name().to_string(),
            ggml_type: p.ty.name().to_string(),
            reason,
            params: t.numel(),
            source_bytes: t.byte_len(),
            stored_bytes: p.bytes,
            bits_per_value: p.ty.bits_per_value(),
            cosine: sums.map(|s| s.cosine()),
            snr_db: sums.map(|s| s.snr_db()),
            rel_rmse: sums.map(|s| s.rel_rmse()),
            max_abs_error: sums.map(|s| s.max_abs),
            importance_from: importance.map(|(_, layer)| layer),
            output_snr_db: output_snr,
        };
        self.layers.push(layer.clone());
        self.next += 1;
        Ok((out, layer))
    }

    /// The name of the tensor `add_tensor` expects next, or `None` when all are done.
    pub fn next_tensor(&self) -> Option<&str> {
        self.plan.get(self.next).map(|p| self.header.tensors[p.source].name.as_str())
    }

    pub fn finish(self) -> Result<GgufReport> {
        if let Some(name) = self.next_tensor() {
            return Err(AqError::State(format!("finish() before tensor '{name}' was added")));
        }
        let source_bytes = self.header.tensor_bytes();
        let output_bytes = self.output_len();
        let min =
            self.layers.iter().filter_map(|l| l.cosine.map(|c| (c, l.name.clone()))).min_by(|a, b| a.0.total_cmp(&b.0));
        let calibration = self.calibration.as_ref().map(|_| {
            let searched_layers = self
                .layers
                .iter()
                .filter(|l| GgmlType::parse(&l.ggml_type).is_some_and(searched) && l.shape.len() >= 2);
            let (with, without): (Vec<&GgufLayer>, Vec<&GgufLayer>) =
                searched_layers.partition(|l| l.importance_from.is_some());
            let (share, count) = self.output_error_share;
            GgufCalibrationSummary {
                weighted: with.len() as u32,
                without_statistics: without.iter().map(|l| l.name.clone()).collect(),
                output_snr_db: (count > 0).then(|| -10.0 * (share / count as f64).log10()),
            }
        });
        Ok(GgufReport {
            ggml_type: self.mix.name.to_string(),
            architecture: self.architecture.0,
            architecture_rule: self.architecture.1,
            params_total: self.layers.iter().map(|l| l.params).sum(),
            layers: self.layers,
            source_bytes,
            output_bytes,
            compression_ratio: source_bytes as f64 / output_bytes.max(1) as f64,
            snr_db: self.pooled.snr_db(),
            min_cosine: min.as_ref().map_or(1.0, |m| m.0),
            min_cosine_layer: min.map(|m| m.1),
            calibration,
            warnings: self.warnings,
        })
    }
}

/// A whole safetensors file held in memory, written as GGUF.
pub fn quantize_model_gguf(bytes: &[u8], mix: GgufMix, options: GgufOptions) -> Result<(Vec<u8>, GgufReport)> {
    let (mut q, mut out) = GgufQuantizer::begin(bytes, Some(bytes.len() as u64), mix, options)?;
    out.reserve((q.output_len() as usize).saturating_sub(out.len()));
    let ranges: Vec<(String, u64, u64)> = q
        .header()
        .tensors
        .iter()
        .map(|t| (t.name.clone(), q.header().data_offset + t.begin, q.header().data_offset + t.end))
        .collect();
    for (name, start, end) in ranges {
        let (data, _) = q.add_tensor(&name, &bytes[start as usize..end as usize])?;
        out.extend_from_slice(&data);
    }
    let report = q.finish()?;
    debug_assert_eq!(out.len() as u64, report.output_bytes);
    Ok((out, report))
}
