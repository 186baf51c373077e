//! The checks each fuzz target runs on one input, shared with
//! `tests/fuzz_corpus.rs`, which replays the saved corpus without fuzzing.
//! Each function panics when a check fails.

#![allow(dead_code)]

use sessiongate::policy::cookie::CookieRules;
use sessiongate::policy::names::{NameSet, percent_decode};
use sessiongate::policy::set_cookie::{self, CookiePolicy, Outcome, Override, SameSite, harden};
use sessiongate::policy::url::{strip, strip_in_url};

const NOW: i64 = 1_700_000_000;
const HOST: &str = "app.shared.test";

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn cookie_policy(same_site: SameSite) -> CookiePolicy {
    CookiePolicy {
        same_site,
        max_lifetime: Some(86_400),
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

/// `set_cookie`: parse and harden never panic; a rewritten line parses, is
/// Secure, keeps the policy's SameSite, and hardening it again changes
/// nothing.
pub fn set_cookie(data: &[u8]) {
    if let Some(p) = set_cookie::parse(data) {
        let s = p.summary(NOW);
        let _ = (s.lifetime(), s.deletes());
    }
    for same_site in [SameSite::Lax, SameSite::Strict] {
        let policy = cookie_policy(same_site);
        let Outcome::Rewritten(out) = harden(data, &policy, HOST, NOW) else {
            continue;
        };
        let p = set_cookie::parse(&out)
            .unwrap_or_else(|| panic!("output does not parse: {:?}", show(&out)));
        let s = p.summary(NOW);
        assert!(s.secure, "not Secure: {:?}", show(&out));
        let forced = set_cookie::parse(data)
            .and_then(|p| policy.override_for(p.name))
            .and_then(|o| o.same_site);
        match forced {
            Some(f) => assert_eq!(s.same_site, Some(Some(f)), "{:?}", show(&out)),
            None => assert!(
                matches!(s.same_site, Some(Some(ss)) if ss >= same_site),
                "SameSite {:?}: {:?}",
                s.same_site,
                show(&out)
            ),
        }
        assert!(
            s.lifetime().is_none_or(|l| l <= 86_400),
            "lifetime not capped: {:?}",
            show(&out)
        );
        let again = harden(&out, &policy, HOST, NOW);
        assert_eq!(
            again,
            Outcome::Unchanged,
            "not idempotent: {:?} -> {:?}",
            show(data),
            show(&out)
        );
    }
}

fn cookie_rules() -> CookieRules {
    CookieRules {
        forward: NameSet::new(["PHPSESSID", "JSESSIONID", "lang"]),
        host_prefixed: vec!["pref".into()],
        gateway: Some("__Host-sg".into()),
        watch: NameSet::default(),
    }
}

/// Splits a `Cookie` header as the vetter does: the name of each piece.
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

fn same_decoded(a: &[u8], b: &[u8]) -> bool {
    percent_decode(a).eq_ignore_ascii_case(&percent_decode(b))
}

/// `cookie_vet`: the first byte says how many headers (1 to 3) the rest,
/// split at `\n`, makes. Only vetted names are forwarded, each at most once,
/// never the gateway's cookie, a tossed name or a bare host-prefixed name.
pub fn cookie_vet(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let headers: Vec<&[u8]> = rest
        .splitn(usize::from(n % 3) + 1, |&b| b == b'\n')
        .collect();
    let rules = cookie_rules();
    let v = rules.vet(&headers);
    let sent: &[u8] = if v.unchanged {
        assert_eq!(headers.len(), 1);
        assert!(v.header.is_empty() && v.dropped == 0 && v.tossed.is_empty());
        headers[0]
    } else {
        &v.header
    };
    let mut allowed = rules.forward.clone();
    for h in &rules.host_prefixed {
        allowed.push(h);
    }
    let gateway = NameSet::new(rules.gateway.iter());
    let names = cookie_names(sent);
    for (i, &name) in names.iter().enumerate() {
        let s = || format!("{:?} in {:?} from {:?}", show(name), show(sent), headers);
        assert!(allowed.matches(name), "not vetted: {}", s());
        assert!(!gateway.matches(name), "gateway cookie: {}", s());
        assert!(!starts_with_ci(name, b"__host-"), "prefix kept: {}", s());
        assert!(
            !v.tossed.iter().any(|t| same_decoded(t, name)),
            "tossed: {}",
            s()
        );
        assert!(
            !names[..i].iter().any(|m| same_decoded(m, name)),
            "twice: {}",
            s()
        );
    }
    for h in &rules.host_prefixed {
        if names.iter().any(|n| same_decoded(n, h.as_bytes())) {
            let prefixed = headers
                .iter()
                .flat_map(|x| cookie_names(x))
                .any(|n| starts_with_ci(n, b"__host-") && same_decoded(&n[7..], h.as_bytes()));
            assert!(prefixed, "bare {h} forwarded: {:?}", show(sent));
        }
    }
}

fn url_names() -> NameSet {
    NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "ASPSESSIONID*"])
}

/// The name of every `;` path parameter and query parameter.
fn param_names(pq: &str) -> Vec<&str> {
    let before_frag = pq.split('#').next().unwrap_or("");
    let (path, query) = match before_frag.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_frag, None),
    };
    let mut params = Vec::new();
    for seg in path.split('/') {
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
            if sep == 0 {
                i += 1;
                continue;
            }
            if let Some(s) = start {
                params.push(&seg[s..i]);
            }
            start = Some(i + sep);
            i += sep;
        }
        if let Some(s) = start {
            params.push(&seg[s..]);
        }
    }
    if let Some(q) = query {
        params.extend(q.split(['&', ';']));
    }
    params
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

/// `url_strip`: stripping twice finds nothing the second time, and no
/// configured name is left as a parameter.
pub fn url_strip(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let names = url_names();
    let once = strip(s, &names);
    if let Some(out) = &once {
        assert_eq!(strip(out, &names), None, "{s:?} -> {out:?}");
        assert!(out.len() < s.len(), "{s:?} -> {out:?}");
    }
    let clean = once.as_deref().unwrap_or(s);
    for n in param_names(clean) {
        assert!(
            !names.matches(n.as_bytes()),
            "{n:?} kept in {clean:?} from {s:?}"
        );
    }
    if let Some(out) = strip_in_url(s, &names) {
        assert_eq!(strip_in_url(&out, &names), None, "{s:?} -> {out:?}");
    }
}
