//! Write coalescing for HTTP/2 connections.
//!
//! The h2 crate flushes its connection after every response whose body it
//! chained rather than copied (any DATA payload of 256 bytes or more), and
//! tokio-rustls turns every write into a TLS record and every flush into a
//! `writev`. Ten small responses that become ready in one scheduler round
//! thus cost ten records and ten system calls, where nginx and HAProxy send
//! one of each at the end of their event-loop round.
//!
//! [`Coalesced`] gives the same shape under tokio: writes are copied into a
//! buffer (at most [`LIMIT`] bytes, one full TLS record), and a flush with
//! bytes waiting does not write them yet. It wakes the connection's task
//! instead and returns at once, so the task runs again after the tasks
//! already queued in this round (the other streams' responses) and their
//! frames join the same buffer. The bytes go out, as one record and one
//! system call, at the start of the connection's next read, write beyond
//! the buffer, or shutdown; h2 reads its socket every time it runs, until
//! the read would block, so that next read always comes.
//!
//! Backpressure is kept: when the socket cannot take the bytes, the flush
//! really waits (and registers for writability) instead of waking itself,
//! so a slow reader costs no spinning, and a full buffer refuses new writes.
//!
//! HTTP/1.1 connections pass straight through: hyper writes one response
//! per flush there and pipelining is rare, so there is nothing to gather.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back: one TLS record's worth of plaintext.
pub const LIMIT: usize = 16 * 1024;

pub struct Coalesced<T> {
    inner: T,
    enabled: bool,
    buf: Vec<u8>,
    /// How much of `buf` has been handed to `inner`.
    sent: usize,
    /// The last attempt to drain `buf` found the socket full; a flush must
    /// then wait for it rather than defer.
    blocked: bool,
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// `enabled`: gather writes (an HTTP/2 connection); otherwise every call
    /// goes straight to `inner`.
    pub fn new(inner: T, enabled: bool) -> Self {
        Coalesced {
            inner,
            enabled,
            buf: Vec::new(),
            sent: 0,
            blocked: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Hands every held byte to `inner` and flushes it.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.blocked = true;
                    return Poll::Pending;
                }
            }
        }
        self.buf.clear();
        self.sent = 0;
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => {
                self.blocked = true;
                Poll::Pending
            }
            done => {
                self.blocked = false;
                done
            }
        }
    }

    /// Room for `len` more bytes: drains first when the buffer would
    /// overflow.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.buf.len() + len > LIMIT && self.sent < self.buf.len() {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sent < this.buf.len() {
            // The deferred flush. A full socket is retried on the next
            // flush; reading goes on meanwhile (h2 bounds what it buffers).
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        ready!(this.poll_room(cx, data.len()))?;
        if this.buf.is_empty() && data.len() >= LIMIT {
            // A full record's worth: no point copying it.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let n = data.len().min(LIMIT - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        ready!(this.poll_room(cx, total))?;
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(LIMIT - this.buf.len());
            this.buf.extend_from_slice(&b[..take]);
            n += take;
            if take < b.len() {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        // Either way is a copy into `buf`; vectored lets h2 chain payloads
        // instead of copying them into its own buffer first.
        !self.enabled || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.sent == this.buf.len() {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if this.blocked {
            return this.poll_drain(cx);
        }
        // Deferred: run again after this round's other tasks, then drain.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Counts how often the task it stands for was woken.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    async fn pair(enabled: bool) -> (Coalesced<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (Coalesced::new(ours, enabled), peer)
    }

    fn write(io: &mut Coalesced<TcpStream>, cx: &mut Context<'_>, data: &[u8]) -> Poll<usize> {
        Pin::new(io).poll_write(cx, data).map(|r| r.unwrap())
    }

    #[tokio::test]
    async fn a_flush_is_deferred_to_the_next_read_and_wakes_the_task() {
        let (mut io, mut peer) = pair(true).await;
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(write(&mut io, &mut cx, b"one "), Poll::Ready(4));
        assert_eq!(write(&mut io, &mut cx, b"two"), Poll::Ready(3));
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task runs again");
        // Nothing has been written to the socket yet.
        let mut byte = [0u8; 1];
        assert_eq!(
            peer.try_read(&mut byte).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // The task's next read sends it, all of it.
        let mut scratch = [0u8; 16];
        let mut rb = ReadBuf::new(&mut scratch);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
        let mut got = [0u8; 7];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two");
    }

    #[tokio::test]
    async fn disabled_writes_go_straight_through() {
        let (mut io, mut peer) = pair(false).await;
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(write(&mut io, &mut cx, b"now"), Poll::Ready(3));
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"now");
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_held_then_closes() {
        let (mut io, mut peer) = pair(true).await;
        io.write_all(b"last words").await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn a_large_write_follows_the_held_bytes_in_order() {
        let (mut io, mut peer) = pair(true).await;
        let big: Vec<u8> = (0..3 * LIMIT).map(|i| (i % 251) as u8).collect();
        io.write_all(b"head").await.unwrap();
        io.write_all(&big).await.unwrap();
        io.write_all(b"tail").await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 4 + big.len() + 4);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + big.len()], &big[..]);
        assert_eq!(&got[4 + big.len()..], b"tail");
    }

    #[tokio::test]
    async fn a_full_socket_makes_the_flush_wait_instead_of_spinning() {
        let (mut io, mut peer) = pair(true).await;
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // The peer reads nothing: fill the socket, then the buffer.
        let chunk = [7u8; 1000];
        let mut written = 0usize;
        while let Poll::Ready(n) = write(&mut io, &mut cx, &chunk) {
            written += n;
        }
        assert!(written >= LIMIT, "{written}");
        let before = count.0.load(Ordering::SeqCst);
        // Bytes are held and the socket is full: the flush waits for
        // writability rather than waking its own task again.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), before);
        // Once the peer reads, everything arrives.
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), written);
        assert!(got.iter().all(|&b| b == 7));
    }
}
