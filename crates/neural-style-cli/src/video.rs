//! `neural-style video`: a video file (decoded and encoded by the system's ffmpeg) or a
//! folder of frames, stylised frame by frame with the temporal term of Ruder et al. 2016.
//! Result frames are written atomically as `frame_000001.png`...; a frame that exists is
//! finished, so a rerun goes on from the first missing one (reading the frame before it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use neural_style::{Image, Init, Inputs};

use crate::batch::{ManyRuns, results_folder};
use crate::cli::{RunArgs, VideoArgs};
use crate::config::{RunJob, flag_error, not_allowed};
use crate::progress::run_under;
use crate::runner::{interrupted, job_plan, load_image};

/// Output extensions encoded as a video.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mkv", "webm", "mov", "avi"];

fn is_video(p: &Path) -> bool {
    p.extension().is_some_and(|e| {
        VIDEO_EXTENSIONS.contains(&e.to_string_lossy().to_ascii_lowercase().as_str())
    })
}

/// Runs `ffmpeg` (or `ffprobe`) with `args`; a missing program is named with what to do.
fn tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{program} is not installed (or not on PATH): install ffmpeg (e.g. `apt install ffmpeg`), or give folders of frames for --content and --output"
            ),
            _ => anyhow::anyhow!("cannot run {program}: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("{program} failed: {last}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The input's frame rate from ffprobe, if it says.
fn probe_fps(video: &Path) -> Option<f32> {
    let path = video.to_string_lossy();
    let out = tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=r_frame_rate",
            "-of",
            "csv=p=0",
            &path,
        ],
    )
    .ok()?;
    let (n, d) = out.trim().split_once('/')?;
    let fps = n.parse::<f32>().ok()? / d.parse::<f32>().ok()?;
    (fps.is_finite() && fps > 0.0).then_some(fps)
}

/// Path of result frame `i` (from 0) in `dir`.
fn frame_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("frame_{:06}.png", i + 1))
}

