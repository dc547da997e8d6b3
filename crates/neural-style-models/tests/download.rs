//! Downloads against an HTTP server started on 127.0.0.1 by the test itself (nothing
//! touches the internet): full download, resume after an interruption, checksum mismatch,
//! a 404 on the first URL, a stalled server, concurrent fetches, and the conv-only
//! conversion of a PyTorch `.pth`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neural_style::{Arch, InputConvention, Layer, WeightFile};
use neural_style_models::{Cache, DownloadEvent, Downloader, Error, Model, cache::convert};

/// A tiny HTTP/1.1 server. Paths: `/ok/NAME` serves the file (honouring `Range`),
/// `/cut-once/NAME` sends half the body of its first response and hangs up, `/slow/NAME`
/// sends the body in small delayed pieces, `/stall/NAME` never answers, anything else 404.
struct Server {
    addr: String,
    /// Body bytes sent, all requests together.
    sent: Arc<AtomicU64>,
    /// Requests answered with the body (200 or 206).
    served: Arc<AtomicUsize>,
    /// The `Range` header of each request.
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    fn start(data: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let data = Arc::new(data);
        let sent = Arc::new(AtomicU64::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let cut_done = Arc::new(AtomicUsize::new(0));
        let (s, v, r) = (sent.clone(), served.clone(), ranges.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (data, s, v, r, c) = (
                    data.clone(),
                    s.clone(),
                    v.clone(),
                    r.clone(),
                    cut_done.clone(),
                );
                std::thread::spawn(move || {
                    let _ = handle(stream, &data, &s, &v, &r, &c);
                });
            }
        });
        Server {
            addr,
            sent,
            served,
            ranges,
        }
    }

    fn url(&self, kind: &str) -> String {
        format!("{}/{kind}/test-0123abcd.pth", self.addr)
    }
}

fn handle(
    mut stream: TcpStream,
    data: &[u8],
    sent: &AtomicU64,
    served: &AtomicUsize,
    ranges: &Mutex<Vec<Option<String>>>,
    cut_done: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<u64> = None;
    let mut range_header = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            let v = v.trim().to_string();
            range = v
                .strip_prefix("bytes=")
                .and_then(|r| r.trim_end_matches('-').parse().ok());
            range_header = Some(v);
        }
    }
    ranges.lock().unwrap().push(range_header);
    let kind = path.split('/').nth(1).unwrap_or("");
    match kind {
        "ok" | "slow" | "cut-once" => {
            let start = range.unwrap_or(0).min(data.len() as u64) as usize;
            let body = &data[start..];
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len(),
                    data.len() - 1,
                    data.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            stream.write_all(head.as_bytes())?;
            served.fetch_add(1, Ordering::SeqCst);
            if kind == "cut-once" && cut_done.fetch_add(1, Ordering::SeqCst) == 0 {
                let half = &body[..body.len() / 2];
                stream.write_all(half)?;
                sent.fetch_add(half.len() as u64, Ordering::SeqCst);
                stream.flush()?;
                return stream.shutdown(std::net::Shutdown::Both);
            }
            let piece = if kind == "slow" {
                64 << 10
            } else {
                body.len().max(1)
            };
            for chunk in body.chunks(piece) {
                stream.write_all(chunk)?;
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                if kind == "slow" {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            stream.flush()
        }
        "stall" => {
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        _ => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        ),
    }
}

/// Deterministic pseudo-random bytes.
fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, data).unwrap();
    neural_style_models::sha256_file(&p).unwrap()
}

fn model(data: &[u8], urls: Vec<String>) -> Model {
    Model {
        name: "test".into(),
        summary: "a generated file".into(),
        file_name: "test-0123abcd.pth".into(),
        urls,
        size: Some(data.len() as u64),
        sha256: sha256(data),
        arch: Arch::Vgg19,
        convention: InputConvention::TorchRgb01,
    }
}

fn quick() -> Downloader {
    Downloader {
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        retries: 0,
        backoff: Duration::from_millis(10),
    }
}

