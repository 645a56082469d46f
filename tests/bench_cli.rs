//! `hepar bench` as users run it: a workload of every kind is timed, and `--compare pytorch`
//! without a usable PyTorch says so and still prints Hepar's numbers.

use std::process::{Command, Output};

/// The one JSON document a successful `hepar bench --json` printed on stdout.
fn json_doc(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("stdout is one JSON document")
}

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

#[test]
fn json_describes_the_machine_its_ceilings_and_each_workload() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--json", "--repeats", "2", "liver3d-step"])
        .output()
        .unwrap();
    let doc = json_doc(&out);
    let machine = &doc["machine"];
    assert!(machine["threads"].as_u64().unwrap() >= 1);
    // Measured here, so only a plausible range: any CPU of the last decades, short of a cluster.
    let gemm = machine["ceilings"]["gemm_gflops"].as_f64().unwrap();
    let copy = machine["ceilings"]["copy_gbs"].as_f64().unwrap();
    assert!((0.5..1e5).contains(&gemm), "{gemm}");
    assert!((0.1..1e4).contains(&copy), "{copy}");
    let workloads = doc["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 1);
    let w = &workloads[0];
    assert_eq!(w["name"], "liver3d-step");
    assert_eq!(w["repeats"], 2);
    let (min, median, max) = (
        w["min_s"].as_f64().unwrap(),
        w["median_s"].as_f64().unwrap(),
        w["max_s"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= median && median <= max, "{w}");
    // A 3D U-Net step is tens of GFLOPs of convolutions: counted, not zero.
    let gflops = w["gflops"].as_f64().unwrap();
    assert!(gflops > 0.0 && gflops * median > 1.0, "{w}");
    assert!(w["peak_mem_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn op_cases_cover_every_level_both_passes_with_rates() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--json", "--repeats", "1", "--op", "maxpool3d"])
        .output()
        .unwrap();
    let doc = json_doc(&out);
    // --op alone times no workload.
    assert_eq!(doc["workloads"].as_array().unwrap().len(), 0);
    let ops = doc["ops"].as_array().unwrap();
    // The 3D U-Net's five levels, forward and forward + backward each.
    assert_eq!(ops.len(), 10, "{ops:?}");
    let shapes: Vec<&serde_json::Value> = ops.iter().map(|o| &o["shape"]).collect();
    assert_eq!(shapes[0], &serde_json::json!([1, 16, 128, 128, 128]));
    assert_eq!(shapes[8], &serde_json::json!([1, 128, 8, 8, 8]));
    for (i, o) in ops.iter().enumerate() {
        assert_eq!(o["name"], "maxpool3d");
        let pass = if i % 2 == 0 {
            "forward"
        } else {
            "forward+backward"
        };
        assert_eq!(o["pass"], pass);
        assert!(o["gbs"].as_f64().unwrap() > 0.0, "{o}");
        // Pooling does no counted FLOPs.
        assert!(o["gflops"].is_null(), "{o}");
    }
}

#[test]
fn ptxvm_json_has_each_op_cases_counters_and_roofline() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--device", "ptxvm", "--op", "maxpool3d", "--json"])
        .output()
        .unwrap();
    let doc = json_doc(&out);
    assert_eq!(doc["machine"]["device"], "ptxvm", "{doc}");
    let ops = doc["ops"].as_array().unwrap();
    let passes: Vec<&str> = ops.iter().map(|o| o["pass"].as_str().unwrap()).collect();
    assert_eq!(passes, ["forward", "forward+backward"], "{doc}");
    for op in ops {
        assert_eq!(op["name"], "maxpool3d");
        let c = &op["counters"];
        assert!(c["thread_instructions"].as_u64().unwrap() > 0, "{op}");
        assert!(c["bytes_requested"].as_u64().unwrap() > 0, "{op}");
        let sectors = c["load_sectors_per_request"].as_f64().unwrap();
        assert!((1.0..=32.0).contains(&sectors), "{op}");
        assert!(
            c["bank_conflicts_per_request"].as_f64().unwrap() >= 0.0,
            "{op}"
        );
        let gpus: Vec<&str> = c["roofline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["gpu"].as_str().unwrap())
            .collect();
        assert_eq!(gpus, ["H100", "H200"], "{op}");
        for r in c["roofline"].as_array().unwrap() {
            // Pooling moves bytes and does no multiply-adds: memory-bound on both GPUs.
            assert!(r["seconds"].as_f64().unwrap() > 0.0, "{op}");
            assert_eq!(r["bound"], "memory-bound", "{op}");
        }
    }
    // The backward pass's launches include the forward's.
    assert!(
        ops[1]["launches"].as_u64() > ops[0]["launches"].as_u64(),
        "{doc}"
    );
}

#[test]
fn profile_charges_a_step_to_its_ops_with_shares_summing_to_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "bench",
            "--json",
            "--repeats",
            "1",
            "--profile",
            "liver3d-step",
        ])
        .output()
        .unwrap();
    let doc = json_doc(&out);
    let profiles = doc["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0]["name"], "liver3d-step");
    let rows = profiles[0]["ops"].as_array().unwrap();
    let shares: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-6, "shares sum to {shares}");
    let row = |op: &str, pass: &str| {
        rows.iter()
            .find(|r| r["op"] == op && r["pass"] == pass)
            .unwrap_or_else(|| panic!("no {op} {pass} row in {rows:?}"))
    };
    // The 3D network's convolutions run forward and backward, and the update is its own phase.
    for pass in ["forward", "backward"] {
        let conv = row("conv", pass);
        assert!(conv["calls"].as_u64().unwrap() > 10, "{conv}");
        assert!(conv["seconds"].as_f64().unwrap() > 0.0, "{conv}");
    }
    assert_eq!(row("optimizer_step", "update")["calls"], 1);
}

