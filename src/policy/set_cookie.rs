//! `Set-Cookie` hardening, byte-preserving.
//!
//! Each upstream `Set-Cookie` is read the way a browser reads it (RFC
//! 6265bis §5.6) and only its security attributes are changed: `Secure`
//! added, `HttpOnly` added unless the cookie is script-readable, `SameSite`
//! raised to the site policy, the lifetime capped, `Domain` removed unless
//! allowed. Everything else (name, value, `Path`, `Expires`, `Partitioned`,
//! `Priority`, attributes nobody knows yet) passes byte for byte. A cookie a
//! browser would have refused stays refused: it is dropped rather than
//! repaired into something the browser would accept.

use super::cookie_date;
use super::names::NameSet;
use super::trim_ows as trim;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

/// Per-cookie exceptions to the site policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub name: String,
    pub same_site: Option<SameSite>,
    /// The browser sees `__Host-NAME`; the app keeps seeing `NAME`.
    pub host_prefix: bool,
}

#[derive(Debug, Clone)]
pub struct CookiePolicy {
    pub same_site: SameSite,
    /// Longest lifetime a persistent cookie may keep, in seconds.
    pub max_lifetime: Option<u64>,
    pub script_readable: NameSet,
    /// The app's session cookie names: always `HttpOnly`, whatever
    /// `script_readable` says (`script_readable = ["*"]` in harden mode).
    pub session_cookies: NameSet,
    /// Domains (lower-case, no leading dot) a `Domain` attribute may keep.
    pub allow_domains: Vec<String>,
    pub overrides: Vec<Override>,
}

impl CookiePolicy {
    pub fn override_for(&self, name: &[u8]) -> Option<&Override> {
        self.overrides.iter().find(|o| o.name.as_bytes() == name)
    }
}

/// Why a `Set-Cookie` was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Control characters, empty, or over 4096 bytes: browsers ignore it.
    Invalid,
    /// `__Secure-`/`__Host-` rules broken: browsers refuse it.
    Prefix,
    /// `Domain` does not cover the host: browsers refuse it.
    Domain,
    /// `SameSite=None` or `Partitioned` without `Secure`: Chromium and
    /// Firefox refuse it (adding `Secure` would make it a new cookie).
    Insecure,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Invalid => "invalid",
            Refused::Prefix => "prefix_rules",
            Refused::Domain => "domain_mismatch",
            Refused::Insecure => "needs_secure",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Rewritten(Vec<u8>),
    Dropped(Refused),
}

/// A `Set-Cookie` line split as a browser splits it.
pub struct Parsed<'a> {
    line: &'a [u8],
    /// End of the name-value pair (index of the first `;`, or the end).
    nvp_end: usize,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// One attribute: its whole piece (from its `;`) and its trimmed parts.
struct Attr<'a> {
    piece: &'a [u8],
    name: &'a [u8],
    value: &'a [u8],
}

impl Attr<'_> {
    /// A tab inside the name or the value (not around them): Chromium
    /// refuses the whole line for it, RFC 6265bis does not. Hardening never
    /// removes such a piece (see `harden`).
    fn has_inner_tab(&self) -> bool {
        self.name.contains(&b'\t') || self.value.contains(&b'\t')
    }
}

/// Splits the name-value pair; `None` where a browser ignores the line.
pub fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    // §5.6 step 1: a CTL other than HTAB anywhere aborts. Without an early
    // exit, so that it compiles to vector compares.
    let control = line.iter().fold(false, |seen, &b| {
        seen | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    });
    if control {
        return None;
    }
    // The first `;` ends the name-value pair, the first `=` in it splits it.
    let nvp_end = memchr::memchr(b';', line).unwrap_or(line.len());
    let nvp = &line[..nvp_end];
    let eq = memchr::memchr(b'=', nvp);
    let (name, value) = match eq {
        Some(eq) => (trim(&nvp[..eq]), trim(&nvp[eq + 1..])),
        // No `=`: a nameless cookie whose value is the whole pair.
        None => (&nvp[..0], trim(nvp)),
    };
    if (name.is_empty() && value.is_empty()) || name.len() + value.len() > 4096 {
        return None;
    }
    Some(Parsed {
        line,
        nvp_end,
        name,
        value,
    })
}

