//! Hepar: a deep-learning engine for 3D medical image segmentation.
//!
//! Layout: `tensor` (n-d arrays, views, dtypes) and `autograd` (the reverse-mode tape) sit on a
//! `backend` trait with a CPU implementation; `ops` builds every differentiable op from backend
//! primitives; `nn` and `optim` are built from ops. `data` reads and prepares CT volumes, `io`
//! reads and writes checkpoints, `train` trains the two networks, `infer` applies them and `eval`
//! scores their label maps against the truth; `ptx` is the PTX virtual machine the CUDA kernels
//! are tested on.

pub mod autograd;
pub mod backend;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod infer;
pub mod io;
pub mod job;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod ptx;
pub mod report;
pub mod tensor;
pub mod train;
pub mod util;
pub mod verify;

pub use autograd::{no_grad, NoGradGuard};
pub use backend::Device;
pub use error::{HeparError, Result};
pub use tensor::{DType, Tensor};
