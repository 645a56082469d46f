//! `hepar verify` on the shared PyTorch fixtures, as users run it, plus the network's handling of
//! odd sizes and of checkpoints that do not fit.

use hepar::nn::cotnext::{CotNextConfig, CotNextUnet};
use hepar::tensor::{DType, Tensor};
use std::path::PathBuf;
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "the shared fixtures must be at {} (the `shared` folder beside the checkout)",
        dir.display()
    );
    dir
}

#[test]
fn all_four_fixtures_pass_hepar_verify() {
    let dir = fixtures_dir();
    let files = [
        "liver3d_forward",
        "tumor2d_forward",
        "train3d_small",
        "train2d_small",
    ]
    .map(|f| dir.join(format!("{f}.safetensors")));
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .arg("verify")
        .args(&files)
        .output()
        .expect("run hepar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hepar verify failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One line per group, the worst score last.
    for group in ["logits", "loss", "grad.input", "grad ", "stats", "trained"] {
        assert!(stdout.contains(group), "no `{group}` line in:\n{stdout}");
    }
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("worst score: "), "{stdout}");
    let worst: f64 = last["worst score: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(worst <= 1.0 && worst.is_finite());
}

#[test]
fn a_checkpoint_for_another_width_names_the_first_offending_key() {
    let dir = fixtures_dir();
    let model = CotNextUnet::new(
        CotNextConfig {
            dims: 3,
            in_channels: 1,
            classes: 1,
            width: 8,
        },
        0,
    )
    .unwrap();
    let weights = hepar::io::load_pth(&dir.join("seed/liver3d.pth")).unwrap();
    let err = hepar::nn::load_state_dict(&model, &weights, "liver3d.pth")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv.double_conv.0.weight")
            && err.contains("[16, 1, 3, 3, 3]")
            && err.contains("[8, 1, 3, 3, 3]"),
        "{err}"
    );
    // The 2D checkpoint into the 3D network.
    let model = CotNextUnet::new(
        CotNextConfig {
            dims: 3,
            in_channels: 1,
            classes: 1,
            width: 16,
        },
        0,
    )
    .unwrap();
    let weights = hepar::io::load_pth(&dir.join("seed/tumor2d.pth")).unwrap();
    assert!(hepar::nn::load_state_dict(&model, &weights, "tumor2d.pth").is_err());
}

#[test]
fn a_fixture_with_missing_keys_is_a_clear_error() {
    let dir = fixtures_dir();
    let mut file = hepar::io::read_safetensors(&dir.join("train2d_small.safetensors")).unwrap();
    let victim = file
        .tensors
        .names()
        .find(|n| n.starts_with("init.") && n.ends_with("conv2.0.weight"))
        .unwrap()
        .to_string();
    let mut kept = hepar::io::NamedTensors::new();
    for (n, t) in file.tensors.iter() {
        if n != victim {
            kept.insert(n, t.clone()).unwrap();
        }
    }
    file.tensors = kept;
    let tmp = std::env::temp_dir().join(format!(
        "hepar-missing-key-{}.safetensors",
        std::process::id()
    ));
    hepar::io::write_safetensors(&tmp, &file.tensors, &file.metadata).unwrap();
    let err = hepar::verify::verify_fixture(&tmp, hepar::backend::Device::Cpu)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&tmp).ok();
    let key = victim.trim_start_matches("init.");
    assert!(err.contains(key), "error should name `{key}`: {err}");
}

#[test]
fn odd_spatial_sizes_go_through_the_decoder_padding_path() {
    for (dims, shape) in [(2usize, vec![1, 3, 37, 41]), (3, vec![1, 1, 17, 19, 23])] {
        let model = CotNextUnet::new(
            CotNextConfig {
                dims,
                in_channels: shape[1],
                classes: 2,
                width: 8,
            },
            3,
        )
        .unwrap();
        let x = Tensor::randn(&shape, DType::F32, 1);
        let y = hepar::no_grad(|| model.forward(&x, false)).unwrap();
        let mut expected = shape.clone();
        expected[1] = 2;
        assert_eq!(y.shape(), expected.as_slice());
        assert!(y.to_vec_f32().iter().all(|v| v.is_finite()));
    }
    let model = CotNextUnet::new(
        CotNextConfig {
            dims: 2,
            in_channels: 3,
            classes: 1,
            width: 8,
        },
        3,
    )
    .unwrap();
    assert!(
        model
            .forward(
                &Tensor::zeros(&[1, 1, 32, 32], DType::F32, Default::default()).unwrap(),
                false
            )
            .is_err(),
        "wrong channel count"
    );
    assert!(
        model
            .forward(
                &Tensor::zeros(&[1, 3, 8, 32], DType::F32, Default::default()).unwrap(),
                false
            )
            .is_err(),
        "too small to pool four times"
    );
}

#[test]
fn the_seed_tumour_network_passes_its_pytorch_fixture_on_the_ptx_vm() {
    // The seed's trained 2D network (width 32) through every GPU kernel it uses, on the VM,
    // scored against PyTorch's logits like the CPU run.
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["verify", "--device", "ptxvm"])
        .arg(fixtures_dir().join("tumor2d_forward.safetensors"))
        .output()
        .expect("run hepar");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hepar verify --device ptxvm failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok   logits"), "{stdout}");
}

/// Runs `hepar verify` with `args` and returns its stdout, failing with both streams.
fn run_verify(args: &[&str], files: &[PathBuf]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .arg("verify")
        .args(args)
        .args(files)
        .output()
        .expect("run hepar");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "hepar verify {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_other_seeds_networks_pass_their_eight_fixtures() {
    let dir = fixtures_dir();
    let files: Vec<PathBuf> = [
        "unet2d_classic",
        "keras_unet2d",
        "unet3d_3class",
        "res3dunet",
    ]
    .iter()
    .flat_map(|arch| {
        ["forward", "train"].map(|kind| dir.join(format!("{arch}_{kind}.safetensors")))
    })
    .collect();
    let stdout = run_verify(&[], &files);
    // Every file reports; the deep-supervision heads and BatchNorm statistics are scored.
    for file in &files {
        assert!(stdout.contains(&file.display().to_string()), "{stdout}");
    }
    for group in [
        "logits",
        "deep",
        "loss",
        "stats",
        "grad.input",
        "grad ",
        "trained",
    ] {
        assert!(stdout.contains(group), "no `{group}` line in:\n{stdout}");
    }
}

#[test]
fn the_classic_unet_passes_its_forward_fixture_on_the_ptx_vm() {
    // Transposed convolutions (k4 s2 p1) and eval-mode BatchNorm through the GPU kernels.
    let stdout = run_verify(
        &["--device", "ptxvm"],
        &[fixtures_dir().join("unet2d_classic_forward.safetensors")],
    );
    assert!(stdout.contains("ok   logits"), "{stdout}");
}
