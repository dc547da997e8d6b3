//! Layer 4, the objective of Gatys, Ecker & Bethge 2015 for one image size: the loss
//! formulas ([`loss`], [`w2`]), regions ([`mask`]), the style statistics and their cache
//! ([`statistics`]), the terms against their targets ([`terms`]), and the same objective
//! evaluated by tiles with exact global statistics (Galerne et al. 2024: [`tiling`] cuts,
//! [`tiles`] and [`tiled`] evaluate).

pub mod loss;
pub mod mask;
pub mod parts;
pub mod statistics;
pub mod terms;
pub mod tiled;
pub(crate) mod tiles;
pub mod tiling;
pub mod w2;
