//! Every op's forward pass against a naive reference loop, on odd shapes, non-contiguous views
//! and broadcasting.

mod common;

use common::reference as naive;
use common::{assert_close, for_each_device, rand_on};
use hepar::ops::loss;
use hepar::tensor::{DType, Tensor};

#[test]
fn unary_ops_match_scalar_formulas_on_a_permuted_view() {
    for_each_device(|dev| {
        let x = rand_on(&[3, 5, 7], 1, dev).permute(&[2, 0, 1]).unwrap();
        assert!(!x.is_contiguous());
        let xs = x.to_vec_f64();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let cases: Vec<(&str, Tensor, Box<dyn Fn(f64) -> f64>)> = vec![
            ("exp", x.exp().unwrap(), Box::new(|v: f64| v.exp())),
            ("abs", x.abs().unwrap(), Box::new(|v: f64| v.abs())),
            ("relu", x.relu().unwrap(), Box::new(|v: f64| v.max(0.0))),
            (
                "leaky_relu",
                x.leaky_relu(0.1).unwrap(),
                Box::new(|v: f64| if v > 0.0 { v } else { 0.1 * v }),
            ),
            ("sigmoid", x.sigmoid().unwrap(), Box::new(sig)),
            (
                "silu",
                x.silu().unwrap(),
                Box::new(move |v: f64| v * sig(v)),
            ),
            ("tanh", x.tanh().unwrap(), Box::new(|v: f64| v.tanh())),
            (
                "clamp",
                x.clamp(-0.5, 0.3).unwrap(),
                Box::new(|v: f64| v.clamp(-0.5, 0.3)),
            ),
            (
                "affine",
                x.affine(2.5, -1.0).unwrap(),
                Box::new(|v: f64| 2.5 * v - 1.0),
            ),
            (
                "log",
                x.abs().unwrap().log().unwrap(),
                Box::new(|v: f64| v.abs().ln()),
            ),
            (
                "sqrt",
                x.abs().unwrap().sqrt().unwrap(),
                Box::new(|v: f64| v.abs().sqrt()),
            ),
            (
                "powf",
                x.abs().unwrap().powf(1.7).unwrap(),
                Box::new(|v: f64| v.abs().powf(1.7)),
            ),
        ];
        for (name, got, f) in cases {
            let expected: Vec<f64> = xs.iter().map(|&v| f(v)).collect();
            assert_close(&got.to_vec_f64(), &expected, 1e-12, name);
        }
        // GELU against its definition with erf from a tabulated value.
        let g = Tensor::from_vec_on(vec![1.0f64, -0.5, 2.0], &[3], dev)
            .unwrap()
            .gelu()
            .unwrap()
            .to_vec_f64();
        assert_close(
            &g,
            &[0.8413447460685429, -0.15426876936299344, 1.9544997361036416],
            1e-12,
            "gelu",
        );
    });
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    for_each_device(|dev| {
        let shapes = [
            (vec![4, 1, 3], vec![5, 1]),
            (vec![2, 3], vec![2, 3]),
            (vec![1], vec![3, 2, 2]),
            (vec![6, 5], vec![5]),
            // Rows of 8 or more take the row-wise broadcast path; the last one is large enough to run in parallel.
            (vec![2, 3, 9], vec![3, 1]),
            (vec![2, 1, 10], vec![4, 10]),
            (vec![4, 16, 32, 33], vec![1, 16, 1, 1]),
        ];
        for (i, (sa, sb)) in shapes.iter().enumerate() {
            let a = rand_on(sa, 10 + i as u64, dev);
            let b = rand_on(sb, 20 + i as u64, dev)
                .abs()
                .unwrap()
                .add_scalar(0.5)
                .unwrap();
            let (av, bv) = (a.to_vec_f64(), b.to_vec_f64());
            type BinFn = fn(f64, f64) -> f64;
            let ops: [(&str, Tensor, BinFn); 6] = [
                ("add", a.add(&b).unwrap(), |x, y| x + y),
                ("sub", a.sub(&b).unwrap(), |x, y| x - y),
                ("mul", a.mul(&b).unwrap(), |x, y| x * y),
                ("div", a.div(&b).unwrap(), |x, y| x / y),
                ("maximum", a.maximum(&b).unwrap(), f64::max),
                ("minimum", a.minimum(&b).unwrap(), f64::min),
            ];
            for (name, got, f) in ops {
                let (expected, shape) = naive::broadcast_binary(&av, sa, &bv, sb, f);
                assert_eq!(got.shape(), shape.as_slice(), "{name} shape");
                assert_close(&got.to_vec_f64(), &expected, 1e-12, name);
            }
        }
        // A transposed operand.
        for (r, c) in [(3, 4), (11, 9)] {
            let a = rand_on(&[r, c], 1, dev).transpose(0, 1).unwrap();
            let b = rand_on(&[c, r], 2, dev);
            let (expected, _) = naive::broadcast_binary(
                &a.to_vec_f64(),
                &[c, r],
                &b.to_vec_f64(),
                &[c, r],
                |x, y| x * y,
            );
            assert_close(
                &a.mul(&b).unwrap().to_vec_f64(),
                &expected,
                1e-12,
                "mul transposed",
            );
        }
    });
}

