//! Fast CPU layers for burn's `flex` backend, registered as a burn backend extension with
//! their own backward steps: the 3×3 convolution as Winograd F(4×4, 3×3)
//! ([`neural_style_kernels::winograd`]), or computed directly where a side has few channels
//! ([`neural_style_kernels::direct`]), with its rectifier fused, 2×2 max pooling ([`neural_style_kernels::maxpool`]) and
//! the Gram matrix. The network's weights are constants (style transfer optimises the
//! image), so each backward step computes the input gradient only. The convolution's is
//! itself a convolution of the same kind with the transposed, flipped filters and keeps only
//! those filters and, when rectified, its output (shared with the next layer, not copied);
//! the pooling and the Gram matrix keep their input, which the network holds anyway.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::prelude::*;
use burn_flex::FlexTensor;

use neural_style_kernels::Border;
use neural_style_kernels::bf16::MR;
use neural_style_kernels::maxpool;
use neural_style_kernels::winograd::{self, POSITIONS, Tile};

#[backend_extension(Flex, Autodiff)]
pub trait WinogradBackend: Backend {
    /// A 3×3, stride-1 convolution of `x` (`[n, cin, h, w]`) padded by one pixel read as
    /// `border` (0 zero, 1 reflect, 2 replicate), with filters `u` (for the output) and
    /// `u_back` (for the gradient, mapping the output's channels back) in the form `kind`
    /// says ([`Kind::code`]), and `bias` (`[cout]`), rectified when `relu`. Gradients reach
    /// `x` only.
    fn conv3x3(
        x: FloatTensor<Self>,
        u: FloatTensor<Self>,
        u_back: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        border: usize,
        relu: bool,
        kind: usize,
    ) -> FloatTensor<Self>;

    /// 2×2, stride-2 max pooling of `x` (`[n, c, h, w]`) ([`neural_style_kernels::maxpool`]).
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The Gram matrix `F Fᵀ` of `f` (`[c, n]`) ([`neural_style_kernels::linalg::gram`]).
    fn gram(f: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn gram_of(f: &FlexTensor) -> FlexTensor {
    let s = f.layout().shape();
    let (c, n) = (s[0], s[1]);
    FlexTensor::from_data(TensorData::new(
        neural_style_kernels::linalg::gram(&values(f), c, n),
        [c, c],
    ))
}

/// The max pooling of `x`.
fn pool(x: &FlexTensor) -> FlexTensor {
    let [n, c, h, w] = dims4(x);
    let y = maxpool::forward(&values(x), n * c, h, w);
    FlexTensor::from_data(TensorData::new(y, [n, c, h / 2, w / 2]))
}

fn border_of(code: usize) -> Border {
    match code {
        1 => Border::Reflect,
        2 => Border::Replicate,
        _ => Border::Zero,
    }
}

/// The tensor's values, contiguous.
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

/// How a convolution's filters are held and its products computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Transformed by [`winograd::transform_filters`] for [`Tile::F4`]: `[36, rows,
    /// channels]`, f32 products.
    Winograd,
    /// The words of [`winograd::pack_filters_bf16`] as f32 bit patterns (`[36, rows rounded
    /// up to 8, channels / 2]`): bf16 products.
    WinogradBf16,
    /// As they are, `[rows, channels, 3, 3]`, for [`neural_style_kernels::direct`].
    Direct,
}

impl Kind {
    /// The kind as the backend operation's argument.
    fn code(self) -> usize {
        self as usize
    }

