//! The test harness: a fresh PKI per test, an upstream that records what it
//! received, the gateway in process on ephemeral ports, real TLS clients.
//! Nothing here sleeps to wait for readiness: sockets are bound before
//! anything connects to them.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use sessiongate::{Config, Listeners, RunOptions};

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A test CA and the leaf certificates it signs, as files in a temp dir.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "sessiongate test CA");
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        Pki {
            dir,
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Writes `<stem>.crt` and `<stem>.key` for the given names.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{stem}.crt")),
            self.dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.client_config_versions(alpn, rustls::DEFAULT_VERSIONS)
    }

    pub fn client_config_versions(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>
        + Send
        + Sync,
>;

/// An in-process HTTP/1.1 upstream on an ephemeral port.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    /// Records each request (whole body read) and answers with `respond`.
    pub async fn recording<F>(respond: F) -> Upstream
    where
        F: Fn(&Seen) -> Response<TestBody> + Send + Sync + 'static,
    {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let respond = Arc::new(respond);
        let mut up = Upstream::custom(move |req: Request<Incoming>| {
            let record = record.clone();
            let respond = respond.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let s = Seen {
                    method: parts.method,
                    uri: parts.uri,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                };
                let res = respond(&s);
                record.lock().unwrap().push(s);
                res
            }
        })
        .await;
        up.seen = seen;
        up
    }

    /// Answers 200 "ok" to everything, recording what it saw.
    pub async fn ok() -> Upstream {
        Upstream::recording(|_| Response::new(full("ok"))).await
    }

    /// Serves each request with `handler`, which may stream.
    pub async fn custom<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen: Arc::default(),
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream saw a request")
    }
}

/// A site block for a config: hosts, a certificate, an upstream, extra lines
/// (site keys, dotted `upstream.*` keys, or later tables).
pub fn site_toml(hosts: &[&str], cert: &(PathBuf, PathBuf), upstream: &str, extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "[[site]]\nhosts = [{}]\ntls.cert = {:?}\ntls.key = {:?}\nupstream.url = {upstream:?}\n{extra}\n",
        hosts.join(", "),
        cert.0,
        cert.1,
    )
}

/// The gateway running in this process on ephemeral loopback ports.
pub struct TestGateway {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts the gateway from a config document; listener addresses in it
    /// are replaced by ephemeral ones (`http_redirect` only if present).
    pub async fn start(toml: &str) -> TestGateway {
        let config = Config::parse(toml).unwrap_or_else(|e| panic!("test config: {e}\n{toml}"));
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = match config.listen.http_redirect {
            Some(_) => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            None => None,
        };
        let (https_addr, http_addr) = (
            https.local_addr().unwrap(),
            http.as_ref().map(|l| l.local_addr().unwrap()),
        );
        let prepared = sessiongate::prepare(Arc::new(config), RunOptions::default()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            prepared
                .serve(
                    Listeners {
                        https,
                        http_redirect: http,
                    },
                    async {
                        let _ = rx.await;
                    },
                )
                .await
        });
        TestGateway {
            https: https_addr,
            http: http_addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits until the gateway has drained.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// A response with its whole body.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` line, in order.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// Whether the response clears the gateway cookie.
    pub fn clears_token(&self) -> bool {
        self.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Host-sg=;") && c.contains("Max-Age=0"))
    }
}

/// A TLS client that trusts the test CA.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(pki: &Pki, addr: SocketAddr) -> Client {
        Client {
            addr,
            h1: pki.client_config(&[b"http/1.1"]),
            h2: pki.client_config(&[b"h2"]),
        }
    }

    pub async fn tls(&self, sni: &str, proto: Proto) -> std::io::Result<TlsStream<TcpStream>> {
        let cfg = match proto {
            Proto::H1 => self.h1.clone(),
            Proto::H2 => self.h2.clone(),
        };
        tls_connect(self.addr, sni, cfg).await
    }

    /// Sends one request on a new connection; SNI is the URI's host.
    pub async fn send(&self, proto: Proto, req: Request<TestBody>) -> Resp {
        let host = req.uri().host().expect("absolute URI").to_string();
        self.send_sni(&host, proto, req).await
    }

    pub async fn send_sni(&self, sni: &str, proto: Proto, req: Request<TestBody>) -> Resp {
        let tls = self.tls(sni, proto).await.expect("TLS handshake");
        let res = send_on(tls, proto, req).await;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Resp {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.send(Proto::H1, get(url)).await
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).expect("valid server name");
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// An HTTP/2 client connection over an established TLS stream, driven in
/// the background; the sender can be cloned for concurrent streams.
pub async fn h2_sender(
    tls: TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `req` over an established TLS stream; returns the streaming response.
pub async fn send_on(
    tls: TlsStream<TcpStream>,
    proto: Proto,
    mut req: Request<TestBody>,
) -> Response<Incoming> {
    match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            });
            if !req.headers().contains_key(header::HOST) {
                let host = req.uri().authority().unwrap().to_string();
                req.headers_mut()
                    .insert(header::HOST, host.parse().unwrap());
            }
            *req.uri_mut() = req
                .uri()
                .path_and_query()
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            sender.send_request(req).await.unwrap()
        }
        Proto::H2 => {
            let mut sender = h2_sender(tls).await;
            *req.version_mut() = Version::HTTP_2;
            sender.send_request(req).await.unwrap()
        }
    }
}

