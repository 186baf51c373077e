//! Upstream response heads, cleaned of malformed lines before hyper reads
//! them.
//!
//! hyper's client fails a whole response for one malformed header line (a
//! control byte in it, a bare CR, no colon), which made such a page a 502
//! behind the gateway where a browser shows it: a browser skips a line that
//! is not a field line, refuses only the cookie of a `Set-Cookie` line with
//! a control byte (RFC 6265bis §5.6), and keeps any other field; the
//! web-platform-tests cookie corpus has hundreds of such lines. hyper's
//! lenient mode (`ignore_invalid_headers_in_responses`) skips every
//! malformed line without saying which, and that is not safe in a proxy: a
//! framing line it skipped (`Transfer-Encoding: chunked<VT>` beside a valid
//! `Content-Length`) makes it read the body by a length the app did not
//! use, and the rest of that body then waits on a pooled connection, to be
//! read as the next client's response.
//!
//! [`Scrubbed`] sits between the upstream connection and hyper and decides
//! line by line, before hyper parses the head:
//!
//! - a line that is not a field line (no colon, a malformed name) is
//!   removed, as a browser skips it;
//! - a `Set-Cookie` line with a control byte is removed, as a browser
//!   refuses it;
//! - whitespace between a field name and its colon is taken out, as RFC
//!   9112 §5.1 asks of a proxy;
//! - everything else that is malformed is left as it is, for hyper to
//!   refuse (502): any line whose letters spell `content-length`,
//!   `transfer-encoding`, `connection` or `upgrade` anywhere, so that no
//!   line that decides how a body is read is ever changed or dropped; a
//!   folded line (obs-fold, RFC 9112 §5.2); and any other field with a
//!   control byte in its value. Removing that field would change what the
//!   page is (an attacker who gets one bad byte into an uploaded file's
//!   name must not turn `Content-Disposition: attachment` into a page
//!   served inline, nor strip a CSP), and a space in place of the byte
//!   could add a separator the app never sent (`Refresh: 0<SOH>url=...`).
//!
//! Every line hyper parses is therefore well formed or refused. A bare CR
//! counts as a control byte, not as a line end (RFC 9112 §2.2), where
//! Chromium ends the line there.
//!
//! Where a head starts is known, not guessed: the pool arms the
//! connection's [`HeadStart`] as it sends a request on it, and the scan
//! starts at the first read after the request's first bytes are written. A
//! pooled connection has no response bytes in flight then: it went back to
//! the pool only once its last response body was read to the end, and hyper
//! reads an idle connection before it writes (so stray bytes are seen and
//! refused by hyper, not taken for a head). From there the wrapper reads
//! heads, 1xx ones and the final one, up to the blank line that ends the
//! final head, and passes everything after it through untouched. Bytes it
//! did not scan reach hyper as they came, to be parsed strictly.
//!
//! The cost is one scan of each head in place, with no copy, unless a line
//! is removed or a read ends inside a line (that part of a line is then
//! held and put back in front of the next read's bytes).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest part of a line held from one read to the next. A line
/// longer than that which also straddles two reads ends the scan: the rest
/// of the head goes to hyper unscanned, to be parsed strictly.
const MAX_HELD: usize = 4096;

/// The most bytes of removed lines in one response's heads. Past that the
/// scan ends and the rest goes to hyper as it is, which refuses it: an
/// upstream that sends bad lines without end fails at once rather than at
/// its response timeout.
const MAX_REMOVED: usize = 64 * 1024;

/// Set by the pool when a request is sent: the next bytes read on the
/// connection start a response head.
#[derive(Clone, Debug, Default)]
pub struct HeadStart(Arc<AtomicBool>);

impl HeadStart {
    pub fn arm(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        // A plain load first: on the body path this runs on every read.
        self.0.load(Ordering::Acquire) && self.0.swap(false, Ordering::AcqRel)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before a status line.
    Status,
    /// In a head's field lines; `interim` for a 1xx head other than 101,
    /// after which another head follows.
    Fields { interim: bool },
    /// After the final head, or not scanning: bytes pass as they come.
    Body,
}

/// An upstream connection whose response heads are cleaned of malformed
/// lines before hyper reads them.
pub struct Scrubbed<T> {
    inner: T,
    start: HeadStart,
    phase: Phase,
    /// The start of a line cut by the end of a read (while scanning), or
    /// bytes to pass on unscanned before anything else (in `Body`).
    held: Vec<u8>,
    /// Lines removed or repaired in the current response's heads, and the
    /// bytes of those removed.
    cleaned: usize,
    removed_bytes: usize,
}

impl<T> Scrubbed<T> {
    pub fn new(inner: T, start: HeadStart) -> Scrubbed<T> {
        Scrubbed {
            inner,
            start,
            phase: Phase::Body,
            held: Vec::new(),
            cleaned: 0,
            removed_bytes: 0,
        }
    }