#[test]
fn reductions_match_naive_loops_over_any_axes() {
    for_each_device(|dev| {
        let shape = [3, 4, 5, 2];
        let x = rand_on(&shape, 3, dev);
        let xv = x.to_vec_f64();
        for axes in [vec![0], vec![1, 3], vec![0, 1, 2, 3], vec![2]] {
            let count: usize = axes.iter().map(|&a| shape[a]).product();
            let sum = naive::reduce(&xv, &shape, &axes, 0.0, |a, b| a + b);
            assert_close(
                &x.sum_axes(&axes, true).unwrap().to_vec_f64(),
                &sum,
                1e-12,
                "sum",
            );
            let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
            assert_close(
                &x.mean_axes(&axes, false).unwrap().to_vec_f64(),
                &mean,
                1e-12,
                "mean",
            );
            let max = naive::reduce(&xv, &shape, &axes, f64::NEG_INFINITY, f64::max);
            assert_close(
                &x.max_axes(&axes, true).unwrap().to_vec_f64(),
                &max,
                0.0,
                "max",
            );
        }
        // Reduction of a non-contiguous view.
        let t = x.permute(&[3, 1, 0, 2]).unwrap();
        let tv = t.to_vec_f64();
        let expected = naive::reduce(&tv, &[2, 4, 3, 5], &[1, 2], 0.0, |a, b| a + b);
        assert_close(
            &t.sum_axes(&[1, 2], true).unwrap().to_vec_f64(),
            &expected,
            1e-12,
            "sum of permuted",
        );
    });
}

#[test]
fn large_reductions_take_the_parallel_paths_correctly() {
    for_each_device(|dev| {
        // (shape, axes): a k*k-style middle-axis mean, per-row sums, a full sum, a batch max.
        let cases: [(Vec<usize>, Vec<usize>); 4] = [
            (vec![2, 9, 40_000], vec![1]),
            (vec![3, 50, 1_000], vec![1, 2]),
            (vec![200_000], vec![0]),
            (vec![5, 70_000], vec![0]),
        ];
        for (i, (shape, axes)) in cases.iter().enumerate() {
            let x = rand_on(shape, 30 + i as u64, dev);
            let xv = x.to_vec_f64();
            let sum = naive::reduce(&xv, shape, axes, 0.0, |a, b| a + b);
            assert_close(
                &x.sum_axes(axes, true).unwrap().to_vec_f64(),
                &sum,
                1e-10,
                "large sum",
            );
            let max = naive::reduce(&xv, shape, axes, f64::NEG_INFINITY, f64::max);
            assert_close(
                &x.max_axes(axes, true).unwrap().to_vec_f64(),
                &max,
                0.0,
                "large max",
            );
            let x32 = x.to_dtype(DType::F32).unwrap();
            assert_close(
                &x32.sum_axes(axes, true).unwrap().to_vec_f64(),
                &sum,
                1e-4,
                "large f32 sum",
            );
        }
    });
}

#[test]
fn softmax_and_log_softmax_along_every_axis() {
    for_each_device(|dev| {
        let shape = [2, 3, 5];
        let x = rand_on(&shape, 4, dev);
        for axis in 0..3 {
            let expected = naive::softmax(&x.to_vec_f64(), &shape, axis, false);
            assert_close(
                &x.softmax(axis as isize).unwrap().to_vec_f64(),
                &expected,
                1e-12,
                "softmax",
            );
            let expected = naive::softmax(&x.to_vec_f64(), &shape, axis, true);
            assert_close(
                &x.log_softmax(axis as isize).unwrap().to_vec_f64(),
                &expected,
                1e-12,
                "log_softmax",
            );
        }
    });
}

