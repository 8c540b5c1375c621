//! GPTQ for the block types: a block's params (scales, minimums, super-scales) are chosen by the
//! type's own search when GPTQ reaches the block's first value in its order, from the block's
//! values as compensated so far; then each value is coded on the grid those params give
//! ([`super::Grid`]) and its error is spread over the columns still to come (quant/gptq.rs).
//!
//! ggml's blocks run along the stored rows, which are the weight's rows unless a converter
//! re-rowed the tensor (a 3×3 convolution of 320 input channels has rows of 2880 values, written
//! as rows of 256): then a block can reach into the next weight row. GPTQ works on units of
//! consecutive weight rows that hold a whole number of blocks, row after row; a block reaching
//! into later rows takes their values as they are when it is chosen.

use super::{block_grid, quantize_block, set_codes, Codes, GgmlType, Grid};
use crate::quant::gptq::{ColumnCodec, Prepared, Scratch};

/// Weight rows of `n` values per unit: the fewest whose values are whole blocks of `ty`.
pub fn unit_rows(n: usize, ty: GgmlType) -> usize {
    let per = ty.block_values();
    let (mut a, mut b) = (n.max(1), per);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    per / a
}

/// The blocks of one unit, coded value by value.
struct BlockCodec<'a> {
    ty: GgmlType,
    codes: Codes,
    per: usize,
    block_bytes: usize,
    blocks: &'a mut [u8],
    grids: Vec<Grid>,
    stored: Vec<u8>,
    /// Added to every column's importance when a block's params are searched: columns whose
    /// inputs the calibration saw near zero still count (as the plain importance search does);
    /// the sum is multiplied by `scale`, which keeps the searches' f32 sums finite.
    damping: f32,
    scale: f32,
    weights: Vec<f32>,
}

impl ColumnCodec for BlockCodec<'_> {
    fn group_len(&self) -> usize {
        self.per
    }

    fn choose(&mut self, g: usize, values: &[f32], importance: &[f32]) -> bool {
        if values.iter().any(|v| !v.is_finite()) {
            return false;
        }
        self.weights.clear();
        self.weights.extend(importance.iter().map(|&h| (h + self.damping) * self.scale));
        let block = &mut self.blocks[g * self.block_bytes..(g + 1) * self.block_bytes];
        quantize_block(self.ty, values, Some(&self.weights), block);
        self.grids[g] = block_grid(self.ty, block);
        true
    }

    #[inline]
    fn code(&mut self, i: usize, x: f32) -> f32 {
        let grid = &self.grids[i / self.per];
        let s = (i % self.per) / grid.sub;
        let (q, value) = self.codes.nearest(x, grid.step[s], grid.offset[s]);
        self.stored[i] = q;
        value
    }
}

