//! HTTP and HTTPS with Trapster skins.
//!
//! ```text
//! C: GET / HTTP/1.1 / Host: 192.0.2.10 / User-Agent: curl/7.88.1
//! S: HTTP/1.1 200 OK / Date / Server: Apache/2.4.62 (Debian) / ... / Apache2 Debian Default Page
//!                                -> http.query {"skin":"default_apache","method":"GET",
//!                                   "target":"/","version":"1.1","headers":{...},
//!                                   "status_code":200}
//! C: POST /login (username=admin&password=admin)
//!                                -> http.login {..., "username":"admin","password":"admin"}
//! ```
//! `nmap -sV` reports `Apache httpd 2.4.62 ((Debian))` for `default_apache`, `Microsoft IIS
//! httpd 10.0` for `default_iis`, and HTTPS as `ssl/http` with the same product (TLS with a
//! self-signed certificate for the configured `common_name`, kept in the state directory).
//!
//! Requests are parsed by hand within the session limits (line length, header bytes, body
//! size), answered with the reason phrases, `Date`, `Server` and header order of the imitated
//! server, and logged one event per request: `http.login` when the request carries credentials
//! (Basic authentication, or a form or JSON body with a user/password field), `http.query`
//! otherwise; the body's raw bytes are the event's `data`.

pub mod apache;
mod builtin;
pub mod credentials;
pub mod files;
pub mod nginx;
pub mod reply;
pub mod request;
pub mod response;
pub mod skin;
#[cfg(test)]
mod skin_tests;

use std::{collections::HashMap, sync::Arc};

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use self::{
    apache::Page,
    credentials::{basic_credentials, body_credentials, form_pairs},
    request::{HTTP09, ReadError, Request, read_request},
    response::{bad_request, nginx_page, reason, render},
    skin::{Skin, Style, TemplateRequest},
};
use crate::services::{
    Context, ServiceError,
    framework::{
        conn::Conn,
        session::{Session, SessionError},
        tcp::{Handler, TcpProtocol},
        tls::{self, Subject},
    },
};

/// Requests served on one connection before it is closed (Apache's `MaxKeepAliveRequests`;
/// its `Keep-Alive: max=` counts down from here).
const MAX_REQUESTS: usize = 100;

struct HttpServer {
    skin: Arc<Skin>,
    basic_auth: bool,
    username: Option<String>,
    password: Option<String>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("skin", &self.skin.name)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// An HTTP or HTTPS instance.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    /// Skin: a folder name under the skin directories; default `default_apache`.
    #[serde(default)]
    pub skin: Option<String>,
    /// Ask for HTTP Basic authentication on every request.
    #[serde(default)]
    pub basic_auth: bool,
    /// User accepted by Basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password accepted by Basic authentication.
    #[serde(default)]
    pub password: Option<String>,
    /// Certificate subject (HTTPS): common name; default the host name.
    #[serde(default)]
    pub common_name: Option<String>,
    /// Certificate subject: organisation.
    #[serde(default)]
    pub organization_name: Option<String>,
    /// Certificate subject: country (two letters).
    #[serde(default)]
    pub country_name: Option<String>,
    /// Certificate subject: state or province.
    #[serde(default)]
    pub state_or_province_name: Option<String>,
    /// Certificate subject: locality.
    #[serde(default)]
    pub locality_name: Option<String>,
    /// Private key file (HTTPS, PEM), as Trapster: used with `certificate` when both exist,
    /// else both are generated there; default in the state directory.
    #[serde(default)]
    pub key: Option<std::path::PathBuf>,
    /// Certificate file (HTTPS, PEM); see `key`.
    #[serde(default)]
    pub certificate: Option<std::path::PathBuf>,
    /// First day a generated certificate is valid (ISO date); default today.
    #[serde(default)]
    pub not_valid_before: Option<tls::IsoDay>,
    /// Last day a generated certificate is valid (ISO date); default ten years on.
    #[serde(default)]
    pub not_valid_after: Option<tls::IsoDay>,
}

/// HTTP.
#[derive(Debug)]
pub struct Http;

/// HTTPS: HTTP over TLS with a self-signed certificate.
#[derive(Debug)]
pub struct Https;

impl TcpProtocol for Http {
    type Config = HttpConfig;

    /// Apache's `Timeout 300`; `mod_reqtimeout` (20 s to send a request) and
    /// `KeepAliveTimeout 5` apply under it.
    fn timeouts(_config: &HttpConfig) -> Option<crate::services::framework::timeouts::Timeouts> {
        Some(crate::services::framework::timeouts::Timeouts::secs(
            300, 300,
        ))
    }

