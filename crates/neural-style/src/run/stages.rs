//! The style-transfer run (Gatys, Ecker & Bethge 2015, sec. 2-3): the images, the start
//! image, and the optimisation of the image's pixels (L-BFGS or Adam) through each stage of
//! the coarse-to-fine schedule of a [`Plan`], reported to an observer as events.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::Instant;

use crate::config::{Init, OptimizerKind, TransferConfig};
use crate::error::{Error, Result};
use crate::image::color::{PreserveColors, keep_luminance, match_histogram};
use crate::image::io::Image;
use crate::objective::parts::{EvaluationTimes, LossParts};
use crate::objective::statistics::StyleInput;
use crate::objective::terms::Objective;
use crate::objective::tiling::Tiling;
use crate::run::checkpoint::Checkpoint;
use crate::run::events::{Event, Observer, Output};
use crate::run::inputs::{Inputs, noise_image};
use crate::run::network::Network;
use crate::run::optim::{Adam, Lbfgs, LbfgsState};
use crate::run::plan::{Plan, Stage, style_longest};

/// Runs style transfer as `plan` says: resizes the inputs, builds the targets, optimises the
/// image at each stage of the schedule (each result upsampled to start the next) and
/// returns the best image seen. `observer` sees every evaluation and can stop the run; a
/// run stopped before the final stage returns its best image so far upsampled to the
/// output size. A plan with checkpoints ([`Plan::with_checkpoints`]) also emits
/// [`Event::Checkpoint`] and, given one, continues from it.
pub fn run(net: &Network, plan: &Plan, observer: &mut dyn Observer) -> Result<Output> {
    let config = plan.config();
    let inputs = plan.inputs();
    // Histogram mode: the style images take the photo's colour statistics first.
    let recoloured;
    let inputs = match (config.preserve_colors, &inputs.content) {
        (Some(PreserveColors::Histogram), Some(photo)) => {
            recoloured = Inputs {
                styles: inputs
                    .styles
                    .iter()
                    .map(|s| match_histogram(s, photo))
                    .collect(),
                ..inputs.clone()
            };
            &recoloured
        }
        _ => inputs,
    };
    let (width, height) = plan.output_size();
    let stages = plan.stages();
    let mut total = Output {
        image: Image::new(1, 1, vec![0.0; 3]),
        best_loss: LossParts::default(),
        final_loss: LossParts::default(),
        evaluations: 0,
        stopped: false,
        recoveries: 0,
        non_finite_at: None,
        structure: None,
    };
    if observer
        .on_event(&Event::Started {
            evaluations: plan.evaluations(),
            width,
            height,
        })
        .is_break()
    {
        total.image = start_image(config, inputs, width, height);
        total.stopped = true;
        return Ok(total);
    }
    let started = Instant::now();
    let mut previous: Option<Image> = None;
    // L-BFGS's curvature scale at the end of the previous stage, per pixel.
    let mut curvature: Option<f32> = None;
    let mut resume = plan.checkpoints.resume.clone();
    let first = resume.as_ref().map_or(0, |c| c.stage);
    total.evaluations = resume.as_ref().map_or(0, |c| c.done);
    for (index, stage) in stages.iter().enumerate().skip(first) {
        if observer
            .on_event(&Event::Stage {
                index,
                stages: stages.len(),
                width: stage.width,
                height: stage.height,
                evaluations: stage.evaluations,
                tiles: plan.tiling(stage.width, stage.height).map_or(1, |t| {
                    t.tiles(stage.width as usize, stage.height as usize).len()
                }),
            })
            .is_break()
        {
            total.stopped = true;
            break;
        }
        let init = match previous.take() {
            Some(p) => p.resized(stage.width, stage.height),
            None => start_image(config, inputs, stage.width, stage.height),
        };
        let pixels = (stage.width * stage.height) as f32;
        let (out, h_diag) = run_stage(
            net,
            plan,
            inputs,
            *stage,
            init,
            Progress {
                index,
                done: total.evaluations,
                started,
                resume: resume.take(),
                // The terms are means over positions, so the gradient per pixel, and with
                // it the curvature, shrinks as the image grows: the inverse scales with it.
                initial_h_diag: curvature.map(|h| h * pixels),
            },
            observer,
        )?;
        curvature = h_diag.map(|h| h / pixels);
        total.evaluations += out.evaluations;
        total.recoveries += out.recoveries;
        total.non_finite_at = total.non_finite_at.or(out.non_finite_at);
        total.best_loss = out.best_loss;
        total.final_loss = out.final_loss;
        previous = Some(out.image);
        if out.stopped {
            total.stopped = true;
            break;
        }
    }
    total.image = match previous {
        Some(image) => image.resized(width, height),
        None => start_image(config, inputs, width, height),
    };
    if let (Some(PreserveColors::Luminance), Some(photo)) =
        (config.preserve_colors, &inputs.content)
    {
        total.image = keep_luminance(&total.image, photo);
    }
    total.structure = inputs
        .content
        .as_ref()
        .map(|photo| crate::image::structure::coarse_structure(photo, &total.image));
    Ok(total)
}

