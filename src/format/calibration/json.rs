//! The plain JSON/JS-object carrier of calibration statistics (camelCase keys, as JS passes them).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{bad, build_layer, check_timesteps, read_f64_list, Extras, PerChannel};
use crate::diffusion::calibration::{Calibration, Gram};
use crate::error::Result;

impl Calibration {
    /// The plain-object carrier (camelCase keys, as JS passes them).
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| bad("calibration must be an object { timesteps, layers }"))?;
        for k in obj.keys() {
            if !["timesteps", "layers", "format", "source"].contains(&k.as_str()) {
                return Err(bad(format!(
                    "unknown key '{k}'; expected timesteps, layers (and optionally format, source)"
                )));
            }
        }
        let timesteps = read_f64_list("timesteps", obj.get("timesteps").unwrap_or(&Value::Null))?;
        let t_count = check_timesteps(&timesteps)?;
        let layers_v = obj
            .get("layers")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("'layers' must be an object mapping layer name → { actMin, actMax, samples }"))?;
        let mut layers = BTreeMap::new();
        for (name, l) in layers_v {
            let lo = l.as_object().ok_or_else(|| bad(format!("layer '{name}': expected an object")))?;
            for k in lo.keys() {
                if !LAYER_KEYS.contains(&k.as_str()) {
                    return Err(bad(format!("layer '{name}': unknown key '{k}'; expected {}", LAYER_KEYS.join(", "))));
                }
            }
            let field = |k: &str| -> Result<Vec<f64>> {
                let vals = read_f64_list(&format!("layers['{name}'].{k}"), lo.get(k).unwrap_or(&Value::Null))?;
                if vals.len() != t_count {
                    return Err(bad(format!("layer '{name}': {k} has {} values, expected {t_count}", vals.len())));
                }
                Ok(vals)
            };
            let per_channel = |key: &str| -> Result<Option<PerChannel>> {
                Ok(match lo.get(key) {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(a)) if a.first().is_some_and(Value::is_array) => {
                        if a.len() != t_count {
                            return Err(bad(format!(
                                "layer '{name}': {key} has {} rows, expected {t_count} (one per timestep)",
                                a.len()
                            )));
                        }
                        let rows = a
                            .iter()
                            .map(|r| read_f64_list(&format!("layers['{name}'].{key}"), r))
                            .collect::<Result<Vec<_>>>()?;
                        Some(PerChannel::PerT(rows))
                    }
                    Some(other) => Some(PerChannel::Total(read_f64_list(&format!("layers['{name}'].{key}"), other)?)),
                })
            };
            let extras = Extras {
                sq_mean: per_channel("sqMean")?,
                gram: lo.get("gram").filter(|g| !g.is_null()).map(|g| gram_from_json(name, g)).transpose()?,
                gram_rows: lo.get("gramRows").and_then(Value::as_f64),
                sensitivity: lo
                    .get("sensitivity")
                    .filter(|v| !v.is_null())
                    .map(|v| read_f64_list(&format!("layers['{name}'].sensitivity"), v))
                    .transpose()?,
            };
            let layer = build_layer(
                name,
                field("actMin")?,
                field("actMax")?,
                field("samples")?,
                per_channel("channelAbsMax")?,
                extras,
            )?;
            layers.insert(name.clone(), layer);
        }
        if layers.is_empty() {
            return Err(bad("'layers' is empty"));
        }
        Ok(Calibration { timesteps, layers })
    }
}

/// The per-layer keys of the JSON carrier.
const LAYER_KEYS: &[&str] =
    &["actMin", "actMax", "samples", "channelAbsMax", "sqMean", "gram", "gramRows", "sensitivity"];

/// `{ full: [[…]] }`, `{ blocks: [[[…]]] }` or `{ eigvecs: [[…]] (n × k), eigvals: […], diag: […] }`.
fn gram_from_json(layer: &str, v: &Value) -> Result<Gram> {
    let what = |k: &str| format!("layers['{layer}'].gram.{k}");
    let matrix = |k: &str, m: &Value| -> Result<(usize, usize, Vec<f32>)> {
        let rows = m.as_array().ok_or_else(|| bad(format!("{}: expected an array of rows", what(k))))?;
        let mut out = Vec::new();
        let cols = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
        for r in rows {
            let r = read_f64_list(&what(k), r)?;
            if r.len() != cols {
                return Err(bad(format!("{}: rows of different lengths", what(k))));
            }
            out.extend(r.iter().map(|&x| x as f32));
        }
        Ok((rows.len(), cols, out))
    };
    let o = v.as_object().ok_or_else(|| bad(format!("layers['{layer}'].gram: expected an object")))?;
    if let Some(full) = o.get("full") {
        let (n, m, values) = matrix("full", full)?;
        if n != m {
            return Err(bad(format!("{}: {n} × {m}, expected a square matrix", what("full"))));
        }
        return Ok(Gram::Full { n, values });
    }
    if let Some(blocks) = o.get("blocks") {
        let list = blocks.as_array().ok_or_else(|| bad(format!("{}: expected an array of blocks", what("blocks"))))?;
        let mut values = Vec::new();
        let mut size = 0;
        for b in list {
            let (r, c, v) = matrix("blocks", b)?;
            if r != c || (size != 0 && r != size) || r == 0 {
                return Err(bad(format!("{}: blocks must be square and of one size", what("blocks"))));
            }
            size = r;
            values.extend(v);
        }
        return Ok(Gram::Blocks { n: list.len() * size, size, values });
    }
    if let Some(vecs) = o.get("eigvecs") {
        let (n, k, vectors) = matrix("eigvecs", vecs)?;
        let values: Vec<f32> = read_f64_list(&what("eigvals"), o.get("eigvals").unwrap_or(&Value::Null))?
            .iter()
            .map(|&x| x as f32)
            .collect();
        let diag: Vec<f32> =
            read_f64_list(&what("diag"), o.get("diag").unwrap_or(&Value::Null))?.iter().map(|&x| x as f32).collect();
        if values.len() != k || diag.len() != n {
            return Err(bad(format!("{}: eigvals must have {k} values and diag {n}", what("eigvecs"))));
        }
        return Ok(Gram::LowRank { n, vectors, values, diag });
    }
    Err(bad(format!("layers['{layer}'].gram: expected one of full, blocks, eigvecs")))
}
