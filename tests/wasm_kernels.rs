//! SIMD128 kernels against their scalar twins, under wasm in Node (`make test-wasm`): identical
//! bits on random and adversarial inputs — lengths not a multiple of 4, 16 or the group,
//! constant groups, ±0, subnormals, tiny and huge magnitudes.
#![cfg(all(target_arch = "wasm32", target_feature = "simd128"))]

mod common;

use arrowquant::kernels::scalar::{HalfParams, Searched};
use arrowquant::kernels::{self, SCALAR, SIMD128};
use arrowquant::quant::layout::Layout;
use arrowquant::quant::tensor::{quantize_source, ParamChoice, Source};
use arrowquant::quant::width::Width;
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
                    let (mut qa, mut qb) = (vec![0u8; x.len()], vec![0u8; x.len()]);
                    (SCALAR.quantize_codes)(&x, s, m, qmax, &mut qa);
                    (SIMD128.quantize_codes)(&x, s, m, qmax, &mut qb);
                    assert_eq!(qa, qb, "quantize_codes {label} bits {bits} s {s} m {m}");
                    let (mut da, mut db) = (vec![0f32; x.len()], vec![0f32; x.len()]);
                    (SCALAR.dequantize_codes)(&qa, s, m, &mut da);
                    (SIMD128.dequantize_codes)(&qa, s, m, &mut db);
                    assert_eq!(bits_f32(&da), bits_f32(&db), "dequantize_codes {label} bits {bits}");
                }
            }
        }
    }
}

/// ggml's symmetric codes (Q8_0, Q4_0, Q5_0): the same bytes from both twins, for the
/// reference scale, rounded and extreme inverses (zero, ties, overflow to ±∞ clamps).
#[wasm_bindgen_test]
fn symmetric_codes_match() {
    for (label, x) in cases() {
        let amax = x.iter().fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        for (lo, hi, offset) in [(-127.0f32, 127.0f32, 0.0f32), (-8.0, 7.0, 8.0), (-16.0, 15.0, 16.0)] {
            let reference = if amax > 0.0 { hi / amax } else { 0.0 };
            for inv in [0.0f32, reference, half::f16::from_f32(reference).to_f32(), 2.0, -3.5, 1e30, 1e-30] {
                let (mut a, mut b) = (vec![0u8; x.len()], vec![0u8; x.len()]);
                (SCALAR.symmetric_codes)(&x, inv, lo, hi, offset, &mut a);
                (SIMD128.symmetric_codes)(&x, inv, lo, hi, offset, &mut b);
                assert_eq!(a, b, "symmetric_codes {label} lo {lo} inv {inv}");
                for (&q, &v) in a.iter().zip(&x) {
                    let code = if offset == 0.0 { q as i8 as f32 } else { q as f32 - offset };
                    assert!((lo..=hi).contains(&code), "{label}: code {code} for {v}");
                }
            }
        }
    }
}

/// Bit-exact equality of two f32, NaNs equal to each other (an error is NaN only for params that
/// are never stored, and the NaN payload is not part of the contract).
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Every field of two search results, bit for bit.
fn assert_same_search(a: &Searched, b: &Searched, what: &str) {
    assert_eq!((a.min.to_bits(), a.max.to_bits()), (b.min.to_bits(), b.max.to_bits()), "extrema, {what}");
    assert_eq!(a.base, b.base, "min/max params, {what}");
    assert_eq!(
        a.fit.map(|(s, m)| (s.to_bits(), m.to_bits())),
        b.fit.map(|(s, m)| (s.to_bits(), m.to_bits())),
        "fit, {what}"
    );
    let bits = |h: Option<HalfParams>| h.map(|h| (h.scale_bits, h.min_bits, h.scale.to_bits(), h.min.to_bits()));
    assert_eq!(bits(a.cand), bits(b.cand), "candidate, {what}");
    assert!(same_f32(a.base_err, b.base_err), "min/max error {} vs {}, {what}", a.base_err, b.base_err);
    assert!(same_f32(a.cand_err, b.cand_err), "candidate error {} vs {}, {what}", a.cand_err, b.cand_err);
}

