//! Session IDs in request bodies: fields named after a session parameter are
//! removed from `application/x-www-form-urlencoded` and
//! `multipart/form-data` bodies, as the body streams.
//!
//! PHP with `session.use_only_cookies=0` takes the session ID from a POST
//! field, so a cross-site form can hand the app an ID the attacker knows.
//! Field names are matched as in URLs (any case, percent-encoded, `+` for a
//! space, PHP array suffixes), and a body that does not parse as its
//! declared type is an error (the request is refused, not forwarded
//! unexamined).

use bytes::{Bytes, BytesMut};

use super::names::NameSet;

/// A field name longer than this is no form a browser sends: refused.
const MAX_NAME: usize = 8 * 1024;
/// Multipart part headers longer than this: refused.
const MAX_PART_HEADERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("a form field name is over {MAX_NAME} bytes")]
    NameTooLong,
    #[error("multipart body without a boundary every parser reads alike")]
    NoBoundary,
    #[error("multipart part headers are malformed or over {MAX_PART_HEADERS} bytes")]
    PartHeaders,
    #[error("multipart body ends before its closing boundary")]
    Truncated,
    #[error("multipart delimiter line carries more than its boundary")]
    Delimiter,
}

/// Which filter a request body needs, from its `Content-Type`.
pub fn kind(content_type: &[u8]) -> Option<Kind> {
    // Not UTF-8 is no reason to let a form through unfiltered.
    let ct = String::from_utf8_lossy(content_type);
    let ct = ct.as_ref();
    let mut params = ct.split(';');
    let essence = params.next()?.trim();
    // PHP ends the media type at `;`, `,` or a space (main/SAPI.c), and
    // Werkzeug strips any Unicode space (read as Latin-1): where any
    // reading names a form, the body is filtered as one.
    let php_essence = ct.split([';', ',', ' ']).next().unwrap_or("");
    let media = ct.split([';', ',']).next().unwrap_or("");
    let is = |t: &str| {
        essence.eq_ignore_ascii_case(t)
            || php_essence.eq_ignore_ascii_case(t)
            || bare(media).eq(t.bytes())
    };
    if is("application/x-www-form-urlencoded") {
        return Some(Kind::Urlencoded);
    }
    if is("multipart/form-data") {
        let boundary = params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| (v.trim_matches('"'), v.starts_with('"')))
        });
        // Where another parser could read another boundary (PHP takes the
        // first `boundary` anywhere and ends it at `,` or `;`, Werkzeug
        // takes the last parameter), the gateway and the app would see
        // different parts: no boundary, and the request fails.
        // One boundary parameter, not also `boundary*` (RFC 2231) or one
        // behind a byte another parser takes for a space.
        let once = ct
            .split(';')
            .filter(|p| {
                p.split_once('=').is_some_and(|(k, _)| {
                    let mut k = bare(k);
                    b"boundary".iter().all(|&c| k.next() == Some(c))
                })
            })
            .count()
            == 1;
        let agreed = boundary.filter(|&(b, quoted)| {
            once && php_boundary(ct) == Some(b) && plain_boundary(b, quoted)
        });
        return Some(Kind::Multipart(
            agreed
                .map(|(b, _)| b.to_string())
                .filter(|b| !b.is_empty() && b.len() <= 70),
        ));
    }
    None
}

/// A parameter name or media type with every byte but the ASCII
/// token ones dropped, lower-cased: what a lenient parser makes of it.
fn bare(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes()
        .filter(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'"' | b'('
                        | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
        .map(|b| b.to_ascii_lowercase())
}

/// Whether every parser reads the boundary alike: quoted, only RFC 2046's
/// boundary characters (no space, so no trimming question); unquoted, only
/// token characters that no parser ends a token at. Browsers' boundaries
/// (`----WebKitFormBoundary...`, `-----...123`) are both.
fn plain_boundary(b: &str, quoted: bool) -> bool {
    b.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'\'' | b'+' | b'_' | b'-' | b'.')
            || (quoted && matches!(c, b'(' | b')' | b',' | b'/' | b':' | b'=' | b'?'))
    })
}

