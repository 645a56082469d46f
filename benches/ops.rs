//! Tensor-level ops beside the convolutions, timed through the public `Tensor` API (so the
//! numbers include layout handling and allocation, as a model sees them): GroupNorm forward and
//! backward on a typical 3D activation, softmax over the spatial positions (the CoT attention's
//! reduction), and matrix products (a square sgemm, whose anchor is PyTorch's 157 GFLOP/s on this
//! machine kind, and a batched one). Throughput is bytes touched for the memory-bound ops and
//! FLOPs for the products.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hepar::tensor::{DType, Tensor};
use std::hint::black_box;

fn group_norm(c: &mut Criterion) {
    // [1, 32, 64^3]: the widest full-resolution activation of the 3D network (n 16 -> 2n).
    let x = Tensor::randn(&[1, 32, 64, 64, 64], DType::F32, 1);
    let w = Tensor::ones(&[32], DType::F32, Default::default()).unwrap();
    let b = Tensor::zeros(&[32], DType::F32, Default::default()).unwrap();
    let mut group = c.benchmark_group("group_norm");
    group.throughput(Throughput::Bytes((x.numel() * 4 * 2) as u64));
    group.bench_function("forward [1,32,64,64,64] g4", |bench| {
        bench.iter(|| black_box(x.group_norm(4, Some(&w), Some(&b), 1e-5).unwrap()))
    });
    let xg = x.requires_grad_leaf();
    group.bench_function("forward+backward [1,32,64,64,64] g4", |bench| {
        bench.iter(|| {
            let y = xg.group_norm(4, Some(&w), Some(&b), 1e-5).unwrap();
            y.sum_all().unwrap().backward().unwrap();
            xg.zero_grad();
        })
    });
    group.finish();
}

fn softmax(c: &mut Criterion) {
    // CoT attention: per (sample, channel), softmax over all 32^3 positions of a 16-channel map.
    let x = Tensor::randn(&[1, 16, 32 * 32 * 32], DType::F32, 2);
    let mut group = c.benchmark_group("softmax");
    group.throughput(Throughput::Bytes((x.numel() * 4 * 2) as u64));
    group.bench_function("last axis [1,16,32768]", |bench| {
        bench.iter(|| black_box(x.softmax(-1).unwrap()))
    });
    // Along a strided axis: the channel softmax of a multi-class output.
    let y = Tensor::randn(&[2, 3, 64, 64, 64], DType::F32, 3);
    group.bench_function("channel axis [2,3,64,64,64]", |bench| {
        bench.iter(|| black_box(y.softmax(1).unwrap()))
    });
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    let n = 2048;
    let a = Tensor::randn(&[n, n], DType::F32, 4);
    let b = Tensor::randn(&[n, n], DType::F32, 5);
    group.throughput(Throughput::Elements((2 * n * n * n) as u64));
    group.bench_function("sgemm 2048^3", |bench| {
        bench.iter(|| black_box(a.matmul(&b).unwrap()))
    });
    let (batch, m) = (64, 128);
    let p = Tensor::randn(&[batch, m, m], DType::F32, 6);
    let q = Tensor::randn(&[batch, m, m], DType::F32, 7);
    group.throughput(Throughput::Elements((2 * batch * m * m * m) as u64));
    group.bench_function("batched 64 x 128^3", |bench| {
        bench.iter(|| black_box(p.matmul(&q).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, group_norm, softmax, matmul);
criterion_main!(benches);
