//! The small virtual tree an FTP decoy serves after a login: a few directories and small fake
//! files per product (an IIS FTP root on Windows, an `ftp` home on Debian), the files the
//! session uploaded (name and size; their content is captured, never served back), and the
//! listings in the product's format: `LIST` (MS-DOS or `ls -l`), `NLST` and `MLSD`.

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::profile::{Product, Style};

/// A file or directory of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Absolute path, `/` separated, no trailing slash (the root is `/`).
    pub path: String,
    /// Content of a file; `None` for a directory.
    pub content: Option<Vec<u8>>,
    /// Size shown (the content's length, or what an upload received).
    pub size: u64,
    /// Modification time shown.
    pub modified: DateTime<Utc>,
    /// Uploaded in this session: listed, never served back.
    pub uploaded: bool,
}

impl Node {
    fn dir(path: &str, modified: DateTime<Utc>) -> Self {
        Self {
            path: path.to_owned(),
            content: None,
            size: 4096,
            modified,
            uploaded: false,
        }
    }

    fn file(path: &str, content: &[u8], modified: DateTime<Utc>) -> Self {
        Self {
            path: path.to_owned(),
            size: u64::try_from(content.len()).unwrap_or(u64::MAX),
            content: Some(content.to_vec()),
            modified,
            uploaded: false,
        }
    }

    /// Whether it is a directory.
    #[must_use]
    pub const fn is_dir(&self) -> bool {
        self.content.is_none()
    }

    /// The last path component.
    #[must_use]
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Files a session's uploads may add to its view of the tree.
const MAX_UPLOADED: usize = 64;

/// A session's view of the tree.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: Vec<Node>,
    uploaded: usize,
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

impl Tree {
    /// The tree of `product`, its names presented for `hostname`.
    #[must_use]
    pub fn for_product(product: Product, hostname: &str) -> Self {
        let nodes = match product {
            Product::Iis => vec![
                Node::dir("/", at(2024, 3, 11, 9, 42)),
                Node::dir("/Backup", at(2025, 6, 2, 22, 15)),
                Node::dir("/Public", at(2024, 3, 11, 9, 44)),
                Node::file(
                    "/Backup/web.config.bak",
                    format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<configuration>\r\n  <connectionStrings>\r\n    <add name=\"Default\" connectionString=\"Server={hostname};Database=Intranet;Trusted_Connection=True;\" />\r\n  </connectionStrings>\r\n</configuration>\r\n"
                    )
                    .as_bytes(),
                    at(2025, 6, 2, 22, 14),
                ),
                Node::file(
                    "/Public/readme.txt",
                    b"Drop scanned documents in this folder. Files are moved to the archive every night.\r\n",
                    at(2024, 3, 11, 9, 51),
                ),
            ],
            Product::Vsftpd | Product::Proftpd => vec![
                Node::dir("/", at(2024, 11, 14, 8, 3)),
                Node::dir("/pub", at(2024, 11, 14, 8, 3)),
                Node::dir("/upload", at(2025, 2, 20, 16, 40)),
                Node::file(
                    "/pub/README",
                    format!("Welcome to {hostname}.\nMirrors and releases live in pub/; uploads go to upload/.\n").as_bytes(),
                    at(2024, 11, 14, 8, 3),
                ),
                Node::file(
                    "/pub/backup.sh",
                    b"#!/bin/sh\n# nightly: tar the web root to the NAS\ntar czf /srv/backup/www-$(date +%F).tgz /var/www\n",
                    at(2025, 1, 7, 3, 0),
                ),
            ],
        };
        Self { nodes, uploaded: 0 }
    }

    /// `arg` (absolute, or relative to `cwd`, with `.` and `..`) as an absolute path.
    #[must_use]
    pub fn resolve(cwd: &str, arg: &str) -> String {
        let mut parts: Vec<&str> = if arg.starts_with('/') || arg.starts_with('\\') {
            Vec::new()
        } else {
            cwd.split('/').filter(|p| !p.is_empty()).collect()
        };
        for part in arg.split(['/', '\\']).take(64) {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// The node at an absolute path (case-insensitive on Windows, as IIS is).
    #[must_use]
    pub fn get(&self, path: &str, product: Product) -> Option<&Node> {
        self.nodes.iter().find(|n| {
            if product == Product::Iis {
                n.path.eq_ignore_ascii_case(path)
            } else {
                n.path == path
            }
        })
    }

    /// The entries of a directory, by name.
    #[must_use]
    pub fn children(&self, dir: &str) -> Vec<&Node> {
        let mut out: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.path != "/" && parent(&n.path) == dir)
            .collect();
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// Adds (or replaces) an uploaded file as seen by this session; false once the session
    /// has added its maximum.
    pub fn add_upload(&mut self, path: &str, size: u64, modified: DateTime<Utc>) -> bool {
        if let Some(node) = self
            .nodes
            .iter_mut()
            .find(|n| n.path == path && !n.is_dir())
        {
            node.size = size;
            node.content = Some(Vec::new());
            node.modified = modified;
            node.uploaded = true;
            return true;
        }
        if self.uploaded >= MAX_UPLOADED {
            return false;
        }
        self.uploaded = self.uploaded.saturating_add(1);
        self.nodes.push(Node {
            path: path.to_owned(),
            content: Some(Vec::new()),
            size,
            modified,
            uploaded: true,
        });
        true
    }
}

/// The directory part of an absolute path.
#[must_use]
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => path.get(..i).unwrap_or("/"),
    }
}

