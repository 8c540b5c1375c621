//! Quantization config (the seed's DiffusionQuantConfig): deployment profiles, user overrides,
//! and validation whose errors name the field, the value given and what is allowed.
//!
//! JS hands us a plain object; the bindings turn it into a `serde_json::Value` and
//! [`QuantConfig::from_json`] reads it field by field. Reading by hand (rather than
//! `#[derive(Deserialize)]`) is what lets every error name its camelCase field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{AqError, Result};
use crate::timegroups::TimeGrouping;

#[cfg(target_arch = "wasm32")]
use tsify::Tsify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Edge,
    Local,
    Cloud,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Edge => "edge",
            Profile::Local => "local",
            Profile::Cloud => "cloud",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "edge" => Some(Profile::Edge),
            "local" => Some(Profile::Local),
            "cloud" => Some(Profile::Cloud),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Code,
    Image,
    Audio,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Code => "code",
            Modality::Image => "image",
            Modality::Audio => "audio",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(Modality::Text),
            "code" => Some(Modality::Code),
            "image" => Some(Modality::Image),
            "audio" => Some(Modality::Audio),
            _ => None,
        }
    }
}

/// Whether the per-group range search runs. `Auto` searches at 2 and 4 bits, where it gains
/// 1–2 dB, and skips it at 8 bits, where min/max is already within noise of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify))]
#[serde(rename_all = "lowercase")]
pub enum ScaleSearch {
    Auto,
    On,
    Off,
}

impl ScaleSearch {
    pub fn enabled_for(self, bits: u8) -> bool {
        match self {
            ScaleSearch::On => true,
            ScaleSearch::Off => false,
            ScaleSearch::Auto => bits <= 4,
        }
    }
}

pub const ALLOWED_BITS: &[u8] = &[2, 4, 8];
pub const ALLOWED_GROUP_SIZES: &[u32] = &[32, 64, 128, 256];
/// Per-layer override widths; 16 keeps the layer as f16.
pub const ALLOWED_LAYER_BITS: &[u8] = &[2, 4, 8, 16];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct QuantConfig {
    pub profile: Profile,
    pub bit_width: u8,
    pub group_size: u32,
    pub modality: Option<Modality>,
    pub num_time_groups: u32,
    pub enable_time_aware: bool,
    pub enable_spatial: bool,
    /// Per-layer cosine threshold; a layer below it moves to the next width. 0 disables fallback.
    pub min_accuracy: f64,
    /// Samples per timestep the calibration should have (tools/calibrate.py --samples); layers
    /// calibrated with fewer say so in their reason.
    pub calibration_samples: u32,
    pub fail_fast: bool,
    /// Keep sensitive layers (the modality's default patterns plus `sensitiveLayerPatterns`) at
    /// `sensitiveBits`.
    pub skip_sensitive_layers: bool,
    /// Extra globs (over the full tensor name, case-insensitive) added to the modality defaults.
    pub sensitive_layer_patterns: Vec<String>,
    /// Width for sensitive layers: 8 (quantized, falling back to f16 below minAccuracy) or 16 (f16).
    pub sensitive_bits: u8,
    /// Tensor name or glob → 2/4/8/16. An exact name wins over globs; among globs the longest wins.
    /// (A plain object in JS: the bindings serialize maps as objects.)
    #[cfg_attr(target_arch = "wasm32", tsify(type = "Record<string, number>"))]
    pub layer_bit_widths: BTreeMap<String, u8>,
    pub scale_search: ScaleSearch,
    /// How timesteps are grouped for time-aware activation params.
    pub time_grouping: TimeGrouping,
    /// Boundary smoothing strength between adjacent time groups, 0..=1 (0 = off). Only widens.
    pub time_smoothing: f64,
    /// Width of the activation quantization the time groups describe (4 or 8).
    pub activation_bits: u8,
    /// Migration strength α of channel equalization, 0..=1.
    pub spatial_alpha: f64,
    /// Size budget in MiB: per-layer widths are planned to fit it (see sizeplan.rs). Null = off.
    pub target_size_mb: Option<f64>,
}

