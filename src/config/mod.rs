//! Configuration: one TOML file read in two stages.
//!
//! Stage one (`reader`) walks the spanned TOML tree and collects every problem
//! with its key path and line. Stage two (this file) turns what was read into
//! the validated [`Config`] that the rest of the gateway uses; nothing past
//! this module parses configured values again.

mod reader;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;

use crate::policy::cookie::CookieRules;
use crate::policy::names::NameSet;
use crate::policy::set_cookie::{CookiePolicy, Override, SameSite};
use crate::session::Timeouts;
use crate::session::rules::{LoginRule, LoginSignals, LogoutRule, PathMatch};
use http::uri::{Authority, Scheme};
use http::{Method, StatusCode};
use ipnet::IpNet;

use reader::{Ctx, Section, TableRef};
pub use reader::{Problem, parse_duration, parse_size};

/// Every problem found in a config file, reported together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{} in config:", if n == 1 { "" } else { "s" })?;
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub log: Log,
    pub store: Store,
    pub sites: Vec<Site>,
}

#[derive(Debug, Clone)]
pub struct Listen {
    /// The TLS listener.
    pub https: SocketAddr,
    /// The optional plain-HTTP listener that only redirects to https.
    pub http_redirect: Option<SocketAddr>,
    /// The port written into redirect URLs; `None`: the https listener's port.
    pub public_https_port: Option<u16>,
    pub max_connections: usize,
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Threads serving requests; with one, a single-threaded runtime.
    pub workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter directive such as "info" or "sessiongate=debug".
    pub level: String,
    pub access: bool,
    /// How late a gathered access line may be written (zero: each at once).
    pub flush_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Site {
    /// A short name for logs and audit records.
    pub name: String,
    /// Lower-case host names without port.
    pub hosts: Vec<String>,
    /// Requests whose Host matches no site go here instead of getting 421.
    pub default: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub upstream: Upstream,
    pub max_request_body: u64,
    /// The ready-made `Strict-Transport-Security` value, or `None` when off.
    pub hsts: Option<HeaderValue>,
    pub session: Session,
    pub cookies: Cookies,
    /// Parameter names removed from request URLs and upstream redirects.
    pub url_session_params: NameSet,
    /// Remove those names from links, forms and hidden inputs of HTML pages.
    pub html_strip_session_ids: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// The app's session cookie reaches the browser hardened and comes back
    /// on the forward list.
    Harden,
    /// The app's session cookies stay in the gateway; the browser holds only
    /// the gateway's token.
    Vault,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub mode: SessionMode,
    /// The app's session cookie names (exact, or `PREFIX*`).
    pub cookies: NameSet,
    /// Vaulted cookies whose value is the session state itself (a signed
    /// cookie such as Flask's), not an ID: two users may hold the same value,
    /// so the one-value-one-session rule does not apply to them.
    pub stateless: NameSet,
    /// The gateway's cookie, `__Host-` included.
    pub cookie_name: String,
    pub cookie_same_site: SameSite,
    pub timeouts: Timeouts,
    /// Where a request with an expired session is sent, if anywhere.
    pub expired_redirect: Option<HeaderValue>,
    pub create_per_minute: u32,
    pub create_burst: u32,
    pub unknown_token_per_minute: u32,
    pub unknown_token_burst: u32,
    pub clear_site_data: bool,
    pub login: Vec<LoginRule>,
    pub logout: Vec<LogoutRule>,
}

/// The session store shared by all sites.
#[derive(Debug, Clone)]
pub struct Store {
    pub max_sessions: usize,
    pub sweep_interval: Duration,
    /// How long a re-keyed token is remembered as replaced.
    pub tombstone_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Cookies {
    /// How upstream `Set-Cookie` lines are hardened.
    pub set_cookie: CookiePolicy,
    /// Which request cookies reach the app.
    pub request: CookieRules,
    /// The forward list as configured (without the session cookies).
    pub forward: NameSet,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Extra CA certificates (PEM) trusted for an `https://` upstream.
    pub ca: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Time allowed from sending the request to the response headers.
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    /// Forward the client's Host (true) or the upstream's authority.
    pub preserve_host: bool,
}

// Defaults, each with its reason.
/// Enough for a busy site on one box; bounds memory and file descriptors.
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// A real client finishes a handshake in well under a second.
const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slowloris defence: headers must arrive within this time.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Browsers cap cookies near 8 KiB per header; 64 KiB leaves room for many.
const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Long enough for ordinary requests to finish on deploy.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Uploads of legacy apps are modest; an operator raises this per site.
const DEFAULT_MAX_REQUEST_BODY: u64 = 100 * 1024 * 1024;
/// A local upstream connects in milliseconds; a dead one should fail fast.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Legacy apps can be slow; one minute to the first response byte.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Shorter than common upstream keep-alive timeouts (nginx 75s, Apache 5s
/// is shorter still, hence retrying hyper's pool handles that case).
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_POOL_MAX_IDLE: u64 = 256;
/// One year, as hstspreload.org requires.
const DEFAULT_HSTS_MAX_AGE: Duration = Duration::from_secs(365 * 86_400);

impl Config {
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&src)?;
        // Relative certificate paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for site in &mut config.sites {
            site.cert = base.join(&site.cert);
            site.key = base.join(&site.key);
            if let Some(ca) = &mut site.upstream.ca {
                *ca = base.join(&*ca);
            }
        }
        Ok(config)
    }

    /// Parses and validates a config document; paths are left as written.
    pub fn parse(src: &str) -> Result<Config, ConfigError> {
        let mut cx = Ctx::new(src);
        let Some(root) = cx.parse() else {
            return Err(ConfigError::Invalid(cx.problems));
        };
        let root = Section::new(
            &mut cx,
            "",
            Some((root.get_ref(), root.span())),
            &["listen", "log", "store", "site"],
        );
        let listen = read_listen(&mut cx, &root);
        let log = read_log(&mut cx, &root);
        let store = read_store(&mut cx, &root);
        let site_tables = root.tables(&mut cx, "site");
        if site_tables.is_empty() {
            cx.problem(
                "site",
                None,
                "no site configured; add at least one [[site]] table",
            );
        }
        let sites: Vec<Site> = site_tables
            .into_iter()
            .enumerate()
            .map(|(i, t)| read_site(&mut cx, i, t))
            .collect();
        check_sites(&mut cx, &sites);
        if cx.problems.is_empty() {
            Ok(Config {
                listen,
                log,
                store,
                sites,
            })
        } else {
            Err(ConfigError::Invalid(cx.problems))
        }
    }
}

