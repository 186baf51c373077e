//! Sets of names (session parameters, cookie names) matched the way the
//! apps behind the gateway match them: percent-decoded, without regard to
//! case, exact or by prefix (`ASPSESSIONID*`, `DW*`).

use std::borrow::Cow;

/// One configured name: exact, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    lower: Box<[u8]>,
    prefix: bool,
}

/// A set of names; matching allocates nothing unless the name is
/// percent-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet {
    patterns: Vec<Pattern>,
    /// The names as configured, for display.
    written: Vec<String>,
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
            lower: body.to_ascii_lowercase().into_bytes().into_boxed_slice(),
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

    /// Whether `raw` (as it stands on the wire, maybe percent-encoded)
    /// names a member. Surrounding whitespace and a PHP array suffix
    /// (`name[]`, `name[x]`) are ignored: PHP reads those as `name`.
    pub fn matches(&self, raw: &[u8]) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let decoded = percent_decode(raw);
        let mut name: &[u8] = trim(&decoded);
        if let Some(open) = name.iter().position(|&b| b == b'[') {
            name = trim(&name[..open]);
        }
        self.patterns.iter().any(|p| {
            if p.prefix {
                name.len() >= p.lower.len() && name[..p.lower.len()].eq_ignore_ascii_case(&p.lower)
            } else {
                name.eq_ignore_ascii_case(&p.lower)
            }
        })
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | 0))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | 0))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
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
            b" PHPSESSID ",
            b"PHPSESSID[]",
            b"PHPSESSID%5B0%5D",
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
    fn decoding() {
        assert_eq!(&*percent_decode(b"a%3Bb%3db"), b"a;b=b");
        assert_eq!(&*percent_decode(b"100%"), b"100%");
        assert_eq!(&*percent_decode(b"%zz%4"), b"%zz%4");
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
    }
}
