//! Layer 2, the network: where tensors live ([`device`]), the VGG feature extractors with
//! named layers (Simonyan & Zisserman 2014, [`vgg`]), their weights files ([`weights`]),
//! the fast CPU layers registered with burn's `flex` backend ([`fastconv`], over the
//! `neural-style-kernels` crate), tensor read-back ([`tensor`]) and the header of a
//! `.safetensors` file ([`tensor_file`]).

pub mod device;
pub(crate) mod fastconv;
pub mod tensor;
pub mod tensor_file;
pub mod vgg;
pub mod weights;
