//! The hyper service: the life of one request, in order.
//!
//! 1. route: Host (and SNI) pick a site
//! 2. request filter: refuse what must not pass (TRACE, oversize bodies)
//! 3. upstream request: hop-by-hop removed, forwarding headers set, HTTP/1.1
//! 4. forward over the site's pooled client, bounded by the response timeout
//! 5. upstream response: hop-by-hop removed, redirects kept on the gateway
//! 6. every response: HSTS; one access log line

mod body;
mod error;
pub mod forward;
pub mod location;
pub mod scrub;
pub mod upstream;
mod vault;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

pub use error::{ProxyError, Side, status_response};
use location::Public;

use crate::audit;
use crate::config::{Config, SessionMode, Site};
use crate::observability;
use crate::policy;
use crate::policy::form::{self, FormError};
use crate::policy::names::NameSet;
use crate::policy::set_cookie::{self, Outcome};
use crate::session::MemoryStore;
use crate::session::limiter::Limiter;
use crate::tls::TlsError;

/// What the gateway sends to clients: the upstream's body streamed through,
/// or a small body of its own.
///
/// The HTML cleaner is boxed: it holds a streaming parser (over 1 KiB), and
/// a response is moved several times on its way out; boxed, `Body` is 80
/// bytes instead of 1,104.
pub type Body = Either<Either<ResponseBody, Box<body::HtmlBody>>, Full<Bytes>>;
pub use body::UpstreamBody;
pub use upstream::ResponseBody;

/// What a connection knows about itself, shared by its requests.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The site picked by the TLS SNI name, when the client sent one.
    pub sni_site: Option<usize>,
    /// Its place under the connection bound; a tunnel takes it along.
    pub slot: crate::server::ConnSlot,
}

/// The gateway's shared state: validated config, one client per site.
pub struct Gateway {
    config: Arc<Config>,
    store: Arc<MemoryStore>,
    vaults: Vec<vault::SiteVault>,
    upstreams: Vec<Arc<upstream::Pool>>,
    by_host: HashMap<String, usize>,
    default_site: Option<usize>,
}

