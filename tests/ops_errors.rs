//! Bad input to ops gives a typed error naming the op and the shapes involved, never a panic.

mod common;

use common::{for_each_device, rand_on};
use hepar::ops::conv::ConvOptions;
use hepar::ops::loss;
use hepar::ops::pool::PoolOptions;
use hepar::tensor::{DType, Tensor};
use hepar::HeparError;

fn message(r: hepar::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_op_and_the_shapes() {
    for_each_device(|dev| {
        let a = rand_on(&[2, 3], 1, dev);
        let b = rand_on(&[4, 5], 2, dev);
        for (what, r, must) in [
            ("add", a.add(&b), vec!["add", "[2, 3]", "[4, 5]"]),
            ("matmul", a.matmul(&b), vec!["matmul", "[2, 3]", "[4, 5]"]),
            ("reshape", a.reshape(&[7]), vec!["reshape", "[2, 3]", "[7]"]),
            (
                "cat",
                Tensor::cat(&[a.clone(), b.clone()], 0),
                vec!["cat", "[2, 3]", "[4, 5]"],
            ),
            ("narrow", a.narrow(1, 2, 2), vec!["narrow", "[2, 3]"]),
            ("permute", a.permute(&[0, 0]), vec!["permute", "[2, 3]"]),
            ("softmax axis", a.softmax(5), vec!["softmax", "axis 5"]),
            (
                "group_norm groups",
                rand_on(&[1, 6, 4], 3, dev).group_norm(4, None, None, 1e-5),
                vec!["group_norm", "[1, 6, 4]"],
            ),
            (
                "conv groups",
                rand_on(&[1, 4, 5, 5], 4, dev).conv(
                    &rand_on(&[6, 2, 3, 3], 5, dev),
                    None,
                    &ConvOptions {
                        groups: 3,
                        ..Default::default()
                    },
                ),
                vec!["conv", "[1, 4, 5, 5]", "[6, 2, 3, 3]"],
            ),
            (
                "max_pool rank",
                a.max_pool(&PoolOptions::new(vec![2])),
                vec!["max_pool", "[2, 3]"],
            ),
            (
                "upsample sizes",
                rand_on(&[1, 1, 4, 4], 6, dev).upsample_linear(&[8], true),
                vec!["upsample", "[1, 1, 4, 4]"],
            ),
            (
                "bce shapes",
                loss::bce_with_logits(&a, &b),
                vec!["bce_with_logits", "[2, 3]", "[4, 5]"],
            ),
            (
                "dice shapes",
                loss::soft_dice(
                    &rand_on(&[1, 1, 4], 7, dev),
                    &rand_on(&[1, 1, 5], 8, dev),
                    1e-5,
                ),
                vec!["soft_dice", "[1, 1, 4]", "[1, 1, 5]"],
            ),
        ] {
            let m = message(r);
            for part in must {
                assert!(m.contains(part), "{what}: `{m}` should mention `{part}`");
            }
        }
    });
}

#[test]
fn dtype_mismatches_and_storage_only_dtypes_are_dtype_errors() {
    for_each_device(|dev| {
        let a = rand_on(&[3], 1, dev);
        let b = a.to_dtype(DType::F32).unwrap();
        assert!(matches!(
            a.mul(&b),
            Err(HeparError::DType { op: "mul", .. })
        ));
        assert!(matches!(
            a.to_dtype(DType::BF16).unwrap().sigmoid(),
            Err(HeparError::DType { .. })
        ));
        assert!(matches!(
            Tensor::from_vec_on(vec![1.0f32; 5], &[2, 3], dev),
            Err(HeparError::Shape { op: "from_vec", .. })
        ));
    });
}
