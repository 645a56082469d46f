//! `hepar kernels check [--budgets FILE] [--update]`: every kernel of every kernels/*.cu
//! measured (ptxas on sm_80 and sm_90; the probe cases below on the PTX VM) and compared with
//! its budget (`backend::cuda::kernel_budget`). The probe cases call each backend primitive once
//! at a small shape (sizes that are not multiples of a warp or tile), so the VM is quick.

use std::path::PathBuf;

use crate::backend::cuda::context::ptx_vm;
use crate::backend::cuda::kernel_budget::{
    check, measure_case, measure_static, update, Budgets, CaseMeasure, StaticMeasure,
};
use crate::backend::cuda::{full_source, matmul_with_precision, SOURCES};
use crate::backend::precision::Precision;
use crate::backend::{
    AdamStep, BackendStorage, BinaryOp, ConvGeometry, ConvTransposeGeometry, Device,
    NormActivation, PoolGeometry, ReduceOp, Storage, UnaryOp, UpsampleGeometry, UpsampleMode,
};
use crate::error::{HeparError, Result};
use crate::tensor::{DType, Layout, Tensor};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The budgets file.
    #[arg(long, default_value = "kernels/budgets.toml")]
    pub budgets: PathBuf,
    /// Write measured values (with margins) for new or changed kernels into the file, then check.
    #[arg(long)]
    pub update: bool,
}

pub fn run(args: &CheckArgs) -> Result<()> {
    // The file is read first, so a bad path or file fails before the minute of measuring.
    let mut budgets = if args.budgets.exists() || !args.update {
        Budgets::load(&args.budgets)?
    } else {
        Budgets::default()
    };
    let (statics, cases) = measure_real_kernels()?;
    if args.update {
        let (updated, changed) = update(&statics, &cases, &budgets);
        updated.save(&args.budgets)?;
        println!(
            "{}: {} budget(s) written: {}",
            args.budgets.display(),
            changed.len(),
            if changed.is_empty() {
                "none".to_string()
            } else {
                changed.join(", ")
            }
        );
        budgets = updated;
    }
    let report = check(&statics, &cases, &budgets);
    print!("{}", report.format());
    if report.passed() {
        Ok(())
    } else {
        Err(HeparError::invalid(
            "kernels check",
            format!(
                "{} budget failure(s); first: {}",
                report.failures().len(),
                report.failures()[0]
            ),
        ))
    }
}

/// ptxas resources of every kernel file and the VM counters of every probe case.
pub fn measure_real_kernels() -> Result<(Vec<StaticMeasure>, Vec<CaseMeasure>)> {
    let sources = SOURCES
        .iter()
        .map(|(file, _)| Ok((file.to_string(), full_source(file)?)))
        .collect::<Result<Vec<_>>>()?;
    let statics = measure_static(&sources)?;
    Ok((statics, probe_cases()?))
}

/// Records the launches of one probe case; `f` returns the number of output elements.
struct Prober {
    cases: Vec<CaseMeasure>,
}

impl Prober {
    fn probe(&mut self, case: String, f: impl FnOnce() -> Result<usize>) -> Result<()> {
        let vm = ptx_vm();
        vm.driver().start_recording();
        let outputs = f();
        let reports = vm.driver().take_recording();
        let outputs = outputs.map_err(|e| {
            HeparError::invalid("kernels check", format!("probe case `{case}`: {e}"))
        })?;
        self.cases.extend(measure_case(&case, outputs, &reports));
        Ok(())
    }
}

fn on_vm(shape: &[usize], dtype: DType, seed: u64) -> Result<Storage> {
    Ok(Tensor::randn(shape, DType::F64, seed)
        .to_dtype(dtype)?
        .to_device(Device::PtxVm)?
        .storage()
        .clone())
}

fn dt(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
    }
}

const UNARY: [UnaryOp; 19] = [
    UnaryOp::Neg,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Sqrt,
    UnaryOp::Abs,
    UnaryOp::Square,
    UnaryOp::Recip,
    UnaryOp::Relu,
    UnaryOp::LeakyRelu(0.1),
    UnaryOp::Sigmoid,
    UnaryOp::Silu,
    UnaryOp::Gelu,
    UnaryOp::Tanh,
    UnaryOp::Affine { mul: 2.0, add: 1.0 },
    UnaryOp::Powf(1.5),
    UnaryOp::Clamp {
        min: -0.5,
        max: 0.5,
    },
    UnaryOp::MaxScalar(0.1),
    UnaryOp::MinScalar(0.1),
    UnaryOp::Positive,
];

