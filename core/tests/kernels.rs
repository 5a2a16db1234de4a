//! The CPU host kernels against Burn's own operations on the same device: forward values and
//! every gradient, on shapes that reach each code path (one input channel and many, square and
//! oblong kernels, odd image sizes, batches over the weight-gradient chunk), ties and all-negative
//! pooling windows; plus a batch equals its items one by one.

mod common;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use common::pixels;
use rampart_core::kernels::{conv2d, relu_max_pool2x2, relu_max_pool2x2_burn};

fn ad() -> Device {
    Device::flex().autodiff()
}

/// Values in [-1, 1) of the given shape.
fn signed(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    let v: Vec<f32> = pixels(n, seed).into_iter().map(|p| 2.0 * p - 1.0).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// Largest |a - b| / (1 + |b|).
fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

/// `f(x)` and the gradient of `sum(f(x) · r)` with respect to `x`, for a fixed random `r`.
fn value_and_grad(x: &Tensor<4>, f: impl Fn(Tensor<4>) -> Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let x = x.clone().require_grad();
    let y = f(x.clone());
    let r = signed(y.dims(), 99, &y.device());
    let grads = (y.clone() * r).sum().backward();
    (values(y), values(x.grad(&grads).unwrap()))
}

#[test]
fn fused_relu_pool_equals_burn_bit_for_bit() {
    for (shape, seed) in [([3, 4, 8, 8], 1), ([2, 3, 7, 9], 2), ([1, 1, 2, 2], 3)] {
        // Values on a coarse grid: many ties, zeros and all-negative windows.
        let x = signed(shape, seed, &ad()).mul_scalar(3.0).round();
        let (y, g) = value_and_grad(&x, relu_max_pool2x2);
        let (y_ref, g_ref) = value_and_grad(&x, relu_max_pool2x2_burn);
        assert_eq!(y, y_ref, "forward, {shape:?}");
        assert_eq!(g, g_ref, "gradient, {shape:?}");
        assert!(g.iter().any(|&v| v != 0.0) && g.contains(&0.0));
    }
}

#[test]
fn fused_relu_pool_propagates_nan() {
    let x = Tensor::<4>::from_data(
        TensorData::new(vec![-1.0, f32::NAN, -2.0, -3.0], [1, 1, 2, 2]),
        &Device::flex(),
    );
    assert!(values(relu_max_pool2x2(x.clone()))[0].is_nan());
    assert!(values(relu_max_pool2x2_burn(x))[0].is_nan());
}

fn conv(c_in: usize, c_out: usize, k: [usize; 2], pad: [usize; 2], device: &Device) -> Conv2d {
    conv_with(c_in, c_out, k, pad, [1, 1], true, device)
}

fn conv_with(
    c_in: usize,
    c_out: usize,
    k: [usize; 2],
    pad: [usize; 2],
    stride: [usize; 2],
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], k)
        .with_padding(PaddingConfig2d::Explicit(pad[0], pad[1], pad[0], pad[1]))
        .with_stride(stride)
        .with_bias(bias)
        .init(device)
}

/// (input shape, output channels, kernel, padding, stride, bias): one input channel and many,
/// the Madry CNN's 5×5 "same" convolutions, 3×3 with and without padding, an oblong kernel, odd
/// sizes, 9 images (two weight-gradient chunks), the strided CNN's 4×4 stride-2 convolutions,
/// PreAct ResNet's bias-free 3×3 stride-2 and 1×1 stride-2 shortcut convolutions, odd sizes
/// under stride 2 and 3, unequal strides, 4×4 stride 2 on an odd input, padding 2 under stride
/// 2, and a wider column than row stride. Stride-1 cases with no more output than input channels
/// take the input gradient's flipped-kernel route, as do those with more output channels where
/// Winograd applies and there are at least 8 input channels (the last two cases); the others
/// col2im; stride-1 3×3 and 5×5 with more than one input channel take Winograd. Cases 16–18
/// group images in the weight gradient
/// (8×8 outputs: groups of 4 in chunks of 8, the last chunk one image; 4×4: a group of 16 then
/// one of 4; fewer images than a group); 19–20 are wide enough for rounding to add up (64
/// channels through F(2×2, 3×3), 32 through F(2×2, 5×5)). From 21: a partial group that adds
/// onto its chunk (7×7: groups of 6 and 2, then one image); Winograd split into several groups
/// with a remainder and an output of over 256 positions (16×17); 5×5 with padding 0 and 1;
/// a 1×1 output; a one-row image; one output channel; stride 2 with 17 output columns (the
/// gathers' longest read past a row, two col2im blocks a row) and with one.
type Case = ([usize; 4], usize, [usize; 2], [usize; 2], [usize; 2], bool);

