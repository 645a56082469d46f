//! Segmentation losses, composed from differentiable ops. Inputs are logits [N, C, ...] and
//! targets of the same shape (probabilities or one-hot), unless stated.

use crate::error::{HeparError, Result};
use crate::tensor::Tensor;

fn check_same_shape(op: &'static str, logits: &Tensor, target: &Tensor) -> Result<()> {
    if logits.shape() != target.shape() {
        return Err(HeparError::shape(
            op,
            format!("logits {:?} vs target {:?}", logits.shape(), target.shape()),
        ));
    }
    if logits.rank() < 2 {
        return Err(HeparError::shape(
            op,
            format!("logits {:?} need [N, C, ...]", logits.shape()),
        ));
    }
    Ok(())
}

fn spatial_axes(t: &Tensor) -> Vec<usize> {
    (2..t.rank()).collect()
}

/// Mean binary cross-entropy with logits, in the overflow-free form
/// `max(x, 0) - x * t + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if logits.shape() != target.shape() {
        return Err(HeparError::shape(
            "bce_with_logits",
            format!("logits {:?} vs target {:?}", logits.shape(), target.shape()),
        ));
    }
    let softplus_neg_abs = logits.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?;
    logits
        .relu()?
        .sub(&logits.mul(target)?)?
        .add(&softplus_neg_abs)?
        .mean_all()
}

/// `1 - mean over (sample, channel) of (2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`, with
/// `p = sigmoid(logits)` and sums over the spatial axes.
pub fn soft_dice(logits: &Tensor, target: &Tensor, smooth: f64) -> Result<Tensor> {
    check_same_shape("soft_dice", logits, target)?;
    let p = logits.sigmoid()?;
    let axes = spatial_axes(logits);
    let intersection = p.mul(target)?.sum_axes(&axes, false)?;
    let denominator = p
        .sum_axes(&axes, false)?
        .add(&target.sum_axes(&axes, false)?)?;
    let dice = intersection
        .affine(2.0, smooth)?
        .div(&denominator.add_scalar(smooth)?)?;
    dice.mean_all()?.rsub_scalar(1.0)
}

/// Tversky loss: `1 - mean (TP + s) / (TP + alpha FP + beta FN + s)` per (sample, channel).
/// alpha = beta = 0.5 is the soft Dice.
pub fn tversky(
    logits: &Tensor,
    target: &Tensor,
    alpha: f64,
    beta: f64,
    smooth: f64,
) -> Result<Tensor> {
    check_same_shape("tversky", logits, target)?;
    let p = logits.sigmoid()?;
    let axes = spatial_axes(logits);
    let tp = p.mul(target)?.sum_axes(&axes, false)?;
    let fp = p.mul(&target.rsub_scalar(1.0)?)?.sum_axes(&axes, false)?;
    let fn_ = p.rsub_scalar(1.0)?.mul(target)?.sum_axes(&axes, false)?;
    let denominator = tp
        .add(&fp.mul_scalar(alpha)?)?
        .add(&fn_.mul_scalar(beta)?)?
        .add_scalar(smooth)?;
    tp.add_scalar(smooth)?
        .div(&denominator)?
        .mean_all()?
        .rsub_scalar(1.0)
}

/// Class-weighted cross-entropy over logits [N, C, ...] and integer class labels [N, ...]
/// (stored as floats), averaged with the weights of the labelled classes as PyTorch does:
/// `sum_i w[t_i] * nll_i / sum_i w[t_i]`.
pub fn cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: Option<&[f64]>,
) -> Result<Tensor> {
    cross_entropy_ignoring(logits, labels, class_weights, None)
}

