//! Property tests of the pure policy functions: `Set-Cookie` hardening,
//! URL session-ID stripping and request cookie vetting.
//!
//! Inputs are biased toward what apps and attackers really send (known
//! attributes in random case and spacing, session names in every spelling
//! the apps accept), with a share of arbitrary bytes. Case counts are kept
//! small enough for the file to run in a few seconds in debug builds.

use proptest::prelude::*;
use sessiongate::policy::cookie::CookieRules;
use sessiongate::policy::names::{NameSet, percent_decode};
use sessiongate::policy::set_cookie::{
    self, CookiePolicy, Outcome, Override, Refused, SameSite, harden,
};
use sessiongate::policy::url::{strip, strip_in_url};

const NOW: i64 = 1_700_000_000;
const HOST: &str = "app.shared.test";
const CAP: i64 = 86_400;

fn cookie_policy(same_site: SameSite) -> CookiePolicy {
    CookiePolicy {
        same_site,
        max_lifetime: Some(CAP as u64),
        script_readable: NameSet::new(["XSRF-TOKEN"]),
        session_cookies: NameSet::default(),
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

fn url_names() -> NameSet {
    NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "ASPSESSIONID*"])
}

fn cookie_rules() -> CookieRules {
    CookieRules {
        forward: NameSet::new(["PHPSESSID", "JSESSIONID", "lang"]),
        host_prefixed: vec!["pref".into()],
        gateway: Some("__Host-sg".into()),
        watch: NameSet::default(),
    }
}

// ---------------------------------------------------------------- strategies

const WS: &[&str] = &["", "", "", " ", "  ", "\t", " \t"];

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(WS)
}

/// Flips the case of each ASCII letter where the seed's bit says so.
fn random_case(s: &str, seed: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if seed >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

const COOKIE_NAMES: &[&str] = &[
    "PHPSESSID",
    "JSESSIONID",
    "session",
    "a",
    "pref",
    "saml",
    "XSRF-TOKEN",
    "__Secure-id",
    "__Host-id",
    "__host-id",
    "",
];

const ATTRS: &[&str] = &[
    "Secure",
    "HttpOnly",
    "SameSite=Lax",
    "SameSite=Strict",
    "SameSite=None",
    "SameSite=bogus",
    "SameSite",
    "Max-Age=0",
    "Max-Age=60",
    "Max-Age=86400",
    "Max-Age=86401",
    "Max-Age=31536000",
    "Max-Age=-1",
    "Max-Age=1x",
    "Max-Age=",
    "Max-Age=99999999999999999999999",
    "Expires=Wed, 21 Oct 2065 07:28:00 GMT",
    "Expires=Tue, 14 Nov 2023 23:13:20 GMT",
    "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    "Expires=tomorrow",
    "Domain=app.shared.test",
    "Domain=.shared.test",
    "Domain=shared.test",
    "Domain=evil.test",
    "Domain=",
    "Path=/",
    "Path=/app",
    "Path=",
    "Partitioned",
    "Priority=High",
    "Foo=bar",
    "Secure=false",
    "HttpOnly=1",
    "",
];

/// One attribute: a known one in random case and spacing, or noise.
fn attr() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (prop::sample::select(ATTRS), any::<u64>(), ws(), ws(), ws()).prop_map(
            |(a, seed, w1, w2, w3)| {
                let a = random_case(a, seed);
                let a = match a.split_once('=') {
                    Some((n, v)) => format!("{n}{w2}={w3}{v}"),
                    None => a,
                };
                format!("{w1}{a}{w2}")
            }
        ),
        1 => "[ -:<-~]{0,12}",
    ]
}

