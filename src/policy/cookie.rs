//! Request cookies: only vetted names reach the app.
//!
//! Names are compared the way the app reads them (as PHP reads them, and
//! without regard to case, as servlet and ASP.NET cookie collections do; see
//! `names`), so `PHPSESS%49D` is `PHPSESSID` and `sess[id` is `sess_id`. A
//! name that an app may read two ways (decoded or as sent: PHP changed in
//! 7.4.11) is never forwarded. A vetted name that arrives twice is a sign of
//! cookie tossing (a sibling subdomain planting a second cookie of the same
//! name): none of its values is forwarded. The gateway's own cookie never
//! reaches the app.

use super::names::{NameSet, canonical, one_reading, same_name};
use super::trim_ows as trim;

/// What the vetter needs to know about a site.
#[derive(Debug, Clone)]
pub struct CookieRules {
    /// Names forwarded to the app.
    pub forward: NameSet,
    /// App cookies the browser holds as `__Host-NAME`: forwarded as `NAME`,
    /// and a bare `NAME` is never forwarded.
    pub host_prefixed: Vec<String>,
    /// The gateway's own cookie name, if it has one.
    pub gateway: Option<String>,
    /// Names that are dropped and counted in `watched` (vaulted names: a
    /// client that sends one is trying to plant a backend session).
    pub watch: NameSet,
}

/// The result of vetting a request's cookies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Vetted<'a> {
    /// The `Cookie` header for the app, pieces joined with `; `; empty when
    /// nothing is forwarded, or when `unchanged`.
    pub header: Vec<u8>,
    /// True when the client's single `Cookie` header passes as it is.
    pub unchanged: bool,
    /// Values the client sent under the gateway's cookie name.
    pub gateway_values: Vec<&'a [u8]>,
    /// Names (as sent) of vetted cookies that arrived more than once.
    pub tossed: Vec<&'a [u8]>,
    /// How many cookies were not forwarded.
    pub dropped: usize,
    /// How many of those carried a watched name.
    pub watched: usize,
}

#[derive(Clone, Copy)]
struct Piece<'a> {
    raw: &'a [u8],
    name: &'a [u8],
    value: &'a [u8],
}

fn pieces<'a, I: Iterator<Item = &'a [u8]>>(headers: I) -> impl Iterator<Item = Piece<'a>> {
    headers
        .flat_map(|h| h.split(|&b| b == b';'))
        .filter_map(|raw| {
            let raw = trim(raw);
            if raw.is_empty() {
                return None;
            }
            Some(match raw.iter().position(|&b| b == b'=') {
                // The name keeps any spaces before the `=`: PHP reads
                // `lang =x` as `lang_` (checked against PHP 8.2). Such a
                // piece still counts for duplicates, and is not forwarded
                // (`smuggles_a_cookie`).
                Some(eq) => Piece {
                    raw,
                    name: &raw[..eq],
                    value: trim(&raw[eq + 1..]),
                },
                None => Piece {
                    raw,
                    name: &raw[..0],
                    value: raw,
                },
            })
        })
}

fn strip_host_prefix(name: &[u8]) -> Option<&[u8]> {
    // Exactly as the gateway writes it: a browser may apply the `__Host-`
    // rules to this spelling only (RFC 6265 era browsers compare it case
    // sensitively), so `__host-pref` could come from a sibling host.
    name.strip_prefix(b"__Host-")
        .filter(|bare| !bare.is_empty())
}

/// A piece that holds a second `name=value` after a comma or whitespace:
/// parsers that still split cookies on commas (RFC 2109, Tomcat's legacy
/// processor) or on whitespace (Python's `SimpleCookie`: `c=x PHPSESSID=y`
/// is two cookies to it) would read a cookie the vetter never saw. Neither
/// is a cookie-octet (RFC 6265 §4.1.1), so such a piece is dropped, in its
/// name as in its value, quoted or not: the legacy processor carries quote
/// state across `;`, so one piece's quotes say nothing about the next.
fn smuggles_a_cookie(raw: &[u8]) -> bool {
    let split = raw.iter().position(|&b| matches!(b, b',' | b' ' | b'\t'));
    let last_eq = raw.iter().rposition(|&b| b == b'=');
    matches!((split, last_eq), (Some(s), Some(e)) if s < e)
}

/// Requests rarely carry more cookies than this; up to it, duplicates are
/// found by comparing pairs with no allocation, past it by sorting.
const PAIRWISE_MAX: usize = 32;

