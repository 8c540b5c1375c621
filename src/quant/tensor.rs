//! A tensor as rows × groups: decode each group from the source bytes, choose params, compute and
//! pack codes, and measure the error on the reconstruction, in one pass and without an f32 copy
//! of the tensor.

use crate::error::{AqError, Result};
use crate::kernels;
use crate::quant::dtype::{decode_f32, Dtype, F16_MIN_NORMAL};
use crate::quant::gain;
use crate::quant::groups::{code_groups, code_groups_weighted, match_gains};
use crate::quant::layout::Layout;
use crate::quant::metrics::{ColumnWeights, ErrorSums};
use crate::quant::params::{Chosen, GroupParams};
use crate::quant::width::Width;

/// Largest supported group (the config allows 32..=256).
pub const MAX_GROUP: usize = 256;

/// Source tensor bytes (little-endian, as in the safetensors data section).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    pub width: Width,
    pub layout: Layout,
    /// Packed codes, `layout.codes_len(width)` bytes.
    pub codes: Vec<u8>,
    /// f16 bit patterns, one per group, row-major.
    pub scales: Vec<u16>,
    pub mins: Vec<u16>,
    /// CRC-32 of `codes` (the `data_crc32` column).
    pub crc32: u32,
}

/// Check decoded values are finite; the error names the tensor and the element index.
pub fn check_finite(name: &str, x: &[f32], first_index: usize) -> Result<()> {
    // One vector pass; only a failing tensor pays for the search that names the element.
    if (kernels::active().all_finite)(x) {
        return Ok(());
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(AqError::NonFinite {
            tensor: name.to_string(),
            index: (first_index + i) as u64,
            value: x[i].to_string(),
        });
    }
    Ok(())
}

/// Rows are quantized in blocks of about this many elements. A block is the unit of parallel
/// work, and block error sums are merged in block order, so the output (metrics included) is the
/// same with one thread or many.
pub const BLOCK_ELEMS: usize = 1 << 16;

/// How each group's params are chosen.
#[derive(Debug, Clone, Copy)]
pub enum ParamChoice<'a> {
    /// The group's min and max.
    MinMax,
    /// The range search (`params`): the best of min/max and searched candidates on the weights;
    /// then, with `match_gain`, the params refit for these codes to keep the weights' gain (`gain`).
    Search { match_gain: bool },
    /// Weighted by the importance of each column of a row (`weighted`; `row_len` values); then,
    /// with `match_gain`, refit to keep the importance-weighted gain.
    Weighted { importance: &'a [f32], match_gain: bool },
}

impl ParamChoice<'_> {
    /// Min/max or the search on the weights, as the product runs it (the search gain-matched).
    pub fn on_weights(search: bool) -> Self {
        if search {
            ParamChoice::Search { match_gain: true }
        } else {
            ParamChoice::MinMax
        }
    }
}

/// Quantize `src` at `width` with params chosen as `choice` says. `Ok(None)` when some group does
/// not fit f16 params (values beyond ±65504): the caller stores the tensor unquantized instead.
/// The returned sums measure the stored codes against the source values.
pub fn quantize_source(
    src: Source,
    layout: Layout,
    width: Width,
    choice: ParamChoice,
) -> Result<Option<(QuantizedTensor, ErrorSums)>> {
    quantize_source_measured(src, layout, width, choice, &ColumnWeights::NONE)
}

/// [`quantize_source`], the validation pass also adding up the error weighted by `columns`
/// ([`ErrorSums::columns`]).
pub fn quantize_source_measured(
    src: Source,
    layout: Layout,
    width: Width,
    choice: ParamChoice,
    columns: &ColumnWeights,
) -> Result<Option<(QuantizedTensor, ErrorSums)>> {
    debug_assert!(layout.group_size <= MAX_GROUP && src.dtype.is_float());
    quantize_in_blocks(layout, width, |row0, c, s, m| quantize_rows(src, layout, width, choice, columns, row0, c, s, m))
}

