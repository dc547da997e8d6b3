//! Where a job's files live, for every worker and server to reach: uploads, checkpoints
//! and results, as objects in an object store (the `object_store` crate): an S3 bucket
//! (`s3://bucket/prefix`, AWS or any S3-compatible store), or a folder that all machines
//! share (`file:///srv/neural-style` or a plain path).

use std::path::Path;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};

use super::QueueError;

/// Files larger than this go to the store as multipart uploads ([`Store::put_file`]).
pub const MULTIPART_ABOVE: u64 = 64 << 20;
/// The part size of a multipart upload (S3 takes 5 MiB to 5 GiB a part, the last smaller).
pub const PART_BYTES: usize = 16 << 20;

/// The variable that makes a store fail a share of its reads and writes at random, for
/// chaos tests: `NEURAL_STYLE_STORE_FAULTS=0.1` fails one in ten (half of the failed
/// writes are made before they fail, as when an answer is lost).
pub const FAULTS_VARIABLE: &str = "NEURAL_STYLE_STORE_FAULTS";

/// An object store and the URL it was opened from.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
    /// The share of calls failed on purpose ([`FAULTS_VARIABLE`]); 0 but in chaos tests.
    faults: f64,
}

/// Where an injected fault strikes a write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

impl Store {
    /// Opens the store at `url`: `s3://bucket/prefix` (credentials, region and endpoint
    /// from the usual `AWS_*` variables: `AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for a
    /// local S3-compatible server), `file:///dir` or a plain folder path (created if
    /// missing).
    pub fn open(url: &str) -> Result<Self, QueueError> {
        let refuse = |reason: String| QueueError::StoreUrl {
            url: url.to_string(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(refuse("no bucket: use s3://bucket/prefix".to_string()));
            }
            // reqwest's TLS needs a process-wide provider: ring, as everywhere in the binary
            // (an error only says that one is installed already).
            let _ = rustls::crypto::ring::default_provider().install_default();
            // A result is written once: S3's If-None-Match on the put.
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .build()
                .map_err(|e| refuse(e.to_string()))?;
            let inner: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                prefix => Arc::new(PrefixStore::new(s3, prefix)),
            };
            return Ok(Self {
                inner,
                url: url.to_string(),
                faults: faults_from_env(),
            });
        }
        let dir = if let Some(rest) = url.strip_prefix("file://") {
            std::path::PathBuf::from(rest)
        } else if url.contains("://") {
            let scheme = url.split("://").next().unwrap_or_default();
            return Err(refuse(format!(
                "`{scheme}` stores are not supported; use s3://bucket/prefix or a folder every worker reaches (file:///path or a path)"
            )));
        } else {
            std::path::PathBuf::from(url)
        };
        std::fs::create_dir_all(&dir).map_err(|e| refuse(format!("cannot create it: {e}")))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| refuse(format!("cannot open it: {e}")))?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| refuse(format!("cannot open it: {e}")))?;
        Ok(Self {
            inner: Arc::new(fs),
            url: url.to_string(),
            faults: faults_from_env(),
        })
    }

    /// An injected fault for this call ([`FAULTS_VARIABLE`]).
    fn roll(&self) -> Fault {
        if self.faults <= 0.0 || rand::random::<f64>() >= self.faults {
            return Fault::None;
        }
        if rand::random::<bool>() {
            Fault::Before
        } else {
            Fault::After
        }
    }

    /// The error of an injected fault: what an unreachable store gives (transient).
    fn injected(&self, key: &str) -> QueueError {
        self.error(
            key,
            object_store::Error::Generic {
                store: "fault injection",
                source: format!("{FAULTS_VARIABLE}: an injected failure").into(),
            },
        )
    }

    /// The URL it was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, key: &str, source: object_store::Error) -> QueueError {
        QueueError::Store {
            url: self.url.clone(),
            key: key.to_string(),
            source,
        }
    }

    /// Writes `bytes` at `key`, replacing what was there (atomically: readers see the old
    /// object or the new one).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), QueueError> {
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(self.injected(key));
        }
        self.inner
            .put_opts(
                &ObjectPath::from(key),
                PutPayload::from(bytes),
                PutOptions::default(),
            )
            .await
            .map_err(|e| self.error(key, e))?;
        match fault {
            Fault::After => Err(self.injected(key)),
            _ => Ok(()),
        }
    }

    /// Writes `bytes` at `key` unless something is there already; returns whether this
    /// call wrote it. A result is written once: a second worker finishing the same job
    /// (after losing its claim) finds it there.
    pub async fn put_once(&self, key: &str, bytes: Vec<u8>) -> Result<bool, QueueError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let fault = self.roll();
        if fault == Fault::Before {
            return Err(self.injected(key));
        }
        let written = match self
            .inner
            .put_opts(&ObjectPath::from(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::AlreadyExists { .. }) => false,
            Err(e) => return Err(self.error(key, e)),
        };
        match fault {
            Fault::After => Err(self.injected(key)),
            _ => Ok(written),
        }
    }

    /// Writes the file at `file` to `key`, replacing what was there, reading it a part at
    /// a time: a checkpoint of gigabytes is never held in memory. Above
    /// [`MULTIPART_ABOVE`] it goes up as a multipart upload of [`PART_BYTES`] parts, at
    /// most four in flight (one S3 PUT takes at most 5 GiB); an upload that fails is
    /// aborted.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), QueueError> {
        use std::io::Read;
        let local = |e: std::io::Error| QueueError::WorkFolder {
            path: file.to_path_buf(),
            error: e.to_string(),
        };
        let len = std::fs::metadata(file).map_err(local)?.len();
        if self.roll() != Fault::None {
            return Err(self.injected(key));
        }
        if len <= MULTIPART_ABOVE {
            return self.put(key, std::fs::read(file).map_err(local)?).await;
        }
        let mut reader = std::fs::File::open(file).map_err(local)?;
        let upload = (self.inner)
            .put_multipart(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error(key, e))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buffer = vec![0u8; PART_BYTES];
        let sent: Result<(), QueueError> = async {
            loop {
                parts
                    .wait_for_capacity(4)
                    .await
                    .map_err(|e| self.error(key, e))?;
                let mut filled = 0;
                while filled < buffer.len() {
                    match reader.read(&mut buffer[filled..]).map_err(local)? {
                        0 => break,
                        n => filled += n,
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                parts.write(&buffer[..filled]);
            }
        }
        .await;
        match sent {
            Ok(()) => parts
                .finish()
                .await
                .map(drop)
                .map_err(|e| self.error(key, e)),
            Err(e) => {
                let _ = parts.abort().await;
                Err(e)
            }
        }
    }

    /// Writes the object at `key` to the file `file`, a part at a time; `false` when there
    /// is no such object.
    pub async fn get_file(&self, key: &str, file: &Path) -> Result<bool, QueueError> {
        use futures_util::StreamExt;
        use std::io::Write;
        let local = |e: std::io::Error| QueueError::WorkFolder {
            path: file.to_path_buf(),
            error: e.to_string(),
        };
        if self.roll() != Fault::None {
            return Err(self.injected(key));
        }
        let got = match self
            .inner
            .get_opts(&ObjectPath::from(key), GetOptions::default())
            .await
        {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.error(key, e)),
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(local)?);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| self.error(key, e))?)
                .map_err(local)?;
        }
        out.flush().map_err(local)?;
        Ok(true)
    }

    /// The object at `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, QueueError> {
        if self.roll() != Fault::None {
            return Err(self.injected(key));
        }
        let path = ObjectPath::from(key);
        match self.inner.get_opts(&path, GetOptions::default()).await {
            Ok(got) => got
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| self.error(key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// The objects under `prefix` (a folder: ends with `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<object_store::ObjectMeta>, QueueError> {
        use futures_util::TryStreamExt;
        (self.inner)
            .list(Some(&ObjectPath::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))
    }

    /// Removes every object whose key starts with `prefix` (a folder: ends with `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), QueueError> {
        for object in self.list(prefix).await? {
            self.delete(object.location.as_ref()).await?;
        }
        Ok(())
    }

    /// Removes the objects under `prefix` last written more than `age` ago; returns how
    /// many.
    pub async fn delete_older_than(
        &self,
        prefix: &str,
        age: std::time::Duration,
    ) -> Result<usize, QueueError> {
        let found = self.list(prefix).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let limit = i64::try_from(now.saturating_sub(age).as_secs()).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for object in found
            .into_iter()
            .filter(|o| o.last_modified.timestamp() < limit)
        {
            self.delete(object.location.as_ref()).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Removes the object at `key` (nothing there is fine).
    pub async fn delete(&self, key: &str) -> Result<(), QueueError> {
        if self.roll() != Fault::None {
            return Err(self.injected(key));
        }
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

/// The share of calls to fail ([`FAULTS_VARIABLE`]), 0 when unset or not a number in
/// 0..1.
fn faults_from_env() -> f64 {
    std::env::var(FAULTS_VARIABLE)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|f| (0.0..1.0).contains(f))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file past the multipart threshold goes up in parts and comes back whole, byte for
    /// byte; a missing object is `false`.
    #[test]
    fn a_large_file_goes_up_in_parts_and_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        let len = MULTIPART_ABOVE as usize + PART_BYTES + 12_345;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let (file, back) = (dir.path().join("big.ckpt"), dir.path().join("back.ckpt"));
        std::fs::write(&file, &data).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            store.put_file("checkpoints/j/a.ckpt", &file).await.unwrap();
            assert!(store.get_file("checkpoints/j/a.ckpt", &back).await.unwrap());
            assert!(!store.get_file("checkpoints/j/none", &back).await.unwrap());
        });
        assert!(std::fs::read(&back).unwrap() == data);
    }
}
