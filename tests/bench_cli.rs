//! `hepar bench` as users run it: a workload of every kind is timed, and `--compare pytorch`
//! without a usable PyTorch says so and still prints Hepar's numbers.

use std::process::Command;

#[test]
fn compare_without_pytorch_says_so_and_times_hepar_alone() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "bench",
            "--compare",
            "pytorch",
            "--repeats",
            "1",
            "liver3d-step",
        ])
        .env("HEPAR_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PyTorch comparison unavailable")
            && stdout.contains("/nonexistent/python3"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("liver3d-step"))
        .unwrap_or_else(|| panic!("no liver3d-step row in:\n{stdout}"));
    let seconds: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{row}");
}

#[test]
fn unknown_workloads_are_refused_with_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "unet4d-step"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("res3dunet-step"),
        "{stderr}"
    );
}

#[test]
fn the_pipeline_workload_names_the_seed_networks_it_needs() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--repeats", "1", "pipeline-512"])
        .env("HEPAR_SEED_MODELS", "/nonexistent/seed")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("/nonexistent/seed/liver3d.pth")
            && stderr.contains("HEPAR_SEED_MODELS"),
        "{stderr}"
    );
}
