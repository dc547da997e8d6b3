//! Parity with PyTorch: losses and the image gradient for tiny generated VGG19 weights.
//!
//! Expected values were made by `python3 torch_reference.py fixtures .` in
//! `crates/neural-style-testdata/fixtures` (torch 2.15, float32), which wrote the weights, the
//! inputs (already in the network's input space), and for each case the weighted content,
//! style and TV losses (`parity_cases.json`) and the gradient of the total with respect to
//! the image (`parity_tensors.safetensors`, key `grad.<case>`).

mod common;

use neural_style::{
    Layer, LossForm, LossWeights, Objective, Padding, Pooling, StyleInput, StyleLoss,
    TransferConfig, Vgg, WeightFile,
};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Case {
    name: String,
    loss_form: String,
    pooling: String,
    padding: String,
    content_layers: Vec<String>,
    style_layers: Vec<String>,
    style_layer_weights: Vec<f32>,
    #[serde(default)]
    style_loss: Option<String>,
    content_weight: f32,
    style_weight: f32,
    tv_weight: f32,
    total: f64,
    content: f64,
    style: f64,
    tv: f64,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn tensor(st: &safetensors::SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (data, t.shape().to_vec())
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn layers(names: &[String]) -> Vec<Layer> {
    names
        .iter()
        .map(|n| n.parse().expect("layer name"))
        .collect()
}

#[test]
fn losses_and_gradient_match_pytorch() {
    let cases: Cases = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("parity_cases.json")).expect("cases"),
    )
    .expect("json");
    let bytes = std::fs::read(common::fixture("parity_tensors.safetensors")).expect("tensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let (content, cshape) = tensor(&st, "content");
    let (style, sshape) = tensor(&st, "style");
    let (x, _) = tensor(&st, "x");
    let file = WeightFile::open(&common::fixture("tiny_vgg19.safetensors")).expect("weights");
    let info = file.info(None).expect("info");
    assert!(cases.cases.len() >= 8);
    // A GPU build's tests run on the GPU when asked (tools/device_check.sh); say which.
    let choice: neural_style::DeviceChoice = std::env::var(neural_style::model::device::DEVICE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let (device, backend) =
        neural_style::model::device::device(choice).expect("the device asked for");
    println!("parity on backend {backend}");
    for case in &cases.cases {
        let config = TransferConfig {
            content_layers: Some(layers(&case.content_layers)),
            style_layers: Some(layers(&case.style_layers)),
            style_layer_weights: Some(case.style_layer_weights.clone()),
            loss_form: match case.loss_form.as_str() {
                "mean" => LossForm::Mean,
                "normalized" => LossForm::Normalized,
                _ => LossForm::Paper,
            },
            style_loss: match case.style_loss.as_deref() {
                Some("w2") => StyleLoss::W2,
                _ => StyleLoss::Gram,
            },
            ..TransferConfig::default()
        };
        let pooling = if case.pooling == "max" {
            Pooling::Max
        } else {
            Pooling::Avg
        };
        let padding = match case.padding.as_str() {
            "zero" => Padding::Zero,
            "reflect" => Padding::Reflect,
            _ => Padding::Replicate,
        };
        let wanted = config.layers();
        let params = file.conv_params(info.arch, &wanted).expect("params");
        let deepest = *wanted.iter().max().expect("layers");
        let vgg = Vgg::new(info.arch, params, deepest, pooling, padding, &device).expect("vgg");
        let weights = LossWeights {
            content: case.content_weight,
            style: case.style_weight,
            tv: case.tv_weight,
        };
        let (h, w) = (cshape[2] as u32, cshape[3] as u32);
        let styles = [StyleInput {
            data: style.clone(),
            width: sshape[3] as u32,
            height: sshape[2] as u32,
            blend: 1.0,
        }];
        let objective = Objective::new(
            &vgg,
            &config,
            weights,
            1.0,
            Some(&content),
            &styles,
            (&[], None),
            w,
            h,
        )
        .expect("objective");
        let (loss, grad) = objective.evaluate(&x).expect("evaluation");
        let mut worst_loss = 0f64;
        for (what, got, want) in [
            ("total", loss.total, case.total),
            ("content", loss.content, case.content),
            ("style", loss.style, case.style),
            ("tv", loss.tv, case.tv),
        ] {
            if want == 0.0 {
                assert_eq!(got, 0.0, "{}: {what}", case.name);
            } else {
                let e = rel(f64::from(got), want);
                worst_loss = worst_loss.max(e);
                assert!(
                    e <= TOLERANCE,
                    "{}: {what} loss {got} vs PyTorch {want} (relative error {e:.2e})",
                    case.name
                );
            }
        }
        let (expected, _) = tensor(&st, &format!("grad.{}", case.name));
        assert_eq!(grad.len(), expected.len());
        let diff: f64 = grad
            .iter()
            .zip(&expected)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = expected
            .iter()
            .map(|b| f64::from(*b).powi(2))
            .sum::<f64>()
            .sqrt();
        let e = diff / norm;
        assert!(
            e <= TOLERANCE,
            "{}: gradient relative error {e:.2e} (L2) vs PyTorch",
            case.name
        );
        println!(
            "{}: loss rel err {worst_loss:.2e}, gradient rel err {e:.2e}",
            case.name
        );
    }
}

#[test]
fn tiny_weights_cover_all_sixteen_convolutions() {
    let file = WeightFile::open(&common::fixture("tiny_vgg19.safetensors")).expect("weights");
    let info = file.info(None).expect("info");
    assert_eq!(info.convs.len(), 16);
}

#[test]
fn pth_checkpoint_loads_the_same_parameters_as_safetensors() {
    let st = WeightFile::open(&common::fixture("tiny_vgg19.safetensors")).expect("safetensors");
    let pth = WeightFile::open(&common::fixture("tiny_vgg19.pth")).expect("pth");
    let info = pth.info(None).expect("info");
    assert_eq!(
        info.arch,
        neural_style::Arch::Vgg19,
        "arch from keys (features.16 = conv3_4)"
    );
    assert_eq!(
        info.convention, None,
        "a .pth carries no convention metadata"
    );
    let a = st
        .conv_params(info.arch, &[Layer::Relu5_1])
        .expect("safetensors params");
    let b = pth
        .conv_params(info.arch, &[Layer::Relu5_1])
        .expect("pth params");
    assert_eq!(a.len(), 13);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.layer, y.layer);
        assert_eq!(x.weight, y.weight, "{}", x.layer);
        assert_eq!(x.bias, y.bias, "{}", x.layer);
    }
}
