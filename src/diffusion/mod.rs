//! What is specific to diffusion models: the calibration statistics of each layer's input
//! activations, time-aware activation params (time groups), and channel equalization.

pub mod calibration;
pub mod spatial;
pub mod timegroups;
