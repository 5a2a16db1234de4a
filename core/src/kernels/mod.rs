//! Host kernels for the CPU backend (Burn's flex), where its generic operations leave most of
//! an adversarial-training step's time (docs/BENCHMARKS.md): convolutions (any stride,
//! symmetric padding, one group) and a fused ReLU + 2×2 max-pooling.
//!
//! They plug into Burn through its backend-extension mechanism: an extension trait implemented
//! for `Flex` (the kernel) and for `Autodiff<Flex>` (the kernel plus its backward pass). The
//! public functions below route a tensor to them only when it lives on the flex device; every
//! other device (wgpu, WebGPU) gets the same computation from Burn's own operations, so results
//! agree across devices.

pub mod bert;
pub mod bert_grad;
mod conv;
mod pool;
mod winograd;

use bert_grad::LayerShape;
use conv::ConvShape;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::IntDType::I64;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Device, Shape, Tensor};

#[backend_extension(Flex, Autodiff)]
pub trait HostKernels: Backend {
    /// `max_pool2d(relu(x))`, 2×2 window, stride 2, on `[N, C, H, W]`.
    fn relu_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// A dilation-1, single-group 2-D convolution with a bias, symmetric padding and a stride
    /// (`geometry`: `[pad rows, pad columns, stride rows, stride columns]`), as
    /// [`burn::tensor::module::conv2d`] computes it.
    fn conv2d_host(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: [usize; 4],
    ) -> FloatTensor<Self>;
    /// One BERT layer ([`bert_grad`]) on padded `x` `[windows, length, hidden]` whose window i
    /// holds `lengths[i]` tokens, `params` its flat parameters; rows past a window's length
    /// come out 0.
    fn bert_layer_host(
        x: FloatTensor<Self>,
        params: FloatTensor<Self>,
        lengths: Vec<usize>,
        shape: LayerShape,
    ) -> FloatTensor<Self>;
}

/// Whether the host kernels serve this device. `RAMPART_KERNELS=burn` turns them off, so that
/// a benchmark can time Burn's own operations in the same build.
pub fn serves(device: &Device) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled =
        *ENABLED.get_or_init(|| std::env::var("RAMPART_KERNELS").as_deref() != Ok("burn"));
    enabled && is_flex(device)
}

fn is_flex(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// `max_pool2d(relu(x))` with a 2×2 window and stride 2 (the Madry CNN's pooling stage).
pub fn relu_max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    if serves(&x.device()) {
        Tensor::from_dispatch(<Dispatch as HostKernels>::relu_max_pool2x2(
            x.into_dispatch(),
        ))
    } else {
        relu_max_pool2x2_burn(x)
    }
}

/// `conv.forward(x)`; a single-group, dilation-1 convolution with symmetric explicit padding
/// runs on the host kernel on the CPU backend (without a bias of its own, on a zero bias that
/// takes no gradient).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match conv_geometry(conv) {
        Some(geometry) if serves(&x.device()) => {
            let bias = match &conv.bias {
                Some(bias) => bias.val(),
                None => Tensor::zeros([conv.weight.dims()[0]], &x.device()),
            };
            Tensor::from_dispatch(<Dispatch as HostKernels>::conv2d_host(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.into_dispatch(),
                geometry,
            ))
        }
        _ => conv.forward(x),
    }
}

/// [`HostKernels::bert_layer_host`] on a flex device: the caller checks [`serves`] and that both
/// tensors are f32, and that `lengths` and `params` fit `x` and `shape`.
pub fn bert_layer(
    x: Tensor<3>,
    params: Tensor<1>,
    lengths: Vec<usize>,
    shape: LayerShape,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as HostKernels>::bert_layer_host(
        x.into_dispatch(),
        params.into_dispatch(),
        lengths,
        shape,
    ))
}

