//! `neural-style batch --queue URL --store URL`: every pair becomes a job of the queue across
//! machines, run by `neural-style worker`s anywhere with the batch's whole configuration;
//! the command waits and writes each result into the output folder as it comes (or, with
//! `--detach`, returns once the jobs are queued). A pair's job is named by an idempotency
//! key made of its images and settings, so the same command run again finds the same jobs
//! instead of queueing new ones: that is how a detached batch is collected.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use neural_style::Size;
use neural_style_web::queue::{Engine, RemoteJobs, Store, Upload};
use neural_style_web::{JobSettings, Status};
use sha2::{Digest, Sha256};

use crate::batch::Pair;
use crate::config::RunJob;
use crate::progress::overall_bar;
use crate::runner::Signals;

/// The client the batch's jobs belong to (the page's clients never see them).
const OWNER: &str = "neural-style-batch";
/// How often the batch looks at its jobs while it waits.
const POLL: Duration = Duration::from_millis(300);
/// How long a batch's finished jobs wait for the command to collect them (`--detach`, then
/// the same command again): thirty days; then they are forgotten and queued again.
const BATCH_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Queues the pairs whose result is missing and, unless `detach`, waits for them.
pub fn run(
    template: &RunJob,
    pairs: &[Pair],
    queue: &str,
    store: &str,
    detach: bool,
) -> Result<u8> {
    if template.init_image.is_some() || template.log.is_some() {
        bail!(
            "--init FILE and --log are for runs on this machine; they are not available with --queue"
        );
    }
    let engine = Engine::open(queue)?.with_retention(Some(BATCH_RETENTION));
    let store = Store::open(store)?;
    let jobs = RemoteJobs::new(engine, store, usize::MAX >> 12);
    let mut config = template.config.get().clone();
    // Nobody watches a batch job's previews.
    config.snapshot_every = 0;
    let settings = JobSettings {
        size: match config.size {
            Size::Longest(n) => n,
            Size::Exact(w, h) => w.max(h),
        },
        iterations: config.iterations,
        seed: config.seed,
        ..JobSettings::default()
    };
    let signals = Signals::install()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let todo: Vec<&Pair> = pairs.iter().filter(|(_, _, out)| !out.exists()).collect();
    let skipped = pairs.len() - todo.len();
    let (_multi, bar) = overall_bar(
        template.quiet,
        "batch {pos}/{len} [{elapsed_precise}] {wide_bar} {msg}",
        pairs.len(),
    );
    bar.inc(skipped as u64);
    bar.set_message("queueing");
    let mut waiting = Vec::new();
    for pair @ (content, style, _) in &todo {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("{}", p.display()));
        let (content_bytes, style_bytes) = (read(content)?, read(style)?);
        let key = job_key(&config, &content_bytes, &style_bytes);
        let upload = Upload {
            settings: settings.clone(),
            config: Some(config.clone()),
            content: content_bytes,
            styles: vec![style_bytes],
        };
        let view = runtime
            .block_on(jobs.submit(OWNER, upload, Some(&key), (OWNER, 0)))
            .with_context(|| format!("{} × {}", content.display(), style.display()))?;
        waiting.push((view.id, *pair));
    }
    if detach {
        bar.finish_and_clear();
        say!(
            "batch: {} jobs queued ({skipped} pairs already done); run the same command without --detach to collect the results",
            waiting.len()
        );
        return Ok(0);
    }
    let (mut done, mut failed) = (0usize, Vec::new());
    while !waiting.is_empty() {
        if signals.interrupted.load(Ordering::SeqCst) {
            bar.finish_and_clear();
            say!(
                "interrupted: {} jobs go on on the workers; run the same command again to collect them ({done} collected now)",
                waiting.len()
            );
            return Ok(signals.exit_code());
        }
        let mut still = Vec::new();
        for (id, pair) in waiting {
            let (content, style, out) = pair;
            let view = runtime.block_on(jobs.view(OWNER, &id))?;
            match view.map(|v| (v.status, v.error)) {
                Some((Status::Done | Status::Stopped, _)) => {
                    let bytes = runtime
                        .block_on(jobs.result(OWNER, &id))?
                        .with_context(|| format!("job {id}: done, but its result is missing"))?;
                    neural_style::image::io::write_atomically(out, &bytes)?;
                    runtime.block_on(jobs.remove(OWNER, &id))?;
                    bar.println(crate::printable(&format!("wrote {}", out.display())));
                    bar.inc(1);
                    done += 1;
                }
                Some((Status::Failed | Status::Cancelled, error)) => {
                    let e = format!(
                        "{} × {}: {}",
                        content.display(),
                        style.display(),
                        error.unwrap_or_else(|| "cancelled".to_string())
                    );
                    bar.println(crate::printable(&format!("error: {e}")));
                    failed.push(e);
                    // Forgotten, so that running the batch again tries the pair again.
                    runtime.block_on(jobs.remove(OWNER, &id))?;
                    bar.inc(1);
                }
                Some(_) => still.push((id, pair)),
                None => bail!("job {id} of {} is gone from the queue", out.display()),
            }
        }
        waiting = still;
        bar.set_message(format!("{} on the workers", waiting.len()));
        if !waiting.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    bar.finish_and_clear();
    say!(
        "batch: {} pairs: {done} done by the workers, {skipped} already done (skipped), {} failed",
        pairs.len(),
        failed.len()
    );
    for f in &failed {
        say!("  failed: {}", crate::printable(f));
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}

/// A pair's idempotency key: the SHA-256 of its settings and both images.
fn job_key(config: &neural_style::TransferConfig, content: &[u8], style: &[u8]) -> String {
    let mut hash = Sha256::new();
    // Under the settings' former names, so pairs queued by earlier versions are known.
    hash.update(config.identity_json());
    for bytes in [content, style] {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}
