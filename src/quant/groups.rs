//! Stage 2 of a block, choosing each group's params and codes: min/max, the range search or the
//! importance-weighted search, four equal-length groups at a time (the SIMD searches' unit), then
//! gain matching.

use crate::kernels;
use crate::quant::gain;
use crate::quant::layout::Layout;
use crate::quant::params::{choose_params4, choose_params_coded, Chosen};
use crate::quant::weighted::{weighted_params4, weighted_params_coded};
use crate::quant::width::Width;

/// Params and codes for `groups`, consecutive pieces of one block: one slot each in `params`,
/// and their codes (one per byte, unpacked) at the same offsets in `codes`, which is as long as
/// the block. `false` when a group does not fit f16 params. With search, full-size groups and
/// shorter ones (each row's last) are batched separately into fours, the SIMD search's unit;
/// leftovers go one at a time (same params). Codes the choice did not produce on the way (min/max
/// params) are computed afterwards.
pub fn code_groups(
    groups: &[&[f32]],
    group_size: usize,
    bits: u8,
    search: bool,
    params: &mut [Chosen],
    codes: &mut [u8],
) -> bool {
    let chosen = if !search {
        params
            .iter_mut()
            .zip(groups)
            .all(|(slot, x)| choose_params_coded(x, bits, false, &mut []).map(|p| *slot = p).is_some())
    } else if groups.iter().all(|x| x.len() == group_size) {
        choose_uniform_group_params(groups, group_size, bits, params, codes)
    } else {
        by_quads(
            groups,
            group_size,
            params,
            codes,
            |quad, pieces| choose_params4(quad.map(|gi| groups[gi]), bits, pieces),
            |gi, piece| choose_params_coded(groups[gi], bits, true, piece),
        )
    };
    if !chosen {
        return false;
    }
    code_the_rest(groups, params, ((1u32 << bits) - 1) as f32, codes);
    true
}

/// Codes for the groups whose params choice did not write them on the way (min/max params).
fn code_the_rest(groups: &[&[f32]], params: &[Chosen], qmax: f32, codes: &mut [u8]) {
    let quantize = kernels::active().quantize_codes;
    let mut e0 = 0;
    for (x, c) in groups.iter().zip(params) {
        if !c.coded {
            quantize(x, c.params.scale_f32(), c.params.min_f32(), qmax, &mut codes[e0..e0 + x.len()]);
        }
        e0 += x.len();
    }
}

/// Stage 2b: refit each group's params for its codes so the reconstruction keeps the weights' gain
/// ([`gain::match_group`]), weighted by `importance` (per column of a row) when given.
pub fn match_gains(groups: &[&[f32]], layout: Layout, importance: Option<&[f32]>, params: &mut [Chosen], q: &[u8]) {
    let gpr = layout.groups_per_row();
    let mut e0 = 0;
    for (gi, (x, slot)) in groups.iter().zip(params.iter_mut()).enumerate() {
        let col = (gi % gpr) * layout.group_size;
        let h = importance.map(|h| &h[col..col + x.len()]);
        slot.params = gain::match_group(x, &q[e0..e0 + x.len()], h, slot.params);
        e0 += x.len();
    }
}

/// [`code_groups`] with params weighted by `h`, the importance of each column of a row: groups of
/// equal length in fours (the SIMD search's unit, same params as one at a time), the codes the
/// choice did not produce on the way computed afterwards.
pub fn code_groups_weighted(
    groups: &[&[f32]],
    layout: Layout,
    h: &[f32],
    width: Width,
    params: &mut [Chosen],
    codes: &mut [u8],
) -> bool {
    let gpr = layout.groups_per_row();
    let importance = |gi: usize, len: usize| {
        let col = (gi % gpr) * layout.group_size;
        &h[col..col + len]
    };
    let chosen = by_quads(
        groups,
        layout.group_size,
        params,
        codes,
        |quad, pieces| {
            let hs = quad.map(|gi| importance(gi, groups[gi].len()));
            weighted_params4(quad.map(|gi| groups[gi]), hs, width, pieces)
        },
        |gi, piece| weighted_params_coded(groups[gi], importance(gi, groups[gi].len()), width, piece),
    );
    if !chosen {
        return false;
    }
    code_the_rest(groups, params, width.qmax(), codes);
    true
}

