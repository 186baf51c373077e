//! Input that needs no change is not copied: the policy functions allocate
//! nothing for a clean URL, a clean `Cookie` header or an already hardened
//! `Set-Cookie`. A counting global allocator (this file is its own test
//! binary) counts the allocations made by the current thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sessiongate::policy::cookie::CookieRules;
use sessiongate::policy::names::NameSet;
use sessiongate::policy::set_cookie::{CookiePolicy, Outcome, SameSite, harden};
use sessiongate::policy::url::{strip, strip_in_url};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the slot may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `f` makes on this thread, and its result.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = std::hint::black_box(f());
    let after = ALLOCATIONS.with(Cell::get);
    (after - before, out)
}

#[test]
fn the_counter_counts() {
    let (n, v) = allocations(|| vec![1u8; 3]);
    assert_eq!((n, v.len()), (1, 3));
}

fn url_names() -> NameSet {
    NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "ASPSESSIONID*"])
}

#[test]
fn clean_path_is_not_copied() {
    let names = url_names();
    for url in ["/", "/account/settings", "/static/app.css#top"] {
        let (n, out) = allocations(|| strip(url, &names));
        assert_eq!(out, None, "{url}");
        assert_eq!(n, 0, "strip({url:?}) allocated {n} times");
    }
}

#[test]
fn clean_query_is_not_copied() {
    let names = url_names();
    for url in [
        "/account/settings?tab=profile&page=2",
        "/search?q=sessions;lang=en",
    ] {
        let (n, out) = allocations(|| strip(url, &names));
        assert_eq!(out, None, "{url}");
        assert_eq!(n, 0, "strip({url:?}) allocated {n} times");
    }
    let (n, out) = allocations(|| strip_in_url("https://app.test/a?x=1", &names));
    assert_eq!(out, None);
    assert_eq!(n, 0, "strip_in_url allocated {n} times");
}

#[test]
fn clean_cookie_header_is_not_copied() {
    let rules = CookieRules {
        forward: NameSet::new(["PHPSESSID", "lang", "theme"]),
        host_prefixed: Vec::new(),
        gateway: Some("__Host-sg".into()),
        watch: NameSet::default(),
    };
    let header: [&[u8]; 1] = [b"PHPSESSID=9f2c1e7ab04d; lang=en; theme=dark"];
    let (n, v) = allocations(|| {
        let v = rules.vet(&header);
        (v.unchanged, v.dropped)
    });
    assert_eq!(v, (true, 0));
    assert_eq!(n, 0, "vet allocated {n} times");
}

#[test]
fn hardened_set_cookie_is_not_copied() {
    let policy = CookiePolicy {
        same_site: SameSite::Lax,
        max_lifetime: Some(86_400),
        script_readable: NameSet::new(["XSRF-TOKEN"]),
        session_cookies: NameSet::default(),
        allow_domains: vec!["app.test".into()],
        overrides: Vec::new(),
    };
    for line in [
        &b"PHPSESSID=9f2c1e7ab04d; path=/; Secure; HttpOnly; SameSite=Lax"[..],
        b"JSESSIONID=0A1B2C; Path=/app; Secure; HttpOnly; SameSite=Strict; Max-Age=3600",
        b"session=eyJ1IjoiYSJ9; Expires=Tue, 14 Nov 2023 23:13:20 GMT; Domain=app.test; secure; httponly; samesite=lax",
    ] {
        let (n, out) = allocations(|| harden(line, &policy, "app.test", 1_700_000_000));
        let line = String::from_utf8_lossy(line);
        assert_eq!(out, Outcome::Unchanged, "{line}");
        assert_eq!(n, 0, "harden({line:?}) allocated {n} times");
    }
}
