//! Which ggml type each tensor gets in a GGUF file, decided from its name, dtype and shape alone
//! (never from its values), so every tensor's size is known from the safetensors header and the
//! file's offsets are written before the first tensor is quantized. The rules follow the
//! community converters (llama.cpp, ComfyUI-GGUF): vectors and small tensors stay in full
//! precision, rows that are not whole blocks keep a float type, the rest get the mix's type.

use crate::error::{AqError, Result};
use crate::policy::glob::glob_match;
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;

/// Tensors of at most this many values are kept in full precision (they cost nothing).
pub const SMALL_TENSOR_VALUES: u64 = 1024;

/// Name fragments of parameters that loaders read without dequantizing or that steer every
/// block (modulation tables): kept in F32.
pub const HIGH_PRECISION_KEYS: &[&str] = &["scale_shift_table", ".modulation", "pos_embed", "img_emb.emb_pos"];

/// Layers whose error reaches every later layer — the embedders and the output layers of UNets and
/// DiTs (FLUX, SD3 names included) — get the mix's `sensitive` type. The image modality's own
/// sensitive patterns (policy/modality.rs) plus the transformer families' names.
pub const SENSITIVE_EXTRA: &[&str] = &[
    "img_in.*",
    "txt_in.*",
    "time_in.*",
    "vector_in.*",
    "guidance_in.*",
    "context_embedder.*",
    "time_text_embed.*",
    "proj_out.*",
    "norm_out.*",
    "*pos_embed*",
];

/// A named choice like the files people download: `Q4_K_M`, `Q8_0`, `F16`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufMix {
    pub name: &'static str,
    /// The type of most tensors.
    pub main: GgmlType,
    /// The type of the sensitive layers (SENSITIVE_EXTRA and the image modality's patterns).
    pub sensitive: GgmlType,
    /// llama.cpp's `general.file_type` (the `llama_ftype` enum).
    pub file_type: u32,
}

const fn mix(name: &'static str, main: GgmlType, sensitive: GgmlType, file_type: u32) -> GgufMix {
    GgufMix { name, main, sensitive, file_type }
}

pub const MIXES: &[GgufMix] = &[
    mix("F32", GgmlType::F32, GgmlType::F32, 0),
    mix("F16", GgmlType::F16, GgmlType::F16, 1),
    mix("BF16", GgmlType::BF16, GgmlType::BF16, 32),
    mix("Q8_0", GgmlType::Q8_0, GgmlType::Q8_0, 7),
    mix("Q6_K", GgmlType::Q6_K, GgmlType::Q6_K, 18),
    mix("Q5_K_M", GgmlType::Q5_K, GgmlType::Q6_K, 17),
    mix("Q5_K_S", GgmlType::Q5_K, GgmlType::Q5_K, 16),
    mix("Q5_1", GgmlType::Q5_1, GgmlType::Q5_1, 9),
    mix("Q5_0", GgmlType::Q5_0, GgmlType::Q5_0, 8),
    mix("Q4_K_M", GgmlType::Q4_K, GgmlType::Q6_K, 15),
    mix("Q4_K_S", GgmlType::Q4_K, GgmlType::Q5_K, 14),
    mix("Q4_1", GgmlType::Q4_1, GgmlType::Q4_1, 3),
    mix("Q4_0", GgmlType::Q4_0, GgmlType::Q4_0, 2),
    mix("Q3_K_L", GgmlType::Q3_K, GgmlType::Q6_K, 13),
    mix("Q3_K_M", GgmlType::Q3_K, GgmlType::Q5_K, 12),
    mix("Q3_K_S", GgmlType::Q3_K, GgmlType::Q4_K, 11),
    mix("Q2_K", GgmlType::Q2_K, GgmlType::Q4_K, 10),
];

impl GgufMix {
    pub const NAMES: &'static str =
        "F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, Q5_1, Q5_0, Q4_K_M, Q4_K_S, Q4_1, Q4_0, Q3_K_L, Q3_K_M, Q3_K_S or Q2_K";

    pub fn parse(name: &str) -> Result<Self> {
        MIXES
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
            .copied()
            .ok_or_else(|| AqError::config("ggufType", format!("'{name}'"), format!("one of {}", Self::NAMES)))
    }
}

