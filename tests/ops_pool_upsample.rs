//! Pooling and resampling: forward against naive loops and PyTorch's documented values,
//! backward against finite differences.

mod common;

use common::{assert_close, for_each_device, rand_on};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::ops::pool::PoolOptions;
use hepar::tensor::Tensor;

/// Naive 2D pooling over [N, C, H, W] with -inf (max) or zero (avg, count_include_pad) padding.
fn naive_pool2d(x: &[f64], shape: [usize; 4], k: usize, s: usize, p: usize, max: bool) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut out = vec![];
    for plane in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut vals = vec![];
                for a in 0..k {
                    for b in 0..k {
                        let (y, z) = (
                            (i * s + a) as isize - p as isize,
                            (j * s + b) as isize - p as isize,
                        );
                        let inside = y >= 0 && z >= 0 && (y as usize) < h && (z as usize) < w;
                        vals.push(if inside {
                            Some(x[plane * h * w + y as usize * w + z as usize])
                        } else {
                            None
                        });
                    }
                }
                out.push(if max {
                    vals.iter()
                        .flatten()
                        .cloned()
                        .fold(f64::NEG_INFINITY, f64::max)
                } else {
                    vals.iter().map(|v| v.unwrap_or(0.0)).sum::<f64>() / (k * k) as f64
                });
            }
        }
    }
    out
}

#[test]
fn pooling_matches_naive_loops() {
    for_each_device(|dev| {
        let x = rand_on(&[2, 3, 7, 9], 1, dev);
        for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 1)] {
            let o = PoolOptions {
                kernel: vec![k],
                stride: vec![s],
                padding: vec![p],
                dilation: vec![1],
            };
            let expected = naive_pool2d(&x.to_vec_f64(), [2, 3, 7, 9], k, s, p, true);
            assert_close(
                &x.max_pool(&o).unwrap().to_vec_f64(),
                &expected,
                0.0,
                "max_pool",
            );
            let expected = naive_pool2d(&x.to_vec_f64(), [2, 3, 7, 9], k, s, p, false);
            assert_close(
                &x.avg_pool(&o, true).unwrap().to_vec_f64(),
                &expected,
                1e-12,
                "avg_pool",
            );
        }
        // 3D, floor on odd sizes: 5x7x6 with window 2 -> 2x3x3.
        let x3 = rand_on(&[1, 2, 5, 7, 6], 2, dev);
        let y = x3.max_pool(&PoolOptions::new(vec![2])).unwrap();
        assert_eq!(y.shape(), &[1, 2, 2, 3, 3]);
        let xv = x3.to_vec_f64();
        let mut m = f64::NEG_INFINITY;
        for d in 2..4 {
            for h in 2..4 {
                for w in 4..6 {
                    m = m.max(xv[(5 * 7 * 6) + (d * 7 + h) * 6 + w]);
                }
            }
        }
        assert_eq!(y.to_vec_f64()[18 + (3 + 1) * 3 + 2], m);
        // count_include_pad = false divides by the in-bounds taps only.
        let ones = Tensor::ones(&[1, 1, 3, 3], hepar::DType::F64, dev).unwrap();
        let o = PoolOptions {
            kernel: vec![3],
            stride: vec![1],
            padding: vec![1],
            dilation: vec![1],
        };
        assert_eq!(ones.avg_pool(&o, false).unwrap().to_vec_f64(), vec![1.0; 9]);
        assert_close(
            &ones.avg_pool(&o, true).unwrap().to_vec_f64()[..1],
            &[4.0 / 9.0],
            1e-12,
            "corner with pad",
        );
        assert!(
            ones.max_pool(&PoolOptions::new(vec![4])).is_err(),
            "window larger than input"
        );
    });
}

