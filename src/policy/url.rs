//! Session IDs in URLs: removed from `;` path parameters and from the
//! query, whatever their case or percent-encoding.
//!
//! Servlet containers read `;jsessionid=` path parameters; PHP with
//! `session.use_only_cookies=0` reads `?PHPSESSID=`. A URL that carries an ID
//! leaks it through the address bar, history, `Referer` and logs, and lets an
//! attacker fix a victim's session with a link.

use super::names::NameSet;

/// Removes every parameter whose name is in `names` from a path-and-query
/// (`/a;jsessionid=X/b?x=1&sid=Y`). `None` when nothing was removed.
///
/// Path parameters are split at `;` and at `%3B` (some containers decode the
/// path before splitting); names end at `=` or `%3D`. The query is split at
/// `&` and `;`. The fragment, if any, is kept.
pub fn strip(pq: &str, names: &NameSet) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let (before_frag, frag) = match pq.find('#') {
        Some(i) => pq.split_at(i),
        None => (pq, ""),
    };
    let (path, query) = match before_frag.find('?') {
        Some(i) => (&before_frag[..i], Some(&before_frag[i + 1..])),
        None => (before_frag, None),
    };
    let new_path = strip_path(path, names);
    let new_query = query.and_then(|q| strip_query(q, names));
    if new_path.is_none() && new_query.is_none() {
        return None;
    }
    let mut out = String::with_capacity(pq.len());
    out.push_str(new_path.as_deref().unwrap_or(path));
    match (new_query.as_deref(), query) {
        (Some(""), _) => {}
        (Some(q), _) | (None, Some(q)) => {
            out.push('?');
            out.push_str(q);
        }
        (None, None) => {}
    }
    out.push_str(frag);
    Some(out)
}

/// Cleans a URL as it appears in `Location`, `Content-Location` or
/// `Refresh`: absolute, scheme-relative or relative.
pub fn strip_in_url(url: &str, names: &NameSet) -> Option<String> {
    let start = if let Some(rest) = url.strip_prefix("//") {
        2 + rest.find(['/', '?', '#']).unwrap_or(rest.len())
    } else if let Some(colon) = url.find("://").filter(|&c| {
        url[..c]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    }) {
        let rest = &url[colon + 3..];
        colon + 3 + rest.find(['/', '?', '#']).unwrap_or(rest.len())
    } else {
        0
    };
    let (head, tail) = url.split_at(start);
    if !head.is_empty() {
        return strip(tail, names).map(|t| format!("{head}{t}"));
    }
    let stripped = strip(tail, names)?;
    // `https:/;jsessionid=1/evil.example/` is a reference on this host (a
    // scheme without `//`), which stripping would turn into
    // `https://evil.example/`: a result that gained an authority loses its
    // scheme and is kept on the host.
    Some(match authority_at(&stripped) {
        Some(at) if authority_at(url).is_none() => keep_on_host(stripped[at..].to_string()),
        _ => keep_on_host(stripped),
    })
}

/// Where a URL's `//` (or `\\`, as browsers read it) starts, if it has an
/// authority: right at the start or after a scheme, tabs and newlines
/// skipped as browsers skip them.
fn authority_at(url: &str) -> Option<usize> {
    let b = url.as_bytes();
    let skip = |mut i: usize| {
        while i < b.len() && matches!(b[i], b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    };
    let mut i = skip(0);
    let scheme_end = b[i..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || b"+.-\t\n\r".contains(&c)))
        .map(|n| i + n);
    if let Some(colon) = scheme_end.filter(|&c| c > i && b[c] == b':' && b[i].is_ascii_alphabetic())
    {
        i = colon + 1;
    }
    let start = i;
    let slash = |j: usize| matches!(b.get(j), Some(b'/' | b'\\'));
    i = skip(i);
    if !slash(i) {
        return None;
    }
    (slash(skip(i + 1))).then_some(start)
}

