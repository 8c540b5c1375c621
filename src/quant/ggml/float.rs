//! The float types: F32 (a copy), F16 and BF16 (rounded to nearest, ties to even).

use half::{bf16, f16};

pub fn encode_f32(values: &[f32], out: &mut Vec<u8>) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

pub fn decode_f32(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Finite values beyond ±65504 are stored as ±65504 (the report's error shows the clipping).
pub fn encode_f16(values: &[f32], out: &mut Vec<u8>) {
    for v in values {
        out.extend_from_slice(&f16::from_f32(v.clamp(-65504.0, 65504.0)).to_le_bytes());
    }
}

pub fn decode_f16(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// Finite values beyond bf16's largest finite value (which round to infinity) are stored as that
/// value: a weight file never holds an infinity its source did not. F16 clips the same way.
pub fn encode_bf16(values: &[f32], out: &mut Vec<u8>) {
    for v in values {
        let mut b = bf16::from_f32(*v);
        if b.is_infinite() && v.is_finite() {
            b = if *v > 0.0 { bf16::MAX } else { bf16::MIN };
        }
        out.extend_from_slice(&b.to_le_bytes());
    }
}

pub fn decode_bf16(bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

/// Little-endian signed integers of `width` bytes, as f32 (rounded to nearest for |v| > 2^24).
pub fn decode_integers(width: usize, bytes: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(width)) {
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(c);
        let shift = 64 - 8 * width as u32;
        *o = ((i64::from_le_bytes(le) << shift) >> shift) as f32;
    }
}
