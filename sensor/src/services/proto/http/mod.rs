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

mod builtin;
pub mod credentials;
pub mod files;
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
    credentials::{basic_credentials, body_credentials, form_pairs},
    request::{ReadError, Request, read_request},
    response::{bad_request, render},
    skin::{Skin, TemplateRequest},
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

/// Requests served on one connection before it is closed (Apache's `MaxKeepAliveRequests`).
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

    /// Loads the skin (from disk for a skin folder: this runs on the blocking pool).
    fn handler(config: HttpConfig, ctx: &Context) -> Result<Handler, ServiceError> {
        handler(&config, ctx, false)
    }
}

impl TcpProtocol for Https {
    type Config = HttpConfig;

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

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    http: &HttpServer,
    mut session: Session,
    mut conn: Conn<S>,
) -> Result<(), SessionError> {
    let secure = http.tls.is_some();
    for _ in 0..MAX_REQUESTS {
        let request = match read_request(&mut conn, &session).await {
            Ok(request) => request,
            Err(ReadError::Session(err)) => return Err(err),
            Err(ReadError::Bad(why)) => {
                session.data(conn.buffered()).await;
                conn.write_all(&bad_request(http.skin.style, 400), &session)
                    .await?;
                return Err(SessionError::Protocol(why.to_owned()));
            }
            Err(ReadError::UriTooLong) => {
                conn.write_all(&bad_request(http.skin.style, 414), &session)
                    .await?;
                return Err(SessionError::Protocol("URI too long".to_owned()));
            }
            Err(ReadError::TooLarge) => {
                conn.write_all(&bad_request(http.skin.style, 413), &session)
                    .await?;
                return Err(SessionError::BufferFull(session.limits().max_buffer_bytes));
            }
        };
        session.handshake_done();
        let keep_alive = request.keep_alive();
        let tpl = template_request(&request, &session, secure);
        let basic = basic_credentials(&request);
        let authorised = !http.basic_auth
            || basic.as_ref().is_some_and(|(u, p)| {
                http.username.as_deref() == Some(u.as_str())
                    && http.password.as_deref() == Some(p.as_str())
            });
        // The challenge header is added below, as for any 401 under basic_auth.
        let mut response = answer(&http.skin, &request, tpl, authorised).await?;
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
        let bytes = render(
            http.skin.style,
            &http.skin.headers,
            &response,
            request.method == "HEAD",
            keep_alive,
        );
        conn.write_all(&bytes, &session).await?;
        if !keep_alive {
            conn.shutdown().await;
            return Ok(());
        }
    }
    conn.shutdown().await;
    Ok(())
}
