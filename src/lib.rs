//! Hepar: a deep-learning engine for 3D medical image segmentation.
//!
//! Layout: `tensor` (n-d arrays, views, dtypes) and `autograd` (the reverse-mode tape) sit on a
//! `backend` trait with a CPU implementation; `ops` builds every differentiable op from backend
//! primitives; `nn`, `optim` and `losses` are built from ops. `data` reads and prepares CT volumes,
//! `io` reads and writes checkpoints, `ptx` is the PTX virtual machine the CUDA kernels are tested on.

pub mod backend;
pub mod cli;
pub mod error;
pub mod ptx;
pub mod util;

pub use error::{HeparError, Result};
