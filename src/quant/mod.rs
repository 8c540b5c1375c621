//! Group-wise affine quantization: parameter choice (min/max and range search), the tensor
//! layout (rows × groups), and error metrics measured on the stored codes.

pub mod dtype;
pub mod f16_store;
pub mod gain;
pub mod ggml;
pub mod gptq;
pub mod gram;
pub mod groups;
pub mod layout;
pub mod metrics;
pub mod output;
pub mod params;
pub mod tensor;
pub mod weighted;
pub mod width;

pub use f16_store::store_f16;
pub use layout::{ChannelLayout, Layout};
pub use metrics::ErrorSums;
pub use params::choose_params;
pub use tensor::{dequantize, quantize_source, QuantizedTensor, Source};
