//! Every session lifecycle step emits its audit record, with a keyed
//! fingerprint of the token and never the token itself (issue 4, point 11).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use http::{Request, Response};

/// All log output of this test binary, as JSON lines.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("info")
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn audit_lines(site: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&captured().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| {
            l.contains("\"target\":\"audit\"") && l.contains(&format!("\"site\":\"{site}\""))
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn lifecycle_steps_are_audited_without_tokens() {
    captured();
    let app = Upstream::recording(|seen| {
        let b = Response::builder();
        let b = match seen.uri.path() {
            "/new" => b.header(
                "set-cookie",
                format!("PHPSESSID={}; path=/", seen.uri.query().unwrap_or("fresh")),
            ),
            "/login.php" => b.status(302).header("location", "/home"),
            "/logout.php" => b.status(302).header("location", "/"),
            _ => b,
        };
        b.body(full("")).unwrap()
    })
    .await;
    let extra = "name = \"audited\"\nsession.unknown_token_burst = 2\nsession.unknown_token_per_minute = 1\n\
                 [[site.login]]\npath = \"/login.php\"\nlocation_not = \"*login*\"\n[[site.logout]]\npath = \"/logout.php\"";
    let pki = Pki::new();
    let toml = format!(
        "[store]\nmax_sessions = 3\n{}",
        site_toml(
            &["app.test"],
            &pki.leaf("a", &["app.test"]),
            &app.url(),
            extra
        )
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::new(&pki, gw.https);
    let mut seen_tokens = Vec::new();

    // created
    let t1 = token_of(&c.get("https://app.test/new?one").await).unwrap();
    seen_tokens.push(t1.clone());
    // vaulted_cookie_from_client
    let mut req = with_token(get("https://app.test/page"), &t1);
    req.headers_mut()
        .append("cookie", "PHPSESSID=planted".parse().unwrap());
    c.send(Proto::H1, req).await;
    // re-keyed
    let req = with_token(
        Request::post("https://app.test/login.php")
            .body(full(""))
            .unwrap(),
        &t1,
    );
    let t2 = token_of(&c.send(Proto::H1, req).await).unwrap();
    seen_tokens.push(t2.clone());
    // backend_value_conflict: a second session handed the first one's value
    let t3 = token_of(&c.get("https://app.test/new?one").await);
    seen_tokens.extend(t3);
    // refused cross-site
    let mut req = get("https://app.test/new?two");
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    c.send(Proto::H1, req).await;
    // evicted: fill the store (max 3) with anonymous sessions
    for q in ["a", "b", "c", "d"] {
        if let Some(t) = token_of(&c.get(&format!("https://app.test/new?{q}")).await) {
            seen_tokens.push(t);
        }
    }
    // logged out
    c.send(
        Proto::H1,
        with_token(get("https://app.test/logout.php"), &t2),
    )
    .await;
    // unknown token, then rate limited
    for _ in 0..3 {
        c.send(
            Proto::H1,
            with_token(get("https://app.test/page"), &"Z".repeat(43)),
        )
        .await;
    }

    let lines = audit_lines("audited");
    let joined = lines.join("\n");
    for event in [
        "session_created",
        "vaulted_cookie_from_client",
        "session_rekeyed",
        "backend_value_conflict",
        "session_refused_cross_site",
        "session_evicted",
        "logged_out",
        "unknown_token",
        "rate_limited",
    ] {
        assert!(
            joined.contains(&format!("\"event\":\"{event}\"")),
            "no {event} in:\n{joined}"
        );
    }
    for t in &seen_tokens {
        assert!(!joined.contains(t.as_str()), "a token in the audit log");
    }
    assert!(
        !joined.contains("planted"),
        "a cookie value in the audit log"
    );
    // The re-key record carries fingerprints that tie the old and new token
    // together, and the creation record the same fingerprint as the old one.
    let rekey = lines
        .iter()
        .find(|l| l.contains("session_rekeyed"))
        .unwrap();
    let created_fp = lines
        .iter()
        .find(|l| l.contains("session_created"))
        .and_then(|l| l.split("token=").nth(1))
        .map(|s| s[..16].to_string())
        .unwrap();
    assert!(rekey.contains(&format!("token={created_fp}")), "{rekey}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_full_store_of_logged_in_users_refuses_with_an_audit_record() {
    captured();
    let app = Upstream::recording(|seen| {
        let b = Response::builder();
        let b = match seen.uri.path() {
            "/new" => b.header(
                "set-cookie",
                format!("PHPSESSID={}; path=/", seen.uri.query().unwrap_or("x")),
            ),
            "/login.php" => b.status(302).header("location", "/home"),
            _ => b,
        };
        b.body(full("")).unwrap()
    })
    .await;
    let extra =
        "name = \"full\"\n[[site.login]]\npath = \"/login.php\"\nlocation_not = \"*login*\"";
    let pki = Pki::new();
    let toml = format!(
        "[store]\nmax_sessions = 1\n{}",
        site_toml(
            &["app.test"],
            &pki.leaf("a", &["app.test"]),
            &app.url(),
            extra
        )
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::new(&pki, gw.https);
    let t = token_of(&c.get("https://app.test/new?first").await).unwrap();
    c.send(
        Proto::H1,
        with_token(
            Request::post("https://app.test/login.php")
                .body(full(""))
                .unwrap(),
            &t,
        ),
    )
    .await;
    assert_eq!(c.get("https://app.test/new?second").await.status, 503);
    assert!(
        audit_lines("full")
            .iter()
            .any(|l| l.contains("\"event\":\"session_refused\""))
    );
    gw.shutdown().await;
}