    /// After a write: the first bytes of an armed request have left, so
    /// what is read next is its response. Not earlier: hyper reads an idle
    /// connection before writing on it, and bytes found then are not a
    /// response but stray ones, which hyper must see and refuse.
    fn on_written(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) && self.start.take() {
            self.phase = Phase::Status;
            self.held.clear();
            self.cleaned = 0;
            self.removed_bytes = 0;
        }
    }

    /// Scans `region` (bytes just read, behind what was held) in place:
    /// keeps what hyper should read at its front and returns its length,
    /// and the offset of a cut line at its end still to be completed.
    fn scrub(&mut self, region: &mut [u8]) -> (usize, usize) {
        let (mut read, mut kept) = (0, 0);
        while self.phase != Phase::Body {
            let Some(lf) = memchr::memchr(b'\n', &region[read..]) else {
                break;
            };
            let end = read + lf + 1;
            if self.removed_bytes > MAX_REMOVED {
                self.phase = Phase::Body;
                break;
            }
            let stays = self.keeps(&mut region[read..end]);
            if stays == 0 {
                self.removed_bytes += end - read;
            } else {
                if kept != read {
                    region.copy_within(read..read + stays, kept);
                }
                kept += stays;
            }
            read = end;
        }
        if self.phase == Phase::Body {
            // The first bytes of the body: as they are.
            let len = region.len();
            region.copy_within(read..len, kept);
            kept += len - read;
            read = len;
        }
        (kept, read)
    }

    /// How much of a whole line (its LF included) stays, moving the phase
    /// on: all of it, none (removed), or less when spaces before a colon
    /// were taken out (the line shifted to the front of `line`).
    fn keeps(&mut self, line: &mut [u8]) -> usize {
        let all = line.len();
        let mut len = all;
        len -= usize::from(line.ends_with(b"\n"));
        len -= usize::from(line[..len].ends_with(b"\r"));
        let text = &line[..len];
        match self.phase {
            Phase::Status => {
                if !text.is_empty() {
                    self.phase = Phase::Fields {
                        interim: is_interim(text),
                    };
                }
                all
            }
            Phase::Fields { interim } => {
                if text.is_empty() {
                    self.phase = if interim { Phase::Status } else { Phase::Body };
                    if self.phase == Phase::Body && self.cleaned > 0 {
                        crate::audit::Counters::add(
                            &crate::audit::COUNTERS.malformed_upstream_header_lines,
                            self.cleaned as u64,
                        );
                        tracing::debug!(
                            lines = self.cleaned,
                            "malformed upstream header lines cleaned"
                        );
                        self.cleaned = 0;
                    }
                    return all;
                }
                let name = token_len(text);
                let colon = name
                    + text[name..]
                        .iter()
                        .take_while(|&&b| matches!(b, b' ' | b'\t'))
                        .count();
                let named = name > 0 && text.get(colon) == Some(&b':');
                let value_ok = named && value_bytes_ok(&text[colon + 1..]);
                if value_ok && colon == name {
                    return all;
                }
                // Left as they are for hyper to refuse: a folded line
                // (obs-fold; removing it would cut its field short, keeping
                // it after a removed line would graft it onto the one
                // before), a line starting with a bare CR (where Chromium
                // would end the head), and any line about framing.
                if matches!(text[0], b' ' | b'\t' | b'\r') || about_framing(text) {
                    return all;
                }
                self.cleaned += 1;
                if !named {
                    // Not a field line at all (no colon, no name): a
                    // browser skips it.
                    return 0;
                }
                if !value_ok {
                    // A Set-Cookie with a control byte: a browser refuses
                    // it (RFC 6265bis §5.6). Any other field is left for
                    // hyper to refuse: removed, a spoiled field could change
                    // what the page is (an attachment served inline, a page
                    // without its CSP), and a control byte made a space
                    // could add a separator the app never sent.
                    return if is_set_cookie(&text[..name]) { 0 } else { all };
                }
                // Whitespace between the name and the colon, which a proxy
                // must remove (RFC 9112 §5.1).
                line.copy_within(colon.., name);
                all - (colon - name)
            }
            Phase::Body => all,
        }
    }
}

