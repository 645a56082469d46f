//! Finding NVRTC and compiling CUDA C to PTX through `cudarc::nvrtc`.
//!
//! cudarc opens `libnvrtc` by soname and panics when it is missing, so the library is located and
//! opened here first: from `HEPAR_NVRTC_LIB`, the normal loader path, or the `nvidia-cuda-nvrtc-cu12`
//! wheel of the local Python. Opening the wheel's file with `RTLD_GLOBAL` makes cudarc's later
//! open-by-soname resolve to the already loaded library, so nobody has to set `LD_LIBRARY_PATH`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{HeparError, Result};

const INSTALL_HINT: &str = "NVRTC (libnvrtc.so.12) was not found; install it with \
`pip install nvidia-cuda-nvrtc-cu12`, or set HEPAR_NVRTC_LIB to the path of libnvrtc.so.12";

/// The GPU architecture PTX is generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Sm80,
    Sm90,
}

impl Arch {
    /// The real architecture ptxas assembles for (`sm_80`, `sm_90`).
    pub fn sm_name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90 => "sm_90",
        }
    }

    /// Parses `sm_80` / `sm_90` (also `80`, `90`, `compute_80`, `compute_90`).
    pub fn parse(name: &str) -> Option<Arch> {
        match name
            .trim()
            .trim_start_matches("sm_")
            .trim_start_matches("compute_")
        {
            "80" => Some(Arch::Sm80),
            "90" => Some(Arch::Sm90),
            _ => None,
        }
    }

    fn compute_name(self) -> &'static str {
        match self {
            Arch::Sm80 => "compute_80",
            Arch::Sm90 => "compute_90",
        }
    }
}

fn backend_error(msg: impl Into<String>) -> HeparError {
    HeparError::Backend {
        backend: "nvrtc",
        msg: msg.into(),
    }
}

/// Where the loaded NVRTC came from, or why none was found. Computed once per process.
fn loaded_nvrtc() -> &'static std::result::Result<String, String> {
    static LOADED: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    LOADED.get_or_init(load_nvrtc)
}

/// Ensures NVRTC is loaded (so cudarc will not panic) and returns a description of where from.
pub fn ensure_nvrtc() -> Result<&'static str> {
    match loaded_nvrtc() {
        Ok(origin) => Ok(origin.as_str()),
        Err(msg) => Err(backend_error(msg.clone())),
    }
}

fn load_nvrtc() -> std::result::Result<String, String> {
    let mut tried = Vec::new();
    if let Some(explicit) = std::env::var_os("HEPAR_NVRTC_LIB") {
        let path = PathBuf::from(explicit);
        let file = if path.is_dir() {
            path.join("libnvrtc.so.12")
        } else {
            path
        };
        return open_global(&file)
            .map(|_| file.display().to_string())
            .map_err(|e| {
                format!(
                    "HEPAR_NVRTC_LIB={}: cannot open NVRTC: {e}. {INSTALL_HINT}",
                    file.display()
                )
            });
    }
    // The loader's own search path (LD_LIBRARY_PATH, system CUDA installs).
    for soname in ["libnvrtc.so.12", "libnvrtc.so"] {
        match open_global(Path::new(soname)) {
            Ok(()) => return Ok(soname.to_string()),
            Err(e) => tried.push(format!("{soname}: {e}")),
        }
    }
    for dir in wheel_lib_dirs() {
        let file = dir.join("libnvrtc.so.12");
        if file.is_file() {
            match open_global(&file) {
                Ok(()) => return Ok(file.display().to_string()),
                Err(e) => tried.push(format!("{}: {e}", file.display())),
            }
        }
    }
    Err(format!("{INSTALL_HINT} (tried: {})", tried.join("; ")))
}

/// Opens the library for the whole process and keeps it open: later opens by soname reuse it.
fn open_global(file: &Path) -> std::result::Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: NVRTC's initialisers only set up its own state.
    let lib =
        unsafe { Library::open(Some(file), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())?;
    // SAFETY: only the presence of the symbol is checked; it is not called here.
    unsafe { lib.get::<unsafe extern "C" fn()>(b"nvrtcVersion\0") }
        .map_err(|e| format!("not an NVRTC library: {e}"))?;
    std::mem::forget(lib);
    Ok(())
}

/// `lib` folders where the `nvidia-cuda-nvrtc-cu12` wheel may be installed.
fn wheel_lib_dirs() -> impl Iterator<Item = PathBuf> {
    package_dir_candidates("cuda_nvrtc").map(|d| d.join("lib"))
}

