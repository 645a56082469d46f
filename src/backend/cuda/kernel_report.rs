//! Per-kernel resources as the real GPU would allocate them: every kernel file is compiled by
//! NVRTC exactly as the backend compiles it, assembled by `ptxas -v` for a real architecture,
//! and ptxas's verbose lines are parsed into registers, shared memory, stack frame and spills.
//! `hepar kernels report` prints the table. ptxas comes from the `nvidia-cuda-nvcc-cu12` wheel
//! (scripts/setup.sh), `HEPAR_PTXAS`, or the `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::nvrtc::{compile_to_ptx, package_dir_candidates, Arch};
use super::{full_source, SOURCES};
use crate::error::{HeparError, Result};

const PTXAS_HINT: &str =
    "ptxas was not found; install it with `pip install nvidia-cuda-nvcc-cu12` \
(scripts/setup.sh does), or set HEPAR_PTXAS to the path of a ptxas executable";

/// What ptxas allocates for one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelResources {
    pub file: String,
    pub kernel: String,
    pub registers: u32,
    /// Static shared memory in bytes (dynamic shared memory is chosen at launch).
    pub shared_bytes: u64,
    pub stack_bytes: u64,
    pub spill_store_bytes: u64,
    pub spill_load_bytes: u64,
}

impl KernelResources {
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

fn error(msg: impl Into<String>) -> HeparError {
    HeparError::Backend {
        backend: "ptxas",
        msg: msg.into(),
    }
}

/// The ptxas executable: `HEPAR_PTXAS`, the `nvidia-cuda-nvcc-cu12` wheel, then the `PATH`.
pub fn find_ptxas() -> Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("HEPAR_PTXAS") {
        let path = PathBuf::from(explicit);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(error(format!(
                "HEPAR_PTXAS={} is not a file. {PTXAS_HINT}",
                path.display()
            )))
        };
    }
    if let Some(found) = package_dir_candidates("cuda_nvcc")
        .map(|d| d.join("bin").join("ptxas"))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("ptxas"))
        .find(|p| p.is_file())
        .ok_or_else(|| error(PTXAS_HINT))
}

/// Compiles every kernel file for `arch` and returns each kernel's resources, by file then name.
pub fn kernel_report(arch: Arch) -> Result<Vec<KernelResources>> {
    let ptxas = find_ptxas()?;
    let mut all = Vec::new();
    for (file, _) in SOURCES {
        all.extend(source_resources(&ptxas, file, &full_source(file)?, arch)?.1);
    }
    Ok(all)
}

/// Compiles one CUDA source for `arch` and assembles it: its PTX and each kernel's resources,
/// by name.
pub fn source_resources(
    ptxas: &Path,
    file: &str,
    source: &str,
    arch: Arch,
) -> Result<(String, Vec<KernelResources>)> {
    let ptx = compile_to_ptx(source, file, arch)?;
    let log = assemble(ptxas, &ptx, file, arch)?;
    let mut kernels = parse_ptxas_verbose(&log, file);
    if kernels.is_empty() {
        return Err(error(format!(
            "{file}: ptxas -v reported no kernels; its output was:\n{log}"
        )));
    }
    kernels.sort_by(|a, b| a.kernel.cmp(&b.kernel));
    Ok((ptx, kernels))
}

/// Runs `ptxas -v` on the PTX of `file` and returns its verbose log (ptxas writes it to stderr).
fn assemble(ptxas: &Path, ptx: &str, file: &str, arch: Arch) -> Result<String> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir();
    let stem = format!("hepar-ptxas-{}-{n}-{file}", std::process::id());
    let input = dir.join(format!("{stem}.ptx"));
    let output = dir.join(format!("{stem}.cubin"));
    std::fs::write(&input, ptx).map_err(|e| HeparError::io(&input, e))?;
    let run = Command::new(ptxas)
        .arg(format!("-arch={}", arch.sm_name()))
        .arg("-v")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    let run = run.map_err(|e| error(format!("cannot run {}: {e}", ptxas.display())))?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    if !run.status.success() {
        return Err(error(format!(
            "{} failed on {file} for {}:\n{log}",
            ptxas.display(),
            arch.sm_name()
        )));
    }
    Ok(log)
}

/// The number right before `unit` in `line` ("40 registers" -> 40).
fn number_before(line: &str, unit: &str) -> Option<u64> {
    let at = line.find(unit)?;
    line[..at].split_whitespace().last()?.parse().ok()
}

/// Parses the verbose output of ptxas: per entry a "Compiling entry function 'NAME'" line, a
/// "N bytes stack frame, N bytes spill stores, N bytes spill loads" line and a "Used N registers,
/// ... N bytes smem" line.
pub fn parse_ptxas_verbose(log: &str, file: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(KernelResources {
                file: file.to_string(),
                kernel: name.to_string(),
                registers: 0,
                shared_bytes: 0,
                stack_bytes: 0,
                spill_store_bytes: 0,
                spill_load_bytes: 0,
            });
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        if line.contains("stack frame") {
            current.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            current.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            current.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used") && line.contains("registers") {
            current.registers = number_before(line, "registers").unwrap_or(0) as u32;
            current.shared_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// The report as a text table, with a closing line on spills.
pub fn format_report(arch: Arch, kernels: &[KernelResources]) -> String {
    let mut s = format!(
        "{:<14} {:<36} {:>5} {:>10} {:>7} {:>13}\n",
        "file",
        format!("kernel ({})", arch.sm_name()),
        "regs",
        "smem B",
        "stack B",
        "spill st/ld B"
    );
    for k in kernels {
        s.push_str(&format!(
            "{:<14} {:<36} {:>5} {:>10} {:>7} {:>13}\n",
            k.file,
            k.kernel,
            k.registers,
            k.shared_bytes,
            k.stack_bytes,
            format!("{}/{}", k.spill_store_bytes, k.spill_load_bytes)
        ));
    }
    let spilling: Vec<&str> = kernels
        .iter()
        .filter(|k| k.spills())
        .map(|k| k.kernel.as_str())
        .collect();
    if spilling.is_empty() {
        s.push_str(&format!(
            "{} kernels, none spills on {}\n",
            kernels.len(),
            arch.sm_name()
        ));
    } else {
        s.push_str(&format!(
            "{} kernels; spilling on {}: {}\n",
            kernels.len(),
            arch.sm_name(),
            spilling.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_lines_give_each_entry_its_resources() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'first' for 'sm_80'\n\
ptxas info    : Function properties for first\n    \
16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
ptxas info    : Used 40 registers, used 1 barriers, 4352 bytes smem, 432 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'second' for 'sm_80'\n\
ptxas info    : Function properties for second\n    \
0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 7 registers, used 0 barriers, 360 bytes cmem[0]\n";
        let k = parse_ptxas_verbose(log, "x.cu");
        assert_eq!(k.len(), 2);
        assert_eq!(
            (k[0].registers, k[0].shared_bytes, k[0].stack_bytes),
            (40, 4352, 16)
        );
        assert_eq!((k[0].spill_store_bytes, k[0].spill_load_bytes), (8, 4));
        assert!(k[0].spills() && !k[1].spills());
        assert_eq!(
            (k[1].kernel.as_str(), k[1].registers, k[1].shared_bytes),
            ("second", 7, 0)
        );
    }
}
