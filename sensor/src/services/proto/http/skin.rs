//! HTTP skins in Trapster's layout, so existing Trapster skins load unchanged:
//!
//! ```text
//! <skin>/config.yaml   name, description, headers, endpoints (ordered regexes), default, errors
//! <skin>/templates/    rendered Jinja-compatibly (minijinja), with `request`, `random()`,
//!                      `get_current_time()`; a `---\nstatus_code: N\n---` front matter sets
//!                      the status
//! <skin>/files/        static files, served for GET when no endpoint matches
//! ```
//! Endpoint patterns must match the whole path (Python `re.fullmatch`) and may use look-around
//! (fancy-regex), as Trapster's own skins do. This sensor adds one optional key,
//! `server_style` (`apache`, `iis`, `nginx`), for the order of the standard headers.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use fancy_regex::Regex;
use minijinja::{AutoEscape, Environment, Value as TplValue};
use serde_norway::Value as Yaml;
use sha2::{Digest, Sha256};

pub use super::reply::{Response, Style};
use super::{
    apache, builtin,
    files::{Files, mime, safe_relative},
};

/// One response rule of an endpoint.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Method it answers; `None` answers any (the `default` rule).
    pub method: Option<String>,
    /// Status; from the template's front matter or 200 when absent.
    pub status_code: Option<u16>,
    /// Template under `templates/`.
    pub file: Option<String>,
    /// Literal body.
    pub content: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Query parameters that must all fully match.
    pub query: Vec<(String, Regex)>,
}

#[derive(Debug)]
struct Endpoint {
    pattern: Regex,
    rules: Vec<Rule>,
}

/// A loaded skin.
#[derive(Debug)]
pub struct Skin {
    /// Folder name.
    pub name: String,
    /// Header order.
    pub style: Style,
    /// Headers on every response.
    pub headers: Vec<(String, String)>,
    endpoints: Vec<Endpoint>,
    /// Response when nothing matches.
    pub default: Rule,
    errors: HashMap<u16, Rule>,
    files: Files,
    env: Environment<'static>,
    /// When the built-in skin's files were "installed": stable for a host name, so a sensor's
    /// `ETag`/`Last-Modified` stay the same across restarts as a real server's do.
    installed: std::time::SystemTime,
}

/// A skin that does not load.
#[derive(Debug, thiserror::Error)]
#[error("skin `{skin}`: {message}")]
pub struct SkinError {
    skin: String,
    message: String,
}

/// What a template sees of the request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TemplateRequest {
    /// Full URL.
    pub url: String,
    /// Path.
    pub path: String,
    /// Method.
    pub method: String,
    /// Headers, lowercased names.
    pub headers: HashMap<String, String>,
    /// Body as text (lossy), for POST/PUT/PATCH.
    pub body: Option<String>,
    /// Client address.
    pub remote: String,
    /// Cookies.
    pub cookies: HashMap<String, String>,
    /// Query parameters.
    pub query_string: HashMap<String, String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// `Host` header.
    pub host: Option<String>,
    /// HTTPS or not.
    pub secure: bool,
    /// `http` or `https`.
    pub scheme: String,
    /// Path and query.
    pub path_qs: String,
    /// Host name without port (for Apache's server signature).
    pub host_name: String,
    /// Local port.
    pub port: u16,
}

/// The built-in skin `load` serves instead of `name`, when `name` is neither a folder in
/// `dirs` nor a built-in skin (`sensor check` warns about it).
#[must_use]
pub fn fallback_for(name: &str, dirs: &[PathBuf]) -> Option<&'static str> {
    let found = dirs
        .iter()
        .any(|d| d.join(name).join("config.yaml").is_file())
        || builtin::NAMES.contains(&name);
    (!found && safe_relative(name).is_some_and(|p| p.components().count() == 1))
        .then(|| builtin::fallback(name))
}

