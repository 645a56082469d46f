//! The FLOP counter behind `hepar bench`'s GFLOP/s: a convolution counts 2 FLOPs per
//! multiply-add in its forward pass and again in each backward product, a matrix product
//! 2 * m * n * k per batch entry (its backward is two more products). Its own test binary: the
//! counter is process-wide.

use hepar::ops::conv::ConvOptions;
use hepar::ops::flops;
use hepar::tensor::{DType, Tensor};

#[test]
fn convolutions_and_matrix_products_are_counted_by_hand_formula() {
    let x = Tensor::randn(&[2, 4, 5, 7], DType::F32, 1).requires_grad_leaf();
    let w = Tensor::randn(&[6, 2, 3, 3], DType::F32, 2).requires_grad_leaf();
    let opts = ConvOptions {
        padding: vec![1],
        groups: 2,
        ..Default::default()
    };
    flops::reset();
    let y = x.conv(&w, None, &opts).unwrap();
    // Output 2 x 6 x 5 x 7, each a sum of (4 / 2) x 3 x 3 products.
    let macs = (2 * 6 * 5 * 7) * (2 * 9);
    assert_eq!(flops::read(), 2 * macs as u64);
    y.sum_all().unwrap().backward().unwrap();
    assert_eq!(flops::read(), 3 * 2 * macs as u64);

    let a = Tensor::randn(&[3, 4, 5], DType::F32, 3);
    let b = Tensor::randn(&[5, 6], DType::F32, 4);
    flops::reset();
    a.matmul(&b).unwrap();
    assert_eq!(flops::read(), 2 * 3 * 4 * 5 * 6);
}
