//! What a UI shows before and after a run, computed by the same rules the quantizer uses: a
//! model summary from its header alone (counts, dtypes, modality, estimated output size per
//! profile) and the error histogram of one layer.

use std::collections::BTreeMap;

use serde::Serialize;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

use crate::error::Result;
use crate::format::parquet::{Storage, Stored};
use crate::format::safetensors::{Header, TensorInfo};
use crate::pipeline::decision::MIN_ROW_LEN;
use crate::pipeline::layer::{quantize_layer, LayerContext};
use crate::policy::config::{Profile, QuantConfig};
use crate::policy::modality::{detect, Modality};
use crate::policy::width::{requested_width, LayerWidth};
use crate::quant::dtype::{decode_f32, Dtype};
use crate::quant::layout::{undo_equalization, ChannelLayout, Layout};
use crate::quant::tensor::{decode_all, dequantize_parts, Source};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct SizeEstimate {
    /// The profile estimated (`edge`, `local`, `cloud`), or `current` for the config passed in.
    pub profile: String,
    /// The default width of that config.
    pub bit_width: u8,
    /// Codes, params and unquantized tensors at the requested widths, before compression. zstd
    /// makes the file smaller; layers that fall back to a wider width make it larger.
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    /// Tensors in the model.
    pub tensors: u32,
    /// Values in all tensors.
    pub params: u64,
    /// Quantizable weights (float, ≥ 2-D).
    pub weights: u32,
    /// Bytes of all tensors (header excluded).
    pub tensor_bytes: u64,
    /// dtype → number of tensors.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "Record<string, number>"))]
    pub dtypes: BTreeMap<String, u32>,
    /// Name of the largest tensor (it bounds the memory a run needs).
    pub largest_tensor: String,
    /// Its size in bytes.
    pub largest_tensor_bytes: u64,
    /// text/code/image/audio, or "unknown".
    pub modality: String,
    /// Where the modality came from: "config", "metadata", "names" or "none".
    pub modality_source: String,
    /// The rule that decided, in words.
    pub modality_rule: String,
    /// Output size of each profile, from the header alone.
    pub estimates: Vec<SizeEstimate>,
}

/// Stored bytes of one tensor under `cfg` at its requested width, without running it.
fn estimated_bytes(cfg: &QuantConfig, t: &TensorInfo, modality: Option<Modality>) -> u64 {
    if !t.is_weight() {
        return t.byte_len();
    }
    let layout = Layout::for_shape(&t.shape, cfg.group_size as usize);
    match requested_width(cfg, modality, &t.name, None, false).width {
        LayerWidth::Codes(w) if layout.row_len >= MIN_ROW_LEN => (layout.codes_len(w) + 4 * layout.groups()) as u64,
        _ => 2 * t.numel(),
    }
}