impl CookieRules {
    fn is_gateway(&self, name: &[u8]) -> bool {
        self.gateway
            .as_ref()
            .is_some_and(|g| same_name(name, g.as_bytes()))
    }

    fn is_host_prefixed(&self, bare: &[u8]) -> bool {
        self.host_prefixed
            .iter()
            .any(|h| same_name(bare, h.as_bytes()))
    }

    /// The name the app will see for a piece, or `None` if it is not
    /// forwarded.
    fn app_name<'a>(&self, name: &'a [u8]) -> Option<&'a [u8]> {
        // A nameless cookie (`Cookie: abc`, from `Set-Cookie: abc`) is
        // never forwarded: PHP reads its value as a name (`abc` is
        // `$_COOKIE['abc']`), which the vetter would not have vetted.
        if name.is_empty() || self.is_gateway(name) {
            return None;
        }
        if let Some(bare) = strip_host_prefix(name)
            && self.is_host_prefixed(bare)
        {
            return Some(bare);
        }
        if self.is_host_prefixed(name) {
            // Only the browser's `__Host-` copy is trusted.
            return None;
        }
        // A vaulted name never passes, whatever the forward list says: the
        // vault injects it, and a client's copy would choose the session.
        (self.forward.admits(name) && !self.watch.matches(name)).then_some(name)
    }

    fn classify<'a>(&self, p: &Piece<'a>) -> Class<'a> {
        if self.is_gateway(p.name) {
            // Only the exact name is the gateway's token: a browser applies
            // the `__Host-` rules to that spelling only, so another one
            // that reads the same (`__Host%2Dsg`, `__host-sg`) may have
            // been planted by a sibling host (cookie tossing).
            let exact = self.gateway.as_deref().map(str::as_bytes) == Some(p.name);
            return if exact {
                Class::Gateway
            } else {
                Class::Tossed(p.name)
            };
        }
        match self.app_name(p.name) {
            Some(_) if smuggles_a_cookie(p.raw) => Class::Dropped,
            Some(name) => Class::Forward(name),
            None => Class::Dropped,
        }
    }

    /// Vets every `Cookie` header of a request (HTTP/2 sends several).
    /// The headers are split once. When the request has one header and
    /// every cookie in it passes as sent, nothing is allocated and
    /// `unchanged` is set. Work is at most O(n log n) in the number of
    /// cookies, whatever their spelling.
    pub fn vet<'a>(&self, headers: &[&'a [u8]]) -> Vetted<'a> {
        const NONE: (Piece<'static>, Class<'static>) = (
            Piece {
                raw: &[],
                name: &[],
                value: &[],
            },
            Class::Dropped,
        );
        let mut small = [NONE; PAIRWISE_MAX];
        let mut large = Vec::new();
        let mut n = 0;
        for p in pieces(headers.iter().copied()) {
            let item = (p, self.classify(&p));
            if n < PAIRWISE_MAX {
                small[n] = item;
            } else {
                if large.is_empty() {
                    large.extend_from_slice(&small);
                }
                large.push(item);
            }
            n += 1;
        }
        let items: &mut [(Piece<'a>, Class<'a>)] = if n <= PAIRWISE_MAX {
            &mut small[..n]
        } else {
            &mut large
        };
        mark_duplicates(items);
        for (p, class) in items.iter_mut() {
            // Counted for duplicates above in its decoded reading, but not
            // forwarded when the app might read it otherwise.
            if matches!(class, Class::Forward(_)) && !one_reading(p.name) {
                *class = Class::Dropped;
            }
        }

        let mut v = Vetted::default();
        let mut renamed = false;
        for (p, class) in items.iter() {
            match *class {
                Class::Gateway => {
                    v.gateway_values.push(p.value);
                    v.dropped += 1;
                }
                Class::Dropped => {
                    v.dropped += 1;
                    if self.watch.matches(p.name) {
                        v.watched += 1;
                    }
                }
                Class::Tossed(name) => {
                    if !v.tossed.iter().any(|t| same_name(t, name)) {
                        v.tossed.push(name);
                    }
                    v.dropped += 1;
                }
                Class::Forward(name) => renamed |= name.len() != p.name.len(),
            }
        }
        if headers.len() == 1 && v.dropped == 0 && !renamed {
            v.unchanged = true;
            return v;
        }
        for (p, class) in items.iter() {
            let Class::Forward(app_name) = *class else {
                continue;
            };
            if !v.header.is_empty() {
                v.header.extend_from_slice(b"; ");
            }
            if app_name.len() != p.name.len() {
                // `__Host-NAME=v` reaches the app as `NAME=v`.
                v.header.extend_from_slice(app_name);
                v.header.push(b'=');
                v.header.extend_from_slice(p.value);
            } else {
                v.header.extend_from_slice(p.raw);
            }
        }
        v
    }
}

