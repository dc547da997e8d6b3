//! `neural-style batch`: a bad photo is skipped, a rerun computes only unfinished pairs.

use std::path::Path;

use super::*;

#[cfg(unix)]
#[test]
fn batch_skips_a_bad_photo_and_a_rerun_computes_only_unfinished_pairs() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap().to_string();
    let photos = s.dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    write_image(&photos.join("a.png"), 40, 32, 0.0);
    std::fs::write(photos.join("b.png"), b"not an image").unwrap();
    write_image(&photos.join("c.png"), 32, 40, 1.0);
    std::fs::write(photos.join("notes.txt"), b"skipped: not an image extension").unwrap();
    write_image(&s.dir.path().join("style2.png"), 30, 30, 4.0);
    let out = s.p("results");
    let batch = |styles: &[&str], n: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "batch",
            "-c",
            photos.to_str().unwrap(),
            "-w",
            &w,
            "--size",
            "40",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        for st in styles {
            v.extend(["-s".to_string(), s.p(st)]);
        }
        v.extend(["-n", n, "-o", &out].iter().map(|x| x.to_string()));
        v
    };
    let result = |name: &str| Path::new(&out).join(name);

    // 1. One style: a and c done, the bad photo reported once and skipped; exit 1.
    let o = bin().args(batch(&["style.png"], "6")).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("b.png") && err.contains("not a recognised image format"),
        "{err}"
    );
    assert!(
        err.contains("2 done, 0 already done (skipped), 1 failed"),
        "{err}"
    );
    assert!(result("a__style.png").exists() && result("c__style.png").exists());
    let first = std::fs::read(result("a__style.png")).unwrap();

    // 2. Two styles, a run too long to finish: interrupted during a × style2.
    let log = std::fs::File::create(s.p("batch.err")).unwrap();
    let mut child = bin()
        .args(batch(&["style.png", "style2.png"], "1000000"))
        .stderr(log)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(s.p("batch.err"))
        .unwrap_or_default()
        .contains("Optimising")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(s.p("batch.err")).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted in"), "{err}");
    assert!(result("a__style2.partial.png").exists(), "{err}");
    assert!(!result("a__style2.png").exists());

    // 3. The same batch again: the two finished pairs are skipped, the rest computed.
    let o = bin()
        .args(batch(&["style.png", "style2.png"], "6"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("6 pairs"), "{err}");
    assert!(
        err.contains("2 done, 2 already done (skipped), 2 failed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(result("a__style.png")).unwrap(),
        first,
        "a finished result was redone"
    );
    for name in ["a__style2.png", "c__style2.png"] {
        let img = image::open(result(name)).expect("a valid result");
        assert!(img.width() == 40 || img.height() == 40);
    }
    assert!(
        !result("a__style2.partial.png").exists(),
        "the partial image was left behind"
    );
}

/// A batch or a video whose results would go among its input photos or frames is refused
/// before any work (a rerun would take the results for inputs).
#[test]
fn results_are_never_written_among_the_inputs() {
    let s = Scene::new();
    let w = tiny_weights();
    let (w, st, photos) = (w.to_str().unwrap(), s.p("style.png"), s.p("photos"));
    std::fs::create_dir(&photos).unwrap();
    write_image(&Path::new(&photos).join("a.png"), 40, 32, 0.0);
    let common = ["-s", &st, "-w", w, "--size", "32", "-n", "2", "-o", &photos];
    let batch: Vec<&str> = ["batch", "-c", &photos]
        .iter()
        .chain(&common)
        .copied()
        .collect();
    assert_clean_error(&run(&batch), &["--output is the folder of the photos"]);
    let video: Vec<&str> = ["video", "-c", &photos]
        .iter()
        .chain(&common)
        .copied()
        .collect();
    assert_clean_error(&run(&video), &["folder of the input frames"]);
    assert_eq!(
        std::fs::read_dir(&photos).unwrap().count(),
        1,
        "nothing written"
    );
}