/// A path made by removing session IDs may start with two slashes
/// (`/;jsessionid=1/evil.example/` gives `//evil.example/`), which a browser
/// reads as another host: a reference to send as `Location` gets `/.` in
/// front, the same path on the same host. A backslash counts as a slash and
/// tabs and newlines are skipped, as browsers read them (WHATWG URL).
pub fn keep_on_host(path: String) -> String {
    let mut lead = path.bytes().filter(|b| !matches!(b, b'\t' | b'\n' | b'\r'));
    let slash = |b: Option<u8>| matches!(b, Some(b'/' | b'\\'));
    if slash(lead.next()) && slash(lead.next()) {
        format!("/.{path}")
    } else {
        path
    }
}

/// Finds the next parameter separator in a path segment: `;` or `%3B`.
fn next_sep(s: &str) -> Option<(usize, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b';' {
            return Some((i, 1));
        }
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1] == b'3' && (b[i + 2] | 0x20) == b'b' {
            return Some((i, 3));
        }
        i += 1;
    }
    None
}

/// The name of a parameter: up to `=` or `%3D`.
fn param_name(p: &str) -> &str {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            || (b[i] == b'%' && i + 2 < b.len() && b[i + 1] == b'3' && (b[i + 2] | 0x20) == b'd')
        {
            return &p[..i];
        }
        i += 1;
    }
    p
}

fn strip_path(path: &str, names: &NameSet) -> Option<String> {
    next_sep(path)?;
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let Some((first, _)) = next_sep(seg) else {
            out.push_str(seg);
            continue;
        };
        out.push_str(&seg[..first]);
        let mut rest = &seg[first..];
        // `rest` starts at a separator; each turn takes one parameter.
        while let Some((at, len)) = next_sep(rest) {
            debug_assert_eq!(at, 0);
            let body_start = len;
            let body_end =
                next_sep(&rest[body_start..]).map_or(rest.len(), |(n, _)| body_start + n);
            let param = &rest[body_start..body_end];
            if names.matches(param_name(param).as_bytes()) {
                changed = true;
            } else {
                out.push_str(&rest[..body_end]);
            }
            rest = &rest[body_end..];
        }
    }
    changed.then_some(out)
}

