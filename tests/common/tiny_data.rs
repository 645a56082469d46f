//! The tiny synthetic dataset the training and prediction tests share: three 16x32x32 phantoms
//! written on first use into `dir/synth`, cached in `dir/cache`, networks at 16x32x32 volumes and
//! 16x16 slices. Tests append their own `[train.*]` / `[model.*]` sections.

use std::path::{Path, PathBuf};

/// A fresh, empty folder for one test (`tag` keeps tests apart, the pid keeps runs apart).
pub fn temp_dir(prefix: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-{prefix}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `[data]`, `[preprocess.*]` and `[train.synthetic]` sections, with `workers` loader threads.
pub fn tiny_data_sections(dir: &Path, workers: usize) -> String {
    let root = dir.join("synth");
    format!(
        r#"
[data]
root = "{root}"
cache_dir = "{cache}"
folds = 3
workers = {workers}
prefetch = 2

[preprocess.stage1]
shape_zyx = [16, 32, 32]

[preprocess.stage2]
slice_shape_yx = [16, 16]

[train.synthetic]
root = "{root}"
cases = 3
shape_zyx = [16, 32, 32]
reduced_inputs = false
"#,
        root = root.display(),
        cache = dir.join("cache").display(),
    )
}

/// `[patches.*]` for the 3D patch-trained networks on the tiny phantoms: 16^3 patches, 2 per
/// volume, queues of 4 (the 3-class U-Net's volumes cropped or padded to 16x32x32).
pub fn tiny_patch_sections() -> &'static str {
    r#"
[patches.unet3d_3class]
crop_or_pad_zyx = [16, 32, 32]
patch_zyx = [16, 16, 16]
queue_length = 4
samples_per_volume = 2

[patches.res3dunet]
patch_zyx = [16, 16, 16]
queue_length = 4
samples_per_volume = 2
"#
}
