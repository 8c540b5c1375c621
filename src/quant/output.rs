//! A layer's error where it matters: at its output. For a weight row w, its stored ŵ and the
//! layer input x with second moments G = E[x xᵀ], the output error is E[((w − ŵ)·x)²] = eᵀ G e
//! and the output's power wᵀ G w. Summed over rows they give the layer-output SNR and the cosine
//! between W x and Ŵ x — the numbers the model's output follows, where weight SNR does not.

use crate::quant::gram::Gram;

/// What the input second moments are known as.
#[derive(Debug, Clone, Copy)]
pub enum Weighting<'a> {
    /// The Gram matrix, used in independent blocks of `block` columns (the whole matrix when
    /// `block` ≥ n; a very large matrix by its diagonal blocks, as GPTQ uses it).
    Gram { gram: &'a Gram, block: usize },
    /// Only the diagonal E[x_j²] per column (correlations between columns ignored).
    Diagonal(&'a [f32]),
}

/// Σ over rows of wᵀGw, eᵀGe and wᵀGe (e = w − ŵ).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutputSums {
    pub signal: f64,
    pub error: f64,
    /// Σ wᵀ G e.
    pub cross: f64,
}

impl OutputSums {
    /// 10·log10(signal / error); +∞ for an exact layer.
    pub fn snr_db(&self) -> f64 {
        if self.error <= 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.error).log10()
        }
    }

    /// The cosine between W x and Ŵ x over the calibration inputs: wᵀGŵ / √(wᵀGw · ŵᵀGŵ).
    pub fn cosine(&self) -> f64 {
        let cross = self.signal - self.cross; // wᵀ G ŵ
        let hat = self.signal - 2.0 * self.cross + self.error; // ŵᵀ G ŵ
        if self.signal <= 0.0 || hat <= 0.0 {
            return if self.error <= 0.0 { 1.0 } else { 0.0 };
        }
        (cross / (self.signal * hat).sqrt()).clamp(-1.0, 1.0)
    }
}

/// `G[a..b, a..b] · x` for the block of columns `[a, b)` (`x` holds those columns).
fn block_product(gram: &Gram, a: usize, x: &[f64], out: &mut [f64]) {
    let m = x.len();
    match gram {
        Gram::Full { n, values } => {
            for (i, o) in out.iter_mut().enumerate() {
                let row = &values[(a + i) * n + a..(a + i) * n + a + m];
                *o = row.iter().zip(x).map(|(&g, &v)| g as f64 * v).sum();
            }
        }
        Gram::Blocks { size, values, .. } => {
            // Blocks are used whole, so [a, a + m) lies inside one stored block.
            let (b, r0) = (a / size, a % size);
            for (i, o) in out.iter_mut().enumerate() {
                let base = b * size * size + (r0 + i) * size + r0;
                *o = values[base..base + m].iter().zip(x).map(|(&g, &v)| g as f64 * v).sum();
            }
        }
        Gram::LowRank { vectors, values, diag, .. } => {
            let k = values.len();
            let mut proj = vec![0f64; k];
            for (i, &v) in x.iter().enumerate() {
                for (p, &u) in proj.iter_mut().zip(&vectors[(a + i) * k..(a + i + 1) * k]) {
                    *p += u as f64 * v;
                }
            }
            for (p, &l) in proj.iter_mut().zip(values) {
                *p *= l as f64;
            }
            for (i, o) in out.iter_mut().enumerate() {
                let row = &vectors[(a + i) * k..(a + i + 1) * k];
                *o = row.iter().zip(&proj).map(|(&u, &p)| u as f64 * p).sum::<f64>() + diag[a + i] as f64 * x[i];
            }
        }
    }
}

/// Per row, the gain that makes the row's output error uncorrelated with its output: wᵀGw / wᵀGŵ
/// (1 for a row with no output power, or whose reconstruction does not correlate with it).
pub fn output_gains(w: &[f32], w_hat: &[f32], n: usize, weighting: Weighting) -> Vec<f64> {
    let (mut wv, mut gw) = (Vec::new(), Vec::new());
    w.chunks_exact(n)
        .zip(w_hat.chunks_exact(n))
        .map(|(row, row_hat)| {
            let (mut signal, mut cross) = (0f64, 0f64);
            match weighting {
                Weighting::Diagonal(h) => {
                    for ((&a, &b), &g) in row.iter().zip(row_hat).zip(h) {
                        signal += g as f64 * a as f64 * a as f64;
                        cross += g as f64 * a as f64 * b as f64;
                    }
                }
                Weighting::Gram { gram, block } => {
                    let mut a = 0;
                    while a < n {
                        let m = block.min(n - a);
                        wv.clear();
                        wv.extend(row[a..a + m].iter().map(|&v| v as f64));
                        gw.resize(m, 0.0);
                        block_product(gram, a, &wv, &mut gw);
                        signal += wv.iter().zip(&gw).map(|(x, y)| x * y).sum::<f64>();
                        cross += row_hat[a..a + m].iter().zip(&gw).map(|(&x, y)| x as f64 * y).sum::<f64>();
                        a += m;
                    }
                }
            }
            if signal > 0.0 && cross > 0.0 && (signal / cross).is_finite() {
                signal / cross
            } else {
                1.0
            }
        })
        .collect()
}