/// The boundary as PHP's multipart parser reads it (main/rfc1867.c): after
/// the first `boundary` anywhere in the header (any case when no lower-case
/// one), its first `=`; a quoted value to its closing quote, else up to `,`
/// or `;`, untrimmed. Commons FileUpload also ends it at `,` or `;`.
fn php_boundary(ct: &str) -> Option<&str> {
    let at = ct
        .find("boundary")
        .or_else(|| ct.to_ascii_lowercase().find("boundary"))?;
    let rest = &ct[at..];
    let value = &rest[rest.find('=')? + 1..];
    match value.strip_prefix('"') {
        Some(quoted) => quoted.find('"').map(|end| &quoted[..end]),
        None => Some(value.find([',', ';']).map_or(value, |end| &value[..end])),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Urlencoded,
    /// The boundary, or `None` when the header lacks one (an error).
    Multipart(Option<String>),
}

/// A streaming filter: feed chunks, take what may go on, finish at the end.
pub enum Filter {
    Urlencoded(Urlencoded),
    Multipart(Multipart),
}

impl Filter {
    pub fn new(kind: Kind, names: NameSet) -> Result<Filter, FormError> {
        Ok(match kind {
            Kind::Urlencoded => Filter::Urlencoded(Urlencoded::new(names)),
            Kind::Multipart(Some(b)) => Filter::Multipart(Multipart::new(&b, names)),
            Kind::Multipart(None) => return Err(FormError::NoBoundary),
        })
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, FormError> {
        match self {
            Filter::Urlencoded(f) => f.feed(chunk),
            Filter::Multipart(f) => f.feed(chunk),
        }
    }

    pub fn finish(&mut self) -> Result<Bytes, FormError> {
        match self {
            Filter::Urlencoded(f) => f.finish(),
            Filter::Multipart(f) => f.finish(),
        }
    }

    /// How many fields were removed so far.
    pub fn removed(&self) -> usize {
        match self {
            Filter::Urlencoded(f) => f.removed,
            Filter::Multipart(f) => f.removed,
        }
    }
}

/// Whether a form field name (raw, `+` for space) is a session name.
fn is_session_field(names: &NameSet, raw: &[u8]) -> bool {
    if raw.contains(&b'+') {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        return names.matches(&spaced);
    }
    names.matches(raw)
}

/// The values of every `name` parameter in a part header line, found
/// wherever a parameter may start (after `:`, `;`, whitespace or a
/// non-ASCII byte, also inside another parameter's quotes: a candidate too
/// many only removes more). Whitespace is C's `isspace`, as PHP's parser
/// has it. A quoted value ends at its unescaped closing quote or the end
/// of the line.
/// `name*=utf-8''x` (RFC 5987, which reqwest sends for names with spaces
/// or non-ASCII) also gives `x`, still percent-encoded. Returns whether an
/// RFC 2231 continuation (`name*0=`, which RFC 7578 forbids and parsers
/// join differently) is there.
fn name_params(v: &[u8], out: &mut Vec<Vec<u8>>) -> bool {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut extended_seen = false;
    let mut i = 0;
    while i + 4 <= v.len() {
        // After a non-ASCII byte too: Werkzeug strips Unicode spaces.
        let starts = i == 0 || matches!(v[i - 1], b';' | b':') || ws(v[i - 1]) || v[i - 1] >= 0x80;
        if !(starts && v[i..i + 4].eq_ignore_ascii_case(b"name")) {
            i += 1;
            continue;
        }
        let mut j = i + 4;
        let extended = v.get(j) == Some(&b'*');
        if extended {
            j += 1;
        }
        while v.get(j).copied().is_some_and(ws) {
            j += 1;
        }
        if v.get(j) != Some(&b'=') {
            extended_seen |= extended;
            i += 1;
            continue;
        }
        j += 1;
        while v.get(j).copied().is_some_and(ws) {
            j += 1;
        }
        let mut value = Vec::new();
        match v.get(j) {
            Some(&q) if q == b'"' || q == b'\'' => {
                j += 1;
                while let Some(&b) = v.get(j) {
                    j += 1;
                    if b == q {
                        break;
                    }
                    if b == b'\\'
                        && let Some(&next) = v.get(j)
                    {
                        value.push(next);
                        j += 1;
                        continue;
                    }
                    value.push(b);
                }
            }
            _ => {
                while let Some(&b) = v.get(j).filter(|&&b| b != b';' && !ws(b)) {
                    value.push(b);
                    j += 1;
                }
                // Werkzeug ends an unquoted value at the first byte that
                // is not a token character.
                let token = value
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
                    .unwrap_or(value.len());
                if token < value.len() {
                    out.push(value[..token].to_vec());
                }
            }
        }
        if extended && let Some(at) = value.windows(2).position(|w| w == b"''") {
            out.push(value[at + 2..].to_vec());
        }
        out.push(value);
        i += 1;
    }
    extended_seen
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Reading the name; it sits in `pending`.
    Name,
    Pass,
    Skip,
}

pub struct Urlencoded {
    names: NameSet,
    state: Field,
    pending: Vec<u8>,
    emitted_any: bool,
    pub removed: usize,
}

impl Urlencoded {
    pub fn new(names: NameSet) -> Urlencoded {
        Urlencoded {
            names,
            state: Field::Name,
            pending: Vec::new(),
            emitted_any: false,
            removed: 0,
        }
    }

    /// Decides the field whose name is in `pending`.
    fn decide(&mut self, out: &mut BytesMut) {
        if is_session_field(&self.names, &self.pending) {
            self.removed += 1;
            self.state = Field::Skip;
        } else {
            if self.emitted_any {
                out.extend_from_slice(b"&");
            }
            out.extend_from_slice(&self.pending);
            self.emitted_any = true;
            self.state = Field::Pass;
        }
        self.pending.clear();
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, FormError> {
        let mut out = BytesMut::with_capacity(chunk.len());
        let mut rest = chunk;
        while !rest.is_empty() {
            match self.state {
                Field::Name => {
                    let end = rest.iter().position(|&b| b == b'=' || b == b'&');
                    let take = end.unwrap_or(rest.len());
                    self.pending.extend_from_slice(&rest[..take]);
                    if self.pending.len() > MAX_NAME {
                        return Err(FormError::NameTooLong);
                    }
                    let Some(at) = end else { break };
                    let sep = rest[at];
                    let was_empty = self.pending.is_empty() && sep == b'&';
                    if !was_empty {
                        self.decide(&mut out);
                    }
                    if sep == b'=' {
                        if self.state == Field::Pass {
                            out.extend_from_slice(b"=");
                        }
                        rest = &rest[at + 1..];
                    } else {
                        // `&` right after the name: a field without a value.
                        self.state = Field::Name;
                        rest = &rest[at + 1..];
                    }
                }
                Field::Pass | Field::Skip => {
                    let end = rest.iter().position(|&b| b == b'&');
                    let take = end.unwrap_or(rest.len());
                    if self.state == Field::Pass {
                        out.extend_from_slice(&rest[..take]);
                    }
                    match end {
                        Some(at) => {
                            self.state = Field::Name;
                            rest = &rest[at + 1..];
                        }
                        None => break,
                    }
                }
            }
        }
        Ok(out.freeze())
    }

    pub fn finish(&mut self) -> Result<Bytes, FormError> {
        let mut out = BytesMut::new();
        if self.state == Field::Name && !self.pending.is_empty() {
            self.decide(&mut out);
        }
        Ok(out.freeze())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before the first delimiter (the preamble is dropped).
    Preamble,
    /// Reading a part's headers into `buf`.
    Headers,
    /// Inside a part's body.
    Body { pass: bool },
    /// At a delimiter line: `rest()` starts at its `--`.
    Delimiter,
    /// After the closing delimiter (the epilogue is dropped).
    Done,
}

/// A streaming multipart filter. Between chunks `buf` keeps what could
/// still start a delimiter, or a part's headers not yet ended (at most
/// `MAX_PART_HEADERS`), behind the bytes already consumed (`off`).
/// Parsers disagree on what else ends a line or a part (PHP: LF with an
/// optional CR, and a boundary anywhere its 5 KiB line buffer splits;
/// Werkzeug: CR, LF or CRLF), so the filter reads the form browsers send
/// and refuses the rest: every `--boundary` in the body must open a line
/// after CRLF and be followed by CRLF or `--`, and part headers end at an
/// empty CRLF line and are lines without folding or control bytes (a bare
/// LF between them ends a line for every parser, and each line is read). A part any of them would find
/// is then a part this filter finds.
pub struct Multipart {
    names: NameSet,
    /// `--boundary`
    delimiter: Vec<u8>,
    state: Part,
    buf: Vec<u8>,
    /// The two bytes before `buf`, for a delimiter at its very start.
    before: [u8; 2],
    /// How much of a header block `buf` holds was searched already.
    scanned: usize,
    /// Bytes at the front of `buf` already consumed.
    off: usize,
    /// Whether any byte came in.
    fed: bool,
    pub removed: usize,
}

/// Where a part's header block ends: the length of its header lines and
/// of the block with the empty line (CRLF) that ends it; no header lines at
/// all is an empty line at once. The search starts near `from`, where the
/// last one stopped.
fn headers_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    if buf.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    let from = from.saturating_sub(3);
    find(&buf[from..], b"\r\n\r\n").map(|at| (from + at, from + at + 4))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Multipart {
    pub fn new(boundary: &str, names: NameSet) -> Multipart {
        let mut delimiter = b"--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Multipart {
            names,
            delimiter,
            state: Part::Preamble,
            buf: Vec::new(),
            // The body may start with the delimiter: as if after a CRLF.
            before: *b"\r\n",
            scanned: 0,
            off: 0,
            fed: false,
            removed: 0,
        }
    }

    /// Every field name the part's headers could give it. PHP keeps the
    /// last `name` parameter and honours quotes (double and single, with
    /// backslash escapes); other parsers keep the first. Any `name` that any
    /// of them could read counts, so the part goes if one of them is a
    /// session name: reading loosely only ever removes more. Header lines
    /// are strict (see `Multipart`).
    fn part_names(headers: &[u8]) -> Result<Vec<Vec<u8>>, FormError> {
        let mut names = Vec::new();
        if headers.is_empty() {
            return Ok(names);
        }
        for line in headers.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let bad_byte = line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f);
            let folded = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
            // PHP reads lines in 5 KiB pieces: a longer one becomes two.
            let split = line.len() + 2 >= 5 * 1024;
            if bad_byte || folded || split || !line.contains(&b':') || name_params(line, &mut names)
            {
                return Err(FormError::PartHeaders);
            }
        }
        Ok(names)
    }

    /// Drops `n` bytes from the front of `buf`, remembering the last two.
    fn consume(&mut self, n: usize) {
        let rest = self.rest();
        match n {
            0 => {}
            1 => self.before = [self.before[1], rest[0]],
            _ => self.before = [rest[n - 2], rest[n - 1]],
        }
        // Dropped for real once per chunk, not once per part: many small
        // parts in one large chunk would otherwise move it again and again.
        self.off += n;
    }

    /// What `buf` holds past the bytes consumed.
    fn rest(&self) -> &[u8] {
        &self.buf[self.off..]
    }

    /// Whether CRLF comes right before `buf[at]`.
    fn crlf_before(&self, at: usize) -> bool {
        match at {
            0 => self.before == *b"\r\n",
            1 => self.before[1] == b'\r' && self.rest()[0] == b'\n',
            _ => &self.rest()[at - 2..at] == b"\r\n",
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, FormError> {
        self.buf.drain(..self.off);
        self.off = 0;
        self.fed |= !chunk.is_empty();
        self.buf.extend_from_slice(chunk);
        let mut out = BytesMut::with_capacity(chunk.len() + 64);
        loop {
            match self.state {
                Part::Done => {
                    self.buf.clear();
                    self.off = 0;
                    break;
                }
                Part::Preamble | Part::Body { .. } => {
                    let pass = matches!(self.state, Part::Body { pass: true });
                    let Some(at) = find(self.rest(), &self.delimiter) else {
                        // Flush all but what could be the start of a delimiter.
                        let keep = self
                            .delimiter
                            .len()
                            .saturating_sub(1)
                            .min(self.rest().len());
                        let flush = self.rest().len() - keep;
                        if pass {
                            out.extend_from_slice(&self.rest()[..flush]);
                        }
                        self.consume(flush);
                        break;
                    };
                    if !self.crlf_before(at) {
                        return Err(FormError::Delimiter);
                    }
                    // The CRLF before the delimiter goes out with the body;
                    // what follows the delimiter says what comes next.
                    if pass {
                        out.extend_from_slice(&self.rest()[..at]);
                    }
                    self.consume(at);
                    self.state = Part::Delimiter;
                }
                Part::Delimiter => {
                    let after = self.delimiter.len();
                    if self.rest().len() < after + 2 {
                        break;
                    }
                    match &self.rest()[after..after + 2] {
                        b"--" => {
                            out.extend_from_slice(&self.delimiter);
                            out.extend_from_slice(b"--\r\n");
                            self.buf.clear();
                            self.off = 0;
                            self.state = Part::Done;
                        }
                        b"\r\n" => {
                            self.consume(after + 2);
                            self.scanned = 0;
                            self.state = Part::Headers;
                        }
                        _ => return Err(FormError::Delimiter),
                    }
                }
                Part::Headers => {
                    let Some((end, next)) = headers_end(self.rest(), self.scanned) else {
                        if self.rest().len() >= MAX_PART_HEADERS + 4 {
                            return Err(FormError::PartHeaders);
                        }
                        self.scanned = self.rest().len();
                        break;
                    };
                    if end > MAX_PART_HEADERS {
                        return Err(FormError::PartHeaders);
                    }
                    let pass = !Self::part_names(&self.rest()[..end])?
                        .iter()
                        .any(|name| is_session_field(&self.names, name));
                    if pass {
                        out.extend_from_slice(&self.delimiter);
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&self.rest()[..next]);
                    } else {
                        self.removed += 1;
                    }
                    self.consume(next);
                    self.state = Part::Body { pass };
                }
            }
        }
        Ok(out.freeze())
    }

    pub fn finish(&mut self) -> Result<Bytes, FormError> {
        match self.state {
            Part::Done => Ok(Bytes::new()),
            // No body at all: an empty form (reqwest sends one), as PHP
            // reads it.
            Part::Preamble if !self.fed => Ok(Bytes::new()),
            _ => Err(FormError::Truncated),
        }
    }
}

/// Filters a whole body at once (for small bodies and tests).
pub fn filter_all(kind: Kind, names: &NameSet, body: &[u8]) -> Result<(Bytes, usize), FormError> {
    let mut f = Filter::new(kind, names.clone())?;
    let mut out = BytesMut::new();
    out.extend_from_slice(&f.feed(body)?);
    out.extend_from_slice(&f.finish()?);
    Ok((out.freeze(), f.removed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> NameSet {
        NameSet::new(["PHPSESSID", "sid"])
    }

    fn url(body: &str) -> String {
        let (out, _) = filter_all(Kind::Urlencoded, &names(), body.as_bytes()).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// The same body fed in every split into two chunks, and byte by byte.
    fn url_chunked(body: &str) -> Vec<String> {
        let b = body.as_bytes();
        let mut outs = Vec::new();
        let mut splits: Vec<Vec<&[u8]>> = (0..=b.len()).map(|i| vec![&b[..i], &b[i..]]).collect();
        splits.push(b.chunks(1).collect());
        for chunks in splits {
            let mut f = Filter::new(Kind::Urlencoded, names()).unwrap();
            let mut out = Vec::new();
            for c in chunks {
                out.extend_from_slice(&f.feed(c).unwrap());
            }
            out.extend_from_slice(&f.finish().unwrap());
            outs.push(String::from_utf8(out).unwrap());
        }
        outs
    }

    #[test]
    fn urlencoded_table() {
        let cases = [
            ("PHPSESSID=abc&user=a", "user=a"),
            ("user=a&PHPSESSID=abc&pw=b", "user=a&pw=b"),
            ("user=a&PHPSESSID=abc", "user=a"),
            ("PHPSESSID=abc", ""),
            ("phpsessid=1&PhpSessId=2&x=3", "x=3"),
            ("PHPSESS%49D=abc&x=1", "x=1"),
            ("+PHPSESSID=abc&x=1", "x=1"),
            ("%20PHPSESSID=abc&x=1", "x=1"),
            ("PHPSESSID[]=abc&x=1", "x=1"),
            ("PHPSESSID&x=1", "x=1"),
            ("PHPSESSID=&x=1", "x=1"),
            ("x=PHPSESSID&y=sid%3D1", "x=PHPSESSID&y=sid%3D1"),
            ("PHPSESSIDX=1", "PHPSESSIDX=1"),
            ("a=1&&b=2", "a=1&b=2"),
            ("", ""),
            ("a=%ZZ&sid=1", "a=%ZZ"),
        ];
        for (input, want) in cases {
            assert_eq!(url(input), want, "{input}");
            for (i, got) in url_chunked(input).into_iter().enumerate() {
                assert_eq!(got, want, "{input} split {i}");
            }
        }
    }

    #[test]
    fn huge_and_many_fields() {
        let big = format!("data={}&PHPSESSID=x&more=1", "v".repeat(1 << 20));
        assert_eq!(url(&big), format!("data={}&more=1", "v".repeat(1 << 20)));
        let many: Vec<String> = (0..10_000).map(|i| format!("f{i}={i}")).collect();
        let body = format!("{}&sid=1", many.join("&"));
        assert_eq!(url(&body), many.join("&"));
        let long_name = format!("{}=1", "n".repeat(MAX_NAME + 1));
        assert_eq!(
            filter_all(Kind::Urlencoded, &names(), long_name.as_bytes()),
            Err(FormError::NameTooLong)
        );
    }

    fn multipart(parts: &[(&str, &str)], boundary: &str) -> String {
        let mut s = String::new();
        for (name, value) in parts {
            s.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        s.push_str(&format!("--{boundary}--\r\n"));
        s
    }

    #[test]
    fn multipart_removes_session_parts_across_chunks() {
        let b = "XyZ123";
        let body = multipart(
            &[
                ("user", "alice"),
                ("PHPSESSID", "known"),
                ("file", "line1\r\n--XyZ12 not a boundary\r\n"),
            ],
            b,
        );
        let want = multipart(
            &[
                ("user", "alice"),
                ("file", "line1\r\n--XyZ12 not a boundary\r\n"),
            ],
            b,
        );
        let (out, removed) =
            filter_all(Kind::Multipart(Some(b.into())), &names(), body.as_bytes()).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), want);
        assert_eq!(removed, 1);
        for size in [1, 2, 3, 7, 16, 64] {
            let mut f = Filter::new(Kind::Multipart(Some(b.into())), names()).unwrap();
            let mut out = Vec::new();
            for c in body.as_bytes().chunks(size) {
                out.extend_from_slice(&f.feed(c).unwrap());
            }
            out.extend_from_slice(&f.finish().unwrap());
            assert_eq!(String::from_utf8_lossy(&out), want, "chunks of {size}");
        }
    }

    /// A multipart body under boundary `XX`, whole.
    fn xx(body: &[u8]) -> Result<(Bytes, usize), FormError> {
        filter_all(Kind::Multipart(Some("XX".into())), &names(), body)
    }

    /// A body that must pass as it is.
    fn passes_unchanged(body: &str) {
        let (out, removed) = xx(body.as_bytes()).unwrap();
        assert_eq!((String::from_utf8_lossy(&out).as_ref(), removed), (body, 0));
    }

    /// Whether a body either loses every part named like a session ID or
    /// fails: what no parser may then read is the planted value `fix`.
    fn stripped_or_refused(ct: &str, body: &[u8]) -> bool {
        let Some(kind) = kind(ct.as_bytes()) else {
            return false;
        };
        for size in [1, 2, 3, 7, 64, body.len().max(1)] {
            let Ok(mut f) = Filter::new(kind.clone(), names()) else {
                return true;
            };
            let mut out = Vec::new();
            let mut failed = false;
            for c in body.chunks(size) {
                match f.feed(c) {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(_) => failed = true,
                }
                if failed {
                    break;
                }
            }
            if !failed && f.finish().is_ok() && find(&out, b"fix").is_some() {
                return false;
            }
        }
        true
    }

    #[test]
    fn every_name_a_multipart_parser_could_read_is_stripped_or_refused() {
        // PHP keeps the last `name` (checked against PHP 8.2) and honours
        // quotes; others keep the first.
        let ct = "multipart/form-data; boundary=bb";
        for disposition in [
            r#"form-data; name="x"; name="PHPSESSID""#,
            r#"form-data; name="PHPSESSID"; name="x""#,
            r#"form-data; filename="a;name=b"; name="PHPSESSID""#,
            r#"form-data; name='PHPSESSID'"#,
            r#"form-data; name=PHPSESSID"#,
            r#"form-data;name = "PHPSESS\ID""#,
            r#"form-data; NAME="phpsessid""#,
            r#"form-data; name*=UTF-8''PHPSESSID"#,
            r#"form-data; name*=utf-8''PHPSESS%49D"#,
            r#"form-data; name*0="PHPSE"; name*1="SSID""#,
            r#"form-data; name="PHPSESS%49D""#,
            r#"form-data; name="PHPSESSID"#,
            "form-data; name=ok;\x0bname=PHPSESSID",
            "form-data; name=\x0cPHPSESSID",
            "form-data; name=\"ok\";\r\n name=PHPSESSID; a:b",
            "form-data; name=\"ok\";\r\n\tname=PHPSESSID",
            "form-data; name=\"PHPSESSID\r\nX: y",
            "form-data; name=PHPSESSID/x",
            "form-data; name=PHPSESSID(x",
            "form-data;\u{a0}name=\"PHPSESSID\"",
            "form-data;\u{3000}name=\"PHPSESSID\"",
        ] {
            for header in ["Content-Disposition: ", "Content-Disposition:"] {
                let body = format!("--bb\r\n{header}{disposition}\r\n\r\nfix\r\n--bb--\r\n");
                assert!(stripped_or_refused(ct, body.as_bytes()), "{body:?}");
            }
        }
        let mut names = Vec::new();
        let extended = name_params(
            br#"form-data; filename="x"; xname="a"; name="b\"c""#,
            &mut names,
        );
        assert_eq!((names, extended), (vec![b"b\"c".to_vec()], false));
    }

    #[test]
    fn delimiters_other_parsers_see_are_delimiters_or_refused() {
        let ct = "multipart/form-data; boundary=XX";
        let tail =
            "--XX\r\nContent-Disposition: form-data; name=\"PHPSESSID\"\r\n\r\nfix\r\n--XX--\r\n";
        for head in [
            // LF alone, or CR alone, before a delimiter (PHP, Werkzeug).
            "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv1\n".to_string(),
            "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv1\r".to_string(),
            // A delimiter as the first line of a body.
            "--XX\r\nX-A: b\r\n\r\n".to_string(),
            "--XX\r\n\r\n".to_string(),
            "--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n".to_string(),
            "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\x00:\r\n\r\n".to_string(),
            // PHP splits lines at its 5 KiB buffer: a boundary mid-line.
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{}",
                "B".repeat(5120)
            ),
            // Headers ended by LF CR LF (PHP) or CR CR (Werkzeug).
            "--XX\r\nX-A: b\n\r\n".to_string(),
            "--XX\r\nX-A: b\r\r".to_string(),
        ] {
            let body = format!("{head}{tail}");
            assert!(stripped_or_refused(ct, body.as_bytes()), "{body:?}");
        }
        // A delimiter line with more on it: PHP would skip to the next
        // delimiter line; this filter refuses rather than guess.
        for junk in ["--XXab\r\n", "--XX \r\n", "--XX\rx\n", "--XX\n"] {
            let body =
                format!("{junk}Content-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--XX--\r\n");
            assert_eq!(xx(body.as_bytes()), Err(FormError::Delimiter), "{junk:?}");
        }
        // A part whose body is empty, closed at once.
        passes_unchanged("--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--XX--\r\n");
    }

    #[test]
    fn common_clients_forms_pass() {
        // reqwest: `name*` for a name with a space, and an empty form.
        passes_unchanged(
            "--XX\r\nContent-Disposition: form-data; name*=utf-8''first%20name\r\n\r\nAda\r\n--XX--\r\n",
        );
        let (out, removed) = xx(b"").unwrap();
        assert_eq!((out.len(), removed), (0, 0));
        // A body that is only a preamble is still cut off.
        assert_eq!(xx(b"\r\n"), Err(FormError::Truncated));
    }

    #[test]
    fn a_header_line_php_would_split_is_refused() {
        // PHP's 5 KiB line buffer would end the line, and the rest would be
        // a header of its own.
        let ct = "multipart/form-data; boundary=XX";
        for pad in [5064, 5068, 6000] {
            let body = format!(
                "--XX\r\nContent-Disposition: form-data; x=\"{}\"; name=PHPSESSIDx: y\r\n\r\nfix\r\n--XX--\r\n",
                "A".repeat(pad)
            );
            assert!(stripped_or_refused(ct, body.as_bytes()), "{pad}");
        }
    }

    #[test]
    fn content_types_other_parsers_read_as_forms_are_filtered() {
        let multipart =
            "--XX\r\nContent-Disposition: form-data; name=\"PHPSESSID\"\r\n\r\nfix\r\n--XX--\r\n";
        for ct in [
            "multipart/form-data, boundary=XX",
            "multipart/form-data boundary=XX",
            "multipart/form-data; boundary=XX; boundary=YY",
            "multipart/form-data; boundary=XX; x=\u{fffd}",
        ] {
            assert!(stripped_or_refused(ct, multipart.as_bytes()), "{ct}");
        }
        for ct in [
            "application/x-www-form-urlencoded charset=utf-8",
            "application/x-www-form-urlencoded, x",
        ] {
            assert!(stripped_or_refused(ct, b"PHPSESSID=fix"), "{ct}");
        }
        let lossy = b"multipart/form-data; boundary=XX; x=\xff";
        assert_eq!(kind(lossy), Some(Kind::Multipart(Some("XX".into()))));
        // Where Werkzeug or PHP would read another boundary or type.
        for ct in [
            &b"multipart/form-data; boundary=XX; boundary*=YY"[..],
            b"multipart/form-data; boundary=XX;\xa0boundary=YY",
            b"multipart/form-data; boundary=YY/Z",
            b"multipart/form-data; boundary=\"YY%22Z\"",
            b"multipart/form-data; boundary=XX\xff",
        ] {
            assert_eq!(kind(ct), Some(Kind::Multipart(None)), "{ct:?}");
        }
        for ct in [
            &b"multipart/form-data\xa0; boundary=YY"[..],
            b"multipart/form-data\xc2\xa0; boundary=YY",
        ] {
            assert!(matches!(kind(ct), Some(Kind::Multipart(_))), "{ct:?}");
        }
        assert_eq!(
            kind(b"application/x-www-form-urlencoded\xa0"),
            Some(Kind::Urlencoded)
        );
        assert_eq!(
            kind(b"multipart/form-data; boundary=\"a:b=c\""),
            Some(Kind::Multipart(Some("a:b=c".into())))
        );
        // Browsers' boundaries (WebKit's, Firefox's) pass.
        for b in [
            "----WebKitFormBoundary7MA4YWxkTrZu0gW",
            "---------------------------9051914041544843365972754266",
        ] {
            let ct = format!("multipart/form-data; boundary={b}");
            assert_eq!(kind(ct.as_bytes()), Some(Kind::Multipart(Some(b.into()))));
        }
    }

    #[test]
    fn a_boundary_php_reads_otherwise_is_refused() {
        let m = |ct: &str| match kind(ct.as_bytes()) {
            Some(Kind::Multipart(b)) => b,
            other => panic!("{ct}: {other:?}"),
        };
        assert_eq!(
            m("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            m("multipart/form-data; charset=x; BOUNDARY=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            m("multipart/form-data; boundary=\"a,b\"").as_deref(),
            Some("a,b")
        );
        for ct in [
            // A space in a boundary invites a parser to trim it.
            "multipart/form-data; boundary=\"a,b c\"",
            "multipart/form-data; boundary=\"a;b\"",
            "multipart/form-data; boundary=AAA,BBB",
            "multipart/form-data; xboundary=foo; boundary=bar",
            "multipart/form-data; boundary = abc",
            "multipart/form-data; boundary=\"abc\"x",
        ] {
            assert_eq!(m(ct), None, "{ct}");
        }
    }

    #[test]
    fn multipart_errors() {
        assert!(Filter::new(Kind::Multipart(None), names()).is_err());
        let truncated = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
        assert_eq!(
            filter_all(
                Kind::Multipart(Some("b".into())),
                &names(),
                truncated.as_bytes()
            ),
            Err(FormError::Truncated)
        );
        // Over the bound in one chunk as in many.
        let huge = format!(
            "--b\r\nContent-Disposition: form-data; name=\"a\"; x=\"{}\"\r\n\r\nv\r\n--b--\r\n",
            "y".repeat(MAX_PART_HEADERS)
        );
        assert_eq!(
            filter_all(Kind::Multipart(Some("b".into())), &names(), huge.as_bytes()),
            Err(FormError::PartHeaders)
        );
        let bad_headers = format!("--b\r\n{}\r\n\r\nx\r\n--b--\r\n", "h".repeat(20));
        assert_eq!(
            filter_all(
                Kind::Multipart(Some("b".into())),
                &names(),
                bad_headers.as_bytes()
            ),
            Err(FormError::PartHeaders)
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            kind(b"application/x-www-form-urlencoded; charset=UTF-8"),
            Some(Kind::Urlencoded)
        );
        assert_eq!(
            kind(b"multipart/form-data; boundary=\"abc\""),
            Some(Kind::Multipart(Some("abc".into())))
        );
        assert_eq!(kind(b"multipart/form-data"), Some(Kind::Multipart(None)));
        assert_eq!(kind(b"application/json"), None);
    }
}
