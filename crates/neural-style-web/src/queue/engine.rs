//! The queue's engine: Redis. Jobs wait as entries of one stream read by the consumer
//! group `workers` (`XREADGROUP`); a worker's claim is the entry pending under its name,
//! renewed by `XCLAIM` and taken over by another worker with `XAUTOCLAIM` once it has
//! not been renewed for the lease. Each job is a hash (settings, view, owner, status, its
//! stream entry, its latest checkpoint);
//! every write a worker makes is a Lua script that first checks it still holds the claim.
//!
//! Keys, under a prefix (`neural-style` unless the URL's fragment names another):
//! `{p}:jobs` (the stream), `{p}:job:{id}` (hash), `{p}:preview:{id}` (JPEG),
//! `{p}:waiting` and `{p}:waiting:{limit}` (queued ids by submission order, all and per
//! access token or client),
//! `{p}:owner:{owner}` (ids by time), `{p}:idem:{owner}:{key}` (idempotency keys, 7 days),
//! `{p}:seq`; progress is published on `{p}:ev:{id}`. Every script declares each key it
//! touches (a job's share keys are read from its hash first), as Redis Cluster and ACL
//! key patterns need. A job ended (or cancelled while queued) expires with its preview
//! and idempotency key after the retention written into its hash at submission; the
//! server's sweep drops expired ids from the owners' lists.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::{JobSpec, QueueError};
use crate::jobs::{JobView, Status};

/// The consumer group every worker reads the stream in.
const GROUP: &str = "workers";
/// How long an idempotency key is remembered.
const IDEMPOTENCY_S: u64 = 7 * 24 * 3600;
/// How long a worker waits on the stream before looking for abandoned jobs again.
const BLOCK_MS: u64 = 1000;
/// The idle time a handed-back entry is given: past the longest lease (a day), so that
/// any worker's `XAUTOCLAIM` takes it at once.
const HANDED_BACK_IDLE_MS: u64 = 2 * 24 * 3600 * 1000;

/// The claim check every worker script starts with: whether the stream entry (KEYS[1],
/// ARGV[1]) is pending under this worker (ARGV[2]).
const HELD_FN: &str = r"
local function held()
  local p = redis.call('XPENDING', KEYS[1], 'workers', ARGV[1], ARGV[1], 1)
  return #p > 0 and p[1][2] == ARGV[2]
end";

/// A worker's script: [`HELD_FN`], then `body`. The scripts are made once (each holds
/// its SHA-1, which `EVALSHA` sends).
fn held_script(body: &str) -> Script {
    Script::new(&format!("{HELD_FN}\n{body}"))
}

/// Marks a claimed job running (see [`Engine::start`]).
static START: LazyLock<Script> = LazyLock::new(|| {
    held_script(
        r"if not held() then return {0} end
local status = redis.call('HGET', KEYS[2], 'status')
local entry = redis.call('HGET', KEYS[2], 'entry')
if (status ~= 'queued' and status ~= 'running') or (entry and entry ~= ARGV[1]) then
  redis.call('XACK', KEYS[1], 'workers', ARGV[1])
  redis.call('XDEL', KEYS[1], ARGV[1])
  return {0}
end
if not entry then redis.call('HSET', KEYS[2], 'entry', ARGV[1]) end
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
local strikes = redis.call('HINCRBY', KEYS[2], 'strikes', 1)
redis.call('HSET', KEYS[2], 'status', 'running', 'worker', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('PUBLISH', ARGV[5], '1')
return {1, attempts, redis.call('HGET', KEYS[2], 'spec'), redis.call('HGET', KEYS[2], 'view'),
  redis.call('HGET', KEYS[2], 'checkpoint'), strikes}",
    )
});

/// Renews a claim, with progress (see [`Engine::renew`]).
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    held_script(
        r"if not held() then return {0, 0} end
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[2], 0, ARGV[1], 'JUSTID')
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'view', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4]) end
if ARGV[3] ~= '' or ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[5], '1') end
if redis.call('HEXISTS', KEYS[2], 'stop') == 1 then return {1, 1} end
return {1, 0}",
    )
});

