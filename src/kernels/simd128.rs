//! SIMD128 twins of the scalar kernels (wasm32 with `+simd128` only). Each function reproduces
//! its scalar twin bit for bit: the same IEEE operations per element (sub, mul/div, nearest =
//! round-half-even, pmin/pmax clamps) in the same order, or integer operations whose results are
//! exact. Float sums over a group run four groups at a time, one per lane, each lane summing its
//! group in element order as the scalar twin does.

use core::arch::wasm32::*;
use core::mem::MaybeUninit;

use super::scalar::{
    add_weighted_moments, fold_block_lanes, grid_multipliers, importance_levels_max, lloyd_steps, search_fixed_point,
    weighted_grid_multipliers, weighted_refined, HalfParams, Searched, SEARCH_GRID, WEIGHTED_SEARCH_MAX_QMAX,
};

#[inline(always)]
unsafe fn load(x: &[f32], i: usize) -> v128 {
    debug_assert!(i + 4 <= x.len());
    v128_load(x.as_ptr().add(i) as *const v128)
}

/// The initialised prefix of a scratch buffer as values.
///
/// # Safety
/// Every element of `v` must have been written.
#[inline(always)]
unsafe fn assume_init(v: &[MaybeUninit<v128>]) -> &[v128] {
    // SAFETY: MaybeUninit<T> has T's layout, and the caller vouches for initialisation.
    unsafe { &*(v as *const [MaybeUninit<v128>] as *const [v128]) }
}

#[inline(always)]
fn lanes(v: v128) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

/// clamp(nearest(v), 0, qmax) with the scalar twin's comparison semantics.
#[inline(always)]
fn round_clamp(v: v128, qmax: v128) -> v128 {
    let r = f32x4_nearest(v);
    // pmax(a, b) = a < b ? b : a  → max(r, 0) keeping r when equal (as f32::clamp does)
    let lo = f32x4_pmax(r, f32x4_splat(0.0));
    // pmin(a, b) = b < a ? b : a  → min(lo, qmax) keeping lo when equal
    f32x4_pmin(lo, qmax)
}

pub fn min_max(x: &[f32]) -> (f32, f32) {
    let n8 = x.len() / 8 * 8;
    let (inf, ninf) = (f32x4_splat(f32::INFINITY), f32x4_splat(f32::NEG_INFINITY));
    // Two accumulator pairs halve the loop-carried dependency chain.
    let (mut mn0, mut mx0, mut mn1, mut mx1) = (inf, ninf, inf, ninf);
    let mut i = 0;
    while i < n8 {
        let (a, b) = unsafe { (load(x, i), load(x, i + 4)) };
        mn0 = f32x4_pmin(mn0, a);
        mx0 = f32x4_pmax(mx0, a);
        mn1 = f32x4_pmin(mn1, b);
        mx1 = f32x4_pmax(mx1, b);
        i += 8;
    }
    // For finite values the extrema do not depend on the order they are met in, except which
    // zero a lane saw first, and both twins normalise −0 to +0: a shuffle tree here, a sequential
    // scan in the scalar twin, the same result.
    let (mut mn, mut mx) = (f32x4_pmin(mn0, mn1), f32x4_pmax(mx0, mx1));
    mn = f32x4_pmin(mn, i32x4_shuffle::<2, 3, 0, 1>(mn, mn));
    mn = f32x4_pmin(mn, i32x4_shuffle::<1, 0, 3, 2>(mn, mn));
    mx = f32x4_pmax(mx, i32x4_shuffle::<2, 3, 0, 1>(mx, mx));
    mx = f32x4_pmax(mx, i32x4_shuffle::<1, 0, 3, 2>(mx, mx));
    let (mut lo, mut hi) = (f32x4_extract_lane::<0>(mn), f32x4_extract_lane::<0>(mx));
    for &v in &x[n8..] {
        lo = super::scalar::pmin(lo, v);
        hi = super::scalar::pmax(hi, v);
    }
    (lo + 0.0, hi + 0.0)
}

/// [`super::scalar::search_exact4`]: four groups of equal length at once, one group per lane.
/// The groups are transposed so that every per-group sum is a vertical lane sum (no horizontal
/// reductions) and the scoring runs on the four lanes at once. The search itself works on the
/// fixed-point dq (see [`super::scalar::search_fixed_point`]), two elements of each of the four
/// groups per 16-bit vector: a candidate's codes are one multiply and shift per eight values, and
/// its sums are 16-bit adds and `i32x4.dot_i16x8_s` pair products, all exact, so each lane equals
/// the scalar twin by construction. The float passes are the twin's IEEE operations in the same
/// order per lane: dq itself, the scoring, and a final pass that measures the exact error of the
/// candidate and of the min/max params and writes the candidate's codes.
pub fn search_exact4(xs: [&[f32]; 4], qmax: f32, codes: [&mut [u8]; 4]) -> [Searched; 4] {
    let n = xs[0].len();
    if n == 0 || n > 256 || xs.iter().any(|x| x.len() != n) || codes.iter().any(|c| c.len() < n) {
        return super::scalar::search_exact4(xs, qmax, codes);
    }
    // Scratch left uninitialised: zeroing 6 KiB per call cost about a tenth of the search.
    let mut tbuf = [MaybeUninit::<v128>::uninit(); 256];
    let [vmn, vmx] = transpose4_stats(xs, &mut tbuf[..n]);
    let range = f32x4_sub(vmx, vmn);
    if !u32x4_all_true(is_finite(range)) {
        // x − min would overflow to infinity (extremes beyond ±f32::MAX/2): rare, and the
        // reference gives the same result.
        return super::scalar::search_exact4(xs, qmax, codes);
    }
    // SAFETY: `transpose4_stats` wrote all n rows.
    let t = unsafe { assume_init(&tbuf[..n]) };
    let q = f32x4_splat(qmax);
    let base = Half4::round(f32x4_div(range, q), vmn);

    let (r, shift) = search_fixed_point(qmax);
    let s = finite_or_zero(f32x4_div(f32x4_splat(r), range));
    let mut dqbuf = [MaybeUninit::<v128>::uninit(); 128];
    let sdq = fixed_point(t, vmn, s, &mut dqbuf[..n.div_ceil(2)]);
    // SAFETY: `fixed_point` wrote every pair.
    let dq = unsafe { assume_init(&dqbuf[..n.div_ceil(2)]) };
    let n_odd = n % 2 == 1;

    let m = grid_multipliers(qmax).map(|m| i16x8_splat(m as i16));
    let q16 = i16x8_splat(qmax as i16);
    let grid = match shift {
        11 => grid_candidates::<11>(dq, m, q16),
        13 => grid_candidates::<13>(dq, m, q16),
        _ => grid_candidates::<15>(dq, m, q16),
    };
    let mut best = Best4::new(n, sdq);
    for sums in grid {
        best.consider(sums);
    }
    for _ in 0..lloyd_steps(qmax) {
        let (off, m) = best.lloyd_params();
        best.take_if_valid(lloyd_sums(dq, n_odd, off, m, q16));
    }
    searched(&best, Groups4 { t, min: vmn, max: vmx, s, base, q }, codes, |_, e2| e2)
}

/// Four transposed groups as the searches see them: rows `t`, extrema, the dq scale s, the
/// min/max params and qmax (all per lane).
struct Groups4<'a> {
    t: &'a [v128],
    min: v128,
    max: v128,
    s: v128,
    base: Half4,
    q: v128,
}

/// The searches' result per lane from their best candidate (in dq units): its fit in value units
/// rounded to f16, the exact errors of it and of min/max (each squared error through `weigh(j,
/// e2)`), the candidate's codes written to `codes`.
#[inline(always)]
fn searched(best: &Best4, g: Groups4, codes: [&mut [u8]; 4], weigh: impl Fn(usize, v128) -> v128) -> [Searched; 4] {
    let (scale_dq, offset_dq) = best.fit();
    let (scale, offset) = (f32x4_div(scale_dq, g.s), f32x4_add(g.min, f32x4_div(offset_dq, g.s)));
    let found = best.found();
    let cand = Half4::round(scale, offset);
    let [cand_err, base_err] = errors_and_codes(g.t, cand, g.base, g.q, codes, weigh);
    let (mn, mx, be, ce) = (lanes(g.min), lanes(g.max), lanes(base_err), lanes(cand_err));
    let (fs, fo, ok) = (lanes(scale), lanes(offset), u32_lanes(found));
    let (base, cand) = (g.base.lanes(), cand.lanes());
    core::array::from_fn(|k| {
        let found = ok[k] != 0;
        Searched {
            min: mn[k],
            max: mx[k],
            base: base[k],
            fit: found.then_some((fs[k], fo[k])),
            cand: found.then_some(cand[k]),
            base_err: be[k],
            cand_err: if found { ce[k] } else { 0.0 },
        }
    })
}

