//! Where a skin's files come from (a folder on disk, or the built-in skins), read only within
//! the skin's root; and the content type of a static file.

use std::path::{Component, Path, PathBuf};

use super::builtin;

/// Where a skin's files come from.
#[derive(Debug, Clone)]
pub enum Files {
    /// A skin folder on disk.
    Dir(PathBuf),
    /// A skin embedded in the binary.
    Builtin(&'static str),
}

impl Files {
    /// A file of the skin, by path relative to its root; `None` when missing or outside it.
    pub fn read(&self, rel: &str) -> Option<Vec<u8>> {
        let rel = safe_relative(rel)?;
        match self {
            Self::Dir(root) => {
                let path = root.join(&rel);
                let canonical = path.canonicalize().ok()?;
                let root = root.canonicalize().ok()?;
                if !canonical.starts_with(&root) || !canonical.is_file() {
                    return None;
                }
                std::fs::read(canonical).ok()
            }
            Self::Builtin(skin) => builtin::file(skin, &rel.to_string_lossy()).map(<[u8]>::to_vec),
        }
    }
}

impl Files {
    /// When a skin folder's file was last changed; `None` for a built-in skin.
    pub fn modified(&self, rel: &str) -> Option<std::time::SystemTime> {
        let Self::Dir(root) = self else {
            return None;
        };
        std::fs::metadata(root.join(safe_relative(rel)?))
            .and_then(|m| m.modified())
            .ok()
    }
}

/// `rel` as a relative path without `..`, or `None`.
pub fn safe_relative(rel: &str) -> Option<PathBuf> {
    let path = Path::new(rel.trim_start_matches('/'));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Content type by extension, for static files.
#[must_use]
pub fn mime(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map_or("", |(_, e)| e)
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" | "webmanifest" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}
