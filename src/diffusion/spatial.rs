//! Spatial quantization (SpatialQuantMetadata): DiTAS / SmoothQuant channel equalization on the
//! *input* channels of a layer.
//!
//! For a weight `W` with input channel `j` (column `j` of a Linear `[out, in]`, slice `[:, j, :, :]`
//! of a conv `[out, in, kh, kw]`) and calibration maxima `a_j = max|X_j|` of the activations that
//! feed it:
//!
//! ```text
//! s_j = a_j^α / max|W_:,j|^(1−α)           (s_j = 1 when either maximum is 0; clamped to [2^-14, 2^14])
//! W'_:,j = W_:,j · s_j                      (what is quantized and stored)
//! X'_j = X_j / s_j                          (what inference must do to the activations)
//! ```
//!
//! so `X'·W'ᵀ = X·Wᵀ`. α is the migration strength: α = 0 only equalizes the weight columns,
//! α = 1 moves all of the activations' outliers into the weights. When the calibration holds
//! per-timestep channel maxima they are aggregated over timesteps first (DiTAS's temporal
//! aggregation), so one scale vector serves every timestep.

use crate::diffusion::calibration::LayerStats;
use crate::diffusion::timegroups::StepRange;
use crate::quant::layout::ChannelLayout;

pub const SCALE_MIN: f32 = 1.0 / 16384.0;
pub const SCALE_MAX: f32 = 16384.0;

/// max |W_:,j| per input channel.
pub fn weight_channel_absmax(w: &[f32], cl: ChannelLayout) -> Vec<f32> {
    let mut m = vec![0f32; cl.input];
    for (k, &x) in w.iter().enumerate() {
        let j = cl.channel_of(k);
        m[j] = m[j].max(x.abs());
    }
    m
}

/// The equalization scales s_j (formula in the module docs), computed in f64, stored as f32.
pub fn equalization_scales(act_absmax: &[f32], weight_absmax: &[f32], alpha: f32) -> Vec<f32> {
    act_absmax
        .iter()
        .zip(weight_absmax)
        .map(|(&a, &w)| {
            if a <= 0.0 || w <= 0.0 {
                return 1.0; // a dead channel (no signal on one side): leave it alone
            }
            let s = (a as f64).powf(alpha as f64) / (w as f64).powf(1.0 - alpha as f64);
            (s as f32).clamp(SCALE_MIN, SCALE_MAX)
        })
        .collect()
}

/// Activation-weighted error: each input channel's weight error counts with a_j², the power of
/// the activations it multiplies, so the number tracks the layer's *output* error rather than
/// its weight error. Returns (Σ_j a_j² Σ W², Σ_j a_j² Σ (Ŵ − W)²).
pub fn weighted_error(w: &[f32], w_hat: &[f32], cl: ChannelLayout, act_absmax: &[f32]) -> (f64, f64) {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (k, (&x, &y)) in w.iter().zip(w_hat).enumerate() {
        let a = act_absmax[cl.channel_of(k)] as f64;
        let a2 = a * a;
        sig += a2 * (x as f64) * (x as f64);
        let e = y as f64 - x as f64;
        err += a2 * e * e;
    }
    (sig, err)
}

pub fn snr_db(signal: f64, error: f64) -> f64 {
    if error == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / error).log10()
    }
}

