//! The memory store: dashmap tables, bounded, swept in the background.
//!
//! Three tables: sessions by internal id; token keys to ids (or to a
//! tombstone after a re-key); backend cookie values to the one session that
//! holds each. No map guard is ever held across an `.await`: every method is
//! synchronous inside, the async trait around it only for the shared stores
//! to come. Lock order, where two tables are held at once: backend before
//! sessions (bind), sessions before tokens (login); never the reverse.
//!
//! Layout is compact because a gateway may hold millions of sessions: times
//! are seconds since the store started (`u32`), token keys are 128 bits, a
//! token entry is one `u64`, and each vaulted cookie is one allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::token::{Token, TokenHash, TokenKey};
use super::{Bind, Created, Expiry, Lookup, StoreError, Timeouts, VaultCookie, path_matches};

/// Seconds since the store's epoch, plus one: 0 means "never" or "none".
type Secs = u32;

/// Browsers refuse a cookie whose name and value exceed 4096 bytes
/// (RFC 6265bis §5.6); the vault refuses it too.
const MAX_COOKIE_BYTES: usize = 4096;
/// Cookies one session may hold, and their bytes (name, value, path)
/// together: browsers keep at least 50 cookies per domain.
const MAX_VAULT_COOKIES: usize = 64;
const MAX_VAULT_BYTES: usize = 32 * 1024;

/// A session's vaulted cookies, all in one allocation: for each, its name,
/// value and path lengths and its expiry (LEB128 varints: 4 bytes for a
/// typical session cookie), then its name, value and path. One small
/// allocation per session instead of one per cookie plus an array (issue 7:
/// bytes per session).
#[derive(Default)]
struct Vault(Box<[u8]>);

/// One vaulted cookie, read in place.
#[derive(Clone, Copy)]
struct Cookie<'a> {
    name: &'a [u8],
    value: &'a [u8],
    path: &'a [u8],
    /// Its own expiry, or 0.
    expires: Secs,
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u32::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

impl Vault {
    fn iter(&self) -> impl Iterator<Item = Cookie<'_>> {
        let b = &self.0;
        let mut at = 0;
        std::iter::from_fn(move || {
            let n = get_varint(b, &mut at)? as usize;
            let v = get_varint(b, &mut at)? as usize;
            let p = get_varint(b, &mut at)? as usize;
            let expires = get_varint(b, &mut at)?;
            let c = Cookie {
                name: b.get(at..at + n)?,
                value: b.get(at + n..at + n + v)?,
                path: b.get(at + n + v..at + n + v + p)?,
                expires,
            };
            at += n + v + p;
            Some(c)
        })
    }

    fn push(out: &mut Vec<u8>, name: &[u8], value: &[u8], path: &[u8], expires: Secs) {
        for len in [name.len(), value.len(), path.len()] {
            // Each under 64 KiB: checked before anything is stored.
            put_varint(out, len as u32);
        }
        put_varint(out, expires);
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out.extend_from_slice(path);
    }

    /// The cookies `drop` says no to.
    fn without(&self, drop: impl Fn(&Cookie<'_>) -> bool) -> Vault {
        let mut out = Vec::with_capacity(self.0.len());
        for c in self.iter().filter(|c| !drop(c)) {
            Vault::push(&mut out, c.name, c.value, c.path, c.expires);
        }
        // Copied out at its exact size: shrinking in place would keep the
        // larger block.
        Vault(out.as_slice().into())
    }

    /// With `new` in place of the cookie of the same name and path (which
    /// keeps its place, as a browser keeps the creation time of a replaced
    /// cookie), or added last.
    fn with(&self, new: &VaultCookie, expires: Secs) -> Vault {
        let mut out = Vec::with_capacity(
            self.0.len() + 20 + new.name.len() + new.value.len() + new.path.len(),
        );
        let mut placed = false;
        for c in self.iter() {
            if !placed && c.name == &*new.name && c.path == &*new.path {
                Vault::push(&mut out, &new.name, &new.value, &new.path, expires);
                placed = true;
            } else {
                Vault::push(&mut out, c.name, c.value, c.path, c.expires);
            }
        }
        if !placed {
            Vault::push(&mut out, &new.name, &new.value, &new.path, expires);
        }
        // Copied out at its exact size: shrinking in place would keep the
        // larger block.
        Vault(out.as_slice().into())
    }
}

