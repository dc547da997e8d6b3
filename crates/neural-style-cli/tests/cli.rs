//! End-to-end tests of the `neural-style` command on tiny generated weights and images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_neural-style"))
}

fn tiny_weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../neural-style/tests/fixtures/tiny_vgg19.safetensors")
}

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "NOTICE: ../shared/testdata is absent; skipping the part of this test that needs it"
        );
        None
    }
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

#[test]
fn a_run_writes_an_image_and_a_log_and_lowers_the_loss() {
    let s = Scene::new();
    let w = tiny_weights();
    let log = s.p("log.jsonl");
    let o = s.transfer(
        w.to_str().unwrap(),
        &[
            "--size",
            "40",
            "-n",
            "12",
            "--log",
            &log,
            "--save-every",
            "5",
        ],
        "out.png",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(s.p("out.png")).expect("output decodes");
    assert_eq!((img.width(), img.height()), (40, 32));
    assert!(Path::new(&s.p("out_0005.png")).exists() && Path::new(&s.p("out_0010.png")).exists());
    let log = std::fs::read_to_string(s.p("log.jsonl")).expect("log");
    let rows: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 12);
    let first = rows[0]["total"].as_f64().unwrap();
    let last = rows[11]["total"].as_f64().unwrap();
    assert!(last < first, "loss did not fall: {first} -> {last}");
    for key in ["evaluation", "content", "style", "tv", "seconds"] {
        assert!(rows[0].get(key).is_some(), "log lacks {key}");
    }
}