fn socket_addr(cx: &mut Ctx<'_>, s: &Section<'_, '_>, key: &str) -> Option<SocketAddr> {
    let (v, span) = s.opt_str(cx, key)?;
    match v.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.problem(
                s.key_path(key),
                Some(span),
                format!("`{v}` is not an address; write IP:PORT, such as \"0.0.0.0:8443\" or \"[::]:8443\""),
            );
            None
        }
    }
}

fn read_listen(cx: &mut Ctx<'_>, root: &Section<'_, '_>) -> Listen {
    let s = root.child(
        cx,
        "listen",
        &[
            "https",
            "http_redirect",
            "public_https_port",
            "max_connections",
            "tls_handshake_timeout",
            "header_read_timeout",
            "max_header_bytes",
            "shutdown_grace",
            "trusted_proxies",
            "workers",
        ],
    );
    let https = socket_addr(cx, &s, "https").unwrap_or_else(|| ([0, 0, 0, 0], 8443).into());
    let http_redirect = socket_addr(cx, &s, "http_redirect");
    let public_https_port = match s.int(cx, "public_https_port", 0, 1..=65535) {
        0 => None,
        p => Some(p as u16),
    };
    let max_connections = s.int(
        cx,
        "max_connections",
        DEFAULT_MAX_CONNECTIONS,
        1..=1_000_000,
    ) as usize;
    let tls_handshake_timeout =
        s.duration(cx, "tls_handshake_timeout", DEFAULT_TLS_HANDSHAKE_TIMEOUT);
    let header_read_timeout = s.duration(cx, "header_read_timeout", DEFAULT_HEADER_READ_TIMEOUT);
    // hyper's HTTP/1 reader needs at least 8 KiB of buffer.
    let max_header_bytes = s.size(cx, "max_header_bytes", DEFAULT_MAX_HEADER_BYTES);
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        cx.problem(
            s.key_path("max_header_bytes"),
            s.span_of("max_header_bytes"),
            "must be between 8KiB and 1MiB",
        );
    }
    let shutdown_grace = s.duration(cx, "shutdown_grace", DEFAULT_SHUTDOWN_GRACE);
    // As many as the CPUs this process may run on (its affinity mask, so
    // `taskset` and cpusets count), as nginx's `worker_processes auto`.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let workers = s.int(cx, "workers", cpus, 1..=1024) as usize;
    for (key, d) in [
        ("tls_handshake_timeout", tls_handshake_timeout),
        ("header_read_timeout", header_read_timeout),
    ] {
        if d.is_zero() {
            cx.problem(s.key_path(key), s.span_of(key), "must be more than zero");
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, (v, span)) in s
        .strings(cx, "trusted_proxies")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let parsed = v
            .parse::<IpNet>()
            .or_else(|_| v.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => cx.problem(
                format!("listen.trusted_proxies[{i}]"),
                Some(span),
                format!("`{v}` is not an IP address or CIDR block (\"10.0.0.0/8\", \"::1\")"),
            ),
        }
    }
    Listen {
        https,
        http_redirect,
        public_https_port,
        max_connections,
        tls_handshake_timeout,
        header_read_timeout,
        max_header_bytes: max_header_bytes as usize,
        shutdown_grace,
        trusted_proxies,
        workers,
    }
}

fn read_log(cx: &mut Ctx<'_>, root: &Section<'_, '_>) -> Log {
    let s = root.child(cx, "log", &["format", "level", "access", "flush_interval"]);
    let format = s
        .choice(
            cx,
            "format",
            "a log format",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        )
        .unwrap_or(LogFormat::Text);
    let level = s.string(cx, "level", "info");
    if tracing_subscriber::EnvFilter::builder()
        .parse(&level)
        .is_err()
    {
        cx.problem(
            s.key_path("level"),
            s.span_of("level"),
            format!("`{level}` is not a log filter; valid: error, warn, info, debug, trace, or directives such as \"info,sessiongate=debug\""),
        );
    }
    let access = s.bool(cx, "access", true);
    let flush_interval = s.duration(cx, "flush_interval", Duration::from_secs(1));
    if flush_interval > Duration::from_secs(60) {
        cx.problem(
            s.key_path("flush_interval"),
            s.span_of("flush_interval"),
            "access lines may wait at most 60s; write a shorter interval, or \"0s\" to write each at once".to_string(),
        );
    }
    Log {
        format,
        level,
        access,
        flush_interval,
    }
}

