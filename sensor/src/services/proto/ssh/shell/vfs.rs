//! The small virtual file system a shell user sees, seeded per host: a Debian 12 tree with
//! `/etc/passwd`, `/etc/os-release`, `/proc/self/exe`, the user's home and `/tmp`. Writes
//! (redirections, `touch`, `mkdir`) stay in memory, bounded in count and size.

use std::collections::BTreeMap;

/// Most nodes a session may add.
const MAX_NODES: usize = 512;
/// Largest file a session may write.
pub const MAX_FILE: usize = 64 * 1024;

/// The first 64 bytes of an x86-64 ELF executable (what `/proc/self/exe` starts with).
const ELF_HEADER: &[u8] = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x3e\x00\x01\x00\x00\x00\x30\x34\x02\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x28\x5f\x13\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x38\x00\x0d\x00\x40\x00\x1e\x00\x1d\x00";

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its content.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Link(String),
}

/// One file, directory or link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// `ls -l` permissions, e.g. `rwxr-xr-x`.
    pub mode: &'static str,
    /// Owner (and group) name.
    pub owner: String,
    /// `ls -l` date.
    pub date: &'static str,
    /// The size of an upload of which only the first [`MAX_FILE`] bytes are kept.
    pub size: Option<u64>,
}

/// The file system: absolute, normalised paths to nodes.
#[derive(Debug, Clone)]
pub struct Vfs {
    nodes: BTreeMap<String, Node>,
}

/// Programs `which` finds (all in `/usr/bin`, as on a merged-/usr Debian).
pub const PROGRAMS: &[&str] = &[
    "apt", "awk", "bash", "cat", "cd", "chmod", "cp", "curl", "dd", "df", "echo", "free", "grep",
    "hostname", "id", "ip", "kill", "ls", "mkdir", "mv", "nano", "perl", "ps", "pwd", "python3",
    "rm", "sed", "sh", "ssh", "sudo", "tar", "top", "touch", "uname", "uptime", "vi", "w", "wget",
    "which", "whoami",
];

