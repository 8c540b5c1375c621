//! The calibration file format (docs/CALIBRATION.md): two carriers of the same statistics,
//!
//! * a `.safetensors` file, `__metadata__.format = "arrowquant-calibration"`, with per layer `L`
//!   (the module path, so that `L.weight` is the weight it feeds):
//!   `L.act_min`, `L.act_max` F32 `[T]`, `L.samples` I64/I32 `[T]`, and optionally
//!   `L.channel_absmax` F32 `[C_in]` or `[T, C_in]`;
//! * a plain JSON/JS object `{ timesteps: [...], layers: { L: { actMin, actMax, samples,
//!   channelAbsMax? } } }`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::diffusion::calibration::{Calibration, Gram, LayerStats};
use crate::error::{AqError, Result};
use crate::format::safetensors::{parse_header, Header};
use crate::quant::dtype::Dtype;

pub const CALIBRATION_FORMAT: &str = "arrowquant-calibration";
/// Upper bound on T: adaptive grouping is O(G·T²) per layer and 1000 covers DDPM's full schedule.
pub const MAX_TIMESTEPS: usize = 1024;

/// Whether a safetensors header is that of a calibration file (rather than a model).
pub fn is_calibration(header: &Header) -> bool {
    header.metadata.get("format").is_some_and(|f| f == CALIBRATION_FORMAT)
}

fn bad(msg: impl Into<String>) -> AqError {
    AqError::Calibration(msg.into())
}

impl Calibration {
    /// Parse either carrier: bytes that start like a safetensors file, or JSON text.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'{') {
            let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            return Self::from_json(&v);
        }
        Self::from_safetensors(bytes)
    }

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

/// The per-layer keys of the JSON carrier.
const LAYER_KEYS: &[&str] =
    &["actMin", "actMax", "samples", "channelAbsMax", "sqMean", "gram", "gramRows", "sensitivity"];

/// A per-input-channel statistic, over all timesteps or per timestep.
enum PerChannel {
    Total(Vec<f64>),
    PerT(Vec<Vec<f64>>),
}

/// The optional statistics a quality-aware quantizer uses.
struct Extras {
    sq_mean: Option<PerChannel>,
    gram: Option<Gram>,
    gram_rows: Option<f64>,
    sensitivity: Option<Vec<f64>>,
}

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

fn read_f64_list(what: &str, v: &Value) -> Result<Vec<f64>> {
    let arr = v.as_array().ok_or_else(|| bad(format!("{what}: expected an array of numbers")))?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
            // JSON has no NaN; a missing timestep's min/max may be written as null.
            Value::Null => Ok(f64::NAN),
            _ => Err(bad(format!("{what}[{i}]: expected a number, got {x}"))),
        })
        .collect()
}

fn check_timesteps(ts: &[f64]) -> Result<usize> {
    if ts.is_empty() || ts.len() > MAX_TIMESTEPS {
        return Err(bad(format!("timesteps: {} values, expected 1..={MAX_TIMESTEPS}", ts.len())));
    }
    if let Some(i) = ts.iter().position(|t| !t.is_finite()) {
        return Err(bad(format!("timesteps[{i}] is not a finite number")));
    }
    Ok(ts.len())
}

