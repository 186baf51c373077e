//! Forwarding headers and hop-by-hop headers, RFC 9110 §7.6.
//!
//! Pure functions over `HeaderMap`: what an intermediary must remove, and the
//! `X-Forwarded-*` headers the gateway sets in place of what the client sent.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Connection-specific headers (RFC 9110 §7.6.1), plus the proxy credentials
/// that the gateway never consumes and must not pass on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that tell an app who the client is, what URL it asked for or which
/// method it "really" meant. From an untrusted peer they are lies.
const CLIENT_CLAIMS: [&str; 17] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the message asks to switch protocols (WebSocket): `Connection`
/// lists `upgrade` and an `Upgrade` header is present.
pub fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection are read while it is still there. The
    // usual tokens, `close` and `keep-alive`, name no other header: no
    // `HeaderName` is built for them.
    let mut gone: Vec<HeaderName> = Vec::new();
    if headers.contains_key(header::CONNECTION) {
        for t in connection_tokens(headers) {
            if t.eq_ignore_ascii_case("close")
                || HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(t.as_bytes()) {
                gone.push(name);
            }
        }
    }
    // One pass over the (few) headers present instead of a lookup per
    // hop-by-hop name: most messages carry none of them, or only
    // `Connection`.
    gone.extend(headers.keys().filter(|k| is_hop_by_hop(k)).cloned());
    for name in gone {
        headers.remove(name);
    }
}

// Names are compared as strings (`HeaderName::as_str` is lower case), and
// most are turned away on their length or first letter before any
// comparison; a test checks that every listed name passes these filters.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(n.len(), 2 | 7 | 10 | 16..=19) && HOP_BY_HOP.contains(&n)
}

fn is_client_claim(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(n.as_bytes().first(), Some(b'f' | b't' | b'x')) && CLIENT_CLAIMS.contains(&n)
}

/// Whether `ip` is a configured trusted proxy.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// rightmost address in `X-Forwarded-For` that is not itself trusted.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(client, trusted) {
                    break;
                }
            }
            // An unparsable hop ends what can be believed.
            Err(_) => break,
        }
    }
    client
}

/// Sets the forwarding headers on a request bound upstream. From an untrusted
/// peer every client claim is dropped first; a trusted peer's chain is kept
/// and extended.
pub fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    trusted_peer: bool,
    host: &HeaderValue,
) {
    let peer = canonical(peer);
    // Formatted by hand: `Ipv4Addr`'s `Display` costs more than the rest of
    // this function.
    let mut text = String::with_capacity(40);
    crate::observability::push_ip(&mut text, peer);
    let peer_value = HeaderValue::from_str(&text).expect("an IP address is a valid header value");
    let xff = if trusted_peer {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if prior.is_empty() {
            peer_value
        } else {
            let joined = format!("{}, {}", prior.join(", "), peer);
            HeaderValue::from_str(&joined).unwrap_or(peer_value)
        }
    } else {
        let claims: Vec<HeaderName> = headers
            .keys()
            .filter(|k| is_client_claim(k))
            .cloned()
            .collect();
        for name in claims {
            headers.remove(name);
        }
        peer_value
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_listed_name_passes_the_quick_filters() {
        for n in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        for n in CLIENT_CLAIMS {
            assert!(is_client_claim(&HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "host",
            "user-agent",
            "set-cookie",
            "cookie",
            "accept",
            "x-request-id",
        ] {
            let h = HeaderName::from_static(n);
            assert!(!is_hop_by_hop(&h) && !is_client_claim(&h), "{n}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("Connection", "  , te"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("cookie", "a=b"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["cookie", "accept"]);
    }

    #[test]
    fn connection_naming_an_invalid_header_is_harmless() {
        let mut h = map(&[("connection", "bad header, (x)"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn upgrade_needs_both_headers_any_case() {
        assert!(
            upgrade_requested(&map(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket")
            ]))
            .is_some()
        );
        assert!(upgrade_requested(&map(&[("upgrade", "websocket")])).is_none());
        assert!(upgrade_requested(&map(&[("connection", "upgrade")])).is_none());
    }

    #[test]
    fn untrusted_peer_claims_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let host = HeaderValue::from_static("app.example.com");
        set_forwarding_headers(&mut h, "203.0.113.9".parse().unwrap(), false, &host);
        assert_eq!(h.len(), 3, "{h:?}");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.com");
    }

    #[test]
    fn trusted_peer_chain_is_extended_and_client_derived() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
            ("x-real-ip", "198.51.100.7"),
        ]);
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_addr(peer, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        set_forwarding_headers(&mut h, peer, true, &HeaderValue::from_static("a"));
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.1.1.1, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "198.51.100.7");
        // An untrusted peer's X-Forwarded-For is never believed.
        let outsider: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(client_addr(outsider, &h, &trusted), outsider);
        // Garbage in the chain stops the walk at the last good hop.
        let h = map(&[("x-forwarded-for", "198.51.100.7, junk, 10.1.1.1")]);
        assert_eq!(
            client_addr(peer, &h, &trusted),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(is_trusted("::ffff:127.0.0.1".parse().unwrap(), &trusted));
    }
}