/// The image the optimisation starts from, at `width` x `height`.
fn start_image(config: &TransferConfig, inputs: &Inputs, width: u32, height: u32) -> Image {
    match (&config.init, &inputs.content, &inputs.init) {
        (Init::Content, Some(c), _) => c.resized(width, height),
        (Init::Image, _, Some(i)) => i.resized(width, height),
        _ => noise_image(width, height, config.seed),
    }
}

/// Where a stage sits in the run.
struct Progress {
    /// Its index in the schedule.
    index: usize,
    /// Evaluations made at earlier stages (event numbers continue from here).
    done: usize,
    /// When the run started (event times count from here).
    started: Instant,
    /// A checkpoint taken at this stage to continue from.
    resume: Option<Checkpoint>,
    /// L-BFGS's first step: the curvature scale carried from the previous stage.
    initial_h_diag: Option<f32>,
}

/// The optimiser of a stage, as the settings choose it.
struct Optimiser<'c> {
    config: &'c TransferConfig,
    evaluations: usize,
    /// L-BFGS's first step: the curvature scale carried from the previous stage.
    initial_h_diag: Option<f32>,
    /// The network's input units per 0..1 pixel step (Adam's step is in pixels).
    pixel_range: f32,
}

impl Optimiser<'_> {
    /// Minimises `f` from `x`: L-BFGS (continuing from `resume`, `on_iteration` at each
    /// iteration) or Adam.
    fn minimize(
        &self,
        x: &mut [f32],
        f: &mut impl crate::run::optim::Differentiable,
        resume: Option<LbfgsState>,
        on_iteration: &mut dyn FnMut(&mut LbfgsState) -> ControlFlow<()>,
    ) -> crate::run::optim::Outcome {
        let config = self.config;
        match config.optimizer {
            OptimizerKind::Lbfgs => {
                let mut lbfgs =
                    Lbfgs::new(self.evaluations, config.lbfgs_history, config.line_search);
                lbfgs.safeguard = config.safeguard;
                lbfgs.initial_h_diag = self.initial_h_diag;
                lbfgs.minimize_resumable(x, f, resume, on_iteration)
            }
            OptimizerKind::Adam => Adam::new(
                config.learning_rate / 255.0 * self.pixel_range,
                self.evaluations,
            )
            .minimize(x, f),
        }
    }
}

/// One evaluation of a stage's objective at `x` (evaluation number `evaluation`): by tiles
/// when `tiling` is given, each tile pass shown to the observer, else whole; with where its
/// time went. `None` when the observer stopped it between tiles.
fn evaluate(
    objective: &Objective<'_>,
    tiling: Option<&Tiling>,
    x: &[f32],
    evaluation: usize,
    observer: &mut dyn Observer,
) -> Result<Option<(LossParts, Vec<f32>, EvaluationTimes)>> {
    let Some(tiling) = tiling else {
        let (parts, grad) = objective.evaluate(x)?;
        return Ok(Some((parts, grad, objective.last_times())));
    };
    let started = std::time::Instant::now();
    let evaluated = objective.evaluate_tiled_observed(x, tiling, &mut |done, of| {
        observer.on_event(&Event::Tile {
            evaluation,
            done,
            of,
        })
    })?;
    // A tiled evaluation is timed whole only.
    let times = EvaluationTimes {
        total: started.elapsed(),
        ..Default::default()
    };
    Ok(evaluated.map(|(parts, grad)| (parts, grad, times)))
}

