//! HTTP download of a model file: resume with `Range` after an interruption, retries with
//! exponential backoff, a second URL when the first fails, a stall timeout, and SHA-256
//! verification before the file is renamed into place.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Model;
use crate::error::{Error, Result};

/// What a download reports while it works.
#[derive(Debug)]
#[non_exhaustive]
pub enum DownloadEvent<'a> {
    /// A request to `url` was answered; the body starts.
    Started {
        /// The URL.
        url: &'a str,
        /// The whole file's size, when known.
        total: Option<u64>,
        /// Bytes already on disk from an earlier, interrupted attempt.
        resumed_from: u64,
    },
    /// Bytes of the file on disk so far.
    Progress {
        /// Bytes done, including those resumed from.
        done: u64,
    },
    /// An attempt failed and will be retried after `wait`.
    Retrying {
        /// The URL.
        url: &'a str,
        /// Failed attempts at this URL so far.
        attempt: usize,
        /// The pause before the next attempt.
        wait: Duration,
        /// Why the attempt failed.
        reason: &'a str,
    },
    /// The file is complete; its checksum is being computed.
    Verifying {
        /// The file.
        path: &'a Path,
    },
}

/// Download settings.
#[derive(Debug, Clone)]
pub struct Downloader {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// A read that waits longer than this for data fails (a stalled server).
    pub stall_timeout: Duration,
    /// Retries per URL after a failed attempt (each resumes where the last stopped).
    pub retries: usize,
    /// Pause before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for Downloader {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_secs(2),
        }
    }
}

/// How one attempt ended.
enum Attempt {
    /// The whole file is in the `.part` file.
    Complete,
    /// Worth trying the same URL again; `progressed` when bytes arrived (then the next
    /// attempt waits only the base backoff).
    Retry { reason: String, progressed: bool },
    /// This URL will not work (e.g. 404): go to the next.
    GiveUp(String),
}

/// The temporary file a download of `dest` writes into.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Whether a request failed because the server's certificate is not trusted (rustls's
/// verdict, which ureq passes on inside an I/O error).
fn untrusted_certificate(e: &ureq::Error) -> bool {
    let rustls_error = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(rustls_error, Some(rustls::Error::InvalidCertificate(_)))
}

