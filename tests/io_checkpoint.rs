//! Our training checkpoint round-trips real network weights exactly, and a truncated or
//! foreign file gives an error naming it.

mod io_support;

use hepar::io::{load_checkpoint, load_pth, save_checkpoint, OptimizerState, TrainingCheckpoint};
use io_support::fixture;

#[test]
fn seed_weights_round_trip_through_our_checkpoint() {
    let weights = load_pth(&fixture("seed/liver3d.pth")).unwrap();
    let mut optimizer = OptimizerState::default();
    for (name, t) in weights
        .iter()
        .filter(|(n, _)| !hepar::io::is_batchnorm_statistic(n))
    {
        optimizer
            .tensors
            .insert(format!("exp_avg.{name}"), t.clone())
            .unwrap();
        optimizer
            .tensors
            .insert(format!("exp_avg_sq.{name}"), t.clone())
            .unwrap();
    }
    optimizer.scalars.insert("lr".into(), 7.5e-4);
    optimizer.scalars.insert("step".into(), 420.0);
    let checkpoint = TrainingCheckpoint {
        model: weights,
        optimizer,
        epoch: 12,
        step: 420,
        config: serde_json::json!({"model": {"dims": 3, "n_channels": 16}, "train": {"lr": 1e-3}}),
    };
    let dir = std::env::temp_dir().join(format!("hepar-io-ckpt-{}", std::process::id()));
    let path = dir.join("epoch12.safetensors");
    save_checkpoint(&path, &checkpoint).unwrap();
    let back = load_checkpoint(&path).unwrap();
    assert_eq!(back, checkpoint);
    assert_eq!(back.model.len(), 277);
    assert_eq!(hepar::io::parameter_count(&back.model), 310_593);

    let bytes = std::fs::read(&path).unwrap();
    for len in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let err = load_checkpoint(&path)
            .expect_err("a truncated checkpoint loaded")
            .to_string();
        assert!(err.contains("epoch12.safetensors"), "{err}");
    }
    let err = load_checkpoint(&fixture("train3d_small.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a hepar training checkpoint"), "{err}");
    let err = load_checkpoint(&dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
