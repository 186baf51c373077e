//! Bodies on their way through: request bodies streamed through the site's
//! size limit and, for forms, the session-field filter; HTML responses
//! through the session-ID cleaner. Filters work chunk by chunk; nothing is
//! buffered whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::error::BoxError;
use crate::policy::form;
use crate::policy::html::HtmlCleaner;
use crate::session::MemoryStore;
use crate::session::token::TokenKey;

/// A request body as read: streamed through the size limit, a form read
/// whole, or a form filtered as it streams.
/// (The streaming form filter is boxed, as the HTML cleaner is in `Body`: a
/// request moves several times on its way upstream.)
pub type RequestBody = Either<Limited<Incoming>, Either<Full<Bytes>, Box<FormBody>>>;

/// What the gateway sends upstream: the request body and, for one that
/// carries its session's vault and is still arriving, that session. The
/// body goes on only while the session still has the token the request came
/// with: a login that re-keys the session (or a logout that ends it) cuts
/// it off at once, before its end, so an app that reads a body whole before
/// running (PHP's built-in server, PHP-FPM behind a buffering server) never
/// runs it in the session that login authenticated.
pub struct UpstreamBody {
    inner: RequestBody,
    bound: Option<Box<Bound>>,
}

/// A session's token as a request (its body, or its WebSocket tunnel)
/// found it, and a wake-up for when that changes.
pub struct Bound {
    store: Arc<MemoryStore>,
    id: u64,
    token: TokenKey,
    notify: Arc<Notify>,
    changed: Pin<Box<OwnedNotified>>,
}

impl Bound {
    pub fn new(store: Arc<MemoryStore>, id: u64, token: TokenKey) -> Bound {
        let notify = store.watch(id);
        let mut changed = Box::pin(notify.clone().notified_owned());
        // Registered now, so that a re-key from here on wakes this request
        // even before it is polled; one before is seen by `holds`.
        changed.as_mut().enable();
        Bound {
            store,
            id,
            token,
            notify,
            changed,
        }
    }

    /// Whether the session no longer has the token (re-keyed or ended);
    /// otherwise registers to be woken when that happens.
    pub fn poll_lost(&mut self, cx: &mut Context<'_>) -> bool {
        self.changed.as_mut().poll(cx).is_ready() || !self.store.holds(self.id, self.token)
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.store.unwatch(self.id, &self.notify);
    }
}

impl UpstreamBody {
    pub fn new(inner: RequestBody, bound: Option<Box<Bound>>) -> UpstreamBody {
        UpstreamBody { inner, bound }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(b) = &mut this.bound
            && b.poll_lost(cx)
        {
            return Poll::Ready(Some(Err(
                "the session was re-keyed or ended while the request body arrived".into(),
            )));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request form filtered as it streams (sent chunked: its length changes).
pub type FormBody = Filtered<Limited<Incoming>, form::Filter>;

/// An HTML response cleaned as it streams.
pub type HtmlBody = Filtered<super::ResponseBody, HtmlCleaner>;

/// Called once, at the end of a body, with the number of changes made.
pub type OnChanges = Box<dyn FnOnce(usize) + Send + Sync>;

/// A chunk-by-chunk rewriter of a body.
pub trait StreamFilter {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, BoxError>;
    fn finish(&mut self) -> Result<Bytes, BoxError>;
    fn changes(&self) -> usize;
}

impl StreamFilter for form::Filter {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, BoxError> {
        form::Filter::feed(self, chunk).map_err(BoxError::from)
    }
    fn finish(&mut self) -> Result<Bytes, BoxError> {
        form::Filter::finish(self).map_err(BoxError::from)
    }
    fn changes(&self) -> usize {
        self.removed()
    }
}

impl StreamFilter for HtmlCleaner {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, BoxError> {
        self.write(chunk).map(Bytes::from).map_err(BoxError::from)
    }
    fn finish(&mut self) -> Result<Bytes, BoxError> {
        self.end().map(Bytes::from).map_err(BoxError::from)
    }
    fn changes(&self) -> usize {
        self.removed()
    }
}

/// A body passed through a `StreamFilter`.
pub struct Filtered<B, F> {
    inner: B,
    filter: F,
    done: bool,
    on_changes: Option<OnChanges>,
}

impl<B, F> Filtered<B, F> {
    pub fn new(inner: B, filter: F, on_changes: OnChanges) -> Self {
        Filtered {
            inner,
            filter,
            done: false,
            on_changes: Some(on_changes),
        }
    }
}

impl<B, F> HttpBody for Filtered<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: StreamFilter + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.filter.feed(&data)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    // Trailers pass as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    this.done = true;
                    let tail = this.filter.finish()?;
                    if let Some(f) = this.on_changes.take() {
                        f(this.filter.changes());
                    }
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
