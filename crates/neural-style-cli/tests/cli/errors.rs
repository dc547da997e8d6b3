//! Bad input of every kind: one clear `error:` line, a non-zero exit, no panic, no input touched.

use std::path::Path;

use super::*;

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

/// The bad-input battery's scene: damaged, misnamed and oversized files beside a good photo
/// and painting, and the paths the cases use.
struct Battery {
    s: Scene,
    w: String,
    c: String,
    st: String,
    out: String,
    dir: String,
    /// The photo's bytes, to check that no case touched it.
    png: Vec<u8>,
}

impl Battery {
    fn new() -> Self {
        let s = Scene::new();
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
        image::RgbImage::new(300, 2).save(s.p("long.png")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(s.p("fifo.png"))
            .status();
        assert!(fifo.is_ok_and(|s| s.success()), "mkfifo");
        image::RgbImage::new(5000, 2).save(s.p("thin.png")).unwrap();
        image::RgbImage::new(40, 32).save(s.p("black.png")).unwrap();
        std::fs::create_dir(s.p("out.png")).unwrap();
        let (c, st, out) = (s.p("content.png"), s.p("style.png"), s.p("x.png"));
        let dir = s.dir.path().to_string_lossy().into_owned();
        let w = tiny_weights().to_string_lossy().into_owned();
        Self {
            s,
            w,
            c,
            st,
            out,
            dir,
            png,
        }
    }

    /// The usual run: `-c content.png -s style.png -w WEIGHTS -o x.png`.
    fn base(&self) -> Vec<&str> {
        vec![
            "-c", &self.c, "-s", &self.st, "-w", &self.w, "-o", &self.out,
        ]
    }

    /// Runs each case (its arguments, with `-n 2 --size 32` unless given, and what the one
    /// error line must say) and checks that it failed cleanly and touched no input.
    fn check(&self, cases: Vec<(Vec<&str>, Vec<&str>)>) {
        for (args, expect) in cases {
            let mut args: Vec<String> = args.into_iter().map(String::from).collect();
            for (flag, value) in [("-n", "2"), ("--size", "32")] {
                if !args.iter().any(|a| a == flag) {
                    args.extend([flag.to_string(), value.to_string()]);
                }
            }
            let o = bin().args(&args).output().unwrap();
            assert_clean_error(&o, &expect);
            eprintln!("{}", stderr(&o).trim());
        }
        assert_eq!(
            std::fs::read(&self.c).unwrap(),
            self.png,
            "an input was modified"
        );
        assert!(!Path::new(&self.out).exists());
    }
}

/// Missing, empty, damaged, misnamed, oversized and degenerate images, and masks that do not fit.
#[test]
fn bad_images_give_one_clear_line_and_no_panic() {
    let b = Battery::new();
    let (s, w, c, st, out, dir) = (&b.s, b.w.as_str(), &b.c, &b.st, &b.out, &b.dir);
    b.check(vec![
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
        // A device is not an empty file, and a pipe must not block the run.
        (
            vec!["-c", "/dev/urandom", "-s", st, "-w", w, "-o", out],
            vec!["/dev/urandom", "not a regular file"],
        ),
        (
            vec!["-c", &s.p("fifo.png"), "-s", st, "-w", w, "-o", out],
            vec!["fifo.png", "not a regular file"],
        ),
        (
            vec!["-c", c, "-s", st, "-w", "/dev/zero", "-o", out],
            vec!["/dev/zero", "not a regular file"],
        ),
        // Too elongated for the network at the output size (it used to panic in burn).
        (
            vec![
                "-c",
                &s.p("long.png"),
                "-s",
                &st,
                "-w",
                w,
                "-o",
                &out,
                "--size",
                "512",
            ],
            vec!["the image is 512x3", "relu5_1 needs at least 16 pixels"],
        ),
        (
            vec![
                "-c",
                &c,
                "-s",
                &s.p("thin.png"),
                "-w",
                w,
                "-o",
                &out,
                "--size",
                "64",
            ],
            vec!["style image 1 is 64x1", "relu5_1 needs at least 16 pixels"],
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
    ]);
}

/// Out-of-range and contradictory flags: the one line names the flag.
#[test]
fn bad_flags_give_one_clear_line_naming_the_flag() {
    let b = Battery::new();
    let (s, w, base, c, st, out) = (&b.s, b.w.as_str(), b.base(), &b.c, &b.st, &b.out);
    b.check(vec![
        (
            flag(&base, &["--style-weight", "-1"]),
            vec!["--style-weight", ">= 0"],
        ),
        (
            flag(&base, &["--content-weight", "nan"]),
            vec!["--content-weight", "NaN"],
        ),
        (flag(&base, &["--size", "0"]), vec!["--size", "16..=16384"]),
        (flag(&base, &["--tile", "8"]), vec!["--tile", "16..=16384"]),
        (
            flag(&base, &["--tile", "64", "--no-tile"]),
            vec!["--tile", "cannot be used with", "--no-tile"],
        ),
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
            flag(&base, &["--mask", st]),
            vec!["style.png", "36x36", "content.png", "aspect ratio"],
        ),
        (
            flag(&base, &["--mask", &s.p("black.png")]),
            vec!["black.png", "black everywhere"],
        ),
        (
            flag(&base, &["--mask", c, "--mask", c]),
            vec!["--mask: 2 masks for 1 style images"],
        ),
        (
            vec!["-s", &st, "-w", w, "-o", &out, "--content-mask", &c],
            vec!["--content-mask: needs a content image"],
        ),
        (
            flag(&base, &["--style-layer-weights", "1,2"]),
            vec!["--style-layer-weights", "2 weights given"],
        ),
        (
            flag(&base, &["-n", "0"]),
            vec!["--iterations", "at least 1"],
        ),
        (
            flag(&base, &["--log", &s.p("nodir/run.jsonl")]),
            vec!["--log", "nodir", "does not exist"],
        ),
        (
            flag(&base, &["--checkpoint", &s.p("nodir/run.ckpt")]),
            vec!["--checkpoint", "nodir", "does not exist"],
        ),
        (
            vec![
                "-s",
                st,
                "-w",
                w,
                "-o",
                out,
                "--preserve-colors",
                "luminance",
            ],
            vec!["--preserve-colors needs a --content"],
        ),
        (
            flag(&base, &["--style-layers", ","]),
            vec!["--style-layers", "no layer named"],
        ),
        (
            flag(&base, &["--lbfgs-history", "18446744073709551615"]),
            vec!["--lbfgs-history", "1..=10000"],
        ),
        (
            flag(&base, &["--threads", "0"]),
            vec!["--threads: 0 is not allowed"],
        ),
        (
            flag(&base, &["--threads", "100000"]),
            vec!["--threads: 100000 is not allowed"],
        ),
        (
            flag(&base, &["--style-scale", "0"]),
            vec!["--style-scale", "(0, 8]"],
        ),
        (
            flag(&base, &["--scales", "300,200"]),
            vec!["--stage-sides", "increasing"],
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
            vec!["--checkpoint-every: 0 is not allowed"],
        ),
        (
            vec!["-w", w, "-o", &out],
            vec!["--content, --style, or both"],
        ),
    ]);
}

/// Outputs that cannot be written, or that would overwrite an input.
#[test]
fn bad_outputs_are_refused_before_any_work() {
    let b = Battery::new();
    let (s, w, c, st) = (&b.s, b.w.as_str(), &b.c, &b.st);
    b.check(vec![
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
    ]);
}

/// Missing, empty, damaged, mis-shaped and non-finite weights, and unknown models.
#[test]
fn bad_weights_give_one_clear_line_naming_the_file() {
    let b = Battery::new();
    let (s, c, out) = (&b.s, &b.c, &b.out);
    b.check(vec![
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
            vec!["-c", &c, "-w", &png_path(s), "-o", &out],
            vec!["content.png"],
        ),
        (
            vec!["-c", &c, "--model", "resnet", "-o", &out],
            vec!["unknown model `resnet`"],
        ),
    ]);
}