/// Ends a claimed job (see [`Engine::finish`]).
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    held_script(
        r"if not held() then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[3], 'view', ARGV[4])
redis.call('XACK', KEYS[1], 'workers', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local keep = tonumber(redis.call('HGET', KEYS[2], 'retain') or '0')
if keep and keep > 0 then
  for i = 2, #KEYS do redis.call('EXPIRE', KEYS[i], keep) end
end
redis.call('PUBLISH', ARGV[5], '1')
return 1",
    )
});

/// Names a job's latest checkpoint (see [`Engine::record_checkpoint`]).
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    held_script(
        r"if not held() then return {0, ''} end
local old = redis.call('HGET', KEYS[2], 'checkpoint')
redis.call('HSET', KEYS[2], 'checkpoint', ARGV[3], 'strikes', 0)
return {1, old or ''}",
    )
});

/// Hands a claimed job back (see [`Engine::hand_back`]).
static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
    held_script(
        r"if not held() then return 0 end
redis.call('HINCRBY', KEYS[2], 'attempts', -1)
redis.call('HINCRBY', KEYS[2], 'strikes', -1)
redis.call('HSET', KEYS[2], 'status', 'queued', 'view', ARGV[3])
redis.call('HDEL', KEYS[2], 'worker')
redis.call('XCLAIM', KEYS[1], 'workers', ARGV[2], 0, ARGV[1], 'IDLE', ARGV[4], 'JUSTID')
redis.call('PUBLISH', ARGV[5], '1')
return 1",
    )
});

/// A worker's connection to the engine ([`Engine::connect`]): a connection manager and
/// the runtime that drives it, for blocking calls from any of the worker's threads.
#[derive(Clone)]
pub struct WorkerConnection {
    manager: redis::aio::ConnectionManager,
    runtime: tokio::runtime::Handle,
}

/// A job taken from the stream by one worker.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The stream entry.
    pub entry: String,
    /// The job's id.
    pub id: String,
    /// The worker's name (its consumer in the group).
    pub consumer: String,
    /// Whether it was taken over from a worker that stopped renewing its claim.
    pub taken_over: bool,
}

/// A claimed job, started.
#[derive(Debug)]
pub struct Started {
    /// The times a worker has started it (this one included).
    pub attempts: u32,
    /// The starts since the job last saved a checkpoint (this one included): workers that
    /// stopped on it without it making progress. A worker killed while the job goes on
    /// from checkpoint to checkpoint is not the job's fault; one that dies again and
    /// again before the next checkpoint may be.
    pub strikes: u32,
    /// What to run, or why its stored settings cannot be read (a poison job: it is failed
    /// once with that reason, never retried).
    pub spec: Result<JobSpec, String>,
    /// Its view so far (a fresh one when the stored view cannot be read).
    pub view: JobView,
    /// The object key of its latest checkpoint, when a worker saved one.
    pub checkpoint: Option<String>,
}

/// What a renewal of a claim learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// The worker still holds the claim (else another one took the job over: drop it).
    pub held: bool,
    /// The job's owner asked it to stop.
    pub stop: bool,
}

/// What a submission did.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new job with this id.
    New(String),
    /// The idempotency key named this job already: nothing was queued.
    Existing(String),
    /// The queue (or the client's share of it) is full: this many wait.
    Full(usize),
}

/// What a stop request did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopping {
    /// No such job of this client.
    NotFound,
    /// The job was queued: it is cancelled.
    Cancelled,
    /// The job runs (or has ended): its worker stops it at its next renewal.
    Asked,
}

/// What a removal found.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// No such job of this client.
    NotFound,
    /// The job is queued or running.
    NotFinished,
    /// Gone.
    Removed,
}

