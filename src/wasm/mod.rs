//! wasm-bindgen exports: the only place that knows about JS. Each export converts its inputs,
//! calls the core and converts the result; every core error becomes a JS `Error` with `code`
//! (and `field` / `tensor` when known) through one conversion (`convert.rs`). TypeScript types
//! come from tsify on the core structs plus the declarations in `types.rs`.

#[cfg(feature = "bench")]
mod bench;
mod convert;
mod file;
mod file_ranged;
mod gguf;
mod gguf_read;
mod info;
mod model;
mod tensor;
mod types;

use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    // A panic would otherwise surface as an opaque `unreachable` trap.
    console_error_panic_hook::set_once();
}

// The thread pool entry point (`initThreadPool(n)` in JS) of the threaded build. The export
// comes from wasm-bindgen-rayon's own #[wasm_bindgen]; this use keeps that crate linked in.
#[cfg(feature = "threads")]
#[allow(unused_imports)]
pub use wasm_bindgen_rayon::init_thread_pool;
