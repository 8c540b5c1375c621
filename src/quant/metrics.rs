//! Error metrics between original values w and reconstruction ŵ, accumulated in f64 from the f32
//! values: cosine, SNR (dB), relative RMSE and max |w − ŵ|. Formulas are part of docs/FORMAT.md.

use crate::quant::output::OutputSums;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorSums {
    pub count: u64,
    pub sum_w2: f64,
    pub sum_q2: f64,
    pub sum_wq: f64,
    pub sum_e2: f64,
    pub max_abs: f64,
    /// Σ g·w², Σ g·e², Σ g·w·e (e = w − ŵ) for each of the [`ColumnWeights`] the pass was given,
    /// in their order; zero for the ones it was not.
    pub columns: [OutputSums; 2],
}

/// Per-column weights g (each a row long) whose weighted error sums the validation pass adds
/// beside the plain ones ([`ErrorSums::columns`]), so that a layer's output error under diagonal
/// input statistics, or its activation-weighted error, costs no second pass over the tensor.
#[derive(Debug, Clone, Copy)]
pub struct ColumnWeights<'a> {
    pub weights: [Option<&'a [f64]>; 2],
    pub group_size: usize,
    pub groups_per_row: usize,
}

impl ColumnWeights<'_> {
    pub const NONE: ColumnWeights<'static> = ColumnWeights { weights: [None, None], group_size: 0, groups_per_row: 1 };
}

impl ErrorSums {
    /// Add one chunk (a group). Chunk sums come from the active kernel set and are added to the
    /// running totals in order, so the result depends only on the chunking and the kernel set.
    pub fn add(&mut self, w: &[f32], q: &[f32]) {
        let s = (crate::kernels::active().error_sums)(w, q);
        self.sum_w2 += s[0];
        self.sum_q2 += s[1];
        self.sum_wq += s[2];
        self.sum_e2 += s[3];
        self.max_abs = self.max_abs.max(s[4]);
        self.count += w.len() as u64;
    }

    /// Add the column-weighted sums of one group whose first column is `col` (the active kernel
    /// set's `column_error_sums`, bit-identical in both twins).
    pub fn add_columns(&mut self, w: &[f32], q: &[f32], weights: &ColumnWeights, col: usize) {
        let sums_of = crate::kernels::active().column_error_sums;
        for (sums, g) in self.columns.iter_mut().zip(weights.weights) {
            let Some(g) = g else { continue };
            let [signal, error, cross] = sums_of(w, q, &g[col..col + w.len()]);
            sums.signal += signal;
            sums.error += error;
            sums.cross += cross;
        }
    }

    /// Add another chunk's totals (used to merge blocks in order).
    pub fn merge(&mut self, o: &ErrorSums) {
        for (a, b) in self.columns.iter_mut().zip(&o.columns) {
            a.signal += b.signal;
            a.error += b.error;
            a.cross += b.cross;
        }
        self.count += o.count;
        self.sum_w2 += o.sum_w2;
        self.sum_q2 += o.sum_q2;
        self.sum_wq += o.sum_wq;
        self.sum_e2 += o.sum_e2;
        self.max_abs = self.max_abs.max(o.max_abs);
    }

    /// Equal up to f64 summation order (relative `rel` on each sum; count and max exact). Any
    /// difference in the reconstructed values themselves moves Σ(w−ŵ)² by far more than 1e-12.
    pub fn approx_eq(&self, other: &ErrorSums, rel: f64) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= rel * a.abs().max(b.abs()) || a == b;
        self.count == other.count
            && self.max_abs == other.max_abs
            && close(self.sum_w2, other.sum_w2)
            && close(self.sum_q2, other.sum_q2)
            && close(self.sum_wq, other.sum_wq)
            && close(self.sum_e2, other.sum_e2)
    }

    /// Σwŵ / √(Σw²·Σŵ²); 1 when both are all zeros, 0 when exactly one is.
    pub fn cosine(&self) -> f64 {
        if self.sum_w2 == 0.0 || self.sum_q2 == 0.0 {
            return if self.sum_w2 == self.sum_q2 { 1.0 } else { 0.0 };
        }
        (self.sum_wq / (self.sum_w2 * self.sum_q2).sqrt()).clamp(-1.0, 1.0)
    }

    /// 10·log10(Σw² / Σ(w−ŵ)²); +∞ for an exact reconstruction.
    pub fn snr_db(&self) -> f64 {
        if self.sum_e2 == 0.0 {
            return f64::INFINITY;
        }
        10.0 * (self.sum_w2 / self.sum_e2).log10()
    }

    /// Σ(w−ŵ)² / Σw²; 0 when there is no signal.
    pub fn relative_error(&self) -> f64 {
        if self.sum_w2 > 0.0 {
            self.sum_e2 / self.sum_w2
        } else {
            0.0
        }
    }

    /// √(Σ(w−ŵ)² / Σw²); 0 for an exact reconstruction.
    pub fn rel_rmse(&self) -> f64 {
        if self.sum_e2 == 0.0 {
            return 0.0;
        }
        (self.sum_e2 / self.sum_w2).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_zero_cases() {
        let mut s = ErrorSums::default();
        s.add(&[1.0, -2.0], &[1.0, -2.0]);
        assert_eq!(s.cosine(), 1.0);
        assert_eq!(s.snr_db(), f64::INFINITY);
        assert_eq!(s.rel_rmse(), 0.0);
        let mut z = ErrorSums::default();
        z.add(&[0.0, 0.0], &[0.0, 0.0]);
        assert_eq!(z.cosine(), 1.0);
        let mut h = ErrorSums::default();
        h.add(&[1.0, 0.0], &[0.0, 1.0]);
        assert_eq!(h.cosine(), 0.0);
        assert!((h.snr_db() - 10.0 * (0.5f64).log10()).abs() < 1e-12);
        assert_eq!(h.max_abs, 1.0);
    }
}
