//! ggml's K-quants: super-blocks of 256 values whose sub-block scales (and minimums) are
//! themselves quantized under one f16 super-scale — the two-level params that buy ~1.5 dB over a
//! plain f16 scale per group at the same bits. Layouts byte for byte as ggml / gguf-py:
//!
//! * Q4_K (144 B): f16 d, f16 dmin, 12 B of 6-bit scales and mins for 8 sub-blocks of 32,
//!   128 B of nibbles. x = (d·sc)·q − (dmin·m).
//! * Q5_K (176 B): as Q4_K, plus 32 B of fifth bits before the nibbles.
//! * Q6_K (210 B): 128 B low nibbles, 64 B high 2-bit pairs, 16 × i8 scales for sub-blocks of 16,
//!   f16 d. x = (d·sc)·(q − 32).
//! * Q3_K (110 B): 32 B high bits, 64 B low bit pairs, 16 × 6-bit signed scales, f16 d.
//!   x = (d·sc)·(q − 4).
//! * Q2_K (84 B): 16 × (4-bit scale, 4-bit min), 64 B bit pairs, f16 d, f16 dmin.
//!   x = (d·sc)·q − (dmin·m).
//!
//! Each sub-block's own scale (and minimum) is searched as the 32-value types' are (legacy.rs),
//! then quantized under the super-scale; the codes are chosen last, against the sub-block scales
//! as the decoder will compute them.

use half::f16;

use super::GgmlType;

pub const QK_K: usize = 256;
pub const Q4_K_BYTES: usize = 2 + 2 + 12 + 128;
pub const Q5_K_BYTES: usize = 2 + 2 + 12 + 32 + 128;
pub const Q6_K_BYTES: usize = 128 + 64 + 16 + 2;
pub const Q3_K_BYTES: usize = 32 + 64 + 12 + 2;
pub const Q2_K_BYTES: usize = 16 + 64 + 2 + 2;

fn f16_finite(x: f32) -> f16 {
    f16::from_f32(x.clamp(-65504.0, 65504.0))
}

use super::search::{self, reciprocal, Block};
use crate::kernels::{self, scalar::clamp_round};

/// Quantize non-negative sub-block params under a super-scale: codes 0..=max_code.
fn super_quantize(params: &[f32], max_code: f32) -> (f16, Vec<u8>) {
    let top = params.iter().fold(0f32, |m, &v| m.max(v));
    let d = f16_finite(top / max_code);
    let df = d.to_f32();
    let inv = reciprocal(df);
    let codes = params.iter().map(|&p| if df > 0.0 { clamp_round(p * inv, 0.0, max_code) as u8 } else { 0 }).collect();
    (d, codes)
}

