//! Sets of names (session parameters, cookie names) matched the way the
//! apps behind the gateway read them, so that no spelling slips past.
//!
//! PHP (main/php_variables.c, `php_register_variable_ex`) URL-decodes a name
//! with `+` as a space, ends it at a NUL byte, skips leading spaces, turns
//! spaces and dots into `_`, and reads `[`: when a `]` follows somewhere, the
//! name ends at the `[` (`a[x]` is the array `a`); when none does, the `[`
//! and every later space, dot or `[` become `_` (`a[x` is the name `a_x`).
//! Servlet and ASP.NET cookie collections ignore case. The canonical form
//! applies all of that, so two names are the same when an app would read
//! them as the same.
//!
//! The sets serve both ways: names to drop or strip (session IDs, vaulted
//! cookies) and names to forward. Merging spellings is safe for dropping;
//! for forwarding it is safe only while every app reads a merged spelling
//! either as the canonical name or as a name no app uses (`LANG` or a leading
//! tab, to an app that reads them literally). That is why an unclosed `[`
//! follows PHP exactly instead of ending the name: `sess[id` is `sess_id` to
//! PHP, and forwarding it as the harmless `sess` would plant a `sess_id`.
//! Nothing here allocates: names are compared as streams of canonical bytes.

use std::borrow::Cow;

/// One configured name: exact, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Canonical bytes.
    canon: Box<[u8]>,
    prefix: bool,
}

/// A set of names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet {
    patterns: Vec<Pattern>,
    /// The names as configured, for display.
    written: Vec<String>,
}

fn fold(b: u8) -> u8 {
    match b {
        b' ' | b'.' => b'_',
        b => b.to_ascii_lowercase(),
    }
}

/// The canonical bytes of a raw (wire) name.
pub fn canonical(raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    canonical_reading(raw)
}

fn canonical_reading(raw: &[u8]) -> Canonical<'_> {
    reading(raw, true)
}

fn reading(raw: &[u8], decode: bool) -> Canonical<'_> {
    Canonical {
        bytes: Decode { raw, i: 0, decode },
        started: false,
        unclosed: false,
        cut_at_bracket: false,
    }
}

/// The canonical form with the name ending at any `[`, closed or not: the
/// reading before PHP's rule was followed exactly, kept as a second reading
/// for what is stripped or dropped (`matches`), never for what passes.
fn cut_reading(raw: &[u8]) -> Canonical<'_> {
    Canonical {
        cut_at_bracket: true,
        ..reading(raw, true)
    }
}

/// Whether a name means one thing whether or not it is percent-decoded.
/// PHP decodes query and form names, and cookie names before 7.4.11
/// (CVE-2020-7070); since then it reads cookie names as sent. Where the two
/// readings differ (`ab[c%00]` is `ab_c` decoded, the array `ab` as sent),
/// the gateway cannot know which one the app will use, so a cookie under
/// such a name is not forwarded.
pub fn one_reading(raw: &[u8]) -> bool {
    !raw.iter().any(|&b| b == b'%' || b == b'+') || reading(raw, true).eq(reading(raw, false))
}

/// PHP's reading of a name, lower-cased, as an iterator (module comment).
#[derive(Clone)]
struct Canonical<'a> {
    bytes: Decode<'a>,
    /// Past the leading spaces.
    started: bool,
    /// Past a `[` that no `]` follows: the name goes on, with `_` for it.
    unclosed: bool,
    /// End the name at the first `[` whatever follows.
    cut_at_bracket: bool,
}

impl Iterator for Canonical<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        loop {
            let Some(b) = self.bytes.next().filter(|&b| b != 0) else {
                // A NUL ends the name for good.
                self.bytes.i = self.bytes.raw.len();
                return None;
            };
            if !self.started {
                if b == b' ' || b == b'\t' {
                    continue;
                }
                self.started = true;
            }
            if b != b'[' {
                return Some(fold(b));
            }
            if self.unclosed {
                return Some(b'_');
            }
            // PHP looks for a `]` anywhere after the `[` (up to a NUL).
            let closed = self.cut_at_bracket
                || self
                    .bytes
                    .clone()
                    .take_while(|&c| c != 0)
                    .any(|c| c == b']');
            if closed {
                // An array index: the name ends here.
                self.bytes.i = self.bytes.raw.len();
                return None;
            }
            self.unclosed = true;
            return Some(b'_');
        }
    }
}

/// Percent-decoding with `+` as a space, as an iterator (or the bytes as
/// they are, without `decode`).
#[derive(Clone)]
struct Decode<'a> {
    raw: &'a [u8],
    i: usize,
    decode: bool,
}

impl Iterator for Decode<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let raw = self.raw;
        let b = *raw.get(self.i)?;
        if !self.decode {
            self.i += 1;
            return Some(b);
        }
        if b == b'%'
            && self.i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[self.i + 1]), hex(raw[self.i + 2]))
        {
            self.i += 3;
            return Some(h << 4 | l);
        }
        self.i += 1;
        Some(if b == b'+' { b' ' } else { b })
    }
}

