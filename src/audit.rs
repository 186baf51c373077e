//! Audit records and counters.
//!
//! An audit record is one structured log line (target `audit`) for each
//! security-relevant action, with a stable event name, the site and the
//! client address. It never holds a cookie value or token: where two records
//! must be correlated, it carries a keyed hash whose key lives only in this
//! process. Routine work (a cookie hardened) is a counter, not a record.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::hmac;

fn key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let bytes: [u8; 32] = rand::random();
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

/// A keyed hash of a secret, 16 hex digits: equal inputs give equal
/// fingerprints within this process, and nothing outside it can invert or
/// recompute them.
pub fn fingerprint(secret: &[u8]) -> String {
    let tag = hmac::sign(key(), secret);
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Emits one audit record. `detail` must hold no secret: names, reasons,
/// counts and fingerprints only.
pub fn event(name: &'static str, site: &str, client: IpAddr, detail: &str) {
    tracing::info!(target: "audit", event = name, site, client = %client, detail, "audit");
}

/// Counters of routine policy work.
#[derive(Debug, Default)]
pub struct Counters {
    pub set_cookie_hardened: AtomicU64,
    pub set_cookie_dropped: AtomicU64,
    pub request_cookies_dropped: AtomicU64,
    pub url_session_ids_removed: AtomicU64,
    /// Malformed lines removed from upstream response heads, or repaired.
    pub malformed_upstream_header_lines: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    set_cookie_hardened: AtomicU64::new(0),
    set_cookie_dropped: AtomicU64::new(0),
    request_cookies_dropped: AtomicU64::new(0),
    url_session_ids_removed: AtomicU64::new(0),
    malformed_upstream_header_lines: AtomicU64::new(0),
};

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Logs every counter in one line (at shutdown).
    pub fn log(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        tracing::info!(
            set_cookie_hardened = get(&self.set_cookie_hardened),
            set_cookie_dropped = get(&self.set_cookie_dropped),
            request_cookies_dropped = get(&self.request_cookies_dropped),
            url_session_ids_removed = get(&self.url_session_ids_removed),
            malformed_upstream_header_lines = get(&self.malformed_upstream_header_lines),
            "policy counters"
        );
    }
}
