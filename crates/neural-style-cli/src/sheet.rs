//! `neural-style sheet`: the paper's fig. 3 as a command. One run per cell (style weight
//! across, style layer set down) from the same photo, start and network, composed into one
//! labelled image.

use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use neural_style::{Image, Layer, TransferConfig, run as transfer};

use crate::cli::SheetArgs;
use crate::config::{RunJob, flag_error, not_allowed};
use crate::progress::Reporter;
use crate::runner::{
    Signals, check_memory, describe, interrupted, load_inputs, load_network_from, plan, set_threads,
};

/// `1e-3` rather than `0.001`; two significant digits at most.
fn short(x: f32) -> String {
    let plain = format!("{x:e}");
    if plain.len() <= 6 {
        plain
    } else {
        format!("{x:.1e}")
    }
}

/// `relu1_1`, `relu1_1,relu2_1`, or `relu1_1..relu5_1` for longer sets.
fn set_label(set: &[Layer]) -> String {
    match set {
        [] => "none".into(),
        [a] => a.to_string(),
        [a, b] => format!("{a},{b}"),
        [a, .., b] => format!("{a}..{b}"),
    }
}

/// Runs every cell and writes the sheet to `--output`.
pub fn run(args: SheetArgs) -> Result<u8> {
    if args.run.checkpoint.is_some() || args.run.resume.is_some() {
        bail!("--checkpoint and --resume are for single runs, not for `sheet`");
    }
    if let Some(w) = args
        .style_weights
        .iter()
        .find(|w| !(w.is_finite() && **w >= 0.0))
    {
        return Err(not_allowed("--style-weights", w, "finite weights >= 0"));
    }
    let rows: Vec<Option<Vec<Layer>>> = if args.layer_sets.is_empty() {
        vec![None]
    } else {
        args.layer_sets
            .iter()
            .map(|set| {
                let names: Vec<&str> = set.split(',').collect();
                crate::config::layers("layer-sets", &names).map(Some)
            })
            .collect::<Result<_>>()?
    };
    if rows.iter().any(|r| r.as_ref().is_some_and(Vec::is_empty)) {
        bail!("--layer-sets: an empty set; give at least one layer per set");
    }
    let job = RunJob::from_args(args.run)?;
    if job.styles.is_empty() {
        bail!("`sheet` needs a --style image: its columns are style weights");
    }
    let styles = job.styles.len();
    let mut base = TransferConfig {
        snapshot_every: 0,
        ..job.config.get().clone()
    };
    // Load the network (and plan memory) for the deepest layers any row uses.
    let mut deepest = base.clone();
    if rows.iter().any(Option::is_some) {
        let mut all: Vec<Layer> = rows.iter().flatten().flatten().copied().collect();
        all.sort();
        all.dedup();
        deepest.style_layers = Some(all);
    }
    set_threads(job.threads)?;
    let inputs = load_inputs(&job, &crate::runner::Given::new())?;
    let (net, weights) = load_network_from(&job.weights, job.device, &deepest, job.quiet)?;
    if !job.no_memory_check {
        let deepest = deepest.check(styles).map_err(flag_error)?;
        let fits = check_memory(&job, plan(&deepest, &net, inputs.clone())?)?;
        base.lbfgs_history = fits.config().lbfgs_history;
    }
    let signals = Signals::install()?;
    let alpha = net.loss_weights(&base).content;
    let columns: Vec<String> = args
        .style_weights
        .iter()
        .map(|b| {
            if alpha > 0.0 && *b > 0.0 {
                format!("α/β={}", short(alpha / b))
            } else {
                format!("β={}", short(*b))
            }
        })
        .collect();
    let row_labels: Vec<String> = rows
        .iter()
        .map(|r| r.as_deref().map(set_label).unwrap_or_default())
        .collect();
    let total = rows.len() * args.style_weights.len();
    let mut cells: Vec<Vec<Image>> = Vec::new();
    let mut done = 0;
    'grid: for (set, label) in rows.iter().zip(&row_labels) {
        let mut row = Vec::new();
        for (beta, column) in args.style_weights.iter().zip(&columns) {
            let config = TransferConfig {
                style_weight: Some(*beta),
                style_layers: set.clone().or_else(|| base.style_layers.clone()),
                ..base.clone()
            };
            let cell = plan(
                &config.check(styles).map_err(flag_error)?,
                &net,
                inputs.clone(),
            )?;
            let mut reporter = Reporter::new(
                job.quiet,
                job.print_every,
                None,
                job.output.clone(),
                signals.interrupted.clone(),
            );
            if done == 0 {
                reporter.println(&describe(&net, &job, &weights));
            }
            done += 1;
            reporter.println(&format!("cell {done}/{total}: {column} {label}"));
            let out = transfer(&net, &cell, &mut reporter);
            reporter.finish();
            let out = out?;
            let stop = interrupted(&out, &signals);
            row.push(out.image);
            if stop {
                cells.push(row);
                break 'grid;
            }
        }
        cells.push(row);
    }
    let sheet = neural_style::image::sheet::contact_sheet(&cells, &row_labels, &columns);
    if signals.interrupted.load(Ordering::SeqCst) {
        let partial = crate::config::partial_path(&job.output);
        sheet.save(&partial)?;
        say!(
            "interrupted after {done} of {total} cells; the sheet so far is in {}",
            partial.display()
        );
        return Ok(signals.exit_code());
    }
    sheet.save(&job.output)?;
    say!(
        "wrote {} ({}x{}, {total} cells)",
        job.output.display(),
        sheet.width,
        sheet.height
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_short() {
        assert_eq!(short(0.001), "1e-3");
        assert_eq!(short(1.0 / 3.0), "3.3e-1");
        assert_eq!(short(100.0), "1e2");
        assert_eq!(
            set_label(&[Layer::Relu1_1, Layer::Relu2_1, Layer::Relu3_1]),
            "relu1_1..relu3_1"
        );
    }
}
