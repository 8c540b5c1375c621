//! Scalar reference kernels. Every optimised kernel must reproduce these bit for bit
//! (codes, params) or within a stated bound (f64 error sums).

use core::mem::MaybeUninit;

/// Minimum and maximum of a non-empty slice of finite values. `-0.0` is normalised to `+0.0`
/// so the result does not depend on which zero a lane saw first.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    let mut mn = f32::INFINITY;
    let mut mx = f32::NEG_INFINITY;
    for &v in x {
        if v < mn {
            mn = v;
        }
        if v > mx {
            mx = v;
        }
    }
    (mn + 0.0, mx + 0.0)
}

/// `b < a ? b : a`: wasm's `f32x4.pmin` per lane (NaN in `a` is kept, as the SIMD twin does).
#[inline(always)]
pub fn pmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// `a < b ? b : a`: wasm's `f32x4.pmax` per lane.
#[inline(always)]
pub fn pmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// The range search's first candidates: codes at inverse scales (qmax + t) / range for t in this
/// grid (ggml `make_qkx2_quants` style, codes offset by the group minimum), each refit by least
/// squares. Then [`lloyd_steps`] Lloyd steps: codes recomputed against the best refit (its own
/// offset and scale) and refit again. Measured on 2M Gaussian samples (`native_anchors`) against
/// the earlier 11-point grid (t = −1, −0.8, …, 1) without Lloyd steps, both in float: 4-bit
/// g32/64/128 23.10/21.70/20.65 dB vs 23.11/21.69/20.64 with 6 passes instead of 11; 2-bit
/// 10.26/9.48/9.04 vs 10.14/9.23/8.62 with 7 passes. In fixed point ([`search_fixed_point`]) the
/// same test gives 23.10/21.69/20.65 and 10.26/9.48/9.03.
pub const SEARCH_GRID: [f32; 5] = [-0.8, -0.4, 0.0, 0.4, 0.8];

/// Lloyd steps after the grid: two at 2 bits, where they gain 0.05–0.16 dB over one; one
/// otherwise, where a second gains ≤ 0.03 dB for a sixth more work.
#[inline]
pub fn lloyd_steps(qmax: f32) -> usize {
    if qmax <= 3.0 {
        2
    } else {
        1
    }
}

/// The search scores candidates on the group in fixed point: dq = round_half_even((x − min) · R /
/// range), an integer in [0, R]. A grid candidate's codes are then (dq·M + 2^(k−1)) >> k, one
/// 16-bit multiply, add and shift for eight values, and every sum is an exact integer, so a SIMD
/// twin runs eight values per operation and agrees by construction. Per bit width, (R, k):
///
/// - 2 and 4 bits: (512, 13) and (1024, 11). dq·M + 2^(k−1) stays below 2^16 (unsigned 16-bit
///   lanes); M = (qmax + t)·2^k/R is an integer for t on a lattice of step R/2^k, so the grid
///   points are [`SEARCH_GRID`] rounded to steps of 1/16 and 1/2 (at 4 bits t = −1, −0.5, 0,
///   0.5, 1), and a grid code is the exact rounding of dq·(qmax + t)/R.
/// - 8 bits: (4096, 15), the rounding multiply `i16x8.q15mulr_sat_s` ([`mul_shift`]); M rounds to
///   1/8 code steps.
///
/// R sets the resolution: dq's rounding moves a code by at most 0.5·qmax/R code steps (≈ 0.007 at
/// 2 and 4 bits), so only near-ties move, and the stored params are refit and rounded afterwards.
/// R also bounds the integer sums: with n ≤ 256 every sum fits i32, and at 2 and 4 bits every sum
/// is below 2^24, so its f32 conversion is exact (at 8 bits Σdq·l can round). Measured in a numpy
/// model of this search against the same search in float on 2M samples (Gaussian and Student-t,
/// groups of 32/64/128): −0.002 to −0.01 dB at 4 bits, within ±0.01 dB at 2 bits, −0.015 to
/// −0.05 dB at 8 bits (where the search is off by default).
#[inline]
pub fn search_fixed_point(qmax: f32) -> (f32, u32) {
    if qmax <= 3.0 {
        (512.0, 13)
    } else if qmax <= 15.0 {
        (1024.0, 11)
    } else {
        (4096.0, 15)
    }
}

/// The integer multiplier M of grid point t (see [`search_fixed_point`]). At t = 0 it is exactly
/// qmax·2^k/R, so the largest dq maps to qmax and no code exceeds qmax for t ≤ 0; for t > 0 codes
/// are clamped.
#[inline]
pub fn grid_multiplier(qmax: f32, t: f32) -> i32 {
    let (r, k) = search_fixed_point(qmax);
    ((qmax + t) * ((1u32 << k) as f32 / r)).round_ties_even() as i32
}

/// [`grid_multiplier`] for every [`SEARCH_GRID`] point: a table for the three bit widths (the
/// SIMD search runs once per four groups, and V8 does not hoist the float-to-int conversions),
/// computed for any other `qmax`. `grid_multiplier_tables_match` checks the tables.
#[inline]
pub fn grid_multipliers(qmax: f32) -> [i32; 5] {
    match qmax as u32 {
        3 => [35, 42, 48, 54, 61],
        15 => [28, 29, 30, 31, 32],
        255 => [2034, 2037, 2040, 2043, 2046],
        _ => SEARCH_GRID.map(|t| grid_multiplier(qmax, t)),
    }
}

/// (a·m + 2^(k−1)) >> k with an arithmetic shift (ties round up): at k = 15 wasm's
/// `i16x8.q15mulr_sat_s` per lane, whose saturation only happens for a = m = −2^15, which the
/// search never produces.
#[inline(always)]
pub fn mul_shift(a: i32, m: i32, k: u32) -> i32 {
    (a * m + (1 << (k - 1))) >> k
}

/// The longest group the search handles (the largest `groupSize`).
pub const MAX_SEARCH_GROUP: usize = 256;

/// What the range search found for one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchFit {
    /// The group's extrema (`-0.0` normalised to `+0.0`), as [`min_max`] gives them.
    pub min: f32,
    pub max: f32,
    /// Least-squares (scale, min) of the chosen candidate, or `None` when no candidate had a
    /// positive scale (constant groups among them).
    pub fit: Option<(f32, f32)>,
}

/// Best candidate so far (see [`consider`]): its a², a, det and Σl.
#[derive(Debug, Clone, Copy)]
struct Best {
    a2: f32,
    a: f32,
    det: f32,
    sl: f32,
}

impl Best {
    const NONE: Best = Best { a2: f32::NEG_INFINITY, a: 0.0, det: 1.0, sl: 0.0 };

    fn found(&self) -> bool {
        self.a2 > f32::NEG_INFINITY
    }

    /// The Lloyd update: the refit replaces the best when its scale is positive (no score
    /// comparison: with exact arithmetic a Lloyd step cannot raise the error).
    fn take_if_valid(&mut self, n: f32, sdq: f32, sums: CodeSums) {
        let (det, a, sl) = score_terms(n, sdq, sums);
        if det > 0.0 && a > 0.0 {
            *self = Best { a2: a * a, a, det, sl };
        }
    }

