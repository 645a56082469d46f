//! Dataset discovery (LiTS and MSD layouts), seeded splits, preprocessing a dataset through the
//! cache, and bad cases that are reported without stopping the rest.

use hepar::data::config::{Stage1Config, Stage2Config};
use hepar::data::dataset::{load_case, Dataset, Layout};
use hepar::data::nifti::NiftiDataType;
use hepar::data::prepare::{prepare_stage1, prepare_stage2};
use hepar::data::preprocess::StackKind;
use hepar::data::synth::{phantom, write_dataset};
use std::path::{Path, PathBuf};

const SHAPE: [usize; 3] = [12, 32, 32];

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-dataset-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_stage1() -> Stage1Config {
    Stage1Config {
        shape_zyx: [8, 16, 16],
        ..Default::default()
    }
}

#[test]
fn lits_layout_in_nested_folders_with_a_missing_label() {
    let root = temp_dir("lits");
    write_dataset(&root.join("Training Batch 1"), 2, 1, SHAPE).unwrap();
    let batch2 = root.join("Training Batch 2");
    std::fs::create_dir_all(&batch2).unwrap();
    let (image, label) = phantom(1, 7, SHAPE).unwrap();
    image
        .write(&batch2.join("volume-10.nii"), NiftiDataType::I16)
        .unwrap();
    label
        .write(&batch2.join("segmentation-10.nii"), NiftiDataType::U8)
        .unwrap();
    image
        .write(&batch2.join("volume-11.nii.gz"), NiftiDataType::I16)
        .unwrap(); // no label
    std::fs::write(root.join("notes.txt"), "not a case").unwrap();

    let ds = Dataset::discover(&root).unwrap();
    assert_eq!(ds.layout, Layout::Lits);
    let ids: Vec<&str> = ds.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["lits-0", "lits-1", "lits-10"]);
    assert_eq!(ds.problems.len(), 1);
    assert!(ds.problems[0].to_string().contains("volume-11.nii.gz"));
    assert!(ds.problems[0].reason.contains("segmentation-11"));
    let (img, lab) = load_case(&ds.cases[2]).unwrap();
    assert_eq!(img.shape_zyx, SHAPE);
    assert_eq!(lab.data, label.data);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn msd_layout_with_and_without_manifest() {
    let root = temp_dir("msd");
    let (images, labels) = (root.join("imagesTr"), root.join("labelsTr"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    for n in [3, 1] {
        let (image, label) = phantom(2, n, SHAPE).unwrap();
        image
            .write(
                &images.join(format!("liver_{n}.nii.gz")),
                NiftiDataType::I16,
            )
            .unwrap();
        label
            .write(&labels.join(format!("liver_{n}.nii.gz")), NiftiDataType::U8)
            .unwrap();
    }
    std::fs::write(images.join("._liver_1.nii.gz"), b"resource fork").unwrap();
    let ds = Dataset::discover(&root).unwrap();
    assert_eq!(ds.layout, Layout::MsdLiver);
    assert_eq!(
        ds.cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["msd-1", "msd-3"]
    );
    assert!(ds.problems.is_empty());

    std::fs::write(
        root.join("dataset.json"),
        r#"{"name": "Liver", "training": [
            {"image": "./imagesTr/liver_3.nii.gz", "label": "./labelsTr/liver_3.nii.gz"},
            {"image": "./imagesTr/liver_9.nii.gz", "label": "./labelsTr/liver_9.nii.gz"}]}"#,
    )
    .unwrap();
    let ds = Dataset::discover(&root).unwrap();
    assert_eq!(ds.cases.len(), 1);
    assert_eq!(ds.cases[0].id, "msd-3");
    assert!(ds.problems[0].to_string().contains("liver_9.nii.gz"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn empty_or_missing_folder_is_an_error_naming_it() {
    let root = temp_dir("empty");
    let err = Dataset::discover(&root).unwrap_err().to_string();
    assert!(
        err.contains(&root.display().to_string()) && err.contains("no cases found"),
        "{err}"
    );
    let missing = root.join("nope");
    let err = Dataset::discover(&missing).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let root = temp_dir("split");
    write_dataset(&root, 7, 3, [8, 16, 16]).unwrap();
    let ds = Dataset::discover(&root).unwrap();
    let mut all_val = Vec::new();
    for fold in 0..3 {
        let (train, val) = ds.split(3, fold, 11).unwrap();
        assert_eq!(train.len() + val.len(), 7);
        assert!(val.len() == 2 || val.len() == 3);
        assert!(train.iter().all(|t| !val.contains(t)));
        assert_eq!(ds.split(3, fold, 11).unwrap(), (train, val.clone()));
        all_val.extend(val);
    }
    all_val.sort_by_key(|c| c.number);
    assert_eq!(all_val, ds.cases);
    assert!(ds.split(3, 3, 11).is_err());
    std::fs::remove_dir_all(&root).unwrap();
}

fn corrupt_copy(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, &bytes[..bytes.len() / 3]).unwrap();
}

#[test]
fn bad_cases_are_reported_and_the_rest_prepared_then_cached() {
    let root = temp_dir("prepare");
    write_dataset(&root, 3, 5, SHAPE).unwrap();
    // Case 3: label shape differs from its image. Case 4: truncated image.
    let (image, _) = phantom(5, 3, SHAPE).unwrap();
    let (_, other_label) = phantom(5, 3, [12, 32, 30]).unwrap();
    image
        .write(&root.join("volume-3.nii.gz"), NiftiDataType::I16)
        .unwrap();
    other_label
        .write(&root.join("segmentation-3.nii.gz"), NiftiDataType::U8)
        .unwrap();
    corrupt_copy(&root.join("volume-0.nii.gz"), &root.join("volume-4.nii.gz"));
    std::fs::copy(
        root.join("segmentation-0.nii.gz"),
        root.join("segmentation-4.nii.gz"),
    )
    .unwrap();

    let ds = Dataset::discover(&root).unwrap();
    assert_eq!(ds.cases.len(), 5);
    let cache = root.join("cache");
    let cfg = small_stage1();
    let first = prepare_stage1(&ds.cases, &cfg, Some(&cache), false).unwrap();
    assert_eq!(
        first
            .items
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["lits-0", "lits-1", "lits-2"]
    );
    assert_eq!(first.failures.len(), 2);
    let shape_problem = first
        .failures
        .iter()
        .find(|p| p.reason.contains("segmentation-3"))
        .expect("shape mismatch reported");
    assert!(
        shape_problem.reason.contains("differs"),
        "{}",
        shape_problem.reason
    );
    let truncated = first
        .failures
        .iter()
        .find(|p| p.reason.contains("volume-4"))
        .expect("truncated file reported");
    assert!(
        truncated.reason.contains("gzip") || truncated.reason.contains("truncated"),
        "{}",
        truncated.reason
    );
    assert_eq!(first.cache_hits, 0);
    for s in &first.items {
        assert_eq!(s.shape_zyx, [8, 16, 16]);
        assert!(s.label.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        assert!(s.image.iter().all(|v| v.is_finite()));
    }

    let second = prepare_stage1(&ds.cases, &cfg, Some(&cache), false).unwrap();
    assert_eq!(second.cache_hits, 3);
    assert_eq!(second.items, first.items);

    // Other settings: another cache folder, no hits.
    let other = Stage1Config {
        hu_clip: [-100.0, 200.0],
        ..cfg.clone()
    };
    assert_eq!(
        prepare_stage1(&ds.cases, &other, Some(&cache), false)
            .unwrap()
            .cache_hits,
        0
    );
    // A corrupt cache entry is rebuilt, not fatal.
    let entry = std::fs::read_dir(
        std::fs::read_dir(&cache)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap()
    .path();
    std::fs::write(&entry, b"garbage").unwrap();
    let third = prepare_stage1(&ds.cases, &cfg, Some(&cache), false).unwrap();
    assert_eq!(third.items.len(), 3);
    assert!(third.failures.len() == 2);

    let s2cfg = Stage2Config {
        slice_shape_yx: [24, 24],
        ..Default::default()
    };
    let stage2 = prepare_stage2(&ds.cases, &s2cfg, Some(&cache), false).unwrap();
    assert_eq!(stage2.items.len(), 3);
    let again = prepare_stage2(&ds.cases, &s2cfg, Some(&cache), false).unwrap();
    assert_eq!(again.cache_hits, 3);
    assert_eq!(again.items, stage2.items);
    for s in &stage2.items {
        assert!(!s.case.stacks.is_empty());
        assert!(s
            .case
            .stacks
            .iter()
            .any(|st| st.kind != StackKind::Background));
        assert!(s
            .case
            .stacks
            .iter()
            .all(|st| st.image.len() == 3 * 24 * 24 && st.label.len() == 24 * 24));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn split_preparation_from_parameters() {
    let root = temp_dir("split-prepare");
    write_dataset(&root.join("cases"), 4, 8, SHAPE).unwrap();
    let mut params = hepar::data::config::DataParameters::default();
    params.data.root = root.join("cases");
    params.data.cache_dir = root.join("cache");
    params.data.folds = 2;
    params.preprocess.stage1 = small_stage1();
    params.preprocess.stage2.slice_shape_yx = [16, 16];
    let split = hepar::data::prepare::stage1_split(&params, false).unwrap();
    assert_eq!(split.train.len() + split.validation.len(), 4);
    assert_eq!(split.train.len(), 2);
    assert!(split.problems.is_empty());
    assert!(split
        .train
        .iter()
        .all(|t| split.validation.iter().all(|v| v.id != t.id)));
    let again = hepar::data::prepare::stage1_split(&params, false).unwrap();
    assert_eq!(again.cache_hits, 4);
    let stage2 = hepar::data::prepare::stage2_split(&params, None, false).unwrap();
    assert_eq!(stage2.train.len(), 2);
    params.data.root = root.join("nothing-here");
    assert!(hepar::data::prepare::stage1_split(&params, false).is_err());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn cases_with_non_finite_voxels_and_misnamed_files_are_left_out_by_name() {
    let root = temp_dir("bad-data");
    write_dataset(&root, 3, 2, SHAPE).unwrap();
    // Case 1's CT gets two NaN voxels and one infinity (float32 on disk, as scanners never write
    // but converters sometimes do).
    let (mut image, _) = phantom(2, 1, SHAPE).unwrap();
    image.data[5] = f32::NAN;
    image.data[77] = f32::NAN;
    image.data[300] = f32::INFINITY;
    std::fs::remove_file(root.join("volume-1.nii.gz")).unwrap();
    image
        .write(&root.join("volume-1.nii.gz"), NiftiDataType::F32)
        .unwrap();
    // A folder named like a volume, and a segmentation whose volume is missing.
    std::fs::create_dir_all(root.join("volume-5.nii.gz")).unwrap();
    std::fs::copy(
        root.join("segmentation-0.nii.gz"),
        root.join("segmentation-6.nii.gz"),
    )
    .unwrap();

    let ds = Dataset::discover(&root).unwrap();
    let ids: Vec<&str> = ds.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["lits-0", "lits-1", "lits-2"]);
    let reported = |name: &str, words: &str| {
        ds.problems
            .iter()
            .any(|p| p.path.ends_with(name) && p.reason.contains(words))
    };
    assert!(reported("volume-5.nii.gz", "folder"), "{:?}", ds.problems);
    assert!(
        reported("segmentation-6.nii.gz", "no volume-6"),
        "{:?}",
        ds.problems
    );

    let prepared = prepare_stage1(&ds.cases, &small_stage1(), None, false).unwrap();
    let kept: Vec<&str> = prepared.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(kept, ["lits-0", "lits-2"]);
    let [nan] = &prepared.failures[..] else {
        panic!("{:?}", prepared.failures)
    };
    let n = SHAPE.iter().product::<usize>();
    assert!(nan.path.ends_with("volume-1.nii.gz"), "{nan}");
    assert!(
        nan.to_string().contains("volume-1.nii.gz")
            && nan
                .reason
                .contains(&format!("3 of {n} voxels are NaN or infinite")),
        "{nan}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
