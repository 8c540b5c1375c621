//! Quantization config: deployment profiles, user overrides, and validation whose errors name
//! the field, the value given and what is allowed.
//!
//! Every field is declared once, in the table at the bottom of this file: its type, default, JSON
//! name (and aliases), what it allows and how that is checked. The table generates the struct
//! (and through tsify its TypeScript type), the reader of the input form — a JSON object in which
//! every field is optional and an unknown field is an error, so that a typo never silently falls
//! back to a default — the list of known fields, validation, and the text form of CLI flags and
//! URL query parameters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diffusion::timegroups::TimeGrouping;
use crate::error::{AqError, Result};
use crate::policy::fields::{
    choice_value, json_short, quant_config, Choice, ConfigValue, FieldInfo, FieldKind, Invalid,
};
use crate::policy::modality::Modality;
pub use crate::policy::switches::{Codec, ScaleSearch, SpatialAlpha, Switch};

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

impl Choice for TimeGrouping {
    const WORDS: &'static [(&'static str, Self)] =
        &[("uniform", TimeGrouping::Uniform), ("adaptive", TimeGrouping::Adaptive)];
}
choice_value!(TimeGrouping);

/// `"auto"` (or `""`) means "detect it"; other words are matched case-insensitively.
impl ConfigValue for Option<Modality> {
    const KIND: FieldKind = FieldKind::Choice;
    fn read(field: &str, v: &Value, expected: &str) -> Result<Self> {
        let s = v.as_str().ok_or_else(|| AqError::config(field, json_short(v), "a string"))?;
        match s {
            "" | "auto" => Ok(None),
            _ => Modality::parse(s).map(Some).ok_or_else(|| AqError::config(field, json_short(v), expected)),
        }
    }
}

pub const ALLOWED_BITS: &[u8] = &[2, 4, 8];
pub const ALLOWED_GROUP_SIZES: &[u32] = &[32, 64, 128, 256];
/// Per-layer override widths; 16 keeps the layer as f16.
pub const ALLOWED_LAYER_BITS: &[u8] = &[2, 4, 8, 16];

const PROFILE_NAMES: &str = "one of 'edge', 'local', 'cloud', 'base'";

fn check_sensitive_patterns(patterns: &[String]) -> std::result::Result<(), Invalid> {
    match patterns.iter().any(String::is_empty) {
        true => Err(Invalid { path: None, value: "\"\"".into(), expected: "non-empty glob strings".into() }),
        false => Ok(()),
    }
}

fn check_layer_bits(map: &BTreeMap<String, u8>) -> std::result::Result<(), Invalid> {
    for (pat, bits) in map {
        if pat.is_empty() {
            return Err(Invalid {
                path: None,
                value: "\"\"".into(),
                expected: "non-empty tensor names or globs as keys".into(),
            });
        }
        if !ALLOWED_LAYER_BITS.contains(bits) {
            return Err(Invalid {
                path: Some(format!("layerBitWidths['{pat}']")),
                value: bits.to_string(),
                expected: "one of 2, 4, 8, 16 (16 keeps f16)".into(),
            });
        }
    }
    Ok(())
}

fn check_uncalibrated_bits(b: &Option<u8>) -> std::result::Result<(), Invalid> {
    match b {
        Some(b) if !ALLOWED_BITS.contains(b) => Err(Invalid {
            path: None,
            value: b.to_string(),
            expected: "2, 4 or 8 (at most bitWidth: bitWidth for every layer)".into(),
        }),
        _ => Ok(()),
    }
}

fn check_target_size(t: &Option<f64>) -> std::result::Result<(), Invalid> {
    match t {
        Some(t) if !(t.is_finite() && *t > 0.0) => Err(Invalid {
            path: None,
            value: t.to_string(),
            expected: "a positive size in MiB (or null for no budget)".into(),
        }),
        _ => Ok(()),
    }
}

