//! `neural-style serve`: answers on loopback, stops on SIGTERM, refuses bad flags.

use std::path::Path;

use super::*;

#[test]
fn serve_answers_on_loopback_and_stops_cleanly_on_sigterm_and_refuses_bad_flags() {
    use std::io::{BufRead, Read, Write};
    let s = Scene::new();
    let w = tiny_weights();
    let w = w.to_str().unwrap();
    let results = s.p("results");
    let tokens = s.p("tokens");
    std::fs::write(&tokens, "alice 0123456789abcdef0123\nbob short\n").unwrap();
    for (args, expect) in [
        (
            vec!["--max-size", "8"],
            vec!["--max-size", "8 is not allowed"],
        ),
        (vec!["--jobs", "0"], vec!["--jobs", "at least 1"]),
        (vec!["--jobs", "100000"], vec!["--jobs", "1..=64"]),
        (
            vec!["--max-queue", "100000"],
            vec!["--max-queue", "1..=10000"],
        ),
        (
            vec!["--threads", "100000"],
            vec!["--threads: 100000 is not allowed"],
        ),
        (vec!["--bind", "localhost"], vec!["--bind", "localhost"]),
        (
            vec!["--allow-host", "studio.lan:80"],
            vec!["--allow-host studio.lan:80", "not a host name"],
        ),
        (
            vec!["--results", "/proc/self/status/x"],
            vec!["/proc/self/status/x", "results folder"],
        ),
        (
            vec!["--bind", "0.0.0.0:0"],
            vec!["--bind 0.0.0.0:0", "needs --token-file"],
        ),
        (
            vec!["--token-file", "/nonexistent/tokens"],
            vec!["--token-file /nonexistent/tokens", "No such file"],
        ),
        (
            vec!["--token-file", tokens.as_str()],
            vec!["line 2: the token of `bob`", "16 to 128"],
        ),
        // sysfs refuses new files even to root: refused at start, not at the first save.
        (
            vec!["--results", "/sys/kernel"],
            vec!["/sys/kernel", "results folder"],
        ),
    ] {
        let mut all = vec!["serve", "-w", w];
        for (flag, value) in [("--bind", "127.0.0.1:0"), ("--results", results.as_str())] {
            if !args.contains(&flag) {
                all.extend([flag, value]);
            }
        }
        all.extend(args);
        let o = bin().args(&all).output().unwrap();
        assert_clean_error(&o, &expect);
    }

    let mut child = bin()
        .args([
            "serve",
            "-w",
            w,
            "--bind",
            "127.0.0.1:0",
            "--results",
            &results,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The second line names the address (port 0: the system picked one).
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no address in {lines}"
        );
        lines.push_str(&line);
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let mut stream = std::net::TcpStream::connect(&url).unwrap();
    write!(
        stream,
        "GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"network\":\"vgg19 (torch-rgb-01)\""),
        "{answer}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{lines}{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    assert!(Path::new(&results).is_dir());
}
