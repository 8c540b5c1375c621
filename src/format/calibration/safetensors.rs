//! The `.safetensors` carrier of calibration statistics: per layer `L`, tensors `L.act_min`,
//! `L.act_max`, `L.samples` and the optional statistics (docs/CALIBRATION.md).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{bad, build_layer, check_timesteps, read_f64_list, Extras, PerChannel, CALIBRATION_FORMAT};
use crate::diffusion::calibration::{Calibration, Gram};
use crate::error::Result;
use crate::format::safetensors::parse_header;
use crate::quant::dtype::Dtype;

impl Calibration {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let header = parse_header(bytes, Some(bytes.len() as u64))
            .map_err(|e| bad(format!("not a calibration safetensors file: {e}")))?;
        match header.metadata.get("format").map(String::as_str) {
            Some(CALIBRATION_FORMAT) => {}
            other => {
                return Err(bad(format!(
                    "__metadata__.format is {}, expected \"{CALIBRATION_FORMAT}\" (see docs/CALIBRATION.md)",
                    other.map_or("missing".to_string(), |s| format!("\"{s}\""))
                )))
            }
        }
        let ts_text = header.metadata.get("timesteps").ok_or_else(|| {
            bad("__metadata__.timesteps is missing: a JSON list of the timestep values, e.g. \"[999, 499, 0]\"")
        })?;
        let ts: Value = serde_json::from_str(ts_text)
            .map_err(|e| bad(format!("__metadata__.timesteps is not a JSON list of numbers: {e}")))?;
        let timesteps = read_f64_list("timesteps", &ts)?;
        let t_count = check_timesteps(&timesteps)?;

        let base = header.data_offset as usize;
        // Looked up once per layer tensor: a map, not a scan per lookup.
        let by_name: std::collections::HashMap<&str, &crate::format::safetensors::TensorInfo> =
            header.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let find = |name: &str| by_name.get(name).copied();
        let read = |name: &str| -> Result<Option<(Vec<u64>, Vec<f64>)>> {
            let Some(info) = find(name) else { return Ok(None) };
            let raw = &bytes[base + info.begin as usize..base + info.end as usize];
            let n = info.numel() as usize;
            let vals: Vec<f64> = match info.dtype {
                Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 => {
                    let mut out = vec![0f32; n];
                    crate::quant::dtype::decode_f32(info.dtype, raw, &mut out);
                    out.into_iter().map(f64::from).collect()
                }
                Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                Dtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                other => return Err(bad(format!("tensor '{name}': dtype {} is not allowed here", other.name()))),
            };
            Ok(Some((info.shape.clone(), vals)))
        };