    /// Loads the skin (from disk for a skin folder: this runs on the blocking pool).
    fn handler(config: HttpConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        handler(&config, ctx, false)
    }
}

impl TcpProtocol for Https {
    type Config = HttpConfig;

    /// Apache's `Timeout 300`; `mod_reqtimeout` (20 s to send a request) and
    /// `KeepAliveTimeout 5` apply under it.
    fn timeouts(_config: &HttpConfig) -> Option<crate::services::framework::timeouts::Timeouts> {
        Some(crate::services::framework::timeouts::Timeouts::secs(
            300, 300,
        ))
    }

    /// Loads the skin and generates (once) or loads the certificate.
    fn handler(config: HttpConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        handler(&config, ctx, true)
    }
}

fn handler(config: &HttpConfig, ctx: &Context, tls: bool) -> Result<Handler, ServiceError> {
    let setup = |message: String| ctx.setup_error(message);
    let skin_name = config.skin.as_deref().unwrap_or("default_apache");
    let skin = skin::load(skin_name, &ctx.limits.skin_dirs, &ctx.hostname, &ctx.domain)
        .map_err(|e| setup(e.to_string()))?;
    let acceptor = if tls {
        let subject = Subject {
            common_name: config
                .common_name
                .clone()
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| ctx.hostname.clone()),
            organization: config.organization_name.clone(),
            country: config.country_name.clone(),
            state: config.state_or_province_name.clone(),
            locality: config.locality_name.clone(),
            not_before: config.not_valid_before.map(|d| d.0),
            not_after: config.not_valid_after.map(|d| d.0),
        };
        let state = ctx.state_dir();
        let name = format!("https-{}", ctx.port);
        let server = tls::server_config_files(
            &config
                .certificate
                .clone()
                .unwrap_or_else(|| state.join(format!("{name}.crt"))),
            &config
                .key
                .clone()
                .unwrap_or_else(|| state.join(format!("{name}.key"))),
            &subject,
            &[b"http/1.1"],
        )
        .map_err(|e| setup(e.to_string()))?;
        // Debian's mod_ssl leaves `SSLHonorCipherOrder` off: the client's order decides.
        let server = if skin.style == Style::Apache {
            let mut own = (*server).clone();
            own.ignore_client_order = false;
            Arc::new(own)
        } else {
            server
        };
        Some(TlsAcceptor::from(server))
    } else {
        None
    };
    let http = Arc::new(HttpServer {
        skin,
        basic_auth: config.basic_auth,
        username: config.username.clone(),
        password: config.password.clone(),
        tls: acceptor,
    });
    Ok(Arc::new(move |session, stream| {
        let http = Arc::clone(&http);
        Box::pin(async move {
            match &http.tls {
                None => {
                    let conn = Conn::new(stream, session.limits());
                    serve(&http, session, conn).await
                }
                Some(acceptor) => {
                    let wait = session.limits().handshake_timeout();
                    // A request in plain HTTP on the TLS port gets Apache's or nginx's 400
                    // page (nmap names the port ssl/http from it); IIS's HTTP.sys has no
                    // answer there, the handshake just fails.
                    let mut first = [0u8; 1];
                    if http.skin.style != Style::Iis
                        && let Ok(Ok(1)) = tokio::time::timeout(wait, stream.peek(&mut first)).await
                        && first[0].is_ascii_uppercase()
                    {
                        let conn = Conn::new(stream, session.limits());
                        return plain_on_tls(&http, session, conn).await;
                    }
                    let tls = match tokio::time::timeout(wait, acceptor.accept(stream)).await {
                        Err(_) => return Err(SessionError::HandshakeTimeout),
                        Ok(result) => result?,
                    };
                    let conn = Conn::new(tls, session.limits());
                    serve(&http, session, conn).await
                }
            }
        })
    }))
}