/// A 1xx status other than 101, read as httparse reads a status line
/// (`HTTP/1.x`, one space, three digits). hyper reads another head after it.
fn is_interim(status_line: &[u8]) -> bool {
    match status_line.get(8..12) {
        Some([b' ', b'1', d1, d2]) => {
            d1.is_ascii_digit() && d2.is_ascii_digit() && [*d1, *d2] != *b"01"
        }
        _ => false,
    }
}

/// A field line (its line end taken off) that httparse accepts as hyper's
/// client configures it: a token, a colon, then tab, visible ASCII, space
/// or obs-text only.
#[cfg(test)]
fn well_formed(text: &[u8]) -> bool {
    let name = token_len(text);
    name > 0 && text.get(name) == Some(&b':') && value_bytes_ok(&text[name + 1..])
}

/// Whether a field name is `Set-Cookie`.
fn is_set_cookie(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"set-cookie")
}

/// The length of the token a line starts with: its field name, if any.
fn token_len(text: &[u8]) -> usize {
    text.iter()
        .position(|&b| !TCHAR[usize::from(b)])
        .unwrap_or(text.len())
}

/// Tab, visible ASCII, space and obs-text (httparse's value bytes). Without
/// an early exit, so that it compiles to vector compares.
fn value_bytes_ok(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| {
        ok & ((b >= 0x20 && b != 0x7f) | (b == b'\t'))
    })
}

/// Whether `bytes` start with a whole final head (not 1xx) whose lines all
/// end in CRLF and are all well formed: then the scan has nothing to do.
/// The hot path, hence one pass for the bytes and one per line for names.
fn is_clean_final_head(bytes: &[u8]) -> bool {
    let Some(status_end) = memchr::memchr(b'\n', bytes) else {
        return false;
    };
    if status_end < 2 || is_interim(&bytes[..status_end - 1]) {
        return false;
    }
    let mut start = status_end + 1;
    let end = loop {
        let Some(lf) = memchr::memchr(b'\n', &bytes[start..]) else {
            return false;
        };
        if lf == 1 {
            break start + 2;
        }
        // `lf` is the line's length, so the colon's place is in bounds.
        let colon = start + token_len(&bytes[start..start + lf]);
        if colon == start || bytes[colon] != b':' {
            return false;
        }
        start += lf + 1;
    };
    // Every byte a value byte, CR or LF, and a CR exactly before each LF
    // (the head ends in one). Branch-free, so that it compiles to vector
    // compares.
    let (this, next) = (&bytes[..end - 1], &bytes[1..end]);
    let mut bad = u8::from(bytes[0] == b'\n');
    for i in 0..this.len() {
        let (a, b) = (this[i], next[i]);
        let control = ((a < 0x20) & (a != b'\t') & (a != b'\r') & (a != b'\n')) | (a == 0x7f);
        bad |= u8::from(control | ((a == b'\r') != (b == b'\n')));
    }
    bad == 0
}

/// RFC 9110 §5.6.2 `tchar`, as a table.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// Whether a malformed line could be a framing or connection field: its
/// letters, lower-cased and with everything else left out, contain one of
/// their names. Generous on purpose (`X-Note: connection<NUL>` counts):
/// such a line fails the response rather than being dropped.
fn about_framing(text: &[u8]) -> bool {
    let letters: Vec<u8> = text
        .iter()
        .filter(|b| b.is_ascii_alphabetic())
        .map(|b| b.to_ascii_lowercase())
        .collect();
    [
        &b"contentlength"[..],
        b"transferencoding",
        b"connection",
        b"upgrade",
    ]
    .iter()
    .any(|name| letters.windows(name.len()).any(|w| w == *name))
}

