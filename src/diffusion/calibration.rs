//! Calibration statistics: what time-aware and spatial quantization need to know about each
//! layer's *input activations*, measured by running the model (tools/calibrate.py does it with
//! PyTorch forward hooks). The two carriers (a `.safetensors` file and a plain JSON/JS object,
//! docs/CALIBRATION.md) are read by `format::calibration`.
//!
//! Nothing is ever filled in: a timestep with `samples = 0` is *missing* (its min/max are ignored
//! and may be NaN) and the layer reports it; a weight without an entry gets no time groups.

use std::collections::BTreeMap;

pub use crate::quant::gram::Gram;

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
