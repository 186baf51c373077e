//! Logs: setup, the access line, and redaction of what must never be logged.
//!
//! No cookie value, session ID or credential may reach a log line. The access
//! line carries the path without query or `;` parameters; request and
//! response headers are never logged. The libraries' own trace output (h2,
//! hyper-util, rustls) names frames and states, not header values; a test
//! runs the binary at trace level and greps for the secrets it sent.
//!
//! Every line goes to stdout through one [`Sink`]. Access lines gather there
//! and are written in batches (at most `[log] flush_interval` late, or when
//! 32 KiB have gathered), as nginx's `access_log ... buffer= flush=` does:
//! one `write` for many requests instead of one each. Every other line is
//! written at once, after the access lines before it, so the order holds.
//!
//! The access line is formatted here by hand, not by tracing-subscriber's
//! formatter: it is the one line written for every request, and the generic
//! formatter (field visitors, `fmt::Debug`, a timestamp rebuilt each time)
//! cost about as much as the rest of the request's user-space work
//! (docs/BENCHMARKS.md). The bytes are the same as the generic formatter's;
//! a test holds the two side by side.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Log, LogFormat};

/// Library targets whose detailed output can carry header values; they are
/// held at `info` even when the operator turns everything else up.
const CAPPED_TARGETS: &[&str] = &[];

/// The target of the access line.
pub const ACCESS_TARGET: &str = "access";

/// Gathered access lines are written once this many bytes are waiting.
const BATCH_BYTES: usize = 32 * 1024;

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

/// Where every log line goes: stdout, access lines in batches.
pub struct Sink {
    pending: Mutex<Vec<u8>>,
    /// How late a gathered access line may be written; zero writes each at once.
    flush_interval: Duration,
    format: LogFormat,
    /// The access line is formatted by hand unless colours are on.
    fast_access: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

impl Sink {
    /// Appends one line; writes what has gathered when the line must not
    /// wait or the batch is full.
    fn push(&self, line: &[u8], may_wait: bool) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.extend_from_slice(line);
        if !may_wait || self.flush_interval.is_zero() || pending.len() >= BATCH_BYTES {
            write_out(&mut pending);
        }
    }

    fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            write_out(&mut pending);
        }
    }
}

/// Writes and empties the buffer. A failed write (stdout closed, disk full)
/// drops those lines: logging must never stop the gateway.
fn write_out(pending: &mut Vec<u8>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(pending).and_then(|()| out.flush());
    pending.clear();
    if pending.capacity() > 4 * BATCH_BYTES {
        pending.shrink_to(BATCH_BYTES);
    }
}

/// Writes the access lines still gathered (at shutdown).
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush();
    }
}

/// One line from tracing-subscriber's formatter.
pub struct SinkWriter {
    sink: &'static Sink,
    may_wait: bool,
}

impl std::io::Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sink.push(buf, self.may_wait);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer handed to tracing-subscriber.
#[derive(Clone, Copy)]
pub struct SinkMaker(&'static Sink);

impl<'a> MakeWriter<'a> for SinkMaker {
    type Writer = SinkWriter;
    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter {
            sink: self.0,
            may_wait: false,
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SinkWriter {
        SinkWriter {
            sink: self.0,
            may_wait: meta.target() == ACCESS_TARGET,
        }
    }
}

/// Installs the global subscriber, writing to stdout, and the thread that
/// writes gathered access lines at least every `flush_interval`.
pub fn init(log: &Log) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let sink = SINK.get_or_init(|| Sink {
        pending: Mutex::new(Vec::with_capacity(BATCH_BYTES + 1024)),
        flush_interval: log.flush_interval,
        format: log.format,
        fast_access: !ansi,
    });
    if !sink.flush_interval.is_zero() {
        let every = sink.flush_interval;
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    sink.flush();
                }
            });
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&log.level))
        .with_ansi(ansi)
        .with_writer(SinkMaker(sink));
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

