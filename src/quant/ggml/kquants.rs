//! ggml's K-quants: super-blocks of 256 values whose sub-block scales (and minimums) are
//! themselves quantized under one f16 super-scale — the two-level params that buy ~1.5 dB over a
//! plain f16 scale per group at the same bits. Layouts byte for byte as ggml / gguf-py:
//!
//! * Q4_K (144 B): f16 d, f16 dmin, 12 B of 6-bit scales and mins for 8 sub-blocks of 32,
//!   128 B of nibbles. x = (d·sc)·q − (dmin·m).
//! * Q5_K (176 B): as Q4_K, plus 32 B of fifth bits before the nibbles.
//! * Q6_K (210 B): 128 B low nibbles, 64 B high 2-bit pairs, 16 × i8 scales for sub-blocks of 16,
//!   f16 d. x = (d·sc)·(q − 32).
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

fn f16_finite(x: f32) -> f16 {
    f16::from_f32(x.clamp(-65504.0, 65504.0))
}

use super::legacy::rne_clamp;
use super::search::{self, reciprocal};

/// Quantize non-negative sub-block params under a super-scale: codes 0..=max_code.
fn super_quantize(params: &[f32], max_code: f32) -> (f16, Vec<u8>) {
    let top = params.iter().fold(0f32, |m, &v| m.max(v));
    let d = f16_finite(top / max_code);
    let df = d.to_f32();
    let inv = reciprocal(df);
    let codes = params.iter().map(|&p| if df > 0.0 { rne_clamp(p * inv, 0.0, max_code) as u8 } else { 0 }).collect();
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

/// Q4_K (bits 4) and Q5_K (bits 5).
fn quantize_q45k(x: &[f32; QK_K], bits: u32, out: &mut [u8]) {
    let levels = ((1 << bits) - 1) as f32;
    let mut scales = [0f32; 8];
    let mut offsets = [0f32; 8];
    for j in 0..8 {
        let (d, m) = search::affine_params(&x[32 * j..32 * j + 32], levels, true, |v| v);
        (scales[j], offsets[j]) = (d, -m);
    }
    let (d, mut sc) = super_quantize(&scales, 63.0);
    let (dmin, mut m) = super_quantize(&offsets, 63.0);
    let (df, dminf) = (d.to_f32(), dmin.to_f32());
    let mut q = [0u8; QK_K];
    for j in 0..8 {
        let sub = &x[32 * j..32 * j + 32];
        // The 6-bit params rounded to nearest are not always the best stored pair: try the
        // neighbours of each, with the codes each pair gives, and keep the closest decode.
        let error = |s: u8, mm: u8| {
            let dl = df * s as f32;
            search::code_sse(sub, dl, -(dminf * mm as f32), reciprocal(dl), 0.0, levels)
        };
        let mut best = (error(sc[j], m[j]), sc[j], m[j]);
        for s in sc[j].saturating_sub(1)..=(sc[j] + 1).min(63) {
            for mm in m[j].saturating_sub(1)..=(m[j] + 1).min(63) {
                let e = error(s, mm);
                if e < best.0 {
                    best = (e, s, mm);
                }
            }
        }
        (sc[j], m[j]) = (best.1, best.2);
        let dl = df * sc[j] as f32;
        let ml = dminf * m[j] as f32;
        let inv = reciprocal(dl);
        for (o, &v) in q[32 * j..32 * j + 32].iter_mut().zip(sub) {
            *o = rne_clamp((v - -ml) * inv, 0.0, levels) as u8;
        }
    }
    out[..2].copy_from_slice(&d.to_le_bytes());
    out[2..4].copy_from_slice(&dmin.to_le_bytes());
    pack_scale_min(&sc, &m, &mut out[4..16]);
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

fn quantize_q6k(x: &[f32; QK_K], out: &mut [u8]) {
    let mut scales = [0f32; 16];
    for (j, s) in scales.iter_mut().enumerate() {
        *s = search::symmetric_scale(&x[16 * j..16 * j + 16], 32.0, |v| v);
    }
    let max = search::signed_max(&scales);
    let d = f16_finite(max / -128.0);
    let df = d.to_f32();
    let mut sc = [0i8; 16];
    for (c, &s) in sc.iter_mut().zip(&scales) {
        *c = if df != 0.0 { rne_clamp(s * reciprocal(df), -128.0, 127.0) as i8 } else { 0 };
    }
    let mut q = [0u8; QK_K];
    for j in 0..16 {
        let sub = &x[16 * j..16 * j + 16];
        let error = |s: i8| {
            let dl = df * s as f32;
            search::code_sse(sub, dl, 0.0, reciprocal(dl), -32.0, 31.0)
        };
        // As for Q4_K: the rounded 8-bit scale and its neighbours, the closest decode kept.
        let mut best = (error(sc[j]), sc[j]);
        for s in [sc[j].saturating_sub(1), sc[j].saturating_add(1)] {
            let e = error(s);
            if e < best.0 {
                best = (e, s);
            }
        }
        sc[j] = best.1;
        let dl = df * sc[j] as f32;
        let inv = reciprocal(dl);
        for (o, &v) in q[16 * j..16 * j + 16].iter_mut().zip(sub) {
            *o = (rne_clamp((v - 0.0) * inv, -32.0, 31.0) as i32 + 32) as u8;
        }
    }
    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
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
    for (o, &c) in rest[..16].iter_mut().zip(&sc) {
        *o = c as u8;
    }
    rest[16..18].copy_from_slice(&d.to_le_bytes());
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

pub fn quantize_block(ty: GgmlType, x: &[f32; QK_K], out: &mut [u8]) {
    match ty {
        GgmlType::Q4_K => quantize_q45k(x, 4, out),
        GgmlType::Q5_K => quantize_q45k(x, 5, out),
        GgmlType::Q6_K => quantize_q6k(x, out),
        _ => unreachable!("only the 256-value K-quants"),
    }
}

pub fn dequantize_block(ty: GgmlType, b: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::Q4_K => dequantize_q45k(b, 4, out),
        GgmlType::Q5_K => dequantize_q45k(b, 5, out),
        GgmlType::Q6_K => dequantize_q6k(b, out),
        _ => unreachable!("only the 256-value K-quants"),
    }
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
