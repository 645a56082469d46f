//! Launches of `kernels/matmul.cu`: the batched matrix product of strided views, on f32 or f64
//! units, or for f32 under `Precision::Tf32` on TF32 tensor cores.

use super::device::LaunchConfig;
use super::storage::CudaStorage;
use super::view::StridedView;
use super::DeviceApi;
use crate::backend::precision::{matmul_precision, Precision};
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;

const FILE: &str = "matmul.cu";
/// Tile of C per block and threads per block, as `MM_BM`, `MM_BN` and `MM_THREADS` in the kernel;
/// the tensor-core kernel has the same tile with `TC_THREADS` threads.
const TILE_M: usize = 64;
const TILE_N: usize = 64;
const THREADS: u32 = 256;
const TF32_THREADS: u32 = 128;
/// Grid y and z limits; the kernel loops over the row tiles and batch items beyond them.
const MAX_GRID_YZ: usize = 65535;

/// `[..., M, K] @ [..., K, N]` with identical batch axes (already broadcast by the caller), read
/// through the views' strides; the result is dense `[..., M, N]`.
/// The precision is this process's setting (`backend::precision`).
pub fn matmul<D: DeviceApi>(
    a: &CudaStorage<D>,
    al: &Layout,
    b: &CudaStorage<D>,
    bl: &Layout,
) -> Result<CudaStorage<D>> {
    matmul_with_precision(a, al, b, bl, matmul_precision())
}

/// `matmul` at a given precision: `Tf32` applies to f32 operands (every architecture the
/// backend compiles for, sm_80 and sm_90, has TF32 tensor cores); f64 always runs in fp64.
pub fn matmul_with_precision<D: DeviceApi>(
    a: &CudaStorage<D>,
    al: &Layout,
    b: &CudaStorage<D>,
    bl: &Layout,
    precision: Precision,
) -> Result<CudaStorage<D>> {
    let op = "matmul";
    a.require_same_dtype(op, b)?;
    let r = al.rank();
    if r < 2
        || bl.rank() != r
        || al.shape()[..r - 2] != bl.shape()[..r - 2]
        || al.shape()[r - 1] != bl.shape()[r - 2]
    {
        return Err(HeparError::shape(
            op,
            format!(
                "{:?} @ {:?}: expected [..., M, K] @ [..., K, N] with the same batch axes",
                al.shape(),
                bl.shape()
            ),
        ));
    }
    let (m, k, n) = (al.shape()[r - 2], al.shape()[r - 1], bl.shape()[r - 1]);
    let batch_shape = &al.shape()[..r - 2];
    let batch: usize = batch_shape.iter().product();
    let c = a.alloc_like(batch * m * n, a.dtype())?;
    if c.is_empty() {
        return Ok(c);
    }
    let batch_view = |l: &Layout| {
        StridedView::new(
            op,
            &Layout::new(
                batch_shape.to_vec(),
                l.strides()[..r - 2].to_vec(),
                l.offset(),
            ),
        )
    };
    let (sa, sb) = (al.strides(), bl.strides());
    let tensor_cores = precision == Precision::Tf32 && a.dtype() == DType::F32;
    let (kernel, threads) = if tensor_cores {
        ("matmul_tf32_f32".to_string(), TF32_THREADS)
    } else {
        (a.kernel_name(op), THREADS)
    };
    let config = LaunchConfig {
        grid_dim: (
            u32::try_from(n.div_ceil(TILE_N))
                .map_err(|_| HeparError::invalid(op, format!("N = {n} exceeds the GPU grid")))?,
            m.div_ceil(TILE_M).min(MAX_GRID_YZ) as u32,
            batch.min(MAX_GRID_YZ) as u32,
        ),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = [
        a.arg(),
        batch_view(al)?.arg(),
        (sa[r - 2] as i64).into(),
        (sa[r - 1] as i64).into(),
        b.arg(),
        batch_view(bl)?.arg(),
        (sb[r - 2] as i64).into(),
        (sb[r - 1] as i64).into(),
        c.arg(),
        (batch as i64).into(),
        (m as i64).into(),
        (n as i64).into(),
        (k as i64).into(),
    ];
    a.context().launch(FILE, &kernel, &config, &args)?;
    Ok(c)
}
