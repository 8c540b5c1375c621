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

    pub fn set_enabled(on: bool) {
        ENABLED.store(on, Ordering::Relaxed);
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

    pub fn set_enabled(_on: bool) {}

    pub fn take_threads_seen() -> u32 {
        0
    }

    pub fn available() -> bool {
        false
    }
}

/// Whether this build has the `threads` feature.
pub use imp::available;
/// Apply `f` to every block; results come back in input order.
pub use imp::map;
/// Turn the thread pool off (`false`) or on again; a no-op without the `threads` feature.
pub use imp::set_enabled;
/// How many distinct pool threads ran blocks since the last call (0 without threads).
pub use imp::take_threads_seen;