#[test]
fn upsampling_follows_pytorch_index_conventions() {
    for_each_device(|dev| {
        let x = Tensor::from_vec_on(vec![1.0f64, 2.0], &[1, 1, 2], dev).unwrap();
        assert_close(
            &x.upsample_linear(&[4], false).unwrap().to_vec_f64(),
            &[1.0, 1.25, 1.75, 2.0],
            1e-12,
            "linear",
        );
        assert_close(
            &x.upsample_linear(&[4], true).unwrap().to_vec_f64(),
            &[1.0, 4.0 / 3.0, 5.0 / 3.0, 2.0],
            1e-12,
            "linear aligned",
        );
        let x = Tensor::from_vec_on(vec![1.0f64, 2.0, 3.0], &[1, 1, 3], dev).unwrap();
        assert_eq!(
            x.upsample_nearest(&[5]).unwrap().to_vec_f64(),
            vec![1.0, 1.0, 2.0, 2.0, 3.0]
        );
        // Trilinear is separable: compare with three 1D passes done by hand on a random volume.
        let v = rand_on(&[1, 1, 3, 4, 2], 3, dev);
        let up = v.upsample_linear(&[5, 7, 4], true).unwrap();
        let w1 = |i: usize, o: usize, len_in: usize, len_out: usize| -> f64 {
            let src = o as f64 * (len_in - 1) as f64 / (len_out - 1) as f64;
            let i0 = src.floor() as usize;
            if i == i0 {
                1.0 - (src - i0 as f64)
            } else if i == (i0 + 1).min(len_in - 1) {
                src - i0 as f64
            } else {
                0.0
            }
        };
        let vv = v.to_vec_f64();
        let uv = up.to_vec_f64();
        for (od, oh, ow) in [(0, 0, 0), (2, 3, 1), (4, 6, 3), (1, 5, 2)] {
            let mut expected = 0.0;
            for d in 0..3 {
                for h in 0..4 {
                    for w in 0..2 {
                        expected += vv[(d * 4 + h) * 2 + w]
                            * w1(d, od, 3, 5)
                            * w1(h, oh, 4, 7)
                            * w1(w, ow, 2, 4);
                    }
                }
            }
            assert!((uv[(od * 7 + oh) * 4 + ow] - expected).abs() < 1e-12);
        }
        assert!(
            v.upsample_linear(&[5, 7], true).is_err(),
            "size per spatial axis"
        );
    });
}

#[test]
fn pool_and_upsample_backward() {
    for_each_device(|dev| {
        let o = GradcheckOptions::default();
        let pool = PoolOptions {
            kernel: vec![3],
            stride: vec![2],
            padding: vec![1],
            dilation: vec![1],
        };
        gradcheck(
            |t| t[0].max_pool(&pool),
            &[rand_on(&[2, 2, 5, 6], 4, dev)],
            o,
        )
        .unwrap();
        gradcheck(
            |t| t[0].avg_pool(&pool, true),
            &[rand_on(&[2, 2, 5, 6], 5, dev)],
            o,
        )
        .unwrap();
        gradcheck(
            |t| t[0].avg_pool(&pool, false),
            &[rand_on(&[1, 2, 3, 5, 4], 6, dev)],
            o,
        )
        .unwrap();
        gradcheck(
            |t| t[0].max_pool(&PoolOptions::new(vec![2])),
            &[rand_on(&[1, 2, 5, 4, 3], 7, dev)],
            o,
        )
        .unwrap();
        for align in [true, false] {
            gradcheck(
                |t| t[0].upsample_linear(&[7, 5, 4], align),
                &[rand_on(&[1, 2, 3, 4, 2], 8, dev)],
                o,
            )
            .unwrap();
            gradcheck(
                |t| t[0].upsample_linear(&[6, 9], align),
                &[rand_on(&[2, 1, 3, 4], 9, dev)],
                o,
            )
            .unwrap();
        }
        gradcheck(
            |t| t[0].upsample_nearest(&[5, 3]),
            &[rand_on(&[1, 2, 3, 2], 10, dev)],
            o,
        )
        .unwrap();
    });
}
