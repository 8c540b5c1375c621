//! `targetSizeMb` for GGUF output: tensors move down the type ladder until the file fits, decided
//! from the header (and the calibration) alone so the file still streams.
//!
//! Without measured sensitivities the largest tensors move first, sensitive layers last. When
//! the calibration carries `sensitivity` (the model's ε-MSE growth with the layer alone quantized
//! at 2, 4 and 8 bits, measured by tools/calibrate.py), each step down is priced at the growth it
//! adds per byte it saves — the growth at a type's code bits interpolated between the measured
//! ones, log-linearly — and the cheapest step goes first: bytes come out of the layers the
//! model's output minds least.

use crate::format::gguf::container::align;
use crate::policy::gguf_mix::{step_down, TypeRule};
use crate::quant::ggml::GgmlType;

/// One tensor in the output: where it comes from and what it becomes.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) source: usize,
    pub(super) ty: GgmlType,
    pub(super) rule: Option<TypeRule>,
    /// A sensitive layer: the budget moves these down only after every other tensor.
    pub(super) sensitive: bool,
    /// The last dimension as written (after any re-rowing).
    pub(super) row: u64,
    pub(super) count: u64,
    pub(super) bytes: u64,
    pub(super) offset: u64,
    /// The calibration's measured sensitivity of this layer (ε-MSE growth at 2, 4, 8 bits).
    pub(super) sensitivity: Option<[f32; 3]>,
}

/// The code bits a type stores per value (F16/F32: none lost).
fn code_bits(ty: GgmlType) -> Option<f64> {
    match ty {
        GgmlType::Q8_0 => Some(8.0),
        GgmlType::Q6_K => Some(6.0),
        GgmlType::Q5_K | GgmlType::Q5_0 | GgmlType::Q5_1 => Some(5.0),
        GgmlType::Q4_K | GgmlType::Q4_0 | GgmlType::Q4_1 => Some(4.0),
        GgmlType::Q3_K => Some(3.0),
        GgmlType::Q2_K => Some(2.0),
        _ => None,
    }
}

/// A layer's ε-MSE growth at 4 bits: measured, or — where that measurement is below the
/// calibration's resolution (0) — implied by the 2-bit one, then the 8-bit one, with the error
/// power falling 4× per bit.
fn growth_at_4_bits(s: [f64; 3]) -> f64 {
    if s[1] > 0.0 {
        s[1]
    } else if s[0] > 0.0 {
        s[0] / 16.0
    } else {
        s[2] * 256.0
    }
}

/// The ε-MSE growth a layer of sensitivity `s` adds at type `ty`: from 4 bits up, the 4-bit
/// growth falling 4× per code bit; at 2 bits the measured growth (at least what 4 bits implies:
/// it grows faster than the error there); 3 bits in between, geometrically; none for the float
/// types. `floor` keeps layers measured as insensitive ordered by size among themselves.
fn growth(s: [f64; 3], ty: GgmlType, floor: f64) -> f64 {
    let Some(b) = code_bits(ty) else { return 0.0 };
    let g4 = growth_at_4_bits(s).max(floor);
    let g2 = s[0].max(16.0 * g4);
    match b {
        b if b >= 4.0 => g4 * 4f64.powf(4.0 - b),
        b if b >= 3.0 => (g2 * g4).sqrt(),
        _ => g2,
    }
}

impl Planned {
    /// Whether `targetSizeMb` may move this tensor to a smaller type: the mix's choices, not the
    /// exact keeps (vectors, small and high-precision tensors) nor the user's overrides.
    fn budgeted(&self) -> bool {
        matches!(
            self.rule,
            Some(
                TypeRule::Mix | TypeRule::Sensitive(_) | TypeRule::RowsNotWholeBlocks { .. } | TypeRule::Budget { .. }
            )
        )
    }
}

