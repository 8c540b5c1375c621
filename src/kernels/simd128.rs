//! SIMD128 twins of the scalar kernels (wasm32 with `+simd128` only). Each function reproduces
//! its scalar twin bit for bit: the same IEEE operations per element (sub, mul/div, nearest =
//! round-half-even, pmin/pmax clamps) and the same lane-interleaved accumulation order — full
//! chunks of four go through the vector lanes, the tail is added to lane `i % 4` in scalar code.

use core::arch::wasm32::*;

use super::scalar::combine_lanes;

#[inline(always)]
unsafe fn load(x: &[f32], i: usize) -> v128 {
    debug_assert!(i + 4 <= x.len());
    v128_load(x.as_ptr().add(i) as *const v128)
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
    let n4 = x.len() / 4 * 4;
    let (mut vmn, mut vmx) = (f32x4_splat(f32::INFINITY), f32x4_splat(f32::NEG_INFINITY));
    let mut i = 0;
    while i < n4 {
        let v = unsafe { load(x, i) };
        // pmin(a, b) = b < a ? b : a: takes v only when strictly smaller, as the scalar `if`.
        vmn = f32x4_pmin(vmn, v);
        vmx = f32x4_pmax(vmx, v);
        i += 4;
    }
    // The lanes and the tail reduce with the scalar twin; both normalise -0.0, so the
    // combined extrema are the same values whichever zero a lane met first.
    let (lmn, _) = super::scalar::min_max(&lanes(vmn));
    let (_, lmx) = super::scalar::min_max(&lanes(vmx));
    let (tmn, tmx) = super::scalar::min_max(&x[n4..]);
    (lmn.min(tmn) + 0.0, lmx.max(tmx) + 0.0)
}

pub fn sum_and_sq(x: &[f32]) -> (f32, f32) {
    let n4 = x.len() / 4 * 4;
    let mut acc = f32x4_splat(0.0);
    let mut acc2 = f32x4_splat(0.0);
    let mut i = 0;
    while i < n4 {
        let v = unsafe { load(x, i) };
        acc = f32x4_add(acc, v);
        acc2 = f32x4_add(acc2, f32x4_mul(v, v));
        i += 4;
    }
    let (mut l, mut l2) = (lanes(acc), lanes(acc2));
    for (j, &v) in x[n4..].iter().enumerate() {
        l[(n4 + j) % 4] += v;
        l2[(n4 + j) % 4] += v * v;
    }
    (combine_lanes(l), combine_lanes(l2))
}

pub fn candidate_sums(x: &[f32], min: f32, iscale: f32, qmax: f32) -> (u64, u64, f32) {
    let n4 = x.len() / 4 * 4;
    let (vmin, vis, vq) = (f32x4_splat(min), f32x4_splat(iscale), f32x4_splat(qmax));
    let mut acc_l = i32x4_splat(0);
    let mut acc_l2 = i32x4_splat(0);
    let mut acc_xl = f32x4_splat(0.0);
    let mut i = 0;
    // Per lane at most 64 codes of at most 255: Σl² ≤ 4.2M, exact in i32.
    while i < n4 {
        let v = unsafe { load(x, i) };
        let l = round_clamp(f32x4_mul(f32x4_sub(v, vmin), vis), vq);
        let li = i32x4_trunc_sat_f32x4(l);
        acc_l = i32x4_add(acc_l, li);
        acc_l2 = i32x4_add(acc_l2, i32x4_mul(li, li));
        acc_xl = f32x4_add(acc_xl, f32x4_mul(v, l));
        i += 4;
    }
    let mut sum_l = (0..4).map(|k| lane_i32(acc_l, k) as u64).sum::<u64>();
    let mut sum_l2 = (0..4).map(|k| lane_i32(acc_l2, k) as u64).sum::<u64>();
    let mut xl = lanes(acc_xl);
    for (j, &v) in x[n4..].iter().enumerate() {
        let l = ((v - min) * iscale).round_ties_even().clamp(0.0, qmax);
        let li = l as u64;
        sum_l += li;
        sum_l2 += li * li;
        xl[(n4 + j) % 4] += v * l;
    }
    (sum_l, sum_l2, combine_lanes(xl))
}

