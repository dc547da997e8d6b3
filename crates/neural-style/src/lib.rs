//! Neural style transfer (Gatys, Ecker & Bethge 2015, "A Neural Algorithm of Artistic
//! Style") on [burn]: a frozen VGG network, content and Gram-matrix style losses, and an
//! optimiser (L-BFGS or Adam) over the image's pixels.
//!
//! A run is three steps: a [`TransferConfig`] is checked once ([`TransferConfig::check`]),
//! resolved against the loaded [`Network`] and the images into a [`Plan`], and [`run`]
//! optimises the image as the plan says, reporting [`Event`]s to an [`Observer`].
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use neural_style::{Image, Inputs, Network, Plan, TransferConfig, run, default_device};
//!
//! # fn main() -> neural_style::Result<()> {
//! let config = TransferConfig { iterations: 200, ..TransferConfig::default() };
//! let net = Network::load("vgg19.safetensors".as_ref(), &config, &default_device())?;
//! let inputs = Inputs {
//!     content: Some(Image::load("photo.jpg".as_ref(), neural_style::DEFAULT_MAX_INPUT_PIXELS)?),
//!     styles: vec![Image::load("painting.jpg".as_ref(), neural_style::DEFAULT_MAX_INPUT_PIXELS)?],
//!     ..Inputs::default()
//! };
//! let plan = Plan::new(&config.check(inputs.styles.len())?, &net, inputs)?;
//! let mut observer = |event: &neural_style::Event<'_>| {
//!     if let neural_style::Event::Evaluation { evaluation, loss, .. } = event {
//!         let _ = (evaluation, loss.total);
//!     }
//!     ControlFlow::Continue(())
//! };
//! let output = run(&net, &plan, &mut observer)?;
//! output.image.save("out.png".as_ref())?;
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
pub mod color;
pub mod config;
pub mod device;
pub mod error;
pub mod events;
pub mod flow;
pub mod image_io;
pub mod loss;
pub mod mask;
pub mod memory;
pub mod network;
pub mod objective;
pub mod optim;
pub mod plan;
pub mod run;
pub mod sheet;
pub mod structure;
pub mod tiling;
pub mod vgg;
pub mod video;
pub mod w2;
pub mod weights;

// The CPU kernels: crate-private; the `kernels` feature opens them for their profiling
// example.
#[cfg(feature = "kernels")]
pub mod bf16;
#[cfg(not(feature = "kernels"))]
mod bf16;
#[cfg(feature = "kernels")]
pub mod direct;
#[cfg(not(feature = "kernels"))]
mod direct;
#[cfg(feature = "kernels")]
pub mod fastconv;
#[cfg(not(feature = "kernels"))]
mod fastconv;
#[cfg(feature = "kernels")]
pub mod linalg;
#[cfg(not(feature = "kernels"))]
mod linalg;
#[cfg(feature = "kernels")]
pub mod maxpool;
#[cfg(not(feature = "kernels"))]
mod maxpool;
#[cfg(feature = "kernels")]
pub mod winograd;
#[cfg(not(feature = "kernels"))]
mod winograd;

pub use checkpoint::Checkpoint;
pub use color::PreserveColors;
pub use config::{
    CheckedConfig, Init, LossWeights, OptimizerKind, Size, StyleLoss, TransferConfig,
};
pub use device::{DeviceChoice, default_device};
pub use error::{Error, Result};
pub use events::{EvaluationTimes, Event, LossParts, NoObserver, Observer, Output};
pub use image_io::{
    BitDepth, DEFAULT_MAX_INPUT_PIXELS, Decoding, Dpi, Image, PrintInfo, SaveOptions,
};
pub use loss::LossForm;
pub use mask::Mask;
pub use network::Network;
pub use objective::{Objective, StyleInput};
pub use plan::{Plan, Stage};
pub use run::{Inputs, Temporal, run};
pub use tiling::{TileMode, Tiling};
pub use vgg::{Arch, Convolution, InputConvention, Layer, Padding, Pooling, Precision, Vgg};
pub use weights::{WeightFile, WeightsInfo};
