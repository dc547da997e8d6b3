//! Tiled evaluation (Galerne et al. 2024): the loss and gradient computed tile by tile
//! against the whole image's statistics equal the whole-image evaluation (loss within 1e-5
//! relative, gradient within 1e-4 in L2), for tile sizes that do not divide the image, one
//! and many tiles, every padding, both poolings, masks, two styles and every loss form; a
//! halo one pooling stride too small breaks it.

mod common;

use neural_style::model::vgg::{Layer, Padding, Pooling};
use neural_style::{
    LossForm, LossWeights, Mask, Network, Objective, StyleInput, Tiling, TransferConfig,
    default_device,
};

/// Smooth planar values in about -1..1 (network input).
fn pixels(w: u32, h: u32, phase: f32) -> Vec<f32> {
    let n = (w * h) as usize;
    (0..3 * n)
        .map(|i| {
            let (c, p) = (i / n, i % n);
            let (x, y) = ((p % w as usize) as f32, (p / w as usize) as f32);
            (0.11 * x + 0.07 * y * (c as f32 + 1.0) + phase).sin() * 0.8
                + (0.37 * x * y / (w as f32) + phase).cos() * 0.2
        })
        .collect()
}

/// A soft mask, left-to-right (or the reverse).
fn ramp(w: u32, h: u32, reverse: bool) -> Mask {
    let data = (0..w * h)
        .map(|i| {
            let v = ((i % w) as f32 / (w - 1) as f32 * 1.4 - 0.2).clamp(0.0, 1.0);
            if reverse { 1.0 - v } else { v }
        })
        .collect();
    Mask {
        width: w,
        height: h,
        data,
    }
}

/// `|a - b| / |a|` in the L2 norm.
fn l2_relative(a: &[f32], b: &[f32]) -> f32 {
    let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    let diff: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt();
    diff / norm
}

struct Setup {
    config: TransferConfig,
    size: (u32, u32),
    masks: bool,
}

/// The relative differences (loss, gradient L2) between the whole-image evaluation and
/// the tiled one with `tiling` (or the default one for `tile`, when `tiling` is `None`).
fn difference(net: &Network, s: &Setup, tile: usize, tiling: Option<Tiling>) -> (f32, f32) {
    let (w, h) = s.size;
    let content = pixels(w, h, 0.3);
    let styles = [
        StyleInput {
            data: pixels(40, 36, 1.1),
            width: 40,
            height: 36,
            blend: 0.6,
        },
        StyleInput {
            data: pixels(34, 44, 2.0),
            width: 34,
            height: 44,
            blend: 0.4,
        },
    ];
    let style_masks = [ramp(w, h, false), ramp(w, h, true)];
    let content_mask = ramp(w, h, true);
    let masks = if s.masks {
        (&style_masks[..], Some(&content_mask))
    } else {
        (&[][..], None)
    };
    let weights = LossWeights {
        content: 1.0,
        style: 10.0,
        tv: 0.01,
    };
    let objective = Objective::new(
        &net.vgg,
        &s.config,
        weights,
        1.0,
        Some(&content),
        &styles,
        masks,
        w,
        h,
    )
    .unwrap();
    let x = pixels(w, h, 0.9);
    let (whole, g) = objective.evaluate(&x).unwrap();
    let tiling =
        tiling.unwrap_or_else(|| Tiling::new(tile, &net.vgg.arch().layers(), &s.config.layers()));
    let (tiled, gt) = objective.evaluate_tiled(&x, &tiling).unwrap();
    let loss = (tiled.total - whole.total).abs() / whole.total.abs();
    let grad = l2_relative(&g, &gt);
    (loss, grad)
}

/// Asserts that tiles of `tile` px give the whole-image loss (1e-5) and gradient (1e-4).
fn assert_exact(net: &Network, s: &Setup, tile: usize, what: &str) {
    let (loss, grad) = difference(net, s, tile, None);
    eprintln!("{what}: loss {loss:.1e}, gradient {grad:.1e}");
    assert!(loss <= 1e-5, "{what}: loss differs by {loss:e}");
    assert!(grad <= 1e-4, "{what}: gradient differs by {grad:e}");
}

