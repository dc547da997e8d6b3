//! The web UI end to end in headless Chromium (`e2e/page.mjs`, playwright-core): drop the
//! photo, pick the painting, start, see two live previews, stop, download the PNG, and fit a
//! phone-sized screen. Needs Node.js, Chromium (/usr/bin/chromium or $CHROMIUM) and
//! `npm ci --prefix crates/neural-style-web/e2e`; `.ci/run` installs them and sets
//! NEURAL_STYLE_REQUIRE_BROWSER=1, which turns their absence into a failure. Elsewhere a
//! missing piece is named in a NOTICE (`--nocapture`) and the same flow is covered over
//! HTTP by `tests/api.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The shared photo and painting, else generated ones.
fn images(dir: &Path) -> (PathBuf, PathBuf) {
    if let Some(shared) = neural_style_testdata::shared("the shared photo and painting") {
        return (
            shared.join("content/tubingen.jpg"),
            shared.join("style/starry_night.jpg"),
        );
    }
    eprintln!("NOTICE: the browser test uploads generated images");
    let (c, s) = (dir.join("photo.png"), dir.join("painting.png"));
    std::fs::write(&c, png(160, 120, 0.0)).unwrap();
    std::fs::write(&s, png(120, 120, 2.0)).unwrap();
    (c, s)
}

#[test]
fn the_page_uploads_shows_live_previews_stops_and_downloads_in_chromium() {
    if !neural_style_testdata::browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let server = Running::start(config(&results));
    let (content, style) = images(dir.path());
    let out = Command::new("node")
        .arg(neural_style_testdata::e2e_dir().join("page.mjs"))
        .arg(server.url("/"))
        .arg(&content)
        .arg(&style)
        .env("E2E_SIZE", "64")
        .env("E2E_ITERATIONS", "2000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(report["previews_seen"].as_u64().unwrap() >= 2);
    assert_eq!(report["download"]["width"], 64);
    // The server agrees: the browser's client has one stopped job, whose result is the
    // file the browser downloaded; this test's own client sees none of it.
    let token = report["client_token"].as_str().unwrap();
    let (status, body) = call("GET", &server.url("/api/jobs"), &[(TOKEN_HEADER, token)]);
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(get_json(&server.url("/api/jobs")), serde_json::json!([]));
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "stopped");
    let id = jobs[0]["id"].as_str().unwrap();
    let on_disk = std::fs::metadata(results.join(format!("{id}.png"))).unwrap();
    assert_eq!(report["download"]["bytes"].as_u64(), Some(on_disk.len()));
}