impl QuantConfig {
    /// The profile table of the foundation issue.
    pub fn from_profile(profile: Profile) -> Self {
        let (bit_width, group_size, num_time_groups, spatial, min_accuracy, calibration_samples) = match profile {
            Profile::Edge => (2, 64, 5, false, 0.93, 32),
            Profile::Local => (4, 128, 10, true, 0.99, 128),
            Profile::Cloud => (8, 64, 20, true, 0.9995, 512),
        };
        QuantConfig {
            profile,
            bit_width,
            group_size,
            modality: None,
            num_time_groups,
            enable_time_aware: true,
            enable_spatial: spatial,
            min_accuracy,
            calibration_samples,
            fail_fast: false,
            skip_sensitive_layers: true,
            sensitive_layer_patterns: Vec::new(),
            sensitive_bits: 8,
            layer_bit_widths: BTreeMap::new(),
            scale_search: ScaleSearch::Auto,
            time_grouping: TimeGrouping::Adaptive,
            time_smoothing: 0.0,
            activation_bits: 8,
            spatial_alpha: 0.5,
            target_size_mb: None,
        }
    }

    /// Plain weight quantization: no time-aware or spatial processing.
    pub fn base_mode() -> Self {
        QuantConfig {
            num_time_groups: 1,
            enable_time_aware: false,
            enable_spatial: false,
            skip_sensitive_layers: false,
            ..QuantConfig::from_profile(Profile::Local)
        }
    }