fn network(padding: Padding, pooling: Pooling) -> Network {
    let config = TransferConfig {
        padding,
        pooling,
        ..common::f32_config()
    };
    Network::load(&common::tiny_weights(), &config, &default_device()).unwrap()
}

#[test]
fn tiles_give_the_whole_image_loss_and_gradient_with_every_padding_and_masks() {
    for (padding, pooling) in [
        (Padding::Reflect, Pooling::Max),
        (Padding::Zero, Pooling::Avg),
        (Padding::Replicate, Pooling::Max),
    ] {
        let net = network(padding, pooling);
        for (form, masks) in [
            (LossForm::Normalized, true),
            (LossForm::Mean, false),
            (LossForm::Paper, true),
        ] {
            let setup = Setup {
                config: TransferConfig {
                    padding,
                    pooling,
                    loss_form: form,
                    ..common::f32_config()
                },
                // relu5_1 reads 70 pixels around a core: the image must be wider than that.
                size: (197, 163),
                masks,
            };
            // 48: 5x4 cores, the last ones cut; 300: one tile.
            for tile in [48, 300] {
                let what = format!("{padding:?} {pooling:?} {form:?} masks {masks} tile {tile}");
                assert_exact(&net, &setup, tile, &what);
            }
        }
    }
}

#[test]
fn the_w2_style_loss_by_tiles_is_the_whole_image_one() {
    use neural_style::StyleLoss;
    let net = network(Padding::Reflect, Pooling::Max);
    for (form, masks) in [(LossForm::Normalized, false), (LossForm::Mean, true)] {
        let setup = Setup {
            config: TransferConfig {
                style_loss: StyleLoss::W2,
                loss_form: form,
                ..common::f32_config()
            },
            size: (197, 163),
            masks,
        };
        for tile in [48, 300] {
            assert_exact(
                &net,
                &setup,
                tile,
                &format!("W2 {form:?} masks {masks} tile {tile}"),
            );
        }
    }
}

#[test]
fn many_small_tiles_of_shallow_layers_are_exact_and_a_short_halo_is_not() {
    let net = network(Padding::Reflect, Pooling::Max);
    // Up to relu3_1: a 10-pixel reach on a 4-pixel grid, so 9 px tiles (rounded to 12)
    // cut a 70x53 image into 6x5 tiles.
    let setup = Setup {
        config: TransferConfig {
            content_layers: Some(vec![Layer::Relu2_2]),
            style_layers: Some(vec![Layer::Relu1_1, Layer::Relu2_1, Layer::Relu3_1]),
            ..common::f32_config()
        },
        size: (70, 53),
        masks: true,
    };
    let tiling = Tiling::new(9, &net.vgg.arch().layers(), &setup.config.layers());
    assert_eq!((tiling.core, tiling.halo, tiling.stride), (12, 10, 4));
    for tile in [9, 20, 33, 100] {
        assert_exact(&net, &setup, tile, &format!("relu3_1 tile {tile}"));
    }
    // One pooling stride less halo: the cores' activations near their edges change.
    let short = Tiling {
        halo: tiling.halo - tiling.stride,
        ..tiling
    };
    let (_, grad) = difference(&net, &setup, 9, Some(short));
    eprintln!("relu3_1, halo one stride short: gradient {grad:.1e}");
    assert!(grad > 1e-3, "a short halo went unnoticed: {grad:e}");

    // The same on the deep layers, at the default reach of relu5_1.
    let deep = Setup {
        config: common::f32_config(),
        size: (197, 163),
        masks: false,
    };
    let tiling = Tiling::new(48, &net.vgg.arch().layers(), &deep.config.layers());
    let short = Tiling {
        halo: tiling.halo - tiling.stride,
        ..tiling
    };
    let (_, grad) = difference(&net, &deep, 48, Some(short));
    eprintln!("relu5_1, halo one stride short: gradient {grad:.1e}");
    assert!(
        grad > 1e-3,
        "a short halo went unnoticed at relu5_1: {grad:e}"
    );
}

