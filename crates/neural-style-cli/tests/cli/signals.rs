//! Ctrl-C, SIGTERM and SIGHUP: the best image is kept, and a checkpointed run resumes on
//! the same curve; a running job's log is its own.

use std::path::Path;

use super::*;

/// Starts a long run (with `extra` flags) logging to `sig.jsonl` and waits until it has
/// logged 3 evaluations.
#[cfg(unix)]
fn start_long_run(s: &Scene, extra: &[&str]) -> std::process::Child {
    let log = s.p("sig.jsonl");
    let w = tiny_weights();
    let child = bin()
        .args([
            "-c",
            &s.p("content.png"),
            "-s",
            &s.p("style.png"),
            "-w",
            w.to_str().unwrap(),
            "--size",
            "48",
            "-n",
            "1000000",
            "--log",
            &log,
            "-o",
            &s.p("sig.png"),
        ])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no evaluations logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// Starts a long run, waits for a few evaluations in its log, sends `signal` with `kill`,
/// and returns its exit status and stderr.
#[cfg(unix)]
fn interrupt_run(s: &Scene, signal: &str, extra: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut child = start_long_run(s, extra);
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

#[cfg(unix)]
#[test]
fn sigint_sigterm_and_sighup_save_the_best_image_and_exit_130_143_and_129() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143), ("-HUP", 129)] {
        let s = Scene::new();
        let (status, err) = interrupt_run(&s, signal, &[]);
        assert_eq!(status.code(), Some(code), "{signal}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let partial = s.p("sig.partial.png");
        assert!(err.contains(&partial), "{err}");
        let img = image::open(&partial).expect("the partial image decodes");
        assert_eq!((img.width(), img.height()), (48, 38));
        // The requested output is not written by an interrupted run.
        assert!(!Path::new(&s.p("sig.png")).exists());
    }
}

#[cfg(unix)]
#[test]
fn a_run_killed_with_sigterm_resumes_from_its_checkpoint_on_the_same_curve() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let common = |log: &str, out: &str| -> Vec<String> {
        [
            "-c",
            &s.p("content.png"),
            "-s",
            &s.p("style.png"),
            "-w",
            w,
            "--size",
            "48",
            "-n",
            "300",
            "--threads",
            "2",
            "--log",
            &s.p(log),
            "-o",
            &s.p(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let losses = |log: &str| -> Vec<(u64, f64)> {
        std::fs::read_to_string(s.p(log))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            // The last line is the result's.
            .filter(|v| v["result"] != true)
            .map(|v| {
                (
                    v["evaluation"].as_u64().unwrap(),
                    v["total"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let o = bin()
        .args(common("full.jsonl", "full.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let full = losses("full.jsonl");
    assert_eq!(full.len(), 300);

    let ckpt = s.p("run.ckpt");
    let mut args = common("part.jsonl", "part.png");
    args.extend(["--checkpoint", &ckpt, "--checkpoint-every", "1"].map(String::from));
    let mut child = bin()
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::fs::read_to_string(s.p("part.jsonl")).map_or(0, |t| t.lines().count()) < 10 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let before = losses("part.jsonl").len();
    assert!(before < 300, "the run finished before the signal");
    assert!(Path::new(&ckpt).exists());

    let mut args = common("part.jsonl", "part.png");
    args.extend(["--resume", &ckpt].map(String::from));
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Resuming from"), "{}", stderr(&o));
    let part = losses("part.jsonl");
    assert!(
        part.len() > 300 - before,
        "the resumed run did its remaining evaluations"
    );
    assert_eq!(part.last().map(|p| p.0), Some(300));
    for (e, loss) in &part {
        let expected = full[*e as usize - 1].1;
        assert!(
            (loss - expected).abs() <= 1e-5 * expected.abs().max(1e-9),
            "evaluation {e}: {loss} vs {expected}"
        );
    }
    // Same final image as the uninterrupted run.
    assert_eq!(
        std::fs::read(s.p("part.png")).unwrap(),
        std::fs::read(s.p("full.png")).unwrap()
    );
}

/// A second run given the log of a running one is refused before it starts, and the first
/// run's log keeps only whole lines of its own.
#[cfg(unix)]
#[test]
fn a_log_in_use_by_another_run_is_refused() {
    let s = Scene::new();
    let mut first = start_long_run(&s, &[]);
    let log = s.p("sig.jsonl");
    let w = tiny_weights();
    let (c, st, out) = (s.p("content.png"), s.p("style.png"), s.p("second.png"));
    let second = run(&[
        "-c",
        &c,
        "-s",
        &st,
        "-w",
        w.to_str().unwrap(),
        "--size",
        "32",
        "-n",
        "2",
        "--log",
        &log,
        "-o",
        &out,
    ]);
    assert_clean_error(&second, &["sig.jsonl", "another run is writing this log"]);
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    std::thread::sleep(std::time::Duration::from_millis(300));
    Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    first.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() >= before.max(3),
        "the log was cut: {text}"
    );
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a whole JSON line");
        assert!(entry.is_object());
    }
    assert!(!Path::new(&out).exists());
}

/// Stopped before its first checkpoint, a run does not advise `--resume` from a file it
/// never wrote (issue 43, D11).
#[cfg(unix)]
#[test]
fn a_run_stopped_before_its_first_checkpoint_does_not_advise_resuming() {
    let s = Scene::new();
    let ckpt = s.p("never.ckpt");
    let extra = ["--checkpoint", &ckpt, "--checkpoint-every", "100000"];
    let (status, err) = interrupt_run(&s, "-TERM", &extra);
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(!Path::new(&ckpt).exists());
    assert!(!err.contains("--resume"), "{err}");
    assert!(err.contains("no checkpoint was written"), "{err}");
}