    fn from_code(code: usize) -> Self {
        match code {
            0 => Self::Winograd,
            1 => Self::WinogradBf16,
            _ => Self::Direct,
        }
    }
}

/// A convolution's filters as a tensor holds them: `rows` of them, in the form `kind` says.
#[derive(Debug, Clone)]
struct Filters {
    u: FlexTensor,
    rows: usize,
    kind: Kind,
}

/// The convolution of `x` (`[n, c, h, w]`, read as zero where `mask` is not positive) with
/// filters `u`, padded by `pad` read as `border`, plus `bias`,
/// rectified when `relu`: `[n, rows, h + 2·pad − 2, …]`.
fn convolve(
    x: &FlexTensor,
    u: &Filters,
    bias: Option<&FlexTensor>,
    relu: bool,
    mask: Option<&FlexTensor>,
    (pad, border): (usize, Border),
) -> FlexTensor {
    let [n, channels, height, width] = dims4(x);
    let rows = u.rows;
    let shape = winograd::Shape {
        n,
        channels,
        height,
        width,
        pad,
        border,
    };
    let (ho, wo) = shape.output();
    let bias = bias.map(values);
    let mask = mask.map(values);
    let fuse = winograd::Fuse {
        bias: bias.as_deref(),
        relu,
        input_mask: mask.as_deref(),
    };
    let (x, values_u) = (values(x), values(&u.u));
    let y = match u.kind {
        Kind::Direct => neural_style_kernels::direct::conv3x3(&x, &shape, &values_u, rows, fuse),
        Kind::Winograd => {
            let u = winograd::Filters::F32 {
                tile: Tile::F4,
                u: &values_u,
            };
            winograd::conv3x3(&x, &shape, u, rows, fuse)
        }
        Kind::WinogradBf16 => {
            let words = winograd::Filters::Bf16(bytemuck::cast_slice(&values_u));
            winograd::conv3x3(&x, &shape, words, rows, fuse)
        }
    };
    FlexTensor::from_data(TensorData::new(y, [n, rows, ho, wo]))
}

/// The gradient of the convolution's input from the gradient of its output (masked by the
/// rectified output when the convolution was rectified).
fn input_gradient(
    grad: &FlexTensor,
    u_back: &Filters,
    border: Border,
    output: Option<&FlexTensor>,
) -> FlexTensor {
    match border {
        Border::Zero => convolve(grad, u_back, None, false, output, (1, Border::Zero)),
        Border::Reflect | Border::Replicate => {
            // The gradient of the padded input (two pixels larger), folded back.
            let padded = convolve(grad, u_back, None, false, output, (2, Border::Zero));
            let [n, c, hp, wp] = dims4(&padded);
            let (h, w) = (hp - 2, wp - 2);
            let folded = winograd::fold_padding(&values(&padded), n * c, h, w, border);
            FlexTensor::from_data(TensorData::new(folded, [n, c, h, w]))
        }
    }
}

impl WinogradBackend for Flex {
    fn conv3x3(
        x: FlexTensor,
        u: FlexTensor,
        _u_back: FlexTensor,
        bias: FlexTensor,
        border: usize,
        relu: bool,
        kind: usize,
    ) -> FlexTensor {
        let rows = bias.layout().shape()[0];
        let kind = Kind::from_code(kind);
        let u = Filters { u, rows, kind };
        convolve(&x, &u, Some(&bias), relu, None, (1, border_of(border)))
    }

    fn max_pool2x2(x: FlexTensor) -> FlexTensor {
        pool(&x)
    }

    fn gram(f: FlexTensor) -> FlexTensor {
        gram_of(&f)
    }
}

/// The backward step of an operation with one differentiable input: the input's gradient
/// from the operation's kept state and the output's gradient.
struct OneInput<S> {
    gradient: fn(&S, FlexTensor) -> FlexTensor,
}

impl<S> std::fmt::Debug for OneInput<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneInput")
    }
}

impl<S: Clone + Send + std::fmt::Debug + 'static> Backward<Flex, 1> for OneInput<S> {
    type State = S;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, (self.gradient)(&ops.state, grad));
        }
    }
}

/// Runs `forward` on `x`'s values and, when `x` is tracked, records `gradient` with the
/// state `forward` returns (made only when tracked).
fn one_input<C: CheckpointStrategy, S: Clone + Send + std::fmt::Debug + 'static>(
    x: FloatTensor<Autodiff<Flex, C>>,
    forward: impl FnOnce(&FlexTensor, bool) -> (FlexTensor, Option<S>),
    gradient: fn(&S, FlexTensor) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    let step = OneInput { gradient };
    match step.prepare::<C>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward(x.primitive(), true);
            prep.finish(state.expect("a state when tracked"), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive(), false).0),
    }
}

