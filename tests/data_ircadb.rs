//! The 3Dircadb layout (`3Dircadb1.N/PATIENT_DICOM`, `MASKS_DICOM/liver`) discovered like LiTS
//! and MSD, its cases loaded from DICOM series, and the Keras U-Net's slice pipeline on them;
//! a patient without its mask, or with a mask of another size, is reported and the rest loads.

mod common;
#[path = "dicom_support/mod.rs"]
mod dicom_support;

use common::tiny_data::temp_dir;
use dicom_support::{axial, write_shuffled};
use hepar::data::dataset::{load_case, Dataset, Layout};
use hepar::data::keras_ct::KerasCtConfig;
use std::path::Path;

const DEPTH: usize = 16;

fn write_patient(root: &Path, n: usize, mask_columns: Option<usize>) {
    let patient = root.join(format!("3Dircadb1.{n}"));
    write_shuffled(&patient.join("PATIENT_DICOM"), &axial(DEPTH, 16, 16, None));
    if let Some(columns) = mask_columns {
        write_shuffled(
            &patient.join("MASKS_DICOM").join("liver"),
            &axial(DEPTH, 16, columns, Some(2..14)),
        );
    }
}

#[test]
fn ircadb_patients_are_discovered_and_loaded() {
    let root = temp_dir("ircadb", "layout");
    write_patient(&root, 1, Some(16));
    write_patient(&root, 2, Some(16));
    write_patient(&root, 10, None); // no mask series
    write_patient(&root, 11, Some(12)); // mask of another size
    let dataset = Dataset::discover(&root).unwrap();
    assert_eq!(dataset.layout, Layout::Ircadb);
    let ids: Vec<&str> = dataset.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["ircadb-1", "ircadb-2", "ircadb-11"]);
    assert_eq!(dataset.problems.len(), 1);
    assert!(dataset.problems[0]
        .path
        .ends_with("3Dircadb1.10/MASKS_DICOM/liver"));

    let (image, label) = load_case(&dataset.cases[0]).unwrap();
    assert_eq!(image.shape_zyx, [DEPTH, 16, 16]);
    assert_eq!(image.data[0], -300.0);
    assert_eq!(label.data.iter().filter(|&&v| v == 1.0).count(), 12 * 64);
    assert!(label.data.iter().all(|&v| v == 0.0 || v == 1.0));

    let err = load_case(&dataset.cases[2]).unwrap_err().to_string();
    assert!(err.contains("3Dircadb1.11/MASKS_DICOM/liver"), "{err}");

    // the Keras pipeline keeps liver slices 2..14 less 5 at each end: 7 and 8
    let cfg = KerasCtConfig::default();
    let slices = cfg.case_slices(&image, &label).unwrap();
    assert_eq!(slices.len(), 2);
    for (x, y) in &slices {
        assert_eq!(x.len(), 256);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(y.iter().filter(|&&v| v == 1.0).count(), 64);
    }
    // as the trainer's single-slice stage-2 stacks, resized
    let case = cfg.stage2_case(&image, &label, [8, 8]).unwrap();
    assert_eq!(
        (case.slices, case.shape_yx, case.stacks.len()),
        (1, [8, 8], 2)
    );
    assert_eq!(case.stacks[0].centre_z, 7);
    assert_eq!(
        case.stacks[0].label.iter().filter(|&&v| v == 1.0).count(),
        16
    );
    // a single patient folder is a dataset of one
    let one = Dataset::discover(&root.join("3Dircadb1.2")).unwrap();
    assert_eq!(one.cases.len(), 1);
}

#[test]
fn parameters_toml_states_the_keras_ct_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("parameters.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("[keras_ct]"));
    assert_eq!(
        KerasCtConfig::from_parameters_toml(&text).unwrap(),
        KerasCtConfig::default()
    );
}