/// The importance-weighted search of four groups of equal length (`scalar::weighted_search_exact4`),
/// on the plain search's machinery: dq in 16-bit pairs as there, the importance levels hq in the
/// same pairs ([`importance_pairs`]), every candidate's sums Σhq·l, Σhq·l², Σhq·l·dq from
/// `i32x4.dot_i16x8_s` of hq, hl = hq·l and dq — exact integers, so each lane equals the scalar
/// twin by construction — and the float steps (scores, fits, Lloyd params, exact errors) as the
/// twin's IEEE operations per lane in its order. Codes wider than 8 bits, other lengths and ranges
/// beyond f32 go to the scalar twin.
pub fn weighted_search_exact4(xs: [&[f32]; 4], hs: [&[f32]; 4], qmax: f32, codes: [&mut [u8]; 4]) -> [Searched; 4] {
    let n = xs[0].len();
    if n == 0
        || n > 256
        || qmax > WEIGHTED_SEARCH_MAX_QMAX
        || xs.iter().chain(hs.iter()).any(|x| x.len() != n)
        || codes.iter().any(|c| c.len() < n)
    {
        return super::scalar::weighted_search_exact4(xs, hs, qmax, codes);
    }
    let mut tbuf = [MaybeUninit::<v128>::uninit(); 256];
    let [vmn, vmx] = transpose4_stats(xs, &mut tbuf[..n]);
    let range = f32x4_sub(vmx, vmn);
    if !u32x4_all_true(is_finite(range)) {
        return super::scalar::weighted_search_exact4(xs, hs, qmax, codes);
    }
    // SAFETY: `transpose4_stats` wrote all n rows.
    let t = unsafe { assume_init(&tbuf[..n]) };
    let mut hbuf = [MaybeUninit::<v128>::uninit(); 256];
    let [_, hmax] = transpose4_stats(hs, &mut hbuf[..n]);
    // SAFETY: as above.
    let th = unsafe { assume_init(&hbuf[..n]) };
    let zero = f32x4_splat(0.0);
    // `scalar::importance_levels`: L/max h where max h > 0 and the quotient is finite, else
    // equal weights.
    let levels = f32x4_splat(importance_levels_max(qmax, n));
    let sh = v128_and(finite_or_zero(f32x4_div(levels, hmax)), f32x4_gt(hmax, zero));
    let has = f32x4_gt(sh, zero);

    let q = f32x4_splat(qmax);
    let base = Half4::round(f32x4_div(range, q), vmn);
    let (r, shift) = search_fixed_point(qmax);
    let s = finite_or_zero(f32x4_div(f32x4_splat(r), range));
    let pairs = n.div_ceil(2);
    let mut dqbuf = [MaybeUninit::<v128>::uninit(); 128];
    fixed_point(t, vmn, s, &mut dqbuf[..pairs]);
    let mut hqbuf = [MaybeUninit::<v128>::uninit(); 128];
    let sw = importance_pairs(th, sh, has, &mut hqbuf[..pairs]);
    // SAFETY: `fixed_point` and `importance_pairs` wrote every pair.
    let (dq, hq) = unsafe { (assume_init(&dqbuf[..pairs]), assume_init(&hqbuf[..pairs])) };
    let mut sdq = i32x4_splat(0);
    for (&d, &h) in dq.iter().zip(hq) {
        sdq = i32x4_add(sdq, i32x4_dot_i16x8(d, h));
    }
    let wn = f32x4_convert_i32x4(sw);
    let q16 = i16x8_splat(qmax as i16);

    // Grid candidates, then Lloyd steps of each, scored in the scalar twin's order.
    let grid = weighted_grid_multipliers(qmax);
    let mut sums = [[zero; 3]; 7];
    let g = grid.len();
    let m = |i: usize| i16x8_splat(grid[i] as i16);
    match shift {
        11 => {
            // 4 bits: t = −1.5 … 0 unclamped, 0.5 … 1.5 clamped.
            sums[..4].copy_from_slice(&weighted_grid_sums::<4, false, 11>(dq, hq, [m(0), m(1), m(2), m(3)], q16));
            sums[4..7].copy_from_slice(&weighted_grid_sums::<3, true, 11>(dq, hq, [m(4), m(5), m(6)], q16));
        }
        15 => {
            // 8 bits: as at 4.
            sums[..4].copy_from_slice(&weighted_grid_sums::<4, false, 15>(dq, hq, [m(0), m(1), m(2), m(3)], q16));
            sums[4..7].copy_from_slice(&weighted_grid_sums::<3, true, 15>(dq, hq, [m(4), m(5), m(6)], q16));
        }
        _ => {
            // 2 bits: t = −0.8 … 0 unclamped, 0.4 and 0.8 clamped.
            sums[..3].copy_from_slice(&weighted_grid_sums::<3, false, 13>(dq, hq, [m(0), m(1), m(2)], q16));
            sums[3..5].copy_from_slice(&weighted_grid_sums::<2, true, 13>(dq, hq, [m(3), m(4)], q16));
        }
    }
    // The grid, a Lloyd step from each of its best `weighted_refined`, one more from the best of
    // all: the scalar twin's order.
    let mut best = Best4::weighted(wn, sdq);
    for c in &sums[..g] {
        best.consider(*c);
    }
    let probe = Best4::weighted(wn, sdq);
    let mut scores = [zero; 7];
    for (score, cand) in scores.iter_mut().zip(&sums[..g]) {
        *score = probe.rank_score(*cand);
    }
    let ranks = ranks(&scores[..g]);
    let refined = weighted_refined(qmax);
    let mut chosen = [(zero, zero); 7];
    for (r, c) in chosen[..refined].iter_mut().enumerate() {
        // The sums of the first candidate of rank r (candidate 0 where none has it), as the
        // twin's `find`, and the Lloyd step from them.
        let want = i32x4_splat(r as i32);
        let mut sel = sums[0];
        for i in (0..g).rev() {
            let is = i32x4_eq(ranks[i], want);
            sel = core::array::from_fn(|k| v128_bitselect(sums[i][k], sel[k], is));
        }
        let mut b = Best4::weighted(wn, sdq);
        b.consider(sel);
        *c = b.lloyd_params();
    }
    // Passes of at most three candidates: their nine accumulators and six params stay in registers.
    for at in (0..refined).step_by(3) {
        let c = &chosen[at..refined.min(at + 3)];
        let sums: &[[v128; 3]] = match c.len() {
            3 => &weighted_lloyd_sums::<3>(dq, hq, [c[0], c[1], c[2]], q16),
            2 => &weighted_lloyd_sums::<2>(dq, hq, [c[0], c[1]], q16),
            _ => &weighted_lloyd_sums::<1>(dq, hq, [c[0]], q16),
        };
        for s in sums {
            best.consider(*s);
        }
    }
    let [last] = weighted_lloyd_sums::<1>(dq, hq, [best.lloyd_params()], q16);
    best.consider(last);
    let ones = f32x4_splat(1.0);
    let groups = Groups4 { t, min: vmn, max: vmx, s, base, q };
    searched(&best, groups, codes, |j, e2| f32x4_mul(e2, v128_bitselect(th[j], ones, has)))
}

/// `scalar::rank` per lane for every candidate's score: how many score higher, or equal with a
/// smaller index, as i32 lanes.
#[inline(always)]
fn ranks(scores: &[v128]) -> [v128; 7] {
    let mut out = [i32x4_splat(0); 7];
    for (i, o) in out[..scores.len()].iter_mut().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            let above = f32x4_gt(sj, scores[i]);
            let counts = if j < i { v128_or(above, f32x4_eq(sj, scores[i])) } else { above };
            // A true lane is −1: subtracting it counts one.
            *o = i32x4_sub(*o, counts);
        }
    }
    out
}

/// The importance levels hq = round_half_even(h·sh) of the transposed importances `th` (1 in
/// lanes without importance, `has` clear), written as 16-bit pairs like [`fixed_point`]'s dq; an
/// odd length's last pair is completed with hq = 0, which takes the padding out of every weighted
/// sum. Returns Σhq per lane.
#[inline(always)]
fn importance_pairs(th: &[v128], sh: v128, has: v128, hq: &mut [MaybeUninit<v128>]) -> v128 {
    let magic = f32x4_splat(12_582_912.0);
    let one = f32x4_splat(12_582_913.0);
    integer_pairs(th, |v| v128_bitselect(f32x4_add(f32x4_mul(v, sh), magic), one, has), hq)
}