/// The engine's client and key prefix.
#[derive(Clone)]
pub struct Engine {
    client: redis::Client,
    prefix: String,
    shown: String,
    /// Seconds a finished job is kept (its hash, preview and idempotency key; 0: for
    /// ever), written into each job submitted.
    retention_s: u64,
}

/// Keys of a job's that its hash names: its client's share of the waiting queue and its
/// idempotency key. Read before a script that touches them, so that every script
/// declares each key it touches (Redis Cluster, ACL key patterns).
struct ShareKeys {
    waiting: String,
    idempotency: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.shown)
    }
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

impl Engine {
    /// The engine at `url` (`redis://host:port/db`, `rediss://user:password@host` for TLS;
    /// `#name` at the end sets the key prefix). Nothing is connected yet.
    pub fn open(url: &str) -> Result<Self, QueueError> {
        let shown = redacted(url);
        let refuse = |reason: String| QueueError::QueueUrl {
            url: shown.clone(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| refuse(format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
            return Err(refuse(format!(
                "`{}` is not a Redis URL; use redis://host:port (or rediss:// for TLS)",
                parsed.scheme()
            )));
        }
        let prefix = parsed
            .fragment()
            .filter(|f| !f.is_empty())
            .unwrap_or("neural-style")
            .to_string();
        let mut bare = parsed.clone();
        bare.set_fragment(None);
        let client = redis::Client::open(bare.as_str())
            .map_err(|e| refuse(e.to_string().replace(url, &shown)))?;
        Ok(Self {
            client,
            prefix,
            shown,
            retention_s: 0,
        })
    }

    /// Keeps each job submitted from now on for `retention` after it ends (its hash,
    /// preview and idempotency key expire then); `None`: for ever.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention_s = retention.map_or(0, |d| d.as_secs().max(1));
        self
    }

    /// Seconds a finished job is kept (0: for ever).
    pub fn retention_s(&self) -> u64 {
        self.retention_s
    }

    /// A job's share keys (see [`ShareKeys`]), read from its hash; a key of this prefix
    /// that holds nothing stands in for one the job has not.
    fn share_keys(&self, con: &mut WorkerConnection, id: &str) -> Result<ShareKeys, QueueError> {
        con.runtime
            .clone()
            .block_on(self.share_keys_async(&mut con.manager, id))
    }

    fn shares_of(&self, limit: Option<String>, idem: Option<String>) -> ShareKeys {
        let none = format!("{}:none", self.prefix);
        ShareKeys {
            waiting: limit.map_or_else(
                || none.clone(),
                |l| format!("{}{l}", self.owner_waiting_prefix()),
            ),
            idempotency: idem.unwrap_or(none),
        }
    }

    /// Runs a worker's script invocation on its connection.
    fn invoke<T: redis::FromRedisValue>(
        &self,
        con: &mut WorkerConnection,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        con.runtime
            .block_on(call.invoke_async(&mut con.manager))
            .map_err(|e| self.error(e))
    }

    /// [`Engine::share_keys`] for the server.
    async fn share_keys_async(
        &self,
        con: &mut redis::aio::ConnectionManager,
        id: &str,
    ) -> Result<ShareKeys, QueueError> {
        let (limit, idem): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.job(id))
            .arg("limit")
            .arg("idem")
            .query_async(con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(self.shares_of(limit, idem))
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn error(&self, source: redis::RedisError) -> QueueError {
        QueueError::Engine {
            url: self.shown.clone(),
            source,
        }
    }

    fn stream(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn preview_key(&self, id: &str) -> String {
        format!("{}:preview:{id}", self.prefix)
    }

    fn waiting(&self) -> String {
        format!("{}:waiting", self.prefix)
    }

    fn owner_waiting_prefix(&self) -> String {
        format!("{}:waiting:", self.prefix)
    }

    fn owner_jobs(&self, owner: &str) -> String {
        format!("{}:owner:{owner}", self.prefix)
    }

    fn channel(&self, id: &str) -> String {
        format!("{}:ev:{id}", self.prefix)
    }

    /// The pattern of every job's progress channel.
    pub fn channels(&self) -> String {
        format!("{}:ev:*", self.prefix)
    }

    /// The job id a progress channel is about.
    pub fn id_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix(":ev:")
    }

    // ---- the worker's side (blocking calls on a runtime's connection manager) ----

    /// The worker's connection: the redis crate's connection manager, which reconnects by
    /// itself after an outage, driven by `runtime` (a multi-threaded one, so that the
    /// worker's renewing thread is served while its main thread computes). The consumer
    /// group is made if missing.
    pub fn connect(
        &self,
        runtime: &tokio::runtime::Handle,
    ) -> Result<WorkerConnection, QueueError> {
        // A command may wait on a blocking read of the stream (a second), so the answer's
        // timeout is well past it.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_millis(BLOCK_MS + 10_000)));
        let client = self.client.clone();
        let mut manager = runtime
            .block_on(redis::aio::ConnectionManager::new_with_config(
                client, config,
            ))
            .map_err(|e| self.error(e))?;
        self.group_made(runtime.block_on(self.make_group().query_async(&mut manager)))?;
        Ok(WorkerConnection {
            manager,
            runtime: runtime.clone(),
        })
    }

    /// `XGROUP CREATE` of the workers' group (and the stream), for every connection.
    fn make_group(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(self.stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        cmd
    }

    /// [`Engine::make_group`]'s answer: a group that exists already is fine.
    fn group_made(&self, made: redis::RedisResult<()>) -> Result<(), QueueError> {
        match made {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(|e| self.error(e)),
        }
    }

    /// The next job for `consumer`: one whose worker has not renewed its claim for
    /// `lease`, else a new one (waiting up to a second). `None`: nothing to do now.
    /// `cursor` is where the scan for abandoned jobs goes on (`XAUTOCLAIM` looks at a few
    /// pending entries a call): the worker keeps it between calls, so that every pending
    /// entry is looked at in turn however many jobs are running.
    pub fn claim(
        &self,
        con: &mut WorkerConnection,
        consumer: &str,
        lease: Duration,
        cursor: &mut String,
    ) -> Result<Option<Claim>, QueueError> {
        use redis::AsyncCommands;
        let (manager, runtime) = (&mut con.manager, &con.runtime);
        use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions};
        let claim = |found: StreamId, taken_over| Claim {
            id: found.get::<String>("id").unwrap_or_default(),
            entry: found.id,
            consumer: consumer.to_string(),
            taken_over,
        };
        let abandoned: redis::streams::StreamAutoClaimReply = runtime
            .block_on(manager.xautoclaim_options(
                self.stream(),
                GROUP,
                consumer,
                lease.as_millis() as u64,
                cursor.as_str(),
                StreamAutoClaimOptions::default().count(1),
            ))
            .map_err(|e| self.error(e))?;
        *cursor = abandoned.next_stream_id;
        if let Some(found) = abandoned.claimed.into_iter().next() {
            return Ok(Some(claim(found, true)));
        }
        let options = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(1)
            .block(BLOCK_MS as usize);
        let read: Option<redis::streams::StreamReadReply> = runtime
            .block_on(manager.xread_options(&[self.stream()], &[">"], &options))
            .map_err(|e| self.error(e))?;
        Ok(read
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .next()
            .map(|found| claim(found, false)))
    }

    /// Marks a claimed job running and returns what to run; `None` when it is no longer
    /// to be run (cancelled or removed while queued, or finished by a worker that lost
    /// its claim late) or the entry is not the job's own (a second entry for its id: the
    /// job hash names the entry it was queued with): the entry is then dropped from the
    /// stream.
    pub fn start(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
    ) -> Result<Option<Started>, QueueError> {
        let script = &*START;
        let shares = self.share_keys(con, &claim.id)?;
        let reply: Vec<Value> = self.invoke(
            con,
            script
                .key(self.stream())
                .key(self.job(&claim.id))
                .key(self.waiting())
                .key(&shares.waiting)
                .arg(&claim.entry)
                .arg(&claim.consumer)
                .arg(&claim.id)
                .arg(self.owner_waiting_prefix())
                .arg(self.channel(&claim.id)),
        )?;
        let [_, attempts, spec, view, checkpoint, strikes] = reply.as_slice() else {
            return Ok(None);
        };
        let checkpoint = redis::from_redis_value::<Option<String>>(checkpoint.clone())
            .unwrap_or(None)
            .filter(|key| !key.is_empty());
        let int = |v: &Value| redis::from_redis_value::<i64>(v.clone()).unwrap_or(0);
        let text = |v: &Value| redis::from_redis_value::<String>(v.clone()).unwrap_or_default();
        let unreadable = |what: &str, e: serde_json::Error| {
            format!("its {what} cannot be read ({e}); the job is not tried")
        };
        let (view, bad_view) = match serde_json::from_str::<JobView>(&text(view)) {
            Ok(view) => (view, None),
            Err(e) => (
                JobView::queued(claim.id.clone(), Default::default(), None),
                Some(unreadable("view", e)),
            ),
        };
        let spec =
            serde_json::from_str::<JobSpec>(&text(spec)).map_err(|e| unreadable("settings", e));
        let spec = match bad_view {
            Some(reason) => Err(reason),
            None => spec,
        };
        let mut view = view;
        let attempts = u32::try_from(int(attempts)).unwrap_or(u32::MAX);
        let strikes = u32::try_from(int(strikes)).unwrap_or(u32::MAX);
        view.status = Status::Running;
        view.position = None;
        view.worker = Some(super::worker::worker_name(&claim.consumer).to_string());
        view.attempts = attempts;
        Ok(Some(Started {
            attempts,
            strikes,
            spec,
            view,
            checkpoint,
        }))
    }

    /// Renews the claim; with a view (and a preview), also publishes the job's progress.
    pub fn renew(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        view: Option<&JobView>,
        preview: Option<&[u8]>,
    ) -> Result<Renewal, QueueError> {
        let script = &*RENEW;
        let view = match view {
            Some(v) => serde_json::to_string(v).unwrap_or_default(),
            None => String::new(),
        };
        let (held, stop): (i64, i64) = self.invoke(
            con,
            script
                .key(self.stream())
                .key(self.job(&claim.id))
                .key(self.preview_key(&claim.id))
                .arg(&claim.entry)
                .arg(&claim.consumer)
                .arg(view)
                .arg(preview.unwrap_or_default())
                .arg(self.channel(&claim.id)),
        )?;
        Ok(Renewal {
            held: held == 1,
            stop: stop == 1,
        })
    }

    /// Ends a claimed job with `view` (its final status): returns `false`, changing
    /// nothing, when the worker no longer holds the claim.
    pub fn finish(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        view: &JobView,
    ) -> Result<bool, QueueError> {
        let script = &*FINISH;
        let status = serde_json::to_value(view.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let shares = self.share_keys(con, &claim.id)?;
        let done: i64 = self.invoke(
            con,
            script
                .key(self.stream())
                .key(self.job(&claim.id))
                .key(self.preview_key(&claim.id))
                .key(&shares.idempotency)
                .arg(&claim.entry)
                .arg(&claim.consumer)
                .arg(status)
                .arg(serde_json::to_string(view).unwrap_or_default())
                .arg(self.channel(&claim.id)),
        )?;
        Ok(done == 1)
    }

    /// Names `key` the job's checkpoint to resume from, if this worker still holds the
    /// claim: `Ok(None)` when it does not (the caller deletes its own upload), else the
    /// key it replaces (the caller deletes that one), if any.
    pub fn record_checkpoint(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        key: &str,
    ) -> Result<Option<Option<String>>, QueueError> {
        let (held, old): (i64, String) = self.invoke(
            con,
            RECORD
                .key(self.stream())
                .key(self.job(&claim.id))
                .arg(&claim.entry)
                .arg(&claim.consumer)
                .arg(key),
        )?;
        Ok((held == 1).then(|| Some(old).filter(|o| !o.is_empty() && o != key)))
    }

    /// Gives a claimed job back to the queue at once (its worker stops on a signal, after
    /// saving its checkpoint): the entry's idle time is set past any lease, so the next
    /// worker that looks takes it over, and this start is not counted as an attempt.
    /// `false`, changing nothing, when the worker no longer holds the claim.
    pub fn hand_back(
        &self,
        con: &mut WorkerConnection,
        claim: &Claim,
        view: &JobView,
    ) -> Result<bool, QueueError> {
        let mut view = view.clone();
        view.status = Status::Queued;
        view.worker = None;
        view.attempts = view.attempts.saturating_sub(1);
        view.eta_s = None;
        view.tile = None;
        let given: i64 = self.invoke(
            con,
            HAND_BACK
                .key(self.stream())
                .key(self.job(&claim.id))
                .arg(&claim.entry)
                .arg(&claim.consumer)
                .arg(serde_json::to_string(&view).unwrap_or_default())
                .arg(HANDED_BACK_IDLE_MS)
                .arg(self.channel(&claim.id)),
        )?;
        Ok(given == 1)
    }

    // ---- the server's side (async) ----

    /// A connection for the server, reconnecting by itself after the engine comes back;
    /// the consumer group is made if missing.
    pub async fn manager(&self) -> Result<redis::aio::ConnectionManager, QueueError> {
        // Two reconnection tries (0.1 and 0.2 s apart) a command: a request made while
        // the engine is away fails within seconds (the server tries it again a few times
        // itself) instead of waiting out six tries.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut con = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| self.error(e))?;
        self.group_made(self.make_group().query_async(&mut con).await)?;
        Ok(con)
    }

    /// A subscription to every job's progress channel.
    pub async fn subscribe(&self) -> Result<redis::aio::PubSub, QueueError> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| self.error(e))?;
        pubsub
            .psubscribe(self.channels())
            .await
            .map_err(|e| self.error(e))?;
        Ok(pubsub)
    }

    /// Queues a job of `owner` (`view` queued, `spec` what to run), unless `idempotency`
    /// names one already; refuses past `max_queue` waiting (all clients) or past the
    /// jobs waiting under `limit`'s name (an access token or the client; 0: no limit).
    #[allow(clippy::too_many_arguments)]
    pub async fn submit(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        view: &JobView,
        spec: &JobSpec,
        idempotency: Option<&str>,
        max_queue: usize,
        limit: (&str, usize),
    ) -> Result<Submitted, QueueError> {
        let script = Script::new(
            r"
local existing = redis.call('GET', KEYS[1])
if existing then return {'existing', existing} end
local all = redis.call('ZCARD', KEYS[4])
if all >= tonumber(ARGV[6]) then return {'full', tostring(all)} end
local mine = redis.call('ZCARD', KEYS[7])
if tonumber(ARGV[7]) > 0 and mine >= tonumber(ARGV[7]) then return {'full', tostring(mine)} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[8])
redis.call('HSET', KEYS[2], 'spec', ARGV[2], 'view', ARGV[3], 'owner', ARGV[4], 'status', 'queued', 'limit', ARGV[9], 'idem', KEYS[1], 'retain', ARGV[10])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
local seq = redis.call('INCR', KEYS[6])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
redis.call('ZADD', KEYS[7], seq, ARGV[1])
local entry = redis.call('XADD', KEYS[5], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[2], 'entry', entry)
return {'new', ARGV[1]}",
        );
        let idem_key = match idempotency {
            Some(key) => self.idempotency_key(owner, key),
            None => format!("{}:idem:-:{}", self.prefix, view.id),
        };
        let (kind, value): (String, String) = script
            .key(idem_key)
            .key(self.job(&view.id))
            .key(self.owner_jobs(owner))
            .key(self.waiting())
            .key(self.stream())
            .key(format!("{}:seq", self.prefix))
            .key(format!("{}{}", self.owner_waiting_prefix(), limit.0))
            .arg(&view.id)
            .arg(serde_json::to_string(spec).unwrap_or_default())
            .arg(serde_json::to_string(view).unwrap_or_default())
            .arg(owner)
            .arg(view.created)
            .arg(max_queue)
            .arg(limit.1)
            .arg(IDEMPOTENCY_S)
            .arg(limit.0)
            .arg(self.retention_s)
            .invoke_async(con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(match kind.as_str() {
            "existing" => Submitted::Existing(value),
            "full" => Submitted::Full(value.parse().unwrap_or(0)),
            _ => Submitted::New(value),
        })
    }

    fn idempotency_key(&self, owner: &str, key: &str) -> String {
        format!("{}:idem:{owner}:{key}", self.prefix)
    }

    /// The job that `owner`'s idempotency `key` names, if any.
    pub async fn idempotent_job(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        key: &str,
    ) -> Result<Option<String>, QueueError> {
        redis::cmd("GET")
            .arg(self.idempotency_key(owner, key))
            .query_async(con)
            .await
            .map_err(|e| self.error(e))
    }

    /// The views of `ids` that `owner` made (others are left out), in that order.
    pub async fn views(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        ids: &[String],
    ) -> Result<Vec<JobView>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HMGET")
                .arg(self.job(id))
                .arg("owner")
                .arg("status")
                .arg("view");
            pipe.cmd("ZRANK").arg(self.waiting()).arg(id);
        }
        type Row = (Option<String>, Option<String>, Option<String>);
        let replies: Vec<Value> = pipe.query_async(con).await.map_err(|e| self.error(e))?;
        let mut views = Vec::new();
        let mut expired = Vec::new();
        for (pair, id) in replies.chunks(2).zip(ids) {
            let [row, rank] = pair else { continue };
            let Ok((who, status, view)) = redis::from_redis_value::<Row>(row.clone()) else {
                continue;
            };
            if who.is_none() && status.is_none() && view.is_none() {
                expired.push(id);
                continue;
            }
            if who.as_deref() != Some(owner) {
                continue;
            }
            let Some(mut view) = view.and_then(|v| serde_json::from_str::<JobView>(&v).ok()) else {
                continue;
            };
            if let Some(status) = status.and_then(|s| serde_json::from_value(s.into()).ok()) {
                view.status = status;
            }
            let rank: Option<usize> = redis::from_redis_value(rank.clone()).unwrap_or(None);
            view.position = (view.status == Status::Queued)
                .then(|| rank.map(|r| r + 1))
                .flatten();
            views.push(view);
        }
        // Jobs past their retention leave the owner's list as it is read.
        if !expired.is_empty() {
            redis::cmd("ZREM")
                .arg(self.owner_jobs(owner))
                .arg(&expired)
                .query_async::<()>(con)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(views)
    }

