//! Responses as the imitated servers write them: reason phrases, the standard headers in each
//! server's order, and the error page for a request that cannot be parsed.

pub use super::reply::reason;
use super::reply::{Response, Style};

/// Serialises a response with the imitated server's standard headers, in its order.
#[must_use]
pub fn render(
    style: Style,
    skin_headers: &[(String, String)],
    response: &Response,
    head_only: bool,
    keep_alive: Option<usize>,
) -> Vec<u8> {
    let keep_alive_max = keep_alive;
    let keep_alive = keep_alive.is_some();
    let mut headers: Vec<(String, String)> = Vec::new();
    for (k, v) in skin_headers.iter().chain(response.headers.iter()) {
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        headers.push((k.clone(), v.clone()));
    }
    let mut take = |name: &str| {
        headers
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|i| headers.remove(i).1)
    };
    let server = take("server");
    // An empty content type: none sent (Apache's `OPTIONS *`).
    let content_type = take("content-type").unwrap_or_else(|| "text/html".to_owned());
    let vary = take("vary");
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let length = response.body.len().to_string();
    let no_body = head_only || matches!(response.status, 204 | 304);
    let mut ordered: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| ordered.push((k.to_owned(), v));
    match style {
        Style::Apache => {
            push("Date", date);
            if let Some(s) = server {
                push("Server", s);
            }
            headers.drain(..).for_each(|(k, v)| push(&k, v));
            push("Content-Length", length);
            if let Some(v) = vary.clone() {
                push("Vary", v);
            }
            if let Some(left) = keep_alive_max {
                push("Keep-Alive", format!("timeout=5, max={left}"));
                push("Connection", "Keep-Alive".to_owned());
            } else {
                push("Connection", "close".to_owned());
            }
            if !content_type.is_empty() {
                push("Content-Type", content_type.clone());
            }
        }
        Style::Iis => {
            if let Some(v) = vary.clone() {
                push("Vary", v);
            }
            push("Content-Type", content_type);
            if let Some(s) = server {
                push("Server", s);
            }
            headers.drain(..).for_each(|(k, v)| push(&k, v));
            push("Date", date);
            if !keep_alive {
                push("Connection", "close".to_owned());
            }
            push("Content-Length", length);
        }
        Style::Nginx => {
            if let Some(v) = vary {
                push("Vary", v);
            }
            if let Some(s) = server {
                push("Server", s);
            }
            push("Date", date);
            push("Content-Type", content_type);
            push("Content-Length", length);
            push(
                "Connection",
                if keep_alive { "keep-alive" } else { "close" }.to_owned(),
            );
            headers.drain(..).for_each(|(k, v)| push(&k, v));
        }
    }
    let phrase = if style == Style::Nginx {
        super::nginx::reason(response.status)
    } else {
        reason(response.status)
    };
    let mut out = format!("HTTP/1.1 {} {phrase}\r\n", response.status).into_bytes();
    for (k, v) in ordered {
        // Header values come from the skin; strip line breaks so none can split the head.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !no_body {
        out.extend_from_slice(&response.body);
    }
    out
}

/// The page IIS or nginx sends for a request it cannot parse (`status` 400, 413, 414); Apache's
/// is [`super::apache::Page`].
#[must_use]
pub fn bad_request(style: Style, status: u16) -> Vec<u8> {
    if style == Style::Nginx {
        return super::nginx::refusal_bytes("nginx", status, None, false);
    }
    let body = match style {
        Style::Iis => format!("<h1>{}</h1>", reason(status)),
        Style::Nginx => nginx_page(status),
        Style::Apache => format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{status} {r}</title>\n</head><body>\n<h1>{r}</h1>\n<p>Your browser sent a request that this server could not understand.<br />\n</p>\n</body></html>\n",
            r = reason(status)
        ),
    };
    format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\nContent-Length: {}\r\nConnection: close\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\n{body}",
        reason(status),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        body.len()
    )
    .into_bytes()
}

/// nginx's built-in page for `status` (`ngx_http_error_pages`).
#[must_use]
pub fn nginx_page(status: u16) -> String {
    super::nginx::page(status, None)
}