impl Gateway {
    pub fn new(config: Arc<Config>) -> Result<Self, TlsError> {
        let mut by_host = HashMap::new();
        let mut upstreams = Vec::with_capacity(config.sites.len());
        for (i, site) in config.sites.iter().enumerate() {
            for h in &site.hosts {
                by_host.insert(h.clone(), i);
            }
            upstreams.push(upstream::Pool::new(i, &site.upstream)?);
        }
        let timeouts = config.sites.iter().map(|s| s.session.timeouts).collect();
        let store = Arc::new(MemoryStore::new(
            timeouts,
            config.store.max_sessions,
            config.store.tombstone_ttl,
        ));
        let vaults = config
            .sites
            .iter()
            .map(|s| vault::SiteVault {
                create: Limiter::new(s.session.create_per_minute, s.session.create_burst, 100_000),
                unknown: Limiter::new(
                    s.session.unknown_token_per_minute,
                    s.session.unknown_token_burst,
                    100_000,
                ),
            })
            .collect();
        Ok(Gateway {
            default_site: config.sites.iter().position(|s| s.default),
            store,
            vaults,
            config,
            upstreams,
            by_host,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sweeps expired sessions in the background until the gateway is gone.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let every = self.config.store.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(gw) = weak.upgrade() else { return };
                let now = tokio::time::Instant::now();
                // On a blocking thread: a sweep over a million sessions (and
                // an audit line for each that expired) must not stall the
                // runtime's own thread, the only one with `workers = 1`.
                let sweeper = gw.clone();
                let swept = tokio::task::spawn_blocking(move || {
                    for (site, token, why) in sweeper.store.sweep(now) {
                        let name = sweeper
                            .config
                            .sites
                            .get(site as usize)
                            .map_or("-", |s| s.name.as_str());
                        let detail = format!("token={}", audit::fingerprint(&token.0));
                        tracing::info!(target: "audit", event = why.event(), site = name, detail, "audit");
                    }
                })
                .await;
                if let Err(e) = swept {
                    tracing::error!(error = %e, "session sweep failed");
                }
                for v in &gw.vaults {
                    v.create.prune(now);
                    v.unknown.prune(now);
                }
                for pool in &gw.upstreams {
                    pool.sweep();
                }
            }
        });
    }

    /// The site for a host name (any case, trailing dot allowed), if any.
    pub fn site_for_host(&self, host: &str) -> Option<usize> {
        let host = host.strip_suffix('.').unwrap_or(host);
        // An IPv6 literal comes bracketed in Host; configured without.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_host.get(&host.to_ascii_lowercase()).copied()
        } else {
            self.by_host.get(host).copied()
        }
    }

    /// Serves one request; never fails: errors become responses here.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        // A cheap clone (shared bytes): the path is logged after the request
        // has gone upstream.
        let uri = req.uri().clone();
        let client = forward::client_addr(
            conn.peer.ip(),
            req.headers(),
            &self.config.listen.trusted_proxies,
        );

        let (site, result) = match self.route(&req, conn) {
            Ok((site, host, name_len)) => (
                Some(site),
                self.proxy(site, host, name_len, req, conn, client).await,
            ),
            Err(e) => (None, Err(e)),
        };
        let (mut res, upstream_status) = match result {
            Ok(answered) => answered,
            Err(e) => {
                log_failure(&e, site.map(|s| self.config.sites[s].name.as_str()));
                (e.to_response(), None)
            }
        };
        if let Some(hsts) = site.and_then(|s| self.config.sites[s].hsts.as_ref()) {
            res.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if self.config.log.access {
            observability::access(&observability::Access {
                site: site
                    .map(|s| self.config.sites[s].name.as_str())
                    .unwrap_or("-"),
                client,
                method: &method,
                path: &observability::loggable_path(uri.path()),
                status: res.status(),
                upstream_status,
                elapsed: started.elapsed(),
            });
        }
        res
    }

    /// Picks the site: by Host (or the request target's authority, which
    /// takes precedence, RFC 9112 §3.2.2), which must agree with the site the
    /// TLS connection was made for. Returns the site, the host as asked for
    /// and the length of its name part (the host without the port).
    fn route(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
    ) -> Result<(usize, HeaderValue, usize), ProxyError> {
        let host = effective_host(req).ok_or(ProxyError::BadHost)?;
        let name = host
            .to_str()
            .ok()
            .and_then(|h| location::split_host_port(h))
            .map(|(name, _)| name)
            .ok_or(ProxyError::BadHost)?;
        let site = self
            .site_for_host(name)
            .or(self.default_site)
            .ok_or(ProxyError::Misdirected)?;
        if conn.sni_site.is_some_and(|s| s != site) {
            return Err(ProxyError::Misdirected);
        }
        let name_len = name.len();
        Ok((site, host, name_len))
    }

    async fn proxy(
        &self,
        site_index: usize,
        host: HeaderValue,
        name_len: usize,
        mut req: Request<Incoming>,
        conn: &ConnInfo,
        client: IpAddr,
    ) -> Result<(Response<Body>, Option<StatusCode>), ProxyError> {
        let site = &self.config.sites[site_index];
        // The name part of the host (checked to be text in `route`).
        let public_host = host
            .to_str()
            .ok()
            .and_then(|h| h.get(..name_len))
            .unwrap_or_default();

        // Request filter.
        // TRACE would echo back the Cookie header the gateway sends upstream;
        // CONNECT would make the gateway a tunnel to anywhere.
        if matches!(req.method().as_str(), "TRACE" | "TRACK" | "CONNECT") {
            return Err(ProxyError::MethodNotAllowed);
        }
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > site.max_request_body) {
            return Err(ProxyError::BodyTooLarge);
        }
        let mut path = match req.uri().path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
            None => PathAndQuery::from_static("/"),
            Some(_) => return Err(ProxyError::BadTarget),
        };

        // Session IDs in the URL: a GET or HEAD is sent to the clean URL, so
        // the ID leaves the address bar and history; other methods go on
        // with the clean URL. Either way the app never sees the ID.
        if let Some(clean) = policy::url::strip(path.as_str(), &site.url_session_params) {
            audit::Counters::add(&audit::COUNTERS.url_session_ids_removed, 1);
            audit::event(
                "url_session_id_removed",
                &site.name,
                client,
                req.method().as_str(),
            );
            if matches!(*req.method(), Method::GET | Method::HEAD) {
                return Ok((clean_url_redirect(&policy::url::keep_on_host(clean)), None));
            }
            path = PathAndQuery::try_from(clean).map_err(|_| ProxyError::BadTarget)?;
        }

        // Upstream request.
        let upgrade = if req.version() == Version::HTTP_11 {
            forward::upgrade_requested(req.headers())
        } else {
            None
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Origin form: the upstream is reached by its own connection, and
        // `Host` says which site.
        parts.uri = Uri::from(path);
        parts.version = Version::HTTP_11;
        let headers = &mut parts.headers;
        forward::remove_hop_by_hop(headers);
        let trusted = forward::is_trusted(conn.peer.ip(), &self.config.listen.trusted_proxies);
        forward::set_forwarding_headers(headers, conn.peer.ip(), trusted, &host);
        let upstream_host = if site.upstream.preserve_host {
            host.clone()
        } else {
            HeaderValue::from_str(site.upstream.authority.as_str())
                .map_err(|_| ProxyError::BadHost)?
        };
        headers.insert(header::HOST, upstream_host);
        let gateway_values = vet_request_cookies(headers, site, client);
        let view = vault::RequestView {
            site_index,
            site,
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            host: &host,
            client,
        };
        let headers = &mut parts.headers;
        if site.html_strip_session_ids && wants_html(headers) {
            headers.remove(header::ACCEPT_ENCODING);
        }
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
        let body = Limited::new(
            body,
            usize::try_from(site.max_request_body).unwrap_or(usize::MAX),
        );
        let body = form_body(body, &mut parts.headers, declared_len, site, client).await?;
        // The session is looked up once a form body has been read whole, not
        // when the head arrived: a request held open with part of its body
        // before a login must not reach the app with the session that login
        // re-keyed (the token it carried is a tombstone by then).
        let vault_ctx = match site.session.mode {
            SessionMode::Harden => None,
            SessionMode::Vault => match vault::on_request(
                &self.store,
                &self.vaults[site_index],
                &view,
                &gateway_values,
                &mut parts.headers,
            )
            .await
            {
                Ok(ctx) => Some(ctx),
                Err(res) => return Ok((res, None)),
            },
        };
        let carried = vault_ctx.as_ref().and_then(vault::VaultCtx::carried);
        let bound = carried
            .filter(|_| !http_body::Body::is_end_stream(&body))
            .map(|(id, token)| Box::new(body::Bound::new(self.store.clone(), id, token)));
        let upstream_req = Request::from_parts(parts, UpstreamBody::new(body, bound));

        // Forward.
        let sent = tokio::time::timeout(
            site.upstream.response_timeout,
            self.upstreams[site_index].send(upstream_req),
        )
        .await;
        let mut res = match sent {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(res)) => res,
        };

        // Upstream response.
        let mut switching = None;
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                // A 101 nobody asked for cannot be passed on.
                return Err(ProxyError::Upstream("unsolicited 101".into()));
            };
            // The tunnel starts once the 101 is sure to be sent: the vault
            // may still answer in its place.
            switching = Some((client_upgrade, hyper::upgrade::on(&mut res)));
            let upgrade_to = res.headers().get(header::UPGRADE).cloned();
            forward::remove_hop_by_hop(res.headers_mut());
            if let Some(proto) = upgrade_to {
                res.headers_mut().insert(header::UPGRADE, proto);
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        } else {
            forward::remove_hop_by_hop(res.headers_mut());
        }
        if let Some(ctx) = vault_ctx {
            let status = res.status();
            if let Some(refused) = vault::on_response(
                &self.store,
                &self.vaults[site_index],
                &view,
                ctx,
                status,
                res.headers_mut(),
            )
            .await
            {
                return Ok((refused, Some(status)));
            }
        }
        if let Some((client_upgrade, upstream_upgrade)) = switching {
            // A tunnel opened in a session lives as long as the session's
            // token: a login's re-key or a logout closes it.
            let bound = carried.map(|(id, token)| body::Bound::new(self.store.clone(), id, token));
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                conn.slot.clone(),
                bound,
            ));
        }
        harden_set_cookies(res.headers_mut(), site, public_host, client);
        let public = Public {
            upstream: &site.upstream.authority,
            upstream_default_port: if site.upstream.scheme == Scheme::HTTPS {
                443
            } else {
                80
            },
            host: host.to_str().unwrap_or_default(),
            site_hosts: &site.hosts,
        };
        rewrite_redirects(res.headers_mut(), &public, &site.url_session_params);
        let status = res.status();
        let clean_html = site.html_strip_session_ids && has_html_body(&view.method, &res);
        if site.html_strip_session_ids && is_html(res.headers()) && is_coded(res.headers()) {
            // The app compressed a page although it was not asked to: it
            // passes as it is, and the operator should know.
            audit::event("html_not_cleaned_compressed", &site.name, client, "");
        }
        let res = if clean_html {
            res.headers_mut().remove(header::CONTENT_LENGTH);
            let cleaner = policy::html::HtmlCleaner::new(site.url_session_params.clone());
            let site_name = site.name.clone();
            let on_removed: body::OnChanges = Box::new(move |n| {
                if n > 0 {
                    audit::event(
                        "html_session_id_removed",
                        &site_name,
                        client,
                        &format!("changes={n}"),
                    );
                }
            });
            res.map(|b| {
                Either::Left(Either::Right(Box::new(body::Filtered::new(
                    b, cleaner, on_removed,
                ))))
            })
        } else {
            res.map(|b| Either::Left(Either::Left(b)))
        };
        Ok((res, Some(status)))
    }
}

