//! The session vault on the request path: resolve the gateway token, inject
//! the app's session cookies, take them out of responses, re-key on login,
//! destroy on logout.
//!
//! Invariants (Sozu-style postconditions):
//! - the app's vaulted cookies never reach the browser: every `Set-Cookie`
//!   under a vaulted name leaves the response here, stored or dropped;
//! - the gateway's cookie never reaches the app (the vetter drops it);
//! - a response writes into a session only if its request carried that
//!   session's vault (not a stale token, not inside another request's login
//!   window), so no in-flight response can overwrite a fresh login;
//! - a login re-keys as it starts: the token it came with grants nothing
//!   from then on, whatever the login's outcome, and of two logins that
//!   present one token only the first re-keys;
//! - the gateway cookie is set only when a session was created or re-keyed,
//!   and cleared only for a single dead token or a logout: never a loop.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::time::Instant;

use super::{Body, status_response};
use crate::audit::{self, fingerprint};
use crate::config::Site;
use crate::policy::set_cookie;
use crate::session::rules::normalize_path;
use crate::session::token::{Token, TokenKey, hash_presented};
use crate::session::{
    Bind, Lookup, MemoryStore, SessionStore, StoreError, VaultCookie, default_path,
};

/// Per-site pieces of the vault that live outside the config.
pub struct SiteVault {
    pub create: crate::session::limiter::Limiter,
    pub unknown: crate::session::limiter::Limiter,
}

/// What the request phase learned, carried to the response phase.
pub struct VaultCtx {
    session: Option<u64>,
    /// A replaced (tombstoned) or duplicated token: this request may not
    /// create a session, nor set or clear the gateway cookie.
    stale: bool,
    /// The request carried its session's vault.
    writable: bool,
    clear_cookie: bool,
    cross_site: bool,
    login: Option<usize>,
    logout: bool,
    /// The token a login request was given as it started (see
    /// `on_request`), for its response to hand out whatever the outcome.
    rekeyed: Option<Token>,
    /// The token the request presented for its live session.
    presented: Option<TokenKey>,
    _login_window: Option<LoginWindow>,
}

impl VaultCtx {
    /// The session this request carries the vault of, and the token it
    /// holds now (this request's own re-key included): what its body is
    /// bound to.
    pub fn carried(&self) -> Option<(u64, TokenKey)> {
        let token = match &self.rekeyed {
            Some(t) => t.hash().key(),
            None => self.presented?,
        };
        self.session.filter(|_| self.writable).map(|id| (id, token))
    }
}

/// Open while a login request is in flight; other requests with the same
/// token go upstream without the vault until it closes (also on error or
/// client disconnect: it closes on drop).
struct LoginWindow {
    store: Arc<MemoryStore>,
    id: u64,
}

impl Drop for LoginWindow {
    fn drop(&mut self) {
        self.store.end_login(self.id);
    }
}

fn fp(k: &TokenKey) -> String {
    format!("token={}", fingerprint(&k.0))
}

/// `Sec-Fetch-Site: cross-site`, or an unsafe method with an `Origin` that
/// is not this host.
fn is_cross_site(headers: &HeaderMap, method: &Method, host: &HeaderValue) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => false,
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
            !authority.eq_ignore_ascii_case(host.to_str().unwrap_or(""))
        }
    }
}

/// The gateway cookie (built with the `cookie` crate: it is ours, so its
/// serialisation is ours to choose).
fn gateway_cookie(site: &Site, value: &str, clear: bool) -> HeaderValue {
    let same_site = match site.session.cookie_same_site {
        set_cookie::SameSite::Strict => cookie::SameSite::Strict,
        _ => cookie::SameSite::Lax,
    };
    let mut b = cookie::Cookie::build((site.session.cookie_name.as_str(), value))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(same_site);
    if clear {
        b = b.max_age(cookie::time::Duration::ZERO);
    }
    HeaderValue::from_str(&b.build().to_string())
        .expect("a token and fixed attributes are a valid header value")
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
}

pub struct RequestView<'a> {
    pub site_index: usize,
    pub site: &'a Site,
    pub method: Method,
    /// The request's URI (for its path).
    pub uri: http::Uri,
    pub host: &'a HeaderValue,
    pub client: IpAddr,
}