/// Turns every forwarded name that occurs more than once (in the app's
/// reading of names) into `Tossed`.
fn mark_duplicates<'a>(items: &mut [(Piece<'a>, Class<'a>)]) {
    fn name<'a>(item: &(Piece<'a>, Class<'a>)) -> Option<&'a [u8]> {
        match item.1 {
            Class::Forward(n) => Some(n),
            _ => None,
        }
    }
    fn toss(item: &mut (Piece<'_>, Class<'_>)) {
        if let Class::Forward(n) = item.1 {
            item.1 = Class::Tossed(n);
        }
    }
    if items.len() <= PAIRWISE_MAX {
        let mut dup = [false; PAIRWISE_MAX];
        for i in 0..items.len() {
            let Some(a) = name(&items[i]) else { continue };
            for j in i + 1..items.len() {
                if name(&items[j]).is_some_and(|b| same_name(a, b)) {
                    dup[i] = true;
                    dup[j] = true;
                }
            }
        }
        for (item, d) in items.iter_mut().zip(dup) {
            if d {
                toss(item);
            }
        }
        return;
    }
    let mut keyed: Vec<(Vec<u8>, usize)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, c)| name(c).map(|n| (canonical(n).collect(), i)))
        .collect();
    keyed.sort_unstable();
    for w in 0..keyed.len() {
        let same_prev = w > 0 && keyed[w - 1].0 == keyed[w].0;
        let same_next = w + 1 < keyed.len() && keyed[w + 1].0 == keyed[w].0;
        if same_prev || same_next {
            toss(&mut items[keyed[w].1]);
        }
    }
}

