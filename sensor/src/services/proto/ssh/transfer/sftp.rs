//! The `sftp` subsystem, protocol version 3 as OpenSSH's `sftp-server` speaks it, over the
//! virtual file system. The wire format is `russh-sftp`'s (its `protocol` module); the loop
//! is ours rather than `russh_sftp::server::run`, which spawns a task per channel with no
//! bound on time or memory and retries forever on a broken stream: here each request is
//! answered in the connection's handler, within bounded packet size, request count, open
//! handles and bytes served.
//!
//! ```text
//! C: INIT 3                  S: VERSION 3 (no extensions, see below)
//! C: REALPATH "."            S: NAME "/home/bob"
//! C: OPEN "/tmp/x" WRITE|CREAT|TRUNC   -> ssh.query {"mode":"sftp","command":"open",...}
//! C: WRITE h 0 <32 KiB> ...  S: STATUS Success
//! C: CLOSE h                 -> ssh.upload {"path":"/tmp/x","size":..,"sha256":..}
//! ```
//! Statuses carry OpenSSH's messages and an empty language tag, handles are 4-byte
//! big-endian slot numbers, directory listings include `.` and `..` with `ls -l` long names,
//! 100 entries per READDIR. Known differences from OpenSSH 9.2's `sftp-server`: no
//! extensions are advertised (`posix-rename@openssh.com`, `statvfs@openssh.com`,
//! `limits@openssh.com`, ... are not implemented; clients fall back to the base protocol),
//! and an upload larger than the shell's per-file size reads back only its first 64 KiB.

use std::collections::BTreeMap;

use bytes::Bytes;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};

use super::{Cx, MTIME, Op, Step, finished, mode_bits, owner_id, store::Capture, type_bits};
use crate::services::proto::ssh::shell::vfs::{self, Kind, Node, Vfs};

/// OpenSSH's `SFTP_MAX_MSG_LENGTH`.
const MAX_PACKET: usize = 256 * 1024;
/// Requests one channel may make.
const MAX_REQUESTS: u32 = 200_000;
/// Files and directories open at once on one channel.
const MAX_HANDLES: u32 = 64;
/// Longest READ answered.
const MAX_READ: u32 = 64 * 1024;
/// Bytes one channel may download in all.
const MAX_SERVED: u64 = 16 << 20;
/// Entries per READDIR answer (OpenSSH's `NUM_ENTRIES`).
const DIR_CHUNK: usize = 100;
/// `sftp-server`'s exit status after a malformed or oversized message.
const EXIT_BAD: u32 = 11;

/// One open handle.
#[derive(Debug)]
enum Open {
    Dir { entries: Vec<File>, next: usize },
    Read { path: String, data: Vec<u8> },
    Write { path: String, capture: Capture },
}

/// One channel's SFTP server.
#[derive(Debug, Default)]
pub struct Sftp {
    inbox: Vec<u8>,
    handles: BTreeMap<u32, Open>,
    initialized: bool,
    requests: u32,
    served: u64,
}

/// OpenSSH's status text.
const fn message(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Ok => "Success",
        StatusCode::Eof => "End of file",
        StatusCode::NoSuchFile => "No such file",
        StatusCode::PermissionDenied => "Permission denied",
        StatusCode::Failure => "Failure",
        StatusCode::BadMessage => "Bad message",
        StatusCode::NoConnection => "No connection",
        StatusCode::ConnectionLost => "Connection lost",
        StatusCode::OpUnsupported => "Operation unsupported",
    }
}

fn status(id: u32, code: StatusCode) -> Packet {
    Packet::Status(Status {
        id,
        status_code: code,
        error_message: message(code).to_owned(),
        language_tag: String::new(),
    })
}

/// The status for a file-system error (bash's reason).
fn code_of(reason: &str) -> StatusCode {
    match reason {
        "No such file or directory" => StatusCode::NoSuchFile,
        "Permission denied" => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    }
}

fn result(id: u32, done: Result<(), &'static str>) -> Packet {
    status(id, done.map_or_else(code_of, |()| StatusCode::Ok))
}

