//! `arrowquant convert`: GGUF ⇄ Parquet without re-quantizing (pipeline/convert.rs). Every value
//! must decode to the same bits in both containers, both ways, and what has no exact form is
//! refused naming the tensor.

use arrowquant::format::gguf::reader::GgufFile;
use arrowquant::pipeline::convert::{gguf_to_parquet, parquet_to_gguf};
use arrowquant::pipeline::gguf::quantize_model_gguf;
use arrowquant::pipeline::{default_clock, quantize_model};
use arrowquant::policy::config::parse_config_str;
use arrowquant::policy::gguf_mix::GgufMix;
use arrowquant::{QuantizedFile, Storage};

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every mix on the bundled UNet (reshaped convs, F32 biases, Q-types of both block sizes):
/// GGUF → Parquet decodes to the GGUF's values, and back to GGUF gives the file we wrote, byte
/// for byte.
#[test]
fn gguf_to_parquet_and_back_keeps_every_byte() {
    for mix in ["Q4_K_M", "Q3_K_S", "Q5_1", "Q2_K", "Q8_0", "BF16"] {
        let (gguf, _) = quantize_model_gguf(
            &sample("tiny_ddpm_digits.safetensors"),
            GgufMix::parse(mix).unwrap(),
            Default::default(),
        )
        .unwrap();
        let source_bytes = gguf.clone();
        let source = GgufFile::open(gguf).unwrap();
        let (pieces, len) = gguf_to_parquet(&source).unwrap();
        let parquet = pieces.concat();
        assert_eq!(parquet.len() as u64, len);
        let file = QuantizedFile::open(parquet).unwrap();
        assert_eq!(file.rows.len(), source.index.tensors.len());
        for (row, t) in file.rows.iter().zip(&source.index.tensors) {
            assert_eq!((&row.name, &row.shape), (&t.name, &t.shape));
            assert_eq!(
                bits(&file.dequantize(&row.name).unwrap()),
                bits(&source.dequantize(&t.name).unwrap()),
                "{mix} {}",
                t.name
            );
            if t.ty.is_quantized() {
                assert_eq!(row.stored.storage(), Storage::Blocks);
            }
        }
        let again = parquet_to_gguf(&file).unwrap().concat();
        assert!(again == source_bytes, "{mix}: the GGUF made back differs from ours");
        let back = GgufFile::open(again).unwrap();
        for (a, b) in source.index.header.tensors.iter().zip(&back.index.header.tensors) {
            assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty), "{mix}");
            assert_eq!(source.raw(&a.name).unwrap(), back.raw(&b.name).unwrap(), "{mix} {}", a.name);
        }
        for key in ["general.architecture", "general.file_type", "arrowquant.ggml_type"] {
            assert_eq!(source.index.header.get(key), back.index.header.get(key), "{mix} {key}");
        }
        let reshaped = source.index.header.kv.iter().filter(|(k, _)| k.starts_with("comfy.gguf.orig_shape."));
        for (k, v) in reshaped {
            assert_eq!(back.index.header.get(k), Some(v), "{mix} {k}");
        }
    }
}

/// Our 4-bit codes in groups of 32 are Q4_1's arithmetic: the GGUF holds them as Q4_1 blocks
/// that decode to the Parquet file's values exactly; other widths and groupings, and equalized
/// weights, have no exact GGUF form and are refused naming the tensor.
#[test]
fn parquet_rows_become_gguf_tensors_only_when_exact() {
    let ddpm = sample("tiny_ddpm_digits.safetensors");
    let run = |cfg: &str| {
        let cfg = parse_config_str(cfg).unwrap();
        let (bytes, _) = quantize_model(&ddpm, cfg, None, default_clock, &mut |_| true).unwrap();
        QuantizedFile::open(bytes).unwrap()
    };
    // conv_in has rows of 9 values (one input channel): not whole blocks, so kept at f16.
    let file = run(
        r#"{"bitWidth":4,"groupSize":32,"minAccuracy":0,"skipSensitiveLayers":false,"layerBitWidths":{"conv_in.weight":16}}"#,
    );
    let gguf = GgufFile::open(parquet_to_gguf(&file).unwrap().concat()).unwrap();
    let mut q4_1 = 0;
    for row in &file.rows {
        let t = gguf.index.tensor(&row.name).unwrap();
        assert_eq!(t.shape, row.shape);
        q4_1 += usize::from(t.ty.name() == "Q4_1");
        assert_eq!(
            bits(&gguf.dequantize(&row.name).unwrap()),
            bits(&file.dequantize(&row.name).unwrap()),
            "{}",
            row.name
        );
    }
    assert!(q4_1 >= 5, "{q4_1} tensors as Q4_1");
    for cfg in [r#"{"bitWidth":4,"groupSize":64,"minAccuracy":0}"#, r#"{"bitWidth":2,"groupSize":32,"minAccuracy":0}"#]
    {
        let err = parquet_to_gguf(&run(cfg)).unwrap_err();
        assert_eq!(err.code(), "E_CONVERT", "{err}");
        assert!(err.tensor().is_some() && err.to_string().contains("-o model.gguf"), "{err}");
    }
}

/// A converted file says so, keeps the GGUF's strings, and its blocks rows are checked like any
/// other: a block type's data must be whole blocks of it.
#[test]
fn converted_files_carry_their_origin_and_blocks_rows_are_checked() {
    let (gguf, _) = quantize_model_gguf(
        &sample("tiny_ddpm_digits.safetensors"),
        GgufMix::parse("Q4_0").unwrap(),
        Default::default(),
    )
    .unwrap();
    let source = GgufFile::open(gguf).unwrap();
    let file = QuantizedFile::open(gguf_to_parquet(&source).unwrap().0.concat()).unwrap();
    assert_eq!(file.config_json, "null");
    assert_eq!(file.source_metadata.get("gguf.arrowquant.ggml_type").map(String::as_str), Some("Q4_0"));
    let row = file.rows.iter().find(|r| r.stored.storage() == Storage::Blocks).unwrap();
    assert!(row.metrics.is_none() && row.reason.contains("Q4_0"));
    // A blocks row with a byte too few: refused on open, naming the tensor.
    let mut damaged = file.rows.clone();
    let victim = damaged.iter_mut().find(|r| r.stored.storage() == Storage::Blocks).unwrap();
    victim.data.pop();
    victim.data_crc32 = crc32fast::hash(&victim.data);
    let name = victim.name.clone();
    let mut w = arrowquant::format::parquet::writer::TensorWriter::new(
        vec![
            ("arrowquant.format".into(), "arrowquant-v2-extended".into()),
            ("arrowquant.format_version".into(), "2.4".into()),
        ],
        "image",
    )
    .unwrap();
    let mut out = Vec::new();
    for r in damaged {
        w.write(r).unwrap();
        out.extend(w.take_output());
    }
    out.extend(w.finish(Vec::new()).unwrap().0);
    let err = QuantizedFile::open(out.concat()).unwrap_err();
    assert!(err.to_string().contains(&name) && err.to_string().contains("expected"), "{err}");
}
