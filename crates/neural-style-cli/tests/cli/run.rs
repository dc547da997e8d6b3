//! Whole runs: outputs, logs, reproducibility, texture and content reconstruction, masks, contact sheets, networks that stop early, the real pretrained network, the memory check.

use std::path::Path;

use super::*;

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
    let mut rows: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    // One line per evaluation, then the result's, with the structure figure.
    let result = rows.pop().unwrap();
    assert_eq!(
        (&result["result"], &result["evaluations"]),
        (&true.into(), &12.into())
    );
    assert!(
        result["structure"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s <= 1.0),
        "{result}"
    );
    assert_eq!(rows.len(), 12);
    let first = rows[0]["total"].as_f64().unwrap();
    let last = rows[11]["total"].as_f64().unwrap();
    assert!(last < first, "loss did not fall: {first} -> {last}");
    for key in [
        "evaluation",
        "content",
        "style",
        "tv",
        "temporal",
        "seconds",
    ] {
        assert!(rows[0].get(key).is_some(), "log lacks {key}");
    }
    // Where each evaluation's time went: the parts add up to no more than the whole.
    for row in &rows {
        let t = |key: &str| {
            row[key]
                .as_f64()
                .unwrap_or_else(|| panic!("log lacks {key}"))
        };
        let parts = t("forward_s") + t("losses_s") + t("backward_s");
        assert!(parts > 0.0 && parts <= t("evaluation_s") + 1e-6, "{row}");
    }
}

#[test]
fn bf16_products_run_where_the_cpu_has_them_and_are_refused_elsewhere() {
    let s = Scene::new();
    let w = tiny_weights();
    let flags = ["--size", "40", "-n", "4", "--precision", "bf16"];
    let o = s.transfer(w.to_str().unwrap(), &flags, "out.png");
    let cpu_has_it = std::fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|c| c.contains(" avx512_bf16") && cfg!(target_arch = "x86_64"));
    if cpu_has_it {
        assert!(o.status.success(), "{}", stderr(&o));
    } else {
        assert_clean_error(&o, &["--precision", "bf16 needs a CPU with AVX512-BF16"]);
        assert!(!Path::new(&s.p("out.png")).exists());
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
    let truncated = tiny_weights_to_conv3_1().display().to_string();
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

    if let Some(shared) = shared("the run on the shared normalised VGG19") {
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
fn real_pretrained_vgg16_transfers_style() {
    let Some(shared) = shared("the run on the real pretrained VGG16") else {
        return;
    };
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
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|row| row["result"] != true)
        .collect();
    let (s0, s1) = (
        rows[0]["style"].as_f64().unwrap(),
        rows.last().unwrap()["style"].as_f64().unwrap(),
    );
    assert!(s1 < 0.5 * s0, "style loss fell only from {s0} to {s1}");
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

/// The style is sized by the output's longest side: a narrow output with a large style
/// spends its memory on the style's pass (issue 43, D2). The estimate counts the style as
/// resized: refused whole, evaluated by tiles (the style's statistics too) when allowed.
#[test]
fn the_memory_check_counts_the_style_as_resized() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let tall = s.p("tall-style.png");
    write_image(Path::new(&tall), 1500, 2000, 1.0);
    let (c, out) = (s.p("content.png"), s.p("narrow.png"));
    let narrow = ["--size", "16x2000", "--no-coarse-to-fine", "-n", "1"];
    let args = [
        &["-c", &c, "-s", &tall, "-w", w, "-o", &out][..],
        &narrow[..],
    ]
    .concat();
    let o = run(&[&args[..], &["--max-memory", "1G", "--no-tile"]].concat());
    assert_clean_error(&o, &["16x2000", "GiB of memory"]);
    assert!(!Path::new(&out).exists());
    let o = run(&[&args[..], &["--max-memory", "2G"]].concat());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("evaluating it in tiles of"), "{err}");
}

/// The final loss in the "wrote ..." line.
fn final_loss(o: &std::process::Output) -> f64 {
    let err = stderr(o);
    err.split("final loss ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no final loss in {err}"))
}