/// Params for `groups` (consecutive pieces of one block, whose codes are at the same offsets in
/// `codes`) into `params`: `four` chooses for four groups of equal length — full-size groups and
/// shorter ones (each row's last) batched separately — `one` for the leftovers, each given the
/// groups' indices and code spans. `false` at the first group without params.
fn by_quads(
    groups: &[&[f32]],
    group_size: usize,
    params: &mut [Chosen],
    codes: &mut [u8],
    four: impl Fn([usize; 4], [&mut [u8]; 4]) -> [Option<Chosen>; 4],
    one: impl Fn(usize, &mut [u8]) -> Option<Chosen>,
) -> bool {
    // (group index, offset in the block) of groups waiting for a quad, by full / short length.
    let mut pending = [[(0usize, 0usize); 4]; 2];
    let mut count = [0usize; 2];
    let mut e0 = 0;
    for (gi, x) in groups.iter().enumerate() {
        let off = e0;
        e0 += x.len();
        let b = (x.len() != group_size) as usize;
        pending[b][count[b]] = (gi, off);
        count[b] += 1;
        if count[b] == 4 {
            count[b] = 0;
            let quad = pending[b];
            let pieces = four_pieces(codes, quad.map(|(gi, off)| (off, groups[gi].len())));
            for ((gi, _), p) in quad.into_iter().zip(four(quad.map(|(gi, _)| gi), pieces)) {
                let Some(p) = p else { return false };
                params[gi] = p;
            }
        }
    }
    for b in 0..2 {
        for &(gi, off) in &pending[b][..count[b]] {
            let Some(p) = one(gi, &mut codes[off..off + groups[gi].len()]) else { return false };
            params[gi] = p;
        }
    }
    true
}

/// [`code_groups`]' params with search when every group is full-size (rows a multiple of the
/// group, the common case): consecutive fours, no bookkeeping of which groups wait for a quad.
fn choose_uniform_group_params(
    groups: &[&[f32]],
    group_size: usize,
    bits: u8,
    params: &mut [Chosen],
    codes: &mut [u8],
) -> bool {
    let quads = groups.len() / 4;
    let (quad_codes, rest_codes) = codes.split_at_mut(quads * 4 * group_size);
    for ((quad, slots), c) in
        groups.chunks_exact(4).zip(params.chunks_exact_mut(4)).zip(quad_codes.chunks_exact_mut(4 * group_size))
    {
        let (c0, c) = c.split_at_mut(group_size);
        let (c1, c) = c.split_at_mut(group_size);
        let (c2, c3) = c.split_at_mut(group_size);
        for (slot, p) in
            slots.iter_mut().zip(choose_params4([quad[0], quad[1], quad[2], quad[3]], bits, [c0, c1, c2, c3]))
        {
            let Some(p) = p else { return false };
            *slot = p;
        }
    }
    for ((x, slot), c) in
        groups[quads * 4..].iter().zip(&mut params[quads * 4..]).zip(rest_codes.chunks_mut(group_size))
    {
        let Some(p) = choose_params_coded(x, bits, true, c) else { return false };
        *slot = p;
    }
    true
}

/// `codes[off..off + len]` for four disjoint spans in increasing order.
fn four_pieces(codes: &mut [u8], spans: [(usize, usize); 4]) -> [&mut [u8]; 4] {
    let mut rest = codes;
    let mut base = 0;
    spans.map(|(off, len)| {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(off - base);
        let (piece, tail) = tail.split_at_mut(len);
        rest = tail;
        base = off + len;
        piece
    })
}
