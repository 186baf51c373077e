//! sessiongate: a TLS-terminating reverse proxy that hardens the session
//! management of unmodified legacy web apps.
//!
//! `config` reads and validates the TOML file; `tls` loads certificates and
//! picks them by SNI; `server` accepts connections; `proxy` is the life of
//! one request; `observability` owns logging and redaction.

#![forbid(unsafe_code)]

pub mod audit;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod observability;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod session;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use server::Listeners;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Options that come from the command line rather than the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Serve the committed development key on a non-loopback address.
    pub allow_dev_certificate: bool,
}

/// A gateway ready to serve: certificates loaded, clients built.
pub struct Prepared {
    gateway: Arc<proxy::Gateway>,
    tls: Arc<rustls::ServerConfig>,
}

/// Loads everything the config names; fails before any socket is used.
pub fn prepare(config: Arc<Config>, opts: RunOptions) -> Result<Prepared, StartError> {
    let certs = tls::load_certificates(&config, opts.allow_dev_certificate)?;
    let tls = tls::server_config(tls::SniResolver::new(&config, certs));
    for (i, site) in config.sites.iter().enumerate() {
        if site.upstream.is_plaintext_remote() {
            tracing::warn!(
                site = site.name.as_str(),
                "site[{i}].upstream.url is plain http:// to a non-loopback host: the app's session cookies cross the network unencrypted; use https:// or keep the app on this host"
            );
        }
    }
    let gateway = Arc::new(proxy::Gateway::new(config)?);
    Ok(Prepared { gateway, tls })
}

impl Prepared {
    /// Serves on `listeners` until `shutdown` resolves, then drains.
    pub async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()>) {
        server::serve(self.gateway, self.tls, listeners, shutdown).await
    }
}
