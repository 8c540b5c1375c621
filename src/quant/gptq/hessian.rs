//! The Hessian side of GPTQ: H = G + λI from a layer's Gram matrix (equalization folded in,
//! damping raised until it factors), split into blocks of columns, each block's columns in the
//! order they are quantized (act-order) and the upper Cholesky factor U of H⁻¹ that the
//! compensation step walks.

use crate::error::{AqError, Result};
use crate::quant::gram::Gram;

/// Columns inverted together at most; a larger Gram matrix is used by its diagonal blocks of
/// [`SPLIT_BLOCK`] columns (inverting n columns costs n³/3 and U holds n² values).
pub const DENSE_LIMIT: usize = 4096;
pub const SPLIT_BLOCK: usize = 256;

/// One block of columns `[start, start + size)`, the order they are quantized in, and the upper
/// Cholesky factor of (H + λI)⁻¹ with H's rows and columns in that order.
#[derive(Debug, Clone)]
pub(super) struct Block {
    pub start: usize,
    pub size: usize,
    /// `order[k]`: the block column quantized k-th (identity without act-order).
    pub order: Vec<usize>,
    /// `position[c]`: where block column `c` is in `order`.
    pub position: Vec<usize>,
    /// `size × size`, row-major, upper triangle.
    pub u: Vec<f32>,
}

/// A layer's Hessian prepared for GPTQ.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(super) blocks: Vec<Block>,
    /// H_jj per column: the importance that group params are chosen with.
    importance: Vec<f32>,
    /// The damping actually used, relative to the mean diagonal.
    pub damp: f64,
    /// How the columns were blocked, for the report: `n` when whole.
    pub block: usize,
}

impl Prepared {
    /// Columns of a row.
    pub fn columns(&self) -> usize {
        self.importance.len()
    }

    /// H_jj per column.
    pub fn importance(&self) -> &[f32] {
        &self.importance
    }
}

/// Cholesky factor L (lower, row-major) of a symmetric positive definite m×m matrix; `None` if
/// it is not positive definite.
fn cholesky(a: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= l[i * m + k] * l[j * m + k];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * m + i] = s.sqrt();
            } else {
                l[i * m + j] = s / l[j * m + j];
            }
        }
    }
    Some(l)
}

/// U (upper, row-major) with Uᵀ U = A⁻¹. With P the reversal of the indices and P A P = L Lᵀ,
/// A⁻¹ = P L⁻ᵀ L⁻¹ P = Uᵀ U for U = P L⁻¹ P, which is upper: one Cholesky factorisation and one
/// triangular inverse, both along contiguous rows (about n³/3 multiply-adds in all).
fn inverse_factor(a: &[f64], m: usize) -> Option<Vec<f32>> {
    let reversed: Vec<f64> = (0..m * m).map(|k| a[(m - 1 - k / m) * m + (m - 1 - k % m)]).collect();
    let l = cholesky(&reversed, m)?;
    // X = L⁻¹ (lower), row by row: X_i = (e_i − Σ_{k<i} L_ik X_k) / L_ii.
    let mut x = vec![0f64; m * m];
    for i in 0..m {
        let (done, rest) = x.split_at_mut(i * m);
        let row = &mut rest[..m];
        row[i] = 1.0;
        for k in 0..i {
            let f = l[i * m + k];
            if f != 0.0 {
                for (r, &v) in row[..=k].iter_mut().zip(&done[k * m..k * m + k + 1]) {
                    *r -= f * v;
                }
            }
        }
        let d = l[i * m + i];
        row[..=i].iter_mut().for_each(|v| *v /= d);
    }
    let mut u = vec![0f32; m * m];
    for i in 0..m {
        for j in i..m {
            u[i * m + j] = x[(m - 1 - i) * m + (m - 1 - j)] as f32;
        }
    }
    Some(u)
}

