//! `hepar kernels check`: every real kernel within kernels/budgets.toml, and the check failing
//! on a deliberately uncoalesced kernel (tests/ptx_kernels/planted_uncoalesced.cu) with the
//! sectors-per-request reason. Needs ptxas and NVRTC (scripts/setup.sh).

use hepar::backend::cuda::kernel_budget::{
    check, measure_case, measure_static, update, Budgets, CaseMeasure, StaticMeasure,
};
use hepar::backend::cuda::{DeviceApi, LaunchConfig};
use hepar::cli::kernels_check::measure_real_kernels;
use hepar::kernel_args;
use hepar::ptx::VirtualGpu;

fn budgets_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/budgets.toml")
}

#[test]
fn every_real_kernel_is_within_its_budget() {
    let (statics, cases) = measure_real_kernels().unwrap_or_else(|e| panic!("{e}"));
    let budgets = Budgets::load(&budgets_path()).unwrap();
    let report = check(&statics, &cases, &budgets);
    assert!(report.passed(), "{}", report.format());
    // Every kernel has a row, and the VM measured each one in at least one case.
    assert!(statics.len() >= 170, "{} kernels", statics.len());
    for s in &statics {
        assert!(cases.iter().any(|c| c.kernel == s.kernel), "{}", s.kernel);
    }
    // A kernel without a budget fails, named; `update` budgets exactly that kernel.
    let mut missing = budgets.clone();
    missing.kernel.retain(|k| k.name != "matmul_f32");
    let report = check(&statics, &cases, &missing);
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("matmul_f32: no budget"),
        "{failures:?}"
    );
    let (updated, changed) = update(&statics, &cases, &missing);
    assert_eq!(changed, vec!["matmul_f32".to_string()]);
    assert!(check(&statics, &cases, &updated).passed());
}

/// Compiles the planted source, measures both kernels with ptxas and one launch each on the VM.
fn planted() -> (Vec<StaticMeasure>, Vec<CaseMeasure>) {
    let file = "planted_uncoalesced.cu";
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/ptx_kernels")
            .join(file),
    )
    .unwrap();
    let statics = measure_static(&[(file.to_string(), source.clone())]).unwrap();
    let gpu = VirtualGpu::default();
    let module = gpu.compile_module(&source, file).unwrap();
    let (rows, cols) = (67usize, 96usize);
    let n = rows * cols;
    let x = gpu.upload(&vec![1.0f32; n]).unwrap();
    let y = gpu.upload(&vec![0.0f32; n]).unwrap();
    let mut cases = Vec::new();
    for name in ["copy_coalesced_f32", "copy_uncoalesced_f32"] {
        let k = gpu.kernel(&module, name).unwrap();
        gpu.start_recording();
        gpu.launch(
            &k,
            &LaunchConfig::for_elements(n, 128),
            &kernel_args![x, y, rows as i32, cols as i32],
        )
        .unwrap();
        cases.extend(measure_case("copy [67, 96]", n, &gpu.take_recording()));
    }
    (statics, cases)
}

#[test]
fn a_planted_uncoalesced_kernel_fails_on_sectors_per_request() {
    let (statics, cases) = planted();
    assert_eq!(statics.len(), 2, "{statics:?}");
    assert_eq!(cases.len(), 2, "{cases:?}");
    // Budget the planted kernel as what `--update` writes for its coalesced twin.
    let (mut budgets, _) = update(&statics, &cases, &Budgets::default());
    let twin = budgets
        .kernel
        .iter()
        .find(|k| k.name == "copy_coalesced_f32")
        .unwrap()
        .clone();
    budgets.kernel.retain(|k| k.name != "copy_uncoalesced_f32");
    budgets
        .kernel
        .push(hepar::backend::cuda::kernel_budget::KernelBudget {
            name: "copy_uncoalesced_f32".into(),
            ..twin
        });
    let report = check(&statics, &cases, &budgets);
    let failures = report.failures();
    assert!(!report.passed(), "{}", report.format());
    assert!(
        failures
            .iter()
            .all(|f| f.starts_with("copy_uncoalesced_f32:")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.contains("global sectors/request")),
        "{failures:?}"
    );
    let coalesced = cases
        .iter()
        .find(|c| c.kernel == "copy_coalesced_f32")
        .unwrap();
    let strided = cases
        .iter()
        .find(|c| c.kernel == "copy_uncoalesced_f32")
        .unwrap();
    assert!(coalesced.sectors_per_request <= 4.5, "{coalesced:?}");
    assert!(
        strided.sectors_per_request > 2.0 * coalesced.sectors_per_request,
        "{strided:?}"
    );
}

#[test]
fn check_names_a_missing_budgets_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["kernels", "check", "--budgets", "/nonexistent/budgets.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/nonexistent/budgets.toml"), "{err}");
}
