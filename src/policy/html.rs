//! Session IDs in HTML: removed from `href`, `src`, `action` and
//! `formaction` URLs, and hidden inputs named after a session parameter
//! dropped, by lol_html's streaming rewriter (it works across chunk
//! boundaries and holds no more than the current tag).
//!
//! PHP's trans-sid and servlet URL rewriting write the ID into the pages they
//! serve, where any script (an XSS) can read it, and from where it leaks
//! through `Referer` and history.

use std::sync::{Arc, Mutex};

use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{OutputSink, element};

use super::names::NameSet;
use super::url::strip_in_url;

/// Collects the rewriter's output between writes.
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .expect("html sink lock")
            .extend_from_slice(chunk);
    }
}

/// A streaming HTML cleaner: write chunks, take the output.
///
/// Until a session name shows up in the page, it only scans: bytes pass
/// unchanged and the HTML parser never starts (a page that never mentions a
/// session name costs one case-insensitive search). At the first mention, the
/// parser starts at the tag around it and rewrites from there on.
pub struct HtmlCleaner {
    names: Arc<NameSet>,
    /// Lower-case names, and whether each is a prefix pattern.
    needles: Vec<(Vec<u8>, bool)>,
    /// While scanning: the bytes held back (from the last `<`), which a tag
    /// or a name split across chunks may need.
    tail: Vec<u8>,
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
    removed: Arc<Mutex<usize>>,
}

/// Bytes held back at most while scanning, when no `<` is near the end.
const MAX_HELD: usize = 4096;

/// Elements and the URL attribute each carries. Naming the elements (not
/// `[href]` on any tag) lets lol_html skip attribute parsing for every other
/// tag, which is most of a page.
const URL_ATTRS: [(&str, &str); 11] = [
    ("a[href]", "href"),
    ("area[href]", "href"),
    ("link[href]", "href"),
    ("img[src]", "src"),
    ("script[src]", "src"),
    ("iframe[src]", "src"),
    ("frame[src]", "src"),
    ("input[src]", "src"),
    ("form[action]", "action"),
    ("button[formaction]", "formaction"),
    ("input[formaction]", "formaction"),
];

impl HtmlCleaner {
    pub fn new(names: NameSet) -> HtmlCleaner {
        let needles = names
            .names()
            .iter()
            .map(|n| match n.strip_suffix('*') {
                Some(p) => (p.to_ascii_lowercase().into_bytes(), true),
                None => (n.to_ascii_lowercase().into_bytes(), false),
            })
            .collect();
        HtmlCleaner {
            names: Arc::new(names),
            needles,
            tail: Vec::new(),
            rewriter: None,
            out: Arc::default(),
            removed: Arc::default(),
        }
    }