#[test]
fn a_run_by_tiles_ends_where_the_whole_image_run_does() {
    use neural_style::{Image, Inputs, Size, TileMode};
    let net = network(Padding::Reflect, Pooling::Max);
    let image = |w: u32, h: u32, phase: f32| {
        let data = pixels(w, h, phase).iter().map(|v| v * 0.4 + 0.5).collect();
        Image::new(w, h, data)
    };
    // Content, style image and every stage larger than a tile: the targets are tiled too.
    let inputs = Inputs {
        content: Some(image(197, 163, 0.3)),
        styles: vec![image(150, 140, 1.1)],
        ..Inputs::default()
    };
    let run = |tile: TileMode, style_loss: neural_style::StyleLoss| {
        let config = TransferConfig {
            iterations: 12,
            size: Size::Exact(197, 163),
            min_size: 100,
            tile,
            style_loss,
            ..common::f32_config()
        };
        let mut losses = Vec::new();
        let mut observer = |e: &neural_style::Event<'_>| {
            if let neural_style::Event::Evaluation { loss, .. } = e {
                losses.push(loss.total);
            }
            std::ops::ControlFlow::Continue(())
        };
        common::transfer(&net, &config, &inputs, &mut observer).unwrap();
        losses
    };
    for style_loss in [neural_style::StyleLoss::Gram, neural_style::StyleLoss::W2] {
        let whole = run(TileMode::Off, style_loss);
        let tiled = run(TileMode::Size(64), style_loss);
        eprintln!("{style_loss:?} whole: {whole:?}\ntiled: {tiled:?}");
        assert_eq!(whole.len(), tiled.len());
        // The same path while rounding has not yet been amplified by the optimiser, and
        // the same neighbourhood at the end (L-BFGS on random tiny weights is chaotic). W2's
        // matrix square roots amplify the tiles' different summation order sooner: its two
        // runs already differ by 1e-5 at evaluation 3, and a change of rounding elsewhere
        // (the CPU kernels) moved their split to evaluation 4 while every single
        // evaluation still agrees (`the_w2_style_loss_by_tiles_is_the_whole_image_one`).
        let exact = match style_loss {
            neural_style::StyleLoss::Gram => 8,
            neural_style::StyleLoss::W2 => 3,
        };
        for (e, (a, b)) in whole.iter().zip(&tiled).take(exact).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * a,
                "{style_loss:?} evaluation {}: whole {a}, tiled {b}",
                e + 1
            );
        }
        // Within 5%: the fused multiply-adds of the Winograd transforms moved W2's two runs
        // 3.1% apart after 21 evaluations (from 0.86 down to 0.22), where they had ended
        // under 2% apart.
        let (a, b) = (whole[whole.len() - 1], tiled[tiled.len() - 1]);
        assert!(
            (a - b).abs() <= 0.05 * a,
            "{style_loss:?} final: whole {a}, tiled {b}"
        );
    }
}

