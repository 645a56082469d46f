//! `CpuStorage`: tensor data in host memory, and the CPU implementation of the backend trait.

use super::kernels::{conv, elementwise, gemm, norm, optim, pool, random, reduce, upsample};
use crate::backend::ops::{AdamStep, BinaryOp, ReduceOp, UnaryOp};
use crate::backend::{
    BackendStorage, ConvGeometry, ConvTransposeGeometry, NormActivation, NormStats, PoolGeometry,
    UpsampleGeometry,
};
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;
use half::{bf16, f16};

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// Runs a generic computation on the f32 or f64 data of one storage, re-wrapping the result;
/// f16/bf16 storages are refused with an error naming the op.
macro_rules! compute {
    ($op:expr, $s:expr, |$v:ident| $body:expr) => {
        match $s {
            CpuStorage::F32($v) => Ok(CpuStorage::F32($body)),
            CpuStorage::F64($v) => Ok(CpuStorage::F64($body)),
            other => Err(HeparError::dtype(
                $op,
                format!(
                    "{} tensors are storage only: convert to f32 first",
                    other.dtype()
                ),
            )),
        }
    };
}

/// Like `compute!` for two storages that must share a dtype.
macro_rules! compute2 {
    ($op:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (CpuStorage::F32($x), CpuStorage::F32($y)) => Ok(CpuStorage::F32($body)),
            (CpuStorage::F64($x), CpuStorage::F64($y)) => Ok(CpuStorage::F64($body)),
            (a, b) => Err(HeparError::dtype(
                $op,
                format!("operands are {} and {}", a.dtype(), b.dtype()),
            )),
        }
    };
}

impl CpuStorage {
    pub fn zeros(numel: usize, dtype: DType) -> Self {
        Self::full(numel, dtype, 0.0)
    }

    pub fn full(numel: usize, dtype: DType, value: f64) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![value as f32; numel]),
            DType::F64 => CpuStorage::F64(vec![value; numel]),
            DType::F16 => CpuStorage::F16(vec![f16::from_f64(value); numel]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::from_f64(value); numel]),
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<&[f64]> {
        match self {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }

    /// Values of a view, converted to f64 (for tests, printing and I/O).
    pub fn to_f64_vec(&self, l: &Layout) -> Vec<f64> {
        let idx = |f: &mut dyn FnMut(usize)| l.for_each_index(f);
        let mut out = Vec::with_capacity(l.numel());
        match self {
            CpuStorage::F32(v) => idx(&mut |i| out.push(v[i] as f64)),
            CpuStorage::F64(v) => idx(&mut |i| out.push(v[i])),
            CpuStorage::F16(v) => idx(&mut |i| out.push(v[i].to_f64())),
            CpuStorage::BF16(v) => idx(&mut |i| out.push(v[i].to_f64())),
        }
        out
    }
}

fn convert<S: Copy, D>(src: &[S], l: &Layout, f: impl Fn(S) -> D) -> Vec<D> {
    let mut out = Vec::with_capacity(l.numel());
    l.for_each_index(|i| out.push(f(src[i])));
    out
}

impl BackendStorage for CpuStorage {
    const BACKEND: &'static str = "cpu";

    fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Self> {
        use CpuStorage::*;
        Ok(match (self, dtype) {
            (F32(v), DType::F32) => F32(convert(v, l, |x| x)),
            (F32(v), DType::F64) => F64(convert(v, l, |x| x as f64)),
            (F32(v), DType::F16) => F16(convert(v, l, f16::from_f32)),
            (F32(v), DType::BF16) => BF16(convert(v, l, bf16::from_f32)),
            (F64(v), DType::F32) => F32(convert(v, l, |x| x as f32)),
            (F64(v), DType::F64) => F64(convert(v, l, |x| x)),
            (F64(v), DType::F16) => F16(convert(v, l, f16::from_f64)),
            (F64(v), DType::BF16) => BF16(convert(v, l, bf16::from_f64)),
            (F16(v), DType::F32) => F32(convert(v, l, f16::to_f32)),
            (F16(v), DType::F64) => F64(convert(v, l, f16::to_f64)),
            (F16(v), DType::F16) => F16(convert(v, l, |x| x)),
            (F16(v), DType::BF16) => BF16(convert(v, l, |x| bf16::from_f32(x.to_f32()))),
            (BF16(v), DType::F32) => F32(convert(v, l, bf16::to_f32)),
            (BF16(v), DType::F64) => F64(convert(v, l, bf16::to_f64)),
            (BF16(v), DType::F16) => F16(convert(v, l, |x| f16::from_f32(x.to_f32()))),
            (BF16(v), DType::BF16) => BF16(convert(v, l, |x| x)),
        })
    }

    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        match self {
            CpuStorage::F16(v) => Ok(CpuStorage::F16(convert(v, l, |x| x))),
            CpuStorage::BF16(v) => Ok(CpuStorage::BF16(convert(v, l, |x| x))),
            s => compute!("copy", s, |v| elementwise::copy_strided(v, l)),
        }
    }

    fn write_strided(&mut self, dst: &Layout, src: &Self, src_layout: &Layout) -> Result<()> {
        match (self, src) {
            (CpuStorage::F32(d), CpuStorage::F32(s)) => {
                elementwise::copy_between(s, src_layout, d, dst)
            }
            (CpuStorage::F64(d), CpuStorage::F64(s)) => {
                elementwise::copy_between(s, src_layout, d, dst)
            }
            (d, s) => {
                return Err(HeparError::dtype(
                    "write_strided",
                    format!("destination {} vs source {}", d.dtype(), s.dtype()),
                ))
            }
        }
        Ok(())
    }

    fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Self> {
        compute!(op.name(), self, |v| elementwise::unary(v, l, op))
    }

    fn unary_grad(&self, l: &Layout, grad: &Self, gl: &Layout, op: UnaryOp) -> Result<Self> {
        compute2!(op.name(), self, grad, |x, g| elementwise::unary_grad(
            x, l, g, gl, op
        ))
    }

    fn binary(&self, l: &Layout, rhs: &Self, rl: &Layout, op: BinaryOp) -> Result<Self> {
        compute2!(op.name(), self, rhs, |a, b| elementwise::binary(
            a, l, b, rl, op
        ))
    }

    fn reduce(&self, l: &Layout, axes: &[usize], op: ReduceOp) -> Result<Self> {
        compute!("reduce", self, |v| reduce::reduce(v, l, axes, op).0)
    }

    fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Self> {
        compute!("softmax", self, |v| reduce::softmax(v, l, axis, log))
    }

    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        compute2!("matmul", self, rhs, |a, b| batched_matmul(a, l, b, rl))
    }

    fn group_norm(
        &self,
        l: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        eps: f64,
        activation: NormActivation,
    ) -> Result<(Self, NormStats<Self>)> {
        let (n, c, s) = ncs(l);
        macro_rules! run {
            ($x:expr, $w:expr, $b:expr, $wrap:path) => {{
                let (y, mean, rstd) = norm::group_norm_forward(
                    &dense($x, l),
                    n,
                    c,
                    s,
                    groups,
                    $w,
                    $b,
                    eps,
                    activation,
                );
                Ok((
                    $wrap(y),
                    NormStats {
                        mean: $wrap(mean),
                        rstd: $wrap(rstd),
                    },
                ))
            }};
        }
        match self {
            CpuStorage::F32(x) => run!(
                x,
                weight.and_then(|w| w.as_f32()),
                bias.and_then(|b| b.as_f32()),
                CpuStorage::F32
            ),
            CpuStorage::F64(x) => run!(
                x,
                weight.and_then(|w| w.as_f64()),
                bias.and_then(|b| b.as_f64()),
                CpuStorage::F64
            ),
            other => Err(HeparError::dtype(
                "group_norm",
                format!("{} is storage only", other.dtype()),
            )),
        }
    }

    fn group_norm_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        stats: &NormStats<Self>,
        activation: NormActivation,
    ) -> Result<(Self, Self, Self)> {
        let (n, c, s) = ncs(l);
        match (self, grad, &stats.mean, &stats.rstd) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(m), CpuStorage::F32(r)) => {
                let (a, b, cc) = norm::group_norm_backward(
                    &dense(x, l),
                    &dense(g, gl),
                    m,
                    r,
                    n,
                    c,
                    s,
                    groups,
                    weight.and_then(|w| w.as_f32()),
                    bias.and_then(|b| b.as_f32()),
                    activation,
                );
                Ok((CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(cc)))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(m), CpuStorage::F64(r)) => {
                let (a, b, cc) = norm::group_norm_backward(
                    &dense(x, l),
                    &dense(g, gl),
                    m,
                    r,
                    n,
                    c,
                    s,
                    groups,
                    weight.and_then(|w| w.as_f64()),
                    bias.and_then(|b| b.as_f64()),
                    activation,
                );
                Ok((CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(cc)))
            }
            _ => Err(HeparError::dtype(
                "group_norm_backward",
                "operands must all be f32 or all f64",
            )),
        }
    }

    fn batch_norm_stats(&self, l: &Layout) -> Result<(Self, Self)> {
        let (n, c, s) = ncs(l);
        // The statistics are computed in f64 and stored in the input's dtype.
        macro_rules! run {
            ($x:expr, $wrap:path, $t:ty) => {{
                let (mean, var) = norm::channel_stats(&dense($x, l), n, c, s);
                Ok((
                    $wrap(mean.into_iter().map(|v| v as $t).collect()),
                    $wrap(var.into_iter().map(|v| v as $t).collect()),
                ))
            }};
        }
        match self {
            CpuStorage::F32(x) => run!(x, CpuStorage::F32, f32),
            CpuStorage::F64(x) => run!(x, CpuStorage::F64, f64),
            other => Err(HeparError::dtype(
                "batch_norm",
                format!("{} is storage only", other.dtype()),
            )),
        }
    }

    fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
        bias: Option<&Self>,
    ) -> Result<Self> {
        let (n, c, s) = ncs(l);
        let mean = channel_values("batch_norm", self, mean, "mean", c)?;
        let rstd = channel_values("batch_norm", self, rstd, "rstd", c)?;
        match self {
            CpuStorage::F32(x) => Ok(CpuStorage::F32(norm::channel_affine(
                &dense(x, l),
                n,
                c,
                s,
                &mean,
                &rstd,
                weight.and_then(|w| w.as_f32()),
                bias.and_then(|b| b.as_f32()),
            ))),
            CpuStorage::F64(x) => Ok(CpuStorage::F64(norm::channel_affine(
                &dense(x, l),
                n,
                c,
                s,
                &mean,
                &rstd,
                weight.and_then(|w| w.as_f64()),
                bias.and_then(|b| b.as_f64()),
            ))),
            other => Err(HeparError::dtype(
                "batch_norm",
                format!("{} is storage only", other.dtype()),
            )),
        }
    }

    fn batch_norm_train_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
    ) -> Result<(Self, Self, Self)> {
        let (n, c, s) = ncs(l);
        let mean = channel_values("batch_norm_backward", self, mean, "mean", c)?;
        let rstd = channel_values("batch_norm_backward", self, rstd, "rstd", c)?;
        match (self, grad) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                let (a, b, cc) = norm::batch_norm_train_backward(
                    &dense(x, l),
                    &dense(g, gl),
                    n,
                    c,
                    s,
                    &mean,
                    &rstd,
                    weight.and_then(|w| w.as_f32()),
                );
                Ok((CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(cc)))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                let (a, b, cc) = norm::batch_norm_train_backward(
                    &dense(x, l),
                    &dense(g, gl),
                    n,
                    c,
                    s,
                    &mean,
                    &rstd,
                    weight.and_then(|w| w.as_f64()),
                );
                Ok((CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(cc)))
            }
            _ => Err(HeparError::dtype(
                "batch_norm_backward",
                "operands must all be f32 or all f64",
            )),
        }
    }

    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self> {
        let n_out = g.batch * g.out_channels * g.output().iter().product::<usize>();
        compute2!("conv", self, weight, |x, w| {
            let mut out = vec![Default::default(); n_out];
            conv::conv_forward(g, x, w, typed_bias(bias, x), &mut out);
            out
        })
    }
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self> {
        compute2!("conv_backward_input", self, weight, |go, w| {
            let mut gx = vec![Default::default(); g.input_len()];
            conv::conv_backward_input(g, go, w, &mut gx);
            gx
        })
    }
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self> {
        compute2!("conv_backward_weight", self, grad_out, |x, go| {
            let mut gw = vec![Default::default(); g.weight_len()];
            conv::conv_backward_weight(g, x, go, &mut gw);
            gw
        })
    }
    fn conv_transpose(
        &self,
        weight: &Self,
        bias: Option<&Self>,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        compute2!("conv_transpose", self, weight, |x, w| {
            let mut out = vec![Default::default(); g.output_len()];
            conv::conv_transpose_forward(g, x, w, typed_bias(bias, x), &mut out);
            out
        })
    }
    fn conv_transpose_backward_input(
        &self,
        weight: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        compute2!("conv_transpose_backward_input", self, weight, |go, w| {
            let mut gx = vec![Default::default(); g.input_len()];
            conv::conv_transpose_backward_input(g, go, w, &mut gx);
            gx
        })
    }
    fn conv_transpose_backward_weight(
        &self,
        grad_out: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        compute2!("conv_transpose_backward_weight", self, grad_out, |x, go| {
            let mut gw = vec![Default::default(); g.weight_len()];
            conv::conv_transpose_backward_weight(g, x, go, &mut gw);
            gw
        })
    }
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self> {
        compute!("max_pool", self, |x| {
            let mut out = vec![Default::default(); g.output_len()];
            pool::max_pool_forward(g, x, &mut out, &mut vec![0; g.output_len()]);
            out
        })
    }
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self> {
        compute2!("max_pool_backward", self, grad_out, |x, go| {
            let mut argmax = vec![0; g.output_len()];
            pool::max_pool_forward(
                g,
                x,
                &mut vec![Default::default(); g.output_len()],
                &mut argmax,
            );
            let mut gi = vec![Default::default(); g.input_len()];
            pool::max_pool_backward(g, go, &argmax, &mut gi);
            gi
        })
    }
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        compute!("avg_pool", self, |x| {
            let mut out = vec![Default::default(); g.output_len()];
            pool::avg_pool_forward(g, x, &mut out, count_include_pad);
            out
        })
    }
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        compute!("avg_pool_backward", self, |go| {
            let mut gi = vec![Default::default(); g.input_len()];
            pool::avg_pool_backward(g, go, &mut gi, count_include_pad);
            gi
        })
    }
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self> {
        compute!("upsample", self, |x| {
            let mut out = vec![Default::default(); g.output_len()];
            upsample::upsample_forward(g, x, &mut out);
            out
        })
    }
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self> {
        compute!("upsample_backward", self, |go| {
            let mut gi = vec![Default::default(); g.input_len()];
            upsample::upsample_backward(g, go, &mut gi);
            gi
        })
    }
    fn adam_update(
        &self,
        grad: &Self,
        m: Option<&Self>,
        v: Option<&Self>,
        step: &AdamStep,
    ) -> Result<(Self, Self, Self)> {
        let mismatch = |other: &Self| {
            HeparError::dtype(
                "adam",
                format!("parameter {} vs moment {}", self.dtype(), other.dtype()),
            )
        };
        macro_rules! run {
            ($p:expr, $g:expr, $get:ident, $wrap:path) => {{
                let (moment1, moment2) = (
                    m.map(|m| m.$get().ok_or_else(|| mismatch(m))).transpose()?,
                    v.map(|v| v.$get().ok_or_else(|| mismatch(v))).transpose()?,
                );
                let (np, nm, nv) = optim::adam_update($p, $g, moment1, moment2, step);
                Ok(($wrap(np), $wrap(nm), $wrap(nv)))
            }};
        }
        if grad.len() != self.len()
            || m.is_some_and(|m| m.len() != self.len())
            || v.is_some_and(|v| v.len() != self.len())
        {
            return Err(HeparError::shape(
                "adam",
                format!(
                    "parameter of {} elements vs gradient/moments of other sizes",
                    self.len()
                ),
            ));
        }
        match (self, grad) {
            (CpuStorage::F32(p), CpuStorage::F32(g)) => run!(p, g, as_f32, CpuStorage::F32),
            (CpuStorage::F64(p), CpuStorage::F64(g)) => run!(p, g, as_f64, CpuStorage::F64),
            (p, g) => Err(HeparError::dtype(
                "adam",
                format!(
                    "parameter {} and gradient {} must both be f32 or f64",
                    p.dtype(),
                    g.dtype()
                ),
            )),
        }
    }
    fn dropout_mask(&self, numel: usize, p: f64, seed: u64) -> Result<Self> {
        compute!("dropout", self, |_x| random::dropout_mask(numel, p, seed))
    }
}

