//! Bad input never panics, never produces a half-written file, and leaves the process usable:
//! each case returns the documented error code with a message naming the tensor or field.
mod common;

use arrowquant::pipeline::quantize_model;
use arrowquant::policy::config::parse_config_str;
use arrowquant::{ModelQuantizer, QuantConfig, QuantizedFile};
use common::{f32_bytes, safetensors_file};

fn run(bytes: &[u8]) -> arrowquant::Result<(Vec<u8>, arrowquant::ModelReport)> {
    quantize_model(bytes, QuantConfig::base_mode(), None, || 0.0, &mut |_| true)
}

fn good_model() -> Vec<u8> {
    let w: Vec<f32> = (0..64 * 64).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
    safetensors_file(&[
        ("layer.weight", "F32", vec![64, 64], f32_bytes(&w)),
        ("layer.bias", "F32", vec![4], f32_bytes(&[1.0; 4])),
    ])
}

fn expect(bytes: &[u8], code: &str, needle: &str) {
    let err = run(bytes).unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(err.to_string().contains(needle), "'{err}' should mention '{needle}'");
}

#[test]
fn container_errors() {
    let good = good_model();
    // truncated file: cut inside the data section
    expect(&good[..good.len() - 10], "E_SAFETENSORS", "ends at byte");
    // truncated inside the header
    expect(&good[..20], "E_SAFETENSORS", "truncated, or not a safetensors file");
    expect(&good[..5], "E_SAFETENSORS", "too short");
    // header length larger than the file
    let mut lying = good.clone();
    lying[..8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    expect(&lying, "E_SAFETENSORS", "larger than the file");
    // header length absurd
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect(&huge, "E_SAFETENSORS", "exceeds");
    // not JSON
    let mut notjson = 8u64.to_le_bytes().to_vec();
    notjson.extend_from_slice(b"{{{{{{{{");
    expect(&notjson, "E_SAFETENSORS", "not valid JSON");
    // offsets out of range
    let bad = safetensors_file(&[("w", "F32", vec![2, 2], f32_bytes(&[1.0; 4]))]);
    let text = String::from_utf8_lossy(&bad).replace("[0,16]", "[0,99]");
    expect(text.as_bytes(), "E_SAFETENSORS", "'w'");
    // overlapping tensors
    let ov = safetensors_file(&[
        ("a", "F32", vec![2, 2], f32_bytes(&[1.0; 4])),
        ("b", "F32", vec![2, 2], f32_bytes(&[1.0; 4])),
    ]);
    let text = String::from_utf8_lossy(&ov).replace("[16,32]", "[8,24] ");
    expect(text.as_bytes(), "E_SAFETENSORS", "overlap");
    // shape × dtype ≠ byte length
    let mism = safetensors_file(&[("w", "F32", vec![3, 2], f32_bytes(&[1.0; 4]))]);
    expect(&mism, "E_SAFETENSORS", "24 bytes, but data_offsets span 16");
    // unknown dtype
    let unk = safetensors_file(&[("w", "F4", vec![2, 2], vec![0u8; 2])]);
    expect(&unk, "E_DTYPE", "unknown dtype 'F4'");
    // zero-size tensor
    let zero = safetensors_file(&[("w", "F32", vec![0, 4], vec![])]);
    expect(&zero, "E_SAFETENSORS", "zero elements");
    // empty model
    let empty = safetensors_file(&[]);
    expect(&empty, "E_SAFETENSORS", "no tensors");
}

#[test]
fn nonfinite_weights_name_tensor_and_index() {
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf"), (f32::NEG_INFINITY, "-inf")] {
        let mut w = vec![0.5f32; 64 * 64];
        w[1234] = bad;
        let m = safetensors_file(&[("blk.0.weight", "F32", vec![64, 64], f32_bytes(&w))]);
        let err = run(&m).unwrap_err();
        assert_eq!(err.code(), "E_NONFINITE");
        let msg = err.to_string();
        assert!(msg.contains("blk.0.weight") && msg.contains("1234") && msg.contains(shown), "{msg}");
    }
}

