//! End to end on a real trained diffusion UNet (samples/tiny_ddpm_digits.safetensors) with
//! its real calibration file: what is stored, what is reported, and what the reader gives back.
//! The numpy re-derivation of every stored number is tests/py/check_format.py.

use arrowquant::diffusion::calibration::Calibration;
use arrowquant::diffusion::timegroups::params_for_timestep;
use arrowquant::policy::config::parse_config_str;
use arrowquant::{quantize_model, ModelReport, QuantizedFile, Storage};

const MODEL: &str = "samples/tiny_ddpm_digits.safetensors";
const CALIB: &str = "samples/tiny_ddpm_digits.calib.safetensors";

fn run(cfg: &str, cal: Option<Calibration>) -> (Vec<u8>, ModelReport) {
    let model = std::fs::read(MODEL).unwrap();
    quantize_model(&model, parse_config_str(cfg).unwrap(), cal, || 0.0, &mut |_| true).unwrap()
}

fn calibration() -> Calibration {
    Calibration::from_bytes(&std::fs::read(CALIB).unwrap()).unwrap()
}

#[test]
fn the_committed_calibration_file_follows_the_contract() {
    let cal = calibration();
    assert_eq!(cal.num_timesteps(), 20);
    assert!(cal.timesteps.windows(2).all(|w| w[0] > w[1]), "DDIM runs from noisy to clean: {:?}", cal.timesteps);
    // one entry per Linear/Conv of the UNet, each with per-timestep channel maxima and no gaps
    assert!(cal.layers.len() >= 20, "{} layers", cal.layers.len());
    for (name, l) in &cal.layers {
        assert!(l.missing().is_empty(), "{name}");
        assert!(l.channel_absmax_per_t.is_some(), "{name}");
        assert!(l.samples.iter().all(|&n| n == 64), "{name}: {:?}", l.samples);
    }
    // activation ranges really move with the timestep (why time-aware params exist)
    let l = &cal.layers["conv_in"];
    let widths: Vec<f32> = l.act_min.iter().zip(&l.act_max).map(|(a, b)| b - a).collect();
    let (lo, hi) = widths.iter().fold((f32::MAX, 0f32), |(a, b), &w| (a.min(w), b.max(w)));
    assert!(hi > 1.5 * lo, "conv_in input range should vary over time: {widths:?}");
}