#[test]
fn same_seed_gives_identical_bytes() {
    let s = Scene::new();
    let w = tiny_weights();
    // Seed 7 twice, then seed 8.
    for (seed, out) in [("7", "a.png"), ("7", "b.png"), ("8", "c.png")] {
        let args = [
            "--size",
            "40",
            "-n",
            "8",
            "--init",
            "noise",
            "--seed",
            seed,
            "--threads",
            "2",
        ];
        let o = s.transfer(w.to_str().unwrap(), &args, out);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let a = std::fs::read(s.p("a.png")).unwrap();
    let b = std::fs::read(s.p("b.png")).unwrap();
    assert_eq!(a, b, "same seed, different output");
    assert_ne!(
        a,
        std::fs::read(s.p("c.png")).unwrap(),
        "different seeds gave the same output"
    );
}

#[test]
fn texture_synthesis_and_content_reconstruction_run_without_the_other_image() {
    let s = Scene::new();
    let w = tiny_weights();
    let o = run(&[
        "-s",
        &s.p("style.png"),
        "-w",
        w.to_str().unwrap(),
        "--size",
        "48x24",
        "-n",
        "6",
        "-o",
        &s.p("tex.png"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(s.p("tex.png")).unwrap();
    assert_eq!((img.width(), img.height()), (48, 24));
    let o = run(&[
        "-c",
        &s.p("content.png"),
        "-w",
        w.to_str().unwrap(),
        "--size",
        "40",
        "-n",
        "6",
        "--init",
        "noise",
        "--content-layers",
        "relu2_2",
        "-o",
        &s.p("rec.png"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn missing_layers_are_listed_in_one_error() {
    let s = Scene::new();
    // Keep conv1_1..conv3_1 of the tiny network (features.0/2/5/7/10), like the shared
    // normalised VGG19.
    let bytes = std::fs::read(tiny_weights()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let keep: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(k, _)| {
            [
                "features.0.",
                "features.2.",
                "features.5.",
                "features.7.",
                "features.10.",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .collect();
    let truncated = s.p("truncated.safetensors");
    safetensors::serialize_to_file(keep, &None, Path::new(&truncated)).unwrap();
    let ok = s.transfer(
        &truncated,
        &[
            "--size",
            "32",
            "-n",
            "3",
            "--content-layers",
            "relu2_2",
            "--style-layers",
            "relu1_1,relu2_1,relu3_1",
        ],
        "ok.png",
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Without layer flags the defaults follow what the weights have.
    let auto = s.transfer(&truncated, &["--size", "32", "-n", "3"], "auto.png");
    assert!(auto.status.success(), "{}", stderr(&auto));
    // Asking for layers beyond them is one clear error.
    let bad = s.transfer(
        &truncated,
        &[
            "-n",
            "3",
            "--content-layers",
            "relu4_2",
            "--style-layers",
            "relu1_1,relu5_1",
        ],
        "bad.png",
    );
    assert_clean_error(
        &bad,
        &[
            "truncated.safetensors",
            "relu4_2",
            "missing conv3_2",
            "conv5_1",
        ],
    );
    assert!(!Path::new(&s.p("bad.png")).exists());

    if let Some(shared) = shared() {
        let w = shared.join("weights/vgg19-normalised-to-conv3_1.safetensors");
        let o = s.transfer(
            w.to_str().unwrap(),
            &[
                "--size",
                "32",
                "-n",
                "3",
                "--content-layers",
                "relu2_2",
                "--style-layers",
                "relu1_1,relu2_1,relu3_1",
            ],
            "n.png",
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let o = s.transfer(
            w.to_str().unwrap(),
            &["--content-layers", "relu4_2", "--style-layers", "relu1_1"],
            "n2.png",
        );
        assert_clean_error(
            &o,
            &[
                "vgg19-normalised-to-conv3_1.safetensors",
                "relu4_2",
                "missing conv3_2",
            ],
        );
    }
}

#[test]
fn bad_inputs_give_one_clear_line_and_no_panic() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    std::fs::write(s.p("empty.png"), b"").unwrap();
    std::fs::write(s.p("garbage.jpg"), b"this is not an image at all").unwrap();
    let png = std::fs::read(s.p("content.png")).unwrap();
    std::fs::write(s.p("truncated.png"), &png[..png.len() / 2]).unwrap();
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["-c".into(), s.p("nope.png"), "-s".into(), s.p("style.png")],
            vec!["nope.png"],
        ),
        (
            vec!["-c".into(), s.p("empty.png"), "-s".into(), s.p("style.png")],
            vec!["empty.png", "empty"],
        ),
        (
            vec![
                "-c".into(),
                s.p("content.png"),
                "-s".into(),
                s.p("garbage.jpg"),
            ],
            vec!["garbage.jpg"],
        ),
        (
            vec![
                "-c".into(),
                s.p("truncated.png"),
                "-s".into(),
                s.p("style.png"),
            ],
            vec!["truncated.png"],
        ),
        (
            vec![
                "-c".into(),
                s.dir.path().to_string_lossy().into_owned(),
                "-s".into(),
                s.p("style.png"),
            ],
            vec!["directory"],
        ),
    ];
    for (mut args, expect) in cases {
        args.extend([
            "-w".into(),
            w.into(),
            "-n".into(),
            "2".into(),
            "--size".into(),
            "32".into(),
            "-o".into(),
            s.p("x.png"),
        ]);
        let o = bin().args(&args).output().unwrap();
        assert_clean_error(&o, &expect);
    }
    // Flags out of range or contradictory.
    let base = [
        "-c",
        &s.p("content.png"),
        "-s",
        &s.p("style.png"),
        "-w",
        w,
        "-o",
        &s.p("x.png"),
    ];
    for (extra, expect) in [
        (vec!["--style-weight", "-1"], "--style-weight"),
        (vec!["--size", "0"], "--size"),
        (vec!["--style-layers", "relu9_9"], "unknown layer `relu9_9`"),
        (vec!["--style-blend", "0.5,0.5"], "--style-blend"),
        (vec!["-n", "0"], "--iterations"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        assert_clean_error(&run(&args), &[expect]);
    }
    // The output may never be an input.
    let o = s.transfer(w, &[], "content.png");
    assert_clean_error(&o, &["content.png", "also an input"]);
    assert_eq!(
        std::fs::read(s.p("content.png")).unwrap(),
        png,
        "input was modified"
    );
    // Unknown output format, missing directory, corrupt weights.
    assert_clean_error(
        &run(&["-c", &s.p("content.png"), "-w", w, "-o", &s.p("x.xyz")]),
        &["x.xyz"],
    );
    assert_clean_error(
        &run(&[
            "-c",
            &s.p("content.png"),
            "-w",
            w,
            "-o",
            &s.p("nodir/x.png"),
        ]),
        &["does not exist"],
    );
    std::fs::write(
        s.p("bad.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    assert_clean_error(
        &run(&[
            "-c",
            &s.p("content.png"),
            "-w",
            &s.p("bad.safetensors"),
            "-n",
            "2",
            "-o",
            &s.p("x.png"),
        ]),
        &["bad.safetensors"],
    );
    assert!(!Path::new(&s.p("x.png")).exists());
}

#[test]
fn real_pretrained_vgg16_transfers_style() {
    let Some(shared) = shared() else { return };
    let s = Scene::new();
    let out = s.p("real.png");
    let log = s.p("real.jsonl");
    let o = run(&[
        "-c",
        shared.join("content/tubingen.jpg").to_str().unwrap(),
        "-s",
        shared.join("style/starry_night.jpg").to_str().unwrap(),
        "-w",
        shared
            .join("weights/vgg16-hed.safetensors")
            .to_str()
            .unwrap(),
        "--size",
        "64",
        "-n",
        "40",
        "-o",
        &out,
        "--log",
        &log,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (s0, s1) = (
        rows[0]["style"].as_f64().unwrap(),
        rows.last().unwrap()["style"].as_f64().unwrap(),
    );
    assert!(s1 < 0.5 * s0, "style loss fell only from {s0} to {s1}");
}

fn tiny_pth() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../neural-style/tests/fixtures/tiny_vgg19.pth")
}

#[test]
fn weights_convert_writes_safetensors_that_run() {
    let s = Scene::new();
    let out = s.p("tiny.safetensors");
    let o = run(&[
        "weights",
        "convert",
        tiny_pth().to_str().unwrap(),
        &out,
        "--preprocess",
        "caffe-bgr-255",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout.contains("16 convolutions") && stdout.contains("caffe"),
        "{stdout}"
    );
    let o = s.transfer(&out, &["-n", "3", "--size", "32"], "conv.png");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("caffe-bgr-255"), "{}", stderr(&o));

    assert_clean_error(
        &run(&[
            "weights",
            "convert",
            tiny_pth().to_str().unwrap(),
            &s.p("x.bin"),
        ]),
        &["x.bin", ".safetensors"],
    );
    assert_clean_error(
        &run(&[
            "weights",
            "convert",
            &s.p("missing.pth"),
            &s.p("x.safetensors"),
        ]),
        &["missing.pth"],
    );
}

#[test]
fn weights_list_import_and_verify_report_clearly() {
    let s = Scene::new();
    let cache = s.p("cache");
    let o = run(&["weights", "list", "--cache-dir", &cache]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["vgg19 (default)", "vgg16", "vgg19-caffe", "not cached"] {
        assert!(stdout.contains(name), "`{name}` not in {stdout}");
    }
    let o = run(&["weights", "verify", "--cache-dir", &cache]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing cached"));
    // A file that is not the model is refused, and nothing enters the cache.
    let o = run(&[
        "weights",
        "import",
        tiny_pth().to_str().unwrap(),
        "--model",
        "vgg19",
        "--cache-dir",
        &cache,
    ]);
    assert_clean_error(&o, &["tiny_vgg19.pth", "574673361"]);
    assert!(!Path::new(&cache).join("vgg19-dcbb9e9d.pth").exists());
    assert_clean_error(
        &run(&[
            "-c",
            &s.p("content.png"),
            "--model",
            "resnet",
            "-o",
            &s.p("x.png"),
        ]),
        &["unknown model `resnet`", "vgg19-caffe"],
    );
}

#[test]
fn a_failed_model_download_says_how_to_import_by_hand() {
    // A mirror that answers 404 to everything, on 127.0.0.1 (nothing touches the internet).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/models", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let s = Scene::new();
    let cache = s.p("cache");
    let o = bin()
        .args([
            "-c",
            &s.p("content.png"),
            "-s",
            &s.p("style.png"),
            "--cache-dir",
            &cache,
            "-o",
            &s.p("x.png"),
        ])
        .env("NEURAL_STYLE_MIRROR", &base)
        .output()
        .unwrap();
    let url = format!("{base}/vgg19-dcbb9e9d.pth");
    assert_clean_error(
        &o,
        &[
            &url,
            "HTTP 404",
            &format!("{cache}/vgg19-dcbb9e9d.pth"),
            "neural-style weights import FILE --model vgg19 --cache-dir",
        ],
    );
    // Nothing a later run would trust.
    assert!(!Path::new(&cache).join("vgg19-dcbb9e9d.pth").exists());
    assert!(
        !Path::new(&cache)
            .join("vgg19-dcbb9e9d.conv.safetensors")
            .exists()
    );
    assert!(!Path::new(&s.p("x.png")).exists());
}
