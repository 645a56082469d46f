//! The seed's PyTorch checkpoints load directly, follow the design's key layout, and damaged
//! copies give errors (never panics, never silently different weights).

mod io_support;

use hepar::io::{load_pth, parameter_count, parse_pth, DType, StateDictReport};
use io_support::{expected_state_dict, fixture};

#[test]
fn liver3d_seed_loads_with_the_documented_counts_and_names() {
    let path = fixture("seed/liver3d.pth");
    let sd = load_pth(&path).unwrap();
    assert_eq!(sd.len(), 277);
    assert_eq!(parameter_count(&sd), 310_593);
    assert_eq!(
        sd.get("conv.double_conv.0.weight").unwrap().shape(),
        &[16, 1, 3, 3, 3]
    );
    assert_eq!(
        sd.get("out.conv.weight").unwrap().shape(),
        &[1, 16, 1, 1, 1]
    );
    assert_eq!(sd.get("out.conv.bias").unwrap().shape(), &[1]);
    for (name, t) in sd.iter() {
        let expected = if name.ends_with(".num_batches_tracked") {
            DType::I64
        } else {
            DType::F32
        };
        assert_eq!(t.dtype(), expected, "{name}");
        assert!(
            t.to_f32_vec().iter().all(|v| v.is_finite()),
            "{name} holds non-finite values"
        );
    }
    let report = StateDictReport::compare(&expected_state_dict(3, 1, 1, 16), &sd);
    assert!(report.is_ok(), "{report}");

    println!("keys of one Block (enc1.encoder.1, 16 -> 32 channels, with residual):");
    for (name, t) in sd.iter().filter(|(n, _)| n.starts_with("enc1.encoder.1.")) {
        println!("  {name} {:?} {}", t.shape(), t.dtype());
    }
}

#[test]
fn tumor2d_seed_loads_with_the_documented_counts_and_names() {
    let sd = load_pth(&fixture("seed/tumor2d.pth")).unwrap();
    assert_eq!(parameter_count(&sd), 818_305);
    assert_eq!(sd.len(), 277);
    assert_eq!(
        sd.get("conv.double_conv.0.weight").unwrap().shape(),
        &[32, 3, 3, 3]
    );
    assert_eq!(sd.get("out.conv.bias").unwrap().shape(), &[1]);
    let report = StateDictReport::compare(&expected_state_dict(2, 3, 1, 32), &sd);
    assert!(report.is_ok(), "{report}");
}

#[test]
fn seed_weights_are_the_stored_values() {
    // The first storage entry of the archive holds `conv.double_conv.0.weight` contiguously;
    // the loader's values must be exactly those little-endian floats.
    let path = fixture("seed/liver3d.pth");
    let bytes = std::fs::read(&path).unwrap();
    let sd = parse_pth(&path, &bytes).unwrap();
    let w = sd.get("conv.double_conv.0.weight").unwrap().to_f32_vec();
    let raw: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let found = bytes
        .windows(raw.len())
        .position(|window| window == raw.as_slice());
    assert!(
        found.is_some(),
        "the loaded weights do not appear verbatim in the file"
    );
    let mean_abs = w.iter().map(|v| v.abs()).sum::<f32>() / w.len() as f32;
    assert!(
        mean_abs > 1e-4 && mean_abs < 10.0,
        "implausible trained weights: mean |w| = {mean_abs}"
    );
}

#[test]
fn other_width_or_dimension_is_reported_by_key_and_shape() {
    let path = fixture("seed/liver3d.pth");
    let sd = load_pth(&path).unwrap();
    let err = StateDictReport::compare(&expected_state_dict(3, 1, 1, 8), &sd)
        .into_result(&path.display().to_string())
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("liver3d.pth"), "{err}");
    assert!(
        err.contains("key 'conv.double_conv.0.weight' has shape [16, 1, 3, 3, 3], the model expects [8, 1, 3, 3, 3]"),
        "{err}"
    );
    let err = StateDictReport::compare(&expected_state_dict(2, 3, 1, 32), &sd)
        .into_result("x")
        .unwrap_err();
    assert!(
        err.to_string().contains("key 'conv.double_conv.0.weight' has shape [16, 1, 3, 3, 3], the model expects [32, 3, 3, 3]"),
        "{err}"
    );
    let mut partial = hepar::io::NamedTensors::new();
    for (name, t) in sd.iter().filter(|(n, _)| !n.starts_with("dec4.")) {
        partial.insert(name, t.clone()).unwrap();
    }
    let report = StateDictReport::compare(&expected_state_dict(3, 1, 1, 16), &partial);
    assert_eq!(
        report.missing.first().map(String::as_str),
        Some("dec4.conv.conv1.0.weight")
    );
    assert!(report.unexpected.is_empty() && report.mismatched.is_empty());
}

#[test]
fn truncated_seed_checkpoint_is_an_error_naming_the_file() {
    let path = fixture("seed/liver3d.pth");
    let bytes = std::fs::read(&path).unwrap();
    let step = bytes.len() / 97;
    for len in (0..bytes.len())
        .step_by(step)
        .chain([bytes.len() - 1, bytes.len() - 22, 22])
    {
        let err = parse_pth(&path, &bytes[..len]).expect_err("a truncated checkpoint loaded");
        assert!(err.to_string().contains("liver3d.pth"), "{err}");
    }
}

#[test]
fn flipped_bytes_never_panic_and_never_change_the_weights_silently() {
    let path = fixture("seed/liver3d.pth");
    let bytes = std::fs::read(&path).unwrap();
    let original = parse_pth(&path, &bytes).unwrap();
    // The archive starts with data.pkl's local header; its content follows name and extra field.
    let name_len = u16::from_le_bytes([bytes[26], bytes[27]]) as usize;
    let extra_len = u16::from_le_bytes([bytes[28], bytes[29]]) as usize;
    let pickle_start = 30 + name_len + extra_len;
    let positions: Vec<usize> = (0..bytes.len())
        .step_by(bytes.len() / 150)
        // The local header and the pickle's first bytes, and the central directory, densely.
        .chain(0..pickle_start + 200)
        .chain(bytes.len() - 400..bytes.len())
        .collect();
    let mut detected_in_pickle = 0;
    for &pos in &positions {
        let mut damaged = bytes.clone();
        damaged[pos] ^= 0x24;
        match parse_pth(&path, &damaged) {
            // Only fields the reader does not use (timestamps, versions, padding) may change.
            Ok(sd) => {
                assert!(
                    sd == original,
                    "flip at byte {pos} loaded different weights without an error"
                );
                assert!(
                    pos < pickle_start || pos >= pickle_start + 200,
                    "flip in the pickle at {pos} went unnoticed"
                );
            }
            Err(e) => {
                assert!(e.to_string().contains("liver3d.pth"), "{e}");
                detected_in_pickle += (pos >= pickle_start && pos < pickle_start + 200) as usize;
            }
        }
    }
    assert_eq!(detected_in_pickle, 200);
}
