//! The gateway core over real sockets: TLS, routing, forwarding, streaming,
//! failures. Each test names the point of issue 2 it guards.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

// 1. TLS termination, ALPN, HTTP/1.1 upstream, pooling.

#[tokio::test]
async fn forwards_http1_and_http2_to_an_http11_upstream_with_host_preserved() {
    let s = Setup::basic(Upstream::ok().await).await;
    for proto in [Proto::H1, Proto::H2] {
        let res = s
            .client
            .send(proto, get("https://app.test/hello?x=1"))
            .await;
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), "ok");
        assert_eq!(
            res.version,
            if proto == Proto::H2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        let seen = s.upstream.last();
        assert_eq!(seen.version, Version::HTTP_11, "{proto:?}");
        assert_eq!(seen.uri, "/hello?x=1");
        assert_eq!(seen.headers["host"], "app.test");
    }
}

#[tokio::test]
async fn http10_clients_still_reach_the_upstream_as_http11() {
    let s = Setup::basic(Upstream::ok().await).await;
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let out = exchange(tls, b"GET /old HTTP/1.0\r\nHost: app.test\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    assert_eq!(s.upstream.last().version, Version::HTTP_11);
}

#[tokio::test]
async fn tls12_and_tls13_both_negotiate_and_alpn_offers_h2() {
    let s = Setup::basic(Upstream::ok().await).await;
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = s.pki.client_config_versions(&[b"h2", b"http/1.1"], &[v]);
        let tls = tls_connect(s.gateway.https, "app.test", cfg)
            .await
            .expect("handshake");
        let conn = tls.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(v.version));
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    }
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_kept_alive() {
    let s = Setup::basic(Upstream::ok().await).await;
    for _ in 0..10 {
        assert_eq!(s.client.get("https://app.test/").await.status, 200);
    }
    assert_eq!(s.upstream.requests().len(), 10);
    assert_eq!(
        s.upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn chunked_and_bodiless_responses_give_their_connection_back() {
    let upstream = Upstream::custom(|req| async move {
        match req.uri().path() {
            // No Content-Length: hyper sends it chunked.
            "/chunked" => {
                let (tx, rx) = mpsc::channel(2);
                tx.send(Ok(Frame::data(Bytes::from_static(b"one,"))))
                    .await
                    .unwrap();
                tx.send(Ok(Frame::data(Bytes::from_static(b"two"))))
                    .await
                    .unwrap();
                Response::new(StreamBody::new(tokio_stream(rx)).boxed())
            }
            "/none" => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(full(""))
                .unwrap(),
            _ => Response::new(full("ok")),
        }
    })
    .await;
    let s = Setup::basic(upstream).await;
    for _ in 0..3 {
        let r = s.client.get("https://app.test/chunked").await;
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"one,two"[..]));
        let r = s.client.get("https://app.test/none").await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let head = Request::head("https://app.test/").body(full("")).unwrap();
        let r = s.client.send(Proto::H1, head).await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
        assert_eq!(&s.client.get("https://app.test/").await.body[..], b"ok");
    }
    assert_eq!(
        s.upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "every response handed its connection back"
    );
}

#[tokio::test]
async fn http2_streams_of_every_size_on_one_connection_all_arrive_intact() {
    // The gateway gathers an HTTP/2 connection's writes (src/coalesce.rs):
    // bodies below, at and above its 16 KiB buffer, and above the stream
    // window, answered in whatever order the upstream finishes them.
    fn body_of(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }
    let upstream = Upstream::custom(|req| async move {
        let len: usize = req.uri().path()[1..].parse().unwrap();
        Response::new(full(body_of(len)))
    })
    .await;
    let s = Setup::basic(upstream).await;
    let tls = s.client.tls("app.test", Proto::H2).await.unwrap();
    let sender = h2_sender(tls).await;
    let sizes = [
        0, 1, 255, 256, 1024, 4000, 16_383, 16_384, 16_385, 40_000, 100_000, 3_000_000,
    ];
    let mut pending = Vec::new();
    for round in 0..4 {
        for &len in &sizes {
            let mut sender = sender.clone();
            pending.push(tokio::spawn(async move {
                let req = Request::get(format!("https://app.test/{len}"))
                    .version(Version::HTTP_2)
                    .body(full(""))
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{len} (round {round})");
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), len, "round {round}");
                assert!(
                    body[..] == body_of(len)[..],
                    "{len} bytes differ (round {round})"
                );
            }));
        }
    }
    for p in pending {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .expect("every stream completes")
            .unwrap();
    }
}