const CASES: [Case; 32] = [
    ([2, 2, 7, 7], 3, [4, 4], [1, 1], [2, 2], true),
    ([2, 3, 9, 10], 2, [5, 5], [2, 2], [2, 2], false),
    ([2, 3, 8, 9], 2, [3, 3], [1, 1], [1, 2], true),
    ([3, 1, 12, 12], 4, [5, 5], [2, 2], [1, 1], true),
    ([2, 8, 7, 7], 6, [5, 5], [2, 2], [1, 1], true),
    ([9, 3, 6, 5], 5, [3, 3], [1, 1], [1, 1], true),
    ([2, 10, 6, 7], 3, [3, 3], [0, 0], [1, 1], true),
    ([2, 9, 5, 8], 4, [3, 5], [1, 2], [1, 1], true),
    ([1, 2, 3, 3], 2, [2, 2], [1, 1], [1, 1], true),
    ([3, 1, 28, 28], 4, [4, 4], [1, 1], [2, 2], true),
    ([2, 4, 14, 14], 5, [4, 4], [1, 1], [2, 2], true),
    ([2, 6, 8, 8], 7, [3, 3], [1, 1], [2, 2], false),
    ([9, 6, 8, 8], 7, [1, 1], [0, 0], [2, 2], false),
    ([2, 3, 9, 7], 4, [3, 3], [1, 1], [2, 2], true),
    ([2, 3, 11, 10], 2, [3, 3], [1, 0], [3, 3], false),
    ([2, 3, 9, 9], 3, [3, 2], [1, 1], [2, 1], true),
    ([9, 4, 8, 8], 4, [3, 3], [1, 1], [1, 1], true),
    ([20, 2, 4, 4], 3, [3, 3], [1, 1], [1, 1], true),
    ([3, 5, 4, 4], 5, [3, 3], [1, 1], [1, 1], false),
    ([2, 64, 8, 8], 64, [3, 3], [1, 1], [1, 1], false),
    ([2, 32, 14, 14], 16, [5, 5], [2, 2], [1, 1], true),
    ([9, 2, 7, 7], 3, [3, 3], [1, 1], [1, 1], true),
    ([9, 3, 16, 17], 2, [3, 3], [1, 1], [1, 1], true),
    ([2, 4, 9, 8], 3, [5, 5], [0, 0], [1, 1], true),
    ([2, 3, 6, 7], 2, [5, 5], [1, 1], [1, 1], false),
    ([2, 3, 3, 3], 2, [3, 3], [0, 0], [1, 1], true),
    ([3, 4, 1, 7], 2, [3, 3], [1, 1], [1, 1], true),
    ([2, 4, 6, 5], 1, [3, 3], [1, 1], [1, 1], true),
    ([2, 3, 9, 33], 4, [3, 3], [1, 1], [2, 2], true),
    ([2, 3, 4, 4], 2, [4, 4], [0, 0], [2, 2], true),
    // More output than input channels, at least 8 of them: the input gradient is the flipped
    // convolution through Winograd; 9 and 12 channels leave lanes over in both transforms.
    ([3, 8, 9, 9], 12, [5, 5], [2, 2], [1, 1], true),
    ([2, 9, 6, 7], 16, [3, 3], [1, 1], [1, 1], true),
];

