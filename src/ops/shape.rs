//! Shape ops: views (reshape, permute, narrow, broadcast) and copies (concat, pad).

use super::with_storage;
use crate::backend::{BackendStorage, Storage};
use crate::error::{HeparError, Result};
use crate::tensor::layout::{self, resolve_axis, Layout};
use crate::tensor::Tensor;

impl Tensor {
    /// Same data, new shape (a view when the data is dense, a copy otherwise).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if layout::numel(shape) != self.numel() {
            return Err(HeparError::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?}",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        let source = self.contiguous()?;
        let view = source
            .layout()
            .reshape_view(shape)
            .expect("contiguous source");
        let input_shape = self.shape().to_vec();
        Ok(source.view_op(
            view,
            "reshape",
            Box::new(move |g| Ok(vec![Some(g.reshape(&input_shape)?)])),
        ))
    }

    /// Collapses axes `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.rank() {
            return Err(HeparError::invalid(
                "flatten",
                format!("axes {start}..={end} of shape {:?}", self.shape()),
            ));
        }
        let sh = self.shape();
        let mut shape: Vec<usize> = sh[..start].to_vec();
        shape.push(sh[start..=end].iter().product());
        shape.extend_from_slice(&sh[end + 1..]);
        self.reshape(&shape)
    }

    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let view = self.layout().permute("permute", dims)?;
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(self.view_op(
            view,
            "permute",
            Box::new(move |g| Ok(vec![Some(g.permute(&inverse)?)])),
        ))
    }

    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (
            resolve_axis("transpose", a, self.rank())?,
            resolve_axis("transpose", b, self.rank())?,
        );
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// Elements `start..start + len` along `axis`, as a view.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let axis = resolve_axis("narrow", axis, self.rank())?;
        let view = self.layout().narrow("narrow", axis, start, len)?;
        let input_shape = self.shape().to_vec();
        Ok(self.view_op(
            view,
            "narrow",
            Box::new(move |g| {
                // The gradient is zero outside the window.
                let full = Tensor::zeros(&input_shape, g.dtype(), g.device())?;
                let window = full.layout().narrow("narrow", axis, start, len)?;
                write_into(&full, &window, g)?;
                Ok(vec![Some(full)])
            }),
        ))
    }

    /// Splits along `axis` into pieces of the given sizes (views).
    pub fn split(&self, axis: isize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let ax = resolve_axis("split", axis, self.rank())?;
        if sizes.iter().sum::<usize>() != self.shape()[ax] {
            return Err(HeparError::shape(
                "split",
                format!(
                    "sizes {sizes:?} do not add up to axis {ax} of {:?}",
                    self.shape()
                ),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.narrow(ax as isize, start, len);
                start += len;
                piece
            })
            .collect()
    }

    pub fn unsqueeze(&self, axis: isize) -> Result<Tensor> {
        let axis = resolve_axis("unsqueeze", axis, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(axis, 1);
        self.reshape(&shape)
    }

    pub fn squeeze(&self, axis: isize) -> Result<Tensor> {
        let axis = resolve_axis("squeeze", axis, self.rank())?;
        if self.shape()[axis] != 1 {
            return Err(HeparError::shape(
                "squeeze",
                format!("axis {axis} of {:?} is not of size 1", self.shape()),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.remove(axis);
        self.reshape(&shape)
    }

    /// A broadcast view (no copy); its gradient sums over the stretched axes.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let view = self.layout().broadcast_to("broadcast_to", shape)?;
        let input_shape = self.shape().to_vec();
        Ok(self.view_op(
            view,
            "broadcast_to",
            Box::new(move |g| Ok(vec![Some(g.sum_to_shape(&input_shape)?)])),
        ))
    }

    /// Sums a broadcast result back down to `shape` (the adjoint of `broadcast_to`).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self.rank().checked_sub(shape.len()).ok_or_else(|| {
            HeparError::shape("sum_to_shape", format!("{:?} to {shape:?}", self.shape()))
        })?;
        let axes: Vec<usize> = (0..self.rank())
            .filter(|&a| a < lead || (shape[a - lead] == 1 && self.shape()[a] != 1))
            .collect();
        let summed = if axes.is_empty() {
            self.clone()
        } else {
            self.sum_axes(&axes, true)?
        };
        summed.reshape(shape)
    }

    /// Concatenates tensors along `axis`; all other axes must agree.
    pub fn cat(tensors: &[Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| HeparError::invalid("cat", "no tensors to concatenate"))?;
        let ax = resolve_axis("cat", axis, first.rank())?;
        let mut shape = first.shape().to_vec();
        shape[ax] = 0;
        for t in tensors {
            let compatible = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == ax || a == b);
            if !compatible || t.dtype() != first.dtype() {
                let shapes: Vec<_> = tensors.iter().map(|t| t.shape().to_vec()).collect();
                return Err(HeparError::shape(
                    "cat",
                    format!("along axis {ax}: shapes {shapes:?} (dtypes must match too)"),
                ));
            }
            shape[ax] += t.shape()[ax];
        }
        let out = Tensor::zeros(&shape, first.dtype(), first.device())?;
        let mut start = 0;
        let mut sizes = Vec::with_capacity(tensors.len());
        for t in tensors {
            let window = out.layout().narrow("cat", ax, start, t.shape()[ax])?;
            write_into(&out, &window, t)?;
            start += t.shape()[ax];
            sizes.push(t.shape()[ax]);
        }
        let storage = take_storage(out);
        let inputs: Vec<&Tensor> = tensors.iter().collect();
        Ok(Tensor::from_op(
            storage,
            Layout::contiguous(&shape),
            "cat",
            &inputs,
            Box::new(move |g| {
                Ok(g.split(ax as isize, &sizes)?
                    .into_iter()
                    .map(Some)
                    .collect())
            }),
        ))
    }

    /// Pads with a constant. `pads[i] = (before, after)` applies to axis `rank - pads.len() + i`,
    /// so `pads` may name only the trailing (spatial) axes.
    pub fn pad(&self, pads: &[(usize, usize)], value: f64) -> Result<Tensor> {
        if pads.len() > self.rank() {
            return Err(HeparError::invalid(
                "pad",
                format!("{} pad pairs for shape {:?}", pads.len(), self.shape()),
            ));
        }
        let lead = self.rank() - pads.len();
        let mut shape = self.shape().to_vec();
        for (i, &(b, a)) in pads.iter().enumerate() {
            shape[lead + i] += b + a;
        }
        let out = Tensor::full(&shape, value, self.dtype(), self.device())?;
        let mut window = out.layout().clone();
        for (i, &(b, _)) in pads.iter().enumerate() {
            window = window.narrow("pad", lead + i, b, self.shape()[lead + i])?;
        }
        write_into(&out, &window, self)?;
        let starts: Vec<(usize, usize, usize)> = pads
            .iter()
            .enumerate()
            .map(|(i, &(b, _))| (lead + i, b, self.shape()[lead + i]))
            .collect();
        Ok(Tensor::from_op(
            take_storage(out),
            Layout::contiguous(&shape),
            "pad",
            &[self],
            Box::new(move |g| {
                let mut inner = g.clone();
                for &(axis, start, len) in &starts {
                    inner = inner.narrow(axis as isize, start, len)?;
                }
                Ok(vec![Some(inner)])
            }),
        ))
    }
}

/// Copies `src` into the `window` view of `dst`'s storage (dst is a fresh tensor nobody else sees).
pub(crate) fn write_into(dst: &Tensor, window: &Layout, src: &Tensor) -> Result<()> {
    let mut guard = dst.0.storage.write().unwrap_or_else(|e| e.into_inner());
    with_storage(src, |s, l| guard.write_strided(window, s, l))
}

/// The storage of a freshly made tensor, for wrapping in an op result.
pub(crate) fn take_storage(t: Tensor) -> Storage {
    match std::sync::Arc::try_unwrap(t.0) {
        Ok(inner) => match std::sync::Arc::try_unwrap(inner.storage) {
            Ok(lock) => lock.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(shared) => shared.read().unwrap_or_else(|e| e.into_inner()).clone(),
        },
        Err(shared) => Tensor(shared).storage().clone(),
    }
}