thread_local! {
    /// The access line being built, reused by every request on the thread.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// One access line per request.
pub fn access(a: &Access<'_>) {
    if !tracing::enabled!(target: "access", Level::INFO) {
        return;
    }
    match SINK.get() {
        Some(sink) if sink.fast_access => LINE.with_borrow_mut(|line| {
            line.clear();
            format_access(line, sink.format, SystemTime::now(), a);
            sink.push(line.as_bytes(), true);
        }),
        // Colours on (a terminal), or no sink installed (tests, the
        // library used on its own): the generic formatter.
        _ => tracing::info!(
            target: "access",
            site = a.site,
            client = %a.client,
            method = a.method.as_str(),
            path = a.path,
            status = a.status.as_u16(),
            upstream_status = a.upstream_status.map(|s| s.as_u16()),
            duration_us = a.elapsed.as_micros() as u64,
            "access"
        ),
    }
}

/// The access line, byte for byte as tracing-subscriber's text (without
/// target) or flattened JSON formatter writes it.
fn format_access(line: &mut String, format: LogFormat, now: SystemTime, a: &Access<'_>) {
    let mut num = itoa::Buffer::new();
    let duration_us = a.elapsed.as_micros() as u64;
    match format {
        LogFormat::Text => {
            push_timestamp(line, now);
            line.push_str("  INFO access site=");
            push_debug_str(line, a.site);
            line.push_str(" client=");
            push_ip(line, a.client);
            line.push_str(" method=");
            push_debug_str(line, a.method.as_str());
            line.push_str(" path=");
            push_debug_str(line, a.path);
            line.push_str(" status=");
            line.push_str(num.format(a.status.as_u16()));
            if let Some(u) = a.upstream_status {
                line.push_str(" upstream_status=");
                line.push_str(num.format(u.as_u16()));
            }
            line.push_str(" duration_us=");
            line.push_str(num.format(duration_us));
        }
        LogFormat::Json => {
            line.push_str("{\"timestamp\":\"");
            push_timestamp(line, now);
            line.push_str("\",\"level\":\"INFO\",\"message\":\"access\",\"site\":");
            push_json_str(line, a.site);
            line.push_str(",\"client\":\"");
            push_ip(line, a.client);
            line.push_str("\",\"method\":");
            push_json_str(line, a.method.as_str());
            line.push_str(",\"path\":");
            push_json_str(line, a.path);
            line.push_str(",\"status\":");
            line.push_str(num.format(a.status.as_u16()));
            if let Some(u) = a.upstream_status {
                line.push_str(",\"upstream_status\":");
                line.push_str(num.format(u.as_u16()));
            }
            line.push_str(",\"duration_us\":");
            line.push_str(num.format(duration_us));
            line.push_str(",\"target\":\"access\"}");
        }
    }
    line.push('\n');
}

/// Whether a string prints as itself between quotes, in Rust's `Debug` and
/// in JSON alike.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn push_debug_str(line: &mut String, s: &str) {
    if plain(s) {
        line.push('"');
        line.push_str(s);
        line.push('"');
    } else {
        let _ = write!(line, "{s:?}");
    }
}

fn push_json_str(line: &mut String, s: &str) {
    if plain(s) {
        line.push('"');
        line.push_str(s);
        line.push('"');
    } else {
        line.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// Appends an IP address as `Display` writes it, IPv4 without `fmt`.
pub fn push_ip(line: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                line.push_str(num.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
}

thread_local! {
    /// The second the timestamp prefix was made for, and the prefix
    /// (`2026-11-22T22:37:12.`): rebuilt once a second, not per line.
    static SECOND: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 UTC with microseconds, as tracing-subscriber's `SystemTime`.
fn push_timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != secs {
            *cached = secs;
            prefix.clear();
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let t = secs % 86_400;
            let _ = write!(
                prefix,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.",
                t / 3600,
                t / 60 % 60,
                t % 60
            );
        }
        line.push_str(prefix);
    });
    let micros = since.subsec_micros();
    let mut num = itoa::Buffer::new();
    let digits = num.format(micros);
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push('Z');
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

    /// A writer tracing-subscriber formats into, for comparison.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What tracing-subscriber's own formatter writes for the access event.
    fn generic(format: LogFormat, a: &Access<'_>) -> String {
        let cap = Capture::default();
        let out = cap.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || cap.clone());
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
            LogFormat::Text => Box::new(builder.with_target(false).finish()),
            LogFormat::Json => Box::new(
                builder
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .finish(),
            ),
        };
        tracing::subscriber::with_default(subscriber, || access(a));
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The line with its timestamp (the first 27 characters, or those after
    /// `{"timestamp":"`) blanked.
    fn untimed(line: &str) -> String {
        let at = line.find("20").unwrap();
        format!("{}{}", &line[..at], &line[at + 27..])
    }

    #[test]
    fn the_hand_made_access_line_is_the_generic_formatters_line() {
        let get = Method::GET;
        let odd = Method::from_bytes(b"PROPFIND").unwrap();
        let cases = [
            Access {
                site: "app",
                client: "192.0.2.7".parse().unwrap(),
                method: &get,
                path: "/a/b.php",
                status: StatusCode::OK,
                upstream_status: Some(StatusCode::OK),
                elapsed: Duration::from_micros(361),
            },
            Access {
                site: "-",
                client: "2001:db8::1".parse().unwrap(),
                method: &odd,
                path: "/q\"uote\\d/\u{e9}t\u{e9}/\t",
                status: StatusCode::MISDIRECTED_REQUEST,
                upstream_status: None,
                elapsed: Duration::from_secs(3),
            },
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            for a in &cases {
                let want = generic(format, a);
                let mut got = String::new();
                format_access(&mut got, format, SystemTime::now(), a);
                assert_eq!(untimed(&got), untimed(&want), "{format:?}");
            }
        }
    }

    #[test]
    fn ip_addresses_print_as_display_prints_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.0.2.30",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut got = String::new();
            push_ip(&mut got, ip);
            assert_eq!(got, ip.to_string());
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_795_387_032, 512_081, "2026-11-22T22:37:12.512081Z"),
            (4_107_542_399, 999_999, "2100-02-28T23:59:59.999999Z"),
        ];
        for (secs, micros, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            let mut got = String::new();
            push_timestamp(&mut got, t);
            assert_eq!(got, want);
        }
    }
}