struct Session {
    site: u16,
    logins_in_flight: u16,
    created: Secs,
    last_seen: Secs,
    /// When it logged in, or 0.
    authenticated: Secs,
    token: TokenKey,
    vault: Vault,
}

/// A token entry: a live session id, or (high bit set) a tombstone with the
/// second it fades.
const TOMBSTONE: u64 = 1 << 63;

/// A backend cookie value, identified without keeping it twice: site, name
/// and value hashed together (128 bits).
type BackendKey = [u8; 16];

/// A cookie's name and value, kept while its vault entry is replaced.
type NameValue = (Box<[u8]>, Box<[u8]>);

fn name_value(c: Cookie<'_>) -> NameValue {
    (c.name.into(), c.value.into())
}

/// The index keys of values that left a session's vault and that it no
/// longer holds at any other path: only those stop being its own.
fn released(site: u16, vault: &Vault, gone: &[NameValue]) -> Vec<BackendKey> {
    gone.iter()
        .filter(|(n, v)| !vault.iter().any(|c| c.name == &**n && c.value == &**v))
        .map(|(n, v)| backend_key(site, n, v))
        .collect()
}

fn backend_key(site: u16, name: &[u8], value: &[u8]) -> BackendKey {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&site.to_be_bytes());
    ctx.update(&(name.len() as u32).to_be_bytes());
    ctx.update(name);
    ctx.update(value);
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}

/// The hash of the tables whose keys no client can choose: session ids
/// (the store's own counter) and token keys (SHA-256 of tokens the gateway
/// generated; a client's guesses are looked up, never inserted, so they
/// cannot lengthen a probe sequence). Only such keys may ever be inserted
/// into these two tables. SipHash, the default, resists keys chosen to
/// collide, and costs more than the rest of the lookup here. The backend
/// index keeps SipHash: its keys come from the app's values. The seed is
/// random per process all the same, so that not even lookup timings depend
/// on a hash a client could compute.
#[derive(Clone, Copy)]
struct OwnKeyHasher(u64);

impl std::hash::Hasher for OwnKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = fold_mul(self.0 ^ n, 0x9e37_79b9_7f4a_7c15);
    }

    /// A second round, so that every input bit reaches the low bits (the
    /// bucket) and the high ones (hashbrown's tag, dashmap's shard).
    fn finish(&self) -> u64 {
        fold_mul(self.0, 0xa076_1d64_78bd_642f)
    }
}

/// A folded multiply: the 128-bit product's halves XORed together.
fn fold_mul(x: u64, k: u64) -> u64 {
    let m = u128::from(x) * u128::from(k);
    (m as u64) ^ ((m >> 64) as u64)
}

#[derive(Clone, Copy)]
struct OwnKeys {
    seed: u64,
}

impl Default for OwnKeys {
    fn default() -> OwnKeys {
        OwnKeys {
            seed: rand::random(),
        }
    }
}

impl std::hash::BuildHasher for OwnKeys {
    type Hasher = OwnKeyHasher;
    fn build_hasher(&self) -> OwnKeyHasher {
        OwnKeyHasher(self.seed)
    }
}

pub struct MemoryStore {
    sessions: DashMap<u64, Session, OwnKeys>,
    tokens: DashMap<TokenKey, u64, OwnKeys>,
    backend: DashMap<BackendKey, u64>,
    next_id: AtomicU64,
    epoch: Instant,
    wall_epoch: SystemTime,
    /// Timeouts per site index.
    timeouts: Vec<Timeouts>,
    max_sessions: usize,
    tombstone_ttl: Duration,
    /// What is bound to a session's token (a request body still arriving, a
    /// WebSocket tunnel) waits here to hear that the token changed or the
    /// session ended. Beside the sessions, made only when something binds:
    /// a session with nothing bound costs nothing more.
    watchers: DashMap<u64, Arc<Notify>>,
}

