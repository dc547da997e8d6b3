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

// The library in layers, each importing only from those above it in this list
// (`tests/layers.rs` holds the table and checks every `use crate::` line against it):
pub mod config;
pub mod error;
pub mod image;
pub mod model;
pub mod objective;
pub mod run;
pub mod video;

pub use config::{
    CheckedConfig, Init, LossForm, LossWeights, OptimizerKind, Size, StyleLoss, TileMode,
    TransferConfig,
};
pub use error::{Error, Result};
pub use image::color::PreserveColors;
pub use image::io::{
    BitDepth, DEFAULT_MAX_INPUT_PIXELS, Decoding, Dpi, Image, PrintInfo, SaveOptions,
};
pub use model::device::{DeviceChoice, default_device};
pub use model::vgg::{Arch, Convolution, InputConvention, Layer, Padding, Pooling, Precision, Vgg};
pub use model::weights::{WeightFile, WeightsInfo};
pub use objective::mask::Mask;
pub use objective::parts::{EvaluationTimes, LossParts};
pub use objective::statistics::StyleInput;
pub use objective::terms::Objective;
pub use objective::tiling::Tiling;
pub use run::checkpoint::Checkpoint;
pub use run::events::{Event, NoObserver, Observer, Output};
pub use run::inputs::{Inputs, Temporal};
pub use run::network::Network;
pub use run::plan::{Plan, Stage};
pub use run::stages::run;
