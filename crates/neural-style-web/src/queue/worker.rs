//! A worker of the queue across machines (`neural-style worker`): takes jobs from the
//! engine, runs them on its own network, publishes their progress, saves a checkpoint to
//! the store every few evaluations, and writes the result once before marking the job
//! done. A job whose worker died is taken over after the lease and continued from its
//! checkpoint, exactly.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use neural_style::{Checkpoint, Event, Image, Network, TransferConfig};

use super::engine::{Claim, Engine, Started, WorkerConnection};
use super::{JobSpec, QueueError, Store, keys};
use crate::jobs::{JobView, Status};
use crate::progress::{self, Change, Progress};
use crate::settings::Limits;

/// Workers a job may stop on (killed, crashed) in a row without saving a new checkpoint
/// before it is failed instead of retried.
pub const MAX_ATTEMPTS: u32 = 3;
/// Least time between two previews a worker sends through the engine.
const PREVIEW_EVERY: Duration = Duration::from_secs(1);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its name, shown in the jobs it runs. Its consumer in the group is this name and a
    /// random part (see [`consumer_name`]), so two workers given the same name never take
    /// each other's claims.
    pub name: String,
    /// How long a claim lasts without renewal; a worker renews it four times as often.
    pub lease: Duration,
    /// L-BFGS iterations between checkpoints...
    pub checkpoint_every: usize,
    /// ...of which one is saved to the store at most this often (a checkpoint holds the
    /// optimiser's history: ~275 MB for a 384x288 job with the default history).
    pub checkpoint_interval: Duration,
    /// A folder of its own for checkpoint and result files on their way to the store.
    pub work_dir: PathBuf,
    /// What a job may ask for (uploads are decoded within these limits).
    pub limits: Limits,
}

/// What a worker reports (the CLI prints these).
#[derive(Debug)]
pub enum WorkerNote<'a> {
    /// Connected to the engine.
    Connected,
    /// The engine cannot be reached; the worker retries.
    Unreachable(&'a QueueError),
    /// Took a job (`resumed`: from another worker's checkpoint).
    Took {
        /// The job.
        id: &'a str,
        /// Times a worker has started it.
        attempts: u32,
        /// Whether it continues from a checkpoint.
        resumed: bool,
    },
    /// A job ended.
    Ended {
        /// The job.
        id: &'a str,
        /// How.
        status: Status,
        /// Why, when it failed.
        error: Option<&'a str>,
    },
    /// Another worker took the job over (this one was too slow to renew its claim); this
    /// one dropped it.
    Lost {
        /// The job.
        id: &'a str,
    },
    /// The worker is stopping on a signal: it saved the job's checkpoint and gave the job
    /// back to the queue, for another worker to continue at once.
    HandedBack {
        /// The job.
        id: &'a str,
    },
    /// A checkpoint could not be saved to the store (the next one is tried; a takeover
    /// continues from the last one saved).
    CheckpointNotSaved {
        /// The job.
        id: &'a str,
        /// Why.
        error: &'a QueueError,
    },
}

