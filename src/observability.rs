//! Logs: setup, the access line, and redaction of what must never be logged.
//!
//! No cookie value, session ID or credential may reach a log line. The access
//! line carries the path without query or `;` parameters; request and
//! response headers are never logged. The libraries' own trace output (h2,
//! hyper-util, rustls) names frames and states, not header values; a test
//! runs the binary at trace level and greps for the secrets it sent.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Library targets whose detailed output can carry header values; they are
/// held at `info` even when the operator turns everything else up.
const CAPPED_TARGETS: &[&str] = &[];

/// Builds the filter: the configured level (or `RUST_LOG`), then the caps.
pub fn filter(level: &str) -> EnvFilter {
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut spec = base.unwrap_or_else(|| level.to_string());
    for cap in CAPPED_TARGETS {
        spec.push(',');
        spec.push_str(cap);
    }
    EnvFilter::builder()
        .parse(&spec)
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}", CAPPED_TARGETS.join(","))))
}

/// Installs the global subscriber, writing to stdout.
pub fn init(log: &Log) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&log.level))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let _ = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The path as logged: each segment cut at its first `;` (servlet path
/// parameters such as `;jsessionid=`), raw or percent-encoded.
pub fn loggable_path(path: &str) -> Cow<'_, str> {
    if !path.contains(';') && !path.contains("%3B") && !path.contains("%3b") {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let cut = [seg.find(';'), seg.find("%3B"), seg.find("%3b")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(seg.len());
        out.push_str(&seg[..cut]);
    }
    Cow::Owned(out)
}

pub struct Access<'a> {
    pub site: &'a str,
    pub client: IpAddr,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub upstream_status: Option<StatusCode>,
    pub elapsed: Duration,
}

/// One access line per request.
pub fn access(a: &Access<'_>) {
    tracing::info!(
        target: "access",
        site = a.site,
        client = %a.client,
        method = a.method.as_str(),
        path = a.path,
        status = a.status.as_u16(),
        upstream_status = a.upstream_status.map(|s| s.as_u16()),
        duration_us = a.elapsed.as_micros() as u64,
        "access"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_cut_from_logged_paths() {
        let cases = [
            ("/a/b", "/a/b"),
            ("/a;jsessionid=SECRET/b", "/a/b"),
            ("/a%3Bjsessionid%3DSECRET", "/a"),
            ("/x%3bsid=S;y", "/x"),
            ("/;a=1/;b=2", "//"),
        ];
        for (input, want) in cases {
            assert_eq!(loggable_path(input), want, "{input}");
        }
        assert!(matches!(loggable_path("/plain"), Cow::Borrowed(_)));
    }
}
