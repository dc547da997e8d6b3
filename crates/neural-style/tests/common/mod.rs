//! What the library's integration tests share: the fixtures (defined once in the
//! `neural-style-testdata` crate) and a helper that checks, plans and runs a config.
#![allow(dead_code)] // each test file uses what it needs

use std::path::PathBuf;

/// A committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    neural_style_testdata::fixture(name)
}

/// The tiny generated VGG19.
pub fn tiny_weights() -> PathBuf {
    neural_style_testdata::tiny_weights()
}

/// Checks `config`, plans it for `net` and `inputs`, and runs it.
pub fn transfer(
    net: &neural_style::Network,
    config: &neural_style::TransferConfig,
    inputs: &neural_style::Inputs,
    observer: &mut dyn neural_style::Observer,
) -> neural_style::Result<neural_style::Output> {
    let checked = config.clone().check(inputs.styles.len())?;
    let plan = neural_style::Plan::new(&checked, net, inputs.clone())?;
    neural_style::run(net, &plan, observer)
}

/// The default config with f32 products (`Precision::F32`): the same numbers on every CPU.
/// On a CPU with AVX512-BF16 the default (`auto`) rounds the products' operands to bf16,
/// about 1% off, which tests of exact agreement (tiles against the whole image) do not
/// measure.
pub fn f32_config() -> neural_style::TransferConfig {
    neural_style::TransferConfig {
        precision: neural_style::Precision::F32,
        ..neural_style::TransferConfig::default()
    }
}