impl Downloader {
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.stall_timeout))
            .timeout_per_read(Some(self.stall_timeout))
            .http_status_as_error(false)
            .user_agent(concat!("neural-style/", env!("CARGO_PKG_VERSION")))
            // The system's trust store (and SSL_CERT_FILE), not a bundle of our own.
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .into()
    }

    /// Downloads `model` to `dest`: bytes go to `dest.part` (kept across failures, so a
    /// later call resumes), which is renamed to `dest` only once its size and SHA-256
    /// match the model. A file that fails the checksum is deleted. The caller holds any
    /// lock that keeps other processes from writing the same `dest`.
    pub fn fetch(
        &self,
        model: &Model,
        dest: &Path,
        observer: &mut dyn FnMut(&DownloadEvent<'_>),
    ) -> Result<()> {
        let part = part_path(dest);
        let agent = self.agent();
        let mut attempts: Vec<String> = Vec::new();
        let mut checksum_error: Option<Error> = None;
        for url in &model.urls {
            let mut failures = 0usize;
            // Attempts in a row that received nothing: the backoff doubles with each.
            let mut fruitless = 0u32;
            let outcome = loop {
                match self.attempt(&agent, model, url, &part, observer) {
                    Attempt::Complete => break Ok(()),
                    Attempt::GiveUp(reason) => break Err(reason),
                    Attempt::Retry { reason, progressed } => {
                        failures += 1;
                        if failures > self.retries {
                            break Err(reason);
                        }
                        fruitless = if progressed { 0 } else { fruitless + 1 };
                        let wait = self
                            .backoff
                            .saturating_mul(1 << fruitless.saturating_sub(1).min(16));
                        observer(&DownloadEvent::Retrying {
                            url,
                            attempt: failures,
                            wait,
                            reason: &reason,
                        });
                        std::thread::sleep(wait);
                    }
                }
            };
            if let Err(reason) = outcome {
                attempts.push(format!("{url}: {reason}"));
                continue;
            }
            observer(&DownloadEvent::Verifying { path: &part });
            match verify_file(model, &part) {
                Ok(()) => {
                    std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))?;
                    return Ok(());
                }
                Err(e) => {
                    // Never keep a file that failed its check: a resumed download would
                    // build on it.
                    let _ = std::fs::remove_file(&part);
                    attempts.push(format!("{url}: {e}"));
                    checksum_error = Some(e);
                }
            }
        }
        match checksum_error {
            Some(e) if attempts.len() == 1 => Err(e),
            _ => Err(Error::Download {
                model: model.name.clone(),
                path: dest.to_path_buf(),
                attempts,
            }),
        }
    }

    fn attempt(
        &self,
        agent: &ureq::Agent,
        model: &Model,
        url: &str,
        part: &Path,
        observer: &mut dyn FnMut(&DownloadEvent<'_>),
    ) -> Attempt {
        let retry = |reason: String| Attempt::Retry {
            reason,
            progressed: false,
        };
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = model.size {
            if have == size {
                return Attempt::Complete;
            }
            if have > size {
                have = 0;
            }
        }
        let mut request = agent.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let mut response = match request.call() {
            Ok(r) => r,
            // A certificate this machine does not trust stays untrusted: no retry.
            Err(e) if untrusted_certificate(&e) => {
                return Attempt::GiveUp(format!(
                    "{e} (the server's certificate is not trusted here; trust a certificate authority of your own with SSL_CERT_FILE=ca.pem)"
                ));
            }
            Err(e) => return retry(e.to_string()),
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
        let start = match status {
            200 => 0,
            206 => {
                // `bytes START-END/TOTAL`: the server must continue where we stopped.
                let range = header("content-range").unwrap_or_default();
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    let _ = std::fs::remove_file(part);
                    return retry(format!(
                        "the server resumed at `{range}` instead of byte {have}"
                    ));
                }
                have
            }
            416 => {
                // Nothing past what we have: start again from scratch.
                let _ = std::fs::remove_file(part);
                return retry("HTTP 416 (range not satisfiable): starting again".into());
            }
            408 | 429 | 500..=599 => return retry(format!("HTTP {status}")),
            _ => return Attempt::GiveUp(format!("HTTP {status}")),
        };
        let total = length.map(|l| l + start).or(model.size);
        let mut file = match OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(start == 0)
            .append(start > 0)
            .open(part)
        {
            Ok(f) => f,
            Err(e) => return Attempt::GiveUp(format!("cannot write {}: {e}", part.display())),
        };
        observer(&DownloadEvent::Started {
            url,
            total,
            resumed_from: start,
        });
        let mut reader = response.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = start;
        let mut reported = done;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = file.write_all(&buf[..n]) {
                        return Attempt::GiveUp(format!("cannot write {}: {e}", part.display()));
                    }
                    done += n as u64;
                    if done - reported >= 1 << 20 {
                        observer(&DownloadEvent::Progress { done });
                        reported = done;
                    }
                }
                Err(e) => {
                    let _ = file.flush();
                    return Attempt::Retry {
                        reason: format!("interrupted after {done} bytes: {e}"),
                        progressed: done > start,
                    };
                }
            }
        }
        if let Err(e) = file.sync_all() {
            return Attempt::GiveUp(format!("cannot write {}: {e}", part.display()));
        }
        observer(&DownloadEvent::Progress { done });
        match total {
            Some(t) if done < t => Attempt::Retry {
                reason: format!("the connection closed after {done} of {t} bytes"),
                progressed: done > start,
            },
            _ => Attempt::Complete,
        }
    }
}

/// Checks a file's size (when the model's is known) and SHA-256 against the model's.
pub fn verify_file(model: &Model, path: &Path) -> Result<()> {
    let found = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if let Some(expected) = model.size
        && found != expected
    {
        return Err(Error::Size {
            model: model.name.clone(),
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    let digest = crate::sha256_file(path)?;
    if model.digest_matches(&digest) {
        Ok(())
    } else {
        Err(Error::Checksum {
            model: model.name.clone(),
            path: path.to_path_buf(),
            expected: model.sha256.clone(),
            found: digest,
        })
    }
}
