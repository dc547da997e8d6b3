//! Paths shared by the integration tests.
#![allow(dead_code)] // each test file uses what it needs

use std::path::PathBuf;

/// The test fixtures: under the crate's folder where it was built, or (for a test binary
/// carried to another machine, see tools/device_prepare.sh, and run from the crate's
/// folder there) under the current directory.
pub fn fixtures() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let crate_dir = if built.is_dir() {
        built
    } else {
        PathBuf::from(".")
    };
    crate_dir.join("tests/fixtures")
}

/// The tiny generated VGG19 weights.
pub fn tiny_weights() -> PathBuf {
    fixtures().join("tiny_vgg19.safetensors")
}
