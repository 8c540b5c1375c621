//! GGUF, the container llama.cpp, stable-diffusion.cpp and ComfyUI-GGUF load (docs/GGUF.md):
//! `container` encodes and parses it, `arch` names the architecture a loader expects,
//! `reader` lists and decodes the tensors of any file.

pub mod arch;
pub mod container;
pub mod reader;
