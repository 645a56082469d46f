//! The one error type of the library. Library code returns these instead of panicking, and each
//! variant names the thing at fault (the op, the file, the key) so a user can act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HeparError {
    /// Operands whose shapes do not fit the op.
    #[error("{op}: shape mismatch: {msg}")]
    Shape { op: &'static str, msg: String },

    /// Operands of different dtypes, or a dtype the op does not support.
    #[error("{op}: dtype mismatch: {msg}")]
    DType { op: &'static str, msg: String },

    /// An argument out of its valid range (kernel size, stride, groups, axis...).
    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    /// NaN or infinity where a finite value is required (a loss, input data).
    #[error("{op}: non-finite value: {msg}")]
    NonFinite { op: &'static str, msg: String },

    /// Misuse of the autograd tape (backward on a non-scalar, graph already freed...).
    #[error("autograd: {0}")]
    Autograd(String),

    /// A device or backend failure (CUDA driver, NVRTC, the PTX virtual machine).
    #[error("backend {backend}: {msg}")]
    Backend { backend: &'static str, msg: String },

    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A file whose content is not what its format requires (corrupt NIfTI, truncated .pth...).
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },

    /// A checkpoint or state_dict that does not fit the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),

    /// A configuration value that is missing or invalid.
    #[error("config: {0}")]
    Config(String),
}

pub type Result<T, E = HeparError> = std::result::Result<T, E>;

impl HeparError {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        HeparError::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Self {
        HeparError::DType {
            op,
            msg: msg.into(),
        }
    }
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        HeparError::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HeparError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        HeparError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
