//! Per-client rate limits (token buckets): session creation, and requests
//! that present unknown, expired or malformed tokens (guessing).
//!
//! Clients are counted by address, IPv6 by /64 (one host usually holds a
//! whole /64). The map is bounded: past its size it first drops full buckets
//! (clients that are idle again) and, if still full, lets new clients pass
//! uncounted rather than refuse everyone.

use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct Limiter {
    buckets: DashMap<u128, Bucket>,
    /// Tokens added per second.
    rate: f64,
    burst: f64,
    max_clients: usize,
}

/// The key a client is counted under.
pub fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6) & !((1u128 << 64) - 1) | (1 << 32),
        },
    }
}

impl Limiter {
    /// `per_minute` sustained, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32, max_clients: usize) -> Limiter {
        Limiter {
            buckets: DashMap::new(),
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            max_clients,
        }
    }

    /// Takes one token for `ip`; `Err(retry_after)` when none is left.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_clients {
            self.prune(now);
            if self.buckets.len() >= self.max_clients {
                return Ok(());
            }
        }
        let mut b = self.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if self.rate > 0.0 {
                (1.0 - b.tokens) / self.rate
            } else {
                3600.0
            };
            Err(Duration::from_secs_f64(wait.ceil().max(1.0)))
        }
    }

    /// Drops buckets that have refilled completely: those clients are
    /// indistinguishable from new ones.
    pub fn prune(&self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills() {
        let l = Limiter::new(60, 3, 100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip, Instant::now()).is_ok());
        }
        let wait = l.check(ip, Instant::now()).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            l.check("192.0.2.2".parse().unwrap(), Instant::now())
                .is_ok(),
            "others are not affected"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.check(ip, Instant::now()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_counts_by_64_and_the_map_is_bounded() {
        let l = Limiter::new(60, 1, 2);
        assert!(
            l.check("2001:db8::1".parse().unwrap(), Instant::now())
                .is_ok()
        );
        assert!(
            l.check("2001:db8::ffff".parse().unwrap(), Instant::now())
                .is_err(),
            "same /64"
        );
        assert!(
            l.check("2001:db8:0:1::1".parse().unwrap(), Instant::now())
                .is_ok(),
            "another /64"
        );
        // Full map, nobody idle: a new client passes uncounted.
        assert!(
            l.check("198.51.100.1".parse().unwrap(), Instant::now())
                .is_ok()
        );
        assert!(
            l.check("198.51.100.1".parse().unwrap(), Instant::now())
                .is_ok()
        );
        assert_eq!(l.buckets.len(), 2);
    }
}
