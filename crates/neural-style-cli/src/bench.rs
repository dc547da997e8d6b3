//! `neural-style bench`: seconds per optimisation step (forward + backward to the image
//! through VGG up to relu5_1 with the default content and style losses), random weights.

use std::time::Instant;

use anyhow::Result;
use neural_style::model::vgg::random_conv_params;
use neural_style::{Layer, LossWeights, Objective, Pooling, StyleInput, TransferConfig, Vgg};

use crate::cli::BenchArgs;

/// Peak resident memory of this process in bytes (Linux), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark and prints its figures.
pub fn run(args: &BenchArgs) -> Result<u8> {
    crate::runner::set_threads(args.threads)?;
    let arch = args.arch;
    // The mean form, as the PyTorch reference (torch_reference.py)'s bench computes it.
    let config = TransferConfig {
        loss_form: neural_style::LossForm::Mean,
        ..TransferConfig::default()
    };
    let choice: neural_style::DeviceChoice =
        args.device.parse().map_err(crate::config::flag_error)?;
    let (device, backend) =
        neural_style::model::device::device(choice).map_err(crate::config::flag_error)?;
    let params = random_conv_params(arch, Layer::Relu5_1, 1, 0);
    let vgg = Vgg::new(
        arch,
        params,
        Layer::Relu5_1,
        Pooling::Max,
        args.padding,
        &device,
    )?
    .with_convolution(args.convolution)?
    .with_precision(args.precision)
    .map_err(crate::config::flag_error)?;
    let n = args.size as usize;
    let image = neural_style::run::inputs::noise_image(args.size, args.size, 1);
    let x = neural_style::InputConvention::TorchRgb01.to_network(&image.data);
    let style = neural_style::run::inputs::noise_image(args.size, args.size, 2);
    let s = neural_style::InputConvention::TorchRgb01.to_network(&style.data);
    let weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 0.0,
    };
    let objective = Objective::new(
        &vgg,
        &config,
        weights,
        1.0,
        Some(&x),
        &[StyleInput {
            data: s,
            width: args.size,
            height: args.size,
            blend: 1.0,
        }],
        (&[], None),
        args.size,
        args.size,
    )?;
    let mut y = x.clone();
    y.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v += ((i % 7) as f32 - 3.0) * 0.01);
    // Timed on one of rayon's threads, where the command's runs evaluate.
    let mut times = crate::runner::on_pool(|| -> Result<Vec<f64>> {
        objective.evaluate(&y)?; // warm-up
        let mut times = Vec::with_capacity(args.steps);
        for _ in 0..args.steps.max(1) {
            let t = Instant::now();
            let (loss, grad) = objective.evaluate(&y)?;
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box((loss, grad));
        }
        Ok(times)
    })?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    let rss = peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let threads = rayon::current_num_threads();
    if args.json {
        tell!(
            "{}",
            serde_json::json!({"engine": "neural-style", "arch": arch.to_string(), "size": n, "steps": times.len(),
                "median_s": median, "min_s": min, "max_s": max, "peak_rss_mib": rss, "threads": threads, "backend": backend, "padding": format!("{:?}", args.padding).to_lowercase(),
                "convolution": format!("{:?}", args.convolution).to_lowercase(), "bf16": vgg.bf16()})
        );
    } else {
        tell!(
            "neural-style {arch} {n}x{n} on {backend}, {} padding, {} convolution{}: median {median:.3} s/step (min {min:.3}, max {max:.3}, {} steps, {threads} threads), peak RSS {rss:.0} MiB",
            format!("{:?}", args.padding).to_lowercase(),
            format!("{:?}", args.convolution).to_lowercase(),
            if vgg.bf16() { " (bf16 products)" } else { "" },
            times.len()
        );
    }
    Ok(0)
}
