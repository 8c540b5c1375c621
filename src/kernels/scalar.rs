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

/// The range search's first candidates: inverse scales (qmax + t) / range for t in this grid
/// (ggml `make_qkx2_quants` style, codes offset by the group minimum), each refit by least
/// squares. Then [`lloyd_steps`] Lloyd steps: codes recomputed against the best refit so far
/// (its own offset and scale) and refit again. Measured on 2M Gaussian samples
/// (`native_anchors`) against the earlier 11-point grid (t = −1, −0.8, …, 1) without Lloyd
/// steps: 4-bit g32/64/128 23.10/21.70/20.65 dB vs 23.11/21.69/20.64 with 6 passes instead of
/// 11; 2-bit 10.26/9.48/9.04 vs 10.14/9.23/8.62 with 7 passes.
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

/// What the range search found for one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchFit {
    /// The group's extrema (`-0.0` normalised to `+0.0`), as [`min_max`] gives them.
    pub min: f32,
    pub max: f32,
    /// Least-squares (scale, min) of the candidate with the smallest closed-form error, or
    /// `None` when no candidate had a positive scale (constant groups among them).
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

    /// The least-squares (scale, min) of the best candidate's codes: scale = a/det, and the
    /// offset min + (Σd − Σl·scale)/n.
    fn fit(&self, n: f32, sd: f32, min: f32) -> (f32, f32) {
        let scale = self.a / self.det;
        (scale, min + (sd - self.sl * scale) / n)
    }
}

/// Score one candidate's codes. With d = x − min (the group relative to its minimum) and codes l
/// with sums (Σl, Σl², Σd·l), the least-squares fit x ≈ s·l + m has s = a/det with
/// a = nΣdl − ΣdΣl and det = nΣl² − (Σl)², and leaves Σ(s·l + m − x)² = Σd² − (Σd)²/n − a²/(n·det);
/// that error also bounds the codes recomputed against (s, m). So the best candidate has the
/// largest a²/det, compared by cross-multiplying (det > 0): no division per candidate. Its scale
/// must be positive (a > 0). Scored in f32, four groups per SIMD op: sums over d do not cancel
/// the group's offset, det is exact below 8 bits (integers under 2^24), and a score only ranks
/// candidates — the stored params are then checked by their exact error against min/max.
/// Branch-free (a NaN or a zero determinant fails the test) so that the SIMD twin, which runs the
/// same operations in the same order per lane, agrees bit for bit; the first of equal scores is
/// kept.
#[inline(always)]
fn consider(best: &mut Best, n: f32, sd: f32, (sl, sl2, sdl): (f32, f32, f32)) {
    let det = n * sl2 - sl * sl;
    let a = n * sdl - sd * sl;
    let a2 = a * a;
    if det > 0.0 && a > 0.0 && a2 * best.det > best.a2 * det {
        *best = Best { a2, a, det, sl };
    }
}

/// (Σl, Σl², Σd·l) in order, for codes l = pmin(pmax(nearest((x − off)·is), 0), qmax) and
/// d = x − min. Σl and Σl² are sums of integers below 2^24 (at most 256 codes of at most 255),
/// so exact in f32.
#[inline(always)]
fn code_sums(x: &[f32], min: f32, off: f32, is: f32, qmax: f32) -> (f32, f32, f32) {
    let (mut sl, mut sl2, mut sdl) = (0f32, 0f32, 0f32);
    for &v in x {
        let l = pmin(pmax(((v - off) * is).round_ties_even(), 0.0), qmax);
        sl += l;
        sl2 += l * l;
        sdl += (v - min) * l;
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

/// Range search for one group of at most 256 finite values (see [`SEARCH_GRID`]). Every sum is
/// sequential in f32, so a SIMD twin can run four groups at once, one per lane. A candidate
/// whose offset or inverse scale is not finite (a constant group, a range beyond f32) gets
/// inverse scale 0: all codes 0, a zero determinant, never chosen.
pub fn search(x: &[f32], qmax: f32) -> SearchFit {
    let (min, max) = min_max(x);
    let mut sd = 0f32;
    for &v in x {
        sd += v - min;
    }
    let n = x.len() as f32;
    let range = max - min;
    let mut best = Best::NONE;
    for t in SEARCH_GRID {
        let is = finite_or_zero((qmax + t) / range);
        consider(&mut best, n, sd, code_sums(x, min, min, is, qmax));
    }
    for _ in 0..lloyd_steps(qmax) {
        let (scale, offset) = best.fit(n, sd, min);
        let (off, is) = (offset, 1.0 / scale);
        let ok = off.is_finite() && is.is_finite();
        let (off, is) = if ok { (off, is) } else { (0.0, 0.0) };
        consider(&mut best, n, sd, code_sums(x, min, off, is, qmax));
    }
    SearchFit { min, max, fit: best.found().then(|| best.fit(n, sd, min)) }
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

/// Σ(ŵ − x)² over `x` for the stored params `p`, with codes as [`quantize_codes`] computes
/// them, summed in element order in one f32 accumulator (so a SIMD twin can run four groups at
/// once, one per lane). With `codes`, the codes are written there too.
pub fn sequential_error(x: &[f32], p: HalfParams, qmax: f32, mut codes: Option<&mut [u8]>) -> f32 {
    let inv = inverse(p.scale);
    let mut acc = 0f32;
    for (i, &v) in x.iter().enumerate() {
        let q = code_of(v, inv, p.min, qmax);
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
    let found = search(x, qmax);
    let base = HalfParams::round((found.max - found.min) / qmax, found.min);
    let cand = found.fit.map(|(s, m)| HalfParams::round(s, m));
    Searched {
        min: found.min,
        max: found.max,
        base,
        fit: found.fit,
        cand,
        base_err: sequential_error(x, base, qmax, None),
        cand_err: cand.map_or(0.0, |c| sequential_error(x, c, qmax, Some(codes))),
    }
}

/// Signature of [`search_exact4`].
pub type SearchExact4Fn = fn([&[f32]; 4], f32, [&mut [u8]; 4]) -> [Searched; 4];

/// [`search_exact`] on four groups (the SIMD twin's unit of work), codes to `codes[i]`.
pub fn search_exact4(xs: [&[f32]; 4], qmax: f32, codes: [&mut [u8]; 4]) -> [Searched; 4] {
    let mut codes = codes.into_iter();
    xs.map(|x| search_exact(x, qmax, codes.next().expect("four code buffers")))
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