fn png_path(s: &Scene) -> String {
    s.p("content.png")
}

/// No file a run writes may be one of its inputs, by path, symbolic link or hard link, and
/// every name it will write is checked before any work, temporary names included.
#[test]
fn no_file_the_run_writes_may_be_an_input() {
    let b = Battery::new();
    let (s, w, base, c, st, out) = (&b.s, b.w.as_str(), b.base(), &b.c, &b.st, &b.out);
    std::fs::hard_link(c, s.p("hard.png")).unwrap();
    std::os::unix::fs::symlink(st, s.p("soft.png")).unwrap();
    // `-o x.png --save-every 2` would write x_0004.png at evaluation 4.
    std::fs::copy(c, s.p("x_0004.png")).unwrap();
    std::fs::write(s.p("run.ckpt"), b"").unwrap();
    let (hard, soft, snap, ckpt) = (
        s.p("hard.png"),
        s.p("soft.png"),
        s.p("x_0004.png"),
        s.p("run.ckpt"),
    );
    let long = s.p(&format!("{}.png", "l".repeat(230)));
    b.check(vec![
        (
            flag(&base, &["--log", c]),
            vec!["--log", "also an input", "content.png"],
        ),
        (
            flag(&base, &["--checkpoint", st]),
            vec!["--checkpoint", "also an input", "style.png"],
        ),
        (
            flag(&base, &["--log", &soft]),
            vec!["--log", "also an input", "style.png"],
        ),
        (
            flag(&base, &["--resume", &ckpt, "--log", &ckpt]),
            vec!["--log", "run.ckpt"],
        ),
        (
            vec!["-c", c, "-s", st, "-w", w, "-o", &hard],
            vec!["--output", "also an input", "content.png"],
        ),
        (
            vec![
                "-c",
                &snap,
                "-s",
                st,
                "-w",
                w,
                "-o",
                out,
                "--save-every",
                "2",
            ],
            vec!["--save-every 2", "x_0004.png"],
        ),
        (
            vec!["-c", c, "-s", st, "-w", w, "-o", &long],
            vec!["--output", "too long"],
        ),
    ]);
    assert_eq!(std::fs::read(st).unwrap(), std::fs::read(&soft).unwrap());
    assert!(
        std::fs::metadata(&ckpt).unwrap().len() == 0,
        "the checkpoint was touched"
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
    assert_clean_error(&o, &[&out, "cannot write in the folder of the output"]);
    assert!(!stderr(&o).contains("Optimising"), "refused before the run");
}

/// A JPEG cut short is refused wherever an image is read, naming the file and how much of
/// it decoded; `--accept-damaged` runs on the part that decodes.
#[test]
fn damaged_jpegs_are_refused_unless_accepted() {
    let b = Battery::new();
    let (s, w, c, st, out) = (&b.s, b.w.as_str(), b.c.as_str(), b.st.as_str(), &b.out);
    write_image(Path::new(&s.p("photo.jpg")), 64, 48, 0.5);
    let whole = std::fs::read(s.p("photo.jpg")).unwrap();
    std::fs::write(s.p("cut.jpg"), &whole[..whole.len() / 2]).unwrap();
    let cut = s.p("cut.jpg");
    let said = vec![
        "cut.jpg: the image is damaged: the JPEG ends early",
        "% of the rows decoded",
        "--accept-damaged uses the part that decodes",
    ];
    b.check(vec![
        (vec!["-c", &cut, "-s", st, "-w", w, "-o", out], said.clone()),
        (vec!["-c", c, "-s", &cut, "-w", w, "-o", out], said.clone()),
        (
            vec!["-c", c, "-s", st, "-w", w, "-o", out, "--init", &cut],
            said.clone(),
        ),
        (
            vec![
                "-c",
                c,
                "-s",
                st,
                "-w",
                w,
                "-o",
                out,
                "--content-mask",
                &cut,
            ],
            said,
        ),
    ]);
    let o = run(&[
        "-c",
        &cut,
        "-s",
        st,
        "-w",
        w,
        "-o",
        out,
        "-n",
        "2",
        "--size",
        "32",
        "--accept-damaged",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(Path::new(out).is_file());
}

/// What the system said is printed once, however deep the error chain (it used to read
/// "File exists (os error 17): File exists (os error 17)").
#[test]
fn os_errors_are_said_once() {
    let b = Battery::new();
    let w = b.w.as_str();
    let file = b.c.as_str();
    for args in [
        vec![
            "-c",
            file,
            "-s",
            &b.st,
            "-m",
            "vgg19",
            "--cache-dir",
            file,
            "-o",
            &b.out,
        ],
        vec!["serve", "-w", w, "--bind", "127.0.0.1:0", "--results", file],
    ] {
        let o = run(&args);
        assert_clean_error(&o, &["content.png"]);
        let err = stderr(&o);
        assert_eq!(err.matches("os error").count(), 1, "{err}");
    }
}

/// `--resume` from a pipe refused at once (opening it would wait for a writer forever), and
/// from a folder with what it is, not "shorter than a header".
#[cfg(unix)]
#[test]
fn resume_from_a_pipe_or_a_folder_is_refused_at_once() {
    let s = Scene::new();
    let pipe = s.p("pipe.ckpt");
    assert!(
        Command::new("mkfifo")
            .arg(&pipe)
            .status()
            .unwrap()
            .success()
    );
    let folder = s.p("folder.ckpt");
    std::fs::create_dir(&folder).unwrap();
    let w = tiny_weights().to_string_lossy().into_owned();
    for resume in [&pipe, &folder] {
        let o = Command::new("timeout")
            .arg("60")
            .arg(env!("CARGO_BIN_EXE_neural-style"))
            .args(["-c", &s.p("content.png"), "-s", &s.p("style.png"), "-w", &w])
            .args(["-n", "2", "-o", &s.p("out.png"), "--resume", resume])
            .output()
            .unwrap();
        assert_clean_error(&o, &[resume, "not a regular file"]);
    }
}

/// A file name with a terminal escape sequence or a newline is printed escaped: the error
/// stays one line and nothing reaches the terminal raw (issue 43, D14).
#[test]
fn control_characters_in_file_names_are_escaped_in_errors() {
    let s = Scene::new();
    let w = tiny_weights().to_string_lossy().into_owned();
    let evil = s.p("\u{1b}[2J\nred.png");
    let o = run(&[
        "-c",
        &evil,
        "-s",
        &s.p("style.png"),
        "-w",
        &w,
        "-o",
        &s.p("o.png"),
    ]);
    let err = stderr(&o);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert_clean_error(&o, &["\\u{1b}[2J\\nred.png"]);
    // Nor in the lines of a run that works: its output's name in "wrote ...".
    let out = s.p("\u{1b}]0;pwned\u{7}o.png");
    let o = run(&["-c", &s.p("content.png"), "-s", &s.p("style.png")]
        .into_iter()
        .chain(["-w", &w, "--size", "32", "-n", "1", "-o", &out])
        .collect::<Vec<_>>());
    let err = stderr(&o);
    assert!(o.status.success(), "{err:?}");
    assert!(Path::new(&out).exists());
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("\\u{1b}]0;pwned\\u{7}o.png"), "{err:?}");
}

/// Two of a run's own files that are one are refused before any work, and nothing is
/// written (issue 43, D12).
#[test]
fn a_runs_own_files_never_collide() {
    let s = Scene::new();
    let w = tiny_weights().to_string_lossy().into_owned();
    let (x, out) = (s.p("x"), s.p("o.png"));
    let (content, style, snapshot) = (s.p("content.png"), s.p("style.png"), s.p("o_0002.png"));
    for (extra, says) in [
        (
            vec!["--log", &x, "--checkpoint", &x],
            "--checkpoint and --log",
        ),
        (vec!["--log", &out], "--log and --output"),
        (
            vec!["--log", &snapshot, "--save-every", "2"],
            "--save-every 2 snapshot",
        ),
    ] {
        let mut args = vec!["-c", &content, "-s", &style];
        args.extend(["-w", &w, "-n", "4", "-o", &out]);
        args.extend(extra);
        let o = run(&args);
        assert_clean_error(&o, &[says]);
        for f in [&x, &out, &snapshot] {
            assert!(!Path::new(f).exists(), "{f} was written");
        }
    }
}

/// A pipe, or a link to a device, where the run would write is refused before any work and
/// left as it was: the atomic rename would replace it (issue 43, D1).
#[cfg(unix)]
#[test]
fn outputs_never_replace_devices_or_pipes() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scene::new();
    let w = tiny_weights().to_string_lossy().into_owned();
    let (content, style) = (s.p("content.png"), s.p("style.png"));
    let (fifo, null) = (s.p("fifo.png"), s.p("null.ckpt"));
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    let out = s.p("o.png");
    for extra in [
        vec!["-o", fifo.as_str()],
        vec!["-o", &out, "--checkpoint", &null],
        vec!["-o", &out, "--log", &null],
    ] {
        let mut args = vec!["-c", content.as_str(), "-s", &style, "-w", &w, "-n", "2"];
        args.extend(&extra);
        let o = run(&args);
        assert_clean_error(&o, &[extra[extra.len() - 2], "not a regular file"]);
    }
    let kind = |p: &str| std::fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(&fifo).is_fifo());
    assert!(kind(&null).is_symlink());
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(!Path::new(&out).exists());
}
