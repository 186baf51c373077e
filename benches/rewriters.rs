//! The cost of the body rewriters per request against a plain forward
//! (a copy of the same bytes, chunk by chunk, as hyper would pass them).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sessiongate::policy::form::{Filter, Kind};
use sessiongate::policy::html::HtmlCleaner;
use sessiongate::policy::names::NameSet;

const CHUNK: usize = 16 * 1024;

fn names() -> NameSet {
    NameSet::new(sessiongate::config::DEFAULT_URL_SESSION_PARAMS)
}

/// A 2 KiB login form, optionally with a session field in the middle.
fn login_form(with_id: bool) -> Vec<u8> {
    let mut f = String::from("user=alice&password=correct+horse+battery+staple&csrf=");
    f.push_str(&"a1b2c3d4".repeat(40));
    if with_id {
        f.push_str("&PHPSESSID=0a366laml52ir34osiqed5hf60");
    }
    f.push_str("&comment=");
    while f.len() < 2048 {
        f.push_str("lorem+ipsum+dolor+sit+amet%2C+");
    }
    f.truncate(2048);
    f.into_bytes()
}

/// A 50 KiB page with 200 links, optionally trans-sid style.
fn page(with_ids: bool) -> Vec<u8> {
    let mut p = String::from(
        "<!doctype html><html><head><title>catalogue</title><link rel=stylesheet href=/s.css></head><body><ul>",
    );
    for i in 0..200 {
        let sid = if with_ids {
            "&amp;PHPSESSID=0a366laml52ir34osiqed5hf60"
        } else {
            ""
        };
        p.push_str(&format!("<li><a href=\"/item.php?id={i}{sid}\">Item number {i}</a> <span class=price>{i}.99</span></li>\n"));
    }
    p.push_str("</ul>");
    while p.len() < 50 * 1024 - 20 {
        p.push_str("<p>Filler paragraph text of the kind a legacy catalogue page carries.</p>\n");
    }
    p.push_str("</body></html>");
    p.into_bytes()
}

fn plain(body: &[u8]) -> usize {
    body.chunks(CHUNK)
        .map(|c| bytes::Bytes::copy_from_slice(c).len())
        .sum()
}

fn form_filter(body: &[u8]) -> usize {
    let mut f = Filter::new(Kind::Urlencoded, names()).unwrap();
    let n: usize = body.chunks(CHUNK).map(|c| f.feed(c).unwrap().len()).sum();
    n + f.finish().unwrap().len()
}

fn html_clean(body: &[u8]) -> usize {
    let mut c = HtmlCleaner::new(names());
    let n: usize = body
        .chunks(CHUNK)
        .map(|ch| c.write(ch).unwrap().len())
        .sum();
    n + c.end().unwrap().len()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rewriters");
    for (label, body) in [
        ("2KiB form, no ID", login_form(false)),
        ("2KiB form, with ID", login_form(true)),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("plain forward {label}"), |b| {
            b.iter(|| plain(&body))
        });
        g.bench_function(format!("form filter {label}"), |b| {
            b.iter(|| form_filter(&body))
        });
    }
    for (label, body) in [
        ("50KiB page, 200 links, no IDs", page(false)),
        ("50KiB page, 200 links with IDs", page(true)),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("plain forward {label}"), |b| {
            b.iter(|| plain(&body))
        });
        g.bench_function(format!("html cleaner {label}"), |b| {
            b.iter(|| html_clean(&body))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
