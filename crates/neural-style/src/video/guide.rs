//! Video frames without flicker (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer
//! for videos"): each frame starts from the previous stylised frame warped by the optical
//! flow and keeps close to it where the flow is reliable ([`Temporal`]); and the flicker
//! metric that shows the difference.

use crate::image::io::Image;
use crate::objective::mask::Mask;
use crate::run::inputs::Temporal;
use crate::video::flow::{FlowOptions, consistency, dense_flow, luma, warp};

/// The temporal target of `frame` given the frame before it and that frame's stylised
/// result (any size; everything is taken at `frame`'s size): the result warped onto
/// `frame` by the flow from `frame` to `previous_frame`, and a confidence that is 0 where
/// that flow and the flow back disagree or leave the picture.
pub fn temporal_guide(previous_frame: &Image, frame: &Image, previous_result: &Image) -> Temporal {
    let (w, h) = (frame.width, frame.height);
    let (wu, hu) = (w as usize, h as usize);
    let previous_frame = previous_frame.resized(w, h);
    let previous_result = previous_result.resized(w, h);
    let now = luma(&frame.data, wu, hu);
    let before = luma(&previous_frame.data, wu, hu);
    let options = FlowOptions::default();
    // Where each pixel of this frame was in the previous one, and the way back.
    let backward = dense_flow(&now, &before, wu, hu, options);
    let forward = dense_flow(&before, &now, wu, hu, options);
    Temporal {
        previous: Image::new(w, h, warp(&previous_result.data, 3, &backward)),
        confidence: Mask {
            width: w,
            height: h,
            data: consistency(&backward, &forward),
        },
    }
}

/// Flicker of a stylised sequence, accumulated one pair of consecutive frames at a time so
/// a long video needs only the frame before: the mean absolute change (0..1 units, over the
/// three channels) between consecutive results at the pixels where consecutive input frames
/// differ by less than `still` (mean over the channels), i.e. where nothing moved. Inputs
/// and results are taken at the later result's size.
#[derive(Debug, Clone, Copy)]
pub struct Flicker {
    still: f32,
    sum: f64,
    count: usize,
}

impl Flicker {
    /// No frames yet; `still` is the input change below which a pixel counts as still.
    pub fn new(still: f32) -> Self {
        Self {
            still,
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds the step from `(frame_before, result_before)` to `(frame, result)`.
    pub fn add(
        &mut self,
        frame_before: &Image,
        result_before: &Image,
        frame: &Image,
        result: &Image,
    ) {
        let (w, h) = (result.width, result.height);
        let a = frame_before.resized(w, h);
        let b = frame.resized(w, h);
        let ra = result_before.resized(w, h);
        let n = (w * h) as usize;
        for i in 0..n {
            let moved = (0..3)
                .map(|c| (a.data[c * n + i] - b.data[c * n + i]).abs())
                .sum::<f32>()
                / 3.0;
            if moved < self.still {
                self.sum += (0..3)
                    .map(|c| (ra.data[c * n + i] - result.data[c * n + i]).abs() as f64)
                    .sum::<f64>()
                    / 3.0;
                self.count += 1;
            }
        }
    }

    /// The figure so far; `None` if no pixel has been still.
    pub fn value(&self) -> Option<f32> {
        (self.count > 0).then(|| (self.sum / self.count as f64) as f32)
    }
}

/// [`Flicker`] of a whole sequence held in memory.
pub fn flicker(frames: &[Image], results: &[Image], still: f32) -> Option<f32> {
    assert_eq!(frames.len(), results.len(), "one result per frame");
    let mut meter = Flicker::new(still);
    for t in 1..frames.len() {
        meter.add(&frames[t - 1], &results[t - 1], &frames[t], &results[t]);
    }
    meter.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient_image(w: u32, h: u32, shift: f32) -> Image {
        let n = (w * h) as usize;
        let mut data = vec![0f32; 3 * n];
        for i in 0..n {
            let (x, y) = ((i % w as usize) as f32 - shift, (i / w as usize) as f32);
            let v = 0.5 + 0.2 * (0.15 * x).sin() + 0.2 * (0.11 * y + 0.05 * x).cos();
            for c in 0..3 {
                data[c * n + i] = v * (0.6 + 0.2 * c as f32);
            }
        }
        Image::new(w, h, data)
    }

    #[test]
    fn the_guide_follows_the_motion_and_trusts_the_inside() {
        let (w, h) = (64, 48);
        let before = gradient_image(w, h, 0.0);
        let now = gradient_image(w, h, 2.0);
        // A "stylised" previous frame: the frame itself, inverted.
        let result = Image::new(w, h, before.data.iter().map(|v| 1.0 - v).collect());
        let guide = temporal_guide(&before, &now, &result);
        let n = (w * h) as usize;
        let (mut err, mut count) = (0f32, 0);
        for y in 8..h as usize - 8 {
            for x in 8..w as usize - 8 {
                let i = y * w as usize + x;
                assert_eq!(guide.confidence.data[i], 1.0, "interior pixel ({x}, {y})");
                for c in 0..3 {
                    err += (guide.previous.data[c * n + i] - (1.0 - now.data[c * n + i])).abs();
                    count += 1;
                }
            }
        }
        let err = err / count as f32;
        assert!(err < 0.01, "warped result vs the moved frame: {err}");
    }

    #[test]
    fn flicker_counts_only_still_pixels() {
        let (w, h) = (4, 1);
        let still = Image::new(w, h, vec![0.5; 12]);
        let mut moved = still.clone();
        moved.data[0] = 1.0; // pixel 0 moves in the red channel
        moved.data[4] = 1.0;
        moved.data[8] = 1.0;
        let frames = vec![still.clone(), moved];
        let r0 = Image::new(w, h, vec![0.2; 12]);
        let mut r1 = r0.clone();
        for c in 0..3 {
            r1.data[c * 4] = 0.9; // changes where the input moved: not flicker
            r1.data[c * 4 + 1] = 0.3; // changes where it did not: flicker of 0.1
        }
        let f = flicker(&frames, &[r0, r1], 0.02).expect("still pixels");
        assert!((f - 0.1 / 3.0).abs() < 1e-6, "{f}");
        let one = std::slice::from_ref(&still);
        assert_eq!(flicker(one, one, 0.02), None);
    }
}