fn read_site(cx: &mut Ctx<'_>, i: usize, t: TableRef<'_, '_>) -> Site {
    let path = format!("site[{i}]");
    let s = Section::new(
        cx,
        &path,
        Some(t),
        &[
            "name",
            "hosts",
            "default",
            "tls",
            "upstream",
            "max_request_body",
            "hsts",
            "session",
            "cookies",
            "url",
            "login",
            "logout",
            "html",
        ],
    );
    let mut hosts = Vec::new();
    match s.strings(cx, "hosts") {
        None => cx.problem(
            s.key_path("hosts"),
            s.span(),
            "missing; list the host names this site answers for, such as [\"app.example.com\"]",
        ),
        Some(list) => {
            if list.is_empty() {
                cx.problem(
                    s.key_path("hosts"),
                    s.span_of("hosts"),
                    "must name at least one host",
                );
            }
            for (j, (h, span)) in list.into_iter().enumerate() {
                match normalize_host(&h) {
                    Some(h) => hosts.push(h),
                    None => cx.problem(
                        format!("{path}.hosts[{j}]"),
                        Some(span),
                        format!("`{h}` is not a host name; write a DNS name or IP address without scheme or port"),
                    ),
                }
            }
        }
    }
    let name = s.string(
        cx,
        "name",
        hosts.first().map(String::as_str).unwrap_or("site"),
    );
    let default = s.bool(cx, "default", false);

    let tls = s.child(cx, "tls", &["cert", "key"]);
    let required_path = |cx: &mut Ctx<'_>, key: &str, what: &str| -> PathBuf {
        match tls.opt_str(cx, key) {
            Some((p, _)) => PathBuf::from(p),
            None => {
                cx.problem(
                    tls.key_path(key),
                    tls.span().or(s.span()),
                    format!("missing; the path of the {what} (PEM)"),
                );
                PathBuf::new()
            }
        }
    };
    let cert = required_path(cx, "cert", "certificate chain");
    let key = required_path(cx, "key", "private key");

    let upstream = read_upstream(cx, &s);
    let max_request_body = s.size(cx, "max_request_body", DEFAULT_MAX_REQUEST_BODY);

    let hsts = s.child(
        cx,
        "hsts",
        &["enabled", "max_age", "include_subdomains", "preload"],
    );
    let hsts_value = if hsts.bool(cx, "enabled", true) {
        let max_age = hsts.duration(cx, "max_age", DEFAULT_HSTS_MAX_AGE);
        let mut v = format!("max-age={}", max_age.as_secs());
        if hsts.bool(cx, "include_subdomains", false) {
            v.push_str("; includeSubDomains");
        }
        if hsts.bool(cx, "preload", false) {
            v.push_str("; preload");
        }
        Some(HeaderValue::from_str(&v).expect("digits and ASCII are a valid header value"))
    } else {
        None
    };

    let session = read_session(cx, &s);
    let cookies = read_cookies(cx, &s, &session);
    let url = s.child(cx, "url", &["session_params"]);
    let mut url_session_params = names_or(cx, &url, "session_params", DEFAULT_URL_SESSION_PARAMS);
    // An app that reads its session ID from the URL or a form too (PHP with
    // `session.use_only_cookies=0` under a custom `session.name`) must not
    // be handed one there: every session cookie name is stripped as well,
    // but a stateless one (a signed state cookie, never an ID in a URL).
    for name in session.cookies.names() {
        let bare = name.trim_end_matches('*');
        if !session.stateless.matches(bare.as_bytes())
            && !url_session_params.matches(bare.as_bytes())
        {
            url_session_params.push(name);
        }
    }
    // On unless turned off: a vaulted ID written into a page is readable by
    // any script on it, which defeats the vault.
    let html = s.child(cx, "html", &["strip_session_ids"]);
    let html_strip_session_ids = html.bool(cx, "strip_session_ids", true);

    Site {
        name,
        hosts,
        default,
        cert,
        key,
        upstream,
        max_request_body,
        hsts: hsts_value,
        session,
        cookies,
        url_session_params,
        html_strip_session_ids,
    }
}

/// Session parameter names real frameworks put in URLs: PHP, Java servlets,
/// classic ASP and ASP.NET (cookieless), ColdFusion, and generic ones.
pub const DEFAULT_URL_SESSION_PARAMS: &[&str] = &[
    "PHPSESSID",
    "JSESSIONID",
    "ASPSESSIONID*",
    "ASP.NET_SessionId",
    "CFID",
    "CFTOKEN",
    "sid",
    "sessionid",
    "session_id",
    "SESSID",
];

/// Session cookie names of common frameworks: PHP, servlet containers,
/// ASP/ASP.NET, ColdFusion, Express, Laravel, Rails, Flask, Django.
const DEFAULT_SESSION_COOKIES: &[&str] = &[
    "PHPSESSID",
    "JSESSIONID",
    "ASPSESSIONID*",
    "ASP.NET_SessionId",
    "CFID",
    "CFTOKEN",
    "connect.sid",
    "laravel_session",
    "_session_id",
    "session",
    "sessionid",
];

/// Persistent cookies live at most this long: a month covers "remember me"
/// without leaving year-long credentials in browsers.
const DEFAULT_MAX_COOKIE_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// A list of names (exact, or `PREFIX*`), or the defaults when absent.
fn names_or(cx: &mut Ctx<'_>, s: &Section<'_, '_>, key: &str, default: &[&str]) -> NameSet {
    names_or_all(cx, s, key, default, false)
}

/// As `names_or`; with `all_allowed`, a lone `*` stands for every name.
fn names_or_all(
    cx: &mut Ctx<'_>,
    s: &Section<'_, '_>,
    key: &str,
    default: &[&str],
    all_allowed: bool,
) -> NameSet {
    match s.strings(cx, key) {
        None => NameSet::new(default),
        Some(list) => {
            let mut set = NameSet::default();
            for (i, (name, span)) in list.into_iter().enumerate() {
                if valid_name(&name) || (all_allowed && name == "*") {
                    set.push(&name);
                } else {
                    cx.problem(
                        format!("{}[{i}]", s.key_path(key)),
                        Some(span),
                        format!("`{name}` is not a name; use letters, digits and -._ (a trailing * matches a prefix)"),
                    );
                }
            }
            set
        }
    }
}

/// A cookie or parameter name as an operator writes it: a token, with an
/// optional trailing `*`, that an app reads as a name (`+` or `%20` alone
/// read as nothing, and would match only nameless cookies).
fn valid_name(name: &str) -> bool {
    let body = name.strip_suffix('*').unwrap_or(name);
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b))
        && crate::policy::names::canonical(body.as_bytes())
            .next()
            .is_some()
}

fn read_store(cx: &mut Ctx<'_>, root: &Section<'_, '_>) -> Store {
    let s = root.child(
        cx,
        "store",
        &["kind", "max_sessions", "sweep_interval", "tombstone_ttl"],
    );
    s.choice(cx, "kind", "a store", &[("memory", ())]);
    Store {
        max_sessions: s.int(cx, "max_sessions", DEFAULT_MAX_SESSIONS, 1..=100_000_000) as usize,
        sweep_interval: s.duration(cx, "sweep_interval", DEFAULT_SWEEP_INTERVAL),
        tombstone_ttl: s.duration(cx, "tombstone_ttl", DEFAULT_TOMBSTONE_TTL),
    }
}

/// A million sessions fit in a few hundred MiB.
const DEFAULT_MAX_SESSIONS: u64 = 1_000_000;
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Long enough for the requests a browser sent with the old token before the
/// login response arrived.
const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(120);
/// OWASP's guidance for low-risk apps: 15 to 30 minutes idle.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A working day.
const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);
/// A visitor who never logs in needs no long session.
const DEFAULT_ANONYMOUS_TIMEOUT: Duration = Duration::from_secs(3600);

