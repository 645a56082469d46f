//! CPU convolution kernels called directly on slices (below the `Tensor` API that
//! `benches/ops.rs` times), on the shapes the segmentation networks use: the 3D U-Net's 3x3x3
//! layers first (`hepar bench --op conv3d --compare pytorch` sets them beside PyTorch's in one
//! run); then a pointwise conv, a stride-2 downsampling conv and a k2 s2 transposed conv (decoder
//! upsampling). Criterion's throughput is set to the pass's floating-point operations, so its
//! `thrpt` line reads directly as FLOP/s (each pass, forward or backward, costs the same FLOPs).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hepar::backend::cpu::kernels::conv::{
    conv_backward_input, conv_backward_weight, conv_forward, conv_transpose_backward_input,
    conv_transpose_backward_weight, conv_transpose_forward, ConvGeometry, ConvTransposeGeometry,
};
use std::hint::black_box;

fn conv3d(channels: usize, groups: usize, kernel: usize, size: usize) -> ConvGeometry {
    let pad = kernel / 2;
    ConvGeometry {
        batch: 1,
        in_channels: channels,
        out_channels: channels,
        groups,
        input: [size; 3],
        kernel: [kernel; 3],
        stride: [1; 3],
        padding: [pad; 3],
        dilation: [1; 3],
    }
}

fn filled(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

fn bench_geometry(c: &mut Criterion, name: &str, g: ConvGeometry) {
    let x = filled(g.input_len());
    let w = filled(g.weight_len());
    let b = filled(g.out_channels);
    let gy = filled(g.output_len());
    let mut y = vec![0f32; g.output_len()];
    let mut gx = vec![0f32; g.input_len()];
    let mut gw = vec![0f32; g.weight_len()];
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(g.flops() as u64));
    group.bench_function("forward", |bch| {
        bch.iter(|| conv_forward(&g, black_box(&x), &w, Some(&b), &mut y))
    });
    group.bench_function("backward_input", |bch| {
        bch.iter(|| conv_backward_input(&g, black_box(&gy), &w, &mut gx))
    });
    group.bench_function("backward_weight", |bch| {
        bch.iter(|| conv_backward_weight(&g, black_box(&x), &gy, &mut gw))
    });
    group.finish();
}

fn bench_transposed(c: &mut Criterion, name: &str, t: ConvTransposeGeometry) {
    let x = filled(t.input_len());
    let w = filled(t.weight_len());
    let b = filled(t.out_channels);
    let gy = filled(t.output_len());
    let mut y = vec![0f32; t.output_len()];
    let mut gx = vec![0f32; t.input_len()];
    let mut gw = vec![0f32; t.weight_len()];
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(t.as_conv().flops() as u64));
    group.bench_function("forward", |bch| {
        bch.iter(|| conv_transpose_forward(&t, black_box(&x), &w, Some(&b), &mut y))
    });
    group.bench_function("backward_input", |bch| {
        bch.iter(|| conv_transpose_backward_input(&t, black_box(&gy), &w, &mut gx))
    });
    group.bench_function("backward_weight", |bch| {
        bch.iter(|| conv_transpose_backward_weight(&t, black_box(&x), &gy, &mut gw))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_geometry(c, "conv3d_16to16_k3_64cubed", conv3d(16, 1, 3, 64));
    bench_geometry(c, "conv3d_32to32_g4_k3_64cubed", conv3d(32, 4, 3, 64));
    bench_geometry(c, "conv3d_32to32_k1_64cubed", conv3d(32, 1, 1, 64));
    let down = ConvGeometry {
        out_channels: 32,
        stride: [2; 3],
        ..conv3d(16, 1, 3, 64)
    };
    bench_geometry(c, "conv3d_16to32_k3_s2_64cubed", down);
    let up = ConvTransposeGeometry {
        batch: 1,
        in_channels: 32,
        out_channels: 16,
        groups: 1,
        input: [32; 3],
        kernel: [2; 3],
        stride: [2; 3],
        padding: [0; 3],
        dilation: [1; 3],
        output_padding: [0; 3],
    };
    bench_transposed(c, "conv_transpose3d_32to16_k2_s2_32cubed", up);
}

criterion_group!(conv_benches, benches);
criterion_main!(conv_benches);
