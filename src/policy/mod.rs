//! Policies: pure functions over request and response parts, no I/O.
//! Each is called from one place in `proxy::Gateway::proxy`, in order.

pub mod cookie;
pub mod cookie_date;
pub mod form;
pub mod html;
pub mod names;
pub mod set_cookie;
pub mod url;

/// Removes optional whitespace (SP and HTAB, RFC 9110 §5.6.3) around a
/// header element.
pub(crate) fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t'))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &b[start..end]
}
