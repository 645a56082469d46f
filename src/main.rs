//! The `hepar` command line: parses arguments and dispatches to `hepar::cli`.

use clap::{Parser, Subcommand};
use hepar::util::heap_stats::CountingAllocator;
use hepar::util::large_blocks::LargeBlockAllocator;

// Tensor-sized buffers from cached mappings, the rest from mimalloc, with the bytes counted so
// `hepar bench` reports each workload's own peak.
#[global_allocator]
static ALLOCATOR: CountingAllocator<LargeBlockAllocator<mimalloc::MiMalloc>> =
    CountingAllocator(LargeBlockAllocator(mimalloc::MiMalloc));

#[derive(Parser)]
#[command(
    name = "hepar",
    version,
    about = "Liver and liver-tumour segmentation engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the build's version and backends.
    Version,
    /// Compare this build with PyTorch's golden fixtures (forward logits, gradients, AdamW steps).
    Verify(hepar::cli::verify::VerifyArgs),
    /// Time the seed networks' workloads (median of repeats) with their peak memory.
    Bench(hepar::cli::bench::BenchArgs),
    /// Show a NIfTI file's (or DICOM series folder's) shape, datatype, spacing, affine, orientation and value statistics.
    Inspect(hepar::cli::inspect::InspectArgs),
    /// Convert a DICOM series folder (or a NIfTI file) to .nii / .nii.gz, geometry preserved.
    Convert(hepar::cli::convert::ConvertArgs),
    /// Write synthetic abdominal CT phantoms in the LiTS layout.
    Synth(hepar::cli::synth::SynthArgs),
    /// Train the liver (stage 1) or tumour (stage 2) network; on a fresh machine, on synthetic phantoms.
    Train(hepar::cli::train::TrainArgs),
    /// Run one network over a volume as given (sliding windows), writing its probabilities.
    Infer(hepar::cli::infer::InferArgs),
    /// Segment the liver and its tumours of a CT volume (or a folder) with the coarse-to-fine pipeline.
    Predict(hepar::cli::predict::PredictArgs),
    /// Score predicted label maps against the truth (Dice, IoU, surface distances, lesions).
    Eval(hepar::cli::eval::EvalArgs),
    /// Score rib-fracture detections as the RibFrac challenge does (FROC, recall at key FP/scan).
    Froc(hepar::cli::froc::FrocArgs),
    /// Detect rib fractures: sliding windows, post-processing, component maps and the challenge CSV.
    Ribfrac(hepar::cli::ribfrac::RibFracArgs),
    /// CUDA kernels: resources by ptxas (`report`), counters and roofline times on the VM (`profile`).
    Kernels(hepar::cli::kernels::KernelsArgs),
}

fn main() {
    // Training frees and reallocates the same activation sizes every step; returning freed
    // pages to the OS would make every step fault fresh zeroed pages back in, so keep them.
    // A delay set in the environment (MIMALLOC_PURGE_DELAY, read by mimalloc) is left as set.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option before any thread is started.
        unsafe {
            libmimalloc_sys::mi_option_set(hepar::util::heap_stats::MI_OPTION_PURGE_DELAY, -1)
        };
    }
    let cli = Cli::parse();
    let result: hepar::Result<()> = match cli.command {
        Command::Version => {
            println!("hepar {}", env!("CARGO_PKG_VERSION"));
            for line in hepar::backend::probe::describe_backends() {
                println!("  {line}");
            }
            Ok(())
        }
        Command::Verify(args) => hepar::cli::verify::run(&args),
        Command::Bench(args) => hepar::cli::bench::run(&args),
        Command::Inspect(args) => hepar::cli::inspect::run(args),
        Command::Convert(args) => hepar::cli::convert::run(args),
        Command::Synth(args) => hepar::cli::synth::run(args),
        Command::Train(args) => hepar::cli::train::run(args),
        Command::Infer(args) => hepar::cli::infer::run(args),
        Command::Predict(args) => hepar::cli::predict::run(args),
        Command::Eval(args) => hepar::cli::eval::run(args),
        Command::Froc(args) => hepar::cli::froc::run(args),
        Command::Ribfrac(args) => hepar::cli::ribfrac::run(args),
        Command::Kernels(args) => hepar::cli::kernels::run(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