/// The block structure every whole-tensor quantizer shares: the output (packed codes, scales,
/// mins) split into blocks of whole rows, about `BLOCK_ELEMS` values each, which
/// `quantize_block(first_row, codes, scales, mins)` fills and measures — in parallel when there
/// is a pool. Error sums merge and each block's codes CRC combines in block order, so the result
/// does not depend on the thread count. `Ok(None)` as soon as a block says its params do not fit f16.
pub(crate) fn quantize_in_blocks(
    layout: Layout,
    width: Width,
    quantize_block: impl Fn(usize, &mut [u8], &mut [u16], &mut [u16]) -> Result<Option<ErrorSums>> + Sync + Send,
) -> Result<Option<(QuantizedTensor, ErrorSums)>> {
    let row_bytes = layout.row_bytes(width);
    let gpr = layout.groups_per_row();
    let rows_per_block = (BLOCK_ELEMS / layout.row_len.max(1)).max(1);
    let mut codes = vec![0u8; layout.codes_len(width)];
    let mut scales = vec![0u16; layout.groups()];
    let mut mins = vec![0u16; layout.groups()];
    let blocks: Vec<_> = codes
        .chunks_mut(rows_per_block * row_bytes)
        .zip(scales.chunks_mut(rows_per_block * gpr))
        .zip(mins.chunks_mut(rows_per_block * gpr))
        .enumerate()
        .map(|(i, ((c, s), m))| (i * rows_per_block, c, s, m))
        .collect();
    let results = crate::parallel::map(blocks, |(row0, c, s, m)| {
        let r = quantize_block(row0, c, s, m)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(c);
        Ok::<_, AqError>(r.map(|sums| (sums, crc)))
    });
    let mut sums = ErrorSums::default();
    let mut crc = crc32fast::Hasher::new();
    for block in results {
        match block? {
            Some((b, h)) => {
                sums.merge(&b);
                crc.combine(&h);
            }
            None => return Ok(None),
        }
    }
    let crc32 = crc.finalize();
    Ok(Some((QuantizedTensor { width, layout, codes, scales, mins, crc32 }, sums)))
}

/// One block of whole rows starting at `row0`: `codes` holds the block's packed rows,
/// `scales`/`mins` its groups. The block is decoded once into f32 and checked finite; then params
/// are chosen (with search, four equal-length groups at a time), then each group is coded, packed
/// and measured in row order.
#[allow(clippy::too_many_arguments)]
fn quantize_rows(
    src: Source,
    layout: Layout,
    width: Width,
    choice: ParamChoice,
    columns: &ColumnWeights,
    row0: usize,
    codes: &mut [u8],
    scales: &mut [u16],
    mins: &mut [u16],
) -> Result<Option<ErrorSums>> {
    let rows = codes.len() / layout.row_bytes(width).max(1);
    let e_first = row0 * layout.row_len;
    SCRATCH.with_borrow_mut(|(x, params, q)| {
        // Reused per thread: a block's f32 copy is as large as the block, and zeroing a fresh one
        // every block would cost as much as decoding into it.
        let out =
            quantize_block(src, layout, width, (choice, columns), e_first, rows, codes, scales, mins, (x, params, q));
        // A block of one huge row is not kept for the next one.
        if x.capacity() > 4 * BLOCK_ELEMS {
            (*x, *q) = (Vec::new(), Vec::new());
        }
        out
    })
}

/// [`quantize_rows`] with its per-thread scratch: the block as f32, params per group, and the
/// block's codes (one per byte) before packing.
#[allow(clippy::too_many_arguments)]
fn quantize_block(
    src: Source,
    layout: Layout,
    width: Width,
    (choice, columns): (ParamChoice, &ColumnWeights),
    e_first: usize,
    rows: usize,
    codes: &mut [u8],
    scales: &mut [u16],
    mins: &mut [u16],
    (x, params, q): (&mut Vec<f32>, &mut Vec<Chosen>, &mut Vec<u8>),
) -> Result<Option<ErrorSums>> {
    let x = block_values(src, e_first, rows * layout.row_len, x)?;
    let groups: Vec<&[f32]> = x.chunks_exact(layout.row_len).flat_map(|row| row.chunks(layout.group_size)).collect();
    params.clear();
    params.resize(groups.len(), Chosen { params: GroupParams::ZERO, coded: false });
    q.resize(x.len(), 0);
    let (coded, matched) = match choice {
        ParamChoice::MinMax => (code_groups(&groups, layout.group_size, width.bits(), false, params, q), None),
        ParamChoice::Search { match_gain } => {
            (code_groups(&groups, layout.group_size, width.bits(), true, params, q), match_gain.then_some(None))
        }
        ParamChoice::Weighted { importance, match_gain } => (
            code_groups_weighted(&groups, layout, importance, width, params, q),
            match_gain.then_some(Some(importance)),
        ),
    };
    if !coded {
        return Ok(None);
    }
    if let Some(importance) = matched {
        match_gains(&groups, layout, importance, params, q);
    }
    pack_rows(q, layout.row_len, width, codes);
    let mut sums = ErrorSums::default();
    measure_groups(&groups, params, q, scales, mins, columns, &mut sums);
    Ok(Some(sums))
}

