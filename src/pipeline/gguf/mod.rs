//! The GGUF writer over a safetensors source, tensor by tensor. Every tensor's type comes from its
//! name, dtype and shape (policy/gguf_mix.rs), so the whole header — tensor infos and offsets — is
//! written first, and each tensor's bytes follow as it is quantized: memory is bounded by the
//! largest tensor, as on the Parquet path. Each tensor is measured against its source (the same
//! metrics as the Parquet report).

mod budget;
pub(crate) mod encode;
mod report;

use std::collections::BTreeMap;

pub use report::{GgufCalibrationSummary, GgufLayer, GgufReport};

use budget::{fit_budget, Planned};

use crate::diffusion::calibration::Calibration;
use crate::error::{AqError, Result};
use crate::format::gguf::arch;
use crate::format::gguf::container::{align, encode_header, TensorInfo as GgufTensor, Value, ALIGNMENT};
use crate::format::safetensors::{parse_header, Header};
use crate::pipeline::objective::{output_block, ColumnStats, MethodNote};
use crate::pipeline::report::ReportWarning;
use crate::pipeline::{default_clock, Clock};
use crate::policy::config::{Profile, QuantConfig, Switch};
use crate::policy::gguf_mix::{choose, override_type, GgufMix, TypeRule};
use crate::policy::glob::glob_match;
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;
use crate::quant::gptq;
use crate::quant::metrics::ErrorSums;
use crate::quant::output::Weighting;
use encode::{encode, Encoding};

/// Architectures whose tensors are re-rowed to 256 values when their rows are not whole blocks
/// (3×3 convolutions), as ComfyUI-GGUF's converter does for them; transformers never are.
const RESHAPE_ARCHITECTURES: &[&str] = &["sd1", "sdxl"];

/// Smallest tensor re-rowed (ComfyUI-GGUF's REARRANGE_THRESHOLD).
const RESHAPE_MIN_VALUES: u64 = 512;

/// Which ggml type a source dtype that is not quantized keeps (integers pass through exactly).
/// The shape a tensor is written in when it is not its own, in a file of `architecture`: ggml
/// holds at most 4 dimensions, so a deeper tensor is written as rows of its last dimension; and
/// in convolutional UNets (ComfyUI-GGUF's `shape_fix` architectures) a float tensor whose rows are
/// not whole 256-value blocks is written as rows of 256 when its size allows. Either way the
/// shape is recorded where ComfyUI-GGUF's loader (and ours) looks for it.
pub fn ggml_shape(shape: &[u64], is_float: bool, architecture: &str) -> Option<Vec<u64>> {
    let count: u64 = shape.iter().product();
    let last = shape.last().copied().unwrap_or(1);
    if shape.len() > 4 {
        Some(vec![count / last.max(1), last])
    } else if RESHAPE_ARCHITECTURES.contains(&architecture)
        && is_float
        && shape.len() > 1
        && count >= RESHAPE_MIN_VALUES
        && count.is_multiple_of(256)
        && !last.is_multiple_of(256)
    {
        Some(vec![count / 256, 256])
    } else {
        None
    }
}

fn integer_type(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::I8 => Some(GgmlType::I8),
        Dtype::I16 => Some(GgmlType::I16),
        Dtype::I32 => Some(GgmlType::I32),
        Dtype::I64 => Some(GgmlType::I64),
        _ => None,
    }
}

/// What a GGUF run takes beyond the mix: calibration (GPTQ where it has Gram matrices, else
/// importance-weighted block searches; measured sensitivities for the size budget), per-layer
/// widths and a size budget — `layerBitWidths` and `targetSizeMb` of the Parquet config, mapped
/// onto ggml types (policy/gguf_mix.rs).
#[derive(Debug, Clone)]
pub struct GgufOptions {
    pub calibration: Option<Calibration>,
    pub layer_bit_widths: BTreeMap<String, u8>,
    pub target_size_mb: Option<f64>,
    pub gptq: GptqOptions,
    /// Seconds from some origin: each tensor's `quantizeMs` in the report.
    pub clock: Clock,
}

/// GPTQ for the layers whose calibration has a Gram matrix: the config's `gptq`, `gptqDamp` and
/// `gptqActOrder`.
#[derive(Debug, Clone, Copy)]
pub struct GptqOptions {
    pub switch: Switch,
    pub damp: f64,
    pub act_order: bool,
}

impl GgufOptions {
    /// The GGUF options of a config (the fields that describe the Parquet format are not read).
    pub fn from_config(calibration: Option<Calibration>, cfg: QuantConfig) -> Self {
        GgufOptions {
            calibration,
            layer_bit_widths: cfg.layer_bit_widths,
            target_size_mb: cfg.target_size_mb,
            gptq: GptqOptions { switch: cfg.gptq, damp: cfg.gptq_damp, act_order: cfg.gptq_act_order },
            clock: default_clock,
        }
    }
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions::from_config(None, QuantConfig::from_profile(Profile::Local))
    }
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
    gptq: GptqOptions,
    clock: Clock,
    /// Block-quantized weights the calibration has no statistics for.
    without_statistics: Vec<String>,
    /// Σ over the weighted tensors of error/signal at their outputs, and how many.
    output_error_share: (f64, u32),
    warnings: Vec<ReportWarning>,
}

