//! How far each fast convolution path lands from the f32 direct convolution (burn's), with
//! real weights on a real photo: per layer, the relative RMS difference of the features and
//! of the input gradient of `mean(features²)`, for Winograd F(4×4, 3×3) with f32 products
//! and with bf16 products (where the CPU has AVX512-BF16):
//! `cargo run --release -p neural-style --example precision_report [weights image size]`
//! (defaults: `../shared/testdata/weights/vgg16-hed.safetensors`,
//! `../shared/testdata/content/tubingen.jpg`, 256).

use std::path::Path;

use burn::prelude::*;
use neural_style::model::vgg::{
    Convolution, InputConvention, Layer, Padding, Pooling, Precision, Vgg,
};
use neural_style::model::weights::WeightFile;

fn relative_rms(a: &[f32], b: &[f32]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    norm(&mut a.iter().zip(b).map(|(x, y)| f64::from(x - y)))
        / norm(&mut b.iter().map(|x| f64::from(*x)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shared = "../shared/testdata";
    let weights = args
        .first()
        .cloned()
        .unwrap_or(format!("{shared}/weights/vgg16-hed.safetensors"));
    let image = args
        .get(1)
        .cloned()
        .unwrap_or(format!("{shared}/content/tubingen.jpg"));
    let size: u32 = args.get(2).map_or(Ok(256), |s| s.parse())?;
    let device = neural_style::model::device::cpu();

    let file = WeightFile::open(Path::new(&weights))?;
    let info = file.info(None)?;
    let layers: Vec<Layer> = [
        Layer::Relu1_1,
        Layer::Relu2_1,
        Layer::Relu3_1,
        Layer::Relu4_1,
        Layer::Relu4_2,
        Layer::Relu5_1,
    ]
    .into_iter()
    .filter(|l| info.arch.check_layer(*l).is_ok() && info.convs.contains(&l.source_conv(info.arch)))
    .collect();
    let deepest = *layers
        .last()
        .ok_or("the weights hold no layer to compare")?;
    let params = file.conv_params(info.arch, &[deepest])?;
    let convention = info.convention.unwrap_or(InputConvention::TorchRgb01);

    let photo = image::open(&image)?
        .resize(size, size, image::imageops::FilterType::Triangle)
        .to_rgb32f();
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    // Planar RGB in 0..1, then the network's convention.
    let planar: Vec<f32> = (0..3)
        .flat_map(|c| photo.pixels().map(move |p| p.0[c]))
        .collect();
    let input = convention.to_network(&planar);

    // Each network once (the Winograd filters are transformed as it is built), each layer
    // then read from it.
    let network = |convolution, precision| -> Result<Vgg, Box<dyn std::error::Error>> {
        Ok(Vgg::new(
            info.arch,
            params.clone(),
            deepest,
            Pooling::Max,
            Padding::Reflect,
            &device,
        )?
        .with_convolution(convolution)?
        .with_precision(precision)?)
    };
    let run =
        |vgg: &Vgg, layer: Layer| -> Result<(Vec<f32>, Vec<f32>), Box<dyn std::error::Error>> {
            let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, 3, h, w]), &device)
                .require_grad();
            let f = vgg.features(x.clone(), &[layer]).remove(0);
            let grads = f.clone().powf_scalar(2.0).mean().backward();
            let g = x.grad(&grads).ok_or("no gradient")?;
            Ok((
                f.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?,
                g.into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?,
            ))
        };
    let direct = network(Convolution::Direct, Precision::F32)?;
    let winograd = network(Convolution::Winograd, Precision::F32)?;
    let bf16 = neural_style_kernels::bf16::available()
        .then(|| network(Convolution::Winograd, Precision::Bf16))
        .transpose()?;
    println!(
        "{weights}, {image} at {w}x{h}, reflect padding: relative RMS difference from burn's f32 direct convolution"
    );
    println!("| layer | Winograd f32: features | gradient | Winograd bf16: features | gradient |");
    println!("|---|---|---|---|---|");
    for layer in layers {
        let (fd, gd) = run(&direct, layer)?;
        let (fw, gw) = run(&winograd, layer)?;
        let (b_f, b_g) = if let Some(bf16) = &bf16 {
            let (fb, gb) = run(bf16, layer)?;
            (
                format!("{:.1e}", relative_rms(&fb, &fd)),
                format!("{:.1e}", relative_rms(&gb, &gd)),
            )
        } else {
            ("(no AVX512-BF16)".into(), "".into())
        };
        println!(
            "| {layer} | {:.1e} | {:.1e} | {b_f} | {b_g} |",
            relative_rms(&fw, &fd),
            relative_rms(&gw, &gd)
        );
    }
    Ok(())
}
