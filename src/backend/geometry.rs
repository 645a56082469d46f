//! Backend-neutral descriptions of the windowed ops (convolution, transposed convolution,
//! pooling, resampling) and the activation a normalisation may fuse: every backend's kernels
//! take these, so none of them lives inside one backend.

use crate::error::{HeparError, Result};

/// Output size per axis of a window sweep: `(in + 2 pad - dil (k - 1) - 1) / stride + 1`, or 0
/// where the dilated window does not fit the padded input (callers' validation rejects that).
pub fn sliding_output(
    input: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
) -> [usize; 3] {
    std::array::from_fn(|a| {
        let span = dilation[a] * kernel[a].saturating_sub(1) + 1;
        let padded = input[a] + 2 * padding[a];
        if padded < span || stride[a] == 0 {
            0
        } else {
            (padded - span) / stride[a] + 1
        }
    })
}

/// Sizes of a convolution; spatial arrays are (depth, height, width), a 2D convolution has depth 1
/// and kernel depth 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
}

impl ConvGeometry {
    /// Output spatial size per axis (0 if the dilated kernel does not fit; `validate` rejects that).
    pub fn output(&self) -> [usize; 3] {
        sliding_output(
            self.input,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
    }

    /// Checks that the sizes describe a convolution, naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        let op = "conv";
        if self.groups == 0
            || !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(HeparError::invalid(
                op,
                format!(
                    "groups {} must be positive and divide in_channels {} and out_channels {}",
                    self.groups, self.in_channels, self.out_channels
                ),
            ));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(HeparError::invalid(
                op,
                format!("channels must be positive, got {:?}", self),
            ));
        }
        for a in 0..3 {
            if self.kernel[a] == 0 || self.stride[a] == 0 || self.dilation[a] == 0 {
                return Err(HeparError::invalid(
                    op,
                    format!(
                        "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                        self.kernel, self.stride, self.dilation
                    ),
                ));
            }
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            if self.input[a] + 2 * self.padding[a] < span {
                return Err(HeparError::shape(
                    op,
                    format!(
                        "input {:?} padded by {:?} is smaller than kernel {:?} dilated by {:?}",
                        self.input, self.padding, self.kernel, self.dilation
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.input.iter().product::<usize>()
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.output().iter().product::<usize>()
    }
    /// Weight layout as PyTorch: [out_channels, in_channels / groups, kD, kH, kW].
    pub fn weight_len(&self) -> usize {
        self.out_channels
            * (self.in_channels / self.groups.max(1))
            * self.kernel.iter().product::<usize>()
    }
    /// Multiply-adds of the forward pass times two.
    pub fn flops(&self) -> f64 {
        2.0 * self.output_len() as f64
            * (self.in_channels / self.groups.max(1)) as f64
            * self.kernel.iter().product::<usize>() as f64
    }
}

/// Sizes of a transposed convolution. Its weight is [in_channels, out_channels / groups, kD, kH, kW]
/// (PyTorch's layout) and its output is `(in - 1) stride - 2 pad + dil (k - 1) + output_padding + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTransposeGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
    pub output_padding: [usize; 3],
}

impl ConvTransposeGeometry {
    /// Output spatial size (0 on an axis where padding eats the whole output).
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|a| {
            let full = self.input[a].saturating_sub(1) * self.stride[a]
                + self.dilation[a] * self.kernel[a].saturating_sub(1)
                + self.output_padding[a]
                + 1;
            full.saturating_sub(2 * self.padding[a])
        })
    }

    /// The convolution whose backward-input pass is this transposed convolution: its input is our
    /// output, its output our input, and the weights are shared as they are stored.
    pub fn as_conv(&self) -> ConvGeometry {
        ConvGeometry {
            batch: self.batch,
            in_channels: self.out_channels,
            out_channels: self.in_channels,
            groups: self.groups,
            input: self.output(),
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let op = "conv_transpose";
        for a in 0..3 {
            if self.stride[a] == 0
                || self.dilation[a] == 0
                || self.kernel[a] == 0
                || self.input[a] == 0
            {
                return Err(HeparError::invalid(
                    op,
                    format!(
                        "input {:?}, kernel {:?}, stride {:?} and dilation {:?} must be positive",
                        self.input, self.kernel, self.stride, self.dilation
                    ),
                ));
            }
            // Larger output padding would make the output longer than the adjoint convolution can
            // map back onto the input.
            if self.output_padding[a] >= self.stride[a] {
                return Err(HeparError::invalid(
                    op,
                    format!(
                        "output_padding {:?} must be smaller than stride {:?}",
                        self.output_padding, self.stride
                    ),
                ));
            }
            let full = (self.input[a] - 1) * self.stride[a]
                + self.dilation[a] * (self.kernel[a] - 1)
                + self.output_padding[a]
                + 1;
            if full <= 2 * self.padding[a] {
                return Err(HeparError::shape(
                    op,
                    format!(
                        "padding {:?} leaves no output for input {:?}, kernel {:?}",
                        self.padding, self.input, self.kernel
                    ),
                ));
            }
        }
        let conv = self.as_conv();
        conv.validate()
            .map_err(|e| HeparError::invalid(op, e.to_string()))?;
        debug_assert_eq!(conv.output(), self.input);
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        self.as_conv().output_len()
    }
    pub fn output_len(&self) -> usize {
        self.as_conv().input_len()
    }
    pub fn weight_len(&self) -> usize {
        self.as_conv().weight_len()
    }
}

/// Sizes of a pooling; spatial arrays are (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub batch: usize,
    pub channels: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    /// Max pooling only; average pooling requires 1.
    pub dilation: [usize; 3],
}

impl PoolGeometry {
    /// Output spatial size per axis (0 if the dilated kernel does not fit; `validate` rejects that).
    pub fn output(&self) -> [usize; 3] {
        sliding_output(
            self.input,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
    }

    /// Checks the sizes as PyTorch does: positive kernel, stride and dilation, padding at most half
    /// the (dilated) kernel so no window lies wholly in the padding.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.channels == 0 {
            return Err(HeparError::invalid(op, "channels must be positive"));
        }
        for a in 0..3 {
            if self.kernel[a] == 0 || self.stride[a] == 0 || self.dilation[a] == 0 {
                return Err(HeparError::invalid(
                    op,
                    format!(
                        "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                        self.kernel, self.stride, self.dilation
                    ),
                ));
            }
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            if 2 * self.padding[a] > span {
                return Err(HeparError::invalid(
                    op,
                    format!(
                        "padding {:?} exceeds half of kernel {:?} (dilation {:?})",
                        self.padding, self.kernel, self.dilation
                    ),
                ));
            }
            if self.input[a] + 2 * self.padding[a] < span {
                return Err(HeparError::shape(
                    op,
                    format!(
                        "input {:?} padded by {:?} is smaller than kernel {:?}",
                        self.input, self.padding, self.kernel
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.input.iter().product::<usize>()
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.output().iter().product::<usize>()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    /// PyTorch's `nearest`: source `min(floor(dst * scale), in - 1)`.
    Nearest,
    /// `linear` / `bilinear` / `trilinear` depending on how many axes have size > 1.
    Linear { align_corners: bool },
}

/// Sizes of a resampling; spatial arrays are (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpsampleGeometry {
    pub batch: usize,
    pub channels: usize,
    pub input: [usize; 3],
    pub output: [usize; 3],
    /// The scale factor the user gave per axis, if any (output = floor(input * scale)). PyTorch
    /// then maps coordinates with 1 / scale rather than input / output.
    pub scale: [Option<f64>; 3],
    pub mode: UpsampleMode,
}

impl UpsampleGeometry {
    /// The geometry for a scale factor per axis, output sizes `floor(input * scale)` as PyTorch.
    pub fn from_scale(
        batch: usize,
        channels: usize,
        input: [usize; 3],
        scale: [f64; 3],
        mode: UpsampleMode,
    ) -> Result<Self> {
        if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(HeparError::invalid(
                "upsample",
                format!("scale factors {scale:?} must be positive and finite"),
            ));
        }
        let output = std::array::from_fn(|a| (input[a] as f64 * scale[a]).floor() as usize);
        let geom = UpsampleGeometry {
            batch,
            channels,
            input,
            output,
            scale: scale.map(Some),
            mode,
        };
        geom.validate()?;
        Ok(geom)
    }

    pub fn validate(&self) -> Result<()> {
        if self.input.contains(&0) || self.output.contains(&0) {
            return Err(HeparError::shape(
                "upsample",
                format!(
                    "input {:?} and output {:?} sizes must be positive",
                    self.input, self.output
                ),
            ));
        }
        if self
            .scale
            .iter()
            .flatten()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(HeparError::invalid(
                "upsample",
                format!("scale factors {:?} must be positive and finite", self.scale),
            ));
        }
        Ok(())
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.input.iter().product::<usize>()
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.output.iter().product::<usize>()
    }
}

/// An activation applied right after the normalisation, fused into the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormActivation {
    Identity,
    Silu,
}
