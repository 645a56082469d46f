//! Results do not depend on how rayon splits work: the CPU kernels whose sums span parallel tasks
//! (convolution weight gradients, normalisation backward passes, reductions) and a whole 2D
//! CoTNeXt training step give the same bits in pools of 1, 2 and 3 threads, and outside any pool
//! (where the GEMM runs on its own threads).

use hepar::backend::UnaryOp;
use hepar::nn::cotnext::{CotNextConfig, CotNextUnet};
use hepar::nn::parameters;
use hepar::ops::conv::ConvOptions;
use hepar::ops::loss::dice_bce;
use hepar::optim::{Adam, AdamConfig, Optimizer};
use hepar::tensor::{DType, Tensor};

/// The bits of every output, in order, to compare exactly.
type Bits = Vec<Vec<u64>>;

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F64 => t.to_vec_f64().iter().map(|v| v.to_bits()).collect(),
        _ => t.to_vec_f32().iter().map(|v| v.to_bits() as u64).collect(),
    }
}

/// Runs `compute` outside any pool, then in pools of 1, 2 and 3 threads, and asserts every run
/// gives the bits of the first.
fn assert_same_bits_on_every_pool(what: &str, compute: impl Fn() -> Bits + Sync) {
    let reference = compute();
    assert!(reference.iter().any(|b| !b.is_empty()), "{what}: no output");
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let got = pool.install(&compute);
        for (i, (a, b)) in reference.iter().zip(&got).enumerate() {
            let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
            assert!(
                a.len() == b.len() && differing == 0,
                "{what}: output {i} differs in {differing} of {} elements on {threads} thread(s)",
                a.len()
            );
        }
    }
}

/// The output of `conv(x, w, b)` and the gradients of `sum(conv(x, w, b) * r)` with respect to
/// x, w and b.
fn conv_gradients(
    x_shape: &[usize],
    w_shape: &[usize],
    opts: &ConvOptions,
    dtype: DType,
    transposed: bool,
) -> Bits {
    let x = Tensor::randn(x_shape, dtype, 11).requires_grad_leaf();
    let w = Tensor::randn(w_shape, dtype, 12)
        .mul_scalar(0.1)
        .unwrap()
        .requires_grad_leaf();
    let out_channels = if transposed {
        w_shape[1] * opts.groups
    } else {
        w_shape[0]
    };
    let b = Tensor::randn(&[out_channels], dtype, 13).requires_grad_leaf();
    let y = if transposed {
        x.conv_transpose(&w, Some(&b), opts).unwrap()
    } else {
        x.conv(&w, Some(&b), opts).unwrap()
    };
    let r = Tensor::randn(y.shape(), dtype, 14);
    y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![bits(&y)];
    out.extend(
        [&x, &w, &b]
            .iter()
            .map(|t| bits(&t.grad().expect("gradient"))),
    );
    out
}

fn conv_options(stride: usize, padding: usize, groups: usize) -> ConvOptions {
    ConvOptions {
        stride: vec![stride],
        padding: vec![padding],
        groups,
        ..ConvOptions::default()
    }
}

/// One convolution to check: input and weight shapes, options, dtype, transposed or not.
struct ConvCase {
    what: &'static str,
    x: Vec<usize>,
    w: Vec<usize>,
    opts: ConvOptions,
    dtype: DType,
    transposed: bool,
}

fn case(what: &'static str, x: &[usize], w: &[usize], opts: ConvOptions) -> ConvCase {
    ConvCase {
        what,
        x: x.to_vec(),
        w: w.to_vec(),
        opts,
        dtype: DType::F32,
        transposed: false,
    }
}

#[test]
fn convolution_gradients_are_the_same_bits_on_any_pool() {
    let cases = [
        // The direct AVX-512 weight gradient (where the CPU has it), many row tasks.
        case(
            "3x3 conv f32",
            &[2, 16, 64, 64],
            &[16, 16, 3, 3],
            conv_options(1, 1, 1),
        ),
        // Pointwise: the GEMM weight gradient with a long reduction over positions.
        case(
            "1x1 conv f32",
            &[2, 32, 64, 64],
            &[24, 32, 1, 1],
            conv_options(1, 0, 1),
        ),
        // f64 takes the portable im2col path everywhere.
        ConvCase {
            dtype: DType::F64,
            ..case(
                "3x3 conv f64",
                &[2, 8, 40, 40],
                &[12, 8, 3, 3],
                conv_options(1, 1, 1),
            )
        },
        case(
            "strided grouped 3x3 conv",
            &[3, 16, 33, 31],
            &[16, 4, 3, 3],
            conv_options(2, 1, 4),
        ),
        case(
            "3D conv",
            &[1, 8, 12, 20, 20],
            &[8, 8, 3, 3, 3],
            conv_options(1, 1, 1),
        ),
        ConvCase {
            transposed: true,
            ..case(
                "transposed 2x2 conv",
                &[2, 16, 24, 24],
                &[16, 8, 2, 2],
                conv_options(2, 0, 1),
            )
        },
    ];
    for c in &cases {
        assert_same_bits_on_every_pool(c.what, || {
            conv_gradients(&c.x, &c.w, &c.opts, c.dtype, c.transposed)
        });
    }
}

