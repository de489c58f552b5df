//! What Debian's Apache 2.4 (stock `apache2.conf`, `security.conf` with `TraceEnable Off`,
//! `KeepAliveTimeout 5`, `mod_reqtimeout` `header=20-40`) answers before any content handler,
//! and its error pages, as observed side by side with `apache2 -X` (see
//! `tests/services_http_fidelity.rs`):
//!
//! ```text
//! OPTIONS /         200, Allow: POST,OPTIONS,HEAD,GET, Content-Length: 0
//! PUT, DELETE, ...  405, Allow: POST,OPTIONS,HEAD,GET   (any method Apache knows)
//! TRACE             405, Allow: (empty)                 (TraceEnable Off)
//! FOO, get          501, Allow: POST,OPTIONS,HEAD,GET   (a method Apache does not know)
//! POST /            the static page, as GET
//! HTTP/1.1 no Host  400      /%zz   400      request line too long   414
//! partial request, then silence   408 after 20 s     silence between requests   closed at 5 s
//! ```
//! Static pages carry `Last-Modified`, `ETag` (`"<size hex>-<mtime in µs hex>"`),
//! `Accept-Ranges: bytes` and, for the types `mod_deflate` compresses, `Vary: Accept-Encoding`.
//! Skin endpoints answering a method come first: a Trapster skin's own `PUT` rule still answers.

use std::time::Duration;

use super::reply::{Response, reason};

/// `Allow` of Debian's default site (Apache lists the methods from a hash, in this order).
pub const ALLOW: &str = "POST,OPTIONS,HEAD,GET";

/// How long an idle keep-alive connection waits for the next request (`KeepAliveTimeout`).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// How long a started request may take to arrive (`RequestReadTimeout header=20`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The methods Apache registers (`ap_method_registry` and the WebDAV ones): a known method the
/// default handler does not serve gets 405; any other gets 501.
const KNOWN: &[&str] = &[
    "GET",
    "PUT",
    "POST",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "VERSION-CONTROL",
    "CHECKOUT",
    "UNCHECKOUT",
    "CHECKIN",
    "UPDATE",
    "LABEL",
    "REPORT",
    "MKWORKSPACE",
    "MKACTIVITY",
    "BASELINE-CONTROL",
    "MERGE",
];

/// Whether `path` holds a `%` not followed by two hex digits (Apache answers 400).
#[must_use]
pub fn bad_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%'
            && !(bytes
                .get(i.saturating_add(1))
                .is_some_and(u8::is_ascii_hexdigit)
                && bytes
                    .get(i.saturating_add(2))
                    .is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The answer to a method the skin has no rule for, when it is not GET, HEAD or POST.
#[must_use]
pub fn method_response(method: &str, target: &str, page: &Page<'_>) -> Option<Response> {
    let header = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    match method {
        "GET" | "HEAD" | "POST" => None,
        "OPTIONS" => Some(Response {
            status: 200,
            headers: vec![
                header("Allow", ALLOW),
                // `OPTIONS *` has no content type.
                header("Content-Type", if target == "*" { "" } else { "text/html" }),
            ],
            body: Vec::new(),
            matched: false,
        }),
        "TRACE" => Some(page.response(405, method, "")),
        m if KNOWN.contains(&m) => Some(page.response(405, method, ALLOW)),
        _ => Some(page.response(501, method, ALLOW)),
    }
}

/// What an error page names: the `Server` value, and the host and port of its signature.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// The `Server` header (`ServerTokens OS`), also the signature's product.
    pub server: &'a str,
    /// The request's host name, or the server's address when the request was not read.
    pub host: &'a str,
    /// The local port.
    pub port: u16,
}