/// Stage 1 of a block: its `len` source values from element `e_first` on, checked finite (the
/// error names the element). F32 sources whose bytes are 4-aligned (as safetensors lays them out
/// and as the wasm bindings allocate them) are read in place; the rest are decoded into `scratch`.
#[inline]
fn block_values<'a>(src: Source<'a>, e_first: usize, len: usize, scratch: &'a mut Vec<f32>) -> Result<&'a [f32]> {
    #[cfg(target_endian = "little")]
    if src.dtype == Dtype::F32 {
        let bytes = &src.bytes[e_first * 4..(e_first + len) * 4];
        if let Ok(x) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            check_finite(src.name, x, e_first)?;
            return Ok(x);
        }
    }
    scratch.resize(len, 0.0);
    decode_block(src, e_first, scratch)?;
    Ok(scratch)
}

/// Decode the source values from element `e_first` on into `x` (as many as it holds) and check
/// they are finite (the error names the element).
#[inline]
pub fn decode_block(src: Source, e_first: usize, x: &mut [f32]) -> Result<()> {
    let esize = src.dtype.size_bytes();
    decode_f32(src.dtype, &src.bytes[e_first * esize..(e_first + x.len()) * esize], x);
    check_finite(src.name, x, e_first)
}

/// Stage 3 (after [`code_groups`]): pack a block's codes (one per byte, whole rows of `row_len`
/// back to back) into `codes`, every row starting on a byte. Groups start on bytes too
/// (group_size·bits is a multiple of 8), so each row packs in one call.
#[inline]
pub fn pack_rows(q: &[u8], row_len: usize, width: Width, codes: &mut [u8]) {
    let pack = kernels::active().pack;
    for (row_q, row_codes) in q.chunks_exact(row_len.max(1)).zip(codes.chunks_mut(width.packed_len(row_len))) {
        pack(row_q, width.bits(), row_codes);
    }
}

/// Stage 4, validation: reconstruct every group from its codes and f16 params exactly as a reader
/// will, and add the error against the source values to `sums` in group order (with the
/// `columns`-weighted sums; `groups` are whole rows); store the params' f16 bits.
#[inline]
pub fn measure_groups(
    groups: &[&[f32]],
    params: &[Chosen],
    q: &[u8],
    scales: &mut [u16],
    mins: &mut [u16],
    columns: &ColumnWeights,
    sums: &mut ErrorSums,
) {
    let dequantize = kernels::active().dequantize_codes;
    let weighted = columns.weights.iter().any(Option::is_some);
    let mut xhat = [0f32; MAX_GROUP];
    let mut e0 = 0;
    for (gi, (x, c)) in groups.iter().zip(params).enumerate() {
        let p = c.params;
        let len = x.len();
        dequantize(&q[e0..e0 + len], p.scale_f32(), p.min_f32(), &mut xhat[..len]);
        sums.add(x, &xhat[..len]);
        if weighted {
            sums.add_columns(x, &xhat[..len], columns, (gi % columns.groups_per_row) * columns.group_size);
        }
        scales[gi] = p.scale_bits();
        mins[gi] = p.min_bits();
        e0 += len;
    }
}

/// A block as f32, its groups' params, and its codes (one per byte); kept per thread.
type Scratch = (Vec<f32>, Vec<Chosen>, Vec<u8>);

