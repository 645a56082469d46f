//! Every op case of `hepar bench --op` (the one list in `hepar::cli::op_cases`: each primitive at
//! the seed U-Nets' real shapes), forward and forward + backward, through the public `Tensor`
//! API as a model calls it. Criterion groups are the op families, benchmarks are
//! `<shape> <pass>`. `HEPAR_BENCH_OP=conv3d` keeps one family (criterion's own filter matches
//! names after the cases are built, and building the full-size cases takes memory and time).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hepar::backend::Device;
use hepar::cli::op_cases::{OpCase, OpFamily};
use std::time::Duration;

fn wanted(family: OpFamily) -> bool {
    std::env::var("HEPAR_BENCH_OP").map_or(true, |only| only == family.name())
}

fn op_cases(c: &mut Criterion) {
    for family in OpFamily::All.members().into_iter().filter(|&f| wanted(f)) {
        let mut group = c.benchmark_group(family.name());
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for shape in family.shapes() {
            let case = OpCase::new(family, shape.clone(), Device::Cpu).expect("op case");
            for backward in [false, true] {
                // FLOPs of one pass as counted by the ops themselves (convolutions, products).
                hepar::ops::flops::reset();
                case.run(backward, Device::Cpu).expect("op case run");
                let flops = hepar::ops::flops::read();
                if flops > 0 {
                    group.throughput(Throughput::Elements(flops));
                }
                let name = format!("{shape:?} {}", OpCase::pass_name(backward));
                group.bench_function(name, |bench| {
                    bench.iter(|| case.run(backward, Device::Cpu).expect("op case run"))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, op_cases);
criterion_main!(benches);
