//! Sliding-window inference with MONAI's `sliding_window_inference` semantics, so that results
//! compare one to one with a MONAI run of the same network:
//!
//! - a volume smaller than the window along an axis is padded with a constant (`diff / 2`
//!   before, the rest after) and the output cropped back;
//! - the step along an axis is `int(roi * (1 - overlap))`, at least 1 (a full-size window when the
//!   window equals the padded size); windows start at multiples of the step and the last one is
//!   moved back to end flush with the volume;
//! - each window's prediction is weighted by an importance map (constant, or an unnormalised
//!   separable Gaussian with sigma = `sigma_scale * roi` clamped below at `max(min, 1e-3)`), summed
//!   into the output in window order, and divided by the summed weights.
//!
//! Windows are enumerated image by image, each image's windows in C order of their corners (the
//! first spatial axis slowest), and cut into batches of `batch` windows across images, as MONAI
//! does. Accumulation happens in that fixed order whatever the batch size, so the batch size does
//! not change a single bit of the output (for a predictor whose per-window result does not depend
//! on its batch neighbours).
//!
//! Everything is generic over the number of spatial axes (1D, 2D, 3D...) and over the predictor,
//! which receives `[b, C, roi...]` windows and may return another channel count, but must keep the
//! window's spatial size.
//!
//! To compare with MONAI's usual `sliding_window_inference(x, roi, batch, model)`, blend the
//! network's logits and apply the sigmoid (or softmax) to the blended output:
//!
//! ```no_run
//! # fn demo(model: &hepar::nn::cotnext::CotNextUnet, x: &hepar::Tensor) -> hepar::Result<hepar::Tensor> {
//! use hepar::infer::sliding_window::{sliding_window, Blend, WindowOptions};
//! let opts = WindowOptions { overlap: 0.5, blend: Blend::Gaussian, batch: 2, progress: true, ..Default::default() };
//! let logits = sliding_window(x, &[48, 48, 48], &opts, &mut |w| hepar::no_grad(|| model.forward(w, false)))?;
//! logits.sigmoid()
//! # }
//! ```

use crate::error::{HeparError, Result};
use crate::tensor::Tensor;

/// How overlapping window predictions are blended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Blend {
    /// Every voxel of a window weighs 1.
    #[default]
    Constant,
    /// Voxels near a window's centre weigh more (a separable Gaussian, see [`importance_map`]).
    Gaussian,
}

impl std::str::FromStr for Blend {
    type Err = HeparError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Blend::Constant),
            "gaussian" => Ok(Blend::Gaussian),
            other => Err(HeparError::invalid(
                "blend",
                format!("'{other}' is not a blend mode (constant or gaussian)"),
            )),
        }
    }
}

impl std::fmt::Display for Blend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blend::Constant => "constant",
            Blend::Gaussian => "gaussian",
        })
    }
}

/// MONAI's default Gaussian width, as a fraction of the window size.
pub const DEFAULT_SIGMA_SCALE: f64 = 0.125;

/// The knobs of [`sliding_window`]; `Default` gives MONAI's defaults (overlap 0.25, constant
/// blending, sigma scale 0.125, padding value 0), one window per batch and no progress bar.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowOptions {
    /// Fraction of a window shared with its neighbour along each axis, in [0, 1).
    pub overlap: f64,
    pub blend: Blend,
    /// Gaussian sigma as a fraction of the window size along each axis.
    pub sigma_scale: f64,
    /// How many windows go to the predictor at once (at least 1).
    pub batch: usize,
    /// The value padding takes when the volume is smaller than the window.
    pub pad_value: f32,
    /// Draw a progress bar over windows on stderr (indicatif hides it when stderr is no terminal).
    pub progress: bool,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            overlap: 0.25,
            blend: Blend::Constant,
            sigma_scale: DEFAULT_SIGMA_SCALE,
            batch: 1,
            pad_value: 0.0,
            progress: false,
        }
    }
}

