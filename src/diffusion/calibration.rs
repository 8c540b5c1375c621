//! Calibration statistics: what time-aware and spatial quantization need to know about each
//! layer's *input activations*, measured by running the model (tools/calibrate.py does it with
//! PyTorch forward hooks). The two carriers (a `.safetensors` file and a plain JSON/JS object,
//! docs/CALIBRATION.md) are read by `format::calibration`.
//!
//! Nothing is ever filled in: a timestep with `samples = 0` is *missing* (its min/max are ignored
//! and may be NaN) and the layer reports it; a weight without an entry gets no time groups.

use std::collections::BTreeMap;

/// Input-activation statistics of one layer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerStats {
    /// Per timestep: smallest and largest input activation value seen (NaN allowed where missing).
    pub act_min: Vec<f32>,
    pub act_max: Vec<f32>,
    /// Per timestep: how many samples (batch elements) were seen; 0 = no data for that timestep.
    pub samples: Vec<u64>,
    /// max |x_j| per input channel, per timestep (`[T][C]`) when recorded that way.
    pub channel_absmax_per_t: Option<Vec<Vec<f32>>>,
    /// max |x_j| per input channel over all timesteps (`[C]`).
    pub channel_absmax: Option<Vec<f32>>,
    /// E[x_j²] per input channel, per timestep (`[T][C]`) when recorded that way.
    pub sq_mean_per_t: Option<Vec<Vec<f32>>>,
    /// E[x_j²] per input channel, averaged over the timesteps with data (`[C]`): how much an error
    /// in column j of the weight costs at the layer's output.
    pub sq_mean: Option<Vec<f32>>,
    /// E[x xᵀ] over the layer's unfolded input (the Hessian of its output error).
    pub gram: Option<Gram>,
    /// Input rows the Gram matrix was averaged over (samples × positions × timesteps).
    pub gram_rows: Option<u64>,
    /// How much the model's output error grows when this layer alone is quantized at 2, 4 and 8
    /// bits (relative ε-MSE increase, measured by tools/calibrate.py).
    pub sensitivity: Option<[f32; 3]>,
}

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

impl LayerStats {
    pub fn has(&self, t: usize) -> bool {
        self.samples[t] > 0
    }
    /// Indices of timesteps without data.
    pub fn missing(&self) -> Vec<usize> {
        (0..self.samples.len()).filter(|&t| !self.has(t)).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The diffusion timestep value of each calibration step (for example 999, 949, …, 0), in the
    /// order the per-timestep arrays use. Time groups refer to *indices* into this list.
    pub timesteps: Vec<f64>,
    pub layers: BTreeMap<String, LayerStats>,
}

impl Calibration {
    pub fn num_timesteps(&self) -> usize {
        self.timesteps.len()
    }

    /// The statistics for a weight tensor: `L.weight` ↔ layer `L` (or the full name as given).
    pub fn for_weight(&self, tensor: &str) -> Option<(&str, &LayerStats)> {
        let layer = tensor.strip_suffix(".weight").unwrap_or(tensor);
        self.layers.get_key_value(layer).map(|(k, v)| (k.as_str(), v))
    }
}
