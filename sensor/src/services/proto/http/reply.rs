//! The answer a skin or an imitated server gives (status, headers, body), which server style
//! writes it, and the standard reason phrases: the bottom of the HTTP emulation, shared by the
//! skins and the server-specific rules (`apache`, `nginx`, `response`).

/// Which server the skin imitates: decides the order of the standard headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Apache httpd.
    Apache,
    /// Microsoft IIS.
    Iis,
    /// nginx.
    Nginx,
}

/// What to answer.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: u16,
    /// Headers from the skin and the rule.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Whether a configured endpoint (not a static file or the default) answered.
    pub matched: bool,
}

/// The reason phrase the imitated servers send.
#[must_use]
pub const fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
