//! With the `threads` feature: the parallel path gives byte-identical files to the sequential one
//! (`cargo test --features threads --test native_threads`, run by `make test-native`).
#![cfg(feature = "threads")]

mod common;

use std::sync::Mutex;

use arrowquant::parallel;
use arrowquant::pipeline::{quantize_model, ModelQuantizer};
use arrowquant::policy::config::parse_config_str;

/// `parallel::set_enabled` is process-wide: the tests here take turns.
static POOL_SWITCH: Mutex<()> = Mutex::new(());

#[test]
fn parallel_output_is_byte_identical() {
    let _turn = POOL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
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

/// Twelve small weights, a bias and one weight with a NaN at the end (`with_nan`).
fn many_tensors(with_nan: bool) -> Vec<u8> {
    let mut rng = common::Rng::new(21);
    let mut tensors = Vec::new();
    for k in 0..12 {
        let w: Vec<f32> = (0..96 * 256).map(|_| rng.gauss() * 0.05).collect();
        tensors.push((format!("layer{k}.weight"), "F32", vec![96u64, 256], common::f32_bytes(&w)));
    }
    let b: Vec<f32> = (0..256).map(|_| rng.gauss()).collect();
    tensors.push(("layer.bias".to_string(), "F32", vec![256u64], common::f32_bytes(&b)));
    if with_nan {
        let mut w: Vec<f32> = (0..64 * 64).map(|_| rng.gauss()).collect();
        w[100] = f32::NAN;
        tensors.push(("bad.weight".to_string(), "F32", vec![64u64, 64], common::f32_bytes(&w)));
    }
    let refs: Vec<(&str, &str, Vec<u64>, Vec<u8>)> =
        tensors.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    common::safetensors_file(&refs)
}

/// Stream `model` through a ModelQuantizer, `batch` tensors per `add_tensors`, taking the output
/// after each call; every row closes a row group, so a written row shows up at once. Returns the
/// file and, per call, how many bytes `take_output` gave.
fn stream(model: &[u8], batch: usize, pool_off_after: Option<usize>) -> (Vec<u8>, Vec<usize>) {
    let cfg = parse_config_str(r#"{"profile":"local","groupSize":64,"minAccuracy":0}"#).unwrap();
    let mut q = ModelQuantizer::with_clock(cfg, || 0.0).unwrap();
    q.set_row_group_bytes(1);
    let header = q.begin(model, Some(model.len() as u64)).unwrap().clone();
    let mut file = Vec::new();
    let mut taken = Vec::new();
    for (call, group) in header.tensors.chunks(batch).enumerate() {
        if pool_off_after == Some(call) {
            parallel::set_enabled(false);
        }
        let items: Vec<(&str, &[u8])> = group
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    &model[(header.data_offset + t.begin) as usize..(header.data_offset + t.end) as usize],
                )
            })
            .collect();
        q.add_tensors(&items).unwrap();
        let out = q.take_output();
        taken.push(out.len());
        file.extend(out);
    }
    let (rest, report) = q.finish().unwrap();
    assert_eq!(report.layers.len(), header.tensors.len());
    file.extend(rest);
    (file, taken)
}

#[test]
fn rows_written_while_the_next_tensors_quantize_give_the_same_file() {
    let _turn = POOL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let model = many_tensors(false);
    parallel::set_enabled(false);
    let (sequential, taken_seq) = stream(&model, 1, None);
    // Without a pool every weight's row is written by its own call (the 1 KiB bias row stays
    // buffered below the writer's size estimate).
    assert!(taken_seq[..12].iter().all(|&n| n > 0), "{taken_seq:?}");
    for batch in [1, 3, 13] {
        parallel::set_enabled(true);
        let (pooled, taken) = stream(&model, batch, None);
        assert_eq!(pooled, sequential, "batch {batch}");
        // With a pool a call writes the previous call's rows: the first call's output comes later.
        assert_eq!(taken[0], 0, "batch {batch}: {taken:?}");
        assert!(taken.iter().skip(1).all(|&n| n > 0), "batch {batch}: {taken:?}");
        // Turning the pool off mid-run writes what was pending, then each row at once.
        parallel::set_enabled(true);
        let (switched, _) = stream(&model, batch, Some(2.min(13 / batch)));
        assert_eq!(switched, sequential, "batch {batch}, pool off mid-run");
    }
    parallel::set_enabled(true);
}

#[test]
fn a_failure_after_deferred_rows_ends_the_run() {
    let _turn = POOL_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    parallel::set_enabled(true);
    let model = many_tensors(true);
    let cfg = parse_config_str(r#"{"profile":"local","groupSize":64,"minAccuracy":0}"#).unwrap();
    let mut q = ModelQuantizer::with_clock(cfg, || 0.0).unwrap();
    let header = q.begin(&model, Some(model.len() as u64)).unwrap().clone();
    let bytes = |t: &arrowquant::format::safetensors::TensorInfo| {
        &model[(header.data_offset + t.begin) as usize..(header.data_offset + t.end) as usize]
    };
    let (good, bad) = header.tensors.split_at(header.tensors.len() - 1);
    let items: Vec<(&str, &[u8])> = good.iter().map(|t| (t.name.as_str(), bytes(t))).collect();
    q.add_tensors(&items).unwrap();
    let e = q.add_tensor(&bad[0].name, bytes(&bad[0])).unwrap_err();
    assert_eq!(e.code(), "E_NONFINITE", "{e}");
    let after = q.finish().unwrap_err();
    assert_eq!(after.code(), "E_STATE", "{after}");
    assert!(after.to_string().contains("already failed"), "{after}");
}
