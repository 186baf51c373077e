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
pub struct HtmlCleaner {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
    removed: Arc<Mutex<usize>>,
}

const URL_ATTRS: [&str; 4] = ["href", "src", "action", "formaction"];

impl HtmlCleaner {
    pub fn new(names: NameSet) -> HtmlCleaner {
        let names = Arc::new(names);
        let out: Arc<Mutex<Vec<u8>>> = Arc::default();
        let removed: Arc<Mutex<usize>> = Arc::default();
        let (n1, n2, r1, r2) = (names.clone(), names, removed.clone(), removed.clone());
        let settings = Settings {
            element_content_handlers: vec![
                element!("[href], [src], [action], [formaction]", move |el| {
                    for attr in URL_ATTRS {
                        if let Some(v) = el.get_attribute(attr)
                            && let Some(clean) = strip_in_url(&v, &n1)
                        {
                            el.set_attribute(attr, &clean)?;
                            *r1.lock().expect("html count lock") += 1;
                        }
                    }
                    Ok(())
                }),
                element!("input[name]", move |el| {
                    let hidden = el
                        .get_attribute("type")
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("hidden"));
                    if hidden
                        && el
                            .get_attribute("name")
                            .is_some_and(|n| n2.matches(n.as_bytes()))
                    {
                        el.remove();
                        *r2.lock().expect("html count lock") += 1;
                    }
                    Ok(())
                }),
            ],
            ..Settings::new_send()
        };
        HtmlCleaner {
            rewriter: Some(HtmlRewriter::new(settings, Sink(out.clone()))),
            out,
            removed,
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().expect("html sink lock"))
    }

    /// Feeds a chunk; returns what is ready to send.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, lol_html::errors::RewritingError> {
        if let Some(r) = self.rewriter.as_mut() {
            r.write(chunk)?;
        }
        Ok(self.take())
    }

    /// Ends the document; returns the rest.
    pub fn end(&mut self) -> Result<Vec<u8>, lol_html::errors::RewritingError> {
        if let Some(r) = self.rewriter.take() {
            r.end()?;
        }
        Ok(self.take())
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
        for chunk in [1, 3, 17, 4096] {
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
    fn pages_without_ids_pass_unchanged() {
        let page = "<!doctype html><p class=x>hello <a href='/a?b=1'>link</a></p>";
        assert_eq!(clean(page, 5), page);
    }
}
