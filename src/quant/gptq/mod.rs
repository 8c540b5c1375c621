//! GPTQ: quantize a weight column by column, compensating each column's rounding error in the
//! columns not yet quantized, so that the layer's *output* error E‖(W − Ŵ)x‖² — not the weight
//! error — is what is minimised (Frantar et al., 2022). It needs the layer's input second moments
//! G = E[x xᵀ] (calibration): with H = G + λI and U the upper Cholesky factor of H⁻¹, after
//! quantizing column j of a row, err = (w_j − ŵ_j) / U_jj and w_k −= err·U_jk for k > j.
//!
//! Columns go in order of decreasing H_jj by default (act-order): the columns whose error costs
//! most at the output are coded while every other column can still absorb their error (with U
//! factored from H in that order). Rows are independent (they share U), so they run in parallel
//! in blocks, and the result does not depend on the thread count. Group params (f16 scale and min
//! per group of consecutive columns of the row, as the format stores them) are chosen when the
//! quantizer reaches a group's first column in its order, from the group's values as compensated
//! so far, weighting each column by its importance H_jj (`weighted`). Columns split into
//! independent blocks when the Gram matrix is given only by its diagonal blocks, or is too large
//! to invert whole; act-order orders the columns within each block.

mod hessian;

pub use hessian::{prepare, Prepared, DENSE_LIMIT, SPLIT_BLOCK};

use crate::error::Result;
use crate::kernels::{self, scalar::code_of, scalar::inverse};
use crate::quant::layout::Layout;
use crate::quant::metrics::{ColumnWeights, ErrorSums};
use crate::quant::params::{Chosen, GroupParams};
use crate::quant::tensor::{decode_block, measure_groups, pack_rows, quantize_in_blocks, QuantizedTensor, Source};
use crate::quant::weighted::weighted_params;
use crate::quant::width::Width;

/// What GPTQ codes values with: params per group of consecutive values of a unit (one row, or
/// consecutive rows holding a whole number of a block type's blocks), chosen when the group's
/// first value comes up, then each value's code against them.
pub trait ColumnCodec {
    /// Values per group along the unit.
    fn group_len(&self) -> usize;
    /// Choose group `g`'s params from its `values` as compensated so far, each weighted by its
    /// column's importance; false when they cannot be stored.
    fn choose(&mut self, g: usize, values: &[f32], importance: &[f32]) -> bool;
    /// Code the value `x` at unit position `i` against its group's params; returns what the
    /// code decodes to.
    fn code(&mut self, i: usize, x: f32) -> f32;
}

/// Our group-wise codec: an f16 scale and min per group of a row, codes of `width`.
struct GroupCodec<'a> {
    group: usize,
    width: Width,
    codes: &'a mut [u8],
    params: &'a mut [Chosen],
}

impl ColumnCodec for GroupCodec<'_> {
    fn group_len(&self) -> usize {
        self.group
    }

    fn choose(&mut self, g: usize, values: &[f32], importance: &[f32]) -> bool {
        let Some(p) = weighted_params(values, importance, self.width) else { return false };
        self.params[g] = Chosen { params: p, coded: true };
        true
    }

    #[inline]
    fn code(&mut self, i: usize, x: f32) -> f32 {
        let p = self.params[i / self.group].params;
        let q = code_of(x, inverse(p.scale_f32()), p.min_f32(), self.width.qmax());
        self.codes[i] = q as u8;
        q * p.scale_f32() + p.min_f32()
    }
}

/// Reused buffers of [`Prepared::compensate_row`].
#[derive(Default)]
pub struct Scratch {
    block: Vec<f32>,
    values: Vec<f32>,
    importance: Vec<f32>,
}

