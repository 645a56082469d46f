//! The sliding-window arithmetic convolutions and pools share.

/// Output size per axis of a window sweep: `(in + 2 pad - dil (k - 1) - 1) / stride + 1`, or 0
/// where the dilated window does not fit the padded input (callers' validation rejects that).
pub fn sliding_output(input: [usize; 3], kernel: [usize; 3], stride: [usize; 3], padding: [usize; 3], dilation: [usize; 3]) -> [usize; 3] {
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