impl MemoryStore {
    pub fn new(
        timeouts: Vec<Timeouts>,
        max_sessions: usize,
        tombstone_ttl: Duration,
    ) -> MemoryStore {
        // Sized for the configured bound up front: no table is rebuilt
        // (and briefly held twice, and locked meanwhile) as sessions come in.
        // Only the tables' control bytes are touched now (about 6 MiB for a
        // million sessions); the rest is paged in as sessions arrive.
        MemoryStore {
            sessions: DashMap::with_capacity_and_hasher(max_sessions, OwnKeys::default()),
            tokens: DashMap::with_capacity_and_hasher(max_sessions, OwnKeys::default()),
            backend: DashMap::with_capacity(max_sessions),
            next_id: AtomicU64::new(1),
            epoch: Instant::now(),
            wall_epoch: SystemTime::now(),
            timeouts,
            max_sessions,
            tombstone_ttl,
            watchers: DashMap::new(),
        }
    }

    /// What to wait on for the end of a session's current token.
    pub fn watch(&self, id: u64) -> Arc<Notify> {
        self.watchers.entry(id).or_default().clone()
    }

    /// Forgets a session's watcher once nothing but the caller (about to
    /// drop its two handles: its own and its waiter's) holds it, and only
    /// if it is still the one the caller waited on: after a re-key, a late
    /// caller must not remove the watcher of the new token.
    pub fn unwatch(&self, id: u64, mine: &Arc<Notify>) {
        self.watchers.remove_if(&id, |_, n| {
            Arc::ptr_eq(n, mine) && Arc::strong_count(n) <= 3
        });
    }

    /// Wakes what is bound to the session's token: it changed or ended.
    fn release(&self, id: u64) {
        if let Some((_, n)) = self.watchers.remove(&id) {
            n.notify_waiters();
        }
    }

    fn secs(&self, t: Instant) -> Secs {
        let s = t.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(s).unwrap_or(u32::MAX - 1) + 1
    }