/// Whether a wire name is its own canonical form but for case: no byte
/// that decoding, trimming, cutting or folding would change. Almost every
/// real name is; for those, canonical bytes are lower-cased bytes.
fn is_plain(raw: &[u8]) -> bool {
    !raw.iter()
        .any(|&b| matches!(b, b'%' | b'+' | 0 | b' ' | b'\t' | b'[' | b'.'))
}

/// Whether two wire names are one name to the app.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    if is_plain(a) && is_plain(b) {
        return a.eq_ignore_ascii_case(b);
    }
    canonical(a).eq(canonical(b))
}

impl NameSet {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> NameSet {
        let mut set = NameSet::default();
        for n in names {
            set.push(n.as_ref());
        }
        set
    }

    pub fn push(&mut self, name: &str) {
        let (body, prefix) = match name.strip_suffix('*') {
            Some(b) => (b, true),
            None => (name, false),
        };
        let p = Pattern {
            canon: canonical(body.as_bytes())
                .collect::<Vec<u8>>()
                .into_boxed_slice(),
            prefix,
        };
        if !self.patterns.contains(&p) {
            self.patterns.push(p);
            self.written.push(name.to_string());
        }
    }

    /// The names as configured.
    pub fn names(&self) -> &[String] {
        &self.written
    }