/// Weighted sums (Σhq·l, Σhq·l², Σhq·l·dq) per lane of a candidate's 16-bit codes `l`.
#[inline(always)]
fn add_weighted_codes(acc: &mut [v128; 3], l: v128, dq: v128, hq: v128) {
    let hl = i16x8_mul(hq, l);
    acc[0] = i32x4_add(acc[0], i32x4_dot_i16x8(hq, l));
    acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(hl, l));
    acc[2] = i32x4_add(acc[2], i32x4_dot_i16x8(hl, dq));
}

/// [`grid_sums`] weighted by hq: K grid candidates in one pass.
#[inline(always)]
fn weighted_grid_sums<const K: usize, const CLAMP: bool, const SHIFT: u32>(
    dq: &[v128],
    hq: &[v128],
    m: [v128; K],
    q: v128,
) -> [[v128; 3]; K] {
    let zero = i16x8_splat(0);
    let half = i16x8_splat((1i32 << (SHIFT - 1)) as i16);
    let mut acc = [[zero; 3]; K];
    for (&v, &h) in dq.iter().zip(hq) {
        for k in 0..K {
            let l = if SHIFT == 15 {
                i16x8_q15mulr_sat(v, m[k])
            } else {
                u16x8_shr(i16x8_add(i16x8_mul(v, m[k]), half), SHIFT)
            };
            add_weighted_codes(&mut acc[k], if CLAMP { i16x8_min(l, q) } else { l }, v, h);
        }
    }
    acc.map(|a| a.map(|v| f32x4_convert_i32x4(v)))
}

/// [`lloyd_sums`] weighted by hq, for K (offset, multiplier) pairs per lane in one pass (padding
/// needs no mask: its hq is 0).
#[inline(always)]
fn weighted_lloyd_sums<const K: usize>(dq: &[v128], hq: &[v128], params: [(v128, v128); K], q: v128) -> [[v128; 3]; K] {
    let spread = |v: v128| i8x16_shuffle::<0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13>(v, v);
    let params = params.map(|(off, m)| (spread(off), spread(m)));
    let zero = i16x8_splat(0);
    let mut acc = [[zero; 3]; K];
    for (&v, &h) in dq.iter().zip(hq) {
        for k in 0..K {
            let (off, m) = params[k];
            let l = i16x8_max(i16x8_min(i16x8_q15mulr_sat(i16x8_sub(v, off), m), q), zero);
            add_weighted_codes(&mut acc[k], l, v, h);
        }
    }
    acc.map(|a| a.map(|v| f32x4_convert_i32x4(v)))
}

/// dq = round_half_even((x − min)·s) for the transposed groups `t`, written to `dq` as 16-bit
/// lanes (g0 x[2p], g0 x[2p+1], g1 x[2p], …) so that `i32x4.dot_i16x8_s` sums each group's pair;
/// an odd length's last pair is completed with dq = 0. Returns Σdq per lane. The rounding is the
/// float add of 1.5·2^23 (round-half-even, exact for results below 2^22), whose low 16 bits are
/// then the integer.
#[inline(always)]
fn fixed_point(t: &[v128], min: v128, s: v128, dq: &mut [MaybeUninit<v128>]) -> v128 {
    let magic = f32x4_splat(12_582_912.0);
    integer_pairs(t, |v| f32x4_add(f32x4_mul(f32x4_sub(v, min), s), magic), dq)
}

/// The integers `fix(t[j])` (each 1.5·2^23 + an integer below 2^15, as f32 bits) written as 16-bit
/// pairs per lane (row 2p in the low half, 2p + 1 in the high half); an odd length's last pair is
/// completed with 0. Returns the sum of the integers per lane.
#[inline(always)]
fn integer_pairs(t: &[v128], fix: impl Fn(v128) -> v128, out: &mut [MaybeUninit<v128>]) -> v128 {
    let magic = f32x4_splat(12_582_912.0);
    let ones = i16x8_splat(1);
    let mut sum = i32x4_splat(0);
    let mut put = |o: &mut MaybeUninit<v128>, a: v128, b: v128| {
        // Lane k = a's integer in the low half, b's in the high half: a + (b << 16) − the magic's
        // bits (its high-half copy leaves the lane). A shift and two adds, where the byte
        // shuffle of the two took five instructions in V8.
        let v = i32x4_sub(i32x4_add(a, i32x4_shl(b, 16)), i32x4_splat(0x4b40_0000));
        o.write(v);
        sum = i32x4_add(sum, i32x4_dot_i16x8(v, ones));
    };
    let pairs = t.len() / 2;
    for (p, o) in out[..pairs].iter_mut().enumerate() {
        put(o, fix(t[2 * p]), fix(t[2 * p + 1]));
    }
    if t.len() % 2 == 1 {
        put(&mut out[pairs], fix(t[t.len() - 1]), magic);
    }
    sum
}

/// Integer sums (Σl, Σl², Σdq·l) per lane of one candidate's 16-bit codes `l` for `dq`.
#[inline(always)]
fn add_codes(acc: &mut [v128; 3], l: v128, dq: v128) {
    acc[0] = i16x8_add(acc[0], l);
    acc[1] = i32x4_add(acc[1], i32x4_dot_i16x8(l, l));
    acc[2] = i32x4_add(acc[2], i32x4_dot_i16x8(dq, l));
}

/// A candidate's sums as f32 per lane (group): Σl from its two 16-bit halves, all converted as
/// the scalar twin's `as f32`.
#[inline(always)]
fn sums_f32(acc: [v128; 3]) -> [v128; 3] {
    [f32x4_convert_i32x4(i32x4_extadd_pairwise_i16x8(acc[0])), f32x4_convert_i32x4(acc[1]), f32x4_convert_i32x4(acc[2])]
}

/// Sums of the five grid candidates, in two passes over dq (three and two candidates: more
/// accumulators would not fit the registers). Codes cannot exceed qmax for t ≤ 0 (see
/// `grid_multiplier`), so the first three go unclamped.
#[inline(always)]
fn grid_candidates<const SHIFT: u32>(dq: &[v128], m: [v128; 5], q: v128) -> [[v128; 3]; 5] {
    debug_assert!(SEARCH_GRID[..3].iter().all(|&tt| tt <= 0.0));
    let [a, b, c] = grid_sums::<3, false, SHIFT>(dq, [m[0], m[1], m[2]], q);
    let [d, e] = grid_sums::<2, true, SHIFT>(dq, [m[3], m[4]], q);
    [a, b, c, d, e]
}

/// Sums of K grid candidates in one pass over dq: codes (dq·m + 2^(SHIFT−1)) >> SHIFT
/// (`scalar::mul_shift`), clamped to qmax when CLAMP. Below SHIFT 15 the product and rounding
/// term stay below 2^16 (see `search_fixed_point`), so a 16-bit multiply, add and logical shift
/// give it exactly; at 15 it is `i16x8.q15mulr_sat_s`. Σl per 16-bit lane stays below 2^15: at
/// most 128 codes of at most 255.
#[inline(always)]
fn grid_sums<const K: usize, const CLAMP: bool, const SHIFT: u32>(
    dq: &[v128],
    m: [v128; K],
    q: v128,
) -> [[v128; 3]; K] {
    let zero = i16x8_splat(0);
    let half = i16x8_splat((1i32 << (SHIFT - 1)) as i16);
    let mut acc = [[zero; 3]; K];
    for &v in dq {
        for k in 0..K {
            let l = if SHIFT == 15 {
                i16x8_q15mulr_sat(v, m[k])
            } else {
                u16x8_shr(i16x8_add(i16x8_mul(v, m[k]), half), SHIFT)
            };
            add_codes(&mut acc[k], if CLAMP { i16x8_min(l, q) } else { l }, v);
        }
    }
    acc.map(sums_f32)
}

/// Sums of the Lloyd step's codes clamp(mul_shift(dq − off, m, 15), 0, qmax) (off and m per lane as
/// i32); the padding lanes of an odd length's last pair are masked out.
#[inline(always)]
fn lloyd_sums(dq: &[v128], n_odd: bool, off: v128, m: v128, q: v128) -> [v128; 3] {
    let spread = |v: v128| i8x16_shuffle::<0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13>(v, v);
    let (off, m) = (spread(off), spread(m));
    let zero = i16x8_splat(0);
    let code = |v: v128| i16x8_max(i16x8_min(i16x8_q15mulr_sat(i16x8_sub(v, off), m), q), zero);
    let mut acc = [zero; 3];
    let (body, last) = if n_odd { dq.split_at(dq.len() - 1) } else { (dq, &[][..]) };
    for &v in body {
        add_codes(&mut acc, code(v), v);
    }
    for &v in last {
        add_codes(&mut acc, v128_and(code(v), i32x4_splat(0xffff)), v);
    }
    sums_f32(acc)
}

/// Four f16-rounded (scale, min) pairs: bit patterns (u32 lanes) and exact f32 values.
#[derive(Clone, Copy)]
struct Half4 {
    scale_bits: v128,
    min_bits: v128,
    scale: v128,
    min: v128,
    /// [`super::scalar::inverse`] of the scale: 1/scale, or 0 where the scale is ±0.
    inv: v128,
}

