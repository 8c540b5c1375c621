//! How a tensor's elements are arranged for quantization: rows × groups ([`Layout`]), and which
//! input channel each element belongs to ([`ChannelLayout`], for channel equalization).

use crate::quant::width::Width;

/// A weight `[d0, d1, …]` is `d0` rows of `d1·…` elements; a 1-D tensor is one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub rows: usize,
    pub row_len: usize,
    pub group_size: usize,
}

/// The number of elements of `shape`, `None` when the product overflows u64.
pub fn numel_of(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
}

impl Layout {
    pub fn for_shape(shape: &[u64], group_size: usize) -> Self {
        let (rows, row_len) = match shape {
            [] => (1, 1),
            [n] => (1, *n as usize),
            [r, rest @ ..] => (*r as usize, rest.iter().product::<u64>() as usize),
        };
        Layout { rows, row_len, group_size }
    }
    /// [`for_shape`](Self::for_shape) when every size the layout implies — elements, their f32
    /// bytes, groups — fits in `usize` (32 bits on wasm32); `None` when a product overflows.
    pub fn checked(shape: &[u64], group_size: usize) -> Option<Self> {
        let numel = numel_of(shape)?;
        usize::try_from(numel.checked_mul(4)?).ok()?;
        if group_size == 0 {
            return None;
        }
        Some(Self::for_shape(shape, group_size))
    }
    pub fn numel(&self) -> usize {
        self.rows * self.row_len
    }
    pub fn groups_per_row(&self) -> usize {
        self.row_len.div_ceil(self.group_size)
    }
    pub fn groups(&self) -> usize {
        self.rows * self.groups_per_row()
    }
    /// Every row starts on a byte boundary.
    pub fn row_bytes(&self, width: Width) -> usize {
        width.packed_len(self.row_len)
    }
    pub fn codes_len(&self, width: Width) -> usize {
        self.rows * self.row_bytes(width)
    }
    /// (start, len) of group g of a row within the row.
    pub(crate) fn group_span(&self, g: usize) -> (usize, usize) {
        let start = g * self.group_size;
        (start, self.group_size.min(self.row_len - start))
    }
}

/// How a weight's elements map to input channels: `[out, in, inner…]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLayout {
    pub out: usize,
    pub input: usize,
    /// Elements per (out, in) pair: kh·kw for a conv, 1 for a Linear.
    pub inner: usize,
}

impl ChannelLayout {
    /// `None` for shapes without an input-channel axis (fewer than 2 dims).
    pub fn for_shape(shape: &[u64]) -> Option<Self> {
        match shape {
            [o, i, rest @ ..] => Some(ChannelLayout {
                out: *o as usize,
                input: *i as usize,
                inner: rest.iter().product::<u64>() as usize,
            }),
            _ => None,
        }
    }
    /// Input channel of flat (row-major) element `k`.
    #[inline]
    pub fn channel_of(&self, k: usize) -> usize {
        (k / self.inner) % self.input
    }
}

/// W' = W · diag(s) over the input channels (f32 multiply).
pub fn equalize(w: &[f32], cl: ChannelLayout, s: &[f32]) -> Vec<f32> {
    w.iter().enumerate().map(|(k, &x)| x * s[cl.channel_of(k)]).collect()
}

/// Undo in place: Ŵ = Ŵ' / s_j (f32 division, as docs/FORMAT.md prescribes for readers).
pub fn undo_equalization(w: &mut [f32], cl: ChannelLayout, s: &[f32]) {
    for (k, x) in w.iter_mut().enumerate() {
        *x /= s[cl.channel_of(k)];
    }
}
