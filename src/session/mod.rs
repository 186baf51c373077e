//! Sessions: the gateway's token, the vault of backend cookies, the stores.
//!
//! The browser holds only the gateway's token. Each token maps to a session
//! that keeps the cookies the app set under its session cookie names; the
//! gateway injects them into requests and never lets them reach the
//! browser. Sessions are keyed internally by an id of their own, so a
//! re-key swaps the token and never moves the vault.

pub mod limiter;
mod memory;
pub mod rules;
pub mod token;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

pub use memory::MemoryStore;
use token::{Token, TokenHash, TokenKey};

/// A backend cookie held for a session.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultCookie {
    pub name: Box<[u8]>,
    pub value: Box<[u8]>,
    pub path: Box<[u8]>,
    /// Its own `Max-Age`/`Expires`, if it has one.
    pub expires: Option<Instant>,
}

impl std::fmt::Debug for VaultCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultCookie")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("value", &"<redacted>")
            .field("path", &String::from_utf8_lossy(&self.path))
            .finish()
    }
}

/// A site's session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    /// From creation; a re-key does not reset it.
    pub absolute: Duration,
    /// The cap for sessions that never logged in.
    pub anonymous: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Absolute,
    Anonymous,
}

impl Expiry {
    pub fn event(self) -> &'static str {
        match self {
            Expiry::Idle => "session_expired_idle",
            Expiry::Absolute => "session_expired_absolute",
            Expiry::Anonymous => "session_expired_anonymous",
        }
    }
}

#[derive(Debug)]
pub enum Lookup {
    Live {
        id: u64,
        authenticated: bool,
        in_login: bool,
    },
    /// The token was replaced by a re-key moments ago.
    Tombstone,
    /// The session existed and has just been destroyed for its age.
    Expired(Expiry),
    Unknown,
}