/// Runs the video job; exit 0 when every frame is done, 130/143 when interrupted.
pub fn run(args: VideoArgs) -> Result<u8> {
    let a: RunArgs = args.run.clone();
    let input = a
        .content
        .clone()
        .context("--content is required: a video file or a folder of frames")?;
    let output = a
        .output
        .clone()
        .context("--output is required: a video file (.mp4, ...) or a folder for the frames")?;
    crate::batch::refuse_single_run_flags(&a, "video", "a video resumes from its finished frames")?;
    if a.bit_depth != neural_style::BitDepth::Auto {
        bail!("--bit-depth: video frames are written 8 bits a channel, as the encoders take them");
    }
    if a.dpi.is_some() {
        bail!("--dpi: a video has no print resolution");
    }
    // Every setting, the temporal weight too, checked before any frame is decoded.
    let settings = crate::config::settings(&a, args.temporal_weight)?;
    if args.frame_iterations == Some(0) {
        return Err(not_allowed("--frame-iterations", 0, "at least 1"));
    }
    let encode = is_video(&output);
    let out_dir = if encode {
        let mut d = output.clone().into_os_string();
        d.push(".frames");
        PathBuf::from(d)
    } else {
        output.clone()
    };
    if encode && output.exists() {
        bail!(
            "{}: already exists; remove it or choose another name (the frames in {} are kept and reused)",
            output.display(),
            out_dir.display()
        );
    }
    let frames = InputFrames::open(&input, &out_dir)?;
    let template = RunJob {
        config: settings,
        ..RunJob::from_args(RunArgs {
            content: Some(frames.files[0].clone()),
            output: Some(frame_path(&out_dir, 0)),
            ..a.clone()
        })?
    };
    let bar = "frame {pos}/{len} [{elapsed_precise}] {wide_bar} ETA {eta} {msg}";
    let runs = ManyRuns::open(&template, bar, frames.files.len())?;
    let load = |p: &Path| load_image(p, template.decoding);
    let styles: Vec<Image> = template
        .styles
        .iter()
        .map(|p| load(p))
        .collect::<Result<_, _>>()?;
    let temporal = !args.no_temporal && args.temporal_weight > 0.0;
    let started = Instant::now();
    let (mut computed, mut skipped) = (0usize, 0usize);
    // Only the frame before and its result are kept: a long video does not fill memory.
    let mut before: Option<(Image, Image)> = None;
    let mut flicker = neural_style::video::guide::Flicker::new(0.02);
    let mut step = |before: &mut Option<(Image, Image)>, frame: Image, result: Image| {
        if let Some((f0, r0)) = before.as_ref() {
            flicker.add(f0, r0, &frame, &result);
        }
        *before = Some((frame, result));
    };
    for (i, file) in frames.files.iter().enumerate() {
        let frame = load(file)?;
        let out = frame_path(&out_dir, i);
        if out.exists() {
            let done = load(&out).with_context(|| {
                format!(
                    "{}: cannot read this finished frame; delete it to redo it",
                    out.display()
                )
            })?;
            step(&mut before, frame, done);
            skipped += 1;
            runs.overall.inc(1);
            continue;
        }
        let guide = before.as_ref().filter(|_| temporal);
        let (config, inputs) = frame_settings(&template, &args, &frame, &styles, guide);
        let job = RunJob {
            output: out.clone(),
            content: Some(file.clone()),
            config: config.check(styles.len()).map_err(flag_error)?,
            ..template.clone()
        };
        let Some(image) = run_frame(&runs, &job, inputs)? else {
            let partial = crate::config::partial_path(&out);
            runs.overall.finish_and_clear();
            say!(
                "interrupted at frame {}: its best image so far is in {}; run the same command again to go on ({} of {} frames done)",
                i + 1,
                partial.display(),
                i,
                frames.files.len()
            );
            return Ok(runs.signals.exit_code());
        };
        computed += 1;
        step(&mut before, frame, image);
        runs.overall.inc(1);
    }
    runs.overall.finish_and_clear();
    report(
        frames.files.len(),
        (computed, skipped),
        started,
        flicker.value(),
        temporal,
    );
    if encode {
        let fps = args.fps.or(frames.fps).unwrap_or(25.0);
        encode_frames(&out_dir, &output, fps)?;
        say!("wrote {} ({fps} frames per second)", output.display());
    } else {
        say!("wrote the frames to {}", out_dir.display());
    }
    frames.remove_decoded();
    Ok(0)
}

/// Runs one frame's job and writes its result; `None` when the run was interrupted (its
/// best image so far is then in the `.partial` file beside the result).
fn run_frame(runs: &ManyRuns, job: &RunJob, inputs: Inputs) -> Result<Option<Image>> {
    let plan = job_plan(job, &runs.net, inputs)?;
    let result = run_under(
        &runs.multi,
        &runs.net,
        job,
        &plan,
        &runs.signals.interrupted,
    );
    let file = job.content.as_deref().unwrap_or(Path::new(""));
    let output = result.with_context(|| format!("{}", file.display()))?;
    if interrupted(&output, &runs.signals) {
        output
            .image
            .save(&crate::config::partial_path(&job.output))?;
        return Ok(None);
    }
    output.image.save(&job.output)?;
    let _ = std::fs::remove_file(crate::config::partial_path(&job.output));
    Ok(Some(output.image))
}

/// Prints the job's last line: frames computed and skipped, the time, the flicker and
/// whether the temporal term was on.
fn report(
    frames: usize,
    (computed, skipped): (usize, usize),
    started: Instant,
    flicker: Option<f32>,
    temporal: bool,
) {
    let secs = started.elapsed().as_secs_f64();
    let per_frame = if computed > 0 {
        format!(", {:.1} s per frame", secs / computed as f64)
    } else {
        String::new()
    };
    let flicker = flicker.map_or("no still pixels".into(), |f| format!("{f:.4}"));
    say!(
        "video: {frames} frames ({computed} computed, {skipped} already done) in {secs:.1} s{per_frame}; flicker (mean change where the input is still, 0..1): {flicker}; temporal term {}",
        if temporal { "on" } else { "off" }
    );
}

