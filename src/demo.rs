//! `sessiongate demo`: the gateway in front of a bundled app that is
//! vulnerable on purpose, with the development certificate.
//!
//! The app behaves like a careless legacy PHP app: it takes its session ID
//! from the URL as readily as from the cookie (session fixation), sets the
//! cookie without any flag, never regenerates the ID at login, writes the ID
//! into its links, and redirects to its own absolute `http://` address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpListener;

use crate::{Config, Listeners, RunOptions};

const DEV_CHAIN: &str = include_str!("../certs/dev-chain.crt");
const DEV_KEY: &str = include_str!("../certs/dev.key");

/// The demo app's state: session ID -> logged-in user, if any.
type Sessions = Arc<Mutex<HashMap<String, Option<String>>>>;

/// Starts the demo app on an ephemeral loopback port; returns its address.
pub async fn start_app() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sessions: Sessions = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sessions = sessions.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let sessions = sessions.clone();
                    async move { Ok::<_, Infallible>(app(req, sessions, addr).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn cookie<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

async fn app(req: Request<Incoming>, sessions: Sessions, me: SocketAddr) -> Response<Full<Bytes>> {
    // Like PHP with session.use_only_cookies=0: the URL wins over the cookie,
    // and any ID is adopted (no strict mode).
    let from_url = req
        .uri()
        .query()
        .and_then(|q| query_param(q, "PHPSESSID"))
        .map(str::to_string);
    let from_cookie = cookie(&req, "PHPSESSID").map(str::to_string);
    let (sid, fresh) = match from_url.or(from_cookie) {
        Some(sid) if !sid.is_empty() => (sid, false),
        _ => (format!("{:032x}", rand::rng().random::<u128>()), true),
    };
    let user = sessions
        .lock()
        .expect("demo lock")
        .entry(sid.clone())
        .or_default()
        .clone();
    let path = req.uri().path().to_string();
    let method = req.method().clone();

    let mut res = match (method, path.as_str()) {
        (Method::GET, "/") => {
            let who = user.as_deref().unwrap_or("anonymous");
            html(format!(
                "<!doctype html><title>demo app</title><h1>Hello, {who}</h1>\
                 <p><a href=\"/account?PHPSESSID={sid}\">your account</a> · <a href=\"/logout?PHPSESSID={sid}\">log out</a></p>\
                 <form method=post action=\"/login?PHPSESSID={sid}\">\
                 <input name=user value=alice> <input name=password type=password value=demo> <button>log in</button></form>"
            ))
        }
        (Method::GET, "/whoami") => text(user.unwrap_or_else(|| "anonymous".into())),
        (Method::GET, "/account") => match user {
            Some(u) => text(format!("account of {u}")),
            None => redirect(me, "/"),
        },
        (Method::POST, "/login") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let form = String::from_utf8_lossy(&body);
            let user = query_param(&form, "user").unwrap_or("alice").to_string();
            if query_param(&form, "password") == Some("demo") {
                // The classic mistake: the session ID stays the same at login.
                sessions
                    .lock()
                    .expect("demo lock")
                    .insert(sid.clone(), Some(user));
                redirect(me, "/")
            } else {
                redirect(me, "/?failed=1")
            }
        }
        (Method::GET, "/logout") => {
            // Another classic: logout forgets the user but keeps the ID alive.
            sessions
                .lock()
                .expect("demo lock")
                .insert(sid.clone(), None);
            redirect(me, "/")
        }
        _ => {
            let mut r = text("not found".into());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    if fresh {
        let v = format!("PHPSESSID={sid}; path=/");
        res.headers_mut().append(
            header::SET_COOKIE,
            v.parse().expect("hex is a valid header value"),
        );
    }
    res
}

fn html(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("static"),
    );
    r
}

fn text(body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body + "\n")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

/// Redirects to the app's own absolute http:// address, as servlet
/// containers and old PHP code do.
fn redirect(me: SocketAddr, path: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut().insert(
        header::LOCATION,
        format!("http://{me}{path}")
            .parse()
            .expect("an address is a valid URL"),
    );
    r
}

/// The demo's config: the app, the development certificate, both listeners.
pub fn demo_config(
    https: SocketAddr,
    http: SocketAddr,
    app: SocketAddr,
    cert_dir: &std::path::Path,
) -> anyhow::Result<Config> {
    let chain = cert_dir.join("dev-chain.crt");
    let key = cert_dir.join("dev.key");
    std::fs::write(&chain, DEV_CHAIN).with_context(|| format!("writing {}", chain.display()))?;
    std::fs::write(&key, DEV_KEY).with_context(|| format!("writing {}", key.display()))?;
    let toml = format!(
        r#"
[listen]
https = "{https}"
http_redirect = "{http}"

[[site]]
name = "demo"
hosts = ["localhost", "127.0.0.1"]
tls = {{ cert = {chain:?}, key = {key:?} }}
upstream = {{ url = "http://{app}" }}
hsts = {{ max_age = "5m" }}

[[site.login]]
path = "/login"
location_not = "*failed*"

[[site.logout]]
path = "/logout"
"#
    );
    Config::parse(&toml).map_err(|e| anyhow::anyhow!("demo config: {e}"))
}

/// `sessiongate demo`: app, gateway, walkthrough.
pub async fn run(https: SocketAddr, http: SocketAddr) -> anyhow::Result<()> {
    let app = start_app().await.context("starting the demo app")?;
    let dir = std::env::temp_dir().join(format!("sessiongate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = Arc::new(demo_config(https, http, app, &dir)?);
    crate::observability::init(&config.log);
    let prepared = crate::prepare(config.clone(), RunOptions::default())?;
    let signal = crate::server::shutdown_signal()?;
    let listeners = Listeners::bind(&config.listen).await?;
    let port = listeners.https.local_addr()?.port();
    println!(
        "\nsessiongate demo\n\
         \n  the app (vulnerable on purpose): http://{app}/\
         \n  the same app behind the gateway: https://localhost:{port}/  (CA: certs/dev-ca.crt)\
         \n\nSee README.md, \"Try it\", for a fixation attack that works on the app and fails through the gateway.\
         \nCtrl-C stops.\n"
    );
    prepared.serve(listeners, signal).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