const BINARY: [BinaryOp; 7] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Maximum,
    BinaryOp::Minimum,
    BinaryOp::Equal,
];

/// Every probe case: each primitive of the CUDA backend once per dtype at a small shape.
pub fn probe_cases() -> Result<Vec<CaseMeasure>> {
    let mut p = Prober { cases: Vec::new() };
    for d in [DType::F32, DType::F64] {
        elementwise(&mut p, d)?;
        reductions(&mut p, d)?;
        norms(&mut p, d)?;
        pools(&mut p, d)?;
        convs(&mut p, d)?;
        misc(&mut p, d)?;
    }
    copies(&mut p)?;
    Ok(p.cases)
}

fn elementwise(p: &mut Prober, d: DType) -> Result<()> {
    let shape = [3, 5, 67];
    let l = Layout::contiguous(&shape);
    let (x, g) = (on_vm(&shape, d, 1)?, on_vm(&shape, d, 2)?);
    for op in UNARY {
        p.probe(format!("{} {:?} {}", op.name(), shape, dt(d)), || {
            Ok(x.unary(&l, op)?.len())
        })?;
        p.probe(format!("{}_grad {:?} {}", op.name(), shape, dt(d)), || {
            Ok(x.unary_grad(&l, &g, &l, op)?.len())
        })?;
    }
    for op in BINARY {
        p.probe(format!("{} {:?} {}", op.name(), shape, dt(d)), || {
            Ok(x.binary(&l, &g, &l, op)?.len())
        })?;
    }
    Ok(())
}

fn reductions(p: &mut Prober, d: DType) -> Result<()> {
    // Long runs reduce a block per output (reduce_rows), short ones a thread per output.
    for shape in [[6usize, 1000], [300, 7]] {
        let l = Layout::contiguous(&shape);
        let x = on_vm(&shape, d, 3)?;
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
            p.probe(
                format!("{} {:?} axis 1 {}", op.name(), shape, dt(d)),
                || Ok(x.reduce(&l, &[1], op)?.len()),
            )?;
        }
    }
    // Softmax over a contiguous row, and over channels (a strided axis).
    for (shape, axis) in [(vec![6usize, 300], 1usize), (vec![2, 4, 150], 1)] {
        let l = Layout::contiguous(&shape);
        let x = on_vm(&shape, d, 4)?;
        p.probe(format!("softmax {shape:?} axis {axis} {}", dt(d)), || {
            Ok(x.softmax(&l, axis, false)?.len())
        })?;
    }
    let (a, b) = (on_vm(&[37, 45], d, 5)?, on_vm(&[45, 29], d, 6)?);
    p.probe(format!("matmul [37, 45]x[45, 29] {}", dt(d)), || {
        Ok(a.matmul(
            &Layout::contiguous(&[37, 45]),
            &b,
            &Layout::contiguous(&[45, 29]),
        )?
        .len())
    })?;
    if d == DType::F32 {
        // The tensor-core kernel, called directly: the process's precision stays as it is.
        p.probe("matmul tf32 [37, 45]x[45, 29] f32".to_string(), || {
            let (Storage::PtxVm(a), Storage::PtxVm(b)) = (&a, &b) else {
                return Err(HeparError::invalid(
                    "kernels check",
                    "probe operands not on the VM",
                ));
            };
            let (al, bl) = (Layout::contiguous(&[37, 45]), Layout::contiguous(&[45, 29]));
            Ok(matmul_with_precision(a, &al, b, &bl, Precision::Tf32)?.len())
        })?;
    }
    Ok(())
}

