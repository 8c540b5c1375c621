//! Data parallelism over independent blocks. With the `threads` feature the blocks run on rayon's
//! pool (on the web: wasm-bindgen-rayon's Web Workers over shared memory); without it, in order on
//! the calling thread. Callers merge results in block order, so the output does not depend on
//! which of the two ran or on the number of threads.

#[cfg(feature = "threads")]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use rayon::prelude::*;

    static ENABLED: AtomicBool = AtomicBool::new(true);
    /// Bit i set when rayon worker i ran a block since the last `take_threads_seen`.
    static SEEN: AtomicU64 = AtomicU64::new(0);

    pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
        if !ENABLED.load(Ordering::Relaxed) || items.len() < 2 {
            return items.into_iter().map(f).collect();
        }
        items
            .into_par_iter()
            .map(|item| {
                if let Some(i) = rayon::current_thread_index() {
                    SEEN.fetch_or(1u64 << (i % 64), Ordering::Relaxed);
                }
                f(item)
            })
            .collect()
    }

    pub fn join<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
        if !ENABLED.load(Ordering::Relaxed) {
            return (a(), b());
        }
        rayon::join(a, b)
    }

    pub fn set_enabled(on: bool) {
        ENABLED.store(on, Ordering::Relaxed);
    }

    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    pub fn take_threads_seen() -> u32 {
        SEEN.swap(0, Ordering::Relaxed).count_ones()
    }

    pub fn available() -> bool {
        true
    }
}

#[cfg(not(feature = "threads"))]
mod imp {
    pub fn map<T, R>(items: Vec<T>, f: impl Fn(T) -> R) -> Vec<R> {
        items.into_iter().map(f).collect()
    }

    pub fn join<A, B>(a: impl FnOnce() -> A, b: impl FnOnce() -> B) -> (A, B) {
        (a(), b())
    }

    pub fn set_enabled(_on: bool) {}

    pub fn enabled() -> bool {
        false
    }

    pub fn take_threads_seen() -> u32 {
        0
    }

    pub fn available() -> bool {
        false
    }
}

/// Whether this build has the `threads` feature.
pub use imp::available;
/// Whether blocks run on the pool now (the `threads` feature, and not turned off).
pub use imp::enabled;
/// Run `a` and `b`, on two pool threads when there is a pool (each may also `map`), else in order.
pub use imp::join;
/// Apply `f` to every block; results come back in input order.
pub use imp::map;
/// Turn the thread pool off (`false`) or on again; a no-op without the `threads` feature.
pub use imp::set_enabled;
/// How many distinct pool threads ran blocks since the last call (0 without threads).
pub use imp::take_threads_seen;
