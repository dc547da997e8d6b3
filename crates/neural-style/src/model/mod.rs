//! Layer 2, the network: where tensors live ([`device`]), the VGG feature extractors with
//! named layers (Simonyan & Zisserman 2014, [`vgg`]), their weights files ([`weights`]),
//! the fast CPU layers registered with burn's `flex` backend ([`fastconv`], over the
//! `neural-style-kernels` crate) and tensor read-back ([`tensor`]).

pub mod device;
pub(crate) mod fastconv;
pub mod tensor;
pub mod vgg;
pub mod weights;
