//! How much of the photo's structure a result keeps, beside the losses. The two luminances
//! are reduced to a coarse scale, where brush strokes and texture average away and the
//! subject's layout remains, and compared window by window with the contrast-structure term
//! of SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error
//! Visibility to Structural Similarity"), `(2·cov + C2) / (var_photo + var_result + C2)`.
//! The windows are weighted by the photo's local contrast (its standard deviation), so
//! the subject counts and a flat sky does not: plain mean SSIM scores a result that lost a
//! small skyline under a large sky as similar, sky for sky. The run does not optimise this
//! figure, so it can disagree with the content loss: 1 is the photo's layout kept exactly,
//! 0 none of it.

use crate::image::io::Image;

/// The short side, in pixels, both images are reduced to before they are compared.
pub const STRUCTURE_SIDE: u32 = 64;
/// Half the side of the square window the local statistics are taken over (7x7).
const RADIUS: usize = 3;
/// SSIM's stabilising constant of the contrast-structure term for values in 0..1: (0.03)².
const C2: f64 = 9e-4;

/// The coarse structural similarity of `result` to `photo` (any sizes: both are reduced to
/// [`STRUCTURE_SIDE`] px on the result's short side, the photo to the result's shape).
pub fn coarse_structure(photo: &Image, result: &Image) -> f32 {
    let (w, h) = coarse_size(result.width, result.height);
    let a = luminance(&photo.resized(w, h));
    let b = luminance(&result.resized(w, h));
    ssim(&a, &b, w as usize, h as usize) as f32
}

/// The size with short side [`STRUCTURE_SIDE`] (or the image's own, if smaller).
fn coarse_size(width: u32, height: u32) -> (u32, u32) {
    let short = width.min(height).max(1);
    if short <= STRUCTURE_SIDE {
        return (width.max(1), height.max(1));
    }
    let ratio = STRUCTURE_SIDE as f64 / short as f64;
    let fit = |v: u32| ((v as f64 * ratio).round() as u32).max(1);
    (fit(width), fit(height))
}

/// Rec. 601 luma of a planar RGB image.
fn luminance(image: &Image) -> Vec<f64> {
    let n = (image.width * image.height) as usize;
    let (r, rest) = image.data.split_at(n);
    let (g, b) = rest.split_at(n);
    (0..n)
        .map(|i| 0.299 * r[i] as f64 + 0.587 * g[i] as f64 + 0.114 * b[i] as f64)
        .collect()
}

/// The contrast-structure term over every window that fits in the image (7x7, uniform
/// weights), averaged with the photo's (`a`'s) local standard deviation as the weight.
fn ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    let side = 2 * RADIUS + 1;
    let windows: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = if w < side || h < side {
        // Too small for a window: the whole image is one.
        vec![(0..w, 0..h)]
    } else {
        (0..=h - side)
            .flat_map(|y| (0..=w - side).map(move |x| (x..x + side, y..y + side)))
            .collect()
    };
    let (mut sum, mut weights) = (0.0, 0.0);
    for (xs, ys) in windows {
        let (weight, cs) = window(a, b, w, xs, ys);
        sum += weight * cs;
        weights += weight;
    }
    // A photo without any contrast has no layout to keep.
    if weights > 0.0 { sum / weights } else { 1.0 }
}

/// The photo's standard deviation and the contrast-structure term in one window.
fn window(
    a: &[f64],
    b: &[f64],
    w: usize,
    xs: std::ops::Range<usize>,
    ys: std::ops::Range<usize>,
) -> (f64, f64) {
    let n = (xs.len() * ys.len()) as f64;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for y in ys {
        for x in xs.clone() {
            let (p, q) = (a[y * w + x], b[y * w + x]);
            sa += p;
            sb += q;
            saa += p * p;
            sbb += q * q;
            sab += p * q;
        }
    }
    let (ma, mb) = (sa / n, sb / n);
    let va = (saa / n - ma * ma).max(0.0);
    let vb = (sbb / n - mb * mb).max(0.0);
    let cov = sab / n - ma * mb;
    (va.sqrt(), (2.0 * cov + C2) / (va + vb + C2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with a layout: a bright disc on a gradient.
    fn scene(w: u32, h: u32, shift: f32) -> Image {
        let n = (w * h) as usize;
        let mut data = vec![0.0; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let disc = ((fx - 0.5 - shift).powi(2) + (fy - 0.5).powi(2)).sqrt() < 0.2;
                let v = if disc { 0.9 } else { 0.2 + 0.3 * fy };
                for c in 0..3 {
                    data[c * n + (y * w + x) as usize] = v;
                }
            }
        }
        Image::new(w, h, data)
    }

    #[test]
    fn the_same_layout_scores_one_and_a_lost_one_scores_low() {
        let photo = scene(200, 150, 0.0);
        assert!((coarse_structure(&photo, &photo) - 1.0).abs() < 1e-6);
        // The same layout at another size still scores 1 (both are reduced alike).
        assert!(coarse_structure(&photo, &scene(400, 300, 0.0)) > 0.97);
        // Fine texture over the layout (strokes) costs little; the subject gone costs a lot.
        let mut textured = photo.clone();
        for (i, v) in textured.data.iter_mut().enumerate() {
            *v += if (i / 2) % 2 == 0 { 0.05 } else { -0.05 };
        }
        let flat = Image::new(200, 150, vec![0.4; 3 * 200 * 150]);
        let moved = scene(200, 150, 0.25);
        let (kept, shifted, gone) = (
            coarse_structure(&photo, &textured),
            coarse_structure(&photo, &moved),
            coarse_structure(&photo, &flat),
        );
        assert!(kept > 0.9, "texture over the layout: {kept}");
        assert!(shifted < 0.8, "the subject moved: {shifted}");
        // Only the sky's faint gradient, which a flat picture lacks too, is left to agree.
        assert!(gone < 0.3 && gone < shifted, "the subject gone: {gone}");
    }

    #[test]
    fn the_coarse_size_keeps_the_shape_with_a_short_side_of_64() {
        assert_eq!(coarse_size(512, 320), (102, 64));
        assert_eq!(coarse_size(320, 512), (64, 102));
        assert_eq!(coarse_size(40, 30), (40, 30));
    }
}