    /// The least-squares (scale, offset) of the best candidate's codes, in dq units: scale = a/det,
    /// offset (Σdq − Σl·scale)/n.
    fn fit(&self, n: f32, sdq: f32) -> (f32, f32) {
        let scale = self.a / self.det;
        (scale, (sdq - self.sl * scale) / n)
    }
}

/// One candidate's integer sums over a group: (Σl, Σl², Σdq·l).
pub type CodeSums = (i32, i32, i32);

/// Score one candidate's codes. With codes l and sums (Σl, Σl², Σdq·l), the least-squares fit
/// dq ≈ s·l + m has s = a/det with a = nΣdq·l − ΣdqΣl and det = nΣl² − (Σl)², and leaves
/// Σdq² − (Σdq)²/n − a²/(n·det); that error also bounds the codes recomputed against (s, m). So
/// the best candidate has the largest a²/det, compared by cross-multiplying (det > 0): no
/// division per candidate. Its scale must be positive (a > 0). The exact integer sums are
/// converted to f32 and scored there, four groups per SIMD op; a score only ranks candidates —
/// the stored params are then checked by their exact error against min/max. Branch-free (a
/// zero determinant fails the test) so that the SIMD twin, which runs the same operations in the
/// same order per lane, agrees bit for bit; the first of equal scores is kept.
#[inline(always)]
fn consider(best: &mut Best, n: f32, sdq: f32, sums: CodeSums) {
    let (det, a, sl) = score_terms(n, sdq, sums);
    let a2 = a * a;
    if det > 0.0 && a > 0.0 && a2 * best.det > best.a2 * det {
        *best = Best { a2, a, det, sl };
    }
}

/// (det, a, Σl) in f32 from a candidate's integer sums.
#[inline(always)]
fn score_terms(n: f32, sdq: f32, (sl, sl2, sdl): CodeSums) -> (f32, f32, f32) {
    let (sl, sl2, sdl) = (sl as f32, sl2 as f32, sdl as f32);
    (n * sl2 - sl * sl, n * sdl - sdq * sl, sl)
}

/// Sums of codes l = clamp(mul_shift(dq − off, m, k), 0, qmax) over a group's dq.
#[inline(always)]
fn code_sums(dq: &[i32], off: i32, m: i32, k: u32, qmax: i32) -> CodeSums {
    let (mut sl, mut sl2, mut sdl) = (0, 0, 0);
    for &v in dq {
        let l = mul_shift(v - off, m, k).clamp(0, qmax);
        sl += l;
        sl2 += l * l;
        sdl += v * l;
    }
    (sl, sl2, sdl)
}

/// `v`, or `+0.0` when `v` is infinite or NaN.
#[inline(always)]
fn finite_or_zero(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The Lloyd step's integer (offset, multiplier) from a fit in dq units: round(offset) and
/// round(2^15/scale), clamped so that dq − offset and the multiplier stay in i16 (the clamps
/// only touch fits far outside the group, whose codes then all clamp to 0 or qmax). (0, 0) when
/// nothing was found, which gives all-zero codes and a zero determinant.
#[inline(always)]
pub fn lloyd_params(found: bool, scale: f32, offset: f32) -> (i32, i32) {
    if !found {
        return (0, 0);
    }
    // pmin/pmax as the SIMD twin clamps; `as i32` saturates and maps NaN to 0 as
    // `i32x4.trunc_sat_f32x4_s` does.
    let off = pmax(pmin(offset.round_ties_even(), 16384.0), -16384.0) as i32;
    let m = pmin((32768.0 / scale).round_ties_even(), 32767.0) as i32;
    (off, m)
}

/// Range search for one group of at most 256 finite values (see [`SEARCH_GRID`],
/// [`search_fixed_point`]). A group whose dq scale R/range is not finite (a constant group, a range
/// beyond f32 or below it) gets dq = 0 everywhere: all codes 0, a zero determinant, nothing
/// found. The Lloyd step's refit is taken whenever it has a positive scale (with exact
/// arithmetic it can only lower the error); the stored params are checked afterwards anyway.
/// Longer groups (which no config produces) find nothing: the integer sums are bounded for 256.
pub fn search(x: &[f32], qmax: f32) -> SearchFit {
    let (min, max) = min_max(x);
    if x.len() > MAX_SEARCH_GROUP {
        return SearchFit { min, max, fit: None };
    }
    let (r, k) = search_fixed_point(qmax);
    let s = finite_or_zero(r / (max - min));
    let mut buf = [0i32; MAX_SEARCH_GROUP];
    let dq = &mut buf[..x.len()];
    for (d, &v) in dq.iter_mut().zip(x) {
        *d = ((v - min) * s).round_ties_even() as i32;
    }
    let dq = &*dq;
    let sdq = dq.iter().sum::<i32>() as f32;
    let n = x.len() as f32;
    let q = qmax as i32;
    let mut best = Best::NONE;
    for m in grid_multipliers(qmax) {
        consider(&mut best, n, sdq, code_sums(dq, 0, m, k, q));
    }
    for _ in 0..lloyd_steps(qmax) {
        let (scale, offset) = best.fit(n, sdq);
        let (off, m) = lloyd_params(best.found(), scale, offset);
        best.take_if_valid(n, sdq, code_sums(dq, off, m, 15, q));
    }
    let fit = best.found().then(|| {
        let (scale, offset) = best.fit(n, sdq);
        (scale / s, min + offset / s)
    });
    SearchFit { min, max, fit }
}

/// An f16-rounded (scale, min): the bit patterns as stored and their exact f32 values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HalfParams {
    pub scale_bits: u16,
    pub min_bits: u16,
    pub scale: f32,
    pub min: f32,
}

impl HalfParams {
    /// `scale` and `min` rounded to the nearest f16 (ties to even; ±inf beyond the range).
    pub fn round(scale: f32, min: f32) -> Self {
        let (s, m) = (half::f16::from_f32(scale), half::f16::from_f32(min));
        HalfParams { scale_bits: s.to_bits(), min_bits: m.to_bits(), scale: s.to_f32(), min: m.to_f32() }
    }
}

/// What the search measured for one group, for `quant::params` to pick the stored params from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Searched {
    /// The group's extrema, as [`min_max`] gives them.
    pub min: f32,
    pub max: f32,
    /// The min/max params: f16((max − min)/qmax) and f16(min).
    pub base: HalfParams,
    /// The search's least-squares (scale, min) ([`SearchFit::fit`]), and rounded to f16.
    pub fit: Option<(f32, f32)>,
    pub cand: Option<HalfParams>,
    /// Exact Σ(ŵ − x)² of each, with codes computed against the rounded params as stored
    /// ([`sequential_error`]); `cand_err` is 0 without a candidate. Infinite or NaN params give a
    /// NaN error, and such params are never stored.
    pub base_err: f32,
    pub cand_err: f32,
}