/// [`cross_entropy`] where voxels labelled `ignore_index` count for nothing (neither in the sum
/// nor in the weight total), as PyTorch's `ignore_index`.
pub fn cross_entropy_ignoring(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: Option<&[f64]>,
    ignore_index: Option<i64>,
) -> Result<Tensor> {
    let c = *logits.shape().get(1).ok_or_else(|| {
        HeparError::shape(
            "cross_entropy",
            format!("logits {:?} need [N, C, ...]", logits.shape()),
        )
    })?;
    let mut expected = logits.shape().to_vec();
    expected.remove(1);
    if labels.shape() != expected.as_slice() {
        return Err(HeparError::shape(
            "cross_entropy",
            format!(
                "labels {:?} for logits {:?} (expected {expected:?})",
                labels.shape(),
                logits.shape()
            ),
        ));
    }
    let weights = class_weights
        .map(|w| w.to_vec())
        .unwrap_or_else(|| vec![1.0; c]);
    if weights.len() != c {
        return Err(HeparError::shape(
            "cross_entropy",
            format!("{} class weights for {c} classes", weights.len()),
        ));
    }
    // A constant map holding the class weight at the labelled class of each voxel, 0 elsewhere.
    let label_values = labels.try_to_vec_f64()?;
    let spatial: usize = expected[1..].iter().product();
    let mut weight_map = vec![0.0; logits.numel()];
    for (i, &l) in label_values.iter().enumerate() {
        if ignore_index.is_some_and(|ignored| l == ignored as f64) {
            continue;
        }
        if l < 0.0 || l.fract() != 0.0 || l as usize >= c {
            return Err(HeparError::invalid(
                "cross_entropy",
                format!("label {l} at flat index {i} is not a class in 0..{c}"),
            ));
        }
        let (n, s) = (i / spatial.max(1), i % spatial.max(1));
        weight_map[(n * c + l as usize) * spatial + s] = weights[l as usize];
    }
    let total_weight: f64 = weight_map.iter().sum();
    if total_weight <= 0.0 {
        return Err(HeparError::invalid(
            "cross_entropy",
            "the labelled classes have zero total weight",
        ));
    }
    // Labels are validated on the host (one read of them); the map goes to the logits' device.
    let weight_map = Tensor::from_vec_on(weight_map, logits.shape(), logits.device())?
        .to_dtype(logits.dtype())?;
    logits
        .log_softmax(1)?
        .mul(&weight_map)?
        .sum_all()?
        .mul_scalar(-1.0 / total_weight)
}

/// The Dice coefficient of the whole batch, `(2 sum(p t) + smooth) / (sum(p) + sum(t) + smooth)`
/// with `p = sigmoid(logits)` and every sum over every element (not per sample or channel).
pub fn batch_dice(logits: &Tensor, target: &Tensor, smooth: f64) -> Result<Tensor> {
    check_same_shape("batch_dice", logits, target)?;
    let p = logits.sigmoid()?;
    let intersection = p.mul(target)?.sum_all()?;
    let denominator = p.sum_all()?.add(&target.sum_all()?)?.add_scalar(smooth)?;
    intersection.affine(2.0, smooth)?.div(&denominator)
}

/// The Keras liver U-Net's loss: `-batch_dice`.
pub fn neg_dice(logits: &Tensor, target: &Tensor, smooth: f64) -> Result<Tensor> {
    batch_dice(logits, target, smooth)?.neg()
}

/// The weights of [`deep_supervision_bce_dice`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeepSupervisionWeights {
    /// Weight of every coarse head's loss (0.33 in the seed).
    pub alpha: f64,
    pub bce: f64,
    pub dice: f64,
    pub smooth: f64,
}

impl Default for DeepSupervisionWeights {
    fn default() -> Self {
        DeepSupervisionWeights {
            alpha: 0.33,
            bce: 0.5,
            dice: 1.0,
            smooth: 1.0,
        }
    }
}

/// The residual 3D U-Net's loss: `L(main) + alpha * sum L(head)` over the deep-supervision heads,
/// with `L(o) = bce * BCE(o, t) + dice * (1 - batch_dice(o, t))`.
pub fn deep_supervision_bce_dice(
    main: &Tensor,
    heads: &[Tensor],
    target: &Tensor,
    w: &DeepSupervisionWeights,
) -> Result<Tensor> {
    let single = |o: &Tensor| -> Result<Tensor> {
        let dice = batch_dice(o, target, w.smooth)?.rsub_scalar(1.0)?;
        bce_with_logits(o, target)?
            .mul_scalar(w.bce)?
            .add(&dice.mul_scalar(w.dice)?)
    };
    let mut total = single(main)?;
    for head in heads {
        total = total.add(&single(head)?.mul_scalar(w.alpha)?)?;
    }
    Ok(total)
}

/// The seed's segmentation loss: `dice_weight * soft Dice + bce_weight * BCE` (0.7 and 0.3 in
/// the seed), with the soft Dice's smoothing `dice_eps`.
pub fn dice_bce(
    logits: &Tensor,
    target: &Tensor,
    dice_weight: f64,
    bce_weight: f64,
    dice_eps: f64,
) -> Result<Tensor> {
    soft_dice(logits, target, dice_eps)?
        .mul_scalar(dice_weight)?
        .add(&bce_with_logits(logits, target)?.mul_scalar(bce_weight)?)
}
