//! ggml's tensor types (the storage of GGUF files): block layouts byte for byte as ggml and
//! gguf-py define them, with our own quantizers. A tensor of a block type is a sequence of rows of
//! `ne[0]` values (the innermost dimension), each a whole number of blocks.
//!
//! Dequantization is part of the contract (docs/GGUF.md): the float operations are the ones the
//! reference readers perform, in the same order, so `gguf.quants.dequantize` reproduces ours bit
//! for bit. Quantization is ours: rounding is half-to-even, and every code is chosen against the
//! scale as stored (f16), not the f32 value before rounding.

mod float;
pub mod gptq;
mod kquants;
mod legacy;
pub(crate) mod search;

use crate::error::{AqError, Result};
use crate::kernels::scalar::clamp_round;

/// A ggml tensor type this library writes and reads. The discriminant is ggml's type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // ggml's own names: Q4_K, not Q4K
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    BF16 = 30,
}

impl GgmlType {
    /// The block and float types (what a float tensor can become).
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q6_K,
        GgmlType::Q5_K,
        GgmlType::Q4_K,
        GgmlType::Q5_1,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q4_0,
        GgmlType::Q3_K,
        GgmlType::Q2_K,
    ];

    pub fn id(self) -> u32 {
        self as u32
    }

    /// Integer types: copied from integer sources, never quantized.
    pub const INTEGERS: [GgmlType; 4] = [GgmlType::I8, GgmlType::I16, GgmlType::I32, GgmlType::I64];

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().chain(Self::INTEGERS).find(|t| t.id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q3_K => "Q3_K",
            GgmlType::Q2_K => "Q2_K",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Values per block (1 for the float types).
    pub fn block_values(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 => 1,
            GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => kquants::QK_K,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::I32 => 4,
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 2,
            GgmlType::I8 => 1,
            GgmlType::I64 => 8,
            GgmlType::Q8_0 => legacy::Q8_0_BYTES,
            GgmlType::Q5_1 => legacy::Q5_1_BYTES,
            GgmlType::Q5_0 => legacy::Q5_0_BYTES,
            GgmlType::Q4_1 => legacy::Q4_1_BYTES,
            GgmlType::Q4_0 => legacy::Q4_0_BYTES,
            GgmlType::Q4_K => kquants::Q4_K_BYTES,
            GgmlType::Q5_K => kquants::Q5_K_BYTES,
            GgmlType::Q6_K => kquants::Q6_K_BYTES,
            GgmlType::Q3_K => kquants::Q3_K_BYTES,
            GgmlType::Q2_K => kquants::Q2_K_BYTES,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_values() > 1
    }

    /// The block types, quantized.
    pub fn parse_block_type(name: &str) -> Option<Self> {
        Self::parse(name).filter(|t| t.is_quantized())
    }

    /// The width of a value's code, params not counted (Q4_K: 4): the `bits` of a Parquet row
    /// stored in this block type.
    pub fn code_bits(self) -> u8 {
        match self {
            GgmlType::Q2_K => 2,
            GgmlType::Q3_K => 3,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 4,
            GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 5,
            GgmlType::Q6_K => 6,
            GgmlType::Q8_0 | GgmlType::I8 => 8,
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 16,
            GgmlType::F32 | GgmlType::I32 => 32,
            GgmlType::I64 => 64,
        }
    }

    /// Stored bits per value, params included (Q4_0: 4.5).
    pub fn bits_per_value(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_values() as f64
    }

    /// Bytes of `count` values; `None` when `count` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, count: u64) -> Option<u64> {
        let per = self.block_values() as u64;
        count.is_multiple_of(per).then(|| (count / per).checked_mul(self.block_bytes() as u64)).flatten()
    }
}

/// How one block's stored codes decode, in the reference readers' arithmetic: value i is
/// `step[s]·(q − zero) + offset[s]` in f32, s = i / `sub`, q its stored code ([`Codes`]).
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub sub: usize,
    pub step: [f32; 16],
    pub offset: [f32; 16],
}

/// The codes a block type stores, `lo..=hi` (the byte is `q as u8`: Q8_0's is an i8), and the
/// code that decodes to the offset. Q8_0 keeps to ±127, as ggml does: runtimes' integer dot
/// products negate codes.
#[derive(Debug, Clone, Copy)]
pub struct Codes {
    pub lo: i32,
    pub hi: i32,
    pub zero: i32,
}

impl Codes {
    /// The code nearest `x` on a sub-block's grid (ties to even; a zero step gives `zero`) and
    /// the value it decodes to.
    #[inline]
    pub fn nearest(&self, x: f32, step: f32, offset: f32) -> (u8, f32) {
        let inv = search::reciprocal(step);
        let q = if inv == 0.0 {
            self.zero
        } else {
            clamp_round((x - offset) * inv, (self.lo - self.zero) as f32, (self.hi - self.zero) as f32) as i32
                + self.zero
        };
        (q as u8, step * (q - self.zero) as f32 + offset)
    }
}

