//! The server's side of the queue across machines (`serve --queue`): jobs are submitted
//! to the engine with their uploads in the store, and read back from there; the server
//! computes nothing and keeps no state, so it can restart at any moment. One subscription
//! to the engine's progress channels wakes the event streams of the jobs watched here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{OnceCell, watch};

use super::engine::{Removal, Stopping, Submitted};
use super::{Engine, JobSpec, QueueError, Store, keys};
use crate::jobs::{JobError, JobView};
use crate::settings::JobSettings;

/// Most jobs of one client listed.
const LISTED: usize = 500;

/// A job as submitted: its settings (or whole configuration) and its images' bytes.
#[derive(Debug)]
pub struct Upload {
    /// The settings shown in its view.
    pub settings: JobSettings,
    /// The whole configuration (a batch's), else the settings on the worker's base one.
    pub config: Option<neural_style::TransferConfig>,
    /// The photo, as sent.
    pub content: Vec<u8>,
    /// The paintings, as sent.
    pub styles: Vec<Vec<u8>>,
}

/// The queue as the server sees it.
pub struct RemoteJobs {
    engine: Engine,
    store: Store,
    con: OnceCell<ConnectionManager>,
    watchers: Mutex<HashMap<String, watch::Sender<u64>>>,
    max_queue: usize,
}

impl From<QueueError> for JobError {
    fn from(e: QueueError) -> Self {
        JobError::Engine(e.to_string())
    }
}

impl RemoteJobs {
    /// The queue on `engine` with files in `store`: at most `max_queue` jobs waiting.
    /// Connects on first use.
    pub fn new(engine: Engine, store: Store, max_queue: usize) -> Self {
        Self {
            engine,
            store,
            con: OnceCell::new(),
            watchers: Mutex::new(HashMap::new()),
            max_queue,
        }
    }

    async fn con(&self) -> Result<ConnectionManager, JobError> {
        Ok(self
            .con
            .get_or_try_init(|| self.engine.manager())
            .await?
            .clone())
    }

