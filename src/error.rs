//! One error type for the whole core. Every variant carries a stable code string that the
//! bindings copy onto the JS `Error` (`err.code`), so callers can branch without parsing messages.

use thiserror::Error;

/// Result alias used throughout the core.
pub type Result<T, E = AqError> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum AqError {
    /// A config field is out of range or inconsistent. `field` is the camelCase JS name.
    #[error("invalid config: {field} = {value}: {expected}")]
    Config { field: String, value: String, expected: String },

    /// The safetensors container is malformed (header, offsets, lengths).
    #[error("invalid safetensors: {0}")]
    Safetensors(String),

    /// A tensor uses a dtype we cannot decode, or its bytes do not match its dtype and shape.
    #[error("tensor '{tensor}': {message}")]
    Dtype { tensor: String, message: String },

    /// A NaN or infinity was found in a float tensor that is to be quantized.
    #[error("tensor '{tensor}': non-finite value {value} at element {index}; quantization needs finite weights")]
    NonFinite { tensor: String, index: u64, value: String },

    /// A layer stayed below `minAccuracy` at every width and `failFast` is set.
    #[error("tensor '{tensor}': {message}")]
    Accuracy { tensor: String, message: String },

    /// Parquet file that is not ours, truncated, or internally inconsistent; or a write failure.
    #[error("parquet: {0}")]
    Parquet(String),

    /// The streaming API was used out of order (e.g. addTensor before begin, a tensor twice).
    #[error("{0}")]
    State(String),

    /// The caller cancelled the run (a progress callback asked to stop or threw).
    #[error("{0}")]
    Cancelled(String),

    /// A tensor or file exceeds a documented size limit of the format.
    #[error("{0}")]
    TooLarge(String),

    /// A GGUF file that is malformed or holds what this library cannot read (docs/GGUF.md).
    #[error("gguf: {0}")]
    Gguf(String),

    /// Calibration statistics that do not follow docs/CALIBRATION.md.
    #[error("invalid calibration statistics: {0}")]
    Calibration(String),

    /// A tensor has no exact form in the container a file is converted to.
    #[error("tensor '{tensor}': {message}")]
    Convert { tensor: String, message: String },
}

impl AqError {
    /// Stable machine-readable code, documented in README and docs/FORMAT.md.
    pub fn code(&self) -> &'static str {
        match self {
            AqError::Config { .. } => "E_CONFIG",
            AqError::Safetensors(_) => "E_SAFETENSORS",
            AqError::Dtype { .. } => "E_DTYPE",
            AqError::NonFinite { .. } => "E_NONFINITE",
            AqError::Accuracy { .. } => "E_ACCURACY",
            AqError::Parquet(_) => "E_PARQUET",
            AqError::State(_) => "E_STATE",
            AqError::TooLarge(_) => "E_TOO_LARGE",
            AqError::Cancelled(_) => "E_CANCELLED",
            AqError::Calibration(_) => "E_CALIBRATION",
            AqError::Gguf(_) => "E_GGUF",
            AqError::Convert { .. } => "E_CONVERT",
        }
    }

    /// The config field at fault, for forms that show the error next to the field.
    pub fn field(&self) -> Option<&str> {
        match self {
            AqError::Config { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The tensor at fault, when there is one.
    pub fn tensor(&self) -> Option<&str> {
        match self {
            AqError::Dtype { tensor, .. }
            | AqError::NonFinite { tensor, .. }
            | AqError::Accuracy { tensor, .. }
            | AqError::Convert { tensor, .. } => Some(tensor),
            _ => None,
        }
    }

    pub(crate) fn config(field: &str, value: impl ToString, expected: impl ToString) -> Self {
        AqError::Config { field: field.to_string(), value: value.to_string(), expected: expected.to_string() }
    }

    pub(crate) fn dtype(tensor: &str, message: impl ToString) -> Self {
        AqError::Dtype { tensor: tensor.to_string(), message: message.to_string() }
    }
}

impl From<parquet::errors::ParquetError> for AqError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        AqError::Parquet(e.to_string())
    }
}