/// Candidate folders of the `nvidia/<package>` directory of an NVIDIA wheel.
fn wheel_package_dirs(package: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut roots: Vec<PathBuf> = vec!["/usr/lib".into(), "/usr/local/lib".into()];
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.insert(0, Path::new(&venv).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(Path::new(&home).join(".local/lib"));
        let pyenv = Path::new(&home).join(".pyenv/versions");
        for version in read_dir_sorted(&pyenv) {
            roots.push(version.join("lib"));
        }
    }
    for root in roots {
        for python_dir in read_dir_sorted(&root) {
            let is_python = python_dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"));
            if is_python {
                for packages in ["site-packages", "dist-packages"] {
                    dirs.push(python_dir.join(packages).join("nvidia").join(package));
                }
            }
        }
    }
    dirs
}

/// The `nvidia/<package>` folder as the active Python imports it (slower: starts an interpreter).
fn python_package_dir(package: &str) -> Option<PathBuf> {
    for python in ["python3", "python"] {
        let probe = std::process::Command::new(python)
            .args([
                "-c",
                &format!("import nvidia.{package} as m; print(list(m.__path__)[0])"),
            ])
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(out) = probe {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !text.is_empty() {
                return Some(PathBuf::from(text));
            }
        }
    }
    None
}

/// Candidate folders of a wheel's `nvidia/<package>`: the usual site-packages, then the active
/// Python's answer (computed only when the scan finds nothing).
pub(super) fn package_dir_candidates(package: &str) -> impl Iterator<Item = PathBuf> + '_ {
    let mut python_asked = false;
    let mut scanned = wheel_package_dirs(package).into_iter();
    std::iter::from_fn(move || {
        if let Some(d) = scanned.next() {
            return Some(d);
        }
        if python_asked {
            return None;
        }
        python_asked = true;
        python_package_dir(package)
    })
}

/// The CUDA headers NVRTC does not ship (`cuda_fp16.h`, `cuda_bf16.h`...): `HEPAR_CUDA_INCLUDE`,
/// or the `include` folder of the `nvidia-cuda-runtime-cu12` wheel. Searched once per process.
pub fn cuda_include_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HEPAR_CUDA_INCLUDE") {
            return Some(PathBuf::from(dir));
        }
        package_dir_candidates("cuda_runtime")
            .map(|d| d.join("include"))
            .find(|d| d.join("cuda_fp16.h").is_file())
    })
    .as_deref()
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

/// Compiler settings beyond the target architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NvrtcOptions {
    /// Directories searched by `#include "..."`.
    pub include_dirs: Vec<std::path::PathBuf>,
    /// `-D NAME=VALUE` definitions (an empty value gives `-D NAME`).
    pub defines: Vec<(String, String)>,
    /// `--use_fast_math`: approximate division, square root and transcendental functions.
    pub fast_math: bool,
}

/// Compiles CUDA C source to PTX text for `arch`. `name` appears in compiler messages.
pub fn compile_to_ptx(source: &str, name: &str, arch: Arch) -> Result<String> {
    compile_to_ptx_with(source, name, arch, &NvrtcOptions::default())
}

/// Compiles with explicit options. Results are cached per process: tests and backends that build
/// the same kernels many times pay for NVRTC once.
pub fn compile_to_ptx_with(
    source: &str,
    name: &str,
    arch: Arch,
    options: &NvrtcOptions,
) -> Result<String> {
    type Cache = std::sync::Mutex<std::collections::HashMap<(String, Arch, NvrtcOptions), String>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (source.to_string(), arch, options.clone());
    if let Some(ptx) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(ptx.clone());
    }
    let ptx = compile_uncached(source, name, arch, options)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, ptx.clone());
    Ok(ptx)
}

fn compile_uncached(
    source: &str,
    name: &str,
    arch: Arch,
    options: &NvrtcOptions,
) -> Result<String> {
    ensure_nvrtc()?;
    if source.contains('\0') || name.contains('\0') {
        return Err(backend_error(format!("{name}: source contains a NUL byte")));
    }
    let mut flags = vec!["--std=c++17".to_string()];
    for (k, v) in &options.defines {
        flags.push(if v.is_empty() {
            format!("-D{k}")
        } else {
            format!("-D{k}={v}")
        });
    }
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch.compute_name()),
        name: Some(name.to_string()),
        options: flags,
        include_paths: options
            .include_dirs
            .iter()
            .map(|d| d.as_path())
            .chain(cuda_include_dir())
            .map(|d| d.display().to_string())
            .collect(),
        use_fast_math: options.fast_math.then_some(true),
        ..Default::default()
    };
    match cudarc::nvrtc::compile_ptx_with_opts(source, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => {
            let log = log.to_string_lossy();
            let hint = if log.contains("could not open source file \"cuda_")
                && cuda_include_dir().is_none()
            {
                "\nCUDA headers such as cuda_fp16.h come from `pip install nvidia-cuda-runtime-cu12` \
                 (or set HEPAR_CUDA_INCLUDE to a folder holding them)"
            } else {
                ""
            };
            Err(backend_error(format!(
                "{name}: compilation failed:\n{log}{hint}"
            )))
        }
        Err(e) => Err(backend_error(format!("{name}: {e:?}"))),
    }
}