impl Half4 {
    #[inline(always)]
    fn round(scale: v128, min: v128) -> Self {
        let ((scale_bits, scale), (min_bits, min)) = (round_f16x4(scale), round_f16x4(min));
        let inv = v128_andnot(f32x4_div(f32x4_splat(1.0), scale), f32x4_eq(scale, f32x4_splat(0.0)));
        Half4 { scale_bits, min_bits, scale, min, inv }
    }

    /// The four lanes' params, extracted once.
    #[inline(always)]
    fn lanes(&self) -> [HalfParams; 4] {
        let (sb, mb, s, m) = (u32_lanes(self.scale_bits), u32_lanes(self.min_bits), lanes(self.scale), lanes(self.min));
        core::array::from_fn(|k| HalfParams {
            scale_bits: sb[k] as u16,
            min_bits: mb[k] as u16,
            scale: s[k],
            min: m[k],
        })
    }

    /// Per lane (q·scale + min − x)² for the codes q of `v` (as `scalar::sequential_error`), and
    /// q + 2^23 (the code in the low byte).
    #[inline(always)]
    fn error_and_code(&self, v: v128, q: v128) -> (v128, v128) {
        let r = f32x4_nearest(f32x4_mul(f32x4_sub(v, self.min), self.inv));
        // `scalar::clamp_code`: the lower clamp is one integer max on the bit patterns (values
        // with the sign bit set are negative integers), where LLVM turns f32x4.pmax(r, 0) into
        // a compare and an and-not.
        let c = f32x4_pmin(i32x4_max(r, f32x4_splat(0.0)), q);
        let e = f32x4_sub(f32x4_add(f32x4_mul(c, self.scale), self.min), v);
        (f32x4_mul(e, e), f32x4_add(c, f32x4_splat(8_388_608.0)))
    }
}

#[inline(always)]
fn u32_lanes(v: v128) -> [u32; 4] {
    [u32x4_extract_lane::<0>(v), u32x4_extract_lane::<1>(v), u32x4_extract_lane::<2>(v), u32x4_extract_lane::<3>(v)]
}

/// The exact errors of `cand` and `base` per lane (as `scalar::sequential_error`, each squared
/// error of element j through `weigh(j, e2)` before it is added), and the candidate's codes written to `codes[k]` for lane k: four transposed rows of codes at a time
/// are combined into four bytes per group by shifts and adds, and stored one lane per group.
#[inline(always)]
fn errors_and_codes(
    t: &[v128],
    cand: Half4,
    base: Half4,
    q: v128,
    codes: [&mut [u8]; 4],
    weigh: impl Fn(usize, v128) -> v128,
) -> [v128; 2] {
    let n = t.len();
    let n4 = n / 4 * 4;
    let (mut cand_err, mut base_err) = (f32x4_splat(0.0), f32x4_splat(0.0));
    let mut step = |j: usize, v: v128| {
        let (e2, c) = cand.error_and_code(v, q);
        cand_err = f32x4_add(cand_err, weigh(j, e2));
        base_err = f32x4_add(base_err, weigh(j, base.error_and_code(v, q).0));
        c
    };
    let ptr = codes.map(|c| c.as_mut_ptr());
    let mut j = 0;
    while j < n4 {
        let (c0, c1, c2, c3) = (step(j, t[j]), step(j + 1, t[j + 1]), step(j + 2, t[j + 2]), step(j + 3, t[j + 3]));
        // Each lane holds 2^23 + code as float bits (0x4b00_0000 + code). Shifted by 8, 16 and
        // 24 bits the 0x4b00_0000 parts leave the 32-bit lane, so one subtraction leaves lane k =
        // group k's four codes, byte by byte. Shifts and adds, because byte shuffles and narrows
        // of these rows turned into lane extracts and inserts in V8 (LLVM merges them).
        let rows = i32x4_sub(
            i32x4_add(i32x4_add(c0, i32x4_shl(c1, 8)), i32x4_add(i32x4_shl(c2, 16), i32x4_shl(c3, 24))),
            i32x4_splat(0x4b00_0000),
        );
        // SAFETY: every buffer holds at least n codes (checked on entry) and j + 4 ≤ n.
        unsafe {
            v128_store32_lane::<0>(rows, ptr[0].add(j) as *mut u32);
            v128_store32_lane::<1>(rows, ptr[1].add(j) as *mut u32);
            v128_store32_lane::<2>(rows, ptr[2].add(j) as *mut u32);
            v128_store32_lane::<3>(rows, ptr[3].add(j) as *mut u32);
        }
        j += 4;
    }
    for (j, &v) in t.iter().enumerate().skip(n4) {
        let c = u32_lanes(step(j, v));
        // SAFETY: as above, j < n.
        unsafe {
            for k in 0..4 {
                *ptr[k].add(j) = c[k] as u8;
            }
        }
    }
    [cand_err, base_err]
}

/// t[j] = (x0[j], x1[j], x2[j], x3[j]), and per lane the group's min and max (as `min_max`,
/// −0 normalised).
#[inline(always)]
fn transpose4_stats(xs: [&[f32]; 4], t: &mut [MaybeUninit<v128>]) -> [v128; 2] {
    let n = t.len();
    let n4 = n / 4 * 4;
    let zero = f32x4_splat(0.0);
    let (mut mn, mut mx) = (f32x4_splat(f32::INFINITY), f32x4_splat(f32::NEG_INFINITY));
    let mut stats = |v: v128| {
        // pmin(a, b) = b < a ? b : a — the scalar `if v < mn { mn = v }`.
        mn = f32x4_pmin(mn, v);
        mx = f32x4_pmax(mx, v);
    };
    let mut j = 0;
    while j < n4 {
        let (a, b, c, d) = unsafe { (load(xs[0], j), load(xs[1], j), load(xs[2], j), load(xs[3], j)) };
        let ab_lo = i32x4_shuffle::<0, 4, 1, 5>(a, b); // a0 b0 a1 b1
        let cd_lo = i32x4_shuffle::<0, 4, 1, 5>(c, d);
        let ab_hi = i32x4_shuffle::<2, 6, 3, 7>(a, b); // a2 b2 a3 b3
        let cd_hi = i32x4_shuffle::<2, 6, 3, 7>(c, d);
        let rows = [
            i32x4_shuffle::<0, 1, 4, 5>(ab_lo, cd_lo),
            i32x4_shuffle::<2, 3, 6, 7>(ab_lo, cd_lo),
            i32x4_shuffle::<0, 1, 4, 5>(ab_hi, cd_hi),
            i32x4_shuffle::<2, 3, 6, 7>(ab_hi, cd_hi),
        ];
        // One slice of four rows: one bounds check instead of one per row (V8 keeps them all).
        for (slot, r) in t[j..j + 4].iter_mut().zip(rows) {
            slot.write(r);
            stats(r);
        }
        j += 4;
    }
    for (k, tk) in t.iter_mut().enumerate().skip(n4) {
        stats(*tk.write(f32x4(xs[0][k], xs[1][k], xs[2][k], xs[3][k])));
    }
    [f32x4_add(mn, zero), f32x4_add(mx, zero)] // −0 → +0, as `min_max`
}

/// All-ones lanes where `v` is finite (v − v is 0 exactly for finite v, NaN otherwise).
#[inline(always)]
fn is_finite(v: v128) -> v128 {
    f32x4_eq(f32x4_sub(v, v), f32x4_splat(0.0))
}

#[inline(always)]
fn finite_or_zero(v: v128) -> v128 {
    v128_and(v, is_finite(v))
}

/// Best candidate so far for four lanes (the scalar twin's `Best`), in dq units.
struct Best4 {
    n: v128,
    sdq: v128,
    a2: v128,
    a: v128,
    det: v128,
    sl: v128,
}

impl Best4 {
    fn new(n: usize, sdq: v128) -> Self {
        Best4::weighted(f32x4_splat(n as f32), sdq)
    }

    /// Nothing found yet, for sums whose count is `n` (f32 lanes; the weighted search's Σhq) and
    /// whose Σdq is `sdq` (i32 lanes).
    fn weighted(n: v128, sdq: v128) -> Self {
        let zero = f32x4_splat(0.0);
        Best4 {
            n,
            sdq: f32x4_convert_i32x4(sdq),
            a2: f32x4_splat(f32::NEG_INFINITY),
            a: zero,
            det: f32x4_splat(1.0),
            sl: zero,
        }
    }

    /// The scalar `score_terms`: (det, a).
    #[inline(always)]
    fn terms(&self, sl: v128, sl2: v128, sdl: v128) -> (v128, v128) {
        let det = f32x4_sub(f32x4_mul(self.n, sl2), f32x4_mul(sl, sl));
        (det, f32x4_sub(f32x4_mul(self.n, sdl), f32x4_mul(self.sdq, sl)))
    }

