//! The session vault over real sockets (issue 4): both sides of the wire.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// A legacy app: PHPSESSID handed out on `/new`, a login that never
/// regenerates the ID, a logout that starts a new session, `/adopt?id=X`
/// that takes a session ID the caller names (as apps with
/// `use_strict_mode=0` do).
async fn legacy_app() -> Upstream {
    let n = Arc::new(AtomicU64::new(0));
    Upstream::recording(move |seen| {
        let path = seen.uri.path();
        let fresh = || {
            format!(
                "PHPSESSID=backend{}; path=/",
                n.fetch_add(1, Ordering::SeqCst)
            )
        };
        let b = Response::builder();
        let res = match (seen.method.as_str(), path) {
            ("GET", "/new") => b.header("set-cookie", fresh()),
            // Like a real server, it decodes the path before routing.
            ("POST", p) if p.replace("%6C", "l").contains("login.php") => {
                if seen.body.as_ref() == b"password=right" {
                    b.status(302).header("location", "/home")
                } else {
                    b.status(302).header("location", "/login.php?failed=1")
                }
            }
            ("GET", "/logout.php") => b
                .status(302)
                .header("location", "/")
                .header("set-cookie", fresh()),
            ("GET", "/adopt") => {
                let id = seen.uri.query().unwrap_or("").trim_start_matches("id=");
                b.header("set-cookie", format!("PHPSESSID={id}; path=/"))
            }
            _ => b,
        };
        res.body(full("page")).unwrap()
    })
    .await
}

const RULES: &str = r#"
[[site.login]]
path = "/login.php"
location_not = "*login*"

[[site.logout]]
path = "/logout.php"
"#;

async fn get_with(c: &Client, path: &str, token: &str) -> Resp {
    c.send(
        Proto::H1,
        with_token(get(&format!("https://app.test{path}")), token),
    )
    .await
}

async fn login(c: &Client, path: &str, token: &str, password: &str) -> Resp {
    let req = Request::post(format!("https://app.test{path}"))
        .body(full(format!("password={password}")))
        .unwrap();
    c.send(Proto::H2, with_token(req, token)).await
}

fn seen_cookie(up: &Upstream) -> Option<String> {
    up.last()
        .headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn setup(extra: &str) -> Setup {
    Setup::new(legacy_app().await, "", &format!("{extra}\n{RULES}")).await
}

#[tokio::test]
async fn the_browser_holds_only_the_gateway_token() {
    let s = setup("").await;
    let res = s.client.get("https://app.test/new").await;
    let cookies = res.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = cookies[0].as_str();
    assert!(c.starts_with("__Host-sg="), "{c}");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(c.contains(attr), "{attr} missing from {c}");
    }
    assert!(!c.contains("Domain"), "{c}");
    assert_eq!(res.header("cache-control"), Some("private, no-store"));
    let token = token_of(&res).unwrap();
    assert_eq!(token.len(), 43);
    // The backend ID appears nowhere in the response.
    let all = format!("{:?}{}", res.headers, res.text());
    assert!(!all.contains("backend0"), "{all}");
    // The next request carries only the token; the app sees its own cookie.
    get_with(&s.client, "/page", &token).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
}