/// Types whose block searches take importance weights (Q8_0's scale is fixed by its extreme).
fn searched(ty: GgmlType) -> bool {
    ty.is_quantized() && ty != GgmlType::Q8_0
}

/// Per-column second moments scaled to a maximum of 1, so the searches' f32 sums cannot
/// overflow; `None` when they are unusable (non-finite, all zero).
fn normalised(h: &[f32]) -> Option<Vec<f32>> {
    let top = h.iter().fold(0f32, |m, &v| m.max(v));
    if !(top.is_finite() && top > 0.0) || h.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(h.iter().map(|v| v / top).collect())
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
        let GgufOptions { calibration, layer_bit_widths, target_size_mb, gptq, clock } = options;
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
        let mut shapes = Vec::with_capacity(header.tensors.len());
        for (source, t) in header.tensors.iter().enumerate() {
            let count = t.numel();
            let reshaped = ggml_shape(&t.shape, t.dtype.is_float(), &architecture.0);
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
            let sensitivity = calibration.as_ref().and_then(|c| c.for_weight(&t.name)).and_then(|(_, s)| s.sensitivity);
            plan.push(Planned { source, ty, rule, sensitive, row, count, bytes, offset: 0, sensitivity });
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
            gptq,
            clock,
            without_statistics: Vec::new(),
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
        let started = (self.clock)();
        let mut out = Vec::with_capacity(align(p.bytes).unwrap_or(p.bytes) as usize);
        let mut sums = None;
        let mut output_snr = None;
        // Value i of the tensor multiplies input column i mod n of the layer (rows of n).
        let n = usize::try_from(t.shape.iter().skip(1).product::<u64>()).unwrap_or(0).max(1);
        let stats = match &self.calibration {
            Some(cal) if p.ty.is_quantized() && t.shape.len() >= 2 => {
                let stats = cal.for_weight(name);
                if stats.is_none() {
                    self.without_statistics.push(name.to_string());
                }
                stats
            }
            _ => None,
        };
        let columns = stats.map(|(layer, s)| (layer, ColumnStats::of(&t.shape, s, n)));
        let importance = columns.as_ref().and_then(|(layer, c)| {
            let h = c.diagonal.as_deref().and_then(normalised)?;
            Some((h, layer.to_string()))
        });
        let gram = columns.as_ref().and_then(|(_, c)| c.gram);
        let mut note = None;
        let prepared = match gram {
            Some(g) if self.gptq.switch.wanted(true) && importance.is_some() => {
                match gptq::prepare(g, n, None, self.gptq.damp, self.gptq.act_order) {
                    Ok(prepared) => Some(prepared),
                    Err(e) => {
                        note = Some(MethodNote::GptqNotApplied { why: e.to_string(), importance: true });
                        None
                    }
                }
            }
            None if stats.is_some() && self.gptq.switch == Switch::On => {
                let why = "no Gram matrix of this layer's rows in the calibration".to_string();
                note = Some(MethodNote::GptqNotApplied { why, importance: importance.is_some() });
                None
            }
            _ => None,
        };
        // The searches weight columns by the damped importance; the report measures with the plain h.
        let search_weights: Option<Vec<f32>> =
            importance.as_ref().filter(|_| searched(p.ty)).map(|(h, _)| encode::search_weights(h));
        let measure = match (gram, &importance) {
            (Some(g), _) => {
                Some(Weighting::Gram { gram: g, block: prepared.as_ref().map_or(output_block(g, n), |p| p.block) })
            }
            (None, Some((h, _))) => Some(Weighting::Diagonal(h)),
            (None, None) => None,
        };
        let mut gptq_used = false;
        if t.dtype.is_float() {
            let mut encoded = None;
            if let Some(prepared) = &prepared {
                encoded = encode(t, bytes, p.ty, n, Encoding::gptq(prepared), measure, &mut out)?;
                gptq_used = encoded.is_some();
                note = Some(match encoded {
                    Some(_) => MethodNote::Gptq {
                        columns: n,
                        block: prepared.block,
                        damp: prepared.damp,
                        act_order: self.gptq.act_order,
                    },
                    None => {
                        MethodNote::GptqNotApplied { why: "a compensated value overflowed".into(), importance: true }
                    }
                });
            }
            let encoded = match encoded {
                Some(e) => e,
                None => encode(t, bytes, p.ty, n, Encoding::Search(search_weights.as_deref()), measure, &mut out)?
                    .expect("the search always encodes"),
            };
            self.pooled.merge(&encoded.sums);
            sums = Some(encoded.sums);
            if let Some(o) = encoded.output.filter(|o| o.signal > 0.0) {
                self.output_error_share.0 += o.error / o.signal;
                self.output_error_share.1 += 1;
                output_snr = Some(o.snr_db());
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
        if let Some(note) = &note {
            reason.push_str(&format!("; {}", note.describe()));
        }
        if let Some((_, layer)) = importance.as_ref().filter(|_| searched(p.ty)) {
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
            importance_from: importance.filter(|_| searched(p.ty) || gptq_used).map(|(_, layer)| layer),
            gptq: gptq_used,
            quantize_ms: Some(((self.clock)() - started) * 1000.0),
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
            let (share, count) = self.output_error_share;
            GgufCalibrationSummary {
                weighted: self.layers.iter().filter(|l| l.importance_from.is_some()).count() as u32,
                gptq: self.layers.iter().filter(|l| l.gptq).count() as u32,
                without_statistics: self.without_statistics.clone(),
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
