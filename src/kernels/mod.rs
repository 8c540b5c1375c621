//! Hot per-group operations, as a table of function pointers so both twins stay reachable at run
//! time on every target: `scalar` is the reference (always compiled, always public) and
//! `simd128` its wasm32 SIMD twin, which must reproduce it bit for bit (the f64 error sums of
//! validation excepted: their twin may differ in the last bits, within a stated bound). The range
//! search and its exact errors sum each group sequentially in f32, and their twin runs four
//! groups side by side, one per lane, so that every lane reproduces the scalar order exactly.
//!
//! Native builds use the scalar twin (LLVM vectorises its simple loops for the host).

pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd128;

use std::sync::atomic::{AtomicBool, Ordering};

/// One implementation of every hot kernel. Signatures and semantics: see `scalar`.
pub struct KernelSet {
    pub name: &'static str,
    pub min_max: fn(&[f32]) -> (f32, f32),
    pub all_finite: fn(&[f32]) -> bool,
    pub copy_bytes: fn(&[u8], &mut [core::mem::MaybeUninit<u8>]),
    pub search_exact4: scalar::SearchExact4Fn,
    pub weighted_search_exact4: scalar::WeightedSearchExact4Fn,
    pub quantize_codes: fn(&[f32], f32, f32, f32, &mut [u8]),
    pub dequantize_codes: fn(&[u8], f32, f32, &mut [f32]),
    pub symmetric_codes: fn(&[f32], f32, f32, f32, f32, &mut [u8]),
    pub decode_f16: fn(&[u8], &mut [f32]),
    pub decode_bf16: fn(&[u8], &mut [f32]),
    pub round_f16: fn(&[f32], &mut [u16], &mut [f32]),
    pub error_sums: fn(&[f32], &[f32]) -> [f64; 5],
    pub group_moments: scalar::GroupMomentsFn,
    pub weighted_group_moments: scalar::WeightedGroupMomentsFn,
    pub column_error_sums: scalar::ColumnErrorSumsFn,
    pub pack: fn(&[u8], u8, &mut [u8]),
    pub unpack: fn(&[u8], u8, &mut [u8]),
    pub sub_scaled: fn(&mut [f32], &[f32], f32),
    pub block_code_sums: fn(&[f32], f32, f32, f32, f32) -> [f32; 3],
    pub block_code_sse: fn(&[f32], f32, f32, f32, f32, f32) -> f32,
    pub block_weighted_sums: scalar::BlockWeightedSumsFn,
    pub block_weighted_sse: scalar::BlockWeightedSseFn,
}

pub static SCALAR: KernelSet = KernelSet {
    name: "scalar",
    min_max: scalar::min_max,
    all_finite: scalar::all_finite,
    copy_bytes: scalar::copy_bytes,
    search_exact4: scalar::search_exact4,
    weighted_search_exact4: scalar::weighted_search_exact4,
    quantize_codes: scalar::quantize_codes,
    dequantize_codes: scalar::dequantize_codes,
    symmetric_codes: scalar::symmetric_codes,
    decode_f16: scalar::decode_f16,
    decode_bf16: scalar::decode_bf16,
    round_f16: scalar::round_f16,
    error_sums: scalar::error_sums,
    group_moments: scalar::group_moments,
    weighted_group_moments: scalar::weighted_group_moments,
    column_error_sums: scalar::column_error_sums,
    pack: scalar::pack,
    unpack: scalar::unpack,
    sub_scaled: scalar::sub_scaled,
    block_code_sums: scalar::block_code_sums,
    block_code_sse: scalar::block_code_sse,
    block_weighted_sums: scalar::block_weighted_sums,
    block_weighted_sse: scalar::block_weighted_sse,
};

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub static SIMD128: KernelSet = KernelSet {
    name: "simd128",
    min_max: simd128::min_max,
    all_finite: simd128::all_finite,
    copy_bytes: simd128::copy_bytes,
    search_exact4: simd128::search_exact4,
    weighted_search_exact4: simd128::weighted_search_exact4,
    quantize_codes: simd128::quantize_codes,
    dequantize_codes: simd128::dequantize_codes,
    symmetric_codes: simd128::symmetric_codes,
    decode_f16: simd128::decode_f16,
    decode_bf16: simd128::decode_bf16,
    round_f16: simd128::round_f16,
    error_sums: simd128::error_sums,
    group_moments: simd128::group_moments,
    weighted_group_moments: simd128::weighted_group_moments,
    column_error_sums: simd128::column_error_sums,
    pack: simd128::pack,
    unpack: simd128::unpack,
    sub_scaled: simd128::sub_scaled,
    block_code_sums: simd128::block_code_sums,
    block_code_sse: simd128::block_code_sse,
    block_weighted_sums: simd128::block_weighted_sums,
    block_weighted_sse: simd128::block_weighted_sse,
};

/// `src` copied into a new vector with the active copy kernel (no zero-fill first).
pub fn copy_to_vec(src: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(src.len());
    (active().copy_bytes)(src, &mut v.spare_capacity_mut()[..src.len()]);
    // SAFETY: `copy_bytes` wrote all `src.len()` bytes of the spare capacity.
    unsafe { v.set_len(src.len()) };
    v
}

/// `dst.copy_from_slice(src)` with the active copy kernel.
pub fn copy_into(src: &[u8], dst: &mut [u8]) {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and `copy_bytes` only writes
    // initialised bytes.
    let dst = unsafe { &mut *(dst as *mut [u8] as *mut [core::mem::MaybeUninit<u8>]) };
    (active().copy_bytes)(src, dst);
}

/// The fastest set this build has.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub static BEST: &KernelSet = &SIMD128;
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
pub static BEST: &KernelSet = &SCALAR;

static REFERENCE_ONLY: AtomicBool = AtomicBool::new(false);

/// The set the quantizer uses now.
#[inline]
pub fn active() -> &'static KernelSet {
    if REFERENCE_ONLY.load(Ordering::Relaxed) {
        &SCALAR
    } else {
        BEST
    }
}

/// Force the scalar reference kernels (for benchmarks and for checking a suspected kernel bug;
/// the output is identical either way).
pub fn set_reference_only(on: bool) {
    REFERENCE_ONLY.store(on, Ordering::Relaxed);
}