fn read_session(cx: &mut Ctx<'_>, site: &Section<'_, '_>) -> Session {
    let s = site.child(
        cx,
        "session",
        &[
            "mode",
            "cookies",
            "stateless_cookies",
            "cookie_name",
            "cookie_same_site",
            "idle_timeout",
            "absolute_timeout",
            "anonymous_timeout",
            "expired_redirect",
            "create_per_minute",
            "create_burst",
            "unknown_token_per_minute",
            "unknown_token_burst",
            "clear_site_data",
        ],
    );
    let mode = s
        .choice(
            cx,
            "mode",
            "a session mode",
            &[
                ("vault", SessionMode::Vault),
                ("harden", SessionMode::Harden),
            ],
        )
        .unwrap_or(SessionMode::Vault);
    let cookies = names_or(cx, &s, "cookies", DEFAULT_SESSION_COOKIES);
    // Flask's `session` is a signed state cookie: identical for two users
    // who log in to one account within the same second.
    let stateless = names_or(cx, &s, "stateless_cookies", &["session"]);
    let bare = s.string(cx, "cookie_name", "sg");
    if !valid_name(&bare) || bare.ends_with('*') {
        cx.problem(
            s.key_path("cookie_name"),
            s.span_of("cookie_name"),
            format!("`{bare}` is not a cookie name"),
        );
    }
    let cookie_same_site = match same_site(cx, &s, "cookie_same_site") {
        Some(SameSite::None) => {
            cx.problem(
                s.key_path("cookie_same_site"),
                s.span_of("cookie_same_site"),
                "the gateway's cookie must not ride cross-site requests; valid: \"lax\", \"strict\"",
            );
            SameSite::Lax
        }
        Some(v) => v,
        None => SameSite::Lax,
    };
    let timeouts = Timeouts {
        idle: s.duration(cx, "idle_timeout", DEFAULT_IDLE_TIMEOUT),
        absolute: s.duration(cx, "absolute_timeout", DEFAULT_ABSOLUTE_TIMEOUT),
        anonymous: s.duration(cx, "anonymous_timeout", DEFAULT_ANONYMOUS_TIMEOUT),
    };
    for key in ["idle_timeout", "absolute_timeout", "anonymous_timeout"] {
        // Sessions are timed in whole seconds.
        if s.span_of(key).is_some() && s.duration(cx, key, Duration::ZERO) < Duration::from_secs(1)
        {
            cx.problem(s.key_path(key), s.span_of(key), "must be at least 1s");
        }
    }
    let expired_redirect = s.opt_str(cx, "expired_redirect").and_then(|(u, span)| {
        let ok = u.starts_with('/') && !u.starts_with("//");
        match HeaderValue::from_str(&u) {
            Ok(v) if ok => Some(v),
            _ => {
                cx.problem(
                    s.key_path("expired_redirect"),
                    Some(span),
                    format!("`{u}` must be a path on this site, such as \"/login.php\""),
                );
                None
            }
        }
    });
    let login = read_login_rules(cx, site);
    let logout = read_logout_rules(cx, site);
    Session {
        mode,
        cookies,
        stateless,
        cookie_name: format!("__Host-{bare}"),
        cookie_same_site,
        timeouts,
        expired_redirect,
        create_per_minute: s.int(cx, "create_per_minute", 30, 1..=1_000_000) as u32,
        create_burst: s.int(cx, "create_burst", 20, 1..=1_000_000) as u32,
        unknown_token_per_minute: s.int(cx, "unknown_token_per_minute", 60, 1..=1_000_000) as u32,
        unknown_token_burst: s.int(cx, "unknown_token_burst", 100, 1..=1_000_000) as u32,
        clear_site_data: s.bool(cx, "clear_site_data", false),
        login,
        logout,
    }
}

/// `method`, and exactly one of `path`, `path_prefix`, `path_glob`.
fn rule_target(
    cx: &mut Ctx<'_>,
    r: &Section<'_, '_>,
    default_method: Option<Method>,
) -> (Option<Method>, PathMatch) {
    let method = match r.opt_str(cx, "method") {
        None => default_method,
        Some((m, _)) if m == "*" => None,
        Some((m, span)) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                cx.problem(
                    r.key_path("method"),
                    Some(span),
                    format!("`{m}` is not an HTTP method (or \"*\" for any)"),
                );
                None
            }
        },
    };
    let forms: Vec<(&str, String)> = ["path", "path_prefix", "path_glob"]
        .into_iter()
        .filter_map(|k| r.opt_str(cx, k).map(|(v, _)| (k, v)))
        .collect();
    let path = match forms.as_slice() {
        [(k, v)] if v.starts_with('/') => match *k {
            "path" => PathMatch::Exact(v.clone()),
            "path_prefix" => PathMatch::Prefix(v.clone()),
            _ => PathMatch::Glob(v.clone()),
        },
        [(k, v)] => {
            cx.problem(
                r.key_path(k),
                r.span_of(k),
                format!("`{v}` must start with /"),
            );
            PathMatch::Exact("/".into())
        }
        _ => {
            cx.problem(
                r.path.clone(),
                r.span(),
                "give exactly one of path, path_prefix, path_glob",
            );
            PathMatch::Exact("/".into())
        }
    };
    (method, path)
}