/// `[pad rows, pad columns, stride rows, stride columns]` of a convolution of the host
/// kernel's kind (one group, dilation 1, no or symmetric explicit padding), `None` for any other;
/// the sizes are checked where the kernel runs ([`ConvShape::supported`]), which falls back to
/// Burn.
fn conv_geometry(conv: &Conv2d) -> Option<[usize; 4]> {
    if conv.dilation != [1, 1] || conv.groups != 1 {
        return None;
    }
    let [top, left] = match conv.padding {
        // PreAct ResNet's 1×1 shortcuts are built without padding.
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    Some([top, left, conv.stride[0], conv.stride[1]])
}

/// The same with Burn's operations: the reference the kernel is tested against.
pub fn relu_max_pool2x2_burn(x: Tensor<4>) -> Tensor<4> {
    burn::tensor::module::max_pool2d(
        burn::tensor::activation::relu(x),
        burn::tensor::ops::MaxPoolOptions::new([2, 2]).with_stride([2, 2]),
    )
}

/// A contiguous f32 view of a flex tensor, `None` for any other dtype.
fn f32_view(x: &FlexTensor) -> Option<&[f32]> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let (start, end) = x.layout().contiguous_offsets()?;
    Some(&x.storage::<f32>()[start..end])
}

fn flex_f32(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape)),
        DType::F32,
    )
}

fn dims3(x: &FlexTensor) -> [usize; 3] {
    let s = x.layout().shape();
    [s[0], s[1], s[2]]
}

/// The packed input and flat parameters of [`HostKernels::bert_layer_host`], with `x`'s dims.
fn bert_inputs(
    x: FlexTensor,
    params: FlexTensor,
    lengths: &[usize],
) -> ([usize; 3], Vec<f32>, FlexTensor) {
    let (x, params) = (x.to_contiguous(), params.to_contiguous());
    let [w, l, h] = dims3(&x);
    let xv = f32_view(&x).expect("the BERT layer kernel takes f32 (checked by its caller)");
    ([w, l, h], bert_grad::pack(xv, lengths, l, h), params)
}

fn dims4(x: &FlexTensor) -> [usize; 4] {
    let s = x.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

impl HostKernels for Flex {
    fn relu_max_pool2x2(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let [n, c, h, w] = dims4(&x);
        match f32_view(&x) {
            Some(v) => flex_f32(pool::forward(v, n * c, h, w), vec![n, c, h / 2, w / 2]),
            None => Flex::max_pool2d(Flex::relu(x), [2, 2], [2, 2], [0, 0], [1, 1], false),
        }
    }

    fn conv2d_host(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        geometry: [usize; 4],
    ) -> FlexTensor {
        let (x, weight, bias) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            bias.to_contiguous(),
        );
        let shape = conv_shape(&x, &weight, geometry);
        match (shape, f32_view(&x), f32_view(&weight), f32_view(&bias)) {
            (Some(s), Some(xv), Some(wv), Some(bv)) if bv.len() == s.c_out => flex_f32(
                conv::forward(xv, wv, bv, &s),
                vec![s.n, s.c_out, s.out_h(), s.out_w()],
            ),
            _ => Flex::conv2d(x, weight, Some(bias), conv_options(geometry)),
        }
    }

    fn bert_layer_host(
        x: FlexTensor,
        params: FlexTensor,
        lengths: Vec<usize>,
        shape: LayerShape,
    ) -> FlexTensor {
        let ([w, l, h], x, params) = bert_inputs(x, params, &lengths);
        let pv = f32_view(&params).expect("f32 parameters (checked by the caller)");
        let (out, _) = bert_grad::forward(&x, &lengths, pv, shape, false);
        flex_f32(bert_grad::unpack(&out, &lengths, l, h), vec![w, l, h])
    }
}

