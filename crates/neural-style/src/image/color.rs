//! Colour preservation (Gatys, Bethge, Hertzmann & Shechtman 2017, "Preserving Color in
//! Neural Artistic Style Transfer"): keep the photo's colours while taking the painting's
//! strokes, either by recombining the result's luminance with the photo's chroma (YIQ, as
//! jcjohnson/neural-style's `-original_colors 1`) or by matching the style image's colour
//! mean and covariance to the photo's before the transfer (the paper's eq. 1, with Cholesky
//! factors).

use serde::{Deserialize, Serialize};

use crate::image::io::Image;

/// How the photo's colours are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PreserveColors {
    /// The result's luminance (Y of YIQ) with the photo's chroma (I, Q).
    Luminance,
    /// Style images recoloured to the photo's colour mean and covariance first.
    Histogram,
}

/// RGB to YIQ (NTSC 1953).
const RGB_TO_YIQ: [[f32; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595_716, -0.274_453, -0.321_263],
    [0.211_456, -0.522_591, 0.311_135],
];
/// YIQ to RGB: the inverse of [`RGB_TO_YIQ`].
const YIQ_TO_RGB: [[f32; 3]; 3] = [
    [1.0, 0.956_3, 0.621_0],
    [1.0, -0.272_1, -0.647_4],
    [1.0, -1.106_9, 1.704_6],
];