fn read_login_rules(cx: &mut Ctx<'_>, site: &Section<'_, '_>) -> Vec<LoginRule> {
    let mut rules = Vec::new();
    for (i, t) in site.tables(cx, "login").into_iter().enumerate() {
        let r = Section::new(
            cx,
            site.key_path(&format!("login[{i}]")),
            Some(t),
            &[
                "method",
                "path",
                "path_prefix",
                "path_glob",
                "status",
                "on_session_cookie",
                "header",
                "location",
                "location_not",
                "rekey",
            ],
        );
        let (method, path) = rule_target(cx, &r, Some(Method::POST));
        let mut status = Vec::new();
        match r.raw_ints(cx, "status") {
            None => status.extend([
                StatusCode::MOVED_PERMANENTLY,
                StatusCode::FOUND,
                StatusCode::SEE_OTHER,
            ]),
            Some(list) => {
                for (n, span) in list {
                    match u16::try_from(n)
                        .ok()
                        .and_then(|n| StatusCode::from_u16(n).ok())
                    {
                        Some(s) if (100..600).contains(&s.as_u16()) => status.push(s),
                        _ => cx.problem(
                            r.key_path("status"),
                            Some(span),
                            format!("{n} is not an HTTP status"),
                        ),
                    }
                }
            }
        }
        let header =
            r.opt_str(cx, "header").and_then(|(h, span)| {
                match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        cx.problem(
                            r.key_path("header"),
                            Some(span),
                            format!("`{h}` is not a header name"),
                        );
                        None
                    }
                }
            });
        let signals = LoginSignals {
            sets_session_cookie: r.bool(cx, "on_session_cookie", false),
            header,
            location: r.opt_str(cx, "location").map(|(v, _)| v),
            location_not: r.opt_str(cx, "location_not").map(|(v, _)| v),
        };
        if !signals.sets_session_cookie
            && signals.header.is_none()
            && signals.location.is_none()
            && signals.location_not.is_none()
        {
            cx.problem(
                r.path.clone(),
                r.span(),
                "a login rule needs a success signal besides the status: on_session_cookie = true, header, location or location_not (a failed login that bounces back to the form must not count)",
            );
        }
        rules.push(LoginRule {
            method,
            path,
            status,
            signals,
            rekey: r.bool(cx, "rekey", true),
        });
    }
    rules
}

fn read_logout_rules(cx: &mut Ctx<'_>, site: &Section<'_, '_>) -> Vec<LogoutRule> {
    let mut rules = Vec::new();
    for (i, t) in site.tables(cx, "logout").into_iter().enumerate() {
        let r = Section::new(
            cx,
            site.key_path(&format!("logout[{i}]")),
            Some(t),
            &["method", "path", "path_prefix", "path_glob"],
        );
        let (method, path) = rule_target(cx, &r, None);
        rules.push(LogoutRule { method, path });
    }
    rules
}

fn same_site(cx: &mut Ctx<'_>, s: &Section<'_, '_>, key: &str) -> Option<SameSite> {
    s.choice(
        cx,
        key,
        "a SameSite value",
        &[
            ("strict", SameSite::Strict),
            ("lax", SameSite::Lax),
            ("none", SameSite::None),
        ],
    )
}

fn read_cookies(cx: &mut Ctx<'_>, site: &Section<'_, '_>, session: &Session) -> Cookies {
    let s = site.child(
        cx,
        "cookies",
        &[
            "same_site",
            "max_lifetime",
            "script_readable",
            "forward",
            "allow_domains",
            "override",
        ],
    );
    let site_same_site = same_site(cx, &s, "same_site").unwrap_or(SameSite::Lax);
    let max_lifetime = s
        .duration(cx, "max_lifetime", DEFAULT_MAX_COOKIE_LIFETIME)
        .as_secs();
    let script_readable = names_or_all(cx, &s, "script_readable", &[], true);
    let forward = names_or_all(cx, &s, "forward", &[], true);
    let mut allow_domains = Vec::new();
    for (i, (d, span)) in s
        .strings(cx, "allow_domains")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match normalize_host(d.strip_prefix('.').unwrap_or(&d)) {
            Some(d) if crate::policy::set_cookie::is_public_suffix(d.as_bytes()) => cx.problem(
                format!("{}[{i}]", s.key_path("allow_domains")),
                Some(span),
                format!("`{d}` is a public suffix: browsers refuse it as a cookie Domain"),
            ),
            Some(d) => allow_domains.push(d),
            None => cx.problem(
                format!("{}[{i}]", s.key_path("allow_domains")),
                Some(span),
                format!("`{d}` is not a domain"),
            ),
        }
    }
    let mut overrides: Vec<Override> = Vec::new();
    for (i, t) in s.tables(cx, "override").into_iter().enumerate() {
        let o = Section::new(
            cx,
            format!("{}[{i}]", s.key_path("override")),
            Some(t),
            &["name", "same_site", "host_prefix", "path"],
        );
        let name = match o.opt_str(cx, "name") {
            Some((n, span)) if !valid_name(&n) || n.ends_with('*') => {
                cx.problem(
                    o.key_path("name"),
                    Some(span),
                    format!("`{n}` is not a cookie name (no patterns here)"),
                );
                continue;
            }
            Some((n, _)) => n,
            None => {
                cx.problem(
                    o.key_path("name"),
                    o.span(),
                    "missing; the cookie's exact name",
                );
                continue;
            }
        };
        let same_site = same_site(cx, &o, "same_site");
        let host_prefix = o.bool(cx, "host_prefix", false);
        let path = o.string(cx, "path", "/");
        if host_prefix && path != "/" {
            cx.problem(
                o.key_path("host_prefix"),
                o.span_of("host_prefix"),
                format!("the app scopes `{name}` to path `{path}`, but a __Host- cookie must have Path=/; drop host_prefix or the path"),
            );
        }
        if overrides.iter().any(|x| x.name == name) {
            cx.problem(
                o.key_path("name"),
                o.span_of("name"),
                format!("`{name}` has an override already"),
            );
        }
        overrides.push(Override {
            name,
            same_site,
            host_prefix,
        });
    }
    let mut forward_all = forward.clone();
    let gateway = match session.mode {
        SessionMode::Harden => {
            forward_all.extend(&session.cookies);
            None
        }
        SessionMode::Vault => Some(session.cookie_name.clone()),
    };
    let request = CookieRules {
        forward: forward_all,
        watch: match session.mode {
            SessionMode::Vault => session.cookies.clone(),
            SessionMode::Harden => NameSet::default(),
        },
        host_prefixed: overrides
            .iter()
            .filter(|o| o.host_prefix)
            .map(|o| o.name.clone())
            .collect(),
        gateway,
    };
    Cookies {
        set_cookie: CookiePolicy {
            same_site: site_same_site,
            max_lifetime: Some(max_lifetime),
            script_readable,
            session_cookies: session.cookies.clone(),
            allow_domains,
            overrides,
        },
        request,
        forward,
    }
}