fn norms(p: &mut Prober, d: DType) -> Result<()> {
    let shape = [2, 8, 5, 6, 7];
    let l = Layout::contiguous(&shape);
    let x = on_vm(&shape, d, 7)?;
    let g = on_vm(&shape, d, 8)?;
    let (w, b) = (on_vm(&[8], d, 9)?, on_vm(&[8], d, 10)?);
    let (_, stats) = x.group_norm(&l, 4, Some(&w), Some(&b), 1e-5, NormActivation::Silu)?;
    p.probe(format!("group_norm silu {shape:?} g4 {}", dt(d)), || {
        let (y, _) = x.group_norm(&l, 4, Some(&w), Some(&b), 1e-5, NormActivation::Silu)?;
        Ok(y.len())
    })?;
    p.probe(
        format!("group_norm_backward silu {shape:?} g4 {}", dt(d)),
        || {
            let (gx, _, _) = x.group_norm_backward(
                &l,
                &g,
                &l,
                4,
                Some(&w),
                Some(&b),
                &stats,
                NormActivation::Silu,
            )?;
            Ok(gx.len())
        },
    )?;
    let (mean, rstd) = x.batch_norm_stats(&l)?;
    p.probe(format!("batch_norm_stats {shape:?} {}", dt(d)), || {
        Ok(x.batch_norm_stats(&l)?.0.len())
    })?;
    p.probe(format!("batch_norm_apply {shape:?} {}", dt(d)), || {
        Ok(x.batch_norm_apply(&l, &mean, &rstd, Some(&w), Some(&b))?
            .len())
    })?;
    p.probe(format!("batch_norm_backward {shape:?} {}", dt(d)), || {
        Ok(
            x.batch_norm_train_backward(&l, &g, &l, &mean, &rstd, Some(&w))?
                .0
                .len(),
        )
    })?;
    Ok(())
}

fn pools(p: &mut Prober, d: DType) -> Result<()> {
    let (batch, channels, input) = (1, 3, [9, 10, 11]);
    let g = PoolGeometry {
        batch,
        channels,
        input,
        kernel: [2; 3],
        stride: [2; 3],
        padding: [0; 3],
        dilation: [1; 3],
    };
    let x = on_vm(&[batch, channels, 9, 10, 11], d, 11)?;
    let out = g.output();
    let gy = on_vm(&[batch, channels, out[0], out[1], out[2]], d, 12)?;
    let name = |op: &str| format!("{op} [1, 3, 9, 10, 11] k2 s2 {}", dt(d));
    p.probe(name("max_pool"), || Ok(x.max_pool(&g)?.len()))?;
    p.probe(name("max_pool_backward"), || {
        Ok(x.max_pool_backward(&gy, &g)?.len())
    })?;
    p.probe(name("avg_pool"), || Ok(x.avg_pool(&g, false)?.len()))?;
    p.probe(name("avg_pool_backward"), || {
        Ok(gy.avg_pool_backward(&g, false)?.len())
    })?;
    let u = UpsampleGeometry::from_scale(
        1,
        3,
        [5, 6, 7],
        [2.0; 3],
        UpsampleMode::Linear {
            align_corners: false,
        },
    )?;
    let ux = on_vm(&[1, 3, 5, 6, 7], d, 13)?;
    let ug = on_vm(&[1, 3, 10, 12, 14], d, 14)?;
    p.probe(
        format!("upsample linear x2 [1, 3, 5, 6, 7] {}", dt(d)),
        || Ok(ux.upsample(&u)?.len()),
    )?;
    p.probe(
        format!("upsample_backward linear x2 [1, 3, 5, 6, 7] {}", dt(d)),
        || Ok(ug.upsample_backward(&u)?.len()),
    )?;
    Ok(())
}

fn conv_geometry(in_channels: usize, out_channels: usize, input: [usize; 3]) -> ConvGeometry {
    ConvGeometry {
        batch: 1,
        in_channels,
        out_channels,
        groups: 1,
        input,
        kernel: [3; 3],
        stride: [1; 3],
        padding: [1; 3],
        dilation: [1; 3],
    }
}