#[tokio::test]
async fn anonymous_traffic_creates_no_session() {
    let s = setup("").await;
    let res = s.client.get("https://app.test/static.css").await;
    assert!(res.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn client_sent_backend_cookies_never_reach_the_app() {
    let s = setup("").await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let mut req = with_token(get("https://app.test/page"), &token);
    req.headers_mut()
        .append("cookie", "PHPSESSID=planted".parse().unwrap());
    s.client.send(Proto::H1, req).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
    // Without a token, a planted cookie reaches nothing.
    let mut req = get("https://app.test/page");
    req.headers_mut().insert(
        "cookie",
        "PHPSESSID=planted; phpsessid=again".parse().unwrap(),
    );
    s.client.send(Proto::H2, req).await;
    assert_eq!(seen_cookie(&s.upstream), None);
}

#[tokio::test]
async fn login_rekeys_and_the_fixed_token_dies() {
    for login_path in ["/login.php", "/login.php/x", "//login.php", "/%6Cogin.php"] {
        let s = setup("").await;
        // The attacker obtains a token and plants it in the victim's browser.
        let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
        // The victim logs in with it.
        let res = login(&s.client, login_path, &planted, "right").await;
        assert_eq!(res.status, 302, "{login_path}");
        let fresh = token_of(&res).unwrap_or_else(|| panic!("no re-key for {login_path}"));
        assert_ne!(fresh, planted);
        assert_eq!(res.header("cache-control"), Some("private, no-store"));
        // The victim's new token carries the (logged-in) backend session.
        get_with(&s.client, "/account", &fresh).await;
        assert_eq!(
            seen_cookie(&s.upstream).as_deref(),
            Some("PHPSESSID=backend0")
        );
        // The attacker's replay gets the anonymous view: no backend cookie,
        // and no cookie clearing that would disturb anyone.
        let res = get_with(&s.client, "/account", &planted).await;
        assert_eq!(seen_cookie(&s.upstream), None, "{login_path}");
        assert!(
            res.headers.get("set-cookie").is_none(),
            "a tombstoned token gets no cookie set or cleared"
        );
    }
}

#[tokio::test]
async fn a_failed_login_rekeys_too_and_the_session_goes_on() {
    // A login re-keys as it starts, whatever its outcome: a failed one hands
    // out a new token for the same (still anonymous) app session.
    let s = setup("").await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let res = login(&s.client, "/login.php", &token, "wrong").await;
    assert_eq!(res.header("location"), Some("/login.php?failed=1"));
    let fresh = token_of(&res).expect("a new token");
    assert_ne!(fresh, token);
    get_with(&s.client, "/page", &fresh).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
    get_with(&s.client, "/page", &token).await;
    assert_eq!(seen_cookie(&s.upstream), None, "the old token still works");
}

#[tokio::test]
async fn one_backend_session_one_gateway_session() {
    let s = setup("").await;
    let victim = token_of(&s.client.get("https://app.test/adopt?id=known123").await).unwrap();
    // The attacker makes the app hand the same backend ID to a second session.
    let attacker = token_of(&s.client.get("https://app.test/adopt?id=known123").await);
    get_with(&s.client, "/page", &victim).await;
    assert_eq!(
        seen_cookie(&s.upstream),
        None,
        "the contested value was taken from both"
    );
    if let Some(a) = attacker {
        get_with(&s.client, "/page", &a).await;
        assert_eq!(seen_cookie(&s.upstream), None);
    }
}

#[tokio::test]
async fn logout_destroys_the_session_and_clears_the_cookie() {
    let s = setup("session.clear_site_data = true").await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let res = get_with(&s.client, "/logout.php", &token).await;
    let cookies = res.set_cookies();
    assert_eq!(
        cookies.len(),
        1,
        "the app's new session cookie does not start a new session: {cookies:?}"
    );
    assert!(
        cookies[0].starts_with("__Host-sg=;") && cookies[0].contains("Max-Age=0"),
        "{cookies:?}"
    );
    assert_eq!(res.header("clear-site-data"), Some("\"cookies\""));
    // The old token, replayed, gets no backend cookie.
    get_with(&s.client, "/page", &token).await;
    assert_eq!(seen_cookie(&s.upstream), None);
}

#[tokio::test]
async fn a_token_is_nothing_on_another_site() {
    let pki = Pki::new();
    let app = legacy_app().await;
    let toml = format!(
        "{}\n{}",
        site_toml(&["app.test"], &pki.leaf("a", &["app.test"]), &app.url(), ""),
        site_toml(
            &["other.test"],
            &pki.leaf("b", &["other.test"]),
            &app.url(),
            ""
        )
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::new(&pki, gw.https);
    let token = token_of(&c.get("https://app.test/new").await).unwrap();
    c.send(
        Proto::H1,
        with_token(get("https://other.test/page"), &token),
    )
    .await;
    assert_eq!(seen_cookie(&app), None);
}

#[tokio::test]
async fn cross_site_requests_without_a_token_never_set_the_cookie() {
    let s = setup("").await;
    let mut req = Request::post("https://app.test/new")
        .header("origin", "https://evil.test")
        .body(full(""))
        .unwrap();
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    // (POST /new hands out no cookie in this app; use GET with fetch metadata.)
    let _ = s.client.send(Proto::H1, req).await;
    let mut req = get("https://app.test/new");
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let res = s.client.send(Proto::H1, req).await;
    assert!(res.headers.get("set-cookie").is_none(), "{:?}", res.headers);
}

#[tokio::test]
async fn unknown_tokens_are_cleared_once_and_guessing_is_throttled() {
    let s = setup("session.unknown_token_burst = 3\nsession.unknown_token_per_minute = 1").await;
    let guess = "A".repeat(43);
    let res = get_with(&s.client, "/page", &guess).await;
    assert_eq!(res.status, 200, "an unknown token is served as anonymous");
    assert!(res.clears_token(), "{:?}", res.set_cookies());
    for _ in 0..2 {
        assert_eq!(get_with(&s.client, "/page", "malformed").await.status, 200);
    }
    let res = get_with(&s.client, "/page", &guess).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        res.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
    );
    // Requests without a token are never refused for this.
    assert_eq!(s.client.get("https://app.test/page").await.status, 200);
}

#[tokio::test]
async fn duplicate_gateway_cookies_use_the_one_live_value_and_never_clear() {
    let s = setup("").await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let tossed = |req: Request<TestBody>| {
        let mut req = with_token(req, &token);
        req.headers_mut().append(
            "cookie",
            format!("__host-sg={}", "B".repeat(43)).parse().unwrap(),
        );
        req
    };
    let res = s
        .client
        .send(Proto::H2, tossed(get("https://app.test/page")))
        .await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
    assert!(
        res.headers.get("set-cookie").is_none(),
        "no clearing loop against a tossed cookie"
    );
    // The tossed cookie does not freeze the session: the app may still
    // rotate its ID, and the vault follows.
    s.client
        .send(Proto::H1, tossed(get("https://app.test/new")))
        .await;
    get_with(&s.client, "/page", &token).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend1")
    );
}

#[tokio::test]
async fn a_full_store_refuses_new_sessions_rather_than_logging_anyone_out() {
    let pki = Pki::new();
    let app = legacy_app().await;
    let toml = format!(
        "[store]\nmax_sessions = 1\n{}",
        site_toml(
            &["app.test"],
            &pki.leaf("a", &["app.test"]),
            &app.url(),
            RULES
        )
    );
    let gw = TestGateway::start(&toml).await;
    let c = Client::new(&pki, gw.https);
    let first = token_of(&c.get("https://app.test/new").await).unwrap();
    let logged_in = token_of(&login(&c, "/login.php", &first, "right").await).unwrap();
    assert_eq!(
        c.get("https://app.test/new").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    get_with(&c, "/page", &logged_in).await;
    assert_eq!(
        seen_cookie(&app).as_deref(),
        Some("PHPSESSID=backend0"),
        "the logged-in user is still logged in"
    );
}

/// An app that answers each login only when the test says so: every
/// login request hands the test a sender to fire. Other paths echo the
/// `Cookie` they got in `x-seen-cookie`; a request without one starts a new
/// (anonymous) session, as PHP does.
/// `/api` reads its body whole before it runs, as PHP's built-in server
/// does, and records the `Cookie` it ran with.
async fn held_login_app() -> (Upstream, mpsc::Receiver<oneshot::Sender<()>>, Ran) {
    let (logins_tx, logins_rx) = mpsc::channel::<oneshot::Sender<()>>(4);
    let ran = Ran::default();
    let ran_in_app = ran.clone();
    let app = Upstream::custom(move |req: Request<hyper::body::Incoming>| {
        let (logins, ran) = (logins_tx.clone(), ran_in_app.clone());
        async move {
            let cookie = req
                .headers()
                .get("cookie")
                .map(|v| v.to_str().unwrap().to_string());
            let b = Response::builder().header("x-seen-cookie", cookie.clone().unwrap_or_default());
            let b = if cookie.is_none() {
                b.header("set-cookie", "PHPSESSID=anonsid; path=/")
            } else {
                b
            };
            match req.uri().path() {
                "/new" => Response::builder()
                    .header("set-cookie", "PHPSESSID=victimsid; path=/")
                    .body(full(""))
                    .unwrap(),
                "/login.php" => {
                    let (go_tx, go_rx) = oneshot::channel();
                    logins.send(go_tx).await.unwrap();
                    let _ = go_rx.await;
                    b.status(302)
                        .header("location", "/home")
                        .body(full(""))
                        .unwrap()
                }
                "/api" => {
                    if http_body_util::BodyExt::collect(req.into_body())
                        .await
                        .is_ok()
                    {
                        ran.lock().unwrap().push(cookie.unwrap_or_default());
                    }
                    b.body(full("")).unwrap()
                }
                _ => b.body(full("")).unwrap(),
            }
        }
    })
    .await;
    (app, logins_rx, ran)
}

/// The `Cookie` of each `/api` request the app ran.
type Ran = Arc<std::sync::Mutex<Vec<String>>>;

#[tokio::test]
async fn requests_during_the_login_go_without_the_vault() {
    // The app holds the login response until told; meanwhile a request
    // with the same (planted) token must not run as the victim.
    let (app, mut logins, _) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let client = s.client.clone();
    let p = planted.clone();
    let victim = tokio::spawn(async move { login(&client, "/login.php", &p, "right").await });
    let go = logins.recv().await.unwrap();
    // The attacker's requests while the login is in flight.
    for _ in 0..5 {
        let res = get_with(&s.client, "/account", &planted).await;
        assert_eq!(
            res.header("x-seen-cookie"),
            Some(""),
            "a request ran with the vault during the login"
        );
        assert!(res.headers.get("set-cookie").is_none(), "{:?}", res.headers);
    }
    go.send(()).unwrap();
    let res = victim.await.unwrap();
    let fresh = token_of(&res).expect("re-keyed");
    // The victim's session kept its own backend ID, not the anonymous one
    // the app handed to the racing requests.
    let res = get_with(&s.client, "/account", &fresh).await;
    assert_eq!(res.header("x-seen-cookie"), Some("PHPSESSID=victimsid"));
}

#[tokio::test]
async fn a_second_login_with_the_same_token_does_not_take_the_session() {
    // The attacker, who planted the token, logs in to his own account with
    // it while the victim's login is in flight, and his answer comes last.
    let (app, mut logins, _) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let spawn_login = |password: &'static str| {
        let (c, t) = (s.client.clone(), planted.clone());
        tokio::spawn(async move { login(&c, "/login.php", &t, password).await })
    };
    let victim = spawn_login("right");
    let go_victim = logins.recv().await.unwrap();
    let attacker = spawn_login("mallory");
    let go_attacker = logins.recv().await.unwrap();
    go_victim.send(()).unwrap();
    let fresh = token_of(&victim.await.unwrap()).expect("re-keyed");
    go_attacker.send(()).unwrap();
    if let Some(t) = token_of(&attacker.await.unwrap()) {
        let res = get_with(&s.client, "/account", &t).await;
        assert_ne!(
            res.header("x-seen-cookie"),
            Some("PHPSESSID=victimsid"),
            "the second login took the victim's session"
        );
    }
    let res = get_with(&s.client, "/account", &fresh).await;
    assert_eq!(res.header("x-seen-cookie"), Some("PHPSESSID=victimsid"));
}

#[tokio::test]
async fn a_login_the_client_abandons_still_kills_the_token() {
    // The app may finish a login whose client has gone (or answer it in a
    // way the success rules do not know): the token it came with is dead
    // from the moment the login started.
    let (app, mut logins, _) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let (c, t) = (s.client.clone(), planted.clone());
    let victim = tokio::spawn(async move { login(&c, "/login.php", &t, "right").await });
    let go = logins.recv().await.unwrap();
    victim.abort();
    let _ = go.send(());
    let res = get_with(&s.client, "/account", &planted).await;
    assert_eq!(
        res.header("x-seen-cookie"),
        Some(""),
        "the planted token still opens the session"
    );
}

#[tokio::test]
async fn a_login_after_an_abandoned_one_still_logs_in() {
    // A double-click: the browser cancels the first login, which had been
    // re-keyed to a token it never received, and sends the second with the
    // old one. That login carries no vault, but it may start the session
    // the app gives it, so the user is not locked out until the old token
    // fades.
    let (app, mut logins, _) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let (c, t) = (s.client.clone(), token.clone());
    let first = tokio::spawn(async move { login(&c, "/login.php", &t, "right").await });
    let go = logins.recv().await.unwrap();
    first.abort();
    let _ = go.send(());
    let (c, t) = (s.client.clone(), token.clone());
    let second = tokio::spawn(async move { login(&c, "/login.php", &t, "right").await });
    logins.recv().await.unwrap().send(()).unwrap();
    let fresh = token_of(&second.await.unwrap()).expect("the second login started a session");
    let res = get_with(&s.client, "/account", &fresh).await;
    assert_eq!(res.header("x-seen-cookie"), Some("PHPSESSID=anonsid"));
}

#[tokio::test]
async fn a_form_held_open_across_a_login_does_not_reach_the_app_with_its_session() {
    // The attacker starts a request with the planted token and holds its
    // body back (the gateway is reading it: it sent 100 Continue); the
    // victim logs in; then the body comes. The app must not run it in the
    // session that login made the victim's.
    let (app, mut logins, _) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let mut tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let head = format!(
        "POST /account HTTP/1.1\r\nHost: app.test\r\nCookie: __Host-sg={planted}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 256];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let (c, t) = (s.client.clone(), planted.clone());
    let victim = tokio::spawn(async move { login(&c, "/login.php", &t, "right").await });
    logins.recv().await.unwrap().send(()).unwrap();
    let fresh = token_of(&victim.await.unwrap()).expect("re-keyed");
    tls.write_all(b"a=1&b=2").await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(out.contains("x-seen-cookie: \r\n"), "{out}");
    assert!(!out.contains("victimsid"), "{out}");
    let res = get_with(&s.client, "/account", &fresh).await;
    assert_eq!(res.header("x-seen-cookie"), Some("PHPSESSID=victimsid"));
}

#[tokio::test]
async fn a_streamed_body_held_open_across_a_login_is_cut_off() {
    // As above, with a body the gateway streams (JSON, not a form): the
    // head went upstream with the session, so the body is cut off once the
    // login has re-keyed it, and the app, which reads it whole, never runs.
    let (app, mut logins, ran) = held_login_app().await;
    let s = Setup::new(app, "", RULES).await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let mut tls = s.client.tls("app.test", Proto::H1).await.unwrap();
    let head = format!(
        "POST /api HTTP/1.1\r\nHost: app.test\r\nCookie: __Host-sg={planted}\r\n\
         Content-Type: application/json\r\nContent-Length: 7\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 256];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    let (c, t) = (s.client.clone(), planted.clone());
    let victim = tokio::spawn(async move { login(&c, "/login.php", &t, "right").await });
    logins.recv().await.unwrap().send(()).unwrap();
    let fresh = token_of(&victim.await.unwrap()).expect("re-keyed");
    // Cut off at the login, not when the attacker chooses to send the rest
    // (an app server that runs a script on a partial body would then run
    // it after the login). The timeout only bounds a failing test.
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tls.read_to_end(&mut out),
    )
    .await
    .expect("the held body was not cut off at the login")
    .ok();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(
        ran.lock().unwrap().is_empty(),
        "the app ran it: {:?}",
        ran.lock().unwrap()
    );
    // An honest request in the session is untouched by the check.
    let req = Request::post("https://app.test/api")
        .body(full("{}"))
        .unwrap();
    s.client.send(Proto::H2, with_token(req, &fresh)).await;
    assert_eq!(*ran.lock().unwrap(), ["PHPSESSID=victimsid"]);
}

#[tokio::test]
async fn a_tunnel_opened_in_a_session_closes_at_logout_and_at_login() {
    // A WebSocket opened with a (planted) token must not outlive it: apps
    // that read the session on each message would serve the victim on it.
    let app = Upstream::custom(|req: Request<hyper::body::Incoming>| async move {
        let b = Response::builder();
        match req.uri().path() {
            "/new" => b.header("set-cookie", "PHPSESSID=wssid; path=/"),
            "/ws" => return echo_upgrade(req),
            "/login.php" => b.status(302).header("location", "/home"),
            _ => b,
        }
        .body(full(""))
        .unwrap()
    })
    .await;
    let s = Setup::new(app, "", RULES).await;
    let mut anonymous = open_tunnel(&s.client).await;
    for end in ["/logout.php", "/login.php"] {
        let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
        let mut ws = open_tunnel_with(&s.client, Some(&token)).await;
        let other = token_of(&s.client.get("https://app.test/new").await).unwrap();
        let mut elsewhere = open_tunnel_with(&s.client, Some(&other)).await;
        assert!(echoes(&mut ws, b"hello").await);
        if end == "/logout.php" {
            get_with(&s.client, end, &token).await;
        } else {
            login(&s.client, end, &token, "right").await;
        }
        assert!(
            !echoes(&mut ws, b"again").await,
            "the tunnel outlived {end}"
        );
        assert!(echoes(&mut elsewhere, b"other session").await);
        assert!(echoes(&mut anonymous, b"no session").await);
    }
}

#[tokio::test]
async fn an_attacker_loop_during_login_never_gets_the_victims_session() {
    let s = setup("").await;
    let planted = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let attacker = {
        let c = s.client.clone();
        let t = planted.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..40 {
                statuses.push(get_with(&c, "/account", &t).await.status);
            }
            statuses
        })
    };
    let res = login(&s.client, "/login.php", &planted, "right").await;
    let fresh = token_of(&res).unwrap();
    attacker.await.unwrap();
    // After the login, the planted token is worth nothing.
    get_with(&s.client, "/account", &planted).await;
    assert_eq!(seen_cookie(&s.upstream), None);
    get_with(&s.client, "/account", &fresh).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
}