/// The bias slice of the same element type as `like`, if a bias of that dtype was given.
fn typed_bias<'a, T: 'static>(bias: Option<&'a CpuStorage>, _like: &[T]) -> Option<&'a [T]> {
    let any: &dyn std::any::Any = match bias? {
        CpuStorage::F32(v) => v,
        CpuStorage::F64(v) => v,
        _ => return None,
    };
    any.downcast_ref::<Vec<T>>().map(|v| v.as_slice())
}

/// A view's values as one dense slice: borrowed when the view is contiguous, else gathered.
fn dense<'a, T: super::kernels::scalar::Float>(
    v: &'a [T],
    l: &Layout,
) -> std::borrow::Cow<'a, [T]> {
    match l.contiguous_range() {
        Some(r) => std::borrow::Cow::Borrowed(&v[r]),
        None => std::borrow::Cow::Owned(elementwise::copy_strided(v, l)),
    }
}

/// A BatchNorm per-channel statistic (of `x`'s dtype, length `c`) as f64 values.
fn channel_values(
    op: &'static str,
    x: &CpuStorage,
    v: &CpuStorage,
    what: &str,
    c: usize,
) -> Result<Vec<f64>> {
    if v.dtype() != x.dtype() {
        return Err(HeparError::dtype(
            op,
            format!("{what} is {} but input is {}", v.dtype(), x.dtype()),
        ));
    }
    if v.len() != c {
        return Err(HeparError::shape(
            op,
            format!("{what} has {} values for {c} channels", v.len()),
        ));
    }
    match v {
        CpuStorage::F32(v) => Ok(v.iter().map(|&a| f64::from(a)).collect()),
        CpuStorage::F64(v) => Ok(v.clone()),
        other => Err(HeparError::dtype(
            op,
            format!("{} is storage only", other.dtype()),
        )),
    }
}

