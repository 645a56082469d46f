//! CPU compute kernels as plain functions over contiguous slices. They know nothing of tensors or
//! autograd, so each can be tested against a naive loop and benchmarked on its own.

pub mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_avx512;
mod conv_batch_columns;
mod conv_column_scatter;
mod conv_transpose_tiles;
mod conv_winograd;
pub mod fixed_split;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
pub mod optim;
pub mod pool;
pub mod random;
pub mod scalar;
pub mod upsample;

pub mod elementwise;
pub mod norm;
pub mod reduce;
#[cfg(test)]
mod test_util;
