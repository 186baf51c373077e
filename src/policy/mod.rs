//! Policies: pure functions over request and response parts, no I/O.
//! Each is called from one place in `proxy::Gateway::proxy`, in order.

pub mod cookie;
pub mod cookie_date;
pub mod form;
pub mod html;
pub mod names;
pub mod set_cookie;
pub mod url;
