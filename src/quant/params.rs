//! Per-group (scale, min) choice. Params are stored as f16, so every candidate is rounded to f16
//! *before* it is scored and the final codes are computed against the rounded values: what
//! validation measures is exactly what a reader reconstructs.

use half::f16;

use crate::kernels::{self, scalar::HalfParams, scalar::Searched};
use crate::quant::dtype::F16_MAX;

/// Params of one group as stored (f16) and as used in arithmetic (their exact f32 values, kept
/// so the hot loops never convert f16 → f32 again).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupParams {
    scale: f16,
    min: f16,
    scale_f: f32,
    min_f: f32,
}

impl GroupParams {
    pub const ZERO: GroupParams = GroupParams { scale: f16::ZERO, min: f16::ZERO, scale_f: 0.0, min_f: 0.0 };

    /// Params as read back from their stored f16 bit patterns.
    #[inline]
    pub fn from_bits(scale: u16, min: u16) -> Self {
        let (scale, min) = (f16::from_bits(scale), f16::from_bits(min));
        GroupParams { scale, min, scale_f: scale.to_f32(), min_f: min.to_f32() }
    }
    #[inline]
    pub fn scale_bits(self) -> u16 {
        self.scale.to_bits()
    }
    #[inline]
    pub fn min_bits(self) -> u16 {
        self.min.to_bits()
    }
    #[inline]
    pub fn scale_f32(self) -> f32 {
        self.scale_f
    }
    #[inline]
    pub fn min_f32(self) -> f32 {
        self.min_f
    }
    /// From f16-rounded params; `None` unless both are finite and the scale is not negative.
    #[inline]
    pub fn from_half(p: HalfParams) -> Option<Self> {
        let finite = |b: u16| b & 0x7c00 != 0x7c00;
        (finite(p.scale_bits) && finite(p.min_bits) && p.scale >= 0.0).then_some(GroupParams {
            scale: f16::from_bits(p.scale_bits),
            min: f16::from_bits(p.min_bits),
            scale_f: p.scale,
            min_f: p.min,
        })
    }
}

/// Params chosen for one group, and whether the caller's code buffer now holds the group's codes
/// for them (with search, the comparison that picks the candidate also computes its codes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chosen {
    pub params: GroupParams,
    pub coded: bool,
}

/// Choose params for one group of finite values at `bits`. `None` when the group's values or
/// range do not fit f16 params (the caller then stores the tensor unquantized). With `search`
/// this runs the scalar reference search; [`choose_params4`] gives the same params for four
/// groups at a time with the active kernel set.
pub fn choose_params(x: &[f32], bits: u8, search: bool) -> Option<GroupParams> {
    let mut codes = if search { vec![0u8; x.len()] } else { Vec::new() };
    choose_params_coded(x, bits, search, &mut codes).map(|c| c.params)
}

/// [`choose_params`], writing the group's codes to `codes` (as long as `x`) when it computes
/// them on the way ([`Chosen::coded`]).
pub fn choose_params_coded(x: &[f32], bits: u8, search: bool, codes: &mut [u8]) -> Option<Chosen> {
    let qmax = qmax(bits);
    if search {
        return decide(kernels::scalar::search_exact(x, qmax, codes));
    }
    let (min, max) = (kernels::active().min_max)(x);
    if min < -F16_MAX || max > F16_MAX {
        return None;
    }
    let base = GroupParams::from_half(HalfParams::round((max - min) / qmax, min))?;
    Some(Chosen { params: base, coded: false })
}

/// [`choose_params_coded`] with search for four groups of equal length (the SIMD search's
/// unit), with the active kernel set.
pub fn choose_params4(xs: [&[f32]; 4], bits: u8, codes: [&mut [u8]; 4]) -> [Option<Chosen>; 4] {
    (kernels::active().search_exact4)(xs, qmax(bits), codes).map(decide)
}

#[inline]
fn qmax(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32
}

