//! Gain matching: params that keep the weights' gain, so the quantization error is uncorrelated
//! with the weights instead of with the reconstruction.
//!
//! Least-squares params (the range search's refit, Lloyd steps, GPTQ's output-optimal codes)
//! reconstruct a *shrunk* copy of the weights: for fixed codes q the best fit ŵ = s·q + m has
//! ⟨w, ŵ⟩ = ⟨ŵ, ŵ⟩, so ŵ's projection on w is ρ² of w (ρ the correlation of w and q) — 0.92 at
//! 2 bits, 0.99 at 4. A network multiplies those shrinks layer after layer, and a diffusion model's
//! output follows them far more than it follows the smaller weight error: on the bundled DiT at
//! 2 bits the ε-MSE ratio is 152 with least-squares params and 30 gain-matched (`make eval`).
//!
//! For the same codes the gain-matched fit regresses the codes on the weights instead:
//! s = var(w)/cov(w, q), m = mean(w) − s·mean(q), so mean(ŵ − w) = 0 and cov(w, ŵ − w) = 0. Its
//! weight error is 1/ρ² of the least-squares one: +0.03 dB at 4 bits, about 0.6 dB at 2.
//! With the layer's Gram matrix G the same holds for a whole row at its output: ŵ·k with
//! k = wᵀGw / wᵀGŵ makes the output error uncorrelated with the output.

use crate::kernels;
use crate::kernels::scalar::HalfParams;
use crate::quant::params::GroupParams;

/// A match that would rescale the reconstruction by more than this factor (either way) is not
/// applied: the codes then track the weights too loosely for the regression to mean anything.
const MAX_GAIN: f64 = 2.0;

/// The gain-matched params of one group for its codes `q` (one per element), weighted by `h`
/// (the importance of each element, or equal weights); `p` (the params `q` was coded with) when
/// the group is constant, the weights carry no weight, the codes do not correlate with the values,
/// or the matched params do not fit f16.
pub fn match_group(x: &[f32], q: &[u8], h: Option<&[f32]>, p: GroupParams) -> GroupParams {
    debug_assert_eq!(x.len(), q.len());
    if x.is_empty() || p.scale_f32() == 0.0 {
        return p;
    }
    let m = match h {
        Some(h) => Moments::weighted(x, q, h),
        None => Moments::equal(x, q),
    };
    m.matched(p).unwrap_or(p)
}

/// A group's weighted moments about a shift K (its first value): Σw, Σw·d, Σw·q, Σw·d², Σw·d·q
/// with d = x − K, in f64 (the kernels' [`kernels::scalar::group_moments`] and its weighted
/// twin). One pass instead of a pass for the means and one for the centred sums; shifting by a
/// value of the group keeps the centring's cancellation to the ratio of its range to its spread
/// (a few bits of f64's 53).
#[derive(Debug, Clone, Copy)]
struct Moments {
    shift: f64,
    sw: f64,
    sd: f64,
    sq: f64,
    sdd: f64,
    sdq: f64,
}

impl Moments {
    /// Equal weights, a kernel of its own: without the weight products and with the codes summed
    /// as integers it is 6 % of a 4-bit search run faster than the weighted one given ones (same
    /// bytes either way; `bench/ab.mjs`).
    fn equal(x: &[f32], q: &[u8]) -> Self {
        let shift = x[0] as f64;
        let ([sd, sdd, sdq], sq) = (kernels::active().group_moments)(x, q, shift);
        Moments { shift, sw: x.len() as f64, sd, sq: sq as f64, sdd, sdq }
    }

    fn weighted(x: &[f32], q: &[u8], h: &[f32]) -> Self {
        let shift = x[0] as f64;
        let [sw, sd, sq, sdd, sdq] = (kernels::active().weighted_group_moments)(x, q, h, shift);
        Moments { shift, sw, sd, sq, sdd, sdq }
    }

    /// The regression of the codes on the values: s = var/cov, m = mean(x) − s·mean(q); `None`
    /// when the weights carry nothing, the values or codes do not vary together, the gain leaves
    /// [1/2, 2] or the params do not fit f16.
    fn matched(&self, p: GroupParams) -> Option<GroupParams> {
        if self.sw.is_nan() || self.sw <= 0.0 {
            return None;
        }
        let (md, mq) = (self.sd / self.sw, self.sq / self.sw);
        let var = self.sdd - self.sd * md;
        let cov = self.sdq - self.sd * mq;
        if var.is_nan() || var <= 0.0 || cov.is_nan() || cov <= 0.0 {
            return None;
        }
        let scale = var / cov;
        let gain = scale / p.scale_f32() as f64;
        if !(1.0 / MAX_GAIN..=MAX_GAIN).contains(&gain) {
            return None;
        }
        let min = self.shift + md - scale * mq;
        GroupParams::from_half(HalfParams::round(scale as f32, min as f32))
    }
}

