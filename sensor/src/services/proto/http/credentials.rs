//! Credentials in a request: `Authorization: Basic`, and user/password fields of a form or a
//! flat JSON body (the field names login pages use).

use base64::Engine;
use serde_json::Value;

use super::request::Request;

const USER_KEYS: &[&str] = &[
    "username",
    "user",
    "login",
    "account",
    "email",
    "j_username",
    "user[login]",
    "uname",
    "log",
    "usr",
];
const PASSWORD_KEYS: &[&str] = &[
    "password",
    "pass",
    "passwd",
    "pwd",
    "credential",
    "j_password",
    "user[password]",
    "secretkey",
    "secret",
];

const fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pairs of an `application/x-www-form-urlencoded` text, decoded.
#[must_use]
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .take(256)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Credentials in a request body: form fields or a flat JSON object.
#[must_use]
pub fn body_credentials(body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_start();
    let pairs: Vec<(String, String)> = if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Number(n) => Some((k, n.to_string())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    } else {
        form_pairs(&text)
    };
    let find = |keys: &[&str]| {
        pairs
            .iter()
            .find(|(k, _)| keys.contains(&k.to_ascii_lowercase().as_str()))
            .map(|(_, v)| v.clone())
    };
    (find(USER_KEYS), find(PASSWORD_KEYS))
}

/// `Authorization: Basic` credentials.
#[must_use]
pub fn basic_credentials(request: &Request) -> Option<(String, String)> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    let (user, password) = text.split_once(':').unwrap_or((&text, ""));
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::{body_credentials, form_pairs};

    #[test]
    fn credentials_come_from_forms_and_json() {
        assert_eq!(
            body_credentials(b"username=admin&password=p%40ss+word&x=1"),
            (Some("admin".to_owned()), Some("p@ss word".to_owned()))
        );
        assert_eq!(
            body_credentials(br#"{"login":"root","pwd":"toor"}"#),
            (Some("root".to_owned()), Some("toor".to_owned()))
        );
        assert_eq!(body_credentials(b"\xff\xfe%%%"), (None, None));
        assert_eq!(
            form_pairs("a=%zz&b=%4"),
            vec![
                ("a".to_owned(), "%zz".to_owned()),
                ("b".to_owned(), "%4".to_owned())
            ]
        );
    }
}