    fn rewriter(&self) -> HtmlRewriter<'static, Sink> {
        let mut handlers = Vec::with_capacity(URL_ATTRS.len() + 1);
        for (selector, attr) in URL_ATTRS {
            let (n, r) = (self.names.clone(), self.removed.clone());
            handlers.push(element!(selector, move |el| {
                if let Some(v) = el.get_attribute(attr)
                    // Only a URL with parameters can carry an ID.
                    && v.contains(['?', ';', '%'])
                    && let Some(clean) = strip_in_url(&v, &n)
                {
                    el.set_attribute(attr, &clean)?;
                    *r.lock().expect("html count lock") += 1;
                }
                Ok(())
            }));
        }
        let (n, r) = (self.names.clone(), self.removed.clone());
        handlers.push(element!("input[name]", move |el| {
            let hidden = el
                .get_attribute("type")
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("hidden"));
            if hidden
                && el
                    .get_attribute("name")
                    .is_some_and(|v| n.matches(v.as_bytes()))
            {
                el.remove();
                *r.lock().expect("html count lock") += 1;
            }
            Ok(())
        }));
        let settings = Settings {
            element_content_handlers: handlers,
            ..Settings::new_send()
        };
        HtmlRewriter::new(settings, Sink(self.out.clone()))
    }

    /// Where the first session name stands in `buf`: a name followed by
    /// `=`, a quote or `%` (a parameter or an input's name), or a prefix
    /// pattern anywhere.
    fn first_mention(&self, buf: &[u8]) -> Option<usize> {
        let lower = buf.to_ascii_lowercase();
        self.needles
            .iter()
            .filter_map(|(needle, prefix)| {
                memchr::memmem::find_iter(&lower, needle).find(|&at| {
                    *prefix
                        || matches!(
                            lower.get(at + needle.len()),
                            Some(b'=' | b'"' | b'\'' | b'%') | None
                        )
                })
            })
            .min()
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().expect("html sink lock"))
    }

    /// Feeds a chunk; returns what is ready to send.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, lol_html::errors::RewritingError> {
        if let Some(r) = self.rewriter.as_mut() {
            r.write(chunk)?;
            return Ok(self.take());
        }
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(chunk);
        match self.first_mention(&buf) {
            None => {
                let longest = self.needles.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
                let keep_from = match memchr::memrchr(b'<', &buf) {
                    Some(lt) if buf.len() - lt <= MAX_HELD => lt,
                    _ => buf.len().saturating_sub(longest + 1),
                };
                self.tail = buf.split_off(keep_from);
                Ok(buf)
            }
            Some(at) => {
                // Parse from the tag around the first mention on.
                let start = memchr::memrchr(b'<', &buf[..at]).unwrap_or(0);
                let mut out = buf[..start].to_vec();
                let mut r = self.rewriter();
                r.write(&buf[start..])?;
                self.rewriter = Some(r);
                out.extend(self.take());
                Ok(out)
            }
        }
    }

    /// Ends the document; returns the rest.
    pub fn end(&mut self) -> Result<Vec<u8>, lol_html::errors::RewritingError> {
        match self.rewriter.take() {
            Some(r) => {
                r.end()?;
                Ok(self.take())
            }
            None => Ok(std::mem::take(&mut self.tail)),
        }
    }

    /// How many URLs and inputs were changed so far.
    pub fn removed(&self) -> usize {
        *self.removed.lock().expect("html count lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str, chunk: usize) -> String {
        let mut c = HtmlCleaner::new(NameSet::new(["PHPSESSID", "jsessionid"]));
        let mut out = Vec::new();
        for part in html.as_bytes().chunks(chunk) {
            out.extend(c.write(part).unwrap());
        }
        out.extend(c.end().unwrap());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn trans_sid_pages_lose_their_ids() {
        let page = r#"<html><body><a href="/account.php?PHPSESSID=abc123">account</a>
<a href="/a;jsessionid=XYZ?x=1&amp;y=2">servlet</a>
<img src="/pic.png?PHPSESSID=abc123">
<form action="/login.php?PHPSESSID=abc123" method="post"><input type="hidden" name="PHPSESSID" value="abc123" /><input name="user"><button formaction="/other?PHPSESSID=abc123">go</button></form>
<p>PHPSESSID is a word here and stays.</p></body></html>"#;
        for chunk in [1, 3, 17, 50, 4096] {
            let out = clean(page, chunk);
            assert!(
                !out.contains("abc123") && !out.contains("XYZ"),
                "chunk {chunk}: {out}"
            );
            assert!(out.contains(r#"<a href="/account.php">"#), "{out}");
            assert!(out.contains(r#"<a href="/a?x=1&amp;y=2">"#), "{out}");
            assert!(out.contains(r#"<input name="user">"#));
            assert!(out.contains("PHPSESSID is a word here and stays."));
        }
    }

    #[test]
    fn a_mention_late_in_a_long_page_is_still_found() {
        let filler = "<p>text without any names</p>".repeat(500);
        let page = format!(
            "{filler}<a href=\"/x?PHPSESSID=late1\">x</a>{filler}<a href='/y;JSESSIONID=late2'>y</a>"
        );
        for chunk in [7, 1000, 1 << 20] {
            let out = clean(&page, chunk);
            assert!(
                !out.contains("late1") && !out.contains("late2"),
                "chunk {chunk}"
            );
            assert_eq!(
                out.len(),
                page.len() - "?PHPSESSID=late1".len() - ";JSESSIONID=late2".len()
            );
        }
    }

    #[test]
    fn pages_without_ids_pass_unchanged() {
        let page = "<!doctype html><p class=x>hello <a href='/a?b=1'>link</a></p>";
        assert_eq!(clean(page, 5), page);
    }
}
