//! The rib-fracture detection pipeline end to end on synthetic phantoms: `hepar synth --kind
//! ribfrac` data, an (untrained) residual 3D U-Net from the registry slid over each CT,
//! post-processing, int16 label maps and the CSV, scored by the challenge's FROC.

use hepar::backend::Device;
use hepar::data::synth::{ribfrac_phantom, write_ribfrac_dataset};
use hepar::data::Volume;
use hepar::eval::detection_csv::{read_detection_csv, ConfidenceColumn};
use hepar::eval::froc::froc_folders;
use hepar::infer::rib_fracture::{predict_rib_files, RibFracOptions, RibPostprocess};
use hepar::nn::{build, Arch, ModelConfig};
use std::process::Command;

const SHAPE: [usize; 3] = [16, 32, 32];

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-ribfrac-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn fractures_are_bright_lines_on_the_ribs() {
    for case in 0..3 {
        let (image, label, count) = ribfrac_phantom(5, case, [32, 64, 64]).unwrap();
        assert!((1..=3).contains(&count), "case {case}: {count} fractures");
        let max_label = label.data.iter().copied().fold(0.0f32, f32::max);
        assert_eq!(max_label as usize, count);
        for k in 1..=count {
            let hu: Vec<f32> = image
                .data
                .iter()
                .zip(&label.data)
                .filter(|(_, &l)| l == k as f32)
                .map(|(&h, _)| h)
                .collect();
            let mean = hu.iter().sum::<f32>() / hu.len() as f32;
            // Rib bone (450-800 HU) or muscle (50 HU) plus 700: brighter than any bone around.
            assert!(mean > 700.0, "case {case} fracture {k}: mean {mean} HU");
            // Linear: longer along z than across.
            let zs: Vec<usize> = label
                .data
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == k as f32)
                .map(|(i, _)| i / (64 * 64))
                .collect();
            assert!(zs.iter().max().unwrap() - zs.iter().min().unwrap() >= 2);
        }
    }
}

#[test]
fn the_pipeline_writes_challenge_files_that_froc_scores() {
    let dir = temp_dir("pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "synth", "--kind", "ribfrac", "--cases", "2", "--shape", "16,32,32", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The library writes the same files.
    let again = temp_dir("pipeline-lib");
    write_ribfrac_dataset(&again, 2, 0, SHAPE).unwrap();
    for f in [
        "images/RibFrac1-image.nii.gz",
        "labels/RibFrac1-label.nii.gz",
        "labels/ribfrac-info.csv",
    ] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }

    let mut config = ModelConfig::default_for(Arch::Res3dUnet);
    config.base = 4;
    let model = build(&config, 3).unwrap();
    let images = vec![
        dir.join("images/RibFrac0-image.nii.gz"),
        dir.join("images/RibFrac1-image.nii.gz"),
    ];
    let options = RibFracOptions {
        roi: [16, 16, 16],
        postprocess: RibPostprocess {
            min_voxels: Some(4),
            ..RibPostprocess::default()
        },
        ..RibFracOptions::default()
    };
    let pred = dir.join("pred");
    let csv = predict_rib_files(model.as_ref(), &images, &pred, &options, Device::Cpu).unwrap();
    let rows = read_detection_csv(&csv, ConfidenceColumn::Required).unwrap();
    for (case, image) in images.iter().enumerate() {
        let id = format!("RibFrac{case}");
        let map = Volume::read(&pred.join(format!("{id}.nii.gz"))).unwrap();
        let source = Volume::read(image).unwrap();
        assert_eq!(map.shape_zyx, source.shape_zyx);
        assert_eq!(map.affine(), source.affine());
        assert_eq!(map.header.datatype, hepar::data::nifti::NiftiDataType::I16);
        let components = map.data.iter().copied().fold(0.0f32, f32::max) as usize;
        let case_rows: Vec<_> = rows.iter().filter(|r| r.public_id == id).collect();
        // The background row, then one row per component with its mean probability in (0.1, 1].
        assert_eq!(case_rows.len(), components + 1, "{id}");
        assert_eq!(case_rows[0].label_id, 0.0);
        for r in &case_rows[1..] {
            assert!(r.confidence > 0.1 && r.confidence <= 1.0, "{r:?}");
        }
    }
    // `hepar ribfrac` with the same weights and settings writes the same files.
    let weights = dir.join("w.safetensors");
    let named = hepar::nn::to_named_tensors(&*model).unwrap();
    hepar::io::write_safetensors(&weights, &named, &Default::default()).unwrap();
    let pred_cli = dir.join("pred-cli");
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .arg("ribfrac")
        .arg("--model")
        .arg(&weights)
        .args([
            "--arch",
            "res3dunet",
            "--n-channels",
            "4",
            "--roi",
            "16,16,16",
        ])
        .args(["--min-voxels", "4", "--input"])
        .arg(dir.join("images"))
        .arg("--output")
        .arg(&pred_cli)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ribfrac-pred.csv", "RibFrac0.nii.gz", "RibFrac1.nii.gz"] {
        assert_eq!(
            std::fs::read(pred.join(f)).unwrap(),
            std::fs::read(pred_cli.join(f)).unwrap(),
            "{f}"
        );
    }
    let (report, problems) = froc_folders(&pred, &dir.join("labels")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(report.scans, 2);
    assert!((0.0..=1.0).contains(&report.average_recall));
    println!(
        "untrained res3dunet on 2 synthetic cases: FROC {:.4}, max recall {:.4}, Dice {:.4}",
        report.average_recall, report.max_recall, report.dice
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&again).unwrap();
}
