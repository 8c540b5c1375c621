//! Source dtypes and their decoding to f32, a chunk at a time (never a whole-model f32 copy).

use half::f16;

/// Largest finite f16: values, group params and equalized weights beyond it cannot be held in f16.
pub const F16_MAX: f32 = 65504.0;
/// Smallest normal f16, 2⁻¹⁴: below it f16 keeps fewer than 11 significant bits, and at 2⁻²⁵
/// nothing. Tensors that live down there are stored as their source bytes (docs/FORMAT.md §3).
pub const F16_MIN_NORMAL: f32 = 6.103_515_6e-5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    F8E4M3,
    F8E5M2,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Dtype {
    pub const ALL_NAMES: &'static [&'static str] = &[
        "F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U64" => Dtype::U64,
            "U32" => Dtype::U32,
            "U16" => Dtype::U16,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            _ => return None,
        })
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U64 => "U64",
            Dtype::U32 => "U32",
            Dtype::U16 => "U16",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::F8E4M3 | Dtype::F8E5M2 | Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F8E4M3 | Dtype::F8E5M2)
    }
}

/// Decode `out.len()` little-endian elements of a float dtype from `bytes` into f32.
/// `bytes.len()` must equal `out.len() * dtype.size_bytes()`; callers slice by element.
/// F64 values outside the f32 range become ±inf, which the non-finite check then reports.
pub fn decode_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) {
    debug_assert!(dtype.is_float());
    debug_assert_eq!(bytes.len(), out.len() * dtype.size_bytes());
    match dtype {
        // Little-endian hosts (wasm32, x86-64, aarch64) hold f32 exactly as safetensors does: a
        // byte copy, whatever the source alignment.
        #[cfg(target_endian = "little")]
        Dtype::F32 => crate::kernels::copy_into(bytes, bytemuck::cast_slice_mut::<f32, u8>(out)),
        #[cfg(target_endian = "big")]
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::F16 => (crate::kernels::active().decode_f16)(bytes, out),
        Dtype::BF16 => (crate::kernels::active().decode_bf16)(bytes, out),
        Dtype::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32;
            }
        }
        Dtype::F8E4M3 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = f8_e4m3_to_f32(b);
            }
        }
        Dtype::F8E5M2 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                // E5M2 is the top byte of an IEEE f16.
                *o = f16::from_bits((b as u16) << 8).to_f32();
            }
        }
        _ => unreachable!("decode_f32 called on non-float dtype {}", dtype.name()),
    }
}

/// OCP FP8 E4M3 ("fn" variant, as PyTorch's float8_e4m3fn): bias 7, no infinities,
/// S.1111.111 is NaN, max finite 448.
pub fn f8_e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && (b & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man * 2f32.powi(-9) // subnormal: man/8 · 2^-6
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f8_e4m3_known_values() {
        assert_eq!(f8_e4m3_to_f32(0x00), 0.0);
        assert_eq!(f8_e4m3_to_f32(0x38), 1.0);
        assert_eq!(f8_e4m3_to_f32(0x7e), 448.0);
        assert_eq!(f8_e4m3_to_f32(0xfe), -448.0);
        assert_eq!(f8_e4m3_to_f32(0x01), 2f32.powi(-9));
        assert!(f8_e4m3_to_f32(0x7f).is_nan());
    }

    #[test]
    fn f8_e5m2_known_values() {
        let mut out = [0f32; 4];
        decode_f32(Dtype::F8E5M2, &[0x3c, 0x7b, 0x7c, 0x01], &mut out);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 57344.0);
        assert!(out[2].is_infinite());
        assert_eq!(out[3], 2f32.powi(-16));
    }

    #[test]
    fn names_roundtrip() {
        for n in Dtype::ALL_NAMES {
            assert_eq!(Dtype::parse(n).unwrap().name(), *n);
        }
    }
}