    /// `f` on the engine, tried again (after 0.2, 0.4, 0.8 s) while it fails for a
    /// transient reason: after Redis restarts, the connection manager reconnects, but the
    /// command that met the dead connection fails. Every call made through here is safe to
    /// repeat (reads; submissions carry their idempotency key, stops and removals find
    /// their work done).
    async fn on_engine<T, F, Fut>(&self, f: F) -> Result<T, JobError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, QueueError>>,
    {
        let con = self.con().await?;
        let mut wait = Duration::from_millis(200);
        loop {
            match f(con.clone()).await {
                Err(e) if e.is_transient() && wait <= Duration::from_millis(800) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Listens to the workers' progress until the runtime stops, resubscribing after an
    /// outage (and waking every watcher then, since changes may have been missed).
    pub async fn listen(&self) {
        loop {
            match self.engine.subscribe().await {
                Ok(mut pubsub) => {
                    self.wake_all();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let channel = message.get_channel_name();
                        if let Some(id) = self.engine.id_of_channel(channel) {
                            self.wake(id);
                        }
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Deletes the results older than the engine's retention (their jobs have expired in
    /// Redis by then) and drops expired jobs from the owners' lists, now and every ten
    /// minutes, until the runtime stops. Nothing with a retention of 0 (for ever).
    pub async fn sweep(&self) {
        let keep = self.engine.retention_s();
        if keep == 0 {
            return;
        }
        let age = Duration::from_secs(keep);
        loop {
            // An outage of the store or the engine is tried again at the next round.
            let _ = self.store.delete_older_than("results/", age).await;
            if let Ok(mut con) = self.con().await {
                let _ = self.engine.prune_owner_lists(&mut con).await;
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, id: &str) {
        if let Some(tx) = self.lock().get(id) {
            tx.send_modify(|v| *v += 1);
        }
    }

    fn wake_all(&self) {
        for tx in self.lock().values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Queues a job: its uploads go to the store first, then the job to the engine. A
    /// retried request with the same `idempotency` key gets the first job back; `limit`
    /// is the client's share of the queue (a name and its most jobs waiting, 0: none).
    pub async fn submit(
        &self,
        owner: &str,
        upload: Upload,
        idempotency: Option<&str>,
        limit: (&str, usize),
    ) -> Result<JobView, JobError> {
        let Upload {
            settings,
            config,
            content,
            styles,
        } = upload;
        let engine = &self.engine;
        // A retried submission finds its job before anything is uploaded again.
        if let Some(key) = idempotency {
            let found = self
                .on_engine(
                    |mut con| async move { engine.idempotent_job(&mut con, owner, key).await },
                )
                .await?;
            if let Some(existing) = found {
                let view = self.view(owner, &existing).await?;
                return view.ok_or(JobError::NotFound(existing));
            }
        }
        let id = format!("{:016x}", rand::random::<u64>());
        // Whatever fails from here on takes this job's uploads with it: no orphans.
        let queued = self
            .upload_and_queue(
                owner,
                &id,
                (settings, config, content, styles),
                idempotency,
                limit,
            )
            .await;
        let submitted = match queued {
            Ok(submitted) => submitted,
            Err(e) => {
                self.delete_files(&id).await;
                return Err(e);
            }
        };
        let id = match submitted {
            Submitted::New(id) => id,
            Submitted::Existing(existing) => {
                self.delete_files(&id).await;
                existing
            }
            Submitted::Full(waiting) => {
                self.delete_files(&id).await;
                return Err(JobError::QueueFull(waiting));
            }
        };
        let view = self.view(owner, &id).await?;
        view.ok_or(JobError::NotFound(id))
    }

    /// Puts the uploads of job `id` in the store, then queues it.
    async fn upload_and_queue(
        &self,
        owner: &str,
        id: &str,
        (settings, config, content, styles): (
            JobSettings,
            Option<neural_style::TransferConfig>,
            Vec<u8>,
            Vec<Vec<u8>>,
        ),
        idempotency: Option<&str>,
        limit: (&str, usize),
    ) -> Result<Submitted, JobError> {
        let content_key = keys::input(id, "content");
        self.store.put(&content_key, content).await?;
        let mut style_keys = Vec::new();
        for (k, bytes) in styles.into_iter().enumerate() {
            let key = keys::input(id, &format!("style-{k}"));
            self.store.put(&key, bytes).await?;
            style_keys.push(key);
        }
        let spec = JobSpec {
            settings: settings.clone(),
            config,
            content: content_key,
            styles: style_keys,
        };
        let view = JobView::queued(id.to_string(), settings, None);
        let engine = &self.engine;
        let (spec, view) = (&spec, &view);
        self.on_engine(|mut con| async move {
            let max_queue = self.max_queue;
            engine
                .submit(&mut con, owner, view, spec, idempotency, max_queue, limit)
                .await
        })
        .await
    }

    async fn delete_files(&self, id: &str) {
        for prefix in keys::working_prefixes(id) {
            let _ = self.store.delete_prefix(&prefix).await;
        }
        let _ = self.store.delete(&keys::result(id)).await;
    }

    /// A job's view, if `owner` made it.
    pub async fn view(&self, owner: &str, id: &str) -> Result<Option<JobView>, JobError> {
        let ids = &[id.to_string()];
        let views = self
            .on_engine(|mut con| async move { self.engine.views(&mut con, owner, ids).await })
            .await?;
        Ok(views.into_iter().next())
    }

    /// Every job of `owner`, newest first.
    pub async fn list(&self, owner: &str) -> Result<Vec<JobView>, JobError> {
        self.on_engine(|mut con| async move {
            let ids = self.engine.ids(&mut con, owner, LISTED).await?;
            self.engine.views(&mut con, owner, &ids).await
        })
        .await
    }

    /// A receiver that changes whenever the job does.
    pub async fn watch(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<watch::Receiver<u64>>, JobError> {
        if self.view(owner, id).await?.is_none() {
            return Ok(None);
        }
        let mut watchers = self.lock();
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        Ok(Some(
            watchers
                .entry(id.to_string())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
        ))
    }

    /// The latest preview (JPEG).
    pub async fn preview(&self, owner: &str, id: &str) -> Result<Option<Vec<u8>>, JobError> {
        self.on_engine(|mut con| async move { self.engine.preview(&mut con, owner, id).await })
            .await
    }

    /// The result image (PNG) of a finished job.
    pub async fn result(&self, owner: &str, id: &str) -> Result<Option<Vec<u8>>, JobError> {
        let has_result = self
            .view(owner, id)
            .await?
            .is_some_and(|v| v.result_size.is_some());
        if !has_result {
            return Ok(None);
        }
        Ok(self.store.get(&keys::result(id)).await?)
    }

    /// Stops a job (a queued one at once, its uploads deleted; a running one at its
    /// worker's next renewal).
    pub async fn stop(&self, owner: &str, id: &str) -> Result<JobView, JobError> {
        let stopping = self
            .on_engine(|mut con| async move { self.engine.stop(&mut con, owner, id).await })
            .await?;
        match stopping {
            Stopping::NotFound => return Err(JobError::NotFound(id.into())),
            Stopping::Cancelled => self.delete_files(id).await,
            Stopping::Asked => {}
        }
        self.view(owner, id)
            .await?
            .ok_or_else(|| JobError::NotFound(id.into()))
    }

    /// Removes a finished job and its files.
    pub async fn remove(&self, owner: &str, id: &str) -> Result<(), JobError> {
        let removal = self
            .on_engine(|mut con| async move { self.engine.remove(&mut con, owner, id).await })
            .await?;
        match removal {
            Removal::NotFound => Err(JobError::NotFound(id.into())),
            Removal::NotFinished => Err(JobError::NotFinished(id.into())),
            Removal::Removed => {
                self.delete_files(id).await;
                Ok(())
            }
        }
    }
}