/// Move tensors down the type ladder until the file fits `budget` bytes: in rounds, every other
/// tensor one step (largest first) before any sensitive one, stopping as soon as it fits. The
/// choice depends on the header alone, so the file still streams. Returns the smallest total
/// reached when even that does not fit.
pub(super) fn fit_budget(
    plan: &mut [Planned],
    fixed: u64,
    budget: u64,
    target_mb: f64,
) -> std::result::Result<(), u64> {
    let total = |plan: &[Planned]| fixed + plan.iter().map(|p| align(p.bytes).unwrap_or(u64::MAX)).sum::<u64>();
    if plan.iter().any(|p| p.budgeted() && p.sensitivity.is_some()) {
        return fit_by_sensitivity(plan, total(plan), budget, target_mb);
    }
    let mut now = total(plan);
    for sensitive in [false, true] {
        loop {
            if now <= budget {
                return Ok(());
            }
            let mut order: Vec<usize> = (0..plan.len())
                .filter(|&i| {
                    plan[i].budgeted() && plan[i].sensitive == sensitive && step_down(plan[i].ty, plan[i].row).is_some()
                })
                .collect();
            if order.is_empty() {
                break;
            }
            order.sort_by_key(|&i| (std::cmp::Reverse(plan[i].bytes), i));
            for i in order {
                let p = &mut plan[i];
                let to = step_down(p.ty, p.row).expect("filtered");
                let from = match &p.rule {
                    Some(TypeRule::Budget { from, .. }) => *from,
                    _ => p.ty,
                };
                let bytes = to.bytes_for(p.count).expect("the ladder fits the rows");
                now = now - align(p.bytes).unwrap_or(0) + align(bytes).unwrap_or(0);
                (p.ty, p.bytes, p.rule) = (to, bytes, Some(TypeRule::Budget { from, target_mb, measured: false }));
                if now <= budget {
                    return Ok(());
                }
            }
        }
    }
    if now <= budget {
        Ok(())
    } else {
        Err(now)
    }
}

