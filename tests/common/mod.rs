//! Shared test helpers: naive reference implementations written for clarity (index loops, f64),
//! random inputs, and closeness checks.
#![allow(dead_code)]

pub mod conv_cases;
pub mod reference;
pub mod tiny_data;

use hepar::tensor::{DType, Tensor};

pub fn rand_f64(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
}

pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * (1.0 + e.abs()),
            "{what}: element {i}: {a} vs expected {e}"
        );
    }
}

/// Row-major multi-index of a flat index.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        idx[a] = flat % shape[a];
        flat /= shape[a];
    }
    idx
}

pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// The devices the op suite runs on: `HEPAR_TEST_DEVICES` (comma-separated, e.g. `cpu,ptxvm,cuda`),
/// by default `cpu,ptxvm`. A listed device that cannot be opened fails the test, never skips it.
pub fn test_devices() -> Vec<hepar::backend::Device> {
    let list = std::env::var("HEPAR_TEST_DEVICES").unwrap_or_else(|_| "cpu,ptxvm".to_string());
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let d: hepar::backend::Device = s
                .parse()
                .unwrap_or_else(|e| panic!("HEPAR_TEST_DEVICES: {e}"));
            d.ensure_available().unwrap_or_else(|e| {
                panic!("HEPAR_TEST_DEVICES lists {d}, which is not available: {e}")
            });
            d
        })
        .collect()
}

/// The GPU devices among [`test_devices`] (the PTX VM, and real GPUs when listed).
pub fn gpu_test_devices() -> Vec<hepar::backend::Device> {
    test_devices()
        .into_iter()
        .filter(|d| *d != hepar::backend::Device::Cpu)
        .collect()
}

/// Standard normal f64 values on `device`.
pub fn rand_on(shape: &[usize], seed: u64, device: hepar::backend::Device) -> Tensor {
    rand_f64(shape, seed)
        .to_device(device)
        .unwrap_or_else(|e| panic!("moving test data to {device}: {e}"))
}

/// Runs `test` once per test device; a failure names the device it happened on.
pub fn for_each_device(test: impl Fn(hepar::backend::Device)) {
    for device in test_devices() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(device)));
        if let Err(panic) = outcome {
            eprintln!("(the failure above happened on device {device})");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Launch shapes of the GPU tests: tails in the last block, grid-stride loops that take several
/// turns, and blocks from one warp to the 1024-thread maximum.
pub const LAUNCH_SHAPES: [hepar::backend::cuda::LaunchShape; 4] = [
    hepar::backend::cuda::LaunchShape {
        block: 256,
        max_blocks: 65535,
    },
    hepar::backend::cuda::LaunchShape {
        block: 32,
        max_blocks: 3,
    },
    hepar::backend::cuda::LaunchShape {
        block: 96,
        max_blocks: 7,
    },
    hepar::backend::cuda::LaunchShape {
        block: 1024,
        max_blocks: 1,
    },
];

/// Sets the launch shape of grid-stride kernels on a GPU device (nothing on the CPU).
pub fn set_launch_shape(device: hepar::backend::Device, shape: hepar::backend::cuda::LaunchShape) {
    use hepar::backend::{cuda::context, Device};
    match device {
        Device::PtxVm => context::ptx_vm().set_launch_shape(shape),
        Device::Cuda(n) => context::cuda(n)
            .unwrap_or_else(|e| panic!("{e}"))
            .set_launch_shape(shape),
        Device::Cpu => {}
    }
}

/// Runs `f` under each of [`LAUNCH_SHAPES`] on `device`, restoring the default afterwards.
pub fn with_launch_shapes(
    device: hepar::backend::Device,
    mut f: impl FnMut(hepar::backend::cuda::LaunchShape),
) {
    for shape in LAUNCH_SHAPES {
        set_launch_shape(device, shape);
        f(shape);
    }
    set_launch_shape(device, hepar::backend::cuda::LaunchShape::default());
}
