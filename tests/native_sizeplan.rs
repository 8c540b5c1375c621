//! `targetSizeMb`: the planned file fits its budget, spends bytes where they buy the most
//! accuracy, and an impossible budget is a config error naming the field.

use arrowquant::policy::config::parse_config_str;
use arrowquant::{quantize_model, ModelReport};

fn run(model: &[u8], cfg: &str) -> (Vec<u8>, ModelReport) {
    quantize_model(model, parse_config_str(cfg).unwrap(), None, || 0.0, &mut |_| true).unwrap()
}

/// Parameter-weighted relative squared error over the lossy layers (what the plan minimises).
fn weighted_rel_error(r: &ModelReport) -> f64 {
    r.layers.iter().filter_map(|l| l.rel_rmse.map(|e| e * e * l.params as f64)).sum()
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn plan_fits_the_budget_and_beats_uniform_width_at_equal_size() {
    for path in ["samples/rivagan_f32.safetensors", "tests/data/minilm_l6_bf16_subset.safetensors"] {
        let model = std::fs::read(path).unwrap();
        let base = r#""bitWidth": 4, "minAccuracy": 0, "skipSensitiveLayers": false, "groupSize": 64"#;
        let (_, ur) = run(&model, &format!(r#"{{{base}}}"#));
        // The plan's own estimate of the all-4-bit file is the budget: uniform 4-bit is one
        // feasible answer, so the planner must do at least as well.
        let (_, probe) = run(&model, &format!(r#"{{"targetSizeMb": 1000, {base}}}"#));
        let target = probe.size_plan.unwrap().uniform_bytes;
        let (planned, pr) = run(&model, &format!(r#"{{"targetSizeMb": {}, {base}}}"#, target as f64 / MIB));
        let plan = pr.size_plan.as_ref().expect("plan reported");
        assert!(plan.planned_bytes <= plan.target_bytes && planned.len() as u64 <= plan.target_bytes);
        let widths: std::collections::BTreeSet<u8> = plan.layer_bits.values().copied().collect();
        for l in pr.layers.iter().filter(|l| plan.layer_bits.contains_key(&l.name)) {
            assert!(l.reason.starts_with("targetSizeMb plan"), "{}: {}", l.name, l.reason);
            let want = plan.layer_bits[&l.name];
            assert_eq!(l.bits, Some(want), "{}", l.name);
        }
        let (eu, ep) = (weighted_rel_error(&ur), weighted_rel_error(&pr));
        println!(
            "{path}: budget {target} B; plan file {} B (estimate {}), widths {widths:?}; weighted error plan {ep:.4e} vs uniform 4-bit {eu:.4e}",
            planned.len(),
            plan.planned_bytes
        );
        assert!(ep <= eu, "{path}: the plan ({ep:.4e}) should not lose to uniform 4-bit ({eu:.4e}) at its size");
        // Halfway to the all-8-bit size, the plan must mix widths and land between the two.
        let base8 = base.replace(r#""bitWidth": 4"#, r#""bitWidth": 8"#);
        let (_, u8r) = run(&model, &format!(r#"{{{base8}}}"#));
        let (_, probe8) = run(&model, &format!(r#"{{"targetSizeMb": 1000, {base8}}}"#));
        let mid = (target + probe8.size_plan.unwrap().uniform_bytes) / 2;
        let (mid_file, mr) = run(&model, &format!(r#"{{"targetSizeMb": {}, {base}}}"#, mid as f64 / MIB));
        let mid_widths: std::collections::BTreeSet<u8> =
            mr.size_plan.as_ref().unwrap().layer_bits.values().copied().collect();
        let em = weighted_rel_error(&mr);
        println!(
            "  halfway budget {mid} B: file {} B, widths {mid_widths:?}, error {em:.4e} (uniform 8-bit {:.4e})",
            mid_file.len(),
            weighted_rel_error(&u8r)
        );
        assert!(mid_file.len() as u64 <= mid && mid_widths.len() >= 2);
        assert!(em < ep && em > weighted_rel_error(&u8r));
    }
}

#[test]
fn plans_honour_min_accuracy_and_sensitive_layers() {
    let model = std::fs::read("tests/data/minilm_l6_bf16_subset.safetensors").unwrap();
    let (_, r) = run(&model, r#"{"targetSizeMb": 1000, "minAccuracy": 0.99}"#);
    let plan = r.size_plan.unwrap();
    for l in &r.layers {
        if plan.layer_bits.contains_key(&l.name) {
            assert!(l.cosine.unwrap() >= 0.99, "{} planned below minAccuracy", l.name);
        } else if l.name.contains("word_embeddings") {
            assert!(l.reason.starts_with("sensitive layer"), "{}", l.reason);
        }
    }
}

#[test]
fn impossible_budget_names_the_field_and_the_minimum() {
    let model = std::fs::read("samples/rivagan_f32.safetensors").unwrap();
    let cfg = parse_config_str(r#"{"targetSizeMb": 0.001}"#).unwrap();
    let err = quantize_model(&model, cfg, None, || 0.0, &mut |_| true).unwrap_err();
    assert_eq!((err.code(), err.field()), ("E_CONFIG", Some("targetSizeMb")));
    assert!(err.to_string().contains("at least"), "{err}");
}

/// With the calibration's measured sensitivity the plan weighs each layer by what it costs the
/// model's output (that it does better there is `make eval`'s and the eval check's to show); a
/// calibration where only some layers have one still plans every layer, in the same units.
#[test]
fn measured_sensitivity_decides_the_plan() {
    use arrowquant::diffusion::calibration::Calibration;
    let model = std::fs::read("samples/tiny_dit_digits.safetensors").unwrap();
    let with = Calibration::from_bytes(&std::fs::read("samples/tiny_dit_digits.calib.safetensors").unwrap()).unwrap();
    let strip = |keep: &dyn Fn(&str) -> bool| {
        let mut c = with.clone();
        for (name, l) in c.layers.iter_mut() {
            if !keep(name) {
                l.sensitivity = None;
            }
        }
        c
    };
    // About 3.5 bits per weight: some layers must go to 2 bits.
    let cfg =
        format!(r#"{{"profile": "base", "minAccuracy": 0, "targetSizeMb": {}}}"#, 0.22 * model.len() as f64 / MIB);
    let plan = |cal: Calibration| {
        let (file, r) =
            quantize_model(&model, parse_config_str(&cfg).unwrap(), Some(cal), || 0.0, &mut |_| true).unwrap();
        let plan = r.size_plan.unwrap();
        assert!(file.len() as u64 <= plan.target_bytes, "{} > {}", file.len(), plan.target_bytes);
        plan
    };
    let sensitive = plan(with.clone());
    let plain = plan(strip(&|_| false));
    let half = plan(strip(&|name| name.starts_with("blocks.") && name.as_bytes()[7] < b'3'));
    assert_eq!(sensitive.sensitivity_layers, sensitive.planned_layers);
    assert_eq!(plain.sensitivity_layers, 0);
    assert_eq!(half.sensitivity_layers, 15, "blocks 0-2, 5 layers each");
    assert_eq!(half.planned_layers, sensitive.planned_layers);
    assert_ne!(sensitive.layer_bits, plain.layer_bits, "the sensitivity must change the plan");
}