/// Σ(ŵ − x)² over `x` for the stored params `p`, with codes as [`quantize_codes`] computes them
/// (lower clamp by [`clamp_code`]), summed in element order in one f32 accumulator (so a SIMD twin
/// can run four groups at once, one per lane). With `codes`, the codes are written there too.
pub fn sequential_error(x: &[f32], p: HalfParams, qmax: f32, mut codes: Option<&mut [u8]>) -> f32 {
    let inv = inverse(p.scale);
    let mut acc = 0f32;
    for (i, &v) in x.iter().enumerate() {
        let q = clamp_code(((v - p.min) * inv).round_ties_even(), qmax);
        if let Some(c) = codes.as_deref_mut() {
            c[i] = q as u8;
        }
        let e = q * p.scale + p.min - v;
        acc += e * e;
    }
    acc
}

/// The range search of one group, both params rounded to f16, and their exact errors; the
/// candidate's codes are written to `codes` (as long as `x`) on the way, since it is usually
/// the one stored.
pub fn search_exact(x: &[f32], qmax: f32, codes: &mut [u8]) -> Searched {
    Searched::measure(search(x, qmax), qmax, codes, |p, c| sequential_error(x, p, qmax, c))
}

impl Searched {
    /// What a search `found`: the min/max params and its fit, rounded to f16, each measured by
    /// `error(params, codes)`; the candidate's measurement writes its codes to `codes`.
    fn measure(
        found: SearchFit,
        qmax: f32,
        codes: &mut [u8],
        error: impl Fn(HalfParams, Option<&mut [u8]>) -> f32,
    ) -> Self {
        let base = HalfParams::round((found.max - found.min) / qmax, found.min);
        let cand = found.fit.map(|(s, m)| HalfParams::round(s, m));
        Searched {
            min: found.min,
            max: found.max,
            base,
            fit: found.fit,
            cand,
            base_err: error(base, None),
            cand_err: cand.map_or(0.0, |c| error(c, Some(codes))),
        }
    }
}

/// Signature of [`search_exact4`].
pub type SearchExact4Fn = fn([&[f32]; 4], f32, [&mut [u8]; 4]) -> [Searched; 4];

/// [`search_exact`] on four groups (the SIMD twin's unit of work), codes to `codes[i]`.
pub fn search_exact4(xs: [&[f32]; 4], qmax: f32, codes: [&mut [u8]; 4]) -> [Searched; 4] {
    let mut codes = codes.into_iter();
    xs.map(|x| search_exact(x, qmax, codes.next().expect("four code buffers")))
}

/// The importance-weighted search's resolution: each group's importances h (finite, ≥ 0) become
/// integer levels hq = round_half_even(h · L / max h), so that its sums stay exact integers as the
/// plain search's do. L is at most 511 and, for each bit width and group length, the largest
/// level that keeps the arithmetic exact and finite ([`importance_levels_max`]). A column below
/// 1/(2L) of the group's largest importance ranks as weight 0; the stored params are still
/// checked against min/max with the f32 importances.
pub const IMPORTANCE_LEVELS: f32 = 511.0;

/// The widest codes the weighted fixed-point search takes (8 bits, the widest we store).
pub const WEIGHTED_SEARCH_MAX_QMAX: f32 = 255.0;

/// The largest importance level L for groups of `n` values at `qmax` (see [`IMPORTANCE_LEVELS`]),
/// the smallest of four bounds, with R the dq resolution ([`search_fixed_point`]):
///
/// - 511: the resolution the 2- and 4-bit searches were measured with;
/// - hq·l ≤ L·qmax fits a signed 16-bit lane (the SIMD twin's `i16x8.mul`);
/// - Σhq·l·dq ≤ L·qmax·R·n stays inside i32;
/// - the scores stay finite in f32: with W = Σhq ≤ L·n, a candidate's a = W²·cov(dq, l) and
///   det = W²·var(l) (weighted) give a²·det ≤ W⁶·(R/2)²·(qmax/2)⁴, held below 2^127 (one bit of
///   room for the f32 rounding of the sums). At 4 bits this caps groups of 256 at L = 299, where
///   511 could overflow a score (2^127.5 for 256 uniform values of equal importance).
///
/// At 2 bits L = 511; at 4 bits 511 for groups of up to 150 values; at 8 bits L = 32 for groups of
/// 64 (16 for 128, 8 for 256) — measured on 1,200 heavy-tailed and uniform groups of 64 with exponential
/// importances, 15, 31 and 127 levels rank the candidates equally well (within 0.01 dB).
#[inline]
pub fn importance_levels_max(qmax: f32, n: usize) -> f32 {
    let (r, _) = search_fixed_point(qmax);
    let (q, r, n) = (qmax as f64, r as f64, n.max(1) as f64);
    let lane = (i16::MAX as f64 / q).floor();
    let sums = (i32::MAX as f64 / (q * r * n)).floor();
    let score = (score_weight_max(qmax) / n).floor();
    IMPORTANCE_LEVELS.min(lane as f32).min(sums as f32).min(score as f32)
}

/// The largest Σhq whose scores stay below 2^127 at `qmax` (see [`importance_levels_max`]):
/// (2^127 / ((R/2)²·(qmax/2)⁴))^(1/6), a table for the three bit widths (computed for any other
/// `qmax`); `importance_level_tables_match` checks the table.
#[inline]
fn score_weight_max(qmax: f32) -> f64 {
    match qmax as u32 {
        3 => 282_918.0,
        15 => 76_795.0,
        255 => 7_317.0,
        _ => {
            let (r, _) = search_fixed_point(qmax);
            let (q, r) = (qmax as f64, r as f64);
            (2f64.powi(127) / ((r / 2.0).powi(2) * (q / 2.0).powi(4))).powf(1.0 / 6.0).floor()
        }
    }
}

/// The importance levels of one group (see [`IMPORTANCE_LEVELS`]) at `qmax` and the f32 weights
/// its exact errors use: `h` itself, or all ones when max h is not positive or L/max h is not
/// finite (no importance known: equal weights). Returns whether the ones were used.
pub fn importance_levels(h: &[f32], qmax: f32, hq: &mut [i32]) -> bool {
    let (_, hmax) = min_max(h);
    let levels = importance_levels_max(qmax, h.len());
    let sh = if hmax > 0.0 { finite_or_zero(levels / hmax) } else { 0.0 };
    if sh > 0.0 {
        for (o, &v) in hq.iter_mut().zip(h) {
            *o = (v * sh).round_ties_even() as i32;
        }
        false
    } else {
        hq.fill(1);
        true
    }
}

/// Weighted sums (Σhq·l, Σhq·l², Σhq·l·dq) of the codes l = clamp(mul_shift(dq − off, m, k), 0,
/// qmax), each term formed from hl = hq·l.
#[inline(always)]
fn weighted_code_sums(dq: &[i32], hq: &[i32], off: i32, m: i32, k: u32, qmax: i32) -> CodeSums {
    let (mut sl, mut sl2, mut sdl) = (0, 0, 0);
    for (&v, &w) in dq.iter().zip(hq) {
        let l = mul_shift(v - off, m, k).clamp(0, qmax);
        let hl = w * l;
        sl += hl;
        sl2 += hl * l;
        sdl += hl * v;
    }
    (sl, sl2, sdl)
}