/// A `Set-Cookie` line: mostly realistic, sometimes arbitrary bytes.
fn set_cookie_line() -> impl Strategy<Value = Vec<u8>> {
    let realistic = (
        prop_oneof![3 => prop::sample::select(COOKIE_NAMES).prop_map(String::from), 1 => "[A-Za-z0-9_-]{1,10}"],
        "[A-Za-z0-9%\"._ -]{0,20}",
        ws(),
        ws(),
        any::<bool>(),
        prop::collection::vec(attr(), 0..8),
        prop::option::weighted(0.3, any::<u64>()),
    )
        .prop_map(|(name, value, w1, w2, has_eq, mut attrs, hard)| {
            // Sometimes already hardened, in some spelling.
            if let Some(seed) = hard {
                for a in ["Secure", "HttpOnly", "SameSite=Strict"] {
                    attrs.push(format!(" {}", random_case(a, seed)));
                }
            }
            let mut line = if has_eq || name.is_empty() {
                format!("{w1}{name}{w2}={w2}{value}{w1}")
            } else {
                format!("{w1}{name}{w1}")
            };
            for a in attrs {
                line.push(';');
                line.push_str(&a);
            }
            line.into_bytes()
        });
    prop_oneof![
        9 => realistic,
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

const URL_NAMES: &[&str] = &[
    "PHPSESSID",
    "phpsessid",
    "PhpSessId",
    "PHPSESS%49D",
    "%50HPSESSID",
    "PHPSESSID[]",
    "PHPSESSID%5B0%5D",
    " PHPSESSID",
    "%20PHPSESSID",
    "PHPSESSID%00",
    "jsessionid",
    "JSESSIONID",
    "sid",
    "SID",
    "s%69d",
    "ASPSESSIONIDQQGG",
    "aspsessionid",
    "sidx",
    "xsid",
    "x",
    "page",
    "next",
    "",
];

const URL_VALUES: &[&str] = &["", "1", "abc", "a%3Db", "%26", "/x", "sid", "%3B"];

fn param() -> impl Strategy<Value = String> {
    (
        prop::sample::select(URL_NAMES),
        prop::sample::select(&["=", "=", "%3D", "%3d", ""][..]),
        prop::sample::select(URL_VALUES),
    )
        .prop_map(|(n, eq, v)| {
            if eq.is_empty() {
                n.to_string()
            } else {
                format!("{n}{eq}{v}")
            }
        })
}

fn segment() -> impl Strategy<Value = String> {
    (
        "[a-z0-9.%-]{0,6}",
        prop::collection::vec(
            (prop::sample::select(&[";", ";", "%3B", "%3b"][..]), param()),
            0..3,
        ),
    )
        .prop_map(|(head, params)| {
            let mut s = head;
            for (sep, p) in params {
                s.push_str(sep);
                s.push_str(&p);
            }
            s
        })
}

/// A path-and-query: realistic, or a soup of the characters that matter.
fn path_and_query() -> impl Strategy<Value = String> {
    let realistic = (
        prop::collection::vec(segment(), 0..4),
        prop::option::of(prop::collection::vec(
            (prop::sample::select(&["&", "&", ";"][..]), param()),
            0..5,
        )),
        prop::option::of("[a-z=&;?]{0,6}"),
    )
        .prop_map(|(segs, query, frag)| {
            let mut s = String::new();
            for seg in segs {
                s.push('/');
                s.push_str(&seg);
            }
            if s.is_empty() {
                s.push('/');
            }
            if let Some(q) = query {
                s.push('?');
                for (i, (sep, p)) in q.into_iter().enumerate() {
                    if i > 0 {
                        s.push_str(sep);
                    }
                    s.push_str(&p);
                }
            }
            if let Some(f) = frag {
                s.push('#');
                s.push_str(&f);
            }
            s
        });
    prop_oneof![
        6 => realistic,
        2 => "[/;&=?#%3bBdDsiSI]{0,30}",
        1 => any::<String>(),
    ]
}

fn url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(
            &[
                "",
                "http://app.test",
                "https://a.test:8443",
                "//app.test",
                "next.php",
            ][..],
        ),
        path_and_query(),
    )
        .prop_map(|(head, pq)| format!("{head}{pq}"))
}