#[test]
fn convolution_and_its_gradients_match_burn() {
    let device = ad();
    for (i, (shape, c_out, k, pad, stride, bias)) in CASES.into_iter().enumerate() {
        let layer = conv_with(shape[1], c_out, k, pad, stride, bias, &device);
        matches_burn(&layer, shape, &format!("case {i}"), i as u64 + 10);
    }
    // PreAct ResNet's shortcut: 1×1, stride 2, built without padding (`Valid`).
    let shortcut = Conv2dConfig::new([6, 7], [1, 1])
        .with_stride([2, 2])
        .with_bias(false)
        .init(&device);
    matches_burn(&shortcut, [3, 6, 9, 9], "valid 1×1 stride 2", 3);
}

/// `kernels::conv2d(layer, x)`, its input, weight and bias gradients equal Burn's.
fn matches_burn(layer: &Conv2d, shape: [usize; 4], case: &str, seed: u64) {
    // f32 sums in another order: relative differences of a few ulps times the sum's length.
    let tol = 1e-5;
    let device = ad();
    let x = signed(shape, seed, &device);
    let (y, gx) = value_and_grad(&x, |x| conv2d(layer, x));
    let (y_ref, gx_ref) = value_and_grad(&x, |x| layer.forward(x));
    assert_eq!(y.len(), y_ref.len(), "output size, {case}");
    assert!(max_rel(&y, &y_ref) < tol, "forward, {case}");
    assert!(max_rel(&gx, &gx_ref) < tol, "input gradient, {case}");

    let weight_grads = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let y = f(x.clone());
        let r = signed(y.dims(), 7, &device);
        let grads = (y * r).sum().backward();
        let w = values(layer.weight.val().grad(&grads).unwrap());
        let b = layer
            .bias
            .as_ref()
            .map(|b| values(b.val().grad(&grads).unwrap()));
        (w, b)
    };
    let (gw, gb) = weight_grads(&|x| conv2d(layer, x));
    let (gw_ref, gb_ref) = weight_grads(&|x| layer.forward(x));
    assert!(max_rel(&gw, &gw_ref) < tol, "weight gradient, {case}");
    if let (Some(gb), Some(gb_ref)) = (gb, gb_ref) {
        assert!(max_rel(&gb, &gb_ref) < tol, "bias gradient, {case}");
    }
}

#[test]
fn convolution_of_a_batch_equals_its_items_one_by_one() {
    let device = Device::flex();
    let x = signed([5, 3, 9, 9], 21, &device);
    let batch_and_items = |layer: &Conv2d| {
        let batch = values(conv2d(layer, x.clone()));
        let per_item = values(Tensor::cat(
            (0..5)
                .map(|i| conv2d(layer, x.clone().narrow(0, i, 1)))
                .collect(),
            0,
        ));
        (batch, per_item)
    };
    // im2col: one product per image whatever the batch, so the same bits.
    let (batch, per_item) =
        batch_and_items(&conv_with(3, 4, [5, 5], [2, 2], [2, 2], true, &device));
    assert_eq!(batch, per_item);
    // Winograd: the batch's images share one product, whose sums the matrix-product library may
    // block differently from a single image's; the same values within the tolerance of
    // `matches_burn` (F(2×2, 5×5)'s transforms amplify rounding: differences up to ~1.4e-6
    // seen over randomly initialised layers).
    let (batch, per_item) = batch_and_items(&conv(3, 4, [5, 5], [2, 2], &device));
    let d = max_rel(&batch, &per_item);
    assert!(d < 1e-5, "{d}");
}

#[test]
fn other_convolutions_fall_back_to_burn() {
    // Dilation 2 is not the host kernel's: the result must be Burn's, exactly.
    let device = Device::flex();
    let layer = Conv2dConfig::new([2, 3], [3, 3])
        .with_dilation([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let x = signed([2, 2, 8, 8], 5, &device);
    assert_eq!(values(conv2d(&layer, x.clone())), values(layer.forward(x)));
}
