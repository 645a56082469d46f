//! Shared pieces of the GPU convolution tests: device round trips, a
//! scale-relative comparison and the geometry shorthand (one stride, padding and dilation for
//! every spatial axis; depth 1 means 2D).

use hepar::backend::{BackendStorage, ConvGeometry, Device, Storage};
use hepar::tensor::{DType, Layout, Tensor};

pub fn storage(t: &Tensor, dev: Device) -> Storage {
    t.to_device(dev).unwrap().storage().clone()
}

pub fn values(s: &Storage) -> Vec<f64> {
    s.to_cpu()
        .unwrap()
        .to_f64_vec(&Layout::contiguous(&[s.len()]))
}

/// Every element within `f32_tol` (1e-12 in f64) of the largest expected magnitude.
pub fn assert_close_scaled(got: &[f64], want: &[f64], dtype: DType, f32_tol: f64, what: &str) {
    let tol = if dtype == DType::F64 { 1e-12 } else { f32_tol };
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: element {i}: {g} vs expected {w}"
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub fn geometry(
    batch: usize,
    cin: usize,
    cout: usize,
    groups: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    stride: usize,
    padding: usize,
    dilation: usize,
) -> ConvGeometry {
    let two_d = input[0] == 1;
    let axes = |v: usize| if two_d { [1, v, v] } else { [v; 3] };
    let g = ConvGeometry {
        batch,
        in_channels: cin,
        out_channels: cout,
        groups,
        input,
        kernel,
        stride: axes(stride),
        padding: if two_d {
            [0, padding, padding]
        } else {
            [padding; 3]
        },
        dilation: axes(dilation),
    };
    g.validate().unwrap();
    g
}