thread_local! {
    /// Per-thread scratch of `quantize_rows`.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Scale each row's reconstruction by its gain (`gains`, one per row; [`gain::scale_params`] on
/// every group of the row, codes unchanged). Whether any param changed.
pub fn scale_rows(t: &mut QuantizedTensor, gains: &[f64]) -> bool {
    let gpr = t.layout.groups_per_row();
    let mut changed = false;
    for (r, &k) in gains.iter().enumerate() {
        for g in r * gpr..(r + 1) * gpr {
            let p = GroupParams::from_bits(t.scales[g], t.mins[g]);
            let q = gain::scale_params(p, k);
            changed |= q != p;
            (t.scales[g], t.mins[g]) = (q.scale_bits(), q.min_bits());
        }
    }
    changed
}

/// Reconstruct all values of a quantized tensor (row-major, `layout.numel()` values).
pub fn dequantize(t: &QuantizedTensor, out: &mut [f32]) {
    dequantize_parts(t.width, t.layout, &t.codes, &t.scales, &t.mins, out)
}

/// [`dequantize`] over borrowed parts (as a reader holds them). Lengths must match the layout.
pub fn dequantize_parts(width: Width, layout: Layout, codes: &[u8], scales: &[u16], mins: &[u16], out: &mut [f32]) {
    let bits = width.bits();
    let row_bytes = layout.row_bytes(width);
    let kern = kernels::active();
    let mut q = [0u8; MAX_GROUP];
    let gpr = layout.groups_per_row();
    for r in 0..layout.rows {
        let row_codes = &codes[r * row_bytes..(r + 1) * row_bytes];
        for g in 0..gpr {
            let (start, len) = layout.group_span(g);
            let b0 = start * bits as usize / 8;
            (kern.unpack)(&row_codes[b0..], bits, &mut q[..len]);
            let p = GroupParams::from_bits(scales[r * gpr + g], mins[r * gpr + g]);
            let e0 = r * layout.row_len + start;
            (kern.dequantize_codes)(&q[..len], p.scale_f32(), p.min_f32(), &mut out[e0..e0 + len]);
        }
    }
}

/// Decode a whole tensor to f32, checking every value is finite (the error names the index).
pub fn decode_all(src: Source, numel: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; numel];
    let esize = src.dtype.size_bytes();
    for (i, chunk) in out.chunks_mut(BLOCK_ELEMS).enumerate() {
        let e0 = i * BLOCK_ELEMS;
        decode_f32(src.dtype, &src.bytes[e0 * esize..(e0 + chunk.len()) * esize], chunk);
        check_finite(src.name, chunk, e0)?;
    }
    Ok(out)
}

/// Error sums of `w_hat` against `w`, group by group along the rows as the quantizer measures
/// them (the chunking only affects f64 rounding).
pub fn layout_error_sums(w: &[f32], w_hat: &[f32], layout: Layout) -> ErrorSums {
    let mut sums = ErrorSums::default();
    for r in 0..layout.rows {
        let row = r * layout.row_len..(r + 1) * layout.row_len;
        for (a, b) in w[row.clone()].chunks(layout.group_size).zip(w_hat[row].chunks(layout.group_size)) {
            sums.add(a, b);
        }
    }
    sums
}