pub struct Created {
    pub id: u64,
    pub token: Token,
    /// Sessions evicted to make room: (site, token hash).
    pub evicted: Vec<(u16, TokenKey)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Bind {
    Stored,
    /// Another live session holds this value; neither keeps it.
    Conflict {
        other: u64,
    },
    Gone,
    /// Too large for the vault, or the session's vault is full: not stored.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session store is full of authenticated sessions")]
    Full,
}

/// What every store does. Async so that a store shared by several gateways
/// (Redis) fits the same shape; re-key and bind are atomic in each store.
/// Removing expired sessions is each store's own business: the memory store
/// is swept by the gateway on a blocking thread (`MemoryStore::sweep`), a
/// shared store would expire its keys itself.
pub trait SessionStore: Send + Sync + 'static {
    fn create(
        &self,
        site: usize,
        now: Instant,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send;
    /// Resolves a token for a site, touching a live session.
    fn get(
        &self,
        site: usize,
        token: &TokenHash,
        now: Instant,
    ) -> impl Future<Output = Lookup> + Send;
    /// Appends the session's cookies for `path` to a `Cookie` header.
    fn inject(
        &self,
        id: u64,
        path: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> impl Future<Output = ()> + Send;
    /// Stores a backend cookie; with `unique`, a value another live session
    /// holds is kept by neither (one backend session, one gateway session).
    fn bind(&self, id: u64, cookie: VaultCookie, unique: bool)
    -> impl Future<Output = Bind> + Send;
    fn unbind(&self, id: u64, name: &[u8], path: &[u8]) -> impl Future<Output = ()> + Send;
    fn begin_login(&self, id: u64) -> impl Future<Output = ()> + Send;
    fn end_login(&self, id: u64) -> impl Future<Output = ()> + Send;
    /// Marks a login; with `rekey`, replaces the token atomically and leaves
    /// a tombstone. Returns the new token (if re-keyed) and the old hash.
    fn rekey(
        &self,
        id: u64,
        rekey: bool,
        now: Instant,
    ) -> impl Future<Output = Option<(Option<Token>, TokenKey)>> + Send;
    /// Replaces the token, if it is still `expected`; `None` if another
    /// request re-keyed (or ended) the session first.
    fn rekey_from(
        &self,
        id: u64,
        expected: TokenKey,
        now: Instant,
    ) -> impl Future<Output = Option<Token>> + Send;
    fn remove(&self, id: u64) -> impl Future<Output = Option<TokenKey>> + Send;
}

impl SessionStore for MemoryStore {
    async fn create(&self, site: usize, now: Instant) -> Result<Created, StoreError> {
        MemoryStore::create(self, site, now)
    }
    async fn get(&self, site: usize, token: &TokenHash, now: Instant) -> Lookup {
        self.resolve(site, token, now)
    }
    async fn inject(&self, id: u64, path: &str, now: Instant, out: &mut Vec<u8>) {
        MemoryStore::inject(self, id, path, now, out)
    }
    async fn bind(&self, id: u64, cookie: VaultCookie, unique: bool) -> Bind {
        MemoryStore::bind(self, id, cookie, unique)
    }
    async fn unbind(&self, id: u64, name: &[u8], path: &[u8]) {
        MemoryStore::unbind(self, id, name, path)
    }
    async fn begin_login(&self, id: u64) {
        MemoryStore::begin_login(self, id)
    }
    async fn end_login(&self, id: u64) {
        MemoryStore::end_login(self, id)
    }
    async fn rekey(&self, id: u64, rekey: bool, now: Instant) -> Option<(Option<Token>, TokenKey)> {
        self.login(id, rekey, now)
    }
    async fn rekey_from(&self, id: u64, expected: TokenKey, now: Instant) -> Option<Token> {
        MemoryStore::rekey_from(self, id, expected, now)
    }
    async fn remove(&self, id: u64) -> Option<TokenKey> {
        MemoryStore::remove(self, id)
    }
}

/// RFC 6265 §5.1.4 path-match.
pub fn path_matches(request: &[u8], cookie: &[u8]) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with(b"/") || request.get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4 default-path: the request path up to its last `/`.
pub fn default_path(request_path: &[u8]) -> &[u8] {
    if !request_path.starts_with(b"/") {
        return b"/";
    }
    match request_path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &request_path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: usize) -> MemoryStore {
        let t = Timeouts {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
            anonymous: Duration::from_secs(300),
        };
        MemoryStore::new(vec![t, t], max, Duration::from_secs(30))
    }

    fn cookie(name: &str, value: &str, path: &str) -> VaultCookie {
        VaultCookie {
            name: name.as_bytes().into(),
            value: value.as_bytes().into(),
            path: path.as_bytes().into(),
            expires: None,
        }
    }

    fn injected(s: &MemoryStore, id: u64, path: &str) -> String {
        let mut out = Vec::new();
        s.inject(id, path, Instant::now(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_absolute_timeouts() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        let h = c.token.hash();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(
            s.resolve(0, &h, Instant::now()),
            Lookup::Live { .. }
        ));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            matches!(s.resolve(0, &h, Instant::now()), Lookup::Live { .. }),
            "touched, so not idle"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(
            s.resolve(0, &h, Instant::now()),
            Lookup::Expired(Expiry::Idle)
        ));
        assert!(matches!(s.resolve(0, &h, Instant::now()), Lookup::Unknown));

        // Anonymous sessions have their own cap; logging in lifts it, the
        // absolute lifetime stays and is not reset by the re-key.
        let c = s.create(0, Instant::now()).unwrap();
        let mut h = c.token.hash();
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(55)).await;
            assert!(matches!(
                s.resolve(0, &h, Instant::now()),
                Lookup::Live { .. }
            ));
        }
        tokio::time::advance(Duration::from_secs(55)).await;
        assert!(matches!(
            s.resolve(0, &h, Instant::now()),
            Lookup::Expired(Expiry::Anonymous)
        ));
        let c = s.create(0, Instant::now()).unwrap();
        let (new, _) = s.login(c.id, true, Instant::now()).unwrap();
        h = new.unwrap().hash();
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(55)).await;
            assert!(matches!(
                s.resolve(0, &h, Instant::now()),
                Lookup::Live {
                    authenticated: true,
                    ..
                }
            ));
        }
        tokio::time::advance(Duration::from_secs(55)).await;
        assert!(matches!(
            s.resolve(0, &h, Instant::now()),
            Lookup::Expired(Expiry::Absolute)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn rekey_leaves_a_tombstone_that_grants_nothing_then_fades() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        let old = c.token.hash();
        s.bind(c.id, cookie("PHPSESSID", "v1", "/"), true);
        let (new, was) = s.login(c.id, true, Instant::now()).unwrap();
        assert!(was == old.key());
        let new = new.unwrap().hash();
        assert!(matches!(
            s.resolve(0, &old, Instant::now()),
            Lookup::Tombstone
        ));
        let Lookup::Live {
            id,
            authenticated: true,
            ..
        } = s.resolve(0, &new, Instant::now())
        else {
            panic!()
        };
        assert_eq!(id, c.id, "the vault did not move");
        assert_eq!(injected(&s, id, "/"), "PHPSESSID=v1");
        tokio::time::advance(Duration::from_secs(31)).await;
        s.sweep(Instant::now());
        assert!(matches!(
            s.resolve(0, &old, Instant::now()),
            Lookup::Unknown
        ));
    }

    #[tokio::test]
    async fn a_token_is_nothing_on_another_site() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        assert!(matches!(
            s.resolve(1, &c.token.hash(), Instant::now()),
            Lookup::Unknown
        ));
    }

    #[tokio::test]
    async fn vault_paths_replacement_and_deletion() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        s.bind(c.id, cookie("SID", "root", "/"), true);
        s.bind(c.id, cookie("SID", "admin", "/admin"), true);
        assert_eq!(injected(&s, c.id, "/"), "SID=root");
        assert_eq!(injected(&s, c.id, "/admin/x"), "SID=admin; SID=root");
        assert_eq!(injected(&s, c.id, "/administrator"), "SID=root");
        // The app changes its ID: the vault follows.
        s.bind(c.id, cookie("SID", "root2", "/"), true);
        assert_eq!(injected(&s, c.id, "/"), "SID=root2");
        s.unbind(c.id, b"SID", b"/");
        assert_eq!(injected(&s, c.id, "/"), "");
        assert_eq!(injected(&s, c.id, "/admin"), "SID=admin");
    }

    #[tokio::test(start_paused = true)]
    async fn the_packed_vault_keeps_long_cookies_order_and_expiry() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        // Lengths past one varint byte (127) and past 16 KiB of the store's
        // seconds.
        let long = "v".repeat(300);
        let path = format!("/{}", "p".repeat(200));
        s.bind(c.id, cookie("A", "1", "/"), true);
        s.bind(c.id, cookie("B", &long, "/"), true);
        s.bind(c.id, cookie("C", "3", &path), true);
        assert_eq!(
            injected(&s, c.id, &path),
            format!("C=3; A=1; B={long}"),
            "longest path first, equal paths in the order stored"
        );
        // A replaced cookie keeps its place among equal paths.
        s.bind(c.id, cookie("A", "1b", "/"), true);
        assert_eq!(injected(&s, c.id, "/"), format!("A=1b; B={long}"));
        // Re-sent with a later expiry: refreshed, still there past the first.
        tokio::time::advance(Duration::from_secs(20_000)).await;
        let mut k = cookie("B", &long, "/");
        k.expires = Some(Instant::now() + Duration::from_secs(10));
        s.bind(c.id, k, true);
        let mut k = cookie("B", &long, "/");
        k.expires = Some(Instant::now() + Duration::from_secs(100));
        s.bind(c.id, k, true);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(injected(&s, c.id, "/"), format!("A=1b; B={long}"));
        tokio::time::advance(Duration::from_secs(51)).await;
        assert_eq!(injected(&s, c.id, "/"), "A=1b");
        // Over 4 KiB a cookie is not stored (browsers refuse it too), and
        // its value is not claimed in the backend index.
        let huge = "h".repeat(4100);
        assert!(matches!(
            s.bind(c.id, cookie("H", &huge, "/"), true),
            Bind::Refused
        ));
        assert_eq!(injected(&s, c.id, "/"), "A=1b");
        let other = s.create(0, Instant::now()).unwrap();
        assert!(matches!(
            s.bind(other.id, cookie("H", &"h".repeat(4000), "/"), true),
            Bind::Stored
        ));
    }

    #[tokio::test]
    async fn a_value_held_at_two_paths_stays_claimed_until_both_go() {
        let s = store(10);
        let a = s.create(0, Instant::now()).unwrap();
        let b = s.create(0, Instant::now()).unwrap();
        s.bind(a.id, cookie("SID", "v", "/"), true);
        s.bind(a.id, cookie("SID", "v", "/admin"), true);
        // One of the two goes (deleted, or replaced by another value): the
        // other still holds the value, which stays a's alone.
        s.unbind(a.id, b"SID", b"/");
        assert!(matches!(
            s.bind(b.id, cookie("SID", "v", "/"), true),
            Bind::Conflict { .. }
        ));
        let a = s.create(0, Instant::now()).unwrap();
        let c = s.create(0, Instant::now()).unwrap();
        s.bind(a.id, cookie("SID", "w", "/"), true);
        s.bind(a.id, cookie("SID", "w", "/admin"), true);
        s.bind(a.id, cookie("SID", "w2", "/"), true);
        assert!(matches!(
            s.bind(c.id, cookie("SID", "w", "/x"), true),
            Bind::Conflict { .. }
        ));
        // Once no path holds it, the value is free.
        let d = s.create(0, Instant::now()).unwrap();
        let e = s.create(0, Instant::now()).unwrap();
        s.bind(d.id, cookie("SID", "z", "/"), true);
        s.bind(d.id, cookie("SID", "z", "/admin"), true);
        s.unbind(d.id, b"SID", b"/");
        s.unbind(d.id, b"SID", b"/admin");
        assert!(matches!(
            s.bind(e.id, cookie("SID", "z", "/"), true),
            Bind::Stored
        ));
    }

    #[tokio::test]
    async fn a_sessions_vault_is_bounded() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        // A client steering the default path of a path-less cookie: one new
        // entry per path, until the bound.
        for i in 0..64 {
            let b = s.bind(
                c.id,
                cookie("SID", &format!("v{i}"), &format!("/a{i}")),
                true,
            );
            assert!(matches!(b, Bind::Stored), "cookie {i}");
        }
        let b = s.bind(c.id, cookie("SID", "v64", "/a64"), true);
        assert!(matches!(b, Bind::Refused));
        assert_eq!(injected(&s, c.id, "/a64/x"), "");
        // Replacing one that is there still works, and the refused value is
        // free for another session.
        assert!(matches!(
            s.bind(c.id, cookie("SID", "new", "/a3"), true),
            Bind::Stored
        ));
        assert_eq!(injected(&s, c.id, "/a3/x"), "SID=new");
        let other = s.create(0, Instant::now()).unwrap();
        assert!(matches!(
            s.bind(other.id, cookie("SID", "v64", "/"), true),
            Bind::Stored
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn vaulted_cookies_expire_on_their_own() {
        let s = store(10);
        let c = s.create(0, Instant::now()).unwrap();
        let mut k = cookie("SID", "v", "/");
        k.expires = Some(Instant::now() + Duration::from_secs(10));
        s.bind(c.id, k, true);
        assert_eq!(injected(&s, c.id, "/"), "SID=v");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(injected(&s, c.id, "/"), "");
    }

    #[tokio::test]
    async fn one_backend_value_one_session() {
        let s = store(10);
        let a = s.create(0, Instant::now()).unwrap();
        let b = s.create(0, Instant::now()).unwrap();
        assert_eq!(
            s.bind(a.id, cookie("PHPSESSID", "known", "/"), true),
            Bind::Stored
        );
        assert_eq!(
            s.bind(a.id, cookie("PHPSESSID", "known", "/"), true),
            Bind::Stored,
            "the owner may see it again"
        );
        assert_eq!(
            s.bind(b.id, cookie("PHPSESSID", "known", "/"), true),
            Bind::Conflict { other: a.id }
        );
        assert_eq!(injected(&s, a.id, "/"), "", "neither keeps it");
        assert_eq!(injected(&s, b.id, "/"), "");
        // Stateless cookies (the value is the session state, not an ID) may
        // repeat across users: no conflict for them.
        assert_eq!(
            s.bind(a.id, cookie("session", "same-state", "/"), false),
            Bind::Stored
        );
        assert_eq!(
            s.bind(b.id, cookie("session", "same-state", "/"), false),
            Bind::Stored
        );
        assert_eq!(injected(&s, a.id, "/"), "session=same-state");
        assert_eq!(injected(&s, b.id, "/"), "session=same-state");
        // The same value on another site is another backend session.
        let c = s.create(1, Instant::now()).unwrap();
        assert_eq!(
            s.bind(c.id, cookie("PHPSESSID", "other", "/"), true),
            Bind::Stored
        );
    }

    #[tokio::test]
    async fn full_store_evicts_anonymous_first_then_refuses() {
        let s = store(3);
        let a = s.create(0, Instant::now()).unwrap();
        s.login(a.id, false, Instant::now());
        let b = s.create(0, Instant::now()).unwrap();
        let _c = s.create(0, Instant::now()).unwrap();
        let d = s.create(0, Instant::now()).unwrap();
        assert_eq!(d.evicted.len(), 1);
        assert!(
            d.evicted[0].1 == b.token.hash().key(),
            "the least recently used anonymous session went"
        );
        assert!(matches!(
            s.resolve(0, &a.token.hash(), Instant::now()),
            Lookup::Live {
                authenticated: true,
                ..
            }
        ));
        // Only authenticated sessions left: refuse rather than log anyone out.
        let s = store(2);
        for _ in 0..2 {
            let x = s.create(0, Instant::now()).unwrap();
            s.login(x.id, false, Instant::now());
        }
        assert!(matches!(s.create(0, Instant::now()), Err(StoreError::Full)));
    }

    #[tokio::test]
    async fn eviction_takes_one_percent_of_anonymous_sessions_never_a_logged_in_one() {
        let s = store(1000);
        let mut logged_in = Vec::new();
        for i in 0..1000 {
            let c = s.create(0, Instant::now()).unwrap();
            if i % 10 != 0 {
                let (_, _) = s.login(c.id, false, Instant::now()).unwrap();
                logged_in.push(c.token.hash());
            }
        }
        let d = s.create(0, Instant::now()).unwrap();
        assert_eq!(d.evicted.len(), 10, "1% of the bound");
        for h in &logged_in {
            assert!(
                !d.evicted.iter().any(|(_, k)| *k == h.key()),
                "a logged-in session was evicted"
            );
            assert!(matches!(
                s.resolve(0, h, Instant::now()),
                Lookup::Live {
                    authenticated: true,
                    ..
                }
            ));
        }
    }

    #[test]
    fn paths() {
        assert!(path_matches(b"/a/b", b"/a"));
        assert!(path_matches(b"/a/", b"/a/"));
        assert!(!path_matches(b"/ab", b"/a"));
        assert_eq!(default_path(b"/a/b/c"), b"/a/b");
        assert_eq!(default_path(b"/a"), b"/");
        assert_eq!(default_path(b"x"), b"/");
    }
}
