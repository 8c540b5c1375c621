//! Which width and storage each tensor gets, and why: the config (profiles and overrides), the
//! modality and its sensitive layers, and the `targetSizeMb` planner.

pub mod config;
pub mod fields;
pub mod gguf_mix;
pub mod glob;
pub mod modality;
pub mod sizeplan;
pub mod switches;
pub mod width;