impl GgmlType {
    /// The stored codes of a block type; `None` for the float and integer types.
    pub fn codes(self) -> Option<Codes> {
        let (lo, hi, zero) = match self {
            GgmlType::Q8_0 => (-127, 127, 0),
            GgmlType::Q4_0 => (0, 15, 8),
            GgmlType::Q5_0 => (0, 31, 16),
            GgmlType::Q4_1 | GgmlType::Q4_K => (0, 15, 0),
            GgmlType::Q5_1 | GgmlType::Q5_K => (0, 31, 0),
            GgmlType::Q6_K => (0, 63, 32),
            GgmlType::Q3_K => (0, 7, 4),
            GgmlType::Q2_K => (0, 3, 0),
            _ => return None,
        };
        Some(Codes { lo, hi, zero })
    }
}

/// Encode one block of a block type (`values.len()` = its block) into `out`.
pub fn quantize_block(ty: GgmlType, values: &[f32], importance: Option<&[f32]>, out: &mut [u8]) {
    match ty.block_values() {
        kquants::QK_K => kquants::quantize_block(ty, values.try_into().expect("256 values"), importance, out),
        _ => legacy::quantize_block(ty, values.try_into().expect("32 values"), importance, out),
    }
}

/// The grid a block type's block decodes its codes on.
pub fn block_grid(ty: GgmlType, block: &[u8]) -> Grid {
    match ty.block_values() {
        kquants::QK_K => kquants::grid(ty, block),
        _ => legacy::grid(ty, block),
    }
}

/// Replace a block's codes by `codes` (stored form, one per value), keeping its params.
pub fn set_codes(ty: GgmlType, codes: &[u8], block: &mut [u8]) {
    match ty.block_values() {
        kquants::QK_K => kquants::set_codes(ty, codes, block),
        _ => legacy::set_codes(ty, codes, block),
    }
}

/// Encode `values` (a whole number of blocks) as `ty`, appending to `out`. `importance`, when
/// given (one non-negative weight per value), is what the block searches minimise the weighted
/// error of, as llama.cpp's importance matrix; the float types and Q8_0 ignore it.
pub fn quantize(ty: GgmlType, values: &[f32], importance: Option<&[f32]>, out: &mut Vec<u8>) -> Result<()> {
    let per = ty.block_values();
    if !values.len().is_multiple_of(per) {
        return Err(AqError::Gguf(format!("{} values are not whole {} blocks", values.len(), ty.name())));
    }
    if importance.is_some_and(|w| w.len() != values.len()) {
        return Err(AqError::Gguf(format!(
            "{} values but {} importance weights",
            values.len(),
            importance.map_or(0, |w| w.len())
        )));
    }
    let weights = |i: usize| importance.map(|w| &w[i * per..(i + 1) * per]);
    out.reserve(values.len() / per * ty.block_bytes());
    match ty {
        GgmlType::F32 => float::encode_f32(values, out),
        GgmlType::F16 => float::encode_f16(values, out),
        GgmlType::BF16 => float::encode_bf16(values, out),
        GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 => {
            return Err(AqError::Gguf(format!(
                "{} holds integers copied from the source, not quantized floats",
                ty.name()
            )))
        }
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            let mut block = vec![0u8; ty.block_bytes()];
            for (i, chunk) in values.chunks_exact(per).enumerate() {
                kquants::quantize_block(ty, chunk.try_into().expect("256 values"), weights(i), &mut block);
                out.extend_from_slice(&block);
            }
        }
        _ => {
            let mut block = vec![0u8; ty.block_bytes()];
            for (i, chunk) in values.chunks_exact(per).enumerate() {
                legacy::quantize_block(ty, chunk.try_into().expect("32 values"), weights(i), &mut block);
                out.extend_from_slice(&block);
            }
        }
    }
    Ok(())
}

