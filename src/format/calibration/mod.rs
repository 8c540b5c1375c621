//! The calibration file format (docs/CALIBRATION.md): two carriers of the same statistics,
//!
//! * a `.safetensors` file, `__metadata__.format = "arrowquant-calibration"`, with per layer `L`
//!   (the module path, so that `L.weight` is the weight it feeds):
//!   `L.act_min`, `L.act_max` F32 `[T]`, `L.samples` I64/I32 `[T]`, and optionally
//!   `L.channel_absmax` F32 `[C_in]` or `[T, C_in]`;
//! * a plain JSON/JS object `{ timesteps: [...], layers: { L: { actMin, actMax, samples,
//!   channelAbsMax? } } }`.

mod json;
mod safetensors;

pub use safetensors::to_safetensors;

use serde_json::Value;

use crate::diffusion::calibration::{Calibration, Gram, LayerStats};
use crate::error::{AqError, Result};
use crate::format::safetensors::Header;

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
}

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::quant::dtype::Dtype;
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
