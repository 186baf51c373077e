//! TLS: certificates per site, chosen by SNI; the rustls server config; the
//! client config for `https://` upstreams.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;

/// The development key committed in `certs/`. Anyone can read it, so serving
/// it on a reachable address is refused unless the operator insists.
const DEV_KEY_PEM: &[u8] = include_bytes!("../certs/dev.key");

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("site[{site}].tls.{key}: cannot read {path}: {source}")]
    Read {
        site: usize,
        key: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("site[{site}].tls.cert: {path} holds no certificate")]
    NoCertificate { site: usize, path: PathBuf },
    #[error(
        "site[{site}].tls: the key does not fit the certificate, or its type is not supported: {source}"
    )]
    Key {
        site: usize,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "site[{site}].tls.key is the public development key from certs/, and the gateway listens on {addr}, \
         which is not a loopback address; use a real certificate, or start with --allow-dev-certificate"
    )]
    DevKeyExposed {
        site: usize,
        addr: std::net::SocketAddr,
    },
    #[error("site[{site}].upstream.ca: cannot read {path}: {why}")]
    UpstreamCa {
        site: usize,
        path: PathBuf,
        why: String,
    },
    #[error(
        "site[{site}].upstream.url: the host is not a name a certificate can be checked against: {why}"
    )]
    UpstreamName { site: usize, why: String },
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Loads the certificate chain and key of every site.
pub fn load_certificates(
    config: &Config,
    allow_dev_key: bool,
) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    let dev_key = PrivateKeyDer::from_pem_slice(DEV_KEY_PEM).ok();
    let provider = provider();
    let mut out = Vec::with_capacity(config.sites.len());
    for (i, site) in config.sites.iter().enumerate() {
        let chain = CertificateDer::pem_file_iter(&site.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|source| TlsError::Read {
                site: i,
                key: "cert",
                path: site.cert.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                site: i,
                path: site.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&site.key).map_err(|source| TlsError::Read {
            site: i,
            key: "key",
            path: site.key.clone(),
            source,
        })?;
        let is_dev_key = dev_key
            .as_ref()
            .is_some_and(|d| d.secret_der() == key.secret_der());
        if is_dev_key && !allow_dev_key && !config.listen.https.ip().is_loopback() {
            return Err(TlsError::DevKeyExposed {
                site: i,
                addr: config.listen.https,
            });
        }
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|source| TlsError::Key { site: i, source })?;
        out.push(Arc::new(certified));
    }
    Ok(out)
}

/// Picks a site's certificate by SNI. A client that sends no SNI (it connected
/// to an IP address) gets the default site's certificate, or the first's.
/// An unknown SNI name with no default site aborts the handshake.
#[derive(Debug)]
pub struct SniResolver {
    by_host: HashMap<String, usize>,
    certs: Vec<Arc<CertifiedKey>>,
    fallback: Option<usize>,
}

impl SniResolver {
    pub fn new(config: &Config, certs: Vec<Arc<CertifiedKey>>) -> Self {
        let mut by_host = HashMap::new();
        for (i, site) in config.sites.iter().enumerate() {
            for h in &site.hosts {
                by_host.insert(h.clone(), i);
            }
        }
        SniResolver {
            by_host,
            certs,
            fallback: config.sites.iter().position(|s| s.default),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let site = match hello.server_name() {
            // rustls has already lower-cased and validated the name.
            Some(name) => self.by_host.get(name).copied().or(self.fallback),
            None => self.fallback.or(Some(0)),
        }?;
        self.certs.get(site).cloned()
    }
}

/// The rustls server config: TLS 1.2 and 1.3, ALPN h2 then http/1.1.
pub fn server_config(resolver: SniResolver) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the default provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// The client config for an `https://` upstream: the system's roots plus the
/// site's extra CA file, if any. Certificates are always verified.
pub fn upstream_client_config(
    site: usize,
    ca: Option<&Path>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca {
        let err = |why: String| TlsError::UpstreamCa {
            site,
            path: path.to_path_buf(),
            why,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    // ALPN (http/1.1 only) is set by the upstream pool.
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the default provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth())
}