#[derive(Clone, Copy)]
enum Class<'a> {
    Gateway,
    Dropped,
    Tossed(&'a [u8]),
    Forward(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CookieRules {
        CookieRules {
            forward: NameSet::new(["PHPSESSID", "lang", "pref"]),
            host_prefixed: vec!["pref".into()],
            gateway: Some("__Host-sg".into()),
            watch: NameSet::default(),
        }
    }

    fn vet(headers: &[&str]) -> (String, Vec<String>, Vec<String>, usize) {
        let hs: Vec<&[u8]> = headers.iter().map(|h| h.as_bytes()).collect();
        let v = rules().vet(&hs);
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let header = if v.unchanged {
            s(super::trim(hs[0]))
        } else {
            s(&v.header)
        };
        (
            header,
            v.gateway_values.iter().map(|g| s(g)).collect(),
            v.tossed.iter().map(|t| s(t)).collect(),
            v.dropped,
        )
    }

    #[test]
    fn forwarding_every_name_keeps_the_vetting() {
        // `forward = ["*"]`: what is vaulted, the gateway's own cookie, a
        // nameless cookie, a tossed name and a smuggled one still stay out.
        let rules = CookieRules {
            forward: NameSet::new(["*"]),
            host_prefixed: vec![],
            gateway: Some("__Host-sg".into()),
            watch: NameSet::new(["PHPSESSID"]),
        };
        let h: &[u8] = b"a=1; PHPSESSID=x; phpsessid=y; __Host-sg=t; PHPSESSID; =v; \
            b=2; b=3; c=4, d=5; e=f=g; PHP.SESSID=z";
        let v = rules.vet(&[h]);
        assert_eq!(
            String::from_utf8_lossy(&v.header),
            "a=1; e=f=g; PHP.SESSID=z"
        );
        assert_eq!(v.gateway_values, [&b"t"[..]]);
        assert_eq!(v.tossed, [&b"b"[..]]);
        assert_eq!(v.watched, 2);
    }

    #[test]
    fn table() {
        type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], "", &[], &[]),
            (&["PHPSESSID=abc"], "PHPSESSID=abc", &[], &[]),
            (
                &["PHPSESSID=abc; tracking=1; lang=en"],
                "PHPSESSID=abc; lang=en",
                &[],
                &[],
            ),
            // HTTP/2 splits cookies into several fields: joined for the app.
            (
                &["PHPSESSID=abc", "lang=en"],
                "PHPSESSID=abc; lang=en",
                &[],
                &[],
            ),
            // The gateway's cookie never reaches the app; its values are kept.
            (&["__Host-sg=tok; lang=en"], "lang=en", &["tok"], &[]),
            // Only the exact name is the token: another spelling that
            // reads the same may come from a sibling host, which a browser
            // lets set `__host-sg` or `__Host%2Dsg` but not `__Host-sg`.
            (&["__Host-sg=t1; __host-sg=t2"], "", &["t1"], &["__host-sg"]),
            (
                &["__Host%2Dsg=t3; %5F%5FHost-sg=t4; __HOST-SG=t5"],
                "",
                &[],
                // Reported once: the spellings read as one name.
                &["__Host%2Dsg"],
            ),
            // Tossing: a vetted name twice, in any spelling the app merges.
            (
                &["PHPSESSID=victim; PHPSESSID=attacker"],
                "",
                &[],
                &["PHPSESSID"],
            ),
            (
                &["PHPSESSID=a", "phpsessid=b; lang=en"],
                "lang=en",
                &[],
                &["PHPSESSID"],
            ),
            (&["PHPSESS%49D=a; PHPSESSID=b"], "", &[], &["PHPSESS%49D"]),
            // A lone encoded name: PHP before 7.4.11 reads `PHPSESSID`, PHP
            // since then `PHPSESS%49D`. One name or the other, it is not
            // forwarded.
            (&["PHPSESS%49D=a"], "", &[], &[]),
            (&["lang=en; PHPSESS%49D=a"], "lang=en", &[], &[]),
            // A name that is a prefix of a vetted one is not vetted.
            (&["PHPSESSI=x; PHPSESSIDX=y"], "", &[], &[]),
            // Host-prefixed app cookies: the `__Host-` copy wins, bare never passes.
            (&["__Host-pref=dark; pref=light"], "pref=dark", &[], &[]),
            // The browser's prefix rules hold for the exact spelling only.
            (&["__host-pref=dark; __HOST-pref=x"], "", &[], &[]),
            (&["pref=light"], "", &[], &[]),
            // Nameless and empty pieces.
            (&["justvalue; ; lang=en;"], "lang=en", &[], &[]),
            // Every spelling the app merges is the same name.
            (
                &["%20PHPSESSID=a; PHPSESSID=b; lang=en"],
                "lang=en",
                &[],
                &["%20PHPSESSID"],
            ),
            (&["PHPSESSID%00=a; PHPSESSID=b"], "", &[], &["PHPSESSID%00"]),
            (&["PHPSESSID[x]=a; PHPSESSID=b"], "", &[], &["PHPSESSID[x]"]),
            (&["pref[]=x; %20pref=y"], "", &[], &[]),
            // A second cookie smuggled after a comma is not forwarded.
            (
                &["lang=en,JSESSIONID=evil; PHPSESSID=a"],
                "PHPSESSID=a",
                &[],
                &[],
            ),
            // Quoted values and odd bytes pass unchanged, but quotes do not
            // hide a comma or a space before a second `=`: Tomcat's legacy
            // processor carries quote state across `;`, so
            // `a="x; c=", JSESSIONID=evil` is JSESSIONID to it.
            (&["lang=\"en us\""], "lang=\"en us\"", &[], &[]),
            (&["lang=\"en, x=y\""], "", &[], &[]),
            (
                &["lang=\"x; PHPSESSID=\", JSESSIONID=evil, d=\""],
                "lang=\"x",
                &[],
                &[],
            ),
            // Python's SimpleCookie splits on whitespace.
            (&["lang=x PHPSESSID=evil; pref=1"], "", &[], &[]),
            (&["lang=x\tPHPSESSID=evil"], "", &[], &[]),
            // A name with a comma or a space before its `=` is not sent on.
            (&["lang, PHPSESSID=evil"], "", &[], &[]),
            (&["lang =en"], "", &[], &[]),
            (&["lang=a=b"], "lang=a=b", &[], &[]),
        ];
        for (headers, want, gw, tossed) in cases {
            let (h, g, t, _) = vet(headers);
            assert_eq!(h, *want, "{headers:?}");
            assert_eq!(g, *gw, "{headers:?}");
            assert_eq!(t, *tossed, "{headers:?}");
        }
    }

    #[test]
    fn a_single_clean_header_is_reused() {
        let h: [&[u8]; 1] = [b"PHPSESSID=abc; lang=en"];
        assert!(rules().vet(&h).unchanged);
        let h: [&[u8]; 1] = [b"PHPSESSID=abc; x=1"];
        assert!(!rules().vet(&h).unchanged);
    }

    #[test]
    fn thousands_of_spellings_are_cheap_and_all_tossed() {
        let header: String = (0..3000)
            .map(|i| format!("PHPSESSID%5B{i}%5D=x; "))
            .collect();
        // (benches/policy.rs measures this case; here: all caught as one.)
        let (h, _, tossed, dropped) = vet(&[&header]);
        assert_eq!((h.as_str(), dropped), ("", 3000));
        assert_eq!(tossed.len(), 1);
    }

    #[test]
    fn an_unclosed_bracket_cannot_plant_a_vaulted_name() {
        // PHP reads `sess[id` as `sess_id`: forwarding it because it starts
        // like the forwarded `sess` would set the app's session cookie.
        let rules = CookieRules {
            forward: NameSet::new(["sess", "cart"]),
            host_prefixed: Vec::new(),
            gateway: Some("__Host-sg".into()),
            watch: NameSet::new(["sess_id"]),
        };
        let h: [&[u8]; 1] = [b"sess[id=evil; sess%5Bid=evil; sess=ok; cart[1]=x"];
        let v = rules.vet(&h);
        assert_eq!(v.header, b"sess=ok; cart[1]=x");
        assert_eq!((v.dropped, v.watched), (2, 2));
        // Decoded, `sess_id[%00]` is `sess_id_` (forwarded here); as sent,
        // which is how PHP 8 reads cookie names, it is the array `sess_id`,
        // the vaulted name. Neither reading is guessed.
        let rules = CookieRules {
            forward: NameSet::new(["sess_id_"]),
            ..rules
        };
        let h: [&[u8]; 1] = [b"sess_id[%00]=evil; lang=en"];
        let v = rules.vet(&h);
        assert_eq!((v.header.as_slice(), v.dropped), (&b""[..], 2));
        // Cut at its `[`, as some readers do, `sess_id[` is the vaulted
        // name: it does not pass either.
        let h: [&[u8]; 1] = [b"sess_id[=x"];
        assert_eq!(rules.vet(&h).watched, 1);
        // `sess_id =x` is `sess_id_` to PHP, not the forwarded `sess_id`.
        let rules = CookieRules {
            forward: NameSet::new(["sess_id"]),
            watch: NameSet::new(["sess_id_"]),
            ..rules
        };
        let h: [&[u8]; 1] = [b"sess_id =evil; sess_id=ok"];
        let v = rules.vet(&h);
        assert_eq!((v.header.as_slice(), v.watched), (&b"sess_id=ok"[..], 1));
    }

    #[test]
    fn a_vaulted_name_is_not_forwarded_even_when_listed() {
        let rules = CookieRules {
            forward: NameSet::new(["PHP*", "lang"]),
            host_prefixed: Vec::new(),
            gateway: Some("__Host-sg".into()),
            watch: NameSet::new(["PHPSESSID"]),
        };
        let h: [&[u8]; 1] = [b"PHPSESSID=evil; PHPPREF=1; lang=en"];
        let v = rules.vet(&h);
        assert_eq!(v.header, b"PHPPREF=1; lang=en");
        assert_eq!((v.dropped, v.watched), (1, 1));
    }

    #[test]
    fn order_and_duplicates_hold_either_side_of_the_pairwise_bound() {
        for fill in [29, 30, 31, 32, 62] {
            let middle: String = (0..fill).map(|i| format!("c{i}=v; ")).collect();
            let kept = format!("lang=en; {middle}PHPSESSID=abc");
            let (h, _, tossed, dropped) = vet(&[&kept]);
            assert_eq!(
                (h.as_str(), dropped),
                ("lang=en; PHPSESSID=abc", fill),
                "{fill}"
            );
            assert!(tossed.is_empty());
            let twice = format!("lang=en; {middle}LANG=fr; PHPSESSID=abc");
            let (h, _, tossed, dropped) = vet(&[&twice]);
            assert_eq!((h.as_str(), dropped), ("PHPSESSID=abc", fill + 2), "{fill}");
            assert_eq!(tossed, ["lang"]);
        }
    }

    #[test]
    fn a_hundred_cookies() {
        let mut header = String::new();
        for i in 0..100 {
            header.push_str(&format!("c{i}=v{i}; "));
        }
        header.push_str("lang=en");
        let (h, _, _, dropped) = vet(&[&header]);
        assert_eq!(h, "lang=en");
        assert_eq!(dropped, 100);
    }
}
