//! SIMD128 kernels against their scalar twins, under wasm in Node (`make test-wasm`): identical
//! bits on random and adversarial inputs — lengths not a multiple of 4, 16 or the group,
//! constant groups, ±0, subnormals, tiny and huge magnitudes.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

mod common;

use arrowquant::kernels::{self, SCALAR, SIMD128};
use arrowquant::quant::tensor::{quantize_source, Layout, Source};
use arrowquant::Dtype;
use wasm_bindgen_test::*;

/// Inputs: (label, values). Every length from 1 to 67 plus group-sized and odd-sized ones.
fn cases() -> Vec<(String, Vec<f32>)> {
    let mut rng = common::Rng::new(11);
    let mut out = Vec::new();
    let mut lens: Vec<usize> = (1..=67).collect();
    lens.extend([127, 128, 129, 200, 255, 256]);
    for &n in &lens {
        out.push((format!("gauss n={n}"), (0..n).map(|_| rng.gauss()).collect()));
        out.push((format!("wide n={n}"), (0..n).map(|_| rng.gauss() * 3e4).collect()));
        out.push((format!("tiny n={n}"), (0..n).map(|_| rng.gauss() * 1e-6).collect()));
        out.push((format!("constant n={n}"), vec![0.3125; n]));
        out.push((format!("zeros n={n}"), (0..n).map(|i| if i % 3 == 0 { -0.0 } else { 0.0 }).collect()));
        out.push((
            format!("subnormal mix n={n}"),
            (0..n)
                .map(|i| match i % 4 {
                    0 => f32::from_bits(1 + i as u32),
                    1 => -f32::from_bits(7),
                    2 => 0.0,
                    _ => 1e-40,
                })
                .collect(),
        ));
        out.push((format!("ties n={n}"), (0..n).map(|i| (i % 16) as f32 * 0.5).collect()));
    }
    out
}

fn bits_f32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[wasm_bindgen_test]
fn reductions_match() {
    for (label, x) in cases() {
        assert!((SIMD128.all_finite)(&x), "all_finite {label}");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
            for at in [0, x.len() / 2, x.len() - 1] {
                let mut y = x.clone();
                y[at] = bad;
                assert!(!(SIMD128.all_finite)(&y) && !(SCALAR.all_finite)(&y), "all_finite {label} {bad} at {at}");
            }
        }
        let (a, b) = ((SCALAR.min_max)(&x), (SIMD128.min_max)(&x));
        assert_eq!((a.0.to_bits(), a.1.to_bits()), (b.0.to_bits(), b.1.to_bits()), "min_max {label}");
        // f64 error sums: two lanes instead of one, so equal within a bound, not bit for bit.
        let q: Vec<f32> = x.iter().map(|v| v * 0.99 + 1e-3).collect();
        let (a, b) = ((SCALAR.error_sums)(&x, &q), (SIMD128.error_sums)(&x, &q));
        for k in 0..4 {
            assert!(
                (a[k] - b[k]).abs() <= 1e-12 * a[k].abs().max(b[k].abs()),
                "error_sums[{k}] {label}: {} vs {}",
                a[k],
                b[k]
            );
        }
        assert_eq!(a[4], b[4], "max abs error {label}");
    }
}

#[wasm_bindgen_test]
fn search_and_code_kernels_match() {
    for (label, x) in cases() {
        let (mn, mx) = (SCALAR.min_max)(&x);
        for bits in [2u8, 4, 8] {
            let qmax = ((1u32 << bits) - 1) as f32;
            let range = mx - mn;
            let scales = [0.0f32, range / qmax, half::f16::from_f32(range / qmax).to_f32(), 1e-7, 3.0];
            for s in scales {
                for m in [mn, half::f16::from_f32(mn).to_f32(), 0.0, -0.0] {
                    let pairs = [(s, m), (range / qmax, mn)];
                    // Codes buffers start different, so a code left unwritten shows.
                    let (mut ca, mut cb) = (vec![0xaau8; x.len()], vec![0x55u8; x.len()]);
                    let a = (SCALAR.squared_errors)(&x, pairs, qmax, &mut ca);
                    let b = (SIMD128.squared_errors)(&x, pairs, qmax, &mut cb);
                    assert_eq!(
                        a.map(f32::to_bits),
                        b.map(f32::to_bits),
                        "squared_errors {label} bits {bits} s {s} m {m}"
                    );
                    assert_eq!(a[0].to_bits(), kernels::scalar::squared_error(&x, s, m, qmax).to_bits());
                    let (mut qa, mut qb) = (vec![0u8; x.len()], vec![0u8; x.len()]);
                    (SCALAR.quantize_codes)(&x, s, m, qmax, &mut qa);
                    (SIMD128.quantize_codes)(&x, s, m, qmax, &mut qb);
                    assert_eq!(qa, qb, "quantize_codes {label} bits {bits} s {s} m {m}");
                    assert_eq!(ca, qa, "squared_errors codes (scalar) {label} bits {bits} s {s} m {m}");
                    assert_eq!(cb, qa, "squared_errors codes (simd128) {label} bits {bits} s {s} m {m}");
                    let (mut da, mut db) = (vec![0f32; x.len()], vec![0f32; x.len()]);
                    (SCALAR.dequantize_codes)(&qa, s, m, &mut da);
                    (SIMD128.dequantize_codes)(&qa, s, m, &mut db);
                    assert_eq!(bits_f32(&da), bits_f32(&db), "dequantize_codes {label} bits {bits}");
                }
            }
        }
    }
}