    #[inline(always)]
    fn set(&mut self, take: v128, a2: v128, a: v128, det: v128, sl: v128) {
        self.a2 = v128_bitselect(a2, self.a2, take);
        self.a = v128_bitselect(a, self.a, take);
        self.det = v128_bitselect(det, self.det, take);
        self.sl = v128_bitselect(sl, self.sl, take);
    }

    /// The scalar `consider`, operation for operation, in each lane.
    #[inline(always)]
    fn consider(&mut self, [sl, sl2, sdl]: [v128; 3]) {
        let zero = f32x4_splat(0.0);
        let (det, a) = self.terms(sl, sl2, sdl);
        let a2 = f32x4_mul(a, a);
        let better = f32x4_gt(f32x4_mul(a2, self.det), f32x4_mul(self.a2, det));
        let take = v128_and(v128_and(f32x4_gt(det, zero), f32x4_gt(a, zero)), better);
        self.set(take, a2, a, det, sl);
    }

    /// The scalar search's Lloyd update: the refit replaces the best where its scale is positive.
    #[inline(always)]
    fn take_if_valid(&mut self, [sl, sl2, sdl]: [v128; 3]) {
        let zero = f32x4_splat(0.0);
        let (det, a) = self.terms(sl, sl2, sdl);
        let take = v128_and(f32x4_gt(det, zero), f32x4_gt(a, zero));
        self.set(take, f32x4_mul(a, a), a, det, sl);
    }

    /// `scalar::rank_score` per lane of one candidate's sums: a²/det, −∞ without a positive scale.
    #[inline(always)]
    fn rank_score(&self, [sl, sl2, sdl]: [v128; 3]) -> v128 {
        let zero = f32x4_splat(0.0);
        let (det, a) = self.terms(sl, sl2, sdl);
        let valid = v128_and(f32x4_gt(det, zero), f32x4_gt(a, zero));
        v128_bitselect(f32x4_div(f32x4_mul(a, a), det), f32x4_splat(f32::NEG_INFINITY), valid)
    }

    /// Lanes that found a candidate.
    fn found(&self) -> v128 {
        f32x4_gt(self.a2, f32x4_splat(f32::NEG_INFINITY))
    }

    /// The scalar `Best::fit` per lane: (scale, offset) in dq units.
    #[inline(always)]
    fn fit(&self) -> (v128, v128) {
        let scale = f32x4_div(self.a, self.det);
        (scale, f32x4_div(f32x4_sub(self.sdq, f32x4_mul(self.sl, scale)), self.n))
    }

    /// `scalar::lloyd_params` per lane: (offset, multiplier) as i32 lanes.
    #[inline(always)]
    fn lloyd_params(&self) -> (v128, v128) {
        let (scale, offset) = self.fit();
        let found = self.found();
        let off = f32x4_pmax(f32x4_pmin(f32x4_nearest(offset), f32x4_splat(16384.0)), f32x4_splat(-16384.0));
        let m = f32x4_pmin(f32x4_nearest(f32x4_div(f32x4_splat(32768.0), scale)), f32x4_splat(32767.0));
        (v128_and(i32x4_trunc_sat_f32x4(off), found), v128_and(i32x4_trunc_sat_f32x4(m), found))
    }
}

pub fn quantize_codes(x: &[f32], scale: f32, min: f32, qmax: f32, out: &mut [u8]) {
    let inv = super::scalar::inverse(scale);
    let n16 = x.len() / 16 * 16;
    let (vinv, vm, vq) = (f32x4_splat(inv), f32x4_splat(min), f32x4_splat(qmax));
    // Codes are whole numbers in 0..=255 (finite input, finite inverse), so adding 2^23 puts each
    // one, exactly, in the low byte of its lane: one add instead of a float → int conversion and
    // two saturating narrows (several instructions each on x86).
    let magic = f32x4_splat(8_388_608.0);
    let code4 = |v: v128| f32x4_add(round_clamp(f32x4_mul(f32x4_sub(v, vm), vinv), vq), magic);
    let mut i = 0;
    while i < n16 {
        let (a, b, c, d) = unsafe { (load(x, i), load(x, i + 4), load(x, i + 8), load(x, i + 12)) };
        let ab = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(code4(a), code4(b));
        let cd = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(code4(c), code4(d));
        let bytes = i64x2_shuffle::<0, 2>(ab, cd);
        unsafe { v128_store(out.as_mut_ptr().add(i) as *mut v128, bytes) };
        i += 16;
    }
    for (o, &v) in out[n16..x.len()].iter_mut().zip(&x[n16..]) {
        *o = super::scalar::code_of(v, inv, min, qmax) as u8;
    }
}

/// [`scalar::symmetric_codes`](super::scalar::symmetric_codes), sixteen values at a time: the
/// same multiply, clamp (pmax then pmin) and round-to-nearest-even per lane. A code plus offset
/// lies in −128..=127, so adding 2^23 + 256 puts it, exactly and modulo 256, in the low byte of
/// its lane.
pub fn symmetric_codes(x: &[f32], inv: f32, lo: f32, hi: f32, offset: f32, out: &mut [u8]) {
    let n = x.len().min(out.len());
    let n16 = n / 16 * 16;
    let (vinv, vlo, vhi) = (f32x4_splat(inv), f32x4_splat(lo), f32x4_splat(hi));
    let magic = f32x4_splat(8_388_608.0 + 256.0 + offset);
    let code4 = |v: v128| f32x4_add(f32x4_nearest(f32x4_pmin(f32x4_pmax(f32x4_mul(v, vinv), vlo), vhi)), magic);
    let mut i = 0;
    while i < n16 {
        let (a, b, c, d) = unsafe { (load(x, i), load(x, i + 4), load(x, i + 8), load(x, i + 12)) };
        let ab = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(code4(a), code4(b));
        let cd = i8x16_shuffle::<0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0>(code4(c), code4(d));
        unsafe { v128_store(out.as_mut_ptr().add(i) as *mut v128, i64x2_shuffle::<0, 2>(ab, cd)) };
        i += 16;
    }
    super::scalar::symmetric_codes(&x[n16..n], inv, lo, hi, offset, &mut out[n16..n]);
}

/// [`scalar::sub_scaled`](super::scalar::sub_scaled), four lanes at a time: the same multiply and
/// subtract per element, so the same bits.
pub fn sub_scaled(w: &mut [f32], u: &[f32], e: f32) {
    let n = w.len().min(u.len());
    let n4 = n / 4 * 4;
    let ve = f32x4_splat(e);
    let mut i = 0;
    while i < n4 {
        unsafe {
            let x = v128_load(w.as_ptr().add(i) as *const v128);
            let v = v128_load(u.as_ptr().add(i) as *const v128);
            v128_store(w.as_mut_ptr().add(i) as *mut v128, f32x4_sub(x, f32x4_mul(ve, v)));
        }
        i += 4;
    }
    for (x, &v) in w[n4..n].iter_mut().zip(&u[n4..n]) {
        *x -= e * v;
    }
}

pub fn dequantize_codes(codes: &[u8], scale: f32, min: f32, out: &mut [f32]) {
    let n = out.len().min(codes.len());
    let n16 = n / 16 * 16;
    let (vs, vm) = (f32x4_splat(scale), f32x4_splat(min));
    let mut i = 0;
    while i < n16 {
        let b = unsafe { v128_load(codes.as_ptr().add(i) as *const v128) };
        let (w0, w1) = (u16x8_extend_low_u8x16(b), u16x8_extend_high_u8x16(b));
        let parts = [
            u32x4_extend_low_u16x8(w0),
            u32x4_extend_high_u16x8(w0),
            u32x4_extend_low_u16x8(w1),
            u32x4_extend_high_u16x8(w1),
        ];
        for (k, p) in parts.into_iter().enumerate() {
            // Multiply then add, two roundings, as the scalar twin and FORMAT.md.
            let y = f32x4_add(f32x4_mul(f32x4_convert_u32x4(p), vs), vm);
            unsafe { v128_store(out.as_mut_ptr().add(i + 4 * k) as *mut v128, y) };
        }
        i += 16;
    }
    for (o, &q) in out[n16..n].iter_mut().zip(&codes[n16..n]) {
        *o = q as f32 * scale + min;
    }
}

