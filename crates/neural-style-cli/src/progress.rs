//! Draws a run's events: an indicatif progress bar (hidden when stderr is not a terminal),
//! periodic loss lines, the JSON-lines log and intermediate images.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use neural_style::{Event, Network, Observer, Output, Plan};

use crate::config::{RunJob, snapshot_path};

/// The command line's observer.
pub struct Reporter {
    bar: ProgressBar,
    print_every: usize,
    log: Option<std::io::BufWriter<std::fs::File>>,
    output: PathBuf,
    interrupted: Arc<AtomicBool>,
    /// The size being optimised.
    size: (u32, u32),
    /// Tiles each evaluation of this size is cut into (1: whole).
    tiles: usize,
    /// The last evaluation's loss, as the bar shows it.
    loss: String,
    /// Where checkpoints are written.
    pub checkpoint: Option<PathBuf>,
    /// How many checkpoints this run wrote.
    pub checkpoints_written: usize,
    /// The first error met while writing a log line or snapshot.
    pub error: Option<anyhow::Error>,
    /// Whether snapshots are written next to the output (`--save-every`); off when they
    /// are only previews for a program embedding the command.
    pub write_snapshots: bool,
    /// Prints nothing (an embedding program shows the events itself).
    pub silent: bool,
    /// Receives every event after the reporter, and can stop the run.
    pub forward: Option<EventHook>,
}

/// A callback an embedding program gives for a run's events ([`crate::embed`]).
pub type EventHook = Box<dyn FnMut(&Event<'_>) -> ControlFlow<()> + Send>;

/// A progress bar on stderr with `template`, drawn only when stderr is a terminal and
/// `quiet` is off.
pub fn stderr_bar(quiet: bool, template: &str) -> ProgressBar {
    let bar = ProgressBar::hidden();
    if !quiet && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The bar over many runs (a batch's pairs, a video's frames): `len` steps drawn with
/// `template`, and the `MultiProgress` that each run's own bar joins (see
/// [`run_under`]); both hidden when stderr is not a terminal or `quiet` is on.
pub fn overall_bar(quiet: bool, template: &str, len: usize) -> (MultiProgress, ProgressBar) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let overall = stderr_bar(quiet, template);
    if !overall.is_hidden() {
        multi.set_draw_target(ProgressDrawTarget::stderr());
    }
    let overall = multi.add(overall);
    overall.set_length(len as u64);
    (multi, overall)
}

/// One run of `plan` (for `job`) on `net` with a bar of its own under `multi`'s overall
/// bar; it stops early when `interrupted` is set.
pub fn run_under(
    multi: &MultiProgress,
    net: &Network,
    job: &RunJob,
    plan: &Plan,
    interrupted: &Arc<AtomicBool>,
) -> neural_style::Result<Output> {
    let mut reporter = Reporter::new(
        job.quiet,
        job.print_every,
        None,
        job.output.clone(),
        interrupted.clone(),
    );
    reporter.attach(multi);
    let result = crate::runner::on_pool(|| neural_style::run(net, plan, &mut reporter));
    reporter.finish();
    result
}

/// Prints a line on stderr above `bar` (plainly when the bar is hidden).
pub fn print_above(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        say!("{line}");
    } else {
        bar.println(crate::printable_lines(line));
    }
}