impl<'a> Parsed<'a> {
    fn attrs(&self) -> impl Iterator<Item = Attr<'a>> + 'a {
        let line = self.line;
        let mut pos = self.nvp_end;
        std::iter::from_fn(move || {
            if pos >= line.len() {
                return None;
            }
            let end = line[pos + 1..]
                .iter()
                .position(|&b| b == b';')
                .map_or(line.len(), |e| pos + 1 + e);
            let piece = &line[pos..end];
            pos = end;
            let body = &piece[1..];
            let (name, value) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&body[..eq]), trim(&body[eq + 1..])),
                None => (trim(body), &body[..0]),
            };
            Some(Attr { piece, name, value })
        })
    }

    /// What a browser would record of the attributes (§5.6, §5.7): the last
    /// valid occurrence of each wins.
    pub fn summary(&self, now: i64) -> Summary<'a> {
        let mut s = Summary::default();
        for a in self.attrs() {
            if a.value.len() > 1024 {
                continue;
            }
            let n = a.name;
            if n.eq_ignore_ascii_case(b"secure") {
                s.secure = true;
            } else if n.eq_ignore_ascii_case(b"httponly") {
                s.http_only = true;
            } else if n.eq_ignore_ascii_case(b"samesite") {
                // Counted for the rewrite that leaves one; a piece it may
                // not remove does not count.
                s.same_site_attrs += usize::from(!a.has_inner_tab());
                s.same_site = Some(if a.value.eq_ignore_ascii_case(b"strict") {
                    Some(SameSite::Strict)
                } else if a.value.eq_ignore_ascii_case(b"lax") {
                    Some(SameSite::Lax)
                } else if a.value.eq_ignore_ascii_case(b"none") {
                    Some(SameSite::None)
                } else {
                    None
                });
            } else if n.eq_ignore_ascii_case(b"max-age") {
                if let Some(secs) = max_age(a.value) {
                    s.max_age = Some(secs);
                }
            } else if n.eq_ignore_ascii_case(b"expires") {
                if let Some(t) = cookie_date::parse(a.value) {
                    s.expires_in = Some(t.saturating_sub(now));
                }
            } else if n.eq_ignore_ascii_case(b"domain") {
                // The last one wins even when empty (then host-only), as
                // Chromium reads it; RFC 6265bis would skip an empty one,
                // which leaves the same line refused by both readings.
                s.domain = (!a.value.is_empty()).then_some(a.value);
            } else if n.eq_ignore_ascii_case(b"path") {
                s.path = Some(a.value);
            } else if n.eq_ignore_ascii_case(b"partitioned") {
                s.partitioned = true;
            }
        }
        s
    }
}

/// What a browser would make of a cookie's attributes.
#[derive(Debug, Default)]
pub struct Summary<'a> {
    pub secure: bool,
    pub http_only: bool,
    /// The last `SameSite`: `Some(None)` for a value browsers do not know.
    pub same_site: Option<Option<SameSite>>,
    same_site_attrs: usize,
    pub max_age: Option<i64>,
    /// Seconds from now to `Expires`.
    pub expires_in: Option<i64>,
    pub domain: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    pub partitioned: bool,
}

impl Summary<'_> {
    /// Seconds the cookie lives: `None` for a session cookie, `<= 0` for a
    /// cookie that deletes (Max-Age wins over Expires).
    pub fn lifetime(&self) -> Option<i64> {
        self.max_age.or(self.expires_in)
    }

    pub fn deletes(&self) -> bool {
        self.lifetime().is_some_and(|l| l <= 0)
    }
}