/// Per-timestep activation ranges of the layer's input, as time groups must see them. Without
/// equalization that is the calibration's own [act_min, act_max]. With it, inference quantizes
/// X / s, whose range is bounded (never under-estimated) by: sign is preserved since s > 0; a
/// value x ∈ [lo, hi] divided by some s_j ∈ [s_min, s_max] lies in [lo/s_min, hi/s_min] when the
/// ends straddle 0 (and [lo/s_max, …] / […, hi/s_max] for one-signed ends); and, when per-timestep
/// channel maxima exist, |x_j / s_j| ≤ M_t = max_j a_{t,j} / s_j. Bounds are rounded outwards.
pub fn step_ranges(stats: &LayerStats, scales: Option<&[f32]>) -> Vec<StepRange> {
    let t_count = stats.samples.len();
    (0..t_count)
        .map(|t| {
            if !stats.has(t) {
                return None;
            }
            let (lo, hi) = (stats.act_min[t], stats.act_max[t]);
            let Some(s) = scales else { return Some((lo, hi)) };
            let s_min = s.iter().copied().fold(f32::INFINITY, f32::min);
            let s_max = s.iter().copied().fold(0.0f32, f32::max);
            let m_t = stats
                .channel_absmax_per_t
                .as_ref()
                .map(|rows| rows[t].iter().zip(s).map(|(&a, &sj)| (a / sj).next_up()).fold(0.0f32, f32::max));
            let new_hi = if hi > 0.0 {
                let b = (hi / s_min).next_up();
                m_t.map_or(b, |m| b.min(m))
            } else {
                (hi / s_max).next_up().min(0.0)
            };
            let new_lo = if lo < 0.0 {
                let b = (lo / s_min).next_down();
                m_t.map_or(b, |m| b.max(-m))
            } else {
                (lo / s_max).next_down().max(0.0)
            };
            Some((new_lo, new_hi))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::layout::{equalize, undo_equalization};
    use proptest::prelude::*;

    #[test]
    fn conv_channels_are_the_second_axis() {
        let cl = ChannelLayout::for_shape(&[2, 3, 2, 2]).unwrap();
        let chans: Vec<usize> = (0..24).map(|k| cl.channel_of(k)).collect();
        assert_eq!(&chans[..12], &[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(&chans[12..], &chans[..12]);
        let lin = ChannelLayout::for_shape(&[2, 3]).unwrap();
        assert_eq!((0..6).map(|k| lin.channel_of(k)).collect::<Vec<_>>(), vec![0, 1, 2, 0, 1, 2]);
        assert!(ChannelLayout::for_shape(&[5]).is_none());
    }

    #[test]
    fn scales_follow_the_formula_and_guard_zeros() {
        let s = equalization_scales(&[4.0, 0.0, 9.0, 1e30], &[1.0, 2.0, 0.0, 1e-30], 0.5);
        assert_eq!(s[0], 2.0); // sqrt(4)/sqrt(1)
        assert_eq!((s[1], s[2]), (1.0, 1.0));
        assert_eq!(s[3], SCALE_MAX);
        let s = equalization_scales(&[4.0], &[2.0], 0.0);
        assert_eq!(s[0], 0.5); // α = 0 normalises the weight column
    }

    #[test]
    fn equalization_preserves_the_layer_output() {
        // y = x·Wᵀ is unchanged when W's columns are scaled and x's entries divided
        let (w, x) = ([1.0f32, -2.0, 0.5, 3.0, 0.25, -1.0], [10.0f32, 0.1, 2.0]);
        let cl = ChannelLayout::for_shape(&[2, 3]).unwrap();
        let s = equalization_scales(&[10.0, 0.1, 2.0], &weight_channel_absmax(&w, cl), 0.5);
        let we = equalize(&w, cl, &s);
        for o in 0..2 {
            let y: f32 = (0..3).map(|j| x[j] * w[o * 3 + j]).sum();
            let ye: f32 = (0..3).map(|j| (x[j] / s[j]) * we[o * 3 + j]).sum();
            assert!((y - ye).abs() <= 1e-5 * y.abs().max(1.0), "{y} vs {ye}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn undo_of_equalize_is_within_one_ulp(
            w in prop::collection::vec(-1e4f32..1e4, 1..64),
            a in prop::collection::vec(0.0f32..1e3, 4),
            alpha in 0.0f32..=1.0,
        ) {
            let cl = ChannelLayout { out: 1, input: 4, inner: w.len().div_ceil(4).max(1) };
            let mut ww = w.clone();
            ww.resize(cl.input * cl.inner, 0.5);
            let s = equalization_scales(&a, &weight_channel_absmax(&ww, cl), alpha);
            let mut back = equalize(&ww, cl, &s);
            undo_equalization(&mut back, cl, &s);
            for (x, y) in ww.iter().zip(&back) {
                // two roundings (×s then ÷s) move a value by at most one unit in the last place
                let ulp = (x.abs().next_up() - x.abs()).max(f32::from_bits(1));
                prop_assert!((x - y).abs() <= ulp, "{} -> {}", x, y);
            }
        }

        #[test]
        fn smoothed_ranges_contain_every_divided_activation(
            rows in prop::collection::vec(prop::collection::vec(-20.0f32..20.0, 3), 1..6),
            s in prop::collection::vec(0.01f32..100.0, 3),
        ) {
            // synthetic activations: one row of 3 channel values per timestep
            let t = rows.len();
            let stats = LayerStats {
                act_min: rows.iter().map(|r| r.iter().copied().fold(f32::INFINITY, f32::min)).collect(),
                act_max: rows.iter().map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect(),
                samples: vec![1; t],
                channel_absmax_per_t: Some(rows.iter().map(|r| r.iter().map(|v| v.abs()).collect()).collect()),
                channel_absmax: None,
                ..Default::default()
            };
            for with_per_t in [true, false] {
                let mut st = stats.clone();
                if !with_per_t { st.channel_absmax_per_t = None; }
                let ranges = step_ranges(&st, Some(&s));
                for (ti, r) in rows.iter().enumerate() {
                    let (lo, hi) = ranges[ti].unwrap();
                    for (j, &x) in r.iter().enumerate() {
                        let y = x / s[j];
                        prop_assert!(lo <= y && y <= hi, "t{} ch{}: {} not in [{}, {}]", ti, j, y, lo, hi);
                    }
                }
            }
        }
    }
}
