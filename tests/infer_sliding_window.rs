//! Sliding-window inference against hand-made cases: window placement, Gaussian weights, padding
//! and cropping, blending, and equality with a direct forward pass when one window covers all.

use hepar::infer::sliding_window::{
    axis_window_starts, importance_map, plan_windows, scan_intervals, sliding_window, Blend,
    WindowOptions,
};
use hepar::nn::cotnext::{CotNextConfig, CotNextUnet};
use hepar::{Result, Tensor};

fn options(overlap: f64, blend: Blend, batch: usize) -> WindowOptions {
    WindowOptions {
        overlap,
        blend,
        batch,
        ..WindowOptions::default()
    }
}

fn ramp(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 10.0 - 3.0)
        .collect();
    Tensor::from_vec(data, shape).unwrap()
}

#[test]
fn window_starts_match_hand_made_cases() {
    // size 10, window 4: overlap 0.5 -> step 2, windows until one reaches the end.
    assert_eq!(scan_intervals(&[10], &[4], 0.5), vec![2]);
    assert_eq!(axis_window_starts(10, 4, 2), vec![0, 2, 4, 6]);
    // Overlap 0: step 4, the third window (8..12) moved back to end flush at 10.
    assert_eq!(scan_intervals(&[10], &[4], 0.0), vec![4]);
    assert_eq!(axis_window_starts(10, 4, 4), vec![0, 4, 6]);
    // Overlap 0.25: step int(3.0) = 3; 6..10 already ends flush.
    assert_eq!(scan_intervals(&[10], &[4], 0.25), vec![3]);
    assert_eq!(axis_window_starts(10, 4, 3), vec![0, 3, 6]);
    // int() truncates: 7 * 0.5 = 3.5 -> 3; 4 * 0.1 = 0.4 -> 0 -> at least 1.
    assert_eq!(scan_intervals(&[20], &[7], 0.5), vec![3]);
    assert_eq!(scan_intervals(&[6], &[4], 0.9), vec![1]);
    assert_eq!(axis_window_starts(6, 4, 1), vec![0, 1, 2]);
    // 10 * (1 - 0.9) is 0.9999999999999998 in double precision: step 1, as in Python.
    assert_eq!(scan_intervals(&[30], &[10], 0.9), vec![1]);
    // The window equal to the image: one window whatever the overlap.
    assert_eq!(scan_intervals(&[8], &[8], 0.5), vec![8]);
    assert_eq!(axis_window_starts(8, 8, 8), vec![0]);

    // 2D: corners in C order, the first axis slowest.
    let plan = plan_windows(&[6, 5], &[4, 4], 0.5).unwrap();
    assert_eq!(plan.axis_starts, vec![vec![0, 2], vec![0, 1]]);
    assert_eq!(
        plan.corners,
        vec![vec![0, 0], vec![0, 1], vec![2, 0], vec![2, 1]]
    );
    assert_eq!(plan.padding, vec![(0, 0), (0, 0)]);
}

#[test]
fn a_volume_smaller_than_the_window_is_padded_half_before() {
    // Axis 0: 5 -> 8 (1 before, 2 after); axis 1: 8 == window; axis 2: 3 -> 6 (1 before, 2 after).
    let plan = plan_windows(&[5, 9, 3], &[8, 8, 6], 0.5).unwrap();
    assert_eq!(plan.padding, vec![(1, 2), (0, 0), (1, 2)]);
    assert_eq!(plan.padded_size, vec![8, 9, 6]);
    assert_eq!(plan.axis_starts, vec![vec![0], vec![0, 1], vec![0]]);
    // Padded to the window exactly: that axis has one window.
    assert_eq!(plan.intervals[0], 8);
    assert_eq!(plan.intervals[2], 6);
    // A 0 entry takes the image's size (MONAI's fallback).
    let plan = plan_windows(&[5, 7], &[0, 4], 0.0).unwrap();
    assert_eq!(plan.roi, vec![5, 4]);
    assert_eq!(plan.axis_starts, vec![vec![0], vec![0, 3]]);
}

#[test]
fn padding_reaches_the_predictor_and_is_cropped_from_the_output() {
    // Image 3 x 2, window 4 x 5: axis 0 gets (0, 1) and axis 1 gets (1, 2) padding.
    let input = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 1, 3, 2]).unwrap();
    let mut seen = Vec::new();
    let mut predict = |w: &Tensor| -> Result<Tensor> {
        seen.push((w.shape().to_vec(), w.to_vec_f32()));
        w.mul_scalar(10.0)
    };
    let opts = WindowOptions {
        pad_value: -1.0,
        ..options(0.5, Blend::Gaussian, 1)
    };
    let out = sliding_window(&input, &[4, 5], &opts, &mut predict).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, vec![1, 1, 4, 5]);
    #[rustfmt::skip]
    let expected_window = vec![
        -1.0, 1.0, 2.0, -1.0, -1.0,
        -1.0, 3.0, 4.0, -1.0, -1.0,
        -1.0, 5.0, 6.0, -1.0, -1.0,
        -1.0, -1.0, -1.0, -1.0, -1.0,
    ];
    assert_eq!(seen[0].1, expected_window);
    assert_eq!(out.shape(), &[1, 1, 3, 2]);
    let got = out.to_vec_f32();
    for (g, e) in got.iter().zip([10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0]) {
        // One window: (p * w) / w, one rounding from p.
        assert!((g - e).abs() <= e * 2e-7, "{g} vs {e}");
    }
}