fn read_upstream(cx: &mut Ctx<'_>, site: &Section<'_, '_>) -> Upstream {
    let s = site.child(
        cx,
        "upstream",
        &[
            "url",
            "ca",
            "connect_timeout",
            "response_timeout",
            "pool_idle_timeout",
            "pool_max_idle",
            "preserve_host",
        ],
    );
    let mut scheme = Scheme::HTTP;
    let mut authority = Authority::from_static("invalid");
    match s.opt_str(cx, "url") {
        None => cx.problem(
            s.key_path("url"),
            s.span().or(site.span()),
            "missing; the app's address, such as \"http://127.0.0.1:3000\"",
        ),
        Some((url, span)) => match parse_upstream_url(&url) {
            Ok((sc, au)) => {
                scheme = sc;
                authority = au;
            }
            Err(why) => cx.problem(s.key_path("url"), Some(span), format!("`{url}`: {why}")),
        },
    }
    let ca = s.opt_str(cx, "ca").map(|(p, _)| PathBuf::from(p));
    if ca.is_some() && scheme != Scheme::HTTPS {
        cx.problem(
            s.key_path("ca"),
            s.span_of("ca"),
            "only applies to an https:// upstream",
        );
    }
    Upstream {
        scheme,
        authority,
        ca,
        connect_timeout: s.duration(cx, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        response_timeout: s.duration(cx, "response_timeout", DEFAULT_RESPONSE_TIMEOUT),
        pool_idle_timeout: s.duration(cx, "pool_idle_timeout", DEFAULT_POOL_IDLE_TIMEOUT),
        pool_max_idle: s.int(cx, "pool_max_idle", DEFAULT_POOL_MAX_IDLE, 0..=65_536) as usize,
        preserve_host: s.bool(cx, "preserve_host", true),
    }
}

fn parse_upstream_url(url: &str) -> Result<(Scheme, Authority), &'static str> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL; write http://HOST:PORT or https://HOST:PORT")?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        _ => return Err("the scheme must be http:// or https://"),
    };
    let authority = uri.authority().cloned().ok_or("a host is missing")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("a path prefix is not supported; the upstream sees the client's path");
    }
    Ok((scheme, authority))
}

/// Lower-cases a host name and removes one trailing dot; `None` if it carries
/// a scheme, port, path or other characters a host name cannot hold.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(h.to_ascii_lowercase());
    }
    if !h
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    Some(h.to_ascii_lowercase())
}

fn check_sites(cx: &mut Ctx<'_>, sites: &[Site]) {
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    let mut defaults = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        if site.default {
            defaults.push(i);
        }
        for h in &site.hosts {
            if let Some(&j) = seen.get(h.as_str()) {
                cx.problem(
                    format!("site[{i}].hosts"),
                    None,
                    format!(
                        "`{h}` is already a host of site[{j}]; each host name belongs to one site"
                    ),
                );
            } else {
                seen.insert(h, i);
            }
        }
    }
    if defaults.len() > 1 {
        cx.problem(
            format!("site[{}].default", defaults[1]),
            None,
            format!(
                "site[{}] is already the default; at most one site may be",
                defaults[0]
            ),
        );
    }
}

impl Upstream {
    /// True when the upstream is plain HTTP to a non-loopback host: the app's
    /// session cookies then cross a network in clear.
    pub fn is_plaintext_remote(&self) -> bool {
        if self.scheme == Scheme::HTTPS {
            return false;
        }
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => host != "localhost" && !host.ends_with(".localhost"),
        }
    }
}

/// The effective settings, every default filled in, in the file's layout.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.listen;
        let d = |d: Duration| format!("\"{}\"", fmt_duration(d));
        writeln!(f, "[listen]")?;
        writeln!(f, "https = \"{}\"", l.https)?;
        match l.http_redirect {
            Some(a) => writeln!(f, "http_redirect = \"{a}\"")?,
            None => writeln!(f, "# http_redirect: off")?,
        }
        match l.public_https_port {
            Some(p) => writeln!(f, "public_https_port = {p}")?,
            None => writeln!(f, "# public_https_port: the https listener's port")?,
        }
        writeln!(f, "max_connections = {}", l.max_connections)?;
        writeln!(f, "workers = {}", l.workers)?;
        writeln!(f, "tls_handshake_timeout = {}", d(l.tls_handshake_timeout))?;
        writeln!(f, "header_read_timeout = {}", d(l.header_read_timeout))?;
        writeln!(f, "max_header_bytes = {}", l.max_header_bytes)?;
        writeln!(f, "shutdown_grace = {}", d(l.shutdown_grace))?;
        let proxies: Vec<String> = l
            .trusted_proxies
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        writeln!(f, "trusted_proxies = [{}]", proxies.join(", "))?;
        writeln!(
            f,
            "\n[store]\nkind = \"memory\"\nmax_sessions = {}",
            self.store.max_sessions
        )?;
        writeln!(
            f,
            "sweep_interval = {}\ntombstone_ttl = {}",
            d(self.store.sweep_interval),
            d(self.store.tombstone_ttl)
        )?;
        writeln!(f, "\n[log]")?;
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        writeln!(
            f,
            "format = \"{format}\"\nlevel = \"{}\"\naccess = {}\nflush_interval = {}",
            self.log.level,
            self.log.access,
            d(self.log.flush_interval)
        )?;
        for s in &self.sites {
            writeln!(f, "\n[[site]]")?;
            writeln!(f, "name = \"{}\"", s.name)?;
            let hosts: Vec<String> = s.hosts.iter().map(|h| format!("\"{h}\"")).collect();
            writeln!(f, "hosts = [{}]", hosts.join(", "))?;
            writeln!(f, "default = {}", s.default)?;
            writeln!(f, "max_request_body = {}", s.max_request_body)?;
            writeln!(f, "tls = {{ cert = {:?}, key = {:?} }}", s.cert, s.key)?;
            let u = &s.upstream;
            writeln!(f, "[site.upstream]")?;
            writeln!(f, "url = \"{}://{}\"", u.scheme, u.authority)?;
            if let Some(ca) = &u.ca {
                writeln!(f, "ca = {ca:?}")?;
            }
            writeln!(f, "connect_timeout = {}", d(u.connect_timeout))?;
            writeln!(f, "response_timeout = {}", d(u.response_timeout))?;
            writeln!(f, "pool_idle_timeout = {}", d(u.pool_idle_timeout))?;
            writeln!(f, "pool_max_idle = {}", u.pool_max_idle)?;
            writeln!(f, "preserve_host = {}", u.preserve_host)?;
            writeln!(f, "[site.hsts]")?;
            match &s.hsts {
                Some(v) => writeln!(
                    f,
                    "# Strict-Transport-Security: {}",
                    v.to_str().unwrap_or("")
                )?,
                None => writeln!(f, "enabled = false")?,
            }
            s.fmt_policies(f)?;
        }
        Ok(())
    }
}