/// A frame's settings and inputs: the template's, and with the result before it (`guide`:
/// the frame before and its result, when the temporal term is on) a start from that result
/// warped along the motion, the temporal term, one stage and `--frame-iterations`.
fn frame_settings(
    template: &RunJob,
    args: &VideoArgs,
    frame: &Image,
    styles: &[Image],
    guide: Option<&(Image, Image)>,
) -> (neural_style::TransferConfig, Inputs) {
    let mut config = template.config.get().clone();
    let mut inputs = Inputs {
        content: Some(frame.clone()),
        styles: styles.to_vec(),
        ..Inputs::default()
    };
    if let Some((prev_frame, prev_result)) = guide {
        let guide = neural_style::video::guide::temporal_guide(prev_frame, frame, prev_result);
        // Start from the warped result, at full size (coarse-to-fine would blur it).
        inputs.init = Some(guide.previous.clone());
        inputs.temporal = Some(guide);
        config.init = Init::Image;
        config.coarse_to_fine = false;
        config.stage_sides = None;
        if let Some(n) = args.frame_iterations {
            config.iterations = n;
        }
    }
    (config, inputs)
}

/// The frames a video job reads: a folder's images as they are, or a video file decoded
/// into a folder beside the output, removed once the job is done.
struct InputFrames {
    /// The frames, in order.
    files: Vec<PathBuf>,
    /// The video's frame rate, when ffprobe tells it.
    fps: Option<f32>,
    /// The folder a video was decoded into.
    decoded: Option<PathBuf>,
}

impl InputFrames {
    /// The frames of `input` (a folder or a video file) for results in `out_dir`, which is
    /// checked and created.
    fn open(input: &Path, out_dir: &Path) -> Result<Self> {
        if input.is_dir() {
            let files = crate::batch::expand(input)?;
            // Result frames are named frame_NNNNNN.png: among the input frames they could
            // replace one, and the next run would take them for input.
            results_folder(out_dir, &files, "input frames")?;
            return Ok(Self {
                files,
                fps: None,
                decoded: None,
            });
        }
        if !input.is_file() {
            bail!(
                "{}: no such file or folder (--content takes a video file or a folder of frames)",
                input.display()
            );
        }
        results_folder(out_dir, &[], "input frames")?;
        let mut d = out_dir.as_os_str().to_owned();
        d.push(".input");
        let dir = PathBuf::from(d);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
        let pattern = dir.join("%06d.png");
        tool(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-y",
                "-i",
                &input.to_string_lossy(),
                &pattern.to_string_lossy(),
            ],
        )
        .with_context(|| format!("{}: cannot decode the video", input.display()))?;
        Ok(Self {
            files: crate::batch::expand(&dir)?,
            fps: probe_fps(input),
            decoded: Some(dir),
        })
    }

    /// Removes the folder a video was decoded into.
    fn remove_decoded(self) {
        if let Some(dir) = self.decoded {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Encodes the result frames in `out_dir` into the video `output` at `fps` (H.264 in
/// yuv420p, sides padded to even numbers; an existing `output` is never replaced).
fn encode_frames(out_dir: &Path, output: &Path, fps: f32) -> Result<()> {
    let pattern = out_dir.join("frame_%06d.png");
    tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-n",
            "-framerate",
            &format!("{fps}"),
            "-i",
            &pattern.to_string_lossy(),
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
            &output.to_string_lossy(),
        ],
    )
    .with_context(|| format!("{}: cannot encode the video", output.display()))?;
    Ok(())
}
