//! Launches of `kernels/optim.cu`: the fused Adam/AdamW update.

use super::device::KernelArg;
use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::ops::AdamStep;
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};

/// `AdamScalars` of kernels/optim.cu (same field order).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamScalars {
    decay: f64,
    l2: f64,
    beta1: f64,
    one_minus_beta1: f64,
    beta2: f64,
    one_minus_beta2: f64,
    inv_bias2: f64,
    eps: f64,
    step_size: f64,
    mode: i32,
    _pad: i32,
}

pub fn adam_update<D: DeviceApi>(
    p: &CudaStorage<D>,
    g: &CudaStorage<D>,
    m: Option<&CudaStorage<D>>,
    v: Option<&CudaStorage<D>>,
    s: &AdamStep,
) -> Result<(CudaStorage<D>, CudaStorage<D>, CudaStorage<D>)> {
    p.require_same_dtype("adam", g)?;
    let n = p.len();
    for other in [Some(g), m, v].into_iter().flatten() {
        p.require_same_dtype("adam", other)?;
        if other.len() != n {
            return Err(HeparError::shape(
                "adam",
                format!(
                    "parameter of {n} elements vs gradient/moment of {}",
                    other.len()
                ),
            ));
        }
    }
    let moments = match (m, v) {
        (Some(m), Some(v)) => Some((m, v)),
        (None, None) => None,
        _ => {
            return Err(HeparError::invalid(
                "adam",
                "first and second moments must both exist or both be absent",
            ))
        }
    };
    let decays = s.weight_decay != 0.0;
    let scalars = AdamScalars {
        decay: 1.0 - s.lr * s.weight_decay,
        l2: s.weight_decay,
        beta1: s.beta1,
        one_minus_beta1: 1.0 - s.beta1,
        beta2: s.beta2,
        one_minus_beta2: 1.0 - s.beta2,
        inv_bias2: 1.0 / s.bias2,
        eps: s.eps,
        step_size: s.lr / s.bias1,
        mode: (decays && s.decoupled) as i32
            | (((decays && !s.decoupled) as i32) << 1)
            | ((moments.is_some() as i32) << 2),
        _pad: 0,
    };
    let (new_p, new_m, new_v) = (
        p.alloc_like(n, p.dtype())?,
        p.alloc_like(n, p.dtype())?,
        p.alloc_like(n, p.dtype())?,
    );
    // Without moments the kernel never reads them; the gradient stands in for the pointers.
    let (m_arg, v_arg) = moments.map_or((g.arg(), g.arg()), |(m, v)| (m.arg(), v.arg()));
    let ctx = p.context();
    let args = [
        p.arg(),
        g.arg(),
        m_arg,
        v_arg,
        new_p.arg(),
        new_m.arg(),
        new_v.arg(),
        (n as i64).into(),
        KernelArg::from_bytes(bytemuck::bytes_of(&scalars)),
    ];
    ctx.launch(
        "optim.cu",
        &p.kernel_name("adam_update"),
        &ctx.grid_stride(n),
        &args,
    )?;
    Ok((new_p, new_m, new_v))
}
