//! A reader over the spanned TOML tree that collects every problem instead of
//! stopping at the first one.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key, and a type
//! error hides every problem behind it. An operator fixing a security gateway's
//! config wants the whole list at once, each with its key path and line, so
//! sections are read by hand here: each section names its valid keys up front,
//! and every getter records a problem and returns a default instead of failing.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One problem in a config file: where it is and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} (line {}): {}", self.path, line, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Source text and the problems found in it so far.
pub struct Ctx<'s> {
    src: &'s str,
    pub problems: Vec<Problem>,
}

impl<'s> Ctx<'s> {
    pub fn new(src: &'s str) -> Self {
        Ctx {
            src,
            problems: Vec::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub fn problem(
        &mut self,
        path: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let line = span.map(|s| self.line_of(s.start));
        self.problems.push(Problem {
            path: path.into(),
            line,
            message: message.into(),
        });
    }

    /// Parses the document; a syntax error is one problem with its line.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'s>>> {
        match DeTable::parse(self.src) {
            Ok(table) => Some(table),
            Err(err) => {
                let span = err.span();
                let message = err.message().to_string();
                self.problem("(syntax)", span, message);
                None
            }
        }
    }
}

/// A table and the span of its value.
pub type TableRef<'a, 's> = (&'a DeTable<'s>, Range<usize>);

/// A table being read: its key path, its span and the keys it accepts.
pub struct Section<'a, 's> {
    pub path: String,
    table: Option<&'a DeTable<'s>>,
    span: Option<Range<usize>>,
}

impl<'a, 's> Section<'a, 's> {
    /// Opens `table` at `path` and reports every key not in `keys`.
    pub fn new(
        cx: &mut Ctx<'_>,
        path: impl Into<String>,
        table: Option<TableRef<'a, 's>>,
        keys: &[&str],
    ) -> Self {
        let path = path.into();
        if let Some((t, _)) = table {
            for (k, _) in t.iter() {
                if !keys.contains(&k.get_ref().as_ref()) {
                    cx.problem(
                        join(&path, k.get_ref()),
                        Some(k.span()),
                        format!("unknown key; valid keys here are: {}", keys.join(", ")),
                    );
                }
            }
        }
        Section {
            path,
            span: table.as_ref().map(|(_, s)| s.clone()),
            table: table.map(|(t, _)| t),
        }
    }

    /// Opens the sub-table `key` (absent is fine: every key has a default).
    pub fn child(&self, cx: &mut Ctx<'_>, key: &str, keys: &[&str]) -> Section<'a, 's> {
        let t = self.table(cx, key);
        Section::new(cx, self.key_path(key), t, keys)
    }

    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn raw(&self, key: &str) -> Option<&'a Spanned<DeValue<'s>>> {
        self.table?.get(key)
    }

    /// The span of `key`'s value, for problems found after reading.
    pub fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.raw(key).map(|v| v.span())
    }

    fn wrong_type(&self, cx: &mut Ctx<'_>, key: &str, v: &Spanned<DeValue<'_>>, want: &str) {
        cx.problem(
            self.key_path(key),
            Some(v.span()),
            format!("expected {want}, found {}", v.get_ref().type_str()),
        );
    }

    pub fn opt_str(&self, cx: &mut Ctx<'_>, key: &str) -> Option<(String, Range<usize>)> {
        let v = self.raw(key)?;
        match v.get_ref().as_str() {
            Some(s) => Some((s.to_string(), v.span())),
            None => {
                self.wrong_type(cx, key, v, "a string");
                None
            }
        }
    }

    pub fn string(&self, cx: &mut Ctx<'_>, key: &str, default: &str) -> String {
        self.opt_str(cx, key)
            .map(|(s, _)| s)
            .unwrap_or_else(|| default.to_string())
    }

    pub fn bool(&self, cx: &mut Ctx<'_>, key: &str, default: bool) -> bool {
        let Some(v) = self.raw(key) else {
            return default;
        };
        match v.get_ref().as_bool() {
            Some(b) => b,
            None => {
                self.wrong_type(cx, key, v, "true or false");
                default
            }
        }
    }