impl Site {
    fn fmt_policies(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = |d: Duration| format!("\"{}\"", fmt_duration(d));
        let list = |n: &NameSet| {
            n.names()
                .iter()
                .map(|x| format!("{x:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let se = &self.session;
        let mode = match se.mode {
            SessionMode::Harden => "harden",
            SessionMode::Vault => "vault",
        };
        writeln!(
            f,
            "[site.session]\nmode = \"{mode}\"\ncookies = [{}]",
            list(&se.cookies)
        )?;
        writeln!(
            f,
            "cookie_name = {:?}  # the browser sees {}",
            se.cookie_name.trim_start_matches("__Host-"),
            se.cookie_name
        )?;
        writeln!(
            f,
            "cookie_same_site = \"{}\"",
            se.cookie_same_site.as_str().to_ascii_lowercase()
        )?;
        writeln!(f, "idle_timeout = {}", d(se.timeouts.idle))?;
        writeln!(f, "absolute_timeout = {}", d(se.timeouts.absolute))?;
        writeln!(f, "anonymous_timeout = {}", d(se.timeouts.anonymous))?;
        if let Some(r) = &se.expired_redirect {
            writeln!(f, "expired_redirect = {:?}", r.to_str().unwrap_or(""))?;
        }
        writeln!(
            f,
            "create_per_minute = {}\ncreate_burst = {}",
            se.create_per_minute, se.create_burst
        )?;
        writeln!(
            f,
            "unknown_token_per_minute = {}\nunknown_token_burst = {}",
            se.unknown_token_per_minute, se.unknown_token_burst
        )?;
        writeln!(f, "clear_site_data = {}", se.clear_site_data)?;
        let c = &self.cookies.set_cookie;
        writeln!(
            f,
            "[site.cookies]\nsame_site = \"{}\"",
            c.same_site.as_str().to_ascii_lowercase()
        )?;
        if let Some(l) = c.max_lifetime {
            writeln!(f, "max_lifetime = {}", d(Duration::from_secs(l)))?;
        }
        writeln!(f, "script_readable = [{}]", list(&c.script_readable))?;
        writeln!(f, "forward = [{}]", list(&self.cookies.forward))?;
        let domains: Vec<String> = c.allow_domains.iter().map(|x| format!("{x:?}")).collect();
        writeln!(f, "allow_domains = [{}]", domains.join(", "))?;
        for o in &c.overrides {
            writeln!(
                f,
                "[[site.cookies.override]]\nname = {:?}\nhost_prefix = {}",
                o.name, o.host_prefix
            )?;
            if let Some(ss) = o.same_site {
                writeln!(f, "same_site = \"{}\"", ss.as_str().to_ascii_lowercase())?;
            }
        }
        writeln!(
            f,
            "[site.url]\nsession_params = [{}]",
            list(&self.url_session_params)
        )?;
        writeln!(
            f,
            "[site.html]\nstrip_session_ids = {}",
            self.html_strip_session_ids
        )?;
        let target = |m: &Option<Method>, p: &PathMatch| {
            let method = m.as_ref().map_or("*", Method::as_str).to_string();
            let path = match p {
                PathMatch::Exact(v) => format!("path = {v:?}"),
                PathMatch::Prefix(v) => format!("path_prefix = {v:?}"),
                PathMatch::Glob(v) => format!("path_glob = {v:?}"),
            };
            format!("method = {method:?}\n{path}")
        };
        for l in &se.login {
            writeln!(f, "[[site.login]]\n{}", target(&l.method, &l.path))?;
            let status: Vec<String> = l.status.iter().map(|s| s.as_u16().to_string()).collect();
            writeln!(f, "status = [{}]", status.join(", "))?;
            let sg = &l.signals;
            writeln!(f, "on_session_cookie = {}", sg.sets_session_cookie)?;
            if let Some(h) = &sg.header {
                writeln!(f, "header = {:?}", h.as_str())?;
            }
            if let Some(v) = &sg.location {
                writeln!(f, "location = {v:?}")?;
            }
            if let Some(v) = &sg.location_not {
                writeln!(f, "location_not = {v:?}")?;
            }
            writeln!(f, "rekey = {}", l.rekey)?;
        }
        for l in &se.logout {
            writeln!(f, "[[site.logout]]\n{}", target(&l.method, &l.path))?;
        }
        Ok(())
    }
}

/// The largest whole unit that expresses `d` exactly.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % n == 0 {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[site]]
hosts = ["app.example.com"]
tls = { cert = "c.pem", key = "k.pem" }
upstream = { url = "http://127.0.0.1:3000" }
"#;

    fn problems(src: &str) -> Vec<Problem> {
        match Config::parse(src) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.listen.https, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.listen.http_redirect, None);
        let site = &c.sites[0];
        assert_eq!(site.name, "app.example.com");
        assert_eq!(site.hsts.as_ref().unwrap(), "max-age=31536000");
        assert!(site.upstream.preserve_host);
        assert_eq!(site.upstream.authority.as_str(), "127.0.0.1:3000");
    }

    #[test]
    fn session_cookie_names_are_stripped_from_urls_too() {
        // A PHP app under a custom `session.name` reads it from the URL
        // too (`use_only_cookies=0`): the name vaulted is the name stripped.
        let c = Config::parse(&format!(
            "{MINIMAL}[site.session]\ncookies = [\"APPSESS\", \"session\"]\n[site.url]\nsession_params = [\"sid\"]\n"
        ))
        .unwrap();
        let params = &c.sites[0].url_session_params;
        assert!(params.matches(b"APPSESS") && params.matches(b"sid"));
        // A stateless cookie (Flask's signed `session`) is no ID in a URL.
        assert!(!params.matches(b"session"));
        let defaults = &Config::parse(MINIMAL).unwrap().sites[0].url_session_params;
        assert!(defaults.matches(b"laravel_session") && !defaults.matches(b"session"));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_path_and_line() {
        let src = r#"
[listen]
https = "nonsense"
secrue = true

[[site]]
hosts = ["a.example"]
tls = { cert = "c.pem" }
upstream = { url = "ftp://x", connect_timeout = "5 parsecs" }
max_request_body = "lots"
"#;
        let p = problems(src);
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| text.iter().any(|t| t.contains(needle));
        assert!(has("listen.https (line 3)"), "{text:#?}");
        assert!(
            has("listen.secrue (line 4): unknown key; valid keys here are: https"),
            "{text:#?}"
        );
        assert!(has("site[0].tls.key"), "{text:#?}");
        assert!(has("site[0].upstream.url (line 9)"), "{text:#?}");
        assert!(
            has("site[0].upstream.connect_timeout (line 9)"),
            "{text:#?}"
        );
        assert!(has("site[0].max_request_body (line 10)"), "{text:#?}");
        assert_eq!(p.len(), 6, "{text:#?}");
    }

    #[test]
    fn access_lines_wait_at_most_a_minute() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.log.flush_interval, Duration::from_secs(1));
        let c = Config::parse(&format!("{MINIMAL}\n[log]\nflush_interval = \"0s\"\n")).unwrap();
        assert!(c.log.flush_interval.is_zero());
        let p = problems(&format!("{MINIMAL}\n[log]\nflush_interval = \"2m\"\n"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "log.flush_interval");
    }

    #[test]
    fn type_errors_name_what_was_expected() {
        let src = format!("{MINIMAL}\n[log]\naccess = \"yes\"\n");
        let p = problems(&src);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "log.access");
        assert!(
            p[0].message
                .contains("expected true or false, found string")
        );
    }