/// The host the client asked for: the request target's authority (HTTP/2's
/// `:authority`, or an absolute-form HTTP/1.1 target), else the Host header.
fn effective_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next()?;
    // Two Host headers are a smuggling attempt (RFC 9112 §3.2: respond 400).
    if hosts.next().is_some() {
        return None;
    }
    Some(host.clone())
}

/// Whether a response is an HTML document the cleaner can read: `text/html`
/// with a body and no content coding (the gateway asks for none, see
/// `wants_html`).
fn has_html_body<B>(method: &Method, res: &Response<B>) -> bool {
    let status = res.status();
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    is_html(res.headers()) && !is_coded(res.headers())
}

fn is_html(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|ct| {
        ct.as_bytes().len() >= 9 && ct.as_bytes()[..9].eq_ignore_ascii_case(b"text/html")
    })
}

fn is_coded(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Whether a request may be answered with a page to clean: a navigation, or
/// anything that accepts HTML. Such requests go upstream without
/// `Accept-Encoding`, so the page comes uncompressed: decompressing and
/// recompressing on the gateway would cost far more CPU than the bytes saved
/// on a loopback or LAN hop to the app; other requests keep compression.
fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-dest")
        .is_some_and(|d| d.as_bytes() == b"document" || d.as_bytes() == b"iframe")
        || headers.get(header::ACCEPT).is_some_and(|a| {
            let a = a.as_bytes();
            a.windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html"))
        })
}

