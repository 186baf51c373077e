//! Cookie and URL hardening over real sockets (issue 3): what the upstream
//! received and what the client received.

mod common;

use common::*;
use http::{Request, Response, StatusCode};

#[tokio::test]
async fn get_with_a_session_id_in_the_url_is_redirected_to_the_clean_url() {
    let s = Setup::basic(Upstream::ok().await).await;
    for proto in [Proto::H1, Proto::H2] {
        for (dirty, clean) in [
            ("/a;jsessionid=X1/b?PHPSESSID=Y1&x=1", "/a/b?x=1"),
            ("/a%3Bjsessionid%3DX2?PHPSESS%49D=Y2", "/a"),
            ("/a?x=1&phpsessid=&PhpSessId=Y3", "/a?x=1"),
            // Not an open redirect: a clean path that starts with two
            // slashes (or a backslash, which browsers read as one) stays on
            // this host.
            ("//evil.example/?PHPSESSID=x", "/.//evil.example/"),
            ("/;jsessionid=1/evil.example/", "/.//evil.example/"),
            ("/%3Bjsessionid=1/evil.example/x", "/.//evil.example/x"),
            ("/%5Cevil.example/?sid=1", "/%5Cevil.example/"),
        ] {
            let res = s
                .client
                .send(proto, get(&format!("https://app.test{dirty}")))
                .await;
            assert_eq!(res.status, StatusCode::SEE_OTHER, "{dirty}");
            assert_eq!(res.header("location"), Some(clean), "{dirty}");
            assert_eq!(res.header("cache-control"), Some("no-store"));
            assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
        }
    }
    assert!(
        s.upstream.requests().is_empty(),
        "the upstream never saw a URL with an ID"
    );
}

#[tokio::test]
async fn other_methods_forward_the_clean_url() {
    let s = Setup::basic(Upstream::ok().await).await;
    for proto in [Proto::H1, Proto::H2] {
        let req = Request::post("https://app.test/login.php;JSESSIONID=X?PHPSESSID=Y&next=/home")
            .body(full("u=a"))
            .unwrap();
        let res = s.client.send(proto, req).await;
        assert_eq!(res.status, 200);
        let seen = s.upstream.last();
        assert_eq!(seen.uri, "/login.php?next=/home");
        assert_eq!(&seen.body[..], b"u=a");
    }
}

#[tokio::test]
async fn every_set_cookie_is_hardened_on_its_own() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "PHPSESSID=abc; path=/")
            .header(
                "set-cookie",
                "lang=en; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Priority=High",
            )
            .header("set-cookie", "evil=1; Domain=evil.test")
            // A public suffix: browsers refuse it, so it is not made host-only.
            .header("set-cookie", "tld=1; Domain=.test")
            .header("set-cookie", "gone=; Max-Age=0")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let s = Setup::new(
        upstream,
        "",
        "session.mode = \"harden\"\ncookies.max_lifetime = \"1d\"",
    )
    .await;
    for proto in [Proto::H1, Proto::H2] {
        let res = s.client.send(proto, get("https://app.test/")).await;
        assert_eq!(
            res.set_cookies(),
            [
                "PHPSESSID=abc; path=/; Secure; HttpOnly; SameSite=Lax",
                "lang=en; Expires=Wed, 21 Oct 2065 07:28:00 GMT; Priority=High; Secure; HttpOnly; SameSite=Lax; Max-Age=86400",
                "gone=; Max-Age=0; Secure; HttpOnly; SameSite=Lax",
            ],
            "{proto:?}"
        );
    }
}

#[tokio::test]
async fn only_vetted_cookies_reach_the_upstream() {
    let s = Setup::new(
        Upstream::ok().await,
        "",
        "session.mode = \"harden\"\ncookies.forward = [\"lang\"]",
    )
    .await;
    let mut req = get("https://app.test/");
    req.headers_mut().insert(
        "cookie",
        "PHPSESSID=abc; tracking=1; lang=en".parse().unwrap(),
    );
    s.client.send(Proto::H1, req).await;
    assert_eq!(
        s.upstream.last().headers["cookie"],
        "PHPSESSID=abc; lang=en"
    );

    // HTTP/2 clients split cookies into several fields: one header upstream.
    let mut req = get("https://app.test/");
    req.headers_mut()
        .append("cookie", "PHPSESSID=abc".parse().unwrap());
    req.headers_mut()
        .append("cookie", "other=x".parse().unwrap());
    req.headers_mut()
        .append("cookie", "lang=de".parse().unwrap());
    s.client.send(Proto::H2, req).await;
    let seen = s.upstream.last();
    assert_eq!(seen.headers.get_all("cookie").iter().count(), 1);
    assert_eq!(seen.headers["cookie"], "PHPSESSID=abc; lang=de");

    // Nothing vetted: no Cookie header at all.
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("cookie", "tracking=1".parse().unwrap());
    s.client.send(Proto::H1, req).await;
    assert!(!s.upstream.last().headers.contains_key("cookie"));
}

