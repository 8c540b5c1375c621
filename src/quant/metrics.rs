//! Error metrics between original values w and reconstruction ŵ, accumulated in f64 from the f32
//! values: cosine, SNR (dB), relative RMSE and max |w − ŵ|. Formulas are part of docs/FORMAT.md.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrorSums {
    pub count: u64,
    pub sum_w2: f64,
    pub sum_q2: f64,
    pub sum_wq: f64,
    pub sum_e2: f64,
    pub max_abs: f64,
}

impl ErrorSums {
    pub fn add(&mut self, w: &[f32], q: &[f32]) {
        for (&a, &b) in w.iter().zip(q) {
            let (a, b) = (a as f64, b as f64);
            let e = b - a;
            self.sum_w2 += a * a;
            self.sum_q2 += b * b;
            self.sum_wq += a * b;
            self.sum_e2 += e * e;
            self.max_abs = self.max_abs.max(e.abs());
        }
        self.count += w.len() as u64;
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
