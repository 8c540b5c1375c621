//! The core under wasm32 with SIMD128, run in Node by wasm-bindgen-test-runner
//! (`make test-wasm`). Same assertions as the native suites on the paths that matter.
#![cfg(target_arch = "wasm32")]

mod common;

use arrowquant::format::safetensors::parse_header;
use arrowquant::kernels::scalar as k;
use arrowquant::pipeline::quantize_model;
use arrowquant::policy::config::parse_config_str;
use arrowquant::quant::ErrorSums;
use arrowquant::{QuantizedFile, Storage};
use wasm_bindgen_test::*;

static RIVAGAN: &[u8] = include_bytes!("../samples/rivagan_f32.safetensors");
static MINILM: &[u8] = include_bytes!("data/minilm_l6_bf16_subset.safetensors");

#[wasm_bindgen_test]
fn built_with_simd128() {
    const { assert!(cfg!(target_feature = "simd128"), "the wasm tests must run the SIMD128 build") };
    assert_eq!(arrowquant::kernels::active().name, "simd128", "the quantizer runs the SIMD128 kernels");
}

#[wasm_bindgen_test]
fn real_models_roundtrip_bit_exact() {
    for (model, cfg) in [(RIVAGAN, r#"{"profile":"edge","minAccuracy":0}"#), (MINILM, r#"{"profile":"local"}"#)] {
        let cfg = parse_config_str(cfg).unwrap();
        let (parquet, report) = quantize_model(model, cfg, None, || 0.0, &mut |_| true).unwrap();
        let header = parse_header(model, None).unwrap();
        let file = QuantizedFile::open(parquet).unwrap();
        for (layer, row) in report.layers.iter().zip(&file.rows) {
            if row.stored.storage() == Storage::Raw {
                continue;
            }
            let info = header.find(&row.name).unwrap();
            let (a, b) = header.file_range(info);
            let mut orig = vec![0f32; info.numel() as usize];
            arrowquant::quant::dtype::decode_f32(info.dtype, &model[a as usize..b as usize], &mut orig);
            let mut sums = ErrorSums::default();
            sums.add(&orig, &file.dequantize(&row.name).unwrap());
            assert!((sums.cosine() - layer.cosine.unwrap()).abs() <= 1e-12 * sums.cosine().abs(), "{}", row.name);
            assert!(
                sums.snr_db() == layer.snr_db.unwrap()
                    || (sums.snr_db() - layer.snr_db.unwrap()).abs() <= 1e-12 * sums.snr_db().abs(),
                "{}",
                row.name
            );
        }
    }
}

#[wasm_bindgen_test]
fn gaussian_quality_floors() {
    // 512K samples: floors a little under the 2M-sample anchors for sampling noise.
    for (bits, group, floor) in [(4u8, 32u32, 22.95), (4, 128, 20.45), (2, 64, 8.9)] {
        let (snr, _) = common::gaussian_quality(512 * 1024, bits, group, true, false);
        assert!(snr >= floor, "{bits}-bit g{group}: {snr:.3} dB < {floor}");
    }
}

#[wasm_bindgen_test]
fn pack_unpack_adversarial_lengths() {
    let mut rng = common::Rng::new(3);
    for bits in [2u8, 4, 8] {
        for len in [0usize, 1, 3, 4, 5, 7, 31, 33, 255, 257] {
            let codes: Vec<u8> = (0..len).map(|_| (rng.next_u32() as u8) & ((1u16 << bits) - 1) as u8).collect();
            let mut packed = vec![0u8; k::packed_len(len, bits)];
            k::pack(&codes, bits, &mut packed);
            let mut back = vec![0u8; len];
            k::unpack(&packed, bits, &mut back);
            assert_eq!(back, codes, "bits {bits} len {len}");
        }
    }
}