pub fn get(url: &str) -> Request<TestBody> {
    Request::get(url).body(full("")).unwrap()
}

/// A raw TLS (or plain) conversation: write bytes, read until the peer closes.
pub async fn exchange<S>(mut s: S, bytes: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A standard single-site setup: PKI, an upstream, the gateway.
pub struct Setup {
    pub pki: Pki,
    pub upstream: Upstream,
    pub gateway: TestGateway,
    pub client: Client,
}

impl Setup {
    pub async fn new(upstream: Upstream, listen: &str, site_extra: &str) -> Setup {
        let pki = Pki::new();
        let cert = pki.leaf("app", &["app.test", "www.app.test"]);
        let toml = format!(
            "{listen}\n{}",
            site_toml(
                &["app.test", "www.app.test"],
                &cert,
                &upstream.url(),
                site_extra
            )
        );
        let gateway = TestGateway::start(&toml).await;
        let client = Client::new(&pki, gateway.https);
        Setup {
            pki,
            upstream,
            gateway,
            client,
        }
    }

    pub async fn basic(upstream: Upstream) -> Setup {
        Setup::new(upstream, "", "").await
    }
}

/// The gateway binary as its own process, with its stdout collected.
pub struct Process {
    pub child: tokio::process::Child,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<tokio::sync::Notify>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    pub config: tempfile::NamedTempFile,
}

impl Process {
    /// Writes `toml` to a file, starts `sessiongate run` on it (through
    /// `sh -c` with `shell_prefix`, when given, such as `ulimit -n 64;`),
    /// and waits for the listening lines. The config should use
    /// `[log] format = "json"` and bind port 0.
    pub async fn start(toml: &str, extra_args: &[&str], shell_prefix: Option<&str>) -> Process {
        use std::io::Write;
        let mut config = tempfile::NamedTempFile::new().unwrap();
        config.write_all(toml.as_bytes()).unwrap();
        let bin = env!("CARGO_BIN_EXE_sessiongate");
        let mut cmd = match shell_prefix {
            Some(prefix) => {
                let mut c = tokio::process::Command::new("sh");
                let args: Vec<String> = extra_args.iter().map(|a| format!("'{a}'")).collect();
                c.arg("-c").arg(format!(
                    "{prefix} exec '{bin}' run --config '{}' {}",
                    config.path().display(),
                    args.join(" ")
                ));
                c
            }
            None => {
                let mut c = tokio::process::Command::new(bin);
                c.arg("run")
                    .arg("--config")
                    .arg(config.path())
                    .args(extra_args);
                c
            }
        };
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn sessiongate");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let new_line = Arc::new(tokio::sync::Notify::new());
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (lines, new_line) = (lines.clone(), new_line.clone());
            readers.push(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut reader = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().unwrap().push(line);
                    new_line.notify_waiters();
                }
                new_line.notify_waiters();
            }));
        }
        let mut p = Process {
            child,
            https: "0.0.0.0:0".parse().unwrap(),
            http: None,
            lines,
            new_line,
            readers,
            config,
        };
        let https = p
            .wait_for_line(|l| l.contains("\"listening\"") && l.contains("\"https\""))
            .await;
        p.https = addr_in(&https);
        if toml.contains("http_redirect") {
            let http = p
                .wait_for_line(|l| l.contains("\"listening\"") && l.contains("\"http_redirect\""))
                .await;
            p.http = Some(addr_in(&http));
        }
        p
    }

    /// Waits for a line of output that satisfies `pred`; panics if the
    /// process ends first, or after a minute (a broken build, not a slow one).
    pub async fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if tokio::time::Instant::now() > deadline {
                panic!("no such line within a minute; output:\n{}", self.output());
            }
            let notified = self.new_line.notified();
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The process is gone: read what it wrote to the end.
                for r in std::mem::take(&mut self.readers) {
                    let _ = r.await;
                }
                if let Some(l) = self.lines.lock().unwrap().iter().find(|l| pred(l)) {
                    return l.clone();
                }
                panic!(
                    "sessiongate exited ({status}) before the line; output:\n{}",
                    self.output()
                );
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), notified).await;
        }
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Sends a signal by number (15 = SIGTERM, 2 = SIGINT).
    pub fn signal(&self, sig: i32) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A field of /proc/PID/status in KiB (VmHWM, VmRSS).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }
}