/// The attributes of `node` as `stat` gives them.
fn attrs(node: &Node) -> FileAttributes {
    let id = owner_id(&node.owner);
    FileAttributes {
        size: Some(Vfs::size(node)),
        uid: Some(id),
        user: None,
        gid: Some(id),
        group: None,
        permissions: Some(type_bits(node) | mode_bits(node.mode)),
        atime: Some(MTIME),
        mtime: Some(MTIME),
    }
}

/// OpenSSH's `ls_file` line for `name` (`strmode` leaves a space after the mode).
fn long_name(name: &str, node: &Node) -> String {
    let kind = match node.kind {
        Kind::Dir => 'd',
        Kind::File(_) => '-',
        Kind::Link(_) => 'l',
    };
    let links = if node.kind == Kind::Dir { 2 } else { 1 };
    format!(
        "{kind}{}  {links:>3} {owner:<8} {owner:<8} {:>8} {} {name}",
        node.mode,
        Vfs::size(node),
        node.date,
        owner = node.owner,
    )
}

fn handle_name(slot: u32) -> String {
    // OpenSSH's handles: the slot as 4 big-endian bytes (ASCII for the slots we give out).
    slot.to_be_bytes().iter().map(|&b| char::from(b)).collect()
}

fn slot_of(handle: &str) -> Option<u32> {
    let bytes: Vec<u8> = handle
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<_>>()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

impl Sftp {
    /// A server waiting for INIT.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the client: every complete request is answered.
    pub fn feed(&mut self, data: &[u8], cx: &mut Cx<'_>) -> Step {
        let mut step = Step::default();
        self.inbox.extend_from_slice(data);
        let mut used = 0_usize;
        loop {
            let rest = self.inbox.get(used..).unwrap_or_default();
            let Some(head) = rest.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
                break;
            };
            let len = u32::from_be_bytes(head) as usize;
            if len > MAX_PACKET || len == 0 {
                step.exit = Some(EXIT_BAD);
                break;
            }
            let Some(body) = rest.get(4..len.saturating_add(4)) else {
                break;
            };
            let mut bytes = Bytes::copy_from_slice(body);
            used = used.saturating_add(len).saturating_add(4);
            self.requests = self.requests.saturating_add(1);
            if self.requests > MAX_REQUESTS {
                step.exit = Some(EXIT_BAD);
                break;
            }
            let answer = match Packet::try_from(&mut bytes) {
                Ok(Packet::Init(_)) => {
                    self.initialized = true;
                    Some(Packet::Version(Version::new()))
                }
                Ok(_) if !self.initialized => {
                    step.exit = Some(EXIT_BAD);
                    break;
                }
                Ok(request) => self.request(request, cx, &mut step),
                Err(_) => Some(status(0, StatusCode::BadMessage)),
            };
            if let Some(packet) = answer
                && let Ok(encoded) = Bytes::try_from(packet)
            {
                step.reply.extend_from_slice(&encoded);
            }
        }
        self.inbox.drain(..used.min(self.inbox.len()));
        if step.exit.is_some() {
            self.close_all(cx, &mut step);
        }
        step
    }

    /// The channel ended: open uploads are reported as incomplete.
    pub fn end(&mut self, cx: &mut Cx<'_>) -> Step {
        let mut step = Step::default();
        self.close_all(cx, &mut step);
        step
    }

    fn close_all(&mut self, cx: &mut Cx<'_>, step: &mut Step) {
        for (_, open) in std::mem::take(&mut self.handles) {
            if let Open::Write { path, capture } = open {
                finished(cx, path, capture.finish(false), step);
            }
        }
    }

    fn add(&mut self, id: u32, open: Open) -> Packet {
        let Some(slot) = (0..MAX_HANDLES).find(|s| !self.handles.contains_key(s)) else {
            return status(id, StatusCode::Failure);
        };
        self.handles.insert(slot, open);
        Packet::Handle(Handle {
            id,
            handle: handle_name(slot),
        })
    }

    fn request(&mut self, request: Packet, cx: &mut Cx<'_>, step: &mut Step) -> Option<Packet> {
        let id = request.get_request_id();
        let op = |command: &'static str, path: &str, detail: Option<String>| Op {
            command,
            path: path.to_owned(),
            detail,
        };
        let answer = match request {
            Packet::RealPath(r) => realpath(id, &r.path, cx),
            Packet::Stat(r) => stat(id, &r.path, true, cx),
            Packet::Lstat(r) => stat(id, &r.path, false, cx),
            Packet::Fstat(r) => self.fstat(id, &r.handle, cx),
            Packet::OpenDir(r) => {
                step.ops.push(op("opendir", &r.path, None));
                match list(&r.path, cx) {
                    Ok(entries) => self.add(id, Open::Dir { entries, next: 0 }),
                    Err(code) => status(id, code),
                }
            }
            Packet::ReadDir(r) => self.readdir(id, &r.handle),
            Packet::Open(r) => {
                let write = r.pflags.intersects(
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::APPEND,
                );
                let flags = if write { "write" } else { "read" };
                step.ops
                    .push(op("open", &r.filename, Some(flags.to_owned())));
                let opened = if write {
                    open_write(&r.filename, r.pflags, cx)
                } else {
                    open_read(&r.filename, cx)
                };
                match opened {
                    Ok(open) => self.add(id, open),
                    Err(code) => status(id, code),
                }
            }
            Packet::Read(r) => self.read(id, &r.handle, r.offset, r.len),
            Packet::Write(r) => match slot_of(&r.handle).and_then(|s| self.handles.get_mut(&s)) {
                Some(Open::Write { capture, .. }) => {
                    capture.write(r.offset, &r.data);
                    status(id, StatusCode::Ok)
                }
                _ => status(id, StatusCode::Failure),
            },
            Packet::Close(r) => match slot_of(&r.handle).and_then(|s| self.handles.remove(&s)) {
                Some(Open::Write { path, capture }) => {
                    finished(cx, path, capture.finish(true), step);
                    status(id, StatusCode::Ok)
                }
                Some(_) => status(id, StatusCode::Ok),
                None => status(id, StatusCode::Failure),
            },
            Packet::SetStat(r) => {
                step.ops.push(op("setstat", &r.path, None));
                match lookup(&r.path, true, cx) {
                    Ok(_) => status(id, StatusCode::Ok),
                    Err(code) => status(id, code),
                }
            }
            Packet::FSetStat(r) => {
                match slot_of(&r.handle).filter(|s| self.handles.contains_key(s)) {
                    Some(_) => status(id, StatusCode::Ok),
                    None => status(id, StatusCode::Failure),
                }
            }
            Packet::Remove(r) => {
                step.ops.push(op("remove", &r.filename, None));
                let path = cx.absolute(&r.filename);
                match cx.placed(&path) {
                    Some(real) if !cx.forbidden(&real) => result(id, cx.fs.remove(&real, cx.user)),
                    Some(_) => status(id, StatusCode::PermissionDenied),
                    None => status(id, StatusCode::NoSuchFile),
                }
            }
            Packet::MkDir(r) => {
                step.ops.push(op("mkdir", &r.path, None));
                let path = cx.absolute(&r.path);
                match cx.placed(&path) {
                    Some(real) if !cx.forbidden(&real) => result(id, cx.fs.mkdir(&real, cx.user)),
                    Some(_) => status(id, StatusCode::PermissionDenied),
                    None => status(id, StatusCode::NoSuchFile),
                }
            }
            Packet::RmDir(r) => {
                step.ops.push(op("rmdir", &r.path, None));
                let path = cx.absolute(&r.path);
                match cx.placed(&path) {
                    Some(real) if !cx.forbidden(&real) => result(id, cx.fs.rmdir(&real, cx.user)),
                    Some(_) => status(id, StatusCode::PermissionDenied),
                    None => status(id, StatusCode::NoSuchFile),
                }
            }
            Packet::Rename(r) => {
                step.ops
                    .push(op("rename", &r.oldpath, Some(r.newpath.clone())));
                let (from, to) = (cx.absolute(&r.oldpath), cx.absolute(&r.newpath));
                match (cx.placed(&from), cx.placed(&to)) {
                    (Some(f), Some(t)) if cx.forbidden(&f) || cx.forbidden(&t) => {
                        status(id, StatusCode::PermissionDenied)
                    }
                    // Version 3's rename never replaces (OpenSSH links, then unlinks).
                    (Some(_), Some(t)) if cx.fs.get(&t).is_some() => {
                        status(id, StatusCode::Failure)
                    }
                    (Some(f), Some(t)) => result(id, cx.fs.rename(&f, &t, cx.user)),
                    _ => status(id, StatusCode::NoSuchFile),
                }
            }
            Packet::ReadLink(r) => match lookup(&r.path, false, cx) {
                Ok((_, node)) => match node.kind {
                    Kind::Link(target) => Packet::Name(Name {
                        id,
                        files: vec![File {
                            filename: target.clone(),
                            longname: target,
                            attrs: FileAttributes::empty(),
                        }],
                    }),
                    _ => status(id, StatusCode::Failure),
                },
                Err(code) => status(id, code),
            },
            // OpenSSH's arguments are the other way round from the draft's: the target first.
            Packet::Symlink(r) => {
                step.ops
                    .push(op("symlink", &r.targetpath, Some(r.linkpath.clone())));
                let link = cx.absolute(&r.targetpath);
                match cx.placed(&link) {
                    Some(real) if !cx.forbidden(&real) => {
                        result(id, cx.fs.symlink(&real, &r.linkpath, cx.user))
                    }
                    Some(_) => status(id, StatusCode::PermissionDenied),
                    None => status(id, StatusCode::NoSuchFile),
                }
            }
            Packet::Extended(_) => status(id, StatusCode::OpUnsupported),
            // Server-to-client packets: sftp-server logs them and answers nothing.
            _ => return None,
        };
        Some(answer)
    }

    fn fstat(&self, id: u32, handle: &str, cx: &Cx<'_>) -> Packet {
        let path = match slot_of(handle).and_then(|s| self.handles.get(&s)) {
            Some(Open::Read { path, .. }) => path,
            Some(Open::Write { path, capture }) => {
                let mut a = cx.fs.get(path).map(attrs).unwrap_or_default();
                a.size = Some(capture.size());
                return Packet::Attrs(Attrs { id, attrs: a });
            }
            Some(Open::Dir { .. }) | None => return status(id, StatusCode::Failure),
        };
        match cx.fs.get(path) {
            Some(node) => Packet::Attrs(Attrs {
                id,
                attrs: attrs(node),
            }),
            None => status(id, StatusCode::Failure),
        }
    }

    fn readdir(&mut self, id: u32, handle: &str) -> Packet {
        match slot_of(handle).and_then(|s| self.handles.get_mut(&s)) {
            Some(Open::Dir { entries, next }) => {
                let files: Vec<File> = entries
                    .iter()
                    .skip(*next)
                    .take(DIR_CHUNK)
                    .cloned()
                    .collect();
                if files.is_empty() {
                    return status(id, StatusCode::Eof);
                }
                *next = next.saturating_add(files.len());
                Packet::Name(Name { id, files })
            }
            _ => status(id, StatusCode::Failure),
        }
    }

    fn read(&mut self, id: u32, handle: &str, offset: u64, len: u32) -> Packet {
        let Some(Open::Read { data, .. }) = slot_of(handle).and_then(|s| self.handles.get(&s))
        else {
            return status(id, StatusCode::Failure);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let len = len.min(MAX_READ) as usize;
        let Some(rest) = data.get(start..).filter(|r| !r.is_empty()) else {
            return status(id, StatusCode::Eof);
        };
        let chunk = rest.get(..len.min(rest.len())).unwrap_or_default();
        if self.served.saturating_add(chunk.len() as u64) > MAX_SERVED {
            return status(id, StatusCode::Failure);
        }
        self.served = self.served.saturating_add(chunk.len() as u64);
        Packet::Data(Data {
            id,
            data: chunk.to_vec(),
        })
    }
}