fn build_layer(
    name: &str,
    act_min: Vec<f64>,
    act_max: Vec<f64>,
    samples: Vec<f64>,
    absmax: Option<PerChannel>,
    extras: Extras,
) -> Result<LayerStats> {
    let mut s = Vec::with_capacity(samples.len());
    for (t, &n) in samples.iter().enumerate() {
        if !(n.is_finite() && n >= 0.0 && n.fract() == 0.0) {
            return Err(bad(format!("layer '{name}': samples[{t}] = {n}, expected a non-negative integer")));
        }
        s.push(n as u64);
        if n > 0.0 {
            let (lo, hi) = (act_min[t], act_max[t]);
            if !(lo.is_finite() && hi.is_finite() && lo <= hi)
                || lo.abs() > f32::MAX as f64
                || hi.abs() > f32::MAX as f64
            {
                return Err(bad(format!(
                    "layer '{name}': timestep {t} has {n} samples but act_min {lo} / act_max {hi} is not a finite range"
                )));
            }
        }
    }
    if s.iter().all(|&n| n == 0) {
        return Err(bad(format!("layer '{name}': every timestep has 0 samples")));
    }
    let check_row = |row: &[f64], what: &str| -> Result<Vec<f32>> {
        if row.is_empty() {
            return Err(bad(format!("layer '{name}': {what} is empty")));
        }
        row.iter()
            .enumerate()
            .map(|(j, &a)| {
                if a.is_finite() && a >= 0.0 && a <= f32::MAX as f64 {
                    Ok(a as f32)
                } else {
                    Err(bad(format!("layer '{name}': {what}[{j}] = {a}, expected a finite value ≥ 0")))
                }
            })
            .collect()
    };
    // Per timestep rows of a per-channel statistic, checked; a missing timestep's row is ignored
    // (like its min/max), so it may hold anything.
    let rows_of = |rows: Vec<Vec<f64>>, what: &str| -> Result<Vec<Vec<f32>>> {
        let c = rows.first().map_or(0, Vec::len);
        let mut checked = Vec::with_capacity(rows.len());
        for (t, r) in rows.iter().enumerate() {
            if r.len() != c {
                return Err(bad(format!("layer '{name}': {what} row {t} has {} values, expected {c}", r.len())));
            }
            checked.push(if s[t] > 0 { check_row(r, &format!("{what}[{t}]"))? } else { vec![0.0; c] });
        }
        Ok(checked)
    };
    let (per_t, total) = match absmax {
        None => (None, None),
        Some(PerChannel::Total(v)) => (None, Some(check_row(&v, "channel_absmax")?)),
        Some(PerChannel::PerT(rows)) => {
            let checked = rows_of(rows, "channel_absmax")?;
            // Temporal aggregation (DiTAS): the channel maximum over every timestep with data.
            let mut agg = vec![0f32; checked[0].len()];
            for r in checked.iter().zip(&s).filter(|(_, n)| **n > 0).map(|(r, _)| r) {
                for (a, &x) in agg.iter_mut().zip(r) {
                    *a = a.max(x);
                }
            }
            (Some(checked), Some(agg))
        }
    };
    let (sq_per_t, sq_total) = match extras.sq_mean {
        None => (None, None),
        Some(PerChannel::Total(v)) => (None, Some(check_row(&v, "sq_mean")?)),
        Some(PerChannel::PerT(rows)) => {
            let checked = rows_of(rows, "sq_mean")?;
            // The ε objective weighs every timestep alike: the mean over the timesteps with data.
            let with_data: Vec<&Vec<f32>> = checked.iter().zip(&s).filter(|(_, n)| **n > 0).map(|(r, _)| r).collect();
            let mut agg = vec![0f64; checked[0].len()];
            for r in &with_data {
                for (a, &x) in agg.iter_mut().zip(r.iter()) {
                    *a += x as f64;
                }
            }
            let k = with_data.len().max(1) as f64;
            (Some(checked), Some(agg.iter().map(|a| (a / k) as f32).collect()))
        }
    };
    let gram = extras.gram.map(|g| check_gram(name, g)).transpose()?;
    let gram_rows = match extras.gram_rows {
        None => None,
        Some(r) if r.is_finite() && r >= 1.0 && r.fract() == 0.0 => Some(r as u64),
        Some(r) => return Err(bad(format!("layer '{name}': gram_rows = {r}, expected a positive integer"))),
    };
    let sensitivity = match extras.sensitivity {
        None => None,
        Some(v) if v.len() == 3 && v.iter().all(|x| x.is_finite() && *x >= 0.0) => {
            Some([v[0] as f32, v[1] as f32, v[2] as f32])
        }
        Some(v) => {
            return Err(bad(format!(
                "layer '{name}': sensitivity has {v:?}, expected three values ≥ 0 (at 2, 4 and 8 bits)"
            )))
        }
    };
    Ok(LayerStats {
        act_min: act_min.iter().map(|&x| x as f32).collect(),
        act_max: act_max.iter().map(|&x| x as f32).collect(),
        samples: s,
        channel_absmax_per_t: per_t,
        channel_absmax: total,
        sq_mean_per_t: sq_per_t,
        sq_mean: sq_total,
        gram,
        gram_rows,
        sensitivity,
    })
}

