//! Any bytes as the body of a job upload (`POST /api/jobs`, multipart): the server answers
//! 201 or a client error (400, 413, 415, 422, 503), never a 500 or a panic, and whatever
//! it decodes stays within its pixel limit. The router runs without a socket or workers.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use neural_style::{Network, TransferConfig, default_device};
use neural_style_web::{Limits, Server, ServerConfig};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-client-token-01";

struct App {
    runtime: tokio::runtime::Runtime,
    server: Server,
    _results: tempfile::TempDir,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let weights = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors"
        );
        let base = TransferConfig::default();
        let net = Network::load(weights.as_ref(), &base, &default_device()).expect("weights");
        let results = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            results_dir: results.path().to_path_buf(),
            max_queue: 10_000,
            limits: Limits {
                max_input_pixels: 1 << 20,
                ..Limits::default()
            },
            ..ServerConfig::default()
        };
        let server = Server::new(Arc::new(net), base, config).expect("server");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        App {
            runtime,
            server,
            _results: results,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let app = app();
    let request = Request::post("/api/jobs")
        .header("host", "127.0.0.1:8080")
        .header("x-client-token", TOKEN)
        .header("content-type", "multipart/form-data; boundary=FUZZ")
        .body(Body::from(data.to_vec()))
        .expect("request");
    let response = app
        .runtime
        .block_on(app.server.router().oneshot(request))
        .expect("infallible");
    let status = response.status();
    assert!(
        status == StatusCode::CREATED || status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "status {status}"
    );
    if status == StatusCode::CREATED {
        // Keep the queue short: cancel what was queued.
        let jobs = app.server.jobs().expect("the embedded queue");
        for job in jobs.list(TOKEN) {
            let _ = jobs.stop(TOKEN, &job.id);
        }
    }
});
