//! Which width a weight is asked to have, and why — before anything is quantized. Precedence:
//! your `layerBitWidths`, then sensitive layers, then a `targetSizeMb` plan, then `bitWidth`.

use crate::policy::config::QuantConfig;
use crate::policy::glob::glob_match;
use crate::policy::modality::{sensitive_patterns, Modality, GENERIC_SENSITIVE};
use crate::quant::width::Width;

/// A requested width: packed codes, or f16 (16 in `layerBitWidths`, `sensitiveBits` and plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWidth {
    Codes(Width),
    F16,
}

impl LayerWidth {
    /// 2, 4, 8 or 16 (f16), as configs and reports write it.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            16 => Some(LayerWidth::F16),
            b => Width::from_bits(b).map(LayerWidth::Codes),
        }
    }
    pub fn bits(self) -> u8 {
        match self {
            LayerWidth::Codes(w) => w.bits(),
            LayerWidth::F16 => 16,
        }
    }
}

/// Where a sensitive-layer pattern comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveOrigin {
    /// `sensitiveLayerPatterns`.
    Yours,
    /// The defaults of the model's modality.
    Modality(Option<Modality>),
    /// The patterns every modality uses (norm-like parameters).
    Generic,
}

impl std::fmt::Display for SensitiveOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SensitiveOrigin::Yours => f.write_str("sensitiveLayerPatterns"),
            SensitiveOrigin::Modality(m) => write!(f, "{} default", m.map_or("unknown", |m| m.as_str())),
            SensitiveOrigin::Generic => f.write_str("generic default"),
        }
    }
}

/// The rule that set a weight's requested width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WidthRule {
    /// A `layerBitWidths` entry: the exact name, or the longest matching glob.
    Override { pattern: String },
    /// A sensitive-layer pattern (at `sensitiveBits`).
    Sensitive { pattern: String, origin: SensitiveOrigin },
    /// A `targetSizeMb` plan: stored at exactly this width, without fallback.
    Planned,
    /// The config's `bitWidth`.
    Default,
    /// `uncalibratedBits`, wider than `bitWidth` (`asked`), for a layer without a Gram matrix:
    /// `bitWidth` is meant for layers GPTQ can compensate.
    Uncalibrated { asked: u8 },
}

/// A weight's requested width and the rule that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub width: LayerWidth,
    pub rule: WidthRule,
}

impl Requested {
    /// Whether a layer below `minAccuracy` may move to a wider width (not when a plan chose it).
    pub fn may_fall_back(&self) -> bool {
        self.rule != WidthRule::Planned
    }

    /// The rule in words, as the report's reason starts.
    pub fn describe(&self) -> String {
        let bits = self.width.bits();
        match &self.rule {
            WidthRule::Override { pattern } => format!("layerBitWidths['{pattern}'] = {bits}"),
            WidthRule::Sensitive { pattern, origin } => {
                format!("sensitive layer (matched '{pattern}', {origin}) at {bits} bits")
            }
            WidthRule::Planned => format!("targetSizeMb plan: {bits} bits"),
            WidthRule::Default => format!("bitWidth {bits}"),
            WidthRule::Uncalibrated { asked } => {
                format!(
                    "uncalibratedBits {bits}: no Gram matrix for this layer, so not bitWidth {asked} (that needs GPTQ)"
                )
            }
        }
    }
}

/// The `layerBitWidths` entry for `name`: an exact key, else the longest matching glob.
pub fn layer_override<'c>(cfg: &'c QuantConfig, name: &str) -> Option<(&'c str, u8)> {
    if let Some((pat, b)) = cfg.layer_bit_widths.get_key_value(name) {
        return Some((pat.as_str(), *b));
    }
    cfg.layer_bit_widths
        .iter()
        .filter(|(pat, _)| glob_match(pat, name))
        .max_by_key(|(pat, _)| pat.len())
        .map(|(pat, b)| (pat.as_str(), *b))
}

/// The first sensitive pattern that matches `name` and where it comes from, when skipping
/// sensitive layers is on. Case-insensitive: checkpoints spell norms "norm", "Norm" and "LayerNorm".
pub fn sensitive_match(cfg: &QuantConfig, modality: Option<Modality>, name: &str) -> Option<(String, SensitiveOrigin)> {
    if !cfg.skip_sensitive_layers {
        return None;
    }
    let lname = name.to_ascii_lowercase();
    let hit = |p: &str| glob_match(&p.to_ascii_lowercase(), &lname);
    if let Some(p) = cfg.sensitive_layer_patterns.iter().find(|p| hit(p)) {
        return Some((p.clone(), SensitiveOrigin::Yours));
    }
    if let Some(p) = sensitive_patterns(modality).iter().find(|p| hit(p)) {
        return Some((p.to_string(), SensitiveOrigin::Modality(modality)));
    }
    GENERIC_SENSITIVE.iter().find(|p| hit(p)).map(|p| (p.to_string(), SensitiveOrigin::Generic))
}

