//! Layer 6, video: dense optical flow ([`flow`]) and the temporal guide and flicker
//! correction between frames (Ruder, Dosovitskiy & Brox 2016, [`guide`]), on top of a run.

pub mod flow;
pub mod guide;
