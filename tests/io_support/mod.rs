//! Shared by the `io_*` integration tests: where the golden fixtures are, and the state_dict
//! layout of `../shared/design/cotnext-unet.md` written out as (name, shape) pairs.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/fixtures` beside the checkout. Missing fixtures fail the test loudly: they are
/// required data, not an optional extra.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    assert!(
        dir.join("README.md").is_file(),
        "golden fixtures not found at {}: the shared data folder must sit beside the checkout \
         (../shared/fixtures with seed/*.pth and *.safetensors); in CI, fetch or mount it there \
         before `cargo test`",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures_dir().join(name);
    assert!(
        path.is_file(),
        "fixture {} is missing from the shared fixtures folder",
        path.display()
    );
    path
}

fn kernel(dims: usize, k: usize) -> Vec<usize> {
    vec![k; dims]
}

fn conv(
    out: &mut Vec<(String, Vec<usize>)>,
    name: &str,
    dims: usize,
    cout: usize,
    cin_per_group: usize,
    k: usize,
) {
    let mut shape = vec![cout, cin_per_group];
    shape.extend(kernel(dims, k));
    out.push((format!("{name}.weight"), shape));
}

fn group_norm(out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize) {
    out.push((format!("{name}.weight"), vec![c]));
    out.push((format!("{name}.bias"), vec![c]));
}

fn batch_norm(out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize) {
    for field in ["weight", "bias", "running_mean", "running_var"] {
        out.push((format!("{name}.{field}"), vec![c]));
    }
}

/// The keys and shapes of one Block (ResNeXt bottleneck with CoT attention) under `prefix`.
pub fn block(
    out: &mut Vec<(String, Vec<usize>)>,
    prefix: &str,
    dims: usize,
    cin: usize,
    cout: usize,
) {
    let m = cout / 2;
    conv(out, &format!("{prefix}.conv1.0"), dims, m, cin, 1);
    group_norm(out, &format!("{prefix}.conv1.1"), m);
    conv(out, &format!("{prefix}.conv2.0"), dims, m, m / 4, 3);
    group_norm(out, &format!("{prefix}.conv2.1"), m);
    let cot = format!("{prefix}.conv3.0");
    conv(out, &format!("{cot}.key_embed.0"), dims, m, m / 4, 3);
    batch_norm(out, &format!("{cot}.key_embed.1"), m);
    conv(out, &format!("{cot}.value_embed.0"), dims, m, m, 1);
    batch_norm(out, &format!("{cot}.value_embed.1"), m);
    conv(
        out,
        &format!("{cot}.attention_embed.0"),
        dims,
        2 * m / 4,
        2 * m,
        1,
    );
    batch_norm(out, &format!("{cot}.attention_embed.1"), 2 * m / 4);
    conv(
        out,
        &format!("{cot}.attention_embed.3"),
        dims,
        9 * m,
        2 * m / 4,
        1,
    );
    out.push((format!("{cot}.attention_embed.3.bias"), vec![9 * m]));
    group_norm(out, &format!("{prefix}.conv3.1"), m);
    conv(out, &format!("{prefix}.conv4.0"), dims, cout, m, 1);
    group_norm(out, &format!("{prefix}.conv4.1"), cout);
    if cin != cout {
        conv(out, &format!("{prefix}.residual.0"), dims, cout, cin, 1);
        group_norm(out, &format!("{prefix}.residual.1"), cout);
    }
}

/// Every parameter and BatchNorm running statistic of the CoTNeXt U-Net, in PyTorch's order.
pub fn expected_state_dict(
    dims: usize,
    cin: usize,
    classes: usize,
    n: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    conv(&mut out, "conv.double_conv.0", dims, n, cin, 3);
    group_norm(&mut out, "conv.double_conv.1", n);
    conv(&mut out, "conv.double_conv.3", dims, n, n, 3);
    group_norm(&mut out, "conv.double_conv.4", n);
    let encoders = [(n, 2 * n), (2 * n, 4 * n), (4 * n, 8 * n), (8 * n, 8 * n)];
    for (i, (cin, cout)) in encoders.into_iter().enumerate() {
        block(
            &mut out,
            &format!("enc{}.encoder.1", i + 1),
            dims,
            cin,
            cout,
        );
    }
    let decoders = [(16 * n, 4 * n), (8 * n, 2 * n), (4 * n, n), (2 * n, n)];
    for (i, (cin, cout)) in decoders.into_iter().enumerate() {
        block(&mut out, &format!("dec{}.conv", i + 1), dims, cin, cout);
    }
    conv(&mut out, "out.conv", dims, classes, n, 1);
    out.push(("out.conv.bias".to_string(), vec![classes]));
    out
}
