//! The L-BFGS divergence guard on a real (tiny, generated) VGG objective: a deliberately huge
//! step that ruins an unguarded run is recovered from.

mod common;

use std::ops::ControlFlow;

use neural_style::run::optim::Lbfgs;
use neural_style::{
    Layer, LossWeights, Objective, Padding, Pooling, StyleInput, TransferConfig, Vgg, WeightFile,
};

fn planes(st: &safetensors::SafeTensors<'_>, name: &str) -> Vec<f32> {
    st.tensor(name)
        .expect("fixture tensor")
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn a_huge_step_is_recovered_from() {
    let file = WeightFile::open(&common::fixture("tiny_vgg19.safetensors")).expect("weights");
    let config = TransferConfig::default();
    let info = file.info(None).expect("info");
    let params = file
        .conv_params(info.arch, &[Layer::Relu5_1])
        .expect("params");
    let vgg = Vgg::new(
        info.arch,
        params,
        Layer::Relu5_1,
        Pooling::Max,
        Padding::Zero,
        &neural_style::default_device(),
    )
    .expect("vgg");
    let bytes = std::fs::read(common::fixture("parity_tensors.safetensors")).expect("tensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let (content, style) = (planes(&st, "content"), planes(&st, "style"));
    let weights = LossWeights {
        content: 1.0,
        style: 10.0,
        tv: 0.1,
    };
    let objective = Objective::new(
        &vgg,
        &config,
        weights,
        1.0,
        Some(&content),
        &[StyleInput {
            data: style,
            width: 44,
            height: 36,
            blend: 1.0,
        }],
        (&[], None),
        48,
        40,
    )
    .expect("objective");

    let run = |safeguard: bool| {
        let mut x = content.clone();
        let mut losses = Vec::new();
        let mut f = |x: &[f32]| {
            let (loss, grad) = objective.evaluate(x).expect("evaluation");
            losses.push(loss.total);
            ControlFlow::Continue((loss.total, grad))
        };
        let mut lbfgs = Lbfgs::new(25, 10, false);
        lbfgs.lr = 1e7;
        lbfgs.safeguard = safeguard;
        let outcome = lbfgs.minimize(&mut x, &mut f);
        let end = objective.evaluate(&x).expect("evaluation").0.total;
        (losses[0], end, outcome, x)
    };
    let (start, unguarded, _, _) = run(false);
    assert!(
        !unguarded.is_finite() || unguarded > start,
        "the huge step should ruin an unguarded run: {start} -> {unguarded}"
    );
    let (start, guarded, outcome, x) = run(true);
    assert!(outcome.recoveries > 0, "{outcome:?}");
    assert!(
        guarded.is_finite() && guarded < start,
        "guarded run: {start} -> {guarded} ({outcome:?})"
    );
    assert!(x.iter().all(|v| v.is_finite()));
    println!(
        "start {start:.4}, unguarded end {unguarded:.4e}, guarded end {guarded:.4} after {} recoveries",
        outcome.recoveries
    );
}