fn ignore(_: &DownloadEvent<'_>) {}

/// Files in the cache directory other than lock files.
fn cache_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn full_download_lands_verified_with_progress() {
    let data = payload(3 << 20);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("ok")]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let mut last = 0;
    let mut started = false;
    let path = cache
        .fetch(&m, &quick(), &mut |e| match e {
            DownloadEvent::Started { total, .. } => {
                started = true;
                assert_eq!(*total, Some(data.len() as u64));
            }
            DownloadEvent::Progress { done } => last = *done,
            _ => {}
        })
        .unwrap();
    assert!(started);
    assert_eq!(last, data.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(cache_files(dir.path()), vec!["test-0123abcd.pth"]);
    // Cached: a second fetch sends no request.
    cache.fetch(&m, &quick(), &mut ignore).unwrap();
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
    cache.verify(&m).unwrap();
}

#[test]
fn interrupted_download_resumes_with_range() {
    let data = payload(2 << 20);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("cut-once")]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let err = cache.fetch(&m, &quick(), &mut ignore).unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err}");
    // Half the file waits as `.part`; nothing under the real name.
    assert_eq!(cache_files(dir.path()), vec!["test-0123abcd.pth.part"]);
    let first = server.sent.load(Ordering::SeqCst);
    assert_eq!(first, data.len() as u64 / 2);

    let path = cache.fetch(&m, &quick(), &mut ignore).unwrap();
    let second = server.sent.load(Ordering::SeqCst) - first;
    assert!(
        second < data.len() as u64,
        "second attempt fetched {second} bytes"
    );
    assert_eq!(second, data.len() as u64 - first);
    assert_eq!(
        server.ranges.lock().unwrap().last().cloned().flatten(),
        Some(format!("bytes={first}-"))
    );
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[test]
fn retries_resume_within_one_call() {
    let data = payload(1 << 20);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("cut-once")]);
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader {
        retries: 2,
        ..quick()
    };
    let mut retried = 0;
    let path = Cache::new(dir.path())
        .fetch(&m, &downloader, &mut |e| {
            if let DownloadEvent::Retrying { .. } = e {
                retried += 1;
            }
        })
        .unwrap();
    assert_eq!(retried, 1);
    assert_eq!(server.sent.load(Ordering::SeqCst), data.len() as u64);
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[test]
fn checksum_mismatch_leaves_nothing_in_the_cache() {
    let data = payload(1 << 20);
    let server = Server::start(data.clone());
    let mut m = model(&data, vec![server.url("ok")]);
    m.sha256 = "0".repeat(64);
    let dir = tempfile::tempdir().unwrap();
    let err = Cache::new(dir.path())
        .fetch(&m, &quick(), &mut ignore)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Checksum { .. }), "{text}");
    assert!(
        text.contains(&"0".repeat(64)) && text.contains("test-0123abcd.pth"),
        "{text}"
    );
    assert!(
        cache_files(dir.path()).is_empty(),
        "{:?}",
        cache_files(dir.path())
    );
}

#[test]
fn a_404_on_the_first_url_falls_back_to_the_second() {
    let data = payload(1 << 20);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("gone"), server.url("ok")]);
    let dir = tempfile::tempdir().unwrap();
    let mut urls = Vec::new();
    let path = Cache::new(dir.path())
        .fetch(&m, &quick(), &mut |e| {
            if let DownloadEvent::Started { url, .. } = e {
                urls.push(url.to_string());
            }
        })
        .unwrap();
    assert_eq!(urls, vec![server.url("ok")]);
    assert_eq!(server.ranges.lock().unwrap().len(), 2);
    assert_eq!(std::fs::read(path).unwrap(), data);

    // With only dead URLs the error names each URL and what it answered.
    let m = model(&data, vec![server.url("gone")]);
    let dir = tempfile::tempdir().unwrap();
    let err = Cache::new(dir.path())
        .fetch(&m, &quick(), &mut ignore)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&server.url("gone")) && err.contains("HTTP 404"),
        "{err}"
    );
}

#[test]
fn a_stalled_server_times_out_in_the_configured_time() {
    let data = payload(1 << 10);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("stall")]);
    let dir = tempfile::tempdir().unwrap();
    let downloader = Downloader {
        stall_timeout: Duration::from_millis(500),
        ..quick()
    };
    let t = Instant::now();
    let err = Cache::new(dir.path())
        .fetch(&m, &downloader, &mut ignore)
        .unwrap_err()
        .to_string();
    let waited = t.elapsed();
    assert!(err.to_lowercase().contains("timeout"), "{err}");
    // The server would hold the connection for 30 s.
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert!(cache_files(dir.path()).is_empty());
}