    /// An integer in `range`.
    pub fn int(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some(v) = self.raw(key) else {
            return default;
        };
        let parsed = v
            .get_ref()
            .as_integer()
            .and_then(|i| i64::from_str_radix(i.as_str(), i.radix()).ok());
        match parsed {
            Some(n) if n >= 0 && range.contains(&(n as u64)) => n as u64,
            Some(n) => {
                cx.problem(
                    self.key_path(key),
                    Some(v.span()),
                    format!(
                        "{n} is out of range; valid: {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
            None => {
                self.wrong_type(cx, key, v, "an integer");
                default
            }
        }
    }

    /// A human-readable duration ("500ms", "30s", "15m", "8h", "7d").
    pub fn duration(&self, cx: &mut Ctx<'_>, key: &str, default: Duration) -> Duration {
        let Some((s, span)) = self.opt_str(cx, key) else {
            return default;
        };
        match parse_duration(&s) {
            Some(d) => d,
            None => {
                cx.problem(
                    self.key_path(key),
                    Some(span),
                    format!("`{s}` is not a duration; write a number and a unit: ms, s, m, h or d (\"30s\", \"15m\")"),
                );
                default
            }
        }
    }

    /// A human-readable size ("16KiB", "10MiB", "1GiB") or a plain byte count.
    pub fn size(&self, cx: &mut Ctx<'_>, key: &str, default: u64) -> u64 {
        let Some(v) = self.raw(key) else {
            return default;
        };
        if v.get_ref().is_integer() {
            return self.int(cx, key, default, 0..=u64::MAX >> 1);
        }
        let Some((s, span)) = self.opt_str(cx, key) else {
            return default;
        };
        match parse_size(&s) {
            Some(n) => n,
            None => {
                cx.problem(
                    self.key_path(key),
                    Some(span),
                    format!("`{s}` is not a size; write bytes or a number with B, KiB, MiB or GiB (\"16KiB\")"),
                );
                default
            }
        }
    }

    /// An array of strings, each with its span.
    pub fn strings(&self, cx: &mut Ctx<'_>, key: &str) -> Option<Vec<(String, Range<usize>)>> {
        let v = self.raw(key)?;
        let Some(arr) = v.get_ref().as_array() else {
            self.wrong_type(cx, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in arr.iter().enumerate() {
            match item.get_ref().as_str() {
                Some(s) => out.push((s.to_string(), item.span())),
                None => cx.problem(
                    format!("{}[{i}]", self.key_path(key)),
                    Some(item.span()),
                    format!("expected a string, found {}", item.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    /// One of a fixed set of words (any case); absent is `None`, anything
    /// else is a problem that lists the valid words.
    pub fn choice<T: Copy>(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let (v, span) = self.opt_str(cx, key)?;
        if let Some((_, t)) = options.iter().find(|(w, _)| w.eq_ignore_ascii_case(&v)) {
            return Some(*t);
        }
        let valid: Vec<String> = options.iter().map(|(w, _)| format!("\"{w}\"")).collect();
        cx.problem(
            self.key_path(key),
            Some(span),
            format!("`{v}` is not {what}; valid: {}", valid.join(", ")),
        );
        None
    }

    /// An array of integers, each with its span.
    pub fn raw_ints(&self, cx: &mut Ctx<'_>, key: &str) -> Option<Vec<(i64, Range<usize>)>> {
        let v = self.raw(key)?;
        let Some(arr) = v.get_ref().as_array() else {
            self.wrong_type(cx, key, v, "an array of integers");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in arr.iter().enumerate() {
            match item
                .get_ref()
                .as_integer()
                .and_then(|n| i64::from_str_radix(n.as_str(), n.radix()).ok())
            {
                Some(n) => out.push((n, item.span())),
                None => cx.problem(
                    format!("{}[{i}]", self.key_path(key)),
                    Some(item.span()),
                    format!("expected an integer, found {}", item.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    /// A sub-table; a value of another type is a problem.
    pub fn table(&self, cx: &mut Ctx<'_>, key: &str) -> Option<TableRef<'a, 's>> {
        let v = self.raw(key)?;
        if let Some(t) = as_table_ref(v) {
            return Some(t);
        }
        self.wrong_type(cx, key, v, "a table");
        None
    }

    /// An array of tables (`[[key]]`).
    pub fn tables(&self, cx: &mut Ctx<'_>, key: &str) -> Vec<TableRef<'a, 's>> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let Some(arr) = v.get_ref().as_array() else {
            self.wrong_type(cx, key, v, "an array of tables ([[...]])");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in arr.iter().enumerate() {
            match as_table_ref(item) {
                Some(t) => out.push(t),
                None => cx.problem(
                    format!("{}[{i}]", self.key_path(key)),
                    Some(item.span()),
                    format!("expected a table, found {}", item.get_ref().type_str()),
                ),
            }
        }
        out
    }
}

fn as_table_ref<'a, 's>(v: &'a Spanned<DeValue<'s>>) -> Option<TableRef<'a, 's>> {
    match v.get_ref() {
        DeValue::Table(t) => Some((t, v.span())),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses "500ms", "30s", "15m", "8h", "7d".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).map(Duration::from_millis)
}

/// Parses "512", "512B", "16KiB", "10MiB", "1GiB" (and KB/MB/GB as decimal).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}