fn strip_query(query: &str, names: &NameSet) -> Option<String> {
    // Most queries carry no session parameter: look before allocating.
    if !query
        .split(['&', ';'])
        .any(|p| names.matches(param_name(p).as_bytes()))
    {
        return None;
    }
    let mut out = String::with_capacity(query.len());
    let (mut changed, mut kept_any) = (false, false);
    let mut sep_before = '&';
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let param = &rest[..end];
        if names.matches(param_name(param).as_bytes()) {
            changed = true;
        } else {
            if kept_any {
                out.push(sep_before);
            }
            out.push_str(param);
            kept_any = true;
        }
        let Some(sep) = rest[end..].chars().next() else {
            break;
        };
        sep_before = sep;
        rest = &rest[end + 1..];
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripped_path_never_leaves_the_host() {
        let names = NameSet::new(["PHPSESSID", "JSESSIONID", "sid"]);
        for (url, want) in [
            ("/;jsessionid=1/evil.example/", "/.//evil.example/"),
            ("/%3Bjsessionid=1/evil.example/x", "/.//evil.example/x"),
            ("/\\evil.example/;sid=1", "/./\\evil.example/"),
            ("/\t;jsessionid=1/evil.example", "/./\t/evil.example"),
            ("/a;jsessionid=1/b", "/a/b"),
            (
                "https://app.test/;jsessionid=1/evil.example/",
                "https://app.test//evil.example/",
            ),
        ] {
            assert_eq!(strip_in_url(url, &names).as_deref(), Some(want), "{url}");
        }
        // A request path that starts with two slashes is the client's own,
        // forwarded as it is; the redirect to its clean form is kept on the
        // host by the same function.
        assert_eq!(
            strip("//evil.example/?PHPSESSID=x", &names).as_deref(),
            Some("//evil.example/")
        );
        assert_eq!(keep_on_host("//evil.example/".into()), "/.//evil.example/");
        assert_eq!(keep_on_host("/a//b".into()), "/a//b");
        // A scheme without `//` is this host too: stripping must not give
        // it an authority.
        for (url, want) in [
            ("https:/;jsessionid=1/evil.example/", "/.//evil.example/"),
            ("https:;jsessionid=1//evil.example/", "/.//evil.example/"),
            (
                "HTTPS:\t/;jsessionid=1/\\evil.example/",
                "/.\t//\\evil.example/",
            ),
            (
                "mailto:a@b.test?subject=x&PHPSESSID=1",
                "mailto:a@b.test?subject=x",
            ),
        ] {
            assert_eq!(strip_in_url(url, &names).as_deref(), Some(want), "{url}");
        }
    }

    fn names() -> NameSet {
        NameSet::new(["PHPSESSID", "JSESSIONID", "sid", "ASPSESSIONID*"])
    }

    #[test]
    fn strip_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/", None),
            ("/a/b?x=1", None),
            ("/a?PHPSESSID=abc", Some("/a")),
            ("/a?PHPSESSID=abc&x=1", Some("/a?x=1")),
            ("/a?x=1&PHPSESSID=abc", Some("/a?x=1")),
            ("/a?x=1&PHPSESSID=abc&y=2", Some("/a?x=1&y=2")),
            ("/a?phpsessid=abc&PhpSessId=def&x=1", Some("/a?x=1")),
            ("/a?PHPSESS%49D=abc", Some("/a")),
            ("/a?%50HPSESSID%3dabc", Some("/a")),
            ("/a?PHPSESSID=", Some("/a")),
            ("/a?PHPSESSID", Some("/a")),
            ("/a?PHPSESSID[]=x", Some("/a")),
            ("/a?x=1;sid=2;y=3", Some("/a?x=1;y=3")),
            ("/a?PHPSESSIDX=1", None),
            ("/a?x=PHPSESSID", None),
            ("/a;jsessionid=ABC", Some("/a")),
            ("/a;jsessionid=ABC/b?x=1", Some("/a/b?x=1")),
            ("/a;JSESSIONID=ABC;other=1/b", Some("/a;other=1/b")),
            ("/a;other=1;jsessionid=ABC", Some("/a;other=1")),
            ("/a%3Bjsessionid%3DABC/b", Some("/a/b")),
            ("/a%3bjsessionid=ABC", Some("/a")),
            (
                "/a;jsessionid=1;jsessionid=2/b;jsessionid=3?sid=4",
                Some("/a/b"),
            ),
            ("/a;x=1", None),
            ("/a?x=1#frag", None),
            ("/a?sid=1#frag", Some("/a#frag")),
            ("/a?ASPSESSIONIDQQGG=1", Some("/a")),
            ("/a?&&sid=1", Some("/a?&")),
        ];
        for (input, want) in cases {
            assert_eq!(strip(input, &names()).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn stripping_twice_changes_nothing() {
        for input in [
            "/a;jsessionid=1?sid=2&x=3",
            "/a?x=1;sid=2;y=3",
            "/a%3Bsid%3D1;b=2",
        ] {
            let once = strip(input, &names()).unwrap();
            assert_eq!(strip(&once, &names()), None, "{input} -> {once}");
        }
    }

    #[test]
    fn urls_in_headers() {
        let n = names();
        assert_eq!(
            strip_in_url("http://app.test/a;jsessionid=X?sid=1", &n).as_deref(),
            Some("http://app.test/a")
        );
        assert_eq!(
            strip_in_url("//app.test/a?sid=1&b=2", &n).as_deref(),
            Some("//app.test/a?b=2")
        );
        assert_eq!(
            strip_in_url("next.php?PHPSESSID=1", &n).as_deref(),
            Some("next.php")
        );
        assert_eq!(
            strip_in_url("https://app.test?sid=1", &n).as_deref(),
            Some("https://app.test")
        );
        assert_eq!(strip_in_url("https://app.test/", &n), None);
    }
}