    /// Adds every name of `other`.
    pub fn extend(&mut self, other: &NameSet) {
        for n in &other.written {
            self.push(n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether an app may read `raw` (as it stands on the wire) as a member:
    /// PHP's reading, or the name cut at its first `[`. For what is stripped
    /// or dropped, where a wider match only removes more.
    pub fn matches(&self, raw: &[u8]) -> bool {
        if raw.len() <= 64 && is_plain(raw) {
            return self.matches_plain(raw);
        }
        self.matches_slow(raw)
    }

    /// Whether PHP reads `raw` as a member, in its one reading: for what is
    /// let through (cookies forwarded, cookies left readable by scripts),
    /// where a wider match would let more through.
    pub fn admits(&self, raw: &[u8]) -> bool {
        if raw.len() <= 64 && is_plain(raw) {
            return self.matches_plain(raw);
        }
        self.matches_reading(canonical_reading(raw))
    }

    /// A plain name's canonical form is its lower case (`is_plain`).
    fn matches_plain(&self, raw: &[u8]) -> bool {
        let mut buf = [0u8; 64];
        for (to, from) in buf.iter_mut().zip(raw) {
            *to = from.to_ascii_lowercase();
        }
        self.matches_canon(&buf[..raw.len()])
    }

    fn matches_slow(&self, raw: &[u8]) -> bool {
        self.matches_reading(canonical_reading(raw))
            || (raw.iter().any(|&b| b == b'[' || b == b'%')
                && self.matches_reading(cut_reading(raw)))
    }

    fn matches_canon(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|p| {
            if p.prefix {
                name.starts_with(&p.canon)
            } else {
                name == &*p.canon
            }
        })
    }

    /// The canonical form is collected once, not once per pattern, when it
    /// is short (every real cookie or parameter name).
    fn matches_reading(&self, reading: Canonical<'_>) -> bool {
        let mut buf = [0u8; 64];
        let mut n = 0;
        for b in reading.clone() {
            if n == buf.len() {
                return self.patterns.iter().any(|p| {
                    let mut name = reading.clone();
                    p.canon.iter().all(|&c| name.next() == Some(c))
                        && (p.prefix || name.next().is_none())
                });
            }
            buf[n] = b;
            n += 1;
        }
        self.matches_canon(&buf[..n])
    }
}

/// Decodes `%XX` escapes; malformed escapes stay as they are (as PHP and
/// Java leave them). Borrows when there is nothing to decode.
pub fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'%') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_cases() {
        let set = NameSet::new(["PHPSESSID", "jsessionid", "ASPSESSIONID*"]);
        let yes: &[&[u8]] = &[
            b"PHPSESSID",
            b"phpsessid",
            b"PHPSESS%49D",
            b"%50%48%50SESSID",
            b"PhPsEsS%69d",
            b"JSESSIONID",
            b" PHPSESSID",
            b"PHPSESSID[]",
            b"PHPSESSID%5B0%5D",
            b"+PHPSESSID",
            b"PHPSESSID%00junk",
            b"PHPSESSID\0",
            b"ASPSESSIONIDQQGGQGAT",
            b"aspsessionid",
        ];
        for n in yes {
            assert!(set.matches(n), "{}", String::from_utf8_lossy(n));
        }
        let no: &[&[u8]] = &[
            b"PHPSESSIDX",
            b"XPHPSESSID",
            b"PHPSESS",
            b"PHPSESS%4",
            b"",
            b"sid",
            b"ASPSESSIO",
        ];
        for n in no {
            assert!(!set.matches(n), "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn long_names_match_as_short_ones_do() {
        let long = "X".repeat(80);
        let set = NameSet::new([format!("{long}ID"), "LONG*".to_string()]);
        assert!(set.matches(format!("{long}ID").as_bytes()));
        assert!(set.matches(format!("%20{}ID[]", long.to_lowercase()).as_bytes()));
        assert!(!set.matches(format!("{long}IDX").as_bytes()));
        assert!(!set.matches(format!("{long}I").as_bytes()));
        assert!(set.matches(format!("long{long}").as_bytes()));
        assert!(!set.matches(format!("lon{long}").as_bytes()));
    }

    #[test]
    fn php_spellings_are_one_name() {
        let set = NameSet::new(["session_id", "ASP.NET_SessionId"]);
        for n in [
            &b"session.id"[..],
            b"session+id",
            b"session%20id",
            b"SESSION_ID",
            b"asp_net_sessionid",
            b"ASP NET_SESSIONID",
        ] {
            assert!(set.matches(n), "{}", String::from_utf8_lossy(n));
        }
        assert!(same_name(b"%20PHPSESSID", b"phpsessid"));
        assert!(same_name(b"PHPSESSID[x]", b"PHPSESSID"));
        assert!(!same_name(b"PHPSESSIDX", b"PHPSESSID"));
    }

    #[test]
    fn brackets_are_read_as_php_reads_them() {
        // (raw, what PHP's $_COOKIE / $_GET key is, lower-cased)
        let cases: &[(&[u8], &[u8])] = &[
            (b"sess[id]", b"sess"),
            (b"sess[]", b"sess"),
            (b"sess[a][b", b"sess"),
            (b"sess%5Bid%5D", b"sess"),
            (b"sess[id", b"sess_id"),
            (b"sess[", b"sess_"),
            (b"sess[i[d", b"sess_i_d"),
            (b"sess[i.d x", b"sess_i_d_x"),
            (b"sess.a[b", b"sess_a_b"),
            (b"a]b[c", b"a]b_c"),
            // A NUL ends the name before the `]` is seen.
            (b"sess[id%00]", b"sess_id"),
            (b" [x]", b""),
        ];
        for (raw, php) in cases {
            let got: Vec<u8> = canonical(raw).collect();
            assert_eq!(
                got,
                php.to_vec(),
                "{} -> {}",
                String::from_utf8_lossy(raw),
                String::from_utf8_lossy(&got)
            );
        }
        // PHP 8 reads cookie names as sent: no decoding, so `%00` ends
        // nothing and `%5B` opens nothing.
        for (raw, one) in [
            (&b"sess"[..], true),
            (b"ASP.NET_SessionId", true),
            (b"cart[1]", true),
            (b"ab[c%00]", false),
            (b"sess%5Bid", false),
            (b"a+b", false),
            (b"100%", true),
            (b"%zz", true),
        ] {
            assert_eq!(one_reading(raw), one, "{}", String::from_utf8_lossy(raw));
        }
        let vaulted = NameSet::new(["sess_id"]);
        assert!(vaulted.matches(b"sess[id"));
        // To let through, only PHP's reading counts; to strip or drop, the
        // name cut at its `[` counts too.
        assert!(!NameSet::new(["sess"]).admits(b"sess[id"));
        assert!(NameSet::new(["sess"]).matches(b"sess[id"));
        assert!(NameSet::new(["PHPSESSID"]).matches(b"PHPSESSID[%3D]"));
        assert!(!NameSet::new(["PHPSESSID"]).admits(b"PHPSESSID_"));
    }

    #[test]
    fn plain_names_take_a_shortcut_to_the_same_answer() {
        // Every name over a small alphabet of the bytes that matter, up to
        // four long: the shortcut and the full canonical form agree.
        const BYTES: &[u8] = b"aA%2+. \t\0[]_B";
        let mut names: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=4 {
            let mut i = vec![0usize; len];
            loop {
                names.push(i.iter().map(|&k| BYTES[k]).collect());
                let Some(p) = i.iter().rposition(|&k| k + 1 < BYTES.len()) else {
                    break;
                };
                i[p] += 1;
                i[p + 1..].fill(0);
            }
        }
        let set = NameSet::new(["a", "ab*", "a_a"]);
        for a in &names {
            let slow = |x: &[u8], y: &[u8]| canonical(x).eq(canonical(y));
            for b in [&b"a"[..], b"A_a", b"ab", b"a.b", b"%41"] {
                assert_eq!(same_name(a, b), slow(a, b), "{a:?} {b:?}");
            }
            assert_eq!(set.matches(a), set.matches_slow(a), "{a:?}");
            assert_eq!(
                set.admits(a),
                set.matches_reading(canonical_reading(a)),
                "{a:?}"
            );
        }
    }

    #[test]
    fn decoding() {
        assert_eq!(&*percent_decode(b"a%3Bb%3db"), b"a;b=b");
        assert_eq!(&*percent_decode(b"100%"), b"100%");
        assert_eq!(&*percent_decode(b"%zz%4"), b"%zz%4");
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
    }
}