pub fn describe(header: &Header, configured: Option<&QuantConfig>) -> ModelSummary {
    let det = detect(
        configured.and_then(|c| c.modality),
        header.metadata.get("modality").map(String::as_str),
        header.tensors.iter().map(|t| t.name.as_str()),
    );
    let mut dtypes = BTreeMap::new();
    for t in &header.tensors {
        *dtypes.entry(t.dtype.name().to_string()).or_insert(0u32) += 1;
    }
    let largest = header.tensors.iter().max_by_key(|t| t.byte_len());
    let mut estimates: Vec<SizeEstimate> = [Profile::Edge, Profile::Local, Profile::Cloud]
        .into_iter()
        .map(|p| {
            let cfg = QuantConfig::from_profile(p);
            SizeEstimate {
                profile: p.as_str().to_string(),
                bit_width: cfg.bit_width,
                bytes: header.tensors.iter().map(|t| estimated_bytes(&cfg, t, det.modality)).sum(),
            }
        })
        .collect();
    if let Some(cfg) = configured {
        estimates.push(SizeEstimate {
            profile: "current".to_string(),
            bit_width: cfg.bit_width,
            bytes: header.tensors.iter().map(|t| estimated_bytes(cfg, t, det.modality)).sum(),
        });
    }
    ModelSummary {
        tensors: header.tensors.len() as u32,
        params: header.tensors.iter().map(|t| t.numel()).sum(),
        weights: header.tensors.iter().filter(|t| t.is_weight()).count() as u32,
        tensor_bytes: header.tensor_bytes(),
        dtypes,
        largest_tensor: largest.map(|t| t.name.clone()).unwrap_or_default(),
        largest_tensor_bytes: largest.map_or(0, |t| t.byte_len()),
        modality: det.name().to_string(),
        modality_source: det.source.to_string(),
        modality_rule: det.rule,
        estimates,
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct ErrorHistogram {
    /// How the layer is stored.
    pub storage: Storage,
    /// Its stored width (2/4/8, 16 for f16); null for raw.
    pub bits: Option<u8>,
    /// Bins cover [-limit, limit] evenly; limit = max |ŵ − w| (0 for an exact layer).
    pub limit: f64,
    /// Count of ŵ − w per bin, bins left to right over [-limit, limit].
    pub counts: Vec<u64>,
    /// √(mean (ŵ − w)²).
    pub rmse: f64,
    /// max |w|, for scale.
    pub weight_absmax: f64,
}

/// Re-run one layer exactly as stored (callers pass the run's config with the stored width as a
/// `layerBitWidths` entry, and the same calibration) and histogram ŵ − w.
pub fn error_histogram(
    cfg: &QuantConfig,
    info: &TensorInfo,
    bytes: &[u8],
    ctx: LayerContext,
    bins: usize,
) -> Result<ErrorHistogram> {
    let bins = bins.clamp(1, 4096);
    let out = quantize_layer(cfg, info, bytes, ctx)?;
    let row = &out.row;
    let numel = info.numel() as usize;
    let exact = || ErrorHistogram {
        storage: row.stored.storage(),
        bits: row.stored.bits(),
        limit: 0.0,
        counts: {
            let mut c = vec![0; bins];
            c[bins / 2] = numel as u64;
            c
        },
        rmse: 0.0,
        weight_absmax: 0.0,
    };
    if row.stored == Stored::Raw || !info.dtype.is_float() {
        return Ok(exact());
    }
    let w = decode_all(Source { name: &info.name, dtype: info.dtype, bytes }, numel)?;
    let mut w_hat = vec![0f32; numel];
    match &row.stored {
        Stored::Quantized { width, group_size, scales, mins } => {
            let layout = Layout::for_shape(&row.shape, *group_size as usize);
            dequantize_parts(*width, layout, &row.data, scales, mins, &mut w_hat);
            if let (Some(sp), Some(cl)) = (&row.spatial, ChannelLayout::for_shape(&row.shape)) {
                undo_equalization(&mut w_hat, cl, &sp.scales);
            }
        }
        Stored::F16 => decode_f32(Dtype::F16, &row.data, &mut w_hat),
        Stored::Blocks(ty) => w_hat = crate::quant::ggml::dequantize(*ty, &row.data, numel)?,
        Stored::Raw => return Ok(exact()),
    }
    let limit = w.iter().zip(&w_hat).map(|(a, b)| (b - a).abs() as f64).fold(0.0, f64::max);
    if limit == 0.0 {
        return Ok(exact());
    }
    let mut counts = vec![0u64; bins];
    let mut sq = 0.0f64;
    for (a, b) in w.iter().zip(&w_hat) {
        let e = (*b as f64) - (*a as f64);
        sq += e * e;
        let k = (((e + limit) / (2.0 * limit)) * bins as f64) as usize;
        counts[k.min(bins - 1)] += 1;
    }
    Ok(ErrorHistogram {
        storage: row.stored.storage(),
        bits: row.stored.bits(),
        limit,
        counts,
        rmse: (sq / numel as f64).sqrt(),
        weight_absmax: w.iter().map(|x| x.abs() as f64).fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::safetensors::parse_header;

    fn model() -> Vec<u8> {
        let specs = vec![
            ("conv_in.weight".to_string(), Dtype::F32, vec![8u64, 4, 3, 3]),
            ("down_blocks.0.resnets.0.conv1.weight".to_string(), Dtype::F32, vec![16, 8, 3, 3]),
            ("up_blocks.0.attn.to_q.weight".to_string(), Dtype::F32, vec![64, 64]),
            ("up_blocks.0.attn.to_q.bias".to_string(), Dtype::F32, vec![64]),
        ];
        let mut out = crate::format::safetensors::write_header(&specs, &Default::default());
        let n: u64 = specs.iter().map(|s| s.2.iter().product::<u64>()).sum();
        for i in 0..n {
            out.extend_from_slice(&(((i * 7919) % 255) as f32 / 100.0 - 1.2).to_le_bytes());
        }
        out
    }

    #[test]
    fn summary_counts_detects_and_estimates() {
        let bytes = model();
        let h = parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
        let s = describe(&h, None);
        assert_eq!((s.tensors, s.weights, s.params), (4, 3, 288 + 1152 + 4096 + 64));
        assert_eq!(s.modality, "image");
        let est: Vec<u64> = s.estimates.iter().map(|e| e.bytes).collect();
        // Without calibration `edge` stores its layers at uncalibratedBits (4) in groups of 64:
        // about local's size, never cloud's.
        assert!(est[0] < est[2] && est[1] < est[2], "edge, local < cloud: {est:?}");
        let edge = QuantConfig { uncalibrated_bits: None, ..QuantConfig::from_profile(crate::Profile::Edge) };
        let at2: u64 = h.tensors.iter().map(|t| estimated_bytes(&edge, t, Some(Modality::Image))).sum();
        assert!(at2 < est[1], "edge at 2 bits everywhere < local: {at2} vs {est:?}");
        // local, 4-bit g128: conv_in is sensitive (8-bit), the others 4-bit, the bias raw
        let local = 8 * (36 + 4) + 16 * (36 + 4) + (64 * 32 + 64 * 4) + 64 * 4;
        assert_eq!(est[1], local as u64);
    }

    #[test]
    fn histogram_reproduces_the_stored_error() {
        let bytes = model();
        let h = parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
        let t = h.find("up_blocks.0.attn.to_q.weight").unwrap();
        let (a, b) = h.file_range(t);
        let cfg = QuantConfig::from_profile(Profile::Edge);
        let run = quantize_layer(&cfg, t, &bytes[a as usize..b as usize], LayerContext::default()).unwrap();
        let hist = error_histogram(&cfg, t, &bytes[a as usize..b as usize], LayerContext::default(), 33).unwrap();
        assert_eq!(hist.counts.iter().sum::<u64>(), t.numel());
        assert_eq!(hist.bits, run.row.stored.bits());
        let rel = run.row.metrics.unwrap().rel_rmse;
        let sww: f64 = (0..t.numel() as usize)
            .map(|i| f32::from_le_bytes(bytes[a as usize + 4 * i..a as usize + 4 * i + 4].try_into().unwrap()) as f64)
            .map(|x| x * x)
            .sum();
        let rmse = rel * (sww / t.numel() as f64).sqrt();
        assert!((hist.rmse - rmse).abs() <= 1e-9 * rmse.max(1.0), "{} vs {rmse}", hist.rmse);
    }
}
