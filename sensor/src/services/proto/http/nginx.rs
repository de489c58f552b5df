//! What nginx 1.22 (Debian 12's, `server_tokens off`) refuses before any location handler, and
//! its built-in error pages, as observed side by side with a real nginx (see
//! `tests/services_http_nginx.rs`). The skins with `server_style: nginx` are applications
//! behind nginx: their endpoints answer what reaches them; these refusals never reach them.
//!
//! ```text
//! get / (lowercase method)    400      HTTP/1.1 without Host   400
//! /%zz                        400      /../ above the root      400
//! HTTP/2.5 (any major > 1)    505      TRACE                    405 "Not Allowed"
//! request line > 8 KiB        414 "Request-URI Too Large"
//! header line > 8 KiB         400 "Request Header Or Cookie Too Large"
//! ```
//! Every refusal has nginx's header order (`Server`, `Date`, `Content-Type: text/html`,
//! `Content-Length`, `Connection`) and none of the skin's own headers (nginx's `add_header`
//! leaves error responses alone), and closes the connection, except TRACE's 405.

use super::{
    reply,
    request::{HTTP09, Request},
};

/// nginx's status line phrase where it differs from the standard one.
#[must_use]
pub const fn reason(status: u16) -> &'static str {
    match status {
        405 => "Not Allowed",
        414 => "Request-URI Too Large",
        505 => "HTTP Version Not Supported",
        other => reply::reason(other),
    }
}

/// Why nginx refuses `request` before any handler, as a status; `None` when it passes.
#[must_use]
pub fn refusal(request: &Request) -> Option<u16> {
    let version = request.version.as_str();
    if version != HTTP09 {
        let major = version
            .strip_prefix("HTTP/")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m > 1) {
            return Some(505);
        }
    }
    if request.method.is_empty()
        || !request
            .method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Some(400);
    }
    if version == "HTTP/1.1" && request.header("host").is_none() {
        return Some(400);
    }
    let path = request.path();
    if super::apache::bad_escape(path) || above_root(path) {
        return Some(400);
    }
    (request.method == "TRACE").then_some(405)
}

/// Whether `..` segments climb above `/` (nginx: "client sent invalid request").
fn above_root(path: &str) -> bool {
    let mut depth: usize = 0;
    for segment in path.split('/').skip(1) {
        match segment {
            ".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            "" | "." => {}
            _ => depth = depth.saturating_add(1),
        }
    }
    false
}

/// Whether a refusal with `status` keeps the connection open (only TRACE's 405 does).
#[must_use]
pub const fn keeps_alive(status: u16) -> bool {
    status == 405
}

/// nginx's built-in page for `status`; `detail` is the second line some 400s carry
/// (`Request Header Or Cookie Too Large`, `The plain HTTP request was sent to HTTPS port`).
#[must_use]
pub fn page(status: u16, detail: Option<&str>) -> String {
    let r = reason(status);
    match detail {
        None => format!(
            "<html>\r\n<head><title>{status} {r}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
        Some(why) => format!(
            "<html>\r\n<head><title>{status} {why}</title></head>\r\n<body>\r\n<center><h1>{status} {r}</h1></center>\r\n<center>{why}</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
    }
}

/// A whole refusal as nginx writes it, with `server` as its `Server` header.
#[must_use]
pub fn refusal_bytes(server: &str, status: u16, detail: Option<&str>, keep_alive: bool) -> Vec<u8> {
    let body = page(status, detail);
    format!(
        "HTTP/1.1 {status} {}\r\nServer: {server}\r\nDate: {}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        reason(status),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str, headers: &[(&str, &str)]) -> Request {
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().unwrap_or(HTTP09).to_owned();
        Request {
            method,
            target,
            version,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Default::default(),
        }
    }

    #[test]
    fn refusals_are_nginxs() {
        let host = [("Host", "x")];
        for (line, headers, want) in [
            ("GET / HTTP/1.1", &host[..], None),
            ("FOO / HTTP/1.1", &host[..], None),
            ("GET / HTTP/1.0", &[][..], None),
            ("GET /", &[][..], None),
            ("get / HTTP/1.1", &host[..], Some(400)),
            ("GET / HTTP/1.1", &[][..], Some(400)),
            ("GET /%zz HTTP/1.1", &host[..], Some(400)),
            ("GET /../../etc/passwd HTTP/1.1", &host[..], Some(400)),
            ("GET /a/../b HTTP/1.1", &host[..], None),
            ("GET / HTTP/2.5", &host[..], Some(505)),
            ("TRACE / HTTP/1.1", &host[..], Some(405)),
        ] {
            assert_eq!(refusal(&request(line, headers)), want, "{line}");
        }
    }

    #[test]
    fn pages_are_byte_for_byte_nginxs() {
        // Sizes as nginx 1.22 sends them (Content-Length of the real server).
        assert_eq!(page(400, None).len(), 150);
        assert_eq!(page(404, None).len(), 146);
        assert_eq!(page(405, None).len(), 150);
        assert_eq!(page(414, None).len(), 170);
        assert_eq!(page(505, None).len(), 180);
        assert_eq!(
            page(400, Some("Request Header Or Cookie Too Large")).len(),
            226
        );
        let bytes = String::from_utf8(refusal_bytes("nginx", 405, None, true)).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 405 Not Allowed\r\nServer: nginx\r\nDate: "));
        assert!(bytes.contains("\r\nContent-Type: text/html\r\nContent-Length: 150\r\nConnection: keep-alive\r\n\r\n<html>"));
    }
}