#[test]
fn gaussian_weights_follow_the_explicit_formula() {
    // roi (5, 4), sigma = 0.125 * n: w(i, j) = exp(-xi^2 / (2 s0^2)) * exp(-xj^2 / (2 s1^2)),
    // x running from -(n-1)/2 to (n-1)/2.
    let roi = [5usize, 4];
    let map = importance_map(&roi, Blend::Gaussian, 0.125);
    assert_eq!(map.len(), 20);
    let axis = |n: usize, i: usize| {
        let sigma = 0.125 * n as f64;
        let x = i as f64 - (n as f64 - 1.0) / 2.0;
        (-(x * x) / (2.0 * sigma * sigma)).exp()
    };
    let raw: Vec<f64> = (0..5)
        .flat_map(|i| (0..4).map(move |j| axis(5, i) * axis(4, j)))
        .collect();
    let min = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let floor = min.max(1e-3);
    assert!(min < 1e-3, "this case must exercise the clamp (min {min})");
    for (k, (&w, &r)) in map.iter().zip(&raw).enumerate() {
        let expected = r.max(floor);
        assert!(
            (w as f64 - expected).abs() <= 1e-6 * expected.max(1e-3),
            "weight {k}: {w} vs {expected}"
        );
    }
    // The centre of an odd axis is 1 exactly; the clamp floor is 1e-3 in float32.
    assert_eq!(importance_map(&[5], Blend::Gaussian, 0.125)[2], 1.0);
    // roi 16, sigma 2: the ends exp(-7.5^2 / 8) = 8.8e-4 are raised to 1e-3, the next
    // exp(-6.5^2 / 8) = 5.1e-3 is kept.
    let one_d = importance_map(&[16], Blend::Gaussian, 0.125);
    assert!(one_d[0] == 1e-3f32 && one_d[15] == 1e-3f32, "{one_d:?}");
    let next = (-(6.5f64 * 6.5) / 8.0).exp();
    assert!(
        (one_d[1] as f64 - next).abs() < 1e-9 && one_d[1] == one_d[14],
        "{one_d:?}"
    );
    // A wide sigma: the minimum is above 1e-3 and nothing is clamped. x = -1, 0, 1; s = 1.125.
    let wide = importance_map(&[3], Blend::Gaussian, 0.375);
    let edge = (-1.0f64 / (2.0 * 1.125 * 1.125)).exp();
    assert!((wide[0] as f64 - edge).abs() < 1e-7 && wide[0] == wide[2] && wide[1] == 1.0);
    // Constant blending: all ones.
    assert!(importance_map(&[3, 2, 2], Blend::Constant, 0.125)
        .iter()
        .all(|&w| w == 1.0));
}

#[test]
fn overlapping_windows_average_by_hand() {
    // Length 6, window 4, overlap 0.5: windows [0, 4) and [2, 6). The predictor returns the
    // window's number (1, then 3) everywhere: 1 1 | 2 2 | 3 3 under constant blending.
    let input = Tensor::zeros(&[1, 1, 6], hepar::DType::F32, hepar::Device::Cpu).unwrap();
    let mut calls = 0.0f64;
    let mut predict = |w: &Tensor| -> Result<Tensor> {
        calls += 1.0;
        w.full_like(2.0 * calls - 1.0)
    };
    let out = sliding_window(
        &input,
        &[4],
        &options(0.5, Blend::Constant, 1),
        &mut predict,
    )
    .unwrap();
    assert_eq!(out.to_vec_f32(), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);

    // Gaussian: in the overlap the weights of the two windows' positions decide. Position 2 is
    // position 2 of the first window (x = 0.5) and position 0 of the second (x = -1.5).
    let mut calls = 0.0f64;
    let mut predict = |w: &Tensor| -> Result<Tensor> {
        calls += 1.0;
        w.full_like(2.0 * calls - 1.0)
    };
    let out = sliding_window(
        &input,
        &[4],
        &options(0.5, Blend::Gaussian, 1),
        &mut predict,
    )
    .unwrap()
    .to_vec_f32();
    // sigma 0.5; the smallest weight exp(-4.5) is above 1e-3, so nothing is clamped.
    let g = |x: f64| (-(x * x) / (2.0 * 0.5 * 0.5)).exp();
    let at2 = (g(0.5) * 1.0 + g(-1.5) * 3.0) / (g(0.5) + g(-1.5));
    let at3 = (g(1.5) * 1.0 + g(-0.5) * 3.0) / (g(1.5) + g(-0.5));
    let expected = [1.0, 1.0, at2, at3, 3.0, 3.0];
    for (o, e) in out.iter().zip(expected) {
        assert!((*o as f64 - e).abs() < 1e-5, "{out:?} vs {expected:?}");
    }
}

