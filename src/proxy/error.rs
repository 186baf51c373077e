//! One place where every per-request failure becomes a response.
//!
//! Bodies are short and static: no upstream address, no error text from a
//! library, nothing an attacker could learn the inside from. The detail goes
//! to the log instead.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::Body;

/// Who caused a failure (as Pingora tags them): for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request has no usable Host")]
    BadHost,
    #[error("request target is not a path")]
    BadTarget,
    #[error("no site answers for this host, or it is not the host the TLS connection was made for")]
    Misdirected,
    #[error("method not allowed through the gateway")]
    MethodNotAllowed,
    #[error("request body over the site's max_request_body")]
    BodyTooLarge,
    #[error("form body does not parse as its declared type")]
    BadForm,
    #[error("upstream unreachable")]
    UpstreamConnect(#[source] BoxError),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream failed")]
    Upstream(#[source] BoxError),
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BadHost
            | ProxyError::BadTarget
            | ProxyError::Misdirected
            | ProxyError::MethodNotAllowed
            | ProxyError::BodyTooLarge
            | ProxyError::BadForm => Side::Client,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamTimeout
            | ProxyError::Upstream(_) => Side::Upstream,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadHost | ProxyError::BadTarget | ProxyError::BadForm => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UpstreamConnect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn to_response(&self) -> Response<Body> {
        let mut res = status_response(self.status());
        if matches!(self, ProxyError::MethodNotAllowed) {
            res.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        res
    }
}

/// A response with a short static body naming only the status.
pub fn status_response(status: StatusCode) -> Response<Body> {
    let text = match status.canonical_reason() {
        Some(reason) => format!("{} {}\n", status.as_u16(), reason),
        None => format!("{}\n", status.as_u16()),
    };
    let mut res = Response::new(Body::Right(Full::new(Bytes::from(text))));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