/// The gradients of [`HostKernels::conv2d_host`] that `wanted` asks for: input, weights, bias.
fn conv2d_host_backward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    grad: FlexTensor,
    geometry: [usize; 4],
    wanted: [bool; 3],
) -> [Option<FlexTensor>; 3] {
    let (x, weight, grad) = (
        x.to_contiguous(),
        weight.to_contiguous(),
        grad.to_contiguous(),
    );
    let shape = conv_shape(&x, &weight, geometry);
    if let (Some(s), Some(xv), Some(wv), Some(gv)) =
        (shape, f32_view(&x), f32_view(&weight), f32_view(&grad))
    {
        let dx =
            wanted[0].then(|| flex_f32(conv::input_grad(gv, wv, &s), vec![s.n, s.c_in, s.h, s.w]));
        let (dw, db) = if wanted[1] || wanted[2] {
            let (dw, db) = conv::weight_grad(xv, gv, &s);
            (
                wanted[1].then(|| flex_f32(dw, vec![s.c_out, s.c_in, s.kh, s.kw])),
                wanted[2].then(|| flex_f32(db, vec![s.c_out])),
            )
        } else {
            (None, None)
        };
        return [dx, dw, db];
    }
    // Other dtypes: Burn's own gradients.
    let options = conv_options(geometry);
    [
        wanted[0].then(|| {
            Flex::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        }),
        wanted[1].then(|| {
            Flex::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        }),
        wanted[2].then(|| Flex::conv2d_bias_backward(x.clone(), bias, grad.clone())),
    ]
}

/// The shape of `conv2d_host(x, weight, _, geometry)`, `None` where the kernel does not apply.
fn conv_shape(x: &FlexTensor, weight: &FlexTensor, geometry: [usize; 4]) -> Option<ConvShape> {
    let [n, c_in, h, w] = dims4(x);
    let [c_out, wc_in, kh, kw] = dims4(weight);
    let s = ConvShape {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        ph: geometry[0],
        pw: geometry[1],
        sh: geometry[2],
        sw: geometry[3],
    };
    (wc_in == c_in && s.supported()).then_some(s)
}

fn conv_options(geometry: [usize; 4]) -> ConvOptions<2> {
    ConvOptions::new(
        [geometry[2], geometry[3]],
        [geometry[0], geometry[1]],
        [1, 1],
        1,
    )
}

/// The gradient of [`HostKernels::relu_max_pool2x2`] with respect to its input.
fn relu_max_pool2x2_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let [n, c, h, w] = dims4(&x);
    match (f32_view(&x), f32_view(&grad)) {
        (Some(xv), Some(gv)) => flex_f32(pool::backward(xv, gv, n * c, h, w), vec![n, c, h, w]),
        _ => {
            // Other dtypes: Burn's own gradients of the two operations.
            let (k, pad, dil) = ([2, 2], [0, 0], [1, 1]);
            let r = Flex::relu(x);
            let pooled = Flex::max_pool2d_with_indices(r.clone(), k, k, pad, dil, false, I64);
            let g = Flex::max_pool2d_with_indices_backward(
                r.clone(),
                k,
                k,
                pad,
                dil,
                false,
                grad,
                pooled.indices,
            );
            Flex::relu_backward(r, g.x_grad)
        }
    }
}

#[derive(Debug)]
struct ReluMaxPoolBackward;

impl Backward<Flex, 1> for ReluMaxPoolBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<NodeId, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let x: FlexTensor = checkpointer.retrieve_node_output(ops.state);
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, relu_max_pool2x2_backward(x, grad));
        }
    }
}

#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (NodeId, NodeId, NodeId, [usize; 4]);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, weight, bias, geometry) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight);
        let bias: FlexTensor = checkpointer.retrieve_node_output(bias);
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let out = conv2d_host_backward(x, weight, bias, grad, geometry, wanted);
        for (parent, g) in ops.parents.into_iter().zip(out) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

#[derive(Debug)]
struct BertLayerBackward;