/// The Gram matrix's gradient: d(F Fᵀ) = (G' + G'ᵀ) F ([`neural_style_kernels::linalg::gram_gradient`]).
fn gram_gradient(f: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let s = f.layout().shape();
    let (c, n) = (s[0], s[1]);
    FlexTensor::from_data(TensorData::new(
        neural_style_kernels::linalg::gram_gradient(&values(&grad), &values(f), c, n),
        [c, n],
    ))
}

/// The max pooling's gradient, from the pooled input.
fn pool_gradient(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let [n, c, h, w] = dims4(x);
    let g = maxpool::backward(&values(x), &values(&grad), n * c, h, w);
    FlexTensor::from_data(TensorData::new(g, [n, c, h, w]))
}

/// The convolution's gradient from its state: the gradient's transformed filters, the
/// border, and the output when it was rectified (shared with the layers that read it).
type ConvState = (Filters, usize, Option<FlexTensor>);

fn conv_gradient((u_back, border, output): &ConvState, grad: FlexTensor) -> FlexTensor {
    input_gradient(&grad, u_back, border_of(*border), output.as_ref())
}

impl<C: CheckpointStrategy> WinogradBackend for Autodiff<Flex, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        u: FloatTensor<Self>,
        u_back: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        border: usize,
        relu: bool,
        kind: usize,
    ) -> FloatTensor<Self> {
        let bias = bias.into_primitive();
        let rows = bias.layout().shape()[0];
        let kind = Kind::from_code(kind);
        let u = Filters {
            u: u.into_primitive(),
            rows,
            kind,
        };
        // The gradient's filters map the output's channels back to the input's.
        let u_back = Filters {
            u: u_back.into_primitive(),
            rows: x.primitive().layout().shape()[1],
            kind,
        };
        let pad = (1, border_of(border));
        one_input::<C, _>(
            x,
            |x, tracked| {
                let out = convolve(x, &u, Some(&bias), relu, None, pad);
                let state = tracked.then(|| (u_back, border, relu.then(|| out.clone())));
                (out, state)
            },
            conv_gradient,
        )
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        one_input::<C, _>(
            x,
            |x, tracked| (pool(x), tracked.then(|| x.clone())),
            pool_gradient,
        )
    }

    fn gram(f: FloatTensor<Self>) -> FloatTensor<Self> {
        one_input::<C, _>(
            f,
            |f, tracked| (gram_of(f), tracked.then(|| f.clone())),
            gram_gradient,
        )
    }
}

/// The Gram matrix `F Fᵀ` of `f` (`[c, n]`) on the CPU (`f` on the CPU device).
pub fn gram(f: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as WinogradBackend>::gram(f.into_dispatch()))
}

/// 2×2, stride-2 max pooling on the CPU (`x` on the CPU device), with a gradient that
/// needs no stored indices.
pub fn max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as WinogradBackend>::max_pool2x2(
        x.into_dispatch(),
    ))
}

/// One convolution's filters, in the form its products need, for the forward pass and for
/// the gradient.
#[derive(Debug, Clone)]
pub struct ConvFilters {
    u: Tensor<3>,
    u_back: Tensor<3>,
    bias: Tensor<1>,
    kind: Kind,
}

impl ConvFilters {
    /// Transforms `weight` (`[cout, cin, 3, 3]`, row-major) for the Winograd convolution and
    /// keeps `bias`, on `device` (the CPU device). With `bf16`, the matrix products will run
    /// in bf16 (only where [`neural_style_kernels::bf16::available`]).
    pub fn winograd(
        weight: &[f32],
        bias: &[f32],
        (cout, cin): (usize, usize),
        bf16: bool,
        device: &Device,
    ) -> Self {
        // F(4×4, 3×3) with the gradient's filters transformed on their own, in f32 or packed
        // for bf16 products (the words as f32 bit patterns: the tensor only carries them to
        // the kernel). F(6×6, 3×3), with a fifth fewer products and one copy of the filters
        // for both passes, measured no faster in whole runs: its larger transforms cost what
        // the products save (docs/speed.md).
        let tensor = |transpose_flip: bool, rows: usize, cols: usize| {
            let u = winograd::transform_filters(weight, cout, cin, transpose_flip, Tile::F4);
            if bf16 {
                let words: Vec<f32> = winograd::pack_filters_bf16(&u, rows, cols)
                    .into_iter()
                    .map(f32::from_bits)
                    .collect();
                let shape = [POSITIONS, rows.div_ceil(MR) * MR, cols.div_ceil(2)];
                Tensor::from_data(TensorData::new(words, shape), device)
            } else {
                Tensor::from_data(TensorData::new(u, [POSITIONS, rows, cols]), device)
            }
        };
        Self {
            u: tensor(false, cout, cin),
            u_back: tensor(true, cin, cout),
            bias: Tensor::from_data(TensorData::new(bias.to_vec(), [cout]), device),
            kind: if bf16 {
                Kind::WinogradBf16
            } else {
                Kind::Winograd
            },
        }
    }