/// A Gram matrix's values are finite, its diagonal and eigenvalues not negative; a full matrix is
/// made exactly symmetric (the mean of it and its transpose), as a quantizer assumes.
fn check_gram(name: &str, g: Gram) -> Result<Gram> {
    let fail = |what: String| bad(format!("layer '{name}': {what}"));
    let n = g.n();
    if n == 0 {
        return Err(fail("the Gram matrix is empty".into()));
    }
    let values: &[f32] = match &g {
        Gram::Full { values, .. } => values,
        Gram::Blocks { values, .. } => values,
        Gram::LowRank { vectors, .. } => vectors,
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(fail(format!("the Gram matrix holds a non-finite value at index {i}")));
    }
    if let Some(j) = g.diagonal().iter().position(|d| *d < 0.0) {
        return Err(fail(format!("the Gram matrix's diagonal is negative at {j}")));
    }
    Ok(match g {
        Gram::Full { n, mut values } => {
            for i in 0..n {
                for j in i + 1..n {
                    let m = ((values[i * n + j] as f64 + values[j * n + i] as f64) / 2.0) as f32;
                    values[i * n + j] = m;
                    values[j * n + i] = m;
                }
            }
            Gram::Full { n, values }
        }
        Gram::LowRank { n, vectors, values, diag } => {
            if values.iter().chain(&diag).any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(fail("gram_eigvals and gram_diag must be finite values ≥ 0".into()));
            }
            Gram::LowRank { n, vectors, values, diag }
        }
        blocks => blocks,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Calibration {
        Calibration::from_json(&json!({
            "timesteps": [999, 500, 0],
            "layers": {
                "down.0.conv": {"actMin": [-1.0, null, -3.0], "actMax": [2.0, null, 1.0], "samples": [4, 0, 4],
                                "channelAbsMax": [[1.0, 2.0], [9e9, 0.0], [3.0, 0.5]]},
                "mid.attn.to_q": {"actMin": [0, 0, 0], "actMax": [1, 2, 3], "samples": [1, 1, 1]}
            }
        }))
        .unwrap()
    }

    #[test]
    fn json_and_safetensors_carriers_agree() {
        let a = sample();
        let l = &a.layers["down.0.conv"];
        assert_eq!(l.missing(), vec![1]);
        // the missing timestep's absurd row does not leak into the aggregate
        assert_eq!(l.channel_absmax.as_deref(), Some(&[3.0f32, 2.0][..]));
        let bytes = to_safetensors(&a);
        let b = Calibration::from_bytes(&bytes).unwrap();
        assert_eq!(b.timesteps, a.timesteps);
        assert_eq!(b.layers["mid.attn.to_q"], a.layers["mid.attn.to_q"]);
        let (lb, la) = (&b.layers["down.0.conv"], &a.layers["down.0.conv"]);
        assert_eq!((&lb.samples, &lb.channel_absmax), (&la.samples, &la.channel_absmax));
        assert_eq!(a.for_weight("down.0.conv.weight").map(|(n, _)| n), Some("down.0.conv"));
        assert!(a.for_weight("down.0.conv.bias_extra").is_none());
    }

    #[test]
    fn second_moments_grams_and_sensitivity_round_trip_in_both_carriers() {
        let gram_forms = [
            json!({"full": [[2.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 3.0]]}),
            json!({"blocks": [[[2.0, 0.5], [0.5, 1.0]], [[3.0, 0.0], [0.0, 0.0]]]}),
            json!({"eigvecs": [[0.6], [0.8], [0.0]], "eigvals": [2.0], "diag": [0.1, 0.2, 0.3]}),
        ];
        for gram in gram_forms {
            let a = Calibration::from_json(&json!({
                "timesteps": [999, 500, 0],
                "layers": {"blk.fc": {"actMin": [-1, -1, -1], "actMax": [1, 2, 3], "samples": [4, 0, 4],
                    "sqMean": [[1.0, 2.0, 3.0], [99, 99, 99], [3.0, 2.0, 1.0]], "gram": gram, "gramRows": 4096,
                    "sensitivity": [0.5, 0.05, 0.001]}}
            }))
            .unwrap();
            let l = &a.layers["blk.fc"];
            // mean over the timesteps with data; the missing timestep's row is ignored
            assert_eq!(l.sq_mean.as_deref(), Some(&[2.0f32, 2.0, 2.0][..]));
            assert_eq!((l.gram_rows, l.sensitivity), (Some(4096), Some([0.5, 0.05, 0.001])));
            let g = l.gram.as_ref().unwrap();
            assert!(g.n() >= 3 && g.at(0, 1) == g.at(1, 0));
            let b = Calibration::from_bytes(&to_safetensors(&a)).unwrap();
            let lb = &b.layers["blk.fc"];
            assert_eq!(
                (&lb.gram, &lb.sq_mean, lb.gram_rows, lb.sensitivity),
                (&l.gram, &l.sq_mean, l.gram_rows, l.sensitivity)
            );
        }
        let low = Gram::LowRank { n: 2, vectors: vec![1.0, 0.0], values: vec![4.0], diag: vec![0.5, 0.25] };
        assert_eq!((low.at(0, 0), low.at(1, 1), low.at(0, 1)), (4.5, 0.25, 0.0));
        let bad_gram = json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1], "samples": [1],
            "gram": {"full": [[1.0, 0.0], [0.0, -1.0]]}}}});
        let e = Calibration::from_json(&bad_gram).unwrap_err();
        assert!(e.to_string().contains("diagonal is negative"), "{e}");
    }

    #[test]
    fn malformed_input_is_named() {
        let cases = [
            (json!({"timesteps": [], "layers": {}}), "timesteps"),
            (json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1]}}}), "samples"),
            (
                json!({"timesteps": [1, 2], "layers": {"a": {"actMin": [0], "actMax": [1, 2], "samples": [1, 1]}}}),
                "actMin",
            ),
            (
                json!({"timesteps": [1], "layers": {"a": {"actMin": [2], "actMax": [1], "samples": [1]}}}),
                "finite range",
            ),
            (json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1], "samples": [0]}}}), "0 samples"),
            (
                json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1], "samples": [1.5]}}}),
                "samples[0]",
            ),
            (
                json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1], "samples": [1], "channelAbsMax": [-1]}}}),
                "channel_absmax[0]",
            ),
            (
                json!({"timesteps": [1], "layers": {"a": {"actMin": [0], "actMax": [1], "samples": [1], "x": 1}}}),
                "unknown key 'x'",
            ),
            (json!({"timesteps": [1], "layers": {}}), "empty"),
        ];
        for (v, needle) in cases {
            let e = Calibration::from_json(&v).unwrap_err();
            assert_eq!(e.code(), "E_CALIBRATION");
            assert!(e.to_string().contains(needle), "{e} should mention {needle}");
        }
        assert!(Calibration::from_bytes(b"not a file").is_err());
        let mut weights =
            crate::format::safetensors::write_header(&[("w".into(), Dtype::F32, vec![1])], &BTreeMap::new());
        weights.extend_from_slice(&[0; 4]);
        let e = Calibration::from_bytes(&weights).unwrap_err();
        assert!(e.to_string().contains("__metadata__.format"), "{e}");
    }
}
