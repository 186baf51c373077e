//! Login and logout rules: which requests they cover, judged on the path as
//! the app will resolve it, so that `//login.php`, `/./login.php`,
//! `/%6Cogin.php` or `/login.php/x` (PATH_INFO) cannot slip past a rule for
//! `/login.php`.

use http::{HeaderMap, Method, StatusCode};

/// How a rule's path is compared with the normalised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path itself, or the path followed by `/...` (PHP's PATH_INFO and
    /// servlet mappings run the same script for `/login.php/x`).
    Exact(String),
    Prefix(String),
    /// `*` matches any run of characters, `/` included.
    Glob(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => {
                path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Glob(g) => glob(g.as_bytes(), path.as_bytes()),
        }
    }
}

fn glob(pattern: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with one backtrack point.
    let (mut p, mut i, mut star, mut mark) = (0, 0, None, 0);
    while i < s.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p] == s[i] {
            p += 1;
            i += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The path as the app resolves it: `;` parameters removed, percent-encoded
/// unreserved characters decoded, repeated slashes merged, dot segments
/// resolved (RFC 3986 §5.2.4).
pub fn normalize_path(path: &str) -> String {
    let mut decoded = String::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(c) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        {
            decoded.push(c as char);
            i += 3;
            continue;
        }
        decoded.push(b[i] as char);
        i += 1;
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.ends_with('/') && !out.is_empty();
    let mut s = String::with_capacity(decoded.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    s
}

/// What in a response says a login succeeded (at least one must hold).
#[derive(Debug, Clone, Default)]
pub struct LoginSignals {
    /// The upstream set or rotated a vaulted cookie.
    pub sets_session_cookie: bool,
    /// This response header is present.
    pub header: Option<http::HeaderName>,
    /// The `Location` matches this glob.
    pub location: Option<String>,
    /// The `Location` does not match this glob (a failed login that bounces
    /// back to the form).
    pub location_not: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LoginRule {
    pub method: Option<Method>,
    pub path: PathMatch,
    pub status: Vec<StatusCode>,
    pub signals: LoginSignals,
    /// Re-key the gateway token on success (off for a flow that breaks).
    pub rekey: bool,
}

#[derive(Debug, Clone)]
pub struct LogoutRule {
    pub method: Option<Method>,
    pub path: PathMatch,
}

impl LoginRule {
    pub fn covers(&self, method: &Method, normalized_path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(normalized_path)
    }

    /// Whether the response proves the login succeeded.
    pub fn succeeded(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        session_cookie_set: bool,
    ) -> bool {
        if !self.status.contains(&status) {
            return false;
        }
        let s = &self.signals;
        let location = headers
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        (s.sets_session_cookie && session_cookie_set)
            || s.header.as_ref().is_some_and(|h| headers.contains_key(h))
            || s.location
                .as_ref()
                .is_some_and(|g| location.is_some_and(|l| glob(g.as_bytes(), l.as_bytes())))
            || s.location_not
                .as_ref()
                .is_some_and(|g| location.is_some_and(|l| !glob(g.as_bytes(), l.as_bytes())))
    }
}

impl LogoutRule {
    pub fn covers(&self, method: &Method, normalized_path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(normalized_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let cases = [
            ("/login.php", "/login.php"),
            ("//login.php", "/login.php"),
            ("/./login.php", "/login.php"),
            ("/x/../login.php", "/login.php"),
            ("/../../login.php", "/login.php"),
            ("/%6Cogin.php", "/login.php"),
            ("/login%2Ephp", "/login.php"),
            ("/login.php;jsessionid=x", "/login.php"),
            ("/a//b/", "/a/b/"),
            ("/", "/"),
            ("", "/"),
            ("/login%2Fphp", "/login%2Fphp"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }

    #[test]
    fn rule_forms() {
        let exact = PathMatch::Exact("/login.php".into());
        for p in ["/login.php", "/login.php/x", "/login.php/"] {
            assert!(exact.matches(p), "{p}");
        }
        for p in ["/login.phpx", "/x/login.php", "/login"] {
            assert!(!exact.matches(p), "{p}");
        }
        assert!(PathMatch::Prefix("/auth/".into()).matches("/auth/login"));
        let g = PathMatch::Glob("/*/login".into());
        assert!(g.matches("/app/login") && g.matches("/a/b/login") && !g.matches("/app/login/x"));
        assert!(glob(b"*", b"") && glob(b"a*b*c", b"aXbYc") && !glob(b"a*b", b"ac"));
    }

    #[test]
    fn success_needs_a_status_and_a_signal() {
        let rule = LoginRule {
            method: Some(Method::POST),
            path: PathMatch::Exact("/login.php".into()),
            status: vec![StatusCode::FOUND, StatusCode::SEE_OTHER],
            signals: LoginSignals {
                sets_session_cookie: false,
                header: None,
                location: None,
                location_not: Some("*login*".into()),
            },
            rekey: true,
        };
        let mut h = HeaderMap::new();
        h.insert("location", "/home".parse().unwrap());
        assert!(rule.succeeded(StatusCode::FOUND, &h, false));
        assert!(!rule.succeeded(StatusCode::OK, &h, false));
        h.insert("location", "/login.php?failed=1".parse().unwrap());
        assert!(
            !rule.succeeded(StatusCode::FOUND, &h, false),
            "a bounce back to the form is no login"
        );
        assert!(
            !rule.succeeded(StatusCode::FOUND, &HeaderMap::new(), true),
            "no signal configured for cookies"
        );
    }
}