/// The weighted search's grid at 4 and 8 bits: t = −1.5 … 1.5 in steps of 0.5 (on the lattice of
/// [`search_fixed_point`] at both). Importance lets the best range move further from min/max
/// than on the weights alone: on the 31,853 groups of 64 of the bundled DiT and U-Net with their
/// calibration's second moments, with a Lloyd step from every grid point and one more from the
/// best, the plain grid's five points (t = −1 … 1) leave 0.04 dB more weighted error at 4 bits
/// and 0.13 dB more at 8 than these seven, and five or six of these seven 0.01–0.11 dB more.
/// At 2 bits the plain grid ([`SEARCH_GRID`]) is as good.
pub const WEIGHTED_GRID: [f32; 7] = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5];

/// The weighted search's grid multipliers (see [`grid_multiplier`]) at the three widths:
/// [`SEARCH_GRID`]'s at 2 bits, [`WEIGHTED_GRID`]'s at 4 and 8. Grid points with t ≤ 0 come
/// first (their codes need no clamp).
#[inline]
pub fn weighted_grid_multipliers(qmax: f32) -> &'static [i32] {
    if qmax <= 3.0 {
        &[35, 42, 48, 54, 61]
    } else if qmax <= 15.0 {
        &[27, 28, 29, 30, 31, 32, 33]
    } else {
        &[2028, 2032, 2036, 2040, 2044, 2048, 2052]
    }
}

/// How many of the weighted search's grid candidates take a Lloyd step of their own (the best by
/// [`rank`]) before the best of all takes one more: all five at 2 bits, the best three of seven
/// at 4 and 8. Measured on the 31,853 groups of 64 of the bundled DiT and U-Net with their
/// calibration's second moments (weighted error against two Lloyd steps from every grid point,
/// 15 and 21 passes): +0.09 dB at 2 bits (11 passes), +0.05 at 4 and 8 (11); every grid point
/// with a step at 4 bits (15 passes) +0.03, and the plain search 0.88 dB worse.
#[inline]
pub fn weighted_refined(qmax: f32) -> usize {
    if qmax <= 3.0 {
        5
    } else {
        3
    }
}

/// The weighted search's ranking score of one candidate: a²/det (see [`consider`]), −∞ for a
/// candidate without a positive scale. A division per candidate, so that the ranks form one
/// order (the cross-multiplied comparison [`consider`] makes need not be transitive in f32).
#[inline(always)]
fn rank_score(w: f32, sdq: f32, sums: CodeSums) -> f32 {
    let (det, a, _) = score_terms(w, sdq, sums);
    if det > 0.0 && a > 0.0 {
        (a * a) / det
    } else {
        f32::NEG_INFINITY
    }
}

/// Candidate i's rank among `scores`: how many score higher, or equal with a smaller index (so
/// the ranks of n candidates are 0 … n − 1, each once).
#[inline(always)]
fn rank(scores: &[f32], i: usize) -> usize {
    scores.iter().enumerate().filter(|&(j, &sj)| sj > scores[i] || (j < i && sj == scores[i])).count()
}

/// The Lloyd step from one candidate's sums: codes recomputed against its least-squares fit, in
/// (offset, multiplier) form ([`lloyd_params`]); (0, 0) when it has no valid fit.
#[inline(always)]
fn lloyd_from(w: f32, sdq: f32, sums: CodeSums) -> (i32, i32) {
    let mut b = Best::NONE;
    consider(&mut b, w, sdq, sums);
    let (scale, offset) = b.fit(w, sdq);
    lloyd_params(b.found(), scale, offset)
}

/// [`search`] with every candidate scored by its importance-weighted error Σ h (x − ŵ)²: the same
/// dq, with the integer sums weighted by the levels hq (the least-squares score a²/det then has
/// Σhq for n and Σhq·dq for Σdq). The grid candidates ([`weighted_grid_multipliers`]) are
/// scored, the best of them ([`weighted_refined`], by [`rank`]) each take a Lloyd step — codes
/// recomputed against its refit — and the best of all one more. The steps are what make the
/// search nearly as good as an exhaustive one: with uneven weights the grid's codes are far from
/// their refit's own (scoring the grid alone loses 0.25–0.47 dB). Codes of at most 8 bits
/// ([`WEIGHTED_SEARCH_MAX_QMAX`]); finds nothing at wider ones or for groups over 256 values.
pub fn weighted_search(x: &[f32], h: &[f32], qmax: f32) -> SearchFit {
    weighted_search_levels(x, h, qmax).0
}

/// [`weighted_search`], and whether the group had no importance (equal weights, see
/// [`importance_levels`]).
fn weighted_search_levels(x: &[f32], h: &[f32], qmax: f32) -> (SearchFit, bool) {
    let (min, max) = min_max(x);
    if x.len() > MAX_SEARCH_GROUP || qmax > WEIGHTED_SEARCH_MAX_QMAX || h.len() != x.len() {
        return (SearchFit { min, max, fit: None }, false);
    }
    let (r, k) = search_fixed_point(qmax);
    let s = finite_or_zero(r / (max - min));
    let (mut dqbuf, mut hqbuf) = ([0i32; MAX_SEARCH_GROUP], [0i32; MAX_SEARCH_GROUP]);
    let (dq, hq) = (&mut dqbuf[..x.len()], &mut hqbuf[..x.len()]);
    for (d, &v) in dq.iter_mut().zip(x) {
        *d = ((v - min) * s).round_ties_even() as i32;
    }
    let equal = importance_levels(h, qmax, hq);
    let (dq, hq) = (&*dq, &*hq);
    let w = hq.iter().sum::<i32>() as f32;
    let sdq = dq.iter().zip(hq).map(|(&d, &h)| d * h).sum::<i32>() as f32;
    let q = qmax as i32;
    let grid = weighted_grid_multipliers(qmax);
    let mut sums = [(0, 0, 0); 7];
    let sums = &mut sums[..grid.len()];
    for (s, &m) in sums.iter_mut().zip(grid) {
        *s = weighted_code_sums(dq, hq, 0, m, k, q);
    }
    let mut best = Best::NONE;
    for &s in sums.iter() {
        consider(&mut best, w, sdq, s);
    }
    let mut scores = [f32::NEG_INFINITY; 7];
    for (score, &s) in scores.iter_mut().zip(sums.iter()) {
        *score = rank_score(w, sdq, s);
    }
    let scores = &scores[..sums.len()];
    for r in 0..weighted_refined(qmax) {
        let i = (0..sums.len()).find(|&i| rank(scores, i) == r).unwrap_or(0);
        let (off, m) = lloyd_from(w, sdq, sums[i]);
        consider(&mut best, w, sdq, weighted_code_sums(dq, hq, off, m, 15, q));
    }
    let (scale, offset) = best.fit(w, sdq);
    let (off, m) = lloyd_params(best.found(), scale, offset);
    consider(&mut best, w, sdq, weighted_code_sums(dq, hq, off, m, 15, q));
    let fit = best.found().then(|| {
        let (scale, offset) = best.fit(w, sdq);
        (scale / s, min + offset / s)
    });
    (SearchFit { min, max, fit }, equal)
}