/// Params scaled by `k` (ŵ·k, the codes unchanged), rounded to f16; `p` when `k` is outside
/// [1/2, 2] or the scaled params do not fit f16.
pub fn scale_params(p: GroupParams, k: f64) -> GroupParams {
    if !(1.0 / MAX_GAIN..=MAX_GAIN).contains(&k) {
        return p;
    }
    let (s, m) = (p.scale_f32() as f64 * k, p.min_f32() as f64 * k);
    GroupParams::from_half(HalfParams::round(s as f32, m as f32)).unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::params::choose_params_coded;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut u = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n).map(|_| ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()) as f32).collect()
    }

    fn reconstruct(q: &[u8], p: GroupParams) -> Vec<f64> {
        q.iter().map(|&c| (c as f32 * p.scale_f32() + p.min_f32()) as f64).collect()
    }

    /// ⟨w, ŵ − mean⟩ / ⟨w − mean, w − mean⟩: 1 when the reconstruction keeps the gain.
    fn gain(x: &[f32], xhat: &[f64]) -> f64 {
        let n = x.len() as f64;
        let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let (mut c, mut v) = (0.0, 0.0);
        for (&a, &b) in x.iter().zip(xhat) {
            c += (a as f64 - mx) * b;
            v += (a as f64 - mx) * (a as f64 - mx);
        }
        c / v
    }

    #[test]
    fn least_squares_shrinks_and_the_match_restores_the_gain() {
        for bits in [2u8, 4] {
            let (mut shrunk, mut matched) = (0.0, 0.0);
            let groups = 200;
            for g in 0..groups {
                let x = gaussian(64, g + 1);
                let mut q = vec![0u8; 64];
                let c = choose_params_coded(&x, bits, true, &mut q).unwrap();
                if !c.coded {
                    let inv = crate::kernels::scalar::inverse(c.params.scale_f32());
                    for (qi, &v) in q.iter_mut().zip(&x) {
                        *qi =
                            crate::kernels::scalar::code_of(v, inv, c.params.min_f32(), ((1 << bits) - 1) as f32) as u8;
                    }
                }
                let m = match_group(&x, &q, None, c.params);
                shrunk += gain(&x, &reconstruct(&q, c.params));
                matched += gain(&x, &reconstruct(&q, m));
            }
            let (shrunk, matched) = (shrunk / groups as f64, matched / groups as f64);
            assert!(shrunk < if bits == 2 { 0.95 } else { 0.999 }, "{bits}-bit least squares gain {shrunk}");
            // Within f16 rounding of the params.
            assert!((matched - 1.0).abs() < 2e-3, "{bits}-bit matched gain {matched}");
        }
    }

    #[test]
    fn weighted_match_zeroes_the_weighted_correlation() {
        let x = gaussian(64, 7);
        let h: Vec<f32> = (0..64).map(|i| 1.0 + (i % 5) as f32 * 3.0).collect();
        let q: Vec<u8> = x.iter().map(|&v| ((v + 2.5) / 5.0 * 3.0).round().clamp(0.0, 3.0) as u8).collect();
        let p = GroupParams::from_half(HalfParams::round(5.0 / 3.0, -2.5)).unwrap();
        let m = match_group(&x, &q, Some(&h), p);
        let xhat = reconstruct(&q, m);
        let sw: f64 = h.iter().map(|&w| w as f64).sum();
        let mx = x.iter().zip(&h).map(|(&v, &w)| v as f64 * w as f64).sum::<f64>() / sw;
        let (mut mean_err, mut corr, mut var) = (0.0, 0.0, 0.0);
        for ((&v, &w), &b) in x.iter().zip(&h).zip(&xhat) {
            let (w, d) = (w as f64, v as f64 - mx);
            mean_err += w * (b - v as f64);
            corr += w * d * (b - v as f64);
            var += w * d * d;
        }
        assert!((mean_err / sw).abs() < 1e-2 && (corr / var).abs() < 2e-3, "{mean_err} {corr}");
    }

    #[test]
    fn degenerate_groups_keep_their_params() {
        let p = GroupParams::from_half(HalfParams::round(0.5, -1.0)).unwrap();
        // Constant values, constant codes, anti-correlated codes, zero importance.
        assert_eq!(match_group(&[0.25; 8], &[1; 8], None, p), p);
        assert_eq!(match_group(&[0.0, 1.0, 2.0], &[0, 0, 0], None, p), p);
        assert_eq!(match_group(&[0.0, 1.0, 2.0], &[3, 2, 1], None, p), p);
        assert_eq!(match_group(&[0.0, 1.0, 2.0], &[0, 1, 2], Some(&[0.0; 3]), p), p);
        let zero = GroupParams::from_half(HalfParams::round(0.0, 0.25)).unwrap();
        assert_eq!(match_group(&[0.25; 4], &[0; 4], None, zero), zero);
        // A match beyond the gain bound, and scaled params beyond f16.
        assert_eq!(
            match_group(
                &[0.0, 1.0, 2.0],
                &[0, 1, 2],
                None,
                GroupParams::from_half(HalfParams::round(0.1, 0.0)).unwrap()
            ),
            GroupParams::from_half(HalfParams::round(0.1, 0.0)).unwrap()
        );
        let big = GroupParams::from_half(HalfParams::round(60000.0, 0.0)).unwrap();
        assert_eq!(scale_params(big, 1.5), big);
        assert_eq!(scale_params(p, 3.0), p);
        assert_eq!(scale_params(p, 1.5), GroupParams::from_half(HalfParams::round(0.75, -1.5)).unwrap());
    }
}