/// Form bodies no larger than this are filtered whole and sent with their
/// new `Content-Length` (some legacy servers mishandle chunked requests);
/// larger ones are filtered as they stream and sent chunked.
const FORM_BUFFER_LIMIT: u64 = 64 * 1024;

/// Removes session-ID fields from form bodies; other bodies pass untouched.
async fn form_body(
    body: Limited<Incoming>,
    headers: &mut http::HeaderMap,
    declared_len: Option<u64>,
    site: &Site,
    client: IpAddr,
) -> Result<body::RequestBody, ProxyError> {
    // Nothing to filter (a GET that names a form type, say).
    if http_body::Body::is_end_stream(&body) {
        return Ok(Either::Left(body));
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next();
    // Two `Content-Type` fields: the app may read the other one.
    if types.next().is_some() {
        return Err(ProxyError::BadForm);
    }
    let Some(kind) = content_type.and_then(|ct| form::kind(ct.as_bytes())) else {
        return Ok(Either::Left(body));
    };
    // A compressed form would be filtered as noise and may be inflated
    // behind the gateway (Apache's `SetInputFilter DEFLATE`).
    if headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|e| !e.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ProxyError::BadForm);
    }
    let names = site.url_session_params.clone();
    let site_name = site.name.clone();
    // One record per removed field.
    let audit_removed = move |n: usize| {
        for i in 1..=n {
            audit::event(
                "form_session_field_removed",
                &site_name,
                client,
                &format!("field {i} of {n}"),
            );
        }
    };
    if declared_len.is_some_and(|n| n <= FORM_BUFFER_LIMIT) {
        let whole = body.collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ProxyError::BodyTooLarge
            } else {
                ProxyError::BadForm
            }
        })?;
        let (filtered, removed) =
            form::filter_all(kind, &names, &whole.to_bytes()).map_err(|_| ProxyError::BadForm)?;
        audit_removed(removed);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(filtered.len()));
        return Ok(Either::Right(Either::Left(Full::new(filtered))));
    }
    let filter = form::Filter::new(kind, names).map_err(|_| ProxyError::BadForm)?;
    headers.remove(header::CONTENT_LENGTH);
    Ok(Either::Right(Either::Right(Box::new(body::Filtered::new(
        body,
        filter,
        Box::new(audit_removed),
    )))))
}