const VET_NAMES: &[&str] = &[
    "PHPSESSID",
    "phpsessid",
    "PHPSESS%49D",
    "JSESSIONID",
    "lang",
    "LANG",
    "pref",
    "__Host-pref",
    "__host-PREF",
    "__Host-sg",
    "__HOST-SG",
    "__Host-s%67",
    "tracking",
    "x",
    "",
];

/// A `Cookie` header: realistic pieces, or arbitrary bytes.
fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
    let realistic = prop::collection::vec(
        (
            prop::sample::select(VET_NAMES),
            "[A-Za-z0-9%\"=_ -]{0,8}",
            ws(),
            any::<bool>(),
        ),
        0..6,
    )
    .prop_map(|pieces| {
        let mut h = String::new();
        for (i, (n, v, w, eq)) in pieces.into_iter().enumerate() {
            if i > 0 {
                h.push(';');
                h.push_str(w);
            }
            h.push_str(n);
            if eq {
                h.push('=');
            }
            h.push_str(&v);
        }
        h.into_bytes()
    });
    prop_oneof![
        4 => realistic,
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ]
}

// ---------------------------------------------------------------- helpers

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks what a browser would record of a hardened line against the policy.
fn check_hardened(input: &[u8], out: &[u8], policy: &CookiePolicy) -> Result<(), TestCaseError> {
    let p_in = set_cookie::parse(input).expect("a line that was not dropped parses");
    let p = set_cookie::parse(out);
    prop_assert!(p.is_some(), "output does not parse: {}", show(out));
    let p = p.unwrap();
    let s = p.summary(NOW);
    prop_assert!(s.secure, "not Secure: {}", show(out));

    let ov = policy.override_for(p_in.name);
    match ov.and_then(|o| o.same_site) {
        Some(forced) => prop_assert_eq!(s.same_site, Some(Some(forced)), "{}", show(out)),
        None => prop_assert!(
            matches!(s.same_site, Some(Some(ss)) if ss >= policy.same_site),
            "SameSite {:?} below the policy's {:?}: {}",
            s.same_site,
            policy.same_site,
            show(out)
        ),
    }
    if !policy.script_readable.matches(p_in.name) {
        prop_assert!(s.http_only, "not HttpOnly: {}", show(out));
    }
    if let Some(l) = s.lifetime() {
        prop_assert!(l <= CAP, "lifetime {} over the cap: {}", l, show(out));
    }
    if let Some(d) = s.domain {
        let d = d.strip_prefix(b".").unwrap_or(d);
        prop_assert!(
            policy
                .allow_domains
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(d)),
            "Domain kept: {}",
            show(out)
        );
    }

    let renamed = ov.is_some_and(|o| o.host_prefix) && !starts_with_ci(p_in.name, b"__host-");
    if renamed {
        let mut want = b"__Host-".to_vec();
        want.extend_from_slice(p_in.name);
        prop_assert_eq!(show(p.name), show(&want));
        prop_assert_eq!(s.path, Some(&b"/"[..]), "{}", show(out));
        prop_assert!(s.domain.is_none(), "{}", show(out));
    } else {
        prop_assert_eq!(show(p.name), show(p_in.name));
    }
    prop_assert_eq!(show(p.value), show(p_in.value));
    Ok(())
}

/// Every `;` path parameter and query parameter name of a path-and-query.
fn param_names(pq: &str) -> Vec<&str> {
    let before_frag = pq.split('#').next().unwrap_or("");
    let (path, query) = match before_frag.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_frag, None),
    };
    let mut names = Vec::new();
    for seg in path.split('/') {
        // Split at `;` and at `%3B` in either case.
        let mut params = Vec::new();
        let b = seg.as_bytes();
        let (mut i, mut start) = (0, None);
        while i < b.len() {
            let sep = if b[i] == b';' {
                1
            } else if b[i] == b'%'
                && i + 2 < b.len()
                && b[i + 1] == b'3'
                && (b[i + 2] | 0x20) == b'b'
            {
                3
            } else {
                0
            };
            if sep > 0 {
                if let Some(s) = start {
                    params.push(&seg[s..i]);
                }
                start = Some(i + sep);
                i += sep;
            } else {
                i += 1;
            }
        }
        if let Some(s) = start {
            params.push(&seg[s..]);
        }
        names.extend(params);
    }
    if let Some(q) = query {
        names.extend(q.split(['&', ';']));
    }
    names
        .into_iter()
        .map(|p| {
            let eq = p.find('=').unwrap_or(p.len());
            let enc = p
                .as_bytes()
                .windows(3)
                .position(|w| w[0] == b'%' && w[1] == b'3' && (w[2] | 0x20) == b'd')
                .unwrap_or(p.len());
            &p[..eq.min(enc)]
        })
        .collect()
}

