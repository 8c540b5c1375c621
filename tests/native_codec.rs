//! `codec`: quantized layers stored as ggml block types (pipeline/codec.rs). With `ggml` every
//! layer that can be is blocks of its width's type; with `auto` a layer is blocks only where they
//! take no more bytes and store it with less error where it is judged — checked here against the
//! groups-only run of the same config.

use arrowquant::pipeline::{default_clock, quantize_model};
use arrowquant::policy::config::parse_config_str;
use arrowquant::policy::switches::Codec;
use arrowquant::quant::ggml;
use arrowquant::{QuantizedFile, Storage};

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn run(model: &[u8], cfg: &str, calibration: bool) -> QuantizedFile {
    let cal = calibration.then(|| {
        arrowquant::diffusion::calibration::Calibration::from_bytes(&sample("tiny_ddpm_digits.calib.safetensors"))
            .unwrap()
    });
    let (bytes, _) = quantize_model(model, parse_config_str(cfg).unwrap(), cal, default_clock, &mut |_| true).unwrap();
    QuantizedFile::open(bytes).unwrap()
}

#[test]
fn codec_ggml_stores_blocks_of_the_width_and_measures_them() {
    let model = sample("tiny_ddpm_digits.safetensors");
    let file = run(
        &model,
        r#"{"bitWidth":4,"groupSize":64,"minAccuracy":0,"codec":"ggml","skipSensitiveLayers":false}"#,
        false,
    );
    let header = arrowquant::format::safetensors::parse_header(&model, Some(model.len() as u64)).unwrap();
    let mut blocks = 0;
    for row in &file.rows {
        if row.stored.storage() != Storage::Blocks {
            continue;
        }
        blocks += 1;
        let ty = row.stored.block_type().unwrap();
        assert_eq!(ty.name(), "Q4_K", "{}", row.name);
        let n = row.numel() as usize;
        let back = ggml::dequantize(ty, &row.data, n).unwrap();
        assert_eq!(file.dequantize(&row.name).unwrap(), back);
        // The metrics are of these values against the source.
        let t = header.tensors.iter().find(|t| t.name == row.name).unwrap();
        let (start, end) = header.file_range(t);
        let src = &model[start as usize..end as usize];
        let w: Vec<f32> = src.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
        let (sig, err) = w
            .iter()
            .zip(&back)
            .fold((0f64, 0f64), |(s, e), (a, b)| (s + (*a as f64).powi(2), e + ((*a - *b) as f64).powi(2)));
        let snr = row.metrics.unwrap().snr_db;
        assert!((10.0 * (sig / err).log10() - snr).abs() < 1e-9, "{}: {snr}", row.name);
    }
    assert!(blocks >= 45, "{blocks} layers as blocks");
}

/// With least-squares params (`matchGain: off`) `auto` compares at the layer's output (the
/// calibration's Gram matrices); with matched row gains it keeps every layer in groups.
#[test]
fn codec_auto_takes_blocks_only_where_they_are_better_at_the_layer_output() {
    let model = sample("tiny_ddpm_digits.safetensors");
    let cfg = |codec: &str, gain: &str| {
        format!(
            r#"{{"bitWidth":4,"groupSize":64,"minAccuracy":0,"enableSpatial":false,"codec":"{codec}","matchGain":"{gain}"}}"#
        )
    };
    let groups = run(&model, &cfg("groups", "off"), true);
    let auto = run(&model, &cfg("auto", "off"), true);
    let (mut better, mut kept) = (0, 0);
    for (g, a) in groups.rows.iter().zip(&auto.rows) {
        assert_eq!(g.name, a.name);
        match (g.stored.storage(), a.stored.storage()) {
            (Storage::Quantized, Storage::Blocks) => {
                let (gs, bs) = (g.output_snr_db.unwrap(), a.output_snr_db.unwrap());
                assert!(bs > gs, "{}: blocks {bs} dB, groups {gs} dB", a.name);
                assert!(a.data.len() <= g.data.len() + 2 * g.stored.params_len(), "{}", a.name);
                assert!(a.reason.contains("codec auto"), "{}", a.reason);
                better += 1;
            }
            (sg, sa) => {
                assert_eq!(sg, sa, "{}", a.name);
                assert_eq!(g.data, a.data, "{}: a layer auto kept as groups is the groups run's", a.name);
                kept += usize::from(sa == Storage::Quantized);
            }
        }
    }
    assert!(better > 0 && kept > 0, "{better} as blocks, {kept} kept as groups");
    let (groups, auto) = (run(&model, &cfg("groups", "auto"), true), run(&model, &cfg("auto", "auto"), true));
    for (g, a) in groups.rows.iter().zip(&auto.rows) {
        assert_eq!((&g.data, g.stored.storage()), (&a.data, a.stored.storage()), "{}", a.name);
        if a.stored.storage() == Storage::Quantized {
            assert!(a.reason.contains("output gains are matched"), "{}", a.reason);
        }
    }
}

#[test]
fn codec_ggml_with_a_size_plan_is_refused_and_auto_is_groups_there() {
    let err = parse_config_str(r#"{"codec":"ggml","targetSizeMb":1}"#).unwrap_err();
    assert_eq!(err.field(), Some("codec"), "{err}");
    assert!(parse_config_str(r#"{"codec":"groups","targetSizeMb":1}"#).is_ok());
    let auto = parse_config_str(r#"{"codec":"auto","targetSizeMb":1}"#).unwrap();
    assert_eq!((auto.codec, auto.codec_in_effect()), (Codec::Auto, Codec::Groups));
    // The edge profile stores its layers with `auto`, and keeps it under a size plan as groups.
    let edge = parse_config_str(r#"{"profile":"edge","targetSizeMb":1}"#).unwrap();
    assert_eq!((edge.codec, edge.codec_in_effect()), (Codec::Auto, Codec::Groups));
    assert_eq!(parse_config_str(r#"{"profile":"local"}"#).unwrap().codec, Codec::Groups);
    assert_eq!(parse_config_str(r#"{"codec":"kquant"}"#).unwrap_err().field(), Some("codec"));
}
