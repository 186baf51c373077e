//! The connections to a site's upstream: HTTP/1.1 keep-alive, pooled.
//!
//! A small pool of our own on hyper's connection API rather than
//! hyper-util's general client: one upstream per site needs no pool keys
//! (hashed per request there), no racing of a checkout against a connect,
//! and no task spawned per request to wait until a connection is free again.
//! A connection goes back to the pool when the response body it carries has
//! been read to its end (see [`ResponseBody`]); one whose body was abandoned
//! is closed, as the unread rest of that response would poison the next.
//! Each connection reads through [`Scrubbed`], armed as a request is sent
//! on it, which takes malformed lines out of response heads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::UpstreamBody;
use super::scrub::{HeadStart, Scrubbed};
use crate::config::Upstream;
use crate::tls::{TlsError, upstream_client_config};

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the upstream")]
    Connect(#[source] io::Error),
    #[error("upstream connection failed")]
    Http(#[source] hyper::Error),
    #[error("upstream sent a malformed response")]
    Malformed(#[source] hyper::Error),
}

impl UpstreamError {
    fn http(e: hyper::Error) -> UpstreamError {
        if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            UpstreamError::Malformed(e)
        } else {
            UpstreamError::Http(e)
        }
    }
}

/// One site's upstream: where it is, how to reach it, its idle connections.
pub struct Pool {
    host: String,
    port: u16,
    /// For an `https://` upstream: the verifying TLS client and the name to
    /// verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

/// A connection: the request handle, and the flag that tells its reader a
/// response head comes next.
struct Conn {
    tx: SendRequest<UpstreamBody>,
    head: HeadStart,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection lent out for one request, returned by its response body.
struct Lent {
    pool: Arc<Pool>,
    conn: Conn,
}

impl Pool {
    /// Builds the pool: keep-alive, connect timeout, TCP_NODELAY, and for
    /// `https://` a verifying rustls client (ALPN http/1.1 only).
    pub fn new(site: usize, up: &Upstream) -> Result<Arc<Pool>, TlsError> {
        let https = up.scheme == Scheme::HTTPS;
        let host = up.authority.host();
        // An IPv6 literal comes bracketed in the authority.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        let port = up
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = upstream_client_config(site, up.ca.as_deref())?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone()).map_err(|e| TlsError::UpstreamName {
                site,
                why: e.to_string(),
            })?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Arc::new(Pool {
            host,
            port,
            tls,
            connect_timeout: up.connect_timeout,
            idle_timeout: up.pool_idle_timeout,
            max_idle: up.pool_max_idle,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Sends a request (origin-form target, Host set) and returns the
    /// response head; its body hands the connection back when read to the
    /// end. A request that never left (the pooled connection had just been
    /// closed by the upstream) is sent again once, on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let mut fresh = false;
        loop {
            let pooled = if fresh { None } else { self.checkout() };
            let mut conn = match pooled {
                Some(conn) => conn,
                None => {
                    fresh = true;
                    // Boxed: connecting (DNS, TCP, TLS) is a 2.5 KB future
                    // that most requests never run, and unboxed it would
                    // make every request's future that much larger.
                    Box::pin(self.connect()).await?
                }
            };
            conn.head.arm();
            match conn.tx.try_send_request(req).await {
                Ok(res) => {
                    // After 101 the connection belongs to the tunnel.
                    let lent = (res.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lent {
                        pool: self.clone(),
                        conn,
                    });
                    return Ok(res.map(|inner| ResponseBody {
                        inner,
                        lent,
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        req = unsent;
                        fresh = true;
                    }
                    _ => return Err(UpstreamError::http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is ready; closed and
    /// expired ones are dropped on the way, ones still finishing their last
    /// response are left for later.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let c = &idle[i].conn.tx;
            if c.is_closed() || idle[i].since.elapsed() > self.idle_timeout {
                idle.swap_remove(i);
            } else if c.is_ready() {
                return Some(idle.swap_remove(i).conn);
            }
        }
        None
    }

    /// Returns a connection whose response has been read. It may still be
    /// sending its request body (the app answered before reading it all):
    /// then it is not ready yet, and a full pool gives its place to this one
    /// rather than to a connection that is.
    fn checkin(&self, conn: Conn) {
        if conn.tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Idle {
            conn,
            since: Instant::now(),
        };
        if idle.len() < self.max_idle {
            idle.push(entry);
        } else if let Some(i) = idle
            .iter()
            .position(|c| c.conn.tx.is_closed() || !c.conn.tx.is_ready())
        {
            idle[i] = entry;
        }
    }

    /// Closes idle connections past the idle timeout (from the sweeper).
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.conn.tx.is_closed() && c.since.elapsed() <= self.idle_timeout);
    }

    /// Opens a connection: TCP (and TLS for `https://`) within
    /// `connect_timeout` in all; each address the name resolves to gets an
    /// equal share of what is left, so one unreachable address does not use
    /// up the time of the others.
    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let timed_out = |what: &str| {
            UpstreamError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} timed out"),
            ))
        };
        let addrs: Vec<SocketAddr> = match self.host.parse() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::time::timeout_at(
                deadline,
                tokio::net::lookup_host((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| timed_out("name lookup"))?
            .map_err(UpstreamError::Connect)?
            .collect(),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the upstream host");
        let mut tcp = None;
        for (i, addr) in addrs.iter().enumerate() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let share = left / (addrs.len() - i) as u32;
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        let tcp = tcp.ok_or(UpstreamError::Connect(last))?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| timed_out("TLS handshake"))?
                    .map_err(UpstreamError::Connect)?;
                handshake(tls).await
            }
        }
    }
}

/// HTTP/1.1 over an open stream, read through [`Scrubbed`]; the connection
/// runs in its own task until it closes.
async fn handshake<T>(io: T) -> Result<Conn, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    // hyper stays strict about header lines: the malformed lines a browser
    // would skip are taken out or repaired before it reads them, and any
    // other (about framing, or a spoiled field value) fails the response
    // (see `scrub`).
    let head = HeadStart::default();
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(Scrubbed::new(io, head.clone())))
        .await
        .map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(Conn { tx, head })
}

/// An upstream response body; it returns its connection to the pool once
/// read to the end.
pub struct ResponseBody {
    inner: Incoming,
    lent: Option<Lent>,
    ended: bool,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => self.lent = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body read to its end (or one that had none) leaves the
        // connection ready for the next request; any other is closed with it.
        if let Some(lent) = self.lent.take()
            && (self.ended || self.inner.is_end_stream())
        {
            lent.pool.checkin(lent.conn);
        }
    }
}
