//! File transfer for configured users, over the shell's virtual file system: the `sftp`
//! subsystem ([`sftp`], which modern `scp` also uses) and legacy SCP (`scp -t`/`scp -f` sent
//! with `exec`, [`scp`]). Uploads are captured ([`store`]) and reported as `ssh.upload`;
//! downloads are served from the virtual file system. Each channel's transfer is a state
//! machine fed with the channel's bytes: it answers with bytes to send, finished uploads and
//! operations to log, and when to close.

pub mod scp;
pub mod sftp;
pub mod store;

use std::sync::Arc;

use self::store::{Finished, UploadStore};
use super::shell::vfs::{self, Kind, Node, Vfs};

/// What a transfer works on: the connection's file system and user, and the upload store.
pub struct Cx<'a> {
    /// The file system, shared with the shell.
    pub fs: &'a mut Vfs,
    /// The logged-in user.
    pub user: &'a str,
    /// Where uploads go.
    pub store: &'a Arc<UploadStore>,
}

impl Cx<'_> {
    /// The user's home, where relative paths start.
    #[must_use]
    pub fn home(&self) -> String {
        vfs::home(self.user)
    }

    /// `path` made absolute from the home.
    #[must_use]
    pub fn absolute(&self, path: &str) -> String {
        vfs::normalize(&self.home(), path)
    }

    /// Whether `path` (absolute) is hidden from the user by `/root`'s mode 0700.
    #[must_use]
    pub fn forbidden(&self, path: &str) -> bool {
        self.user != "root" && path.starts_with("/root/")
    }

    /// `path` (absolute) with its directory resolved (links followed), the last component
    /// kept: where a new file or directory named `path` goes. `None` when the directory is
    /// missing or not a directory.
    #[must_use]
    pub fn placed(&self, path: &str) -> Option<String> {
        if path == "/" {
            return Some("/".to_owned());
        }
        let (dir, name) = path.rsplit_once('/')?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let (real, node) = self.fs.resolve(dir)?;
        (node.kind == Kind::Dir).then(|| join(&real, name))
    }
}

/// `dir/name`.
#[must_use]
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// An operation worth logging (`ssh.query`, `mode: sftp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `open`, `opendir`, `remove`, `mkdir`, `rmdir`, `rename`, `symlink`, `setstat`.
    pub command: &'static str,
    /// The path as the client sent it.
    pub path: String,
    /// The second path (`rename`, `symlink`) or the open flags (`read`, `write`).
    pub detail: Option<String>,
}

/// A finished upload and where it was written in the file system.
#[derive(Debug)]
pub struct Upload {
    /// The path in the virtual file system.
    pub path: String,
    /// What arrived.
    pub file: Finished,
}

/// What one step of a transfer asks for.
#[derive(Debug, Default)]
pub struct Step {
    /// Bytes to send on the channel.
    pub reply: Vec<u8>,
    /// Uploads finished.
    pub uploads: Vec<Upload>,
    /// Operations to log.
    pub ops: Vec<Op>,
    /// Close the channel with this exit status.
    pub exit: Option<u32>,
}

/// The transfer running on one channel.
#[derive(Debug)]
pub enum Transfer {
    /// The `sftp` subsystem.
    Sftp(sftp::Sftp),
    /// `scp -t` or `scp -f` (boxed: its state is four times the SFTP one).
    Scp(Box<scp::Scp>),
}

impl Transfer {
    /// Bytes the client sent on the channel.
    pub fn feed(&mut self, data: &[u8], cx: &mut Cx<'_>) -> Step {
        match self {
            Self::Sftp(s) => s.feed(data, cx),
            Self::Scp(s) => s.feed(data, cx),
        }
    }

    /// The client sent EOF or closed the channel: files still open are reported as
    /// incomplete.
    pub fn end(&mut self, cx: &mut Cx<'_>) -> Step {
        match self {
            Self::Sftp(s) => s.end(cx),
            Self::Scp(s) => s.end(cx),
        }
    }
}

/// Stores `upload` in the file system (its kept bytes, its real size) and reports it.
fn finished(cx: &mut Cx<'_>, path: String, file: Finished, step: &mut Step) {
    // The file may have been removed or replaced meanwhile: the upload is reported anyway.
    let _ = cx.fs.upload(&path, &file.content, file.size, cx.user);
    step.uploads.push(Upload { path, file });
}

/// Permission bits of an `ls -l` mode such as `rwxrwxrwt`.
#[must_use]
pub fn mode_bits(mode: &str) -> u32 {
    let mut bits = 0_u32;
    for (i, c) in mode.chars().take(9).enumerate() {
        let shift = 8_u32.saturating_sub(u32::try_from(i).unwrap_or(8));
        let bit = 1_u32 << shift;
        match c {
            'r' | 'w' | 'x' => bits |= bit,
            's' | 't' => {
                bits |= bit;
                bits |= special(i);
            }
            'S' | 'T' => bits |= special(i),
            _ => {}
        }
    }
    bits
}

/// setuid, setgid or sticky, by the position of its letter.
const fn special(position: usize) -> u32 {
    match position {
        2 => 0o4000,
        5 => 0o2000,
        8 => 0o1000,
        _ => 0,
    }
}

/// The file-type bits of `node`.
#[must_use]
pub const fn type_bits(node: &Node) -> u32 {
    match node.kind {
        Kind::Dir => 0o040_000,
        Kind::File(_) => 0o100_000,
        Kind::Link(_) => 0o120_000,
    }
}

/// The uid (and gid) of a node's owner.
#[must_use]
pub fn owner_id(owner: &str) -> u32 {
    if owner == "root" { 0 } else { 1000 }
}

/// The modification time every node shows (`Nov 22 10:04`, 2024, UTC).
pub const MTIME: u32 = 1_732_269_840;

#[cfg(test)]
mod tests;
