//! Inputs found while reviewing the policy functions as an attacker would,
//! where the gateway and the app behind it disagree about a name. Each test
//! states what must hold (each failed before the fix in src/policy/names.rs
//! and src/policy/cookie.rs that made them pass).
//!
//! PHP reference (main/php_variables.c): query names are URL-decoded with
//! `+` as a space; leading spaces are skipped, the name ends at a NUL byte or
//! at `[`. Cookie names were decoded the same way before PHP 7.4.31/8.0.24.

use sessiongate::policy::cookie::CookieRules;
use sessiongate::policy::names::NameSet;
use sessiongate::policy::set_cookie::{CookiePolicy, Outcome, Override, SameSite, harden};
use sessiongate::policy::url::strip;

fn url_names() -> NameSet {
    NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "session_id"])
}

#[test]
fn url_names_php_reads_are_stripped() {
    for url in [
        "/a?+PHPSESSID=attacker",       // `+` is a space, leading spaces skipped
        "/a?PHPSESSID%00junk=attacker", // the name ends at the NUL
        "/a?session.id=attacker",       // `.` becomes `_`
        "/a?session+id=attacker",       // ` ` becomes `_`
        "/a?session[id=attacker",       // an unclosed `[` becomes `_`
        "/a?PHPSESSID[%3D]=attacker",   // an array to PHP; cut at `[`, it is PHPSESSID
        "/a?PHPSESSID[x]=attacker",
    ] {
        assert_eq!(strip(url, &url_names()).as_deref(), Some("/a"), "{url}");
    }
    // Split at `;` (some apps do), the piece that names the ID goes.
    assert_eq!(
        strip("/a?PHPSESSID[;]=attacker", &url_names()).as_deref(),
        Some("/a?]=attacker")
    );
}

fn rules() -> CookieRules {
    CookieRules {
        forward: NameSet::new(["PHPSESSID", "lang", "pref"]),
        host_prefixed: vec!["pref".into()],
        gateway: Some("__Host-sg".into()),
        watch: NameSet::default(),
    }
}

#[test]
fn every_spelling_of_a_vetted_name_counts_as_a_duplicate() {
    // Each pair passes the forward list twice, is not seen as tossing, and
    // reaches the app as two PHPSESSID cookies (PHP keeps the first).
    for h in [
        "%20PHPSESSID=attacker; PHPSESSID=victim",
        "PHPSESSID%00=attacker; PHPSESSID=victim",
        "PHPSESSID[x]=attacker; PHPSESSID=victim",
    ] {
        let hs: [&[u8]; 1] = [h.as_bytes()];
        let v = rules().vet(&hs);
        assert!(!v.unchanged && !v.tossed.is_empty(), "{h}");
    }
}

#[test]
fn a_host_prefixed_name_never_passes_bare() {
    for h in ["%20pref=attacker", "pref%00=attacker", "pref[]=attacker"] {
        let hs: [&[u8]; 1] = [h.as_bytes()];
        let v = rules().vet(&hs);
        assert!(!v.unchanged && v.header.is_empty(), "{h} forwarded");
    }
}

#[test]
fn host_prefixing_never_makes_a_cookie_browsers_refuse() {
    let policy = CookiePolicy {
        same_site: SameSite::Lax,
        max_lifetime: Some(86_400),
        script_readable: NameSet::default(),
        session_cookies: NameSet::default(),
        allow_domains: Vec::new(),
        overrides: vec![Override {
            name: "pref".into(),
            same_site: None,
            host_prefix: true,
        }],
    };
    let line = format!("pref={}", "v".repeat(4090));
    if let Outcome::Rewritten(out) = harden(line.as_bytes(), &policy, "app.test", 0) {
        assert_ne!(
            harden(&out, &policy, "app.test", 0),
            Outcome::Dropped(sessiongate::policy::set_cookie::Refused::Invalid),
            "the rewritten cookie is over 4096 bytes of name and value"
        );
    }
}
