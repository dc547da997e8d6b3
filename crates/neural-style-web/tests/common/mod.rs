//! A server on loopback over the tiny generated weights, and small HTTP helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use neural_style::{Network, TransferConfig, default_device};
use neural_style_web::{Server, ServerConfig};

/// The tiny generated VGG19.
pub fn tiny_weights() -> PathBuf {
    neural_style_testdata::tiny_weights()
}

/// The tiny VGG19 cut after conv3_1.
pub fn tiny_weights_to_conv3_1() -> PathBuf {
    neural_style_testdata::tiny_weights_to_conv3_1()
}

/// A running server; stopped (and its workers joined) when dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(config: ServerConfig) -> Self {
        Self::start_with(&tiny_weights(), config)
    }

    /// A server on the network in `weights`.
    pub fn start_with(weights: &Path, config: ServerConfig) -> Self {
        Self::start_with_base(weights, TransferConfig::default(), config)
    }

    /// A server on the network in `weights` whose jobs start from the settings `base`.
    pub fn start_with_base(weights: &Path, base: TransferConfig, config: ServerConfig) -> Self {
        let net = Network::load(weights, &base, &default_device()).unwrap();
        let server = Server::new(Arc::new(net), base, config).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .unwrap();
        });
        Self {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and waits until its running jobs have saved their images.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A server configuration keeping results in `dir`.
pub fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        results_dir: dir.to_path_buf(),
        ..ServerConfig::default()
    }
}

/// A smooth colourful PNG of `w` x `h`.
pub fn png(w: u32, h: u32, phase: f32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        image::Rgb([
            (127.0 + 120.0 * (6.0 * fx + phase).sin()) as u8,
            (127.0 + 120.0 * (5.0 * fy - phase).cos()) as u8,
            (127.0 + 120.0 * (4.0 * (fx + fy)).sin()) as u8,
        ])
    });
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

pub use neural_style_testdata::Part;

pub fn file<'a>(name: &'a str, bytes: Vec<u8>) -> Part<'a> {
    neural_style_testdata::file_part(name, bytes)
}

pub fn field<'a>(name: &'a str, text: &str) -> Part<'a> {
    neural_style_testdata::field_part(name, text)
}

/// The header that names the client, and this test client's token: every helper sends it.
pub const TOKEN_HEADER: &str = "X-Client-Token";
pub const TOKEN: &str = "test-client-token-0001";

/// An agent that returns error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Posts a multipart form; returns the status and the body as text.
pub fn post_form(url: &str, parts: &[Part<'_>]) -> (u16, String) {
    let (content_type, body) = neural_style_testdata::multipart(parts);
    // A server refusing a body too large answers and closes before it has read the rest;
    // a client still sending then gets a broken pipe instead of the answer (as browsers
    // do at times). Sending again shows the answer.
    let mut tries = 0;
    let mut r = loop {
        tries += 1;
        match agent()
            .post(url)
            .header(TOKEN_HEADER, TOKEN)
            .header("Content-Type", &content_type)
            .send(&body[..])
        {
            Ok(r) => break r,
            Err(ureq::Error::Io(e)) if tries < 5 => eprintln!("sending again after: {e}"),
            Err(e) => panic!("POST {url}: {e}"),
        }
    };
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// Any request with exactly `headers` (no client token unless given): status and body.
pub fn call(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut r = agent().run(request.body(()).unwrap()).unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// Sends `request` as it is on a new connection and reads the answer until the server
/// closes it (or 10 s pass): the status line's code and the whole answer.
pub fn raw(server: &Running, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// GET: status and bytes.
pub fn get(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).header(TOKEN_HEADER, TOKEN).call().unwrap();
    let status = r.status().as_u16();
    (
        status,
        r.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default(),
    )
}

/// GET a JSON answer.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// POST without a body: status and JSON.
pub fn post(url: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .post(url)
        .header(TOKEN_HEADER, TOKEN)
        .send_empty()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// Waits (up to a minute) until the job's status is one of `wanted`; returns its JSON.
pub fn wait_for(server: &Running, id: &str, wanted: &[&str]) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let job = get_json(&server.url(&format!("/api/jobs/{id}")));
        if wanted.contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "job {id} still {} after a minute",
            job["status"]
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Submits a job of `size` px and `iterations`; returns its id.
pub fn submit(server: &Running, size: u32, iterations: usize) -> String {
    let settings = format!(r#"{{"size": {size}, "iterations": {iterations}}}"#);
    let (status, body) = post_form(
        &server.url("/api/jobs"),
        &[
            field("settings", &settings),
            file("content", png(80, 60, 0.0)),
            file("style", png(60, 60, 2.0)),
        ],
    );
    assert_eq!(status, 201, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    job["id"].as_str().unwrap().to_string()
}
