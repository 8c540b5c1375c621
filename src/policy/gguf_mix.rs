//! Which ggml type each tensor gets in a GGUF file, decided from its name, dtype and shape alone
//! (never from its values), so every tensor's size is known from the safetensors header and the
//! file's offsets are written before the first tensor is quantized. The rules follow the
//! community converters (llama.cpp, ComfyUI-GGUF): vectors and small tensors stay in full
//! precision, rows that are not whole blocks keep a float type, the rest get the mix's type.

use crate::error::{AqError, Result};
use crate::quant::dtype::Dtype;
use crate::quant::ggml::GgmlType;

/// Tensors of at most this many values are kept in full precision (they cost nothing).
pub const SMALL_TENSOR_VALUES: u64 = 1024;

/// Name fragments of parameters that loaders read without dequantizing or that steer every
/// block (modulation tables): kept in F32.
pub const HIGH_PRECISION_KEYS: &[&str] = &["scale_shift_table", ".modulation", "pos_embed", "img_emb.emb_pos"];

/// A named choice like the files people download: `Q8_0`, `Q4_0`, `F16`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufMix {
    pub main: GgmlType,
}

impl GgufMix {
    pub const NAMES: &'static str = "Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, F16, BF16 or F32";

    pub fn parse(name: &str) -> Result<Self> {
        GgmlType::parse(name)
            .map(|main| GgufMix { main })
            .ok_or_else(|| AqError::config("ggufType", format!("'{name}'"), format!("one of {}", Self::NAMES)))
    }

    pub fn name(self) -> &'static str {
        self.main.name()
    }

    /// llama.cpp's `general.file_type` (the `llama_ftype` enum) for this mix.
    pub fn file_type(self) -> u32 {
        match self.main {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 7,
            GgmlType::Q5_0 => 8,
            GgmlType::Q5_1 => 9,
            GgmlType::BF16 => 32,
            GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 => unreachable!("not a mix"),
        }
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
    /// Its rows (the last dimension) are not a whole number of the type's blocks.
    RowsNotWholeBlocks { row: u64, block: usize },
    /// The mix's type.
    Mix,
}

impl TypeRule {
    pub fn describe(&self, ty: GgmlType, mix: GgufMix) -> String {
        match self {
            TypeRule::Vector => format!("{}: 1-D tensor kept in full precision", ty.name()),
            TypeRule::Small => format!("{}: at most {SMALL_TENSOR_VALUES} values, kept in full precision", ty.name()),
            TypeRule::HighPrecision(key) => format!("{}: name contains '{key}', kept in full precision", ty.name()),
            TypeRule::RowsNotWholeBlocks { row, block } => {
                format!("{}: rows of {row} values are not whole {}-value {} blocks", ty.name(), block, mix.name())
            }
            TypeRule::Mix => format!("{}: the {} mix", ty.name(), mix.name()),
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
    let row = *shape.last().expect("at least 2 dims");
    let block = mix.main.block_values();
    if !row.is_multiple_of(block as u64) {
        return (fallback_float(dtype, mix), TypeRule::RowsNotWholeBlocks { row, block });
    }
    (mix.main, TypeRule::Mix)
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
            (GgmlType::F16, TypeRule::RowsNotWholeBlocks { row: 3, block: 32 })
        );
        assert_eq!(choose("conv", Dtype::BF16, &[320, 4, 3, 3], mix).0, GgmlType::BF16);
        assert_eq!(choose("w", Dtype::F32, &[320, 640], mix), (GgmlType::Q4_0, TypeRule::Mix));
        assert_eq!(GgufMix::parse("Q4_K_M").unwrap_err().code(), "E_CONFIG");
    }
}
