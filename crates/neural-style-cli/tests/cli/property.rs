//! A property of the whole CLI: on randomly shaped tiny images (sides 1..=64, so aspects up
//! to 1:64) with random flag values from their documented ranges, a run either succeeds
//! and writes its image, or fails with exactly one `error:` line; it never panics. One
//! case in four also aims the run's files at something it must not write (issue 43): a
//! FIFO or `/dev/null` as the output, the log or the checkpoint, or two of its own files
//! that are one. Such a run is refused in one line before any work, writes nothing, and
//! leaves the special file as it was.
//! `NEURAL_STYLE_PROPERTY_SEED` and `NEURAL_STYLE_PROPERTY_CASES` replay or widen it.

use rand::rngs::ChaCha8Rng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use super::*;

const SEED: u64 = 0x5EED_2026_1202;
const CASES: usize = 48;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A random image of sides 1..=64 (either orientation), as a PNG at `path`.
fn random_image(rng: &mut ChaCha8Rng, path: &str) -> (u32, u32) {
    let (w, h) = (rng.random_range(1..=64), rng.random_range(1..=64));
    write_image(Path::new(path), w, h, rng.random_range(0.0..6.0));
    (w, h)
}

/// Flags with values drawn from their documented ranges (sizes kept small for speed).
fn random_flags(rng: &mut ChaCha8Rng) -> Vec<String> {
    let layers = [
        "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1",
    ];
    let pick = |rng: &mut ChaCha8Rng, from: &[&str]| from.choose(rng).unwrap().to_string();
    let mut flags: Vec<String> = vec![
        "--size".into(),
        rng.random_range(16..=96u32).to_string(),
        "-n".into(),
        rng.random_range(1..=3usize).to_string(),
        "--seed".into(),
        rng.random::<u64>().to_string(),
        "--threads".into(),
        rng.random_range(1..=2usize).to_string(),
    ];
    let optional: Vec<(&str, String)> = vec![
        ("--min-size", rng.random_range(16..=64u32).to_string()),
        (
            "--style-scale",
            format!("{:.2}", rng.random_range(0.05..=2.0f32)),
        ),
        (
            "--content-weight",
            format!("{:.3}", rng.random_range(0.0..=100.0f32)),
        ),
        (
            "--style-weight",
            format!("{:.3}", rng.random_range(0.0..=1000.0f32)),
        ),
        (
            "--tv-weight",
            format!("{:.4}", rng.random_range(0.0..=1.0f32)),
        ),
        ("--lbfgs-history", rng.random_range(1..=50usize).to_string()),
        (
            "--learning-rate",
            format!("{:.2}", rng.random_range(0.01..=50.0f32)),
        ),
        ("--optimizer", pick(rng, &["lbfgs", "adam"])),
        ("--loss-form", pick(rng, &["normalized", "mean", "paper"])),
        ("--init", pick(rng, &["content", "noise"])),
        ("--pooling", pick(rng, &["max", "avg"])),
        ("--padding", pick(rng, &["zero", "reflect", "replicate"])),
        ("--convolution", pick(rng, &["winograd", "direct"])),
        ("--preserve-colors", pick(rng, &["luminance", "histogram"])),
        ("--style-loss", pick(rng, &["gram", "w2"])),
        ("--content-layers", pick(rng, &layers)),
        ("--style-layers", {
            let n = rng.random_range(1..=layers.len());
            layers.sample(rng, n).copied().collect::<Vec<_>>().join(",")
        }),
    ];
    for (flag, value) in optional {
        if rng.random_bool(0.3) {
            flags.extend([flag.to_string(), value]);
        }
    }
    if rng.random_bool(0.2) {
        flags.push("--no-coarse-to-fine".into());
    }
    flags
}

/// Files of a run aimed where it must not write: its flags, and the special file (if any)
/// that must be left as it was.
fn hostile_outputs(rng: &mut ChaCha8Rng, s: &Scene, out: &str) -> (Vec<String>, Option<String>) {
    let fifo = s.p("fifo");
    if !Path::new(&fifo).exists() {
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
    }
    let log = s.p("run.log");
    let snapshot = out.replace(".png", "_0002.png");
    let (flags, special): (Vec<&str>, Option<&str>) = match rng.random_range(0..7) {
        0 => (vec!["--output", &fifo], Some(&fifo)),
        1 => (vec!["--log", &fifo], Some(&fifo)),
        2 => (vec!["--checkpoint", &fifo], Some(&fifo)),
        3 => (vec!["--log", "/dev/null"], Some("/dev/null")),
        4 => (vec!["--log", out], None),
        5 => (vec!["--log", &log, "--checkpoint", &log], None),
        _ => (vec!["--log", &snapshot, "--save-every", "2"], None),
    };
    (
        flags.into_iter().map(str::to_string).collect(),
        special.map(str::to_string),
    )
}

/// Whether `path` is a FIFO or a character device (what the hostile cases aim at).
fn is_special(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo() || m.file_type().is_char_device())
        .unwrap_or(false)
}

#[test]
fn random_tiny_shapes_and_flags_never_panic_and_fail_in_one_line() {
    let seed = env_or("NEURAL_STYLE_PROPERTY_SEED", SEED);
    let cases = env_or("NEURAL_STYLE_PROPERTY_CASES", CASES);
    eprintln!("property: seed {seed:#x}, {cases} cases");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = Scene::new();
    let w = tiny_weights();
    let (mut ok, mut refused) = (0, 0);
    for case in 0..cases {
        let (c, st, out) = (s.p("c.png"), s.p("s.png"), s.p(&format!("out{case}.png")));
        let content = random_image(&mut rng, &c);
        let style = random_image(&mut rng, &st);
        let mut flags = random_flags(&mut rng);
        let hostile = rng
            .random_bool(0.25)
            .then(|| hostile_outputs(&mut rng, &s, &out));
        if let Some((extra, _)) = &hostile {
            flags.extend(extra.iter().cloned());
        }
        let mut args = vec!["-c", &c, "-s", &st, "-w", w.to_str().unwrap(), "-q"];
        args.extend(flags.iter().map(String::as_str));
        // The output, unless a hostile case aims it elsewhere.
        if !flags.iter().any(|f| f == "--output") {
            args.extend(["-o", &out]);
        }
        // A run that opened a FIFO would wait for a reader for ever: `timeout` ends it.
        let o = Command::new("timeout")
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_neural-style"))
            .args(&args)
            .output()
            .unwrap();
        let err = stderr(&o);
        let what = format!(
            "case {case} (seed {seed:#x}): content {content:?}, style {style:?}, {flags:?}\n{err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{what}"
        );
        if let Some((_, special)) = &hostile {
            assert_eq!(o.status.code(), Some(2), "refused: {what}");
            if let Some(special) = special {
                assert!(is_special(special), "{special} was replaced: {what}");
            }
            assert!(!Path::new(&out).exists(), "{what}");
        }
        if o.status.success() {
            assert!(image::open(&out).is_ok(), "{what}");
            ok += 1;
        } else {
            assert_eq!(o.status.code(), Some(2), "{what}");
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{what}");
            assert_eq!(err.trim_end().lines().last(), Some(errors[0]), "{what}");
            eprintln!("case {case}: {}", errors[0]);
            refused += 1;
        }
    }
    eprintln!("property: {ok} runs finished, {refused} refused with one line");
    assert_eq!(ok + refused, cases);
}
