//! Which layers a run reads (Gatys et al. 2015: content at `relu4_2`, style at
//! `relu1_1..relu5_1`), resolved against the convolutions a network's weights have.

use crate::config::{DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, TransferConfig};
use crate::model::vgg::{Arch, Layer, LayerKind};

/// The content and style layers of a config on weights that have the convolutions `convs`:
/// the lists set explicitly, else the paper's layers where the weights reach them, else the
/// style layers among them that the weights have and, for content, the rectifier of the
/// deepest convolution. Explicit layers are kept (and refused by [`Plan::new`] if out of
/// reach).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedLayers {
    pub(crate) content: Vec<Layer>,
    pub(crate) style: Vec<Layer>,
}

impl ResolvedLayers {
    pub(crate) fn new(config: &TransferConfig, arch: Arch, convs: &[Layer]) -> Self {
        let reachable = |l: &Layer| convs.contains(&l.source_conv(arch));
        let content = config.content_layers.clone().unwrap_or_else(|| {
            if DEFAULT_CONTENT_LAYERS.iter().all(reachable) {
                DEFAULT_CONTENT_LAYERS.to_vec()
            } else {
                // The rectifier right after the deepest convolution the weights have.
                let deepest = convs.iter().copied().max();
                Layer::ALL
                    .iter()
                    .copied()
                    .find(|l| l.kind() == LayerKind::Relu && Some(l.source_conv(arch)) == deepest)
                    .into_iter()
                    .collect()
            }
        });
        let style = config.style_layers.clone().unwrap_or_else(|| {
            DEFAULT_STYLE_LAYERS
                .iter()
                .copied()
                .filter(reachable)
                .collect()
        });
        Self { content, style }
    }

    /// `config` with these layer lists set.
    pub(crate) fn applied_to(self, config: &TransferConfig) -> TransferConfig {
        TransferConfig {
            content_layers: Some(self.content),
            style_layers: Some(self.style),
            ..config.clone()
        }
    }
}