/// GPTQ over `values` (weight rows of `prepared.columns()` values, a whole number of units),
/// appending their blocks of `ty` to `out`. Block params are searched with column j weighted by
/// (H_jj + `damping`)·`scale`. False when some compensated value is no longer finite (nothing
/// appended).
pub fn quantize(
    ty: GgmlType,
    values: &[f32],
    prepared: &Prepared,
    damping: f32,
    scale: f32,
    out: &mut Vec<u8>,
) -> bool {
    let codes = ty.codes().expect("a block type");
    let n = prepared.columns();
    let rows = unit_rows(n, ty);
    let unit_len = rows * n;
    debug_assert!(values.len().is_multiple_of(unit_len));
    let (per, block_bytes) = (ty.block_values(), ty.block_bytes());
    let groups = unit_len / per;
    let start = out.len();
    out.resize(start + values.len() / per * block_bytes, 0);
    let mut unit = vec![0f32; unit_len];
    let mut chosen = vec![false; groups];
    let mut scratch = Scratch::default();
    let empty = Grid { sub: per, step: [0.0; 16], offset: [0.0; 16] };
    for (u, blocks) in values.chunks_exact(unit_len).zip(out[start..].chunks_exact_mut(groups * block_bytes)) {
        unit.copy_from_slice(u);
        chosen.fill(false);
        let mut codec = BlockCodec {
            ty,
            codes,
            per,
            block_bytes,
            blocks,
            grids: vec![empty; groups],
            stored: vec![0; unit_len],
            damping,
            scale,
            weights: Vec::with_capacity(per),
        };
        for r in 0..rows {
            if !prepared.compensate_row(&mut unit, r, &mut codec, &mut chosen, &mut scratch) {
                out.truncate(start);
                return false;
            }
        }
        let BlockCodec { blocks, stored, .. } = codec;
        for (block, q) in blocks.chunks_exact_mut(block_bytes).zip(stored.chunks_exact(per)) {
            set_codes(ty, q, block);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::ggml;
    use crate::quant::gptq::prepare;
    use crate::quant::gptq::testing::{output_error, problem};
    use crate::quant::gram::Gram;

    #[test]
    fn units_hold_whole_blocks() {
        assert_eq!(unit_rows(2880, GgmlType::Q4_K), 4);
        assert_eq!(unit_rows(3072, GgmlType::Q4_K), 1);
        assert_eq!(unit_rows(64, GgmlType::Q4_K), 4);
        assert_eq!(unit_rows(288, GgmlType::Q4_0), 1);
        assert_eq!(unit_rows(16, GgmlType::Q8_0), 2);
    }

    /// Against the importance-weighted search of the same type, GPTQ lowers the output error of
    /// every block type, including rows that are not whole blocks (units of several rows), and
    /// writes the same bytes for a whole tensor as unit by unit.
    #[test]
    fn gptq_lowers_the_output_error_of_every_block_type() {
        for (rows, n) in [(16, 256), (24, 96)] {
            let (w, xs, gram) = problem(rows, n, 512, n as u64);
            let prepared = prepare(&gram, n, None, 0.01, true).unwrap();
            let h = prepared.importance().to_vec();
            let mean = h.iter().sum::<f32>() / n as f32;
            for ty in GgmlType::ALL.into_iter().filter(|t| t.is_quantized()) {
                if !(rows * n).is_multiple_of(unit_rows(n, ty) * n) {
                    continue;
                }
                let mut ours = Vec::new();
                assert!(quantize(ty, &w, &prepared, mean, 1.0, &mut ours));
                let back = ggml::dequantize(ty, &ours, w.len()).unwrap();
                let weights: Vec<f32> = (0..w.len()).map(|i| h[i % n] + mean).collect();
                let mut searched = Vec::new();
                ggml::quantize(ty, &w, Some(&weights), &mut searched).unwrap();
                let plain = ggml::dequantize(ty, &searched, w.len()).unwrap();
                let (eg, es) = (output_error(&w, &back, &xs, n), output_error(&w, &plain, &xs, n));
                println!("{ty:?} rows of {n}: output error GPTQ/search {:.3}", eg / es);
                assert!(eg < 0.9 * es, "{ty:?} rows of {n}: GPTQ output error {eg:e} vs search {es:e}");
                // Unit by unit: the same bytes.
                let unit = unit_rows(n, ty) * n;
                let mut pieces = Vec::new();
                for u in w.chunks_exact(unit) {
                    assert!(quantize(ty, u, &prepared, mean, 1.0, &mut pieces));
                }
                assert_eq!(pieces, ours, "{ty:?}");
            }
        }
    }

    #[test]
    fn non_finite_compensation_gives_up_cleanly() {
        let n = 32;
        let gram = Gram::Full { n, values: (0..n * n).map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 }).collect() };
        let prepared = prepare(&gram, n, None, 0.01, false).unwrap();
        let mut w = vec![0.5f32; 2 * n];
        w[3] = f32::INFINITY;
        let mut out = vec![7u8];
        assert!(!quantize(GgmlType::Q4_0, &w, &prepared, 0.0, 1.0, &mut out));
        assert_eq!(out, [7]);
    }
}
