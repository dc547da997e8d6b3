//! How a run's events become a job's view: the loss curve (thinned to a few hundred
//! points), the ETA, the tile pass in progress and the preview, published a few times a
//! second. Shared by the server's own workers ([`crate::jobs`]) and the workers of the
//! queue across machines ([`crate::queue::worker`]).

use std::time::{Duration, Instant};

use neural_style::{Event, Image, LossParts};

use crate::jobs::JobView;

/// Most points kept of a loss curve; past it every other point is dropped.
const CURVE_POINTS: usize = 400;
/// Least time between two published updates (and previews) of a running job.
const PUBLISH_EVERY: Duration = Duration::from_millis(150);
/// JPEG quality of preview images.
const PREVIEW_QUALITY: u8 = 85;

/// What one event changes in a job's view.
#[derive(Debug)]
pub(crate) enum Change {
    /// The run starts with this many evaluations planned.
    Started { evaluations: usize },
    /// An evaluation finished.
    Evaluation {
        evaluation: usize,
        loss: LossParts,
        elapsed_s: f64,
        publish: bool,
    },
    /// A tile pass finished.
    Tile {
        done: usize,
        of: usize,
        publish: bool,
    },
    /// A new preview image (JPEG).
    Preview(Vec<u8>),
}

/// The clock and throttles of one run's progress.
pub(crate) struct Progress {
    started: Instant,
    last_publish: Option<Instant>,
    last_preview: Option<Instant>,
    preview_every: Duration,
}

impl Progress {
    /// Progress published at most every [`PUBLISH_EVERY`], previews as often.
    pub(crate) fn new() -> Self {
        Self::with_previews_every(PUBLISH_EVERY)
    }

    /// The same with previews at most every `preview_every` (a worker across the network
    /// sends fewer: each is a JPEG through the engine).
    pub(crate) fn with_previews_every(preview_every: Duration) -> Self {
        Self {
            started: Instant::now(),
            last_publish: None,
            last_preview: None,
            preview_every,
        }
    }

    /// Whether watchers get an update now (at most every [`PUBLISH_EVERY`]).
    fn publish_due(&mut self) -> bool {
        let due = self
            .last_publish
            .is_none_or(|t| t.elapsed() >= PUBLISH_EVERY);
        if due {
            self.last_publish = Some(Instant::now());
        }
        due
    }

    /// What `event` changes, if anything (a preview is encoded here, off any lock).
    pub(crate) fn change(&mut self, event: &Event<'_>) -> Option<Change> {
        match event {
            Event::Started { evaluations, .. } => Some(Change::Started {
                evaluations: *evaluations,
            }),
            Event::Evaluation {
                evaluation, loss, ..
            } => Some(Change::Evaluation {
                evaluation: *evaluation,
                loss: *loss,
                elapsed_s: self.started.elapsed().as_secs_f64(),
                publish: self.publish_due(),
            }),
            Event::Tile { done, of, .. } => Some(Change::Tile {
                done: *done,
                of: *of,
                publish: self.publish_due(),
            }),
            Event::Snapshot { image, .. } => {
                if self
                    .last_preview
                    .is_some_and(|t| t.elapsed() < self.preview_every)
                {
                    return None;
                }
                let jpeg = encode_preview(image)?;
                self.last_preview = Some(Instant::now());
                Some(Change::Preview(jpeg))
            }
            _ => None,
        }
    }
}

/// Applies `change` to `view` (`stride`: every evaluation is recorded in the curve while
/// `evaluation % stride == 0`); returns whether watchers should hear of it now.
pub(crate) fn apply(change: &Change, view: &mut JobView, stride: &mut usize) -> bool {
    match change {
        Change::Started { evaluations } => {
            view.evaluations = *evaluations;
            true
        }
        Change::Evaluation {
            evaluation,
            loss,
            elapsed_s,
            publish,
        } => {
            let evaluation = *evaluation;
            view.tile = None;
            view.evaluation = evaluation;
            view.loss = Some(*loss);
            view.elapsed_s = *elapsed_s;
            // A resumed run counts its evaluations from where it continues.
            let done_here = evaluation.saturating_sub(view.resumed_from.unwrap_or(0));
            view.eta_s = (view.evaluations > evaluation && done_here > 0)
                .then(|| elapsed_s / done_here as f64 * (view.evaluations - evaluation) as f64);
            if evaluation % *stride == 0 && loss.total.is_finite() {
                view.curve.push((evaluation, loss.total));
                if view.curve.len() > CURVE_POINTS {
                    *stride *= 2;
                    let stride = *stride;
                    view.curve.retain(|(e, _)| e % stride == 0);
                }
            }
            *publish
        }
        Change::Tile { done, of, publish } => {
            view.tile = Some((*done, *of));
            *publish
        }
        Change::Preview(_) => {
            view.preview_version += 1;
            true
        }
    }
}

/// A preview as JPEG bytes.
fn encode_preview(image: &Image) -> Option<Vec<u8>> {
    let rgb = image.to_rgb8();
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, PREVIEW_QUALITY)
        .encode_image(&rgb)
        .ok()?;
    Some(bytes)
}
