//! Kernel and stage timings for `make bench` (built only with the `bench` feature, into a module
//! of its own; the shipped module has none of this): each hot kernel over the same data with the
//! scalar and the SIMD128 set, and the stages of the quantizer's block loop — the production
//! stage functions, called one stage at a time — timed with the host's `performance.now()`.

use js_sys::{Function, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::kernels::{self, KernelSet, SCALAR};
use crate::quant::dtype::Dtype;
use crate::quant::groups::{code_groups, match_gains};
use crate::quant::layout::Layout;
use crate::quant::metrics::{ColumnWeights, ErrorSums};
use crate::quant::params::{choose_params, choose_params4, Chosen, GroupParams};
use crate::quant::tensor::{
    decode_block, measure_groups, pack_rows, quantize_source, ParamChoice, Source, BLOCK_ELEMS,
};
use crate::quant::weighted::{weighted_params, weighted_params4};
use crate::quant::width::Width;

fn now_ms() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now =
        perf.as_ref().and_then(|p| Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into::<Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    kernel: String,
    scalar_ms: f64,
    simd_ms: f64,
    /// f32 input bytes processed per repetition.
    input_bytes: f64,
}

/// Median milliseconds of `reps` timed runs of `f`, after one untimed warm-up run. The median
/// (not the mean) so that one run slowed by the machine's other load does not move the row.
fn time(reps: u32, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = now_ms();
            f();
            now_ms() - t
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn run_set(set: &'static KernelSet, values: &[f32], halfs: &[u8], g: usize, bits: u8, reps: u32) -> Vec<(String, f64)> {
    let qmax = ((1u32 << bits) - 1) as f32;
    let mut codes = vec![0u8; BLOCK_ELEMS];
    let mut quad_codes = vec![0u8; 4 * g];
    let mut packed = vec![0u8; g];
    let mut out = vec![0f32; values.len()];
    let mut sink = 0f64;
    let width = Width::from_bits(bits).unwrap_or(Width::W4);
    let importance: Vec<f32> = (0..4096).map(|j| 0.1 + ((j * 7919) % 101) as f32 / 10.0).collect();
    let reference = std::ptr::eq(set, &SCALAR);
    kernels::set_reference_only(reference);
    let mut rows = Vec::new();
    rows.push((
        "min/max".to_string(),
        time(reps, || {
            for x in values.chunks(g) {
                let (a, b) = (set.min_max)(x);
                sink += (a + b) as f64;
            }
        }),
    ));
    rows.push((
        format!("params {bits}-bit min/max"),
        time(reps, || {
            for x in values.chunks(g) {
                sink += choose_params(x, bits, false).map_or(0.0, |p| p.scale_f32() as f64);
            }
        }),
    ));
    rows.push((
        format!("params {bits}-bit scale search"),
        time(reps, || {
            // Four groups at a time, as the quantizer batches them (with their codes on the way).
            let mut quads = values.chunks_exact(4 * g);
            for quad in &mut quads {
                let (xs, codes) = four_groups(quad, &mut quad_codes, g);
                sink += choose_params4(xs, bits, codes)[3].map_or(0.0, |p| p.params.scale_f32() as f64);
            }
            for x in quads.remainder().chunks(g) {
                sink += choose_params(x, bits, true).map_or(0.0, |p| p.scale_f32() as f64);
            }
        }),
    ));
    rows.push((
        format!("params {bits}-bit importance-weighted search"),
        time(reps, || {
            // As the plain search above; each group's importances a slice of one row's 4096
            // column second moments (101 levels, as the end-to-end bench's calibration).
            let importance_of = |gi: usize, len: usize| {
                let at = (gi * g) % (importance.len() - g + 1);
                &importance[at..at + len]
            };
            let mut quads = values.chunks_exact(4 * g);
            for (k, quad) in (&mut quads).enumerate() {
                let hs: [&[f32]; 4] = core::array::from_fn(|j| importance_of(4 * k + j, g));
                let (xs, codes) = four_groups(quad, &mut quad_codes, g);
                sink += weighted_params4(xs, hs, width, codes)[3].map_or(0.0, |p| p.params.scale_f32() as f64);
            }
            for x in quads.remainder().chunks(g) {
                sink += weighted_params(x, importance_of(0, x.len()), width).map_or(0.0, |p| p.scale_f32() as f64);
            }
        }),
    ));
    rows.push((
        format!("quantize + pack {bits}-bit"),
        time(reps, || {
            for x in values.chunks(g) {
                (set.quantize_codes)(x, 0.01, -0.5, qmax, &mut codes[..x.len()]);
                (set.pack)(&codes[..x.len()], bits, &mut packed);
                sink += packed[0] as f64;
            }
        }),
    ));
    // The quantizer's per-group path (params, codes, packing) in blocks as it runs them, without
    // decoding and validation: what a Q4_0-style quantizer does.
    for (label, search) in [("min/max", false), ("scale search", true)] {
        let mut params = vec![Chosen { params: GroupParams::ZERO, coded: false }; BLOCK_ELEMS / g + 1];
        let mut out = vec![0u8; values.len().div_ceil(g) * g * bits as usize / 8];
        rows.push((
            format!("quantize {bits}-bit {label} (params + codes + pack)"),
            time(reps, || {
                encode_blocks(
                    values,
                    g,
                    Width::from_bits(bits).unwrap_or(Width::W4),
                    search,
                    &mut params,
                    &mut codes,
                    &mut out,
                );
                sink += out[0] as f64;
            }),
        ));
    }
    rows.push((
        format!("unpack + dequantize {bits}-bit"),
        time(reps, || {
            for (x, o) in values.chunks(g).zip(out.chunks_mut(g)) {
                (set.unpack)(&packed, bits, &mut codes[..x.len()]);
                (set.dequantize_codes)(&codes[..x.len()], 0.01, -0.5, o);
            }
            sink += out[0] as f64;
        }),
    ));
    rows.push((
        "f16 → f32 decode".to_string(),
        time(reps, || {
            (set.decode_f16)(halfs, &mut out);
            sink += out[1] as f64;
        }),
    ));
    rows.push((
        "error sums (f64)".to_string(),
        time(reps, || {
            for x in values.chunks(g) {
                sink += (set.error_sums)(x, x)[0];
            }
        }),
    ));
    kernels::set_reference_only(false);
    std::hint::black_box(sink);
    rows
}

/// Four consecutive groups of `g` values from `quad` and the code buffers for them from `codes`
/// (the unit of the four-lane searches).
fn four_groups<'a, 'b>(quad: &'a [f32], codes: &'b mut [u8], g: usize) -> ([&'a [f32]; 4], [&'b mut [u8]; 4]) {
    let (a, rest) = quad.split_at(g);
    let (b, rest) = rest.split_at(g);
    let (c, d) = rest.split_at(g);
    let (qa, rest) = codes.split_at_mut(g);
    let (qb, rest) = rest.split_at_mut(g);
    let (qc, qd) = rest.split_at_mut(g);
    ([a, b, c, d], [qa, qb, qc, &mut qd[..g]])
}

/// Time every kernel with both sets over `values` in groups of `groupSize`: rows of
/// `{ kernel, scalarMs, simdMs, inputBytes }` (median milliseconds of `reps` passes over all values).
#[wasm_bindgen(js_name = benchKernels, unchecked_return_type = "Array<{ kernel: string; scalarMs: number; simdMs: number; inputBytes: number }>")]
pub fn bench_kernels(values: &[f32], group_size: u32, bits: u8, reps: u32) -> Result<JsValue, JsValue> {
    let g = group_size.clamp(1, 256) as usize;
    let bits = if [2, 4, 8].contains(&bits) { bits } else { 4 };
    let halfs: Vec<u8> = values.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect();
    let scalar = run_set(&SCALAR, values, &halfs, g, bits, reps.max(1));
    let simd = run_set(kernels::BEST, values, &halfs, g, bits, reps.max(1));
    let rows: Vec<Timing> = scalar
        .into_iter()
        .zip(simd)
        .map(|((kernel, scalar_ms), (_, simd_ms))| Timing {
            kernel,
            scalar_ms,
            simd_ms,
            input_bytes: (values.len() * 4) as f64,
        })
        .collect();
    super::convert::to_js(&rows)
}

/// The quantizer's per-group path over `values` as consecutive groups of `g`, in blocks of
/// `BLOCK_ELEMS` as `quantize_source` runs them, each block one row: the production
/// [`code_groups`] and [`pack_rows`].
fn encode_blocks(
    values: &[f32],
    g: usize,
    width: Width,
    search: bool,
    params: &mut [Chosen],
    q: &mut [u8],
    out: &mut [u8],
) {
    for (b, block) in values.chunks(BLOCK_ELEMS).enumerate() {
        let groups: Vec<&[f32]> = block.chunks(g).collect();
        code_groups(&groups, g, width.bits(), search, &mut params[..groups.len()], &mut q[..block.len()]);
        let at = b * width.packed_len(BLOCK_ELEMS);
        pack_rows(&q[..block.len()], block.len(), width, &mut out[at..at + width.packed_len(block.len())]);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stage {
    stage: &'static str,
    ms: f64,
}

/// Where a tensor's time goes inside the quantizer, with the active kernels, one thread: the
/// stages of `quantize_source` run separately over `values` as an F32 `[n/4096, 4096]` tensor,
/// then the whole of `quantize_source`. `make bench` subtracts the last from `quantizeModel`'s
/// time on the same tensor to get the cost of everything outside the quantizer (copies in and
/// out of wasm memory, Parquet encoding, zstd, CRC, the report). Rows `{ stage, ms }`.
#[wasm_bindgen(js_name = benchStages, unchecked_return_type = "Array<{ stage: string; ms: number }>")]
pub fn bench_stages(values: &[f32], group_size: u32, bits: u8, search: bool, reps: u32) -> Result<JsValue, JsValue> {
    let g = group_size.clamp(32, 256) as usize;
    let width = Width::from_bits(bits).unwrap_or(Width::W4);
    let reps = reps.max(1);
    let row = 4096;
    let n = values.len() / row * row;
    let bytes: Vec<u8> = bytemuck::cast_slice::<f32, u8>(&values[..n]).to_vec();
    let src = Source { name: "w", dtype: Dtype::F32, bytes: &bytes };
    let layout = Layout::for_shape(&[(n / row) as u64, row as u64], g);
    // The blocks quantize_source makes of this layout: whole rows, about BLOCK_ELEMS values.
    let block = (BLOCK_ELEMS / row).max(1) * row;
    // Decoding goes into one block's scratch, reused, as in the quantizer; the later stages read
    // the values themselves (an F32 source decodes to exactly these).
    let mut scratch = vec![0f32; block];
    let mut params = vec![Chosen { params: GroupParams::ZERO, coded: false }; n / g];
    let mut q = vec![0u8; n];
    let mut packed = vec![0u8; layout.codes_len(width)];
    let (mut scales, mut mins) = (vec![0u16; n / g], vec![0u16; n / g]);
    let mut sink = 0f64;
    let mut stages = Vec::new();
    stages.push(Stage {
        stage: "decode + finite check",
        ms: time(reps, || {
            for (b, chunk) in values[..n].chunks(block).enumerate() {
                sink += decode_block(src, b * block, &mut scratch[..chunk.len()]).is_ok() as u8 as f64;
            }
        }),
    });
    stages.push(Stage {
        stage: "params + codes + pack",
        ms: time(reps, || {
            for (b, xb) in values[..n].chunks(block).enumerate() {
                let (g0, q0) = (b * block / g, b * block);
                let groups: Vec<&[f32]> = xb.chunks(g).collect();
                code_groups(
                    &groups,
                    g,
                    width.bits(),
                    search,
                    &mut params[g0..g0 + groups.len()],
                    &mut q[q0..q0 + xb.len()],
                );
                let at = b * layout.row_bytes(width) * (block / row);
                pack_rows(&q[q0..q0 + xb.len()], row, width, &mut packed[at..]);
            }
        }),
    });
    if search {
        stages.push(Stage {
            stage: "gain match",
            ms: time(reps, || {
                for (b, xb) in values[..n].chunks(block).enumerate() {
                    let (g0, q0) = (b * block / g, b * block);
                    let groups: Vec<&[f32]> = xb.chunks(g).collect();
                    let k = groups.len();
                    match_gains(&groups, layout, None, &mut params[g0..g0 + k], &q[q0..q0 + xb.len()]);
                }
            }),
        });
    }
    stages.push(Stage {
        stage: "dequantize + error sums (validation)",
        ms: time(reps, || {
            for (b, xb) in values[..n].chunks(block).enumerate() {
                let (g0, q0) = (b * block / g, b * block);
                let groups: Vec<&[f32]> = xb.chunks(g).collect();
                let k = groups.len();
                let mut sums = ErrorSums::default();
                measure_groups(
                    &groups,
                    &params[g0..g0 + k],
                    &q[q0..q0 + xb.len()],
                    &mut scales[g0..g0 + k],
                    &mut mins[g0..g0 + k],
                    &ColumnWeights::NONE,
                    &mut sums,
                );
                sink += sums.sum_e2;
            }
        }),
    });
    stages.push(Stage {
        stage: "quantize_source (all of the above, as run)",
        ms: time(reps, || {
            sink += quantize_source(src, layout, width, ParamChoice::on_weights(search))
                .ok()
                .flatten()
                .map_or(0.0, |(_, s)| s.sum_e2);
        }),
    });
    std::hint::black_box(sink);
    super::convert::to_js(&stages)
}
