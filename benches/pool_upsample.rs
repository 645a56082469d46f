//! CPU pooling and upsampling kernels on a U-Net's shapes: 2x2x2 max and average pooling of a 32-channel
//! 64^3 volume and trilinear x2 upsampling of a 32-channel 32^3 volume, forward and backward.
//! These are memory-bound; criterion's throughput line gives output elements per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hepar::backend::cpu::kernels::pool::{
    avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward, PoolGeometry,
};
use hepar::backend::cpu::kernels::upsample::{
    upsample_backward, upsample_forward, UpsampleGeometry, UpsampleMode,
};
use std::hint::black_box;

fn filled(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect()
}

fn benches(c: &mut Criterion) {
    let pool = PoolGeometry {
        batch: 1,
        channels: 32,
        input: [64; 3],
        kernel: [2; 3],
        stride: [2; 3],
        padding: [0; 3],
        dilation: [1; 3],
    };
    let x = filled(pool.input_len());
    let mut y = vec![0f32; pool.output_len()];
    let mut argmax = vec![0usize; pool.output_len()];
    let mut gx = vec![0f32; pool.input_len()];
    let mut group = c.benchmark_group("max_pool3d_k2s2_32ch_64cubed");
    group.sample_size(10);
    group.throughput(Throughput::Elements(pool.output_len() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| max_pool_forward(&pool, black_box(&x), &mut y, &mut argmax))
    });
    group.bench_function("backward", |b| {
        b.iter(|| max_pool_backward(&pool, black_box(&y), &argmax, &mut gx))
    });
    group.finish();

    let mut group = c.benchmark_group("avg_pool3d_k2s2_32ch_64cubed");
    group.sample_size(10);
    group.throughput(Throughput::Elements(pool.output_len() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| avg_pool_forward(&pool, black_box(&x), &mut y, true))
    });
    group.bench_function("backward", |b| {
        b.iter(|| avg_pool_backward(&pool, black_box(&y), &mut gx, true))
    });
    group.finish();

    let up = UpsampleGeometry::from_scale(
        1,
        32,
        [32; 3],
        [2.0; 3],
        UpsampleMode::Linear {
            align_corners: false,
        },
    )
    .expect("valid upsample geometry");
    let x = filled(up.input_len());
    let mut y = vec![0f32; up.output_len()];
    let mut gx = vec![0f32; up.input_len()];
    let mut group = c.benchmark_group("trilinear_x2_32ch_32cubed");
    group.sample_size(10);
    group.throughput(Throughput::Elements(up.output_len() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| upsample_forward(&up, black_box(&x), &mut y))
    });
    group.bench_function("backward", |b| {
        b.iter(|| upsample_backward(&up, black_box(&y), &mut gx))
    });
    group.finish();
}

criterion_group!(pool_upsample_benches, benches);
criterion_main!(pool_upsample_benches);