fn fit_bits(f: &kernels::scalar::SearchFit) -> (u32, u32, Option<(u64, u64)>) {
    (f.min.to_bits(), f.max.to_bits(), f.fit.map(|(s, m)| (s.to_bits(), m.to_bits())))
}

/// The four-lane search against the scalar search, lane by lane: every case in every lane
/// position, with the other lanes holding different data of the same length (so a lane leaking
/// into another shows), and four copies of adversarial cases side by side.
#[wasm_bindgen_test]
fn search4_matches_scalar_search_per_lane() {
    let all = cases();
    let mut rng = common::Rng::new(31);
    let mut checked = 0;
    for (label, x) in &all {
        let n = x.len();
        let others: Vec<Vec<f32>> = (0..3).map(|k| (0..n).map(|_| rng.gauss() * 10f32.powi(k - 1)).collect()).collect();
        for lane in 0..4 {
            let mut groups: Vec<&[f32]> = others.iter().map(|v| &v[..]).collect();
            groups.insert(lane, x);
            let quad = [groups[0], groups[1], groups[2], groups[3]];
            for bits in [2u8, 4, 8] {
                let qmax = ((1u32 << bits) - 1) as f32;
                let (a, b) = ((SCALAR.search4)(quad, qmax), (SIMD128.search4)(quad, qmax));
                for k in 0..4 {
                    assert_eq!(
                        fit_bits(&a[k]),
                        fit_bits(&b[k]),
                        "search4 {label} in lane {lane}, lane {k}, bits {bits}"
                    );
                    assert_eq!(fit_bits(&a[k]), fit_bits(&kernels::scalar::search(quad[k], qmax)));
                }
                checked += 1;
            }
        }
    }
    // Extremes every lane at once: values near ±f32::MAX (the range overflows), ±65504, a single
    // outlier, alternating signs of zero.
    let extremes: Vec<Vec<f32>> = vec![
        (0..64).map(|i| if i % 2 == 0 { 3.0e38 } else { -3.0e38 }).collect(),
        (0..64).map(|i| if i % 2 == 0 { 65504.0 } else { -65504.0 }).collect(),
        (0..64).map(|i| if i == 17 { 1e4 } else { (i as f32) * 1e-3 }).collect(),
        (0..64).map(|i| if i % 2 == 0 { -0.0 } else { 0.0 }).collect(),
    ];
    let quad = [&extremes[0][..], &extremes[1][..], &extremes[2][..], &extremes[3][..]];
    for bits in [2u8, 4, 8] {
        let qmax = ((1u32 << bits) - 1) as f32;
        let (a, b) = ((SCALAR.search4)(quad, qmax), (SIMD128.search4)(quad, qmax));
        for k in 0..4 {
            assert_eq!(fit_bits(&a[k]), fit_bits(&b[k]), "extreme lane {k} bits {bits}");
        }
    }
    assert!(checked > 6000);
}

#[wasm_bindgen_test]
fn copy_bytes_copies_every_length_and_offset() {
    let src: Vec<u8> = (0..400u32).map(|i| (i * 37 + 11) as u8).collect();
    for off in 0..17 {
        for len in 0..(400 - off) {
            let mut dst = vec![0xAAu8; len + 2];
            let out = unsafe { &mut *(&mut dst[1..len + 1] as *mut [u8] as *mut [core::mem::MaybeUninit<u8>]) };
            (SIMD128.copy_bytes)(&src[off..off + len], out);
            assert_eq!(&dst[1..len + 1], &src[off..off + len], "off {off} len {len}");
            assert_eq!((dst[0], dst[len + 1]), (0xAA, 0xAA), "no write outside, off {off} len {len}");
        }
    }
}