/// [`super::scalar::copy_bytes`] with 64-byte vector steps. Measured in Node 20 (V8 11.3) on a
/// 64 MiB F32 tensor copied in 256 KiB blocks: 6–8 ms this way, 28–31 ms through `memory.copy` /
/// `copy_from_slice`.
pub fn copy_bytes(src: &[u8], dst: &mut [core::mem::MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len(), "copy_bytes: lengths differ");
    let n64 = src.len() / 64 * 64;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
    let mut i = 0;
    while i < n64 {
        unsafe {
            let (a, b, c, e) = (
                v128_load(s.add(i) as *const v128),
                v128_load(s.add(i + 16) as *const v128),
                v128_load(s.add(i + 32) as *const v128),
                v128_load(s.add(i + 48) as *const v128),
            );
            v128_store(d.add(i) as *mut v128, a);
            v128_store(d.add(i + 16) as *mut v128, b);
            v128_store(d.add(i + 32) as *mut v128, c);
            v128_store(d.add(i + 48) as *mut v128, e);
        }
        i += 64;
    }
    super::scalar::copy_bytes(&src[n64..], &mut dst[n64..]);
}

/// [`super::scalar::all_finite`]: a value is finite when its exponent bits are not all ones;
/// sixteen values per step, checked once at the end (a failing tensor is rare, and then the caller
/// searches for the element).
pub fn all_finite(x: &[f32]) -> bool {
    let n16 = x.len() / 16 * 16;
    let (exp, ones) = (u32x4_splat(0x7f80_0000), u32x4_splat(0x7f80_0000));
    let mut ok = u32x4_splat(u32::MAX);
    let mut i = 0;
    while i < n16 {
        let (a, b, c, d) = unsafe { (load(x, i), load(x, i + 4), load(x, i + 8), load(x, i + 12)) };
        let fin = |v: v128| u32x4_ne(v128_and(v, exp), ones);
        ok = v128_and(ok, v128_and(v128_and(fin(a), fin(b)), v128_and(fin(c), fin(d))));
        i += 16;
    }
    u32x4_all_true(ok) && super::scalar::all_finite(&x[n16..])
}

/// bf16 → f32 is a 16-bit shift: exact for every input, NaNs included.
pub fn decode_bf16(bytes: &[u8], out: &mut [f32]) {
    let n = out.len();
    let n8 = n / 8 * 8;
    let mut i = 0;
    while i < n8 {
        let h = unsafe { v128_load64_zero(bytes.as_ptr().add(2 * i) as *const u64) };
        let h2 = unsafe { v128_load64_zero(bytes.as_ptr().add(2 * i + 8) as *const u64) };
        let a = i32x4_shl(u32x4_extend_low_u16x8(h), 16);
        let b = i32x4_shl(u32x4_extend_low_u16x8(h2), 16);
        unsafe {
            v128_store(out.as_mut_ptr().add(i) as *mut v128, a);
            v128_store(out.as_mut_ptr().add(i + 4) as *mut v128, b);
        }
        i += 8;
    }
    for (o, c) in out[n8..].iter_mut().zip(bytes[2 * n8..].chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// IEEE binary16 → f32, exact for every finite value and ±inf (NaNs become quiet NaNs with the
/// payload kept, as `half::f16::to_f32`). Eight values per step from one 16-byte load; see
/// [`f16_to_f32x4_fast`] for the arithmetic.
pub fn decode_f16(bytes: &[u8], out: &mut [f32]) {
    let n = out.len();
    let n8 = n / 8 * 8;
    let mut i = 0;
    while i < n8 {
        let h = unsafe { v128_load(bytes.as_ptr().add(2 * i) as *const v128) };
        let (lo, hi) = (f16_to_f32x4_fast(u32x4_extend_low_u16x8(h)), f16_to_f32x4_fast(u32x4_extend_high_u16x8(h)));
        unsafe {
            v128_store(out.as_mut_ptr().add(i) as *mut v128, lo);
            v128_store(out.as_mut_ptr().add(i + 4) as *mut v128, hi);
        }
        i += 8;
    }
    super::scalar::decode_f16(&bytes[2 * n8..], &mut out[n8..]);
}

/// Four f16 bit patterns (one per u32 lane) → their f32 values, as [`f16_to_f32x4`], in six
/// operations when no lane is inf/NaN: the f16 magnitude bits shifted into an f32's place are that
/// value times 2^−112 (an f32 subnormal when the f16 is subnormal), so one exact multiply by 2^112
/// re-biases normals and normalises subnormals alike. Lanes with the f16 exponent all ones (rare
/// in weights: the pipeline rejects them) take the general path.
#[inline(always)]
fn f16_to_f32x4_fast(h: v128) -> v128 {
    let magnitude = v128_and(h, u32x4_splat(0x7fff));
    if v128_any_true(i32x4_gt(magnitude, i32x4_splat(0x7bff))) {
        return f16_to_f32x4(h);
    }
    let sign = i32x4_shl(v128_xor(h, magnitude), 16);
    let value = f32x4_mul(i32x4_shl(magnitude, 13), f32x4_splat(f32::from_bits((127 + 112) << 23)));
    v128_or(value, sign)
}

/// Four f16 bit patterns (one per u32 lane) → their f32 values, as `half::f16::to_f32`.
#[inline(always)]
fn f16_to_f32x4(h: v128) -> v128 {
    let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
    let exp = v128_and(h, u32x4_splat(0x7c00));
    let man = v128_and(h, u32x4_splat(0x03ff));
    // normal: (exp + (127-15)<<10 | man) << 13
    let normal = i32x4_shl(v128_or(i32x4_add(exp, u32x4_splat((127 - 15) << 10)), man), 13);
    // subnormal: man · 2^-24 (exact: man < 2^10)
    let sub = f32x4_mul(f32x4_convert_u32x4(man), f32x4_splat(1.0 / 16_777_216.0));
    // inf/NaN: exponent all ones, quiet bit set for NaN
    let is_nan = v128_and(u32x4_eq(exp, u32x4_splat(0x7c00)), u32x4_ne(man, u32x4_splat(0)));
    let special =
        v128_or(v128_or(u32x4_splat(0x7f80_0000), i32x4_shl(man, 13)), v128_and(is_nan, u32x4_splat(0x0040_0000)));
    let is_sub = u32x4_eq(exp, u32x4_splat(0));
    let is_special = u32x4_eq(exp, u32x4_splat(0x7c00));
    let mag = v128_bitselect(sub, v128_bitselect(special, normal, is_special), is_sub);
    v128_or(mag, sign)
}

/// f32 → nearest f16 (ties to even) for four lanes, as `half::f16::from_f32`: bit patterns in
/// u32 lanes. Normal results round the mantissa with the add-half-minus-one-plus-odd trick;
/// subnormal results come from an exact float add of 0.5 (whose ulp is the f16 subnormal step);
/// overflow gives ±inf and NaN keeps its top payload bits with the quiet bit set.
#[inline(always)]
fn f32_to_f16x4(v: v128) -> v128 {
    let sign = v128_and(v, u32x4_splat(0x8000_0000));
    let a = v128_xor(v, sign);
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    // ((15 − 127) << 23) + 0xfff, wrapping
    let normal = u32x4_shr(i32x4_add(i32x4_add(a, u32x4_splat(0xc800_0fff)), odd), 13);
    let denorm = i32x4_sub(f32x4_add(a, f32x4_splat(0.5)), u32x4_splat(0x3f00_0000));
    let nan = v128_or(u32x4_splat(0x7e00), u32x4_shr(v128_and(a, u32x4_splat(0x007f_ffff)), 13));
    let is_nan = u32x4_gt(a, u32x4_splat(0x7f80_0000));
    let too_big = u32x4_ge(a, u32x4_splat(0x4780_0000));
    let small = u32x4_lt(a, u32x4_splat(0x3880_0000));
    let finite = v128_bitselect(denorm, normal, small);
    let special = v128_bitselect(nan, u32x4_splat(0x7c00), is_nan);
    v128_or(v128_bitselect(special, finite, too_big), u32x4_shr(sign, 16))
}

/// f32 → nearest f16 for four lanes: (bit patterns as u32 lanes, their exact f32 values), as
/// `f32_to_f16x4` then `f16_to_f32x4`. When every lane's magnitude lies in [2^−14, 65504] (the
/// normal f16 range, where a group's params almost always are) the result is the f32 with its
/// mantissa rounded to 10 bits (ties to even), and the f16 bits are that f32's re-biased bits: a
/// dozen integer operations instead of the general conversion's unsigned compares and selects,
/// which V8 expands into several instructions each.
#[inline(always)]
fn round_f16x4(v: v128) -> (v128, v128) {
    let sign = v128_and(v, u32x4_splat(0x8000_0000));
    let a = v128_xor(v, sign); // |v| bits: non-negative as i32, so signed compares order them
    let normal = v128_and(i32x4_ge(a, i32x4_splat(0x3880_0000)), i32x4_le(a, i32x4_splat(0x477f_e000)));
    if !u32x4_all_true(normal) {
        let bits = f32_to_f16x4(v);
        return (bits, f16_to_f32x4(bits));
    }
    let odd = v128_and(u32x4_shr(a, 13), u32x4_splat(1));
    let rounded = v128_and(i32x4_add(i32x4_add(a, u32x4_splat(0xfff)), odd), u32x4_splat(!0x1fff));
    let bits = v128_or(i32x4_sub(u32x4_shr(rounded, 13), u32x4_splat((127 - 15) << 10)), u32x4_shr(sign, 16));
    (bits, v128_or(rounded, sign))
}

/// [`super::scalar::round_f16`]: four values per step.
pub fn round_f16(x: &[f32], bits: &mut [u16], values: &mut [f32]) {
    let n4 = x.len() / 4 * 4;
    let mut i = 0;
    while i < n4 {
        let h = f32_to_f16x4(unsafe { load(x, i) });
        let back = f16_to_f32x4(h);
        bits[i] = u32x4_extract_lane::<0>(h) as u16;
        bits[i + 1] = u32x4_extract_lane::<1>(h) as u16;
        bits[i + 2] = u32x4_extract_lane::<2>(h) as u16;
        bits[i + 3] = u32x4_extract_lane::<3>(h) as u16;
        unsafe { v128_store(values.as_mut_ptr().add(i) as *mut v128, back) };
        i += 4;
    }
    super::scalar::round_f16(&x[n4..], &mut bits[n4..], &mut values[n4..]);
}

/// [`super::scalar::group_moments`] with its two chains as the two f64 lanes: the same f64
/// operations per chain in the same order, so the same bits.
pub fn group_moments(x: &[f32], q: &[u8], shift: f64) -> ([f64; 3], u32) {
    let n = x.len().min(q.len());
    let sh = f64x2_splat(shift);
    let mut s = [f64x2_splat(0.0); 3];
    let mut qs = u32x4_splat(0);
    for p in 0..n / 2 {
        let i = 2 * p;
        // SAFETY: i + 1 < n ≤ x.len(), q.len(): two f32 read as one u64, two codes as one u16.
        let (xv, cv) = unsafe {
            (v128_load64_zero(x.as_ptr().add(i) as *const u64), v128_load16_splat(q.as_ptr().add(i) as *const u16))
        };
        let d = f64x2_sub(f64x2_promote_low_f32x4(xv), sh);
        // Lanes 0 and 1: the two codes as u32 (lanes 2 and 3 repeat them).
        let c32 = u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(cv));
        let c = f64x2_convert_low_i32x4(c32);
        s[0] = f64x2_add(s[0], d);
        s[1] = f64x2_add(s[1], f64x2_mul(d, d));
        s[2] = f64x2_add(s[2], f64x2_mul(d, c));
        qs = i32x4_add(qs, c32);
    }
    let mut qsum = u32x4_extract_lane::<0>(qs) + u32x4_extract_lane::<1>(qs);
    let mut a = s.map(|v| f64x2_extract_lane::<0>(v));
    let b = s.map(|v| f64x2_extract_lane::<1>(v));
    if n % 2 == 1 {
        let (d, c) = (x[n - 1] as f64 - shift, q[n - 1]);
        a[0] += d;
        a[1] += d * d;
        a[2] += d * c as f64;
        qsum += c as u32;
    }
    ([a[0] + b[0], a[1] + b[1], a[2] + b[2]], qsum)
}

/// [`super::scalar::weighted_group_moments`] with its two chains as the two f64 lanes.
pub fn weighted_group_moments(x: &[f32], q: &[u8], h: &[f32], shift: f64) -> [f64; 5] {
    let n = x.len().min(q.len()).min(h.len());
    let sh = f64x2_splat(shift);
    let mut s = [f64x2_splat(0.0); 5];
    for p in 0..n / 2 {
        let i = 2 * p;
        // SAFETY: i + 1 < n ≤ x.len(), h.len(): two f32 each read as one u64.
        let (xv, hv) = unsafe {
            (v128_load64_zero(x.as_ptr().add(i) as *const u64), v128_load64_zero(h.as_ptr().add(i) as *const u64))
        };
        let d = f64x2_sub(f64x2_promote_low_f32x4(xv), sh);
        let w = f64x2_promote_low_f32x4(hv);
        // SAFETY: i + 1 < n ≤ q.len(): two codes read as one u16.
        let cv = unsafe { v128_load16_splat(q.as_ptr().add(i) as *const u16) };
        let c = f64x2_convert_low_i32x4(u32x4_extend_low_u16x8(u16x8_extend_low_u8x16(cv)));
        let wd = f64x2_mul(w, d);
        s[0] = f64x2_add(s[0], w);
        s[1] = f64x2_add(s[1], wd);
        s[2] = f64x2_add(s[2], f64x2_mul(w, c));
        s[3] = f64x2_add(s[3], f64x2_mul(wd, d));
        s[4] = f64x2_add(s[4], f64x2_mul(wd, c));
    }
    let mut a = s.map(|v| f64x2_extract_lane::<0>(v));
    let b = s.map(|v| f64x2_extract_lane::<1>(v));
    if n % 2 == 1 {
        add_weighted_moments(&mut a, x[n - 1], q[n - 1], h[n - 1], shift);
    }
    core::array::from_fn(|k| a[k] + b[k])
}

/// [`super::scalar::error_sums`] with two f64 lanes (even/odd elements), combined at the end.
/// Differs from the scalar order only by f64 rounding (relative ~1e-15 on these sums).
pub fn error_sums(w: &[f32], q: &[f32]) -> [f64; 5] {
    let n = w.len().min(q.len());
    let n4 = n / 4 * 4;
    let zero = f64x2_splat(0.0);
    let (mut s0, mut s1, mut s2, mut s3, mut mx) = (zero, zero, zero, zero, zero);
    let mut i = 0;
    while i < n4 {
        let (a4, b4) = unsafe { (load(w, i), load(q, i)) };
        for (a, b) in [
            (f64x2_promote_low_f32x4(a4), f64x2_promote_low_f32x4(b4)),
            (
                f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(a4, a4)),
                f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(b4, b4)),
            ),
        ] {
            let e = f64x2_sub(b, a);
            s0 = f64x2_add(s0, f64x2_mul(a, a));
            s1 = f64x2_add(s1, f64x2_mul(b, b));
            s2 = f64x2_add(s2, f64x2_mul(a, b));
            s3 = f64x2_add(s3, f64x2_mul(e, e));
            mx = f64x2_pmax(mx, f64x2_abs(e));
        }
        i += 4;
    }
    let h = |v: v128| f64x2_extract_lane::<0>(v) + f64x2_extract_lane::<1>(v);
    let mut s = [h(s0), h(s1), h(s2), h(s3), f64x2_extract_lane::<0>(mx).max(f64x2_extract_lane::<1>(mx))];
    let tail = super::scalar::error_sums(&w[n4..n], &q[n4..n]);
    for k in 0..4 {
        s[k] += tail[k];
    }
    s[4] = s[4].max(tail[4]);
    s
}