/// The request phase. `cookie_values` are the values sent under the
/// gateway's cookie name; `headers` already hold the vetted `Cookie`.
pub async fn on_request(
    store: &Arc<MemoryStore>,
    limits: &SiteVault,
    r: &RequestView<'_>,
    cookie_values: &[Box<[u8]>],
    headers: &mut HeaderMap,
) -> Result<VaultCtx, Response<Body>> {
    let site = r.site;
    let now = Instant::now();
    let (mut live, mut live_count) = (None, 0);
    let (mut bad, mut tombstone, mut expired) = (false, false, false);
    // Several values under the gateway's name: a sibling domain tossed one
    // in. Clearing could not remove a cookie set for another domain and
    // would only loop, so this request never clears.
    let duplicated = cookie_values.len() > 1;
    if duplicated {
        audit::event(
            "gateway_cookie_duplicate",
            &site.name,
            r.client,
            &format!("count={}", cookie_values.len()),
        );
    }
    for v in cookie_values {
        let Some(h) = hash_presented(v) else {
            bad = true;
            audit::event("unknown_token", &site.name, r.client, "malformed");
            continue;
        };
        match store.get(r.site_index, &h, now).await {
            Lookup::Live { id, in_login, .. } => {
                live_count += 1;
                live = Some((id, in_login, h.key()));
            }
            Lookup::Tombstone => tombstone = true,
            Lookup::Expired(e) => {
                expired = true;
                audit::event(e.event(), &site.name, r.client, &fp(&h.key()));
            }
            Lookup::Unknown => {
                bad = true;
                audit::event("unknown_token", &site.name, r.client, &fp(&h.key()));
            }
        }
    }
    // Two live sessions in one request: use neither, and write nothing.
    let ambiguous = live_count > 1;
    if ambiguous {
        live = None;
    }
    // A request that carried a replaced token (or two live ones) was sent
    // before the browser learnt its new token: it may not create a session
    // nor set or clear the cookie, or it would undo the login.
    let mut stale = live.is_none() && (tombstone || ambiguous);
    if bad || expired {
        if let Err(retry) = limits.unknown.check(r.client, now) {
            audit::event("rate_limited", &site.name, r.client, "unknown tokens");
            let mut res = status_response(StatusCode::TOO_MANY_REQUESTS);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry.as_secs()));
            return Err(res);
        }
    }
    let clear_cookie = (bad || expired) && live.is_none() && !stale && !duplicated;
    if expired
        && clear_cookie
        && let Some(to) = &site.session.expired_redirect
    {
        let mut res = status_response(StatusCode::SEE_OTHER);
        res.headers_mut().insert(header::LOCATION, to.clone());
        res.headers_mut()
            .append(header::SET_COOKIE, gateway_cookie(site, "", true));
        no_store(res.headers_mut());
        return Err(res);
    }

    let rules = &site.session;
    let (mut login, mut logout) = (None, false);
    if !rules.login.is_empty() || !rules.logout.is_empty() {
        let normalized = normalize_path(r.uri.path());
        login = rules
            .login
            .iter()
            .position(|l| l.covers(&r.method, &normalized));
        logout = rules
            .logout
            .iter()
            .any(|l| l.covers(&r.method, &normalized));
    }

    // A login may start a new session even with a replaced token: the
    // browser may never have received the token its first attempt was
    // re-keyed to (a double-click cancels that attempt; so does a lost
    // response), and the user must be able to log in again at once. It
    // carries no vault, so it can only ever start a session of its own.
    let mut writable = !stale || login.is_some();
    let mut window = None;
    let mut rekeyed = None;
    // A login re-keys as it starts, not when its response says it worked:
    // from here the token the request came with (planted, perhaps) grants
    // nothing, whether the login then succeeds, fails, times out, is
    // abandoned by the client after the app logged the user in, or answers
    // in a way the success rules do not recognise. Of two logins with one
    // token, only the first re-keys; the other goes on as a stale request.
    if let (Some((id, false, key)), Some(rule)) = (live, login.map(|i| &rules.login[i]))
        && rule.rekey
    {
        match SessionStore::rekey_from(&**store, id, key, now).await {
            Some(token) => {
                audit::event(
                    "session_rekeyed",
                    &site.name,
                    r.client,
                    &format!("{} new_{}", fp(&key), fp(&token.hash().key())),
                );
                rekeyed = Some(token);
            }
            None => {
                live = None;
                stale = true;
            }
        }
    }
    if let Some((id, in_login, _)) = live {
        if in_login {
            // Another request of this session is logging in: this one goes
            // without the vault and may not write into it.
            writable = false;
        } else {
            let mut cookie = headers
                .get(header::COOKIE)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            let before = cookie.len();
            SessionStore::inject(&**store, id, r.uri.path(), now, &mut cookie).await;
            if cookie.len() != before
                && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(cookie))
            {
                headers.insert(header::COOKIE, v);
            }
        }
        if login.is_some() {
            SessionStore::begin_login(&**store, id).await;
            window = Some(LoginWindow {
                store: store.clone(),
                id,
            });
        }
    }
    Ok(VaultCtx {
        session: live.map(|(id, ..)| id),
        stale,
        writable,
        clear_cookie: clear_cookie && !stale,
        cross_site: live.is_none() && is_cross_site(headers, &r.method, r.host),
        login,
        logout,
        rekeyed,
        presented: live.map(|(_, _, key)| key),
        _login_window: window,
    })
}

