//! `neural-style weights`: convert, list, import, verify, and a failed download.

use std::path::{Path, PathBuf};

use super::*;

fn tiny_pth() -> PathBuf {
    fixture("tiny_vgg19.pth")
}

#[test]
fn weights_convert_writes_safetensors_that_run() {
    let s = Scene::new();
    let out = s.p("tiny.safetensors");
    let o = run(&[
        "weights",
        "convert",
        tiny_pth().to_str().unwrap(),
        &out,
        "--preprocess",
        "caffe-bgr-255",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout.contains("16 convolutions") && stdout.contains("caffe"),
        "{stdout}"
    );
    let o = s.transfer(&out, &["-n", "3", "--size", "32"], "conv.png");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("caffe-bgr-255"), "{}", stderr(&o));

    assert_clean_error(
        &run(&[
            "weights",
            "convert",
            tiny_pth().to_str().unwrap(),
            &s.p("x.bin"),
        ]),
        &["x.bin", ".safetensors"],
    );
    assert_clean_error(
        &run(&[
            "weights",
            "convert",
            &s.p("missing.pth"),
            &s.p("x.safetensors"),
        ]),
        &["missing.pth"],
    );
}

#[test]
fn weights_list_import_and_verify_report_clearly() {
    let s = Scene::new();
    let cache = s.p("cache");
    let o = run(&["weights", "list", "--cache-dir", &cache]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["vgg19 (default)", "vgg16", "vgg19-caffe", "not cached"] {
        assert!(stdout.contains(name), "`{name}` not in {stdout}");
    }
    let o = run(&["weights", "verify", "--cache-dir", &cache]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing cached"));
    // A file that is not the model is refused, and nothing enters the cache.
    let o = run(&[
        "weights",
        "import",
        tiny_pth().to_str().unwrap(),
        "--model",
        "vgg19",
        "--cache-dir",
        &cache,
    ]);
    assert_clean_error(&o, &["tiny_vgg19.pth", "574673361"]);
    assert!(!Path::new(&cache).join("vgg19-dcbb9e9d.pth").exists());
    assert_clean_error(
        &run(&[
            "-c",
            &s.p("content.png"),
            "--model",
            "resnet",
            "-o",
            &s.p("x.png"),
        ]),
        &["unknown model `resnet`", "vgg19-caffe"],
    );
}

#[test]
fn a_failed_model_download_says_how_to_import_by_hand() {
    // A mirror that answers 404 to everything, on 127.0.0.1 (nothing touches the internet).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/models", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let s = Scene::new();
    let cache = s.p("cache");
    let o = bin()
        .args([
            "-c",
            &s.p("content.png"),
            "-s",
            &s.p("style.png"),
            "--cache-dir",
            &cache,
            "-o",
            &s.p("x.png"),
        ])
        .env("NEURAL_STYLE_MIRROR", &base)
        .output()
        .unwrap();
    let url = format!("{base}/vgg19-dcbb9e9d.pth");
    assert_clean_error(
        &o,
        &[
            &url,
            "HTTP 404",
            &format!("{cache}/vgg19-dcbb9e9d.pth"),
            "neural-style weights import FILE --model vgg19 --cache-dir",
        ],
    );
    // Nothing a later run would trust.
    assert!(!Path::new(&cache).join("vgg19-dcbb9e9d.pth").exists());
    assert!(
        !Path::new(&cache)
            .join("vgg19-dcbb9e9d.conv.safetensors")
            .exists()
    );
    assert!(!Path::new(&s.p("x.png")).exists());
}

#[test]
fn model_downloads_trust_the_certificate_authority_in_ssl_cert_file() {
    // An HTTPS mirror on 127.0.0.1 (openssl s_server) whose certificate a test authority
    // signed: refused as unknown without SSL_CERT_FILE, trusted with it (the mirror then
    // sends its 12 bytes).
    let s = Scene::new();
    let dir = s.p("tls");
    std::fs::create_dir_all(format!("{dir}/models")).unwrap();
    if !test_certificates(&dir) {
        assert!(
            std::env::var("NEURAL_STYLE_REQUIRE_REDIS").as_deref() != Ok("1"),
            "openssl (for the TLS download test) is not installed"
        );
        eprintln!("NOTICE: openssl is not installed; the TLS download test is skipped");
        return;
    }
    std::fs::write(format!("{dir}/models/vgg19-dcbb9e9d.pth"), "not a model\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept", &port.to_string()])
        .args(["-cert", "server.pem", "-key", "server.key"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 20, "s_server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let download = |ca: Option<&str>| {
        let mut c = bin();
        c.args(["weights", "fetch", "vgg19"])
            .args(["--cache-dir", &s.p("cache")])
            .env(
                "NEURAL_STYLE_MIRROR",
                format!("https://127.0.0.1:{port}/models"),
            )
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(ca) = ca {
            c.env("SSL_CERT_FILE", ca);
        }
        c.output().unwrap()
    };
    let untrusted = download(None);
    let trusted = download(Some(&format!("{dir}/ca.pem")));
    let _ = server.kill();
    let _ = server.wait();
    // Refused at once (an untrusted certificate is not retried), with the way out.
    assert_clean_error(&untrusted, &["invalid peer certificate", "SSL_CERT_FILE"]);
    assert!(
        !stderr(&untrusted).contains("retry"),
        "{}",
        stderr(&untrusted)
    );
    // Trusted: the bytes arrive (the server sends 12 and closes).
    assert_clean_error(&trusted, &["the connection closed after 12 of"]);
}
