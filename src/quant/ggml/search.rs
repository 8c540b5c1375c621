//! The block searches, over the kernels' block sums (kernels::scalar::block_code_sums and its
//! SIMD128 twin: eight lanes in a fixed order, so both give the same bits). They choose params;
//! the error a tensor reports is measured afterwards on the stored bytes, in f64.
//!
//! A code is `rne(clamp((x − m)·inv, lo, hi))` everywhere, and a decoded value `d·q + m`.
//!
//! The two searches every block type uses live here too; `store` is the rounding the format
//! applies to a candidate param before it is judged (f16 for the 32-value types, none for a
//! K-quant sub-block, whose params are quantized under the super-scale afterwards).

use crate::kernels;

/// A block's values and, with calibration, each value's importance — the second moment E[x_j²]
/// of the input its column multiplies, as llama.cpp's importance matrix — by which its squared
/// error is weighted (the layer's output error, to the diagonal of its Gram matrix).
#[derive(Clone, Copy)]
pub struct Block<'a> {
    pub x: &'a [f32],
    w: Option<&'a [f32]>,
}

impl<'a> Block<'a> {
    /// `w`, when given, holds one non-negative weight per value. A block whose weights are all
    /// zero (inputs that never fire) is searched unweighted, so its values are still fitted.
    pub fn new(x: &'a [f32], w: Option<&'a [f32]>) -> Self {
        debug_assert!(w.is_none_or(|w| w.len() == x.len()));
        Block { x, w: w.filter(|w| w.iter().any(|&v| v > 0.0)) }
    }

    pub fn sub(&self, start: usize, len: usize) -> Block<'a> {
        Block::new(&self.x[start..start + len], self.w.map(|w| &w[start..start + len]))
    }

    /// For the codes at (m, inv): (Σ w·x·q, Σ w·q², Σ w·q), w = 1 without importance — the
    /// least-squares normal equations.
    #[inline]
    pub fn code_sums(&self, m: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32, f32) {
        let k = kernels::active();
        let [xq, qq, q1] = match self.w {
            None => (k.block_code_sums)(self.x, m, inv, lo, hi),
            Some(w) => (k.block_weighted_sums)(self.x, w, m, inv, lo, hi),
        };
        (xq, qq, q1)
    }

    /// Σ w·(x − (d·q + m))² for the codes at (m, 1/d).
    #[inline]
    pub fn code_sse(&self, d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
        let k = kernels::active();
        match self.w {
            None => (k.block_code_sse)(self.x, d, m, inv, lo, hi),
            Some(w) => (k.block_weighted_sse)(self.x, w, d, m, inv, lo, hi),
        }
    }

    /// (Σ w, Σ w·x).
    fn moments(&self) -> (f32, f32) {
        match self.w {
            None => (self.x.len() as f32, self.x.iter().sum()),
            Some(w) => (w.iter().sum(), self.x.iter().zip(w).map(|(x, w)| x * w).sum()),
        }
    }
}

/// 1/d, or 0 for a zero scale (every code is then 0).
pub fn reciprocal(d: f32) -> f32 {
    let r = 1.0 / d;
    if d == 0.0 || !r.is_finite() {
        0.0
    } else {
        r
    }
}

/// The value of largest magnitude, sign kept (the first one on a tie, as ggml).
pub fn signed_max(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

/// The scale for x ≈ d·q, q ∈ −nmax..nmax−1, errors weighted by the block's importance. The
/// reference choice maps the extreme value to the most negative code (spending the asymmetric range on the extreme's side); we also try the
/// divisors nmax + 0.3·k, refit the scale to each one's codes by least squares, and keep the
/// (stored) scale whose codes decode closest.
pub fn symmetric_scale(b: Block, nmax: f32, store: impl Fn(f32) -> f32) -> f32 {
    let (lo, hi) = (-nmax, nmax - 1.0);
    let max = signed_max(b.x);
    let error = |d: f32| b.code_sse(d, 0.0, reciprocal(d), lo, hi);
    let mut best = store(max / -nmax);
    if max == 0.0 {
        return best;
    }
    let mut best_e = error(best);
    // Stage by stage for all candidates, as in `affine_params`.
    let invs = SYMMETRIC_GRID.map(|k| reciprocal(max / -(nmax + 0.1 * k as f32)));
    let sums = invs.map(|inv| b.code_sums(0.0, inv, lo, hi));
    let candidates = sums.map(|(sxq, sqq, _)| (sqq != 0.0).then(|| store(sxq / sqq)));
    for d in candidates.into_iter().flatten() {
        let e = error(d);
        if e < best_e {
            (best, best_e) = (d, e);
        }
    }
    best
}

/// The symmetric search's divisors: nmax + 0.1·k for these k.
const SYMMETRIC_GRID: [i32; 7] = [-9, -6, -3, 0, 3, 6, 9];

/// The affine search's ranges: range/(levels + 0.1·k) for these k.
const AFFINE_GRID: [i32; 6] = [-5, -2, 1, 4, 7, 10];

/// (d, m) for x ≈ d·q + m, q ∈ 0..=levels. The reference choice is m = min, d = range/levels; we
/// also try the ranges range/(levels + 0.1·k), refit d and m to each one's codes by least squares,
/// and keep the (stored) pair whose codes decode closest. `nonpositive_min` holds m ≤ 0, for the
/// K-quants, which store −m unsigned.
pub fn affine_params(b: Block, levels: f32, nonpositive_min: bool, store: impl Fn(f32) -> f32) -> (f32, f32) {
    // Compare-and-select rather than f32::min/max, which wasm lowers to calls (NaN rules).
    let (lo, hi) = b.x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    });
    let lo = if nonpositive_min { lo.min(0.0) } else { lo };
    let error = |d: f32, m: f32| b.code_sse(d, m, reciprocal(d), 0.0, levels);
    let mut best = (store((hi - lo) / levels), store(lo));
    if hi <= lo {
        return best;
    }
    let mut best_e = error(best.0, best.1);
    let (n, sx) = b.moments();
    // Each stage for all six candidates before the next (the same operations per candidate, in
    // the same order of comparison): their divisions then overlap instead of waiting on each
    // other across the kernel calls.
    let invs = AFFINE_GRID.map(|k| reciprocal((hi - lo) / (levels + 0.1 * k as f32)));
    let sums = invs.map(|inv| b.code_sums(lo, inv, 0.0, levels));
    let candidates = sums.map(|(sxq, sqq, sq)| {
        let det = n * sqq - sq * sq;
        if det <= 0.0 {
            return None;
        }
        let (mut d, mut m) = ((n * sxq - sq * sx) / det, (sqq * sx - sq * sxq) / det);
        if nonpositive_min && m > 0.0 {
            (d, m) = (sxq / sqq, 0.0);
        }
        let (d, m) = (store(d), store(m));
        (!d.is_nan() && d > 0.0).then_some((d, m))
    });
    for (d, m) in candidates.into_iter().flatten() {
        let e = error(d, m);
        if e < best_e {
            (best, best_e) = ((d, m), e);
        }
    }
    best
}