/// [`super::scalar::column_error_sums`]: lanes 0 and 1 in one f64x2 accumulator, 2 and 3 in
/// another, four values per step; the last (fewer than four) values go to their lanes in order.
pub fn column_error_sums(w: &[f32], q: &[f32], g: &[f64]) -> [f64; 3] {
    let n = w.len().min(q.len()).min(g.len());
    let n4 = n / 4 * 4;
    let zero = f64x2_splat(0.0);
    let mut acc = [[zero; 2]; 3];
    let mut i = 0;
    while i < n4 {
        // SAFETY: i + 4 ≤ n for all three slices.
        let (a4, b4, g01, g23) = unsafe {
            (
                load(w, i),
                load(q, i),
                v128_load(g.as_ptr().add(i) as *const v128),
                v128_load(g.as_ptr().add(i + 2) as *const v128),
            )
        };
        let halves = [
            (f64x2_promote_low_f32x4(a4), f64x2_promote_low_f32x4(b4), g01),
            (
                f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(a4, a4)),
                f64x2_promote_low_f32x4(i32x4_shuffle::<2, 3, 2, 3>(b4, b4)),
                g23,
            ),
        ];
        for (h, (a, b, gv)) in halves.into_iter().enumerate() {
            let e = f64x2_sub(a, b);
            let ga = f64x2_mul(gv, a);
            acc[0][h] = f64x2_add(acc[0][h], f64x2_mul(ga, a));
            acc[1][h] = f64x2_add(acc[1][h], f64x2_mul(f64x2_mul(gv, e), e));
            acc[2][h] = f64x2_add(acc[2][h], f64x2_mul(ga, e));
        }
        i += 4;
    }
    let mut lanes4 = acc.map(|[lo, hi]| {
        [
            f64x2_extract_lane::<0>(lo),
            f64x2_extract_lane::<1>(lo),
            f64x2_extract_lane::<0>(hi),
            f64x2_extract_lane::<1>(hi),
        ]
    });
    for j in n4..n {
        let (a, e, l) = (w[j] as f64, w[j] as f64 - q[j] as f64, j % 4);
        lanes4[0][l] += g[j] * a * a;
        lanes4[1][l] += g[j] * e * e;
        lanes4[2][l] += g[j] * a * e;
    }
    lanes4.map(super::scalar::fold_f64_lanes)
}