/// The width a weight named `name` is asked to have. `planned` is a size plan's width for it;
/// `gram` whether its calibration has a Gram matrix (so GPTQ can compensate a narrow width).
/// The config was validated, so every width in it is one `LayerWidth` can hold.
pub fn requested_width(
    cfg: &QuantConfig,
    modality: Option<Modality>,
    name: &str,
    planned: Option<u8>,
    gram: bool,
) -> Requested {
    let width = |bits: u8| LayerWidth::from_bits(bits).expect("validated config widths");
    if let Some((pattern, bits)) = layer_override(cfg, name) {
        return Requested { width: width(bits), rule: WidthRule::Override { pattern: pattern.to_string() } };
    }
    if let Some((pattern, origin)) = sensitive_match(cfg, modality, name) {
        return Requested { width: width(cfg.sensitive_bits), rule: WidthRule::Sensitive { pattern, origin } };
    }
    if let Some(bits) = planned {
        return Requested { width: width(bits), rule: WidthRule::Planned };
    }
    match cfg.uncalibrated_bits {
        Some(bits) if !gram && bits > cfg.bit_width => {
            Requested { width: width(bits), rule: WidthRule::Uncalibrated { asked: cfg.bit_width } }
        }
        _ => Requested { width: width(cfg.bit_width), rule: WidthRule::Default },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::parse_config_str;

    #[test]
    fn exact_override_beats_longest_glob_beats_sensitive_beats_plan() {
        let c = parse_config_str(r#"{"layerBitWidths": {"*": 8, "enc.*": 2, "enc.conv.weight": 16}}"#).unwrap();
        assert_eq!(layer_override(&c, "enc.conv.weight"), Some(("enc.conv.weight", 16)));
        assert_eq!(layer_override(&c, "enc.other"), Some(("enc.*", 2)));
        assert_eq!(layer_override(&c, "dec.x"), Some(("*", 8)));
        let r = requested_width(&c, None, "enc.conv.weight", Some(4), false);
        assert_eq!((r.width, r.describe()), (LayerWidth::F16, "layerBitWidths['enc.conv.weight'] = 16".into()));

        let c = parse_config_str(r#"{"sensitiveLayerPatterns": ["*attn*"]}"#).unwrap();
        let r = requested_width(&c, Some(Modality::Image), "mid.attn.to_q.weight", Some(2), false);
        assert_eq!(r.describe(), "sensitive layer (matched '*attn*', sensitiveLayerPatterns) at 8 bits");
        let r = requested_width(&c, Some(Modality::Image), "conv_in.weight", Some(2), false);
        assert_eq!(r.describe(), "sensitive layer (matched 'conv_in.*', image default) at 8 bits");
        let r = requested_width(&c, None, "block.LayerNorm.w", None, false);
        assert_eq!(r.describe(), "sensitive layer (matched '*norm*', generic default) at 8 bits");
        let r = requested_width(&c, None, "down.0.weight", Some(2), false);
        assert_eq!(
            (r.rule.clone(), r.describe(), r.may_fall_back()),
            (WidthRule::Planned, "targetSizeMb plan: 2 bits".into(), false)
        );
        let r = requested_width(&c, None, "down.0.weight", None, false);
        assert_eq!((r.describe(), r.may_fall_back()), ("bitWidth 4".into(), true));
    }

    #[test]
    fn edge_keeps_two_bits_for_layers_gptq_can_compensate() {
        let c = parse_config_str(r#"{"profile": "edge"}"#).unwrap();
        assert_eq!(requested_width(&c, None, "blk.ff.weight", None, true).width.bits(), 2);
        let r = requested_width(&c, None, "blk.ff.weight", None, false);
        assert_eq!((r.width.bits(), r.rule.clone()), (4, WidthRule::Uncalibrated { asked: 2 }));
        assert!(r.describe().contains("no Gram matrix"), "{}", r.describe());
        // A plan or an override still decides; uncalibratedBits 2 turns the rule off.
        assert_eq!(requested_width(&c, None, "blk.ff.weight", Some(2), false).width.bits(), 2);
        let c = parse_config_str(r#"{"profile": "edge", "uncalibratedBits": 2}"#).unwrap();
        assert_eq!(requested_width(&c, None, "blk.ff.weight", None, false).width.bits(), 2);
        let c = parse_config_str(r#"{"bitWidth": 8, "uncalibratedBits": 4}"#).unwrap();
        assert_eq!(requested_width(&c, None, "blk.ff.weight", None, false).width.bits(), 8);
    }
}