    /// Drops from every owner's list the jobs that have expired (past their retention),
    /// so that a client who never comes back leaves nothing behind; returns how many.
    pub async fn prune_owner_lists(
        &self,
        con: &mut redis::aio::ConnectionManager,
    ) -> Result<usize, QueueError> {
        let mut lists: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.owner_jobs("*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(con)
                .await
                .map_err(|e| self.error(e))?;
            lists.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut pruned = 0;
        for list in lists {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&list)
                .arg(0)
                .arg(-1)
                .query_async(con)
                .await
                .map_err(|e| self.error(e))?;
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("EXISTS").arg(self.job(id));
            }
            let exists: Vec<bool> = pipe.query_async(con).await.map_err(|e| self.error(e))?;
            let gone: Vec<&String> = ids
                .iter()
                .zip(exists)
                .filter(|(_, e)| !e)
                .map(|(id, _)| id)
                .collect();
            if !gone.is_empty() {
                redis::cmd("ZREM")
                    .arg(&list)
                    .arg(&gone)
                    .query_async::<()>(con)
                    .await
                    .map_err(|e| self.error(e))?;
                pruned += gone.len();
            }
        }
        Ok(pruned)
    }

    /// The ids of `owner`'s jobs, newest first (at most `max`).
    pub async fn ids(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        max: usize,
    ) -> Result<Vec<String>, QueueError> {
        redis::cmd("ZREVRANGE")
            .arg(self.owner_jobs(owner))
            .arg(0)
            .arg(max.saturating_sub(1))
            .query_async(con)
            .await
            .map_err(|e| self.error(e))
    }

    /// Asks a job of `owner` to stop: a queued one is cancelled at once (and kept for the
    /// retention), a running one stops at its worker's next renewal.
    pub async fn stop(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        id: &str,
    ) -> Result<Stopping, QueueError> {
        let script = Script::new(
            r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'stop', '1')
local cancelled = 1
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled')
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  local keep = tonumber(redis.call('HGET', KEYS[1], 'retain') or '0')
  if keep and keep > 0 then
    for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], keep) end
    redis.call('EXPIRE', KEYS[1], keep)
  end
  cancelled = 2
