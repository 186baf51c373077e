//! Request bodies on their way upstream: streamed through the site's size
//! limit, and through the form filter when they are forms.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;

use super::error::BoxError;
use crate::policy::form::Filter;

/// What the gateway sends upstream.
pub type UpstreamBody = Either<Limited<Incoming>, Either<Full<Bytes>, FormBody>>;

/// Called once with the number of fields removed when a form body ends.
pub type OnRemoved = Box<dyn FnOnce(usize) + Send + Sync>;

/// A form body filtered as it streams (sent chunked: its length changes).
pub struct FormBody {
    inner: Limited<Incoming>,
    filter: Filter,
    done: bool,
    on_removed: Option<OnRemoved>,
}

impl FormBody {
    pub fn new(inner: Limited<Incoming>, filter: Filter, on_removed: OnRemoved) -> FormBody {
        FormBody {
            inner,
            filter,
            done: false,
            on_removed: Some(on_removed),
        }
    }

    fn report(&mut self) {
        if let Some(f) = self.on_removed.take() {
            f(self.filter.removed());
        }
    }
}

impl HttpBody for FormBody {
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
                        let out = this.filter.feed(&data).map_err(BoxError::from)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    // Trailers pass as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    let tail = this.filter.finish().map_err(BoxError::from)?;
                    this.report();
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

/// An HTML response cleaned of session IDs as it streams.
pub struct HtmlBody {
    inner: Incoming,
    cleaner: crate::policy::html::HtmlCleaner,
    done: bool,
    on_removed: Option<OnRemoved>,
}

impl HtmlBody {
    pub fn new(
        inner: Incoming,
        cleaner: crate::policy::html::HtmlCleaner,
        on_removed: OnRemoved,
    ) -> HtmlBody {
        HtmlBody {
            inner,
            cleaner,
            done: false,
            on_removed: Some(on_removed),
        }
    }
}

impl HttpBody for HtmlBody {
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
                        let out = this.cleaner.write(&data).map_err(BoxError::from)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    this.done = true;
                    let out = this.cleaner.end().map_err(BoxError::from)?;
                    if let Some(f) = this.on_removed.take() {
                        f(this.cleaner.removed());
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
