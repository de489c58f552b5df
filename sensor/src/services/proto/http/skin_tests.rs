//! Skins: built-in ones load and answer, Trapster skins with look-around and query rules load,
//! front matter sets the status, traversal is refused.

use std::collections::HashMap;

use super::{
    builtin,
    files::safe_relative,
    skin::{TemplateRequest, front_matter, load},
};

fn request(path: &str) -> TemplateRequest {
    TemplateRequest {
        url: format!("http://h{path}"),
        path: path.to_owned(),
        method: "GET".to_owned(),
        headers: HashMap::new(),
        body: None,
        remote: "192.0.2.1".to_owned(),
        cookies: HashMap::new(),
        query_string: HashMap::new(),
        content_type: None,
        host: Some("h".to_owned()),
        secure: false,
        scheme: "http".to_owned(),
        path_qs: path.to_owned(),
        host_name: "h".to_owned(),
        port: 80,
    }
}

#[test]
fn builtin_skins_load_and_answer() {
    for name in builtin::NAMES {
        let skin = load(name, &[], "fw01", "corp.local").unwrap();
        let r = skin.respond("GET", "/", "", &request("/"));
        assert!(matches!(r.status, 200 | 302), "{name}: {}", r.status);
        let missing = skin.respond("GET", "/nope", "", &request("/nope"));
        assert_eq!(missing.status, 404, "{name}");
        assert!(!missing.body.is_empty(), "{name}: 404 page");
    }
}

#[test]
fn login_portal_renders_the_failure_with_front_matter() {
    let skin = load("appliance_login", &[], "fw01", "corp.local").unwrap();
    let mut req = request("/login");
    req.method = "POST".to_owned();
    let r = skin.respond("POST", "/login", "", &req);
    assert_eq!(r.status, 200);
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.contains("Authentication failed"), "{body}");
    assert!(body.contains("fw01"));
    let css = skin.respond(
        "GET",
        "/static/portal.css",
        "",
        &request("/static/portal.css"),
    );
    assert_eq!(css.status, 200);
}

#[test]
fn traversal_and_odd_names_are_refused() {
    assert!(safe_relative("../etc/passwd").is_none());
    assert!(safe_relative("/a/../../b").is_none());
    assert!(load("../x", &[], "h", "corp.local").is_err());
    // A skin found nowhere is served by a built-in one of its kind, under its own name.
    let api = load("demo_api", &[], "h", "corp.local").unwrap();
    assert_eq!(api.name, "demo_api");
    let r = api.respond("GET", "/api/v1/users", "", &request("/api/v1/users"));
    assert_eq!(r.status, 401);
    assert_eq!(super::skin::fallback_for("demo_api", &[]), Some("json_api"));
    assert_eq!(super::skin::fallback_for("appliance_login", &[]), None);
    let skin = load("appliance_login", &[], "h", "corp.local").unwrap();
    let r = skin.respond("GET", "/../config.yaml", "", &request("/"));
    assert_eq!(r.status, 404);
}

#[test]
fn front_matter_sets_the_status() {
    assert_eq!(
        front_matter("---\nstatus_code: 500\n---\nbody"),
        (Some(500), "body".to_owned())
    );
    assert_eq!(front_matter("plain"), (None, "plain".to_owned()));
}

#[test]
fn trapster_skin_with_lookahead_and_query_rules_loads() {
    let dir = std::env::temp_dir().join(format!("skin-{}", uuid::Uuid::new_v4()));
    let root = dir.join("fortilike");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(
        root.join("config.yaml"),
        "name: fortilike\nheaders:\n  X-Frame-Options: SAMEORIGIN\nendpoints:\n  - \"/api/v1/user\":\n    - method: GET\n      query:\n        id: '([0-9]+)'\n      status_code: 200\n      file: user.j2\n  - \"/(?!(static|favicon)($|/))(.*)\":\n    - method: GET\n      status_code: 200\n      content: 'index'\ndefault:\n  status_code: 404\n",
    )
    .unwrap();
    std::fs::write(
        root.join("templates/user.j2"),
        "{\"id\": \"{{ request.query_string.id }}\"}",
    )
    .unwrap();
    let skin = load("fortilike", std::slice::from_ref(&dir), "h", "corp.local").unwrap();
    let mut req = request("/api/v1/user");
    req.query_string.insert("id".to_owned(), "42".to_owned());
    let r = skin.respond("GET", "/api/v1/user", "id=42", &req);
    assert_eq!(String::from_utf8(r.body).unwrap(), r#"{"id": "42"}"#);
    assert_eq!(
        skin.respond("GET", "/anything", "", &request("/")).status,
        200
    );
    assert_eq!(
        skin.respond("GET", "/static/x", "", &request("/")).status,
        404
    );
    std::fs::remove_dir_all(dir).unwrap();
}