#[tokio::test]
async fn http1_spoken_after_alpn_h2_is_answered_at_once_even_pipelined() {
    // A client that negotiates h2 and then speaks HTTP/1.1 is served as
    // HTTP/1.1, pipelining included: the first of two pipelined responses
    // reaches it while the second is still being made. (Writes are gathered
    // only after the HTTP/2 preface; the unit tests in src/coalesce.rs check
    // that an HTTP/1.1 flush is never deferred.)
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let upstream = Upstream::custom(move |req| {
        let gate = gate.clone();
        async move {
            if req.uri().path() == "/slow" {
                gate.notified().await;
            }
            Response::new(full(format!("done{}", req.uri().path())))
        }
    })
    .await;
    let s = Setup::basic(upstream).await;
    let mut tls = s.client.tls("app.test", Proto::H2).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(
        b"GET /fast HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /slow HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains("done/fast") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first response arrived while the second was pending");
    release.notify_one();
    tls.read_to_end(&mut seen).await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.ends_with("done/slow"), "{text}");
}

#[tokio::test]
async fn an_abandoned_download_closes_its_upstream_connection() {
    // The upstream streams until its connection goes away, then says so.
    let (stopped_tx, mut stopped_rx) = mpsc::channel::<()>(1);
    let upstream = Upstream::custom(move |req| {
        let stopped = stopped_tx.clone();
        async move {
            if req.uri().path() != "/endless" {
                return Response::new(full("ok"));
            }
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
                while tx.send(Ok(Frame::data(chunk.clone()))).await.is_ok() {}
                let _ = stopped.send(()).await;
            });
            Response::new(StreamBody::new(tokio_stream(rx)).boxed())
        }
    })
    .await;
    let s = Setup::basic(upstream).await;
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let res = send_on(tls, Proto::H1, get("https://app.test/endless")).await;
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    drop(body);
    // Were the connection kept (or drained) for reuse, the stream would go
    // on for ever.
    tokio::time::timeout(Duration::from_secs(30), stopped_rx.recv())
        .await
        .expect("the gateway closed the abandoned upstream connection");
    for _ in 0..3 {
        assert_eq!(&s.client.get("https://app.test/").await.body[..], b"ok");
    }
}

/// An upstream that answers every request with `response`, as bytes on the
/// wire, and closes the connection.
async fn raw_upstream(response: &'static [u8]) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(response).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Upstream {
        addr,
        seen: Arc::default(),
        connections: Arc::default(),
    }
}

#[tokio::test]
async fn an_upstream_that_closes_after_each_response_loses_no_request() {
    // Like PHP's built-in server: one request per connection, then close.
    let s = Setup::basic(
        raw_upstream(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").await,
    )
    .await;
    for i in 0..10 {
        let r = s.client.get(&format!("https://app.test/{i}")).await;
        assert_eq!(
            (r.status, &r.body[..]),
            (StatusCode::OK, &b"ok"[..]),
            "request {i}"
        );
    }
}

#[tokio::test]
async fn uploads_stream_to_the_upstream_before_the_client_finishes() {
    // The upstream reports each request's first body chunk; the client sends
    // its second chunk only after that, so a gateway that buffered the body
    // would never get there.
    let (first_tx, mut first_rx) = mpsc::channel::<Bytes>(1);
    let upstream = Upstream::custom(move |req: Request<hyper::body::Incoming>| {
        let first_tx = first_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                let data = frame.unwrap().into_data().unwrap_or_default();
                if total == 0 {
                    first_tx.send(data.clone()).await.unwrap();
                }
                total += data.len();
            }
            Response::new(full(format!("got {total}")))
        }
    })
    .await;
    let s = Setup::basic(upstream).await;
    for proto in [Proto::H1, Proto::H2] {
        let (tx, rx) =
            mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(1);
        let body = StreamBody::new(tokio_stream(rx)).boxed();
        let req = Request::post("https://app.test/upload").body(body).unwrap();
        let client = s.client.clone();
        let pending = tokio::spawn(async move { client.send(proto, req).await });
        tx.send(Ok(Frame::data(Bytes::from_static(b"first-chunk"))))
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), first_rx.recv())
            .await
            .expect("the upstream saw the first chunk while the upload was open")
            .unwrap();
        assert_eq!(&first[..], b"first-chunk", "{proto:?}");
        tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
            .await
            .unwrap();
        drop(tx);
        let res = pending.await.unwrap();
        assert_eq!(res.text(), "got 17");
    }
}

