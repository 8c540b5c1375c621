//! `targetSizeMb` for GGUF output: tensors move down the type ladder until the file fits, decided
//! from the header alone so the file still streams.

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
                (p.ty, p.bytes, p.rule) = (to, bytes, Some(TypeRule::Budget { from, target_mb }));
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