/// Σ w·(ŵ − x)² over `x` for the stored params `p`, codes as in [`sequential_error`] (written to
/// `codes` when given), each term formed as (e·e)·w and summed in element order in f32.
pub fn weighted_sequential_error(x: &[f32], w: &[f32], p: HalfParams, qmax: f32, mut codes: Option<&mut [u8]>) -> f32 {
    let inv = inverse(p.scale);
    let mut acc = 0f32;
    for (i, (&v, &wi)) in x.iter().zip(w).enumerate() {
        let q = clamp_code(((v - p.min) * inv).round_ties_even(), qmax);
        if let Some(c) = codes.as_deref_mut() {
            c[i] = q as u8;
        }
        let e = q * p.scale + p.min - v;
        acc += (e * e) * wi;
    }
    acc
}

/// [`search_exact`] for the importance-weighted search: the errors are Σ h (ŵ − x)² with the
/// group's f32 importances (ones when it has none, see [`importance_levels`]).
pub fn weighted_search_exact(x: &[f32], h: &[f32], qmax: f32, codes: &mut [u8]) -> Searched {
    let (found, equal) = weighted_search_levels(x, h, qmax);
    let ones = [1f32; MAX_SEARCH_GROUP];
    let w = if equal { &ones[..x.len()] } else { h };
    Searched::measure(found, qmax, codes, |p, c| weighted_sequential_error(x, w, p, qmax, c))
}

/// Signature of [`weighted_search_exact4`].
pub type WeightedSearchExact4Fn = fn([&[f32]; 4], [&[f32]; 4], f32, [&mut [u8]; 4]) -> [Searched; 4];

/// [`weighted_search_exact`] on four groups with their importances (the SIMD twin's unit).
pub fn weighted_search_exact4(xs: [&[f32]; 4], hs: [&[f32]; 4], qmax: f32, codes: [&mut [u8]; 4]) -> [Searched; 4] {
    let mut codes = codes.into_iter();
    let mut hs = hs.into_iter();
    xs.map(|x| {
        weighted_search_exact(x, hs.next().expect("four importances"), qmax, codes.next().expect("four code buffers"))
    })
}

/// The f32 reciprocal codes are computed with; 0 for a zero scale (constant group), which
/// maps every value to code 0 without a division by zero.
#[inline]
pub fn inverse(scale: f32) -> f32 {
    if scale == 0.0 {
        0.0
    } else {
        1.0 / scale
    }
}

/// A rounded code r clamped to [0, qmax] as the search's error passes do it: +0 when the sign
/// bit is set (negative values, −0, a NaN with the sign bit), then pmin(·, qmax). For every
/// finite r this is the code [`code_of`] gives (as a byte) with the same reconstruction error.
#[inline(always)]
pub fn clamp_code(r: f32, qmax: f32) -> f32 {
    pmin(if r.is_sign_negative() { 0.0 } else { r }, qmax)
}

/// round_half_even(clamp(v, lo, hi)) for integer bounds lo ≤ hi (equal to clamping after
/// rounding), clamped with pmax/pmin as the SIMD twin does. ggml's block codes.
#[inline(always)]
pub fn clamp_round(v: f32, lo: f32, hi: f32) -> f32 {
    let c = pmin(pmax(v, lo), hi);
    // wasm has the instruction (f32.nearest); the native baseline may not (SSE2 has no rounding
    // instruction and roundevenf is a libm call). Adding and removing 1.5·2^23 rounds a value this
    // small to the nearest integer, ties to even, exactly as the FPU does.
    #[cfg(target_arch = "wasm32")]
    return c.round_ties_even();
    #[cfg(not(target_arch = "wasm32"))]
    {
        const MAGIC: f32 = 12_582_912.0;
        (c + MAGIC) - MAGIC
    }
}

/// Lanes of the ggml block sums: a block's values are summed in eight interleaved lanes (value i
/// in lane i mod 8), folded in a fixed order, so the SIMD twin (two vectors of four) reproduces them.
pub const BLOCK_LANES: usize = 8;

#[inline(always)]
pub fn fold_block_lanes(l: [f32; BLOCK_LANES]) -> f32 {
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// For the codes q = clamp_round((x − m)·inv, lo, hi) of `x` (a multiple of 8 values):
/// [Σ x·q, Σ q², Σ q], the least-squares normal equations of a ggml block search.
pub fn block_code_sums(x: &[f32], m: f32, inv: f32, lo: f32, hi: f32) -> [f32; 3] {
    let (mut xq, mut qq, mut q1) = ([0f32; BLOCK_LANES], [0f32; BLOCK_LANES], [0f32; BLOCK_LANES]);
    for c in x.chunks_exact(BLOCK_LANES) {
        for l in 0..BLOCK_LANES {
            let q = clamp_round((c[l] - m) * inv, lo, hi);
            xq[l] += c[l] * q;
            qq[l] += q * q;
            q1[l] += q;
        }
    }
    [fold_block_lanes(xq), fold_block_lanes(qq), fold_block_lanes(q1)]
}

/// Σ (x − (d·q + m))² for the codes q = clamp_round((x − m)·inv, lo, hi) of `x` (a multiple of 8
/// values): the error a ggml block search ranks candidates by.
pub fn block_code_sse(x: &[f32], d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let mut e = [0f32; BLOCK_LANES];
    for c in x.chunks_exact(BLOCK_LANES) {
        for l in 0..BLOCK_LANES {
            let q = clamp_round((c[l] - m) * inv, lo, hi);
            let r = c[l] - (d * q + m);
            e[l] += r * r;
        }
    }
    fold_block_lanes(e)
}

/// (x, w, m, inv, lo, hi) → [Σ w·x·q, Σ w·q², Σ w·q].
pub type BlockWeightedSumsFn = fn(&[f32], &[f32], f32, f32, f32, f32) -> [f32; 3];
/// (x, w, d, m, inv, lo, hi) → Σ w·(x − (d·q + m))².
pub type BlockWeightedSseFn = fn(&[f32], &[f32], f32, f32, f32, f32, f32) -> f32;

/// [`block_code_sums`] with a weight per value (a column's importance): [Σ w·x·q, Σ w·q², Σ w·q],
/// each term formed as wq = w·q, then x·wq, wq·q, wq.
pub fn block_weighted_sums(x: &[f32], w: &[f32], m: f32, inv: f32, lo: f32, hi: f32) -> [f32; 3] {
    let (mut xq, mut qq, mut q1) = ([0f32; BLOCK_LANES], [0f32; BLOCK_LANES], [0f32; BLOCK_LANES]);
    for (c, cw) in x.chunks_exact(BLOCK_LANES).zip(w.chunks_exact(BLOCK_LANES)) {
        for l in 0..BLOCK_LANES {
            let q = clamp_round((c[l] - m) * inv, lo, hi);
            let wq = cw[l] * q;
            xq[l] += c[l] * wq;
            qq[l] += wq * q;
            q1[l] += wq;
        }
    }
    [fold_block_lanes(xq), fold_block_lanes(qq), fold_block_lanes(q1)]
}

/// [`block_code_sse`] weighted: Σ w·(x − (d·q + m))².
pub fn block_weighted_sse(x: &[f32], w: &[f32], d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let mut e = [0f32; BLOCK_LANES];
    for (c, cw) in x.chunks_exact(BLOCK_LANES).zip(w.chunks_exact(BLOCK_LANES)) {
        for l in 0..BLOCK_LANES {
            let q = clamp_round((c[l] - m) * inv, lo, hi);
            let r = c[l] - (d * q + m);
            e[l] += cw[l] * (r * r);
        }
    }
    fold_block_lanes(e)
}

/// Code of one value: clamp(round_half_even((x − min) · inv), 0, qmax), inv = [`inverse`]`(scale)`.
/// A multiply rather than a divide: it is several times cheaper in SIMD, and the result is
/// validated on the stored codes either way.
#[inline]
pub fn code_of(x: f32, inv: f32, min: f32, qmax: f32) -> f32 {
    ((x - min) * inv).round_ties_even().clamp(0.0, qmax)
}

/// Codes (one per byte, unpacked) for the stored params.
pub fn quantize_codes(x: &[f32], scale: f32, min: f32, qmax: f32, out: &mut [u8]) {
    let inv = inverse(scale);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = code_of(v, inv, min, qmax) as u8;
    }
}