/// Names the failure of the upstream call.
fn classify(e: upstream::UpstreamError) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return ProxyError::BodyTooLarge;
        }
        if err.is::<FormError>() {
            return ProxyError::BadForm;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return ProxyError::UpstreamTimeout;
        }
        source = err.source();
    }
    match e {
        upstream::UpstreamError::Connect(_) => ProxyError::UpstreamConnect(e.into()),
        upstream::UpstreamError::Http(_) | upstream::UpstreamError::Malformed(_) => {
            ProxyError::Upstream(e.into())
        }
    }
}

/// Keeps redirects on the gateway and free of session IDs: `Location`,
/// `Content-Location` and the URL in `Refresh`.
fn rewrite_redirects(headers: &mut http::HeaderMap, public: &Public<'_>, session_params: &NameSet) {
    let fix = |url: &str| -> Option<String> {
        let public_url = location::rewrite_url(url, public);
        let current = public_url.as_deref().unwrap_or(url);
        policy::url::strip_in_url(current, session_params).or(public_url)
    };
    static REFRESH: header::HeaderName = header::HeaderName::from_static("refresh");
    for name in [&header::LOCATION, &header::CONTENT_LOCATION, &REFRESH] {
        let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let new = if *name == REFRESH {
            location::map_refresh_url(value, fix)
        } else {
            fix(value)
        };
        // A URL that cannot be a header value any more is dropped, not kept
        // with the ID in it.
        match new.map(|v| HeaderValue::from_str(&v)) {
            Some(Ok(v)) => {
                headers.insert(name, v);
            }
            Some(Err(_)) => {
                headers.remove(name);
            }
            None => {}
        }
    }
}

