//! The inner loops of the block searches, over a block's values in lanes of eight f32 sums (so
//! the compiler vectorizes them; the lane order is fixed, so results are deterministic). They
//! choose params; the error a tensor reports is measured afterwards on the stored bytes, in f64.
//!
//! A code is `rne(clamp((x − m)·inv, lo, hi))` everywhere, and a decoded value `d·q + m`.

use super::legacy::rne_clamp;

const LANES: usize = 8;

fn fold(lanes: [f32; LANES]) -> f32 {
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
}

/// For the codes of `x` at (m, inv): Σ x·q, Σ q², Σ q (the least-squares normal equations).
#[inline]
pub fn code_sums(x: &[f32], m: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32, f32) {
    let (mut xq, mut qq, mut q1) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    for c in x.chunks_exact(LANES) {
        for l in 0..LANES {
            let q = rne_clamp((c[l] - m) * inv, lo, hi);
            xq[l] += c[l] * q;
            qq[l] += q * q;
            q1[l] += q;
        }
    }
    (fold(xq), fold(qq), fold(q1))
}

/// Σ (x − (d·q + m))² for the codes of `x` at (m, 1/d).
#[inline]
pub fn code_sse(x: &[f32], d: f32, m: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let mut e = [0f32; LANES];
    for c in x.chunks_exact(LANES) {
        for l in 0..LANES {
            let q = rne_clamp((c[l] - m) * inv, lo, hi);
            let r = c[l] - (d * q + m);
            e[l] += r * r;
        }
    }
    fold(e)
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