        // Gram matrices can be large: read as f32, never widened.
        let read_f32 = |name: &str| -> Result<Option<(Vec<u64>, Vec<f32>)>> {
            let Some(info) = find(name) else { return Ok(None) };
            if !info.dtype.is_float() {
                return Err(bad(format!("tensor '{name}': dtype {} is not a float type", info.dtype.name())));
            }
            let raw = &bytes[base + info.begin as usize..base + info.end as usize];
            let mut out = vec![0f32; info.numel() as usize];
            crate::quant::dtype::decode_f32(info.dtype, raw, &mut out);
            Ok(Some((info.shape.clone(), out)))
        };
        let mut layers = BTreeMap::new();
        for t in &header.tensors {
            let Some(layer) = t.name.strip_suffix(".act_min") else {
                if !LAYER_TENSORS.iter().any(|s| t.name.ends_with(&format!(".{s}"))) {
                    return Err(bad(format!(
                        "tensor '{}': unknown name; expected <layer>.{}",
                        t.name,
                        LAYER_TENSORS.join("/.")
                    )));
                }
                let layer = t.name.rsplit_once('.').map(|(l, _)| l).unwrap_or("");
                if find(&format!("{layer}.act_min")).is_none() {
                    return Err(bad(format!("tensor '{}' has no '{layer}.act_min' beside it", t.name)));
                }
                continue;
            };
            let get = |suffix: &str| read(&format!("{layer}.{suffix}"));
            let vec_t = |suffix: &str, v: Option<(Vec<u64>, Vec<f64>)>| -> Result<Vec<f64>> {
                let (shape, vals) = v.ok_or_else(|| bad(format!("layer '{layer}': '{layer}.{suffix}' is missing")))?;
                if shape != [t_count as u64] {
                    return Err(bad(format!("layer '{layer}': '{suffix}' has shape {shape:?}, expected [{t_count}]")));
                }
                Ok(vals)
            };
            let act_min = vec_t("act_min", get("act_min")?)?;
            let act_max = vec_t("act_max", get("act_max")?)?;
            let samples = vec_t("samples", get("samples")?)?;
            let per_channel = |suffix: &str| -> Result<Option<PerChannel>> {
                Ok(match get(suffix)? {
                    None => None,
                    Some((shape, vals)) => match shape.as_slice() {
                        [_] => Some(PerChannel::Total(vals)),
                        [tt, c] if *tt as usize == t_count && *c > 0 => {
                            Some(PerChannel::PerT(vals.chunks(*c as usize).map(|r| r.to_vec()).collect()))
                        }
                        _ => {
                            return Err(bad(format!(
                                "layer '{layer}': '{suffix}' has shape {shape:?}, expected [C_in] or [{t_count}, C_in] with C_in > 0"
                            )))
                        }
                    },
                })
            };
            let f32s = |suffix: &str| read_f32(&format!("{layer}.{suffix}"));
            let gram = match (f32s("gram")?, f32s("gram_blocks")?, f32s("gram_eigvecs")?) {
                (None, None, None) => None,
                (Some((shape, values)), None, None) => match shape.as_slice() {
                    [n, m] if n == m => Some(Gram::Full { n: *n as usize, values }),
                    _ => return Err(bad(format!("layer '{layer}': 'gram' has shape {shape:?}, expected [n, n]"))),
                },
                (None, Some((shape, values)), None) => match shape.as_slice() {
                    [nb, b, b2] if b == b2 && *b > 0 => {
                        Some(Gram::Blocks { n: (nb * b) as usize, size: *b as usize, values })
                    }
                    _ => {
                        return Err(bad(format!(
                            "layer '{layer}': 'gram_blocks' has shape {shape:?}, expected [blocks, size, size]"
                        )))
                    }
                },
                (None, None, Some((shape, vectors))) => {
                    let [n, k] = shape[..] else {
                        return Err(bad(format!(
                            "layer '{layer}': 'gram_eigvecs' has shape {shape:?}, expected [n, k]"
                        )));
                    };
                    let (_, values) = f32s("gram_eigvals")?
                        .ok_or_else(|| bad(format!("layer '{layer}': 'gram_eigvals' is missing")))?;
                    let (_, diag) =
                        f32s("gram_diag")?.ok_or_else(|| bad(format!("layer '{layer}': 'gram_diag' is missing")))?;
                    if values.len() != k as usize || diag.len() != n as usize {
                        return Err(bad(format!(
                            "layer '{layer}': gram_eigvals has {} values and gram_diag {}, expected {k} and {n}",
                            values.len(),
                            diag.len()
                        )));
                    }
                    Some(Gram::LowRank { n: n as usize, vectors, values, diag })
                }
                _ => {
                    return Err(bad(format!(
                        "layer '{layer}': give one of gram, gram_blocks or gram_eigvecs, not several"
                    )))
                }
            };
            let extras = Extras {
                sq_mean: per_channel("sq_mean")?,
                gram,
                gram_rows: get("gram_rows")?.map(|(_, v)| v.first().copied().unwrap_or(0.0)),
                sensitivity: get("sensitivity")?.map(|(_, v)| v),
            };
            let layer_stats = build_layer(layer, act_min, act_max, samples, per_channel("channel_absmax")?, extras)?;
            layers.insert(layer.to_string(), layer_stats);
        }
        if layers.is_empty() {
            return Err(bad("no layers: expected tensors named <layer>.act_min, <layer>.act_max, <layer>.samples"));
        }
        Ok(Calibration { timesteps, layers })
    }
}

