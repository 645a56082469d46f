//! `hepar kernels report [--arch sm_80|sm_90]`: registers, shared memory, stack and spills of every
//! CUDA kernel as ptxas assembles it. `hepar kernels profile --op conv3d --shape ...`: one op's
//! kernels on the PTX VM, their counters, and the time those imply on an H100/H200 by a roofline.

use crate::backend::cuda::context::ptx_vm;
use crate::backend::cuda::kernel_report::{format_report, kernel_report};
use crate::backend::cuda::nvrtc::Arch;
use crate::backend::cuda::roofline::estimates;
use crate::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry, Device, Storage};
use crate::error::{HeparError, Result};
use crate::ptx::{LaunchCounters, LaunchReport};
use crate::tensor::{DType, Tensor};

#[derive(clap::Args, Debug)]
pub struct KernelsArgs {
    #[command(subcommand)]
    pub command: KernelsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KernelsCommand {
    /// Per kernel: registers, static shared memory, stack frame and spills (NVRTC + ptxas -v).
    Report(ReportArgs),
    /// Run one op's kernels on the PTX VM; print their counters and the roofline time on H100/H200.
    Profile(ProfileArgs),
    /// Check every kernel against kernels/budgets.toml (ptxas registers and spills, VM sectors,
    /// bank conflicts and instructions per output); `--update` budgets new or changed kernels.
    Check(super::kernels_check::CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Architecture to assemble for: sm_80 or sm_90.
    #[arg(long, default_value = "sm_80")]
    pub arch: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileOp {
    Conv2d,
    Conv3d,
    ConvTranspose2d,
    ConvTranspose3d,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfilePass {
    Forward,
    BackwardInput,
    BackwardWeight,
    All,
}

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    #[arg(long, value_enum)]
    pub op: ProfileOp,
    /// Input shape N,C,H,W (2D) or N,C,D,H,W (3D). The VM interprets every instruction: keep it
    /// small (a slice of a layer: a few tiles).
    #[arg(long, value_delimiter = ',', required = true)]
    pub shape: Vec<usize>,
    /// Output channels (default: the input's).
    #[arg(long)]
    pub out_channels: Option<usize>,
    /// Kernel size, one value or one per spatial axis.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub kernel: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub stride: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub padding: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub dilation: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Which passes to run.
    #[arg(long, value_enum, default_value = "forward")]
    pub pass: ProfilePass,
    /// f32 or f64.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(args: &KernelsArgs) -> Result<()> {
    match &args.command {
        KernelsCommand::Report(a) => report(a),
        KernelsCommand::Profile(a) => profile(a),
        KernelsCommand::Check(a) => super::kernels_check::run(a),
    }
}

fn report(args: &ReportArgs) -> Result<()> {
    let arch = Arch::parse(&args.arch).ok_or_else(|| {
        HeparError::invalid(
            "kernels report",
            format!("--arch {}: expected sm_80 or sm_90", args.arch),
        )
    })?;
    print!("{}", format_report(arch, &kernel_report(arch)?));
    Ok(())
}

/// `values` as one per spatial axis: a single value repeats; 2D ops get depth 1 (`depth_value`).
fn per_axis(what: &str, values: &[usize], two_d: bool, depth_value: usize) -> Result<[usize; 3]> {
    let spatial = if two_d { 2 } else { 3 };
    let v: Vec<usize> = match values.len() {
        1 => vec![values[0]; spatial],
        n if n == spatial => values.to_vec(),
        n => {
            return Err(HeparError::invalid(
                "kernels profile",
                format!("--{what} has {n} values; give 1 or {spatial}"),
            ))
        }
    };
    Ok(if two_d {
        [depth_value, v[0], v[1]]
    } else {
        [v[0], v[1], v[2]]
    })
}

/// The geometry of the op as a convolution and, for the transposed ops, the transposed one.
fn geometries(args: &ProfileArgs) -> Result<(ConvGeometry, Option<ConvTransposeGeometry>)> {
    let two_d = matches!(args.op, ProfileOp::Conv2d | ProfileOp::ConvTranspose2d);
    let want = if two_d { 4 } else { 5 };
    if args.shape.len() != want {
        return Err(HeparError::shape(
            "kernels profile",
            format!(
                "--shape {:?}: {:?} takes {} values (N,C,{})",
                args.shape,
                args.op,
                want,
                if two_d { "H,W" } else { "D,H,W" }
            ),
        ));
    }
    let (batch, channels) = (args.shape[0], args.shape[1]);
    let input = if two_d {
        [1, args.shape[2], args.shape[3]]
    } else {
        [args.shape[2], args.shape[3], args.shape[4]]
    };
    let kernel = per_axis("kernel", &args.kernel, two_d, 1)?;
    let stride = per_axis("stride", &args.stride, two_d, 1)?;
    let padding = per_axis("padding", &args.padding, two_d, 0)?;
    let dilation = per_axis("dilation", &args.dilation, two_d, 1)?;
    let out_channels = args.out_channels.unwrap_or(channels);
    let invalid = |e: HeparError| HeparError::invalid("kernels profile", e.to_string());
    if matches!(args.op, ProfileOp::Conv2d | ProfileOp::Conv3d) {
        let g = ConvGeometry {
            batch,
            in_channels: channels,
            out_channels,
            groups: args.groups,
            input,
            kernel,
            stride,
            padding,
            dilation,
        };
        g.validate().map_err(invalid)?;
        Ok((g, None))
    } else {
        let t = ConvTransposeGeometry {
            batch,
            in_channels: channels,
            out_channels,
            groups: args.groups,
            input,
            kernel,
            stride,
            padding,
            dilation,
            output_padding: [0; 3],
        };
        t.validate().map_err(invalid)?;
        Ok((t.as_conv(), Some(t)))
    }
}

fn random_storage(len: usize, dtype: DType, seed: u64) -> Result<Storage> {
    Ok(Tensor::randn(&[len], DType::F64, seed)
        .to_dtype(dtype)?
        .to_device(Device::PtxVm)?
        .storage()
        .clone())
}

/// Runs `f` on the VM and returns the reports of the launches it made.
fn recorded(f: impl FnOnce() -> Result<Storage>) -> Result<Vec<LaunchReport>> {
    let vm = ptx_vm();
    vm.driver().start_recording();
    let result = f();
    let reports = vm.driver().take_recording();
    result?;
    Ok(reports)
}

/// One profiled pass: its name, the op's FLOPs, its compulsory bytes and its launches' reports.
struct PassProfile {
    pass: &'static str,
    flops: f64,
    compulsory_bytes: f64,
    reports: Vec<LaunchReport>,
}

/// Runs the chosen passes.
fn run_passes(
    args: &ProfileArgs,
    c: &ConvGeometry,
    t: Option<&ConvTransposeGeometry>,
    dtype: DType,
) -> Result<Vec<PassProfile>> {
    let e = dtype.size_in_bytes() as f64;
    // Tensors of the op as the user sees it (for a transposed op: its input is `c`'s output).
    let (x_len, y_len) = match t {
        Some(t) => (t.input_len(), t.output_len()),
        None => (c.input_len(), c.output_len()),
    };
    let w_len = c.weight_len();
    let x = random_storage(x_len, dtype, 1)?;
    let w = random_storage(w_len, dtype, 2)?;
    let gy = random_storage(y_len, dtype, 3)?;
    let flops = c.flops();
    let bytes = |a: usize, b: usize, out: usize| (a + b + out) as f64 * e;
    let mut out = Vec::new();
    let wants = |p: ProfilePass| args.pass == p || args.pass == ProfilePass::All;
    if wants(ProfilePass::Forward) {
        let r = recorded(|| match t {
            Some(t) => x.conv_transpose(&w, None, t),
            None => x.conv(&w, None, c),
        })?;
        out.push(PassProfile {
            pass: "forward",
            flops,
            compulsory_bytes: bytes(x_len, w_len, y_len),
            reports: r,
        });
    }
    if wants(ProfilePass::BackwardInput) {
        let r = recorded(|| match t {
            Some(t) => gy.conv_transpose_backward_input(&w, t),
            None => gy.conv_backward_input(&w, c),
        })?;
        out.push(PassProfile {
            pass: "backward-input",
            flops,
            compulsory_bytes: bytes(y_len, w_len, x_len),
            reports: r,
        });
    }
    if wants(ProfilePass::BackwardWeight) {
        let r = recorded(|| match t {
            Some(t) => x.conv_transpose_backward_weight(&gy, t),
            None => x.conv_backward_weight(&gy, c),
        })?;
        out.push(PassProfile {
            pass: "backward-weight",
            flops,
            compulsory_bytes: bytes(x_len, y_len, w_len),
            reports: r,
        });
    }
    Ok(out)
}

fn profile(args: &ProfileArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "f32" => DType::F32,
        "f64" => DType::F64,
        other => {
            return Err(HeparError::invalid(
                "kernels profile",
                format!("--dtype {other}: expected f32 or f64"),
            ))
        }
    };
    let (c, t) = geometries(args)?;
    match &t {
        Some(t) => println!("{:?} {t:?} (adjoint of {c:?})", args.op),
        None => println!("{:?} {c:?}", args.op),
    }
    for p in run_passes(args, &c, t.as_ref(), dtype)? {
        let mut total = LaunchCounters::default();
        println!("\n=== {}: {} launch(es)", p.pass, p.reports.len());
        for r in &p.reports {
            print!("{r}");
            total.merge(&r.counters);
        }
        print_roofline(p.pass, &total, p.flops, p.compulsory_bytes, dtype);
    }
    Ok(())
}

fn print_roofline(pass: &str, c: &LaunchCounters, flops: f64, compulsory: f64, dtype: DType) {
    let counted = c.flops() as f64;
    let requested = (c.global_bytes_read + c.global_bytes_written) as f64;
    println!("--- {pass} summary");
    println!(
        "FLOPs counted {counted:.4e} (the op's multiply-adds x 2: {flops:.4e}); bytes requested \
         {requested:.4e}, compulsory {compulsory:.4e}; intensity {:.1} FLOP/B requested, {:.1} compulsory",
        counted / requested.max(1.0),
        counted / compulsory.max(1.0)
    );
    println!(
        "load sectors over ideal {:.3}, store sectors/request {:.2}, shared bank conflicts {} ({:.3}/request)",
        c.load_sectors_over_ideal(),
        c.sectors_per_store_request(),
        c.shared_bank_conflicts,
        c.bank_conflicts_per_shared_request()
    );
    for e in estimates(c, compulsory, dtype == DType::F64) {
        println!(
            "{}: {:.3} us ({}) with compulsory traffic; {:.3} us ({}) if every requested byte came from DRAM",
            e.gpu.name,
            e.compulsory.seconds * 1e6,
            e.compulsory.bound,
            e.all_requested.seconds * 1e6,
            e.all_requested.bound
        );
    }
}