/// The stored params from what the search measured: the min/max params unless the search's
/// candidate has a smaller exact error. The search scores candidates by a closed-form bound
/// before f16 rounding; only the exact error of the stored values decides against min/max, so
/// search is never worse. `None` when the group's values or range do not fit f16 params.
pub(crate) fn decide(s: Searched) -> Option<Chosen> {
    if s.min < -F16_MAX || s.max > F16_MAX {
        return None;
    }
    // A constant group gets scale 0: every code 0, ŵ = min, no division anywhere.
    let base = GroupParams::from_half(s.base)?;
    let cand = s.cand.and_then(GroupParams::from_half).filter(|&c| c != base && s.max != s.min);
    Some(match cand {
        Some(c) if s.cand_err < s.base_err => Chosen { params: c, coded: true },
        _ => Chosen { params: base, coded: false },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scalar as k;

    fn error(x: &[f32], p: GroupParams, qmax: f32) -> f32 {
        let half =
            HalfParams { scale_bits: p.scale_bits(), min_bits: p.min_bits(), scale: p.scale_f32(), min: p.min_f32() };
        k::sequential_error(x, half, qmax, None)
    }

    #[test]
    fn constant_group_is_exact_when_f16_representable() {
        let x = [0.375f32; 40];
        let p = choose_params(&x, 4, true).unwrap();
        assert_eq!(p.scale_f32(), 0.0);
        assert_eq!(p.min_f32(), 0.375);
        assert_eq!(error(&x, p, 15.0), 0.0);
    }

    #[test]
    fn out_of_f16_range_is_refused() {
        assert!(choose_params(&[1e6, 0.0], 4, false).is_none());
        assert!(choose_params(&[-7e4, 0.0], 8, true).is_none());
        assert!(choose_params(&[65504.0, -65504.0], 8, false).is_some());
    }

    #[test]
    fn four_at_once_equals_one_at_a_time() {
        let mut state = 99u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as f32 / (1u64 << 31) as f32 - 0.5
        };
        for n in [1usize, 3, 32, 33, 64, 256] {
            let groups: Vec<Vec<f32>> =
                (0..4).map(|g| (0..n).map(|_| if g == 2 { 0.25 } else { next() * (g + 1) as f32 }).collect()).collect();
            let xs = [&groups[0][..], &groups[1][..], &groups[2][..], &groups[3][..]];
            for bits in [2u8, 4, 8] {
                let mut quad_codes = [[0u8; 256]; 4];
                let [a, b, c, d] = &mut quad_codes;
                let quad = choose_params4(xs, bits, [&mut a[..], &mut b[..], &mut c[..], &mut d[..]]);
                for (i, x) in xs.iter().enumerate() {
                    let mut one = vec![0u8; n];
                    let single = choose_params_coded(x, bits, true, &mut one);
                    assert_eq!(quad[i], single, "n {n} bits {bits} group {i}");
                    let p = single.unwrap();
                    if p.coded {
                        // The codes written on the way are the stored params' codes.
                        let mut expect = vec![0u8; n];
                        k::quantize_codes(
                            x,
                            p.params.scale_f32(),
                            p.params.min_f32(),
                            ((1u32 << bits) - 1) as f32,
                            &mut expect,
                        );
                        assert_eq!(one, expect, "n {n} bits {bits} group {i}");
                        assert_eq!(&quad_codes[i][..n], &expect[..], "n {n} bits {bits} group {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn search_never_worse_than_min_max() {
        let mut state = 12345u64;
        let x: Vec<f32> = (0..64)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * ((state >> 20) % 7 + 1) as f32
            })
            .collect();
        for bits in [2u8, 4, 8] {
            let q = ((1u32 << bits) - 1) as f32;
            let a = choose_params(&x, bits, false).unwrap();
            let b = choose_params(&x, bits, true).unwrap();
            let (ea, eb) = (error(&x, a, q), error(&x, b, q));
            assert!(eb <= ea, "bits {bits}: search {eb} > minmax {ea}");
        }
    }
}
