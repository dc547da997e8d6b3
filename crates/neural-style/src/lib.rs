//! Neural style transfer (Gatys, Ecker & Bethge 2015, "A Neural Algorithm of Artistic
//! Style") on [burn]: a frozen VGG network, content and Gram-matrix style losses, and an
//! optimiser (L-BFGS or Adam) over the image's pixels.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use neural_style::{Image, Inputs, Network, TransferConfig, run, default_device};
//!
//! # fn main() -> neural_style::Result<()> {
//! let config = TransferConfig { iterations: 200, ..TransferConfig::default() };
//! let net = Network::load("vgg19.safetensors".as_ref(), &config, &default_device())?;
//! let inputs = Inputs {
//!     content: Some(Image::load("photo.jpg".as_ref(), neural_style::DEFAULT_MAX_INPUT_PIXELS)?),
//!     styles: vec![Image::load("painting.jpg".as_ref(), neural_style::DEFAULT_MAX_INPUT_PIXELS)?],
//!     ..Inputs::default()
//! };
//! let mut observer = |event: &neural_style::Event<'_>| {
//!     if let neural_style::Event::Evaluation { evaluation, loss, .. } = event {
//!         let _ = (evaluation, loss.total);
//!     }
//!     ControlFlow::Continue(())
//! };
//! let output = run(&net, &config, &inputs, &mut observer)?;
//! output.image.save("out.png".as_ref())?;
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
pub mod color;
pub mod config;
pub mod device;
pub mod error;
pub mod fastconv;
pub mod flow;
pub mod image_io;
pub mod linalg;
pub mod loss;
pub mod mask;
pub mod maxpool;
pub mod memory;
pub mod optim;
pub mod sheet;
pub mod transfer;
pub mod vgg;
pub mod video;
pub mod w2;
pub mod weights;
pub mod winograd;

pub use checkpoint::Checkpoint;
pub use color::PreserveColors;
pub use config::{Init, LossWeights, OptimizerKind, Scale, Size, StyleLoss, TransferConfig};
pub use device::{DeviceChoice, default_device};
pub use error::{Error, Result};
pub use image_io::{DEFAULT_MAX_INPUT_PIXELS, Image};
pub use loss::LossForm;
pub use mask::Mask;
pub use transfer::{
    Event, Inputs, LossParts, Network, NoObserver, Objective, Observer, Output, StyleInput,
    Temporal, run, run_resumable,
};
pub use vgg::{Arch, Convolution, InputConvention, Layer, Padding, Pooling, Vgg};
pub use weights::{WeightFile, WeightsInfo};