/// The output sums of `w_hat` against `w`, rows of `n` values, in row order.
pub fn output_sums(w: &[f32], w_hat: &[f32], n: usize, weighting: Weighting) -> OutputSums {
    let mut s = OutputSums::default();
    let (mut wv, mut ev, mut gw, mut ge) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, row_hat) in w.chunks_exact(n).zip(w_hat.chunks_exact(n)) {
        match weighting {
            Weighting::Diagonal(h) => {
                for ((&a, &b), &g) in row.iter().zip(row_hat).zip(h) {
                    let (a, e, g) = (a as f64, a as f64 - b as f64, g as f64);
                    s.signal += g * a * a;
                    s.error += g * e * e;
                    s.cross += g * a * e;
                }
            }
            Weighting::Gram { gram, block } => {
                let mut a = 0;
                while a < n {
                    let m = block.min(n - a);
                    wv.clear();
                    ev.clear();
                    wv.extend(row[a..a + m].iter().map(|&v| v as f64));
                    ev.extend(row[a..a + m].iter().zip(&row_hat[a..a + m]).map(|(&v, &q)| v as f64 - q as f64));
                    gw.resize(m, 0.0);
                    ge.resize(m, 0.0);
                    block_product(gram, a, &wv, &mut gw);
                    block_product(gram, a, &ev, &mut ge);
                    s.signal += wv.iter().zip(&gw).map(|(x, y)| x * y).sum::<f64>();
                    s.error += ev.iter().zip(&ge).map(|(x, y)| x * y).sum::<f64>();
                    s.cross += wv.iter().zip(&ge).map(|(x, y)| x * y).sum::<f64>();
                    a += m;
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_gives_the_quadratic_forms() {
        // G = v vᵀ·2 + diag(1, 2, 3): the same matrix in each form.
        let v = [0.6f32, 0.8, 0.0];
        let mut full = vec![0f32; 9];
        for i in 0..3 {
            for j in 0..3 {
                full[i * 3 + j] = 2.0 * v[i] * v[j] + if i == j { (i + 1) as f32 } else { 0.0 };
            }
        }
        let forms = [
            Gram::Full { n: 3, values: full.clone() },
            Gram::LowRank { n: 3, vectors: v.to_vec(), values: vec![2.0], diag: vec![1.0, 2.0, 3.0] },
        ];
        let w = [1.0f32, -2.0, 0.5, 0.25, 0.0, -1.0];
        let q = [0.9f32, -2.1, 0.5, 0.25, 0.1, -1.0];
        let want = {
            let quad = |a: &[f64], b: &[f64]| -> f64 {
                (0..3).map(|i| (0..3).map(|j| a[i] * full[i * 3 + j] as f64 * b[j]).sum::<f64>()).sum()
            };
            let mut s = OutputSums::default();
            for r in 0..2 {
                let a: Vec<f64> = w[r * 3..r * 3 + 3].iter().map(|&x| x as f64).collect();
                let e: Vec<f64> = (0..3).map(|j| w[r * 3 + j] as f64 - q[r * 3 + j] as f64).collect();
                s.signal += quad(&a, &a);
                s.error += quad(&e, &e);
                s.cross += quad(&a, &e);
            }
            s
        };
        for g in &forms {
            let got = output_sums(&w, &q, 3, Weighting::Gram { gram: g, block: 3 });
            for (x, y) in [(got.signal, want.signal), (got.error, want.error), (got.cross, want.cross)] {
                assert!((x - y).abs() < 1e-6 * y.abs().max(1.0), "{got:?} vs {want:?}");
            }
        }
        assert_eq!(output_sums(&w, &w, 3, Weighting::Diagonal(&[1.0, 1.0, 1.0])).cosine(), 1.0);
        assert!(want.cosine() < 1.0 && want.cosine() > 0.9 && want.snr_db() > 10.0);
    }
}