#[tokio::test]
async fn downloads_stream_to_the_client_before_the_upstream_finishes() {
    let go_on = Arc::new(Notify::new());
    let signal = go_on.clone();
    let upstream = Upstream::custom(move |_req| {
        let signal = signal.clone();
        async move {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                tx.send(Ok(Frame::data(Bytes::from_static(b"part one;"))))
                    .await
                    .unwrap();
                signal.notified().await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"part two"))))
                    .await
                    .unwrap();
            });
            Response::new(StreamBody::new(tokio_stream(rx)).boxed())
        }
    })
    .await;
    let s = Setup::basic(upstream).await;
    for proto in [Proto::H1, Proto::H2] {
        let tls = s.client.tls("app.test", proto).await.unwrap();
        let res = send_on(tls, proto, get("https://app.test/big")).await;
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"part one;", "{proto:?}");
        go_on.notify_one();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"part two");
    }
}

/// An mpsc receiver as a `Stream`, without pulling in tokio-stream.
fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    futures_util_stream::poll_fn(move |cx| rx.poll_recv(cx))
}

mod futures_util_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct PollFn<F>(F);

    pub fn poll_fn<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>>>(f: F) -> PollFn<F> {
        PollFn(f)
    }

    impl<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>> + Unpin> futures_core::Stream for PollFn<F> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            (self.0)(cx)
        }
    }
}

// 2. Sites by Host and SNI; https upstreams.

async fn two_sites(extra_a: &str) -> (Pki, Upstream, Upstream, TestGateway) {
    let pki = Pki::new();
    let (a, b) = (
        Upstream::recording(|_| Response::new(full("site a"))).await,
        Upstream::recording(|_| Response::new(full("site b"))).await,
    );
    let toml = format!(
        "{}\n{}",
        site_toml(&["a.test"], &pki.leaf("a", &["a.test"]), &a.url(), extra_a),
        site_toml(&["b.test"], &pki.leaf("b", &["b.test"]), &b.url(), "")
    );
    let gw = TestGateway::start(&toml).await;
    (pki, a, b, gw)
}

#[tokio::test]
async fn each_site_gets_its_own_certificate_by_sni_and_its_own_upstream() {
    let (pki, _a, _b, gw) = two_sites("").await;
    let client = Client::new(&pki, gw.https);
    for (host, body) in [("a.test", "site a"), ("b.test", "site b")] {
        let tls = client.tls(host, Proto::H1).await.unwrap();
        let cert = &tls.get_ref().1.peer_certificates().unwrap()[0];
        let (_, parsed) = x509_names(cert);
        assert!(parsed.contains(&host.to_string()), "{host}: {parsed:?}");
        assert_eq!(client.get(&format!("https://{host}/")).await.text(), body);
        // HTTP/2 routes by :authority the same way.
        assert_eq!(
            client
                .send(Proto::H2, get(&format!("https://{host}/")))
                .await
                .text(),
            body
        );
    }
}

/// The DNS names in a certificate, found by scanning its DER for them.
fn x509_names(cert: &[u8]) -> ((), Vec<String>) {
    let text = String::from_utf8_lossy(cert);
    let names = ["a.test", "b.test", "app.test"]
        .iter()
        .filter(|n| text.contains(*n))
        .map(|n| n.to_string())
        .collect();
    ((), names)
}