/// The name of each piece of a `Cookie` header, as the vetter splits it
/// (at `;`, trimming spaces and tabs).
fn cookie_names(h: &[u8]) -> Vec<&[u8]> {
    fn trim(b: &[u8]) -> &[u8] {
        let start = b
            .iter()
            .position(|c| !matches!(c, b' ' | b'\t'))
            .unwrap_or(b.len());
        let end = b
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(start, |e| e + 1);
        &b[start..end]
    }
    h.split(|&b| b == b';')
        .map(trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(eq) => trim(&p[..eq]),
            None => &p[..0],
        })
        .collect()
}

/// Whether two wire names are one name once percent-decoded, in any case.
fn same_decoded(a: &[u8], b: &[u8]) -> bool {
    percent_decode(a).eq_ignore_ascii_case(&percent_decode(b))
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Hardened output is Secure, at least the policy's SameSite, capped,
    /// keeps name and value, and hardening it again changes nothing. A line
    /// passed unchanged meets the same bar.
    #[test]
    fn hardening_is_sound_and_idempotent(
        line in set_cookie_line(),
        same_site in prop::sample::select(&[SameSite::None, SameSite::Lax, SameSite::Strict][..]),
    ) {
        let policy = cookie_policy(same_site);
        match harden(&line, &policy, HOST, NOW) {
            Outcome::Rewritten(out) => {
                check_hardened(&line, &out, &policy)?;
                prop_assert_eq!(
                    harden(&out, &policy, HOST, NOW),
                    Outcome::Unchanged,
                    "not idempotent: {} -> {}",
                    show(&line),
                    show(&out)
                );
            }
            Outcome::Unchanged => check_hardened(&line, &line, &policy)?,
            Outcome::Dropped(Refused::Invalid) => {
                prop_assert!(set_cookie::parse(&line).is_none(), "{}", show(&line));
            }
            Outcome::Dropped(_) => prop_assert!(set_cookie::parse(&line).is_some()),
        }
    }

    /// Stripping removes every configured name, whatever its spelling, and
    /// stripping again finds nothing.
    #[test]
    fn url_stripping_is_idempotent(pq in path_and_query()) {
        let names = url_names();
        let once = strip(&pq, &names);
        let clean = once.as_deref().unwrap_or(&pq);
        if let Some(out) = &once {
            prop_assert_eq!(strip(out, &names), None, "{:?} -> {:?}", pq, out);
            prop_assert!(out.len() < pq.len(), "{:?} -> {:?}", pq, out);
        }
        for n in param_names(clean) {
            prop_assert!(!names.matches(n.as_bytes()), "{:?} kept in {:?} (from {:?})", n, clean, pq);
        }
    }

    /// The same for whole URLs; scheme and authority are never touched.
    #[test]
    fn url_stripping_in_urls_is_idempotent(u in url()) {
        let names = url_names();
        if let Some(out) = strip_in_url(&u, &names) {
            prop_assert_eq!(strip_in_url(&out, &names), None, "{:?} -> {:?}", u, out);
            for head in ["http://app.test", "https://a.test:8443", "//app.test"] {
                if u.starts_with(head) {
                    prop_assert!(out.starts_with(head), "{:?} -> {:?}", u, out);
                }
            }
        }
    }

    /// Only forwarded names reach the app, never the gateway's cookie nor a
    /// tossed name, and nothing panics on arbitrary bytes.
    #[test]
    fn vetting_forwards_only_vetted_names(
        headers in prop::collection::vec(cookie_header(), 1..4),
    ) {
        let rules = cookie_rules();
        let hs: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        let v = rules.vet(&hs);
        let sent: &[u8] = if v.unchanged {
            prop_assert_eq!(hs.len(), 1);
            prop_assert!(v.header.is_empty());
            prop_assert_eq!(v.dropped, 0);
            hs[0]
        } else {
            &v.header
        };
        let allowed = {
            let mut n = rules.forward.clone();
            for h in &rules.host_prefixed {
                n.push(h);
            }
            n
        };
        let gateway = NameSet::new(rules.gateway.iter());
        let names = cookie_names(sent);
        for (i, &name) in names.iter().enumerate() {
            prop_assert!(allowed.matches(name), "{:?} forwarded: {:?}", show(name), show(sent));
            prop_assert!(!gateway.matches(name), "gateway cookie forwarded: {:?}", show(sent));
            prop_assert!(
                !v.tossed.iter().any(|t| same_decoded(t, name)),
                "tossed {:?} forwarded: {:?}", show(name), show(sent)
            );
            prop_assert!(!starts_with_ci(name, b"__host-"), "prefix kept: {:?}", show(sent));
            prop_assert!(
                !names[..i].iter().any(|n| same_decoded(n, name)),
                "{:?} forwarded twice: {:?}", show(name), show(sent)
            );
        }
        // A host-prefixed app cookie is only ever the browser's __Host- copy.
        for h in &rules.host_prefixed {
            let forwarded = names.iter().any(|n| same_decoded(n, h.as_bytes()));
            let prefixed_sent = hs.iter().flat_map(|x| cookie_names(x)).any(|n| {
                starts_with_ci(n, b"__host-") && same_decoded(&n[7..], h.as_bytes())
            });
            prop_assert!(!forwarded || prefixed_sent, "bare {} forwarded: {:?}", h, show(sent));
        }
    }
}

