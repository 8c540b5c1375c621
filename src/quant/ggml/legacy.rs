//! ggml's first block types, 32 values each: Q8_0 (f16 d, 32 × i8: x = d·q), Q4_0 / Q5_0
//! (f16 d, codes q − 8 / q − 16: x = d·(q − o)) and Q4_1 / Q5_1 (f16 d, f16 m: x = d·q + m).
//! 4-bit codes are packed two per byte, value j in the low nibble of byte j and value j + 16 in
//! its high nibble; Q5's fifth bits are a little-endian u32, bit j for value j.

use half::f16;

use super::search::{self, reciprocal, Block};
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

/// `x` rounded to the nearest f16 (ties to even), as f32: the scale the decoder will read. Bit
/// arithmetic in f16's normal range (where this is exact), `half` elsewhere — the searches try
/// ~20 scales per block and a software f16 conversion per trial dominates on wasm.
fn f16_round(x: f32) -> f32 {
    let a = x.abs();
    if (6.103_515_6e-5..65504.0).contains(&a) {
        let b = x.to_bits();
        f32::from_bits((b + 0x0FFF + ((b >> 13) & 1)) & !0x1FFF)
    } else {
        f16_finite(x).to_f32()
    }
}

/// `x` as the f16 the format stores (ties to even, beyond ±65504 clamped): bit arithmetic in
/// f16's normal range (as [`f16_round`]), `half` elsewhere.
fn f16_store(x: f32) -> f16 {
    if (6.103_515_6e-5..65504.0).contains(&x.abs()) {
        let r = {
            let b = x.to_bits();
            (b + 0x0FFF + ((b >> 13) & 1)) & !0x1FFF
        };
        let sign = ((r >> 16) & 0x8000) as u16;
        let exponent = (((r >> 23) & 0xFF) as i32 - 127 + 15) as u16;
        f16::from_bits(sign | (exponent << 10) | ((r >> 13) & 0x3FF) as u16)
    } else {
        f16_finite(x)
    }
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

/// Codes of a symmetric block against the stored scale `d` (offset by nmax, as stored).
fn symmetric_codes(x: &[f32; 32], d: f32, nmax: f32) -> [u8; 32] {
    let mut q = [0u8; 32];
    (crate::kernels::active().symmetric_codes)(x, reciprocal(d), -nmax, nmax - 1.0, nmax, &mut q);
    q
}

/// Symmetric types (x = d·(q − nmax)): the search.rs scale, as stored (f16).
fn symmetric(x: &[f32; 32], w: Option<&[f32]>, nmax: f32) -> (f16, [u8; 32]) {
    let d = search::symmetric_scale(Block::new(x, w), nmax, f16_round);
    (f16_store(d), symmetric_codes(x, d, nmax))
}

/// Codes of an affine block against the stored scale `d` and minimum `m`.
fn affine_codes(x: &[f32; 32], d: f32, m: f32, levels: f32) -> [u8; 32] {
    // The kernel's 1/d is `reciprocal(d)` for every finite f16 d.
    let mut q = [0u8; 32];
    (crate::kernels::active().quantize_codes)(x, d, m, levels, &mut q);
    q
}

/// Affine types (x = d·q + m): the search.rs pair, as stored (f16).
fn affine(x: &[f32; 32], w: Option<&[f32]>, levels: f32) -> (f16, f16, [u8; 32]) {
    let (d, m) = search::affine_params(Block::new(x, w), levels, false, f16_round);
    (f16_store(d), f16_store(m), affine_codes(x, d, m, levels))
}

/// Encode one block; `w`, when given, weights each value's error in the searches (importance).
pub fn quantize_block(ty: GgmlType, x: &[f32; 32], w: Option<&[f32]>, out: &mut [u8]) {
    match ty {
        GgmlType::Q8_0 => {
            let (lo, hi) = (crate::kernels::active().min_max)(x);
            let amax = if lo.abs() > hi.abs() { lo.abs() } else { hi.abs() };
            let inv = reciprocal(f16_round(amax / 127.0));
            out[..2].copy_from_slice(&f16_store(amax / 127.0).to_le_bytes());
            (crate::kernels::active().symmetric_codes)(x, inv, -127.0, 127.0, 0.0, &mut out[2..34]);
        }
        GgmlType::Q4_0 => {
            let (d, q) = symmetric(x, w, 8.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            pack_nibbles(&q, &mut out[2..]);
        }
        GgmlType::Q5_0 => {
            let (d, q) = symmetric(x, w, 16.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            out[2..6].copy_from_slice(&fifth_bits(&q));
            pack_nibbles(&q, &mut out[6..]);
        }
        GgmlType::Q4_1 => {
            let (d, m, q) = affine(x, w, 15.0);
            out[..2].copy_from_slice(&d.to_le_bytes());
            out[2..4].copy_from_slice(&m.to_le_bytes());
            pack_nibbles(&q, &mut out[4..]);
        }
        GgmlType::Q5_1 => {
            let (d, m, q) = affine(x, w, 31.0);
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

/// Write the stored codes `q` (one per value, as [`super::Grid`] reads them) into a block, its
/// params left as they are.
pub fn set_codes(ty: GgmlType, q: &[u8], out: &mut [u8]) {
    let q: &[u8; 32] = q.try_into().expect("32 codes");
    match ty {
        GgmlType::Q8_0 => out[2..34].copy_from_slice(q),
        GgmlType::Q4_0 => pack_nibbles(q, &mut out[2..]),
        GgmlType::Q5_0 => {
            out[2..6].copy_from_slice(&fifth_bits(q));
            pack_nibbles(q, &mut out[6..]);
        }
        GgmlType::Q4_1 => pack_nibbles(q, &mut out[4..]),
        GgmlType::Q5_1 => {
            out[4..8].copy_from_slice(&fifth_bits(q));
            pack_nibbles(q, &mut out[8..]);
        }
        _ => unreachable!("only the 32-value block types have blocks"),
    }
}

/// How a block's codes decode: one step (and offset) for the block.
pub fn grid(ty: GgmlType, b: &[u8]) -> super::Grid {
    let mut g = super::Grid { sub: 32, step: [0.0; 16], offset: [0.0; 16] };
    g.step[0] = f16::from_le_bytes([b[0], b[1]]).to_f32();
    if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
        g.offset[0] = f16::from_le_bytes([b[2], b[3]]).to_f32();
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_is_halfs_rounding() {
        let mut s = 0x9e3779b9u32;
        for i in 0..200_000u32 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s) * if i % 2 == 0 { 1.0 } else { 1e-30 };
            if !x.is_finite() {
                continue;
            }
            assert_eq!(f16_round(x).to_bits(), f16_finite(x).to_f32().to_bits(), "{x:e}");
            assert_eq!(f16_store(x).to_bits(), f16_finite(x).to_bits(), "{x:e}");
        }
        for x in [65503.0f32, 65504.0, 65519.0, 6.1035156e-5, 6.1e-5, -2049.0, 2049.0, 0.0, -0.0] {
            assert_eq!(f16_round(x).to_bits(), f16_finite(x).to_f32().to_bits(), "{x:e}");
            assert_eq!(f16_store(x).to_bits(), f16_finite(x).to_bits(), "{x:e}");
        }
    }
}
