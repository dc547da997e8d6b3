//! Where a job's files live, for every worker and server to reach: uploads, checkpoints
//! and results, as objects in an object store (the `object_store` crate): an S3 bucket
//! (`s3://bucket/prefix`, AWS or any S3-compatible store), or a folder that all machines
//! share (`file:///srv/neural-style` or a plain path).

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::QueueError;

/// An object store and the URL it was opened from.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
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
        })
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
        self.inner
            .put_opts(
                &ObjectPath::from(key),
                PutPayload::from(bytes),
                PutOptions::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    /// Writes `bytes` at `key` unless something is there already; returns whether this
    /// call wrote it. A result is written once: a second worker finishing the same job
    /// (after losing its claim) finds it there.
    pub async fn put_once(&self, key: &str, bytes: Vec<u8>) -> Result<bool, QueueError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(&ObjectPath::from(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// The object at `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, QueueError> {
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

    /// Removes every object whose key starts with `prefix` (a folder: ends with `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), QueueError> {
        use futures_util::TryStreamExt;
        let folder = ObjectPath::from(prefix);
        let found: Vec<_> = self
            .inner
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
        for object in found {
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
        use futures_util::TryStreamExt;
        let folder = ObjectPath::from(prefix);
        let found: Vec<_> = self
            .inner
            .list(Some(&folder))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
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
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}