fn convs(p: &mut Prober, d: DType) -> Result<()> {
    // Narrow (direct kernels) and wide enough for the implicit-GEMM tile (8+ output channels,
    // 16+ columns).
    for (cin, cout, input) in [(3, 4, [4, 5, 9]), (3, 8, [4, 5, 33])] {
        let c = conv_geometry(cin, cout, input);
        let x = on_vm(&[1, cin, input[0], input[1], input[2]], d, 15)?;
        let w = on_vm(&[cout, cin, 3, 3, 3], d, 16)?;
        let gy = on_vm(&[c.output_len()], d, 17)?;
        let shape = format!(
            "[1, {cin}, {}, {}, {}] o{cout} k3 p1",
            input[0], input[1], input[2]
        );
        p.probe(format!("conv3d {shape} {}", dt(d)), || {
            Ok(x.conv(&w, None, &c)?.len())
        })?;
        p.probe(format!("conv3d_backward_input {shape} {}", dt(d)), || {
            Ok(gy.conv_backward_input(&w, &c)?.len())
        })?;
        p.probe(format!("conv3d_backward_weight {shape} {}", dt(d)), || {
            Ok(x.conv_backward_weight(&gy, &c)?.len())
        })?;
    }
    // More than 4096 output positions per weight: the weight gradient is split, then summed.
    let c = conv_geometry(1, 2, [9, 22, 23]);
    let x = on_vm(&[c.input_len()], d, 15)?;
    let gy = on_vm(&[c.output_len()], d, 17)?;
    p.probe(
        format!(
            "conv3d_backward_weight [1, 1, 9, 22, 23] o2 k3 p1 {}",
            dt(d)
        ),
        || Ok(x.conv_backward_weight(&gy, &c)?.len()),
    )?;
    let t = ConvTransposeGeometry {
        batch: 1,
        in_channels: 8,
        out_channels: 4,
        groups: 1,
        input: [3, 4, 9],
        kernel: [2; 3],
        stride: [2; 3],
        padding: [0; 3],
        dilation: [1; 3],
        output_padding: [0; 3],
    };
    let tx = on_vm(&[t.input_len()], d, 18)?;
    let tw = on_vm(&[t.as_conv().weight_len()], d, 19)?;
    let tg = on_vm(&[t.output_len()], d, 20)?;
    let shape = "[1, 8, 3, 4, 9] o4 k2 s2";
    p.probe(format!("conv_transpose3d {shape} {}", dt(d)), || {
        Ok(tx.conv_transpose(&tw, None, &t)?.len())
    })?;
    p.probe(
        format!("conv_transpose3d_backward_input {shape} {}", dt(d)),
        || Ok(tg.conv_transpose_backward_input(&tw, &t)?.len()),
    )?;
    p.probe(
        format!("conv_transpose3d_backward_weight {shape} {}", dt(d)),
        || Ok(tx.conv_transpose_backward_weight(&tg, &t)?.len()),
    )?;
    Ok(())
}

fn misc(p: &mut Prober, d: DType) -> Result<()> {
    let n = 1005;
    let x = on_vm(&[n], d, 21)?;
    let g = on_vm(&[n], d, 22)?;
    p.probe(format!("dropout_mask [{n}] p0.3 {}", dt(d)), || {
        Ok(x.dropout_mask(n, 0.3, 7)?.len())
    })?;
    let step = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-5,
        decoupled: true,
        bias1: 0.1,
        bias2: 0.001,
    };
    let (m, v) = (
        on_vm(&[n], d, 23)?,
        on_vm(&[n], d, 24)?.unary(&Layout::contiguous(&[n]), UnaryOp::Square)?,
    );
    p.probe(format!("adam_update [{n}] {}", dt(d)), || {
        Ok(x.adam_update(&g, Some(&m), Some(&v), &step)?.0.len())
    })?;
    Ok(())
}

/// Fills, strided copies and scatters of every element width, casts between every dtype pair.
fn copies(p: &mut Prober) -> Result<()> {
    let (rows, cols) = (37, 45);
    let n = rows * cols;
    let transposed = Layout::new(vec![cols, rows], vec![1, cols], 0);
    let dense = Layout::contiguous(&[cols, rows]);
    let all = [DType::F32, DType::F64, DType::F16, DType::BF16];
    for d in all {
        p.probe(format!("fill [{n}] {}", dt(d)), || {
            Ok(Storage::full(Device::PtxVm, n, d, 1.5)?.len())
        })?;
        let x = on_vm(&[n], d, 25)?;
        for to in all {
            p.probe(format!("cast [{n}] {} to {}", dt(d), dt(to)), || {
                Ok(x.to_dtype(&Layout::contiguous(&[n]), to)?.len())
            })?;
        }
    }
    for d in [DType::F16, DType::F32, DType::F64] {
        let x = on_vm(&[n], d, 26)?;
        p.probe(
            format!("copy transposed [{rows}, {cols}] {}", dt(d)),
            || Ok(x.copy_strided(&transposed)?.len()),
        )?;
        let src = on_vm(&[n], d, 27)?;
        let mut dst = Storage::full(Device::PtxVm, n, d, 0.0)?;
        let (to, from) = (transposed.clone(), dense.clone());
        p.probe(
            format!("scatter transposed [{rows}, {cols}] {}", dt(d)),
            move || {
                dst.write_strided(&to, &src, &from)?;
                Ok(dst.len())
            },
        )?;
    }
    Ok(())
}