/// Finds `name` in `dirs` (users' skins first), then among the built-in skins; a skin found
/// nowhere is served by the built-in one of its kind ([`fallback_for`]), with a warning.
///
/// # Errors
/// [`SkinError`] when the name is not a plain folder name or the skin does not load.
pub fn load(
    name: &str,
    dirs: &[PathBuf],
    hostname: &str,
    domain: &str,
) -> Result<Arc<Skin>, SkinError> {
    let err = |message: String| SkinError {
        skin: name.to_owned(),
        message,
    };
    if safe_relative(name).is_none_or(|p| p.components().count() != 1) {
        return Err(err("not a plain folder name".to_owned()));
    }
    for dir in dirs {
        let root = dir.join(name);
        if root.join("config.yaml").is_file() {
            let text = std::fs::read_to_string(root.join("config.yaml"))
                .map_err(|e| err(format!("config.yaml: {e}")))?;
            return parse(name, &text, Files::Dir(root), hostname, domain).map(Arc::new);
        }
    }
    let skin = if let Some(skin) = builtin::NAMES.iter().find(|n| **n == name) {
        *skin
    } else {
        let fallback = builtin::fallback(name);
        tracing::warn!(
            skin = name,
            fallback,
            "Skin not found in the skin directories nor built in; serving the built-in skin of \
             the same kind instead."
        );
        fallback
    };
    let text = builtin::file(skin, "config.yaml")
        .ok_or_else(|| err("built-in skin without config.yaml".to_owned()))?;
    parse(
        name,
        &String::from_utf8_lossy(text),
        Files::Builtin(skin),
        hostname,
        domain,
    )
    .map(Arc::new)
}

fn yaml_str(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn headers_of(v: Option<&Yaml>) -> Vec<(String, String)> {
    let Some(Yaml::Mapping(map)) = v else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((yaml_str(k)?, yaml_str(v)?)))
        .collect()
}

fn rule_of(v: &Yaml, at: &str) -> Result<Rule, String> {
    let Yaml::Mapping(map) = v else {
        return Err(format!("{at}: expected a mapping"));
    };
    let get = |key: &str| map.get(Yaml::String(key.to_owned()));
    let status_code = match get("status_code") {
        None | Some(Yaml::Null) => None,
        Some(s) => Some(
            yaml_str(s)
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{at}.status_code: not an HTTP status"))?,
        ),
    };
    let mut query = Vec::new();
    if let Some(Yaml::Mapping(q)) = get("query") {
        for (k, v) in q {
            let (Some(name), Some(pattern)) = (yaml_str(k), yaml_str(v)) else {
                continue;
            };
            let re = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| format!("{at}.query.{name}: {e}"))?;
            query.push((name, re));
        }
    }
    Ok(Rule {
        method: get("method")
            .and_then(yaml_str)
            .map(|m| m.to_ascii_uppercase()),
        status_code,
        file: get("file").and_then(yaml_str),
        content: get("content").and_then(yaml_str),
        headers: headers_of(get("headers")),
        query,
    })
}

fn parse(
    name: &str,
    text: &str,
    files: Files,
    hostname: &str,
    domain: &str,
) -> Result<Skin, SkinError> {
    let err = |message: String| SkinError {
        skin: name.to_owned(),
        message,
    };
    let doc: Yaml = serde_norway::from_str(text).map_err(|e| err(format!("config.yaml: {e}")))?;
    let Yaml::Mapping(top) = &doc else {
        return Err(err("config.yaml: expected a mapping".to_owned()));
    };
    let get = |key: &str| top.get(Yaml::String(key.to_owned()));
    let style = match get("server_style").and_then(yaml_str).as_deref() {
        Some("iis") => Style::Iis,
        Some("nginx") => Style::Nginx,
        _ => Style::Apache,
    };
    let mut endpoints = Vec::new();
    if let Some(Yaml::Sequence(list)) = get("endpoints") {
        for (i, item) in list.iter().enumerate() {
            let Yaml::Mapping(map) = item else {
                return Err(err(format!(
                    "endpoints[{i}]: expected `\"/path\": [rules]`"
                )));
            };
            for (route, rules) in map {
                let route = yaml_str(route)
                    .ok_or_else(|| err(format!("endpoints[{i}]: route is not a string")))?;
                let pattern = Regex::new(&format!("^(?:{route})$"))
                    .map_err(|e| err(format!("endpoints[{i}] `{route}`: {e}")))?;
                let at = format!("endpoints[{i}] `{route}`");
                let rules = match rules {
                    Yaml::Sequence(seq) => seq
                        .iter()
                        .map(|r| rule_of(r, &at))
                        .collect::<Result<Vec<_>, _>>(),
                    single => rule_of(single, &at).map(|r| vec![r]),
                }
                .map_err(err)?;
                endpoints.push(Endpoint { pattern, rules });
            }
        }
    }
    let default = match get("default") {
        Some(v) => rule_of(v, "default").map_err(err)?,
        None => Rule {
            status_code: Some(404),
            ..Rule::default()
        },
    };
    let mut errors = HashMap::new();
    if let Some(Yaml::Mapping(map)) = get("errors") {
        for (code, rule) in map {
            if let Some(code) = yaml_str(code).and_then(|c| c.parse::<u16>().ok()) {
                errors.insert(code, rule_of(rule, "errors").map_err(err)?);
            }
        }
    }
    Ok(Skin {
        name: name.to_owned(),
        style,
        headers: headers_of(get("headers")),
        endpoints,
        default,
        errors,
        env: environment(files.clone(), hostname, domain),
        files,
        installed: installed_at(hostname),
    })
}

