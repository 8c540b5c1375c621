//! f16 storage of a whole tensor: the fallback a layer takes when no quantized width meets its
//! accuracy, and what sensitive layers at 16 bits are stored as.

use crate::error::Result;
use crate::kernels;
use crate::quant::dtype::decode_f32;
use crate::quant::metrics::ErrorSums;
use crate::quant::tensor::{check_finite, Source, MAX_GROUP};

/// f16 rounds a normal value with relative error at most 2⁻¹¹, an SNR of at least 66 dB over
/// any tensor; one that keeps less in f16 has its values in f16's subnormal range.
pub const F16_FAITHFUL_SNR_DB: f64 = 60.0;

/// What f16 storage of a tensor gives.
pub enum F16Store {
    Stored {
        data: Vec<u8>,
        sums: ErrorSums,
    },
    /// A value is beyond ±65504.
    Overflow,
    /// The values are so small that f16 would keep only `snr_db` of them.
    Underflow {
        snr_db: f64,
    },
}

/// The tensor as little-endian f16 bit patterns (round to nearest even) with the error of the
/// conversion; `Overflow` when a value is beyond ±65504, `Underflow` when f16 would keep too little.
pub fn store_f16(src: Source, numel: usize) -> Result<F16Store> {
    let esize = src.dtype.size_bytes();
    let mut out = Vec::with_capacity(numel * 2);
    let mut sums = ErrorSums::default();
    let mut x = [0f32; MAX_GROUP];
    let mut xh = [0f32; MAX_GROUP];
    let mut h = [0u16; MAX_GROUP];
    let round = kernels::active().round_f16;
    let mut e0 = 0;
    while e0 < numel {
        let len = MAX_GROUP.min(numel - e0);
        decode_f32(src.dtype, &src.bytes[e0 * esize..(e0 + len) * esize], &mut x[..len]);
        check_finite(src.name, &x[..len], e0)?;
        round(&x[..len], &mut h[..len], &mut xh[..len]);
        // Finite input rounds to ±inf only beyond ±65504: then f16 cannot hold the tensor.
        if h[..len].iter().any(|&b| b & 0x7c00 == 0x7c00) {
            return Ok(F16Store::Overflow);
        }
        out.extend(h[..len].iter().flat_map(|b| b.to_le_bytes()));
        sums.add(&x[..len], &xh[..len]);
        e0 += len;
    }
    if sums.snr_db() < F16_FAITHFUL_SNR_DB {
        return Ok(F16Store::Underflow { snr_db: sums.snr_db() });
    }
    Ok(F16Store::Stored { data: out, sums })
}