/// A redirect to the same resource without session IDs; nothing caches it
/// and the old URL is not sent on as a `Referer`. 303 rather than 308: the
/// redirect is for this request only (a permanent one invites caches and
/// browsers to remember it), and for GET and HEAD, 303 keeps the method.
fn clean_url_redirect(clean: &str) -> Response<Body> {
    let mut res = status_response(StatusCode::SEE_OTHER);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(clean) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// Replaces the request's `Cookie` headers with the vetted one; returns
/// the values sent under the gateway's cookie name.
fn vet_request_cookies(
    headers: &mut http::HeaderMap,
    site: &Site,
    client: IpAddr,
) -> Vec<Box<[u8]>> {
    if !headers.contains_key(header::COOKIE) {
        return Vec::new();
    }
    let values: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let vetted = site.cookies.request.vet(&values);
    for name in &vetted.tossed {
        audit::event(
            "cookie_tossing",
            &site.name,
            client,
            &String::from_utf8_lossy(name),
        );
    }
    if vetted.watched > 0 {
        audit::event(
            "vaulted_cookie_from_client",
            &site.name,
            client,
            &format!("count={}", vetted.watched),
        );
    }
    audit::Counters::add(
        &audit::COUNTERS.request_cookies_dropped,
        vetted.dropped as u64,
    );
    let gateway_values: Vec<Box<[u8]>> = vetted
        .gateway_values
        .iter()
        .map(|v| Box::from(*v))
        .collect();
    if vetted.unchanged {
        return gateway_values;
    }
    let new = (!vetted.header.is_empty()).then(|| HeaderValue::from_bytes(&vetted.header));
    headers.remove(header::COOKIE);
    if let Some(Ok(v)) = new {
        headers.insert(header::COOKIE, v);
    }
    gateway_values
}

/// Hardens every `Set-Cookie`, each on its own: never joined, never lost
/// unless a browser would have refused it anyway.
fn harden_set_cookies(
    headers: &mut http::HeaderMap,
    site: &Site,
    public_host: &str,
    client: IpAddr,
) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let lines: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    let policy = &site.cookies.set_cookie;
    for line in lines {
        match set_cookie::harden(line.as_bytes(), policy, public_host, now) {
            Outcome::Unchanged => {
                headers.append(header::SET_COOKIE, line);
            }
            Outcome::Rewritten(bytes) => match HeaderValue::from_bytes(&bytes) {
                Ok(v) => {
                    audit::Counters::add(&audit::COUNTERS.set_cookie_hardened, 1);
                    headers.append(header::SET_COOKIE, v);
                }
                Err(_) => audit::Counters::add(&audit::COUNTERS.set_cookie_dropped, 1),
            },
            Outcome::Dropped(why) => {
                audit::Counters::add(&audit::COUNTERS.set_cookie_dropped, 1);
                let name = set_cookie::parse(line.as_bytes())
                    .map(|p| String::from_utf8_lossy(p.name).into_owned());
                let detail = format!(
                    "cookie={} reason={}",
                    name.as_deref().unwrap_or("?"),
                    why.as_str()
                );
                audit::event("set_cookie_dropped", &site.name, client, &detail);
            }
        }
    }
}

/// Copies bytes both ways once both sides have switched protocols, holding
/// the client connection's slot: the tunnel counts under the connection
/// bound, and is closed one grace period after it sees shutdown begin.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut slot: crate::server::ConnSlot,
    mut bound: Option<body::Bound>,
) {
    let session_lost = std::future::poll_fn(|cx| {
        if bound.as_mut().is_some_and(|b| b.poll_lost(cx)) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    let relay = async {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!(error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "protocol upgrade failed"),
        }
    };
    // The session first: once it is gone, not another byte is relayed.
    tokio::select! {
        biased;
        () = session_lost => {
            tracing::debug!("upgraded connection closed: its session was re-keyed or ended");
        }
        () = slot.closing() => {
            tracing::debug!("upgraded connection closed: shutdown grace period over");
        }
        () = relay => {}
    }
}

fn log_failure(e: &ProxyError, site: Option<&str>) {
    let site = site.unwrap_or("-");
    match e.side() {
        Side::Client => tracing::debug!(site, error = %e, "refused request"),
        Side::Upstream | Side::Proxy => {
            let cause = std::error::Error::source(e).map(|s| s.to_string());
            tracing::warn!(site, error = %e, cause = cause.as_deref().unwrap_or(""), "upstream failure")
        }
    }
}
#[cfg(test)]
mod tests {
    /// Requests and responses are moved several times on their way through
    /// hyper, tokio and the service; a large body type inline (a streaming
    /// parser) would be copied each time (issue 7: it was 1,104 bytes).
    #[test]
    fn body_types_stay_small_to_move() {
        assert!(std::mem::size_of::<super::Body>() <= 128);
        assert!(std::mem::size_of::<super::UpstreamBody>() <= 128);
    }
}
