//! The memory store: dashmap tables, bounded, swept in the background.
//!
//! Three tables: sessions by internal id; token hashes to ids (or to a
//! tombstone after a re-key); backend cookie values to the one session that
//! holds each. No map guard is ever held across an `.await`: every method is
//! synchronous inside, the async trait around it only for the shared stores
//! to come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::time::Instant;

use super::token::{Token, TokenHash};
use super::{Bind, Created, Expiry, Lookup, StoreError, Timeouts, VaultCookie, path_matches};

struct Session {
    site: u16,
    token: TokenHash,
    created: Instant,
    last_seen: Instant,
    authenticated_at: Option<SystemTime>,
    logins_in_flight: u16,
    vault: Vec<VaultCookie>,
}

enum TokenEntry {
    Live(u64),
    Tombstone { until: Instant },
}

/// A backend cookie value, identified without keeping it twice: site, name
/// and value hashed together.
type BackendKey = [u8; 32];

fn backend_key(site: u16, name: &[u8], value: &[u8]) -> BackendKey {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&site.to_be_bytes());
    ctx.update(&(name.len() as u32).to_be_bytes());
    ctx.update(name);
    ctx.update(value);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub struct MemoryStore {
    sessions: DashMap<u64, Session>,
    tokens: DashMap<TokenHash, TokenEntry>,
    backend: DashMap<BackendKey, u64>,
    next_id: AtomicU64,
    /// Timeouts per site index.
    timeouts: Vec<Timeouts>,
    max_sessions: usize,
    tombstone_ttl: Duration,
}