#[inline(always)]
fn lane_i32(v: v128, k: usize) -> i32 {
    match k {
        0 => i32x4_extract_lane::<0>(v),
        1 => i32x4_extract_lane::<1>(v),
        2 => i32x4_extract_lane::<2>(v),
        _ => i32x4_extract_lane::<3>(v),
    }
}

pub fn squared_error(x: &[f32], scale: f32, min: f32, qmax: f32) -> f32 {
    let inv = super::scalar::inverse(scale);
    let n4 = x.len() / 4 * 4;
    let (vs, vinv, vm, vq) = (f32x4_splat(scale), f32x4_splat(inv), f32x4_splat(min), f32x4_splat(qmax));
    let mut acc = f32x4_splat(0.0);
    let mut i = 0;
    while i < n4 {
        let v = unsafe { load(x, i) };
        let q = round_clamp(f32x4_mul(f32x4_sub(v, vm), vinv), vq);
        let e = f32x4_sub(f32x4_add(f32x4_mul(q, vs), vm), v);
        acc = f32x4_add(acc, f32x4_mul(e, e));
        i += 4;
    }
    let mut l = lanes(acc);
    for (j, &v) in x[n4..].iter().enumerate() {
        let q = super::scalar::code_of(v, inv, min, qmax);
        let e = q * scale + min - v;
        l[(n4 + j) % 4] += e * e;
    }
    combine_lanes(l)
}

pub fn quantize_codes(x: &[f32], scale: f32, min: f32, qmax: f32, out: &mut [u8]) {
    let inv = super::scalar::inverse(scale);
    let n16 = x.len() / 16 * 16;
    let (vinv, vm, vq) = (f32x4_splat(inv), f32x4_splat(min), f32x4_splat(qmax));
    let code4 = |v: v128| i32x4_trunc_sat_f32x4(round_clamp(f32x4_mul(f32x4_sub(v, vm), vinv), vq));
    let mut i = 0;
    while i < n16 {
        let (a, b, c, d) = unsafe { (load(x, i), load(x, i + 4), load(x, i + 8), load(x, i + 12)) };
        // Codes are 0..=255: the saturating narrows are exact.
        let lo = i16x8_narrow_i32x4(code4(a), code4(b));
        let hi = i16x8_narrow_i32x4(code4(c), code4(d));
        let bytes = u8x16_narrow_i16x8(lo, hi);
        unsafe { v128_store(out.as_mut_ptr().add(i) as *mut v128, bytes) };
        i += 16;
    }
    for (o, &v) in out[n16..x.len()].iter_mut().zip(&x[n16..]) {
        *o = super::scalar::code_of(v, inv, min, qmax) as u8;
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
/// payload kept, as `half::f16::to_f32`). Normal numbers re-bias the exponent; subnormals are
/// scaled by 2^-24 through an exact float multiply.
pub fn decode_f16(bytes: &[u8], out: &mut [f32]) {
    let n = out.len();
    let n4 = n / 4 * 4;
    let mut i = 0;
    while i < n4 {
        let h = u32x4_extend_low_u16x8(unsafe { v128_load64_zero(bytes.as_ptr().add(2 * i) as *const u64) });
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
        unsafe { v128_store(out.as_mut_ptr().add(i) as *mut v128, v128_or(mag, sign)) };
        i += 4;
    }
    for (o, c) in out[n4..].iter_mut().zip(bytes[2 * n4..].chunks_exact(2)) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
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

/// [`super::scalar::pack`]: 32 four-bit or 64 two-bit codes per step, gathered with byte
/// shuffles; the tail (fewer than one step) goes through the scalar twin at the right offset.
pub fn pack(codes: &[u8], bits: u8, out: &mut [u8]) {
    let step = match bits {
        4 => 32,
        2 => 64,
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