/// Real pretrained weights (vgg16-hed from ../shared), tubingen 1024x768 with The Starry
/// Night, tiles of 256 px: loss and gradient of the whole-image evaluation.
#[test]
fn a_tiled_evaluation_reports_its_tiles_and_stops_between_them() {
    let net = network(Padding::Zero, Pooling::Max);
    let inputs = neural_style::Inputs {
        content: Some(neural_style::Image::new(100, 80, vec![0.5; 3 * 100 * 80])),
        styles: vec![neural_style::Image::new(60, 60, vec![0.3; 3 * 60 * 60])],
        ..neural_style::Inputs::default()
    };
    let config = TransferConfig {
        iterations: 5,
        size: neural_style::Size::Exact(100, 80),
        coarse_to_fine: false,
        tile: neural_style::TileMode::Size(32),
        ..common::f32_config()
    };
    // 4 x 3 tiles of 32 px (rounded to the stride): 24 passes an evaluation with a style.
    let mut seen = Vec::new();
    let mut observer = |e: &neural_style::Event<'_>| match e {
        neural_style::Event::Tile {
            evaluation,
            done,
            of,
        } => {
            seen.push((*evaluation, *done, *of));
            // Stop halfway through the third evaluation's second pass.
            match (*evaluation, *done) {
                (3, 18) => std::ops::ControlFlow::Break(()),
                _ => std::ops::ControlFlow::Continue(()),
            }
        }
        _ => std::ops::ControlFlow::Continue(()),
    };
    let out = common::transfer(&net, &config, &inputs, &mut observer).unwrap();
    assert!(out.stopped);
    // The third evaluation never finished; the best of the first two is returned.
    assert_eq!(out.evaluations, 2);
    let expected: Vec<_> = (1..=2)
        .flat_map(|e| (1..=24).map(move |d| (e, d, 24)))
        .chain((1..=18).map(|d| (3, d, 24)))
        .collect();
    assert_eq!(seen, expected);
    // Stopped in the first evaluation: the starting image (the photo), its loss unknown.
    let mut observer = |e: &neural_style::Event<'_>| match e {
        neural_style::Event::Tile { done: 5, .. } => std::ops::ControlFlow::Break(()),
        _ => std::ops::ControlFlow::Continue(()),
    };
    let out = common::transfer(&net, &config, &inputs, &mut observer).unwrap();
    assert!(out.stopped && out.evaluations == 0 && out.best_loss.total.is_nan());
    let photo = inputs.content.as_ref().unwrap();
    let off = out
        .image
        .data
        .iter()
        .zip(&photo.data)
        .map(|(a, b)| (a - b).abs());
    assert!(off.fold(0.0f32, f32::max) < 1e-5);
}

#[test]
fn a_plan_larger_than_memory_is_fitted_by_history_then_tiles_then_both() {
    use neural_style::run::memory::{Budget, Fitting, estimate, estimate_tiled, fit, sizes_at};
    use neural_style::{Image, Inputs, Plan, Size, TileMode};
    let net = network(Padding::Zero, Pooling::Max);
    let inputs = Inputs {
        content: Some(Image::new(64, 36, vec![0.5; 3 * 64 * 36])),
        styles: vec![Image::new(32, 32, vec![0.3; 3 * 32 * 32])],
        ..Inputs::default()
    };
    let (w, h) = (3840, 2160);
    let plan = |tile| {
        let config = TransferConfig {
            size: Size::Exact(w, h),
            tile,
            ..common::f32_config()
        };
        Plan::new(&config.check(1).unwrap(), &net, inputs.clone()).unwrap()
    };
    let arch = net.info.arch;
    let gib = |g: u64| g << 30;
    let budget = |limit| Budget {
        available: limit,
        limit,
    };
    // What the fitted plan needs stays within the budget.
    let needs = |p: &Plan| match p.tiles() {
        Some(t) => estimate_tiled(p.config(), arch, &sizes_at(p, w, h), t.core as u32).total(),
        None => estimate(p.config(), arch, &sizes_at(p, w, h)).total(),
    };
    let planned = plan(TileMode::Auto);
    let whole = estimate(planned.config(), arch, &sizes_at(&planned, w, h)).total();
    let cases = [
        (whole, "as planned"),
        (whole - gib(2), "history"),
        (gib(30), "tiles"),
    ];
    for (limit, expect) in cases.into_iter().chain([(gib(12), "tiles, history")]) {
        let (p, notes) = fit(plan(TileMode::Auto), budget(limit)).unwrap();
        let kinds: Vec<&str> = notes
            .iter()
            .map(|n| match n {
                Fitting::Tiles { .. } => "tiles",
                Fitting::History { from: 100, to, .. } if *to < 100 => "history",
                other => panic!("{other:?}"),
            })
            .collect();
        let said = if kinds.is_empty() {
            "as planned".into()
        } else {
            kinds.join(", ")
        };
        assert_eq!(said, expect, "budget {limit}");
        assert!(needs(&p) <= limit, "{expect}: {} > {limit}", needs(&p));
        // With tiles, the stages that fit whole stay whole (724x407 does), the last does not.
        let stages = p.stages();
        let tiled = |s: &neural_style::Stage| p.tiling(s.width, s.height).is_some();
        if p.tiles().is_some() {
            assert!(
                tiled(&stages[stages.len() - 1]) && !tiled(&stages[3]),
                "{expect}"
            );
            for s in stages.iter().filter(|s| !tiled(s)) {
                let e = estimate(p.config(), arch, &sizes_at(&p, s.width, s.height)).total();
                assert!(e <= limit, "{expect}: {}x{} whole", s.width, s.height);
            }
        }
    }
    // Nothing fits in 1 GiB, nor whole images in 30 GiB with --no-tile.
    for (tile, limit) in [(TileMode::Auto, gib(1)), (TileMode::Off, gib(30))] {
        let e = fit(plan(tile), budget(limit)).unwrap_err().to_string();
        assert!(e.starts_with("a 3840x2160 run needs about "), "{e}");
    }
}

