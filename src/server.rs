//! Listeners: the TLS accept loop, the plain-HTTP redirect listener, the
//! connection bound and graceful shutdown.
//!
//! Invariants: an accept error never ends a loop (EMFILE passes); a
//! connection holds one permit of the shared connection semaphore from
//! accept to close, so draining on shutdown is waiting for every permit.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::coalesce::Coalesced;
use crate::config::Listen;
use crate::proxy::{Body, ConnInfo, Gateway, status_response};

/// The bound sockets. Tests bind `127.0.0.1:0` and pass them in.
pub struct Listeners {
    pub https: TcpListener,
    pub http_redirect: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
#[error("listen.{key}: cannot bind {addr}: {source}")]
pub struct BindError {
    key: &'static str,
    addr: SocketAddr,
    #[source]
    source: io::Error,
}

impl Listeners {
    pub async fn bind(listen: &Listen) -> Result<Listeners, BindError> {
        let bind = |key, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| BindError { key, addr, source })
        };
        let https = bind("https", listen.https).await?;
        let http_redirect = match listen.http_redirect {
            Some(addr) => Some(bind("http_redirect", addr).await?),
            None => None,
        };
        Ok(Listeners {
            https,
            http_redirect,
        })
    }
}

/// What a client connection holds while it lives: its place under
/// `[listen] max_connections`, and the shutdown signal. A WebSocket tunnel
/// outlives the HTTP connection it was upgraded from and takes its slot
/// along, so tunnels stay within the bound and are drained at shutdown.
#[derive(Clone, Debug)]
pub struct ConnSlot {
    _permit: Arc<OwnedSemaphorePermit>,
    stop: watch::Receiver<bool>,
    grace: Duration,
}

impl ConnSlot {
    /// Resolves when the shutdown grace period is over: shutdown was
    /// signalled, and the grace has passed since.
    pub async fn closing(&mut self) {
        stopped(&mut self.stop).await;
        tokio::time::sleep(self.grace).await;
    }
}

/// The HTTP/1.1 and HTTP/2 server settings of the TLS listener: header
/// deadline and size bounds, stream limit, keep-alive pings.
pub fn http_builder(listen: &Listen) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listen.header_read_timeout)
        .max_buf_size(listen.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(listen.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Serves until `shutdown` resolves, then drains for up to the configured
/// grace period.
pub async fn serve(
    gateway: Arc<Gateway>,
    tls: Arc<rustls::ServerConfig>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) {
    let listen = gateway.config().listen.clone();
    gateway.spawn_sweeper();
    let max = listen.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);

    let builder = Arc::new(http_builder(&listen));

    let public_port = listen
        .public_https_port
        .or_else(|| listeners.https.local_addr().ok().map(|a| a.port()))
        .unwrap_or(443);

    let https = accept_loop(
        "https",
        listeners.https,
        permits.clone(),
        stop_rx.clone(),
        |stream, peer, stop, permit| {
            let gateway = gateway.clone();
            let acceptor = TlsAcceptor::from(tls.clone());
            let builder = builder.clone();
            let handshake_timeout = listen.tls_handshake_timeout;
            let slot = ConnSlot {
                _permit: Arc::new(permit),
                stop: stop.clone(),
                grace: listen.shutdown_grace,
            };
            async move {
                let tls =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let sni_site = tls
                    .get_ref()
                    .1
                    .server_name()
                    .map(|name| gateway.site_for_host(name));
                let info = Arc::new(ConnInfo {
                    peer,
                    // An SNI name that matches no site was served the default
                    // site's certificate; requests must then be for it too.
                    sni_site: sni_site.map(|s| {
                        s.or_else(|| gateway.config().sites.iter().position(|s| s.default))
                            .unwrap_or(usize::MAX)
                    }),
                    slot,
                });
                let service = service_fn(move |req: Request<Incoming>| {
                    let gateway = gateway.clone();
                    let info = info.clone();
                    // Boxed: the request's future is large, and hyper and
                    // tokio would otherwise move it several times (into the
                    // h2 stream task, into the task cell); boxed, it is
                    // allocated once and never copied.
                    Box::pin(async move { Ok::<_, Infallible>(gateway.handle(req, &info).await) })
                });
                // HTTP/2 gathers the responses of one scheduler round into
                // one TLS record and one write (see coalesce.rs).
                let io = TokioIo::new(Coalesced::new(tls));
                let conn = builder.serve_connection_with_upgrades(io, service);
                drive(conn, |c| c.graceful_shutdown(), stop, peer).await;
            }
        },
    );

    let redirect = async {
        if let Some(listener) = listeners.http_redirect {
            let gateway = gateway.clone();
            accept_loop(
                "http_redirect",
                listener,
                permits.clone(),
                stop_rx.clone(),
                move |stream, peer, stop, permit| {
                    let gateway = gateway.clone();
                    async move {
                        let _permit = permit;
                        let mut http1 = hyper::server::conn::http1::Builder::new();
                        http1
                            .timer(TokioTimer::new())
                            .header_read_timeout(gateway.config().listen.header_read_timeout)
                            .max_buf_size(gateway.config().listen.max_header_bytes);
                        let service = service_fn(move |req: Request<Incoming>| {
                            let res = redirect_to_https(&gateway, &req, public_port);
                            async move { Ok::<_, Infallible>(res) }
                        });
                        let conn = http1.serve_connection(TokioIo::new(stream), service);
                        drive(conn, |c| c.graceful_shutdown(), stop, peer).await;
                    }
                },
            )
            .await;
        }
    };

    tokio::select! {
        _ = shutdown => {}
        _ = async { tokio::join!(https, redirect) } => {}
    }
    tracing::info!("shutting down: no new connections; draining");
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(listen.shutdown_grace, permits.acquire_many(max as u32)).await;
    match drained {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            open = max - permits.available_permits(),
            "shutdown grace period over; closing the remaining connections"
        ),
    }
    crate::audit::COUNTERS.log();
}