/// The codes of ggml's symmetric block types: `clamp_round(x·inv, lo, hi) + offset` stored as
/// the low byte of the integer (Q8_0: lo = −127, hi = 127, offset 0, the byte an i8; Q4_0/Q5_0:
/// offset 8/16). `lo`, `hi` and `offset` are whole numbers with `lo + offset ≥ −128` and
/// `hi + offset ≤ 127`; `x` is finite.
pub fn symmetric_codes(x: &[f32], inv: f32, lo: f32, hi: f32, offset: f32, out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (clamp_round(v * inv, lo, hi) + offset) as i32 as u8;
    }
}

/// ŵ = q·scale + min, computed in f32 as a multiply then an add (no fused multiply-add):
/// the formula docs/FORMAT.md promises and numpy reproduces.
pub fn dequantize_codes(codes: &[u8], scale: f32, min: f32, out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = q as f32 * scale + min;
    }
}

/// `w[k] −= e·u[k]` for every k: GPTQ's error compensation of the columns after the one just
/// quantized. A multiply then a subtract, two roundings (no fused multiply-add), as the SIMD twin.
pub fn sub_scaled(w: &mut [f32], u: &[f32], e: f32) {
    for (x, &v) in w.iter_mut().zip(u) {
        *x -= e * v;
    }
}

/// Pack codes of `bits` ∈ {2,4,8} densely, little-end first: element k of a byte's codes sits in
/// bits [k·bits, (k+1)·bits). `out` must hold ceil(len·bits/8) bytes; a partial last byte is
/// zero-padded.
pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out[..codes.len()].copy_from_slice(codes),
        4 => {
            for (o, c) in out.iter_mut().zip(codes.chunks(2)) {
                *o = c[0] | (c.get(1).copied().unwrap_or(0) << 4);
            }
        }
        2 => {
            for (o, c) in out.iter_mut().zip(codes.chunks(4)) {
                let mut b = 0u8;
                for (k, &q) in c.iter().enumerate() {
                    b |= q << (2 * k);
                }
                *o = b;
            }
        }
        _ => unreachable!("pack: bits must be 2, 4 or 8"),
    }
}

/// Inverse of [`pack`]: `out.len()` codes from `packed`.
pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(&packed[..out.len()]),
        4 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (packed[i / 2] >> (4 * (i % 2))) & 0x0f;
            }
        }
        2 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (packed[i / 4] >> (2 * (i % 4))) & 0x03;
            }
        }
        _ => unreachable!("unpack: bits must be 2, 4 or 8"),
    }
}

/// Signature of [`group_moments`].
pub type GroupMomentsFn = fn(&[f32], &[u8], f64) -> ([f64; 3], u32);

/// A group's moments about `shift` for gain matching (`quant::gain`): ([Σd, Σd², Σd·q], Σq)
/// with d = x − shift in f64, over the first min(|x|, |q|) elements. Summed in two interleaved
/// chains (even and odd positions, an odd length's last element in the even chain) added at the
/// end, so that the f64 additions' latency does not serialise the loop and the SIMD twin runs
/// the chains as its two lanes.
pub fn group_moments(x: &[f32], q: &[u8], shift: f64) -> ([f64; 3], u32) {
    let n = x.len().min(q.len());
    let (x, q) = (&x[..n], &q[..n]);
    let (mut a, mut b) = ([0f64; 3], [0f64; 3]);
    let (mut qa, mut qb) = (0u32, 0u32);
    let mut pairs_x = x.chunks_exact(2);
    let mut pairs_q = q.chunks_exact(2);
    for (px, pq) in (&mut pairs_x).zip(&mut pairs_q) {
        let (d0, d1) = (px[0] as f64 - shift, px[1] as f64 - shift);
        let (q0, q1) = (pq[0] as f64, pq[1] as f64);
        a[0] += d0;
        a[1] += d0 * d0;
        a[2] += d0 * q0;
        qa += pq[0] as u32;
        b[0] += d1;
        b[1] += d1 * d1;
        b[2] += d1 * q1;
        qb += pq[1] as u32;
    }
    for (&v, &c) in pairs_x.remainder().iter().zip(pairs_q.remainder()) {
        let d = v as f64 - shift;
        a[0] += d;
        a[1] += d * d;
        a[2] += d * c as f64;
        qa += c as u32;
    }
    ([a[0] + b[0], a[1] + b[1], a[2] + b[2]], qa + qb)
}

/// Signature of [`weighted_group_moments`].
pub type WeightedGroupMomentsFn = fn(&[f32], &[u8], &[f32], f64) -> [f64; 5];

/// One element's terms added to a chain of [`weighted_group_moments`] (the SIMD twin adds an odd
/// length's last element with it too).
#[inline(always)]
pub fn add_weighted_moments(acc: &mut [f64; 5], v: f32, c: u8, w: f32, shift: f64) {
    let (d, c, w) = (v as f64 - shift, c as f64, w as f64);
    let wd = w * d;
    acc[0] += w;
    acc[1] += wd;
    acc[2] += w * c;
    acc[3] += wd * d;
    acc[4] += wd * c;
}