#[wasm_bindgen_test]
fn pack_unpack_match() {
    let mut rng = common::Rng::new(21);
    for bits in [2u8, 4, 8] {
        for len in 0..=300usize {
            let codes: Vec<u8> = (0..len).map(|_| (rng.next_u32() as u8) & ((1u16 << bits) - 1) as u8).collect();
            let n = kernels::scalar::packed_len(len, bits);
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            (SCALAR.pack)(&codes, bits, &mut a);
            (SIMD128.pack)(&codes, bits, &mut b);
            assert_eq!(a, b, "pack bits {bits} len {len}");
            let (mut ua, mut ub) = (vec![0u8; len], vec![0u8; len]);
            (SCALAR.unpack)(&a, bits, &mut ua);
            (SIMD128.unpack)(&a, bits, &mut ub);
            assert_eq!(ua, ub, "unpack bits {bits} len {len}");
            assert_eq!(ub, codes, "round trip bits {bits} len {len}");
        }
    }
}

/// f32 → f16 rounding against `half`: a stride through all 2^32 bit patterns plus every pattern
/// within ±4096 of each boundary (f16 max and overflow, smallest normal, subnormal ties, zero,
/// infinity, NaN).
#[wasm_bindgen_test]
fn f16_rounding_matches_half() {
    let mut patterns: Vec<u32> = (0..=u32::MAX / 997).map(|k| k * 997).collect();
    for edge in
        [0u32, 0x3380_0000, 0x3300_0000, 0x3880_0000, 0x387f_e000, 0x477f_e000, 0x477f_f000, 0x4780_0000, 0x7f80_0000]
    {
        for sign in [0u32, 0x8000_0000] {
            for d in 0..8192u32 {
                patterns.push((edge | sign).wrapping_add(d).wrapping_sub(4096));
            }
        }
    }
    for chunk in patterns.chunks(4099) {
        let x: Vec<f32> = chunk.iter().map(|&b| f32::from_bits(b)).collect();
        let (mut ha, mut hb) = (vec![0u16; x.len()], vec![0u16; x.len()]);
        let (mut va, mut vb) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        (SCALAR.round_f16)(&x, &mut ha, &mut va);
        (SIMD128.round_f16)(&x, &mut hb, &mut vb);
        for i in 0..x.len() {
            assert_eq!(ha[i], hb[i], "f16 bits of {:#010x}", chunk[i]);
            assert_eq!(va[i].to_bits(), vb[i].to_bits(), "value of {:#010x}", chunk[i]);
        }
    }
}

#[wasm_bindgen_test]
fn half_decoders_match_on_every_bit_pattern() {
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    for n in [65536usize, 65535, 7, 1] {
        let src = &bytes[..2 * n];
        for (name, a_fn, b_fn) in
            [("f16", SCALAR.decode_f16, SIMD128.decode_f16), ("bf16", SCALAR.decode_bf16, SIMD128.decode_bf16)]
        {
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            a_fn(src, &mut a);
            b_fn(src, &mut b);
            assert_eq!(bits_f32(&a), bits_f32(&b), "{name} n={n}");
        }
    }
}

#[wasm_bindgen_test]
fn whole_tensor_output_identical_with_either_set() {
    let mut rng = common::Rng::new(5);
    for (rows, row_len, group) in [(3usize, 1000usize, 64usize), (5, 77, 32), (2, 4099, 256), (7, 300, 128)] {
        let vals: Vec<f32> = (0..rows * row_len).map(|i| if i % 97 < 40 { 1.5 } else { rng.gauss().powi(3) }).collect();
        for (dtype, bytes) in [
            (Dtype::F32, common::f32_bytes(&vals)),
            (Dtype::F16, vals.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect()),
            (Dtype::BF16, vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes()).collect()),
        ] {
            let src = Source { name: "t", dtype, bytes: &bytes };
            for bits in [2u8, 4, 8] {
                for search in [false, true] {
                    let layout = Layout::for_shape(&[rows as u64, row_len as u64], group);
                    kernels::set_reference_only(true);
                    let a = quantize_source(src, layout, bits, search).unwrap().unwrap();
                    kernels::set_reference_only(false);
                    let b = quantize_source(src, layout, bits, search).unwrap().unwrap();
                    assert_eq!(a.0, b.0, "{dtype:?} bits {bits} search {search} {rows}x{row_len} g{group}");
                    assert!(a.1.approx_eq(&b.1, 1e-12), "error sums {dtype:?} bits {bits} search {search}");
                }
            }
        }
    }
}