/// The response phase: vaulted `Set-Cookie` lines out, login and logout
/// handled, the gateway cookie set or cleared. Returns a replacement
/// response when a session is needed and the store refuses it.
pub async fn on_response(
    store: &Arc<MemoryStore>,
    limits: &SiteVault,
    r: &RequestView<'_>,
    ctx: VaultCtx,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Option<Response<Body>> {
    let site = r.site;
    let now = Instant::now();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    // Take every Set-Cookie under a vaulted name out of the response.
    let mut all: Vec<HeaderValue> = Vec::new();
    if headers.contains_key(header::SET_COOKIE) {
        all = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
    }
    let mut vaulted = Vec::new();
    for line in &all {
        match set_cookie::parse(line.as_bytes()) {
            Some(p) if site.session.cookies.matches(p.name) => vaulted.push(p),
            _ => {
                headers.append(header::SET_COOKIE, line.clone());
            }
        }
    }

    let mut session = ctx.session;
    let mut new_token: Option<Token> = ctx.rekeyed;
    let mut session_cookie_set = false;
    for p in &vaulted {
        if ctx.logout || !ctx.writable {
            audit::event(
                "vault_write_refused",
                &site.name,
                r.client,
                &format!("cookie={}", String::from_utf8_lossy(p.name)),
            );
            continue;
        }
        let summary = p.summary(unix_now);
        let path: Box<[u8]> = match summary.path {
            Some(path) if path.starts_with(b"/") => path.into(),
            _ => default_path(r.uri.path().as_bytes()).into(),
        };
        if summary.deletes() {
            if let Some(id) = session {
                SessionStore::unbind(&**store, id, p.name, &path).await;
            }
            session_cookie_set = true;
            continue;
        }
        let id = match session {
            Some(id) => id,
            None => {
                if ctx.cross_site {
                    audit::event("session_refused_cross_site", &site.name, r.client, "");
                    continue;
                }
                if limits.create.check(r.client, now).is_err() {
                    audit::event("rate_limited", &site.name, r.client, "session creation");
                    continue;
                }
                match SessionStore::create(&**store, r.site_index, now).await {
                    Ok(c) => {
                        for (_, t) in &c.evicted {
                            audit::event("session_evicted", &site.name, r.client, &fp(t));
                        }
                        audit::event(
                            "session_created",
                            &site.name,
                            r.client,
                            &fp(&c.token.hash().key()),
                        );
                        session = Some(c.id);
                        new_token = Some(c.token);
                        c.id
                    }
                    Err(StoreError::Full) => {
                        audit::event(
                            "session_refused",
                            &site.name,
                            r.client,
                            "store full of authenticated sessions",
                        );
                        return Some(status_response(StatusCode::SERVICE_UNAVAILABLE));
                    }
                }
            }
        };
        let expires = summary.lifetime().map(|secs| {
            now + std::time::Duration::from_secs(secs.clamp(0, 10 * 365 * 86_400) as u64)
        });
        let cookie = VaultCookie {
            name: p.name.into(),
            value: p.value.into(),
            path,
            expires,
        };
        let unique = !site.session.stateless.admits(p.name);
        match SessionStore::bind(&**store, id, cookie, unique).await {
            Bind::Stored => session_cookie_set = true,
            Bind::Conflict { other } => {
                audit::event(
                    "backend_value_conflict",
                    &site.name,
                    r.client,
                    &format!("session={id} other={other}"),
                );
                audit::event(
                    "backend_value_conflict",
                    &site.name,
                    r.client,
                    &format!("session={other} other={id}"),
                );
            }
            Bind::Refused => {
                audit::event(
                    "vaulted_cookie_refused",
                    &site.name,
                    r.client,
                    &format!("session={id} reason=too large or vault full"),
                );
            }
            Bind::Gone => {}
        }
    }

    // Only a login that carried its session's vault marks it logged in (or
    // re-keys it, with `rekey = false` never): one sent without it, inside
    // another request's login, must not take that session for its client.
    if let (Some(rule), Some(id)) = (ctx.login.map(|i| &site.session.login[i]), session)
        && ctx.writable
        && rule.succeeded(status, headers, session_cookie_set)
    {
        // Re-keyed as it started, or created by this very response: the
        // token is fresh already.
        let rekey = rule.rekey && new_token.is_none();
        match SessionStore::rekey(&**store, id, rekey, now).await {
            Some((Some(token), old)) => {
                audit::event(
                    "session_rekeyed",
                    &site.name,
                    r.client,
                    &format!("{} new_{}", fp(&old), fp(&token.hash().key())),
                );
                new_token = Some(token);
            }
            Some((None, t)) => audit::event("session_authenticated", &site.name, r.client, &fp(&t)),
            None => {}
        }
    }

    let mut clear = ctx.clear_cookie;
    if ctx.logout {
        if let Some(id) = ctx.session
            && let Some(t) = SessionStore::remove(&**store, id).await
        {
            audit::event("logged_out", &site.name, r.client, &fp(&t));
        }
        new_token = None;
        clear = true;
        if site.session.clear_site_data {
            headers.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
        }
    }
    if let Some(token) = new_token {
        headers.append(
            header::SET_COOKIE,
            gateway_cookie(site, token.as_str(), false),
        );
        no_store(headers);
    } else if clear && (!ctx.stale || ctx.logout) {
        headers.append(header::SET_COOKIE, gateway_cookie(site, "", true));
        no_store(headers);
    }
    None
}