impl Vfs {
    /// The tree of a fresh Debian 12 host named `hostname` with the login `user`.
    #[must_use]
    pub fn seeded(user: &str, hostname: &str) -> Self {
        let mut fs = Self {
            nodes: BTreeMap::new(),
        };
        let home = home(user);
        let (uid, group_line) = if user == "root" {
            (0, String::new())
        } else {
            (1000, format!("{user}:x:1000:\n"))
        };
        let sudo_members = if user == "root" { "" } else { user };
        for dir in [
            "/",
            "/boot",
            "/dev",
            "/etc",
            "/etc/ssh",
            "/home",
            "/media",
            "/mnt",
            "/opt",
            "/proc",
            "/proc/self",
            "/root",
            "/run",
            "/srv",
            "/sys",
            "/usr",
            "/usr/bin",
            "/usr/lib",
            "/usr/sbin",
            "/usr/share",
            "/var",
            "/var/log",
            "/var/tmp",
            "/var/www",
        ] {
            fs.put(dir, Kind::Dir, "rwxr-xr-x", "root");
        }
        fs.put("/tmp", Kind::Dir, "rwxrwxrwt", "root");
        fs.put("/root", Kind::Dir, "rwx------", "root");
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/lib", "usr/lib"),
            ("/sbin", "usr/sbin"),
            ("/proc/self/exe", "/usr/bin/bash"),
        ] {
            fs.put(link, Kind::Link(target.to_owned()), "rwxrwxrwx", "root");
        }
        let passwd = format!(
            "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsys:x:3:3:sys:/dev:/usr/sbin/nologin\nsync:x:4:65534:sync:/bin:/bin/sync\ngames:x:5:60:games:/usr/games:/usr/sbin/nologin\nman:x:6:12:man:/var/cache/man:/usr/sbin/nologin\nlp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin\nmail:x:8:8:mail:/var/mail:/usr/sbin/nologin\nnews:x:9:9:news:/var/spool/news:/usr/sbin/nologin\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nbackup:x:34:34:backup:/var/backups:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\nmessagebus:x:100:107::/nonexistent:/usr/sbin/nologin\nsshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n{}",
            if uid == 0 {
                String::new()
            } else {
                format!("{user}:x:{uid}:{uid}:{user},,,:{home}:/bin/bash\n")
            }
        );
        let files: [(&str, String); 7] = [
            ("/etc/passwd", passwd),
            (
                "/etc/group",
                format!("root:x:0:\nsudo:x:27:{sudo_members}\nusers:x:100:\n{group_line}"),
            ),
            ("/etc/hostname", format!("{hostname}\n")),
            (
                "/etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\nHOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n".to_owned(),
            ),
            ("/etc/issue", "Debian GNU/Linux 12 \\n \\l\n\n".to_owned()),
            ("/etc/debian_version", "12.8\n".to_owned()),
            (
                "/proc/version",
                "Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)\n".to_owned(),
            ),
        ];
        for (path, text) in files {
            fs.put(path, Kind::File(text.into_bytes()), "rw-r--r--", "root");
        }
        fs.put(
            "/usr/bin/bash",
            Kind::File(ELF_HEADER.to_vec()),
            "rwxr-xr-x",
            "root",
        );
        for program in PROGRAMS {
            let path = format!("/usr/bin/{program}");
            if !fs.nodes.contains_key(&path) {
                fs.put(&path, Kind::File(ELF_HEADER.to_vec()), "rwxr-xr-x", "root");
            }
        }
        if user != "root" {
            fs.put(&home, Kind::Dir, "rwx------", user);
        }
        let bashrc = "# ~/.bashrc: executed by bash(1) for non-login shells.\n\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n\nHISTCONTROL=ignoreboth\nshopt -s histappend\nHISTSIZE=1000\nHISTFILESIZE=2000\n";
        let profile = "# ~/.profile: executed by the command interpreter for login shells.\n\nif [ -n \"$BASH_VERSION\" ]; then\n    if [ -f \"$HOME/.bashrc\" ]; then\n\t. \"$HOME/.bashrc\"\n    fi\nfi\n";
        for (name, text) in [(".bashrc", bashrc), (".profile", profile)] {
            let path = format!("{}/{name}", home.trim_end_matches('/'));
            fs.put(
                &path,
                Kind::File(text.as_bytes().to_vec()),
                "rw-r--r--",
                user,
            );
        }
        fs
    }

    fn put(&mut self, path: &str, kind: Kind, mode: &'static str, owner: &str) {
        self.nodes.insert(
            path.to_owned(),
            Node {
                kind,
                mode,
                owner: owner.to_owned(),
                date: "Nov 22 10:04",
                size: None,
            },
        );
    }

    /// The node at `path` (absolute, normalised), links not followed.
    #[must_use]
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The node at `path`, following links in every component (bounded).
    #[must_use]
    pub fn resolve(&self, path: &str) -> Option<(String, &Node)> {
        let mut current = "/".to_owned();
        let mut hops = 0_u8;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            current = normalize(&current, part);
            while let Kind::Link(target) = &self.nodes.get(&current)?.kind {
                hops = hops.saturating_add(1);
                if hops > 8 {
                    return None;
                }
                let parent = parent(&current);
                current = normalize(&parent, target);
                if current.split('/').filter(|p| !p.is_empty()).count() > 1 {
                    // A target with several components: resolve it from the root.
                    let (real, _) = self.resolve_shallow(&current)?;
                    current = real;
                }
            }
        }
        let node = self.nodes.get(&current)?;
        Some((current, node))
    }

    /// [`Vfs::resolve`] for targets, whose intermediate components are never links here.
    fn resolve_shallow(&self, path: &str) -> Option<(String, &Node)> {
        let mut current = path.to_owned();
        for _ in 0..8 {
            let node = self.nodes.get(&current)?;
            match &node.kind {
                Kind::Link(target) => current = normalize(&parent(&current), target),
                _ => return Some((current, node)),
            }
        }
        None
    }

    /// The names directly inside the directory `dir`, sorted.
    #[must_use]
    pub fn children(&self, dir: &str) -> Vec<(String, &Node)> {
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter_map(|(p, n)| {
                let rest = p.get(prefix.len()..)?;
                (!rest.is_empty() && !rest.contains('/')).then(|| (rest.to_owned(), n))
            })
            .collect()
    }

    /// Writes (or appends to) a file owned by `user`; `Err` with bash's reason.
    ///
    /// # Errors
    /// `Permission denied` outside `/tmp`, `/var/tmp` and the home for non-root users, `Is a
    /// directory`, `No such file or directory` when the parent is missing.
    pub fn write(
        &mut self,
        path: &str,
        data: &[u8],
        append: bool,
        user: &str,
    ) -> Result<(), &'static str> {
        let parent_dir = parent(path);
        match self.resolve(&parent_dir) {
            Some((_, node)) if node.kind == Kind::Dir => {}
            _ => return Err("No such file or directory"),
        }
        if !writable(&parent_dir, user) {
            return Err("Permission denied");
        }
        let mut content = match self.nodes.get(path).map(|n| &n.kind) {
            Some(Kind::Dir) => return Err("Is a directory"),
            Some(Kind::File(old)) if append => old.clone(),
            Some(_) | None => {
                if !self.nodes.contains_key(path) && self.nodes.len() >= MAX_NODES {
                    return Err("No space left on device");
                }
                Vec::new()
            }
        };
        let room = MAX_FILE.saturating_sub(content.len());
        content.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        self.put(path, Kind::File(content), "rw-r--r--", user);
        Ok(())
    }

    /// Stores an upload of `size` bytes whose content starts with `head` (kept up to
    /// [`MAX_FILE`]) at `path`, owned by `user`.
    ///
    /// # Errors
    /// As [`Vfs::write`].
    pub fn upload(
        &mut self,
        path: &str,
        head: &[u8],
        size: u64,
        user: &str,
    ) -> Result<(), &'static str> {
        let kept = head.get(..MAX_FILE.min(head.len())).unwrap_or_default();
        self.write(path, kept, false, user)?;
        if let Some(node) = self.nodes.get_mut(path) {
            node.size = (size != kept.len() as u64).then_some(size);
        }
        Ok(())
    }

    /// The size `ls -l` shows.
    #[must_use]
    pub fn size(node: &Node) -> u64 {
        match &node.kind {
            Kind::Dir => 4096,
            Kind::File(data) => node.size.unwrap_or(data.len() as u64),
            Kind::Link(target) => target.len() as u64,
        }
    }

    /// Removes the file or link at `path`.
    ///
    /// # Errors
    /// `No such file or directory`, `Is a directory`, `Permission denied`.
    pub fn remove(&mut self, path: &str, user: &str) -> Result<(), &'static str> {
        match self.nodes.get(path).map(|n| &n.kind) {
            None => Err("No such file or directory"),
            Some(Kind::Dir) => Err("Is a directory"),
            Some(_) if !writable(&parent(path), user) => Err("Permission denied"),
            Some(_) => {
                self.nodes.remove(path);
                Ok(())
            }
        }
    }

    /// Removes the empty directory at `path`.
    ///
    /// # Errors
    /// `No such file or directory`, `Not a directory`, `Directory not empty`, `Permission
    /// denied`.
    pub fn rmdir(&mut self, path: &str, user: &str) -> Result<(), &'static str> {
        match self.nodes.get(path).map(|n| &n.kind) {
            None => Err("No such file or directory"),
            Some(Kind::Dir) if !self.children(path).is_empty() => Err("Directory not empty"),
            Some(Kind::Dir) if path == "/" || !writable(&parent(path), user) => {
                Err("Permission denied")
            }
            Some(Kind::Dir) => {
                self.nodes.remove(path);
                Ok(())
            }
            Some(_) => Err("Not a directory"),
        }
    }

    /// Moves `from` (and, for a directory, everything under it) to `to`.
    ///
    /// # Errors
    /// `No such file or directory`, `File exists` (a directory in the way), `Invalid
    /// argument` (a directory into itself), `Permission denied`.
    pub fn rename(&mut self, from: &str, to: &str, user: &str) -> Result<(), &'static str> {
        if !self.nodes.contains_key(from) {
            return Err("No such file or directory");
        }
        match self.resolve(&parent(to)) {
            Some((_, node)) if node.kind == Kind::Dir => {}
            _ => return Err("No such file or directory"),
        }
        if !writable(&parent(from), user) || !writable(&parent(to), user) {
            return Err("Permission denied");
        }
        if from == "/" || to.starts_with(&format!("{from}/")) {
            return Err("Invalid argument");
        }
        if from == to {
            return Ok(());
        }
        if self.nodes.get(to).is_some_and(|n| n.kind == Kind::Dir) {
            return Err("File exists");
        }
        let prefix = format!("{from}/");
        let moved: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, _)| p.clone())
            .collect();
        for old in std::iter::once(from.to_owned()).chain(moved) {
            if let Some(node) = self.nodes.remove(&old) {
                let rest = old.get(from.len()..).unwrap_or_default();
                self.nodes.insert(format!("{to}{rest}"), node);
            }
        }
        Ok(())
    }

    /// Creates the symbolic link `link` pointing at `target`.
    ///
    /// # Errors
    /// As [`Vfs::mkdir`].
    pub fn symlink(&mut self, link: &str, target: &str, user: &str) -> Result<(), &'static str> {
        if self.nodes.contains_key(link) {
            return Err("File exists");
        }
        match self.resolve(&parent(link)) {
            Some((_, node)) if node.kind == Kind::Dir => {}
            _ => return Err("No such file or directory"),
        }
        if !writable(&parent(link), user) {
            return Err("Permission denied");
        }
        if self.nodes.len() >= MAX_NODES {
            return Err("No space left on device");
        }
        let target: String = target.chars().take(4096).collect();
        self.put(link, Kind::Link(target), "rwxrwxrwx", user);
        Ok(())
    }

    /// Creates a directory owned by `user`.
    ///
    /// # Errors
    /// As [`Vfs::write`], plus `File exists`.
    pub fn mkdir(&mut self, path: &str, user: &str) -> Result<(), &'static str> {
        if self.nodes.contains_key(path) {
            return Err("File exists");
        }
        let parent_dir = parent(path);
        match self.resolve(&parent_dir) {
            Some((_, node)) if node.kind == Kind::Dir => {}
            _ => return Err("No such file or directory"),
        }
        if !writable(&parent_dir, user) {
            return Err("Permission denied");
        }
        if self.nodes.len() >= MAX_NODES {
            return Err("No space left on device");
        }
        self.put(path, Kind::Dir, "rwxr-xr-x", user);
        Ok(())
    }
}

