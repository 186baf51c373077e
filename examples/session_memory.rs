//! Fills the memory store with sessions, each holding one 32-byte backend
//! cookie, and reports resident memory per session and lookups per second
//! while full.
//!
//!     cargo run --release --example session_memory -- 1000000

use std::time::{Duration, Instant};

use sessiongate::session::token::TokenHash;
use sessiongate::session::{Lookup, MemoryStore, Timeouts, VaultCookie};

/// The allocator the gateway binary uses (src/main.rs), so that the bytes
/// per session are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let hour = Duration::from_secs(3600);
    let t = Timeouts {
        idle: hour,
        absolute: hour,
        anonymous: hour,
    };
    // Measured before the store exists: its up-front tables count.
    let before = rss_kib();
    let store = MemoryStore::new(vec![t], n + 1, Duration::from_secs(60));
    let now = tokio::time::Instant::now();
    let mut hashes: Vec<TokenHash> = Vec::with_capacity(n);
    let hashes_bytes = n * std::mem::size_of::<TokenHash>();
    let started = Instant::now();
    for i in 0..n {
        let c = store.create(0, now).expect("room");
        let value = format!("{i:032x}");
        store.bind(
            c.id,
            VaultCookie {
                name: (*b"PHPSESSID").into(),
                value: value.as_bytes().into(),
                path: (*b"/").into(),
                expires: None,
            },
            true,
        );
        hashes.push(c.token.hash());
    }
    let fill = started.elapsed();
    let after = rss_kib();
    let per_session =
        ((after - before) * 1024).saturating_sub(hashes_bytes as u64) as f64 / n as f64;

    let lookups = 2_000_000usize;
    let started = Instant::now();
    let mut live = 0usize;
    for i in 0..lookups {
        let h = &hashes[(i * 7919) % n];
        if let Lookup::Live { .. } = store.resolve(0, h, now) {
            live += 1;
        }
    }
    let took = started.elapsed();
    assert_eq!(live, lookups);
    println!("sessions: {n} (each one 32-byte PHPSESSID value)");
    println!(
        "fill: {:.2} s ({:.0} sessions/s, token generation included)",
        fill.as_secs_f64(),
        n as f64 / fill.as_secs_f64()
    );
    println!(
        "RSS: {} MiB before, {} MiB after",
        before / 1024,
        after / 1024
    );
    println!(
        "RSS per session: {per_session:.0} bytes (cookie bytes in that: 32 value + 9 name + 1 path)"
    );
    println!(
        "lookups while full: {:.2} M/s on one thread",
        lookups as f64 / took.as_secs_f64() / 1e6
    );
    println!("table sizes: {}", store.capacity_report());
}
