//! The four shared golden fixtures load with the settings and shapes their README documents,
//! and a damaged fixture is rejected by key.

mod io_support;

use hepar::io::{
    load_pth, parse_safetensors, read_safetensors, score_tensors, Fixture, FixtureKind,
    FixtureTensors, NetworkMode, StateDictReport, Tolerance,
};
use io_support::{expected_state_dict, fixture};
use std::collections::BTreeSet;

const FILES: [&str; 4] = [
    "liver3d_forward.safetensors",
    "tumor2d_forward.safetensors",
    "train3d_small.safetensors",
    "train2d_small.safetensors",
];

#[test]
fn print_metadata_keys_and_tensor_prefixes() {
    for name in FILES {
        let file = read_safetensors(&fixture(name)).unwrap();
        let prefixes: BTreeSet<&str> = file
            .tensors
            .names()
            .map(|n| n.split('.').next().unwrap_or(n))
            .collect();
        println!("{name}: {} tensors", file.tensors.len());
        println!("  metadata: {:?}", file.metadata);
        println!("  tensor key prefixes: {prefixes:?}");
        for required in [
            "kind",
            "dims",
            "in_channels",
            "n_classes",
            "n_channels",
            "mode",
            "rtol",
            "atol",
        ] {
            assert!(
                file.metadata.contains_key(required),
                "{name} lacks metadata '{required}'"
            );
        }
    }
}

#[test]
fn forward_fixtures_match_the_readme() {
    for (name, dims, cin, n, input_shape, checkpoint) in [
        (
            "liver3d_forward.safetensors",
            3,
            1,
            16,
            vec![1, 1, 32, 32, 32],
            "seed/liver3d.pth",
        ),
        (
            "tumor2d_forward.safetensors",
            2,
            3,
            32,
            vec![2, 3, 64, 64],
            "seed/tumor2d.pth",
        ),
    ] {
        let f = Fixture::load(&fixture(name)).unwrap();
        assert_eq!(f.kind(), FixtureKind::Forward);
        assert_eq!(
            (f.dims, f.in_channels, f.n_classes, f.n_channels),
            (dims, cin, 1, n)
        );
        assert_eq!(f.mode, NetworkMode::Eval);
        assert_eq!(
            f.tolerance,
            Tolerance {
                rtol: 1e-4,
                atol: 1e-6
            }
        );
        assert!(f.train.is_none());
        let ckpt = f.checkpoint.clone().unwrap();
        assert!(ckpt.ends_with(checkpoint), "{}", ckpt.display());
        let FixtureTensors::Forward(t) = &f.tensors else {
            panic!("{name}: not a forward fixture")
        };
        assert_eq!(t.input.shape(), input_shape.as_slice());
        assert_eq!(t.input.dtype(), hepar::io::DType::F32);
        let mut logits_shape = input_shape.clone();
        logits_shape[1] = 1;
        assert_eq!(t.expected_logits.shape(), logits_shape.as_slice());
        assert_eq!(t.expected_logits.dtype(), hepar::io::DType::F64);
        // The checkpoint it names loads and fits the fixture's network.
        let sd = load_pth(&ckpt).unwrap();
        let report = StateDictReport::compare(&expected_state_dict(dims, cin, 1, n), &sd);
        assert!(report.is_ok(), "{name}: {report}");
    }
}