    /// Build from a JSON object (camelCase keys, as JS passes them). `profile` picks the defaults
    /// (`local` when absent); every other key overrides one field. Unknown keys are errors so that
    /// a typo never silently falls back to a default.
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = match value {
            Value::Null => return Ok(QuantConfig::from_profile(Profile::Local)),
            Value::Object(m) => m,
            other => {
                return Err(AqError::config("config", json_short(other), "an object such as { profile: 'local' }"))
            }
        };
        let mut cfg = match obj.get("profile").or_else(|| obj.get("deploymentProfile")) {
            None | Some(Value::Null) => QuantConfig::from_profile(Profile::Local),
            Some(Value::String(s)) if s == "base" => QuantConfig::base_mode(),
            Some(Value::String(s)) => match Profile::parse(s) {
                Some(p) => QuantConfig::from_profile(p),
                None => {
                    return Err(AqError::config(
                        "profile",
                        json_short(&Value::String(s.clone())),
                        "one of 'edge', 'local', 'cloud', 'base'",
                    ))
                }
            },
            Some(other) => {
                return Err(AqError::config("profile", json_short(other), "one of 'edge', 'local', 'cloud', 'base'"))
            }
        };
        for (key, v) in obj {
            if v.is_null() {
                continue; // `undefined`/`null` means "keep the profile's value"
            }
            match key.as_str() {
                "profile" | "deploymentProfile" => {}
                "bitWidth" | "bits" => cfg.bit_width = read_uint(key, v)? as u8,
                "groupSize" => cfg.group_size = read_uint(key, v)? as u32,
                "modality" => {
                    let s = read_str(key, v)?;
                    cfg.modality = match s.as_str() {
                        "" | "auto" => None,
                        _ => Some(Modality::parse(&s).ok_or_else(|| {
                            AqError::config(key, json_short(v), "one of 'text', 'code', 'image', 'audio', 'auto'")
                        })?),
                    };
                }
                "numTimeGroups" => cfg.num_time_groups = read_uint(key, v)? as u32,
                "enableTimeAware" => cfg.enable_time_aware = read_bool(key, v)?,
                "enableSpatial" => cfg.enable_spatial = read_bool(key, v)?,
                "minAccuracy" => cfg.min_accuracy = read_f64(key, v)?,
                "calibrationSamples" => cfg.calibration_samples = read_uint(key, v)? as u32,
                "failFast" => cfg.fail_fast = read_bool(key, v)?,
                "skipSensitiveLayers" => cfg.skip_sensitive_layers = read_bool(key, v)?,
                "sensitiveBits" => cfg.sensitive_bits = read_uint(key, v)?.min(255) as u8,
                "sensitiveLayerPatterns" => {
                    let arr =
                        v.as_array().ok_or_else(|| AqError::config(key, json_short(v), "an array of glob strings"))?;
                    cfg.sensitive_layer_patterns = arr
                        .iter()
                        .map(|p| {
                            p.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| AqError::config(key, json_short(p), "glob strings"))
                        })
                        .collect::<Result<_>>()?;
                }
                "layerBitWidths" => {
                    let m = v.as_object().ok_or_else(|| {
                        AqError::config(key, json_short(v), "an object mapping tensor name or glob to 2, 4, 8 or 16")
                    })?;
                    cfg.layer_bit_widths.clear();
                    for (pat, b) in m {
                        let field = format!("layerBitWidths['{pat}']");
                        let bits = read_uint(&field, b)?;
                        cfg.layer_bit_widths.insert(pat.clone(), bits.min(255) as u8);
                    }
                }
                "scaleSearch" => {
                    cfg.scale_search = match v {
                        Value::Bool(true) => ScaleSearch::On,
                        Value::Bool(false) => ScaleSearch::Off,
                        Value::String(s) if s == "on" => ScaleSearch::On,
                        Value::String(s) if s == "off" => ScaleSearch::Off,
                        Value::String(s) if s == "auto" => ScaleSearch::Auto,
                        _ => return Err(AqError::config(key, json_short(v), "'auto', 'on', 'off' (or true/false)")),
                    }
                }
                "timeGrouping" => {
                    cfg.time_grouping = match v.as_str() {
                        Some("uniform") => TimeGrouping::Uniform,
                        Some("adaptive") => TimeGrouping::Adaptive,
                        _ => return Err(AqError::config(key, json_short(v), "'uniform' or 'adaptive'")),
                    }
                }
                "timeSmoothing" => cfg.time_smoothing = read_f64(key, v)?,
                "activationBits" => cfg.activation_bits = read_uint(key, v)?.min(255) as u8,
                "spatialAlpha" => cfg.spatial_alpha = read_f64(key, v)?,
                "targetSizeMb" => cfg.target_size_mb = Some(read_f64(key, v)?),
                _ => {
                    return Err(AqError::config(
                        key,
                        json_short(v),
                        format!("no such config field; known fields: {}", KNOWN_FIELDS.join(", ")),
                    ))
                }
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every field; the error names the first bad field, its value and what is allowed.
    pub fn validate(&self) -> Result<()> {
        if !ALLOWED_BITS.contains(&self.bit_width) {
            return Err(AqError::config("bitWidth", self.bit_width, "one of 2, 4, 8"));
        }
        if !ALLOWED_GROUP_SIZES.contains(&self.group_size) {
            return Err(AqError::config("groupSize", self.group_size, "one of 32, 64, 128, 256"));
        }
        if !(1..=100).contains(&self.num_time_groups) {
            return Err(AqError::config("numTimeGroups", self.num_time_groups, "an integer in 1..=100"));
        }
        if !(self.min_accuracy.is_finite() && (0.0..=1.0).contains(&self.min_accuracy)) {
            return Err(AqError::config("minAccuracy", self.min_accuracy, "a number in 0..=1 (0 disables fallback)"));
        }
        if !(1..=1_000_000).contains(&self.calibration_samples) {
            return Err(AqError::config("calibrationSamples", self.calibration_samples, "an integer in 1..=1000000"));
        }
        if !(self.time_smoothing.is_finite() && (0.0..=1.0).contains(&self.time_smoothing)) {
            return Err(AqError::config("timeSmoothing", self.time_smoothing, "a number in 0..=1 (0 = off)"));
        }
        if ![4, 8].contains(&self.activation_bits) {
            return Err(AqError::config("activationBits", self.activation_bits, "4 or 8"));
        }
        if !(self.spatial_alpha.is_finite() && (0.0..=1.0).contains(&self.spatial_alpha)) {
            return Err(AqError::config("spatialAlpha", self.spatial_alpha, "a number in 0..=1"));
        }
        if let Some(t) = self.target_size_mb {
            if !(t.is_finite() && t > 0.0) {
                return Err(AqError::config("targetSizeMb", t, "a positive size in MiB (or null for no budget)"));
            }
        }
        if ![8, 16].contains(&self.sensitive_bits) {
            return Err(AqError::config("sensitiveBits", self.sensitive_bits, "8 (quantized) or 16 (f16)"));
        }
        for p in &self.sensitive_layer_patterns {
            if p.is_empty() {
                return Err(AqError::config("sensitiveLayerPatterns", "\"\"", "non-empty glob strings"));
            }
        }
        for (pat, bits) in &self.layer_bit_widths {
            if pat.is_empty() {
                return Err(AqError::config("layerBitWidths", "\"\"", "non-empty tensor names or globs as keys"));
            }
            if !ALLOWED_LAYER_BITS.contains(bits) {
                return Err(AqError::config(
                    &format!("layerBitWidths['{pat}']"),
                    bits,
                    "one of 2, 4, 8, 16 (16 keeps f16)",
                ));
            }
        }
        Ok(())
    }

    /// Requested width for one tensor: an exact `layerBitWidths` key, else the longest matching
    /// glob, else the global width. Returns the pattern that decided, for the report.
    pub fn bits_for(&self, name: &str) -> (u8, Option<&str>) {
        if let Some((pat, b)) = self.layer_bit_widths.get_key_value(name) {
            return (*b, Some(pat.as_str()));
        }
        self.layer_bit_widths
            .iter()
            .filter(|(pat, _)| glob_match(pat, name))
            .max_by_key(|(pat, _)| pat.len())
            .map(|(pat, b)| (*b, Some(pat.as_str())))
            .unwrap_or((self.bit_width, None))
    }

    /// The first sensitive pattern that matches and where it comes from ("yours", the
    /// modality's defaults or the generic ones), when skipping sensitive layers is on.
    pub fn sensitive_match(&self, modality: Option<Modality>, name: &str) -> Option<(String, String)> {
        if !self.skip_sensitive_layers {
            return None;
        }
        // Case-insensitive: checkpoints spell norms "norm", "Norm" and "LayerNorm".
        let lname = name.to_ascii_lowercase();
        let hit = |p: &str| glob_match(&p.to_ascii_lowercase(), &lname);
        if let Some(p) = self.sensitive_layer_patterns.iter().find(|p| hit(p)) {
            return Some((p.clone(), "sensitiveLayerPatterns".to_string()));
        }
        let by_modality = crate::modality::sensitive_patterns(modality);
        if let Some(p) = by_modality.iter().find(|p| hit(p)) {
            let m = modality.map_or("unknown", |m| m.as_str());
            return Some((p.to_string(), format!("{m} default")));
        }
        crate::modality::GENERIC_SENSITIVE
            .iter()
            .find(|p| hit(p))
            .map(|p| (p.to_string(), "generic default".to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serializes")
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "profile",
    "bitWidth",
    "groupSize",
    "modality",
    "numTimeGroups",
    "enableTimeAware",
    "enableSpatial",
    "minAccuracy",
    "calibrationSamples",
    "failFast",
    "skipSensitiveLayers",
    "sensitiveBits",
    "sensitiveLayerPatterns",
    "layerBitWidths",
    "scaleSearch",
    "timeGrouping",
    "timeSmoothing",
    "activationBits",
    "spatialAlpha",
    "targetSizeMb",
];

fn json_short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

fn read_uint(field: &str, v: &Value) -> Result<u64> {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && (0.0..=4_294_967_295.0).contains(&x) => Ok(x as u64),
        _ => Err(AqError::config(field, json_short(v), "a non-negative integer")),
    }
}

fn read_f64(field: &str, v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| AqError::config(field, json_short(v), "a number"))
}

fn read_bool(field: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| AqError::config(field, json_short(v), "true or false"))
}

fn read_str(field: &str, v: &Value) -> Result<String> {
    v.as_str().map(str::to_string).ok_or_else(|| AqError::config(field, json_short(v), "a string"))
}

/// Wildcard match over the whole name: `*` matches any run (dots included), `?` one character.
/// Iterative with single backtrack point, so it runs in O(len(pattern)·len(name)) worst case.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Parse a config given as JSON text (used by native tools and tests).
pub fn parse_config_str(s: &str) -> Result<QuantConfig> {
    let v: Value =
        serde_json::from_str(s).map_err(|e| AqError::config("config", "<json>", format!("valid JSON ({e})")))?;
    QuantConfig::from_json(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profiles_match_the_table() {
        let e = QuantConfig::from_profile(Profile::Edge);
        assert_eq!(
            (e.bit_width, e.group_size, e.num_time_groups, e.enable_spatial, e.min_accuracy, e.calibration_samples),
            (2, 64, 5, false, 0.93, 32)
        );
        let l = QuantConfig::from_profile(Profile::Local);
        assert_eq!(
            (l.bit_width, l.group_size, l.num_time_groups, l.enable_spatial, l.min_accuracy, l.calibration_samples),
            (4, 128, 10, true, 0.99, 128)
        );
        let c = QuantConfig::from_profile(Profile::Cloud);
        assert_eq!(
            (c.bit_width, c.group_size, c.num_time_groups, c.enable_spatial, c.min_accuracy, c.calibration_samples),
            (8, 64, 20, true, 0.9995, 512)
        );
        let b = QuantConfig::base_mode();
        assert_eq!(
            (b.bit_width, b.group_size, b.num_time_groups, b.enable_time_aware, b.enable_spatial),
            (4, 128, 1, false, false)
        );
        for p in [e, l, c, b] {
            p.validate().unwrap();
        }
    }

    #[test]
    fn overrides_apply_on_top_of_the_profile() {
        let c = QuantConfig::from_json(&json!({"profile": "edge", "groupSize": 128, "scaleSearch": "off"})).unwrap();
        assert_eq!((c.profile, c.bit_width, c.group_size, c.scale_search), (Profile::Edge, 2, 128, ScaleSearch::Off));
        let d = QuantConfig::from_json(&json!({})).unwrap();
        assert_eq!(d, QuantConfig::from_profile(Profile::Local));
    }

    #[test]
    fn errors_name_field_value_and_expectation() {
        let cases = [
            (json!({"bitWidth": 3}), "bitWidth", "3"),
            (json!({"groupSize": 100}), "groupSize", "100"),
            (json!({"numTimeGroups": 0}), "numTimeGroups", "0"),
            (json!({"minAccuracy": 1.5}), "minAccuracy", "1.5"),
            (json!({"minAccuracy": "high"}), "minAccuracy", "\"high\""),
            (json!({"profile": "mobile"}), "profile", "\"mobile\""),
            (json!({"modality": "video"}), "modality", "\"video\""),
            (json!({"groupSise": 64}), "groupSise", "64"),
            (json!({"layerBitWidths": {"a.*": 3}}), "layerBitWidths['a.*']", "3"),
            (json!({"calibrationSamples": -1}), "calibrationSamples", "-1"),
            (json!({"timeGrouping": "even"}), "timeGrouping", "\"even\""),
            (json!({"timeSmoothing": 2}), "timeSmoothing", "2"),
            (json!({"activationBits": 16}), "activationBits", "16"),
            (json!({"spatialAlpha": -0.5}), "spatialAlpha", "-0.5"),
            (json!({"sensitiveBits": 4}), "sensitiveBits", "4"),
            (json!({"targetSizeMb": 0}), "targetSizeMb", "0"),
            (json!(7), "config", "7"),
        ];
        for (input, field, value) in cases {
            let err = QuantConfig::from_json(&input).unwrap_err();
            assert_eq!(err.code(), "E_CONFIG");
            assert_eq!(err.field(), Some(field), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(field) && msg.contains(value), "{msg}");
        }
    }

    #[test]
    fn layer_bits_exact_beats_longest_glob() {
        let c =
            QuantConfig::from_json(&json!({"layerBitWidths": {"*": 8, "enc.*": 2, "enc.conv.weight": 16}})).unwrap();
        assert_eq!(c.bits_for("enc.conv.weight"), (16, Some("enc.conv.weight")));
        assert_eq!(c.bits_for("enc.other"), (2, Some("enc.*")));
        assert_eq!(c.bits_for("dec.x"), (8, Some("*")));
    }

    #[test]
    fn glob_semantics() {
        assert!(!glob_match("*norm*", "encoder.layer.0.LayerNorm.weight"));
        assert!(glob_match("*Norm*", "encoder.layer.0.LayerNorm.weight"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("down_blocks.*.weight", "down_blocks.0.resnets.1.conv1.weight"));
        assert!(!glob_match("down_blocks.*.bias", "down_blocks.0.conv.weight"));
        // pathological pattern stays fast
        let name = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(50)), &name));
    }
}
