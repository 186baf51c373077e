//! Session IDs in request bodies (issue 5, part 1): what the app received.

mod common;

use common::*;
use http::{Request, StatusCode};

fn post(ct: &str, body: impl Into<bytes::Bytes>) -> Request<TestBody> {
    Request::post("https://app.test/login.php")
        .header("content-type", ct)
        .body(full(body))
        .unwrap()
}

#[tokio::test]
async fn urlencoded_session_fields_never_reach_the_app() {
    let s = Setup::basic(Upstream::ok().await).await;
    for proto in [Proto::H1, Proto::H2] {
        let res = s
            .client
            .send(
                proto,
                post(
                    "application/x-www-form-urlencoded",
                    "user=alice&PHPSESSID=known&PHPSESS%49D=k2&password=x",
                ),
            )
            .await;
        assert_eq!(res.status, 200);
        let seen = s.upstream.last();
        assert_eq!(&seen.body[..], b"user=alice&password=x", "{proto:?}");
        assert_eq!(seen.headers["content-length"], "21");
    }
}

#[tokio::test]
async fn large_form_bodies_are_filtered_as_they_stream() {
    let s = Setup::basic(Upstream::ok().await).await;
    let big = "v".repeat(300 * 1024);
    let body = format!("a={big}&sid=known&b=2");
    let res = s
        .client
        .send(Proto::H1, post("application/x-www-form-urlencoded", body))
        .await;
    assert_eq!(res.status, 200);
    let seen = s.upstream.last();
    assert_eq!(seen.body.len(), format!("a={big}&b=2").len());
    assert!(seen.body.ends_with(b"&b=2"));
    assert!(
        !seen.headers.contains_key("content-length"),
        "the length changed: sent chunked"
    );
}

#[tokio::test]
async fn multipart_session_parts_are_removed_and_files_pass() {
    let s = Setup::basic(Upstream::ok().await).await;
    let b = "----formboundary7MA4YWxk";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"PHPSESSID\"\r\n\r\nknown\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n\
         --{b}--\r\n",
        "x".repeat(200_000)
    );
    let res = s
        .client
        .send(
            Proto::H2,
            post(&format!("multipart/form-data; boundary={b}"), body),
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = String::from_utf8(s.upstream.last().body.to_vec()).unwrap();
    assert!(!seen.contains("PHPSESSID") && !seen.contains("known"));
    assert!(seen.contains("name=\"user\"\r\n\r\nalice\r\n"));
    assert!(seen.contains(&"x".repeat(200_000)));
    assert!(seen.ends_with(&format!("--{b}--\r\n")));
}

#[tokio::test]
async fn a_body_that_is_not_its_declared_type_is_refused() {
    let s = Setup::basic(Upstream::ok().await).await;
    let res = s
        .client
        .send(Proto::H1, post("multipart/form-data", "no boundary here"))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = s
        .client
        .send(
            Proto::H1,
            post(
                "multipart/form-data; boundary=zz",
                "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ncut off",
            ),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // A compressed form: the app's server might inflate it past the filter.
    let mut req = post("application/x-www-form-urlencoded", "not really gzip");
    req.headers_mut()
        .insert("content-encoding", http::HeaderValue::from_static("gzip"));
    let res = s.client.send(Proto::H1, req).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Two Content-Type fields: the app might read the second.
    for proto in [Proto::H1, Proto::H2] {
        let mut req = post("text/plain", "PHPSESSID=planted");
        req.headers_mut().append(
            "content-type",
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let res = s.client.send(proto, req).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{proto:?}");
    }
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn an_empty_body_under_a_form_type_passes() {
    let s = Setup::basic(Upstream::ok().await).await;
    for proto in [Proto::H1, Proto::H2] {
        for ct in ["multipart/form-data", "multipart/form-data; boundary=XX"] {
            let res = s.client.send(proto, post(ct, "")).await;
            assert_eq!(res.status, 200, "{proto:?} {ct}");
        }
    }
}

#[tokio::test]
async fn other_bodies_pass_untouched() {
    let s = Setup::basic(Upstream::ok().await).await;
    let json = r#"{"PHPSESSID":"stays","sid":1}"#;
    s.client
        .send(Proto::H1, post("application/json", json))
        .await;
    assert_eq!(&s.upstream.last().body[..], json.as_bytes());
}

#[tokio::test]
async fn html_pages_lose_session_ids_and_are_asked_for_uncompressed() {
    let page = "<html><a href=\"/a.php?PHPSESSID=leak123&x=1\">a</a><form action=\"/f;jsessionid=leak456\"><input type=hidden name=PHPSESSID value=leak123></form></html>";
    let upstream = Upstream::recording(move |_| {
        http::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(full(page))
            .unwrap()
    })
    .await;
    let s = Setup::basic(upstream).await;
    for proto in [Proto::H1, Proto::H2] {
        let req = Request::get("https://app.test/index.php")
            .header("accept", "text/html,application/xhtml+xml")
            .header("accept-encoding", "gzip, br")
            .body(full(""))
            .unwrap();
        let res = s.client.send(proto, req).await;
        let body = res.text();
        assert!(
            !body.contains("leak123") && !body.contains("leak456"),
            "{body}"
        );
        assert!(body.contains("<a href=\"/a.php?x=1\">"), "{body}");
        assert!(
            !s.upstream.last().headers.contains_key("accept-encoding"),
            "pages are asked for uncompressed"
        );
    }
    // Other requests keep their compression.
    let req = Request::get("https://app.test/app.js")
        .header("accept", "*/*")
        .header("accept-encoding", "gzip")
        .body(full(""))
        .unwrap();
    s.client.send(Proto::H1, req).await;
    assert_eq!(s.upstream.last().headers["accept-encoding"], "gzip");
}
