//! Spatial control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling Perceptual
//! Factors in Neural Style Transfer", sec. 4): a grey-level mask per style image restricts
//! that style's Gram matrices to a region, and a content mask weights the content term per
//! position. Masks are taken at each layer's resolution by area averaging.

use image::imageops::FilterType;
use image::{ImageBuffer, Luma};

use crate::error::{Error, Result};
use crate::image::io::Image;
use crate::model::vgg::Layer;

/// A grey-level mask in 0..1 (white: the region), `width` x `height`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// One value per pixel, 0..1.
    pub data: Vec<f32>,
}

impl Mask {
    /// The luminance (Rec. 601) of an image: white is in the region, black out of it,
    /// grey partly.
    pub fn from_image(image: &Image) -> Self {
        let plane = image.width as usize * image.height as usize;
        let data = (0..plane)
            .map(|i| {
                let (r, g, b) = (
                    image.data[i],
                    image.data[plane + i],
                    image.data[2 * plane + i],
                );
                (0.299 * r + 0.587 * g + 0.114 * b).clamp(0.0, 1.0)
            })
            .collect();
        Self {
            width: image.width,
            height: image.height,
            data,
        }
    }

    /// The mask resized to `width` x `height`: area averaging when shrinking (a triangle
    /// filter whose support grows with the factor), linear interpolation when growing.
    pub fn resized(&self, width: u32, height: u32) -> Self {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(self.width, self.height, self.data.clone())
                .expect("mask buffer has width x height values");
        let out = image::imageops::resize(&buf, width, height, FilterType::Triangle);
        Self {
            width,
            height,
            data: out
                .into_raw()
                .into_iter()
                .map(|v| v.clamp(0.0, 1.0))
                .collect(),
        }
    }

    /// The sum of the mask's values: its area in pixels.
    pub fn area(&self) -> f32 {
        self.data.iter().sum()
    }

    /// Whether the mask has the aspect ratio of a `width` x `height` image, within 2%
    /// (masks are stretched to the output, so a different shape would misplace regions).
    pub fn fits(&self, width: u32, height: u32) -> bool {
        let mine = self.width as f64 / self.height as f64;
        let theirs = width as f64 / height as f64;
        (mine / theirs - 1.0).abs() <= 0.02
    }

    /// What makes this mask unusable with a `content`-sized photo, if anything.
    pub fn problem(&self, content: Option<(u32, u32)>) -> Option<MaskProblem> {
        if self.area() < 0.5 {
            return Some(MaskProblem::Empty);
        }
        match content {
            Some((w, h)) if !self.fits(w, h) => Some(MaskProblem::Shape {
                mask: (self.width, self.height),
                content: (w, h),
            }),
            _ => None,
        }
    }
}

/// Why a mask cannot be used; displayed as the end of a sentence that names the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskProblem {
    /// Black everywhere.
    Empty,
    /// Another aspect ratio than the content image's.
    Shape {
        /// The mask's width and height.
        mask: (u32, u32),
        /// The content image's.
        content: (u32, u32),
    },
}

impl std::fmt::Display for MaskProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskProblem::Empty => write!(f, "is black everywhere: it marks no region"),
            MaskProblem::Shape {
                mask: (mw, mh),
                content: (w, h),
            } => write!(
                f,
                "is {mw}x{mh} but the content image is {w}x{h}; a mask needs the content's aspect ratio"
            ),
        }
    }
}

/// The spatial size of `layer`'s activation for a `width` x `height` input: each 2x2
/// pooling before it halves the size, rounding down.
pub fn layer_size(layer: Layer, width: u32, height: u32) -> (u32, u32) {
    let pools = layer.poolings_before();
    (width >> pools, height >> pools)
}

/// Checks how many masks a run has, before any image is read: one style mask per style
/// (or none), and a content mask only beside a content image.
pub fn check_counts(
    style_masks: usize,
    styles: usize,
    content_mask: bool,
    content: bool,
) -> Result<()> {
    if style_masks != 0 && style_masks != styles {
        return Err(Error::config(
            "style_masks",
            format!(
                "{style_masks} masks for {styles} style images; give one per style image, in the same order"
            ),
        ));
    }
    if content_mask && !content {
        return Err(Error::config("content_mask", "needs a content image"));
    }
    Ok(())
}

/// Checks the masks of a run against its content image and styles: their counts
/// ([`check_counts`]), none empty, each with the content's aspect ratio.
pub fn check(
    style_masks: &[Mask],
    styles: usize,
    content_mask: Option<&Mask>,
    content: Option<(u32, u32)>,
) -> Result<()> {
    check_counts(
        style_masks.len(),
        styles,
        content_mask.is_some(),
        content.is_some(),
    )?;
    let masks = style_masks
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("style mask {}", i + 1), m))
        .chain(content_mask.map(|m| ("content mask".to_string(), m)));
    for (name, m) in masks {
        if let Some(problem) = m.problem(content) {
            return Err(Error::InvalidInputs(format!("the {name} {problem}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_sizes_halve_at_each_pooling() {
        assert_eq!(layer_size(Layer::Relu1_1, 101, 64), (101, 64));
        assert_eq!(layer_size(Layer::Pool1, 101, 64), (50, 32));
        assert_eq!(layer_size(Layer::Relu2_1, 101, 64), (50, 32));
        assert_eq!(layer_size(Layer::Relu4_2, 101, 64), (12, 8));
        assert_eq!(layer_size(Layer::Relu5_1, 101, 64), (6, 4));
    }

    #[test]
    fn shrinking_keeps_the_area_fraction() {
        // Left quarter white.
        let (w, h) = (64u32, 32u32);
        let data = (0..w * h)
            .map(|i| if i % w < w / 4 { 1.0 } else { 0.0 })
            .collect();
        let m = Mask {
            width: w,
            height: h,
            data,
        };
        let small = m.resized(8, 4);
        let fraction = small.area() / 32.0;
        assert!((fraction - 0.25).abs() < 0.03, "{fraction}");
        // Columns well inside each side stay pure.
        assert_eq!(small.data[0], 1.0);
        assert_eq!(small.data[7], 0.0);
    }

    #[test]
    fn bad_masks_are_refused() {
        let white = Mask {
            width: 4,
            height: 2,
            data: vec![1.0; 8],
        };
        let black = Mask {
            data: vec![0.0; 8],
            ..white.clone()
        };
        assert!(check(std::slice::from_ref(&white), 1, None, Some((40, 20))).is_ok());
        assert!(check(std::slice::from_ref(&white), 2, None, Some((40, 20))).is_err());
        assert!(check(&[black], 1, None, Some((40, 20))).is_err());
        assert!(check(std::slice::from_ref(&white), 1, None, Some((40, 40))).is_err());
        assert!(check(&[], 1, Some(&white), None).is_err());
    }
}
