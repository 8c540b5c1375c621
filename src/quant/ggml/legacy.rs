//! ggml's first block types, 32 values each: Q8_0 (f16 d, 32 × i8: x = d·q), Q4_0 / Q5_0
//! (f16 d, codes q − 8 / q − 16: x = d·(q − o)) and Q4_1 / Q5_1 (f16 d, f16 m: x = d·q + m).
//! 4-bit codes are packed two per byte, value j in the low nibble of byte j and value j + 16 in
//! its high nibble; Q5's fifth bits are a little-endian u32, bit j for value j.

use half::f16;

use super::GgmlType;

pub const Q8_0_BYTES: usize = 2 + 32;
pub const Q4_0_BYTES: usize = 2 + 16;
pub const Q4_1_BYTES: usize = 2 + 2 + 16;
pub const Q5_0_BYTES: usize = 2 + 4 + 16;
pub const Q5_1_BYTES: usize = 2 + 2 + 4 + 16;

/// `x` as f16, finite: a scale or minimum beyond ±65504 is stored as ±65504 (the block is then
/// clipped, which the per-tensor error shows).
fn f16_finite(x: f32) -> f16 {
    f16::from_f32(x.clamp(-65504.0, 65504.0))
}

/// The code for `x` against the stored scale `d` (as f32): round(x / d), ties to even, clamped to
/// `lo..=hi`. A zero scale gives code 0.
fn code(x: f32, d: f32, lo: f32, hi: f32) -> i32 {
    if d == 0.0 {
        return 0;
    }
    (x / d).round_ties_even().clamp(lo, hi) as i32
}