/// The per-layer tensors of the safetensors carrier, by suffix.
const LAYER_TENSORS: &[&str] = &[
    "act_min",
    "act_max",
    "samples",
    "channel_absmax",
    "sq_mean",
    "gram",
    "gram_blocks",
    "gram_eigvecs",
    "gram_eigvals",
    "gram_diag",
    "gram_rows",
    "sensitivity",
];

/// Write a calibration file (used by tests and by tools that convert other formats).
pub fn to_safetensors(cal: &Calibration) -> Vec<u8> {
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), CALIBRATION_FORMAT.to_string());
    metadata.insert("timesteps".to_string(), serde_json::to_string(&cal.timesteps).expect("numbers"));
    let mut specs = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let t = cal.timesteps.len() as u64;
    for (name, l) in &cal.layers {
        let f32s = |v: &[f32], data: &mut Vec<u8>| v.iter().for_each(|x| data.extend_from_slice(&x.to_le_bytes()));
        specs.push((format!("{name}.act_max"), Dtype::F32, vec![t]));
        f32s(&l.act_max, &mut data);
        specs.push((format!("{name}.act_min"), Dtype::F32, vec![t]));
        f32s(&l.act_min, &mut data);
        if let Some(rows) = &l.channel_absmax_per_t {
            specs.push((format!("{name}.channel_absmax"), Dtype::F32, vec![t, rows[0].len() as u64]));
            rows.iter().for_each(|r| f32s(r, &mut data));
        } else if let Some(c) = &l.channel_absmax {
            specs.push((format!("{name}.channel_absmax"), Dtype::F32, vec![c.len() as u64]));
            f32s(c, &mut data);
        }
        specs.push((format!("{name}.samples"), Dtype::I64, vec![t]));
        l.samples.iter().for_each(|&n| data.extend_from_slice(&(n as i64).to_le_bytes()));
        if let Some(rows) = &l.sq_mean_per_t {
            specs.push((format!("{name}.sq_mean"), Dtype::F32, vec![t, rows[0].len() as u64]));
            rows.iter().for_each(|r| f32s(r, &mut data));
        } else if let Some(c) = &l.sq_mean {
            specs.push((format!("{name}.sq_mean"), Dtype::F32, vec![c.len() as u64]));
            f32s(c, &mut data);
        }
        match &l.gram {
            None => {}
            Some(Gram::Full { n, values }) => {
                specs.push((format!("{name}.gram"), Dtype::F32, vec![*n as u64, *n as u64]));
                f32s(values, &mut data);
            }
            Some(Gram::Blocks { n, size, values }) => {
                specs.push((
                    format!("{name}.gram_blocks"),
                    Dtype::F32,
                    vec![(n / size) as u64, *size as u64, *size as u64],
                ));
                f32s(values, &mut data);
            }
            Some(Gram::LowRank { n, vectors, values, diag }) => {
                specs.push((format!("{name}.gram_eigvecs"), Dtype::F32, vec![*n as u64, values.len() as u64]));
                f32s(vectors, &mut data);
                specs.push((format!("{name}.gram_eigvals"), Dtype::F32, vec![values.len() as u64]));
                f32s(values, &mut data);
                specs.push((format!("{name}.gram_diag"), Dtype::F32, vec![*n as u64]));
                f32s(diag, &mut data);
            }
        }
        if let Some(rows) = l.gram_rows {
            specs.push((format!("{name}.gram_rows"), Dtype::I64, vec![1]));
            data.extend_from_slice(&(rows as i64).to_le_bytes());
        }
        if let Some(sens) = &l.sensitivity {
            specs.push((format!("{name}.sensitivity"), Dtype::F32, vec![3]));
            f32s(sens, &mut data);
        }
    }
    let mut out = crate::format::safetensors::write_header(&specs, &metadata);
    out.extend_from_slice(&data);
    out
}