/// Prepare `gram` (over `n` columns) for GPTQ. `scales`, when the weights are stored equalized
/// (W·diag(s), per column), turns G into the Gram matrix of the inputs X/s that W·diag(s) sees.
/// `damp` is λ relative to the mean of the diagonal; it is raised tenfold (up to three times)
/// while a block is not positive definite. With `act_order` each block's columns are quantized
/// in order of decreasing H_jj (ties by index): the columns whose error costs most at the output
/// go first, while every other column can still absorb their error.
pub fn prepare(gram: &Gram, n: usize, scales: Option<&[f32]>, damp: f64, act_order: bool) -> Result<Prepared> {
    if gram.n() < n || (gram.n() != n && !matches!(gram, Gram::Blocks { .. })) {
        return Err(AqError::Calibration(format!("the Gram matrix has {} columns, the weight's rows {n}", gram.n())));
    }
    let block = match gram {
        Gram::Blocks { size, .. } => *size,
        _ if n <= DENSE_LIMIT => n,
        _ => SPLIT_BLOCK,
    };
    let importance: Vec<f32> = (0..n)
        .map(|j| {
            let s = scales.map_or(1.0, |s| s[j] as f64);
            (gram.at(j, j) / (s * s)) as f32
        })
        .collect();
    let mut blocks = Vec::new();
    let mut used = damp;
    let mut start = 0;
    while start < n {
        let size = block.min(n - start);
        let mut h = gram.dense(start, start + size);
        if let Some(s) = scales {
            for i in 0..size {
                for j in 0..size {
                    h[i * size + j] /= s[start + i] as f64 * s[start + j] as f64;
                }
            }
        }
        let mut order: Vec<usize> = (0..size).collect();
        if act_order {
            order.sort_by(|&a, &b| h[b * size + b].total_cmp(&h[a * size + a]).then(a.cmp(&b)));
            h = (0..size * size).map(|k| h[order[k / size] * size + order[k % size]]).collect();
        }
        let mean = (0..size).map(|i| h[i * size + i]).sum::<f64>() / size as f64;
        let unit = if mean > 0.0 { mean } else { 1.0 };
        let mut u = None;
        for attempt in 0..4 {
            let lambda = damp * 10f64.powi(attempt) * unit;
            let mut a = h.clone();
            for i in 0..size {
                a[i * size + i] += lambda;
            }
            if let Some(f) = inverse_factor(&a, size) {
                used = used.max(damp * 10f64.powi(attempt));
                u = Some(f);
                break;
            }
        }
        let u = u.ok_or_else(|| {
            AqError::Calibration(format!(
                "the Gram matrix of columns {start}..{} is not positive semi-definite",
                start + size
            ))
        })?;
        let mut position = vec![0; size];
        for (k, &c) in order.iter().enumerate() {
            position[c] = k;
        }
        blocks.push(Block { start, size, order, position, u });
        start += size;
    }
    Ok(Prepared { blocks, importance, damp: used, block })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::gptq::testing::Rng;

    #[test]
    fn factor_inverts_the_matrix() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.25, 0.5, 0.25, 2.0];
        let u = inverse_factor(&a, 3).unwrap();
        // (UᵀU)·A = I
        let uu = |i: usize, j: usize| -> f64 { (0..3).map(|k| u[k * 3 + i] as f64 * u[k * 3 + j] as f64).sum() };
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| uu(i, k) * a[k * 3 + j]).sum();
                assert!((p - (i == j) as u8 as f64).abs() < 1e-5, "({i},{j}) = {p}");
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        // A larger one with correlated, uneven columns: the same identity, U upper.
        let m = 40;
        let mut rng = Rng(9);
        let b: Vec<f64> = (0..m * m).map(|_| rng.next() as f64).collect();
        let a: Vec<f64> = (0..m * m)
            .map(|k| {
                let (i, j) = (k / m, k % m);
                (0..m).map(|t| b[i * m + t] * b[j * m + t]).sum::<f64>() + if i == j { 0.5 } else { 0.0 }
            })
            .collect();
        let u = inverse_factor(&a, m).unwrap();
        for i in 0..m {
            for j in 0..m {
                let p: f64 = (0..m)
                    .map(|k| {
                        let inv_ik: f64 = (0..m).map(|t| u[t * m + i] as f64 * u[t * m + k] as f64).sum();
                        inv_ik * a[k * m + j]
                    })
                    .sum();
                assert!((p - (i == j) as u8 as f64).abs() < 1e-3, "({i},{j}) = {p}");
                if j < i {
                    assert_eq!(u[i * m + j], 0.0);
                }
            }
        }
    }
}
