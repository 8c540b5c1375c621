//! GGUF output's type choices on the bundled UNet: `layerBitWidths` entries and the
//! `targetSizeMb` budget (policy/gguf_mix.rs, pipeline/gguf/budget.rs).

use std::collections::BTreeMap;

use arrowquant::pipeline::gguf::{quantize_model_gguf, GgufLayer, GgufOptions, GgufReport};
use arrowquant::policy::gguf_mix::GgufMix;

fn ddpm() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/tiny_ddpm_digits.safetensors")).unwrap()
}

fn types(report: &GgufReport) -> BTreeMap<String, String> {
    report.layers.iter().map(|l| (l.name.clone(), l.ggml_type.clone())).collect()
}

#[test]
fn layer_bit_widths_choose_types_and_unmatched_patterns_warn() {
    let mix = GgufMix::parse("Q4_K_M").unwrap();
    let (_, plain) = quantize_model_gguf(&ddpm(), mix, GgufOptions::default()).unwrap();
    let widths = BTreeMap::from([
        ("up_blocks.1.resnets.1.time_emb_proj.weight".to_string(), 8u8),
        ("down_blocks.*.conv*.weight".to_string(), 2),
        ("no.such.layer".to_string(), 16),
    ]);
    let (bytes, r) =
        quantize_model_gguf(&ddpm(), mix, GgufOptions { layer_bit_widths: widths, ..Default::default() }).unwrap();
    let (t, p) = (types(&r), types(&plain));
    assert_eq!(t["up_blocks.1.resnets.1.time_emb_proj.weight"], "Q8_0");
    let conv =
        r.layers.iter().find(|l| l.name.starts_with("down_blocks.") && l.name.ends_with(".conv1.weight")).unwrap();
    assert_eq!(conv.ggml_type, "Q2_K", "{}", conv.reason);
    assert!(conv.reason.contains("layerBitWidths 'down_blocks.*.conv*.weight' = 2"), "{}", conv.reason);
    assert_eq!(t["conv_in.weight"], p["conv_in.weight"]);
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].pattern.as_deref(), Some("no.such.layer"));
    assert_eq!(bytes.len() as u64, r.output_bytes);
}

#[test]
fn target_size_moves_the_largest_tensors_down_until_the_file_fits() {
    let mix = GgufMix::parse("Q8_0").unwrap();
    let (_, plain) = quantize_model_gguf(&ddpm(), mix, GgufOptions::default()).unwrap();
    let full = plain.output_bytes as f64 / 1048576.0;
    let target = full * 0.75;
    let (bytes, r) =
        quantize_model_gguf(&ddpm(), mix, GgufOptions { target_size_mb: Some(target), ..Default::default() }).unwrap();
    assert!((r.output_bytes as f64) <= target * 1048576.0, "{} > {target} MiB", r.output_bytes);
    assert_eq!(bytes.len() as u64, r.output_bytes);
    let moved: Vec<&GgufLayer> = r.layers.iter().filter(|l| l.reason.contains("to fit targetSizeMb")).collect();
    assert!(!moved.is_empty());
    // Sensitive layers move only when nothing else can: here the others sufficed.
    assert!(moved.iter().all(|l| !l.name.starts_with("conv_in") && !l.name.starts_with("conv_out")));
    // Vectors and small tensors are never moved.
    assert!(r.layers.iter().filter(|l| l.shape.len() <= 1).all(|l| !l.reason.contains("targetSizeMb")));
    // A budget under what the smallest types allow is an error naming the field and the floor.
    let e = quantize_model_gguf(&ddpm(), mix, GgufOptions { target_size_mb: Some(0.01), ..Default::default() })
        .unwrap_err();
    assert_eq!(e.code(), "E_CONFIG");
    assert!(e.to_string().contains("targetSizeMb") && e.to_string().contains("at least"), "{e}");
    // A budget the mix already meets changes nothing.
    let (same, _) =
        quantize_model_gguf(&ddpm(), mix, GgufOptions { target_size_mb: Some(full * 2.0), ..Default::default() })
            .unwrap();
    let (orig, _) = quantize_model_gguf(&ddpm(), mix, GgufOptions::default()).unwrap();
    assert_eq!(same, orig);
}
