//! Shapes and strided layouts: how a tensor's logical indices map onto its storage. Views
//! (reshape of contiguous data, permute, narrow, broadcast) only change the layout.

use crate::error::{HeparError, Result};

/// Row-major strides of a dense tensor of this shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The shape two operands broadcast to (numpy rules), or an error naming the op and both shapes.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(HeparError::shape(
                    op,
                    format!("cannot broadcast {a:?} with {b:?}"),
                ))
            }
        };
    }
    Ok(out)
}

/// Shape, strides and offset (in elements) into a storage buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout {
            shape,
            strides,
            offset,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Dense row-major with no gaps (the offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The range of storage this layout reads when it is contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous()
            .then(|| self.offset..self.offset + self.numel())
    }

    pub fn permute(&self, op: &'static str, dims: &[usize]) -> Result<Layout> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if dims.len() != rank
            || dims
                .iter()
                .any(|&d| d >= rank || std::mem::replace(&mut seen[d], true))
        {
            return Err(HeparError::invalid(
                op,
                format!(
                    "{dims:?} is not a permutation of the axes of shape {:?}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    pub fn narrow(
        &self,
        op: &'static str,
        axis: usize,
        start: usize,
        len: usize,
    ) -> Result<Layout> {
        if axis >= self.rank() || start + len > self.shape[axis] {
            return Err(HeparError::invalid(
                op,
                format!(
                    "range {start}..{} of axis {axis} is outside shape {:?}",
                    start + len,
                    self.shape
                ),
            ));
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        Ok(Layout {
            shape,
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[axis],
        })
    }

    /// A view with size-1 axes stretched (stride 0) and missing leading axes added.
    pub fn broadcast_to(&self, op: &'static str, target: &[usize]) -> Result<Layout> {
        if target.len() < self.rank() {
            return Err(HeparError::shape(
                op,
                format!("cannot broadcast {:?} to {target:?}", self.shape),
            ));
        }
        let lead = target.len() - self.rank();
        let mut strides = vec![0; target.len()];
        for (i, &t) in target.iter().enumerate().skip(lead) {
            let (d, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if d == t {
                s
            } else if d == 1 {
                0
            } else {
                return Err(HeparError::shape(
                    op,
                    format!("cannot broadcast {:?} to {target:?}", self.shape),
                ));
            };
        }
        Ok(Layout {
            shape: target.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    /// A reshaped view when the data is contiguous; `None` when a copy is needed first.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Layout> {
        self.is_contiguous().then(|| Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: self.offset,
        })
    }

    /// Visits the storage index of every element in row-major logical order. The innermost axis
    /// is a tight loop so callers pay little for the generality.
    pub fn for_each_index(&self, mut f: impl FnMut(usize)) {
        let n = self.numel();
        if n == 0 {
            return;
        }
        if let Some(range) = self.contiguous_range() {
            range.for_each(f);
            return;
        }
        let rank = self.rank();
        if rank == 0 {
            f(self.offset);
            return;
        }
        let inner = self.shape[rank - 1];
        let inner_stride = self.strides[rank - 1];
        let mut counter = vec![0usize; rank - 1];
        let mut base = self.offset;
        loop {
            for i in 0..inner {
                f(base + i * inner_stride);
            }
            // Advance the outer counter like an odometer.
            let mut axis = rank - 1;
            loop {
                if axis == 0 {
                    return;
                }
                axis -= 1;
                counter[axis] += 1;
                base += self.strides[axis];
                if counter[axis] < self.shape[axis] {
                    break;
                }
                base -= counter[axis] * self.strides[axis];
                counter[axis] = 0;
            }
        }
    }

    /// Storage indices of all elements, in logical order.
    pub fn indices(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.numel());
        self.for_each_index(|i| out.push(i));
        out
    }
}

/// Resolves a possibly negative axis against a rank.
pub fn resolve_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(HeparError::invalid(
            op,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_iteration_visits_permuted_and_narrowed_views_in_logical_order() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let p = l.permute("t", &[2, 0, 1]).unwrap();
        let idx = p.indices();
        // Element (k, i, j) of the permuted view is (i, j, k) of the source.
        let mut expected = vec![];
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    expected.push(i * 12 + j * 4 + k);
                }
            }
        }
        assert_eq!(idx, expected);
        let n = l.narrow("t", 1, 1, 2).unwrap();
        assert_eq!(
            n.indices(),
            vec![4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23]
        );
        assert!(!n.is_contiguous());
    }

    #[test]
    fn broadcasting_follows_numpy_rules_and_rejects_mismatches() {
        assert_eq!(
            broadcast_shape("t", &[3, 1, 5], &[4, 1]).unwrap(),
            vec![3, 4, 5]
        );
        assert!(broadcast_shape("t", &[3, 2], &[3]).is_err());
        let b = Layout::contiguous(&[3, 1])
            .broadcast_to("t", &[2, 3, 4])
            .unwrap();
        assert_eq!(b.strides(), &[0, 1, 0]);
    }
}