#[test]
fn streaming_misuse_and_recovery() {
    let good = good_model();
    let mut q = ModelQuantizer::new(QuantConfig::base_mode()).unwrap();
    assert_eq!(q.add_tensor("layer.weight", &[]).unwrap_err().code(), "E_STATE");
    assert_eq!(q.finish().unwrap_err().code(), "E_STATE");
    let header = q.begin(&good, Some(good.len() as u64)).unwrap().clone();
    assert_eq!(q.add_tensor("nope", &[]).unwrap_err().code(), "E_STATE");
    let t = header.find("layer.bias").unwrap();
    let (a, b) = header.file_range(t);
    q.add_tensor("layer.bias", &good[a as usize..b as usize]).unwrap();
    assert_eq!(q.add_tensor("layer.bias", &good[a as usize..b as usize]).unwrap_err().code(), "E_STATE");
    // finishing with a tensor missing fails and names it
    let err = q.finish().unwrap_err();
    assert!(err.to_string().contains("layer.weight"), "{err}");
    // a failed run refuses further work instead of producing a broken file
    assert_eq!(q.take_output(), Vec::<u8>::new());
    assert_eq!(q.finish().unwrap_err().code(), "E_STATE");
    // wrong byte count for a tensor
    let mut q2 = ModelQuantizer::new(QuantConfig::base_mode()).unwrap();
    q2.begin(&good, None).unwrap();
    assert_eq!(q2.add_tensor("layer.bias", &[0u8; 3]).unwrap_err().code(), "E_SAFETENSORS");
    // and the process keeps working: a fresh run on good input succeeds
    let (parquet, report) = run(&good).unwrap();
    assert_eq!(report.output_bytes, parquet.len() as u64);
}