/// A stand-in for benches/pytorch/hepar_bench.py that speaks its protocol without PyTorch:
/// records each request in `log` and answers 0.5 s.
fn fake_pytorch_server(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("requests.txt");
    let script = dir.join("fake_bench.py");
    std::fs::write(
        &script,
        format!(
            r#"import json, sys
print(json.dumps({{"ready": True, "torch": "fake", "threads": 1}}), flush=True)
with open({log:?}, "a") as log:
    for line in sys.stdin:
        log.write(line)
        log.flush()
        print(json.dumps({{"workload": line.strip(), "seconds": 0.5}}), flush=True)
"#
        ),
    )
    .unwrap();
    (script, log)
}

#[test]
fn op_cases_at_a_given_shape_alternate_with_pytorch_requests_naming_the_case() {
    let dir = std::env::temp_dir().join(format!("hepar-bench-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (script, log) = fake_pytorch_server(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--json", "--repeats", "2", "--compare", "pytorch"])
        .args(["--op", "conv-transpose2d", "--shape", "2,8,5,7"])
        .env("HEPAR_PYTORCH_BENCH", &script)
        .output()
        .unwrap();
    let doc = json_doc(&out);
    let ops = doc["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "{ops:?}");
    for o in ops {
        assert_eq!(o["name"], "conv-transpose2d");
        assert_eq!(o["shape"], serde_json::json!([2, 8, 5, 7]));
        assert_eq!(o["pytorch_median_s"].as_f64(), Some(0.5), "{o}");
        // A transposed convolution's FLOPs are counted.
        assert!(o["gflops"].as_f64().unwrap() > 0.0, "{o}");
    }
    // Two timed requests per pass, each naming the family, the shape and the pass.
    let requests = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = requests.lines().collect();
    assert_eq!(
        lines,
        [
            "op conv-transpose2d 2,8,5,7 forward",
            "op conv-transpose2d 2,8,5,7 forward",
            "op conv-transpose2d 2,8,5,7 forward+backward",
            "op conv-transpose2d 2,8,5,7 forward+backward",
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shape_the_op_cannot_take_is_refused_naming_the_op() {
    for (op, shape, says) in [
        ("conv3d", "1,16,8", "rank-5"),
        ("groupnorm2d", "2,12,8,8", "divisible by 8"),
        ("matmul", "4,x,4", "not an axis length"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
            .args(["bench", "--repeats", "1", "--op", op, "--shape", shape])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{op} {shape} was accepted");
        assert!(stderr.contains(says), "{op} {shape}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn every_op_family_has_cases_that_run_on_the_cpu_and_the_vm() {
    use hepar::backend::Device;
    use hepar::cli::op_cases::{OpCase, OpFamily};
    let families = OpFamily::All.members();
    assert!(families.len() >= 13, "{families:?}");
    for family in families {
        assert!(!family.shapes().is_empty(), "{family:?} has no real shapes");
        for shape in family.vm_shapes() {
            for device in [Device::Cpu, Device::PtxVm] {
                let case = OpCase::new(family, shape.clone(), device).unwrap();
                for backward in [false, true] {
                    let (seconds, numel) = case.run(backward, device).unwrap();
                    assert!(
                        seconds > 0.0 && numel > 0,
                        "{family:?} {shape:?} on {device}"
                    );
                }
            }
        }
    }
}

#[test]
fn precision_tf32_reaches_the_vm_matmul_and_a_bad_precision_is_refused() {
    let counts = |precision: &str| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
            .args(["bench", "--device", "ptxvm", "--json", "--op", "matmul"])
            .args(["--shape", "67,64,96", "--precision", precision])
            .output()
            .unwrap();
        let doc = json_doc(&out);
        doc["ops"][0]["counters"].clone()
    };
    let (fp32, tf32) = (counts("fp32"), counts("tf32"));
    // The same FLOPs through a different kernel: tensor-core tiles issue other instructions.
    assert_ne!(fp32["warp_instructions"], tf32["warp_instructions"]);
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["bench", "--op", "matmul", "--precision", "fp16"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("fp16"), "{stderr}");
}
