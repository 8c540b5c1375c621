//! End-to-end on the real weights in the repository: safetensors → Parquet → reader, native.

use arrowquant::format::parquet::Stored;
use arrowquant::format::safetensors::parse_header;
use arrowquant::pipeline::{default_clock, quantize_model};
use arrowquant::policy::config::parse_config_str;
use arrowquant::quant::layout::Layout;
use arrowquant::quant::tensor::{quantize_source, ParamChoice, Source, BLOCK_ELEMS};
use arrowquant::quant::width::Width;
use arrowquant::quant::ErrorSums;
use arrowquant::{Dtype, ModelQuantizer, QuantizedFile, Storage};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const MODELS: &[&str] = &[
    "samples/rivagan_f32.safetensors",
    "tests/data/rivagan_f16.safetensors",
    "tests/data/rivagan_bf16.safetensors",
    "tests/data/minilm_l6_bf16_subset.safetensors",
];

#[test]
fn header_parser_agrees_with_the_safetensors_crate() {
    for m in MODELS {
        let bytes = read(m);
        let ours = parse_header(&bytes, Some(bytes.len() as u64)).unwrap();
        let theirs = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(ours.tensors.len(), theirs.len(), "{m}");
        for t in &ours.tensors {
            let v = theirs.tensor(&t.name).unwrap();
            assert_eq!(v.shape().iter().map(|&d| d as u64).collect::<Vec<_>>(), t.shape, "{m} {}", t.name);
            let (a, b) = ours.file_range(t);
            assert_eq!(&bytes[a as usize..b as usize], v.data(), "{m} {}", t.name);
            assert_eq!(format!("{:?}", v.dtype()), t.dtype.name(), "{m} {}", t.name);
        }
    }
}