/// Run both four-lane kernels and the one-group scalar reference on `quad`; every lane must
/// agree in every field, and the candidate's codes must be written identically and equal
/// `quantize_codes` for the candidate's params.
fn check_quad(quad: [&[f32]; 4], qmax: f32, what: &str) {
    check_quad_with(
        quad,
        qmax,
        |set, codes| (set.search_exact4)(quad, qmax, codes),
        |k, codes| kernels::scalar::search_exact(quad[k], qmax, codes),
        what,
    );
}

/// [`check_quad`] for any four-lane search: `four(kernel set, codes)` and its one-group scalar
/// reference `one(lane, codes)`.
fn check_quad_with(
    quad: [&[f32]; 4],
    qmax: f32,
    four: impl Fn(&kernels::KernelSet, [&mut [u8]; 4]) -> [Searched; 4],
    one: impl Fn(usize, &mut [u8]) -> Searched,
    what: &str,
) {
    let n = quad[0].len();
    // Code buffers start different, so a code left unwritten shows.
    let mut ca: Vec<Vec<u8>> = (0..4).map(|_| vec![0xaa; n]).collect();
    let mut cb: Vec<Vec<u8>> = (0..4).map(|_| vec![0x55; n]).collect();
    let a = {
        let [w, x, y, z] = &mut ca[..] else { unreachable!() };
        four(&SCALAR, [w, x, y, z])
    };
    let b = {
        let [w, x, y, z] = &mut cb[..] else { unreachable!() };
        four(&SIMD128, [w, x, y, z])
    };
    for k in 0..4 {
        let what = format!("{what}, lane {k}");
        assert_same_search(&a[k], &b[k], &what);
        let mut codes = vec![0u8; n];
        assert_same_search(&a[k], &one(k, &mut codes), &what);
        if let Some(c) = a[k].cand.filter(|c| c.scale.is_finite() && c.min.is_finite()) {
            let mut expect = vec![0u8; n];
            kernels::scalar::quantize_codes(quad[k], c.scale, c.min, qmax, &mut expect);
            assert_eq!(ca[k], expect, "scalar candidate codes, {what}");
            assert_eq!(cb[k], expect, "simd128 candidate codes, {what}");
        }
    }
}

/// The four-lane search against the scalar search, lane by lane: every case in every lane
/// position, with the other lanes holding different data of the same length (so a lane leaking
/// into another shows), and four copies of adversarial cases side by side.
#[wasm_bindgen_test]
fn search_exact4_matches_scalar_search_per_lane() {
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
                check_quad(quad, qmax, &format!("{label} in lane {lane}, bits {bits}"));
                checked += 1;
            }
        }
    }
    // Extremes every lane at once: values near ±f32::MAX (the range overflows), ±65504, a single
    // outlier, alternating signs of zero; then values whose params fall in the f16 subnormals.
    let extremes: Vec<Vec<f32>> = vec![
        (0..64).map(|i| if i % 2 == 0 { 3.0e38 } else { -3.0e38 }).collect(),
        (0..64).map(|i| if i % 2 == 0 { 65504.0 } else { -65504.0 }).collect(),
        (0..64).map(|i| if i == 17 { 1e4 } else { (i as f32) * 1e-3 }).collect(),
        (0..64).map(|i| if i % 2 == 0 { -0.0 } else { 0.0 }).collect(),
        (0..64).map(|i| (i as f32 - 31.5) * 1e-7).collect(),
        (0..64).map(|i| 1e-5 + (i % 3) as f32 * 1e-8).collect(),
        (0..64).map(|i| 7e4 + i as f32).collect(),
        (0..64).map(|i| -1e30 * (i % 2) as f32).collect(),
    ];
    for idx in [[0, 1, 2, 3], [4, 5, 6, 7], [7, 4, 1, 2]] {
        let quad = idx.map(|i| &extremes[i][..]);
        for bits in [2u8, 4, 8] {
            check_quad(quad, ((1u32 << bits) - 1) as f32, &format!("extremes {idx:?}, bits {bits}"));
        }
    }
    assert!(checked > 6000);
}