impl Prepared {
    /// Quantize row `r` of `unit` (rows of [`Self::columns`] values) through `codec`; the row's
    /// values end up error-compensated where the order left them. A group's params are chosen
    /// when its first value comes up (`chosen[g]` false), from its values as compensated so far:
    /// this row's current ones and, for a group reaching into later rows, theirs as they are.
    pub fn compensate_row<C: ColumnCodec>(
        &self,
        unit: &mut [f32],
        r: usize,
        codec: &mut C,
        chosen: &mut [bool],
        scratch: &mut Scratch,
    ) -> bool {
        let n = self.columns();
        let group = codec.group_len();
        let sub = kernels::active().sub_scaled;
        let row0 = r * n;
        let Scratch { block, values, importance } = scratch;
        for b in &self.blocks {
            block.clear();
            block.extend(b.order.iter().map(|&c| unit[row0 + b.start + c]));
            let span = row0 + b.start..row0 + b.start + b.size;
            for k in 0..b.size {
                let i = row0 + b.start + b.order[k];
                let g = i / group;
                if !chosen[g] {
                    // The group's values now: the block's from the working copy (scattered back
                    // below), the rest from the unit.
                    let (g0, g1) = (g * group, ((g + 1) * group).min(unit.len()));
                    values.clear();
                    importance.clear();
                    for f in g0..g1 {
                        values.push(if span.contains(&f) { block[b.position[f - span.start]] } else { unit[f] });
                        importance.push(self.importance()[f % n]);
                    }
                    if !codec.choose(g, values, importance) {
                        return false;
                    }
                    chosen[g] = true;
                }
                let decoded = codec.code(i, block[k]);
                let err = (block[k] - decoded) / b.u[k * b.size + k];
                let row = &b.u[k * b.size + k + 1..(k + 1) * b.size];
                sub(&mut block[k + 1..], row, err);
            }
            for (k, &c) in b.order.iter().enumerate() {
                unit[row0 + b.start + c] = block[k];
            }
        }
        true
    }
}