/// [`super::scalar::pack`]: 32 four-bit or 64 two-bit codes per step, gathered with byte
/// shuffles; the tail (fewer than one step) goes through the scalar twin at the right offset.
pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) {
    let step = match bits {
        4 => 32,
        2 => 64,
        8 => {
            // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout; `copy_bytes` writes
            // initialised bytes only.
            let out = unsafe { &mut *(&mut out[..codes.len()] as *mut [u8] as *mut [core::mem::MaybeUninit<u8>]) };
            return copy_bytes(codes, out);
        }
        _ => return super::scalar::pack(codes, bits, out),
    };
    let full = codes.len() / step * step;
    let mut i = 0;
    while i < full {
        let ld = |k: usize| unsafe { v128_load(codes.as_ptr().add(i + 16 * k) as *const v128) };
        let packed = if bits == 4 {
            pair_nibbles(ld(0), ld(1), 4)
        } else {
            // Two codes per byte first (2-bit fields), then two such bytes per output byte.
            let p = pair_nibbles(ld(0), ld(1), 2);
            let q = pair_nibbles(ld(2), ld(3), 2);
            pair_nibbles(p, q, 4)
        };
        unsafe { v128_store(out.as_mut_ptr().add(i * bits as usize / 8) as *mut v128, packed) };
        i += step;
    }
    super::scalar::pack(&codes[full..], bits, &mut out[full * bits as usize / 8..]);
}

/// out[k] = a‖b [2k] | (a‖b [2k+1] << shift), for the 32 bytes of a then b.
#[inline(always)]
fn pair_nibbles(a: v128, b: v128, shift: u32) -> v128 {
    let even = i8x16_shuffle::<0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30>(a, b);
    let odd = i8x16_shuffle::<1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31>(a, b);
    v128_or(even, i8x16_shl(odd, shift))
}

/// [`super::scalar::unpack`]: 16 packed bytes per step (32 four-bit or 64 two-bit codes).
pub fn unpack(packed: &[u8], bits: u8, out: &mut [u8]) {
    let step = match bits {
        4 => 32,
        2 => 64,
        _ => return super::scalar::unpack(packed, bits, out),
    };
    let full = out.len() / step * step;
    let mut i = 0;
    while i < full {
        let v = unsafe { v128_load(packed.as_ptr().add(i * bits as usize / 8) as *const v128) };
        let base = out.as_mut_ptr();
        let st = |k: usize, x: v128| unsafe { v128_store(base.add(i + 16 * k) as *mut v128, x) };
        if bits == 4 {
            let lo = v128_and(v, u8x16_splat(0x0f));
            let hi = u8x16_shr(v, 4);
            st(0, i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(lo, hi));
            st(1, i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(lo, hi));
        } else {
            let m = u8x16_splat(0x03);
            let b0 = v128_and(v, m);
            let b1 = v128_and(u8x16_shr(v, 2), m);
            let b2 = v128_and(u8x16_shr(v, 4), m);
            let b3 = u8x16_shr(v, 6);
            let x01_lo = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b0, b1);
            let x01_hi = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b0, b1);
            let x23_lo = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b2, b3);
            let x23_hi = i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b2, b3);
            st(0, i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(x01_lo, x23_lo));
            st(1, i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(x01_lo, x23_lo));
            st(2, i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(x01_hi, x23_hi));
            st(3, i8x16_shuffle::<8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31>(x01_hi, x23_hi));
        }
        i += step;
    }
    super::scalar::unpack(&packed[full * bits as usize / 8..], bits, &mut out[full..]);
}

/// clamp then nearest, as the scalar twin's `clamp_round`.
#[inline(always)]
fn clamp_round4(v: v128, lo: v128, hi: v128) -> v128 {
    f32x4_nearest(f32x4_pmin(f32x4_pmax(v, lo), hi))
}

/// The eight block lanes of two vectors (lanes 0–3, 4–7), folded as the scalar twin folds them.
#[inline(always)]
fn fold8(a: v128, b: v128) -> f32 {
    let (a, b) = (lanes(a), lanes(b));
    fold_block_lanes([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]])
}

pub fn block_code_sums(x: &[f32], m: f32, inv: f32, lo: f32, hi: f32) -> [f32; 3] {
    let (mv, iv, lov, hiv) = (f32x4_splat(m), f32x4_splat(inv), f32x4_splat(lo), f32x4_splat(hi));
    let z = f32x4_splat(0.0);
    let (mut xq, mut qq, mut q1) = ([z; 2], [z; 2], [z; 2]);
    for c in x.chunks_exact(8) {
        for h in 0..2 {
            // SAFETY: `c` holds 8 values, so 4 from 4·h are in bounds.
            let v = unsafe { load(c, 4 * h) };
            let q = clamp_round4(f32x4_mul(f32x4_sub(v, mv), iv), lov, hiv);
            xq[h] = f32x4_add(xq[h], f32x4_mul(v, q));
            qq[h] = f32x4_add(qq[h], f32x4_mul(q, q));
            q1[h] = f32x4_add(q1[h], q);
        }
    }
    [fold8(xq[0], xq[1]), fold8(qq[0], qq[1]), fold8(q1[0], q1[1])]
}

pub fn block_code_sse(x: &[f32], d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let (dv, mv, iv) = (f32x4_splat(d), f32x4_splat(m), f32x4_splat(inv));
    let (lov, hiv) = (f32x4_splat(lo), f32x4_splat(hi));
    let mut e = [f32x4_splat(0.0); 2];
    for c in x.chunks_exact(8) {
        for (h, e) in e.iter_mut().enumerate() {
            // SAFETY: `c` holds 8 values, so 4 from 4·h are in bounds.
            let v = unsafe { load(c, 4 * h) };
            let q = clamp_round4(f32x4_mul(f32x4_sub(v, mv), iv), lov, hiv);
            let r = f32x4_sub(v, f32x4_add(f32x4_mul(dv, q), mv));
            *e = f32x4_add(*e, f32x4_mul(r, r));
        }
    }
    fold8(e[0], e[1])
}

pub fn block_weighted_sums(x: &[f32], w: &[f32], m: f32, inv: f32, lo: f32, hi: f32) -> [f32; 3] {
    let (mv, iv, lov, hiv) = (f32x4_splat(m), f32x4_splat(inv), f32x4_splat(lo), f32x4_splat(hi));
    let z = f32x4_splat(0.0);
    let (mut xq, mut qq, mut q1) = ([z; 2], [z; 2], [z; 2]);
    for (c, cw) in x.chunks_exact(8).zip(w.chunks_exact(8)) {
        for h in 0..2 {
            // SAFETY: `c` and `cw` hold 8 values, so 4 from 4·h are in bounds.
            let (v, wv) = unsafe { (load(c, 4 * h), load(cw, 4 * h)) };
            let q = clamp_round4(f32x4_mul(f32x4_sub(v, mv), iv), lov, hiv);
            let wq = f32x4_mul(wv, q);
            xq[h] = f32x4_add(xq[h], f32x4_mul(v, wq));
            qq[h] = f32x4_add(qq[h], f32x4_mul(wq, q));
            q1[h] = f32x4_add(q1[h], wq);
        }
    }
    [fold8(xq[0], xq[1]), fold8(qq[0], qq[1]), fold8(q1[0], q1[1])]
}

pub fn block_weighted_sse(x: &[f32], w: &[f32], d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let (dv, mv, iv) = (f32x4_splat(d), f32x4_splat(m), f32x4_splat(inv));
    let (lov, hiv) = (f32x4_splat(lo), f32x4_splat(hi));
    let mut e = [f32x4_splat(0.0); 2];
    for (c, cw) in x.chunks_exact(8).zip(w.chunks_exact(8)) {
        for (h, e) in e.iter_mut().enumerate() {
            // SAFETY: `c` and `cw` hold 8 values, so 4 from 4·h are in bounds.
            let (v, wv) = unsafe { (load(c, 4 * h), load(cw, 4 * h)) };
            let q = clamp_round4(f32x4_mul(f32x4_sub(v, mv), iv), lov, hiv);
            let r = f32x4_sub(v, f32x4_add(f32x4_mul(dv, q), mv));
            *e = f32x4_add(*e, f32x4_mul(wv, f32x4_mul(r, r)));
        }
    }
    fold8(e[0], e[1])
}