/// The 32-value type a K-quant falls back to when rows are not whole 256-value blocks (the
/// choice llama.cpp makes: about the same bits, smaller blocks; for Q2_K/Q3_K llama.cpp takes
/// IQ4_NL, a 4.5-bit 32-value type we do not write, so the 4.5-bit Q4_0).
fn small_block_fallback(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    }
}

/// Why a tensor got its type: the rule that fired, as a value; `describe` renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeRule {
    /// 1-D: biases, norms (kept exact).
    Vector,
    /// At most SMALL_TENSOR_VALUES values.
    Small,
    /// Its name contains a HIGH_PRECISION_KEYS fragment.
    HighPrecision(&'static str),
    /// A layer whose error reaches every later layer (the pattern that matched).
    Sensitive(&'static str),
    /// Its rows (the last dimension) are not a whole number of `wanted`'s blocks.
    RowsNotWholeBlocks { row: u64, wanted: GgmlType },
    /// The mix's type.
    Mix,
    /// A `layerBitWidths` entry (the pattern and its width).
    Override { pattern: String, bits: u8 },
    /// Moved down from `from` to fit `targetSizeMb`; `measured`: chosen by the calibration's
    /// measured sensitivities (else by size).
    Budget { from: GgmlType, target_mb: f64, measured: bool },
}

impl TypeRule {
    pub fn describe(&self, ty: GgmlType, mix: GgufMix) -> String {
        match self {
            TypeRule::Vector => format!("{}: 1-D tensor kept in full precision", ty.name()),
            TypeRule::Small => format!("{}: at most {SMALL_TENSOR_VALUES} values, kept in full precision", ty.name()),
            TypeRule::HighPrecision(key) => format!("{}: name contains '{key}', kept in full precision", ty.name()),
            TypeRule::Sensitive(p) => {
                format!("{}: sensitive layer ('{p}'), the {} mix's higher type", ty.name(), mix.name)
            }
            TypeRule::RowsNotWholeBlocks { row, wanted } => format!(
                "{}: rows of {row} values are not whole {}-value {} blocks",
                ty.name(),
                wanted.block_values(),
                wanted.name()
            ),
            TypeRule::Mix => format!("{}: the {} mix", ty.name(), mix.name),
            TypeRule::Override { pattern, bits } => {
                format!("{}: layerBitWidths '{pattern}' = {bits}", ty.name())
            }
            TypeRule::Budget { from, target_mb, measured } => {
                let by = if *measured { ", where the measured sensitivity says it costs least" } else { "" };
                format!("{}: moved down from {} to fit targetSizeMb {target_mb}{by}", ty.name(), from.name())
            }
        }
    }
}

/// The full-precision type for a source dtype: exact for F32/F16/BF16.
fn exact_float(dtype: Dtype) -> GgmlType {
    match dtype {
        Dtype::F16 => GgmlType::F16,
        Dtype::BF16 => GgmlType::BF16,
        _ => GgmlType::F32,
    }
}

/// A float type no larger than the mix needs for tensors it cannot block-quantize: the source's
/// own 16-bit type, else F16 (as the community converters fall back).
fn fallback_float(dtype: Dtype, mix: GgufMix) -> GgmlType {
    match (dtype, mix.main) {
        (_, GgmlType::F32) | (Dtype::F64, _) => GgmlType::F32,
        (Dtype::BF16, _) => GgmlType::BF16,
        _ => GgmlType::F16,
    }
}

/// The sensitive-layer pattern `name` matches, if any.
fn sensitive_pattern(name: &str) -> Option<&'static str> {
    let image = crate::policy::modality::sensitive_patterns(Some(crate::policy::modality::Modality::Image));
    image.iter().chain(SENSITIVE_EXTRA).find(|p| glob_match(p, name)).copied()
}