#[test]
fn fail_fast_and_fallback() {
    // Heavy-tailed values: 2-bit cannot reach cosine 0.9999, 8-bit can.
    let mut rng = common::Rng::new(7);
    let w: Vec<f32> = (0..128 * 256).map(|_| rng.gauss().powi(3)).collect();
    let m = safetensors_file(&[("x.weight", "F32", vec![128, 256], f32_bytes(&w))]);
    let cfg = parse_config_str(r#"{"bitWidth":2,"minAccuracy":0.9999,"groupSize":64}"#).unwrap();
    let (_, report) = quantize_model(&m, cfg, None, || 0.0, &mut |_| true).unwrap();
    let l = &report.layers[0];
    assert_eq!((l.requested_bits, l.bits), (Some(2), Some(8)), "{}", l.reason);
    assert!(l.reason.contains("2-bit cosine") && l.reason.contains("4-bit cosine"), "{}", l.reason);
    assert!(l.cosine.unwrap() >= 0.9999);
    // nothing reaches 1.0 except f16 … and failFast stops the run naming the layer
    let cfg = parse_config_str(r#"{"bitWidth":2,"minAccuracy":1.0,"failFast":true}"#).unwrap();
    let err = quantize_model(&m, cfg, None, || 0.0, &mut |_| true).unwrap_err();
    assert_eq!(err.code(), "E_ACCURACY");
    assert!(err.to_string().contains("x.weight"), "{err}");
    // without failFast the layer is kept as f16
    let cfg = parse_config_str(r#"{"bitWidth":2,"minAccuracy":1.0}"#).unwrap();
    let (_, report) = quantize_model(&m, cfg, None, || 0.0, &mut |_| true).unwrap();
    assert_eq!(report.layers[0].storage, arrowquant::Storage::F16);
    assert_eq!(report.layer_counts.f16, 1);
}

#[test]
fn huge_values_are_stored_raw_not_clipped() {
    let mut w = vec![0.25f32; 32 * 32];
    w[5] = 1.0e6;
    let m = safetensors_file(&[("big.weight", "F32", vec![32, 32], f32_bytes(&w))]);
    let (parquet, report) = run(&m).unwrap();
    assert_eq!(report.layers[0].storage, arrowquant::Storage::Raw);
    let f = QuantizedFile::open(parquet).unwrap();
    assert_eq!(f.dequantize("big.weight").unwrap(), w);
}

#[test]
fn parquet_that_is_not_ours_or_truncated() {
    let (parquet, _) = run(&good_model()).unwrap();
    for cut in [0, 3, 100, parquet.len() / 2, parquet.len() - 1] {
        let err = QuantizedFile::open(parquet[..cut].to_vec()).unwrap_err();
        assert_eq!(err.code(), "E_PARQUET", "cut at {cut}: {err}");
    }
    // Damage anywhere — every byte of the file flipped in turn — is refused with E_PARQUET, or
    // touched a byte the reader does not use (page indexes, created_by): then every tensor, value
    // and metadata entry reads back exactly as written. Never a silently different result.
    let good = QuantizedFile::open(parquet.clone()).unwrap();
    let (mut refused, mut harmless) = (0, 0);
    for at in 0..parquet.len() {
        for flip in [0x01u8, 0x5a, 0x80] {
            let mut damaged = parquet.clone();
            damaged[at] ^= flip;
            match QuantizedFile::open(damaged) {
                Err(e) => {
                    assert_eq!(e.code(), "E_PARQUET", "byte {at} ^ {flip:#x}: {e}");
                    refused += 1;
                }
                Ok(f) => {
                    assert_eq!(f.rows, good.rows, "byte {at} ^ {flip:#x} was accepted with other rows");
                    assert_eq!(
                        (&f.format_version, &f.config_json, &f.source_metadata, &f.calibration_json),
                        (&good.format_version, &good.config_json, &good.source_metadata, &good.calibration_json),
                        "byte {at} ^ {flip:#x} was accepted with other metadata"
                    );
                    harmless += 1;
                }
            }
        }
    }
    assert!(refused > harmless, "{refused} refused, {harmless} harmless");
    // a valid Parquet file that is not ours
    let (other, _) = {
        use arrow_array::{Int32Array, RecordBatch};
        let batch =
            RecordBatch::try_from_iter([("x", std::sync::Arc::new(Int32Array::from(vec![1, 2])) as _)]).unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        (buf, ())
    };
    let err = QuantizedFile::open(other).unwrap_err();
    assert_eq!(err.code(), "E_PARQUET");
    assert!(err.to_string().contains("not an arrowquant file"), "{err}");
}

#[test]
fn invalid_config_values() {
    for (cfg, field) in [
        (r#"{"bitWidth":3}"#, "bitWidth"),
        (r#"{"groupSize":48}"#, "groupSize"),
        (r#"{"minAccuracy":-0.1}"#, "minAccuracy"),
        (r#"{"numTimeGroups":101}"#, "numTimeGroups"),
        (r#"{"scaleSearch":"maybe"}"#, "scaleSearch"),
    ] {
        let err = parse_config_str(cfg).unwrap_err();
        assert_eq!((err.code(), err.field()), ("E_CONFIG", Some(field)), "{err}");
    }
}

#[test]
fn parquet_footer_lengths_that_lie() {
    let (parquet, _) = run(&good_model()).unwrap();
    let n = parquet.len();
    for len in [u32::MAX, i32::MAX as u32, (n - 8) as u32, (n - 7) as u32, n as u32, 0, 1] {
        let mut damaged = parquet.clone();
        damaged[n - 8..n - 4].copy_from_slice(&len.to_le_bytes());
        let err = arrowquant::QuantizedFile::open(damaged).unwrap_err();
        assert_eq!(err.code(), "E_PARQUET", "footer length {len:#x}: {err}");
    }
}

/// Inputs the fuzzers (`make fuzz`) found to crash a reader, kept as regressions: each is refused
/// with its documented code.
#[test]
fn fuzzer_findings_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let code = if name.starts_with("parquet-") {
            QuantizedFile::open(bytes).err().map(|e| e.code())
        } else if name.starts_with("safetensors-") {
            run(&bytes).err().map(|e| e.code())
        } else {
            arrowquant::diffusion::calibration::Calibration::from_bytes(&bytes).err().map(|e| e.code())
        };
        assert!(code.is_some_and(|c| c.starts_with("E_")), "{name}: {code:?}");
        seen += 1;
    }
    assert!(seen > 0);
}

/// Page headers whose declared sizes parquet-rs would trust (allocating them, or skipping a list
/// of 2^31 booleans element by element) are refused by the walk over the headers, naming the page.
#[test]
fn page_headers_that_lie_about_sizes_are_refused_before_parsing() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz/parquet-page-header-declared-sizes.parquet");
    let err = QuantizedFile::open(std::fs::read(path).unwrap()).unwrap_err();
    assert_eq!(err.code(), "E_PARQUET");
    let msg = err.to_string();
    assert!(msg.contains("the page at byte") || msg.contains("a page header at byte"), "{msg}");
}