/// Where the windows of one image lie: the padding applied first, the padded size and every
/// window's corner in padded coordinates (in the order the windows are run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    /// The window size along each spatial axis.
    pub roi: Vec<usize>,
    /// `(before, after)` padding per spatial axis.
    pub padding: Vec<(usize, usize)>,
    /// The spatial size after padding (at least `roi` along every axis).
    pub padded_size: Vec<usize>,
    /// The step between window starts per axis.
    pub intervals: Vec<usize>,
    /// The window starts along each axis separately.
    pub axis_starts: Vec<Vec<usize>>,
    /// Every window's corner (padded coordinates), C order over `axis_starts`.
    pub corners: Vec<Vec<usize>>,
}

/// The window size with MONAI's fallback: a 0 entry takes the image's size along that axis.
pub fn resolve_roi(image_size: &[usize], roi: &[usize]) -> Result<Vec<usize>> {
    if roi.len() != image_size.len() {
        return Err(HeparError::shape(
            "sliding_window",
            format!(
                "window {roi:?} has {} axes, the input has {} spatial axes ({image_size:?})",
                roi.len(),
                image_size.len()
            ),
        ));
    }
    Ok(roi
        .iter()
        .zip(image_size)
        .map(|(&r, &s)| if r == 0 { s } else { r })
        .collect())
}

/// Padding of a volume smaller than the window: `diff / 2` before, the rest after, per axis.
pub fn window_padding(image_size: &[usize], roi: &[usize]) -> Vec<(usize, usize)> {
    image_size
        .iter()
        .zip(roi)
        .map(|(&s, &r)| {
            let diff = r.saturating_sub(s);
            (diff / 2, diff - diff / 2)
        })
        .collect()
}

/// The step between window starts along each axis of an (already padded) image: the whole
/// window when it equals the image, else `int(roi * (1 - overlap))`, at least 1.
pub fn scan_intervals(padded_size: &[usize], roi: &[usize], overlap: f64) -> Vec<usize> {
    padded_size
        .iter()
        .zip(roi)
        .map(|(&s, &r)| {
            if r == s {
                r
            } else {
                // Truncation toward zero, as Python's int() of a positive float.
                ((r as f64 * (1.0 - overlap)) as usize).max(1)
            }
        })
        .collect()
}

/// Window starts along one axis of size `size` (at least `roi`): multiples of `interval` until
/// a window reaches the end, the last one moved back to end flush with the axis.
pub fn axis_window_starts(size: usize, roi: usize, interval: usize) -> Vec<usize> {
    let roi = roi.min(size);
    if interval == 0 {
        return vec![0];
    }
    let candidates = size.div_ceil(interval);
    let count = (0..candidates)
        .find(|&d| d * interval + roi >= size)
        .map_or(1, |d| d + 1);
    (0..count)
        .map(|i| {
            let start = i * interval;
            start - (start + roi).saturating_sub(size)
        })
        .collect()
}

/// The complete window placement for an image of spatial size `image_size`.
pub fn plan_windows(image_size: &[usize], roi: &[usize], overlap: f64) -> Result<WindowPlan> {
    if !(0.0..1.0).contains(&overlap) {
        return Err(HeparError::invalid(
            "sliding_window",
            format!("overlap must be in [0, 1), got {overlap}"),
        ));
    }
    if image_size.is_empty() || image_size.contains(&0) {
        return Err(HeparError::shape(
            "sliding_window",
            format!("the input's spatial size {image_size:?} has no voxels"),
        ));
    }
    let roi = resolve_roi(image_size, roi)?;
    let padding = window_padding(image_size, &roi);
    let padded_size: Vec<usize> = image_size
        .iter()
        .zip(&padding)
        .map(|(&s, &(b, a))| s + b + a)
        .collect();
    let intervals = scan_intervals(&padded_size, &roi, overlap);
    let axis_starts: Vec<Vec<usize>> = (0..roi.len())
        .map(|d| axis_window_starts(padded_size[d], roi[d], intervals[d]))
        .collect();
    let corners = cartesian_product(&axis_starts);
    Ok(WindowPlan {
        roi,
        padding,
        padded_size,
        intervals,
        axis_starts,
        corners,
    })
}

/// All combinations of one value per axis, the last axis fastest.
fn cartesian_product(axes: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::with_capacity(axes.len())];
    for values in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |&v| {
                    let mut next = prefix.clone();
                    next.push(v);
                    next
                })
            })
            .collect();
    }
    out
}