/// `LIST` lines for `nodes` in `style`, `now` deciding between the time and the year as
/// `ls` does (older than six months: the year).
#[must_use]
pub fn list(nodes: &[&Node], style: Style, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for n in nodes {
        let line = match style {
            Style::Dos => {
                let when = n.modified.format("%m-%d-%y  %I:%M%p");
                if n.is_dir() {
                    format!("{when}       <DIR>          {}\r\n", n.name())
                } else {
                    format!("{when} {:>20} {}\r\n", n.size, n.name())
                }
            }
            Style::Vsftpd | Style::Proftpd => {
                let recent = now.signed_duration_since(n.modified).num_days().abs() < 182
                    && n.modified.year() >= now.year().saturating_sub(1);
                let (mode, links) = if n.is_dir() {
                    ("drwxr-xr-x", 2)
                } else {
                    ("-rw-r--r--", 1)
                };
                if style == Style::Vsftpd {
                    let when = if recent {
                        n.modified.format("%b %d %H:%M")
                    } else {
                        n.modified.format("%b %d  %Y")
                    };
                    format!(
                        "{mode} {links:>4} {:<8} {:<8} {:>8} {when} {}\r\n",
                        "ftp",
                        "ftp",
                        n.size,
                        n.name()
                    )
                } else {
                    let when = if recent {
                        n.modified.format("%b %e %H:%M")
                    } else {
                        n.modified.format("%b %e  %Y")
                    };
                    format!(
                        "{mode} {links:>3} {:<8} {:<8} {:>8} {when} {}\r\n",
                        "ftp",
                        "ftp",
                        n.size,
                        n.name()
                    )
                }
            }
        };
        out.push_str(&line);
    }
    out
}

/// `NLST` lines: names only.
#[must_use]
pub fn nlst(nodes: &[&Node]) -> String {
    nodes.iter().map(|n| format!("{}\r\n", n.name())).collect()
}

/// `MLSD` lines (RFC 3659 facts, ProFTPD's set).
#[must_use]
pub fn mlsd(dir: &Node, nodes: &[&Node]) -> String {
    let fact = |n: &Node, kind: &str| {
        let modify = n.modified.format("%Y%m%d%H%M%S");
        if n.is_dir() {
            format!(
                "modify={modify};perm=flcdmpe;type={kind};unique=FD01U{:X};UNIX.group=0;UNIX.groupname=ftp;UNIX.mode=0755;UNIX.owner=0;UNIX.ownername=ftp; {}\r\n",
                n.path.len(),
                if kind == "cdir" { "." } else { n.name() }
            )
        } else {
            format!(
                "modify={modify};perm=adfr;size={};type=file;unique=FD01U{:X};UNIX.group=0;UNIX.groupname=ftp;UNIX.mode=0644;UNIX.owner=0;UNIX.ownername=ftp; {}\r\n",
                n.size,
                n.path.len(),
                n.name()
            )
        }
    };
    let mut out = fact(dir, "cdir");
    for n in nodes {
        out.push_str(&fact(n, "dir"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Node, Style, Tree, at, list, parent};
    use crate::services::proto::ftp::profile::Product;

    #[test]
    fn paths_resolve_and_stay_under_the_root() {
        assert_eq!(Tree::resolve("/pub", "README"), "/pub/README");
        assert_eq!(Tree::resolve("/pub", "../upload/./x"), "/upload/x");
        assert_eq!(Tree::resolve("/", "../../../etc/passwd"), "/etc/passwd");
        assert_eq!(Tree::resolve("/pub", "/"), "/");
        assert_eq!(
            Tree::resolve("/", "Backup\\web.config.bak"),
            "/Backup/web.config.bak"
        );
        assert_eq!(parent("/pub/README"), "/pub");
        assert_eq!(parent("/pub"), "/");
    }

    #[test]
    fn listings_have_each_products_columns() {
        let now = at(2026, 1, 10, 12, 0);
        let dir = Node::dir("/pub", at(2024, 11, 14, 8, 3));
        let file = Node::file("/x.sh", b"12345", at(2025, 12, 24, 7, 5));
        let nodes = [&dir, &file];
        assert_eq!(
            list(&nodes, Style::Vsftpd, now),
            "drwxr-xr-x    2 ftp      ftp          4096 Nov 14  2024 pub\r\n\
             -rw-r--r--    1 ftp      ftp             5 Dec 24 07:05 x.sh\r\n"
        );
        assert_eq!(
            list(&nodes, Style::Proftpd, now),
            "drwxr-xr-x   2 ftp      ftp          4096 Nov 14  2024 pub\r\n\
             -rw-r--r--   1 ftp      ftp             5 Dec 24 07:05 x.sh\r\n"
        );
        assert_eq!(
            list(&nodes, Style::Dos, now),
            "11-14-24  08:03AM       <DIR>          pub\r\n\
             12-24-25  07:05AM                    5 x.sh\r\n"
        );
    }

    #[test]
    fn uploads_show_in_the_session_view_up_to_a_bound() {
        let mut tree = Tree::for_product(Product::Vsftpd, "srv01");
        let when = at(2026, 1, 1, 0, 0);
        assert!(tree.add_upload("/upload/a.bin", 10, when));
        let names: Vec<&str> = tree.children("/upload").iter().map(|n| n.name()).collect();
        assert_eq!(names, ["a.bin"]);
        for i in 1..64 {
            assert!(tree.add_upload(&format!("/upload/{i}"), 1, when));
        }
        assert!(!tree.add_upload("/upload/one-too-many", 1, when));
        assert!(
            tree.add_upload("/upload/a.bin", 20, when),
            "replacing is always allowed"
        );
        assert_eq!(tree.get("/upload/a.bin", Product::Vsftpd).unwrap().size, 20);
        assert!(tree.get("/BACKUP", Product::Iis).is_none());
        let iis = Tree::for_product(Product::Iis, "srv01");
        assert!(iis.get("/BACKUP", Product::Iis).unwrap().is_dir());
    }
}
