//! `hepar infer` and the volume inference behind it: one window over the whole volume equals a
//! direct forward pass, the seed's liver network runs from its `.pth` as the example
//! does, multi-class networks write one softmax map per class, and bad input is named.

use hepar::data::nifti::{read_nifti, NiftiDataType};
use hepar::data::Volume;
use hepar::infer::sliding_window::{Blend, WindowOptions};
use hepar::infer::volume_inference::infer_volume;
use hepar::nn::{self, Arch, ModelConfig};
use hepar::tensor::{DType, Tensor};
use hepar::Device;
use std::path::{Path, PathBuf};
use std::process::Command;

fn hepar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hepar"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-infer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A smooth volume with values around 0 (z-scored CT looks like this).
fn volume(shape: [usize; 3]) -> Volume {
    let data = Tensor::randn(&shape, DType::F32, 9)
        .try_to_vec_f32()
        .unwrap();
    Volume::new(data, shape, [2.0, 1.0, 1.5]).unwrap()
}

fn run(args: &[&str]) -> (bool, String) {
    let out = hepar().arg("infer").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn one_window_over_the_volume_equals_the_direct_forward() {
    let config = ModelConfig {
        base: 2,
        ..ModelConfig::default_for(Arch::Unet3d3Class)
    };
    let model = nn::build(&config, 4).unwrap();
    let v = volume([8, 16, 8]);
    let probs = infer_volume(
        &*model,
        &v,
        Path::new("v.nii"),
        None,
        &WindowOptions::default(),
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::from_vec(v.data.clone(), &[1, 1, 8, 16, 8]).unwrap();
    let direct = hepar::no_grad(|| model.forward(&x, false))
        .unwrap()
        .softmax(1)
        .unwrap()
        .try_to_vec_f32()
        .unwrap();
    let voxels = v.data.len();
    assert_eq!(probs.channels.len(), 3);
    for (k, channel) in probs.channels.iter().enumerate() {
        assert_eq!(channel.as_slice(), &direct[k * voxels..(k + 1) * voxels]);
    }
}

#[test]
fn a_2d_network_reads_each_slice_with_its_neighbours() {
    // cotnext2d takes 3 slices; one window per slice equals the forward of that slice's stack.
    let config = ModelConfig {
        base: 8,
        ..ModelConfig::default_for(Arch::CotNext2d)
    };
    let model = nn::build(&config, 2).unwrap();
    let v = volume([3, 16, 16]);
    let probs = infer_volume(
        &*model,
        &v,
        Path::new("v.nii"),
        None,
        &WindowOptions::default(),
        Device::Cpu,
    )
    .unwrap();
    // Slice 0's stack is (0, 0, 1): the edge repeats.
    let plane = 256;
    let stack: Vec<f32> = [0, 0, 1]
        .iter()
        .flat_map(|&z| v.data[z * plane..(z + 1) * plane].iter().copied())
        .collect();
    let x = Tensor::from_vec(stack, &[1, 3, 16, 16]).unwrap();
    let direct = hepar::no_grad(|| model.forward(&x, false))
        .unwrap()
        .sigmoid()
        .unwrap()
        .try_to_vec_f32()
        .unwrap();
    assert_eq!(&probs.channels[0][..plane], direct.as_slice());
}

#[test]
fn the_seed_liver_network_runs_from_its_pth_with_gaussian_windows() {
    let dir = temp_dir("seed");
    let input = dir.join("vol.nii.gz");
    let output = dir.join("prob.nii.gz");
    let v = volume([40, 40, 36]);
    v.write(&input, NiftiDataType::F32).unwrap();
    let pth = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/seed/liver3d.pth");
    let (ok, text) = run(&[
        "--model",
        path_str(&pth),
        "--arch",
        "cotnext3d",
        "--in-channels",
        "1",
        "--n-channels",
        "16",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--roi",
        "32,32,32",
        "--overlap",
        "0.5",
        "--blend",
        "gaussian",
    ]);
    assert!(ok, "{text}");
    let written = read_nifti(&output).unwrap();
    let source = read_nifti(&input).unwrap();
    assert_eq!(written.header.shape(), source.header.shape());
    assert_eq!(written.header.best_affine(), source.header.best_affine());
    assert!(written.data.iter().all(|p| (0.0..=1.0).contains(p)));
    // The windows do not all agree, so blending gives values no single window gave everywhere.
    assert!(written.data.iter().any(|&p| p > 0.0 && p < 1.0));
}

#[test]
fn several_classes_give_a_4d_file_of_softmax_maps() {
    let dir = temp_dir("classes");
    let input = dir.join("vol.nii");
    let output = dir.join("prob.nii");
    volume([16, 16, 16])
        .write(&input, NiftiDataType::F32)
        .unwrap();
    let config = ModelConfig {
        base: 2,
        ..ModelConfig::default_for(Arch::Unet3d3Class)
    };
    let model = nn::build(&config, 1).unwrap();
    // Plain weights in a safetensors file, as other tools save them.
    let checkpoint = dir.join("w.safetensors");
    let weights = nn::to_named_tensors(&*model).unwrap();
    hepar::io::write_safetensors(&checkpoint, &weights, &Default::default()).unwrap();
    let (ok, text) = run(&[
        "--model",
        path_str(&checkpoint),
        "--arch",
        "unet3d_3class",
        "--n-channels",
        "2",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--roi",
        "8,8,8",
        "--batch",
        "3",
    ]);
    assert!(ok, "{text}");
    let written = read_nifti(&output).unwrap();
    assert_eq!(written.header.shape(), vec![16, 16, 16, 3]);
    let voxels = 16 * 16 * 16;
    for i in (0..voxels).step_by(97) {
        let sum: f32 = (0..3).map(|k| written.data[k * voxels + i]).sum();
        assert!((sum - 1.0).abs() < 1e-5, "voxel {i}: {sum}");
    }
}

#[test]
fn bad_input_is_named() {
    let dir = temp_dir("bad");
    let input = dir.join("vol.nii");
    let mut v = volume([16, 16, 16]);
    v.write(&input, NiftiDataType::F32).unwrap();
    let pth = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/seed/liver3d.pth");
    let out = dir.join("p.nii");
    let base = [
        "--model",
        path_str(&pth),
        "--input",
        path_str(&input),
        "--output",
        path_str(&out),
    ];
    let (ok, text) = run(&base);
    assert!(!ok && text.contains("pass --arch"), "{text}");
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    let (ok, text) = with(&["--arch", "cotnext3d", "--roi", "12,16"]);
    assert!(!ok && text.contains("needs 3"), "{text}");
    let (ok, text) = with(&["--arch", "cotnext3d", "--n-channels", "8"]);
    assert!(!ok && text.contains("[16, 1, 3, 3, 3]"), "{text}");
    // Weights for 2 input channels do not exist in the file: the first mis-shaped key is named.
    let (ok, text) = with(&["--arch", "cotnext3d", "--in-channels", "2"]);
    assert!(
        !ok && text.contains("the model expects [16, 2, 3, 3, 3]"),
        "{text}"
    );
    v.data[5] = f32::NAN;
    v.data[6] = f32::INFINITY;
    v.write(&input, NiftiDataType::F32).unwrap();
    let (ok, text) = with(&["--arch", "cotnext3d"]);
    assert!(
        !ok && text.contains("2 of 4096 voxels are NaN or infinite") && text.contains("vol.nii"),
        "{text}"
    );
    assert!(!out.exists(), "no output for a refused input");
}

#[test]
fn a_window_that_breaks_the_shape_rule_is_refused() {
    let config = ModelConfig {
        base: 2,
        ..ModelConfig::default_for(Arch::Unet2dClassic)
    };
    let model = nn::build(&config, 0).unwrap();
    let v = volume([2, 40, 48]);
    let err = infer_volume(
        &*model,
        &v,
        Path::new("v.nii"),
        None,
        &WindowOptions {
            blend: Blend::Gaussian,
            ..WindowOptions::default()
        },
        Device::Cpu,
    )
    .err()
    .expect("40 is not a multiple of 16")
    .to_string();
    assert!(
        err.contains("height 40 is not a multiple of 16") && err.contains("pass --roi"),
        "{err}"
    );
}
