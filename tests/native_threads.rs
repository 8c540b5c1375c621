//! With the `threads` feature: the parallel path gives byte-identical files to the sequential one
//! (`cargo test --features threads --test native_threads`, run by `make test-native`).
#![cfg(feature = "threads")]

mod common;

use arrowquant::config::parse_config_str;
use arrowquant::parallel;
use arrowquant::pipeline::quantize_model;

#[test]
fn parallel_output_is_byte_identical() {
    let mut rng = common::Rng::new(9);
    let w: Vec<f32> = (0..1024 * 1024).map(|_| rng.gauss()).collect();
    let big = common::safetensors_file(&[("big.weight", "F32", vec![1024, 1024], common::f32_bytes(&w))]);
    let minilm =
        std::fs::read(format!("{}/tests/data/minilm_l6_bf16_subset.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for model in [&big, &minilm] {
        for cfg in [r#"{"profile":"edge"}"#, r#"{"profile":"local","groupSize":64}"#, r#"{"bitWidth":8}"#] {
            let cfg = parse_config_str(cfg).unwrap();
            parallel::set_enabled(false);
            let (seq, _) = quantize_model(model, cfg.clone(), None, || 0.0, &mut |_| true).unwrap();
            parallel::set_enabled(true);
            parallel::take_threads_seen();
            let (par, _) = quantize_model(model, cfg, None, || 0.0, &mut |_| true).unwrap();
            assert!(parallel::take_threads_seen() >= 1);
            assert_eq!(seq, par);
        }
    }
}