#[test]
fn train_fixtures_match_the_readme() {
    for (name, dims, cin, input_shape) in [
        ("train3d_small.safetensors", 3, 1, vec![2, 1, 16, 16, 16]),
        ("train2d_small.safetensors", 2, 3, vec![2, 3, 32, 32]),
    ] {
        let f = Fixture::load(&fixture(name)).unwrap();
        assert_eq!(f.kind(), FixtureKind::Train);
        assert_eq!(
            (f.dims, f.in_channels, f.n_classes, f.n_channels),
            (dims, cin, 1, 8)
        );
        assert_eq!(f.mode, NetworkMode::Train);
        assert_eq!(
            f.tolerance,
            Tolerance {
                rtol: 1e-3,
                atol: 1e-6
            }
        );
        let train = f.train.clone().unwrap();
        assert_eq!(train.steps, 3);
        assert_eq!(train.t_max, 3);
        assert_eq!(
            (train.lr, train.betas, train.adam_eps),
            (1e-3, (0.9, 0.999), 1e-8)
        );
        assert_eq!(
            (
                train.weight_decay,
                train.eta_min,
                train.bn_momentum,
                train.dice_eps
            ),
            (1e-5, 1e-5, 0.1, 1e-5)
        );
        assert_eq!(
            train.trained_tolerance,
            Tolerance {
                rtol: 1e-2,
                atol: 1e-5
            }
        );
        assert_eq!(
            f.tolerance_for("trained.out.conv.bias"),
            train.trained_tolerance
        );
        assert_eq!(f.tolerance_for("grad.out.conv.bias"), f.tolerance);
        assert!(f.checkpoint.is_none());
        assert!(
            f.extra.is_empty(),
            "{name}: unclassified tensors {:?}",
            f.extra.names().collect::<Vec<_>>()
        );

        let FixtureTensors::Train(t) = &f.tensors else {
            panic!("{name}: not a train fixture")
        };
        assert_eq!(t.input.shape(), input_shape.as_slice());
        let mut target_shape = input_shape.clone();
        target_shape[1] = 1;
        assert_eq!(t.target.shape(), target_shape.as_slice());
        assert!(
            t.target.to_f64_vec().iter().all(|&v| v == 0.0 || v == 1.0),
            "{name}: target is not a 0/1 mask"
        );
        assert_eq!(t.loss.numel(), 1);
        let loss = t.loss.to_f64_vec()[0];
        assert!(loss > 0.0 && loss < 2.0, "{name}: loss {loss}");
        assert_eq!(t.grad_input.shape(), input_shape.as_slice());

        // init.* is the design's state_dict at width 8, without BatchNorm batch counters.
        let expected = expected_state_dict(dims, cin, 1, 8);
        let report = StateDictReport::compare(&expected, &t.init);
        assert!(report.is_ok(), "{name}: {report}");
        assert_eq!(t.init.len(), expected.len());
        assert_eq!(t.trained.len(), t.init.len());
        // Gradients for every parameter (no running statistics), statistics for every BatchNorm.
        let params: BTreeSet<&str> = expected
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !hepar::io::is_batchnorm_statistic(k))
            .collect();
        assert_eq!(t.grads.names().collect::<BTreeSet<_>>(), params);
        assert!(t.stats.names().all(hepar::io::is_batchnorm_statistic));
        assert_eq!(t.stats.len(), expected.len() - params.len());
        for (key, tensor) in t.init.iter() {
            assert_eq!(tensor.dtype(), hepar::io::DType::F64, "init.{key}");
        }

        // Training moved the weights by a visible amount: the scores are far from zero.
        let moved = score_tensors(
            "w",
            t.trained.get("out.conv.weight").unwrap(),
            t.init.get("out.conv.weight").unwrap(),
            f.tolerance,
        )
        .unwrap();
        assert!(
            moved > 1.0,
            "{name}: trained out.conv.weight scores {moved} against init"
        );
        let same = score_tensors(
            "w",
            t.init.get("out.conv.weight").unwrap(),
            t.init.get("out.conv.weight").unwrap(),
            f.tolerance,
        )
        .unwrap();
        assert_eq!(same, 0.0);
    }
}

/// A fixture with a tensor removed or reshaped fails to load, naming the key.
#[test]
fn damaged_fixtures_name_the_offending_key() {
    let path = fixture("train3d_small.safetensors");
    let file = read_safetensors(&path).unwrap();

    let rebuild = |skip: &str, reshape: Option<(&str, Vec<usize>)>, drop_meta: Option<&str>| {
        let mut out = file.clone();
        let mut tensors = hepar::io::NamedTensors::new();
        for (name, t) in file.tensors.iter() {
            if name == skip {
                continue;
            }
            let t = match &reshape {
                Some((k, shape)) if *k == name => {
                    let n: usize = shape.iter().product();
                    hepar::io::HostTensor::from_f64(shape.clone(), t.to_f64_vec()[..n].to_vec())
                        .unwrap()
                }
                _ => t.clone(),
            };
            tensors.insert(name, t).unwrap();
        }
        out.tensors = tensors;
        if let Some(key) = drop_meta {
            out.metadata.remove(key);
        }
        Fixture::from_file(&path, out)
    };

    let err = rebuild("trained.enc2.encoder.1.conv1.0.weight", None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "'init.enc2.encoder.1.conv1.0.weight' has no 'trained.enc2.encoder.1.conv1.0.weight'"
        ),
        "{err}"
    );
    let err = rebuild(
        "",
        Some(("grad.out.conv.weight", vec![1, 4, 1, 1, 1])),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("'grad.out.conv.weight' has shape [1, 4, 1, 1, 1], 'init.out.conv.weight' has [1, 8, 1, 1, 1]"), "{err}");
    let err = rebuild("grad.input", None, None).unwrap_err().to_string();
    assert!(
        err.contains("tensor 'grad.input' is missing") && err.contains("train3d_small.safetensors"),
        "{err}"
    );
    let err = rebuild("", Some(("target", vec![2, 2, 16, 16, 8])), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'target' has shape [2, 2, 16, 16, 8], expected [2, 1, spatial sizes up to the input's [16, 16, 16]]"),
        "{err}"
    );
    let err = rebuild("", None, Some("trained_rtol"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metadata key 'trained_rtol' is missing"),
        "{err}"
    );

    let mut bad_dims = file.clone();
    bad_dims.metadata.insert("dims".into(), "4".into());
    let err = Fixture::from_file(&path, bad_dims).unwrap_err().to_string();
    assert!(
        err.contains("metadata 'dims' = '4': expected 2 or 3"),
        "{err}"
    );

    let bytes = std::fs::read(&path).unwrap();
    let err = parse_safetensors(&path, &bytes[..bytes.len() - 1000])
        .unwrap_err()
        .to_string();
    assert!(err.contains("train3d_small.safetensors"), "{err}");
}