/// The value of largest magnitude, sign kept (the first one on a tie, as ggml).
fn signed_max(x: &[f32; 32]) -> f32 {
    let mut best = 0f32;
    for &v in x {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

fn min_max(x: &[f32; 32]) -> (f32, f32) {
    x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

fn pack_nibbles(q: &[u8; 32], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    }
}

fn fifth_bits(q: &[u8; 32]) -> [u8; 4] {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= u32::from((v >> 4) & 1) << j;
    }
    h.to_le_bytes()
}

/// The 32 codes (0..) of a packed 4-bit block with optional fifth bits.
fn unpack(nibbles: &[u8], fifth: Option<&[u8]>) -> [u8; 32] {
    let h = fifth.map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (nibbles[j] & 0x0f) | ((((h >> j) & 1) as u8) << 4);
        q[j + 16] = (nibbles[j] >> 4) | ((((h >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// Squared error of a block decoded with scale `d` and codes `q` (offset `offset`, min `m`), in
/// the decoder's f32 arithmetic, summed in f64.
fn block_sse(x: &[f32; 32], q: &[u8; 32], d: f32, offset: i32, m: Option<f32>) -> f64 {
    let mut e = 0f64;
    for (&v, &c) in x.iter().zip(q) {
        let back = match m {
            Some(m) => d * c as f32 + m,
            None => d * (c as i32 - offset) as f32,
        };
        e += f64::from(v - back).powi(2);
    }
    e
}

/// Codes of a symmetric block against the stored scale `d`.
fn symmetric_codes(x: &[f32; 32], d: f32, nmax: f32) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (code(v, d, -nmax, nmax - 1.0) + nmax as i32) as u8;
    }
    q
}

/// Symmetric types (x = d·(q − nmax)). The reference choice maps the extreme value to the most
/// negative code, −nmax (spending the asymmetric range on the extreme's side); we also try the
/// divisors nmax ± 0.1·k, refit the scale by least squares to each one's codes, and keep the
/// scale (as stored, f16) whose codes decode closest to the block.
fn symmetric(x: &[f32; 32], nmax: f32) -> (f16, [u8; 32]) {
    let max = signed_max(x);
    let offset = nmax as i32;
    let evaluate = |d: f16| {
        let q = symmetric_codes(x, d.to_f32(), nmax);
        (block_sse(x, &q, d.to_f32(), offset, None), d, q)
    };
    let mut best = evaluate(f16_finite(max / -nmax));
    if max == 0.0 {
        return (best.1, best.2);
    }
    for k in -9..=9 {
        let trial = max / -(nmax + 0.1 * k as f32);
        let (mut sxq, mut sqq) = (0f64, 0f64);
        for &v in x {
            let c = code(v, trial, -nmax, nmax - 1.0) as f64;
            sxq += f64::from(v) * c;
            sqq += c * c;
        }
        if sqq == 0.0 {
            continue;
        }
        let candidate = evaluate(f16_finite((sxq / sqq) as f32));
        if candidate.0 < best.0 {
            best = candidate;
        }
    }
    (best.1, best.2)
}

/// Codes of an affine block against the stored scale `d` and minimum `m`.
fn affine_codes(x: &[f32; 32], d: f32, m: f32, levels: f32) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = code(v - m, d, 0.0, levels) as u8;
    }
    q
}

/// Affine types (x = d·q + m). The reference choice is m = min, d = (max − min)/levels; we also
/// try the ranges (max − min)/(levels + 0.1·k), refit d and m by least squares to each one's
/// codes, and keep the pair (as stored, f16) whose codes decode closest to the block.
fn affine(x: &[f32; 32], levels: f32) -> (f16, f16, [u8; 32]) {
    let (lo, hi) = min_max(x);
    let evaluate = |d: f16, m: f16| {
        let q = affine_codes(x, d.to_f32(), m.to_f32(), levels);
        (block_sse(x, &q, d.to_f32(), 0, Some(m.to_f32())), d, m, q)
    };
    let mut best = evaluate(f16_finite((hi - lo) / levels), f16_finite(lo));
    if hi == lo {
        return (best.1, best.2, best.3);
    }
    for k in -5..=10 {
        let trial = (hi - lo) / (levels + 0.1 * k as f32);
        let (mut sc, mut scc, mut sx, mut sxc) = (0f64, 0f64, 0f64, 0f64);
        for &v in x {
            let c = code(v - lo, trial, 0.0, levels) as f64;
            sc += c;
            scc += c * c;
            sx += f64::from(v);
            sxc += f64::from(v) * c;
        }
        let det = 32.0 * scc - sc * sc;
        if det <= 0.0 {
            continue;
        }
        let d = (32.0 * sxc - sc * sx) / det;
        let m = (scc * sx - sc * sxc) / det;
        let (d, m) = (f16_finite(d as f32), f16_finite(m as f32));
        if d.to_f32() <= 0.0 {
            continue;
        }
        let candidate = evaluate(d, m);
        if candidate.0 < best.0 {
            best = candidate;
        }
    }
    (best.1, best.2, best.3)
}

pub fn quantize_block(ty: GgmlType, x: &[f32; 32], out: &mut [u8]) {
    match ty {
        GgmlType::Q8_0 => {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = f16_finite(amax / 127.0);
            let df = d.to_f32();
            out[..2].copy_from_slice(&d.to_le_bytes());
            for (o, &v) in out[2..].iter_mut().zip(x) {
                *o = code(v, df, -127.0, 127.0) as i8 as u8;
            }
        }
        GgmlType::Q4_0 => {
            let (d, q) = symmetric(x, 8.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            pack_nibbles(&q, &mut out[2..]);
        }
        GgmlType::Q5_0 => {
            let (d, q) = symmetric(x, 16.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            out[2..6].copy_from_slice(&fifth_bits(&q));
            pack_nibbles(&q, &mut out[6..]);
        }
        GgmlType::Q4_1 => {
            let (d, m, q) = affine(x, 15.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            out[2..4].copy_from_slice(&m.to_le_bytes());
            pack_nibbles(&q, &mut out[4..]);
        }
        GgmlType::Q5_1 => {
            let (d, m, q) = affine(x, 31.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            out[2..4].copy_from_slice(&m.to_le_bytes());
            out[4..8].copy_from_slice(&fifth_bits(&q));
            pack_nibbles(&q, &mut out[8..]);
        }
        _ => unreachable!("only the 32-value block types have blocks"),
    }
}

/// The reference readers' arithmetic: one f32 multiply (and one f32 add for the affine types).
pub fn dequantize_block(ty: GgmlType, b: &[u8], out: &mut [f32; 32]) {
    let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
    match ty {
        GgmlType::Q8_0 => {
            for (o, &c) in out.iter_mut().zip(&b[2..34]) {
                *o = (c as i8) as f32 * d;
            }
        }
        GgmlType::Q4_0 | GgmlType::Q5_0 => {
            let (q, offset) = if ty == GgmlType::Q4_0 {
                (unpack(&b[2..18], None), 8)
            } else {
                (unpack(&b[6..22], Some(&b[2..6])), 16)
            };
            for (o, &c) in out.iter_mut().zip(&q) {
                *o = d * (c as i32 - offset) as f32;
            }
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            let m = f16::from_le_bytes([b[2], b[3]]).to_f32();
            let q = if ty == GgmlType::Q4_1 { unpack(&b[4..20], None) } else { unpack(&b[8..24], Some(&b[4..8])) };
            for (o, &c) in out.iter_mut().zip(&q) {
                *o = d * c as f32 + m;
            }
        }
        _ => unreachable!("only the 32-value block types have blocks"),
    }
}
