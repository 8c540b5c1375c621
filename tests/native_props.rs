//! Property tests: pack/unpack and quantize/dequantize round trips over random shapes, lengths
//! not divisible by the group, constant groups, ±0, tiny and huge magnitudes.
mod common;

use arrowquant::kernels::scalar as k;
use arrowquant::quant::layout::Layout;
use arrowquant::quant::tensor::{dequantize, quantize_source, ParamChoice, Source};
use arrowquant::quant::width::Width;
use arrowquant::quant::ErrorSums;
use arrowquant::Dtype;
use proptest::prelude::*;

fn bits() -> impl Strategy<Value = u8> {
    prop_oneof![Just(2u8), Just(4u8), Just(8u8)]
}

fn group() -> impl Strategy<Value = u32> {
    prop_oneof![Just(32u32), Just(64), Just(128), Just(256)]
}

/// Values with the awkward cases mixed in.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -3.0f32..3.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => -1e-30f32..1e-30,
        1 => -60000.0f32..60000.0,
        1 => Just(f32::from_bits(1)), // smallest subnormal
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn pack_unpack_roundtrip(bits in bits(), raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let codes: Vec<u8> = raw.iter().map(|c| c & ((1u16 << bits) - 1) as u8).collect();
        let mut packed = vec![0u8; k::packed_len(codes.len(), bits)];
        k::pack(&codes, bits, &mut packed);
        let mut back = vec![0u8; codes.len()];
        k::unpack(&packed, bits, &mut back);
        prop_assert_eq!(back, codes);
    }

    #[test]
    fn quantize_dequantize_roundtrip(
        bits in bits(),
        group in group(),
        (rows, row_len, vals) in (1usize..5, 8usize..700)
            .prop_flat_map(|(r, l)| (Just(r), Just(l), prop::collection::vec(value(), r * l))),
        constant in any::<bool>(),
        search in any::<bool>(),
    ) {
        let vals: Vec<f32> = if constant { vec![0.75; rows * row_len] } else { vals };
        let bytes = common::f32_bytes(&vals);
        let layout = Layout::for_shape(&[rows as u64, row_len as u64], group as usize);
        let src = Source { name: "t", dtype: Dtype::F32, bytes: &bytes };
        // The generator stays inside ±60000, so f16 params always exist.
        let (t, sums) = quantize_source(src, layout, Width::from_bits(bits).unwrap(), ParamChoice::on_weights(search)).unwrap().expect("values fit f16 params");
        prop_assert_eq!(t.codes.len(), rows * k::packed_len(row_len, bits));
        prop_assert_eq!(t.scales.len(), rows * row_len.div_ceil(group as usize));
        let mut out = vec![0f32; rows * row_len];
        dequantize(&t, &mut out);
        let mut again = ErrorSums::default();
        again.add(&vals, &out);
        prop_assert!(again.approx_eq(&sums, 1e-12), "{:?} vs {:?}", again, sums);
        if constant {
            prop_assert!(out.iter().all(|&v| v == 0.75));
        }
        // Min/max params: every value reconstructs within one quantization step of its group
        // (plus f16 rounding of the params).
        if !search {
            let qmax = ((1u32 << bits) - 1) as f32;
            for (r, chunk) in vals.chunks(row_len).enumerate() {
                for (g, grp) in chunk.chunks(group as usize).enumerate() {
                    let (mn, mx) = k::min_max(grp);
                    let step = (mx - mn) / qmax;
                    let f16_slack = mn.abs().max(mx.abs()) / 1024.0 * (qmax + 1.0) / qmax + 1e-7;
                    for (i, &v) in grp.iter().enumerate() {
                        let w = out[r * row_len + g * group as usize + i];
                        prop_assert!((w - v).abs() <= step + f16_slack, "value {} → {} (group range {}..{})", v, w, mn, mx);
                    }
                }
            }
        }
    }
}