/// A time in the 300 days after 2025-01-01, from the host name (micro-second precision, as
/// file systems keep it).
fn installed_at(hostname: &str) -> std::time::SystemTime {
    let digest = Sha256::digest(hostname.as_bytes());
    let mut eight = [0u8; 8];
    eight.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let micros = u64::from_be_bytes(eight) % (300 * 86_400 * 1_000_000);
    std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(1_735_689_600)
        + std::time::Duration::from_micros(micros)
}

fn environment(files: Files, hostname: &str, domain: &str) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_loader(move |name| {
        Ok(files
            .read(&format!("templates/{name}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    });
    env.add_global("hostname", TplValue::from(hostname.to_owned()));
    env.add_global("domain", TplValue::from(domain.to_owned()));
    env.add_function("random", random);
    env.add_function("get_current_time", || {
        chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
    });
    env
}

/// Trapster's `random(seed=None, alphabet=hex, length=36)`: a string stable for a given seed.
fn random(
    seed: Option<TplValue>,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, minijinja::Error> {
    let alphabet: String = kwargs
        .get::<Option<String>>("alphabet")?
        .unwrap_or_else(|| "0123456789abcdef".to_owned());
    let length = kwargs
        .get::<Option<usize>>("length")?
        .unwrap_or(36)
        .min(4096);
    kwargs.assert_all_used()?;
    let chars: Vec<char> = alphabet.chars().collect();
    if chars.is_empty() {
        return Ok(String::new());
    }
    let seed = seed.map_or_else(|| uuid::Uuid::new_v4().to_string(), |s| s.to_string());
    let mut out = String::with_capacity(length);
    let mut block = Sha256::digest(seed.as_bytes());
    let mut i = 0;
    while out.len() < length {
        if i == block.len() {
            block = Sha256::digest(block);
            i = 0;
        }
        out.push(chars[usize::from(block[i]) % chars.len()]);
        i += 1;
    }
    Ok(out)
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

impl Skin {
    /// Whether answering reads files (a skin folder on disk; built-in skins are in memory):
    /// such a skin is answered on the blocking pool.
    #[must_use]
    pub const fn reads_files(&self) -> bool {
        matches!(self.files, Files::Dir(_))
    }

    /// Whether an endpoint of the skin answers `method` at `path` (its own rules come before
    /// the imitated server's method handling).
    #[must_use]
    pub fn has_rule(&self, method: &str, path: &str, query: &str) -> bool {
        self.find(method, path, query).is_some()
    }

    /// The rule answering `method path?query`, as Trapster chooses it.
    fn find(&self, method: &str, path: &str, query: &str) -> Option<&Rule> {
        let params = parse_query(query);
        for endpoint in &self.endpoints {
            if !endpoint.pattern.is_match(path).unwrap_or(false) {
                continue;
            }
            let candidates: Vec<&Rule> = endpoint
                .rules
                .iter()
                .filter(|r| r.method.as_deref().is_none_or(|m| m == method))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            if !params.is_empty() {
                let with_query = candidates.iter().find(|r| {
                    !r.query.is_empty()
                        && r.query.iter().all(|(name, re)| {
                            params
                                .iter()
                                .find(|(k, _)| k == name)
                                .is_some_and(|(_, v)| re.is_match(v).unwrap_or(false))
                        })
                });
                if let Some(rule) = with_query {
                    return Some(rule);
                }
            }
            if let Some(rule) = candidates.iter().find(|r| r.query.is_empty()) {
                return Some(rule);
            }
        }
        None
    }

    /// Renders `rule`'s body: (status from front matter, body).
    fn body_of(&self, rule: &Rule, request: &TemplateRequest) -> (Option<u16>, Vec<u8>, bool) {
        if let Some(content) = &rule.content {
            return (None, content.clone().into_bytes(), true);
        }
        let Some(file) = &rule.file else {
            return (None, Vec::new(), true);
        };
        let Ok(template) = self.env.get_template(file) else {
            return (Some(404), Vec::new(), false);
        };
        let rendered = match template.render(minijinja::context! { request => request }) {
            Ok(text) => text,
            Err(err) => {
                tracing::debug!(skin = %self.name, template = %file, error = %err, "template failed");
                return (Some(500), Vec::new(), false);
            }
        };
        let (front, body) = front_matter(&rendered);
        (front, body.into_bytes(), true)
    }

    /// Builds the response to a request.
    #[must_use]
    pub fn respond(
        &self,
        method: &str,
        path: &str,
        query: &str,
        request: &TemplateRequest,
    ) -> Response {
        // Apache's default handler serves a static page for POST as for GET.
        let as_get = method == "HEAD" || (method == "POST" && self.style == Style::Apache);
        let lookup = if as_get { "GET" } else { method };
        if let Some(rule) = self
            .find(method, path, query)
            .or_else(|| self.find(lookup, path, query))
        {
            let (front, body, _) = self.body_of(rule, request);
            return Response {
                status: rule.status_code.or(front).unwrap_or(200),
                headers: rule.headers.clone(),
                body,
                matched: true,
            };
        }
        if lookup == "GET" {
            let rel = if path.ends_with('/') {
                format!("files{path}index.html")
            } else {
                format!("files{path}")
            };
            if let Some(body) = self.files.read(&rel) {
                let content_type = mime(&rel);
                let mut headers = Vec::new();
                if self.style == Style::Apache {
                    let modified = self.files.modified(&rel).unwrap_or(self.installed);
                    headers = apache::static_headers(body.len(), modified, content_type);
                }
                headers.push(("Content-Type".to_owned(), content_type.to_owned()));
                return Response {
                    status: 200,
                    headers,
                    body,
                    matched: false,
                };
            }
        }
        self.rule_response(&self.default, 404, request)
    }

    /// The response for an error status (`errors` block, else `<code>.html`, else empty).
    #[must_use]
    pub fn error(&self, status: u16, request: &TemplateRequest) -> Response {
        let fallback = Rule {
            file: Some(format!("{status}.html")),
            ..Rule::default()
        };
        let rule = self.errors.get(&status).unwrap_or(&fallback);
        let mut response = self.rule_response(rule, status, request);
        response.status = status;
        let typed = response
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if self.style == Style::Apache && !typed {
            response.headers.push((
                "Content-Type".to_owned(),
                "text/html; charset=iso-8859-1".to_owned(),
            ));
        }
        response
    }

    fn rule_response(&self, rule: &Rule, status: u16, request: &TemplateRequest) -> Response {
        let (_, body, found) = self.body_of(rule, request);
        Response {
            status: rule.status_code.unwrap_or(status),
            headers: rule.headers.clone(),
            body: if found { body } else { Vec::new() },
            matched: false,
        }
    }
}

/// Splits a `---\nkey: value\n---` block off a rendered template; returns its status code.
pub(super) fn front_matter(rendered: &str) -> (Option<u16>, String) {
    let Some(rest) = rendered.strip_prefix("---") else {
        return (None, rendered.to_owned());
    };
    let Some((header, body)) = rest.split_once("---") else {
        return (None, rendered.to_owned());
    };
    let status = header.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == "status_code").then(|| v.trim().parse().ok())?
    });
    (status, body.trim().to_owned())
}