/// Runs a connection to its end; on shutdown, lets in-flight requests finish
/// and then closes.
async fn drive<C, T, Err>(
    conn: C,
    begin_shutdown: impl FnOnce(Pin<&mut C>),
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<T, Err>>,
    Err: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            begin_shutdown(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Accepts until told to stop. One permit per connection bounds them (the
/// connection's future holds it, and may hand it on); a failed accept is
/// logged and retried after a short pause, never fatal.
async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listener = name, %addr, "listening");
    }
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS and friends: the condition passes
                // as connections close. Pause so as not to spin.
                tracing::warn!(listener = name, error = %e, "accept failed; retrying");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, peer, stop.clone(), permit));
    }
}

/// The plain-HTTP listener's only answer: the same URL on https for a
/// configured host (308 keeps the method and body), 421 for any other host,
/// so it cannot be used as an open redirect.
fn redirect_to_https(
    gateway: &Gateway,
    req: &Request<Incoming>,
    public_port: u16,
) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::proxy::location::split_host_port)
        .map(|(name, _)| name);
    let Some(host) = host else {
        return status_response(StatusCode::BAD_REQUEST);
    };
    let Some(site) = gateway.site_for_host(host) else {
        return status_response(StatusCode::MISDIRECTED_REQUEST);
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = if path.starts_with('/') { path } else { "/" };
    // The redirect does not carry a session ID into the browser's history:
    // it leads to the clean URL (which the HTTPS side would redirect to).
    let clean = crate::policy::url::strip(path, &gateway.config().sites[site].url_session_params);
    let path = clean.as_deref().unwrap_or(path);
    let location = if public_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{public_port}{path}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return status_response(StatusCode::BAD_REQUEST);
    };
    let mut res = Response::new(Either::Right(Full::new(Bytes::new())));
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    res.headers_mut().insert(header::LOCATION, location);
    res
}

/// Installs the SIGTERM and SIGINT (Ctrl-C) handlers now, before anything
/// listens, and returns a future that resolves on either signal.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Resolves once shutdown has been signalled (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let done = *stop.borrow_and_update();
        if done || stop.changed().await.is_err() {
            return;
        }
    }
}
