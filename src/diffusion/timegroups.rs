//! Time-aware activation parameters (TimeGroupParams). A diffusion model's activations change
//! range with the timestep, so one activation scale for all steps wastes precision early or clips
//! late. Weights are quantized once; each layer with calibration data additionally gets, per group
//! of adjacent timesteps, the (scale, zero point) that quantizes *its input activations* over
//! *that group's* timesteps. Nothing here touches weights.
//!
//! Activation quantization is asymmetric unsigned at `activationBits` (8 by default, the usual
//! W4A8/W8A8 setting): `q = clamp(round_half_even(x / scale) + zero_point, 0, 2^b − 1)`,
//! `x̂ = (q − zero_point) · scale`. The range always includes 0 and the zero point is an integer,
//! so 0.0 is exactly representable.

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// One group of timesteps `[t_start, t_end)` (indices into the calibration's timestep list) and
/// its activation params.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "camelCase")]
pub struct TimeGroup {
    /// First timestep index of the group (into the calibration's `timesteps`).
    pub t_start: u32,
    /// One past the group's last timestep index.
    pub t_end: u32,
    /// Activation step: x̂ = (q − zeroPoint) · scale.
    pub scale: f32,
    /// Integer code of 0.0 (so zero is exact on the activation grid).
    pub zero_point: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum TimeGrouping {
    /// Boundaries at ⌊i·T/G⌋.
    Uniform,
    /// Boundaries that minimise the excess quantization-noise power (dynamic programming).
    Adaptive,
}

impl TimeGrouping {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeGrouping::Uniform => "uniform",
            TimeGrouping::Adaptive => "adaptive",
        }
    }
}

/// The activation range of one timestep, or `None` where calibration has no data.
pub type StepRange = Option<(f32, f32)>;

/// (scale, zero_point) whose grid covers `[lo, hi] ∪ {0}` without clipping any of it.
pub fn activation_params(lo: f32, hi: f32, bits: u8) -> (f32, i32) {
    let qmax = ((1u32 << bits) - 1) as f64;
    let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
    if hi - lo == 0.0 {
        // An all-zero range: every scale represents 0 exactly; 1.0 keeps inference free of 0/0.
        return (1.0, 0);
    }
    let s0 = (hi - lo) / qmax;
    // A range that reaches below (above) zero needs at least one code below (above) the zero
    // point, or no scale could cover it: keep the zero point off the edge on that side.
    let zp_min = if lo < 0.0 { 1.0 } else { 0.0 };
    let zp_max = if hi > 0.0 { qmax - 1.0 } else { qmax };
    let zp = (-lo / s0).round_ties_even().clamp(zp_min, zp_max);
    // Rounding the zero point shifts the grid by up to half a step; widen the scale just enough
    // that both ends stay inside it.
    let mut s = s0;
    if zp < qmax {
        s = s.max(hi / (qmax - zp));
    }
    if zp > 0.0 {
        s = s.max(-lo / zp);
    }
    let mut scale = s as f32;
    let (zp_i, top) = (zp as i32, (qmax - zp) as f32);
    // Rounding s to f32 can land a hair short of an end; a few ulps always fix it (both sides
    // have at least one code, so the required scale is finite).
    while top * scale < hi as f32 || -(zp as f32) * scale > lo as f32 {
        scale = scale.next_up();
    }
    (scale, zp_i)
}

/// Range including zero, as the activation grid sees it.
fn widened((lo, hi): (f32, f32)) -> (f64, f64) {
    (lo.min(0.0) as f64, hi.max(0.0) as f64)
}

