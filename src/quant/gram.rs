//! The second moments of a layer's input, as a matrix: what the output error of a weight row is
//! measured with (`output`) and what GPTQ compensates errors with (`gptq`).

/// The second-moment matrix G = E[x xᵀ] of a layer's input, over the columns of the weight's rows:
/// C_in for a Linear, C_in·kh·kw for a conv, in the weight's (c, kh, kw) order. A row's output
/// error is eᵀ G e for its weight error e. Whole, or in a compact form: the full matrix of an SD
/// conv with 11,520 columns is 531 MB.
#[derive(Debug, Clone, PartialEq)]
pub enum Gram {
    /// `n × n`, row-major.
    Full { n: usize, values: Vec<f32> },
    /// The diagonal blocks only, `⌈n / size⌉` blocks of `size × size` (the last one padded with
    /// zeros past `n`).
    Blocks { n: usize, size: usize, values: Vec<f32> },
    /// `V diag(λ) Vᵀ + diag(d)`: the top `k` eigenpairs (`vectors` is `n × k`, row-major) and the
    /// diagonal of the remainder.
    LowRank { n: usize, vectors: Vec<f32>, values: Vec<f32>, diag: Vec<f32> },
}

impl Gram {
    /// Columns (the weight's row length).
    pub fn n(&self) -> usize {
        match self {
            Gram::Full { n, .. } | Gram::Blocks { n, .. } | Gram::LowRank { n, .. } => *n,
        }
    }

    /// Entry (i, j).
    pub fn at(&self, i: usize, j: usize) -> f64 {
        match self {
            Gram::Full { n, values } => values[i * n + j] as f64,
            Gram::Blocks { size, values, .. } => {
                if i / size != j / size {
                    return 0.0;
                }
                let (b, r, c) = (i / size, i % size, j % size);
                values[b * size * size + r * size + c] as f64
            }
            Gram::LowRank { vectors, values, diag, .. } => {
                let k = values.len();
                let (vi, vj) = (&vectors[i * k..(i + 1) * k], &vectors[j * k..(j + 1) * k]);
                let low: f64 = vi.iter().zip(vj).zip(values).map(|((a, b), l)| *a as f64 * *b as f64 * *l as f64).sum();
                low + if i == j { diag[i] as f64 } else { 0.0 }
            }
        }
    }

    /// The diagonal: E[x_j²] per column.
    pub fn diagonal(&self) -> Vec<f64> {
        (0..self.n()).map(|j| self.at(j, j)).collect()
    }

    /// The dense sub-matrix of columns `[a, b)` (row-major, f64).
    pub fn dense(&self, a: usize, b: usize) -> Vec<f64> {
        let m = b - a;
        let mut out = vec![0f64; m * m];
        for i in 0..m {
            for j in 0..m {
                out[i * m + j] = self.at(a + i, a + j);
            }
        }
        out
    }

    /// The largest independent blocks of columns this form allows: the whole matrix for `Full`
    /// and `LowRank`, the stored blocks for `Blocks`.
    pub fn natural_block(&self) -> usize {
        match self {
            Gram::Blocks { size, .. } => *size,
            _ => self.n(),
        }
    }
}