#[test]
fn roundtrip_is_bit_exact_with_what_validation_measured() {
    for m in MODELS {
        let bytes = read(m);
        for cfg in
            [r#"{"profile":"edge","minAccuracy":0}"#, r#"{"profile":"local"}"#, r#"{"profile":"cloud","groupSize":32}"#]
        {
            let cfg = parse_config_str(cfg).unwrap();
            let mut calls = 0;
            let (parquet, report) = quantize_model(&bytes, cfg.clone(), None, default_clock, &mut |_| {
                calls += 1;
                true
            })
            .unwrap();
            let header = parse_header(&bytes, None).unwrap();
            assert_eq!(calls, header.tensors.len());
            assert_eq!(report.output_bytes, parquet.len() as u64);
            assert_eq!(report.source_bytes, header.tensor_bytes());
            let file = QuantizedFile::open(parquet).unwrap();
            assert_eq!(file.rows.len(), header.tensors.len());
            for (layer, row) in report.layers.iter().zip(&file.rows) {
                assert_eq!(layer.name, row.name);
                let info = header.find(&row.name).unwrap();
                let (a, b) = header.file_range(info);
                let src = &bytes[a as usize..b as usize];
                match row.stored.storage() {
                    Storage::Raw => assert_eq!(row.data, src),
                    _ => {
                        let mut orig = vec![0f32; info.numel() as usize];
                        arrowquant::quant::dtype::decode_f32(info.dtype, src, &mut orig);
                        let back = file.dequantize(&row.name).unwrap();
                        let mut sums = ErrorSums::default();
                        sums.add(&orig, &back);
                        // Equal up to f64 summation order: group rows are summed per group,
                        // ggml block rows (the edge profile's `codec: 'auto'`) per encoder chunk
                        // of whole blocks, a longer reordering of the same terms; max_abs is exact.
                        let rel = if row.stored.storage() == Storage::Blocks { 1e-10 } else { 1e-12 };
                        assert!(
                            (sums.cosine() - layer.cosine.unwrap()).abs() <= rel * sums.cosine().abs(),
                            "{m} {}",
                            row.name
                        );
                        assert!(
                            sums.snr_db() == layer.snr_db.unwrap()
                                || (sums.snr_db() - layer.snr_db.unwrap()).abs() <= rel * sums.snr_db().abs(),
                            "{m} {}",
                            row.name
                        );
                        assert_eq!(Some(sums.max_abs), layer.max_abs_error, "{m} {}", row.name);
                        if cfg.min_accuracy > 0.0 {
                            assert!(sums.cosine() >= cfg.min_accuracy, "{m} {} below minAccuracy", row.name);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn packed_sizes_are_real() {
    let bytes = read("tests/data/minilm_l6_bf16_subset.safetensors");
    for bits in [2u8, 4, 8] {
        let cfg = parse_config_str(&format!(r#"{{"bitWidth":{bits},"groupSize":64,"minAccuracy":0}}"#)).unwrap();
        let (parquet, report) = quantize_model(&bytes, cfg, None, default_clock, &mut |_| true).unwrap();
        let file = QuantizedFile::open(parquet).unwrap();
        let q = file.row("encoder.layer.0.intermediate.dense.weight").unwrap();
        let Stored::Quantized { width, group_size, scales, mins } = &q.stored else { panic!("not quantized") };
        assert_eq!((width.bits(), *group_size), (bits, 64));
        assert_eq!(q.data.len(), 1536 * 384 * bits as usize / 8);
        assert_eq!((scales.len(), mins.len()), (1536 * 384 / 64, 1536 * 384 / 64));
        assert!(report.compression_ratio > 1.0);
    }
}

/// Streamed output, tensor by tensor on borrowed or owned bytes (the owned input is dropped
/// before its rows are encoded) or range by range, equals the whole-buffer file, and row groups
/// stream out before `finish`.
#[test]
fn streaming_output_equals_whole_buffer_output() {
    let bytes = read("tests/data/minilm_l6_bf16_subset.safetensors");
    let cfg = parse_config_str(r#"{"profile":"local"}"#).unwrap();
    let (whole, _) = quantize_model(&bytes, cfg.clone(), None, || 0.0, &mut |_| true).unwrap();
    for row_group_bytes in [8 << 20, 64 << 10] {
        let mut first: Option<Vec<u8>> = None;
        for (mode, pool) in [("borrowed", true), ("owned", true), ("range", true), ("owned", false), ("range", false)] {
            // Without a pool the rows are written at the end of each call (after the owned
            // input is dropped); with one, during the next call. The bytes are the same.
            arrowquant::parallel::set_enabled(pool);
            let mut q = ModelQuantizer::with_clock(cfg.clone(), || 0.0).unwrap();
            q.set_row_group_bytes(row_group_bytes);
            let prefix = arrowquant::format::safetensors::header_size(&bytes[..8]).unwrap() as usize;
            let header = q.begin(&bytes[..prefix], Some(bytes.len() as u64)).unwrap().clone();
            let mut out = Vec::new();
            let mut chunks = 0;
            for t in &header.tensors {
                let (a, b) = header.file_range(t);
                let piece = &bytes[a as usize..b as usize];
                match mode {
                    "borrowed" => drop(q.add_tensor(&t.name, piece).unwrap()),
                    "owned" => drop(q.add_tensor_owned(&t.name, piece.to_vec()).unwrap()),
                    _ => assert_eq!(q.add_range_owned(a, piece.to_vec()).unwrap().len(), 1),
                }
                let c = q.take_output();
                chunks += !c.is_empty() as usize;
                out.extend(c);
            }
            let (rest, _) = q.finish().unwrap();
            arrowquant::parallel::set_enabled(true);
            out.extend(rest);
            if row_group_bytes == 8 << 20 {
                assert_eq!(out, whole, "{mode}");
            } else {
                assert!(chunks >= 4, "{mode}: 64 KiB row groups must stream out before finish ({chunks} chunks)");
                let a = QuantizedFile::open(out.clone()).unwrap();
                let b = QuantizedFile::open(whole.clone()).unwrap();
                assert_eq!(a.rows, b.rows);
                match &first {
                    None => first = Some(out),
                    Some(f) => assert_eq!(&out, f, "{mode}"),
                }
            }
        }
    }
}

#[test]
fn export_to_safetensors() {
    let bytes = read("samples/rivagan_f32.safetensors");
    let (parquet, _) =
        quantize_model(&bytes, parse_config_str("{}").unwrap(), None, default_clock, &mut |_| true).unwrap();
    let file = QuantizedFile::open(parquet).unwrap();
    for dt in [Dtype::F32, Dtype::F16] {
        let mut out = file.export_header(dt).unwrap();
        for r in &file.rows {
            out.extend(file.export_tensor(&r.name, dt).unwrap());
        }
        let st = safetensors::SafeTensors::deserialize(&out).unwrap();
        assert_eq!(st.len(), file.rows.len());
        let name = "encoder._conv.0.weight";
        let v = st.tensor(name).unwrap();
        let back = file.dequantize(name).unwrap();
        if dt == Dtype::F32 {
            let vals: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(vals, back);
        } else {
            assert_eq!(v.data().len(), back.len() * 2);
        }
    }
}

#[test]
fn add_tensors_in_one_batch_checks_every_name_first() {
    let bytes = read("tests/data/minilm_l6_bf16_subset.safetensors");
    let cfg = parse_config_str(r#"{"profile":"local"}"#).unwrap();
    let prefix = arrowquant::format::safetensors::header_size(&bytes[..8]).unwrap() as usize;
    let mut q = ModelQuantizer::with_clock(cfg, || 0.0).unwrap();
    let header = q.begin(&bytes[..prefix], Some(bytes.len() as u64)).unwrap().clone();
    let slice = |i: usize| {
        let (a, b) = header.file_range(&header.tensors[i]);
        (header.tensors[i].name.as_str(), &bytes[a as usize..b as usize])
    };
    // A name twice in one batch, and an unknown name: refused before anything is written.
    let err = q.add_tensors(&[slice(0), slice(1), slice(0)]).unwrap_err();
    assert_eq!(err.code(), "E_STATE");
    assert!(err.to_string().contains(&header.tensors[0].name), "{err}");
    assert_eq!(q.add_tensors(&[slice(0), ("no.such.tensor", &bytes[..4])]).unwrap_err().code(), "E_STATE");
    assert_eq!(q.progress("").done, 0, "a refused batch adds nothing");
    // Then a real batch: one report per tensor, in order.
    let reports = q.add_tensors(&[slice(0), slice(1), slice(2)]).unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [slice(0).0, slice(1).0, slice(2).0]);
    assert_eq!(q.progress("").done, 3);
    assert_eq!(q.add_tensor(slice(1).0, slice(1).1).unwrap_err().code(), "E_STATE");
}

/// An F32 source read in place (4-aligned bytes) and one decoded from an unaligned copy give
/// the same codes, params and sums; a non-finite value is refused in both, named by index.
#[test]
fn aligned_f32_read_in_place_matches_the_decoded_copy() {
    let n = 3 * BLOCK_ELEMS + 4096 + 77;
    let values: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.377).sin() * (1.0 + (i % 11) as f32)).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let (aligned, unaligned) = (&bytes[..], &shifted[1..]);
    assert!(
        bytemuck::try_cast_slice::<u8, f32>(aligned).is_ok() && bytemuck::try_cast_slice::<u8, f32>(unaligned).is_err()
    );
    let layout = Layout::for_shape(&[n as u64], 64);
    for choice in [ParamChoice::MinMax, ParamChoice::on_weights(true)] {
        let run = |b| quantize_source(Source { name: "w", dtype: Dtype::F32, bytes: b }, layout, Width::W4, choice);
        let (ta, sa) = run(aligned).unwrap().unwrap();
        let (tu, su) = run(unaligned).unwrap().unwrap();
        assert_eq!(ta, tu);
        assert!(sa.approx_eq(&su, 0.0));
    }
    let mut bad = bytes.clone();
    let at = 2 * BLOCK_ELEMS + 5;
    bad[at * 4..at * 4 + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut bad_shifted = vec![0u8; bad.len() + 1];
    bad_shifted[1..].copy_from_slice(&bad);
    for b in [&bad[..], &bad_shifted[1..]] {
        let err =
            quantize_source(Source { name: "w", dtype: Dtype::F32, bytes: b }, layout, Width::W4, ParamChoice::MinMax)
                .unwrap_err()
                .to_string();
        assert!(err.contains(&at.to_string()), "{err}");
    }
}