/// The node at `path` (links followed when `follow`), as `stat`/`lstat` see it.
fn lookup(path: &str, follow: bool, cx: &Cx<'_>) -> Result<(String, Node), StatusCode> {
    let abs = cx.absolute(path);
    if cx.forbidden(&abs) {
        return Err(StatusCode::PermissionDenied);
    }
    let found = if follow {
        cx.fs.resolve(&abs).map(|(p, n)| (p, n.clone()))
    } else {
        cx.placed(&abs)
            .and_then(|p| cx.fs.get(&p).cloned().map(|n| (p, n)))
    };
    let found = found.ok_or(StatusCode::NoSuchFile)?;
    if cx.forbidden(&found.0) {
        return Err(StatusCode::PermissionDenied);
    }
    Ok(found)
}

fn realpath(id: u32, path: &str, cx: &Cx<'_>) -> Packet {
    let abs = cx.absolute(path);
    // realpath(3) as sftp-server has it: the last component need not exist.
    let real = cx
        .fs
        .resolve(&abs)
        .map(|(p, _)| p)
        .or_else(|| cx.placed(&abs));
    match real {
        Some(real) => Packet::Name(Name {
            id,
            files: vec![File {
                filename: real.clone(),
                longname: real,
                attrs: FileAttributes::empty(),
            }],
        }),
        None => status(id, StatusCode::NoSuchFile),
    }
}

