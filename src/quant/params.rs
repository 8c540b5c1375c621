//! Per-group (scale, min) choice. Params are stored as f16, so every candidate is rounded to f16
//! *before* it is scored and the final codes are computed against the rounded values: what
//! validation measures is exactly what a reader reconstructs.

use half::f16;

use crate::kernels::{self, scalar::SearchFit};

/// Largest finite f16; a group whose values or range exceed it cannot be described by f16 params.
pub const F16_MAX: f32 = 65504.0;

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
    fn from_f32(scale: f32, min: f32) -> Option<Self> {
        let (s, m) = (f16::from_f32(scale), f16::from_f32(min));
        Self::from_rounded(s.to_bits(), m.to_bits(), s.to_f32(), m.to_f32())
    }
    /// From f16 bit patterns and their f32 values; `None` unless both are finite and the scale
    /// is not negative.
    #[inline]
    fn from_rounded(scale: u16, min: u16, scale_f: f32, min_f: f32) -> Option<Self> {
        let finite = |b: u16| b & 0x7c00 != 0x7c00;
        (finite(scale) && finite(min) && scale_f >= 0.0).then_some(GroupParams {
            scale: f16::from_bits(scale),
            min: f16::from_bits(min),
            scale_f,
            min_f,
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
    let found = if search {
        kernels::scalar::search(x, qmax)
    } else {
        let (min, max) = (kernels::active().min_max)(x);
        SearchFit { min, max, fit: None }
    };
    let base = GroupParams::from_f32((found.max - found.min) / qmax, found.min);
    let cand = found.fit.and_then(|(s, m)| GroupParams::from_f32(s as f32, m as f32));
    finish(x, qmax, found, base, cand, codes)
}

/// [`choose_params_coded`] with search for four groups of equal length (the SIMD search's
/// unit); the sixteen f16 roundings also go four at a time.
pub fn choose_params4(xs: [&[f32]; 4], bits: u8, codes: [&mut [u8]; 4]) -> [Option<Chosen>; 4] {
    let qmax = qmax(bits);
    let k = kernels::active();
    let found = (k.search4)(xs, qmax);
    // [base scales, base mins, candidate scales, candidate mins], four lanes each.
    let mut raw = [0f32; 16];
    for (i, f) in found.iter().enumerate() {
        let (s, m) = f.fit.unwrap_or((0.0, 0.0));
        raw[i] = (f.max - f.min) / qmax;
        raw[4 + i] = f.min;
        raw[8 + i] = s as f32;
        raw[12 + i] = m as f32;
    }
    let (mut h, mut v) = ([0u16; 16], [0f32; 16]);
    (k.round_f16)(&raw, &mut h, &mut v);
    let mut codes = codes.into_iter();
    core::array::from_fn(|i| {
        let base = GroupParams::from_rounded(h[i], h[4 + i], v[i], v[4 + i]);
        let cand = found[i].fit.and_then(|_| GroupParams::from_rounded(h[8 + i], h[12 + i], v[8 + i], v[12 + i]));
        finish(xs[i], qmax, found[i], base, cand, codes.next().expect("four code buffers"))
    })
}

#[inline]
fn qmax(bits: u8) -> f32 {
    ((1u32 << bits) - 1) as f32
}

/// From the group's extrema, its min/max params `base` (f16-rounded (max − min)/qmax and min) and
/// the search's rounded refit `cand` (if any) to stored params: `base` unless `cand` has a
/// smaller exact error. When `cand` is compared, its codes are written to `codes` on the way.
fn finish(
    x: &[f32],
    qmax: f32,
    found: SearchFit,
    base: Option<GroupParams>,
    cand: Option<GroupParams>,
    codes: &mut [u8],
) -> Option<Chosen> {
    if found.min < -F16_MAX || found.max > F16_MAX {
        return None;
    }
    // A constant group gets scale 0: every code 0, ŵ = min, no division anywhere.
    let base = base?;
    let Some(cand) = cand.filter(|&c| c != base && found.max != found.min) else {
        return Some(Chosen { params: base, coded: false });
    };
    // The search scores candidates by a closed-form bound before f16 rounding; only the exact
    // error of the stored values decides against min/max, so search is never worse.
    let [cand_err, base_err] = (kernels::active().squared_errors)(
        x,
        [(cand.scale_f32(), cand.min_f32()), (base.scale_f32(), base.min_f32())],
        qmax,
        &mut codes[..x.len()],
    );
    Some(if cand_err < base_err { Chosen { params: cand, coded: true } } else { Chosen { params: base, coded: false } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scalar as k;

    #[test]
    fn constant_group_is_exact_when_f16_representable() {
        let x = [0.375f32; 40];
        let p = choose_params(&x, 4, true).unwrap();
        assert_eq!(p.scale_f32(), 0.0);
        assert_eq!(p.min_f32(), 0.375);
        assert_eq!(k::squared_error(&x, p.scale_f32(), p.min_f32(), 15.0), 0.0);
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
            let ea = k::squared_error(&x, a.scale_f32(), a.min_f32(), q);
            let eb = k::squared_error(&x, b.scale_f32(), b.min_f32(), q);
            assert!(eb <= ea, "bits {bits}: search {eb} > minmax {ea}");
        }
    }
}