#[test]
fn real_vgg16_by_tiles_of_256_gives_the_whole_image_loss_and_gradient() {
    let Some(shared) = neural_style_testdata::shared("the real-weights tiling check") else {
        return;
    };
    let config = common::f32_config();
    let weights = shared.join("weights/vgg16-hed.safetensors");
    let net = Network::load(&weights, &config, &default_device()).unwrap();
    let load = |p: &str| neural_style::Image::load(&shared.join(p), 1 << 24).unwrap();
    let conv = net.convention;
    let content = load("content/tubingen.jpg").resized(1024, 768);
    let style = load("style/starry_night.jpg").resized_to_longest(1024);
    let checked = config.clone().check(1).unwrap();
    let inputs = neural_style::Inputs {
        content: Some(content.clone()),
        styles: vec![style.clone()],
        ..neural_style::Inputs::default()
    };
    let plan = neural_style::Plan::new(&checked, &net, inputs).unwrap();
    let (resolved, weights) = (plan.config().clone(), plan.loss_weights());
    let objective = Objective::new(
        &net.vgg,
        &resolved,
        weights,
        conv.pixel_range(),
        Some(&conv.to_network(&content.data)),
        &[StyleInput {
            data: conv.to_network(&style.data),
            width: style.width,
            height: style.height,
            blend: 1.0,
        }],
        (&[], None),
        1024,
        768,
    )
    .unwrap();
    // A point off the content photo: the photo with a smooth shift.
    let x: Vec<f32> = conv
        .to_network(&content.data)
        .iter()
        .zip(pixels(1024, 768, 0.5))
        .map(|(a, b)| a + 20.0 * b)
        .collect();
    let (whole, g) = objective.evaluate(&x).unwrap();
    let tiling = Tiling::new(256, &net.vgg.arch().layers(), &resolved.layers());
    assert_eq!(tiling.tiles(1024, 768).len(), 12);
    let (tiled, gt) = objective.evaluate_tiled(&x, &tiling).unwrap();
    let loss = (tiled.total - whole.total).abs() / whole.total;
    let grad = l2_relative(&g, &gt);
    eprintln!(
        "vgg16-hed 1024x768, 12 tiles of 256: loss {:.3e} vs {:.3e} ({loss:.1e}), gradient {:.1e}",
        whole.total, tiled.total, grad
    );
    assert!(loss <= 1e-5, "loss differs by {loss:e}");
    assert!(grad <= 1e-4, "gradient differs by {grad:e}");
}