/// The type of one float tensor. `shape` is the safetensors (row-major) shape.
pub fn choose(name: &str, dtype: Dtype, shape: &[u64], mix: GgufMix) -> (GgmlType, TypeRule) {
    let count = shape.iter().product::<u64>();
    if shape.len() <= 1 {
        return (exact_float(dtype), TypeRule::Vector);
    }
    if count <= SMALL_TENSOR_VALUES {
        return (exact_float(dtype), TypeRule::Small);
    }
    if let Some(key) = HIGH_PRECISION_KEYS.iter().find(|k| name.contains(*k)) {
        return (GgmlType::F32, TypeRule::HighPrecision(key));
    }
    let (wanted, rule) = match sensitive_pattern(name) {
        Some(p) if mix.sensitive != mix.main => (mix.sensitive, TypeRule::Sensitive(p)),
        _ => (mix.main, TypeRule::Mix),
    };
    fit(wanted, rule, dtype, shape, mix)
}

/// `wanted` for a tensor of `shape`, or the type it falls back to when its rows are not whole
/// blocks of `wanted` (then the rule says so).
fn fit(wanted: GgmlType, rule: TypeRule, dtype: Dtype, shape: &[u64], mix: GgufMix) -> (GgmlType, TypeRule) {
    let row = *shape.last().expect("at least 2 dims");
    let fits = |t: GgmlType| row.is_multiple_of(t.block_values() as u64);
    if fits(wanted) {
        return (wanted, rule);
    }
    let smaller = small_block_fallback(wanted);
    if smaller != wanted && fits(smaller) {
        return (smaller, TypeRule::RowsNotWholeBlocks { row, wanted });
    }
    (fallback_float(dtype, mix), TypeRule::RowsNotWholeBlocks { row, wanted })
}

/// The type a `layerBitWidths` width stands for in a GGUF file: 16 keeps the source's 16-bit
/// float (F16 for F32 sources), 8 is Q8_0, 4 the mix's 4-bit family (Q4_K under a K-quant mix,
/// else Q4_0), 2 is Q2_K.
pub fn type_for_bits(bits: u8, dtype: Dtype, mix: GgufMix) -> GgmlType {
    let k_mix = matches!(mix.main, GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K);
    match bits {
        16 => match dtype {
            Dtype::BF16 => GgmlType::BF16,
            _ => GgmlType::F16,
        },
        8 => GgmlType::Q8_0,
        4 if k_mix => GgmlType::Q4_K,
        4 => GgmlType::Q4_0,
        _ => GgmlType::Q2_K,
    }
}

/// A `layerBitWidths` entry's type for a ≥2-D float tensor (exact name first, else the longest
/// matching glob), fitted to its rows; `None` when no entry names it.
pub fn override_type(
    overrides: &std::collections::BTreeMap<String, u8>,
    name: &str,
    dtype: Dtype,
    shape: &[u64],
    mix: GgufMix,
) -> Option<(GgmlType, TypeRule)> {
    if shape.len() <= 1 {
        return None;
    }
    let (pattern, bits) = overrides
        .get_key_value(name)
        .or_else(|| overrides.iter().filter(|(p, _)| glob_match(p, name)).max_by_key(|(p, _)| p.len()))?;
    let rule = TypeRule::Override { pattern: pattern.clone(), bits: *bits };
    Some(fit(type_for_bits(*bits, dtype, mix), rule, dtype, shape, mix))
}

