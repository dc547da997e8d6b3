//! End-to-end tests of the `neural-style` command on tiny generated weights and images:
//! one integration binary, a module per area, and the helpers they share here.

mod batch;
mod errors;
mod property;
#[cfg(feature = "queue")]
mod queue;
mod run;
#[cfg(feature = "serve")]
mod serve;
mod signals;
mod video;
mod weights;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use neural_style_testdata::{fixture, tiny_weights, tiny_weights_to_conv3_1};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
}

/// The shared real test data, if present (see [`neural_style_testdata::shared`]: with
/// `NEURAL_STYLE_REQUIRE_SHARED=1` its absence fails the test).
fn shared(what: &str) -> Option<PathBuf> {
    neural_style_testdata::shared(what)
}

/// A smooth synthetic photo-like image.
fn write_image(path: &Path, w: u32, h: u32, phase: f32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let v = |a: f32| ((a * std::f32::consts::TAU + phase).sin() * 0.5 + 0.5) * 255.0;
        image::Rgb([
            v(fx * 2.0) as u8,
            v(fy * 3.0 + fx) as u8,
            v(fx * fy * 5.0) as u8,
        ])
    });
    img.save(path).expect("write test image");
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run neural-style")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_error(o: &Output, must_contain: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    for m in must_contain {
        assert!(err.contains(m), "`{m}` not in: {err}");
    }
}

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        write_image(&dir.path().join("content.png"), 40, 32, 0.0);
        write_image(&dir.path().join("style.png"), 36, 36, 2.0);
        Self { dir }
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    /// `neural-style -c content.png -s style.png -w WEIGHTS EXTRA... -o OUT`.
    fn transfer(&self, weights: &str, extra: &[&str], out: &str) -> Output {
        let (c, st, o) = (self.p("content.png"), self.p("style.png"), self.p(out));
        let mut args = vec!["-c", &c, "-s", &st, "-w", weights];
        args.extend_from_slice(extra);
        args.extend(["-o", &o]);
        run(&args)
    }
}

/// A certificate authority of the test's own (`ca.pem`) and a certificate it signed for
/// localhost and 127.0.0.1 (`server.pem`, `server.key`), made in `dir` by openssl; false
/// when openssl is not installed.
pub fn test_certificates(dir: &str) -> bool {
    let at = |name: &str| format!("{dir}/{name}");
    let san = at("san.ext");
    std::fs::write(&san, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let subject = |cn: &str| format!("/CN={cn}");
    for args in [
        vec![
            "req".into(),
            "-x509".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-days".into(),
            "1".into(),
            "-subj".into(),
            subject("test-ca"),
            "-keyout".into(),
            at("ca.key"),
            "-out".into(),
            at("ca.pem"),
        ],
        vec![
            "req".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            subject("localhost"),
            "-keyout".into(),
            at("server.key"),
            "-out".into(),
            at("server.csr"),
        ],
        vec![
            "x509".into(),
            "-req".into(),
            "-days".into(),
            "1".into(),
            "-CAcreateserial".into(),
            "-in".into(),
            at("server.csr"),
            "-CA".into(),
            at("ca.pem"),
            "-CAkey".into(),
            at("ca.key"),
            "-out".into(),
            at("server.pem"),
            "-extfile".into(),
            san.clone(),
        ],
    ] {
        let args: Vec<String> = args;
        let Ok(o) = Command::new("openssl").args(&args).output() else {
            return false;
        };
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    }
    true
}