/// Sends requests with `token` until `done` holds for a response (the
/// session's absolute lifetime of one second ran out). No sleeping: every
/// turn is a real request; the 30 s bound only stops a broken build.
async fn until(s: &Setup, token: &str, done: impl Fn(&Resp, &Upstream) -> bool) -> Resp {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let res = get_with(&s.client, "/page", token).await;
        if done(&res, &s.upstream) {
            return res;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session never expired"
        );
    }
}

#[tokio::test]
async fn an_expired_session_is_destroyed_served_anonymous_and_cleared() {
    let s = setup("session.absolute_timeout = \"1s\"").await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    get_with(&s.client, "/page", &token).await;
    assert_eq!(
        seen_cookie(&s.upstream).as_deref(),
        Some("PHPSESSID=backend0")
    );
    let res = until(&s, &token, |_, up| seen_cookie(up).is_none()).await;
    assert_eq!(res.status, 200, "the app sees an anonymous visitor");
    assert!(res.clears_token(), "{:?}", res.set_cookies());
    // Destroyed, not merely skipped: the token stays dead.
    get_with(&s.client, "/page", &token).await;
    assert_eq!(seen_cookie(&s.upstream), None);
}

#[tokio::test]
async fn an_expired_session_can_be_sent_to_a_configured_url() {
    let s = setup(
        "session.absolute_timeout = \"1s\"\nsession.expired_redirect = \"/login.php?expired=1\"",
    )
    .await;
    let token = token_of(&s.client.get("https://app.test/new").await).unwrap();
    let res = until(&s, &token, |res, _| res.status == StatusCode::SEE_OTHER).await;
    assert_eq!(res.header("location"), Some("/login.php?expired=1"));
    assert!(res.clears_token(), "{:?}", res.set_cookies());
}
