//! The pooled HTTP/1.1 client to a site's upstream.

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamBody;
use crate::config::Upstream;
use crate::tls::{TlsError, upstream_client_config};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// Builds the client: keep-alive pool, connect timeout, TCP_NODELAY, and for
/// `https://` a verifying rustls config.
pub fn client(site: usize, up: &Upstream) -> Result<UpstreamClient, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(up.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = upstream_client_config(site, up.ca.as_deref())?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(up.pool_idle_timeout)
        .pool_max_idle_per_host(up.pool_max_idle)
        .build(connector))
}