impl QuantizedTensor {
    /// Whether the tensor is too small in magnitude for f16 params: every value its params can
    /// reconstruct is below f16's smallest normal (and so are its params), while the source was
    /// not all zeros (`source_power` = Σw²).
    pub fn below_f16_normal(&self, source_power: f64) -> bool {
        let qmax = self.width.qmax();
        source_power > 0.0
            && self.scales.iter().zip(&self.mins).all(|(&s, &m)| {
                let p = GroupParams::from_bits(s, m);
                p.min_f32().abs() + p.scale_f32() * qmax < F16_MIN_NORMAL
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::f16_store::{store_f16, F16Store};

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The column-weighted sums of the validation pass equal the same sums taken afterwards over
    /// the dequantized tensor (`output_sums` with the diagonal, the activation-weighted error), up
    /// to f64 summation order; rows span several blocks and end in a short group.
    #[test]
    fn column_sums_in_the_pass_match_a_second_pass() {
        use crate::diffusion::spatial::weighted_error;
        use crate::quant::layout::ChannelLayout;
        use crate::quant::output::{output_sums, Weighting};
        let shape = [1000u64, 50, 3];
        let n = 1000 * 150;
        let values: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.7137).sin() * (1.0 + (i % 7) as f32)).collect();
        let bytes = f32_bytes(&values);
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        let layout = Layout::for_shape(&shape, 64);
        let h: Vec<f32> = (0..150).map(|j| 0.1 + ((j * 7919) % 101) as f32).collect();
        let a: Vec<f32> = (0..50).map(|c| 0.5 + (c % 9) as f32).collect();
        let cl = ChannelLayout::for_shape(&shape).unwrap();
        let hd: Vec<f64> = h.iter().map(|&g| g as f64).collect();
        let ad: Vec<f64> = (0..150).map(|j| (a[cl.channel_of(j)] as f64).powi(2)).collect();
        let columns =
            ColumnWeights { weights: [Some(&hd), Some(&ad)], group_size: 64, groups_per_row: layout.groups_per_row() };
        for choice in [ParamChoice::MinMax, ParamChoice::Weighted { importance: &h, match_gain: true }] {
            let (t, sums) = quantize_source_measured(src, layout, Width::W4, choice, &columns).unwrap().unwrap();
            let (_, plain) = quantize_source(src, layout, Width::W4, choice).unwrap().unwrap();
            assert!(sums.approx_eq(&plain, 0.0), "the plain sums do not change");
            let mut w_hat = vec![0f32; n];
            dequantize(&t, &mut w_hat);
            let out = output_sums(&values, &w_hat, 150, Weighting::Diagonal(&h));
            let (sig, err) = weighted_error(&values, &w_hat, cl, &a);
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
            let c = sums.columns;
            assert!(close(c[0].signal, out.signal) && close(c[0].error, out.error) && close(c[0].cross, out.cross));
            assert!(close(c[1].signal, sig) && close(c[1].error, err), "{:?} vs {sig} {err}", c[1]);
            assert!(c[0].error > 0.0 && c[1].error > 0.0);
        }
    }

    #[test]
    fn roundtrip_matches_measured_error() {
        let vals: Vec<f32> = (0..3 * 70).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let bytes = f32_bytes(&vals);
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        for width in Width::ALL {
            let bits = width.bits();
            let layout = Layout::for_shape(&[3, 70], 32);
            let (t, sums) =
                quantize_source(src, layout, width, ParamChoice::Search { match_gain: true }).unwrap().unwrap();
            assert_eq!(t.codes.len(), 3 * (70 * bits as usize).div_ceil(8));
            assert_eq!(t.scales.len(), 3 * 3);
            let mut out = vec![0f32; 210];
            dequantize(&t, &mut out);
            let mut again = ErrorSums::default();
            again.add(&vals, &out);
            assert!(
                again.approx_eq(&sums, 1e-12),
                "validation must measure what dequantize gives: {again:?} vs {sums:?}"
            );
        }
    }

    #[test]
    fn nonfinite_names_tensor_and_index() {
        let mut vals = vec![0.5f32; 64];
        vals[37] = f32::NAN;
        let bytes = f32_bytes(&vals);
        let src = Source { name: "blk.w", dtype: Dtype::F32, bytes: &bytes };
        let err = quantize_source(src, Layout::for_shape(&[2, 32], 32), Width::W4, ParamChoice::MinMax).unwrap_err();
        assert_eq!(err.code(), "E_NONFINITE");
        assert!(err.to_string().contains("blk.w") && err.to_string().contains("37"), "{err}");
    }

    #[test]
    fn out_of_range_returns_none() {
        let vals = vec![1.0e6f32; 32];
        let bytes = f32_bytes(&vals);
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
        assert!(quantize_source(src, Layout::for_shape(&[1, 32], 32), Width::W4, ParamChoice::MinMax)
            .unwrap()
            .is_none());
        assert!(matches!(store_f16(src, 32).unwrap(), F16Store::Overflow));
    }

    #[test]
    fn tiny_values_are_not_flushed() {
        for (scale, f16_ok) in [(1e-38f32, false), (1e-7, false), (1e-4, true), (1.0, true)] {
            let vals: Vec<f32> = (0..64).map(|i| ((i % 9) as f32 - 4.0) * scale).collect();
            let bytes = f32_bytes(&vals);
            let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
            let f16 = store_f16(src, 64).unwrap();
            assert_eq!(matches!(f16, F16Store::Stored { .. }), f16_ok, "f16 storage at scale {scale}");
            let layout = Layout::for_shape(&[2, 32], 32);
            let (t, sums) = quantize_source(src, layout, Width::W4, ParamChoice::MinMax).unwrap().unwrap();
            assert_eq!(t.below_f16_normal(sums.sum_w2), scale < 1e-5, "params at scale {scale}");
        }
        let zeros = f32_bytes(&[0.0; 64]);
        let src = Source { name: "w", dtype: Dtype::F32, bytes: &zeros };
        let (t, sums) =
            quantize_source(src, Layout::for_shape(&[2, 32], 32), Width::W4, ParamChoice::MinMax).unwrap().unwrap();
        assert!(!t.below_f16_normal(sums.sum_w2), "zeros are exact in f16");
        assert!(matches!(store_f16(src, 64).unwrap(), F16Store::Stored { .. }));
    }
}