/// Decode `count` values of type `ty` from `bytes`, which must hold exactly that many.
pub fn dequantize(ty: GgmlType, bytes: &[u8], count: usize) -> Result<Vec<f32>> {
    let want = ty.bytes_for(count as u64);
    if want != Some(bytes.len() as u64) {
        return Err(AqError::Gguf(format!("{} {} values need {want:?} bytes, got {}", count, ty.name(), bytes.len())));
    }
    let mut out = vec![0f32; count];
    match ty {
        GgmlType::F32 => float::decode_f32(bytes, &mut out),
        GgmlType::F16 => float::decode_f16(bytes, &mut out),
        GgmlType::BF16 => float::decode_bf16(bytes, &mut out),
        GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 => {
            float::decode_integers(ty.block_bytes(), bytes, &mut out)
        }
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            for (block, o) in bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(kquants::QK_K)) {
                kquants::dequantize_block(ty, block, o);
            }
        }
        _ => {
            for (block, o) in bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(32)) {
                legacy::dequantize_block(ty, block, o.try_into().expect("32 values"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32 * scale
            })
            .collect()
    }

    fn snr(w: &[f32], q: &[f32]) -> f64 {
        let (mut s, mut e) = (0f64, 0f64);
        for (a, b) in w.iter().zip(q) {
            s += (*a as f64).powi(2);
            e += (*a as f64 - *b as f64).powi(2);
        }
        10.0 * (s / e).log10()
    }

    #[test]
    fn sizes_match_ggml() {
        let bytes: Vec<(GgmlType, usize)> = GgmlType::ALL.iter().map(|t| (*t, t.block_bytes())).collect();
        for (t, b) in bytes {
            let want = match t {
                GgmlType::F32 => 4,
                GgmlType::F16 | GgmlType::BF16 => 2,
                GgmlType::Q8_0 => 34,
                GgmlType::Q5_1 => 24,
                GgmlType::Q5_0 => 22,
                GgmlType::Q4_1 => 20,
                GgmlType::Q4_0 => 18,
                GgmlType::Q6_K => 210,
                GgmlType::Q5_K => 176,
                GgmlType::Q4_K => 144,
                GgmlType::Q3_K => 110,
                GgmlType::Q2_K => 84,
                _ => unreachable!("ALL holds the float and block types"),
            };
            assert_eq!(b, want, "{t:?}");
        }
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(u64::MAX - 31), None);
        assert_eq!(GgmlType::from_id(8), Some(GgmlType::Q8_0));
        assert_eq!(GgmlType::parse("q4_1"), Some(GgmlType::Q4_1));
    }

    #[test]
    fn round_trips_with_the_expected_quality() {
        let w = random(32 * 512, 7, 0.1);
        // (type, minimum SNR in dB for uniform values)
        for (t, min_snr) in [
            (GgmlType::Q8_0, 40.0),
            (GgmlType::Q6_K, 33.0),
            (GgmlType::Q5_K, 28.0),
            (GgmlType::Q4_K, 22.0),
            (GgmlType::Q3_K, 15.0),
            (GgmlType::Q2_K, 9.0),
            (GgmlType::Q5_1, 28.0),
            (GgmlType::Q5_0, 26.0),
            (GgmlType::Q4_1, 22.0),
            (GgmlType::Q4_0, 20.0),
            (GgmlType::BF16, 45.0),
            (GgmlType::F16, 65.0),
        ] {
            let mut bytes = Vec::new();
            quantize(t, &w, None, &mut bytes).unwrap();
            assert_eq!(bytes.len() as u64, t.bytes_for(w.len() as u64).unwrap());
            let back = dequantize(t, &bytes, w.len()).unwrap();
            let s = snr(&w, &back);
            assert!(s > min_snr, "{t:?}: {s:.2} dB");
        }
        let mut bytes = Vec::new();
        quantize(GgmlType::F32, &w, None, &mut bytes).unwrap();
        assert_eq!(dequantize(GgmlType::F32, &bytes, w.len()).unwrap(), w);
    }

    #[test]
    fn adversarial_blocks_stay_finite_and_exact_where_they_can() {
        let mut cases: Vec<Vec<f32>> = vec![
            vec![0.0; 256],
            vec![-0.0; 256],
            vec![1.5; 256],
            vec![-3.0; 256],
            vec![1e-30; 256],
            vec![60000.0; 256],
            (0..256).map(|i| if i == 5 { 1.0 } else { 0.0 }).collect(),
            (0..256).map(|i| if i % 2 == 0 { 1e-8 } else { -1e-8 }).collect(),
            (0..256).map(|i| (i % 32) as f32 - 16.0).collect(),
        ];
        cases.push((0..256).map(|i| f32::from_bits(i + 1)).collect()); // f32 subnormals
        for t in GgmlType::ALL {
            for w in &cases {
                let mut bytes = Vec::new();
                quantize(t, w, None, &mut bytes).unwrap();
                let back = dequantize(t, &bytes, 256).unwrap();
                assert!(back.iter().all(|v| v.is_finite()), "{t:?} {w:?} → {back:?}");
                let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                if w.iter().all(|v| *v == w[0]) && t != GgmlType::Q4_0 && t != GgmlType::Q5_0 {
                    // a constant block is the min of the affine types, the extreme of Q8_0
                    if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q6_K)
                        && max > 1e-4
                        && max < 60000.0
                    {
                        let rel = (back[0] - w[0]).abs() / max;
                        assert!(rel < 1e-3, "{t:?} {w:?} → {back:?}");
                    }
                }
                if t == GgmlType::F32 {
                    assert_eq!(&back, w);
                }
            }
        }
        // All zeros decode to zeros in every type.
        for t in GgmlType::ALL {
            let mut bytes = Vec::new();
            quantize(t, &[0.0; 256], None, &mut bytes).unwrap();
            assert!(dequantize(t, &bytes, 256).unwrap().iter().all(|v| *v == 0.0), "{t:?}");
        }
    }

    /// Every block type's grid decodes codes as `dequantize` does, and coding the values on the
    /// grid of the block `quantize_block` chose gives back its bytes exactly.
    #[test]
    fn grids_decode_as_the_readers_and_recode_to_the_same_bytes() {
        let mut cases = vec![random(256, 11, 0.1), random(256, 12, 40.0), vec![0.0; 256], vec![-2.5; 256]];
        cases.push((0..256).map(|i| if i % 37 == 0 { 3.0 } else { 1e-3 * (i % 5) as f32 }).collect());
        for t in GgmlType::ALL.into_iter().filter(|t| t.is_quantized()) {
            let (per, bb, codes) = (t.block_values(), t.block_bytes(), t.codes().unwrap());
            for (c, w) in cases.iter().enumerate() {
                let mut bytes = Vec::new();
                quantize(t, w, None, &mut bytes).unwrap();
                for (b, (block, x)) in bytes.chunks_exact(bb).zip(w.chunks_exact(per)).enumerate() {
                    let g = block_grid(t, block);
                    let mut q = vec![0u8; per];
                    for (i, (&v, o)) in x.iter().zip(q.iter_mut()).enumerate() {
                        *o = codes.nearest(v, g.step[i / g.sub], g.offset[i / g.sub]).0;
                    }
                    let mut again = block.to_vec();
                    set_codes(t, &q, &mut again);
                    assert_eq!(again, block, "{t:?} case {c} block {b}");
                    // Arbitrary codes: the grid's values are the reader's.
                    let mut s = (c * 31 + b) as u64 + 1;
                    for o in q.iter_mut() {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        *o = (codes.lo + ((s >> 33) as i32).rem_euclid(codes.hi - codes.lo + 1)) as u8;
                    }
                    set_codes(t, &q, &mut again);
                    let back = dequantize(t, &again, per).unwrap();
                    for (i, (&v, &code)) in back.iter().zip(&q).enumerate() {
                        let code = if t == GgmlType::Q8_0 { code as i8 as i32 } else { code as i32 };
                        let want = g.step[i / g.sub] * (code - codes.zero) as f32 + g.offset[i / g.sub];
                        assert_eq!(v, want, "{t:?} case {c} block {b} value {i} code {code}");
                    }
                }
            }
        }
    }

    #[test]
    fn importance_weights_the_searches() {
        let n = 256 * 64;
        let w = random(n, 3, 0.1);
        // Columns of rows of 512: a few strongly used inputs, most barely.
        let h: Vec<f32> =
            (0..n).map(|i| if (i % 512) % 7 == 0 { 50.0 } else { 0.02 * ((i % 512) % 5) as f32 }).collect();
        let weighted_error = |bytes: &[u8], t: GgmlType| {
            let back = dequantize(t, bytes, n).unwrap();
            w.iter().zip(&back).zip(&h).map(|((a, b), h)| *h as f64 * (*a as f64 - *b as f64).powi(2)).sum::<f64>()
        };
        for t in GgmlType::ALL.into_iter().filter(|t| t.is_quantized()) {
            let encode = |imp: Option<&[f32]>| {
                let mut out = Vec::new();
                quantize(t, &w, imp, &mut out).unwrap();
                out
            };
            let plain = encode(None);
            // Equal weights are the unweighted search, bit for bit; all-zero weights fall back to it.
            assert_eq!(encode(Some(&vec![1.0; n])), plain, "{t:?} with unit weights");
            assert_eq!(encode(Some(&vec![0.0; n])), plain, "{t:?} with zero weights");
            if t == GgmlType::Q8_0 {
                assert_eq!(encode(Some(&h)), plain, "Q8_0 takes no importance");
                continue;
            }
            let (before, after) = (weighted_error(&plain, t), weighted_error(&encode(Some(&h)), t));
            assert!(after < 0.9 * before, "{t:?}: weighted error {after:e} not below {before:e}");
        }
        let mut out = Vec::new();
        assert!(quantize(GgmlType::Q4_0, &w, Some(&h[..32]), &mut out).is_err());
    }
}
