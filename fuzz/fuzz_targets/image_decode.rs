//! Any bytes given as an image file: decoding to planar RGB must either succeed or return
//! an error, never panic or allocate without bound (the decoder limits apply).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("input.img");
    std::fs::write(&path, data).expect("write");
    if let Ok(img) = neural_style::Image::load(&path, 1 << 22) {
        assert_eq!(img.data.len(), 3 * img.width as usize * img.height as usize);
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
