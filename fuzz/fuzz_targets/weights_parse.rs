//! Any bytes given as a weights file (`.safetensors` or PyTorch `.pth`): opening it, reading
//! what it holds and loading its convolutions must succeed or return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neural_style::{Layer, WeightFile};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weights.bin");
    std::fs::write(&path, data).expect("write");
    let Ok(file) = WeightFile::open(&path) else {
        return;
    };
    let Ok(info) = file.info(None) else { return };
    if let Ok(params) = file.conv_params(info.arch, &[Layer::Relu1_2]) {
        for p in params {
            assert_eq!(p.weight.len(), p.out_channels * p.in_channels * 9);
            assert!(p.weight.iter().all(|v| v.is_finite()));
        }
    }
});
