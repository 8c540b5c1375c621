//! Hot per-group operations. `scalar` is the reference twin: always compiled, always public, so
//! tests on every target can compare an optimised kernel against it. The summations are written
//! with four interleaved accumulators (element i goes to lane i % 4, lanes combined as
//! (l0 + l1) + (l2 + l3)) so that a 4-lane SIMD twin can reproduce them bit for bit.

pub mod scalar;

pub use scalar::*;