#[tokio::test]
async fn host_that_disagrees_with_sni_or_is_unknown_gets_421() {
    let (pki, a, b, gw) = two_sites("").await;
    let client = Client::new(&pki, gw.https);
    // Connected for a.test, asking for b.test (connection reuse attack).
    let res = client
        .send_sni("a.test", Proto::H1, get("https://b.test/"))
        .await;
    assert_eq!(res.status, StatusCode::MISDIRECTED_REQUEST);
    let res = client
        .send_sni("a.test", Proto::H2, get("https://b.test/"))
        .await;
    assert_eq!(res.status, StatusCode::MISDIRECTED_REQUEST);
    // A Host no site serves.
    let mut req = get("https://a.test/");
    req.headers_mut()
        .insert(header::HOST, "unknown.test".parse().unwrap());
    let res = client.send_sni("a.test", Proto::H1, req).await;
    assert_eq!(res.status, StatusCode::MISDIRECTED_REQUEST);
    // Mixed case and a trailing dot are the same host.
    let mut req = get("https://a.test/");
    req.headers_mut()
        .insert(header::HOST, "A.Test.".parse().unwrap());
    assert_eq!(client.send_sni("a.test", Proto::H1, req).await.status, 200);
    assert_eq!(a.requests().len(), 1);
    assert!(b.requests().is_empty());
    // An unknown SNI name with no default site gets no handshake at all.
    assert!(client.tls("c.test", Proto::H1).await.is_err());
}

#[tokio::test]
async fn a_default_site_takes_unknown_hosts() {
    let (pki, a, _b, gw) = two_sites("default = true").await;
    let client = Client::new(&pki, gw.https);
    let mut req = get("https://a.test/");
    req.headers_mut()
        .insert(header::HOST, "unknown.test".parse().unwrap());
    assert_eq!(
        client.send_sni("a.test", Proto::H1, req).await.text(),
        "site a"
    );
    assert_eq!(a.requests().len(), 1);
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let s = Setup::basic(Upstream::ok().await).await;
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let out = exchange(
        tls,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn https_upstreams_are_verified() {
    let pki = Pki::new();
    let upstream_cert = pki.leaf("upstream", &["localhost"]);
    let https_upstream = tls_upstream(&pki, &upstream_cert).await;
    let site_cert = pki.leaf("app", &["app.test"]);
    let url = format!("https://localhost:{}", https_upstream.port());
    // Trusting the upstream's CA: it works.
    let ca = format!("upstream.ca = {:?}", pki.ca_path());
    let gw = TestGateway::start(&site_toml(&["app.test"], &site_cert, &url, &ca)).await;
    let client = Client::new(&pki, gw.https);
    let res = client.get("https://app.test/").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "over tls");
    // Not trusting it: the certificate is refused, the client gets 502.
    let gw = TestGateway::start(&site_toml(&["app.test"], &site_cert, &url, "")).await;
    let client = Client::new(&pki, gw.https);
    assert_eq!(
        client.get("https://app.test/").await.status,
        StatusCode::BAD_GATEWAY
    );
}

async fn tls_upstream(
    _pki: &Pki,
    cert: &(std::path::PathBuf, std::path::PathBuf),
) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&cert.0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.1).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(full("over tls")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_malformed_upstream_header_line_is_removed_and_the_page_served() {
    // Browsers skip a line that is not a field line, and refuse a
    // Set-Cookie line with a control byte or a bare CR (RFC 6265bis §5.6):
    // the gateway removes such a line and serves the rest.
    for (head, cookies) in [
        (
            &b"HTTP/1.1 200 OK\r\nSet-Cookie: bad=1\x01\r\nSet-Cookie: ok=1\r\nContent-Length: 2\r\n\r\nok"[..],
            &["ok"][..],
        ),
        (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: lf=13\nZYX\r\nContent-Length: 2\r\n\r\nok",
            &["lf"],
        ),
        (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\rb\r\nContent-Length: 2\r\n\r\nok",
            &[],
        ),
        (
            // Whitespace before the colon is removed (RFC 9112 §5.1), and
            // the cookie hardened like any other.
            b"HTTP/1.1 200 OK\r\nSet-Cookie : spaced=1\r\nContent-Length: 2\r\n\r\nok",
            &["spaced"],
        ),
    ] {
        let s = Setup::basic(raw_upstream(head).await).await;
        for proto in [Proto::H1, Proto::H2] {
            let r = s.client.send(proto, get("https://app.test/")).await;
            let what = String::from_utf8_lossy(head);
            assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]), "{what}");
            let set = r.set_cookies();
            let names: Vec<&str> = set.iter().map(|c| c.split('=').next().unwrap()).collect();
            assert_eq!(names, cookies, "{what}");
            for c in &set {
                assert!(c.contains("; Secure") && c.contains("; HttpOnly"), "{c}");
            }

        }
    }
}