/// Where a non-root user may write.
fn writable(dir: &str, user: &str) -> bool {
    user == "root"
        || dir == "/tmp"
        || dir.starts_with("/tmp/")
        || dir == "/var/tmp"
        || dir.starts_with("/var/tmp/")
        || dir == home(user)
        || dir.starts_with(&format!("{}/", home(user)))
}

/// The home directory of `user`.
#[must_use]
pub fn home(user: &str) -> String {
    if user == "root" {
        "/root".to_owned()
    } else {
        format!("/home/{user}")
    }
}

/// The directory holding `path`.
#[must_use]
pub fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((p, _)) => p.to_owned(),
    }
}

/// `path` made absolute from `cwd`, with `.`, `..` and repeated slashes removed.
#[must_use]
pub fn normalize(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
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

#[cfg(test)]
mod tests {
    use super::{Kind, Vfs, normalize};

    #[test]
    fn paths_and_links_resolve() {
        assert_eq!(normalize("/home/bob", "../../etc/./passwd"), "/etc/passwd");
        assert_eq!(normalize("/", ".."), "/");
        let fs = Vfs::seeded("bob", "srv");
        let (path, node) = fs.resolve("/proc/self/exe").unwrap();
        assert_eq!(path, "/usr/bin/bash");
        assert!(matches!(&node.kind, Kind::File(b) if b.starts_with(b"\x7fELF")));
        let (path, _) = fs.resolve("/bin/ls").unwrap();
        assert_eq!(path, "/usr/bin/ls");
        let names: Vec<String> = fs.children("/home/bob").into_iter().map(|c| c.0).collect();
        assert_eq!(names, vec![".bashrc", ".profile"]);
        let mut fs = fs;
        assert_eq!(
            fs.write("/etc/x", b"1", false, "bob"),
            Err("Permission denied")
        );
        assert_eq!(fs.write("/tmp/x", b"1", false, "bob"), Ok(()));
        assert_eq!(fs.write("/tmp/x", b"2", true, "bob"), Ok(()));
        assert_eq!(fs.get("/tmp/x").unwrap().kind, Kind::File(b"12".to_vec()));
    }
}