/// One window's weights, C order over `roi`, as MONAI's `compute_importance_map` makes them in
/// float32: constant ones, or per axis `exp(x^2 / (-2 sigma^2))` with `x` running from
/// `-(n-1)/2` to `(n-1)/2` and `sigma = sigma_scale * n` (unnormalised, peak 1 at the centre of an
/// odd axis), multiplied across axes, then every weight raised to at least `max(min, 1e-3)`.
pub fn importance_map(roi: &[usize], blend: Blend, sigma_scale: f64) -> Vec<f32> {
    let len: usize = roi.iter().product();
    let mut map = match blend {
        Blend::Constant => vec![1.0f32; len],
        Blend::Gaussian => separable_gaussian(roi, sigma_scale),
    };
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    // MONAI compares the float32 minimum with 1e-3 in double, then clamps in float32.
    let floor = (min as f64).max(1e-3) as f32;
    for w in &mut map {
        *w = w.max(floor);
    }
    map
}

/// The 1D Gaussian of one axis in float32: `x^2` divided by the float32 of `-2 sigma^2`.
fn gaussian_1d(n: usize, sigma_scale: f64) -> Vec<f32> {
    let sigma = n as f64 * sigma_scale;
    let denominator = (-2.0 * sigma * sigma) as f32;
    let first = -((n as f64 - 1.0) / 2.0);
    (0..n)
        .map(|i| {
            let x = (first + i as f64) as f32;
            (x * x / denominator).exp()
        })
        .collect()
}

/// The product of the axes' Gaussians, accumulated axis by axis as MONAI's broadcasting does:
/// `((g0 * g1) * g2)` in float32.
fn separable_gaussian(roi: &[usize], sigma_scale: f64) -> Vec<f32> {
    let mut map = vec![1.0f32];
    for (axis, &n) in roi.iter().enumerate() {
        let g = gaussian_1d(n, sigma_scale);
        map = if axis == 0 {
            g
        } else {
            map.iter()
                .flat_map(|&m| g.iter().map(move |&v| m * v))
                .collect()
        };
    }
    map
}

/// A predictor over `[b, C, roi...]` windows returning `[b, C', roi...]`.
pub type Predictor<'a> = dyn FnMut(&Tensor) -> Result<Tensor> + 'a;

/// Runs `predict` over windows of `roi` (one size per spatial axis, 0 = the whole axis) sliding
/// over `input` (`[N, C, spatial...]`) and blends the predictions into `[N, C', spatial...]`
/// (C' the predictor's channel count), computed in float32 on the host and returned on the
/// input's device. The predictor gets windows on the input's device.
pub fn sliding_window(
    input: &Tensor,
    roi: &[usize],
    opts: &WindowOptions,
    predict: &mut Predictor<'_>,
) -> Result<Tensor> {
    if input.rank() < 3 {
        return Err(HeparError::shape(
            "sliding_window",
            format!(
                "input {:?} needs batch, channel and at least one spatial axis",
                input.shape()
            ),
        ));
    }
    if opts.batch == 0 {
        return Err(HeparError::invalid(
            "sliding_window",
            "the window batch size must be at least 1",
        ));
    }
    let shape = input.shape().to_vec();
    let (images, channels, image_size) = (shape[0], shape[1], shape[2..].to_vec());
    if images == 0 || channels == 0 {
        return Err(HeparError::shape(
            "sliding_window",
            format!("input {shape:?} has no images or no channels"),
        ));
    }
    let plan = plan_windows(&image_size, roi, opts.overlap)?;
    let weights = importance_map(&plan.roi, opts.blend, opts.sigma_scale);
    let source = SourceImage {
        data: input.try_to_vec_f32()?,
        channels,
        size: &image_size,
        padding: &plan.padding,
        pad_value: opts.pad_value,
    };
    let mut blend = Accumulator::new(&plan, images, &weights);
    let total = images * plan.corners.len();
    let bar = progress_bar(opts.progress, total);
    let window_len: usize = plan.roi.iter().product();
    let mut first = 0;
    while first < total {
        let last = (first + opts.batch).min(total);
        let mut batch = Vec::with_capacity((last - first) * channels * window_len);
        for window in first..last {
            let (image, corner) = blend.locate(window);
            source.extract(image, corner, &plan.roi, &mut batch);
        }
        let mut batch_shape = vec![last - first, channels];
        batch_shape.extend_from_slice(&plan.roi);
        let windows = Tensor::from_vec_on(batch, &batch_shape, input.device())?;
        let predicted = predict(&windows)?;
        blend.add_batch(first, &predicted, &batch_shape)?;
        bar.inc((last - first) as u64);
        first = last;
    }
    bar.finish_and_clear();
    let (data, out_shape) = blend.finish(&image_size)?;
    Tensor::from_vec_on(data, &out_shape, input.device())
}