    fn secs_after(&self, now: Secs, d: Duration) -> Secs {
        now.saturating_add(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }

    /// Entries and capacity of each table, for the memory benchmark.
    pub fn capacity_report(&self) -> String {
        format!(
            "sessions {} (capacity {}), tokens {} (capacity {}), backend values {} (capacity {})",
            self.sessions.len(),
            self.sessions.capacity(),
            self.tokens.len(),
            self.tokens.capacity(),
            self.backend.len(),
            self.backend.capacity()
        )
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// When a session logged in (wall clock), if it did.
    pub fn authenticated_at(&self, id: u64) -> Option<SystemTime> {
        let s = self.sessions.get(&id)?;
        (s.authenticated != 0)
            .then(|| self.wall_epoch + Duration::from_secs(u64::from(s.authenticated - 1)))
    }

    fn expiry(&self, s: &Session, now: Secs) -> Option<Expiry> {
        let t = &self.timeouts[s.site as usize];
        let age = u64::from(now.saturating_sub(s.created));
        if age >= t.absolute.as_secs() {
            Some(Expiry::Absolute)
        } else if s.authenticated == 0 && age >= t.anonymous.as_secs() {
            Some(Expiry::Anonymous)
        } else if u64::from(now.saturating_sub(s.last_seen)) >= t.idle.as_secs() {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Removes a session with its token and backend bindings.
    fn destroy(&self, id: u64) -> Option<(u16, TokenKey)> {
        let (_, s) = self.sessions.remove(&id)?;
        self.release(id);
        self.tokens.remove(&s.token);
        for c in s.vault.iter() {
            self.backend
                .remove_if(&backend_key(s.site, c.name, c.value), |_, owner| {
                    *owner == id
                });
        }
        Some((s.site, s.token))
    }

    /// Evicts the least recently used of a sample of unauthenticated
    /// sessions (approximated LRU, as Redis does): the first
    /// `EVICT_SAMPLE` anonymous sessions in table order, which has nothing
    /// to do with age, and of those the ones seen longest ago (1% of the
    /// bound, at most `EVICT_BATCH`). The
    /// cost is bounded (at most `EVICT_SCAN` entries read) however large the
    /// store, so a client filling it cannot stall a request (or, with one
    /// worker, the whole gateway) on a scan of a million sessions. Returns
    /// what went; nothing when no anonymous session was found.
    fn evict(&self) -> Vec<(u16, TokenKey)> {
        const EVICT_SAMPLE: usize = 256;
        const EVICT_BATCH: usize = 32;
        const EVICT_SCAN: usize = 65_536;
        let mut candidates: Vec<(Secs, u64)> = self
            .sessions
            .iter()
            .take(EVICT_SCAN)
            .filter(|s| s.authenticated == 0)
            .take(EVICT_SAMPLE)
            .map(|s| (s.last_seen, *s.key()))
            .collect();
        candidates.sort_unstable();
        // 1% of the bound at a time (so eviction is paid rarely), at least one.
        let batch = (self.max_sessions / 100).clamp(1, EVICT_BATCH);
        candidates
            .into_iter()
            .take(batch)
            .filter_map(|(_, id)| self.destroy(id))
            .collect()
    }

    pub fn create(&self, site: usize, now: Instant) -> Result<Created, StoreError> {
        let mut evicted = Vec::new();
        if self.sessions.len() >= self.max_sessions {
            evicted = self.evict();
            if evicted.is_empty() {
                return Err(StoreError::Full);
            }
        }
        let token = Token::generate();
        let key = token.hash().key();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.secs(now);
        self.sessions.insert(
            id,
            Session {
                site: site as u16,
                logins_in_flight: 0,
                created: now,
                last_seen: now,
                authenticated: 0,
                token: key,
                vault: Vault::default(),
            },
        );
        self.tokens.insert(key, id);
        Ok(Created { id, token, evicted })
    }

    pub fn resolve(&self, site: usize, hash: &TokenHash, now: Instant) -> Lookup {
        let now = self.secs(now);
        let entry = match self.tokens.get(&hash.key()) {
            None => return Lookup::Unknown,
            Some(e) => *e,
        };
        if entry & TOMBSTONE != 0 {
            let until = (entry & !TOMBSTONE) as Secs;
            return if now < until {
                Lookup::Tombstone
            } else {
                Lookup::Unknown
            };
        }
        let id = entry;
        let expired = {
            let Some(mut s) = self.sessions.get_mut(&id) else {
                return Lookup::Unknown;
            };
            // A session belongs to its site: elsewhere its token is nothing.
            if s.site as usize != site {
                return Lookup::Unknown;
            }
            match self.expiry(&s, now) {
                Some(e) => e,
                None => {
                    s.last_seen = now;
                    return Lookup::Live {
                        id,
                        authenticated: s.authenticated != 0,
                        in_login: s.logins_in_flight > 0,
                    };
                }
            }
        };
        self.destroy(id);
        Lookup::Expired(expired)
    }

    /// Appends `name=value` for every vaulted cookie whose path covers
    /// `path`, longest path first as browsers order them (RFC 6265 §5.4);
    /// cookies past their own expiry are dropped.
    pub fn inject(&self, id: u64, path: &str, now: Instant, out: &mut Vec<u8>) {
        let now = self.secs(now);
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return;
        };
        let expired = |c: &Cookie<'_>| c.expires != 0 && c.expires <= now;
        if s.vault.iter().any(|c| expired(&c)) {
            let site = s.site;
            let gone: Vec<NameValue> = s.vault.iter().filter(expired).map(name_value).collect();
            s.vault = s.vault.without(expired);
            for key in released(site, &s.vault, &gone) {
                self.backend.remove_if(&key, |_, owner| *owner == id);
            }
        }
        let mut emit = |c: &Cookie<'_>| {
            out.reserve(c.name.len() + c.value.len() + 3);
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(c.name);
            out.push(b'=');
            out.extend_from_slice(c.value);
        };
        let mut matching = s
            .vault
            .iter()
            .filter(|c| path_matches(path.as_bytes(), c.path));
        let Some(first) = matching.next() else {
            return;
        };
        match matching.next() {
            None => emit(&first),
            Some(second) => {
                let mut order = vec![first, second];
                order.extend(matching);
                // Stable: equal paths keep the order they were stored in.
                order.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
                for c in &order {
                    emit(c);
                }
            }
        }
    }

    /// Stores (or replaces, by name and path) a backend cookie. With
    /// `unique`, a value that already belongs to another live session is kept
    /// by neither. Stateless cookies (`unique == false`) are not indexed.
    pub fn bind(&self, id: u64, cookie: VaultCookie, unique: bool) -> Bind {
        if cookie.name.len() + cookie.value.len() > MAX_COOKIE_BYTES
            || cookie.path.len() > MAX_COOKIE_BYTES
        {
            // Browsers refuse cookies over 4096 bytes; so does the vault
            // (before anything is indexed).
            return Bind::Refused;
        }
        let expires = cookie.expires.map_or(0, |e| self.secs(e));
        let site = {
            let Some(mut s) = self.sessions.get_mut(&id) else {
                return Bind::Gone;
            };
            // Apps re-send the same cookie on every response: no hashing,
            // and nothing at all unless its expiry moved.
            let same = s
                .vault
                .iter()
                .find(|c| {
                    c.name == &*cookie.name && c.path == &*cookie.path && c.value == &*cookie.value
                })
                .map(|c| c.expires);
            if let Some(stored) = same {
                if stored != expires {
                    s.vault = s.vault.with(&cookie, expires);
                }
                return Bind::Stored;
            }
            s.site
        };
        if !unique {
            return self.store_cookie(id, site, cookie);
        }
        let key = backend_key(site, &cookie.name, &cookie.value);
        match self.backend.entry(key) {
            MapEntry::Occupied(e) if *e.get() != id => {
                let other = *e.get();
                e.remove();
                // Neither session keeps the contested value.
                for sid in [other, id] {
                    if let Some(mut s) = self.sessions.get_mut(&sid)
                        && s.vault
                            .iter()
                            .any(|c| c.name == &*cookie.name && c.value == &*cookie.value)
                    {
                        s.vault = s
                            .vault
                            .without(|c| c.name == &*cookie.name && c.value == &*cookie.value);
                    }
                }
                return Bind::Conflict { other };
            }
            MapEntry::Occupied(_) => {}
            MapEntry::Vacant(e) => {
                e.insert(id);
            }
        }
        let stored = self.store_cookie(id, site, cookie);
        if !matches!(stored, Bind::Stored) {
            // Not in the vault (the session went meanwhile, or its vault is
            // full): the index must not claim the value for it.
            self.backend.remove_if(&key, |_, owner| *owner == id);
        }
        stored
    }

    fn store_cookie(&self, id: u64, site: u16, cookie: VaultCookie) -> Bind {
        let expires = cookie.expires.map_or(0, |e| self.secs(e));
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return Bind::Gone;
        };
        let (mut count, mut bytes, mut replacing) = (0, 0, false);
        for c in s.vault.iter() {
            count += 1;
            bytes += c.name.len() + c.value.len() + c.path.len();
            replacing |= c.name == &*cookie.name && c.path == &*cookie.path;
        }
        // A bound per session: an app (or a client steering its default
        // cookie path) must not grow one session's vault without end.
        if !replacing
            && (count >= MAX_VAULT_COOKIES
                || bytes + cookie.name.len() + cookie.value.len() + cookie.path.len()
                    > MAX_VAULT_BYTES)
        {
            return Bind::Refused;
        }
        let replaced: Vec<NameValue> = s
            .vault
            .iter()
            .filter(|c| {
                c.name == &*cookie.name && c.path == &*cookie.path && c.value != &*cookie.value
            })
            .map(name_value)
            .collect();
        s.vault = s.vault.with(&cookie, expires);
        let keys = released(site, &s.vault, &replaced);
        drop(s);
        for key in keys {
            self.backend.remove_if(&key, |_, owner| *owner == id);
        }
        Bind::Stored
    }

    /// Deletes a vaulted cookie (the app sent a deleting `Set-Cookie`).
    pub fn unbind(&self, id: u64, name: &[u8], path: &[u8]) {
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return;
        };
        let hit = |c: &Cookie<'_>| c.name == name && c.path == path;
        if !s.vault.iter().any(|c| hit(&c)) {
            return;
        }
        let site = s.site;
        let gone: Vec<NameValue> = s.vault.iter().filter(hit).map(name_value).collect();
        s.vault = s.vault.without(hit);
        let keys = released(site, &s.vault, &gone);
        drop(s);
        for key in keys {
            self.backend.remove_if(&key, |_, owner| *owner == id);
        }
    }

