//! Convolutions at the tensor level: forward against a naive loop, backward against finite
//! differences, and shape errors.

mod common;

use common::reference::NaiveConv;
use common::{assert_close, for_each_device, rand_on};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::ops::conv::ConvOptions;
use hepar::tensor::Tensor;

fn opts(stride: usize, padding: usize, dilation: usize, groups: usize) -> ConvOptions {
    ConvOptions {
        stride: vec![stride],
        padding: vec![padding],
        dilation: vec![dilation],
        groups,
        ..Default::default()
    }
}

#[test]
fn conv3d_and_conv2d_forward_match_naive_loops() {
    for_each_device(|dev| {
        // (cin, cout, groups, input, kernel, stride, padding, dilation)
        let cases3d = [
            (3, 4, 1, [5, 7, 6], 3, 1, 1, 1),
            (4, 6, 2, [6, 5, 7], 3, 2, 1, 1),
            (4, 4, 4, [7, 6, 5], 3, 1, 2, 2),
            (5, 3, 1, [4, 5, 3], 1, 1, 0, 1),
        ];
        for (i, &(cin, cout, groups, input, k, s, p, d)) in cases3d.iter().enumerate() {
            let x = rand_on(&[2, cin, input[0], input[1], input[2]], i as u64, dev);
            let w = rand_on(&[cout, cin / groups, k, k, k], 100 + i as u64, dev);
            let b = rand_on(&[cout], 200 + i as u64, dev);
            let got = x.conv(&w, Some(&b), &opts(s, p, d, groups)).unwrap();
            let naive = NaiveConv {
                n: 2,
                cin,
                cout,
                groups,
                input,
                kernel: [k; 3],
                stride: [s; 3],
                padding: [p; 3],
                dilation: [d; 3],
            };
            let o = naive.output();
            assert_eq!(got.shape(), &[2, cout, o[0], o[1], o[2]]);
            assert_close(
                &got.to_vec_f64(),
                &naive.forward(&x.to_vec_f64(), &w.to_vec_f64(), Some(&b.to_vec_f64())),
                1e-10,
                "conv3d",
            );
        }
        let x = rand_on(&[3, 4, 9, 7], 7, dev);
        let w = rand_on(&[6, 2, 3, 3], 8, dev);
        let got = x.conv(&w, None, &opts(2, 1, 1, 2)).unwrap();
        let naive = NaiveConv {
            n: 3,
            cin: 4,
            cout: 6,
            groups: 2,
            input: [1, 9, 7],
            kernel: [1, 3, 3],
            stride: [1, 2, 2],
            padding: [0, 1, 1],
            dilation: [1; 3],
        };
        assert_close(
            &got.to_vec_f64(),
            &naive.forward(&x.to_vec_f64(), &w.to_vec_f64(), None),
            1e-10,
            "conv2d",
        );
        // A non-contiguous input is read correctly.
        let xt = rand_on(&[3, 4, 7, 9], 9, dev).transpose(2, 3).unwrap();
        let got = xt.conv(&w, None, &opts(1, 1, 1, 2)).unwrap();
        let naive = NaiveConv {
            stride: [1; 3],
            ..naive
        };
        assert_close(
            &got.to_vec_f64(),
            &naive.forward(&xt.to_vec_f64(), &w.to_vec_f64(), None),
            1e-10,
            "conv2d on a transposed view",
        );
    });
}

#[test]
fn conv_backward_matches_finite_differences() {
    for_each_device(|dev| {
        let o = GradcheckOptions::default();
        gradcheck(
            |t| t[0].conv(&t[1], Some(&t[2]), &opts(2, 1, 1, 2)),
            &[
                rand_on(&[2, 4, 5, 4, 3], 1, dev),
                rand_on(&[4, 2, 3, 3, 3], 2, dev),
                rand_on(&[4], 3, dev),
            ],
            o,
        )
        .unwrap();
        gradcheck(
            |t| t[0].conv(&t[1], None, &opts(1, 2, 2, 3)),
            &[
                rand_on(&[1, 3, 6, 5], 4, dev),
                rand_on(&[3, 1, 3, 3], 5, dev),
            ],
            o,
        )
        .unwrap();
        gradcheck(
            |t| t[0].conv(&t[1], None, &opts(1, 0, 1, 1)),
            &[
                rand_on(&[2, 5, 3, 4, 2], 6, dev),
                rand_on(&[3, 5, 1, 1, 1], 7, dev),
            ],
            o,
        )
        .unwrap();
    });
}