/// GPTQ over a whole tensor: rows in blocks of about `BLOCK_ELEMS` values (in parallel when there
/// is a pool), each decoded, quantized row by row with error compensation, packed and measured
/// against the source. `Ok(None)` when some group's params do not fit f16.
pub fn quantize(
    src: Source,
    layout: Layout,
    width: Width,
    prepared: &Prepared,
) -> Result<Option<(QuantizedTensor, ErrorSums)>> {
    let (n, g) = (layout.row_len, layout.group_size);
    let row_bytes = layout.row_bytes(width);
    let gpr = layout.groups_per_row();
    quantize_in_blocks(layout, width, |row0, c, s, m| {
        let rows = c.len() / row_bytes;
        let mut x = vec![0f32; rows * n];
        decode_block(src, row0 * n, &mut x)?;
        let mut w = x.clone();
        let mut q = vec![0u8; rows * n];
        let mut params = vec![Chosen { params: GroupParams::ZERO, coded: true }; rows * gpr];
        let mut scratch = Scratch::default();
        let mut chosen = vec![false; gpr];
        for r in 0..rows {
            let (wr, qr) = (&mut w[r * n..(r + 1) * n], &mut q[r * n..(r + 1) * n]);
            let params = &mut params[r * gpr..(r + 1) * gpr];
            let mut codec = GroupCodec { group: g, width, codes: qr, params };
            chosen.fill(false);
            if !prepared.compensate_row(wr, 0, &mut codec, &mut chosen, &mut scratch) {
                return Ok(None);
            }
        }
        pack_rows(&q, n, width, c);
        let groups: Vec<&[f32]> = x.chunks_exact(n).flat_map(|row| row.chunks(g)).collect();
        let mut sums = ErrorSums::default();
        measure_groups(&groups, &params, &q, s, m, &ColumnWeights::NONE, &mut sums);
        Ok(Some(sums))
    })
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::quant::gram::Gram;

    pub struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> f32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// Inputs with correlated columns and uneven scales, their Gram matrix, and a weight.
    pub fn problem(rows: usize, n: usize, samples: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Gram) {
        let mut rng = Rng(seed);
        let mut xs = vec![0f32; samples * n];
        for s in 0..samples {
            let common = rng.next();
            for j in 0..n {
                let scale = 1.0 + (j % 7) as f32;
                xs[s * n + j] = scale * (0.6 * common + rng.next());
            }
        }
        let mut g = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                g[i * n + j] = (0..samples).map(|s| xs[s * n + i] as f64 * xs[s * n + j] as f64).sum::<f64>() as f32
                    / samples as f32;
            }
        }
        let w: Vec<f32> = (0..rows * n).map(|_| rng.next() * rng.next().abs()).collect();
        (w, xs, Gram::Full { n, values: g })
    }

    /// Σ over rows and input samples of ((w − ŵ)·x)².
    pub fn output_error(w: &[f32], w_hat: &[f32], xs: &[f32], n: usize) -> f64 {
        let (rows, samples) = (w.len() / n, xs.len() / n);
        let mut e = 0.0;
        for r in 0..rows {
            for s in 0..samples {
                let d: f64 = (0..n).map(|j| (w[r * n + j] - w_hat[r * n + j]) as f64 * xs[s * n + j] as f64).sum();
                e += d * d;
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{output_error, problem};
    use super::*;
    use crate::quant::dtype::Dtype;
    use crate::quant::gram::Gram;
    use crate::quant::tensor::{dequantize, quantize_source};

    #[test]
    fn gptq_lowers_the_output_error_against_round_to_nearest() {
        let (rows, n) = (24, 128);
        let (w, xs, gram) = problem(rows, n, 512, 5);
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        let layout = Layout::for_shape(&[rows as u64, n as u64], 32);
        for width in [Width::W2, Width::W4] {
            let prepared = prepare(&gram, n, None, 0.01, false).unwrap();
            let (t, _) = quantize(src, layout, width, &prepared).unwrap().unwrap();
            let mut gptq = vec![0f32; rows * n];
            dequantize(&t, &mut gptq);
            let (r, _) =
                quantize_source(src, layout, width, crate::quant::tensor::ParamChoice::Search { match_gain: false })
                    .unwrap()
                    .unwrap();
            let mut rtn = vec![0f32; rows * n];
            dequantize(&r, &mut rtn);
            let (eg, er) = (output_error(&w, &gptq, &xs, n), output_error(&w, &rtn, &xs, n));
            assert!(eg < 0.8 * er, "{width:?}: GPTQ output error {eg} vs search {er}");
            // Blocked (as for a large Gram matrix) still helps.
            let blocks = Gram::Blocks { n, size: 32, values: block_diagonal(&gram, 32) };
            let (t, _) =
                quantize(src, layout, width, &prepare(&blocks, n, None, 0.01, false).unwrap()).unwrap().unwrap();
            let mut b = vec![0f32; rows * n];
            dequantize(&t, &mut b);
            assert!(output_error(&w, &b, &xs, n) < er, "{width:?}: blocked GPTQ");
        }
    }

    /// Act-order: columns by decreasing H_jj, and a lower output error than in index order on
    /// inputs whose columns differ in power; identical bytes for any thread count.
    #[test]
    fn act_order_goes_by_importance_and_helps() {
        let (rows, n) = (32, 128);
        let (w, xs, gram) = problem(rows, n, 512, 5);
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        let layout = Layout::for_shape(&[rows as u64, n as u64], 32);
        let ordered = prepare(&gram, n, None, 0.01, true).unwrap();
        let order = &ordered.blocks[0].order;
        assert!(order.windows(2).all(|p| gram.at(p[0], p[0]) >= gram.at(p[1], p[1])), "{order:?}");
        assert!(order.iter().enumerate().all(|(k, &c)| ordered.blocks[0].position[c] == k));
        for width in [Width::W2, Width::W4] {
            let error = |prepared: &Prepared| {
                let (t, _) = quantize(src, layout, width, prepared).unwrap().unwrap();
                let mut back = vec![0f32; rows * n];
                dequantize(&t, &mut back);
                (output_error(&w, &back, &xs, n), t)
            };
            let (e_seq, _) = error(&prepare(&gram, n, None, 0.01, false).unwrap());
            let (e_act, a) = error(&ordered);
            println!("{width:?}: act-order output error {e_act:.4e}, index order {e_seq:.4e}");
            assert!(e_act < e_seq, "{width:?}: act-order {e_act} vs index order {e_seq}");
            crate::parallel::set_enabled(false);
            let (_, b) = error(&ordered);
            crate::parallel::set_enabled(true);
            assert_eq!(a, b);
        }
    }

    fn block_diagonal(g: &Gram, size: usize) -> Vec<f32> {
        let n = g.n();
        let mut out = Vec::new();
        for b in 0..n.div_ceil(size) {
            for i in 0..size {
                for j in 0..size {
                    let (gi, gj) = (b * size + i, b * size + j);
                    out.push(if gi < n && gj < n { g.at(gi, gj) as f32 } else { 0.0 });
                }
            }
        }
        out
    }

    #[test]
    fn same_bytes_with_any_thread_count_and_measured_against_the_source() {
        let (rows, n) = (40, 64);
        let (w, _, gram) = problem(rows, n, 256, 5);
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        let layout = Layout::for_shape(&[rows as u64, n as u64], 64);
        let prepared = prepare(&gram, n, None, 0.01, false).unwrap();
        let (a, sa) = quantize(src, layout, Width::W4, &prepared).unwrap().unwrap();
        crate::parallel::set_enabled(false);
        let (b, sb) = quantize(src, layout, Width::W4, &prepared).unwrap().unwrap();
        crate::parallel::set_enabled(true);
        assert_eq!(a, b);
        assert_eq!(crc32fast::hash(&a.codes), a.crc32);
        let mut back = vec![0f32; rows * n];
        dequantize(&a, &mut back);
        let mut again = ErrorSums::default();
        again.add(&w, &back);
        assert!(again.approx_eq(&sa, 1e-12) && sa.approx_eq(&sb, 0.0), "{again:?} vs {sa:?}");
    }
}