/// What a stage's checkpoints record besides the optimiser's state, and how often.
struct Checkpointing<'p> {
    /// L-BFGS iterations between checkpoints (0: none).
    every: usize,
    fingerprint: &'p str,
    network: &'p str,
    stage: usize,
    /// Evaluations made at earlier stages.
    done: usize,
}

impl Checkpointing<'_> {
    /// At every `every`-th L-BFGS iteration, the run's state as a [`Checkpoint`] for the
    /// observer. The state and the best image are moved into it and back, not copied: at
    /// print sizes they are as large as the rest of the run.
    fn offer(
        &self,
        state: &mut LbfgsState,
        best: &mut Option<(LossParts, Vec<f32>)>,
        observer: &mut dyn Observer,
    ) -> ControlFlow<()> {
        if self.every == 0 || state.n_iter == 0 || !state.n_iter.is_multiple_of(self.every) {
            return ControlFlow::Continue(());
        }
        let checkpoint = Checkpoint {
            fingerprint: self.fingerprint.to_string(),
            weights: self.network.to_string(),
            stage: self.stage,
            done: self.done,
            best: best.take(),
            lbfgs: std::mem::take(state),
        };
        let flow = observer.on_event(&Event::Checkpoint {
            checkpoint: &checkpoint,
        });
        *state = checkpoint.lbfgs;
        *best = checkpoint.best;
        flow
    }
}

/// A stage that kept no best image: stopped before its first evaluation finished (between
/// the tiles of a long one), it gives the image it started from, whose loss is not known;
/// otherwise every evaluation was not finite, and the run diverged.
fn no_best(
    stopped: bool,
    non_finite_at: Option<usize>,
    done: usize,
    x: &[f32],
) -> Result<(LossParts, Vec<f32>)> {
    if stopped {
        let unknown = LossParts {
            total: f32::NAN,
            ..LossParts::default()
        };
        return Ok((unknown, x.to_vec()));
    }
    Err(Error::Diverged {
        evaluation: non_finite_at.unwrap_or(done + 1),
    })
}

/// The objective of one stage at `width` x `height`: the content photo and the style
/// images resized for it (each style by the style scale, with its share of the target),
/// the masks, and the temporal term of a video frame.
fn stage_objective<'a>(
    net: &'a Network,
    plan: &Plan,
    inputs: &Inputs,
    width: u32,
    height: u32,
) -> Result<Objective<'a>> {
    let config = plan.config();
    let conv = net.convention;
    let content = inputs.content.as_ref().map(|c| c.resized(width, height));
    let styles: Vec<StyleInput> = inputs
        .styles
        .iter()
        .zip(plan.style_shares())
        .map(|(s, b)| {
            let longest = style_longest(width, height, config.style_scale);
            let s = s.resized_to_longest(longest);
            StyleInput {
                data: conv.to_network(&s.data),
                width: s.width,
                height: s.height,
                blend: *b,
            }
        })
        .collect();
    let weights = plan.loss_weights();
    let content_input = content.as_ref().map(|c| conv.to_network(&c.data));
    let objective = Objective::build(
        &net.vgg,
        config,
        weights,
        conv.pixel_range(),
        content_input.as_deref(),
        &styles,
        (&inputs.style_masks, inputs.content_mask.as_ref()),
        (width, height),
        Some(&net.style_cache),
        plan.tiles().as_ref(),
    )?;
    Ok(match &inputs.temporal {
        Some(t) if config.temporal_weight > 0.0 => {
            let previous = conv.to_network(&t.previous.resized(width, height).data);
            let confidence = t.confidence.resized(width, height);
            objective.with_temporal(
                &previous,
                &confidence.data,
                config.temporal_weight,
                conv.pixel_range(),
            )
        }
        _ => objective,
    })
}