    /// Whether `token` is still the session's token (not re-keyed, not
    /// ended).
    pub fn holds(&self, id: u64, token: TokenKey) -> bool {
        self.sessions.get(&id).is_some_and(|s| s.token == token)
    }

    pub fn begin_login(&self, id: u64) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.logins_in_flight = s.logins_in_flight.saturating_add(1);
        }
    }

    pub fn end_login(&self, id: u64) {
        if let Some(mut s) = self.sessions.get_mut(&id) {
            s.logins_in_flight = s.logins_in_flight.saturating_sub(1);
        }
    }

    /// Gives the session a new token, if its token is still `expected`: of
    /// two requests that present the same token, only one re-keys. The old
    /// token becomes a tombstone, as in [`MemoryStore::login`].
    pub fn rekey_from(&self, id: u64, expected: TokenKey, now: Instant) -> Option<Token> {
        let now = self.secs(now);
        let mut s = self.sessions.get_mut(&id)?;
        if s.token != expected {
            return None;
        }
        let token = Token::generate();
        s.token = token.hash().key();
        self.tokens.insert(s.token, id);
        let until = self.secs_after(now, self.tombstone_ttl);
        self.tokens.insert(expected, TOMBSTONE | u64::from(until));
        drop(s);
        self.release(id);
        Some(token)
    }

    /// Marks the session authenticated and, with `rekey`, gives it a new
    /// token at once; the old one becomes a tombstone that grants nothing.
    pub fn login(&self, id: u64, rekey: bool, now: Instant) -> Option<(Option<Token>, TokenKey)> {
        let now = self.secs(now);
        let mut s = self.sessions.get_mut(&id)?;
        s.authenticated = now;
        let old = s.token;
        if !rekey {
            return Some((None, old));
        }
        let token = Token::generate();
        s.token = token.hash().key();
        // The new token is live before the old one dies: no gap in which the
        // session has no token, and no moment with two live ones.
        self.tokens.insert(s.token, id);
        let until = self.secs_after(now, self.tombstone_ttl);
        self.tokens.insert(old, TOMBSTONE | u64::from(until));
        drop(s);
        self.release(id);
        Some((Some(token), old))
    }

    pub fn remove(&self, id: u64) -> Option<TokenKey> {
        self.destroy(id).map(|(_, t)| t)
    }

    /// Removes expired sessions and faded tombstones.
    pub fn sweep(&self, now: Instant) -> Vec<(u16, TokenKey, Expiry)> {
        let now = self.secs(now);
        let expired: Vec<(u64, Expiry)> = self
            .sessions
            .iter()
            .filter_map(|s| self.expiry(&s, now).map(|e| (*s.key(), e)))
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for (id, e) in expired {
            if let Some((site, token)) = self.destroy(id) {
                out.push((site, token, e));
            }
        }
        self.tokens
            .retain(|_, t| *t & TOMBSTONE == 0 || now < (*t & !TOMBSTONE) as Secs);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn own_key_hash_spreads_sequential_ids_and_token_keys() {
        // 4096 keys into 4096 buckets: a good hash fills about 63% of them
        // (1 - 1/e); a poor one (identity on ids, or only the first bytes
        // of a token key) fills far fewer of the high-bit tags.
        let h = OwnKeys::default();
        let ids: Vec<u64> = (1..=4096u64).map(|id| h.hash_one(id)).collect();
        let keys: Vec<u64> = (0..4096u32)
            .map(|i| {
                let mut k = [0u8; 16];
                k[12..].copy_from_slice(&i.to_be_bytes());
                h.hash_one(TokenKey(k))
            })
            .collect();
        for hashes in [ids, keys] {
            let low: HashSet<u64> = hashes.iter().map(|x| x & 4095).collect();
            let tags: HashSet<u64> = hashes.iter().map(|x| x >> 57).collect();
            assert!(low.len() > 2400, "{} buckets", low.len());
            assert_eq!(tags.len(), 128);
        }
    }
}