#[test]
fn the_predictor_may_change_the_channel_count() {
    let input = ramp(&[2, 1, 7, 9]);
    let mut predict = |w: &Tensor| -> Result<Tensor> { Tensor::cat(&[w.clone(), w.neg()?], 1) };
    let out = sliding_window(
        &input,
        &[4, 4],
        &options(0.25, Blend::Gaussian, 3),
        &mut predict,
    )
    .unwrap();
    assert_eq!(out.shape(), &[2, 2, 7, 9]);
    // A predictor that copies its window gives back the input (a weighted mean of equal values).
    let (x, y) = (input.to_vec_f32(), out.to_vec_f32());
    for image in 0..2 {
        for k in 0..63 {
            let v = x[image * 63 + k];
            let (pos, neg) = (y[image * 126 + k], y[image * 126 + 63 + k]);
            assert!(
                (pos - v).abs() < 1e-5 && (neg + v).abs() < 1e-5,
                "{image} {k}"
            );
        }
    }
}

fn small_network() -> CotNextUnet {
    CotNextUnet::new(
        CotNextConfig {
            dims: 2,
            in_channels: 2,
            classes: 2,
            width: 8,
        },
        7,
    )
    .unwrap()
}

#[test]
fn one_window_over_the_volume_equals_a_direct_forward_pass() {
    let net = small_network();
    let input = ramp(&[1, 2, 32, 32]);
    let direct = hepar::no_grad(|| net.forward(&input, false))
        .unwrap()
        .to_vec_f32();
    let mut predict = |w: &Tensor| hepar::no_grad(|| net.forward(w, false));
    let constant = sliding_window(
        &input,
        &[32, 32],
        &options(0.5, Blend::Constant, 1),
        &mut predict,
    )
    .unwrap();
    assert_eq!(constant.shape(), &[1, 2, 32, 32]);
    assert_eq!(
        constant.to_vec_f32(),
        direct,
        "constant blending must be exact"
    );
    let gaussian = sliding_window(
        &input,
        &[32, 32],
        &options(0.5, Blend::Gaussian, 1),
        &mut predict,
    )
    .unwrap()
    .to_vec_f32();
    for (g, d) in gaussian.iter().zip(&direct) {
        assert!((g - d).abs() <= 4e-7 * d.abs().max(1e-6), "{g} vs {d}");
    }
}

#[test]
fn the_batch_size_changes_no_bit() {
    let net = small_network();
    let input = ramp(&[2, 2, 40, 48]);
    let mut predict = |w: &Tensor| hepar::no_grad(|| net.forward(w, false));
    let run = |batch: usize, predict: &mut dyn FnMut(&Tensor) -> Result<Tensor>| {
        sliding_window(
            &input,
            &[32, 32],
            &options(0.5, Blend::Gaussian, batch),
            predict,
        )
        .unwrap()
        .to_vec_f32()
    };
    let one = run(1, &mut predict);
    // 2 images x (2 x 2) windows: batches of 3 mix the two images.
    assert_eq!(run(3, &mut predict), one);
    assert_eq!(run(8, &mut predict), one);
}

#[test]
fn bad_arguments_are_errors() {
    let input = ramp(&[1, 1, 8, 8]);
    let mut identity = |w: &Tensor| Ok(w.clone());
    let err = sliding_window(
        &input,
        &[4, 4],
        &options(1.0, Blend::Constant, 1),
        &mut identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("overlap"), "{err}");
    let err = sliding_window(
        &input,
        &[4],
        &options(0.5, Blend::Constant, 1),
        &mut identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("axes"), "{err}");
    let err = sliding_window(
        &input,
        &[4, 4],
        &options(0.5, Blend::Constant, 0),
        &mut identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("batch"), "{err}");
    let mut shrink = |w: &Tensor| w.narrow(2, 0, 2);
    let err = sliding_window(
        &input,
        &[4, 4],
        &options(0.5, Blend::Constant, 1),
        &mut shrink,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("spatial size"), "{err}");
    assert!("median".parse::<Blend>().is_err());
    assert_eq!("gaussian".parse::<Blend>().unwrap(), Blend::Gaussian);
}
