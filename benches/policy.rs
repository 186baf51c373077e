//! The per-request policy functions on realistic inputs: request cookie
//! vetting, `Set-Cookie` hardening and URL session-ID stripping.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sessiongate::policy::cookie::CookieRules;
use sessiongate::policy::names::NameSet;
use sessiongate::policy::set_cookie::{CookiePolicy, Override, SameSite, harden};
use sessiongate::policy::url::{strip, strip_in_url};

const NOW: i64 = 1_700_000_000;

fn vet(c: &mut Criterion) {
    let rules = CookieRules {
        forward: NameSet::new(["PHPSESSID", "lang", "csrftoken"]),
        host_prefixed: Vec::new(),
        gateway: Some("__Host-sg".into()),
        watch: NameSet::default(),
    };
    let one = "PHPSESSID=9f2c1e7ab04d5c3e8a1b2c3d4e5f6a7b".to_string();
    // A browser that has been around: analytics, consent, A/B tests, and
    // the three cookies the app reads.
    let mut thirty = Vec::new();
    for i in 0..27 {
        thirty.push(match i % 4 {
            0 => format!("_ga_{i}=GA1.1.{}.1700000000", 1_000_000 + i),
            1 => format!("_gid{i}=GA1.2.1999999{i}.1700000000"),
            2 => format!("consent{i}=%7B%22ads%22%3Afalse%7D"),
            _ => format!("ab_test_{i}=variant-b"),
        });
    }
    thirty.insert(3, "PHPSESSID=9f2c1e7ab04d5c3e8a1b2c3d4e5f6a7b".into());
    thirty.insert(12, "lang=en-GB".into());
    thirty.insert(25, "csrftoken=Zm9vYmFyYmF6cXV4".into());
    let thirty = thirty.join("; ");
    // What an attacker can put in one header: hundreds of distinct names
    // that all pass the forward list (PHP reads `PHPSESSID[k]` as an array
    // element), so every pair is compared, each comparison decoding both.
    let hostile = (0..600)
        .map(|i| format!("PHPSESSID%5B{i}%5D=x"))
        .collect::<Vec<_>>()
        .join("; ");

    let mut g = c.benchmark_group("vet");
    g.bench_function("0_cookies", |b| {
        b.iter(|| rules.vet(black_box(&[])).dropped)
    });
    let h: [&[u8]; 1] = [one.as_bytes()];
    assert!(rules.vet(&h).unchanged);
    g.bench_function("1_cookie", |b| {
        b.iter(|| rules.vet(black_box(&h)).unchanged)
    });
    let h: [&[u8]; 1] = [thirty.as_bytes()];
    assert_eq!(rules.vet(&h).dropped, 27);
    g.bench_function("30_cookies", |b| {
        b.iter(|| rules.vet(black_box(&h)).header.len())
    });
    let h: [&[u8]; 1] = [hostile.as_bytes()];
    g.sample_size(10);
    g.bench_function("600_forwarded_names_12kb", |b| {
        b.iter(|| rules.vet(black_box(&h)).dropped)
    });
    g.finish();
}

fn harden_lines(c: &mut Criterion) {
    let policy = CookiePolicy {
        same_site: SameSite::Lax,
        max_lifetime: Some(86_400),
        script_readable: NameSet::new(["XSRF-TOKEN"]),
        session_cookies: NameSet::default(),
        allow_domains: Vec::new(),
        overrides: vec![Override {
            name: "pref".into(),
            same_site: None,
            host_prefix: true,
        }],
    };
    // PHP, a servlet container, Flask, Laravel's XSRF cookie, a remember-me
    // cookie with a far Expires.
    let lines: [&[u8]; 5] = [
        b"PHPSESSID=9f2c1e7ab04d5c3e8a1b2c3d4e; path=/",
        b"JSESSIONID=0A1B2C3D4E5F60718293A4B5C6D7E8F9; Path=/app; HttpOnly",
        b"session=eyJfZnJlc2giOmZhbHNlLCJ1c2VyIjoiYSJ9.ZVvXzA.3nq0m5cQk8Xh2bS0; HttpOnly; Path=/",
        b"XSRF-TOKEN=eyJpdiI6IjRmM2QiLCJ2YWx1ZSI6Ij; expires=Wed, 21-Oct-2065 07:28:00 GMT; Max-Age=7200; path=/; samesite=lax",
        b"remember_me=a1b2c3; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Domain=app.test; Path=/; Secure",
    ];
    let mut g = c.benchmark_group("harden");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("5_set_cookie_lines", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                if matches!(
                    harden(black_box(l), &policy, "app.test", NOW),
                    sessiongate::policy::set_cookie::Outcome::Rewritten(_)
                ) {
                    n += 1;
                }
            }
            n
        })
    });
    let hard: &[u8] =
        b"PHPSESSID=9f2c1e7ab04d5c3e8a1b2c3d4e; path=/; Secure; HttpOnly; SameSite=Lax";
    g.throughput(Throughput::Elements(1));
    g.bench_function("already_hardened", |b| {
        b.iter(|| harden(black_box(hard), &policy, "app.test", NOW))
    });
    g.finish();
}

fn url_strip(c: &mut Criterion) {
    let names = NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "ASPSESSIONID*"]);
    let clean = "/shop/cart.php?item=4711&qty=2&ref=newsletter";
    let dirty =
        "/shop/cart.php?item=4711&PHPSESSID=9f2c1e7ab04d5c3e8a1b2c3d4e&qty=2&ref=newsletter";
    let path_param = "/app/cart;jsessionid=0A1B2C3D4E5F60718293A4B5C6D7E8F9?item=4711";
    assert!(strip(clean, &names).is_none());
    assert!(strip(dirty, &names).is_some());
    let mut g = c.benchmark_group("url_strip");
    g.bench_function("clean", |b| b.iter(|| strip(black_box(clean), &names)));
    g.bench_function("with_session_id", |b| {
        b.iter(|| strip(black_box(dirty), &names))
    });
    g.bench_function("with_path_parameter", |b| {
        b.iter(|| strip(black_box(path_param), &names))
    });
    g.bench_function("location_header", |b| {
        b.iter(|| {
            strip_in_url(
                black_box("https://app.test/login.php?PHPSESSID=9f2c&next=%2F"),
                &names,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, vet, harden_lines, url_strip);
criterion_main!(benches);
