//! Quality on Gaussian data against ../shared/anchors.md (ggml-style search rows). Floors are the
//! anchors minus 0.05 dB of sampling noise on 2M samples; 2-bit must meet the anchors outright.
mod common;

#[test]
fn search_reaches_the_anchor_snr() {
    let n = 2 * 1024 * 1024;
    let anchors: &[(u8, u32, f64)] =
        &[(4, 32, 23.05), (4, 64, 21.65), (4, 128, 20.55), (2, 32, 10.0), (2, 64, 9.0), (2, 128, 8.3)];
    for &(bits, group, floor) in anchors {
        let (snr, cos) = common::gaussian_quality(n, bits, group, true, false);
        let (plain, _) = common::gaussian_quality(n, bits, group, false, false);
        eprintln!("{bits}-bit g{group}: search {snr:.2} dB (cos {cos:.5}), min/max {plain:.2} dB");
        assert!(snr >= floor, "{bits}-bit g{group}: {snr:.3} dB < {floor}");
        assert!(snr > plain + 0.5, "{bits}-bit g{group}: search must beat min/max clearly ({snr:.2} vs {plain:.2})");
    }
    let (snr8, _) = common::gaussian_quality(n, 8, 32, false, false);
    assert!(snr8 >= 45.0, "8-bit g32 min/max: {snr8:.2} dB");
}

/// Gain matching trades a little weight SNR for an unbiased reconstruction gain (what the
/// model's output needs); the trade must stay small and the gain must come back to 1.
#[test]
fn gain_matched_search_costs_little_weight_snr() {
    let n = 2 * 1024 * 1024;
    for &(bits, group, max_loss) in &[(4u8, 64u32, 0.15), (2, 64, 0.8), (8, 64, 0.05)] {
        let (search, _) = common::gaussian_quality(n, bits, group, true, false);
        let (matched, _) = common::gaussian_quality(n, bits, group, true, true);
        let (plain, _) = common::gaussian_quality(n, bits, group, false, false);
        eprintln!("{bits}-bit g{group}: search {search:.2} dB, gain-matched {matched:.2} dB, min/max {plain:.2} dB");
        assert!(
            matched <= search + 1e-9,
            "{bits}-bit: gain matching cannot beat the least-squares search on weight SNR"
        );
        assert!(search - matched <= max_loss, "{bits}-bit g{group}: gain matching costs {:.3} dB", search - matched);
        assert!(
            matched > plain,
            "{bits}-bit g{group}: gain-matched search must still beat min/max ({matched:.2} vs {plain:.2})"
        );
    }
}