#[test]
fn softmax_along_middle_axes_of_large_tensors() {
    for_each_device(|dev| {
        // Inner runs of 20 and 60 values take the vectorised middle-axis path.
        let shape = [2, 3, 4, 5];
        let x = rand_on(&shape, 14, dev).mul_scalar(3.0).unwrap();
        for axis in [0usize, 1] {
            for log in [false, true] {
                let expected = naive::softmax(&x.to_vec_f64(), &shape, axis, log);
                let got = if log {
                    x.log_softmax(axis as isize)
                } else {
                    x.softmax(axis as isize)
                }
                .unwrap();
                assert_close(&got.to_vec_f64(), &expected, 1e-12, "middle-axis softmax");
            }
        }
        let x32 = Tensor::randn(&[2, 3, 8, 8, 8], DType::F32, 15)
            .to_device(dev)
            .unwrap();
        let expected = naive::softmax(&x32.to_vec_f64(), &[2, 3, 8, 8, 8], 1, false);
        assert_close(
            &x32.softmax(1).unwrap().to_vec_f64(),
            &expected,
            1e-6,
            "channel softmax f32",
        );
    });
}

#[test]
fn matmul_and_batched_broadcast_matmul() {
    for_each_device(|dev| {
        let a = rand_on(&[2, 5, 7], 5, dev);
        let b = rand_on(&[7, 3], 6, dev);
        let got = a.matmul(&b.unsqueeze(0).unwrap()).unwrap();
        let b2: Vec<f64> = [b.to_vec_f64(), b.to_vec_f64()].concat();
        assert_close(
            &got.to_vec_f64(),
            &naive::matmul(&a.to_vec_f64(), &b2, 2, 5, 7, 3),
            1e-12,
            "batched matmul",
        );
        // Transposed operands are read in place.
        let at = rand_on(&[7, 5], 7, dev).transpose(0, 1).unwrap();
        let got = at.matmul(&b).unwrap();
        assert_close(
            &got.to_vec_f64(),
            &naive::matmul(&at.to_vec_f64(), &b.to_vec_f64(), 1, 5, 7, 3),
            1e-12,
            "transposed matmul",
        );
        assert!(a.matmul(&rand_on(&[6, 3], 1, dev)).is_err());
    });
}

#[test]
fn group_norm_and_batch_norm_match_reference() {
    for_each_device(|dev| {
        let (n, c, s) = (2, 6, 5 * 3);
        let x = rand_on(&[n, c, 5, 3], 8, dev);
        let w = rand_on(&[c], 9, dev);
        let b = rand_on(&[c], 10, dev);
        let got = x.group_norm(3, Some(&w), Some(&b), 1e-5).unwrap();
        let expected = naive::group_norm(
            &x.to_vec_f64(),
            n,
            c,
            s,
            3,
            &w.to_vec_f64(),
            &b.to_vec_f64(),
            1e-5,
        );
        assert_close(&got.to_vec_f64(), &expected, 1e-10, "group_norm");
        let fused = x.group_norm_silu(3, Some(&w), Some(&b), 1e-5).unwrap();
        let silu: Vec<f64> = expected.iter().map(|&v| v / (1.0 + (-v).exp())).collect();
        assert_close(&fused.to_vec_f64(), &silu, 1e-10, "group_norm_silu");
        // f32 on a large group exercises the blocked lane sums.
        let big = Tensor::randn(&[1, 4, 3000], DType::F32, 21)
            .to_device(dev)
            .unwrap()
            .affine(3.0, 5.0)
            .unwrap();
        let got = big.group_norm(2, None, None, 1e-5).unwrap().to_vec_f64();
        let ones = vec![1.0; 4];
        let zeros = vec![0.0; 4];
        let expected = naive::group_norm(&big.to_vec_f64(), 1, 4, 3000, 2, &ones, &zeros, 1e-5);
        assert_close(&got, &expected, 2e-5, "group_norm f32");

        let rm = Tensor::zeros(&[c], DType::F64, dev).unwrap();
        let rv = Tensor::ones(&[c], DType::F64, dev).unwrap();
        let got = x
            .batch_norm(Some(&w), Some(&b), &rm, &rv, true, 0.1, 1e-5)
            .unwrap();
        let (expected, mean, var) = naive::batch_norm_train(
            &x.to_vec_f64(),
            n,
            c,
            s,
            &w.to_vec_f64(),
            &b.to_vec_f64(),
            1e-5,
        );
        assert_close(&got.to_vec_f64(), &expected, 1e-10, "batch_norm train");
        let expected_rm: Vec<f64> = mean.iter().map(|m| 0.1 * m).collect();
        let expected_rv: Vec<f64> = var.iter().map(|v| 0.9 + 0.1 * v).collect();
        assert_close(&rm.to_vec_f64(), &expected_rm, 1e-12, "running mean");
        assert_close(
            &rv.to_vec_f64(),
            &expected_rv,
            1e-12,
            "running var (unbiased)",
        );
        // Eval mode uses the running statistics.
        let got = x
            .batch_norm(Some(&w), Some(&b), &rm, &rv, false, 0.1, 1e-5)
            .unwrap();
        let xv = x.to_vec_f64();
        let expected: Vec<f64> = (0..xv.len())
            .map(|i| {
                let ch = (i / s) % c;
                (xv[i] - expected_rm[ch]) / (expected_rv[ch] + 1e-5).sqrt() * w.to_vec_f64()[ch]
                    + b.to_vec_f64()[ch]
            })
            .collect();
        assert_close(&got.to_vec_f64(), &expected, 1e-10, "batch_norm eval");
    });
}