/// [`check_quad`] for the importance-weighted search with importances `hs`.
fn check_weighted_quad(quad: [&[f32]; 4], hs: [&[f32]; 4], qmax: f32, what: &str) {
    check_quad_with(
        quad,
        qmax,
        |set, codes| (set.weighted_search_exact4)(quad, hs, qmax, codes),
        |k, codes| kernels::scalar::weighted_search_exact(quad[k], hs[k], qmax, codes),
        what,
    );
}

/// The four-lane importance-weighted search against the scalar one, lane by lane: every case in
/// every lane position with importances of several shapes (heavy-tailed, all zero, one hot
/// column, tiny, huge, equal), at 2, 4 and 8 bits.
#[wasm_bindgen_test]
fn weighted_search_exact4_matches_scalar_per_lane() {
    let all = cases();
    let mut rng = common::Rng::new(47);
    let mut checked = 0;
    for (i, (label, x)) in all.iter().enumerate() {
        let n = x.len();
        let others: Vec<Vec<f32>> = (0..3).map(|k| (0..n).map(|_| rng.gauss() * 10f32.powi(k - 1)).collect()).collect();
        let shapes: Vec<Vec<f32>> = vec![
            (0..n).map(|_| (rng.gauss() * 2.0).exp()).collect(),
            vec![0.0; n],
            (0..n).map(|j| if j == n / 2 { 5.0 } else { 0.0 }).collect(),
            (0..n).map(|_| (rng.gauss() * 2.0).exp() * 1e-30).collect(),
            (0..n).map(|_| rng.gauss().abs() * 3e38).collect(),
            vec![1.0; n],
            (0..n).map(|j| if j % 3 == 0 { -0.0 } else { 1e-40 }).collect(),
        ];
        let h = &shapes[i % shapes.len()];
        let other_h: Vec<&[f32]> = (0..3).map(|k| &shapes[(i + k + 1) % shapes.len()][..]).collect();
        for lane in 0..4 {
            let mut groups: Vec<&[f32]> = others.iter().map(|v| &v[..]).collect();
            groups.insert(lane, x);
            let mut hs = other_h.clone();
            hs.insert(lane, h);
            for bits in [2u8, 4, 8] {
                let qmax = ((1u32 << bits) - 1) as f32;
                let quad = [groups[0], groups[1], groups[2], groups[3]];
                check_weighted_quad(
                    quad,
                    [hs[0], hs[1], hs[2], hs[3]],
                    qmax,
                    &format!("{label} in lane {lane}, bits {bits}"),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 6000);
}

/// Column-weighted error sums: identical bits from both twins on every case, with weights of
/// several magnitudes (zero, tiny, huge) and reconstructions near and far from the values.
#[wasm_bindgen_test]
fn column_error_sums_match() {
    let mut rng = common::Rng::new(53);
    for (label, x) in cases() {
        let n = x.len();
        for scale in [0.0f64, 1e-30, 1.0, 1e30] {
            let g: Vec<f64> = (0..n).map(|_| (rng.gauss() as f64).exp() * scale).collect();
            for q in [x.iter().map(|v| v * 0.99 + 1e-3).collect::<Vec<f32>>(), (0..n).map(|_| rng.gauss()).collect()] {
                let (a, b) = ((SCALAR.column_error_sums)(&x, &q, &g), (SIMD128.column_error_sums)(&x, &q, &g));
                assert_eq!(
                    a.map(f64::to_bits),
                    b.map(f64::to_bits),
                    "column_error_sums {label} g×{scale}: {a:?} vs {b:?}"
                );
            }
        }
    }
}

/// Gain matching's group moments, plain and weighted: identical bits from both twins on every
/// case, with codes random or all at one end, shifts inside and far outside the group, weights
/// of several magnitudes and unequal lengths (the shortest one counts).
#[wasm_bindgen_test]
fn group_moments_match() {
    let mut rng = common::Rng::new(59);
    let mut checked = 0;
    for (label, x) in cases() {
        let n = x.len();
        let random: Vec<u8> = (0..n).map(|_| (rng.gauss().abs() * 80.0).min(255.0) as u8).collect();
        for q in [random, vec![255; n], vec![0; n]] {
            for shift in [x[0] as f64, 0.0, -1e30, 3e38] {
                let (a, b) = ((SCALAR.group_moments)(&x, &q, shift), (SIMD128.group_moments)(&x, &q, shift));
                assert_eq!(
                    (a.0.map(f64::to_bits), a.1),
                    (b.0.map(f64::to_bits), b.1),
                    "group_moments {label} shift {shift}"
                );
                let short = &q[..n / 2];
                let (a, b) = ((SCALAR.group_moments)(&x, short, shift), (SIMD128.group_moments)(&x, short, shift));
                assert_eq!(
                    (a.0.map(f64::to_bits), a.1),
                    (b.0.map(f64::to_bits), b.1),
                    "group_moments {label} short codes"
                );
                for scale in [0.0f32, 1e-30, 1.0, 3e38] {
                    let h: Vec<f32> = (0..n).map(|_| rng.gauss().exp() * scale).collect();
                    let (a, b) = (
                        (SCALAR.weighted_group_moments)(&x, &q, &h, shift),
                        (SIMD128.weighted_group_moments)(&x, &q, &h, shift),
                    );
                    assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "weighted_group_moments {label} h×{scale}");
                    let (a, b) = (
                        (SCALAR.weighted_group_moments)(&x, &q, &h[..n / 2], shift),
                        (SIMD128.weighted_group_moments)(&x, &q, &h[..n / 2], shift),
                    );
                    assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "weighted_group_moments {label} short h");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
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
            // Column importances as calibration gives them (the importance-weighted search),
            // some columns never firing.
            let importance: Vec<f32> =
                (0..row_len).map(|j| if j % 11 == 3 { 0.0 } else { (rng.gauss() * 2.0).exp() }).collect();
            for bits in [2u8, 4, 8] {
                for (label, choice) in [
                    ("min/max", ParamChoice::on_weights(false)),
                    ("search", ParamChoice::on_weights(true)),
                    ("importance", ParamChoice::Weighted { importance: &importance, match_gain: true }),
                ] {
                    let layout = Layout::for_shape(&[rows as u64, row_len as u64], group);
                    let run = |reference: bool| {
                        kernels::set_reference_only(reference);
                        let out =
                            quantize_source(src, layout, Width::from_bits(bits).unwrap(), choice).unwrap().unwrap();
                        kernels::set_reference_only(false);
                        out
                    };
                    let (a, b) = (run(true), run(false));
                    assert_eq!(a.0, b.0, "{dtype:?} bits {bits} {label} {rows}x{row_len} g{group}");
                    assert!(a.1.approx_eq(&b.1, 1e-12), "error sums {dtype:?} bits {bits} {label}");
                }
            }
        }
    }
}

#[wasm_bindgen_test]
fn sub_scaled_matches() {
    let mut rng = common::Rng::new(23);
    for (label, u) in cases() {
        for e in [0.0f32, 1.0, -0.75, 3.3e-5, -1.7e4, f32::from_bits(3), rng.gauss()] {
            let w: Vec<f32> = u.iter().rev().map(|v| v * 0.5 - 0.125).collect();
            let (mut a, mut b) = (w.clone(), w.clone());
            (SCALAR.sub_scaled)(&mut a, &u, e);
            (SIMD128.sub_scaled)(&mut b, &u, e);
            assert_eq!(bits_f32(&a), bits_f32(&b), "sub_scaled {label} e={e}");
        }
    }
}

/// The ggml block sums against their scalar twin: every case cut to whole 8-value chunks, at the
/// params the block searches try (stored, refit, zero and huge reciprocals, the code ranges of
/// every block type), and the codes of a full GGUF quantization of each case identical under both.
#[wasm_bindgen_test]
fn ggml_block_sums_match() {
    let mut checked = 0;
    // Importance weights: ordinary, spanning many magnitudes, zeros with a few spikes, subnormal.
    let mut wr = common::Rng::new(23);
    let weights: Vec<Vec<f32>> = vec![
        (0..256).map(|_| wr.gauss().abs()).collect(),
        (0..256).map(|i| 10f32.powi(i % 13 - 6)).collect(),
        (0..256).map(|i| if i % 9 == 0 { 1.0 } else { 0.0 }).collect(),
        (0..256).map(|i| f32::from_bits(1 + i as u32)).collect(),
    ];
    for (label, x) in cases() {
        let n = x.len() / 8 * 8;
        if n == 0 {
            continue;
        }
        let x = &x[..n];
        let (mn, mx) = (SCALAR.min_max)(x);
        for (lo, hi) in [
            (0.0f32, 3.0f32),
            (0.0, 15.0),
            (0.0, 31.0),
            (-4.0, 3.0),
            (-8.0, 7.0),
            (-16.0, 15.0),
            (-32.0, 31.0),
            (-128.0, 127.0),
        ] {
            let span = (mx - mn).max(f32::MIN_POSITIVE);
            for d in [
                span / hi.max(1.0),
                -mx.abs() / lo.min(-1.0),
                1e-30,
                3e38,
                0.0,
                half::f16::from_f32(span / 7.0).to_f32(),
            ] {
                let inv = if d == 0.0 || !(1.0 / d).is_finite() { 0.0 } else { 1.0 / d };
                for m in [0.0, -0.0, mn, half::f16::from_f32(mn).to_f32(), -mx] {
                    let (a, b) =
                        ((SCALAR.block_code_sums)(x, m, inv, lo, hi), (SIMD128.block_code_sums)(x, m, inv, lo, hi));
                    assert_eq!(
                        a.map(f32::to_bits),
                        b.map(f32::to_bits),
                        "block_code_sums {label} [{lo}, {hi}] d {d} m {m}"
                    );
                    let (a, b) =
                        ((SCALAR.block_code_sse)(x, d, m, inv, lo, hi), (SIMD128.block_code_sse)(x, d, m, inv, lo, hi));
                    assert!(same_f32(a, b), "block_code_sse {label} [{lo}, {hi}] d {d} m {m}: {a} vs {b}");
                    for w in &weights {
                        let w = &w[..n];
                        let (a, b) = (
                            (SCALAR.block_weighted_sums)(x, w, m, inv, lo, hi),
                            (SIMD128.block_weighted_sums)(x, w, m, inv, lo, hi),
                        );
                        assert_eq!(
                            a.map(f32::to_bits),
                            b.map(f32::to_bits),
                            "block_weighted_sums {label} [{lo}, {hi}] d {d} m {m}"
                        );
                        let (a, b) = (
                            (SCALAR.block_weighted_sse)(x, w, d, m, inv, lo, hi),
                            (SIMD128.block_weighted_sse)(x, w, d, m, inv, lo, hi),
                        );
                        assert!(same_f32(a, b), "block_weighted_sse {label} [{lo}, {hi}] d {d} m {m}: {a} vs {b}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50_000, "{checked}");
    // Whole blocks through every block type, under each kernel set: identical bytes.
    let mut rng = common::Rng::new(5);
    let mut values: Vec<f32> = (0..4096).map(|_| rng.gauss() * 0.02).collect();
    values[100] = 3.0;
    values[1000..1256].fill(0.3125);
    values[2000..2256].iter_mut().enumerate().for_each(|(i, v)| *v = if i % 2 == 0 { -0.0 } else { 1e-40 });
    let importance: Vec<f32> = (0..values.len()).map(|i| weights[i % 4][i % 256]).collect();
    for ty in arrowquant::quant::ggml::GgmlType::ALL {
        for imp in [None, Some(&importance[..])] {
            let encode = |reference: bool| {
                kernels::set_reference_only(reference);
                let mut out = Vec::new();
                arrowquant::quant::ggml::quantize(ty, &values, imp, &mut out).unwrap();
                kernels::set_reference_only(false);
                out
            };
            assert_eq!(
                encode(true),
                encode(false),
                "{ty:?} (importance: {}) under the scalar and SIMD128 kernels",
                imp.is_some()
            );
        }
    }
}