end
redis.call('PUBLISH', ARGV[3], '1')
return cancelled",
        );
        let shares = self.share_keys_async(con, id).await?;
        let found: i64 = script
            .key(self.job(id))
            .key(self.waiting())
            .key(&shares.waiting)
            .key(self.preview_key(id))
            .key(&shares.idempotency)
            .arg(owner)
            .arg(id)
            .arg(self.channel(id))
            .invoke_async(con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(match found {
            0 => Stopping::NotFound,
            2 => Stopping::Cancelled,
            _ => Stopping::Asked,
        })
    }

    /// Forgets a finished job of `owner`, and its idempotency key (its files are the
    /// caller's to delete).
    pub async fn remove(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        id: &str,
    ) -> Result<Removal, QueueError> {
        let script = Script::new(
            r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'queued' or s == 'running' then return 1 end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[2])
return 2",
        );
        let shares = self.share_keys_async(con, id).await?;
        let outcome: i64 = script
            .key(self.job(id))
            .key(self.owner_jobs(owner))
            .key(self.preview_key(id))
            .key(&shares.idempotency)
            .arg(owner)
            .arg(id)
            .invoke_async(con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(match outcome {
            0 => Removal::NotFound,
            1 => Removal::NotFinished,
            _ => Removal::Removed,
        })
    }

    /// The latest preview of a job of `owner`.
    pub async fn preview(
        &self,
        con: &mut redis::aio::ConnectionManager,
        owner: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        let (who, jpeg): (Option<String>, Option<Vec<u8>>) = redis::pipe()
            .cmd("HGET")
            .arg(self.job(id))
            .arg("owner")
            .cmd("GET")
            .arg(self.preview_key(id))
            .query_async(con)
            .await
            .map_err(|e| self.error(e))?;
        Ok(jpeg.filter(|_| who.as_deref() == Some(owner)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redacted("rediss://alice:s3cret@queue.example:6380/2"),
            "rediss://alice:***@queue.example:6380/2"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379#jobs"),
            "redis://127.0.0.1:6379"
        );
        let e = Engine::open("http://alice:s3cret@host/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("not a Redis URL"), "{e}");
    }

    #[test]
    fn the_fragment_names_the_key_prefix() {
        let engine = Engine::open("redis://127.0.0.1:1/#studio").unwrap();
        assert_eq!(engine.id_of_channel("studio:ev:0123"), Some("0123"));
        assert_eq!(engine.id_of_channel("neural-style:ev:0123"), None);
    }
}