    #[test]
    fn cookie_names_must_read_as_names() {
        // `*` alone is every name (vaulted ones are still never forwarded,
        // session cookies never script-readable).
        let c = Config::parse(&format!("{MINIMAL}[site.cookies]\nforward = [\"*\"]\n")).unwrap();
        let fwd = &c.sites[0].cookies.forward;
        assert!(fwd.admits(b"anything") && fwd.admits(b"z"));
        let c = Config::parse(&format!(
            "{MINIMAL}session.mode = \"harden\"\n[site.cookies]\nscript_readable = [\"*\"]\n"
        ))
        .unwrap();
        let p = &c.sites[0].cookies.set_cookie;
        assert!(p.script_readable.admits(b"theme"));
        assert!(
            p.session_cookies.matches(b"PHPSESSID") && p.session_cookies.matches(b"JSESSIONID")
        );
        let src = format!(
            "{MINIMAL}[site.cookies]\nscript_readable = [\"\"]\nforward = [\"+\", \"%20*\", \"ok\"]\nallow_domains = [\"org\", \".co.uk\", \"example.org\"]\n"
        );
        let p = problems(&src);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "site[0].cookies.script_readable[0]",
                "site[0].cookies.forward[0]",
                "site[0].cookies.forward[1]",
                "site[0].cookies.allow_domains[0]",
                "site[0].cookies.allow_domains[1]",
            ],
            "{p:?}"
        );
        assert!(p[3].message.contains("public suffix"), "{}", p[3].message);
    }

    #[test]
    fn host_prefix_is_refused_for_a_narrower_path() {
        let src = format!(
            "{MINIMAL}[[site.cookies.override]]\nname = \"pref\"\nhost_prefix = true\npath = \"/app\"\n"
        );
        let p = problems(&src);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "site[0].cookies.override[0].host_prefix");
        assert!(p[0].message.contains("Path=/"), "{}", p[0].message);
        let ok =
            format!("{MINIMAL}[[site.cookies.override]]\nname = \"pref\"\nhost_prefix = true\n");
        assert!(Config::parse(&ok).is_ok());
    }

    #[test]
    fn session_timeouts_and_login_rules_are_checked() {
        let src = format!(
            "{MINIMAL}session.idle_timeout = \"500ms\"\n[[site.login]]\npath = \"/login.php\"\n"
        );
        let p = problems(&src);
        assert!(
            p.iter().any(|p| p.path == "site[0].session.idle_timeout"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.path == "site[0].login[0]" && p.message.contains("success signal")),
            "{p:?}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let p = problems("[listen\nhttps = 1");
        assert_eq!(p[0].line, Some(1));
    }

    #[test]
    fn no_site_is_a_problem() {
        let p = problems("[listen]\nhttps = \"127.0.0.1:1\"\n");
        assert_eq!(p[0].path, "site");
    }

    #[test]
    fn duplicate_hosts_and_defaults_are_refused() {
        let src = format!(
            "{MINIMAL}default = true\n{}default = true\n",
            MINIMAL.replace("app.example.com", "APP.example.com.")
        );
        let p = problems(&src);
        assert!(
            p.iter()
                .any(|p| p.message.contains("already a host of site[0]")),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.path == "site[1].default"), "{p:?}");
    }

    #[test]
    fn upstream_urls() {
        assert!(parse_upstream_url("http://127.0.0.1:3000").is_ok());
        assert!(parse_upstream_url("https://app.internal").is_ok());
        assert!(parse_upstream_url("http://u:p@host").is_err());
        assert!(parse_upstream_url("http://host/prefix").is_err());
        assert!(parse_upstream_url("127.0.0.1:3000").is_err());
    }

    #[test]
    fn plaintext_remote_upstream_is_detected() {
        let up = |url: &str| {
            let c = Config::parse(&MINIMAL.replace("http://127.0.0.1:3000", url)).unwrap();
            c.sites[0].upstream.is_plaintext_remote()
        };
        assert!(!up("http://127.0.0.1:3000"));
        assert!(!up("http://[::1]:3000"));
        assert!(!up("http://localhost:3000"));
        assert!(up("http://10.0.0.5:3000"));
        assert!(up("http://app.internal"));
        assert!(!up("https://app.internal"));
    }

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(28_800)));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_size("16KiB"), Some(16_384));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn example_config_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let c = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.sites.is_empty());
    }
}
