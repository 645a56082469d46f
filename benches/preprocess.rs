//! Stage-1 preprocessing speed: read a 512x512x200 int16 CT volume, clip, z-score and resize it to
//! 128^3 (target: under 2 s on 2 cores). Measured for .nii and .nii.gz inputs, and for the resize
//! alone.

use criterion::{criterion_group, criterion_main, Criterion};
use hepar::data::config::Stage1Config;
use hepar::data::nifti::{write_nifti, NiftiDataType, NiftiHeader};
use hepar::data::preprocess;
use hepar::data::resize::{resize_zyx, Interpolation};
use hepar::data::Volume;
use std::path::PathBuf;

const SHAPE_ZYX: [usize; 3] = [200, 512, 512];

/// A CT-like int16 volume (air, a body ellipse of soft tissue, some bone), written once.
fn input_files() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join("hepar-bench-preprocess-v2");
    let (nii, gz) = (dir.join("ct.nii"), dir.join("ct.nii.gz"));
    if nii.is_file() && gz.is_file() {
        return (nii, gz);
    }
    let [d, h, w] = SHAPE_ZYX;
    let data: Vec<f32> = (0..d * h * w)
        .map(|i| {
            let (y, x) = ((i / w) % h, i % w);
            let (dy, dx) = ((y as f32 - 256.0) / 200.0, (x as f32 - 256.0) / 240.0);
            let r = dy * dy + dx * dx;
            // Scanner-like noise (a hash of the index) so gzip compresses as poorly as on real CT.
            let noise = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as f32 - 32.0;
            if r > 1.0 {
                -1000.0 + noise * 0.2
            } else if r < 0.02 {
                700.0 + noise
            } else {
                40.0 + noise
            }
        })
        .collect();
    let mut header = NiftiHeader::new(&[w, h, d], NiftiDataType::I16);
    header.pixdim[1..4].copy_from_slice(&[0.7, 0.7, 2.5]);
    write_nifti(&nii, &header, &data).expect("write bench input");
    write_nifti(&gz, &header, &data).expect("write bench input");
    (nii, gz)
}

fn bench(c: &mut Criterion) {
    let (nii, gz) = input_files();
    let cfg = Stage1Config::default();
    let mut group = c.benchmark_group("stage1_512x512x200_to_128cubed");
    group.sample_size(10);
    group.bench_function("read_nii_clip_normalise_resize", |b| {
        b.iter(|| {
            let v = Volume::read(&nii).unwrap();
            preprocess::stage1(v, None, &cfg).unwrap()
        })
    });
    group.bench_function("read_nii_gz_clip_normalise_resize", |b| {
        b.iter(|| {
            let v = Volume::read(&gz).unwrap();
            preprocess::stage1(v, None, &cfg).unwrap()
        })
    });
    let volume = Volume::read(&nii).unwrap();
    group.bench_function("resize_only", |b| {
        b.iter(|| {
            resize_zyx(
                &volume.data,
                SHAPE_ZYX,
                [128, 128, 128],
                Interpolation::Linear,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
