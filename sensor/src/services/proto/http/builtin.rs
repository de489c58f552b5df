//! The skins shipped with the sensor, embedded in the binary (sources in `sensor/skins/`):
//! `default_apache`, `default_iis` and `appliance_login`. A test checks that this list holds
//! every file of that folder.

/// Built-in skin names.
pub const NAMES: &[&str] = &["appliance_login", "default_apache", "default_iis"];

/// (skin, path inside the skin, contents).
const FILES: &[(&str, &str, &[u8])] = &[
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
        "default_apache",
        "templates/index.html",
        include_bytes!("../../../../skins/default_apache/templates/index.html"),
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
    use super::FILES;

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