/// Split the T timesteps into at most `g` groups of adjacent timesteps; returns `[start, end)`
/// index pairs that tile `0..T`. Every group holds at least one timestep with data: a timestep
/// without data belongs to the group of the nearest earlier timestep with data (leading ones to
/// the first group).
pub fn group_spans(ranges: &[StepRange], g: usize, mode: TimeGrouping) -> Vec<(usize, usize)> {
    let t_count = ranges.len();
    let present: Vec<usize> = (0..t_count).filter(|&t| ranges[t].is_some()).collect();
    if present.is_empty() || g == 0 {
        return Vec::new();
    }
    // Group starts, as timestep indices of a timestep with data.
    let starts: Vec<usize> = match mode {
        TimeGrouping::Uniform => {
            let g = g.min(t_count);
            let mut starts: Vec<usize> = Vec::new();
            for i in 0..g {
                let (a, b) = (i * t_count / g, (i + 1) * t_count / g);
                // The group's first timestep with data; a group without any is merged away.
                if let Some(&p) = present.iter().find(|&&p| p >= a && p < b) {
                    starts.push(p);
                }
            }
            starts
        }
        TimeGrouping::Adaptive => {
            let steps: Vec<(f64, f64)> = present.iter().map(|&t| widened(ranges[t].expect("present"))).collect();
            adaptive_starts(&steps, g).into_iter().map(|p| present[p]).collect()
        }
    };
    let mut spans = Vec::with_capacity(starts.len());
    for (i, &s) in starts.iter().enumerate() {
        let begin = if i == 0 { 0 } else { s };
        let end = starts.get(i + 1).copied().unwrap_or(t_count);
        spans.push((begin, end));
    }
    spans
}

/// Optimal partition of `steps` (widened ranges of the timesteps with data, in order) into at
/// most `g` contiguous groups, minimising Σ_groups Σ_t (R_group² − R_t²) where R is the range
/// width: a uniform quantizer's noise power grows with the square of its step, so this is the
/// noise each timestep pays beyond what its own range would cost. O(g·P²) time, O(P²) memory
/// for the cost table is avoided by computing group ranges incrementally.
fn adaptive_starts(steps: &[(f64, f64)], g: usize) -> Vec<usize> {
    let p = steps.len();
    let g = g.min(p);
    let r2: Vec<f64> = steps.iter().map(|(lo, hi)| (hi - lo) * (hi - lo)).collect();
    let mut prefix = vec![0.0f64; p + 1];
    for i in 0..p {
        prefix[i + 1] = prefix[i] + r2[i];
    }
    // cost(a, b) for the group [a, b): computed on the fly from a running min/max over a.
    // best[k][b] = least cost of splitting [0, b) into k groups; arg keeps the last start.
    let inf = f64::INFINITY;
    let mut best = vec![vec![inf; p + 1]; g + 1];
    let mut arg = vec![vec![0usize; p + 1]; g + 1];
    best[0][0] = 0.0;
    for b in 1..=p {
        // Walk a from b−1 down to 0, widening the group's range as it grows.
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for a in (0..b).rev() {
            lo = lo.min(steps[a].0);
            hi = hi.max(steps[a].1);
            let rg = hi - lo;
            let cost = (b - a) as f64 * rg * rg - (prefix[b] - prefix[a]);
            for k in 1..=g.min(b) {
                let prev = best[k - 1][a];
                // `<=` prefers the longest last group on ties, so equal-cost answers are stable.
                if prev + cost < best[k][b] || (prev + cost == best[k][b] && a < arg[k][b]) {
                    best[k][b] = prev + cost;
                    arg[k][b] = a;
                }
            }
        }
    }
    // More groups never cost more, but use the fewest groups that reach the optimum so that
    // redundant splits (identical ranges) are not stored.
    let target = best[g][p];
    let k_used = (1..=g).find(|&k| best[k][p] <= target).unwrap_or(g);
    let mut starts = Vec::with_capacity(k_used);
    let (mut k, mut b) = (k_used, p);
    while k > 0 {
        let a = arg[k][b];
        starts.push(a);
        b = a;
        k -= 1;
    }
    starts.reverse();
    starts
}

/// The range of each span over its timesteps with data.
pub fn span_ranges(ranges: &[StepRange], spans: &[(usize, usize)]) -> Vec<(f32, f32)> {
    spans
        .iter()
        .map(|&(a, b)| {
            ranges[a..b]
                .iter()
                .flatten()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(l, h)| (lo.min(l), hi.max(h)))
        })
        .collect()
}

/// Boundary smoothing with strength `lambda` ∈ [0, 1]: each group's range moves towards the mean
/// of its neighbours' ranges, but only outwards — a group's range never shrinks below what its
/// own timesteps saw, so smoothing never clips. Neighbours are the *unsmoothed* ranges.
pub fn smooth_ranges(ranges: &[(f32, f32)], lambda: f32) -> Vec<(f32, f32)> {
    if lambda <= 0.0 || ranges.len() < 2 {
        return ranges.to_vec();
    }
    (0..ranges.len())
        .map(|i| {
            let neighbours: Vec<(f32, f32)> =
                [i.checked_sub(1), Some(i + 1)].into_iter().flatten().filter_map(|j| ranges.get(j).copied()).collect();
            let n = neighbours.len() as f32;
            let (nlo, nhi) = neighbours.iter().fold((0.0f32, 0.0f32), |(a, b), &(l, h)| (a + l / n, b + h / n));
            let (lo, hi) = ranges[i];
            let blend_lo = (1.0 - lambda) * lo + lambda * nlo;
            let blend_hi = (1.0 - lambda) * hi + lambda * nhi;
            (lo.min(blend_lo), hi.max(blend_hi))
        })
        .collect()
}