#[test]
fn conv_transpose_is_the_adjoint_of_conv_and_differentiates() {
    for_each_device(|dev| {
        // <conv(x), y> == <x, conv_transpose(y)> for the same weight.
        let x = rand_on(&[2, 4, 5, 6, 5], 10, dev);
        let w = rand_on(&[6, 2, 3, 3, 3], 11, dev);
        let o = opts(2, 1, 1, 2);
        let cx = x.conv(&w, None, &o).unwrap();
        let y = rand_on(cx.shape(), 12, dev);
        let op = ConvOptions {
            output_padding: vec![0, 1, 0],
            ..o.clone()
        };
        let ty = y.conv_transpose(&w, None, &op).unwrap();
        assert_eq!(ty.shape(), x.shape());
        let lhs = cx.mul(&y).unwrap().sum_all().unwrap().to_scalar().unwrap();
        let rhs = x.mul(&ty).unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(
            (lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        gradcheck(
            |t| {
                t[0].conv_transpose(
                    &t[1],
                    Some(&t[2]),
                    &ConvOptions {
                        stride: vec![2],
                        padding: vec![1],
                        output_padding: vec![1],
                        ..Default::default()
                    },
                )
            },
            &[
                rand_on(&[1, 2, 3, 4], 13, dev),
                rand_on(&[2, 3, 3, 3], 14, dev),
                rand_on(&[3], 15, dev),
            ],
            GradcheckOptions::default(),
        )
        .unwrap();
    });
}

#[test]
fn invalid_convolutions_are_errors() {
    for_each_device(|dev| {
        let x = rand_on(&[1, 4, 5, 5], 1, dev);
        assert!(
            x.conv(&rand_on(&[4, 3, 3, 3], 2, dev), None, &opts(1, 1, 1, 1))
                .is_err(),
            "channel mismatch"
        );
        assert!(
            x.conv(&rand_on(&[3, 2, 3, 3], 2, dev), None, &opts(1, 1, 1, 2))
                .is_err(),
            "cout not divisible by groups"
        );
        assert!(
            x.conv(&rand_on(&[4, 4, 7, 7], 2, dev), None, &opts(1, 0, 1, 1))
                .is_err(),
            "kernel larger than input"
        );
        assert!(
            x.conv(&rand_on(&[4, 4, 3, 3], 2, dev), None, &opts(0, 0, 1, 1))
                .is_err(),
            "zero stride"
        );
        assert!(
            x.conv(&rand_on(&[4, 4, 3, 3, 3], 2, dev), None, &opts(1, 0, 1, 1))
                .is_err(),
            "rank mismatch"
        );
        assert!(
            x.conv(
                &rand_on(&[4, 4, 3, 3], 2, dev),
                Some(&rand_on(&[3], 3, dev)),
                &opts(1, 0, 1, 1)
            )
            .is_err(),
            "bias length"
        );
        let e = x
            .conv(&rand_on(&[4, 3, 3, 3], 2, dev), None, &opts(1, 1, 1, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("conv") && e.contains("[1, 4, 5, 5]"), "{e}");
        assert!(
            x.to_dtype(hepar::DType::F32)
                .unwrap()
                .conv(&rand_on(&[4, 4, 3, 3], 2, dev), None, &opts(1, 1, 1, 1))
                .is_err(),
            "dtype mismatch"
        );
        let _ = Tensor::zeros(&[1], hepar::DType::F32, dev).unwrap();
    });
}