/// [`group_moments`] weighted by `h`: [Σw, Σw·d, Σw·q, Σw·d², Σw·d·q] over the first
/// min(|x|, |q|, |h|) elements, in the same two chains.
pub fn weighted_group_moments(x: &[f32], q: &[u8], h: &[f32], shift: f64) -> [f64; 5] {
    let n = x.len().min(q.len()).min(h.len());
    let (mut a, mut b) = ([0f64; 5], [0f64; 5]);
    let add = |acc: &mut [f64; 5], v: f32, c: u8, w: f32| add_weighted_moments(acc, v, c, w, shift);
    let mut i = 0;
    while i + 1 < n {
        add(&mut a, x[i], q[i], h[i]);
        add(&mut b, x[i + 1], q[i + 1], h[i + 1]);
        i += 2;
    }
    if i < n {
        add(&mut a, x[i], q[i], h[i]);
    }
    core::array::from_fn(|k| a[k] + b[k])
}

/// Error sums of a reconstruction `q` of `w`, in f64: [Σw², Σq², Σw·q, Σ(q−w)², max|q−w|].
/// Sequential order; the SIMD twin uses two f64 lanes and may differ in the last bits.
pub fn error_sums(w: &[f32], q: &[f32]) -> [f64; 5] {
    let mut s = [0f64; 5];
    for (&a, &b) in w.iter().zip(q) {
        let (a, b) = (a as f64, b as f64);
        let e = b - a;
        s[0] += a * a;
        s[1] += b * b;
        s[2] += a * b;
        s[3] += e * e;
        s[4] = s[4].max(e.abs());
    }
    s
}

/// (w, q, g) → [Σ g·w², Σ g·e², Σ g·w·e].
pub type ColumnErrorSumsFn = fn(&[f32], &[f32], &[f64]) -> [f64; 3];

/// Column-weighted error sums of a reconstruction `q` of `w` with a weight per value `g`:
/// [Σ g·w², Σ g·e², Σ g·w·e] (e = w − q; terms formed as (g·w)·w etc. in f64). Element i is summed
/// in lane i mod 4 and the lanes are folded as (l0 + l2) + (l1 + l3): the SIMD twin's two f64x2
/// accumulators, so it agrees bit for bit (and four independent chains run faster than one).
pub fn column_error_sums(w: &[f32], q: &[f32], g: &[f64]) -> [f64; 3] {
    let (mut signal, mut error, mut cross) = ([0f64; 4], [0f64; 4], [0f64; 4]);
    for (i, ((&a, &b), &g)) in w.iter().zip(q).zip(g).enumerate() {
        let (a, e, l) = (a as f64, a as f64 - b as f64, i % 4);
        signal[l] += g * a * a;
        error[l] += g * e * e;
        cross[l] += g * a * e;
    }
    [fold_f64_lanes(signal), fold_f64_lanes(error), fold_f64_lanes(cross)]
}

/// The fold of [`column_error_sums`]' four lanes.
#[inline(always)]
pub fn fold_f64_lanes(v: [f64; 4]) -> f64 {
    (v[0] + v[2]) + (v[1] + v[3])
}

/// Copy `src` into `dst` (equal lengths; `dst` may be uninitialised, it is fully written).
pub fn copy_bytes(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len(), "copy_bytes: lengths differ");
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
}

