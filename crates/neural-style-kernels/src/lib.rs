//! The CPU kernels of neural-style (Gatys, Ecker & Bethge 2015): the arithmetic of one VGG
//! evaluation on row-major `f32` slices (NCHW), with no tensor library. The 3×3
//! convolutions by Winograd's minimal filtering (Lavin & Gray 2016, [`winograd`]) or by the
//! definition where few channels make that cheaper ([`direct`]), their AVX512-BF16
//! products ([`bf16`]), 2×2 max pooling ([`maxpool`]) and the Gram matrix with its
//! gradient ([`linalg`]). The library's `fastconv` module wires them into burn's CPU backend
//! as custom operations with autodiff; each kernel is tested here against a plain
//! reference ([`testing`]).

pub mod bf16;
pub mod direct;
pub mod linalg;
pub mod maxpool;
pub mod testing;
pub mod winograd;

/// What a convolution reads outside the image: the padding rule, in the kernels' own terms
/// (the library's `Padding` setting maps onto it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Border {
    /// Zeros, as the network was trained.
    Zero,
    /// The image mirrored at its edge, without repeating the edge pixel.
    #[default]
    Reflect,
    /// The edge pixel repeated.
    Replicate,
}