impl<T: AsyncRead + Unpin> AsyncRead for Scrubbed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.phase == Phase::Body {
            if this.held.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Unscanned bytes held when the scan ended go first.
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held[..n]);
            this.held.drain(..n);
            return Poll::Ready(Ok(()));
        }
        loop {
            let from = buf.filled().len();
            if this.held.len() >= buf.remaining() {
                // No room to read behind the held part: stop scanning.
                this.phase = Phase::Body;
                return Pin::new(this).poll_read(cx, buf);
            }
            buf.put_slice(&this.held);
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => {
                    // Nothing read: the held part stays held.
                    buf.set_filled(from);
                    return other;
                }
            }
            if buf.filled().len() == before {
                // The end of the stream inside a head: what was held goes
                // as it is, and hyper reports the cut head.
                this.held.clear();
                this.phase = Phase::Body;
                return Poll::Ready(Ok(()));
            }
            this.held.clear();
            let region = &mut buf.filled_mut()[from..];
            if this.phase == Phase::Status && is_clean_final_head(region) {
                // The usual case: a whole final head, nothing to remove.
                this.phase = Phase::Body;
                return Poll::Ready(Ok(()));
            }
            let (kept, cut) = this.scrub(region);
            this.held.extend_from_slice(&region[cut..]);
            buf.set_filled(from + kept);
            if this.held.len() > MAX_HELD {
                // A line too long to hold: the rest goes unscanned.
                this.phase = Phase::Body;
            }
            if kept > 0 {
                return Poll::Ready(Ok(()));
            }
            if this.phase == Phase::Body {
                return Pin::new(this).poll_read(cx, buf);
            }
            // Only part of a line so far: read on.
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Scrubbed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_written(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_written(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads `wire` through a scrubber armed and written to, as the pool
    /// does, the bytes arriving in pieces of `piece` bytes, into a buffer of
    /// `cap` bytes per read.
    async fn through(wire: &[u8], piece: usize, cap: usize) -> Vec<u8> {
        let mut mock = Pieces {
            rest: wire.to_vec(),
            piece,
        };
        let start = HeadStart::default();
        start.arm();
        let mut s = Scrubbed::new(&mut mock, start);
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let mut chunk = vec![0; cap];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// A connection that hands out its bytes in pieces, as a socket would,
    /// and takes any write.
    struct Pieces {
        rest: Vec<u8>,
        piece: usize,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.piece.min(self.rest.len()).min(buf.remaining());
            buf.put_slice(&self.rest[..n]);
            self.rest.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Pieces {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn every_split(wire: &[u8], want: &[u8]) {
        for piece in 1..=wire.len() {
            // hyper reads into at least 8 KiB.
            for cap in [8192, 1 << 16] {
                let got = through(wire, piece, cap).await;
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(want),
                    "pieces of {piece}, reads of {cap}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_well_formed_response_passes_unchanged() {
        let wire = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b; Path=/\r\nX-Odd: \tspaced \x80\xff\r\nContent-Length: 5\r\n\r\nhello";
        every_split(wire, wire).await;
    }

    #[tokio::test]
    async fn whitespace_before_a_colon_is_taken_out() {
        // RFC 9112 §5.1: a proxy must remove it.
        let wire = b"HTTP/1.1 200 OK\r\nSet-Cookie \t : a=b\r\nX-Odd : spaced\r\nContent-Length: 5\r\n\r\nhello";
        let want = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nX-Odd: spaced\r\nContent-Length: 5\r\n\r\nhello";
        every_split(wire, want).await;
    }

    #[tokio::test]
    async fn lines_a_browser_skips_are_removed_and_nothing_else() {
        let wire = b"HTTP/1.1 200 OK\r\nSet-Cookie: bad=1\x01\r\nno colon here\r\nset-cookie : a=1\rb\r\n(x): y\r\nSet-Cookie: good=1\r\nContent-Length: 9\r\n\r\nbody\x01\r\n\x7f!";
        let want =
            b"HTTP/1.1 200 OK\r\nSet-Cookie: good=1\r\nContent-Length: 9\r\n\r\nbody\x01\r\n\x7f!";
        every_split(wire, want).await;
    }

    #[tokio::test]
    async fn any_other_field_with_a_control_byte_is_left_for_hyper_to_refuse() {
        // Removed, it would change what the page is (an attachment served
        // inline, a page without its CSP); a space in place of the byte
        // could add a separator (`Refresh: 0<SOH>url=...`).
        for line in [
            &b"Content-Disposition: attachment; filename=\"a\x7f.html\"\r\n"[..],
            b"Content-Security-Policy: default-src 'self'\x01https://evil.test\r\n",
            b"Refresh : 0\x01url=https://evil.test/\r\n",
            b"Content-Type: text/plain;\rcharset=\x00\n",
            b"Set-Cookie2: a=\x01\r\n",
            // A line starting with a bare CR, where Chromium ends the head.
            b"\r\r\n",
        ] {
            let wire = [
                &b"HTTP/1.1 200 OK\r\n"[..],
                line,
                b"Content-Length: 0\r\n\r\n",
            ]
            .concat();
            every_split(&wire, &wire).await;
        }
    }

    #[tokio::test]
    async fn a_bare_lf_ends_a_line() {
        let wire = b"HTTP/1.1 200 OK\nSet-Cookie: lf=13\nZYX\r\nContent-Length: 0\n\n";
        let want = b"HTTP/1.1 200 OK\nSet-Cookie: lf=13\nContent-Length: 0\n\n";
        every_split(wire, want).await;
    }

    #[tokio::test]
    async fn a_malformed_framing_line_is_left_for_hyper_to_refuse() {
        for line in [
            &b"Transfer-Encoding: chunked\x0b\r\n"[..],
            b"transfer-\x01encoding: chunked\r\n",
            b"Content Length: 5\r\n",
            b"CONTENT-LENGTH\x00: 5\r\n",
            b"Connection: close\x7f\r\n",
            b"X: upgrade\x01\r\n",
            b"Content-Length 5\r\n",
            // Whitespace before the colon, which hyper refuses and which is
            // taken out of any other field.
            b"Transfer-Encoding : chunked\r\n",
            b"content-length\t: 5\r\n",
        ] {
            let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
            wire.extend_from_slice(line);
            wire.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
            every_split(&wire, &wire).await;
        }
    }

    #[tokio::test]
    async fn a_folded_line_is_left_for_hyper_to_refuse() {
        let wire =
            b"HTTP/1.1 200 OK\r\nSet-Cookie: \x01\r\n Set-Cookie: a=b\r\nContent-Length: 0\r\n\r\n";
        let want = b"HTTP/1.1 200 OK\r\n Set-Cookie: a=b\r\nContent-Length: 0\r\n\r\n";
        every_split(wire, want).await;
    }

    #[tokio::test]
    async fn interim_heads_are_scanned_and_the_body_is_not() {
        let wire = b"HTTP/1.1 100 Continue\r\nX\x01\r\n\r\nHTTP/1.1 103 Early Hints\r\nSet-Cookie: \x02\r\n\r\nHTTP/1.1 200 OK\r\nX\r\nContent-Length: 8\r\n\r\nY\r\nZ\x02\r\n";
        let want = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nY\r\nZ\x02\r\n";
        every_split(wire, want).await;
    }

    #[tokio::test]
    async fn after_a_101_everything_is_the_tunnels() {
        let wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nX\x01\r\n\r\n";
        every_split(wire, wire).await;
    }

    #[tokio::test]
    async fn nothing_is_scanned_before_an_armed_request_is_written() {
        let wire = b"HTTP/1.1 200 OK\r\nX\x01\r\n\r\n";
        let clean = b"HTTP/1.1 200 OK\r\n\r\n";
        let read = |s: &mut Scrubbed<Pieces>| {
            let mut out = vec![0; 64];
            let n = futures_now(s.read(&mut out)).unwrap();
            out.truncate(n);
            out
        };
        let pieces = || Pieces {
            rest: wire.to_vec(),
            piece: 64,
        };
        // Never armed, or armed and read before the request went (hyper's
        // read of an idle connection): as it came.
        let mut s = Scrubbed::new(pieces(), HeadStart::default());
        futures_now(s.write_all(b"GET /")).unwrap();
        assert_eq!(read(&mut s), wire);
        let start = HeadStart::default();
        let mut s = Scrubbed::new(pieces(), start.clone());
        start.arm();
        assert_eq!(read(&mut s), wire);
        // Armed, then written: scanned.
        let mut s = Scrubbed::new(pieces(), start.clone());
        start.arm();
        futures_now(s.write_all(b"GET /")).unwrap();
        assert_eq!(read(&mut s), clean);
    }

    /// Runs a future that is ready at once (the test connection never
    /// blocks).
    fn futures_now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the test connection blocked"),
        }
    }

    #[tokio::test]
    async fn a_line_too_long_to_hold_ends_the_scan() {
        let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        long.resize(long.len() + 2 * MAX_HELD, b'a');
        let wire = [
            &long[..],
            b"\r\nSet-Cookie: \x01\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat();
        // In one read it is scanned; cut, the rest passes as it is.
        let want = [&long[..], b"\r\nContent-Length: 0\r\n\r\n"].concat();
        assert_eq!(through(&wire, wire.len(), 1 << 16).await, want);
        assert_eq!(through(&wire, 1000, 1 << 16).await, wire);
    }

    #[tokio::test]
    async fn bad_lines_without_end_end_the_scan() {
        let bad = b"X\x01\r\n".repeat(MAX_REMOVED / 3);
        let wire = [
            &b"HTTP/1.1 200 OK\r\n"[..],
            &bad,
            b"Content-Length: 0\r\n\r\n",
        ]
        .concat();
        let got = through(&wire, 8192, 8192).await;
        // Lines up to the limit are gone; the rest reaches hyper, which
        // refuses the first of them.
        assert!(got.len() < wire.len() && got.len() > wire.len() - MAX_REMOVED - 16);
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nX\x01\r\n"));
        assert!(got.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_read_buffer_too_small_to_scan_into_ends_the_scan() {
        let wire = b"HTTP/1.1 200 OK\r\nX\x01\r\nContent-Length: 0\r\n\r\n";
        for cap in [1, 2, 7] {
            assert_eq!(through(wire, 1, cap).await, wire);
        }
    }

    #[tokio::test]
    async fn a_head_cut_by_the_end_of_the_stream_reaches_hyper_as_it_came() {
        let wire = b"HTTP/1.1 200 OK\r\nX\x01\r\nSet-Cookie: a";
        assert_eq!(
            through(wire, 4, 8192).await,
            b"HTTP/1.1 200 OK\r\nSet-Cookie: a"
        );
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: no panic, the same result however the
        /// reads fall (the fast path for whole heads agrees with the line
        /// scan), and nothing after the final head is touched.
        #[test]
        fn the_scan_does_not_depend_on_how_reads_fall(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::bytes_regex("(?s-u)[A-Za-z -]{0,6}(: ?)?[a-z=;\\x00-\\x20\\x7f\\x80]{0,6}\\r?\\n?").unwrap(),
                    proptest::strategy::Just(b"HTTP/1.1 103 Early\r\n".to_vec()),
                    proptest::strategy::Just(b"\r\n".to_vec()),
                    proptest::strategy::Just(b"Set-Cookie: a=b\r\n".to_vec()),
                ],
                0..12,
            ),
            piece in 1usize..40,
        ) {
            let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
            for l in &lines {
                wire.extend_from_slice(l);
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let whole = rt.block_on(through(&wire, wire.len(), 8192));
            let cut = rt.block_on(through(&wire, piece, 8192));
            proptest::prop_assert_eq!(&whole, &cut);
            // A head scanned whole with nothing removed is passed as it is.
            let mut s = Scrubbed::new(&wire[..], HeadStart::default());
            s.phase = Phase::Status;
            let mut region = wire.clone();
            let (kept, read) = s.scrub(&mut region);
            if is_clean_final_head(&wire) {
                proptest::prop_assert_eq!((kept, read, s.cleaned, &region), (wire.len(), wire.len(), 0, &wire));
            }
        }
    }

    proptest::proptest! {
        /// A line is taken for well formed exactly when httparse, as hyper's
        /// client configures it, accepts it: every line the scan changes or
        /// removes is one hyper would have refused, every line it passes as
        /// well formed one hyper reads.
        #[test]
        fn well_formed_is_what_httparse_accepts(
            line in proptest::string::bytes_regex("(?s-u)[ \\tA-Za-z0-9(:;=\\x00-\\x09\\x0b-\\x1f\\x7f\\x80\\xff-]{0,12}").unwrap(),
        ) {
            let wire = [&b"HTTP/1.1 200 OK\r\n"[..], &line, b"\r\n\r\n"].concat();
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let mut res = httparse::Response::new(&mut headers);
            let accepted = httparse::ParserConfig::default()
                .parse_response(&mut res, &wire)
                .is_ok_and(|s| s.is_complete() && res.headers.len() == 1);
            let text = &line[..];
            let ours = !matches!(text.first(), None | Some(b' ' | b'\t')) && well_formed(text);
            proptest::prop_assert_eq!(ours, accepted, "{:?}", String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn interim_is_read_as_httparse_reads_it() {
        assert!(is_interim(b"HTTP/1.1 100 Continue"));
        assert!(is_interim(b"HTTP/1.0 199"));
        assert!(!is_interim(b"HTTP/1.1 101 Switching Protocols"));
        assert!(!is_interim(b"HTTP/1.1 200 OK"));
        assert!(!is_interim(b"HTTP/1.1  100 Continue"));
        assert!(!is_interim(b"HTTP/1.1 1"));
    }
}
