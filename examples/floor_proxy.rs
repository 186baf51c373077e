//! The floor: a TLS pass-through proxy built from the same parts as the
//! gateway (tokio's single-threaded runtime, rustls, hyper's HTTP/1.1 and
//! HTTP/2 servers with the gateway's settings, the HTTP/2 write coalescing,
//! the upstream pool, jemalloc) that does nothing else: no header policy,
//! no cookie hardening, no session lookup, no log. It also leaves out the
//! gateway's per-connection plumbing (TLS handshake deadline, connection
//! bound, graceful-shutdown watch) and the per-request upstream timeout,
//! a few hundred instructions per request that the comparison thus counts
//! as the gateway's own work.
//!
//! benches/load/run.sh runs it as the `floor` target beside sessiongate, so
//! that a run shows what the required crates alone cost per request, and
//! how much of sessiongate's cost is its own work on top of them.
//!
//!     cargo run --release --example floor_proxy -- CONFIG.toml
//!
//! It reads a sessiongate config for `[listen] https`, the first site's
//! certificate and its upstream, and ignores the rest.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sessiongate::coalesce::Coalesced;
use sessiongate::proxy::UpstreamBody;
use sessiongate::proxy::upstream::{Pool, ResponseBody};
use sessiongate::{Config, server, tls};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Reply = Response<Either<ResponseBody, Empty<Bytes>>>;

async fn forward(pool: &Arc<Pool>, host: &HeaderValue, req: Request<Incoming>) -> Reply {
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"));
    parts.version = Version::HTTP_11;
    // An HTTP/2 request carries its host in :authority, not in Host.
    parts.headers.entry(HOST).or_insert_with(|| host.clone());
    let body = UpstreamBody::new(Either::Left(Limited::new(body, usize::MAX)), None);
    let req = Request::from_parts(parts, body);
    match pool.send(req).await {
        Ok(res) => res.map(Either::Left),
        Err(_) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Either::Right(Empty::new()))
            .expect("a status and an empty body make a response"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: floor_proxy CONFIG.toml")?
        .into();
    let config = Config::from_file(&path)?;
    let certs = tls::load_certificates(&config, false)?;
    let acceptor = TlsAcceptor::from(tls::server_config(tls::SniResolver::new(&config, certs)));
    let site = config.sites.first().ok_or("the config has no [[site]]")?;
    let pool = Pool::new(0, &site.upstream)?;
    let host = HeaderValue::from_str(site.hosts.first().map_or("localhost", |h| h.as_str()))?;
    let addr = config.listen.https;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        eprintln!("floor_proxy on {}", listener.local_addr()?);
        let builder = Arc::new(server::http_builder(&config.listen));
        loop {
            // An accept error (say EMFILE) is not the end of a benchmark.
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, builder, pool, host) = (
                acceptor.clone(),
                builder.clone(),
                pool.clone(),
                host.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req| {
                    let (pool, host) = (pool.clone(), host.clone());
                    Box::pin(async move { Ok::<_, Infallible>(forward(&pool, &host, req).await) })
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(Coalesced::new(tls)), service)
                    .await;
            });
        }
    })
}