quant_config! {
    /// Deployment profile: the defaults of every other field (`base` in the input form is `local`
    /// without time-aware, spatial or sensitive-layer processing).
    profile: Profile = Profile::Local, ["profile", "deploymentProfile"];

    /// Quantized width of weights (2, 4 or 8 bits).
    #[cfg_attr(target_arch = "wasm32", tsify(type = "2 | 4 | 8"))]
    bit_width: u8 = 4, ["bitWidth", "bits"], "one of 2, 4, 8", when |v| ALLOWED_BITS.contains(v);
    /// Values per group sharing one scale and min.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "32 | 64 | 128 | 256"))]
    group_size: u32 = 128, ["groupSize"], "one of 32, 64, 128, 256", when |v| ALLOWED_GROUP_SIZES.contains(v);
    /// The model's modality (selects the default sensitive layers); null = detect it.
    modality: Option<Modality> = None, ["modality"], "one of 'text', 'code', 'image', 'audio', 'auto'";
    /// Most time groups (activation params per range of timesteps) per calibrated layer.
    num_time_groups: u32 = 10, ["numTimeGroups"], "an integer in 1..=100", when |v| (1..=100).contains(v);
    /// Time-aware activation params for layers with calibration statistics.
    enable_time_aware: bool = true, ["enableTimeAware"], "true or false";
    /// Channel equalization of layers with calibration statistics.
    enable_spatial: bool = true, ["enableSpatial"], "true or false";
    /// Per-layer cosine threshold; a layer below it moves to the next width. 0 disables fallback.
    min_accuracy: f64 = 0.99, ["minAccuracy"], "a number in 0..=1 (0 disables fallback)",
        when |v| v.is_finite() && (0.0..=1.0).contains(v);
    /// Samples per timestep the calibration should have (tools/calibrate.py --samples); layers
    /// calibrated with fewer say so in their reason.
    calibration_samples: u32 = 128, ["calibrationSamples"], "an integer in 1..=1000000",
        when |v| (1..=1_000_000).contains(v);
    /// Stop with `E_ACCURACY` when a layer misses `minAccuracy` at every width (instead of f16).
    fail_fast: bool = false, ["failFast"], "true or false";
    /// Keep sensitive layers (the modality's default patterns plus `sensitiveLayerPatterns`) at
    /// `sensitiveBits`.
    skip_sensitive_layers: bool = true, ["skipSensitiveLayers"], "true or false";
    /// Extra globs (over the full tensor name, case-insensitive) added to the modality defaults.
    sensitive_layer_patterns: Vec<String> = Vec::new(), ["sensitiveLayerPatterns"], "an array of glob strings",
        check check_sensitive_patterns;
    /// Width for sensitive layers: 8 (quantized, falling back to f16 below minAccuracy) or 16 (f16).
    #[cfg_attr(target_arch = "wasm32", tsify(type = "8 | 16"))]
    sensitive_bits: u8 = 8, ["sensitiveBits"], "8 (quantized) or 16 (f16)", when |v| [8, 16].contains(v);
    /// Tensor name or glob → 2/4/8/16. An exact name wins over globs; among globs the longest wins.
    /// (A plain object in JS: the bindings serialize maps as objects.)
    #[cfg_attr(target_arch = "wasm32", tsify(type = "Record<string, 2 | 4 | 8 | 16>"))]
    layer_bit_widths: BTreeMap<String, u8> = BTreeMap::new(), ["layerBitWidths"], "one of 2, 4, 8, 16 (16 keeps f16)",
        check check_layer_bits;
    /// Whether the per-group range search runs (`auto`: at every width; `off`: min/max).
    scale_search: ScaleSearch = ScaleSearch::Auto, ["scaleSearch"], "'auto', 'on', 'off' (or true/false)";
    /// How timesteps are grouped for time-aware activation params.
    time_grouping: TimeGrouping = TimeGrouping::Adaptive, ["timeGrouping"], "'uniform' or 'adaptive'";
    /// Boundary smoothing strength between adjacent time groups, 0..=1 (0 = off). Only widens.
    time_smoothing: f64 = 0.0, ["timeSmoothing"], "a number in 0..=1 (0 = off)",
        when |v| v.is_finite() && (0.0..=1.0).contains(v);
    /// Leave the inputs of sensitive layers (the first and last layers, embedders) in float: they
    /// get no time groups, so a W+A runtime does not quantize them. Quantizing the image a
    /// diffusion model starts from, or its output head's input, costs more at the output than
    /// every other layer together (`make eval`, W4A8 and W4A4 rows).
    float_sensitive_inputs: bool = true, ["floatSensitiveInputs"], "true or false";
    /// Width of the activation quantization the time groups describe (4 or 8).
    #[cfg_attr(target_arch = "wasm32", tsify(type = "4 | 8"))]
    activation_bits: u8 = 8, ["activationBits"], "4 or 8", when |v| [4, 8].contains(v);
    /// Migration strength α of channel equalization, 0..=1, or `search`: chosen per layer.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "number | \"search\""))]
    spatial_alpha: SpatialAlpha = SpatialAlpha::Fixed(0.5), ["spatialAlpha"], "a number in 0..=1 or 'search'",
        when |v| v.valid();
    /// Size budget in MiB: per-layer widths are planned to fit it (see policy/sizeplan.rs). Null = off.
    target_size_mb: Option<f64> = None, ["targetSizeMb"], "a positive size in MiB (or null for no budget)",
        check check_target_size;
    /// GPTQ error compensation for layers whose calibration has a Gram matrix (`auto`: whenever it
    /// does; `off`: never).
    gptq: Switch = Switch::Auto, ["gptq"], "'auto', 'on', 'off' (or true/false)";
    /// GPTQ's damping λ, relative to the mean of the Gram matrix's diagonal.
    gptq_damp: f64 = 0.01, ["gptqDamp"], "a number in (0, 1]", when |v| v.is_finite() && *v > 0.0 && *v <= 1.0;
    /// GPTQ quantizes each row's columns in order of decreasing input second moment (act-order;
    /// group params stay per group of consecutive columns): at 4 bits the bundled DiT's ε-MSE
    /// ratio 1.156 → 1.053 and the UNet's 1.238 → 1.143 (`make eval`). `false`: index order.
    gptq_act_order: bool = true, ["gptqActOrder"], "true or false";
    /// Group params weighted by each column's input second moment, for calibrated layers quantized
    /// without GPTQ (`auto`: whenever the calibration has second moments or a Gram matrix).
    importance: Switch = Switch::Auto, ["importance"], "'auto', 'on', 'off' (or true/false)";
    /// Params that keep each group's gain (its error uncorrelated with the weights) after the range
    /// search or importance weighting, and each row's output gain with a Gram matrix
    /// (`quant::gain`; `auto`/`on`: always; `off`: least-squares params).
    match_gain: Switch = Switch::Auto, ["matchGain"], "'auto', 'on', 'off' (or true/false)";
    /// The width of layers without a Gram matrix when `bitWidth` is narrower: 2 bits without GPTQ
    /// leaves a diffusion model's output unusable (`make eval`). Profile `edge` sets 4; a value
    /// not above `bitWidth` (e.g. 2) turns the rule off.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "2 | 4 | 8 | null"))]
    uncalibrated_bits: Option<u8> = None, ["uncalibratedBits"], "2, 4 or 8 (at most bitWidth: bitWidth for every layer)",
        check check_uncalibrated_bits;
    /// How quantized codes are stored: `groups` (an f16 scale and min per group), `ggml` (the
    /// block type of the same width: Q2_K, Q4_K, Q8_0) or `auto` (per layer, the blocks when no
    /// larger and more accurate). Not with `targetSizeMb`, whose plan sizes groups.
    codec: Codec = Codec::Groups, ["codec"], "'groups', 'ggml' or 'auto'";
}