fn mat_vec(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

fn pixel(img: &Image, i: usize) -> [f32; 3] {
    let plane = img.width as usize * img.height as usize;
    [img.data[i], img.data[plane + i], img.data[2 * plane + i]]
}

fn set_pixel(img: &mut Image, i: usize, v: [f32; 3]) {
    let plane = img.width as usize * img.height as usize;
    for (c, x) in v.into_iter().enumerate() {
        img.data[c * plane + i] = x.clamp(0.0, 1.0);
    }
}

/// The YIQ planes of an image, pixel by pixel.
pub fn to_yiq(img: &Image) -> Vec<[f32; 3]> {
    let n = img.width as usize * img.height as usize;
    (0..n)
        .map(|i| mat_vec(&RGB_TO_YIQ, pixel(img, i)))
        .collect()
}

/// `result`'s luminance with `photo`'s chroma (`photo` is resized to `result`'s size).
pub fn keep_luminance(result: &Image, photo: &Image) -> Image {
    let photo = photo.resized(result.width, result.height);
    let (y, iq) = (to_yiq(result), to_yiq(&photo));
    let mut out = result.clone();
    for (i, (a, b)) in y.iter().zip(&iq).enumerate() {
        set_pixel(&mut out, i, mat_vec(&YIQ_TO_RGB, [a[0], b[1], b[2]]));
    }
    out
}

/// Mean and covariance of an image's RGB values.
pub fn colour_stats(img: &Image) -> ([f64; 3], [[f64; 3]; 3]) {
    let n = img.width as usize * img.height as usize;
    let mut mean = [0f64; 3];
    for i in 0..n {
        let p = pixel(img, i);
        for c in 0..3 {
            mean[c] += f64::from(p[c]);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = [[0f64; 3]; 3];
    for i in 0..n {
        let p = pixel(img, i);
        let d = [0, 1, 2].map(|c| f64::from(p[c]) - mean[c]);
        for r in 0..3 {
            for c in 0..3 {
                cov[r][c] += d[r] * d[c];
            }
        }
    }
    cov.iter_mut()
        .flatten()
        .for_each(|v| *v /= n.max(2) as f64 - 1.0);
    (mean, cov)
}

/// Lower Cholesky factor of a 3x3 symmetric matrix, regularised so that flat-coloured
/// images (singular covariance) still have one.
#[allow(clippy::needless_range_loop)] // index notation reads as the algebra
fn cholesky(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut a = *m;
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-5;
    }
    let mut l = [[0f64; 3]; 3];
    for i in 0..3 {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][j] = (a[i][i] - s).max(1e-12).sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

/// Inverse of a lower-triangular 3x3 matrix.
#[allow(clippy::needless_range_loop)] // index notation reads as the algebra
fn invert_lower(l: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut inv = [[0f64; 3]; 3];
    for i in 0..3 {
        inv[i][i] = 1.0 / l[i][i];
        for j in 0..i {
            let s: f64 = (j..i).map(|k| l[i][k] * inv[k][j]).sum();
            inv[i][j] = -s / l[i][i];
        }
    }
    inv
}

/// `style` recoloured so that its colour mean and covariance match `photo`'s:
/// x' = L_p L_s⁻¹ (x − μ_s) + μ_p, with L the Cholesky factors of the covariances.
pub fn match_histogram(style: &Image, photo: &Image) -> Image {
    let (ms, cs) = colour_stats(style);
    let (mp, cp) = colour_stats(photo);
    let (lp, ls_inv) = (cholesky(&cp), invert_lower(&cholesky(&cs)));
    let mut a = [[0f64; 3]; 3];
    for r in 0..3 {
        for c in 0..3 {
            a[r][c] = (0..3).map(|k| lp[r][k] * ls_inv[k][c]).sum();
        }
    }
    let mut out = style.clone();
    let n = style.width as usize * style.height as usize;
    for i in 0..n {
        let p = pixel(style, i);
        let d = [0, 1, 2].map(|c| f64::from(p[c]) - ms[c]);
        let v = [0, 1, 2].map(|r| (mp[r] + (0..3).map(|k| a[r][k] * d[k]).sum::<f64>()) as f32);
        set_pixel(&mut out, i, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth image with values well inside 0..1.
    fn image(w: u32, h: u32, phase: f32, offset: f32) -> Image {
        let n = (w * h) as usize;
        let mut data = vec![0.0; 3 * n];
        for i in 0..n {
            let t = i as f32 / n as f32;
            for c in 0..3 {
                data[c * n + i] = offset
                    + 0.3 * ((t * 7.0 + phase + c as f32 * 1.3).sin() * (c as f32 + 1.0) / 3.0);
            }
        }
        Image::new(w, h, data)
    }

    #[test]
    fn yiq_round_trips() {
        let img = image(8, 6, 0.0, 0.5);
        let back = keep_luminance(&img, &img);
        for (a, b) in img.data.iter().zip(&back.data) {
            assert!((a - b).abs() < 1e-3, "{a} {b}");
        }
    }

    #[test]
    fn luminance_mode_keeps_the_photos_chroma_and_the_results_luminance() {
        let result = image(16, 12, 0.0, 0.5);
        let photo = image(16, 12, 2.0, 0.45);
        let out = keep_luminance(&result, &photo);
        let (o, r, p) = (to_yiq(&out), to_yiq(&result), to_yiq(&photo));
        let mut worst = 0f32;
        for i in 0..o.len() {
            worst = worst
                .max((o[i][0] - r[i][0]).abs())
                .max((o[i][1] - p[i][1]).abs())
                .max((o[i][2] - p[i][2]).abs());
        }
        assert!(worst < 2e-3, "largest YIQ difference {worst}");
    }

    #[test]
    fn histogram_mode_gives_the_style_the_photos_colour_statistics() {
        let style = image(20, 10, 1.0, 0.6);
        let photo = image(12, 12, 4.0, 0.4);
        let out = match_histogram(&style, &photo);
        let ((mo, co), (mp, cp)) = (colour_stats(&out), colour_stats(&photo));
        for r in 0..3 {
            assert!(
                (mo[r] - mp[r]).abs() < 2e-3,
                "mean {r}: {} vs {}",
                mo[r],
                mp[r]
            );
            for c in 0..3 {
                assert!(
                    (co[r][c] - cp[r][c]).abs() < 2e-3,
                    "cov {r}{c}: {} vs {}",
                    co[r][c],
                    cp[r][c]
                );
            }
        }
        // Its own statistics were different.
        assert!((colour_stats(&style).0[0] - mp[0]).abs() > 1e-2);
    }
}
