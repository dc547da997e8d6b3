//! The job queue: jobs wait in order, a fixed number of worker threads run them on one
//! shared network, each run's progress (loss curve, ETA, preview image) is published to
//! watchers, and results are kept on disk under a size limit (oldest removed first).
//! Jobs do not depend on any connection: a client that goes away loses nothing.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use neural_style::{Event, Image, LossParts, Network, Plan};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::progress::{self, Change, Progress};
use crate::settings::JobSettings;

/// Cancelled and failed jobs remembered (the newest).
const KEPT_WITHOUT_RESULT: usize = 100;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker.
    Queued,
    /// Being optimised.
    Running,
    /// Finished all its evaluations.
    Done,
    /// Stopped early by a client (or the server shutting down); its best image was kept.
    Stopped,
    /// Removed from the queue before it started.
    Cancelled,
    /// The run failed; see `error`.
    Failed,
}

impl Status {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// A job as clients see it (the JSON of the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Its id: 16 hex digits.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// 1-based place in the queue while queued.
    pub position: Option<usize>,
    /// The settings it runs with.
    pub settings: JobSettings,
    /// Seconds since the Unix epoch when it was submitted.
    pub created: u64,
    /// Evaluations done.
    pub evaluation: usize,
    /// Evaluations planned (all sizes together); 0 until the run starts.
    pub evaluations: usize,
    /// `[done, of]` tile passes of the evaluation in progress, when the job's evaluations go
    /// by tiles (a picture larger than memory: each takes minutes).
    #[serde(default)]
    pub tile: Option<(usize, usize)>,
    /// The latest loss.
    pub loss: Option<LossParts>,
    /// `[evaluation, total loss]` pairs, at most a few hundred (thinned evenly).
    pub curve: Vec<(usize, f32)>,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Estimated seconds left.
    pub eta_s: Option<f64>,
    /// Increases with each new preview image; 0: none yet.
    pub preview_version: u64,
    /// Size of the result image, once there is one.
    pub result_size: Option<(u32, u32)>,
    /// Why the job failed.
    pub error: Option<String>,
    /// The worker running it (on the queue across machines, `serve --queue`).
    #[serde(default)]
    pub worker: Option<String>,
    /// Times a worker has started it: more than 1 when a worker died and another one
    /// took it over.
    #[serde(default)]
    pub attempts: u32,
    /// The evaluation a taken-over job continued from (its last checkpoint).
    #[serde(default)]
    pub resumed_from: Option<usize>,
}

impl JobView {
    /// A job just queued.
    pub fn queued(id: String, settings: JobSettings, position: Option<usize>) -> Self {
        Self {
            id,
            status: Status::Queued,
            position,
            settings,
            created: now_s(),
            evaluation: 0,
            evaluations: 0,
            tile: None,
            loss: None,
            curve: Vec::new(),
            elapsed_s: 0.0,
            eta_s: None,
            preview_version: 0,
            result_size: None,
            error: None,
            worker: None,
            attempts: 0,
            resumed_from: None,
        }
    }
}

/// One job.
struct Job {
    view: JobView,
    /// The client token of whoever submitted it; only they see it. `None`: a result saved
    /// by a server older than tokens, which no client sees (its files stay on disk).
    owner: Option<String>,
    /// The run's plan (its settings and images), until a worker takes it.
    plan: Option<Plan>,
    /// Whose share of the queue it counts in (an access token or the client).
    limit: String,
    /// Set to stop the run at its next evaluation.
    stop: Arc<AtomicBool>,
    /// The latest preview (JPEG).
    preview: Option<Arc<Vec<u8>>>,
    /// Every evaluation is recorded in the curve while `evaluation % stride == 0`.
    stride: usize,
    /// Bumped at every published change.
    changed: watch::Sender<u64>,
}