/// Move one tensor one step at a time, always the step that adds the least measured growth per
/// byte saved, until the file fits; sensitive layers only once no other can move. A layer
/// without a measured sensitivity counts as the median of those with one (a sensitive layer as
/// their maximum).
fn fit_by_sensitivity(plan: &mut [Planned], mut now: u64, budget: u64, target_mb: f64) -> std::result::Result<(), u64> {
    let measured: Vec<[f64; 3]> = plan
        .iter()
        .filter_map(|p| p.sensitivity.map(|s| s.map(|v| if v.is_finite() { v as f64 } else { 0.0 })))
        .collect();
    let pick = |k: usize, median: bool| {
        let mut v: Vec<f64> = measured.iter().map(|s| s[k]).collect();
        v.sort_by(f64::total_cmp);
        if median {
            v[v.len() / 2]
        } else {
            v[v.len() - 1]
        }
    };
    let typical = [0, 1, 2].map(|k| pick(k, true));
    let highest = [0, 1, 2].map(|k| pick(k, false));
    let sens: Vec<[f64; 3]> = plan
        .iter()
        .map(|p| match p.sensitivity {
            Some(s) => s.map(|v| if v.is_finite() { (v as f64).max(0.0) } else { 0.0 }),
            None if p.sensitive => highest,
            None => typical,
        })
        .collect();
    let mut at4: Vec<f64> = measured.iter().map(|&s| growth_at_4_bits(s)).filter(|&g| g > 0.0).collect();
    at4.sort_by(f64::total_cmp);
    let floor = at4.get(at4.len() / 2).map_or(1e-12, |m| m * 1e-3);
    // The sensitive layers (their error reaches every later layer) still move only once no other
    // can: a sensitivity is measured with the layer alone quantized, and theirs compound with
    // everyone else's error.
    let mut sensitive = false;
    while now > budget {
        let mut best: Option<(f64, usize, GgmlType, u64)> = None;
        for (i, p) in plan.iter().enumerate() {
            if p.sensitive != sensitive {
                continue;
            }
            let Some(to) = p.budgeted().then(|| step_down(p.ty, p.row)).flatten() else { continue };
            let bytes = to.bytes_for(p.count).expect("the ladder fits the rows");
            let saved = align(p.bytes).unwrap_or(0).saturating_sub(align(bytes).unwrap_or(0));
            if saved == 0 {
                continue;
            }
            let price = (growth(sens[i], to, floor) - growth(sens[i], p.ty, floor)).max(0.0) / saved as f64;
            if best.is_none_or(|b| price < b.0) {
                best = Some((price, i, to, bytes));
            }
        }
        let Some((_, i, to, bytes)) = best else {
            if sensitive {
                return Err(now);
            }
            sensitive = true;
            continue;
        };
        let p = &mut plan[i];
        let from = match &p.rule {
            Some(TypeRule::Budget { from, .. }) => *from,
            _ => p.ty,
        };
        now = now - align(p.bytes).unwrap_or(0) + align(bytes).unwrap_or(0);
        (p.ty, p.bytes, p.rule) = (to, bytes, Some(TypeRule::Budget { from, target_mb, measured: true }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(ty: GgmlType, count: u64, sensitivity: Option<[f32; 3]>) -> Planned {
        let bytes = ty.bytes_for(count).unwrap();
        Planned {
            source: 0,
            ty,
            rule: Some(TypeRule::Mix),
            sensitive: false,
            row: 256,
            count,
            bytes,
            offset: 0,
            sensitivity,
        }
    }

    #[test]
    fn growth_follows_the_error_from_the_trusted_measurement() {
        let s = [1.0, 0.01, 0.0];
        assert!((growth(s, GgmlType::Q2_K, 0.0) - 1.0).abs() < 1e-12);
        assert!((growth(s, GgmlType::Q4_0, 0.0) - 0.01).abs() < 1e-12);
        assert!((growth(s, GgmlType::Q5_0, 0.0) - 0.0025).abs() < 1e-12, "a 0 at 8 bits is below resolution");
        assert!((growth(s, GgmlType::Q8_0, 0.0) - 0.01 / 256.0).abs() < 1e-15);
        assert!((growth(s, GgmlType::Q3_K, 0.0) - 0.1).abs() < 1e-9);
        assert_eq!(growth(s, GgmlType::F16, 0.0), 0.0);
        // Nothing measured at 4 bits: implied by 2 bits; nothing at all: the floor.
        assert!((growth([0.32, 0.0, 0.0], GgmlType::Q4_K, 0.0) - 0.02).abs() < 1e-12);
        assert!((growth([0.0; 3], GgmlType::Q4_K, 1e-6) - 1e-6).abs() < 1e-18);
    }

    /// With sensitivities, the bytes come out of the layer the model minds least even when it
    /// is the smaller one; without, the largest moves first.
    #[test]
    fn sensitivity_decides_which_layer_moves() {
        let count = 256 * 1024;
        let touchy = Some([5.0, 0.5, 0.01]);
        let calm = Some([0.05, 0.005, 0.0001]);
        let mut plan = vec![planned(GgmlType::Q8_0, 2 * count, touchy), planned(GgmlType::Q8_0, count, calm)];
        let all: u64 = plan.iter().map(|p| align(p.bytes).unwrap()).sum();
        let budget = all - count / 4;
        fit_budget(&mut plan, 0, budget, 1.0).unwrap();
        assert_eq!(plan[0].ty, GgmlType::Q8_0, "the sensitive layer stays");
        assert!(plan[1].ty.bits_per_value() < 8.0, "{:?}", plan[1].ty);
        assert!(matches!(plan[1].rule, Some(TypeRule::Budget { measured: true, .. })));
        let mut plan = vec![planned(GgmlType::Q8_0, 2 * count, None), planned(GgmlType::Q8_0, count, None)];
        fit_budget(&mut plan, 0, budget, 1.0).unwrap();
        assert_ne!(plan[0].ty, GgmlType::Q8_0, "by size: the largest moves");
        assert!(matches!(plan[0].rule, Some(TypeRule::Budget { measured: false, .. })));
        // Nothing left to move: the smallest total reached.
        let mut plan = vec![planned(GgmlType::Q2_K, count, calm)];
        assert!(fit_budget(&mut plan, 0, 1, 1.0).is_err());
    }
}