#[test]
fn pictures_too_large_for_memory_are_evaluated_by_tiles() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let big = [
        "--size",
        "1000",
        "-n",
        "1",
        "--no-multiscale",
        "--lbfgs-history",
        "5",
    ];
    // The whole 1000x800 evaluation needs about 3.9 GiB (for the real VGG19): with 3 GiB
    // the run goes by tiles and says so; --no-tile refuses it instead.
    let o = s.transfer(
        w,
        &[&big[..], &["--max-memory", "3G"]].concat(),
        "tiled.png",
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("evaluating it in tiles of 512 px"), "{err}");
    assert!(err.contains("Each evaluation in 4 tiles"), "{err}");
    let o = s.transfer(
        w,
        &[&big[..], &["--max-memory", "3G", "--no-tile"]].concat(),
        "no.png",
    );
    assert_clean_error(&o, &["1000x800", "GiB of memory"]);
    // Forced tiles give the whole-image run's loss (with f32 products: bf16's rounding,
    // on CPUs that have it, differs between the tiles' and the whole image's Winograd grids).
    let small = [
        "--size",
        "150",
        "-n",
        "3",
        "--no-multiscale",
        "--precision",
        "f32",
    ];
    let whole = s.transfer(w, &small, "whole.png");
    let log = s.p("tiles.jsonl");
    let forced = [&small[..], &["--tile", "32", "--log", &log]].concat();
    let tiled = s.transfer(w, &forced, "tiles.png");
    let err = stderr(&tiled);
    assert!(err.contains("Each evaluation in 20 tiles"), "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (result, evaluations) = lines.split_last().unwrap();
    for line in evaluations {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["tiles"], 20, "{line}");
    }
    // The last line is the result's, with the structure figure.
    let result: serde_json::Value = serde_json::from_str(result).unwrap();
    assert_eq!(result["result"], true, "{result}");
    let structure = result["structure"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&structure), "{result}");
    let (a, b) = (final_loss(&whole), final_loss(&tiled));
    assert!((a - b).abs() <= 1e-4 * a, "whole {a}, tiled {b}");
}

#[test]
fn print_output_is_sixteen_bit_and_keeps_the_photos_profile_and_resolution() {
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    // The photo with an ICC profile (any bytes: the decoders keep them as they are) and a
    // resolution of 300 dpi.
    let icc: Vec<u8> = (0..400).map(|i| (i * 13 % 251) as u8).collect();
    let photo = neural_style::PrintInfo {
        icc: Some(icc.clone()),
        dpi: neural_style::Dpi::new(300.0, 300.0),
    };
    let content = neural_style::Image::load(Path::new(&s.p("content.png")), 1 << 20).unwrap();
    let save = neural_style::SaveOptions {
        print: photo.clone(),
        ..Default::default()
    };
    content
        .save_with(Path::new(&s.p("profiled.png")), &save)
        .unwrap();
    let args = |out: &str, more: &[&str]| {
        let (c, st) = (s.p("profiled.png"), s.p("style.png"));
        bin()
            .args([
                "-c", &c, "-s", &st, "-w", w, "--size", "32", "-n", "2", "-q",
            ])
            .args(more)
            .args(["-o", &s.p(out)])
            .output()
            .unwrap()
    };
    for (out, depth) in [("print.png", "16"), ("print.tif", "auto")] {
        let o = args(out, &["--bit-depth", depth]);
        assert!(o.status.success(), "{}", stderr(&o));
        let decoder = image::ImageReader::open(s.p(out))
            .unwrap()
            .into_decoder()
            .unwrap();
        assert_eq!(
            image::ImageDecoder::color_type(&decoder),
            image::ColorType::Rgb16
        );
        let kept = neural_style::PrintInfo::of(Path::new(&s.p(out)));
        assert_eq!(kept.icc, photo.icc, "{out} lost the profile");
        let dpi = kept
            .dpi
            .unwrap_or_else(|| panic!("{out} lost the resolution"));
        assert!(
            (dpi.x - 300.0).abs() < 0.02 && (dpi.y - 300.0).abs() < 0.02,
            "{dpi:?}"
        );
    }
    // --dpi sets another resolution; out of range, it is refused before the run.
    let o = args("print.jpg", &["--dpi", "600"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dpi = neural_style::PrintInfo::of(Path::new(&s.p("print.jpg"))).dpi;
    assert_eq!(dpi, neural_style::Dpi::new(600.0, 600.0));
    assert_clean_error(&args("x.png", &["--dpi", "0"]), &["--dpi", "1 to 65535"]);
    // JPEG has no 16 bits: refused before the run.
    let o = args("print.jpg", &["--bit-depth", "16"]);
    assert_clean_error(&o, &["--bit-depth", "print.jpg", ".png and .tif"]);
}
