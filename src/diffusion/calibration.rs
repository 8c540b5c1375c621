//! Calibration statistics: what time-aware and spatial quantization need to know about each
//! layer's *input activations*, measured by running the model (tools/calibrate.py does it with
//! PyTorch forward hooks). The two carriers (a `.safetensors` file and a plain JSON/JS object,
//! docs/CALIBRATION.md) are read by `format::calibration`.
//!
//! Nothing is ever filled in: a timestep with `samples = 0` is *missing* (its min/max are ignored
//! and may be NaN) and the layer reports it; a weight without an entry gets no time groups.

use std::collections::BTreeMap;

/// Input-activation statistics of one layer.
#[derive(Debug, Clone, PartialEq)]
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