/// `Max-Age` as browsers read it: optional sign, then digits only. RFC
/// 6265bis allows only `-`, but Chromium and Firefox parse with library
/// integer parsers that also take `+`; reading it as they do keeps the
/// lifetime cap from being sidestepped with `Max-Age=+99999999`.
fn max_age(v: &[u8]) -> Option<i64> {
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.iter().fold(0i64, |acc, &b| {
        acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
    Some(if neg { -n } else { n })
}

/// Whether a browser on `host` keeps a cookie with this `Domain` value
/// (RFC 6265bis §5.7): the host must domain-match it (§5.1.3), and it must
/// not be a public suffix unless it is the host itself (the cookie is then
/// host-only). `Domain=.org` from `home.example.org` is refused, as browsers
/// refuse it; removing the attribute would have planted a host-only cookie
/// the browser never stores.
fn domain_accepted(host: &str, domain: &[u8]) -> bool {
    let domain = domain.strip_prefix(b".").unwrap_or(domain);
    domain_matches(host, domain)
        && (host.as_bytes().eq_ignore_ascii_case(domain) || !is_public_suffix(domain))
}

/// Whether `domain` (no leading dot) is a public suffix (`org`, `co.uk`,
/// `github.io`) on the Public Suffix List, or a single label that no rule
/// covers (`localhost`: the list's default rule).
pub fn is_public_suffix(domain: &[u8]) -> bool {
    // The list is lower case; most Domain values already are.
    let lower = if domain.iter().any(u8::is_ascii_uppercase) {
        std::borrow::Cow::Owned(domain.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(domain)
    };
    psl::suffix(&lower).is_some_and(|s| s.as_bytes().len() == lower.len())
}

/// Whether `host` is covered by a `Domain` value whose one leading dot is
/// already gone (§5.1.3 domain-match).
fn domain_matches(host: &str, domain: &[u8]) -> bool {
    let host = host.as_bytes();
    if host.eq_ignore_ascii_case(domain) {
        return true;
    }
    let is_ip = std::str::from_utf8(host).is_ok_and(|h| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    });
    !is_ip
        && host.len() > domain.len() + 1
        && host[host.len() - domain.len() - 1] == b'.'
        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Hardens one `Set-Cookie` line for a response to `host` (the public host
/// name, without port). `now` is Unix seconds, for `Expires`.
pub fn harden(line: &[u8], policy: &CookiePolicy, host: &str, now: i64) -> Outcome {
    let Some(p) = parse(line) else {
        return Outcome::Dropped(Refused::Invalid);
    };
    let s = p.summary(now);

    // Prefix rules (§4.1.3): the browser would refuse these; keep it so.
    if p.name.is_empty()
        && (starts_with_ci(p.value, b"__secure-") || starts_with_ci(p.value, b"__host-"))
    {
        return Outcome::Dropped(Refused::Prefix);
    }
    if starts_with_ci(p.name, b"__secure-") && !s.secure {
        return Outcome::Dropped(Refused::Prefix);
    }
    if starts_with_ci(p.name, b"__host-")
        && (!s.secure || s.domain.is_some() || s.path != Some(b"/"))
    {
        return Outcome::Dropped(Refused::Prefix);
    }
    // `__Http-` and `__Host-Http-` (RFC 6265bis drafts, Chromium) also
    // require `HttpOnly`.
    if (starts_with_ci(p.name, b"__http-") && !(s.secure && s.http_only))
        || (starts_with_ci(p.name, b"__host-http-") && !s.http_only)
    {
        return Outcome::Dropped(Refused::Prefix);
    }
    // What browsers refuse without `Secure` stays refused: hardening adds
    // `Secure`, which would otherwise let it in.
    if !s.secure && (s.partitioned || s.same_site == Some(Some(SameSite::None))) {
        return Outcome::Dropped(Refused::Insecure);
    }
    if let Some(d) = s.domain
        && !domain_accepted(host, d)
    {
        return Outcome::Dropped(Refused::Domain);
    }

    let ov = policy.override_for(p.name);
    let host_prefix = ov.is_some_and(|o| o.host_prefix) && !starts_with_ci(p.name, b"__host-");
    // The prefix must not push the cookie past what browsers accept.
    if host_prefix && p.name.len() + p.value.len() + 7 > 4096 {
        return Outcome::Dropped(Refused::Invalid);
    }
    let drop_domain = s.domain.is_some_and(|d| {
        host_prefix || {
            let d = d.strip_prefix(b".").unwrap_or(d);
            !policy
                .allow_domains
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(d))
        }
    });
    // Chromium refuses a whole line for a tab inside any piece (RFC
    // 6265bis does not), so hardening never removes such a piece: that
    // would let in a cookie Chromium refuses. A kept Domain would be the
    // last one left instead of going, so that cookie goes.
    if drop_domain
        && p.attrs()
            .any(|a| a.name.eq_ignore_ascii_case(b"domain") && a.has_inner_tab())
    {
        return Outcome::Dropped(Refused::Invalid);
    }
    let fix_path = host_prefix && s.path != Some(b"/");
    let add_secure = !s.secure;
    let add_http_only = !s.http_only
        && (!policy.script_readable.admits(p.name) || policy.session_cookies.matches(p.name));
    let want_same_site = match ov.and_then(|o| o.same_site) {
        Some(forced) => {
            (s.same_site != Some(Some(forced)) || s.same_site_attrs > 1).then_some(forced)
        }
        None => {
            let current = s.same_site.flatten();
            match current {
                Some(c) if c > policy.same_site => None,
                Some(c) if c == policy.same_site && s.same_site_attrs == 1 => None,
                _ => Some(policy.same_site),
            }
        }
    };
    let cap = policy.max_lifetime.map(|c| c.min(i64::MAX as u64) as i64);
    let cap_lifetime = match (cap, s.lifetime()) {
        (Some(cap), Some(l)) if l > cap => Some(cap),
        _ => None,
    };
    let drop_max_age = cap_lifetime.is_some() && s.max_age.is_some();

    if !(host_prefix
        || drop_domain
        || fix_path
        || add_secure
        || add_http_only
        || want_same_site.is_some()
        || cap_lifetime.is_some())
    {
        return Outcome::Unchanged;
    }

    let mut out = Vec::with_capacity(line.len() + 48);
    if host_prefix {
        let name_start = p.name.as_ptr() as usize - line.as_ptr() as usize;
        out.extend_from_slice(&line[..name_start]);
        out.extend_from_slice(b"__Host-");
        out.extend_from_slice(&line[name_start..p.nvp_end]);
    } else {
        out.extend_from_slice(&line[..p.nvp_end]);
    }
    for a in p.attrs() {
        let n = a.name;
        // A piece with a tab inside its name or value stays (see above);
        // what is appended below comes later, and the last one wins.
        let remove = (drop_domain && n.eq_ignore_ascii_case(b"domain"))
            || (fix_path && n.eq_ignore_ascii_case(b"path"))
            || (want_same_site.is_some() && n.eq_ignore_ascii_case(b"samesite"))
            || (drop_max_age && n.eq_ignore_ascii_case(b"max-age"));
        if !remove || a.has_inner_tab() {
            out.extend_from_slice(a.piece);
        }
    }
    if fix_path {
        out.extend_from_slice(b"; Path=/");
    }
    if add_secure {
        out.extend_from_slice(b"; Secure");
    }
    if add_http_only {
        out.extend_from_slice(b"; HttpOnly");
    }
    if let Some(ss) = want_same_site {
        out.extend_from_slice(b"; SameSite=");
        out.extend_from_slice(ss.as_str().as_bytes());
    }
    if let Some(cap) = cap_lifetime {
        out.extend_from_slice(format!("; Max-Age={cap}").as_bytes());
    }
    Outcome::Rewritten(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    /// Bytes around every boundary the scan cares about.
    const ALPHABET: &[u8] = &[
        0x00, 0x01, 0x08, 0x09, 0x0a, 0x1f, 0x20, b';', b'=', b'a', b'<', b':', b'>', 0x7e, 0x7f,
        0x80, 0x9f, 0xa0, 0xff,
    ];

    /// A small deterministic generator (xorshift64*), so failures repeat.
    fn words(seed: u64) -> impl Iterator<Item = u64> {
        let mut s = seed;
        std::iter::repeat_with(move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d)
        })
    }

    #[test]
    fn parse_splits_as_a_byte_by_byte_scan_does() {
        // The scan as it was: three passes (CTLs, `;`, `=`).
        fn plain(line: &[u8]) -> Option<(usize, &[u8], &[u8])> {
            if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return None;
            }
            let nvp_end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
            let nvp = &line[..nvp_end];
            let (name, value) = match nvp.iter().position(|&b| b == b'=') {
                Some(eq) => (trim(&nvp[..eq]), trim(&nvp[eq + 1..])),
                None => (&nvp[..0], trim(nvp)),
            };
            if (name.is_empty() && value.is_empty()) || name.len() + value.len() > 4096 {
                return None;
            }
            Some((nvp_end, name, value))
        }
        let mut rng = words(11);
        for _ in 0..100_000 {
            let r = rng.next().unwrap();
            let len = (r % 40) as usize;
            // Mostly plain letters, so that long clean runs occur too.
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next().unwrap();
                    if r % 4 == 0 {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    } else {
                        b'a' + (r >> 8) as u8 % 26
                    }
                })
                .collect();
            let got = parse(&line).map(|p| (p.nvp_end, p.name, p.value));
            assert_eq!(got, plain(&line), "{line:02x?}");
        }
    }

    fn policy() -> CookiePolicy {
        CookiePolicy {
            same_site: SameSite::Lax,
            max_lifetime: Some(86_400),
            script_readable: NameSet::new(["XSRF-TOKEN"]),
            session_cookies: NameSet::new(["PHPSESSID"]),
            allow_domains: vec!["shared.test".into()],
            overrides: vec![
                Override {
                    name: "saml".into(),
                    same_site: Some(SameSite::None),
                    host_prefix: false,
                },
                Override {
                    name: "pref".into(),
                    same_site: None,
                    host_prefix: true,
                },
            ],
        }
    }

    fn run(line: &str) -> String {
        match harden(line.as_bytes(), &policy(), "app.shared.test", NOW) {
            Outcome::Unchanged => line.to_string(),
            Outcome::Rewritten(v) => String::from_utf8(v).unwrap(),
            Outcome::Dropped(r) => format!("DROPPED {}", r.as_str()),
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            // The common case: flags added.
            (
                "PHPSESSID=abc; path=/",
                "PHPSESSID=abc; path=/; Secure; HttpOnly; SameSite=Lax",
            ),
            // Already hard: untouched (and not reallocated, see below).
            (
                "a=b; Secure; HttpOnly; SameSite=Lax",
                "a=b; Secure; HttpOnly; SameSite=Lax",
            ),
            // Mixed case and odd spacing count as present.
            (
                "a=b;secure;HTTPONLY;  samesite=lax",
                "a=b;secure;HTTPONLY;  samesite=lax",
            ),
            // `Secure=false` is still Secure to a browser.
            (
                "a=b; Secure=false; HttpOnly; SameSite=Lax",
                "a=b; Secure=false; HttpOnly; SameSite=Lax",
            ),
            // Stricter upstream SameSite is kept; weaker is raised.
            (
                "a=b; SameSite=Strict",
                "a=b; SameSite=Strict; Secure; HttpOnly",
            ),
            (
                "a=b; SameSite=None; Secure",
                "a=b; Secure; HttpOnly; SameSite=Lax",
            ),
            ("a=b; SameSite=bogus", "a=b; Secure; HttpOnly; SameSite=Lax"),
            // Duplicate SameSite: the last wins in a browser; normalise to one.
            (
                "a=b; SameSite=Lax; SameSite=None; Secure",
                "a=b; Secure; HttpOnly; SameSite=Lax",
            ),
            // `SameSite=None` or `Partitioned` without `Secure`: Chromium
            // refuses it, and so does the gateway (checked in Chromium).
            ("a=b; SameSite=Lax; SameSite=None", "DROPPED needs_secure"),
            ("a=b; SameSite=None", "DROPPED needs_secure"),
            ("a=b; Partitioned", "DROPPED needs_secure"),
            // `__Http-` needs Secure and HttpOnly, `__Host-Http-` also
            // what `__Host-` needs.
            ("__Http-a=b; Secure", "DROPPED prefix_rules"),
            ("__http-a=b; HttpOnly", "DROPPED prefix_rules"),
            (
                "__Http-a=b; Secure; HttpOnly",
                "__Http-a=b; Secure; HttpOnly; SameSite=Lax",
            ),
            ("__Host-Http-a=b; Secure; Path=/", "DROPPED prefix_rules"),
            // The last Domain wins even when empty: host-only in Chromium.
            (
                "a=b; Domain=example.com; Domain=",
                "a=b; Domain=example.com; Domain=; Secure; HttpOnly; SameSite=Lax",
            ),
            // A year past 9999 (Chromium reads it) is capped.
            (
                "a=b; Expires=Wed, 21 Oct 99999 07:28:00 GMT",
                "a=b; Expires=Wed, 21 Oct 99999 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            (
                "a=b; SameSite=None; SameSite=Strict",
                "a=b; SameSite=None; SameSite=Strict; Secure; HttpOnly",
            ),
            // Per-cookie override: None, always with Secure.
            (
                "saml=x; SameSite=Lax",
                "saml=x; Secure; HttpOnly; SameSite=None",
            ),
            // Script-readable cookies keep script access.
            (
                "XSRF-TOKEN=t; Path=/",
                "XSRF-TOKEN=t; Path=/; Secure; SameSite=Lax",
            ),
            // Unknown attributes and values pass byte for byte.
            (
                "id=\"q u\"; Partitioned; Secure; Priority=High; Foo",
                "id=\"q u\"; Partitioned; Secure; Priority=High; Foo; HttpOnly; SameSite=Lax",
            ),
            // Lifetimes: capped, session cookies stay session cookies.
            (
                "a=b; Max-Age=31536000",
                "a=b; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            (
                "a=b; Max-Age=3600",
                "a=b; Max-Age=3600; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "a=b; Max-Age=99999999999999999999999",
                "a=b; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            (
                "a=b; Expires=Wed, 21 Oct 2065 07:28:00 GMT",
                "a=b; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            (
                "a=b; Expires=Tue, 14 Nov 2023 23:13:20 GMT",
                "a=b; Expires=Tue, 14 Nov 2023 23:13:20 GMT; Secure; HttpOnly; SameSite=Lax",
            ),
            // Deleting cookies still delete.
            (
                "a=; Max-Age=0",
                "a=; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "a=; Max-Age=-1; Expires=Wed, 21 Oct 2065 07:28:00 GMT",
                "a=; Max-Age=-1; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax",
            ),
            // An invalid Max-Age is ignored by browsers, so Expires decides.
            (
                "a=b; Max-Age=1x; Expires=Wed, 21 Oct 2065 07:28:00 GMT",
                "a=b; Max-Age=1x; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            // Domain: removed unless allowed; refused if it does not cover the host.
            (
                "a=b; Domain=app.shared.test",
                "a=b; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "a=b; Domain=.Shared.Test; Secure; HttpOnly; SameSite=Lax",
                "a=b; Domain=.Shared.Test; Secure; HttpOnly; SameSite=Lax",
            ),
            ("a=b; Domain=evil.test", "DROPPED domain_mismatch"),
            ("a=b; Domain=pp.shared.test", "DROPPED domain_mismatch"),
            (
                "a=b; Domain=",
                "a=b; Domain=; Secure; HttpOnly; SameSite=Lax",
            ),
            // No `=`: a nameless cookie; flags all the same.
            ("justavalue", "justavalue; Secure; HttpOnly; SameSite=Lax"),
            ("=v", "=v; Secure; HttpOnly; SameSite=Lax"),
            // Refused by browsers, so refused here.
            ("", "DROPPED invalid"),
            ("=", "DROPPED invalid"),
            ("; Secure", "DROPPED invalid"),
            ("a=b\u{1}c", "DROPPED invalid"),
            ("__Secure-a=b", "DROPPED prefix_rules"),
            ("__secure-a=b; Path=/", "DROPPED prefix_rules"),
            ("__Host-a=b; Secure", "DROPPED prefix_rules"),
            (
                "__Host-a=b; Secure; Path=/; Domain=app.shared.test",
                "DROPPED prefix_rules",
            ),
            (
                "__Host-a=b; Secure; Path=/",
                "__Host-a=b; Secure; Path=/; HttpOnly; SameSite=Lax",
            ),
            ("__Host-x", "DROPPED prefix_rules"),
            // Host-prefixing: renamed, Path forced to /, Domain gone.
            (
                "pref=dark; Path=/; Domain=shared.test",
                "__Host-pref=dark; Path=/; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "pref=dark",
                "__Host-pref=dark; Path=/; Secure; HttpOnly; SameSite=Lax",
            ),
            // A name that is a prefix of an overridden one is not it.
            ("prefs=1", "prefs=1; Secure; HttpOnly; SameSite=Lax"),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), *want, "input: {input}");
        }
    }

    #[test]
    fn a_session_cookie_is_never_script_readable() {
        let mut p = policy();
        p.script_readable = NameSet::new(["*"]);
        let out = |line: &str| match harden(line.as_bytes(), &p, "app.shared.test", NOW) {
            Outcome::Rewritten(v) => String::from_utf8(v).unwrap(),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(out("theme=dark"), "theme=dark; Secure; SameSite=Lax");
        for name in ["PHPSESSID", "phpsessid", "PHPSESSID[x]", "PHPSESS%49D"] {
            let line = format!("{name}=abc");
            assert_eq!(
                out(&line),
                format!("{line}; Secure; HttpOnly; SameSite=Lax")
            );
        }
    }

    #[test]
    fn a_piece_chromium_refuses_for_its_tab_is_not_removed() {
        // Chromium refuses a line with a tab inside any token; removing the
        // piece would let the cookie in (WPT attributes-ctl %x9).
        let cases = [
            (
                "a=b; SameSite=No\tne; SameSite=None; Secure",
                "a=b; SameSite=No\tne; Secure; HttpOnly; SameSite=Lax",
            ),
            (
                "a=b; Max-Age=10\t00; Max-Age=99999999",
                "a=b; Max-Age=10\t00; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
            ),
            (
                "a=b; Domain=test\t.co; Domain=app.shared.test",
                "DROPPED invalid",
            ),
            // Tabs around a token are whitespace to everyone.
            (
                "a=b; Domain=\tapp.shared.test\t",
                "a=b; Secure; HttpOnly; SameSite=Lax",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), want, "input: {input:?}");
        }
    }

    #[test]
    fn a_public_suffix_domain_stays_refused() {
        // Browsers refuse a Domain that is a public suffix unless it is the
        // host itself (RFC 6265bis §5.7); removing it would plant a
        // host-only cookie instead (http-state DOMAIN0017).
        let cases: &[(&str, &str, bool)] = &[
            ("home.example.org", "a=b; Domain=.org", false),
            ("home.example.org", "a=b; domain=ORG", false),
            ("home.example.org", "a=b; Domain=org.", false),
            ("home.example.org", "a=b; Domain=example.org", true),
            ("home.example.org", "a=b; Domain=.Home.Example.Org", true),
            // One leading dot is ignored, not two (DOMAIN0010).
            ("home.example.org", "a=b; Domain=..home.example.org", false),
            ("home.example.org", "a=b; Domain=..example.org", false),
            ("www.example.co.uk", "a=b; Domain=co.uk", false),
            ("www.example.co.uk", "a=b; Domain=example.co.uk", true),
            // Private-section suffixes too, as in Chromium.
            ("app.github.io", "a=b; Domain=github.io", false),
            ("app.github.io", "a=b; Domain=app.github.io", true),
            // A label no rule covers is a suffix by the default rule.
            ("a.localhost", "a=b; Domain=localhost", false),
            ("localhost", "a=b; Domain=localhost", true),
            // The host itself, even when it is a suffix: host-only.
            ("co.uk", "a=b; Domain=co.uk", true),
            // The last Domain decides.
            (
                "home.example.org",
                "a=b; Domain=example.org; Domain=org",
                false,
            ),
            (
                "home.example.org",
                "a=b; Domain=org; Domain=example.org",
                true,
            ),
        ];
        let mut p = policy();
        p.allow_domains = vec!["org".into(), "example.org".into()];
        for &(host, line, kept) in cases {
            let out = harden(line.as_bytes(), &p, host, NOW);
            assert_eq!(
                !matches!(out, Outcome::Dropped(_)),
                kept,
                "{host}: {line}: {out:?}"
            );
            if !kept {
                assert_eq!(out, Outcome::Dropped(Refused::Domain), "{host}: {line}");
            }
        }
        assert!(is_public_suffix(b"Org") && is_public_suffix(b"s3.amazonaws.com"));
        assert!(!is_public_suffix(b"example.org") && !is_public_suffix(b""));
    }

    #[test]
    fn expires_with_a_comma_is_one_attribute() {
        let line = b"a=b; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Path=/";
        let p = parse(line).unwrap();
        let s = p.summary(NOW);
        assert!(s.expires_in.unwrap() > 0);
        assert_eq!(s.path, Some(&b"/"[..]));
    }

    #[test]
    fn already_hardened_needs_no_allocation() {
        let line = b"a=b; Secure; HttpOnly; SameSite=Strict; Max-Age=60";
        assert_eq!(
            harden(line, &policy(), "app.shared.test", NOW),
            Outcome::Unchanged
        );
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let line = b"a=\xff\xfe; Path=/";
        match harden(line, &policy(), "app.shared.test", NOW) {
            Outcome::Rewritten(v) => assert!(v.starts_with(b"a=\xff\xfe; Path=/; Secure")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hundred_attributes() {
        let mut line = String::from("a=b");
        for i in 0..100 {
            line.push_str(&format!("; X{i}=y"));
        }
        let out = run(&line);
        assert!(out.starts_with(&line));
        assert!(out.ends_with("; Secure; HttpOnly; SameSite=Lax"));
    }
}