/// Takes and runs jobs until `quit` is set. A job running then goes on to its next
/// checkpoint, which is saved to the store, and is handed back to the queue, where another
/// worker continues it at once (not counted as an attempt).
pub fn work(
    net: &Network,
    base: &TransferConfig,
    engine: &Engine,
    store: &Store,
    config: &WorkerConfig,
    quit: &AtomicBool,
    note: &mut dyn FnMut(WorkerNote<'_>),
) -> Result<(), QueueError> {
    let work_folder = |e: std::io::Error| QueueError::WorkFolder {
        path: config.work_dir.clone(),
        error: e.to_string(),
    };
    std::fs::create_dir_all(&config.work_dir).map_err(work_folder)?;
    // One thread of its own drives the engine's connection and the store's requests, so
    // that the renewing thread is answered while the main thread computes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(work_folder)?;
    let default_style = net.loss_weights(base).style;
    let job = JobRunner {
        net,
        base,
        default_style,
        engine,
        store,
        config,
        quit,
        runtime: &runtime,
    };
    let consumer = consumer_name(&config.name);
    let mut outage = false;
    let mut backoff = Duration::from_millis(200);
    while !quit.load(Ordering::SeqCst) {
        let mut con = match engine.connect(runtime.handle()) {
            Ok(con) => con,
            Err(e) => {
                if !outage {
                    note(WorkerNote::Unreachable(&e));
                    outage = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        outage = false;
        backoff = Duration::from_millis(200);
        note(WorkerNote::Connected);
        let mut cursor = "0-0".to_string();
        while !quit.load(Ordering::SeqCst) {
            let claimed = engine
                .claim(&mut con, &consumer, config.lease, &mut cursor)
                .and_then(|c| match c {
                    Some(claim) => job.run(&mut con, &claim, note),
                    None => Ok(()),
                });
            if let Err(e) = claimed {
                // A signal interrupts a blocking read: that is the stop, not an outage.
                if !quit.load(Ordering::SeqCst) {
                    note(WorkerNote::Unreachable(&e));
                }
                // The store's outage: the job was handed back; wait before the next one.
                if matches!(e, QueueError::Store { .. }) {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                outage = true;
                break;
            }
        }
    }
    Ok(())
}

/// The consumer a worker named `name` reads the stream as: `name#` and 16 random hex
/// digits, new for each worker process.
pub fn consumer_name(name: &str) -> String {
    format!("{name}#{:016x}", rand::random::<u64>())
}

/// The worker's name in a consumer's (see [`consumer_name`]).
pub fn worker_name(consumer: &str) -> &str {
    consumer.rsplit_once('#').map_or(consumer, |(name, _)| name)
}

/// What running one job needs.
struct JobRunner<'a> {
    net: &'a Network,
    base: &'a TransferConfig,
    default_style: f32,
    engine: &'a Engine,
    store: &'a Store,
    config: &'a WorkerConfig,
    quit: &'a AtomicBool,
    runtime: &'a tokio::runtime::Runtime,
}

/// How long a worker keeps trying the store when it fails for a transient reason.
const STORE_PATIENCE: Duration = Duration::from_secs(20);

/// Calls `f` again while it fails for a transient reason ([`QueueError::is_transient`]),
/// waiting 0.2 s, 0.4 s, ... (at most 5 s) between tries, for at most `patience`.
fn retrying<T>(
    patience: Duration,
    mut f: impl FnMut() -> Result<T, QueueError>,
) -> Result<T, QueueError> {
    let start = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match f() {
            Err(e) if e.is_transient() && start.elapsed() + wait < patience => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Why a job could not be run.
enum Failure {
    /// Something of the job's own (an upload that does not decode, settings out of the
    /// worker's limits): the job fails with this reason.
    Job(String),
    /// The store is away: the job is handed back, for later.
    Outage(QueueError),
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Job(reason)
    }
}

/// A store error as a [`Failure`]: an outage if transient, else the job's.
fn store_failure(e: QueueError) -> Failure {
    if e.is_transient() {
        Failure::Outage(e)
    } else {
        Failure::Job(e.to_string())
    }
}

/// How a run ended.
enum Ending {
    /// With this image; `stopped`: early, at the owner's request.
    Image { image: Image, stopped: bool },
    /// Another worker holds the job now: leave it.
    Dropped,
    /// This worker is quitting, its checkpoint saved: give the job back.
    HandBack,
}

impl JobRunner<'_> {
    fn run(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        note: &mut dyn FnMut(WorkerNote<'_>),
    ) -> Result<(), QueueError> {
        let Some(Started {
            attempts,
            strikes,
            spec,
            mut view,
            checkpoint: saved,
        }) = self.on_engine(con, |c| self.engine.start(c, claim))?
        else {
            return Ok(());
        };
        let id = claim.id.as_str();
        let checkpoint = self.work_file(id, "ckpt");
        let result = self.work_file(id, "png");
        let prepared = match spec {
            // A poison job: failed once, with the reason.
            Err(reason) => Err(Failure::Job(reason)),
            Ok(_) if strikes > MAX_ATTEMPTS => Err(Failure::Job(format!(
                "{} workers stopped while running this job before it reached a new checkpoint (killed or crashed); it is not tried again",
                strikes - 1
            ))),
            Ok(spec) => self.prepare(&spec, saved.as_deref(), &checkpoint),
        };
        let ending = match prepared {
            Ok((plan, resumed)) => {
                note(WorkerNote::Took {
                    id,
                    attempts,
                    resumed,
                });
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.optimise(con, claim, &plan, &mut view, resumed, &checkpoint, note)
                }));
                match outcome {
                    Ok(Ok(ending)) => Ok(ending),
                    Ok(Err(e)) => Err(Failure::Job(e)),
                    Err(_) => Err(Failure::Job("internal error: the run panicked".into())),
                }
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&checkpoint);
        match ending {
            Ok(Ending::Dropped) => {
                note(WorkerNote::Lost { id });
                Ok(())
            }
            Ok(Ending::HandBack) => self.hand_back(con, claim, &view, note),
            Ok(Ending::Image { image, stopped }) => {
                let written = image
                    .save(&result)
                    .map_err(|e| e.to_string())
                    .and_then(|()| std::fs::read(&result).map_err(|e| e.to_string()));
                let _ = std::fs::remove_file(&result);
                let bytes = match written {
                    Ok(bytes) => bytes,
                    Err(e) => return self.fail(con, claim, view, &e, note),
                };
                // The result first, once; then the state that points at it.
                let key = keys::result(id);
                let put = retrying(STORE_PATIENCE, || {
                    self.runtime
                        .block_on(self.store.put_once(&key, bytes.clone()))
                });
                match put.map_err(store_failure) {
                    Ok(_) => {}
                    Err(Failure::Job(e)) => return self.fail(con, claim, view, &e, note),
                    Err(Failure::Outage(e)) => {
                        // The next worker continues from the last checkpoint.
                        self.hand_back(con, claim, &view, note)?;
                        return Err(e);
                    }
                }
                view.status = if stopped {
                    Status::Stopped
                } else {
                    Status::Done
                };
                view.result_size = Some((image.width, image.height));
                view.eta_s = None;
                view.tile = None;
                self.end(con, claim, &view, note)
            }
            Err(Failure::Job(e)) => self.fail(con, claim, view, &e, note),
            Err(Failure::Outage(e)) => {
                self.hand_back(con, claim, &view, note)?;
                Err(e)
            }
        }
    }

    /// `f` on the engine, tried again while the engine is away (the connection manager
    /// reconnects by itself), for up to a lease (the claim is this worker's until then).
    fn on_engine<T>(
        &self,
        con: &mut WorkerConnection,
        mut f: impl FnMut(&mut WorkerConnection) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        retrying(self.config.lease, || f(con))
    }

    /// Gives the job back to the queue (see [`Engine::hand_back`]).
    fn hand_back(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        view: &JobView,
        note: &mut dyn FnMut(WorkerNote<'_>),
    ) -> Result<(), QueueError> {
        let id = claim.id.as_str();
        if self.on_engine(con, |c| self.engine.hand_back(c, claim, view))? {
            note(WorkerNote::HandedBack { id });
        } else {
            note(WorkerNote::Lost { id });
        }
        Ok(())
    }

    fn work_file(&self, id: &str, ext: &str) -> PathBuf {
        self.config.work_dir.join(format!("{id}.{ext}"))
    }

    /// The job's plan from its uploads, continuing from its checkpoint `saved` (the object
    /// key a worker that stopped on it recorded); the error is the job's, for its owner.
    fn prepare(
        &self,
        spec: &JobSpec,
        saved: Option<&str>,
        checkpoint: &Path,
    ) -> Result<(neural_style::Plan, bool), Failure> {
        let limits = &self.config.limits;
        let get = |key: &str| {
            retrying(STORE_PATIENCE, || {
                self.runtime.block_on(self.store.get(key))
            })
            .map_err(store_failure)
        };
        let load = |key: &str, name: &str| -> Result<Image, Failure> {
            let bytes = get(key)?
                .ok_or_else(|| format!("{name}: the upload is missing from the store ({key})"))?;
            Ok(limits
                .decode_upload(&bytes, name)
                .map_err(|e| e.to_string())?)
        };
        let content = load(&spec.content, "content")?;
        let styles = spec
            .styles
            .iter()
            .map(|key| load(key, "style"))
            .collect::<Result<Vec<_>, _>>()?;
        let plan = || match &spec.config {
            // A batch's job: its whole configuration, within this worker's limits.
            Some(config) => {
                limits
                    .check_config(config, styles.len())
                    .map_err(|e| e.to_string())?;
                let checked = config
                    .clone()
                    .check(styles.len())
                    .map_err(|e| e.to_string())?;
                crate::api::plan_with(self.net, &checked, None, content.clone(), styles.clone())
            }
            None => crate::api::plan_job(
                self.net,
                self.base,
                self.default_style,
                limits,
                &spec.settings,
                content.clone(),
                styles.clone(),
            ),
        };
        let every = self.config.checkpoint_every;
        let saved = match saved {
            Some(key) => retrying(STORE_PATIENCE, || {
                self.runtime.block_on(self.store.get_file(key, checkpoint))
            })
            .map_err(store_failure)?,
            None => false,
        };
        // A checkpoint that cannot be used (damaged, from other weights) is not fatal: the
        // job starts over.
        if saved
            && let Ok(c) = Checkpoint::load(checkpoint)
            && let Ok(resumed) = plan()?.with_checkpoints(every, Some((c, checkpoint)))
        {
            return Ok((resumed, true));
        }
        Ok(plan()?
            .with_checkpoints(every, None)
            .map(|p| (p, false))
            .map_err(|e| e.to_string())?)
    }

    /// Runs the plan, publishing progress and saving checkpoints to the store. When the
    /// worker is told to quit, the run goes on to its next checkpoint, saves it whatever
    /// the interval, and stops there.
    #[allow(clippy::too_many_arguments)]
    fn optimise(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        plan: &neural_style::Plan,
        view: &mut JobView,
        resumed: bool,
        checkpoint: &Path,
        note: &mut dyn FnMut(WorkerNote<'_>),
    ) -> Result<Ending, String> {
        let id = claim.id.as_str();
        // This start's checkpoints go under a name of their own (see `keys::checkpoint`).
        let key = keys::checkpoint(id, &format!("{:016x}", rand::random::<u64>()));
        let quitting = || self.quit.load(Ordering::SeqCst);
        // Whether the checkpoint for quitting has been tried.
        let mut saved_for_quit = false;
        // Renewed from a thread of its own: a tiled evaluation can take minutes.
        let held = AtomicBool::new(true);
        let stop = AtomicBool::new(false);
        let (finished, done) = std::sync::mpsc::channel::<()>();
        let lease = self.config.lease;
        let mut stride = 1;
        let mut progress = Progress::with_previews_every(PREVIEW_EVERY);
        let mut last_saved: Option<std::time::Instant> = None;
        let mut first = true;
        let output = std::thread::scope(|scope| {
            let (held, stop) = (&held, &stop);
            let renewing = con.clone();
            scope.spawn(move || self.renew_until_done(renewing, claim, lease, held, stop, &done));
            let mut observer = |event: &Event<'_>| {
                if let Event::Checkpoint { checkpoint: state } = event
                    && (quitting()
                        || last_saved
                            .is_none_or(|t| t.elapsed() >= self.config.checkpoint_interval))
                {
                    saved_for_quit = quitting();
                    match self.save_checkpoint(con, claim, state, checkpoint, &key) {
                        Ok(true) => last_saved = Some(std::time::Instant::now()),
                        Ok(false) => held.store(false, Ordering::SeqCst),
                        Err(error) => note(WorkerNote::CheckpointNotSaved { id, error: &error }),
                    }
                }
                if let Some(change) = progress.change(event) {
                    if first && let Change::Evaluation { evaluation, .. } = &change {
                        first = false;
                        if resumed {
                            let from = evaluation.saturating_sub(1);
                            view.resumed_from = Some(from);
                            view.curve.retain(|(e, _)| *e <= from);
                        } else {
                            view.curve.clear();
                        }
                    }
                    let publish = progress::apply(&change, view, &mut stride);
                    if publish {
                        let preview = match &change {
                            Change::Preview(jpeg) => Some(jpeg.as_slice()),
                            _ => None,
                        };
                        // An outage that lasts is the renewing thread's to notice; the
                        // connection comes back by itself.
                        if let Ok(r) = self.engine.renew(con, claim, Some(view), preview) {
                            held.fetch_and(r.held, Ordering::SeqCst);
                            stop.fetch_or(r.stop, Ordering::SeqCst);
                        }
                    }
                }
                let go_on =
                    held.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) && !saved_for_quit;
                if go_on {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            };
            let output = neural_style::run(self.net, plan, &mut observer);
            drop(finished);
            output
        })
        .map_err(|e| e.to_string())?;
        if !held.load(Ordering::SeqCst) {
            return Ok(Ending::Dropped);
        }
        let asked = stop.load(Ordering::SeqCst);
        if output.stopped && !asked {
            // Stopped because this worker is quitting: the job goes on elsewhere.
            return Ok(Ending::HandBack);
        }
        Ok(Ending::Image {
            image: output.image,
            stopped: output.stopped,
        })
    }

    /// Writes `state` to the work folder, puts it in the store at `key` and records it as
    /// the job's checkpoint, deleting the one it replaces. `false`: this worker no longer
    /// holds the claim (its upload is deleted again).
    fn save_checkpoint(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        state: &Checkpoint,
        file: &Path,
        key: &str,
    ) -> Result<bool, QueueError> {
        let local = |e: String| QueueError::WorkFolder {
            path: file.to_path_buf(),
            error: e,
        };
        state.save(file).map_err(|e| local(e.to_string()))?;
        self.runtime.block_on(self.store.put_file(key, file))?;
        let replaced = match self.engine.record_checkpoint(con, claim, key)? {
            None => {
                let _ = self.runtime.block_on(self.store.delete(key));
                return Ok(false);
            }
            Some(replaced) => replaced,
        };
        if let Some(old) = replaced {
            let _ = self.runtime.block_on(self.store.delete(&old));
        }
        Ok(true)
    }

    /// Renews the claim every quarter lease until the run ends; clears `held` when another
    /// worker took the job, sets `stop` when its owner asked.
    #[allow(clippy::too_many_arguments)]
    fn renew_until_done(
        &self,
        mut con: WorkerConnection,
        claim: &Claim,
        lease: Duration,
        held: &AtomicBool,
        stop: &AtomicBool,
        done: &std::sync::mpsc::Receiver<()>,
    ) {
        let every = (lease / 4).max(Duration::from_millis(100));
        // Woken at once when the run ends (its sender is dropped), else every `every`; an
        // outage is waited out (the connection comes back by itself).
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(every) {
            if let Ok(r) = self.engine.renew(&mut con, claim, None, None) {
                held.fetch_and(r.held, Ordering::SeqCst);
                stop.fetch_or(r.stop, Ordering::SeqCst);
            }
        }
    }

    fn fail(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        mut view: JobView,
        error: &str,
        note: &mut dyn FnMut(WorkerNote<'_>),
    ) -> Result<(), QueueError> {
        view.status = Status::Failed;
        view.error = Some(error.to_string());
        view.eta_s = None;
        view.tile = None;
        self.end(con, claim, &view, note)
    }

    /// Writes the final state (if this worker still holds the job) and cleans the store.
    fn end(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        view: &JobView,
        note: &mut dyn FnMut(WorkerNote<'_>),
    ) -> Result<(), QueueError> {
        let id = claim.id.as_str();
        if !self.on_engine(con, |c| self.engine.finish(c, claim, view))? {
            note(WorkerNote::Lost { id });
            return Ok(());
        }
        // The uploads and the checkpoint are no longer needed; the result stays.
        self.runtime.block_on(async {
            for prefix in keys::working_prefixes(id) {
                let _ = self.store.delete_prefix(&prefix).await;
            }
        });
        note(WorkerNote::Ended {
            id,
            status: view.status,
            error: view.error.as_deref(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_of_one_name_are_two_consumers_shown_by_that_name() {
        let (a, b) = (consumer_name("w0#1"), consumer_name("w0#1"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "w0#1#".len() + 16);
        assert_eq!(worker_name(&a), "w0#1");
        assert_eq!(worker_name("plain"), "plain");
    }
}