#[test]
fn calibrated_run_stores_time_groups_and_equalization_and_reads_them_back() {
    let (parquet, report) = run(r#"{"profile": "local"}"#, Some(calibration()));
    assert_eq!((report.modality.as_str(), report.modality_source.as_str()), ("image", "metadata"));
    assert!(report.time_aware.applied && report.spatial.applied, "{:?} {:?}", report.time_aware, report.spatial);
    assert!(report.time_aware.note.contains("0 had none"), "{}", report.time_aware.note);
    let file = QuantizedFile::open(parquet).unwrap();
    assert!(file.calibration_json.as_deref().unwrap().contains("\"timesteps\""));
    let mut equalized = 0;
    for l in &report.layers {
        let row = file.row(&l.name).unwrap();
        // Every weight gets time groups, except the sensitive layers whose input stays in float.
        let is_weight = l.shape.len() >= 2;
        let float_input = l.reason.contains("input left in float");
        assert_eq!(float_input, is_weight && l.reason.starts_with("sensitive layer"), "{}: {}", l.name, l.reason);
        assert_eq!(row.time_groups.is_some(), is_weight && !float_input, "{}", l.name);
        // what the file holds is what the run reported (Parquet round trip)
        assert_eq!(row.time_groups, l.time_groups, "{}", l.name);
        assert_eq!(row.weighted_snr_db, l.weighted_snr_db, "{}", l.name);
        assert_eq!(row.spatial.as_ref().map(|s| s.scales.len() as u32), l.spatial.as_ref().map(|s| s.channels));
        if let Some(groups) = &row.time_groups {
            assert!(groups.len() <= 10 && groups[0].t_start == 0 && groups.last().unwrap().t_end == 20);
            for t in 0..20 {
                let g = params_for_timestep(groups, t).unwrap();
                assert!(g.t_start <= t && t < g.t_end && g.scale > 0.0 && (0..=255).contains(&g.zero_point));
            }
        }
        if let Some(sp) = &row.spatial {
            equalized += 1;
            assert_eq!(row.stored.storage(), Storage::Quantized);
            assert_eq!(sp.scales.len() as u64, l.shape[1]);
            // the reader undoes the equalization: dequantize ≈ source, equalized = W·diag(s)
            let w = file.dequantize(&l.name).unwrap();
            let we = file.dequantize_equalized(&l.name).unwrap();
            let inner: u64 = l.shape[2..].iter().product();
            for (k, (&a, &b)) in w.iter().zip(&we).enumerate().step_by(7) {
                let j = (k as u64 / inner) % l.shape[1];
                assert_eq!(a, b / sp.scales[j as usize], "{} element {k}", l.name);
            }
            assert!(l.weighted_snr_db.is_some() && l.reason.contains("spatial:"), "{}", l.reason);
        }
    }
    assert!(equalized >= 10, "only {equalized} layers equalized");
    // sensitive layers of an image model: first/last conv and the time-embedding MLP at 8 bits,
    // their inputs left in float
    for name in ["conv_in.weight", "conv_out.weight", "time_embedding.linear_1.weight"] {
        let l = report.layers.iter().find(|l| l.name == name).unwrap();
        assert!(l.reason.contains("image default") && l.bits == Some(8), "{name}: {}", l.reason);
        assert!(l.time_groups.is_none() && l.reason.contains("input left in float"), "{name}: {}", l.reason);
    }
    assert!(
        report.time_aware.note.contains("(4 sensitive layer input(s) left in float)"),
        "{}",
        report.time_aware.note
    );
    // floatSensitiveInputs: false gives them time groups like every other layer
    let (_, report) = run(r#"{"profile": "local", "floatSensitiveInputs": false}"#, Some(calibration()));
    let weights = report.layers.iter().filter(|l| l.shape.len() >= 2);
    assert!(weights.clone().all(|l| l.time_groups.is_some()), "every weight has time groups");
    assert!(!report.time_aware.note.contains("left in float"), "{}", report.time_aware.note);
}

#[test]
fn missing_layers_and_timesteps_are_reported_not_invented() {
    let mut cal = calibration();
    // drop one layer and blank out two timesteps of another
    cal.layers.remove("down_blocks.0.resnets.0.conv1");
    let l = cal.layers.get_mut("mid_block.attentions.0.to_q").unwrap();
    for t in [3usize, 4] {
        l.samples[t] = 0;
        l.act_min[t] = f32::NAN;
        l.act_max[t] = f32::NAN;
    }
    cal.layers.insert("not.in.this.model".to_string(), cal.layers["conv_in"].clone());
    let (parquet, report) = run(r#"{"profile": "local", "timeGrouping": "uniform", "numTimeGroups": 20}"#, Some(cal));
    assert!(report.time_aware.note.contains("1 had none"), "{}", report.time_aware.note);
    assert!(report.time_aware.note.contains("'not.in.this.model'"), "{}", report.time_aware.note);
    let file = QuantizedFile::open(parquet).unwrap();
    assert!(file.row("down_blocks.0.resnets.0.conv1.weight").unwrap().time_groups.is_none());
    let q = report.layers.iter().find(|l| l.name == "mid_block.attentions.0.to_q.weight").unwrap();
    assert!(q.reason.contains("no data at timestep index(es) 3, 4"), "{}", q.reason);
    // 20 uniform groups of one timestep each, minus the two without data, which join the group
    // of timestep 2 (the nearest earlier one with data)
    let groups = q.time_groups.as_ref().unwrap();
    assert_eq!(groups.len(), 18);
    let g = params_for_timestep(groups, 3).unwrap();
    assert_eq!((g.t_start, g.t_end), (2, 5));
}

#[test]
fn without_calibration_nothing_is_claimed() {
    let (_, report) = run(r#"{"profile": "cloud"}"#, None);
    assert!(!report.time_aware.applied && !report.spatial.applied);
    assert!(report
        .layers
        .iter()
        .all(|l| l.time_groups.is_none() && l.spatial.is_none() && l.weighted_snr_db.is_none()));
}

/// `spatialAlpha: "search"` keeps, per layer, the candidate (no equalization or an α of the grid)
/// with the best error at the layer's output, so no layer is worse there than without
/// equalization or at the fixed α = 0.5 (up to the rounding of the two ways of measuring it).
#[test]
fn the_alpha_search_never_loses_to_no_equalization_or_a_fixed_alpha() {
    let base = r#""profile": "base", "bitWidth": 4, "groupSize": 64, "minAccuracy": 0, "gptq": "off""#;
    let with = |extra: &str| run(&format!("{{{base}, {extra}}}"), Some(calibration())).1;
    let searched = with(r#""enableSpatial": true, "spatialAlpha": "search""#);
    let fixed = with(r#""enableSpatial": true, "spatialAlpha": 0.5"#);
    let off = with(r#""enableSpatial": false"#);
    assert!(searched.spatial.note.contains("alpha searched per layer"), "{}", searched.spatial.note);
    let (mut equalized, mut better) = (0, 0);
    for ((s, f), o) in searched.layers.iter().zip(&fixed.layers).zip(&off.layers) {
        let Some(snr) = s.output_snr_db else { continue };
        let (f, o) = (f.output_snr_db.unwrap(), o.output_snr_db.unwrap());
        assert!(snr >= o - 0.01 && snr >= f - 0.01, "{}: searched {snr} dB, off {o}, α 0.5 {f}", s.name);
        assert!(s.reason.contains("alpha searched by layer-output SNR with the Gram matrix: off "), "{}", s.reason);
        if let Some(sp) = &s.spatial {
            equalized += 1;
            assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&sp.alpha), "{}: α {}", s.name, sp.alpha);
            assert_eq!(sp.activation_smoothing, sp.alpha > 0.0);
        } else {
            assert!(s.reason.contains("no equalization measured best"), "{}", s.reason);
        }
        better += (snr > o + 0.05 && snr > f + 0.05) as u32;
    }
    // On this UNet the search equalizes most layers and beats both alternatives in many.
    assert!(equalized >= 20 && better >= 10, "{equalized} equalized, {better} better than both");
}
