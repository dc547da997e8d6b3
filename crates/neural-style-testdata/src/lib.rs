//! Where the workspace's tests find their data, defined once: the committed fixtures (tiny
//! generated VGG19 weights and the PyTorch reference values of `fixtures/torch_reference.py`,
//! the images of `fixtures/images/make_images.py`; `fixtures/requirements.txt` pins what
//! the generators need) and the shared real test data in `../shared/testdata` beside the
//! checkout, which a test skips with a notice when absent, unless
//! `NEURAL_STYLE_REQUIRE_SHARED=1` says it must be there.

use std::path::{Path, PathBuf};

/// Set to `1` to make every test that needs `../shared/testdata` fail when it is absent.
pub const REQUIRE_SHARED_ENV: &str = "NEURAL_STYLE_REQUIRE_SHARED";

/// The fixtures folder: beside this crate's manifest where it was built, or (for a test
/// binary carried to another machine and run from a crate folder of the checkout there,
/// see tools/device_check.sh) `../neural-style-testdata/fixtures`.
pub fn fixtures() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("../neural-style-testdata/fixtures")
    }
}

/// A committed fixture, e.g. `fixture("tiny_vgg19.safetensors")`.
pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// The tiny generated VGG19 (widths 4, 8, 16, 32, 32; torchvision keys).
pub fn tiny_weights() -> PathBuf {
    fixture("tiny_vgg19.safetensors")
}

/// The tiny VGG19 cut after conv3_1, like the shared normalised VGG19.
pub fn tiny_weights_to_conv3_1() -> PathBuf {
    fixture("tiny_vgg19_to_conv3_1.safetensors")
}

/// The shared real test data (`../shared/testdata` beside the checkout; its README lists
/// the images and weights), if present. When absent it prints a notice naming `what` would
/// have used it and returns `None`; with `NEURAL_STYLE_REQUIRE_SHARED=1` it panics instead,
/// so that a run that must have the data cannot pass by skipping.
pub fn shared(what: &str) -> Option<PathBuf> {
    let required = std::env::var(REQUIRE_SHARED_ENV).is_ok_and(|v| v == "1");
    shared_in(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
        required,
        what,
    )
}

/// [`shared`] for the folder `dir`.
fn shared_in(dir: &Path, required: bool, what: &str) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    assert!(
        !required,
        "{REQUIRE_SHARED_ENV}=1 but {} is absent ({what} needs it)",
        dir.display()
    );
    eprintln!("NOTICE: {} is absent; skipping {what}", dir.display());
    None
}

/// One part of a multipart form: its name, the file name and type (for a file), the bytes.
pub struct Part<'a> {
    /// The field's name.
    pub name: &'a str,
    /// File name and content type, for a file.
    pub file: Option<(&'a str, &'a str)>,
    /// The value.
    pub bytes: Vec<u8>,
}

/// A PNG file part.
pub fn file_part(name: &str, bytes: Vec<u8>) -> Part<'_> {
    Part {
        name,
        file: Some(("upload.png", "image/png")),
        bytes,
    }
}

/// A text field.
pub fn field_part<'a>(name: &'a str, text: &str) -> Part<'a> {
    Part {
        name,
        file: None,
        bytes: text.as_bytes().to_vec(),
    }
}

/// A multipart form body and its `Content-Type` (how the web tests upload).
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "----neural-style-test-boundary-7d3f";
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match p.file {
            Some((filename, ty)) => format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{filename}\"\r\nContent-Type: {ty}\r\n\r\n",
                p.name
            ),
            None => format!(
                "Content-Disposition: form-data; name=\"{}\"\r\n\r\n",
                p.name
            ),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(&p.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The web UI's end-to-end script folder (`page.mjs`, playwright-core).
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../neural-style-web/e2e")
}

/// Whether a browser test can run here: Chromium (/usr/bin/chromium or $CHROMIUM),
/// Node.js and `npm ci --prefix crates/neural-style-web/e2e`. A missing piece is named in
/// a NOTICE, or fails the test when `NEURAL_STYLE_REQUIRE_BROWSER` is set (`.ci/run`).
pub fn browser_available() -> bool {
    let mut missing = Vec::new();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        missing.push(format!("Chromium ({chromium}; Debian package `chromium`)"));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("Node.js (`node`)".to_string());
    }
    if !e2e_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("playwright-core (`npm ci --prefix crates/neural-style-web/e2e`)".into());
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("NEURAL_STYLE_REQUIRE_BROWSER").is_none(),
        "NEURAL_STYLE_REQUIRE_BROWSER is set but the browser test lacks: {}",
        missing.join(", ")
    );
    eprintln!(
        "NOTICE: the browser test did not run: missing {}",
        missing.join(", ")
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_shared_data_is_skipped_unless_required() {
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(shared_in(&here, true, "a test"), Some(here.clone()));
        let absent = here.join("no-such-folder");
        assert_eq!(shared_in(&absent, false, "a test"), None);
        let required = std::panic::catch_unwind(|| shared_in(&absent, true, "a test"));
        assert!(required.is_err(), "a required absent folder must fail");
    }

    #[test]
    fn the_fixtures_are_where_the_tests_look() {
        assert!(tiny_weights().is_file(), "{}", tiny_weights().display());
        assert!(tiny_weights_to_conv3_1().is_file());
        assert!(fixture("requirements.txt").is_file());
    }
}