fn progress_bar(show: bool, windows: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(windows as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "windows [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// C-order strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Calls `f` with every index over `shape` in C order (once with `[]` for an empty shape).
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut index = vec![0; shape.len()];
    loop {
        f(&index);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// The unpadded input on the host; windows are read from it as if it were padded.
struct SourceImage<'a> {
    data: Vec<f32>,
    channels: usize,
    size: &'a [usize],
    padding: &'a [(usize, usize)],
    pad_value: f32,
}

impl SourceImage<'_> {
    /// Appends the window at `corner` (padded coordinates) of `image`, all channels, to `out`.
    fn extract(&self, image: usize, corner: &[usize], roi: &[usize], out: &mut Vec<f32>) {
        let spatial_len: usize = self.size.iter().product();
        let strides = strides(self.size);
        let last = roi.len() - 1;
        let (row_len, row_size, row_pad) = (roi[last], self.size[last], self.padding[last].0);
        for channel in 0..self.channels {
            let base = (image * self.channels + channel) * spatial_len;
            for_each_index(&roi[..last], |outer| {
                let mut offset = base;
                let mut inside = true;
                for (d, &i) in outer.iter().enumerate() {
                    let padded = corner[d] + i;
                    match padded.checked_sub(self.padding[d].0) {
                        Some(s) if s < self.size[d] => offset += s * strides[d],
                        _ => inside = false,
                    }
                }
                // Along the row, the source span [lo, hi) of padded positions inside the image.
                let row_start = corner[last];
                let lo = row_pad.saturating_sub(row_start).min(row_len);
                let hi = (row_pad + row_size).saturating_sub(row_start).min(row_len);
                if !inside || lo >= hi {
                    out.extend(std::iter::repeat_n(self.pad_value, row_len));
                    return;
                }
                let first_source = row_start + lo - row_pad;
                out.extend(std::iter::repeat_n(self.pad_value, lo));
                out.extend_from_slice(
                    &self.data[offset + first_source..offset + first_source + hi - lo],
                );
                out.extend(std::iter::repeat_n(self.pad_value, row_len - hi));
            });
        }
    }
}

/// The weighted sum of predictions and the summed weights over the padded images.
struct Accumulator<'a> {
    plan: &'a WindowPlan,
    weights: &'a [f32],
    images: usize,
    /// Output channels, known from the first prediction.
    channels: Option<usize>,
    /// `[images, channels, padded...]`.
    sum: Vec<f32>,
    /// `[padded...]`: every image has the same windows, so one weight sum serves all.
    weight_sum: Vec<f32>,
}

impl<'a> Accumulator<'a> {
    fn new(plan: &'a WindowPlan, images: usize, weights: &'a [f32]) -> Self {
        let padded_len: usize = plan.padded_size.iter().product();
        let mut weight_sum = vec![0.0f32; padded_len];
        for corner in &plan.corners {
            for_window_rows(plan, corner, |dest, src, len| {
                for (acc, &w) in weight_sum[dest..dest + len]
                    .iter_mut()
                    .zip(&weights[src..src + len])
                {
                    *acc += w;
                }
            });
        }
        Accumulator {
            plan,
            weights,
            images,
            channels: None,
            sum: Vec::new(),
            weight_sum,
        }
    }

