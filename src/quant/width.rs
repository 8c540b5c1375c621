//! The widths packed codes come in.

/// Bits per code. Every group starts on a byte: groups of 32+ values at 2, 4 or 8 bits fill
/// whole bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Width {
    W2,
    W4,
    W8,
}

impl Width {
    /// Narrowest first: the order the fallback climbs.
    pub const ALL: [Width; 3] = [Width::W2, Width::W4, Width::W8];

    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            2 => Some(Width::W2),
            4 => Some(Width::W4),
            8 => Some(Width::W8),
            _ => None,
        }
    }
    pub fn bits(self) -> u8 {
        match self {
            Width::W2 => 2,
            Width::W4 => 4,
            Width::W8 => 8,
        }
    }
    /// The largest code, 2^bits − 1.
    pub fn qmax(self) -> f32 {
        ((1u32 << self.bits()) - 1) as f32
    }
    /// Bytes that `n` packed codes take.
    pub fn packed_len(self, n: usize) -> usize {
        (n * self.bits() as usize).div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_round_trip_and_pack() {
        for w in Width::ALL {
            assert_eq!(Width::from_bits(w.bits()), Some(w));
            assert_eq!(w.packed_len(64) * 8, 64 * w.bits() as usize);
            assert_eq!(w.packed_len(3), crate::kernels::scalar::packed_len(3, w.bits()));
        }
        assert_eq!((Width::W2.qmax(), Width::W4.qmax(), Width::W8.qmax()), (3.0, 15.0, 255.0));
        assert_eq!(Width::from_bits(16), None);
    }
}
