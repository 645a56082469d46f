//! Preprocessing, augmentation, sampling, synthetic phantoms and the background loader, checked
//! on small hand-computed cases and on proportions over many draws.

use hepar::data::augment::{augment, flip, Example};
use hepar::data::config::{
    AugmentConfig, DataParameters, SamplingConfig, Stage1Config, Stage2Config,
};
use hepar::data::loader::{BatchSource, Prefetcher, StackBatches, VolumeBatches};
use hepar::data::patches::LabelSampler;
use hepar::data::prepare::{Stage1Sample, Stage2Sample};
use hepar::data::preprocess::{self, StackKind};
use hepar::data::resize::Interpolation;
use hepar::data::sampling::StackSampler;
use hepar::data::synth::phantom;
use hepar::data::Volume;
use hepar::util::rng::Rng;
use std::sync::Arc;

fn no_augmentation() -> AugmentConfig {
    AugmentConfig {
        p_flip: 0.0,
        p_zoom: 0.0,
        p_rotate: 0.0,
        p_scale: 0.0,
        p_intensity_shift: 0.0,
        p_noise: 0.0,
        p_bias_field: 0.0,
        p_blur: 0.0,
        ..Default::default()
    }
}

#[test]
fn stage1_clips_normalises_over_nonzero_and_resizes() {
    // 2x2x2 volume -> clip [-200, 250] -> non-zero voxels {-200, 100, 250, 250, 50, -100}.
    let hu = vec![-1000.0, 0.0, 100.0, 3000.0, 250.0, 50.0, -100.0, 0.0];
    let image = Volume::new(hu, [2, 2, 2], [2.0, 1.0, 1.0]).unwrap();
    let label = image
        .with_data(vec![0.0, 0.0, 1.0, 1.0, 2.0, 1.0, 0.0, 0.0])
        .unwrap();
    let cfg = Stage1Config {
        shape_zyx: [2, 2, 2],
        ..Default::default()
    };
    let (out, lab) = preprocess::stage1(image, Some(&label), &cfg).unwrap();
    let nz = [-200.0f64, 100.0, 250.0, 250.0, 50.0, -100.0];
    let mean = nz.iter().sum::<f64>() / 6.0;
    let std = (nz.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0).sqrt();
    let expected = [-200.0, 0.0, 100.0, 250.0, 250.0, 50.0, -100.0, 0.0]
        .map(|v: f64| ((v - mean) / std) as f32);
    for (a, b) in out.data.iter().zip(expected) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {expected:?}", out.data);
    }
    assert_eq!(lab.unwrap().data, label.data);

    // Resizing to 4x4x4 keeps labels in their set, the shape and the physical extent.
    let cfg = Stage1Config {
        shape_zyx: [4, 4, 4],
        ..Default::default()
    };
    let image = Volume::new(vec![10.0; 8], [2, 2, 2], [2.0, 1.0, 1.0]).unwrap();
    let (out, lab) = preprocess::stage1(image, Some(&label), &cfg).unwrap();
    assert_eq!(out.shape_zyx, [4, 4, 4]);
    assert_eq!(out.spacing_zyx, [1.0, 0.5, 0.5]);
    assert!(
        out.data.iter().all(|v| *v == 0.0),
        "constant image normalises to 0"
    );
    let lab = lab.unwrap();
    assert!(lab.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
    assert_eq!(
        lab.data.iter().filter(|v| **v == 2.0).count(),
        8,
        "one voxel becomes 2x2x2"
    );

    let wrong = Volume::new(vec![0.0; 12], [3, 2, 2], [1.0; 3]).unwrap();
    let image = Volume::new(vec![0.0; 8], [2, 2, 2], [1.0; 3]).unwrap();
    let err = preprocess::stage1(image, Some(&wrong), &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs"), "{err}");
}

#[test]
fn stage2_crops_to_liver_and_cuts_stacks() {
    // 9 slices of 6x6; liver in slices 3..=5 at (y, x) 2..=3, tumour in slice 4.
    let (d, h, w) = (9, 6, 6);
    let mut label = vec![0.0f32; d * h * w];
    for z in 3..=5 {
        for y in 2..=3 {
            for x in 2..=3 {
                label[(z * h + y) * w + x] = 1.0;
            }
        }
    }
    label[(4 * h + 2) * w + 2] = 2.0;
    let image: Vec<f32> = (0..d * h * w).map(|i| (i % 300) as f32).collect();
    let image = Volume::new(image, [d, h, w], [3.0, 1.0, 1.0]).unwrap();
    let label = image.with_data(label).unwrap();
    let cfg = Stage2Config {
        crop_margin_zyx: [1, 1, 0],
        slice_shape_yx: [4, 2],
        ..Default::default()
    };
    let case = preprocess::stage2(image, Some(&label), &label, &cfg).unwrap();
    assert_eq!(case.crop.start_zyx, [2, 1, 2]);
    assert_eq!(case.crop.shape_zyx, [5, 4, 2]);
    // 5 slices, stacks of 3 with stride 2: starts 2 and 4 -> centres 3 and 5.
    assert_eq!(case.stacks.len(), 2);
    assert_eq!(
        case.stacks.iter().map(|s| s.centre_z).collect::<Vec<_>>(),
        [3, 5]
    );
    assert!(case.stacks.iter().all(|s| s.kind == StackKind::Liver));
    assert_eq!(case.stacks[0].image.len(), 3 * 4 * 2);
    // The crop is 4x2 and the output 4x2: the label is copied exactly.
    assert_eq!(
        case.stacks[0].label,
        vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    );

    let cfg1 = Stage2Config {
        stack_stride: 1,
        crop_margin_zyx: [1, 1, 0],
        slice_shape_yx: [4, 2],
        ..Default::default()
    };
    let image = label
        .with_data((0..d * h * w).map(|i| (i % 300) as f32).collect())
        .unwrap();
    let case = preprocess::stage2(image, Some(&label), &label, &cfg1).unwrap();
    assert_eq!(
        case.stacks.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [StackKind::Liver, StackKind::Tumour, StackKind::Liver]
    );

    let empty = label.with_data(vec![0.0; d * h * w]).unwrap();
    let image = label.with_data(vec![0.0; d * h * w]).unwrap();
    assert!(preprocess::stage2(image, None, &empty, &cfg1).is_err());
}

#[test]
fn zoom_of_one_and_double_flips_are_identities() {
    let (image, label) = phantom(9, 0, [8, 16, 16]).unwrap();
    let original = Example::new(image.data.clone(), label.data.clone(), 1, [8, 16, 16]).unwrap();
    let unit_zoom = AugmentConfig {
        p_zoom: 1.0,
        zoom_range: [1.0, 1.0],
        ..no_augmentation()
    };
    let mut e = original.clone();
    augment(&mut e, &unit_zoom, &mut Rng::new(1));
    assert_eq!(e, original);
    for axis in 0..3 {
        let mut e = original.clone();
        flip(&mut e, axis);
        flip(&mut e, axis);
        assert_eq!(e, original);
    }
    let always_flip = AugmentConfig {
        p_flip: 1.0,
        ..no_augmentation()
    };
    let mut e = original.clone();
    augment(&mut e, &always_flip, &mut Rng::new(2));
    augment(&mut e, &always_flip, &mut Rng::new(3));
    assert_eq!(e, original, "flipping every axis twice");
}

#[test]
fn augmentation_keeps_labels_and_voxel_counts_plausible() {
    let (image, label) = phantom(9, 1, [8, 24, 24]).unwrap();
    let cfg = AugmentConfig::default();
    let mut changed = 0;
    for seed in 0..20 {
        let mut e = Example::new(image.data.clone(), label.data.clone(), 1, [8, 24, 24]).unwrap();
        augment(&mut e, &cfg, &mut Rng::new(seed));
        assert!(e.label.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        assert!(e.image.iter().all(|v| v.is_finite()));
        changed += (e.image != image.data) as usize;
    }
    assert!(
        changed >= 15,
        "default probabilities should change most examples, changed {changed}"
    );
}

#[test]
fn stack_sampler_keeps_40_percent_of_background_and_weights_tumours() {
    let mut kinds = vec![StackKind::Background; 1000];
    kinds.extend(vec![StackKind::Liver; 300]);
    kinds.extend(vec![StackKind::Tumour; 100]);
    let cfg = SamplingConfig::default();
    let sampler = StackSampler::new(&kinds, &cfg).unwrap();
    let kept_background = sampler
        .kept
        .iter()
        .filter(|&&i| kinds[i] == StackKind::Background)
        .count();
    assert_eq!(kept_background, 400);
    assert_eq!(sampler.kept.len(), 800);
    // Weights: tumour 100 * 5 = 500, others 700 * 1 -> tumour share 500 / 1200.
    let mut rng = Rng::new(4);
    let draws = 60_000;
    let mut tumour = 0;
    let mut background = 0;
    for _ in 0..draws {
        match kinds[sampler.draw(&mut rng)] {
            StackKind::Tumour => tumour += 1,
            StackKind::Background => background += 1,
            StackKind::Liver => {}
        }
    }
    let tumour_share = tumour as f64 / draws as f64;
    let background_share = background as f64 / draws as f64;
    assert!(
        (tumour_share - 500.0 / 1200.0).abs() < 0.01,
        "{tumour_share}"
    );
    assert!(
        (background_share - 400.0 / 1200.0).abs() < 0.01,
        "{background_share}"
    );
}

#[test]
fn label_sampler_follows_label_probabilities_on_a_phantom() {
    let (_, label) = phantom(3, 2, [16, 32, 32]).unwrap();
    let mut label = label.data;
    label[100] = 2.0; // make sure a tumour voxel exists
    let p = [(0, 0.2), (1, 0.3), (2, 0.5)];
    // A 1-voxel patch: every voxel is a valid centre.
    let sampler = LabelSampler::new(&label, [16, 32, 32], [1, 1, 1], &p).unwrap();
    let mut rng = Rng::new(8);
    let mut counts = [0usize; 3];
    let draws = 30_000;
    for _ in 0..draws {
        let centre = sampler.draw_centre(&mut rng);
        counts[label[(centre[0] * 32 + centre[1]) * 32 + centre[2]] as usize] += 1;
    }
    for (c, p) in [0.2, 0.3, 0.5].iter().enumerate() {
        assert!(
            (counts[c] as f64 / draws as f64 - p).abs() < 0.015,
            "{counts:?}"
        );
    }
    // Without tumour voxels the remaining probabilities are renormalised: 0.4 / 0.6.
    let no_tumour: Vec<f32> = label.iter().map(|&v| v.min(1.0)).collect();
    let s = LabelSampler::new(&no_tumour, [16, 32, 32], [1, 1, 1], &p).unwrap();
    let liver = (0..draws)
        .filter(|_| {
            let c = s.draw_centre(&mut rng);
            no_tumour[(c[0] * 32 + c[1]) * 32 + c[2]] == 1.0
        })
        .count() as f64
        / draws as f64;
    assert!((liver - 0.6).abs() < 0.015, "{liver}");
}

#[test]
fn phantoms_are_deterministic_with_plausible_anatomy() {
    let shape = [24, 64, 64];
    let (a, la) = phantom(7, 0, shape).unwrap();
    let (b, lb) = phantom(7, 0, shape).unwrap();
    assert_eq!(a.data, b.data);
    assert_eq!(la.data, lb.data);
    let (c, _) = phantom(7, 1, shape).unwrap();
    assert_ne!(a.data, c.data);
    let mut tumour_cases = 0;
    for case in 0..6 {
        let (image, label) = phantom(7, case, shape).unwrap();
        assert!(
            image.spacing_zyx[0] > image.spacing_zyx[1],
            "slices thicker than pixels"
        );
        let n = label.len() as f64;
        let liver = label.data.iter().filter(|v| **v == 1.0).count() as f64 / n;
        let tumour = label.data.iter().filter(|v| **v == 2.0).count() as f64 / n;
        assert!(label.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        assert!((0.01..0.2).contains(&liver), "liver fraction {liver}");
        assert!(tumour < liver, "tumour {tumour} vs liver {liver}");
        tumour_cases += (tumour > 0.0) as usize;
        // HU: air outside, bone present, liver around 60 HU, tumours darker.
        assert!(image.data[0] < -900.0, "corner is air");
        assert!(image.data.iter().any(|&v| v > 400.0), "bone");
        let mean_in = |l: f32| {
            let v: Vec<f64> = image
                .data
                .iter()
                .zip(&label.data)
                .filter(|(_, &x)| x == l)
                .map(|(&v, _)| v as f64)
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let liver_hu = mean_in(1.0);
        assert!((45.0..90.0).contains(&liver_hu), "liver mean {liver_hu} HU");
        if tumour > 0.0 {
            assert!(mean_in(2.0) < liver_hu - 10.0, "tumours are hypodense");
        }
    }
    assert!(
        tumour_cases >= 2,
        "only {tumour_cases} of 6 cases have tumours"
    );
}

fn stage1_samples(n: usize) -> Arc<Vec<Stage1Sample>> {
    let cfg = Stage1Config {
        shape_zyx: [8, 16, 16],
        ..Default::default()
    };
    Arc::new(
        (0..n)
            .map(|i| {
                let (image, label) = phantom(1, i as u64, [12, 24, 24]).unwrap();
                let (image, label) = preprocess::stage1(image, Some(&label), &cfg).unwrap();
                Stage1Sample {
                    id: format!("c{i}"),
                    shape_zyx: image.shape_zyx,
                    image: image.data,
                    label: label.unwrap().data,
                }
            })
            .collect(),
    )
}

#[test]
fn prefetcher_delivers_every_batch_in_order_as_built_directly() {
    let samples = stage1_samples(5);
    let source = Arc::new(
        VolumeBatches::new(samples.clone(), 2, AugmentConfig::default(), 3, 1, true).unwrap(),
    );
    assert_eq!(source.batch_count(), 3);
    let direct: Vec<_> = (0..3).map(|i| source.make_batch(i).unwrap()).collect();
    let fetched: Vec<_> = Prefetcher::start(source.clone(), 2, 1)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(fetched, direct);
    assert_eq!(fetched[0].image_shape, vec![2, 1, 8, 16, 16]);
    assert_eq!(fetched[2].image_shape, vec![1, 1, 8, 16, 16]);
    assert_eq!(fetched[0].labels.len(), 2 * 8 * 16 * 16);
    // Without augmentation, each case appears exactly once per epoch.
    let plain =
        Arc::new(VolumeBatches::new(samples.clone(), 2, no_augmentation(), 3, 1, true).unwrap());
    let mut seen: Vec<Vec<f32>> = Prefetcher::start(plain, 2, 2)
        .flat_map(|b| {
            b.unwrap()
                .images
                .chunks(8 * 16 * 16)
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut expected: Vec<Vec<f32>> = samples.iter().map(|s| s.image.clone()).collect();
    let key = |v: &Vec<f32>| v.iter().map(|x| x.to_bits() as u64).sum::<u64>();
    seen.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(seen, expected);
    // Dropping a prefetcher early stops its workers.
    let source =
        Arc::new(VolumeBatches::new(samples, 1, AugmentConfig::default(), 3, 2, true).unwrap());
    let mut early = Prefetcher::start(source, 2, 1);
    assert!(early.next().unwrap().is_ok());
    drop(early);
}

#[test]
fn stack_and_patch_batches_have_the_documented_shapes() {
    let cfg = Stage2Config {
        slice_shape_yx: [16, 16],
        ..Default::default()
    };
    let samples: Vec<Stage2Sample> = (0..2)
        .map(|i| {
            let (image, label) = phantom(2, i, [12, 32, 32]).unwrap();
            let case = preprocess::stage2(image, Some(&label), &label, &cfg).unwrap();
            Stage2Sample {
                id: format!("s{i}"),
                case,
            }
        })
        .collect();
    let samples = Arc::new(samples);
    let stacks = StackBatches::new(
        samples,
        &SamplingConfig::default(),
        3,
        4,
        AugmentConfig::default(),
        0,
    )
    .unwrap();
    assert!(stacks.kept_stacks() > 0);
    let batch = stacks.make_batch(1).unwrap();
    assert_eq!(batch.image_shape, vec![4, 3, 16, 16]);
    assert_eq!(batch.label_shape, vec![4, 1, 16, 16]);
    assert_eq!(batch.images.len(), 4 * 3 * 16 * 16);
    assert_eq!(
        batch,
        stacks.make_batch(1).unwrap(),
        "same index, same batch"
    );
}

#[test]
fn parameters_toml_at_the_top_level_parses_with_seed_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("parameters.toml");
    let params = DataParameters::load(&path).unwrap();
    assert_eq!(
        params,
        DataParameters::default(),
        "parameters.toml should state the defaults"
    );
    assert_eq!(params.preprocess.stage1.hu_clip, [-200.0, 250.0]);
    assert_eq!(params.preprocess.stage2.hu_clip, [0.0, 200.0]);
    assert_eq!(params.preprocess.stage1.shape_zyx, [128, 128, 128]);
    assert_eq!(params.preprocess.stage2.slice_shape_yx, [256, 256]);
    assert_eq!(params.sampling.background_keep_fraction, 0.4);
    assert_eq!(params.augment.zoom_range, [0.8, 1.2]);
    let bad = DataParameters::from_toml_str("[data]\nfolds = 5\nfold = 5\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("data.fold"), "{bad}");
    let typo = DataParameters::from_toml_str("[augment]\np_flipp = 0.5\n")
        .unwrap_err()
        .to_string();
    assert!(typo.contains("p_flipp"), "{typo}");
    let other_sections =
        DataParameters::from_toml_str("[train]\nepochs = 3\n[sampling]\ntumour_weight = 3.0\n")
            .unwrap();
    assert_eq!(other_sections.sampling.tumour_weight, 3.0);
}

#[test]
fn volume_resize_keeps_labels_in_set() {
    let (_, label) = phantom(5, 0, [12, 24, 24]).unwrap();
    let r = label.resized([7, 13, 29], Interpolation::Nearest).unwrap();
    assert!(r.data.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
    assert!(r.data.contains(&1.0));
}