impl Page<'_> {
    /// The error page for `status` as a response (`Allow` when not empty or for 405).
    #[must_use]
    pub fn response(&self, status: u16, method: &str, allow: &str) -> Response {
        let mut headers = Vec::new();
        if matches!(status, 405 | 501) {
            headers.push(("Allow".to_owned(), allow.to_owned()));
        }
        headers.push((
            "Content-Type".to_owned(),
            "text/html; charset=iso-8859-1".to_owned(),
        ));
        Response {
            status,
            headers,
            body: self.body(status, method, "").into_bytes(),
            matched: false,
        }
    }

    /// Apache's error document for `status`, with `reason_note` after the 400 message (mod_ssl's
    /// plain-HTTP note).
    #[must_use]
    pub fn body(&self, status: u16, method: &str, reason_note: &str) -> String {
        let method = html_escape(method);
        let message = match status {
            400 => format!(
                "<p>Your browser sent a request that this server could not understand.<br />\n{reason_note}</p>\n"
            ),
            403 => "<p>You don't have permission to access this resource.</p>\n".to_owned(),
            404 => "<p>The requested URL was not found on this server.</p>\n".to_owned(),
            405 => format!("<p>The requested method {method} is not allowed for this URL.</p>\n"),
            408 => "<p>Server timeout waiting for the HTTP request from the client.</p>\n"
                .to_owned(),
            413 => format!(
                "<p>The requested resource does not allow request data with {method} requests, or the amount of data provided in\nthe request exceeds the capacity limit.\n</p>\n"
            ),
            414 => "<p>The requested URL's length exceeds the capacity\nlimit for this server.<br />\n</p>\n"
                .to_owned(),
            501 => format!("<p>{method} not supported for current URL.<br />\n</p>\n"),
            _ => String::new(),
        };
        let r = reason(status);
        format!(
            "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\" \"http://www.w3.org/TR/html4/strict.dtd\">\n<html><head>\n<title>{status} {r}</title>\n</head><body>\n<h1>{r}</h1>\n{message}<hr>\n<address>{} Server at {} Port {}</address>\n</body></html>\n",
            self.server,
            html_escape(self.host),
            self.port
        )
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// mod_ssl's note for a plain HTTP request on the TLS port.
pub const PLAIN_HTTP_NOTE: &str = "Reason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n Instead use the HTTPS scheme to access this URL, please.<br />\n";

/// The validators Apache's core adds to a static file: `Last-Modified`, `ETag`,
/// `Accept-Ranges`, and `Vary` for the types mod_deflate compresses.
#[must_use]
pub fn static_headers(
    size: usize,
    modified: std::time::SystemTime,
    content_type: &str,
) -> Vec<(String, String)> {
    let since = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let micros = since.as_micros();
    let when = chrono::DateTime::<chrono::Utc>::from(modified)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut headers = vec![
        ("Last-Modified".to_owned(), when),
        ("ETag".to_owned(), format!("\"{size:x}-{micros:x}\"")),
        ("Accept-Ranges".to_owned(), "bytes".to_owned()),
    ];
    let compressed = [
        "text/html",
        "text/plain",
        "text/xml",
        "text/css",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/rss+xml",
        "application/xml",
    ];
    if compressed.contains(&content_type) {
        headers.push(("Vary".to_owned(), "Accept-Encoding".to_owned()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::{Page, bad_escape, method_response, static_headers};

    #[test]
    fn escapes_are_two_hex_digits() {
        assert!(bad_escape("/%zz"));
        assert!(bad_escape("/a%4"));
        assert!(bad_escape("/%"));
        assert!(!bad_escape("/%41%2f"));
        assert!(!bad_escape("/plain"));
    }

    #[test]
    fn methods_get_apaches_statuses() {
        let page = Page {
            server: "Apache/2.4.71 (Debian)",
            host: "x",
            port: 18080,
        };
        let status = |m: &str| method_response(m, "/", &page).map(|r| r.status);
        assert_eq!(status("GET"), None);
        assert_eq!(status("POST"), None);
        assert_eq!(status("OPTIONS"), Some(200));
        assert_eq!(status("PUT"), Some(405));
        assert_eq!(status("DELETE"), Some(405));
        assert_eq!(status("TRACE"), Some(405));
        assert_eq!(status("FOO"), Some(501));
        assert_eq!(status("get"), Some(501));
        let trace = method_response("TRACE", "/", &page).unwrap();
        assert_eq!(trace.headers[0], ("Allow".to_owned(), String::new()));
        let body = String::from_utf8(method_response("PUT", "/", &page).unwrap().body).unwrap();
        assert_eq!(body.len(), 330, "as apache2 2.4.71 answered");
        assert!(body.contains("<p>The requested method PUT is not allowed for this URL.</p>\n"));
    }

    #[test]
    fn static_validators_are_apaches() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(0x0006_619e_78e6_9674);
        let headers = static_headers(10701, at, "text/html");
        assert_eq!(headers[1].1, "\"29cd-6619e78e69674\"");
        assert_eq!(headers[0].1, "Wed, 02 Dec 2026 03:45:21 GMT");
        assert_eq!(headers.len(), 4);
        assert_eq!(static_headers(5754, at, "image/png").len(), 3);
    }
}
