//! Rewriting `Location`, `Content-Location` and `Refresh` so that a redirect
//! never sends the browser around the gateway or to plain HTTP (what nginx's
//! `proxy_redirect default` does, plus the `http://` public-host case).

use http::uri::Authority;

/// What a response's URLs are rewritten against.
pub struct Public<'a> {
    /// The upstream's own authority (`127.0.0.1:3000`).
    pub upstream: &'a Authority,
    /// The upstream's default port, for `host` vs `host:80` comparisons.
    pub upstream_default_port: u16,
    /// The authority the client used (`app.example.com:8443`).
    pub host: &'a str,
    /// All names of the site, lower-case.
    pub site_hosts: &'a [String],
}

/// Returns the rewritten URL, or `None` when `url` needs no change.
pub fn rewrite_url(url: &str, p: &Public<'_>) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("//") {
        (None, rest)
    } else {
        let colon = url.find("://")?;
        let scheme = &url[..colon];
        if !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
        {
            return None;
        }
        (Some(scheme), &url[colon + 3..])
    };
    let is_http = scheme.is_some_and(|s| s.eq_ignore_ascii_case("http"));
    let is_https = scheme.is_some_and(|s| s.eq_ignore_ascii_case("https"));
    if scheme.is_some() && !is_http && !is_https {
        return None;
    }
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    let upstream_port = p.upstream.port_u16().unwrap_or(p.upstream_default_port);
    let default_port = if is_https { 443 } else { 80 };
    let same_as_upstream = host.eq_ignore_ascii_case(p.upstream.host())
        && port.unwrap_or(default_port) == upstream_port;
    if same_as_upstream {
        return Some(format!("https://{}{}", p.host, tail));
    }
    // `http://` (or scheme-relative, when the page itself came over http) on
    // one of the site's own names: send it to https on the public port.
    if is_http {
        let lower = host.to_ascii_lowercase();
        if p.site_hosts.contains(&lower) {
            let public_port = split_host_port(p.host).and_then(|(_, port)| port);
            return Some(match public_port {
                Some(port) => format!("https://{host}:{port}{tail}"),
                None => format!("https://{host}{tail}"),
            });
        }
    }
    None
}

/// Rewrites the URL inside a `Refresh` value (`5; url=http://...`).
pub fn rewrite_refresh(value: &str, p: &Public<'_>) -> Option<String> {
    map_refresh_url(value, |url| rewrite_url(url, p))
}

/// Applies `f` to the URL inside a `Refresh` value, keeping the rest.
pub fn map_refresh_url(value: &str, f: impl FnOnce(&str) -> Option<String>) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("url")?;
    let after = value[at + 3..].trim_start();
    let after = after.strip_prefix('=')?.trim_start();
    let (quote, inner) = match after.chars().next() {
        Some(q @ ('\'' | '"')) => (Some(q), &after[1..]),
        _ => (None, after),
    };
    let url = match quote {
        Some(q) => inner.split(q).next().unwrap_or(inner),
        None => inner,
    };
    let new = f(url)?;
    let start = value.len() - after.len();
    let q = quote.map(String::from).unwrap_or_default();
    Some(format!("{}{q}{new}{q}", &value[..start]))
}

/// Splits `host:port`, `[v6]:port`, `host`; `None` when the port is not a
/// number.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &authority[..close + 2];
        return match &rest[close + 1..] {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public<'a>(up: &'a Authority, hosts: &'a [String]) -> Public<'a> {
        Public {
            upstream: up,
            upstream_default_port: 80,
            host: "app.example.com:8443",
            site_hosts: hosts,
        }
    }

    #[test]
    fn location_cases() {
        let up = Authority::from_static("127.0.0.1:3000");
        let hosts = vec!["app.example.com".to_string(), "www.example.com".to_string()];
        let p = public(&up, &hosts);
        let cases: &[(&str, Option<&str>)] = &[
            (
                "http://127.0.0.1:3000/home?x=1",
                Some("https://app.example.com:8443/home?x=1"),
            ),
            (
                "HTTP://127.0.0.1:3000",
                Some("https://app.example.com:8443"),
            ),
            ("//127.0.0.1:3000/a", Some("https://app.example.com:8443/a")),
            ("http://127.0.0.1:3001/a", None),
            (
                "http://app.example.com/a#frag",
                Some("https://app.example.com:8443/a#frag"),
            ),
            (
                "http://APP.example.com:8080/a",
                Some("https://APP.example.com:8443/a"),
            ),
            (
                "http://www.example.com/",
                Some("https://www.example.com:8443/"),
            ),
            ("https://app.example.com:8443/a", None),
            ("http://elsewhere.example/a", None),
            ("/relative/path", None),
            ("relative", None),
            ("javascript:alert(1)", None),
            ("http://user@127.0.0.1:3000/", None),
            (
                "http://127.0.0.1:3000\\@evil.example/",
                Some("https://app.example.com:8443\\@evil.example/"),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite_url(input, &p).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn default_ports_compare_equal() {
        let up = Authority::from_static("backend");
        let hosts = vec![];
        let p = public(&up, &hosts);
        assert_eq!(
            rewrite_url("http://backend:80/x", &p).as_deref(),
            Some("https://app.example.com:8443/x")
        );
        assert_eq!(rewrite_url("https://backend/x", &p), None);
    }

    #[test]
    fn refresh_cases() {
        let up = Authority::from_static("127.0.0.1:3000");
        let hosts = vec!["app.example.com".to_string()];
        let p = public(&up, &hosts);
        assert_eq!(
            rewrite_refresh("5; url=http://127.0.0.1:3000/next", &p).as_deref(),
            Some("5; url=https://app.example.com:8443/next")
        );
        assert_eq!(
            rewrite_refresh("0;URL='http://app.example.com/x'", &p).as_deref(),
            Some("0;URL='https://app.example.com:8443/x'")
        );
        assert_eq!(rewrite_refresh("5", &p), None);
        assert_eq!(rewrite_refresh("5; url=/local", &p), None);
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:1"), Some(("a", Some(1))));
        assert_eq!(split_host_port("[::1]:8443"), Some(("[::1]", Some(8443))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("a:x"), None);
        assert_eq!(split_host_port("[::1]x"), None);
    }
}
