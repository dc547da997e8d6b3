//! Artistic controls on whole runs with tiny generated weights: each control keeps the
//! promise it makes.

use std::path::PathBuf;

use neural_style::color::{colour_stats, to_yiq};
use neural_style::{
    Image, Inputs, Network, NoObserver, PreserveColors, Size, TransferConfig, default_device, run,
};

fn weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_vgg19.safetensors")
}

/// A smooth, colourful image.
fn image(w: u32, h: u32, phase: f32) -> Image {
    let n = (w * h) as usize;
    let mut data = vec![0.0; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) as usize;
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            for c in 0..3 {
                let v = ((fx * (2.0 + c as f32) + fy * 3.0 + phase + c as f32).sin() + 1.0) / 2.0;
                data[c * n + i] = 0.15 + 0.7 * v;
            }
        }
    }
    Image::new(w, h, data)
}

fn transfer(preserve: Option<PreserveColors>) -> (Image, Inputs) {
    let config = TransferConfig {
        iterations: 15,
        size: Size::Exact(40, 32),
        preserve_colors: preserve,
        ..TransferConfig::default()
    };
    let net = Network::load(&weights(), &config, &default_device()).expect("weights");
    let inputs = Inputs {
        content: Some(image(40, 32, 0.0)),
        styles: vec![image(36, 36, 2.5)],
        init: None,
    };
    let out = run(&net, &config, &inputs, &mut NoObserver).expect("run");
    (out.image, inputs)
}

#[test]
fn luminance_mode_output_has_the_photos_chroma() {
    let (out, inputs) = transfer(Some(PreserveColors::Luminance));
    let photo = inputs.content.as_ref().unwrap();
    let (o, p) = (to_yiq(&out), to_yiq(photo));
    let worst = o
        .iter()
        .zip(&p)
        .map(|(a, b)| (a[1] - b[1]).abs().max((a[2] - b[2]).abs()))
        .fold(0f32, f32::max);
    assert!(worst < 0.02, "largest chroma difference {worst}");
    // Without the control the chroma moves towards the style's.
    let (plain, _) = transfer(None);
    let moved = to_yiq(&plain)
        .iter()
        .zip(&p)
        .map(|(a, b)| (a[1] - b[1]).abs().max((a[2] - b[2]).abs()))
        .fold(0f32, f32::max);
    assert!(moved > 5.0 * worst.max(1e-3), "{moved} vs {worst}");
}

#[test]
fn histogram_mode_runs_with_recoloured_styles() {
    let (out, inputs) = transfer(Some(PreserveColors::Histogram));
    let (plain, _) = transfer(None);
    // The result's colour mean is closer to the photo's than without the control.
    let photo = colour_stats(inputs.content.as_ref().unwrap()).0;
    let dist = |img: &Image| {
        let m = colour_stats(img).0;
        (0..3)
            .map(|c| (m[c] - photo[c]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    assert!(
        dist(&out) < dist(&plain),
        "{} vs {}",
        dist(&out),
        dist(&plain)
    );
}