#[test]
fn cat_split_pad_narrow_reshape() {
    for_each_device(|dev| {
        let a = rand_on(&[2, 3, 4], 11, dev);
        let b = rand_on(&[2, 1, 4], 12, dev);
        let c = Tensor::cat(&[a.clone(), b.clone()], 1).unwrap();
        assert_eq!(c.shape(), &[2, 4, 4]);
        let (av, bv, cv) = (a.to_vec_f64(), b.to_vec_f64(), c.to_vec_f64());
        for n in 0..2 {
            for ch in 0..4 {
                for k in 0..4 {
                    let expected = if ch < 3 {
                        av[(n * 3 + ch) * 4 + k]
                    } else {
                        bv[n * 4 + k]
                    };
                    assert_eq!(cv[(n * 4 + ch) * 4 + k], expected);
                }
            }
        }
        let parts = c.split(1, &[3, 1]).unwrap();
        assert_eq!(parts[0].to_vec_f64(), av);
        assert_eq!(parts[1].to_vec_f64(), bv);
        assert!(Tensor::cat(&[a.clone(), rand_on(&[3, 3, 4], 1, dev)], 1).is_err());

        let p = a.pad(&[(1, 0), (2, 1)], -3.0).unwrap();
        assert_eq!(p.shape(), &[2, 4, 7]);
        let pv = p.to_vec_f64();
        for n in 0..2 {
            for i in 0..4 {
                for j in 0..7 {
                    let expected = if i >= 1 && (2..6).contains(&j) {
                        av[(n * 3 + i - 1) * 4 + j - 2]
                    } else {
                        -3.0
                    };
                    assert_eq!(pv[(n * 4 + i) * 7 + j], expected);
                }
            }
        }
        let narrow = a.narrow(2, 1, 2).unwrap();
        let expected: Vec<f64> = (0..2 * 3)
            .flat_map(|r| [av[r * 4 + 1], av[r * 4 + 2]])
            .collect();
        assert_eq!(narrow.to_vec_f64(), expected);
        assert_eq!(narrow.reshape(&[12]).unwrap().to_vec_f64(), expected);
        assert!(a.reshape(&[5, 5]).is_err());
    });
}

