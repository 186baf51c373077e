//! The binary as an operator runs it: `check`, `run`, signals, logs, memory.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::{Notify, mpsc};

fn json_config(
    pki_cert: &(std::path::PathBuf, std::path::PathBuf),
    upstream: &str,
    listen_extra: &str,
    log_level: &str,
) -> String {
    json_config_site(pki_cert, upstream, listen_extra, log_level, "")
}

fn json_config_site(
    pki_cert: &(std::path::PathBuf, std::path::PathBuf),
    upstream: &str,
    listen_extra: &str,
    log_level: &str,
    site_extra: &str,
) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n{listen_extra}\n[log]\nformat = \"json\"\nlevel = \"{log_level}\"\n{}",
        site_toml(&["app.test"], pki_cert, upstream, site_extra)
    )
}

fn sessiongate() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sessiongate"))
}

#[test]
fn check_validates_the_example_and_prints_effective_settings() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let out = sessiongate()
        .args(["check", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid"));
    assert!(text.contains("response_timeout = \"1m\""), "{text}");
}

#[test]
fn check_reports_every_problem_with_its_key_and_line() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut f,
        b"[listen]\nhttps = \"nowhere\"\nsecrue = true\n\n[[site]]\nhosts = [\"a.test\"]\nupstream = { url = \"ftp://x\" }\n",
    )
    .unwrap();
    let out = sessiongate()
        .args(["check", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listen.https (line 2)",
        "listen.secrue (line 3): unknown key",
        "site[0].tls.cert",
        "site[0].tls.key",
        "site[0].upstream.url (line 7)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = sessiongate()
        .args(["run", "--config", "/nonexistent/gw.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read config file /nonexistent/gw.toml")
    );
}

#[tokio::test]
async fn the_development_key_is_refused_off_loopback_without_the_flag() {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let toml = format!(
        "[listen]\nhttps = \"0.0.0.0:0\"\n[log]\nformat = \"json\"\n[[site]]\nhosts = [\"localhost\"]\ntls.cert = {:?}\ntls.key = {:?}\nupstream.url = \"http://127.0.0.1:9\"\n",
        certs.join("dev-chain.crt"),
        certs.join("dev.key")
    );
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, toml.as_bytes()).unwrap();
    let out = sessiongate()
        .args(["run", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("public development key") && err.contains("--allow-dev-certificate"),
        "{err}"
    );

    // With the flag it starts; SIGTERM stops it cleanly.
    let mut p = Process::start(&toml, &["--allow-dev-certificate"], None).await;
    p.signal(15);
    assert!(p.child.wait().await.unwrap().success());
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let (entered_tx, mut entered_rx) = mpsc::channel::<()>(1);
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let upstream = Upstream::custom(move |_req| {
        let (entered, release) = (entered_tx.clone(), r.clone());
        async move {
            entered.send(()).await.unwrap();
            release.notified().await;
            Response::new(full("finished"))
        }
    })
    .await;
    let pki = Pki::new();
    let toml = json_config(&pki.leaf("app", &["app.test"]), &upstream.url(), "", "info");
    let mut p = Process::start(&toml, &[], None).await;
    let client = Client::new(&pki, p.https);
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("https://app.test/slow").await }
    });
    entered_rx.recv().await.unwrap();
    p.signal(15);
    p.wait_for_line(|l| l.contains("shutting down")).await;
    assert!(
        tokio::net::TcpStream::connect(p.https).await.is_err(),
        "still accepting after SIGTERM"
    );
    release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "finished");
    let status = p.child.wait().await.unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigint_stops_an_idle_gateway_with_exit_zero() {
    let upstream = Upstream::ok().await;
    let pki = Pki::new();
    let mut p = Process::start(
        &json_config(&pki.leaf("app", &["app.test"]), &upstream.url(), "", "info"),
        &[],
        None,
    )
    .await;
    p.signal(2);
    assert!(p.child.wait().await.unwrap().success());
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_even_at_trace_level() {
    const SECRETS: [&str; 6] = [
        "cookievalue1f2e3d",
        "authzsecret9a8b7c",
        "querysid5d4c3b",
        "pathsid6e5f4a",
        "setcookiesecret7b6a",
        "bodysecret8c7d6e",
    ];
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", format!("PHPSESSID={}; path=/", SECRETS[4]))
            .header("location", format!("/next?PHPSESSID={}", SECRETS[4]))
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let pki = Pki::new();
    let mut p = Process::start(
        &json_config(
            &pki.leaf("app", &["app.test"]),
            &upstream.url(),
            "",
            "trace",
        ),
        &[],
        None,
    )
    .await;
    let client = Client::new(&pki, p.https);
    for proto in [Proto::H1, Proto::H2] {
        let req = Request::post(format!(
            "https://app.test/a;jsessionid={}/b?PHPSESSID={}",
            SECRETS[3], SECRETS[2]
        ))
        .header("cookie", format!("PHPSESSID={}", SECRETS[0]))
        .header("authorization", format!("Bearer {}", SECRETS[1]))
        .body(full(format!("password={}", SECRETS[5])))
        .unwrap();
        assert_eq!(client.send(proto, req).await.status, 200);
    }
    assert_eq!(upstream.requests().len(), 2, "both requests went through");
    // The access lines are the last thing written for a request.
    p.wait_for_line(|l| l.contains("\"access\"") && l.contains("\"POST\""))
        .await;
    p.signal(15);
    p.child.wait().await.unwrap();
    let out = p.output();
    assert!(
        out.lines().count() > 20,
        "trace logging produced little output:\n{out}"
    );
    for s in SECRETS {
        assert!(
            !out.contains(s),
            "secret {s} in the log:\n{}",
            out.lines()
                .filter(|l| l.contains(s))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let access = out
        .lines()
        .find(|l| l.contains("\"access\"") && l.contains("\"POST\""))
        .unwrap();
    for field in [
        "\"path\":\"/a/b\"",
        "\"status\":200",
        "\"upstream_status\":200",
        "\"duration_us\":",
        "\"method\":\"POST\"",
    ] {
        assert!(access.contains(field), "{field} missing from {access}");
    }
}

#[tokio::test]
async fn a_256_mib_transfer_each_way_leaves_peak_memory_far_below_the_body() {
    const SIZE: u64 = 256 << 20;
    const CHUNK: usize = 64 << 10;
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let upstream = Upstream::custom(move |req: Request<hyper::body::Incoming>| {
        let r = r.clone();
        async move {
            if req.method() == http::Method::POST {
                let mut body = req.into_body();
                while let Some(f) = body.frame().await {
                    r.fetch_add(
                        f.unwrap().into_data().map(|d| d.len() as u64).unwrap_or(0),
                        Ordering::SeqCst,
                    );
                }
                return Response::new(full("stored"));
            }
            let chunk = Bytes::from(vec![b'd'; CHUNK]);
            let stream = futures_stream((0..SIZE / CHUNK as u64).map(move |_| {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(chunk.clone()))
            }));
            Response::new(http_body_util::StreamBody::new(stream).boxed())
        }
    })
    .await;
    let pki = Pki::new();
    // One worker: the single-threaded runtime streams both ways too.
    let toml = json_config_site(
        &pki.leaf("app", &["app.test"]),
        &upstream.url(),
        "workers = 1",
        "info",
        "max_request_body = \"1GiB\"",
    );
    let p = Process::start(&toml, &[], None).await;
    let client = Client::new(&pki, p.https);
    let before = p.proc_status_kib("VmHWM");

    // Upload.
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let stream = futures_stream((0..SIZE / CHUNK as u64).map(move |_| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(chunk.clone()))
    }));
    let req = Request::post("https://app.test/upload")
        .header("content-length", SIZE.to_string())
        .body(http_body_util::StreamBody::new(stream).boxed())
        .unwrap();
    let res = client.send(Proto::H1, req).await;
    assert_eq!(res.text(), "stored");
    assert_eq!(received.load(Ordering::SeqCst), SIZE);

    // Download, counted as it arrives.
    let tls = client.tls("app.test", Proto::H1).await.unwrap();
    let res = send_on(tls, Proto::H1, get("https://app.test/download")).await;
    let mut body = res.into_body();
    let mut got = 0u64;
    while let Some(f) = body.frame().await {
        got += f.unwrap().into_data().map(|d| d.len() as u64).unwrap_or(0);
    }
    assert_eq!(got, SIZE);

    let peak = p.proc_status_kib("VmHWM");
    eprintln!("VmHWM before {before} KiB, after 2 x 256 MiB: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB grew with the body");
}

/// An iterator as a `Stream`.
fn futures_stream<I: Iterator + Unpin + Send>(
    mut it: I,
) -> impl futures_core::Stream<Item = I::Item> + Send {
    struct S<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for S<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    let _ = &mut it;
    S(it)
}

#[tokio::test]
async fn running_out_of_file_descriptors_does_not_stop_the_accept_loop() {
    let upstream = Upstream::ok().await;
    let pki = Pki::new();
    let toml = json_config(&pki.leaf("app", &["app.test"]), &upstream.url(), "", "info");
    let mut p = Process::start(&toml, &[], Some("ulimit -n 48;")).await;
    // Hold more connections than the gateway has descriptors for.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = tokio::net::TcpStream::connect(p.https).await {
            held.push(s);
        }
    }
    p.wait_for_line(|l| l.contains("accept failed")).await;
    drop(held);
    // Once descriptors are free again, the same gateway serves.
    let client = Client::new(&pki, p.https);
    let res = client.get("https://app.test/").await;
    assert_eq!(res.status, 200);
    assert!(p.child.try_wait().unwrap().is_none(), "the gateway exited");
}