impl Job {
    fn publish(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The queue and its results; shared by the HTTP handlers and the workers.
pub struct Jobs {
    state: Mutex<State>,
    wake: Condvar,
    net: Arc<Network>,
    dir: PathBuf,
    max_queue: usize,
    max_results_bytes: u64,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    /// Ids of queued jobs, first to run first.
    queue: VecDeque<String>,
    /// Ids of all jobs, oldest first.
    order: Vec<String>,
    shutting_down: bool,
}

/// Why a job could not be submitted, stopped or removed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The queue holds `max_queue` jobs already.
    #[error("the queue is full ({0} jobs waiting); try again when one has finished")]
    QueueFull(usize),
    /// No job has this id.
    #[error("no job `{0}`")]
    NotFound(String),
    /// The job is queued or running.
    #[error("job `{0}` has not finished; stop it first")]
    NotFinished(String),
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The queue engine or its store failed (the message says which and why).
    #[error("{0}")]
    Engine(String),
}

/// What is kept beside a result image: enough to show it again after a restart.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    view: JobView,
    #[serde(default)]
    owner: Option<String>,
}

pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `id` looks like one of ours (so it can be part of a file name).
pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Jobs {
    /// A queue running on `net`, keeping results in `dir` (created if missing; results
    /// found there from an earlier run are listed again).
    pub fn new(
        net: Arc<Network>,
        dir: &Path,
        max_queue: usize,
        max_results_bytes: u64,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Find out now, not when the first job is saved, whether results can be written.
        neural_style::image::io::probe_writable(dir)?;
        let jobs = Self {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            net,
            dir: dir.to_path_buf(),
            max_queue,
            max_results_bytes,
        };
        jobs.restore()?;
        Ok(jobs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker that panicked mid-update leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn result_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.png"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Lists the results saved by an earlier server in the same folder.
    fn restore(&self) -> std::io::Result<()> {
        let mut saved: Vec<Saved> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".json")?;
                if !valid_id(id) || !self.result_path(id).is_file() {
                    return None;
                }
                let text = std::fs::read_to_string(e.path()).ok()?;
                let saved: Saved = serde_json::from_str(&text).ok()?;
                (saved.view.id == id && saved.view.status.is_final()).then_some(saved)
            })
            .collect();
        saved.sort_by_key(|s| s.view.created);
        let mut state = self.lock();
        for Saved { view, owner } in saved {
            let id = view.id.clone();
            state.order.push(id.clone());
            state.jobs.insert(
                id,
                Job {
                    view,
                    owner,
                    plan: None,
                    limit: String::new(),
                    stop: Arc::new(AtomicBool::new(false)),
                    preview: None,
                    stride: 1,
                    changed: watch::channel(0).0,
                },
            );
        }
        Ok(())
    }

    /// Queues a job for the client `owner`, within `limit` (a name, an access token or the
    /// client, and its most jobs waiting; 0: no limit of its own); returns its view.
    pub fn submit(
        &self,
        owner: &str,
        settings: JobSettings,
        plan: Plan,
        limit: (&str, usize),
    ) -> Result<JobView, JobError> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(JobError::ShuttingDown);
        }
        if state.queue.len() >= self.max_queue {
            return Err(JobError::QueueFull(state.queue.len()));
        }
        let (name, most) = limit;
        let theirs = state
            .queue
            .iter()
            .filter(|id| state.jobs.get(*id).is_some_and(|j| j.limit == name))
            .count();
        if most > 0 && theirs >= most {
            return Err(JobError::QueueFull(theirs));
        }
        let id = loop {
            let id = format!("{:016x}", rand::random::<u64>());
            if !state.jobs.contains_key(&id) {
                break id;
            }
        };
        let view = JobView::queued(id.clone(), settings, Some(state.queue.len() + 1));
        state.jobs.insert(
            id.clone(),
            Job {
                view: view.clone(),
                owner: Some(owner.to_string()),
                plan: Some(plan),
                limit: name.to_string(),
                stop: Arc::new(AtomicBool::new(false)),
                preview: None,
                stride: 1,
                changed: watch::channel(0).0,
            },
        );
        state.queue.push_back(id.clone());
        state.order.push(id);
        drop(state);
        self.wake.notify_one();
        Ok(view)
    }

    /// A job's current view, if `owner` made it.
    pub fn view(&self, owner: &str, id: &str) -> Option<JobView> {
        owned(&self.lock(), owner, id).map(|j| j.view.clone())
    }

    /// Every job of `owner`, newest first.
    pub fn list(&self, owner: &str) -> Vec<JobView> {
        let state = self.lock();
        state
            .order
            .iter()
            .rev()
            .filter_map(|id| owned(&state, owner, id).map(|j| j.view.clone()))
            .collect()
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self, owner: &str, id: &str) -> Option<watch::Receiver<u64>> {
        owned(&self.lock(), owner, id).map(|j| j.changed.subscribe())
    }

    /// The latest preview image (JPEG) of a job.
    pub fn preview(&self, owner: &str, id: &str) -> Option<Arc<Vec<u8>>> {
        owned(&self.lock(), owner, id).and_then(|j| j.preview.clone())
    }

    /// The result file of a finished job.
    pub fn result(&self, owner: &str, id: &str) -> Option<PathBuf> {
        let state = self.lock();
        let job = owned(&state, owner, id)?;
        job.view.result_size.map(|_| self.result_path(id))
    }

    /// Stops a job: a running one at its next evaluation (keeping its best image), a
    /// queued one at once.
    pub fn stop(&self, owner: &str, id: &str) -> Result<JobView, JobError> {
        let mut state = self.lock();
        let queued = {
            let job = owned(&state, owner, id).ok_or_else(|| JobError::NotFound(id.into()))?;
            job.stop.store(true, Ordering::SeqCst);
            job.view.status == Status::Queued
        };
        if queued {
            state.queue.retain(|q| q != id);
            if let Some(job) = state.jobs.get_mut(id) {
                job.view.status = Status::Cancelled;
                job.view.position = None;
                job.plan = None;
                job.publish();
            }
            renumber(&mut state);
        }
        let view = state.jobs[id].view.clone();
        drop(state);
        self.forget_old_failures();
        Ok(view)
    }

    /// Removes a finished job and its files.
    pub fn remove(&self, owner: &str, id: &str) -> Result<(), JobError> {
        let mut state = self.lock();
        let job = owned(&state, owner, id).ok_or_else(|| JobError::NotFound(id.into()))?;
        if !job.view.status.is_final() {
            return Err(JobError::NotFinished(id.into()));
        }
        state.jobs.remove(id);
        state.order.retain(|o| o != id);
        drop(state);
        let _ = std::fs::remove_file(self.result_path(id));
        let _ = std::fs::remove_file(self.meta_path(id));
        Ok(())
    }

    /// Runs queued jobs until [`Jobs::shut_down`]; call from each worker thread.
    pub fn work(&self) {
        while let Some((id, plan, stop)) = self.next() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(&id, &plan, &stop)
            }));
            drop(plan);
            let (status, error, size) = match outcome {
                Ok(Ok((image, stopped))) => match image.save(&self.result_path(&id)) {
                    Ok(()) => (
                        if stopped {
                            Status::Stopped
                        } else {
                            Status::Done
                        },
                        None,
                        Some((image.width, image.height)),
                    ),
                    Err(e) => (Status::Failed, Some(e.to_string()), None),
                },
                Ok(Err(e)) => (Status::Failed, Some(e.to_string()), None),
                Err(_) => (
                    Status::Failed,
                    Some("internal error: the run panicked".to_string()),
                    None,
                ),
            };
            let view = self.update(&id, |job| {
                job.view.status = status;
                job.view.error = error;
                job.view.result_size = size;
                job.view.eta_s = None;
                job.plan = None;
                true
            });
            self.forget_old_failures();
            if let (Some(view), Some(_)) = (view, size) {
                // A view always serialises; were it not to, the result is listed without it.
                let owner = self.lock().jobs.get(&id).and_then(|j| j.owner.clone());
                if let Ok(saved) = serde_json::to_vec_pretty(&Saved { view, owner }) {
                    let _ = neural_style::image::io::write_atomically(&self.meta_path(&id), &saved);
                }
                self.enforce_disk_limit();
            }
        }
    }

    /// Waits for the next queued job and marks it running.
    fn next(&self) -> Option<(String, Plan, Arc<AtomicBool>)> {
        let mut state = self.lock();
        loop {
            if state.shutting_down {
                return None;
            }
            if let Some(id) = state.queue.pop_front() {
                renumber(&mut state);
                // Every queued job has its plan; anything else is skipped, not fatal.
                let Some(job) = state.jobs.get_mut(&id) else {
                    continue;
                };
                let Some(plan) = job.plan.take() else {
                    continue;
                };
                job.view.status = Status::Running;
                job.view.position = None;
                job.publish();
                return Some((id, plan, job.stop.clone()));
            }
            state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Applies `f` to a job; publishes the change when `f` says so. Returns the new view.
    fn update(&self, id: &str, f: impl FnOnce(&mut Job) -> bool) -> Option<JobView> {
        let mut state = self.lock();
        let job = state.jobs.get_mut(id)?;
        if f(job) {
            job.publish();
        }
        Some(job.view.clone())
    }

    /// Optimises one job, publishing its progress; returns the image and whether it was
    /// stopped early.
    fn run(&self, id: &str, plan: &Plan, stop: &AtomicBool) -> neural_style::Result<(Image, bool)> {
        let mut progress = Progress::new();
        let mut observer = |event: &Event<'_>| {
            if let Some(change) = progress.change(event) {
                self.update(id, |job| {
                    let publish = progress::apply(&change, &mut job.view, &mut job.stride);
                    if let Change::Preview(jpeg) = change {
                        job.preview = Some(Arc::new(jpeg));
                    }
                    publish
                });
            }
            if stop.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let output = neural_style::run(&self.net, plan, &mut observer)?;
        Ok((output.image, output.stopped))
    }

    /// Removes the oldest results until those kept fit in the size limit (the newest one
    /// always stays).
    fn enforce_disk_limit(&self) {
        let mut state = self.lock();
        let size = |id: &str| {
            [self.result_path(id), self.meta_path(id)]
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        let with_results: Vec<String> = state
            .order
            .iter()
            .filter(|id| state.jobs[*id].view.result_size.is_some())
            .cloned()
            .collect();
        let mut total: u64 = with_results.iter().map(|id| size(id)).sum();
        for id in &with_results[..with_results.len().saturating_sub(1)] {
            if total <= self.max_results_bytes {
                break;
            }
            total -= size(id);
            let _ = std::fs::remove_file(self.result_path(id));
            let _ = std::fs::remove_file(self.meta_path(id));
            state.jobs.remove(id);
            state.order.retain(|o| o != id);
        }
    }

    /// Forgets the oldest cancelled and failed jobs (they have no files) past
    /// [`KEPT_WITHOUT_RESULT`], so that a long-running server's list stays bounded.
    fn forget_old_failures(&self) {
        let mut state = self.lock();
        let without: Vec<String> = state
            .order
            .iter()
            .filter(|id| {
                let v = &state.jobs[*id].view;
                v.status.is_final() && v.result_size.is_none()
            })
            .cloned()
            .collect();
        let excess = without.len().saturating_sub(KEPT_WITHOUT_RESULT);
        for id in &without[..excess] {
            state.jobs.remove(id);
            state.order.retain(|o| o != id);
        }
    }

    /// Stops every running job (their best images are saved) and lets the workers return;
    /// queued jobs are cancelled.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        let queued: Vec<String> = state.queue.drain(..).collect();
        for job in state.jobs.values_mut() {
            job.stop.store(true, Ordering::SeqCst);
            if queued.contains(&job.view.id) {
                job.view.status = Status::Cancelled;
                job.view.position = None;
                job.plan = None;
                job.publish();
            }
        }
        drop(state);
        self.wake.notify_all();
    }
}

/// The job `id` if `owner` made it: anyone else's is simply not found.
fn owned<'a>(state: &'a State, owner: &str, id: &str) -> Option<&'a Job> {
    state
        .jobs
        .get(id)
        .filter(|j| j.owner.as_deref() == Some(owner))
}

/// Gives queued jobs their places again after the queue changed.
fn renumber(state: &mut State) {
    let State { jobs, queue, .. } = state;
    for (i, id) in queue.iter().enumerate() {
        if let Some(job) = jobs.get_mut(id)
            && job.view.position != Some(i + 1)
        {
            job.view.position = Some(i + 1);
            job.publish();
        }
    }
}
