//! The other seeds' networks and their losses: shape rules, the Keras crop, the residual
//! network's channel broadcast and deep-supervision heads, losses against hand-computed values
//! and finite differences, and clear errors for weights of another architecture.

mod common;

use common::{assert_close, for_each_device, rand_on};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::io::{Fixture, FixtureTensors};
use hepar::nn::keras_unet2d::crop_to;
use hepar::nn::{self, Arch, ModelConfig};
use hepar::ops::loss::{self, DeepSupervisionWeights};
use hepar::tensor::{DType, Tensor};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(format!("{name}.safetensors"));
    assert!(path.is_file(), "missing shared fixture {}", path.display());
    path
}

fn config(arch: Arch, base: usize) -> ModelConfig {
    ModelConfig {
        base,
        ..ModelConfig::default_for(arch)
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.try_to_vec_f64().unwrap()
}

#[test]
fn every_architecture_builds_and_keeps_its_documented_output_size() {
    let cases = [
        (
            Arch::CotNext3d,
            8,
            vec![1, 1, 16, 16, 16],
            vec![1, 1, 16, 16, 16],
        ),
        (Arch::CotNext2d, 8, vec![1, 3, 32, 32], vec![1, 1, 32, 32]),
        (
            Arch::Unet2dClassic,
            2,
            vec![1, 3, 32, 48],
            vec![1, 3, 32, 48],
        ),
        // Cropped skips: 16 * floor(s / 16).
        (Arch::KerasUnet2d, 2, vec![1, 1, 40, 35], vec![1, 1, 32, 32]),
        (
            Arch::Unet3d3Class,
            2,
            vec![1, 1, 8, 16, 8],
            vec![1, 3, 8, 16, 8],
        ),
        (
            Arch::Res3dUnet,
            2,
            vec![1, 1, 8, 8, 16],
            vec![1, 1, 8, 8, 16],
        ),
    ];
    for (arch, base, input, output) in cases {
        let cfg = config(arch, base);
        let model = nn::build(&cfg, 3).unwrap();
        assert_eq!(model.config(), &cfg);
        let x = Tensor::randn(&input, DType::F32, 1);
        let y = hepar::no_grad(|| model.forward(&x, false)).unwrap();
        assert_eq!(y.shape(), output.as_slice(), "{arch}");
        assert_eq!(
            cfg.output_spatial(&input[2..]),
            output[2..].to_vec(),
            "{arch}"
        );
    }
}

#[test]
fn sizes_that_break_a_shape_rule_are_refused_with_the_rule() {
    let model = nn::build(&config(Arch::Unet2dClassic, 2), 0).unwrap();
    let x = Tensor::host_full(&[1, 3, 40, 48], 0.0, DType::F32);
    let err = model.forward(&x, false).unwrap_err().to_string();
    assert!(
        err.contains("height 40 is not a multiple of 16 for unet2d_classic"),
        "{err}"
    );
    let res = nn::build(&config(Arch::Res3dUnet, 2), 0).unwrap();
    let x = Tensor::host_full(&[1, 1, 8, 12, 8], 0.0, DType::F32);
    let err = res.forward(&x, false).unwrap_err().to_string();
    assert!(
        err.contains("height 12 is not a multiple of 8 for res3dunet"),
        "{err}"
    );
    let wrong_channels = Tensor::host_full(&[1, 2, 8, 8, 8], 0.0, DType::F32);
    assert!(res.forward(&wrong_channels, false).is_err());
}

#[test]
fn keras_crop_removes_half_the_excess_before_and_the_rest_after() {
    // 1 x 1 x 5 x 7 holding its flat index; cropped to 2 x 4: rows 1..3, columns 1..5.
    let skip = Tensor::from_vec((0..35).map(|v| v as f32).collect(), &[1, 1, 5, 7]).unwrap();
    let like = Tensor::host_full(&[1, 3, 2, 4], 0.0, DType::F32);
    let cropped = crop_to(&skip, &like).unwrap();
    assert_eq!(cropped.shape(), &[1, 1, 2, 4]);
    let expected: Vec<f64> = [1, 2]
        .iter()
        .flat_map(|r| (1..5).map(move |c| (r * 7 + c) as f64))
        .collect();
    assert_eq!(values(&cropped), expected);
    // Never padded: a skip already smaller stays as it is.
    let small = Tensor::host_full(&[1, 1, 1, 3], 0.0, DType::F32);
    assert_eq!(crop_to(&small, &like).unwrap().shape(), &[1, 1, 1, 3]);
}

#[test]
fn res3dunet_broadcasts_a_one_channel_input_and_returns_four_heads() {
    for in_channels in [1, 2] {
        let cfg = ModelConfig {
            in_channels,
            dropout: 0.0,
            ..config(Arch::Res3dUnet, 2)
        };
        let model = nn::build(&cfg, 1).unwrap();
        let x = Tensor::randn(&[2, in_channels, 8, 8, 8], DType::F32, 4);
        let out = hepar::no_grad(|| model.forward_all(&x, false)).unwrap();
        assert_eq!(out.logits.shape(), &[2, 1, 8, 8, 8]);
        assert_eq!(out.deep.len(), 3, "o1..o3");
        for head in &out.deep {
            assert_eq!(head.shape(), &[2, 1, 8, 8, 8]);
        }
    }
    let three = ModelConfig {
        in_channels: 3,
        ..config(Arch::Res3dUnet, 2)
    };
    let err = nn::build(&three, 0)
        .err()
        .expect("3 channels cannot be added to 2");
    assert!(
        err.to_string().contains("in_channels must be 1 or 2"),
        "{err}"
    );
}

#[test]
fn res3dunet_dropout_masks_follow_the_seed_and_are_off_in_eval() {
    let model = nn::build(&config(Arch::Res3dUnet, 2), 1).unwrap();
    let x = Tensor::randn(&[2, 1, 8, 8, 8], DType::F32, 5);
    let run = |seed: u64, training: bool| {
        model.set_dropout_seed(seed);
        values(&hepar::no_grad(|| model.forward(&x, training)).unwrap())
    };
    assert_eq!(run(7, true), run(7, true), "same seed, same masks");
    assert_ne!(run(7, true), run(8, true), "another seed, other masks");
    assert_eq!(run(7, false), run(8, false), "no dropout in eval");
}

#[test]
fn batch_dice_losses_match_hand_computed_values() {
    for_each_device(|dev| {
        let logits = Tensor::from_vec_on(vec![0.0f64, 2.0, -1.0, 0.5], &[2, 1, 2], dev).unwrap();
        let target = Tensor::from_vec_on(vec![1.0f64, 0.0, 1.0, 1.0], &[2, 1, 2], dev).unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let p = [sig(0.0), sig(2.0), sig(-1.0), sig(0.5)];
        let t = [1.0, 0.0, 1.0, 1.0];
        let inter: f64 = p.iter().zip(&t).map(|(a, b)| a * b).sum();
        let dice = (2.0 * inter + 1.0) / (p.iter().sum::<f64>() + 3.0 + 1.0);
        let bce: f64 = p
            .iter()
            .zip(&t)
            .map(|(q, y)| -(y * q.ln() + (1.0 - y) * (1.0 - q).ln()))
            .sum::<f64>()
            / 4.0;
        let scalar = |t: Tensor| t.to_dtype(DType::F64).unwrap().try_to_vec_f64().unwrap()[0];
        assert_close(
            &[scalar(loss::batch_dice(&logits, &target, 1.0).unwrap())],
            &[dice],
            1e-12,
            "batch dice",
        );
        assert_close(
            &[scalar(loss::neg_dice(&logits, &target, 1.0).unwrap())],
            &[-dice],
            1e-12,
            "neg dice",
        );
        // Two heads: the main output and one deep head equal to -logits.
        let head = logits.neg().unwrap();
        let ph: Vec<f64> = p.iter().map(|q| 1.0 - q).collect();
        let inter_h: f64 = ph.iter().zip(&t).map(|(a, b)| a * b).sum();
        let dice_h = (2.0 * inter_h + 1.0) / (ph.iter().sum::<f64>() + 3.0 + 1.0);
        let bce_h: f64 = ph
            .iter()
            .zip(&t)
            .map(|(q, y)| -(y * q.ln() + (1.0 - y) * (1.0 - q).ln()))
            .sum::<f64>()
            / 4.0;
        let w = DeepSupervisionWeights {
            alpha: 0.33,
            bce: 0.5,
            dice: 1.0,
            smooth: 1.0,
        };
        let expected = 0.5 * bce + (1.0 - dice) + 0.33 * (0.5 * bce_h + (1.0 - dice_h));
        let got = loss::deep_supervision_bce_dice(&logits, &[head], &target, &w).unwrap();
        assert_close(&[scalar(got)], &[expected], 1e-12, "deep supervision");
    });
}

#[test]
fn cross_entropy_ignores_the_ignore_index_and_names_bad_labels() {
    for_each_device(|dev| {
        // Two voxels, two classes; the second voxel is ignored.
        let logits = Tensor::from_vec_on(vec![1.0f64, 0.0, 0.0, 3.0], &[1, 2, 2], dev).unwrap();
        let labels = Tensor::from_vec_on(vec![1.0f64, 255.0], &[1, 2], dev).unwrap();
        let got = loss::cross_entropy_ignoring(&logits, &labels, Some(&[1.0, 4.0]), Some(255))
            .unwrap()
            .try_to_vec_f64()
            .unwrap()[0];
        // Voxel 0: logits (1, 0), label 1: -log softmax = log(e + 1) - 0; weighted mean of one.
        assert_close(&[got], &[(1f64.exp() + 1.0).ln()], 1e-12, "ignore index");
        let err = loss::cross_entropy(&logits, &labels, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 255"), "{err}");
    });
}

#[test]
fn new_losses_backward_match_finite_differences() {
    for_each_device(|dev| {
        let logits = rand_on(&[2, 1, 3, 2], 11, dev);
        let head = rand_on(&[2, 1, 3, 2], 12, dev);
        let target = Tensor::from_vec_on(
            (0..12).map(|i| ((i * 7) % 3 == 0) as u8 as f64).collect(),
            &[2, 1, 3, 2],
            dev,
        )
        .unwrap();
        let check = |name: &str, f: &dyn Fn(&[Tensor]) -> hepar::Result<Tensor>, x: &[Tensor]| {
            if let Err(e) = gradcheck(f, x, GradcheckOptions::default()) {
                panic!("{name} on {dev}: {e}");
            }
        };
        check(
            "neg_dice",
            &|t| loss::neg_dice(&t[0], &target, 1.0),
            &[logits.clone()],
        );
        check(
            "deep_supervision_bce_dice",
            &|t| {
                loss::deep_supervision_bce_dice(
                    &t[0],
                    std::slice::from_ref(&t[1]),
                    &target,
                    &DeepSupervisionWeights::default(),
                )
            },
            &[logits.clone(), head.clone()],
        );
        let three = rand_on(&[2, 3, 4], 13, dev);
        let labels =
            Tensor::from_vec_on(vec![0.0, 2.0, 9.0, 1.0, 1.0, 9.0, 2.0, 0.0], &[2, 4], dev)
                .unwrap();
        check(
            "cross_entropy_ignoring",
            &|t| loss::cross_entropy_ignoring(&t[0], &labels, Some(&[1.0, 1.0, 3.0]), Some(9)),
            &[three.clone()],
        );
    });
}

#[test]
fn weights_of_another_width_name_the_first_mismatching_key_with_both_shapes() {
    let file = Fixture::load(&fixture("unet3d_3class_train")).unwrap();
    let FixtureTensors::Train(t) = &file.tensors else {
        panic!("a train fixture");
    };
    // The file holds base 3; a base-4 network cannot take it.
    let model = nn::build(&config(Arch::Unet3d3Class, 4), 0).unwrap();
    let err = nn::load_state_dict(&*model, &t.init, "unet3d_3class_train")
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer1.step.0"), "{err}");
    assert!(
        err.contains("[4, 1, 3, 3, 3]") && err.contains("[3, 1, 3, 3, 3]"),
        "{err}"
    );
    // Another architecture altogether: its keys are missing.
    let other = nn::build(&config(Arch::KerasUnet2d, 3), 0).unwrap();
    let err = nn::load_state_dict(&*other, &t.init, "unet3d_3class_train")
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv1_1"), "{err}");
}

#[test]
fn the_seed_liver_state_dict_loads_by_arch_and_a_wrong_width_is_named() {
    use hepar::infer::model_source::{load_network, ArchChoice};
    let pth = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/seed/liver3d.pth");
    let choice = ArchChoice {
        arch: Some(Arch::CotNext3d),
        ..ArchChoice::default()
    };
    let model = load_network(&pth, &choice).unwrap();
    assert_eq!(model.config().base, 16);
    let wrong = ArchChoice {
        base: Some(8),
        ..choice.clone()
    };
    let err = load_network(&pth, &wrong)
        .err()
        .expect("width 8 cannot hold width-16 weights")
        .to_string();
    assert!(
        err.contains("liver3d.pth") && err.contains("[16, 1, 3, 3, 3]"),
        "{err}"
    );
    let err = load_network(&pth, &ArchChoice::default())
        .err()
        .expect("--arch needed")
        .to_string();
    assert!(err.contains("pass --arch"), "{err}");
}
