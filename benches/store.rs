//! Session store operations on one core: lookups and re-keys per second.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sessiongate::session::{Lookup, MemoryStore, Timeouts, VaultCookie};

fn store(
    n: usize,
) -> (
    MemoryStore,
    Vec<sessiongate::session::token::TokenHash>,
    Vec<u64>,
) {
    let hour = Duration::from_secs(3600);
    let t = Timeouts {
        idle: hour,
        absolute: hour,
        anonymous: hour,
    };
    let s = MemoryStore::new(vec![t], n * 2, Duration::from_secs(60));
    let now = tokio::time::Instant::now();
    let (mut hashes, mut ids) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = s.create(0, now).unwrap();
        s.bind(
            c.id,
            VaultCookie {
                name: (*b"PHPSESSID").into(),
                value: format!("{i:032x}").into_bytes().into(),
                path: (*b"/").into(),
                expires: None,
            },
            true,
        );
        hashes.push(c.token.hash());
        ids.push(c.id);
    }
    (s, hashes, ids)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (s, hashes, ids) = store(100_000);
    let now = tokio::time::Instant::now();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lookup+touch (100k sessions)", |b| {
        b.iter(|| {
            i = (i + 7919) % hashes.len();
            assert!(matches!(s.resolve(0, &hashes[i], now), Lookup::Live { .. }));
        })
    });
    let mut out = Vec::with_capacity(64);
    g.bench_function("inject vault cookies", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            out.clear();
            s.inject(ids[i], "/account", now, &mut out);
        })
    });
    g.bench_function("rekey (100k sessions)", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            s.login(ids[i], true, now).unwrap();
        })
    });
    g.bench_function("create", |b| b.iter(|| s.create(0, now).unwrap()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