    /// The image and window corner of the `window`-th window overall.
    fn locate(&self, window: usize) -> (usize, &'a [usize]) {
        let per_image = self.plan.corners.len();
        (window / per_image, &self.plan.corners[window % per_image])
    }

    /// Adds `predicted` (`[b, C', roi...]`, windows `first..first + b`) weighted into the sum.
    fn add_batch(
        &mut self,
        first: usize,
        predicted: &Tensor,
        window_shape: &[usize],
    ) -> Result<()> {
        let shape = predicted.shape();
        let count = window_shape[0];
        if shape.len() != window_shape.len() || shape[0] != count || shape[2..] != window_shape[2..]
        {
            return Err(HeparError::shape(
                "sliding_window",
                format!(
                    "the predictor returned {shape:?} for windows {window_shape:?}; it must keep \
                     the batch and the window's spatial size"
                ),
            ));
        }
        let channels = shape[1];
        match self.channels {
            None => {
                let padded_len: usize = self.plan.padded_size.iter().product();
                self.sum = vec![0.0f32; self.images * channels * padded_len];
                self.channels = Some(channels);
            }
            Some(c) if c != channels => {
                return Err(HeparError::shape(
                    "sliding_window",
                    format!("the predictor returned {channels} channels, earlier windows {c}"),
                ))
            }
            Some(_) => {}
        }
        let values = predicted.try_to_vec_f32()?;
        let window_len = self.weights.len();
        let padded_len = self.weight_sum.len();
        for k in 0..count {
            let (image, corner) = self.locate(first + k);
            for channel in 0..channels {
                let pred = &values[(k * channels + channel) * window_len..][..window_len];
                let base = (image * channels + channel) * padded_len;
                let (sum, weights) = (&mut self.sum, self.weights);
                for_window_rows(self.plan, corner, |dest, src, len| {
                    let dest = &mut sum[base + dest..base + dest + len];
                    for ((acc, &p), &w) in dest
                        .iter_mut()
                        .zip(&pred[src..src + len])
                        .zip(&weights[src..src + len])
                    {
                        // MONAI multiplies the window by its weights, then adds: two roundings.
                        *acc += p * w;
                    }
                });
            }
        }
        Ok(())
    }

    /// The blended output cropped back to `image_size`, with its shape `[N, C', image_size...]`.
    fn finish(self, image_size: &[usize]) -> Result<(Vec<f32>, Vec<usize>)> {
        let channels = self
            .channels
            .ok_or_else(|| HeparError::invalid("sliding_window", "no window was predicted"))?;
        let plan = self.plan;
        let padded_len = self.weight_sum.len();
        let padded_strides = strides(&plan.padded_size);
        let last = image_size.len() - 1;
        let row_len = image_size[last];
        let out_len: usize = image_size.iter().product();
        let mut out = Vec::with_capacity(self.images * channels * out_len);
        for plane in 0..self.images * channels {
            let sum = &self.sum[plane * padded_len..][..padded_len];
            for_each_index(&image_size[..last], |outer| {
                let start: usize = outer
                    .iter()
                    .enumerate()
                    .map(|(d, &i)| (i + plan.padding[d].0) * padded_strides[d])
                    .sum::<usize>()
                    + plan.padding[last].0;
                out.extend(
                    sum[start..start + row_len]
                        .iter()
                        .zip(&self.weight_sum[start..start + row_len])
                        .map(|(&s, &w)| s / w),
                );
            });
        }
        let mut shape = vec![self.images, channels];
        shape.extend_from_slice(image_size);
        Ok((out, shape))
    }
}

/// Calls `f(dest, src, len)` for every row (along the last axis) of the window at `corner`:
/// `dest` the row's offset in the padded image, `src` its offset in the window.
fn for_window_rows(plan: &WindowPlan, corner: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let last = plan.roi.len() - 1;
    let padded_strides = strides(&plan.padded_size);
    let row_len = plan.roi[last];
    let mut src = 0;
    for_each_index(&plan.roi[..last], |outer| {
        let dest: usize = outer
            .iter()
            .enumerate()
            .map(|(d, &i)| (corner[d] + i) * padded_strides[d])
            .sum::<usize>()
            + corner[last];
        f(dest, src, row_len);
        src += row_len;
    });
}