#[derive(Debug, Clone)]
struct BertLayerState {
    /// `None` for a batch of no tokens.
    saved: Option<std::sync::Arc<bert_grad::Saved>>,
    dims: [usize; 3],
    params: usize,
}

impl Backward<Flex, 2> for BertLayerBackward {
    type State = BertLayerState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let state = ops.state;
        let [w, l, h] = state.dims;
        let [x_node, params_node] = ops.parents;
        let (dx, dparams) = match (&state.saved, f32_view(&grad)) {
            (Some(saved), Some(g)) => {
                let lengths = saved.lengths();
                let dout = bert_grad::pack(g, lengths, l, h);
                let (dx, dp) = bert_grad::backward(saved, &dout, params_node.is_some());
                (bert_grad::unpack(&dx, lengths, l, h), dp)
            }
            _ => (vec![0.0; w * l * h], vec![0.0; state.params]),
        };
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_f32(dx, vec![w, l, h]));
        }
        if let Some(node) = params_node {
            grads.register::<Flex>(node.id, flex_f32(dparams, vec![state.params]));
        }
    }
}

impl<C: CheckpointStrategy> HostKernels for Autodiff<Flex, C> {
    fn bert_layer_host(
        x: FloatTensor<Self>,
        params: FloatTensor<Self>,
        lengths: Vec<usize>,
        shape: LayerShape,
    ) -> FloatTensor<Self> {
        match BertLayerBackward
            .prepare::<C>([x.node(), params.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (dims, xs, params) =
                    bert_inputs(x.into_primitive(), params.into_primitive(), &lengths);
                let pv = f32_view(&params).expect("f32 parameters (checked by the caller)");
                let (out, saved) = bert_grad::forward(&xs, &lengths, pv, shape, true);
                let [w, l, h] = dims;
                let out = flex_f32(bert_grad::unpack(&out, &lengths, l, h), vec![w, l, h]);
                let state = BertLayerState {
                    saved: saved.map(std::sync::Arc::new),
                    dims,
                    params: shape.params(),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::bert_layer_host(
                x.into_primitive(),
                params.into_primitive(),
                lengths,
                shape,
            )),
        }
    }

    fn conv2d_host(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: [usize; 4],
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (
                    prep.checkpoint(&x),
                    prep.checkpoint(&weight),
                    prep.checkpoint(&bias),
                    geometry,
                );
                let out = Flex::conv2d_host(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    geometry,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv2d_host(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                geometry,
            )),
        }
    }

    fn relu_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match ReluMaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, Flex::relu_max_pool2x2(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::relu_max_pool2x2(x.into_primitive())),
        }
    }
}

/// Makes glibc's malloc keep freed memory for reuse instead of returning it to the system. By
/// default glibc maps each allocation of 32 MiB or more afresh and unmaps it when freed, so a
/// training step's large tensors (32 MiB each in PreAct ResNet-18's first stage at batch 128)
/// were page-faulted in and zeroed by the kernel at every allocation. Turns that mapping off
/// (a request too large for a thread's 64 MiB arena heap may still be mapped) and keeps up to
/// 2 GiB of freed heap; the process then holds its peak footprint until
/// it exits. A process-wide setting: call it first thing in `main`, before any thread starts.
/// Does nothing outside Linux with glibc, or with `RAMPART_ALLOCATOR=default`; returns whether
/// the setting took.
pub fn reuse_freed_memory() -> bool {
    if std::env::var("RAMPART_ALLOCATOR").is_ok_and(|v| v == "default") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters; it is called before the
        // program's threads allocate concurrently.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Runs `f` compiled for the best SIMD instruction set this CPU has (detected at run time; `f`'s
/// loops must be inlined into it to benefit).
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Runs `f(i, chunk)` on each `len`-sized chunk of `out`, in parallel where threads exist.
fn par_chunks_mut<F>(out: &mut [f32], len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(len)
        .enumerate()
        .for_each(|(i, chunk)| f(i, chunk));
}