/// Whether every value is finite (no ±inf, no NaN).
pub fn all_finite(x: &[f32]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// IEEE binary16 (little-endian) → f32; exact.
pub fn decode_f16(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

/// f32 → nearest f16 (ties to even; ±inf beyond the range, NaN kept quiet): its bit pattern and
/// its exact f32 value, for each of `x`.
pub fn round_f16(x: &[f32], bits: &mut [u16], values: &mut [f32]) {
    for ((&v, b), o) in x.iter().zip(bits.iter_mut()).zip(values.iter_mut()) {
        let h = half::f16::from_f32(v);
        *b = h.to_bits();
        *o = h.to_f32();
    }
}

/// bfloat16 (little-endian) → f32; exact (a 16-bit shift).
pub fn decode_bf16(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// Bytes needed for `n` codes of `bits` bits.
#[inline]
pub fn packed_len(n: usize, bits: u8) -> usize {
    (n * bits as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-point search's arithmetic bounds, as `search_fixed_point` states them: grid codes
    /// exact in unsigned 16-bit lanes below shift 15, t = 0 mapping R to exactly qmax, and every
    /// integer sum of a 256-value group inside i32 (and exact in f32 at 2 and 4 bits).
    #[test]
    fn grid_multiplier_tables_match() {
        for qmax in [3.0f32, 15.0, 255.0] {
            assert_eq!(grid_multipliers(qmax), SEARCH_GRID.map(|t| grid_multiplier(qmax, t)), "qmax {qmax}");
        }
    }

    #[test]
    fn fixed_point_search_bounds_hold() {
        for qmax in [3.0f32, 15.0, 255.0] {
            let (r, k) = search_fixed_point(qmax);
            let (ri, q) = (r as i64, qmax as i64);
            assert_eq!(grid_multiplier(qmax, 0.0) as i64 * ri, q << k, "qmax {qmax}: t = 0 must map R to qmax");
            for t in SEARCH_GRID {
                let m = grid_multiplier(qmax, t) as i64;
                assert!(m > 0 && m < 1 << 15, "qmax {qmax} t {t}: multiplier {m}");
                if k < 15 {
                    assert!(ri * m + (1 << (k - 1)) < 1 << 16, "qmax {qmax} t {t}: 16-bit product overflows");
                }
                // The largest code the multiplier gives for dq = R, before the clamp.
                let top = mul_shift(r as i32, m as i32, k) as i64;
                assert!(t > 0.0 || top <= q, "qmax {qmax} t {t}: unclamped code {top} > qmax");
            }
            let (n, sdl_max) = (256i64, 256 * ri * q);
            assert!(sdl_max < 1 << 31 && n * ri < 1 << 31, "qmax {qmax}: Σdq·l or Σdq overflows i32");
            if qmax <= 15.0 {
                assert!(sdl_max < 1 << 24 && n * ri < 1 << 24, "qmax {qmax}: sums not exact in f32");
            }
            // Σl per 16-bit lane (half a group) and Σl² per group.
            assert!(128 * q < 1 << 15 && n * q * q < 1 << 31);
        }
    }

    /// The weighted search's bounds, as [`importance_levels_max`] states them, at every group
    /// length: its grid tables are the multipliers of their grid points (unclamped points first,
    /// as the SIMD twin splits them), grid codes are exact in their lanes, hq·l fits a signed
    /// 16-bit lane, every weighted sum stays inside i32 and every score product inside f32.
    #[test]
    fn weighted_search_bounds_hold() {
        for (qmax, grid) in [(3.0f32, &SEARCH_GRID[..]), (15.0, &WEIGHTED_GRID[..]), (255.0, &WEIGHTED_GRID[..])] {
            let table: Vec<i32> = grid.iter().map(|&t| grid_multiplier(qmax, t)).collect();
            assert_eq!(weighted_grid_multipliers(qmax), &table[..], "qmax {qmax}");
            assert!(grid.windows(2).all(|w| w[0] < w[1]), "qmax {qmax}: grid ascending (t ≤ 0 first)");
            let (r, k) = search_fixed_point(qmax);
            let (ri, q) = (r as i64, qmax as i64);
            for &m in &table {
                if k < 15 {
                    assert!(ri * m as i64 + (1 << (k - 1)) < 1 << 16, "qmax {qmax} m {m}: 16-bit product overflows");
                } else {
                    assert!(m < 1 << 15 && ri * m as i64 + (1 << 14) < 1 << 30, "qmax {qmax} m {m}: q15 product");
                }
            }
            for n in 1..=MAX_SEARCH_GROUP as i64 {
                let l = importance_levels_max(qmax, n as usize);
                assert!(l >= 1.0 && l == l.floor(), "qmax {qmax} n {n}: {l} levels");
                let h = l as i64;
                assert!(h * q < 1 << 15, "qmax {qmax} n {n}: hq·l leaves i16");
                assert!(2 * h * q * ri < 1 << 31, "qmax {qmax} n {n}: one pair product leaves i32");
                assert!(
                    n * h * q * ri < 1 << 31 && n * h * ri < 1 << 31,
                    "qmax {qmax} n {n}: Σhq·l·dq or Σhq·dq overflows"
                );
                let w = (n * h) as f64;
                let bound = w.powi(6) * (r as f64 / 2.0).powi(2) * (qmax as f64 / 2.0).powi(4);
                assert!(bound <= 2f64.powi(127), "qmax {qmax} n {n}: scores may leave f32 ({bound:e})");
            }
        }
        assert_eq!(importance_levels_max(15.0, 128), 511.0);
        assert_eq!(importance_levels_max(255.0, 64), 32.0);
    }

    #[test]
    fn importance_level_tables_match() {
        for qmax in [3.0f32, 15.0, 255.0] {
            let (r, _) = search_fixed_point(qmax);
            let (q, r) = (qmax as f64, r as f64);
            let computed = (2f64.powi(127) / ((r / 2.0).powi(2) * (q / 2.0).powi(4))).powf(1.0 / 6.0).floor();
            assert_eq!(score_weight_max(qmax), computed, "qmax {qmax}");
        }
    }

    /// Equal importances give the fit of no importance at all (the top level instead of 1: the
    /// same least-squares problem, up to the f32 rounding of larger sums).
    #[test]
    fn weighted_search_with_equal_importance_finds_a_fit() {
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 5) as f32)).collect();
        for qmax in [3.0f32, 15.0, 255.0] {
            let a = weighted_search(&x, &[1.0; 64], qmax);
            let b = weighted_search(&x, &[0.0; 64], qmax);
            let ((sa, ma), (sb, mb)) = (a.fit.unwrap(), b.fit.unwrap());
            assert!((sa - sb).abs() <= 1e-5 * sa && (ma - mb).abs() <= 1e-5 * ma.abs(), "qmax {qmax}: {a:?} vs {b:?}");
        }
        assert_eq!(weighted_search(&x, &[1.0; 64], 1023.0).fit, None, "10 bits is not this search's");
    }

    /// Where 511 levels would overflow a score (4 bits, 256 values of equal importance at the
    /// ends of the range), the search still ranks its candidates: its fit is as good as the
    /// plain search's on the same (equal-weight) objective.
    #[test]
    fn weighted_search_of_long_groups_keeps_its_scores_finite() {
        let x: Vec<f32> =
            (0..256).map(|i| if i % 2 == 0 { -1.0 + i as f32 * 1e-4 } else { 1.0 - i as f32 * 1e-4 }).collect();
        let (r, k) = search_fixed_point(15.0);
        let (min, max) = min_max(&x);
        let dq: Vec<i32> = x.iter().map(|&v| ((v - min) * (r / (max - min))).round_ties_even() as i32).collect();
        let (sl, sl2, sdl) = weighted_code_sums(&dq, &[511; 256], 0, grid_multiplier(15.0, 0.0), k, 15);
        let (w, sdq) = (511.0 * 256.0, 511.0 * dq.iter().sum::<i32>() as f64);
        let (det, a) = (w * sl2 as f64 - (sl as f64).powi(2), w * sdl as f64 - sdq * sl as f64);
        assert!(a * a * det > f32::MAX as f64, "the case must be one 511 levels overflow");
        let ones = [1f32; 256];
        for qmax in [3.0f32, 15.0, 255.0] {
            let mut codes = [0u8; 256];
            let err = |s: Searched| if s.cand.is_some() { s.cand_err.min(s.base_err) } else { s.base_err };
            let weighted = err(weighted_search_exact(&x, &ones, qmax, &mut codes));
            let plain = err(search_exact(&x, qmax, &mut codes));
            assert!(weighted <= plain * 1.001, "qmax {qmax}: {weighted} vs plain {plain}");
        }
    }

    /// Groups whose extrema give no finite dq scale (constant, or a range below f32's) find
    /// nothing, and a long group finds nothing rather than risk the integer bounds.
    #[test]
    fn search_finds_nothing_without_a_usable_range() {
        assert_eq!(search(&[0.375; 64], 15.0).fit, None);
        assert_eq!(search(&[1e-45, 0.0, 1e-45], 15.0).fit, None);
        let long: Vec<f32> = (0..300).map(|i| i as f32).collect();
        assert_eq!(search(&long, 15.0).fit, None);
        let ok: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
        assert!(search(&ok, 15.0).fit.is_some());
    }

    #[test]
    fn pack_layout_is_little_end_first() {
        let mut out = [0u8; 2];
        pack(&[1, 2, 3], 4, &mut out);
        assert_eq!(out, [0x21, 0x03]);
        let mut out2 = [0u8; 2];
        pack(&[1, 2, 3, 0, 2], 2, &mut out2);
        assert_eq!(out2, [0b00_11_10_01, 0b10]);
        let mut back = [0u8; 5];
        unpack(&out2, 2, &mut back);
        assert_eq!(back, [1, 2, 3, 0, 2]);
    }

    #[test]
    fn rounding_is_half_to_even() {
        // (x - 0) · 1 = 2.5 → 2, 3.5 → 4
        assert_eq!(code_of(2.5, 1.0, 0.0, 15.0), 2.0);
        assert_eq!(code_of(3.5, 1.0, 0.0, 15.0), 4.0);
        assert_eq!(code_of(-3.0, 1.0, 0.0, 15.0), 0.0);
        assert_eq!(code_of(99.0, 1.0, 0.0, 15.0), 15.0);
        assert_eq!(code_of(7.0, inverse(0.0), 5.0, 15.0), 0.0);
    }

    #[test]
    fn min_max_normalises_negative_zero() {
        let (mn, mx) = min_max(&[-0.0, 0.0, -0.0]);
        assert_eq!(mn.to_bits(), 0);
        assert_eq!(mx.to_bits(), 0);
    }
}
