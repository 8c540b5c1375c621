//! Scalar reference kernels. Every optimised kernel must reproduce these bit for bit
//! (codes, params) or within a stated bound (f64 error sums).

/// Combine four lane accumulators in the fixed order every twin uses.
#[inline]
pub fn combine_lanes(l: [f32; 4]) -> f32 {
    (l[0] + l[1]) + (l[2] + l[3])
}

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

/// (Σx, Σx²) with lane-interleaved f32 accumulators.
pub fn sum_and_sq(x: &[f32]) -> (f32, f32) {
    let mut l = [0f32; 4];
    let mut l2 = [0f32; 4];
    for (i, &v) in x.iter().enumerate() {
        l[i % 4] += v;
        l2[i % 4] += v * v;
    }
    (combine_lanes(l), combine_lanes(l2))
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

/// Code of one value: clamp(round_half_even((x − min) · inv), 0, qmax), inv = [`inverse`]`(scale)`.
/// A multiply rather than a divide: it is several times cheaper in SIMD, and the result is
/// validated on the stored codes either way.
#[inline]
pub fn code_of(x: f32, inv: f32, min: f32, qmax: f32) -> f32 {
    ((x - min) * inv).round_ties_even().clamp(0.0, qmax)
}

/// Codes for a candidate inverse scale during the range search, with the sums the
/// least-squares refit needs: (Σl, Σl², Σx·l). Σl and Σl² are exact integers.
pub fn candidate_sums(x: &[f32], min: f32, iscale: f32, qmax: f32) -> (u64, u64, f32) {
    let mut sum_l = 0u64;
    let mut sum_l2 = 0u64;
    let mut xl = [0f32; 4];
    for (i, &v) in x.iter().enumerate() {
        let l = ((v - min) * iscale).round_ties_even().clamp(0.0, qmax);
        let li = l as u64;
        sum_l += li;
        sum_l2 += li * li;
        xl[i % 4] += v * l;
    }
    (sum_l, sum_l2, combine_lanes(xl))
}

/// Σ(ŵ − x)² for the stored params, with codes computed exactly as `quantize_codes` does.
pub fn squared_error(x: &[f32], scale: f32, min: f32, qmax: f32) -> f32 {
    let inv = inverse(scale);
    let mut l = [0f32; 4];
    for (i, &v) in x.iter().enumerate() {
        let q = code_of(v, inv, min, qmax);
        let e = q * scale + min - v;
        l[i % 4] += e * e;
    }
    combine_lanes(l)
}

/// Codes (one per byte, unpacked) for the stored params.
pub fn quantize_codes(x: &[f32], scale: f32, min: f32, qmax: f32, out: &mut [u8]) {
    let inv = inverse(scale);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = code_of(v, inv, min, qmax) as u8;
    }
}

/// ŵ = q·scale + min, computed in f32 as a multiply then an add (no fused multiply-add):
/// the formula docs/FORMAT.md promises and numpy reproduces.
pub fn dequantize_codes(codes: &[u8], scale: f32, min: f32, out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = q as f32 * scale + min;
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

/// IEEE binary16 (little-endian) → f32; exact.
pub fn decode_f16(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
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