    /// Keeps `weight` (`[cout, cin, 3, 3]`) and `bias` for the direct convolution
    /// ([`neural_style_kernels::direct`]), with the gradient's filters beside them.
    pub fn direct(
        weight: &[f32],
        bias: &[f32],
        (cout, cin): (usize, usize),
        device: &Device,
    ) -> Self {
        let back = neural_style_kernels::direct::transpose_flip(weight, cout, cin);
        Self {
            u: Tensor::from_data(TensorData::new(weight.to_vec(), [cout, cin, 9]), device),
            u_back: Tensor::from_data(TensorData::new(back, [cin, cout, 9]), device),
            bias: Tensor::from_data(TensorData::new(bias.to_vec(), [cout]), device),
            kind: Kind::Direct,
        }
    }

    /// Whether this convolution runs as Winograd's.
    pub fn is_winograd(&self) -> bool {
        self.kind != Kind::Direct
    }

    /// The convolution of `x` (`[n, cin, h, w]`) padded by one pixel read as `border`,
    /// rectified when `relu`.
    pub fn conv(&self, x: Tensor<4>, border: Border, relu: bool) -> Tensor<4> {
        let code = match border {
            Border::Zero => 0,
            Border::Reflect => 1,
            Border::Replicate => 2,
        };
        Tensor::from_dispatch(<Dispatch as WinogradBackend>::conv3x3(
            x.into_dispatch(),
            self.u.clone().into_dispatch(),
            self.u_back.clone().into_dispatch(),
            self.bias.clone().into_dispatch(),
            code,
            relu,
            self.kind.code(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::vgg::{
        Arch, Convolution, Layer, Padding, Pooling, Precision, Vgg, random_conv_params,
    };

    /// Features and the input gradient of a loss on them, with one convolution algorithm.
    fn run(padding: Padding, convolution: Convolution, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
        run_in(
            padding,
            (convolution, Precision::F32),
            h,
            w,
            &[Layer::Relu2_1, Layer::Conv3_1, Layer::Relu4_1],
        )
    }

    /// [`run`] with the products' precision and the layers given.
    fn run_in(
        padding: Padding,
        (convolution, precision): (Convolution, Precision),
        h: usize,
        w: usize,
        layers: &[Layer],
    ) -> (Vec<f32>, Vec<f32>) {
        use burn::prelude::*;
        let device = crate::model::device::cpu();
        // Widths 16, 32, 64, 128: the eight convolutions after the first are Winograd's.
        let params = random_conv_params(Arch::Vgg19, Layer::Relu4_1, 4, 3);
        let vgg = Vgg::new(
            Arch::Vgg19,
            params,
            Layer::Relu4_1,
            Pooling::Max,
            padding,
            &device,
        )
        .unwrap()
        .with_convolution(convolution)
        .unwrap()
        .with_precision(precision)
        .unwrap();
        let expected = if convolution == Convolution::Winograd {
            8
        } else {
            0
        };
        assert_eq!(vgg.winograd_layers(), expected);
        let n = 3 * h * w;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [1, 3, h, w]), &device).require_grad();
        // Rectified layers (their convolutions fuse the rectifier) and one convolution output.
        let feats = vgg.features(x.clone(), layers);
        let loss = feats
            .iter()
            .map(|f| f.clone().powf_scalar(2.0).mean())
            .reduce(|a, b| a + b)
            .unwrap();
        let grads = loss.backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let f = feats
            .into_iter()
            .flat_map(|f| f.into_data().try_to_vec::<f32>().unwrap())
            .collect();
        (f, g)
    }

    fn max_relative(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let peak = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / peak
    }

    #[test]
    fn winograd_network_matches_the_direct_one_in_value_and_gradient() {
        for (padding, h, w) in [
            (Padding::Zero, 37, 29),
            (Padding::Reflect, 40, 33),
            (Padding::Replicate, 19, 24),
        ] {
            let (fd, gd) = run(padding, Convolution::Direct, h, w);
            let (fw, gw) = run(padding, Convolution::Winograd, h, w);
            let (ef, eg) = (max_relative(&fw, &fd), max_relative(&gw, &gd));
            eprintln!("{padding:?}: largest difference {ef:.1e} (features), {eg:.1e} (gradient)");
            assert!(
                ef < 2e-5 && eg < 2e-5,
                "{padding:?}: features {ef}, gradient {eg}"
            );
            assert!(gd.iter().any(|v| *v != 0.0));
        }
    }

    #[test]
    fn bf16_network_stays_within_a_few_percent_of_the_direct_one() {
        if !neural_style_kernels::bf16::available() {
            eprintln!("skipping: this CPU has no AVX512-BF16 (the bf16 path never runs here)");
            return;
        }
        // Layer by layer, deeper layers gathering the rounding of every convolution before.
        let layers = [
            Layer::Relu1_2,
            Layer::Relu2_2,
            Layer::Relu3_4,
            Layer::Relu4_1,
        ];
        for layer in layers {
            let run = |kernels| run_in(Padding::Reflect, kernels, 40, 33, &[layer]);
            let direct = run((Convolution::Direct, Precision::F32));
            let bf16 = run((Convolution::Winograd, Precision::Bf16));
            let (ef, eg) = (
                rms_relative(&bf16.0, &direct.0),
                rms_relative(&bf16.1, &direct.1),
            );
            eprintln!(
                "{layer}: bf16 relative RMS difference {ef:.1e} (features), {eg:.1e} (gradient)"
            );
            // Measured on this network: features 1.8-2.4e-2, gradients 1.1e-2 at relu1_2 growing
            // to 3.6e-1 at relu4_1 (probably near-zero pre-activations changing sign, which the rectifier
            // masks then follow). A broken kernel is off by 100% or more.
            assert!(
                ef < 5e-2 && eg < 5e-1,
                "{layer}: features {ef}, gradient {eg}"
            );
        }
    }

    fn rms_relative(a: &[f32], b: &[f32]) -> f32 {
        let sq = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
        sq(&mut a.iter().zip(b).map(|(x, y)| x - y)) / sq(&mut b.iter().copied())
    }

    #[test]
    fn gram_matches_the_matrix_product_in_value_and_gradient() {
        use burn::prelude::*;
        let device = crate::model::device::cpu();
        // Long enough to be split among threads.
        let (c, n) = (5, 5000);
        let data: Vec<f32> = (0..c * n)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let run = |fast: bool| {
            let f = Tensor::<2>::from_data(TensorData::new(data.clone(), [c, n]), &device)
                .require_grad();
            let g = if fast {
                super::gram(f.clone())
            } else {
                f.clone().matmul(f.clone().transpose())
            };
            let weights = Tensor::<2>::from_data(
                TensorData::new(
                    (0..c * c).map(|i| i as f32 - 7.0).collect::<Vec<_>>(),
                    [c, c],
                ),
                &device,
            );
            let grads = (g.clone() * weights).sum().backward();
            let gf = f
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (g.into_data().try_to_vec::<f32>().unwrap(), gf)
        };
        let ((g1, d1), (g2, d2)) = (run(true), run(false));
        assert!(max_relative(&g1, &g2) < 1e-5, "{}", max_relative(&g1, &g2));
        assert!(max_relative(&d1, &d2) < 1e-5, "{}", max_relative(&d1, &d2));
    }
}
