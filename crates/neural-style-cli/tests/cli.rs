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
fn masked_styles_and_a_content_mask_run_from_mask_files() {
    let s = Scene::new();
    let w = tiny_weights();
    // Left half white (first style), right half white (second), at twice the output size.
    let half = |left: bool| {
        image::GrayImage::from_fn(80, 64, |x, _| {
            image::Luma([if (x < 40) == left { 255 } else { 0 }])
        })
    };
    half(true).save(s.p("left.png")).unwrap();
    half(false).save(s.p("right.png")).unwrap();
    write_image(&s.dir.path().join("style2.png"), 30, 30, 4.0);
    let o = run(&[
        "-c",
        &s.p("content.png"),
        "-s",
        &s.p("style.png"),
        "--mask",
        &s.p("left.png"),
        "-s",
        &s.p("style2.png"),
        "--mask",
        &s.p("right.png"),
        "--content-mask",
        &s.p("left.png"),
        "-w",
        w.to_str().unwrap(),
        "--size",
        "40",
        "-n",
        "6",
        "-o",
        &s.p("masked.png"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(s.p("masked.png")).unwrap();
    assert_eq!((img.width(), img.height()), (40, 32));
}

#[test]
fn sheet_lays_out_one_cell_per_style_weight_and_layer_set() {
    let s = Scene::new();
    let w = tiny_weights();
    let args = |sets: &str, out: &str| {
        let c = s.p("content.png");
        let st = s.p("style.png");
        let o = s.p(out);
        let w = w.to_str().unwrap().to_string();
        run(&[
            "sheet",
            "-c",
            &c,
            "-s",
            &st,
            "-w",
            &w,
            "--size",
            "40",
            "-n",
            "3",
            "--style-weights",
            "1,100,1e4",
            "--layer-sets",
            sets,
            "-o",
            &o,
        ])
    };
    let o = args("relu1_1;relu1_1,relu2_1", "sheet.png");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cell 6/6"), "{err}");
    let sheet = image::open(s.p("sheet.png")).unwrap().to_rgb8();
    // Three columns of 40 px cells and two rows of 32 px, with labels and gaps.
    assert!(
        sheet.width() > 3 * 40 && sheet.height() > 2 * 32,
        "{:?}",
        sheet.dimensions()
    );
    let o = args("relu1_1;relu9_9", "bad.png");
    assert_clean_error(&o, &["--layer-sets", "relu9_9"]);
    assert!(!Path::new(&s.p("bad.png")).exists());
}

#[test]
fn missing_layers_are_listed_in_one_error() {
    let s = Scene::new();
    // The tiny network cut after conv3_1, like the shared normalised VGG19.
    let truncated = tiny_weights()
        .with_file_name("tiny_vgg19_to_conv3_1.safetensors")
        .display()
        .to_string();
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
    // Style layer weights are counted against the three style layers the weights have.
    let three = s.transfer(
        &truncated,
        &["--size", "32", "-n", "3", "--style-layer-weights", "1,2,3"],
        "three.png",
    );
    assert!(three.status.success(), "{}", stderr(&three));
    let five = s.transfer(
        &truncated,
        &[
            "--size",
            "32",
            "-n",
            "3",
            "--style-layer-weights",
            "1,1,1,1,1",
        ],
        "five.png",
    );
    assert_clean_error(
        &five,
        &["5 weights given for 3 style layers (relu1_1, relu2_1, relu3_1)"],
    );
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
            "tiny_vgg19_to_conv3_1.safetensors",
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

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `w` x `h` pixels (a decompression bomb when large).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // The start of a compressed stream that would inflate to the claimed size, then IEND.
    for (kind, data) in [
        (&b"IDAT"[..], &[0x78u8, 0x9c, 0xed, 0xc1][..]),
        (b"IEND", &[]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

/// The tiny weights with tensor `key` replaced by `shape` filled with `value`.
fn tiny_weights_with(key: &str, shape: Vec<usize>, value: f32) -> Vec<u8> {
    let bytes = std::fs::read(tiny_weights()).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let n: usize = shape.iter().product();
    let data: Vec<u8> = (0..n).flat_map(|_| value.to_le_bytes()).collect();
    let replacement =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &data).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            if k == key {
                (k, replacement.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    safetensors::serialize(tensors, &None).unwrap()
}

/// The usual run's arguments plus `extra`.
fn flag<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn bad_inputs_give_one_clear_line_and_no_panic() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let png = std::fs::read(s.p("content.png")).unwrap();
    let weights = std::fs::read(tiny_weights()).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("empty.png", vec![]),
        ("garbage.jpg", b"this is not an image at all".to_vec()),
        ("truncated.png", png[..png.len() / 2].to_vec()),
        (
            "text.png",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
        ),
        ("bomb.png", png_claiming(100_000, 100_000)),
        ("empty.safetensors", vec![]),
        (
            "header.safetensors",
            b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":".to_vec(),
        ),
        ("cut.safetensors", weights[..weights.len() / 2].to_vec()),
        (
            "shape.safetensors",
            tiny_weights_with("features.0.weight", vec![4, 2, 3, 3], 0.1),
        ),
        (
            "nan.safetensors",
            tiny_weights_with("features.2.weight", vec![4, 4, 3, 3], f32::NAN),
        ),
        ("notweights.pth", b"PK\x03\x04 not really a zip".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(s.p(name), bytes).unwrap();
    }
    image::RgbImage::new(1, 1).save(s.p("dot.png")).unwrap();
    image::RgbImage::new(40, 32).save(s.p("black.png")).unwrap();
    std::fs::create_dir(s.p("out.png")).unwrap();
    let (c, st, out) = (s.p("content.png"), s.p("style.png"), s.p("x.png"));
    let dir = s.dir.path().to_string_lossy().into_owned();
    // (arguments, what the one error line must say); "-n 2 --size 32" unless given.
    let base = [
        "-c",
        c.as_str(),
        "-s",
        st.as_str(),
        "-w",
        w,
        "-o",
        out.as_str(),
    ];
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        // Images.
        (
            vec!["-c", &s.p("nope.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["nope.png", "No such file"],
        ),
        (
            vec!["-c", &s.p("empty.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["empty.png", "the file is empty"],
        ),
        (
            vec!["-c", &dir, "-s", &st, "-w", w, "-o", &out],
            vec!["is a directory"],
        ),
        (
            vec!["-c", &c, "-s", &s.p("garbage.jpg"), "-w", w, "-o", &out],
            vec!["garbage.jpg", "not a recognised image format"],
        ),
        (
            vec!["-c", &s.p("truncated.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["truncated.png"],
        ),
        (
            vec!["-c", &s.p("text.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["text.png", "not a recognised image format"],
        ),
        (
            vec!["-c", &s.p("bomb.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["bomb.png", "100000x100000", "--max-input-pixels"],
        ),
        (
            vec![
                "-c",
                &c,
                "-s",
                &st,
                "-w",
                w,
                "-o",
                &out,
                "--max-input-pixels",
                "100",
            ],
            vec!["content.png", "40x32", "more than the 100 pixels"],
        ),
        (
            vec!["-c", &s.p("dot.png"), "-s", &st, "-w", w, "-o", &out],
            vec!["dot.png", "too small"],
        ),
        (
            vec![
                "-c",
                &c,
                "-s",
                &st,
                "-w",
                w,
                "--init",
                &s.p("noinit.png"),
                "-o",
                &out,
            ],
            vec!["noinit.png"],
        ),
        // Flags: the usual run plus one bad flag.
        (
            flag(&base, &["--style-weight", "-1"]),
            vec!["--style-weight", ">= 0"],
        ),
        (
            flag(&base, &["--content-weight", "nan"]),
            vec!["--content-weight", "NaN"],
        ),
        (flag(&base, &["--size", "0"]), vec!["--size", "16..=16384"]),
        (flag(&base, &["--size", "big"]), vec!["--size", "`big`"]),
        (
            flag(&base, &["--style-layers", "relu9_9"]),
            vec!["unknown layer `relu9_9`"],
        ),
        (
            flag(&base, &["--style-blend", "0.5,0.5"]),
            vec!["--style-blend", "2 weights given for 1 style images"],
        ),
        (
            flag(&base, &["--mask", &st]),
            vec!["style.png", "36x36", "content.png", "aspect ratio"],
        ),
        (
            flag(&base, &["--mask", &s.p("black.png")]),
            vec!["black.png", "black everywhere"],
        ),
        (
            flag(&base, &["--mask", &c, "--mask", &c]),
            vec!["--mask", "2 masks for 1 style images"],
        ),
        (
            vec!["-s", &st, "-w", w, "-o", &out, "--content-mask", &c],
            vec!["--content-mask needs a --content"],
        ),
        (
            flag(&base, &["--style-layer-weights", "1,2"]),
            vec!["--style-layer-weights", "2 weights given"],
        ),
        (
            flag(&base, &["-n", "0"]),
            vec!["--iterations", "at least 1"],
        ),
        (flag(&base, &["--threads", "0"]), vec!["--threads 0"]),
        (
            flag(&base, &["--style-scale", "0"]),
            vec!["--style-scale", "(0, 8]"],
        ),
        (
            flag(&base, &["--scales", "300,200"]),
            vec!["--scales", "increasing"],
        ),
        (
            flag(&base, &["--min-size", "4"]),
            vec!["--min-size", "16..=16384"],
        ),
        (
            flag(&base, &["--learning-rate", "-1"]),
            vec!["--learning-rate", "> 0"],
        ),
        (
            flag(&base, &["--checkpoint-every", "0"]),
            vec!["--checkpoint-every 0"],
        ),
        (
            vec!["-w", w, "-o", &out],
            vec!["--content, --style, or both"],
        ),
        // Output.
        (
            vec!["-c", &c, "-w", w, "-o", &s.p("x.xyz")],
            vec!["x.xyz", "unknown image extension"],
        ),
        (
            vec!["-c", &c, "-w", w, "-o", &s.p("noext")],
            vec!["noext", "no file extension"],
        ),
        (
            vec!["-c", &c, "-w", w, "-o", &s.p("nodir/x.png")],
            vec!["nodir", "does not exist"],
        ),
        (
            vec!["-c", &c, "-w", w, "-o", &s.p("out.png")],
            vec!["out.png", "is a directory"],
        ),
        (
            vec!["-c", &c, "-s", &st, "-w", w, "-o", &c],
            vec!["content.png", "also an input"],
        ),
        (vec!["-c", &c, "-w", w], vec!["--output is required"]),
        // Weights.
        (
            vec!["-c", &c, "-w", &s.p("none.safetensors"), "-o", &out],
            vec!["none.safetensors", "No such file"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("empty.safetensors"), "-o", &out],
            vec!["empty.safetensors", "empty"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("header.safetensors"), "-o", &out],
            vec!["header.safetensors"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("cut.safetensors"), "-o", &out],
            vec!["cut.safetensors"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("shape.safetensors"), "-o", &out],
            vec!["shape.safetensors", "features.0.weight", "[4, 2, 3, 3]"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("nan.safetensors"), "-o", &out],
            vec!["nan.safetensors", "features.2.weight"],
        ),
        (
            vec!["-c", &c, "-w", &s.p("notweights.pth"), "-o", &out],
            vec!["notweights.pth"],
        ),
        (
            vec!["-c", &c, "-w", &png_path(&s), "-o", &out],
            vec!["content.png"],
        ),
        (
            vec!["-c", &c, "--model", "resnet", "-o", &out],
            vec!["unknown model `resnet`"],
        ),
    ]
    .into_iter()
    .map(|(a, e)| {
        (
            a.into_iter().map(String::from).collect(),
            e.into_iter().map(String::from).collect(),
        )
    })
    .collect();
    assert!(cases.len() >= 25);
    for (mut args, expect) in cases {
        for (flag, value) in [("-n", "2"), ("--size", "32")] {
            if !args.iter().any(|a| a == flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        let o = bin().args(&args).output().unwrap();
        let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
        assert_clean_error(&o, &expect);
        eprintln!("{}", stderr(&o).trim());
        assert_ne!(o.status.code(), Some(0));
    }
    assert_eq!(std::fs::read(&c).unwrap(), png, "an input was modified");
    assert!(!Path::new(&out).exists());
}

fn png_path(s: &Scene) -> String {
    s.p("content.png")
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

/// Starts a long run, waits for a few evaluations in its log, sends `signal` with `kill`,
/// and returns its exit status and stderr.
#[cfg(unix)]
fn interrupt_run(s: &Scene, signal: &str) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let log = s.p("sig.jsonl");
    let w = tiny_weights();
    let mut child = bin()
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
fn sigint_and_sigterm_save_the_best_image_and_exit_130_and_143() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let s = Scene::new();
        let (status, err) = interrupt_run(&s, signal);
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

#[test]
fn runs_that_would_not_fit_in_memory_are_refused_or_shortened_before_starting() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    // 1200 px needs some GiB: refused at once, nothing written.
    let o = s.transfer(w, &["--size", "1200", "--max-memory", "300M"], "big.png");
    assert_clean_error(&o, &["1200x960", "GiB of memory", "--no-memory-check"]);
    assert!(!Path::new(&s.p("big.png")).exists());
    // With room for the weights (and their Winograd transforms: about 0.5 GiB) and the
    // activations but not 100 history pairs: history is shortened.
    let o = s.transfer(
        w,
        &[
            "--size",
            "400",
            "-n",
            "2",
            "--max-memory",
            "1200M",
            "--no-multiscale",
        ],
        "short.png",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("using history"), "{}", stderr(&o));
    // An explicit opt-out skips the check.
    let o = s.transfer(
        w,
        &[
            "--size",
            "400",
            "-n",
            "1",
            "--max-memory",
            "1M",
            "--no-memory-check",
        ],
        "forced.png",
    );
    assert!(o.status.success(), "{}", stderr(&o));
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
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
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

/// A write that cannot complete (here a file-size limit, as a full disk would) is one
/// error naming the output, and leaves neither a truncated output nor a temporary file.
#[cfg(unix)]
#[test]
fn a_failed_write_leaves_no_truncated_output() {
    let s = Scene::new();
    let w = tiny_weights();
    let out = s.p("big.bmp");
    let script = format!(
        "ulimit -f 4 && exec '{}' -c '{}' -s '{}' -w '{}' --size 200 -n 2 -o '{}'",
        env!("CARGO_BIN_EXE_neural-style"),
        s.p("content.png"),
        s.p("style.png"),
        w.display(),
        out
    );
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    // A 200x160 BMP is ~96 KB, over the 2-4 KB limit.
    assert_clean_error(&o, &["big.bmp", "too large"]);
    assert!(!Path::new(&out).exists());
    let leftovers: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("big"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An output directory that cannot be written is refused before any work (sysfs refuses
/// new files even to root, so this holds however the tests are run).
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_output_directory_is_refused_before_the_run() {
    let s = Scene::new();
    let w = tiny_weights();
    let o = s.transfer(w.to_str().unwrap(), &["-n", "2"], "unused.png");
    assert!(o.status.success(), "{}", stderr(&o));
    // sysfs, or procfs where sysfs is not mounted: neither takes new files.
    let dir = if Path::new("/sys").is_dir() {
        "/sys"
    } else {
        "/proc"
    };
    let out = format!("{dir}/neural-style-out.png");
    let o = run(&[
        "-c",
        &s.p("content.png"),
        "-w",
        w.to_str().unwrap(),
        "-o",
        &out,
    ]);
    assert_clean_error(&o, &[&out, "cannot write in the output directory"]);
    assert!(!stderr(&o).contains("Optimising"), "refused before the run");
}

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

/// A clip of `n` frames: a still background, a bright square moving 2 px a frame to the
/// right, and a little camera noise (seeded) on every frame.
fn write_clip(dir: &Path, n: usize, w: u32, h: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 12345u64;
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 6.0
    };
    for t in 0..n {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let v = |a: f32| ((a * std::f32::consts::TAU).sin() * 0.5 + 0.5) * 200.0 + 20.0;
            let inside = (x as i32 - 4 - 2 * t as i32).abs() < 5 && (y as i32 - 14).abs() < 5;
            let base = if inside {
                [240.0, 230.0, 60.0]
            } else {
                [v(fx * 2.0), v(fy * 1.5 + fx), v(fx * fy * 3.0)]
            };
            image::Rgb(base.map(|b| (b + noise()).clamp(0.0, 255.0) as u8))
        });
        img.save(dir.join(format!("f{t:03}.png"))).unwrap();
    }
}

/// The flicker figure from `video`'s summary line.
fn flicker_of(err: &str) -> f32 {
    let tail = err
        .split("flicker (mean change where the input is still, 0..1): ")
        .nth(1)
        .unwrap_or_else(|| panic!("no flicker figure in: {err}"));
    tail.split(';').next().unwrap().trim().parse().unwrap()
}

#[test]
fn video_with_the_temporal_term_flickers_less_and_resumes_from_its_frames() {
    let s = Scene::new();
    let w = tiny_weights();
    let clip = s.dir.path().join("clip");
    write_clip(&clip, 6, 48, 32);
    // A busy texture, which the optimisation paints differently on every frame.
    let mut state = 99u64;
    let texture = image::RgbImage::from_fn(36, 36, |_, _| {
        image::Rgb([0, 1, 2].map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 56) as u8
        }))
    });
    texture.save(s.dir.path().join("texture.png")).unwrap();
    let video = |out: &str, extra: &[&str]| -> Output {
        let (c, st, o) = (clip.to_str().unwrap(), s.p("texture.png"), s.p(out));
        let mut args = vec![
            "video",
            "-c",
            c,
            "-s",
            &st,
            "-w",
            w.to_str().unwrap(),
            "--size",
            "48",
            "-n",
            "20",
            "-o",
            &o,
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let plain = video("plain", &["--no-temporal"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let temporal = video("temporal", &[]);
    let err = stderr(&temporal);
    assert!(temporal.status.success(), "{err}");
    assert!(
        err.contains("6 frames (6 computed, 0 already done)"),
        "{err}"
    );
    let (without, with) = (flicker_of(&stderr(&plain)), flicker_of(&err));
    eprintln!("flicker without the temporal term {without}, with {with}");
    assert!(
        with < 0.7 * without,
        "flicker with the temporal term {with}, without {without}"
    );
    for i in 1..=6 {
        assert!(Path::new(&s.p(&format!("temporal/frame_{i:06}.png"))).exists());
    }
    // A rerun after losing the last frame computes only that frame, from the one before.
    let last = s.p("temporal/frame_000006.png");
    let before = image::open(&last).unwrap().to_rgb8();
    std::fs::remove_file(&last).unwrap();
    let again = video("temporal", &[]);
    let err = stderr(&again);
    assert!(again.status.success(), "{err}");
    assert!(
        err.contains("6 frames (1 computed, 5 already done)"),
        "{err}"
    );
    // The same frame again, up to the 8-bit rounding of the previous frame it starts from.
    let after = image::open(&last).unwrap().to_rgb8();
    let diff = before
        .as_raw()
        .iter()
        .zip(after.as_raw())
        .map(|(a, b)| (*a as f32 - *b as f32).abs())
        .sum::<f32>()
        / before.as_raw().len() as f32;
    assert!(
        diff < 2.0,
        "redone frame differs by {diff} levels on average"
    );
    // An encoded output needs ffmpeg; without it the error says so in one line.
    // Video files in and out go through ffmpeg; without it the error says so in one line.
    let has_ffmpeg = Command::new("ffmpeg").arg("-version").output().is_ok();
    if !has_ffmpeg {
        eprintln!(
            "NOTICE: ffmpeg is not installed; checking its one-line error instead of a video round trip"
        );
        assert_clean_error(&video("out.mp4", &[]), &["ffmpeg is not installed"]);
        return;
    }
    let clip_mp4 = s.p("clip.mp4");
    let pattern = clip.join("f%03d.png");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-framerate", "10", "-i"])
        .arg(&pattern)
        .args(["-pix_fmt", "yuv420p", &clip_mp4])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let (st, out_mp4) = (s.p("texture.png"), s.p("out.mp4"));
    let o = run(&[
        "video",
        "-c",
        &clip_mp4,
        "-s",
        &st,
        "-w",
        w.to_str().unwrap(),
        "--size",
        "48",
        "-n",
        "5",
        "-o",
        &out_mp4,
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("6 frames (6 computed"), "{err}");
    assert!(err.contains("(10 frames per second)"), "{err}");
    assert!(
        !Path::new(&s.p("out.mp4.frames.input")).exists(),
        "decoded input left behind"
    );
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width",
            "-of",
            "csv=p=0",
            &out_mp4,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "48,6");
    // The result exists: a second run refuses to overwrite it.
    assert_clean_error(
        &run(&[
            "video",
            "-c",
            &clip_mp4,
            "-s",
            &st,
            "-w",
            w.to_str().unwrap(),
            "-o",
            &out_mp4,
        ]),
        &["out.mp4", "already exists"],
    );
}

#[test]
fn serve_answers_on_loopback_and_stops_cleanly_on_sigterm_and_refuses_bad_flags() {
    use std::io::{BufRead, Read, Write};
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let results = s.p("results");
    for (args, expect) in [
        (
            vec!["--max-size", "8"],
            vec!["--max-size", "8 is not allowed"],
        ),
        (vec!["--jobs", "0"], vec!["--jobs", "at least 1"]),
        (vec!["--bind", "localhost"], vec!["--bind", "localhost"]),
        (
            vec!["--results", "/proc/self/status/x"],
            vec!["/proc/self/status/x", "results folder"],
        ),
    ] {
        let mut all = vec!["serve", "-w", w];
        for (flag, value) in [("--bind", "127.0.0.1:0"), ("--results", results.as_str())] {
            if !args.contains(&flag) {
                all.extend([flag, value]);
            }
        }
        all.extend(args);
        let o = bin().args(&all).output().unwrap();
        assert_clean_error(&o, &expect);
    }

    let mut child = bin()
        .args([
            "serve",
            "-w",
            w,
            "--bind",
            "127.0.0.1:0",
            "--results",
            &results,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The second line names the address (port 0: the system picked one).
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no address in {lines}"
        );
        lines.push_str(&line);
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let mut stream = std::net::TcpStream::connect(&url).unwrap();
    write!(
        stream,
        "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"network\":\"vgg19 (torch-rgb-01)\""),
        "{answer}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{lines}{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    assert!(Path::new(&results).is_dir());
}
