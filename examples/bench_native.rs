//! Native twin of the Node end-to-end benchmark: quantize a safetensors file with the same
//! configs and print one JSON line per config with the median seconds. Used by `make bench`.
//!   cargo run --release --example bench_native -- FILE RUNS [--calibration CAL] CONFIG_JSON...
//! With `--calibration` (either carrier, docs/CALIBRATION.md) every config runs with it.

use arrowquant::diffusion::calibration::Calibration;
use arrowquant::pipeline::{default_clock, quantize_model};
use arrowquant::policy::config::parse_config_str;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("read model");
    let runs: usize = args[2].parse().expect("runs");
    let calibration = match args.get(3).map(String::as_str) {
        Some("--calibration") => {
            let cal =
                Calibration::from_bytes(&std::fs::read(&args[4]).expect("read calibration")).expect("calibration");
            args.drain(3..5);
            Some(cal)
        }
        _ => None,
    };
    for cfg_text in &args[3..] {
        let cfg = parse_config_str(cfg_text).expect("config");
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = std::time::Instant::now();
                let (out, _) = quantize_model(&bytes, cfg.clone(), calibration.clone(), default_clock, &mut |_| true)
                    .expect("quantize");
                std::hint::black_box(out);
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("{{\"config\":{cfg_text},\"seconds\":{}}}", times[runs / 2]);
    }
}