impl MemoryStore {
    pub fn new(
        timeouts: Vec<Timeouts>,
        max_sessions: usize,
        tombstone_ttl: Duration,
    ) -> MemoryStore {
        MemoryStore {
            sessions: DashMap::new(),
            tokens: DashMap::new(),
            backend: DashMap::new(),
            next_id: AtomicU64::new(1),
            timeouts,
            max_sessions,
            tombstone_ttl,
        }
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

    fn expiry(&self, s: &Session, now: Instant) -> Option<Expiry> {
        let t = &self.timeouts[s.site as usize];
        let age = now.saturating_duration_since(s.created);
        if age >= t.absolute {
            Some(Expiry::Absolute)
        } else if s.authenticated_at.is_none() && age >= t.anonymous {
            Some(Expiry::Anonymous)
        } else if now.saturating_duration_since(s.last_seen) >= t.idle {
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Removes a session with its token and backend bindings.
    fn destroy(&self, id: u64) -> Option<(u16, TokenHash)> {
        let (_, s) = self.sessions.remove(&id)?;
        self.tokens.remove(&s.token);
        for c in &s.vault {
            self.backend
                .remove_if(&backend_key(s.site, &c.name, &c.value), |_, owner| {
                    *owner == id
                });
        }
        Some((s.site, s.token))
    }

    /// Evicts the least recently used unauthenticated sessions (1% of the
    /// bound at once, so the scan is paid rarely). Returns what went.
    fn evict(&self) -> Vec<(u16, TokenHash)> {
        let mut candidates: Vec<(Instant, u64)> = self
            .sessions
            .iter()
            .filter(|s| s.authenticated_at.is_none())
            .map(|s| (s.last_seen, *s.key()))
            .collect();
        candidates.sort_unstable();
        let n = (self.max_sessions / 100).max(1);
        candidates
            .into_iter()
            .take(n)
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
        let hash = token.hash();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sessions.insert(
            id,
            Session {
                site: site as u16,
                token: hash,
                created: now,
                last_seen: now,
                authenticated_at: None,
                logins_in_flight: 0,
                vault: Vec::new(),
            },
        );
        self.tokens.insert(hash, TokenEntry::Live(id));
        Ok(Created { id, token, evicted })
    }

    pub fn resolve(&self, site: usize, hash: &TokenHash, now: Instant) -> Lookup {
        let id = match self.tokens.get(hash).as_deref() {
            None => return Lookup::Unknown,
            Some(TokenEntry::Tombstone { until }) => {
                return if now < *until {
                    Lookup::Tombstone
                } else {
                    Lookup::Unknown
                };
            }
            Some(TokenEntry::Live(id)) => *id,
        };
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
                        authenticated: s.authenticated_at.is_some(),
                        in_login: s.logins_in_flight > 0,
                    };
                }
            }
        };
        self.destroy(id);
        Lookup::Expired(expired)
    }

    /// Appends `name=value` for every vaulted cookie whose path covers
    /// `path`, dropping cookies past their own expiry.
    pub fn inject(&self, id: u64, path: &str, now: Instant, out: &mut Vec<u8>) {
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return;
        };
        let site = s.site;
        let mut gone = Vec::new();
        s.vault.retain(|c| {
            let live = c.expires.is_none_or(|e| now < e);
            if !live {
                gone.push(backend_key(site, &c.name, &c.value));
            }
            live
        });
        // Longer paths first, as browsers order them (RFC 6265 §5.4).
        let mut order: Vec<&VaultCookie> = s
            .vault
            .iter()
            .filter(|c| path_matches(path.as_bytes(), &c.path))
            .collect();
        order.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        for c in order {
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(&c.name);
            out.push(b'=');
            out.extend_from_slice(&c.value);
        }
        drop(s);
        for k in gone {
            self.backend.remove_if(&k, |_, owner| *owner == id);
        }
    }

    /// Stores (or replaces, by name and path) a backend cookie. With
    /// `unique`, a value that already belongs to another live session is kept
    /// by neither. Stateless cookies (`unique == false`) are not indexed.
    pub fn bind(&self, id: u64, cookie: VaultCookie, unique: bool) -> Bind {
        let Some(site) = self.sessions.get(&id).map(|s| s.site) else {
            return Bind::Gone;
        };
        if !unique {
            return self.store_cookie(id, site, cookie);
        }
        let key = backend_key(site, &cookie.name, &cookie.value);
        match self.backend.entry(key) {
            Entry::Occupied(e) if *e.get() != id => {
                let other = *e.get();
                e.remove();
                // Neither session keeps the contested value.
                for sid in [other, id] {
                    if let Some(mut s) = self.sessions.get_mut(&sid) {
                        s.vault
                            .retain(|c| !(c.name == cookie.name && c.value == cookie.value));
                    }
                }
                return Bind::Conflict { other };
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(e) => {
                e.insert(id);
            }
        }
        self.store_cookie(id, site, cookie)
    }

    fn store_cookie(&self, id: u64, site: u16, cookie: VaultCookie) -> Bind {
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return Bind::Gone;
        };
        let mut replaced = None;
        if let Some(slot) = s
            .vault
            .iter_mut()
            .find(|c| c.name == cookie.name && c.path == cookie.path)
        {
            if slot.value != cookie.value {
                replaced = Some(backend_key(site, &slot.name, &slot.value));
            }
            *slot = cookie;
        } else {
            s.vault.push(cookie);
        }
        drop(s);
        if let Some(old) = replaced {
            self.backend.remove_if(&old, |_, owner| *owner == id);
        }
        Bind::Stored
    }

    /// Deletes a vaulted cookie (the app sent a deleting `Set-Cookie`).
    pub fn unbind(&self, id: u64, name: &[u8], path: &[u8]) {
        let Some(mut s) = self.sessions.get_mut(&id) else {
            return;
        };
        let site = s.site;
        let mut gone = Vec::new();
        s.vault.retain(|c| {
            let hit = *c.name == *name && *c.path == *path;
            if hit {
                gone.push(backend_key(site, &c.name, &c.value));
            }
            !hit
        });
        drop(s);
        for k in gone {
            self.backend.remove_if(&k, |_, owner| *owner == id);
        }
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

    /// Marks the session authenticated and, with `rekey`, gives it a new
    /// token at once; the old one becomes a tombstone that grants nothing.
    pub fn login(&self, id: u64, rekey: bool, now: Instant) -> Option<(Option<Token>, TokenHash)> {
        let mut s = self.sessions.get_mut(&id)?;
        s.authenticated_at = Some(SystemTime::now());
        let old = s.token;
        if !rekey {
            return Some((None, old));
        }
        let token = Token::generate();
        s.token = token.hash();
        // The new token is live before the old one dies: no gap in which the
        // session has no token, and no moment with two live ones.
        self.tokens.insert(s.token, TokenEntry::Live(id));
        self.tokens.insert(
            old,
            TokenEntry::Tombstone {
                until: now + self.tombstone_ttl,
            },
        );
        Some((Some(token), old))
    }

    pub fn remove(&self, id: u64) -> Option<TokenHash> {
        self.destroy(id).map(|(_, t)| t)
    }

    /// Removes expired sessions and stale tombstones.
    pub fn sweep(&self, now: Instant) -> Vec<(u16, TokenHash, Expiry)> {
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
        self.tokens.retain(|_, t| match t {
            TokenEntry::Tombstone { until } => now < *until,
            TokenEntry::Live(_) => true,
        });
        out
    }
}