#[test]
fn dtypes_convert_and_storage_types_refuse_compute() {
    for_each_device(|dev| {
        let x = Tensor::from_vec_on(vec![1.5f32, -2.25, 65504.0, 1e-3], &[4], dev).unwrap();
        let h = x.to_dtype(DType::F16).unwrap();
        assert_eq!(h.dtype(), DType::F16);
        let back = h.to_dtype(DType::F32).unwrap().to_vec_f32();
        assert_eq!(&back[..3], &[1.5, -2.25, 65504.0]);
        assert!((back[3] - 1e-3).abs() < 1e-6);
        let bf = x
            .to_dtype(DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec_f32();
        assert_eq!(&bf[..2], &[1.5, -2.25]);
        assert!(h.exp().is_err(), "f16 is storage only");
        assert!(
            x.add(&x.to_dtype(DType::F64).unwrap()).is_err(),
            "dtype mismatch is an error"
        );
    });
}

#[test]
fn losses_match_formulas() {
    for_each_device(|dev| {
        let logits = rand_on(&[2, 1, 3, 4], 13, dev);
        let target = Tensor::from_vec_on(
            (0..24).map(|i| ((i * 7) % 3 == 0) as i32 as f64).collect(),
            &[2, 1, 3, 4],
            dev,
        )
        .unwrap();
        let (x, t) = (logits.to_vec_f64(), target.to_vec_f64());
        let bce: f64 = x
            .iter()
            .zip(&t)
            .map(|(&x, &t)| {
                -(t * (1.0 / (1.0 + (-x).exp())).ln()
                    + (1.0 - t) * (1.0 - 1.0 / (1.0 + (-x).exp())).ln())
            })
            .sum::<f64>()
            / 24.0;
        assert_close(
            &[loss::bce_with_logits(&logits, &target)
                .unwrap()
                .to_scalar()
                .unwrap()],
            &[bce],
            1e-12,
            "bce",
        );
        let p: Vec<f64> = x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        let mut dice = 0.0;
        let mut tv = 0.0;
        for n in 0..2 {
            let r = n * 12..(n + 1) * 12;
            let inter: f64 = r.clone().map(|i| p[i] * t[i]).sum();
            let sp: f64 = r.clone().map(|i| p[i]).sum();
            let st: f64 = r.clone().map(|i| t[i]).sum();
            dice += (2.0 * inter + 1e-5) / (sp + st + 1e-5) / 2.0;
            let fp: f64 = r.clone().map(|i| p[i] * (1.0 - t[i])).sum();
            let fn_: f64 = r.clone().map(|i| (1.0 - p[i]) * t[i]).sum();
            tv += (inter + 1e-5) / (inter + 0.3 * fp + 0.7 * fn_ + 1e-5) / 2.0;
        }
        assert_close(
            &[loss::soft_dice(&logits, &target, 1e-5)
                .unwrap()
                .to_scalar()
                .unwrap()],
            &[1.0 - dice],
            1e-12,
            "dice",
        );
        assert_close(
            &[loss::tversky(&logits, &target, 0.3, 0.7, 1e-5)
                .unwrap()
                .to_scalar()
                .unwrap()],
            &[1.0 - tv],
            1e-12,
            "tversky",
        );

        // Weighted cross-entropy over 3 classes.
        let logits = rand_on(&[2, 3, 4], 14, dev);
        let labels =
            Tensor::from_vec_on(vec![0.0, 2.0, 1.0, 1.0, 2.0, 0.0, 0.0, 1.0], &[2, 4], dev)
                .unwrap();
        let w = [0.2, 1.0, 3.0];
        let lv = logits.to_vec_f64();
        let (mut num, mut den) = (0.0, 0.0);
        for n in 0..2 {
            for s in 0..4 {
                let label = labels.to_vec_f64()[n * 4 + s] as usize;
                let lse = (0..3)
                    .map(|c| lv[(n * 3 + c) * 4 + s].exp())
                    .sum::<f64>()
                    .ln();
                num += -w[label] * (lv[(n * 3 + label) * 4 + s] - lse);
                den += w[label];
            }
        }
        assert_close(
            &[loss::cross_entropy(&logits, &labels, Some(&w))
                .unwrap()
                .to_scalar()
                .unwrap()],
            &[num / den],
            1e-12,
            "cross entropy",
        );
        let bad = Tensor::from_vec_on(vec![0.0, 3.0, 1.0, 1.0, 2.0, 0.0, 0.0, 1.0], &[2, 4], dev)
            .unwrap();
        assert!(loss::cross_entropy(&logits, &bad, None).is_err());
    });
}

#[test]
fn dropout_is_seeded_and_scales_kept_values() {
    for_each_device(|dev| {
        let x = Tensor::ones(&[1000], DType::F64, dev).unwrap();
        let a = x.dropout(0.3, true, 5).unwrap().to_vec_f64();
        let b = x.dropout(0.3, true, 5).unwrap().to_vec_f64();
        assert_eq!(a, b);
        let kept = a.iter().filter(|&&v| v != 0.0).count();
        assert!((650..750).contains(&kept), "kept {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
        assert_eq!(
            x.dropout(0.3, false, 5).unwrap().to_vec_f64(),
            x.to_vec_f64()
        );
        assert!(x.dropout(1.0, true, 0).is_err());
    });
}

#[test]
fn reductions_of_empty_tensors_give_empty_or_identity_results() {
    for_each_device(|dev| {
        let empty = Tensor::zeros(&[3, 0], DType::F64, dev).unwrap();
        let over_rows = empty.sum_axes(&[0], true).unwrap();
        assert_eq!(over_rows.shape(), &[1, 0]);
        let over_cols = empty.sum_axes(&[1], true).unwrap();
        assert_eq!(over_cols.to_vec_f64(), vec![0.0; 3]);
    });
}
