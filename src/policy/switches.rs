//! Config values that switch a method: the range search (`scaleSearch`), the calibration-driven
//! methods (`gptq`, `importance`, `matchGain`), the equalization strength (`spatialAlpha`) and
//! how codes are stored (`codec`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AqError, Result};
use crate::policy::fields::{json_short, ConfigValue, FieldKind};

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

/// Whether the per-group range search runs. `Auto` searches at every width: 1–2 dB of weight SNR
/// at 2 and 4 bits, 0.7 dB at 8 bits — which at a diffusion model's output is the difference
/// between an ε-MSE ratio of 1.013 and 1.006 (`make eval`, the bundled DiT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum ScaleSearch {
    Auto,
    On,
    Off,
}

impl ScaleSearch {
    pub fn enabled(self) -> bool {
        self != ScaleSearch::Off
    }
}

/// Channel-equalization strength: one α for every layer, or α searched per layer — each layer
/// quantized without equalization and at α ∈ [`SpatialAlpha::GRID`], keeping the one whose error at
/// the layer's output (the Gram matrix, else the input second moments, else the activation maxima)
/// is smallest, so equalization never costs a layer weight-only quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SpatialAlpha {
    Fixed(f64),
    Search,
}

impl SpatialAlpha {
    /// The α candidates of the search (besides no equalization at all).
    pub const GRID: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

    /// A fixed α in 0..=1, or the search.
    pub fn valid(self) -> bool {
        match self {
            SpatialAlpha::Fixed(a) => a.is_finite() && (0.0..=1.0).contains(&a),
            SpatialAlpha::Search => true,
        }
    }
}

impl std::fmt::Display for SpatialAlpha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpatialAlpha::Fixed(a) => write!(f, "{a}"),
            SpatialAlpha::Search => f.write_str("search"),
        }
    }
}

impl Serialize for SpatialAlpha {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            SpatialAlpha::Fixed(a) => s.serialize_f64(*a),
            SpatialAlpha::Search => s.serialize_str("search"),
        }
    }
}

impl<'de> Deserialize<'de> for SpatialAlpha {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        SpatialAlpha::read("spatialAlpha", &v, "").map_err(serde::de::Error::custom)
    }
}

/// A number, or the word `search`.
impl ConfigValue for SpatialAlpha {
    const KIND: FieldKind = FieldKind::Number;
    fn read(field: &str, v: &Value, _: &str) -> Result<Self> {
        match v {
            Value::String(s) if s == "search" => Ok(SpatialAlpha::Search),
            _ => v
                .as_f64()
                .map(SpatialAlpha::Fixed)
                .ok_or_else(|| AqError::config(field, json_short(v), "a number in 0..=1 or 'search'")),
        }
    }
    fn from_text(field: &str, text: &str) -> Result<Value> {
        f64::from_text(field, text)
    }
}

/// Whether a calibration-driven method runs: `auto` when the calibration has what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Auto,
    On,
    Off,
}

impl Switch {
    /// Whether the method runs when the statistics it needs are `available`.
    pub fn wanted(self, available: bool) -> bool {
        match self {
            Switch::Off => false,
            _ => available,
        }
    }
}

/// `on`, `off` or `auto`; `true`/`false` stand for `on`/`off`.
impl ConfigValue for Switch {
    const KIND: FieldKind = FieldKind::Choice;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        match v {
            Value::Bool(true) => Ok(Switch::On),
            Value::Bool(false) => Ok(Switch::Off),
            Value::String(s) if s == "on" => Ok(Switch::On),
            Value::String(s) if s == "off" => Ok(Switch::Off),
            Value::String(s) if s == "auto" => Ok(Switch::Auto),
            _ => Err(AqError::config(field, json_short(v), expected)),
        }
    }
}

/// The same words as a [`Switch`] (`true`/`false` stand for `on`/`off`).
impl ConfigValue for ScaleSearch {
    const KIND: FieldKind = FieldKind::Choice;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        Ok(match Switch::read(field, v, expected)? {
            Switch::Auto => ScaleSearch::Auto,
            Switch::On => ScaleSearch::On,
            Switch::Off => ScaleSearch::Off,
        })
    }
}

/// How a quantized layer's codes are stored (docs/FORMAT.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Our group-wise codes: an f16 scale and min per group of `groupSize` (`quantized` rows).
    Groups,
    /// ggml's block type of the same width (`Q2_K`, `Q4_K`, `Q8_0`: `blocks` rows), where the
    /// layer is a whole number of blocks and not equalized.
    Ggml,
    /// Per layer, the blocks when they take no more bytes than the groups and store the layer
    /// with less error (at its output with calibration), else the groups. Groups throughout
    /// under a size plan (`targetSizeMb`), which measures and sizes layers as groups.
    Auto,
}

impl crate::policy::fields::Choice for Codec {
    const WORDS: &'static [(&'static str, Self)] =
        &[("groups", Codec::Groups), ("ggml", Codec::Ggml), ("auto", Codec::Auto)];
}
crate::policy::fields::choice_value!(Codec);
