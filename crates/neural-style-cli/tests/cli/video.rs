//! `neural-style video`: the temporal term lowers flicker, and a rerun goes on from its frames.

use std::path::Path;

use super::*;

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
            // f32 products, the same numbers on every CPU: the 0.7 margin below was set on
            // them (bf16's rounding moves both flickers: 0.0275 and 0.0206 where f32 gives
            // 0.0311 and 0.0196).
            "--precision",
            "f32",
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
