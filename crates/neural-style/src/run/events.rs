//! What a run reports while it works and what it returns: the loss terms of each
//! evaluation, the [`Event`]s an [`Observer`] receives (progress, checkpoints, intermediate
//! images) and the [`Output`].

use std::ops::ControlFlow;
use std::time::Duration;

use crate::image::io::Image;
use crate::objective::parts::{EvaluationTimes, LossParts};
use crate::run::checkpoint::Checkpoint;

/// What a run reports while it works.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The optimisation starts.
    Started {
        /// Planned loss evaluations, all sizes together.
        evaluations: usize,
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
    },
    /// Optimisation at one stage (size) of the coarse-to-fine schedule starts.
    Stage {
        /// 0-based index in the schedule.
        index: usize,
        /// Number of stages in the schedule.
        stages: usize,
        /// Width at this size.
        width: u32,
        /// Height at this size.
        height: u32,
        /// Evaluations planned at this size.
        evaluations: usize,
        /// Tiles each evaluation is cut into (1: the whole image at once).
        tiles: usize,
    },
    /// A tile of a tiled evaluation is done: an evaluation of a picture larger than memory
    /// takes minutes, and these let a front end show it moving and stop it between tiles
    /// (the evaluation in progress is then dropped and the run returns its best image).
    Tile {
        /// 1-based count of the evaluation in progress.
        evaluation: usize,
        /// Tile passes done in it: pass 1 runs each tile forward for the whole image's
        /// statistics, pass 2 forward and backward for the gradient.
        done: usize,
        /// Tile passes in the evaluation (twice the tiles with a style term).
        of: usize,
    },
    /// One loss evaluation finished.
    Evaluation {
        /// 1-based evaluation count.
        evaluation: usize,
        /// The loss at this evaluation.
        loss: LossParts,
        /// Time since the optimisation started.
        elapsed: Duration,
        /// Where this evaluation's time went (the rest of the time between two evaluations
        /// is the optimiser's and the run's bookkeeping).
        times: EvaluationTimes,
    },
    /// The run's state at an L-BFGS iteration boundary (every `checkpoint_every`
    /// iterations): saved, it lets a run planned with it ([`crate::Plan::with_checkpoints`]) continue
    /// exactly from here.
    Checkpoint {
        /// The state.
        checkpoint: &'a Checkpoint,
    },
    /// An intermediate image (every `snapshot_every` evaluations).
    Snapshot {
        /// The evaluation it was taken at.
        evaluation: usize,
        /// The image.
        image: &'a Image,
    },
}

/// Receives a run's events; returning `Break` stops the run, which then returns its best
/// image so far.
pub trait Observer {
    /// Called for each event.
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()>;
}

/// An observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_event(&mut self, _: &Event<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl<F: FnMut(&Event<'_>) -> ControlFlow<()>> Observer for F {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        self(event)
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Output {
    /// The image with the lowest loss seen at the last size optimised, at the output size.
    pub image: Image,
    /// Its loss (at the size it was optimised at).
    pub best_loss: LossParts,
    /// The loss at the last evaluation.
    pub final_loss: LossParts,
    /// Loss evaluations made.
    pub evaluations: usize,
    /// Whether the observer stopped the run early.
    pub stopped: bool,
    /// How many times L-BFGS's divergence guard went back to the best point.
    pub recoveries: usize,
    /// The first evaluation whose loss or gradient was not finite, if any.
    pub non_finite_at: Option<usize>,
    /// How much of the photo's layout the image keeps ([`crate::image::structure`]: coarse SSIM
    /// of the luminances, 1 = all); `None` without a photo.
    pub structure: Option<f32>,
}