/// The full computation for one layer: spans, their ranges, optional smoothing, params.
pub fn time_groups(
    ranges: &[StepRange],
    num_groups: usize,
    mode: TimeGrouping,
    smoothing: f32,
    bits: u8,
) -> Vec<TimeGroup> {
    let spans = group_spans(ranges, num_groups, mode);
    let raw = span_ranges(ranges, &spans);
    let smoothed = smooth_ranges(&raw, smoothing);
    spans
        .iter()
        .zip(smoothed)
        .map(|(&(a, b), (lo, hi))| {
            let (scale, zero_point) = activation_params(lo, hi, bits);
            TimeGroup { t_start: a as u32, t_end: b as u32, scale, zero_point }
        })
        .collect()
}

/// Quantize one activation value with a group's params (docs/FORMAT.md §4.2).
pub fn quantize_activation(x: f32, g: &TimeGroup, bits: u8) -> u32 {
    let qmax = ((1u32 << bits) - 1) as f32;
    ((x / g.scale).round_ties_even() + g.zero_point as f32).clamp(0.0, qmax) as u32
}

/// The value an activation code stands for.
pub fn dequantize_activation(q: u32, g: &TimeGroup) -> f32 {
    (q as f32 - g.zero_point as f32) * g.scale
}

/// The params in force at timestep index `t` (the group whose `[t_start, t_end)` holds it).
pub fn params_for_timestep(groups: &[TimeGroup], t: u32) -> Option<&TimeGroup> {
    groups.iter().find(|g| g.t_start <= t && t < g.t_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(scale: f32, zp: i32, bits: u8, lo: f32, hi: f32) -> bool {
        let qmax = ((1u32 << bits) - 1) as f32;
        let (gl, gh) = (-(zp as f32) * scale, (qmax - zp as f32) * scale);
        gl <= lo.min(0.0) && gh >= hi.max(0.0) && (0..=qmax as i32).contains(&zp)
    }

    #[test]
    fn params_cover_the_range_and_zero() {
        for (lo, hi) in [
            (-1.0f32, 3.0f32),
            (0.5, 2.0),
            (-2.0, -0.1),
            (0.0, 0.0),
            (-1e-30, 1e-30),
            (-3e38, 3e38),
            (-0.0176, 40.0), // a sliver below zero: the zero point must still leave it a code
            (-40.0, 0.0001),
        ] {
            for bits in [4u8, 8] {
                let (s, z) = activation_params(lo, hi, bits);
                assert!(s.is_finite() && s > 0.0, "{lo} {hi}");
                assert!(covers(s, z, bits, lo, hi), "{lo} {hi} {bits}: {s} {z}");
            }
        }
        // a positive-only range puts the zero point at 0, negative-only at qmax
        assert_eq!(activation_params(0.5, 2.0, 8).1, 0);
        assert_eq!(activation_params(-2.0, -0.1, 8).1, 255);
    }

    #[test]
    fn uniform_spans_follow_floor_rule_and_skip_missing() {
        let r: Vec<StepRange> = (0..10).map(|_| Some((-1.0, 1.0))).collect();
        assert_eq!(group_spans(&r, 3, TimeGrouping::Uniform), vec![(0, 3), (3, 6), (6, 10)]);
        assert_eq!(group_spans(&r, 20, TimeGrouping::Uniform).len(), 10);
        let mut m = r.clone();
        // The whole middle group has no data: its timesteps join the previous group.
        m[3..6].fill(None);
        assert_eq!(group_spans(&m, 3, TimeGrouping::Uniform), vec![(0, 6), (6, 10)]);
        m[0] = None;
        assert_eq!(group_spans(&m, 3, TimeGrouping::Uniform), vec![(0, 6), (6, 10)]);
    }

    #[test]
    fn adaptive_finds_the_regime_change() {
        // early timesteps have wide ranges, late ones narrow: the split belongs at the change
        let r: Vec<StepRange> = (0..12).map(|t| if t < 7 { Some((-8.0, 8.0)) } else { Some((-1.0, 1.0)) }).collect();
        assert_eq!(group_spans(&r, 2, TimeGrouping::Adaptive), vec![(0, 7), (7, 12)]);
        // identical ranges need only one group even when more are allowed
        let same: Vec<StepRange> = vec![Some((-1.0, 1.0)); 5];
        assert_eq!(group_spans(&same, 4, TimeGrouping::Adaptive), vec![(0, 5)]);
    }

    fn excess(ranges: &[StepRange], spans: &[(usize, usize)]) -> f64 {
        spans
            .iter()
            .map(|&(a, b)| {
                let steps: Vec<(f64, f64)> = ranges[a..b].iter().flatten().map(|&r| widened(r)).collect();
                let lo = steps.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
                let hi = steps.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                steps.iter().map(|(l, h)| (hi - lo).powi(2) - (h - l).powi(2)).sum::<f64>()
            })
            .sum()
    }

    fn step_ranges() -> impl Strategy<Value = Vec<StepRange>> {
        prop::collection::vec(prop_oneof![1 => Just(None), 6 => (-50.0f32..0.0, 0.0f32..50.0).prop_map(Some)], 1..24)
            .prop_filter("needs data", |v| v.iter().any(Option::is_some))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn spans_tile_and_adaptive_beats_uniform(ranges in step_ranges(), g in 1usize..8) {
            for mode in [TimeGrouping::Uniform, TimeGrouping::Adaptive] {
                let spans = group_spans(&ranges, g, mode);
                prop_assert!(!spans.is_empty() && spans.len() <= g);
                prop_assert_eq!(spans[0].0, 0);
                prop_assert_eq!(spans.last().unwrap().1, ranges.len());
                for w in spans.windows(2) { prop_assert_eq!(w[0].1, w[1].0); }
                for &(a, b) in &spans { prop_assert!(ranges[a..b].iter().any(Option::is_some)); }
            }
            let u = excess(&ranges, &group_spans(&ranges, g, TimeGrouping::Uniform));
            let a = excess(&ranges, &group_spans(&ranges, g, TimeGrouping::Adaptive));
            prop_assert!(a <= u * (1.0 + 1e-9) + 1e-9, "adaptive {} > uniform {}", a, u);
        }

        #[test]
        fn activations_in_a_group_round_trip_within_half_a_step(
            ranges in step_ranges(), g in 1usize..6, bits in prop_oneof![Just(4u8), Just(8u8)], u in 0.0f32..=1.0,
        ) {
            let spans = group_spans(&ranges, g, TimeGrouping::Adaptive);
            let groups = time_groups(&ranges, g, TimeGrouping::Adaptive, 0.0, bits);
            for (grp, &(a, b)) in groups.iter().zip(&spans) {
                for &(lo, hi) in ranges[a..b].iter().flatten() {
                    for x in [lo, hi, 0.0, lo + u * (hi - lo)] {
                        let back = dequantize_activation(quantize_activation(x, grp, bits), grp);
                        // inside the grid nothing clips: the error is rounding to the grid, plus
                        // the f32 rounding of x/scale and q·scale (a few ulps of x)
                        let ulps = 4.0 * f32::EPSILON * x.abs().max(back.abs());
                        prop_assert!((back - x).abs() <= grp.scale * 0.5 * (1.0 + 1e-5) + ulps, "{} -> {} (scale {})", x, back, grp.scale);
                    }
                    prop_assert_eq!(dequantize_activation(quantize_activation(0.0, grp, bits), grp), 0.0);
                }
            }
        }

        #[test]
        fn smoothing_never_clips_a_group(ranges in step_ranges(), g in 1usize..8, lambda in 0.0f32..=1.0) {
            let spans = group_spans(&ranges, g, TimeGrouping::Adaptive);
            let groups = time_groups(&ranges, g, TimeGrouping::Adaptive, lambda, 8);
            for (grp, &(a, b)) in groups.iter().zip(&spans) {
                for &(lo, hi) in ranges[a..b].iter().flatten() {
                    prop_assert!(covers(grp.scale, grp.zero_point, 8, lo, hi));
                }
            }
            for t in 0..ranges.len() as u32 {
                prop_assert!(params_for_timestep(&groups, t).is_some());
            }
        }
    }
}
