//! Every CUDA kernel in kernels/*.cu, run on the PTX virtual machine and compared with the CPU
//! backend on sizes that are not multiples of the block size.

use hepar::backend::cuda::ELEMENTWISE_SOURCE;
use hepar::backend::{BinaryOp, UnaryOp};
use hepar::kernel_args;
use hepar::ptx::{DeviceApi, LaunchConfig, VirtualGpu};
use hepar::tensor::{DType, Tensor};

const SIZES: [usize; 4] = [1, 255, 1000, 4099];
const BLOCK: u32 = 256;

fn assert_close(gpu: &[f32], cpu: &[f32], what: &str) {
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!((g - c).abs() <= 2e-6 * (1.0 + c.abs()), "{what}: element {i}: vm {g} vs cpu {c}");
    }
}

fn input(n: usize, seed: u64) -> Vec<f32> {
    Tensor::randn(&[n], DType::F32, seed).mul_scalar(4.0).unwrap().to_vec_f32()
}

#[test]
fn unary_kernels_match_the_cpu_backend() {
    let gpu = VirtualGpu::default();
    let module = gpu.compile_module(ELEMENTWISE_SOURCE, "elementwise.cu").unwrap_or_else(|e| panic!("{e}"));
    let cases = [("exp_f32", UnaryOp::Exp), ("sigmoid_f32", UnaryOp::Sigmoid), ("silu_f32", UnaryOp::Silu), ("relu_f32", UnaryOp::Relu)];
    for &n in &SIZES {
        let x = input(n, n as u64);
        let xt = Tensor::from_vec(x.clone(), &[n]).unwrap();
        for (name, op) in cases {
            let kernel = gpu.kernel(&module, name).unwrap();
            let (dx, dy) = (gpu.upload(&x).unwrap(), gpu.alloc(n * 4).unwrap());
            // A small grid forces the grid-stride loop to take several turns on the larger sizes.
            let config = LaunchConfig { grid_dim: (2, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
            gpu.launch(&kernel, &config, &kernel_args![dx, dy, n as i64]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let cpu = xt.unary(op).unwrap().to_vec_f32();
            assert_close(&gpu.download::<f32>(dy, n).unwrap(), &cpu, name);
        }
        let kernel = gpu.kernel(&module, "affine_f32").unwrap();
        let (dx, dy) = (gpu.upload(&x).unwrap(), gpu.alloc(n * 4).unwrap());
        gpu.launch(&kernel, &LaunchConfig::for_elements(n, BLOCK), &kernel_args![dx, dy, n as i64, 1.5f32, -0.25f32]).unwrap();
        assert_close(&gpu.download::<f32>(dy, n).unwrap(), &xt.affine(1.5, -0.25).unwrap().to_vec_f32(), "affine_f32");
    }
}

#[test]
fn gradient_and_binary_kernels_match_the_cpu_backend() {
    let gpu = VirtualGpu::default();
    let module = gpu.compile_module(ELEMENTWISE_SOURCE, "elementwise.cu").unwrap_or_else(|e| panic!("{e}"));
    for &n in &SIZES {
        let (x, g) = (input(n, 1), input(n, 2));
        let (xt, gt) = (Tensor::from_vec(x.clone(), &[n]).unwrap(), Tensor::from_vec(g.clone(), &[n]).unwrap());
        let (dx, dg, dout) = (gpu.upload(&x).unwrap(), gpu.upload(&g).unwrap(), gpu.alloc(n * 4).unwrap());
        for (name, op) in [("sigmoid_grad_f32", UnaryOp::Sigmoid), ("silu_grad_f32", UnaryOp::Silu)] {
            gpu.launch(&gpu.kernel(&module, name).unwrap(), &LaunchConfig::for_elements(n, BLOCK), &kernel_args![dx, dg, dout, n as i64]).unwrap();
            // The CPU backward of the op: grad * op'(x).
            let leaf = xt.requires_grad_leaf();
            leaf.unary(op).unwrap().mul(&gt).unwrap().sum_all().unwrap().backward().unwrap();
            assert_close(&gpu.download::<f32>(dout, n).unwrap(), &leaf.grad().unwrap().to_vec_f32(), name);
        }
        for (name, op) in [("add_f32", BinaryOp::Add), ("mul_f32", BinaryOp::Mul)] {
            gpu.launch(&gpu.kernel(&module, name).unwrap(), &LaunchConfig::for_elements(n, BLOCK), &kernel_args![dx, dg, dout, n as i64]).unwrap();
            assert_close(&gpu.download::<f32>(dout, n).unwrap(), &xt.binary(&gt, op).unwrap().to_vec_f32(), name);
        }
    }
}

#[test]
fn kernels_access_memory_coalesced_and_in_bounds() {
    // A launch with more threads than elements must not touch memory past the end (memcheck
    // would fail the launch), and consecutive threads read consecutive words: 4 sectors of
    // 32 bytes per 32-thread load request.
    let gpu = VirtualGpu::default();
    let module = gpu.compile_module(ELEMENTWISE_SOURCE, "elementwise.cu").unwrap();
    let n = 1000;
    let (dx, dy) = (gpu.upload(&input(n, 3)).unwrap(), gpu.alloc(n * 4).unwrap());
    let report = gpu.launch_with_report(&gpu.kernel(&module, "relu_f32").unwrap(), &LaunchConfig::for_elements(n, BLOCK), &kernel_args![dx, dy, n as i64]).unwrap();
    let text = report.to_string();
    assert!(!text.is_empty());
    let c = &report.counters;
    let per_request = c.global_load_sectors as f64 / c.global_load_requests.max(1) as f64;
    assert!(per_request <= 4.01, "sectors per load request {per_request}\n{text}");
}
