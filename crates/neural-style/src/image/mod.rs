//! Layer 1, images: decoding with limits and writing with the photo's print information
//! ([`io`]), colour preservation (Gatys et al. 2017, [`color`]), how much of the photo's
//! structure a result keeps ([`structure`]) and contact sheets ([`sheet`]). Knows nothing
//! of networks or losses.

pub mod color;
pub mod io;
pub mod sheet;
pub mod structure;