#[tokio::test]
async fn a_tossed_duplicate_cookie_forwards_none_of_its_values() {
    let s = Setup::new(
        Upstream::ok().await,
        "",
        "session.mode = \"harden\"\ncookies.forward = [\"lang\"]",
    )
    .await;
    for (proto, cookies) in [
        (
            Proto::H1,
            vec!["PHPSESSID=victim; PHPSESSID=attacker; lang=en"],
        ),
        (
            Proto::H2,
            vec!["PHPSESSID=victim; lang=en", "phpsessid=attacker"],
        ),
        (
            Proto::H1,
            vec!["PHPSESS%49D=attacker; PHPSESSID=victim; lang=en"],
        ),
    ] {
        let mut req = get("https://app.test/");
        for c in &cookies {
            req.headers_mut().append("cookie", c.parse().unwrap());
        }
        s.client.send(proto, req).await;
        assert_eq!(
            s.upstream.last().headers["cookie"],
            "lang=en",
            "{cookies:?}"
        );
    }
}

#[tokio::test]
async fn host_prefixed_cookies_are_renamed_both_ways() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "pref=dark; Path=/")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let s = Setup::new(
        upstream,
        "",
        "[[site.cookies.override]]\nname = \"pref\"\nhost_prefix = true",
    )
    .await;
    let res = s.client.get("https://app.test/").await;
    assert_eq!(
        res.set_cookies(),
        ["__Host-pref=dark; Path=/; Secure; HttpOnly; SameSite=Lax"]
    );
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("cookie", "pref=planted; __Host-pref=dark".parse().unwrap());
    s.client.send(Proto::H1, req).await;
    assert_eq!(s.upstream.last().headers["cookie"], "pref=dark");
}

#[tokio::test]
async fn redirects_lose_their_session_ids() {
    let upstream = Upstream::recording(|seen| {
        let port = seen.headers["x-port"].to_str().unwrap().to_string();
        Response::builder()
            .status(302)
            .header(
                "location",
                format!("http://127.0.0.1:{port}/next;jsessionid=ABC?PHPSESSID=DEF&x=1"),
            )
            .header("refresh", "0; url=/later?sid=GHI")
            .body(full(""))
            .unwrap()
    })
    .await;
    let port = upstream.addr.port();
    let s = Setup::basic(upstream).await;
    let mut req = get("https://app.test/");
    req.headers_mut()
        .insert("x-port", port.to_string().parse().unwrap());
    let res = s.client.send(Proto::H1, req).await;
    assert_eq!(res.header("location"), Some("https://app.test/next?x=1"));
    assert_eq!(res.header("refresh"), Some("0; url=/later"));
}

#[tokio::test]
async fn audit_records_name_the_event_and_never_the_value() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .header("set-cookie", "x=leakedvalue1; Domain=evil.test")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let pki = Pki::new();
    let toml = format!(
        "[listen]\nhttps = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"warn\"\n{}",
        site_toml(
            &["app.test"],
            &pki.leaf("app", &["app.test"]),
            &upstream.url(),
            "session.mode = \"harden\""
        )
    );
    // At level warn the listening line is not logged; audit records are.
    let mut p = Process::start(
        &toml.replace("level = \"warn\"", "level = \"info\""),
        &[],
        None,
    )
    .await;
    let client = Client::new(&pki, p.https);
    client
        .get("https://app.test/a?PHPSESSID=leakedvalue2")
        .await;
    let mut req = get("https://app.test/");
    req.headers_mut().insert(
        "cookie",
        "PHPSESSID=leakedvalue3; PHPSESSID=leakedvalue4"
            .parse()
            .unwrap(),
    );
    client.send(Proto::H1, req).await;
    for event in [
        "url_session_id_removed",
        "cookie_tossing",
        "set_cookie_dropped",
    ] {
        let line = p
            .wait_for_line(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .await;
        assert!(
            line.contains("\"target\":\"audit\"")
                && line.contains("\"client\":\"127.0.0.1\"")
                && line.contains("\"site\":\"app.test\""),
            "{line}"
        );
    }
    p.signal(15);
    p.wait_for_line(|l| l.contains("policy counters")).await;
    assert!(!p.output().contains("leakedvalue"), "{}", p.output());
}