#[test]
fn concurrent_fetches_of_one_model_give_one_valid_file() {
    let data = payload(2 << 20);
    let server = Server::start(data.clone());
    let m = model(&data, vec![server.url("slow")]);
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let cache = Cache::new(dir.path());
                let m = m.clone();
                s.spawn(move || cache.fetch(&m, &quick(), &mut ignore).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(std::fs::read(&paths[0]).unwrap(), data);
    assert_eq!(cache_files(dir.path()), vec!["test-0123abcd.pth"]);
    // The lock made the others wait and reuse the first download.
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
}

#[test]
fn import_checks_the_file_before_adopting_it() {
    let data = payload(1 << 16);
    let m = model(
        &data,
        vec!["https://example.invalid/test-0123abcd.pth".into()],
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let good = dir.path().join("downloaded.pth");
    std::fs::write(&good, &data).unwrap();
    let mut bad_data = data.clone();
    bad_data[100] ^= 1;
    let bad = dir.path().join("bad.pth");
    std::fs::write(&bad, &bad_data).unwrap();
    let err = cache.import(&m, &bad).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");
    assert!(!cache.path(&m).exists());
    let path = cache.import(&m, &good).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    cache.verify(&m).unwrap();
    // A cached file that went bad fails verification and is removed.
    std::fs::write(cache.path(&m), &bad_data).unwrap();
    assert!(matches!(cache.verify(&m), Err(Error::Checksum { .. })));
    assert!(!cache.path(&m).exists());
}

use neural_style_testdata::fixture;

fn all_convs(path: &Path) -> Vec<(Layer, Vec<f32>, Vec<f32>)> {
    let f = WeightFile::open(path).unwrap();
    let info = f.info(None).unwrap();
    f.conv_params(info.arch, &[*info.convs.last().unwrap()])
        .unwrap()
        .into_iter()
        .map(|p| (p.layer, p.weight, p.bias))
        .collect()
}

#[test]
fn convert_of_a_pytorch_pth_loads_identical_tensors() {
    // tiny_vgg19.pth: torch.save of a VGG19-shaped state_dict, written by
    // `python3 crates/neural-style-testdata/fixtures/torch_reference.py fixtures crates/neural-style-testdata/fixtures`.
    let pth = fixture("tiny_vgg19.pth");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let info = convert(&pth, &out, None).unwrap();
    assert_eq!(info.arch, Arch::Vgg19);
    assert_eq!(info.convs.len(), 16);
    let a = all_convs(&pth);
    let b = all_convs(&out);
    assert_eq!(a.len(), 16);
    assert!(a == b, "converted tensors differ");
    assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(&pth).unwrap().len() + 4096);
}

#[test]
fn cached_weights_are_downloaded_once_and_converted_with_the_models_convention() {
    let pth = std::fs::read(fixture("tiny_vgg19.pth")).unwrap();
    let server = Server::start(pth.clone());
    let mut m = model(&pth, vec![server.url("ok")]);
    m.convention = InputConvention::CaffeBgr255 {
        mean_bgr: neural_style::model::vgg::CAFFE_MEAN_BGR,
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let path = cache.weights(&m, &quick(), &mut ignore).unwrap();
    assert_eq!(path, cache.converted_path(&m));
    let info = WeightFile::open(&path).unwrap().info(None).unwrap();
    assert_eq!(info.convention, Some(m.convention));
    assert!(all_convs(&path) == all_convs(&fixture("tiny_vgg19.pth")));
    cache.weights(&m, &quick(), &mut ignore).unwrap();
    assert_eq!(server.served.load(Ordering::SeqCst), 1);
    let entries = cache.entries();
    assert_eq!(entries.len(), Model::known().len());
}

#[test]
fn offline_error_names_url_and_cache_path() {
    // A port nobody listens on: connection refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = payload(16);
    let url = format!("http://127.0.0.1:{port}/test-0123abcd.pth");
    let m = model(&data, vec![url.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let err = cache
        .fetch(&m, &quick(), &mut ignore)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&url), "{err}");
    assert!(err.contains(&cache.path(&m).display().to_string()), "{err}");
    assert!(cache_files(dir.path()).is_empty());
}