#[tokio::test]
async fn a_malformed_framing_or_content_field_fails_the_response() {
    // Removing a broken framing line would make hyper read the body by the
    // other framing header and leave the rest on a pooled connection, to be
    // read as the next client's response: such a head is a 502, as is one
    // with any other field whose value has a control byte.
    for head in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\x0b\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer\x01Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length\x00: 40\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nConnection: close\x01\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        // Any other field with a control byte in its value: removed, this
        // one would serve an attachment inline.
        b"HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename=\"a\x7f.html\"\r\nContent-Length: 2\r\n\r\nok",
        // A folded line is refused too (RFC 9112 §5.2 lets a proxy do so).
        b"HTTP/1.1 200 OK\r\nX-Bad: \x01\r\n Set-Cookie: a=b\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let s = Setup::basic(raw_upstream(head).await).await;
        for proto in [Proto::H1, Proto::H2] {
            let r = s.client.send(proto, get("https://app.test/")).await;
            assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", String::from_utf8_lossy(head));
            assert!(r.set_cookies().is_empty());
        }
    }
}

#[tokio::test]
async fn heads_are_cleaned_on_every_response_of_a_pooled_connection_and_bodies_never() {
    // One keep-alive upstream connection serves every request; each head
    // has a bad line, and each body carries the bytes a head scan would
    // remove. The scan must find each new head and leave every body whole.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let _ = conn.set_nodelay(true);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                for i in 0.. {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    seen.drain(..end + 4);
                    let body = format!("X: \x01{i}\r\nSet-Cookie: in-body=1\r\n\r\n");
                    let head = format!(
                        "HTTP/1.1 100 Continue\r\nX\x02\r\n\r\nHTTP/1.1 200 OK\r\nSet-Cookie: bad{i}=\x7f\r\nSet-Cookie: n={i}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    // Split where a line is cut, to cross reads.
                    let wire = format!("{head}{body}").into_bytes();
                    let cut = 40 + i % 30;
                    if conn.write_all(&wire[..cut]).await.is_err() {
                        return;
                    }
                    let _ = conn.flush().await;
                    tokio::task::yield_now().await;
                    if conn.write_all(&wire[cut..]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let s = Setup::basic(Upstream {
        addr,
        seen: Arc::default(),
        connections: connections.clone(),
    })
    .await;
    for i in 0..40 {
        let proto = if i % 2 == 0 { Proto::H1 } else { Proto::H2 };
        let r = s.client.send(proto, get("https://app.test/")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(
            r.body,
            format!("X: \x01{i}\r\nSet-Cookie: in-body=1\r\n\r\n").as_bytes(),
            "request {i}"
        );
        let set = r.set_cookies();
        assert_eq!(set.len(), 1, "request {i}: {set:?}");
        assert!(
            set[0].starts_with(&format!("n={i};")),
            "request {i}: {set:?}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one pooled connection served all"
    );
}

// 3. The redirect listener and HSTS.

#[tokio::test]
async fn plain_http_listener_only_redirects_known_hosts() {
    let s = Setup::new(
        Upstream::ok().await,
        "[listen]\nhttp_redirect = \"127.0.0.1:0\"",
        "",
    )
    .await;
    let http = s.gateway.http.unwrap();
    let port = s.gateway.https.port();
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let out = exchange(tcp, b"POST /login?next=/a HTTP/1.1\r\nHost: www.app.test:8080\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b").await;
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains(&format!(
            "location: https://www.app.test:{port}/login?next=/a\r\n"
        )),
        "{out}"
    );
    // A session ID in the plain-HTTP URL does not follow into the redirect.
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let out = exchange(
        tcp,
        b"GET /a;jsessionid=X1?PHPSESSID=Y1&b=2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        out.to_ascii_lowercase()
            .contains(&format!("location: https://app.test:{port}/a?b=2\r\n")),
        "{out}"
    );
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let out = exchange(
        tcp,
        b"GET / HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("location:"), "{out}");
    assert!(
        s.upstream.requests().is_empty(),
        "the redirect listener never proxies"
    );
}

#[tokio::test]
async fn hsts_is_on_by_default_and_configurable() {
    let s = Setup::basic(Upstream::ok().await).await;
    assert_eq!(
        s.client
            .get("https://app.test/")
            .await
            .header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // Also on the gateway's own error responses.
    let res = s
        .client
        .send(
            Proto::H1,
            Request::builder()
                .method("TRACE")
                .uri("https://app.test/")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    let s = Setup::new(
        Upstream::ok().await,
        "",
        "hsts.max_age = \"1d\"\nhsts.include_subdomains = true",
    )
    .await;
    assert_eq!(
        s.client
            .get("https://app.test/")
            .await
            .header("strict-transport-security"),
        Some("max-age=86400; includeSubDomains")
    );
    let s = Setup::new(Upstream::ok().await, "", "hsts.enabled = false").await;
    assert_eq!(
        s.client
            .get("https://app.test/")
            .await
            .header("strict-transport-security"),
        None
    );
}

// 4. Forwarding per RFC 9110.

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "yes")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let s = Setup::basic(upstream).await;
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let out = exchange(
        tls,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: 1\r\n\r\n",
    )
    .await;
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("x-kept: yes"), "{out}");
    assert!(!lower.contains("x-upstream-hop"), "{out}");
    assert!(!lower.contains("keep-alive: timeout"), "{out}");
    let seen = s.upstream.last();
    for h in ["x-client-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(!seen.headers.contains_key(h), "{h} reached the upstream");
    }
    assert_eq!(seen.headers["x-kept"], "1");
}

#[tokio::test]
async fn forwarding_headers_are_set_and_client_claims_dropped() {
    let s = Setup::basic(Upstream::ok().await).await;
    let mut req = get("https://app.test/");
    for (k, v) in [
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=1.2.3.4;proto=http"),
        ("x-real-ip", "1.2.3.4"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
    ] {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    s.client.send(Proto::H2, req).await;
    let h = s.upstream.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "app.test");
    for gone in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream");
    }
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_extended() {
    let s = Setup::new(
        Upstream::ok().await,
        "[listen]\ntrusted_proxies = [\"127.0.0.0/8\"]",
        "",
    )
    .await;
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
    req.headers_mut()
        .insert("x-real-ip", "198.51.100.7".parse().unwrap());
    s.client.send(Proto::H1, req).await;
    let h = s.upstream.last().headers;
    assert_eq!(h["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "198.51.100.7");
}

#[tokio::test]
async fn trace_and_connect_are_refused_without_reaching_the_upstream() {
    let s = Setup::basic(Upstream::ok().await).await;
    for m in ["TRACE", "TRACK"] {
        let req = Request::builder()
            .method(m)
            .uri("https://app.test/")
            .body(full(""))
            .unwrap();
        assert_eq!(
            s.client.send(Proto::H1, req).await.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{m}"
        );
    }
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let out = exchange(
        tls,
        b"CONNECT internal.test:22 HTTP/1.1\r\nHost: internal.test:22\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 4"), "{out}");
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn redirects_to_the_upstream_or_to_http_are_rewritten_to_the_public_https_url() {
    let upstream = Upstream::recording(|seen| {
        let port = seen.headers["x-test-upstream-port"]
            .to_str()
            .unwrap()
            .to_string();
        Response::builder()
            .status(302)
            .header("location", format!("http://127.0.0.1:{port}/next?a=1"))
            .header("content-location", "http://www.app.test/canonical")
            .header("refresh", format!("3; url=http://127.0.0.1:{port}/later"))
            .body(full(""))
            .unwrap()
    })
    .await;
    let port = upstream.addr.port();
    let s = Setup::basic(upstream).await;
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("x-test-upstream-port", port.to_string().parse().unwrap());
    let res = s.client.send(Proto::H1, req).await;
    assert_eq!(res.status, 302);
    assert_eq!(res.header("location"), Some("https://app.test/next?a=1"));
    assert_eq!(
        res.header("content-location"),
        Some("https://www.app.test/canonical")
    );
    assert_eq!(res.header("refresh"), Some("3; url=https://app.test/later"));
}

#[tokio::test]
async fn websocket_upgrades_pass_end_to_end() {
    let s = Setup::basic(echo_upgrades().await).await;
    let mut ws = open_tunnel(&s.client).await;
    assert!(echoes(&mut ws, b"hello").await);
}

/// Resolves once the gateway no longer accepts connections.
async fn listener_gone(addr: std::net::SocketAddr) {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot_and_is_drained_at_shutdown() {
    let s = Setup::new(
        echo_upgrades().await,
        "[listen]\nmax_connections = 1\nshutdown_grace = \"60s\"",
        "",
    )
    .await;
    let mut ws = open_tunnel(&s.client).await;
    assert!(echoes(&mut ws, b"one").await);
    // The upgraded connection's HTTP side is over, but the tunnel still
    // counts: with a bound of one, no other connection is served.
    let client = s.client.clone();
    let mut second = tokio::spawn(async move { client.get("https://app.test/").await });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut second).await;
    assert!(
        early.is_err(),
        "served a second connection next to a tunnel"
    );
    second.abort();
    // Shutdown waits for the tunnel, which keeps working meanwhile.
    let addr = s.gateway.https;
    let shutdown = tokio::spawn(s.gateway.shutdown());
    listener_gone(addr).await;
    assert!(
        echoes(&mut ws, b"two").await,
        "the tunnel broke at shutdown"
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the tunnel"
    );
    drop(ws);
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown finished once the tunnel closed")
        .unwrap();
}

#[tokio::test]
async fn a_tunnel_is_closed_when_the_shutdown_grace_is_over() {
    let s = Setup::new(
        echo_upgrades().await,
        "[listen]\nshutdown_grace = \"1s\"",
        "",
    )
    .await;
    let mut ws = open_tunnel(&s.client).await;
    assert!(echoes(&mut ws, b"one").await);
    let shutdown = tokio::spawn(s.gateway.shutdown());
    // No more bytes: the gateway ends the tunnel after the grace period.
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(20), ws.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "tunnel still open: {read:?}"
    );
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown finished")
        .unwrap();
}

// 5. Clean failures.

#[tokio::test]
async fn refused_upstream_is_502_and_names_no_address() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let pki = Pki::new();
    let gw = TestGateway::start(&site_toml(
        &["app.test"],
        &pki.leaf("app", &["app.test"]),
        &format!("http://{addr}"),
        "",
    ))
    .await;
    let client = Client::new(&pki, gw.https);
    for proto in [Proto::H1, Proto::H2] {
        let res = client.send(proto, get("https://app.test/")).await;
        assert_eq!(res.status, StatusCode::BAD_GATEWAY);
        assert_eq!(res.text(), "502 Bad Gateway\n");
        assert!(!res.text().contains("127.0.0.1"));
    }
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let never = Arc::new(Notify::new());
    let upstream = Upstream::custom(move |_req| {
        let never = never.clone();
        async move {
            never.notified().await;
            Response::new(full("too late"))
        }
    })
    .await;
    let s = Setup::new(upstream, "", "upstream.response_timeout = \"200ms\"").await;
    let res = s.client.get("https://app.test/").await;
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.text(), "504 Gateway Timeout\n");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let s = Setup::new(
        Upstream::ok().await,
        "[listen]\nmax_header_bytes = \"16KiB\"",
        "",
    )
    .await;
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("x-big", "a".repeat(20_000).parse().unwrap());
    assert_eq!(
        s.client.send(Proto::H1, req).await.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_declared_or_streamed() {
    let s = Setup::new(Upstream::ok().await, "", "max_request_body = 1000").await;
    // Declared length over the limit: refused before the upstream is asked.
    let req = Request::post("https://app.test/up")
        .body(full(vec![b'x'; 1001]))
        .unwrap();
    assert_eq!(
        s.client.send(Proto::H1, req).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(s.upstream.requests().is_empty());
    // The same over HTTP/2, with more body than the stream window, which
    // the client is still sending when the 413 comes back.
    let req = Request::post("https://app.test/up")
        .body(full(vec![b'x'; 300_000]))
        .unwrap();
    assert_eq!(
        s.client.send(Proto::H2, req).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(s.upstream.requests().is_empty());
    // At the limit: passes.
    let req = Request::post("https://app.test/up")
        .body(full(vec![b'x'; 1000]))
        .unwrap();
    assert_eq!(s.client.send(Proto::H2, req).await.status, 200);
    // HTTP/2 without a declared length: cut off as it streams.
    let (tx, rx) =
        mpsc::channel::<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(4);
    let body = StreamBody::new(tokio_stream(rx)).boxed();
    let req = Request::post("https://app.test/up").body(body).unwrap();
    let client = s.client.clone();
    let pending = tokio::spawn(async move { client.send(Proto::H2, req).await });
    for _ in 0..3 {
        if tx
            .send(Ok(Frame::data(Bytes::from(vec![b'z'; 600]))))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    assert_eq!(pending.await.unwrap().status, StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked, no length: cut off as it streams.
    let tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "y".repeat(1500));
    let raw = format!(
        "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let out = exchange(tls, raw.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let s = Setup::new(
        Upstream::ok().await,
        "[listen]\nheader_read_timeout = \"300ms\"",
        "",
    )
    .await;
    let mut tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The gateway closes; a bound here only keeps a broken build from hanging.
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gateway did not drop the slow client");
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn the_tls_handshake_has_a_deadline() {
    let s = Setup::new(
        Upstream::ok().await,
        "[listen]\ntls_handshake_timeout = \"300ms\"",
        "",
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(s.gateway.https)
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a silent client kept its connection");
}

#[tokio::test]
async fn connections_are_bounded() {
    let s = Setup::new(Upstream::ok().await, "[listen]\nmax_connections = 2", "").await;
    let first = s.client.tls("app.test", Proto::H1).await.unwrap();
    let _second = s.client.tls("app.test", Proto::H1).await.unwrap();
    // The third is not accepted while two are open: its handshake cannot finish.
    let client = s.client.clone();
    let mut third = tokio::spawn(async move { client.get("https://app.test/").await });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served while two were open"
    );
    drop(first);
    let res = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(res.status, 200);
}

// 6. Graceful shutdown (in process; the process-level test is in cli.rs).

#[tokio::test]
async fn shutdown_lets_the_in_flight_request_finish() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>(1);
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
    let s = Setup::basic(upstream).await;
    let client = s.client.clone();
    let in_flight = tokio::spawn(async move { client.get("https://app.test/slow").await });
    let mut entered_rx = entered_rx;
    entered_rx.recv().await.unwrap();
    let addr = s.gateway.https;
    let shutdown = tokio::spawn(s.gateway.shutdown());
    // New connections are refused once the listener is gone.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "still accepting after shutdown");
    release.notify_one();
    let res = in_flight.await.unwrap();
    assert_eq!(res.text(), "finished");
    shutdown.await.unwrap();
}

#[tokio::test]
async fn an_ipv6_literal_host_finds_its_site() {
    let pki = Pki::new();
    let upstream = Upstream::ok().await;
    let gw = TestGateway::start(&site_toml(
        &["::1"],
        &pki.leaf("v6", &["::1"]),
        &upstream.url(),
        "",
    ))
    .await;
    let client = Client::new(&pki, gw.https);
    let res = client
        .send_sni("::1", Proto::H1, get("https://[::1]/"))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(upstream.last().headers["host"], "[::1]");
}