/// The next smaller type a tensor with rows of `row` values can take, or `None` at the bottom.
/// Whole 256-value rows step through the K-quants, 32-value rows through Q8_0, Q5_0 and Q4_0.
pub fn step_down(ty: GgmlType, row: u64) -> Option<GgmlType> {
    let ladder: &[GgmlType] = if row.is_multiple_of(256) {
        &[
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
            GgmlType::Q5_K,
            GgmlType::Q4_K,
            GgmlType::Q3_K,
            GgmlType::Q2_K,
        ]
    } else if row.is_multiple_of(32) {
        &[GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0]
    } else {
        &[GgmlType::F32, GgmlType::F16]
    };
    let bits = ty.bits_per_value();
    ladder.iter().copied().find(|t| t.bits_per_value() < bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_in_order() {
        let mix = GgufMix::parse("q4_0").unwrap();
        assert_eq!(choose("b", Dtype::F32, &[4096], mix), (GgmlType::F32, TypeRule::Vector));
        assert_eq!(choose("b", Dtype::F16, &[4096], mix).0, GgmlType::F16);
        assert_eq!(choose("w", Dtype::F16, &[8, 64], mix), (GgmlType::F16, TypeRule::Small));
        assert_eq!(
            choose("x.scale_shift_table", Dtype::F16, &[6, 1152], mix).1,
            TypeRule::HighPrecision("scale_shift_table")
        );
        assert_eq!(
            choose("conv", Dtype::F32, &[320, 4, 3, 3], mix),
            (GgmlType::F16, TypeRule::RowsNotWholeBlocks { row: 3, wanted: GgmlType::Q4_0 })
        );
        assert_eq!(choose("conv", Dtype::BF16, &[320, 4, 3, 3], mix).0, GgmlType::BF16);
        assert_eq!(choose("w", Dtype::F32, &[320, 640], mix), (GgmlType::Q4_0, TypeRule::Mix));
        assert_eq!(GgufMix::parse("Q3_K_XL").unwrap_err().code(), "E_CONFIG");
        let q2 = GgufMix::parse("q2_k").unwrap();
        assert_eq!(choose("w", Dtype::F16, &[320, 1280], q2), (GgmlType::Q2_K, TypeRule::Mix));
        assert_eq!(choose("w", Dtype::F16, &[320, 320], q2).0, GgmlType::Q4_0);
        assert_eq!(choose("conv_in.weight", Dtype::F16, &[320, 1024], q2).0, GgmlType::Q4_K);
        let km = GgufMix::parse("q4_k_m").unwrap();
        assert_eq!(choose("w", Dtype::F16, &[320, 1280], km), (GgmlType::Q4_K, TypeRule::Mix));
        assert_eq!(choose("w", Dtype::F16, &[320, 320], km).0, GgmlType::Q5_0);
        assert_eq!(choose("conv_in.weight", Dtype::F16, &[320, 1024], km).0, GgmlType::Q6_K);
        assert_eq!(choose("x.weight", Dtype::F16, &[320, 100], km).0, GgmlType::F16);
    }

    #[test]
    fn widths_map_to_types_and_the_ladder_only_goes_down() {
        let km = GgufMix::parse("Q4_K_M").unwrap();
        let legacy = GgufMix::parse("Q5_0").unwrap();
        assert_eq!(type_for_bits(4, Dtype::F16, km), GgmlType::Q4_K);
        assert_eq!(type_for_bits(4, Dtype::F16, legacy), GgmlType::Q4_0);
        assert_eq!(type_for_bits(16, Dtype::BF16, km), GgmlType::BF16);
        assert_eq!(type_for_bits(16, Dtype::F32, km), GgmlType::F16);
        assert_eq!(
            (type_for_bits(8, Dtype::F16, km), type_for_bits(2, Dtype::F16, km)),
            (GgmlType::Q8_0, GgmlType::Q2_K)
        );
        let o = std::collections::BTreeMap::from([("a.*".to_string(), 2u8), ("a.b.weight".to_string(), 8)]);
        assert_eq!(override_type(&o, "a.b.weight", Dtype::F16, &[64, 256], km).unwrap().0, GgmlType::Q8_0);
        assert_eq!(override_type(&o, "a.c.weight", Dtype::F16, &[64, 256], km).unwrap().0, GgmlType::Q2_K);
        // rows of 96: Q2_K does not fit, its 32-value fallback does
        assert_eq!(override_type(&o, "a.c.weight", Dtype::F16, &[64, 96], km).unwrap().0, GgmlType::Q4_0);
        assert_eq!(override_type(&o, "a.c.bias", Dtype::F16, &[64], km), None);
        assert_eq!(override_type(&o, "z.weight", Dtype::F16, &[64, 256], km), None);
        let mut t = GgmlType::F32;
        let mut seen = vec![t];
        while let Some(n) = step_down(t, 512) {
            assert!(n.bits_per_value() < t.bits_per_value());
            (t, seen) = (n, [seen, vec![n]].concat());
        }
        assert_eq!(t, GgmlType::Q2_K);
        assert_eq!(step_down(GgmlType::Q8_0, 96), Some(GgmlType::Q5_0));
        assert_eq!(step_down(GgmlType::Q4_0, 96), None);
        assert_eq!(step_down(GgmlType::F16, 3), None);
        assert_eq!(step_down(GgmlType::BF16, 256), Some(GgmlType::Q8_0));
        assert!(seen.len() == 8);
    }
}