/// A form field: a session name in some spelling, or an ordinary one.
fn form_field() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        (
            prop::sample::select(vec![
                "PHPSESSID",
                "phpsessid",
                "PHPSESS%49D",
                "+PHPSESSID",
                "sid",
                "PHPSESSID[]"
            ]),
            "[a-z0-9%]{0,12}"
        )
            .prop_map(|(n, v)| (format!("{n}={v}"), true)),
        ("[a-z]{1,8}", "[a-zA-Z0-9%+.]{0,20}").prop_map(|(n, v)| (format!("{n}={v}"), false)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// However the body is cut into chunks, the form filter gives the same
    /// output, keeps every ordinary field in order and no session field.
    #[test]
    fn form_filter_is_chunking_invariant_and_complete(
        fields in prop::collection::vec(form_field(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        use sessiongate::policy::form::{Filter, Kind, filter_all};
        let body = fields.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join("&");
        let names = url_names();
        let (whole, removed) = filter_all(Kind::Urlencoded, &names, body.as_bytes()).unwrap();
        let kept: Vec<&str> = fields.iter().filter(|(_, s)| !s).map(|(f, _)| f.as_str()).collect();
        prop_assert_eq!(std::str::from_utf8(&whole).unwrap(), kept.join("&"));
        prop_assert_eq!(removed, fields.iter().filter(|(_, s)| *s).count());
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
        points.sort_unstable();
        let mut f = Filter::new(Kind::Urlencoded, names).unwrap();
        let (mut out, mut at) = (Vec::new(), 0);
        for p in points.into_iter().chain([body.len()]) {
            out.extend_from_slice(&f.feed(&body.as_bytes()[at..p]).unwrap());
            at = p;
        }
        out.extend_from_slice(&f.finish().unwrap());
        prop_assert_eq!(out, whole.to_vec());
    }
}
