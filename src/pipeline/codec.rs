//! A quantized layer's codes as ggml blocks instead of our groups (`codec`): the block type of the
//! same width, encoded with the layer's objective — GPTQ with its Gram matrix, or the block
//! search weighted by its input second moments, as the GGUF writer does — and measured the same
//! way, so that `codec: 'auto'` can keep whichever stores the layer with less error.

use crate::error::Result;
use crate::format::safetensors::TensorInfo;
use crate::pipeline::gguf::encode::{encode, search_weights, Encoding};
use crate::pipeline::objective::Method;
use crate::policy::switches::Codec;
use crate::quant::ggml::GgmlType;
use crate::quant::metrics::ErrorSums;
use crate::quant::output::{OutputSums, Weighting};
use crate::quant::width::Width;

/// The block type a layer at `width` is stored in under `codec`, when blocks are possible: not
/// for equalized weights (the format's blocks carry no equalization), and only for a whole number
/// of blocks.
pub fn block_type(codec: Codec, width: Width, equalized: bool, numel: u64) -> Option<GgmlType> {
    if codec == Codec::Groups || equalized {
        return None;
    }
    let ty = match width {
        Width::W2 => GgmlType::Q2_K,
        Width::W4 => GgmlType::Q4_K,
        Width::W8 => GgmlType::Q8_0,
    };
    numel.is_multiple_of(ty.block_values() as u64).then_some(ty)
}

/// A layer encoded as blocks, measured against its source.
pub struct Blocks {
    pub ty: GgmlType,
    pub data: Vec<u8>,
    pub sums: ErrorSums,
    /// The error at the layer's output, when the objective measures it there.
    pub output: Option<OutputSums>,
}

impl Blocks {
    pub fn cosine(&self) -> f64 {
        self.output.map_or(self.sums.cosine(), |o| o.cosine())
    }
}

/// Encode the layer (rows of `row_len` values) as `ty` with the objective's method, as the GGUF
/// writer does: GPTQ with the Gram matrix, else the block searches weighted by the damped
/// importance.
pub fn encode_blocks(
    info: &TensorInfo,
    bytes: &[u8],
    ty: GgmlType,
    row_len: usize,
    method: &Method,
    weighting: Option<Weighting>,
) -> Result<Blocks> {
    let mut data = Vec::new();
    if let Method::Gptq(prepared) = method {
        if let Some(e) = encode(info, bytes, ty, row_len, Encoding::gptq(prepared), weighting, &mut data)? {
            return Ok(Blocks { ty, data, sums: e.sums, output: e.output });
        }
    }
    let weights = match method {
        Method::Importance(h) => Some(search_weights(h)),
        Method::Gptq(p) => Some(search_weights(p.importance())),
        Method::Weights => None,
    };
    let e = encode(info, bytes, ty, row_len, Encoding::Search(weights.as_deref()), weighting, &mut data)?
        .expect("the block search always encodes");
    Ok(Blocks { ty, data, sums: e.sums, output: e.output })
}

/// Whether `codec: 'auto'` keeps the blocks: no more bytes than the groups, and less error where
/// the layer is judged (its output with calibration, else its weights).
pub fn blocks_win(
    blocks: &Blocks,
    groups_bytes: u64,
    groups_sums: &ErrorSums,
    groups_output: Option<OutputSums>,
) -> bool {
    let error = |sums: &ErrorSums, output: Option<OutputSums>| output.map_or(sums.sum_e2, |o| o.error);
    blocks.data.len() as u64 <= groups_bytes && error(&blocks.sums, blocks.output) < error(groups_sums, groups_output)
}
