//! Times the Madry CNN's operations one by one on Burn's flex CPU backend (batch 128), and two
//! alternative max-pooling formulations, to see where an adversarial-training step spends its
//! time (docs/BENCHMARKS.md); with `resnet`, PreAct ResNet-18's 3×3 convolutions, one per stage,
//! through the host kernels.
//!     cargo run --release -p rampart --example opbench [resnet [CHANNELS]]
//! `OPBENCH_ONLY="name"` times only the row of that name (for a profiler);
//! `OPBENCH_N=k` times k calls instead of 8.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor, s};
use rampart_core::kernels::{conv2d, relu_max_pool2x2};
use std::time::Instant;

fn time<F: FnMut()>(name: &str, mut f: F) {
    if std::env::var("OPBENCH_ONLY").is_ok_and(|t| name != t) {
        return;
    }
    for _ in 0..2 {
        f();
    }
    // The mean of `OPBENCH_N` calls (8 by default), and the fastest one, steadier on a busy
    // machine.
    let n: usize = std::env::var("OPBENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (mut total, mut min) = (0.0f64, f64::INFINITY);
    for _ in 0..n {
        let t = Instant::now();
        f();
        let dt = t.elapsed().as_secs_f64() * 1e3;
        total += dt;
        min = min.min(dt);
    }
    println!("{name:40} {:8.2} ms (fastest {min:.2})", total / n as f64);
}

/// `f`'s output and the gradient of its sum with respect to `x`, read back.
fn input_grad<const D: usize>(x: &Tensor<D>, f: impl Fn(Tensor<D>) -> Tensor<D>) {
    let x = x.clone().require_grad();
    let g = f(x.clone()).sum().backward();
    let _ = x.grad(&g).unwrap().into_data();
}

fn pool_reshape(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .max_dim(5)
        .max_dim(3)
        .reshape([n, c, h / 2, w / 2])
}

fn pool_slices(x: Tensor<4>) -> Tensor<4> {
    let a = x.clone().slice(s![.., .., 0..;2, 0..;2]);
    let b = x.clone().slice(s![.., .., 0..;2, 1..;2]);
    let c = x.clone().slice(s![.., .., 1..;2, 0..;2]);
    let d = x.slice(s![.., .., 1..;2, 1..;2]);
    a.max_pair(b).max_pair(c.max_pair(d))
}

/// PreAct ResNet-18's stride-1 3×3 convolutions (width 64, 32×32 images), one per stage:
/// forward, forward + input gradient, forward + weight gradient, batch 128.
fn resnet(dev: &Device, only: Option<usize>) {
    let b = 128;
    for (c, hw) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
        if only.is_some_and(|o| o != c) {
            continue;
        }
        let conv = Conv2dConfig::new([c, c], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(dev);
        let x: Tensor<4> = Tensor::random([b, c, hw, hw], Distribution::Default, dev);
        let _ = conv.forward(x.clone());
        let frozen = conv.clone().no_grad();
        let name = format!("{c}x{hw}x{hw}");
        time(&format!("host {name} forward"), || {
            drop(conv2d(&conv, x.clone()).into_data())
        });
        time(&format!("host {name} forward + input grad"), || {
            input_grad(&x, |x| conv2d(&frozen, x))
        });
        time(&format!("host {name} forward + weight grad"), || {
            let g = conv2d(&conv, x.clone()).sum().backward();
            let _ = conv.weight.val().grad(&g).unwrap().into_data();
        });
    }
}

fn main() {
    // As the CLI does.
    rampart_core::kernels::reuse_freed_memory();
    let dev = Device::flex().autodiff();
    if std::env::args().nth(1).as_deref() == Some("resnet") {
        let only = std::env::args()
            .nth(2)
            .map(|c| c.parse().expect("a channel count"));
        return resnet(&dev, only);
    }
    let b = 128;
    let conv = |i, o| {
        Conv2dConfig::new([i, o], [5, 5])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .init(&dev)
    };
    let (c1, c2) = (conv(1, 32), conv(32, 64));
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let x1: Tensor<4> = Tensor::random([b, 1, 28, 28], Distribution::Default, &dev);
    let x2: Tensor<4> = Tensor::random([b, 32, 14, 14], Distribution::Default, &dev);
    let x3: Tensor<4> = Tensor::random([b, 32, 28, 28], Distribution::Default, &dev);
    // Materialise the lazily initialised weights before freezing copies: a copy taken earlier
    // would initialise its own, different weights.
    let _ = (c1.forward(x1.clone()), c2.forward(x2.clone()));
    let (c1f, c2f) = (c1.clone().no_grad(), c2.clone().no_grad());

    time("conv1 forward", || drop(c1.forward(x1.clone()).into_data()));
    time("conv2 forward", || drop(c2.forward(x2.clone()).into_data()));
    time("conv1 forward + input grad", || {
        input_grad(&x1, |x| c1f.forward(x))
    });
    time("conv2 forward + input grad", || {
        input_grad(&x2, |x| c2f.forward(x))
    });
    time("conv2 forward + weight grad", || {
        let g = c2.forward(x2.clone()).sum().backward();
        let _ = c2.weight.val().grad(&g).unwrap().into_data();
    });
    time("host conv1 forward", || {
        drop(conv2d(&c1, x1.clone()).into_data())
    });
    time("host conv2 forward", || {
        drop(conv2d(&c2, x2.clone()).into_data())
    });
    // conv2's input gradient is this convolution's forward pass (64 → 32 channels, the kernel
    // flipped; `kernels::conv` takes that route).
    let c2t = conv(64, 32);
    let x2t: Tensor<4> = Tensor::random([b, 64, 14, 14], Distribution::Default, &dev);
    time("host conv2 transposed forward", || {
        drop(conv2d(&c2t, x2t.clone()).into_data())
    });
    time("host conv1 forward + input grad", || {
        input_grad(&x1, |x| conv2d(&c1f, x))
    });
    time("host conv2 forward + input grad", || {
        input_grad(&x2, |x| conv2d(&c2f, x))
    });
    time("host conv2 forward + weight grad", || {
        let g = conv2d(&c2, x2.clone()).sum().backward();
        let _ = c2.weight.val().grad(&g).unwrap().into_data();
    });
    let fc1 = burn::nn::LinearConfig::new(3136, 1024).init(&dev);
    let xf: Tensor<2> = Tensor::random([b, 3136], Distribution::Default, &dev);
    let _ = fc1.forward(xf.clone());
    let fc1f = fc1.clone().no_grad();
    time("fc1 forward", || drop(fc1.forward(xf.clone()).into_data()));
    time("fc1 forward + input grad", || {
        input_grad(&xf, |x| relu(fc1f.forward(x)))
    });
    time("host relu + max-pool forward + grad", || {
        input_grad(&x3, relu_max_pool2x2)
    });
    time("max-pool forward (flex)", || {
        drop(pool.forward(x3.clone()).into_data())
    });
    time("max-pool forward + grad (flex)", || {
        input_grad(&x3, |x| pool.forward(x))
    });
    time("max-pool forward (reshape)", || {
        drop(pool_reshape(x3.clone()).into_data())
    });
    time("max-pool forward + grad (reshape)", || {
        input_grad(&x3, pool_reshape)
    });
    time("max-pool forward (slices)", || {
        drop(pool_slices(x3.clone()).into_data())
    });
    time("max-pool forward + grad (slices)", || {
        input_grad(&x3, pool_slices)
    });
    time("relu forward + grad", || input_grad(&x3, relu));
    let same = pool.forward(x3.clone()).into_data() == pool_reshape(x3.clone()).into_data()
        && pool.forward(x3.clone()).into_data() == pool_slices(x3.clone()).into_data();
    println!("pooling formulations agree: {same}");
}
