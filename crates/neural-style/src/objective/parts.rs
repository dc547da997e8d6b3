//! The loss terms of one evaluation (Gatys et al. 2015, eq. 7: `α·L_content + β·L_style`,
//! plus total variation and the temporal term) and where its time went.

use std::time::Duration;

/// The loss terms at one evaluation, each already multiplied by its weight.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LossParts {
    /// The sum of the others.
    pub total: f32,
    /// α · content.
    pub content: f32,
    /// β · style.
    pub style: f32,
    /// TV weight · total variation.
    pub tv: f32,
    /// Temporal weight · temporal consistency (video frames only).
    pub temporal: f32,
}

/// Where one evaluation's time went: the network's forward pass, the loss terms on its
/// features, and the gradient back to the image (through both). A tiled evaluation is
/// timed whole only (its parts are zero).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EvaluationTimes {
    /// The network's forward pass to the deepest layer a loss reads.
    pub forward: Duration,
    /// The loss terms: differences, Gram matrices, pixel terms.
    pub losses: Duration,
    /// The gradient to the image.
    pub backward: Duration,
    /// The whole evaluation, from the optimiser's point to the loss and gradient.
    pub total: Duration,
}
