//! The skins shipped with the sensor, embedded in the binary (sources in `sensor/skins/`):
//! `default_apache`, `default_iis`, `appliance_login` (a firewall appliance's login),
//! `json_api` (a JSON REST API) and `admin_portal` (a generic administration console). A test
//! checks that this list holds every file of that folder.

/// Built-in skin names.
pub const NAMES: &[&str] = &[
    "admin_portal",
    "appliance_login",
    "default_apache",
    "default_iis",
    "json_api",
];

/// The built-in skin served for a skin `name` that is found nowhere: one of the same kind,
/// guessed from the name (Trapster's demo skins are `demo_api` and the like).
#[must_use]
pub fn fallback(name: &str) -> &'static str {
    let name = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| name.contains(w));
    if has(&["api", "rest", "json", "graphql", "swagger"]) {
        "json_api"
    } else if has(&[
        "firewall",
        "fortinet",
        "fortigate",
        "palo",
        "pfsense",
        "opnsense",
        "sonicwall",
        "checkpoint",
        "sophos",
        "cisco",
        "vpn",
        "appliance",
        "router",
        "gateway",
        "watchguard",
    ]) {
        "appliance_login"
    } else if has(&["iis", "windows", "microsoft", "exchange", "owa"]) {
        "default_iis"
    } else if has(&["apache", "default", "nginx", "index"]) {
        "default_apache"
    } else {
        "admin_portal"
    }
}

/// (skin, path inside the skin, contents).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "admin_portal",
        "config.yaml",
        include_bytes!("../../../../skins/admin_portal/config.yaml"),
    ),
    (
        "admin_portal",
        "templates/404.html",
        include_bytes!("../../../../skins/admin_portal/templates/404.html"),
    ),
    (
        "admin_portal",
        "templates/login.html",
        include_bytes!("../../../../skins/admin_portal/templates/login.html"),
    ),
    (
        "admin_portal",
        "templates/login_failed.html",
        include_bytes!("../../../../skins/admin_portal/templates/login_failed.html"),
    ),
    (
        "appliance_login",
        "config.yaml",
        include_bytes!("../../../../skins/appliance_login/config.yaml"),
    ),
    (
        "appliance_login",
        "files/static/portal.css",
        include_bytes!("../../../../skins/appliance_login/files/static/portal.css"),
    ),
    (
        "appliance_login",
        "templates/404.html",
        include_bytes!("../../../../skins/appliance_login/templates/404.html"),
    ),
    (
        "appliance_login",
        "templates/login.html",
        include_bytes!("../../../../skins/appliance_login/templates/login.html"),
    ),
    (
        "appliance_login",
        "templates/login_failed.html",
        include_bytes!("../../../../skins/appliance_login/templates/login_failed.html"),
    ),
    (
        "default_apache",
        "config.yaml",
        include_bytes!("../../../../skins/default_apache/config.yaml"),
    ),
    (
        "default_apache",
        "files/icons/openlogo-75.png",
        include_bytes!("../../../../skins/default_apache/files/icons/openlogo-75.png"),
    ),
    (
        "default_apache",
        "files/index.html",
        include_bytes!("../../../../skins/default_apache/files/index.html"),
    ),
    (
        "default_apache",
        "templates/401.html",
        include_bytes!("../../../../skins/default_apache/templates/401.html"),
    ),
    (
        "default_apache",
        "templates/403.html",
        include_bytes!("../../../../skins/default_apache/templates/403.html"),
    ),
    (
        "default_apache",
        "templates/404.html",
        include_bytes!("../../../../skins/default_apache/templates/404.html"),
    ),
    (
        "default_iis",
        "config.yaml",
        include_bytes!("../../../../skins/default_iis/config.yaml"),
    ),
    (
        "default_iis",
        "templates/401.html",
        include_bytes!("../../../../skins/default_iis/templates/401.html"),
    ),
    (
        "default_iis",
        "templates/403.html",
        include_bytes!("../../../../skins/default_iis/templates/403.html"),
    ),
    (
        "default_iis",
        "templates/404.html",
        include_bytes!("../../../../skins/default_iis/templates/404.html"),
    ),
    (
        "default_iis",
        "templates/iisstart.htm",
        include_bytes!("../../../../skins/default_iis/templates/iisstart.htm"),
    ),
    (
        "json_api",
        "config.yaml",
        include_bytes!("../../../../skins/json_api/config.yaml"),
    ),
    (
        "json_api",
        "templates/404.json",
        include_bytes!("../../../../skins/json_api/templates/404.json"),
    ),
];

/// A built-in skin's file.
#[must_use]
pub fn file(skin: &str, path: &str) -> Option<&'static [u8]> {
    FILES
        .iter()
        .find(|(s, p, _)| *s == skin && *p == path)
        .map(|(_, _, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use super::{FILES, fallback};

    #[test]
    fn missing_skins_fall_back_to_one_of_their_kind() {
        assert_eq!(fallback("demo_api"), "json_api");
        assert_eq!(fallback("demo_fortigate"), "appliance_login");
        assert_eq!(fallback("PaloAlto_GlobalProtect"), "appliance_login");
        assert_eq!(fallback("demo_owa"), "default_iis");
        assert_eq!(fallback("demo_portal"), "admin_portal");
        assert_eq!(fallback("intranet"), "admin_portal");
    }

    #[test]
    fn every_file_of_the_skins_folder_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("skins");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    on_disk.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(s, p, _)| format!("{s}/{p}")).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "regenerate services/http/builtin.rs");
    }
}
