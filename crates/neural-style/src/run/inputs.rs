//! The images a run starts from: the photo, the paintings, their regions, the start image
//! and a video frame's temporal target (Ruder et al. 2016), and the seeded noise image.

use rand::{RngExt, SeedableRng};

use crate::image::io::Image;
use crate::objective::mask::Mask;

/// The images of a run, at any size (they are resized to the configured size).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The content photo (none for texture synthesis).
    pub content: Option<Image>,
    /// One or more style images (none for content reconstruction).
    pub styles: Vec<Image>,
    /// The initial image when `init` is [`Init::Image`].
    pub init: Option<Image>,
    /// One region per style image (Gatys et al. 2017): style `i` is matched only where
    /// mask `i` is white. Empty: every style everywhere. Stretched to the output size.
    pub style_masks: Vec<Mask>,
    /// Weights the content term per position, scaled to mean 1 so the term keeps its
    /// overall weight: bright regions stay closer to the photo than without the mask, black
    /// ones are left to the style. Stretched to the output size.
    pub content_mask: Option<Mask>,
    /// For a video frame: the previous stylised frame warped onto this one, to stay close
    /// to where the optical flow says it is reliable (Ruder et al. 2016).
    pub temporal: Option<Temporal>,
}

/// The temporal consistency target of a video frame (Ruder, Dosovitskiy & Brox 2016, eq. 5):
/// the term `mean(c · (x − ω)²)`, in 0..1 pixel units, pulls the image `x` towards the
/// previous stylised frame warped by the optical flow, `ω`, where the per-pixel weight `c`
/// is 1 (the flow is consistent and the pixel was visible) and leaves it free where `c` is
/// 0 (occlusions, motion boundaries, pixels entering the frame). Its weight is
/// [`TransferConfig::temporal_weight`].
#[derive(Debug, Clone)]
pub struct Temporal {
    /// The previous stylised frame warped onto this one, any size with the output's aspect
    /// ratio (stretched to each size of the schedule).
    pub previous: Image,
    /// Per-pixel weight `c`, 0..1, the same size as `previous`.
    pub confidence: Mask,
}

/// Uniform white noise in 0..1, planar RGB, reproducible from `seed`.
pub fn noise_image(width: u32, height: u32, seed: u64) -> Image {
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..3 * width as usize * height as usize)
        .map(|_| rng.random::<f32>())
        .collect();
    Image::new(width, height, data)
}