/// Optimises one stage of the schedule from `init` (or from `progress.resume`); also gives
/// L-BFGS's curvature scale at the end.
fn run_stage(
    net: &Network,
    plan: &Plan,
    inputs: &Inputs,
    stage: Stage,
    init: Image,
    progress: Progress,
    observer: &mut dyn Observer,
) -> Result<(Output, Option<f32>)> {
    let Progress {
        index,
        done,
        started,
        resume,
        initial_h_diag,
    } = progress;
    let config = plan.config();
    let conv = net.convention;
    let Stage {
        width,
        height,
        evaluations,
    } = stage;
    let objective = stage_objective(net, plan, inputs, width, height)?;
    let tiling = plan.tiling(width, height);
    let mut x = conv.to_network(&init.data);
    let mut count = resume.as_ref().map_or(0, |c| c.lbfgs.evaluations);
    let best: RefCell<Option<(LossParts, Vec<f32>)>> =
        RefCell::new(resume.as_ref().and_then(|c| c.best.clone()));
    let observer = RefCell::new(observer);
    let mut last = LossParts::default();
    let mut non_finite_at: Option<usize> = None;
    // An evaluation that fails stops the optimiser; the error is returned after it.
    let mut failed: Option<Error> = None;
    let mut f = |x: &[f32]| -> ControlFlow<(), (f32, Vec<f32>)> {
        let mut observer = observer.borrow_mut();
        let mut best = best.borrow_mut();
        count += 1;
        let evaluation = done + count;
        let (parts, grad, times) =
            match evaluate(&objective, tiling.as_ref(), x, evaluation, &mut **observer) {
                Ok(Some(evaluated)) => evaluated,
                // Stopped between tiles: this evaluation never happened.
                Ok(None) => {
                    count -= 1;
                    return ControlFlow::Break(());
                }
                Err(e) => {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
            };
        last = parts;
        let finite = parts.total.is_finite() && grad.iter().all(|g| g.is_finite());
        if !finite {
            non_finite_at.get_or_insert(done + count);
            // L-BFGS's guard restores the best point; anything else stops here, keeping
            // the best image.
            if !(config.safeguard && config.optimizer == OptimizerKind::Lbfgs) {
                return ControlFlow::Break(());
            }
        } else if best.as_ref().is_none_or(|(b, _)| parts.total < b.total) {
            *best = Some((parts, x.to_vec()));
        }
        observer.on_event(&Event::Evaluation {
            evaluation: done + count,
            loss: parts,
            elapsed: started.elapsed(),
            times,
        })?;
        if config.snapshot_every > 0
            && (done + count).is_multiple_of(config.snapshot_every)
            && count < evaluations
        {
            let image = Image::new(width, height, conv.from_network(x));
            observer.on_event(&Event::Snapshot {
                evaluation: done + count,
                image: &image,
            })?;
        }
        ControlFlow::Continue((parts.total, grad))
    };
    let checkpoints = Checkpointing {
        every: plan.checkpoints.every,
        fingerprint: &plan.checkpoints.fingerprint,
        network: &plan.network,
        stage: index,
        done,
    };
    let mut on_iteration = |state: &mut LbfgsState| -> ControlFlow<()> {
        let mut best = best.borrow_mut();
        checkpoints.offer(state, &mut best, &mut **observer.borrow_mut())
    };
    let outcome = Optimiser {
        config,
        evaluations,
        initial_h_diag,
        pixel_range: conv.pixel_range(),
    }
    .minimize(&mut x, &mut f, resume.map(|c| c.lbfgs), &mut on_iteration);
    if let Some(e) = failed {
        return Err(e);
    }
    let stopped = outcome.stopped && non_finite_at.is_none();
    let (best_loss, best_x) = match best.into_inner() {
        Some(best) => best,
        None => no_best(stopped, non_finite_at, done, &x)?,
    };
    let mut data = conv.from_network(&best_x);
    data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Ok((
        Output {
            image: Image::new(width, height, data),
            best_loss,
            final_loss: last,
            evaluations: count,
            stopped,
            recoveries: outcome.recoveries,
            non_finite_at,
            structure: None,
        },
        outcome.h_diag,
    ))
}