#[test]
fn normalisation_backward_is_the_same_bits_on_any_pool() {
    let shape = [3, 16, 40, 40];
    assert_same_bits_on_every_pool("group_norm_silu", || {
        let x = Tensor::randn(&shape, DType::F32, 21).requires_grad_leaf();
        let w = Tensor::randn(&[16], DType::F32, 22).requires_grad_leaf();
        let b = Tensor::randn(&[16], DType::F32, 23).requires_grad_leaf();
        let y = x.group_norm_silu(4, Some(&w), Some(&b), 1e-5).unwrap();
        let r = Tensor::randn(&shape, DType::F32, 24);
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        vec![
            bits(&y),
            bits(&x.grad().unwrap()),
            bits(&w.grad().unwrap()),
            bits(&b.grad().unwrap()),
        ]
    });
    assert_same_bits_on_every_pool("batch_norm (train)", || {
        let x = Tensor::randn(&shape, DType::F32, 31).requires_grad_leaf();
        let w = Tensor::randn(&[16], DType::F32, 32).requires_grad_leaf();
        let b = Tensor::randn(&[16], DType::F32, 33).requires_grad_leaf();
        let (mean, var) = (
            Tensor::zeros(&[16], DType::F32, hepar::Device::Cpu).unwrap(),
            Tensor::ones(&[16], DType::F32, hepar::Device::Cpu).unwrap(),
        );
        let y = x
            .batch_norm(Some(&w), Some(&b), &mean, &var, true, 0.1, 1e-5)
            .unwrap();
        let r = Tensor::randn(&shape, DType::F32, 34);
        y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        vec![
            bits(&y),
            bits(&x.grad().unwrap()),
            bits(&w.grad().unwrap()),
            bits(&b.grad().unwrap()),
            bits(&mean),
            bits(&var),
        ]
    });
}

#[test]
fn reductions_are_the_same_bits_on_any_pool() {
    assert_same_bits_on_every_pool("reductions", || {
        // Long enough for the split single-output sums, shaped for the middle-axis paths.
        let x = Tensor::randn(&[4, 8, 96, 96], DType::F32, 41);
        let strided = x.permute(&[0, 2, 3, 1]).unwrap();
        [
            x.sum_all().unwrap(),
            x.mean_all().unwrap(),
            strided.sum_all().unwrap(),
            x.sum_axes(&[2, 3], false).unwrap(),
            x.sum_axes(&[0], false).unwrap(),
            strided.sum_axes(&[1, 2], false).unwrap(),
            x.max_axes(&[1], false).unwrap(),
            x.softmax(1).unwrap(),
            x.unary(UnaryOp::Sigmoid)
                .unwrap()
                .mean_axes(&[0, 2], true)
                .unwrap(),
        ]
        .iter()
        .map(bits)
        .collect()
    });
}

#[test]
fn a_cotnext_training_step_is_the_same_bits_on_any_pool() {
    assert_same_bits_on_every_pool("2D CoTNeXt training step", || {
        let config = CotNextConfig {
            dims: 2,
            in_channels: 3,
            classes: 1,
            width: 8,
        };
        let model = CotNextUnet::new(config, 5).unwrap();
        let x = Tensor::randn(&[2, 3, 32, 32], DType::F32, 51);
        let target = Tensor::rand_uniform(&[2, 1, 32, 32], 0.0, 1.0, DType::F32, 52)
            .affine(1.0, -0.6)
            .unwrap()
            .unary(UnaryOp::Positive)
            .unwrap();
        let mut optimizer = Adam::new(parameters(&model), AdamConfig::adamw(1e-3, 1e-5));
        let mut out = Vec::new();
        for _ in 0..2 {
            optimizer.zero_grad();
            let loss =
                dice_bce(&model.forward(&x, true).unwrap(), &target, 0.7, 0.3, 1e-5).unwrap();
            out.push(bits(&loss));
            loss.backward().unwrap();
            optimizer.step().unwrap();
        }
        out.extend(parameters(&model).iter().map(|p| bits(&p.tensor)));
        out
    });
}