impl Reporter {
    /// A reporter; `interrupted` is set by the signal handler.
    pub fn new(
        quiet: bool,
        print_every: usize,
        log: Option<std::fs::File>,
        output: PathBuf,
        interrupted: Arc<AtomicBool>,
    ) -> Self {
        let bar = stderr_bar(
            quiet,
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} loss {msg}",
        );
        Self {
            bar,
            print_every,
            log: log.map(std::io::BufWriter::new),
            output,
            interrupted,
            size: (0, 0),
            tiles: 1,
            loss: String::new(),
            checkpoint: None,
            checkpoints_written: 0,
            error: None,
            write_snapshots: true,
            silent: false,
            forward: None,
        }
    }

    /// Draws the bar as part of `multi` (under a batch's overall bar).
    pub fn attach(&mut self, multi: &MultiProgress) {
        if !self.bar.is_hidden() {
            self.bar = multi.add(self.bar.clone());
        }
    }

    /// Prints a line without disturbing the bar.
    pub fn println(&self, line: &str) {
        if !self.silent {
            print_above(&self.bar, line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// The log's last line: how the run ended, with the structure figure.
    pub fn log_result(&mut self, output: &neural_style::Output) {
        let line = serde_json::json!({
            "result": true,
            "evaluations": output.evaluations,
            "best_total": output.best_loss.total,
            "structure": output.structure,
            "stopped": output.stopped,
        });
        self.log_line(&line.to_string());
    }

    fn log_line(&mut self, line: &str) {
        let Some(log) = &mut self.log else { return };
        if let Err(e) = writeln!(log, "{line}").and_then(|_| log.flush()) {
            self.error
                .get_or_insert(anyhow::anyhow!("writing the log: {e}"));
        }
    }
}

impl Observer for Reporter {
    fn on_event(&mut self, event: &Event<'_>) -> ControlFlow<()> {
        match event {
            Event::Started {
                evaluations,
                width,
                height,
            } => {
                self.size = (*width, *height);
                self.bar.set_length(*evaluations as u64);
                self.println(&format!(
                    "Optimising a {width}x{height} image for {evaluations} evaluations"
                ));
            }
            Event::Stage {
                index,
                stages,
                width,
                height,
                evaluations,
                tiles,
            } => {
                self.size = (*width, *height);
                self.tiles = *tiles;
                let tiled = if *tiles > 1 {
                    format!(", each in {tiles} tiles")
                } else {
                    String::new()
                };
                if *stages > 1 {
                    self.println(&format!(
                        "Size {}/{stages}: {width}x{height}, {evaluations} evaluations{tiled}",
                        index + 1
                    ));
                } else if *tiles > 1 {
                    self.println(&format!("Each evaluation in {tiles} tiles"));
                }
            }
            Event::Evaluation {
                evaluation,
                loss,
                elapsed,
                times,
            } => {
                self.bar.set_position(*evaluation as u64);
                self.loss = format!("{:.4e}", loss.total);
                self.bar.set_message(self.loss.clone());
                if self.print_every > 0 && evaluation % self.print_every == 0 {
                    self.println(&format!(
                        "Evaluation {evaluation}: total {:.6e}  content {:.6e}  style {:.6e}  tv {:.6e}",
                        loss.total, loss.content, loss.style, loss.tv
                    ));
                }
                let mut line = serde_json::json!({
                    "evaluation": evaluation,
                    "seconds": elapsed.as_secs_f64(),
                    "evaluation_s": times.total.as_secs_f64(),
                    "forward_s": times.forward.as_secs_f64(),
                    "losses_s": times.losses.as_secs_f64(),
                    "backward_s": times.backward.as_secs_f64(),
                    "width": self.size.0,
                    "height": self.size.1,
                    "tiles": self.tiles,
                });
                // The loss terms as the library serialises them (the temporal term too).
                if let (Some(line), Ok(serde_json::Value::Object(terms))) =
                    (line.as_object_mut(), serde_json::to_value(loss))
                {
                    line.extend(terms);
                }
                self.log_line(&line.to_string());
            }
            // A tiled evaluation takes minutes at print sizes: the message shows its tiles.
            Event::Tile { done, of, .. } => {
                let sep = if self.loss.is_empty() { "" } else { "  " };
                self.bar
                    .set_message(format!("{}{sep}tile pass {done}/{of}", self.loss));
            }
            Event::Checkpoint { checkpoint } => {
                if let Some(path) = &self.checkpoint {
                    match checkpoint.save(path) {
                        Ok(()) => self.checkpoints_written += 1,
                        Err(e) => {
                            self.error.get_or_insert(e.into());
                        }
                    }
                }
            }
            Event::Snapshot { evaluation, image } if self.write_snapshots => {
                let path = snapshot_path(&self.output, *evaluation);
                if let Err(e) = image.save(&path) {
                    self.error.get_or_insert(e.into());
                }
            }
            _ => {}
        }
        let forwarded = match &mut self.forward {
            Some(hook) => hook(event),
            None => ControlFlow::Continue(()),
        };
        if forwarded.is_break() || self.interrupted.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}