/// (batch, channels, spatial product) of an [N, C, ...] layout.
fn ncs(l: &Layout) -> (usize, usize, usize) {
    let sh = l.shape();
    (sh[0], sh[1], sh[2..].iter().product())
}

/// [..., M, K] @ [..., K, N] with identical batch axes; strided views are read in place.
fn batched_matmul<T: super::kernels::scalar::Float>(
    a: &[T],
    al: &Layout,
    b: &[T],
    bl: &Layout,
) -> Vec<T> {
    let r = al.rank();
    let (m, k, n) = (al.shape()[r - 2], al.shape()[r - 1], bl.shape()[r - 1]);
    let batch_shape = &al.shape()[..r - 2];
    let batch: usize = batch_shape.iter().product();
    let mut out = vec![T::zero(); batch * m * n];
    let mat = |l: &Layout, rows, cols| gemm::MatLayout {
        rows,
        cols,
        row_stride: l.strides()[r - 2] as isize,
        col_stride: l.strides()[r - 1] as isize,
    };
    let (a_mat, b_mat) = (mat(al, m, k), mat(bl, k, n));
    let batch_offsets = |l: &Layout| -> Vec<usize> {
        let bl = Layout::new(
            batch_shape.to_vec(),
            l.strides()[..r - 2].to_vec(),
            l.offset(),
        );
        bl.indices()
    };
    let (ao, bo) = (batch_offsets(al), batch_offsets(bl));
    for (i, chunk) in out.chunks_mut((m * n).max(1)).enumerate().take(batch) {
        gemm::gemm(
            &a[ao[i]..],
            a_mat,
            &b[bo[i]..],
            b_mat,
            chunk,
            gemm::MatLayout::row_major(m, n),
            false,
        );
    }
    out
}