fn addr_in(json_line: &str) -> SocketAddr {
    let at = json_line.find("\"addr\":\"").expect("addr field") + 8;
    let end = json_line[at..].find('"').unwrap() + at;
    json_line[at..end].parse().unwrap()
}

/// The gateway token a response sets (`__Host-sg=...`), if it sets one;
/// a clearing cookie (empty value) is not a token.
pub fn token_of(res: &Resp) -> Option<String> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("__Host-sg=")
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
        .filter(|t| !t.is_empty())
}

/// Adds the gateway cookie to a request.
pub fn with_token(mut req: Request<TestBody>, token: &str) -> Request<TestBody> {
    req.headers_mut().append(
        header::COOKIE,
        format!("__Host-sg={token}").parse().unwrap(),
    );
    req
}

/// An upstream that accepts any upgrade and echoes the tunnel's bytes until
/// the gateway closes it.
pub async fn echo_upgrades() -> Upstream {
    Upstream::custom(|req: Request<Incoming>| async move { echo_upgrade(req) }).await
}

/// Accepts an upgrade and echoes the tunnel's bytes until the gateway
/// closes it.
pub fn echo_upgrade(mut req: Request<Incoming>) -> Response<TestBody> {
    assert_eq!(req.headers()["upgrade"], "websocket");
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let mut io = TokioIo::new(on.await.unwrap());
        let mut buf = [0u8; 64];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap()
}

pub type Tunnel = TokioIo<hyper::upgrade::Upgraded>;

/// Opens a WebSocket-style tunnel to `/ws`, with the gateway token if given.
pub async fn open_tunnel_with(client: &Client, token: Option<&str>) -> Tunnel {
    let tls = client.tls("app.test", Proto::H1).await.unwrap();
    let mut req = Request::get("https://app.test/ws")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap();
    if let Some(t) = token {
        req = with_token(req, t);
    }
    let res = send_on(tls, Proto::H1, req).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    TokioIo::new(hyper::upgrade::on(res).await.unwrap())
}

pub async fn open_tunnel(client: &Client) -> Tunnel {
    open_tunnel_with(client, None).await
}

/// Whether `msg` comes back through the tunnel.
pub async fn echoes(io: &mut Tunnel, msg: &[u8]) -> bool {
    if io.write_all(msg).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len()];
    io.read_exact(&mut buf).await.is_ok() && buf == msg
}