fn template_request(request: &Request, session: &Session, secure: bool) -> TemplateRequest {
    let headers: HashMap<String, String> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let host = request.header("host").map(str::to_owned);
    let identity = session.identity();
    let host_name = host
        .as_deref()
        .map(|h| {
            if h.starts_with('[') {
                h.split_once(']')
                    .map_or(h, |(a, _)| a)
                    .trim_start_matches('[')
            } else {
                h.split_once(':').map_or(h, |(a, _)| a)
            }
        })
        .filter(|h| !h.is_empty())
        .map_or_else(|| identity.dst_ip.to_string(), str::to_owned);
    let cookies = request
        .header("cookie")
        .map(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let scheme = if secure { "https" } else { "http" };
    let with_body = matches!(request.method.as_str(), "POST" | "PUT" | "PATCH");
    TemplateRequest {
        url: format!(
            "{scheme}://{}{}",
            host.clone().unwrap_or_else(|| identity.dst_ip.to_string()),
            request.target
        ),
        path: request.path().to_owned(),
        method: request.method.clone(),
        headers,
        body: with_body.then(|| String::from_utf8_lossy(&request.body).into_owned()),
        remote: identity.src_ip.to_string(),
        cookies,
        query_string: form_pairs(request.query()).into_iter().collect(),
        content_type: request.header("content-type").map(str::to_owned),
        host,
        secure,
        scheme: scheme.to_owned(),
        path_qs: request.target.clone(),
        host_name,
        port: identity.dst_port,
    }
}

/// The skin's response: computed in place for a built-in skin, on the blocking pool for a skin
/// folder (templates and static files are read from disk), so no session task blocks on a file.
async fn answer(
    skin: &Arc<Skin>,
    request: &Request,
    tpl: TemplateRequest,
    authorised: bool,
) -> Result<skin::Response, SessionError> {
    let run = move |skin: &Skin, method: &str, path: &str, query: &str| {
        if authorised {
            skin.respond(method, path, query, &tpl)
        } else {
            skin.error(401, &tpl)
        }
    };
    if !skin.reads_files() {
        return Ok(run(skin, &request.method, request.path(), request.query()));
    }
    let skin = Arc::clone(skin);
    let (method, path, query) = (
        request.method.clone(),
        request.path().to_owned(),
        request.query().to_owned(),
    );
    tokio::task::spawn_blocking(move || run(&skin, &method, &path, &query))
        .await
        .map_err(|err| SessionError::Io(std::io::Error::other(err)))
}

/// Answers a plain HTTP request on the TLS port as Apache's mod_ssl or nginx does, and closes.
async fn plain_on_tls(
    http: &HttpServer,
    mut session: Session,
    mut conn: Conn<tokio::net::TcpStream>,
) -> Result<(), SessionError> {
    let request = tokio::time::timeout(apache::REQUEST_TIMEOUT, read_request(&mut conn, &session))
        .await
        .ok()
        .and_then(Result::ok);
    session.handshake_done();
    let host = request
        .as_ref()
        .map(|r| template_request(r, &session, false).host_name)
        .unwrap_or_else(|| session.identity().dst_ip.to_string());
    let server = http.server_header();
    let page = Page {
        server: &server,
        host: &host,
        port: session.identity().dst_port,
    };
    let mut response = page.response(400, "", "");
    match http.skin.style {
        Style::Apache => {
            response.body = page.body(400, "", apache::PLAIN_HTTP_NOTE).into_bytes();
        }
        Style::Nginx => {
            let why = "The plain HTTP request was sent to HTTPS port";
            response.headers = vec![("Content-Type".to_owned(), "text/html".to_owned())];
            response.body = format!(
                "<html>\r\n<head><title>400 {why}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>{why}</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            )
            .into_bytes();
        }
        Style::Iis => response = error_response(http, 400, "", &page),
    }
    let mut extra = Map::new();
    extra.insert("skin".to_owned(), Value::String(http.skin.name.clone()));
    extra.insert("plain_http_on_tls".to_owned(), Value::Bool(true));
    if let Some(r) = &request {
        extra.insert("method".to_owned(), Value::String(r.method.clone()));
        extra.insert("target".to_owned(), Value::String(r.target.clone()));
    }
    extra.insert("status_code".to_owned(), Value::from(400));
    session.query(conn.buffered(), extra).await;
    let bytes = render(http.skin.style, &http.skin.headers, &response, false, None);
    conn.write_all(&bytes, &session).await?;
    conn.shutdown().await;
    Ok(())
}

impl HttpServer {
    /// The skin's `Server` header, for error pages' signatures.
    fn server_header(&self) -> String {
        self.skin
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("server"))
            .map_or_else(String::new, |(_, v)| v.clone())
    }
}

/// The error page of the skin's server for a request that was not (fully) read or that the
/// server refuses before any handler.
fn error_response(http: &HttpServer, status: u16, method: &str, page: &Page<'_>) -> skin::Response {
    match http.skin.style {
        Style::Apache => page.response(status, method, apache::ALLOW),
        Style::Nginx => skin::Response {
            status,
            headers: Vec::new(),
            body: nginx_page(status).into_bytes(),
            matched: false,
        },
        Style::Iis => skin::Response {
            status,
            headers: vec![("Content-Type".to_owned(), "text/html".to_owned())],
            body: format!("<h1>{}</h1>", reason(status)).into_bytes(),
            matched: false,
        },
    }
}

/// Why a request got no normal answer.
enum Refused {
    /// Answer `status` (400, 413, 414, 408) and close.
    Close(u16, &'static str),
}

/// Waits for the next request's first byte: `Ok(false)` when the client stays silent past
/// the keep-alive timeout or closes (the connection just ends, as Apache's does).
async fn next_request<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    session: &Session,
) -> Result<bool, SessionError> {
    if !conn.buffered().is_empty() {
        return Ok(true);
    }
    match tokio::time::timeout(apache::KEEP_ALIVE, conn.fill(session)).await {
        Err(_) | Ok(Err(SessionError::Closed)) => Ok(false),
        Ok(Err(err)) if err.is_timeout() => Ok(false),
        Ok(Err(err)) => Err(err),
        Ok(Ok(_)) => Ok(true),
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    http: &HttpServer,
    mut session: Session,
    mut conn: Conn<S>,
) -> Result<(), SessionError> {
    let secure = http.tls.is_some();
    let server = http.server_header();
    let local_ip = session.identity().dst_ip.to_string();
    let port = session.identity().dst_port;
    for served in 0..MAX_REQUESTS {
        if served > 0 && !next_request(&mut conn, &session).await? {
            conn.shutdown().await;
            return Ok(());
        }
        if served == 0 && conn.buffered().is_empty() {
            // The first byte under the session's own idle deadline; after it, Apache's
            // request timeout (408).
            match conn.fill(&session).await {
                Ok(_) => {}
                Err(SessionError::Closed) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        let read = tokio::time::timeout(apache::REQUEST_TIMEOUT, read_request(&mut conn, &session));
        let refused = match read.await {
            Err(_) => Refused::Close(408, "request timeout"),
            Ok(Ok(request)) => {
                let left = MAX_REQUESTS.saturating_sub(served);
                if !answer_request(http, &mut session, &mut conn, request, secure, left).await? {
                    conn.shutdown().await;
                    return Ok(());
                }
                continue;
            }
            Ok(Err(ReadError::Session(err))) if err.is_timeout() => {
                Refused::Close(408, "request timeout")
            }
            Ok(Err(ReadError::Session(err))) => return Err(err),
            Ok(Err(ReadError::Bad(why))) => Refused::Close(400, why),
            Ok(Err(ReadError::UriTooLong)) => Refused::Close(414, "URI too long"),
            Ok(Err(ReadError::TooLarge)) => Refused::Close(413, "request too large"),
        };
        let Refused::Close(status, why) = refused;
        session.data(conn.buffered()).await;
        let bytes = if http.skin.style == Style::Nginx {
            // An over-long header line is nginx's "Request Header Or Cookie Too Large".
            let (status, detail) = match (status, why) {
                (400, "line too long") | (413, _) => {
                    (400, Some("Request Header Or Cookie Too Large"))
                }
                _ => (status, None),
            };
            nginx::refusal_bytes(&server, status, detail, false)
        } else if http.skin.style == Style::Apache {
            let page = Page {
                server: &server,
                host: &local_ip,
                port,
            };
            render(
                Style::Apache,
                &http.skin.headers,
                &page.response(status, "", ""),
                false,
                None,
            )
        } else {
            bad_request(http.skin.style, status)
        };
        conn.write_all(&bytes, &session).await?;
        conn.shutdown().await;
        return Err(match status {
            413 => SessionError::BufferFull(session.limits().max_buffer_bytes),
            _ => SessionError::Protocol(why.to_owned()),
        });
    }
    conn.shutdown().await;
    Ok(())
}

/// Answers one request and logs it; `Ok(false)` when the connection ends after it. `left`
/// counts this request and those the connection may still carry (`Keep-Alive: max=`).
async fn answer_request<S: AsyncRead + AsyncWrite + Unpin>(
    http: &HttpServer,
    session: &mut Session,
    conn: &mut Conn<S>,
    request: Request,
    secure: bool,
    left: usize,
) -> Result<bool, SessionError> {
    session.handshake_done();
    let mut keep_alive = request.keep_alive() && left > 1;
    let tpl = template_request(&request, session, secure);
    let server = http.server_header();
    let page = Page {
        server: &server,
        host: &tpl.host_name,
        port: tpl.port,
    };
    let basic = basic_credentials(&request);
    let authorised = !http.basic_auth
        || basic.as_ref().is_some_and(|(u, p)| {
            http.username.as_deref() == Some(u.as_str())
                && http.password.as_deref() == Some(p.as_str())
        });
    let apache = http.skin.style == Style::Apache;
    let (path, query) = (request.path(), request.query());
    // nginx's own refusals never reach the application behind it, nor get its headers.
    let nginx_refusal = (http.skin.style == Style::Nginx)
        .then(|| nginx::refusal(&request))
        .flatten();
    let refused = if let Some(status) = nginx_refusal {
        keep_alive = keep_alive && nginx::keeps_alive(status);
        Some(skin::Response {
            status,
            headers: Vec::new(),
            body: nginx::page(status, None).into_bytes(),
            matched: false,
        })
    } else if !apache {
        None
    } else if request.version != HTTP09
        && request.version != "HTTP/1.0"
        && request.header("host").is_none()
    {
        // Apache names its own address when the request has no host.
        keep_alive = false;
        let local = session.identity().dst_ip.to_string();
        let page = Page {
            host: &local,
            ..page.clone()
        };
        Some(page.response(400, &request.method, ""))
    } else if apache::bad_escape(path) {
        keep_alive = false;
        Some(page.response(400, &request.method, ""))
    } else if http.skin.has_rule(&request.method, path, query) {
        None
    } else {
        apache::method_response(&request.method, &request.target, &page)
    };
    let mut response = match refused {
        Some(response) => response,
        // The challenge header is added below, as for any 401 under basic_auth.
        None => answer(&http.skin, &request, tpl, authorised).await?,
    };
    if response.status == 401
        && !response
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        && http.basic_auth
    {
        response.headers.push((
            "WWW-Authenticate".to_owned(),
            "Basic realm=\"Restricted Area\"".to_owned(),
        ));
    }
    if http.skin.style == Style::Nginx {
        nginx_redirect(&mut response, &request, secure, session);
    }
    let mut extra = Map::new();
    extra.insert("skin".to_owned(), Value::String(http.skin.name.clone()));
    extra.insert("method".to_owned(), Value::String(request.method.clone()));
    extra.insert("target".to_owned(), Value::String(request.target.clone()));
    // As Trapster (hypercorn's `http_version`): "1.1", "1.0".
    let version = request
        .version
        .strip_prefix("HTTP/")
        .unwrap_or(&request.version);
    extra.insert("version".to_owned(), Value::from(version));
    let headers: Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    extra.insert("headers".to_owned(), Value::Object(headers));
    extra.insert("status_code".to_owned(), Value::from(response.status));
    let (mut user, mut password) = body_credentials(&request.body);
    if let Some((u, p)) = basic {
        extra.insert("auth".to_owned(), Value::String("basic".to_owned()));
        user = Some(u);
        password = Some(p);
    }
    let is_login = user.is_some() || password.is_some();
    if let Some(u) = user {
        extra.insert("username".to_owned(), Value::String(u));
    }
    if let Some(p) = password {
        extra.insert("password".to_owned(), Value::String(p));
    }
    if is_login {
        session.login(&request.body, extra).await;
    } else {
        session.query(&request.body, extra).await;
    }
    if request.version == HTTP09 {
        // HTTP/0.9: the body alone, then the connection closes.
        conn.write_all(&response.body, session).await?;
        return Ok(false);
    }
    if let Some(status) = nginx_refusal {
        let server = if server.is_empty() { "nginx" } else { &server };
        let bytes = nginx::refusal_bytes(server, status, None, keep_alive);
        conn.write_all(&bytes, session).await?;
        return Ok(keep_alive);
    }
    let bytes = render(
        http.skin.style,
        &http.skin.headers,
        &response,
        request.method == "HEAD",
        keep_alive.then_some(left),
    );
    conn.write_all(&bytes, session).await?;
    Ok(keep_alive)
}

/// nginx's redirects: an absolute `Location` (`absolute_redirect on`, the request's host) and
/// its built-in page as the body when the skin gives none, so clients and nmap see a title.
fn nginx_redirect(
    response: &mut skin::Response,
    request: &Request,
    secure: bool,
    session: &Session,
) {
    if !(300..400).contains(&response.status) {
        return;
    }
    let identity = session.identity();
    let default_port = if secure { 443 } else { 80 };
    for (k, v) in &mut response.headers {
        if k.eq_ignore_ascii_case("location") && v.starts_with('/') {
            let host = request.header("host").map_or_else(
                || {
                    if identity.dst_port == default_port {
                        identity.dst_ip.to_string()
                    } else {
                        format!("{}:{}", identity.dst_ip, identity.dst_port)
                    }
                },
                str::to_owned,
            );
            let scheme = if secure { "https" } else { "http" };
            *v = format!("{scheme}://{host}{v}");
        }
    }
    if response.body.is_empty() {
        response.body = nginx_page(response.status).into_bytes();
        response
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        response
            .headers
            .push(("Content-Type".to_owned(), "text/html".to_owned()));
    }
}