/// The 12-byte packing of eight 6-bit scales and eight 6-bit mins (gguf-py's `get_scale_min`).
fn pack_scale_min(sc: &[u8], m: &[u8], out: &mut [u8]) {
    for j in 0..4 {
        out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        out[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        out[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
}

fn unpack_scale_min(b: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = b[j] & 63;
        m[j] = b[j + 4] & 63;
        sc[j + 4] = (b[j + 8] & 15) | ((b[j] >> 2) & 0x30);
        m[j + 4] = (b[j + 8] >> 4) | ((b[j + 4] >> 2) & 0x30);
    }
    (sc, m)
}

/// The two-level params of an affine super-block (Q2_K, Q4_K, Q5_K): per sub-block x = dl·q − ml
/// with dl = d·sc, ml = dmin·m, and the codes `q` (0..=levels) chosen against them.
struct AffineParams {
    d: f16,
    dmin: f16,
    sc: [u8; 16],
    m: [u8; 16],
}

/// Search each `sub`-value sub-block's (scale, −minimum), quantize both under f16 super-scales to
/// 0..=max_code, move each sub-block's pair to the neighbouring codes whose decode is closest (the
/// rounded pair is not always the best stored one), and choose the codes last.
fn affine_superblock(b: Block, sub: usize, levels: f32, max_code: f32, q: &mut [u8; QK_K]) -> AffineParams {
    let x = b.x;
    let n = QK_K / sub;
    let (mut scales, mut offsets) = ([0f32; 16], [0f32; 16]);
    for j in 0..n {
        let (d, m) = search::affine_params(b.sub(sub * j, sub), levels, true, |v| v);
        (scales[j], offsets[j]) = (d, -m);
    }
    let (d, codes) = super_quantize(&scales[..n], max_code);
    let (dmin, min_codes) = super_quantize(&offsets[..n], max_code);
    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    let top = max_code as u8;
    let (mut sc, mut m) = ([0u8; 16], [0u8; 16]);
    for j in 0..n {
        let xs = &x[sub * j..sub * (j + 1)];
        let bs = b.sub(sub * j, sub);
        let error = |s: u8, mm: u8| {
            let dl = df * s as f32;
            bs.code_sse(dl, -(dminf * mm as f32), reciprocal(dl), 0.0, levels)
        };
        let mut best = (error(codes[j], min_codes[j]), codes[j], min_codes[j]);
        for s in codes[j].saturating_sub(1)..=(codes[j] + 1).min(top) {
            for mm in min_codes[j].saturating_sub(1)..=(min_codes[j] + 1).min(top) {
                if (s, mm) == (codes[j], min_codes[j]) {
                    continue; // the starting point, already measured
                }
                let e = error(s, mm);
                if e < best.0 {
                    best = (e, s, mm);
                }
            }
        }
        (sc[j], m[j]) = (best.1, best.2);
        let dl = df * sc[j] as f32;
        let ml = dminf * m[j] as f32;
        // The kernel's codes are rne(clamp((x + ml)/dl, 0, levels)) — its 1/dl is the search's
        // `reciprocal` for every dl an f16 super-scale times a 6-bit code can make.
        (kernels::active().quantize_codes)(xs, dl, -ml, levels, &mut q[sub * j..sub * (j + 1)]);
    }
    AffineParams { d, dmin, sc, m }
}

/// The params of a symmetric super-block (Q3_K, Q6_K): per sub-block x = (d·sc)·c with signed
/// codes c ∈ −nmax..nmax−1 and signed sub-block scales sc ∈ −smax..smax−1. The codes are returned
/// offset by nmax (0..2·nmax), as both formats store them.
fn symmetric_superblock(b: Block, sub: usize, nmax: f32, smax: f32, q: &mut [u8; QK_K]) -> (f16, [i8; 16]) {
    let x = b.x;
    let n = QK_K / sub;
    let mut scales = [0f32; 16];
    for (j, s) in scales[..n].iter_mut().enumerate() {
        *s = search::symmetric_scale(b.sub(sub * j, sub), nmax, |v| v);
    }
    // The extreme sub-block scale maps to the most negative code, as the values' extreme does.
    let max = search::signed_max(&scales[..n]);
    let d = f16_finite(max / -smax);
    let df = d.to_f32();
    let inv_d = reciprocal(df);
    let (lo, hi) = (-smax as i8, (smax - 1.0) as i8);
    let mut sc = [0i8; 16];
    for j in 0..n {
        let xs = &x[sub * j..sub * (j + 1)];
        let bs = b.sub(sub * j, sub);
        let rounded = clamp_round(scales[j] * inv_d, -smax, smax - 1.0) as i8;
        let error = |s: i8| {
            let dl = df * s as f32;
            bs.code_sse(dl, 0.0, reciprocal(dl), -nmax, nmax - 1.0)
        };
        // The rounded scale and its neighbours, the closest decode kept.
        let mut best = (error(rounded), rounded);
        for s in [rounded.saturating_sub(1).max(lo), rounded.saturating_add(1).min(hi)] {
            let e = error(s);
            if e < best.0 {
                best = (e, s);
            }
        }
        sc[j] = best.1;
        let dl = df * sc[j] as f32;
        (kernels::active().symmetric_codes)(
            xs,
            reciprocal(dl),
            -nmax,
            nmax - 1.0,
            nmax,
            &mut q[sub * j..sub * (j + 1)],
        );
    }
    (d, sc)
}

/// Q4_K (bits 4) and Q5_K (bits 5).
fn quantize_q45k(b: Block, bits: u32, out: &mut [u8]) {
    let mut q = [0u8; QK_K];
    let p = affine_superblock(b, 32, ((1 << bits) - 1) as f32, 63.0, &mut q);
    out[..2].copy_from_slice(&p.d.to_le_bytes());
    out[2..4].copy_from_slice(&p.dmin.to_le_bytes());
    pack_scale_min(&p.sc[..8], &p.m[..8], &mut out[4..16]);
    pack_q45k(&q, bits, out);
}

fn pack_q45k(q: &[u8], bits: u32, out: &mut [u8]) {
    let nibbles = if bits == 5 {
        let qh = &mut out[16..48];
        for (l, h) in qh.iter_mut().enumerate() {
            *h = (0..8).fold(0u8, |acc, j| acc | (((q[32 * j + l] >> 4) & 1) << j));
        }
        &mut out[48..176]
    } else {
        &mut out[16..144]
    };
    for c in 0..4 {
        for l in 0..32 {
            nibbles[32 * c + l] = (q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4);
        }
    }
}

/// Value `i` of a 2-bit field laid out as Q2_K/Q3_K's `qs`: 128-value halves, each 32 bytes whose
/// bit pairs 0..3 hold values 32·pair + byte.
fn two_bit_position(i: usize) -> (usize, u32) {
    let (half, k) = (i / 128, i % 128);
    (32 * half + k % 32, 2 * (k / 32) as u32)
}

/// Q2_K (84 B): 16 bytes of (4-bit scale | 4-bit min << 4) for 16 sub-blocks of 16, 64 B of
/// 2-bit codes, f16 d, f16 dmin. x = (d·sc)·q − (dmin·m).
fn quantize_q2k(b: Block, out: &mut [u8]) {
    let mut q = [0u8; QK_K];
    let p = affine_superblock(b, 16, 3.0, 15.0, &mut q);
    for ((o, &sc), &m) in out[..16].iter_mut().zip(&p.sc).zip(&p.m) {
        *o = sc | (m << 4);
    }
    pack_q2k(&q, out);
    out[80..82].copy_from_slice(&p.d.to_le_bytes());
    out[82..84].copy_from_slice(&p.dmin.to_le_bytes());
}

fn pack_q2k(q: &[u8], out: &mut [u8]) {
    let qs = &mut out[16..80];
    qs.fill(0);
    for (i, &v) in q.iter().enumerate() {
        let (byte, shift) = two_bit_position(i);
        qs[byte] |= v << shift;
    }
}

fn dequantize_q2k(b: &[u8], out: &mut [f32]) {
    let d = f16::from_le_bytes([b[80], b[81]]).to_f32();
    let dmin = f16::from_le_bytes([b[82], b[83]]).to_f32();
    for (i, o) in out.iter_mut().enumerate().take(QK_K) {
        let s = b[i / 16];
        let (byte, shift) = two_bit_position(i);
        let q = (b[16 + byte] >> shift) & 3;
        *o = (d * (s & 15) as f32) * q as f32 - dmin * (s >> 4) as f32;
    }
}

/// Q3_K (110 B): 32 B of high bits (value i's is bit ⌊i/32⌋ of byte i mod 32), 64 B of low 2-bit
/// codes, 12 B of sixteen 6-bit scales (stored + 32), f16 d. x = (d·(sc − 32))·(q − 4),
/// where the high bit set means q ≥ 4.
fn quantize_q3k(b: Block, out: &mut [u8]) {
    let mut q = [0u8; QK_K];
    let (d, sc) = symmetric_superblock(b, 16, 4.0, 32.0, &mut q);
    pack_q3k(&q, out);
    let scales = &mut out[96..108];
    scales.fill(0);
    for (j, &s) in sc.iter().enumerate() {
        let l = (s as i32 + 32) as u8;
        scales[j % 8] |= (l & 15) << (4 * (j / 8));
        scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    out[108..110].copy_from_slice(&d.to_le_bytes());
}

fn pack_q3k(q: &[u8], out: &mut [u8]) {
    let (hmask, rest) = out.split_at_mut(32);
    let qs = &mut rest[..64];
    hmask.fill(0);
    qs.fill(0);
    for (i, &v) in q.iter().enumerate() {
        let (byte, shift) = two_bit_position(i);
        qs[byte] |= (v & 3) << shift;
        hmask[i % 32] |= ((v >> 2) & 1) << (i / 32);
    }
}

/// Sub-block j's 6-bit scale code (stored + 32).
fn q3k_scale(scales: &[u8], j: usize) -> u8 {
    ((scales[j % 8] >> (4 * (j / 8))) & 15) | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)
}

fn dequantize_q3k(b: &[u8], out: &mut [f32]) {
    let (hmask, rest) = b.split_at(32);
    let (qs, rest) = rest.split_at(64);
    let d = f16::from_le_bytes([rest[12], rest[13]]).to_f32();
    for (i, o) in out.iter_mut().enumerate().take(QK_K) {
        let dl = d * (q3k_scale(rest, i / 16) as i32 - 32) as f32;
        let (byte, shift) = two_bit_position(i);
        let low = ((qs[byte] >> shift) & 3) as i32;
        let high = if (hmask[i % 32] >> (i / 32)) & 1 == 1 { 0 } else { 4 };
        *o = dl * (low - high) as f32;
    }
}

fn dequantize_q45k(b: &[u8], bits: u32, out: &mut [f32]) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    let dmin = f16::from_le_bytes([b[2], b[3]]).to_f32();
    let (sc, m) = unpack_scale_min(&b[4..16]);
    let (qh, nibbles) = if bits == 5 { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
    for j in 0..8 {
        let dl = d * sc[j] as f32;
        let ml = dmin * m[j] as f32;
        let (c, high) = (j / 2, j % 2 == 1);
        for l in 0..32 {
            let byte = nibbles[32 * c + l];
            let mut q = if high { byte >> 4 } else { byte & 15 };
            if let Some(qh) = qh {
                q |= ((qh[l] >> j) & 1) << 4;
            }
            out[32 * j + l] = dl * q as f32 - ml;
        }
    }
}

fn quantize_q6k(b: Block, out: &mut [u8]) {
    let mut q = [0u8; QK_K];
    let (d, sc) = symmetric_superblock(b, 16, 32.0, 128.0, &mut q);
    pack_q6k(&q, out);
    for (o, &c) in out[192..208].iter_mut().zip(&sc) {
        *o = c as u8;
    }
    out[208..210].copy_from_slice(&d.to_le_bytes());
}

fn pack_q6k(q: &[u8], out: &mut [u8]) {
    let (ql, rest) = out.split_at_mut(128);
    let qh = &mut rest[..64];
    for c in 0..2 {
        for l in 0..64 {
            ql[64 * c + l] = (q[128 * c + l] & 15) | ((q[128 * c + 64 + l] & 15) << 4);
        }
        for l in 0..32 {
            qh[32 * c + l] = (q[128 * c + l] >> 4)
                | ((q[128 * c + 32 + l] >> 4) << 2)
                | ((q[128 * c + 64 + l] >> 4) << 4)
                | ((q[128 * c + 96 + l] >> 4) << 6);
        }
    }
}

fn dequantize_q6k(b: &[u8], out: &mut [f32]) {
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let d = f16::from_le_bytes([rest[16], rest[17]]).to_f32();
    for (i, o) in out.iter_mut().enumerate().take(QK_K) {
        let (c, k) = (i / 128, i % 128);
        let low = if k < 64 { ql[64 * c + k] & 15 } else { ql[64 * c + k - 64] >> 4 };
        let high = (qh[32 * c + k % 32] >> (2 * (k / 32))) & 3;
        let q = ((low | (high << 4)) as i32 - 32) as f32;
        let dl = d * (rest[i / 16] as i8) as f32;
        *o = dl * q;
    }
}

/// Encode one super-block; `w`, when given, weights each value's error in the searches.
pub fn quantize_block(ty: GgmlType, x: &[f32; QK_K], w: Option<&[f32]>, out: &mut [u8]) {
    let b = Block::new(x, w);
    match ty {
        GgmlType::Q4_K => quantize_q45k(b, 4, out),
        GgmlType::Q5_K => quantize_q45k(b, 5, out),
        GgmlType::Q6_K => quantize_q6k(b, out),
        GgmlType::Q3_K => quantize_q3k(b, out),
        GgmlType::Q2_K => quantize_q2k(b, out),
        _ => unreachable!("only the 256-value K-quants"),
    }
}

pub fn dequantize_block(ty: GgmlType, b: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::Q4_K => dequantize_q45k(b, 4, out),
        GgmlType::Q5_K => dequantize_q45k(b, 5, out),
        GgmlType::Q6_K => dequantize_q6k(b, out),
        GgmlType::Q3_K => dequantize_q3k(b, out),
        GgmlType::Q2_K => dequantize_q2k(b, out),
        _ => unreachable!("only the 256-value K-quants"),
    }
}

/// Write the stored codes `q` (one per value, as [`super::Grid`] reads them) into a super-block,
/// its params left as they are.
pub fn set_codes(ty: GgmlType, q: &[u8], out: &mut [u8]) {
    match ty {
        GgmlType::Q4_K => pack_q45k(q, 4, out),
        GgmlType::Q5_K => pack_q45k(q, 5, out),
        GgmlType::Q6_K => pack_q6k(q, out),
        GgmlType::Q3_K => pack_q3k(q, out),
        GgmlType::Q2_K => pack_q2k(q, out),
        _ => unreachable!("only the 256-value K-quants"),
    }
}

/// How a super-block's codes decode: per sub-block, the step and offset the readers compute.
pub fn grid(ty: GgmlType, b: &[u8]) -> super::Grid {
    let h = |i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    let mut g = super::Grid { sub: 16, step: [0.0; 16], offset: [0.0; 16] };
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (d, dmin) = (h(0), h(2));
            let (sc, m) = unpack_scale_min(&b[4..16]);
            g.sub = 32;
            for j in 0..8 {
                g.step[j] = d * sc[j] as f32;
                g.offset[j] = -(dmin * m[j] as f32);
            }
        }
        GgmlType::Q6_K => {
            let d = h(208);
            for j in 0..16 {
                g.step[j] = d * (b[192 + j] as i8) as f32;
            }
        }
        GgmlType::Q3_K => {
            let d = h(108);
            for j in 0..16 {
                g.step[j] = d * (q3k_scale(&b[96..108], j) as i32 - 32) as f32;
            }
        }
        GgmlType::Q2_K => {
            let (d, dmin) = (h(80), h(82));
            for (j, &s) in b[..16].iter().enumerate() {
                g.step[j] = d * (s & 15) as f32;
                g.offset[j] = -(dmin * (s >> 4) as f32);
            }
        }
        _ => unreachable!("only the 256-value K-quants"),
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips() {
        let sc = [0u8, 1, 17, 32, 63, 48, 5, 62];
        let m = [63u8, 0, 33, 2, 15, 16, 47, 31];
        let mut b = [0u8; 12];
        pack_scale_min(&sc, &m, &mut b);
        assert_eq!(unpack_scale_min(&b), (sc, m));
    }
}
