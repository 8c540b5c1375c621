//! Group-wise affine quantization: parameter choice (min/max and range search), the tensor
//! layout (rows × groups), and error metrics measured on the stored codes.

pub mod metrics;
pub mod params;
pub mod tensor;

pub use metrics::ErrorSums;
pub use params::choose_params;
pub use tensor::{dequantize, quantize_source, store_f16, Layout, QuantizedTensor, Source};