/// `group-size` → `groupSize`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl QuantConfig {
    /// The profile table.
    pub fn from_profile(profile: Profile) -> Self {
        let (bit_width, group_size, num_time_groups, enable_spatial, min_accuracy, calibration_samples) = match profile
        {
            Profile::Edge => (2, 64, 5, false, 0.93, 32),
            Profile::Local => (4, 128, 10, true, 0.99, 128),
            Profile::Cloud => (8, 64, 20, true, 0.9995, 512),
        };
        QuantConfig {
            profile,
            uncalibrated_bits: (profile == Profile::Edge).then_some(4),
            // Edge's uncalibrated layers (4 bits in groups of 64) gain from ggml's Q4_K blocks at
            // the same bytes before zstd; with calibration `auto` keeps GPTQ's gain-matched
            // groups (docs/PERFORMANCE.md, 2026-12-08).
            codec: if profile == Profile::Edge { Codec::Auto } else { Codec::Groups },
            bit_width,
            group_size,
            num_time_groups,
            enable_spatial,
            min_accuracy,
            calibration_samples,
            ..QuantConfig::defaults()
        }
    }

    /// The codec the layers are stored with: `auto` is groups under a size plan, which measures
    /// and sizes every layer as groups.
    pub fn codec_in_effect(&self) -> Codec {
        match self.codec {
            Codec::Auto if self.target_size_mb.is_some() => Codec::Groups,
            c => c,
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

    /// Build from the input form: a JSON object (camelCase keys, as JS passes them) in which
    /// every field is optional. `profile` picks the defaults (`local` when absent); every other
    /// key overrides one field; `null` keeps the profile's value. Unknown keys are errors.
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
                None => return Err(AqError::config("profile", json_short(&Value::String(s.clone())), PROFILE_NAMES)),
            },
            Some(other) => return Err(AqError::config("profile", json_short(other), PROFILE_NAMES)),
        };
        for (key, v) in obj {
            if v.is_null() || key == "profile" || key == "deploymentProfile" {
                continue;
            }
            if !cfg.set_field(key, v)? {
                return Err(AqError::config(
                    key,
                    json_short(v),
                    format!("no such config field; known fields: {}", KNOWN_FIELDS.join(", ")),
                ));
            }
        }
        cfg.validate()?;
        if cfg.codec == Codec::Ggml && cfg.target_size_mb.is_some() {
            return Err(AqError::config(
                "codec",
                json_short(&serde_json::to_value(cfg.codec).expect("a word")),
                "'groups' or 'auto' with targetSizeMb: the size plan measures each layer in groups",
            ));
        }
        Ok(cfg)
    }

    /// A model that can be read only once (an HTTP request body) cannot have a size plan, which
    /// reads it twice: `E_CONFIG` naming `targetSizeMb` when one is asked for.
    pub fn check_single_pass(&self) -> Result<()> {
        match self.target_size_mb {
            Some(t) => Err(AqError::config(
                "targetSizeMb",
                t,
                "null here: a size plan reads the model twice, and a model streamed once (an HTTP request body) \
                 can be read only once; use bitWidth/layerBitWidths, or plan where the file can be read again",
            )),
            None => Ok(()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serializes")
    }
}

/// The input form from text pairs, as CLI flags and URL query parameters give them: names in
/// camelCase, kebab-case or an alias, values converted to the field's type (booleans also as
/// on/off, yes/no, 1/0 or empty for "on"; lists comma-separated; `layerBitWidths` as
/// `glob=bits,…`). Unknown names and unparsable values are kept as text, so that
/// [`QuantConfig::from_json`] reports them with the field's name.
pub fn input_from_text<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Value> {
    let mut obj = Map::new();
    for (name, text) in pairs {
        let (key, value) = match canonical_field(name) {
            Some(field) => (field.to_string(), QuantConfig::value_from_text(field, text)?),
            None => (camel_case(name), Value::String(text.to_string())),
        };
        obj.insert(key, value);
    }
    Ok(Value::Object(obj))
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
        let a = QuantConfig::from_json(&json!({"bits": 8, "modality": "Image", "scaleSearch": true})).unwrap();
        assert_eq!((a.bit_width, a.modality, a.scale_search), (8, Some(Modality::Image), ScaleSearch::On));
    }

    #[test]
    fn errors_name_field_value_and_expectation() {
        let cases = [
            (json!({"bitWidth": 3}), "bitWidth", "3"),
            (json!({"bits": 260}), "bits", "260"),
            (json!({"groupSize": 100}), "groupSize", "100"),
            (json!({"numTimeGroups": 0}), "numTimeGroups", "0"),
            (json!({"minAccuracy": 1.5}), "minAccuracy", "1.5"),
            (json!({"minAccuracy": "high"}), "minAccuracy", "\"high\""),
            (json!({"profile": "mobile"}), "profile", "\"mobile\""),
            (json!({"modality": "video"}), "modality", "\"video\""),
            (json!({"groupSise": 64}), "groupSise", "64"),
            (json!({"layerBitWidths": {"a.*": 3}}), "layerBitWidths['a.*']", "3"),
            (json!({"layerBitWidths": {"a.*": 258}}), "layerBitWidths['a.*']", "258"),
            (json!({"calibrationSamples": -1}), "calibrationSamples", "-1"),
            (json!({"timeGrouping": "even"}), "timeGrouping", "\"even\""),
            (json!({"timeSmoothing": 2}), "timeSmoothing", "2"),
            (json!({"activationBits": 16}), "activationBits", "16"),
            (json!({"spatialAlpha": -0.5}), "spatialAlpha", "-0.5"),
            (json!({"sensitiveBits": 4}), "sensitiveBits", "4"),
            (json!({"sensitiveBits": 264}), "sensitiveBits", "264"),
            (json!({"targetSizeMb": 0}), "targetSizeMb", "0"),
            (json!({"sensitiveLayerPatterns": [""]}), "sensitiveLayerPatterns", "\"\""),
            (json!(7), "config", "7"),
        ];
        for (input, field, value) in cases {
            let err = QuantConfig::from_json(&input).unwrap_err();
            assert_eq!(err.code(), "E_CONFIG");
            assert_eq!(err.field(), Some(field), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(field) && msg.contains(value), "{msg}");
        }
        // A value too large for its field is refused with what the field allows, never truncated.
        let e = QuantConfig::from_json(&json!({"bitWidth": 260})).unwrap_err();
        assert_eq!(e.to_string(), "invalid config: bitWidth = 260: one of 2, 4, 8");
    }

    #[test]
    fn every_field_is_known_described_and_round_trips() {
        let fields = fields();
        assert_eq!(fields.iter().map(|f| f.name).collect::<Vec<_>>(), KNOWN_FIELDS);
        let json: Value = serde_json::from_str(&QuantConfig::from_profile(Profile::Cloud).to_json()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut known = KNOWN_FIELDS.to_vec();
        known.sort();
        assert_eq!(keys, known, "the serialized config has exactly the known fields");
        // The serialized config reads back as itself.
        for p in [Profile::Edge, Profile::Local, Profile::Cloud] {
            let c = QuantConfig { target_size_mb: Some(3.5), ..QuantConfig::from_profile(p) };
            assert_eq!(QuantConfig::from_json(&serde_json::from_str(&c.to_json()).unwrap()).unwrap(), c);
        }
    }

    #[test]
    fn text_form_converts_each_kind() {
        let v = input_from_text([
            ("bits", "2"),
            ("group-size", "64"),
            ("fail-fast", ""),
            ("enable-spatial", "off"),
            ("min-accuracy", "0.5"),
            ("sensitive-layer-patterns", "a.*, b.*"),
            ("layer-bit-widths", "enc.*=8,dec.0.weight=16"),
            ("time-grouping", "uniform"),
            ("profile", "edge"),
        ])
        .unwrap();
        let c = QuantConfig::from_json(&v).unwrap();
        assert_eq!(
            (c.profile, c.bit_width, c.group_size, c.fail_fast, c.enable_spatial),
            (Profile::Edge, 2, 64, true, false)
        );
        assert_eq!((c.min_accuracy, c.time_grouping), (0.5, TimeGrouping::Uniform));
        assert_eq!(c.sensitive_layer_patterns, vec!["a.*".to_string(), "b.*".to_string()]);
        assert_eq!(c.layer_bit_widths.get("dec.0.weight"), Some(&16));
        // Unparsable text reaches the reader, which names the field.
        let e = QuantConfig::from_json(&input_from_text([("group-size", "big")]).unwrap()).unwrap_err();
        assert_eq!((e.field(), e.to_string().contains("\"big\"")), (Some("groupSize"), true));
        let e = QuantConfig::from_json(&input_from_text([("group-sise", "64")]).unwrap()).unwrap_err();
        assert_eq!(e.field(), Some("groupSise"));
        let e = input_from_text([("layer-bit-widths", "enc.*")]).unwrap_err();
        assert_eq!(e.field(), Some("layerBitWidths"));
        assert_eq!(canonical_field("bit-width"), Some("bitWidth"));
        assert_eq!(canonical_field("deploymentProfile"), Some("profile"));
        assert_eq!(canonical_field("nope"), None);
    }

    #[test]
    fn spatial_alpha_is_a_number_or_search() {
        let read = |text: &str| QuantConfig::from_json(&input_from_text([("spatial-alpha", text)]).unwrap());
        assert_eq!(read("search").unwrap().spatial_alpha, SpatialAlpha::Search);
        assert_eq!(read("0.25").unwrap().spatial_alpha, SpatialAlpha::Fixed(0.25));
        for bad in ["searched", "1.5", "NaN"] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.field(), Some("spatialAlpha"), "{bad}");
            assert!(e.to_string().contains("'search'"), "{e}");
        }
        // The stored config keeps the word and reads back as itself.
        let c = QuantConfig { spatial_alpha: SpatialAlpha::Search, ..QuantConfig::from_profile(Profile::Local) };
        assert!(c.to_json().contains("\"spatialAlpha\":\"search\""), "{}", c.to_json());
        assert_eq!(QuantConfig::from_json(&serde_json::from_str(&c.to_json()).unwrap()).unwrap(), c);
    }
}
