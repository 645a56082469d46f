//! `hepar verify FIXTURE... [--device cpu|ptxvm|cuda[:N]]`: compares this build with PyTorch's
//! golden fixtures.

use super::DeviceArg;
use crate::error::{HeparError, Result};
use crate::verify::verify_fixture;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Fixture files (`*.safetensors` in the shared fixtures format).
    #[arg(required = true)]
    pub fixtures: Vec<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Prints one line per tensor group with its worst score, then the overall worst score; fails
/// when any tensor scores above 1.
pub fn run(args: &VerifyArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let mut worst: Option<(f64, String)> = None;
    let mut failed = 0;
    for path in &args.fixtures {
        let report = verify_fixture(path, device)?;
        println!("{}", report.fixture);
        for g in &report.groups {
            let verdict = if g.passed() { "ok  " } else { "FAIL" };
            println!(
                "  {verdict} {:<10} {:>4} tensors  worst {:.4}  ({})",
                g.group, g.tensors, g.worst_score, g.worst_name
            );
            if !g.passed() {
                failed += 1;
            }
            if worst.as_ref().is_none_or(|(s, _)| g.worst_score > *s) {
                worst = Some((
                    g.worst_score,
                    format!("{} in {}", g.worst_name, report.fixture),
                ));
            }
        }
    }
    if let Some((score, what)) = &worst {
        println!("worst score: {score:.4} ({what})");
    }
    if failed > 0 {
        return Err(HeparError::Config(format!(
            "{failed} tensor group(s) scored above 1"
        )));
    }
    Ok(())
}