fn stat(id: u32, path: &str, follow: bool, cx: &Cx<'_>) -> Packet {
    match lookup(path, follow, cx) {
        Ok((_, node)) => Packet::Attrs(Attrs {
            id,
            attrs: attrs(&node),
        }),
        Err(code) => status(id, code),
    }
}

/// The listing of a directory: `.`, `..`, then its entries.
fn list(path: &str, cx: &Cx<'_>) -> Result<Vec<File>, StatusCode> {
    let (real, node) = lookup(path, true, cx)?;
    if node.kind != Kind::Dir {
        return Err(StatusCode::Failure);
    }
    if real == "/root" && cx.user != "root" {
        return Err(StatusCode::PermissionDenied);
    }
    let mut out = vec![File {
        filename: ".".to_owned(),
        longname: long_name(".", &node),
        attrs: attrs(&node),
    }];
    if let Some(up) = cx.fs.get(&vfs::parent(&real)) {
        out.push(File {
            filename: "..".to_owned(),
            longname: long_name("..", up),
            attrs: attrs(up),
        });
    }
    for (name, child) in cx.fs.children(&real) {
        out.push(File {
            longname: long_name(&name, child),
            attrs: attrs(child),
            filename: name,
        });
    }
    Ok(out)
}

fn open_read(path: &str, cx: &Cx<'_>) -> Result<Open, StatusCode> {
    let (real, node) = lookup(path, true, cx)?;
    match node.kind {
        Kind::File(data) => Ok(Open::Read { path: real, data }),
        _ => Err(StatusCode::Failure),
    }
}

fn open_write(path: &str, flags: OpenFlags, cx: &mut Cx<'_>) -> Result<Open, StatusCode> {
    let abs = cx.absolute(path);
    let mut real = cx.placed(&abs).ok_or(StatusCode::NoSuchFile)?;
    if cx.forbidden(&real) {
        return Err(StatusCode::PermissionDenied);
    }
    match cx.fs.get(&real).map(|n| &n.kind) {
        Some(_) if flags.contains(OpenFlags::EXCLUDE) => return Err(StatusCode::Failure),
        Some(Kind::Dir) => return Err(StatusCode::Failure),
        Some(Kind::Link(_)) => {
            // Writing through a link writes its target.
            real = cx
                .fs
                .resolve(&real)
                .map(|(p, _)| p)
                .ok_or(StatusCode::NoSuchFile)?;
        }
        Some(Kind::File(_)) | None => {}
    }
    let truncate = flags.contains(OpenFlags::TRUNCATE) || cx.fs.get(&real).is_none();
    cx.fs
        .write(&real, b"", !truncate, cx.user)
        .map_err(code_of)?;
    Ok(Open::Write {
        path: real,
        capture: cx.store.capture(),
    })
}
