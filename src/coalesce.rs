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
//! system call, at the start of the connection's next read, at a write
//! beyond the buffer, or at shutdown. h2's connection reads its socket
//! every time it runs, until the read would block (`Connection::poll2` ends
//! in the codec's `poll_next`; its other exits wait on a flush, and closing
//! goes through `poll_shutdown`), so that next read always comes.
//!
//! That guarantee is h2's, not HTTP/1.1's: hyper's h1 dispatcher flushes on
//! every poll and in some states (pipelined bytes already buffered, a full
//! request-body channel) reads nothing, so deferring there would spin and
//! hold a response back. Coalescing is therefore switched on by what the
//! client sends, not by ALPN: only once the first bytes read are the
//! HTTP/2 connection preface, the same test hyper-util's server uses to
//! pick HTTP/2. Until then, and for good otherwise, every call goes
//! straight through.
//!
//! Backpressure is kept: when the socket cannot take the bytes, the flush
//! really waits (and registers for writability) instead of waking itself,
//! so a slow reader costs no spinning, and a full buffer refuses new writes.
//! The buffer, once used, stays allocated for the connection's life: at
//! most 16 KiB per HTTP/2 connection, as large as h2's own write buffer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back: one TLS record's worth of plaintext.
const LIMIT: usize = 16 * 1024;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct Coalesced<T> {
    inner: T,
    /// How many of the first bytes read matched the preface; once all 24
    /// have, writes are gathered. `None`: they did not, never gather.
    preface: Option<u8>,
    buf: Vec<u8>,
    /// How much of `buf` has been handed to `inner`.
    sent: usize,
    /// The last attempt to drain `buf` found the socket full; a flush must
    /// then wait for it rather than defer.
    blocked: bool,
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    pub fn new(inner: T) -> Self {
        Coalesced {
            inner,
            preface: Some(0),
            buf: Vec::new(),
            sent: 0,
            blocked: false,
        }
    }

    /// True once the client has sent the HTTP/2 preface.
    fn gathering(&self) -> bool {
        self.preface == Some(PREFACE.len() as u8)
    }

    /// Follows the first bytes the client sends.
    fn saw(&mut self, read: &[u8]) {
        if let Some(n) = self.preface {
            let n = usize::from(n);
            if n < PREFACE.len() {
                let take = read.len().min(PREFACE.len() - n);
                self.preface = (read[..take] == PREFACE[n..n + take]).then_some((n + take) as u8);
            }
        }
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
        if !matches!(this.preface, Some(n) if usize::from(n) < PREFACE.len()) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let filled = buf.filled();
            if filled.len() == before {
                this.preface = None; // end of stream
            } else {
                this.saw(&filled[before..]);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.gathering() {
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
        if !this.gathering() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        ready!(this.poll_room(cx, total))?;
        if this.buf.is_empty() && total >= LIMIT {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
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
        // While gathering, either way is a copy into `buf`; vectored lets h2
        // chain payloads instead of copying them into its buffer first.
        self.inner.is_write_vectored()
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

    /// A connected pair whose first bytes from the peer are the HTTP/2
    /// preface (`h2`) or an HTTP/1.1 request, read through the adapter.
    async fn pair(h2: bool) -> (Coalesced<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut io = Coalesced::new(ours);
        let hello: &[u8] = if h2 {
            PREFACE
        } else {
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        };
        peer.write_all(hello).await.unwrap();
        let mut got = vec![0u8; hello.len()];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(io.gathering(), h2);
        (io, peer)
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
    #[test]
    fn only_the_http2_preface_switches_gathering_on_even_in_pieces() {
        let fresh = || Coalesced::new(tokio::io::sink());
        let mut io = fresh();
        for piece in PREFACE.chunks(5) {
            assert!(!io.gathering());
            io.saw(piece);
        }
        assert!(io.gathering());
        io.saw(b"more frames");
        assert!(io.gathering(), "later bytes change nothing");

        for other in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PRI * HTTP/1.1\r\n",
            b"pri * http/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            let mut io = fresh();
            io.saw(other);
            io.saw(&PREFACE[other.len().min(PREFACE.len())..]);
            assert!(!io.gathering(), "{other:?}");
        }
        // A preface that is a prefix and then goes wrong.
        let mut io = fresh();
        io.saw(&PREFACE[..10]);
        io.saw(b"X");
        io.saw(&PREFACE[11..]);
        assert!(!io.gathering());
    }

    #[tokio::test]
    async fn http1_on_the_adapter_goes_straight_through_and_is_never_deferred() {
        // hyper's h1 dispatcher flushes on every poll and may not read for
        // a while: a deferred flush there would spin and hold the response.
        let (mut io, mut peer) = pair(false).await;
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(write(&mut io, &mut cx, b"HTTP/1.1 200"), Poll::Ready(12));
        // On the socket before any flush.
        let mut got = [0u8; 12];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200");
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn vectored_writes_are_gathered_and_a_large_one_goes_straight() {
        let (mut io, mut peer) = pair(true).await;
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let small = [IoSlice::new(b"frame head "), IoSlice::new(b"payload")];
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &small),
            Poll::Ready(Ok(18))
        ));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let mut byte = [0u8; 1];
        assert_eq!(
            peer.try_read(&mut byte).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // A write that would overflow the buffer sends what is held first;
        // with the buffer empty, a full record's worth is not copied.
        let big = vec![b'x'; LIMIT + 100];
        let parts = [IoSlice::new(b"hdr"), IoSlice::new(&big)];
        let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &parts))
            .await
            .unwrap();
        assert!(n > 0);
        assert!(io.buf.is_empty(), "the large write was not copied");
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..18], b"frame head payload");
        assert_eq!(&got[18..21], b"hdr");
        assert_eq!(got.len(), 18 + n);
    }

    #[tokio::test]
    async fn a_read_that_finds_the_socket_full_keeps_the_bytes_in_order() {
        let (mut io, mut peer) = pair(true).await;
        let (_count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Numbered bytes, so that any loss or reordering shows.
        let mut next = 0u32;
        let mut chunk = || {
            let c: Vec<u8> = (0..1000).map(|i| ((next + i) % 251) as u8).collect();
            next += 1000;
            c
        };
        let mut pending = chunk();
        while let Poll::Ready(n) = write(&mut io, &mut cx, &pending) {
            assert_eq!(n, pending.len());
            pending = chunk();
        }
        // The socket is full; the deferred drain in a read finds it so and
        // the read still goes on (nothing to read here).
        let mut scratch = [0u8; 8];
        let mut rb = ReadBuf::new(&mut scratch);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
        assert!(io.blocked);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        io.write_all(&pending).await.unwrap();
        io.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len() as u32, next);
        assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }
}
