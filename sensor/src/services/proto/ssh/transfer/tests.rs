//! SFTP and SCP against the exchanges OpenSSH's clients have with `sftp-server` and `scp`.

use std::{collections::HashMap, sync::Arc};

use bytes::{Buf as _, Bytes};
use russh_sftp::protocol::{
    Close, FileAttributes, Init, MkDir, Open, OpenDir, OpenFlags, Packet, Read, ReadDir, RealPath,
    Remove, Stat, StatusCode, Write,
};
use sha2::{Digest, Sha256};

use super::{Cx, Step, Transfer, mode_bits, scp::Scp, sftp::Sftp, store::UploadStore};
use crate::services::proto::ssh::shell::vfs::{Kind, Vfs};

fn store() -> Arc<UploadStore> {
    let dir = std::env::temp_dir().join(format!("ssh-transfer-{}", uuid::Uuid::new_v4()));
    Arc::new(UploadStore::new(&dir, 1 << 20, 8 << 20))
}

fn encode(packet: Packet) -> Vec<u8> {
    Bytes::try_from(packet).unwrap().to_vec()
}

/// Decodes every reply packet in `bytes`.
fn decode(bytes: &[u8]) -> Vec<Packet> {
    let mut b = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    while b.has_remaining() {
        let len = b.get_u32() as usize;
        let mut body = b.split_to(len);
        out.push(Packet::try_from(&mut body).unwrap());
    }
    out
}

struct Client {
    sftp: Transfer,
    fs: Vfs,
    store: Arc<UploadStore>,
    id: u32,
}

impl Client {
    fn new() -> Self {
        let mut c = Self {
            sftp: Transfer::Sftp(Sftp::new()),
            fs: Vfs::seeded("bob", "srv01"),
            store: store(),
            id: 0,
        };
        let (replies, _) = c.send(Packet::Init(Init {
            version: 3,
            extensions: HashMap::new(),
        }));
        assert!(
            matches!(&replies[..], [Packet::Version(v)] if v.version == 3 && v.extensions.is_empty())
        );
        c
    }

    fn next(&mut self) -> u32 {
        self.id += 1;
        self.id
    }

    fn send(&mut self, packet: Packet) -> (Vec<Packet>, Step) {
        let mut cx = Cx {
            fs: &mut self.fs,
            user: "bob",
            store: &self.store,
        };
        let mut step = self.sftp.feed(&encode(packet), &mut cx);
        let replies = decode(&std::mem::take(&mut step.reply));
        (replies, step)
    }

    fn one(&mut self, packet: Packet) -> Packet {
        let (mut replies, _) = self.send(packet);
        assert_eq!(replies.len(), 1);
        replies.remove(0)
    }

    fn status(&mut self, packet: Packet) -> (StatusCode, String) {
        match self.one(packet) {
            Packet::Status(s) => {
                assert_eq!(s.language_tag, "");
                (s.status_code, s.error_message)
            }
            other => panic!("{other:?}"),
        }
    }

    fn handle(&mut self, packet: Packet) -> String {
        match self.one(packet) {
            Packet::Handle(h) => h.handle,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sftp_put_is_captured_and_lands_in_the_file_system() {
    let mut c = Client::new();
    let id = c.next();
    match c.one(Packet::RealPath(RealPath {
        id,
        path: ".".to_owned(),
    })) {
        Packet::Name(n) => assert_eq!(n.files[0].filename, "/home/bob"),
        other => panic!("{other:?}"),
    }
    let id = c.next();
    let (replies, opened) = c.send(Packet::Open(Open {
        id,
        filename: "/tmp/x.sh".to_owned(),
        pflags: OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
        attrs: FileAttributes::empty(),
    }));
    let handle = match &replies[..] {
        [Packet::Handle(h)] => h.handle.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(handle, "\0\0\0\0");
    // The open is logged as it happens, before any byte arrives.
    assert_eq!(opened.ops.len(), 1);
    assert_eq!(opened.ops[0].command, "open");
    assert_eq!(opened.ops[0].path, "/tmp/x.sh");
    assert_eq!(opened.ops[0].detail.as_deref(), Some("write"));
    let content: Vec<u8> = (0..70_000_u32).map(|i| (i % 251) as u8).collect();
    for (n, chunk) in content.chunks(32_768).enumerate() {
        let id = c.next();
        let offset = (n * 32_768) as u64;
        assert_eq!(
            c.status(Packet::Write(Write {
                id,
                handle: handle.clone(),
                offset,
                data: chunk.to_vec(),
            })),
            (StatusCode::Ok, "Success".to_owned())
        );
    }
    let id = c.next();
    let (replies, step) = c.send(Packet::Close(Close {
        id,
        handle: handle.clone(),
    }));
    assert!(matches!(&replies[..], [Packet::Status(s)] if s.status_code == StatusCode::Ok));
    assert_eq!(step.uploads.len(), 1);
    let up = &step.uploads[0];
    assert_eq!(up.path, "/tmp/x.sh");
    assert_eq!(up.file.size, 70_000);
    assert_eq!(up.file.sha256, hex::encode(Sha256::digest(&content)));
    assert_eq!(up.file.content, content);
    assert!(up.file.complete && !up.file.truncated);
    assert!(step.ops.is_empty(), "{:?}", step.ops);
    // The file system shows it at its real size (the shell keeps its first 64 KiB).
    let node = c.fs.get("/tmp/x.sh").unwrap();
    assert_eq!(Vfs::size(node), 70_000);
    assert_eq!(node.owner, "bob");
    let id = c.next();
    match c.one(Packet::Stat(Stat {
        id,
        path: "/tmp/x.sh".to_owned(),
    })) {
        Packet::Attrs(a) => {
            assert_eq!(a.attrs.size, Some(70_000));
            assert_eq!(a.attrs.permissions, Some(0o100_644));
            assert_eq!(a.attrs.uid, Some(1000));
        }
        other => panic!("{other:?}"),
    }
    // The handle is gone.
    let id = c.next();
    assert_eq!(
        c.status(Packet::Close(Close { id, handle })),
        (StatusCode::Failure, "Failure".to_owned())
    );
}

#[test]
fn sftp_lists_and_reads_the_file_system_as_sftp_server() {
    let mut c = Client::new();
    let id = c.next();
    let handle = c.handle(Packet::OpenDir(OpenDir {
        id,
        path: "/home/bob".to_owned(),
    }));
    let id = c.next();
    match c.one(Packet::ReadDir(ReadDir {
        id,
        handle: handle.clone(),
    })) {
        Packet::Name(n) => {
            let names: Vec<&str> = n.files.iter().map(|f| f.filename.as_str()).collect();
            assert_eq!(names, [".", "..", ".bashrc", ".profile"]);
            assert_eq!(
                n.files[2].longname,
                "-rw-r--r--    1 bob      bob           178 Nov 22 10:04 .bashrc"
            );
            assert_eq!(
                n.files[0].longname,
                "drwx------    2 bob      bob          4096 Nov 22 10:04 ."
            );
        }
        other => panic!("{other:?}"),
    }
    let id = c.next();
    assert_eq!(
        c.status(Packet::ReadDir(ReadDir { id, handle })),
        (StatusCode::Eof, "End of file".to_owned())
    );
    let id = c.next();
    let handle = c.handle(Packet::Open(Open {
        id,
        filename: "/etc/hostname".to_owned(),
        pflags: OpenFlags::READ,
        attrs: FileAttributes::empty(),
    }));
    let id = c.next();
    match c.one(Packet::Read(Read {
        id,
        handle: handle.clone(),
        offset: 0,
        len: 32_768,
    })) {
        Packet::Data(d) => assert_eq!(d.data, b"srv01\n"),
        other => panic!("{other:?}"),
    }
    let id = c.next();
    assert_eq!(
        c.status(Packet::Read(Read {
            id,
            handle,
            offset: 6,
            len: 32_768,
        }))
        .0,
        StatusCode::Eof
    );
    for (path, want) in [
        ("/nope", StatusCode::NoSuchFile),
        ("/root/.bashrc", StatusCode::PermissionDenied),
    ] {
        let id = c.next();
        assert_eq!(
            c.status(Packet::Stat(Stat {
                id,
                path: path.to_owned(),
            }))
            .0,
            want,
            "{path}"
        );
    }
    let id = c.next();
    assert_eq!(
        c.status(Packet::Open(Open {
            id,
            filename: "/etc/evil".to_owned(),
            pflags: OpenFlags::WRITE | OpenFlags::CREATE,
            attrs: FileAttributes::empty(),
        })),
        (StatusCode::PermissionDenied, "Permission denied".to_owned())
    );
    let id = c.next();
    assert_eq!(
        c.status(Packet::MkDir(MkDir {
            id,
            path: "d".to_owned(),
            attrs: FileAttributes::empty(),
        }))
        .0,
        StatusCode::Ok
    );
    assert_eq!(c.fs.get("/home/bob/d").unwrap().kind, Kind::Dir);
    let id = c.next();
    assert_eq!(
        c.status(Packet::Remove(Remove {
            id,
            filename: ".profile".to_owned(),
        }))
        .0,
        StatusCode::Ok
    );
    assert!(c.fs.get("/home/bob/.profile").is_none());
}

#[test]
fn sftp_bounds_packets_and_reports_unclosed_uploads() {
    let mut c = Client::new();
    let id = c.next();
    let handle = c.handle(Packet::Open(Open {
        id,
        filename: "/tmp/half".to_owned(),
        pflags: OpenFlags::WRITE | OpenFlags::CREATE,
        attrs: FileAttributes::empty(),
    }));
    let id = c.next();
    c.status(Packet::Write(Write {
        id,
        handle,
        offset: 0,
        data: b"partial".to_vec(),
    }));
    // A packet longer than OpenSSH's 256 KiB ends the subsystem; the open upload is reported.
    let mut cx = Cx {
        fs: &mut c.fs,
        user: "bob",
        store: &c.store,
    };
    let step = c.sftp.feed(&(300_000_u32).to_be_bytes(), &mut cx);
    assert_eq!(step.exit, Some(11));
    assert_eq!(step.uploads.len(), 1);
    assert_eq!(step.uploads[0].file.content, b"partial");
    assert!(!step.uploads[0].file.complete);
    // Before INIT, nothing is answered.
    let mut fresh = Transfer::Sftp(Sftp::new());
    let step = fresh.feed(
        &encode(Packet::RealPath(RealPath {
            id: 1,
            path: ".".to_owned(),
        })),
        &mut cx,
    );
    assert_eq!((step.reply.len(), step.exit), (0, Some(11)));
}

fn start_scp(command: &[&str], fs: &mut Vfs, store: &Arc<UploadStore>) -> (Scp, Step) {
    let words: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    let mut cx = Cx {
        fs,
        user: "bob",
        store,
    };
    Scp::start(&words, &mut cx).unwrap()
}

#[test]
fn scp_sink_receives_files_as_openssh_scp_t() {
    let store = store();
    let mut fs = Vfs::seeded("bob", "srv01");
    let (scp, step) = start_scp(&["scp", "-t", "--", "/tmp/"], &mut fs, &store);
    assert_eq!(step.reply, b"\0");
    let mut t = Transfer::Scp(Box::new(scp));
    let mut cx = Cx {
        fs: &mut fs,
        user: "bob",
        store: &store,
    };
    let step = t.feed(b"C0755 12 x.sh\n", &mut cx);
    assert_eq!(step.reply, b"\0");
    // The content arrives in pieces, with the trailing status byte.
    assert!(t.feed(b"#!/bin/s", &mut cx).reply.is_empty());
    let step = t.feed(b"h\nid\0", &mut cx);
    assert_eq!(step.reply, b"\0");
    assert_eq!(step.uploads.len(), 1);
    assert_eq!(step.uploads[0].path, "/tmp/x.sh");
    assert_eq!(
        step.uploads[0].file.sha256,
        hex::encode(Sha256::digest(b"#!/bin/sh\nid"))
    );
    assert_eq!(step.uploads[0].file.size, 12);
    // A refused name: OpenSSH's warning record, the transfer goes on.
    let step = t.feed(b"C0644 3 ../x\n", &mut cx);
    assert_eq!(step.reply, b"\x01scp: error: unexpected filename: ../x\n");
    assert_eq!(step.exit, Some(1));

    let (scp, _) = start_scp(&["scp", "-t", "/etc/x"], cx.fs, &store);
    let mut t = Transfer::Scp(Box::new(scp));
    let step = t.feed(b"C0644 3 x\n", &mut cx);
    assert_eq!(step.reply, b"\x01scp: /etc/x: Permission denied\n");
    let step = t.feed(b"D0755 0 d\n", &mut cx);
    assert_eq!(
        step.reply,
        b"\x01scp: protocol error: received directory without -r\n"
    );
    assert_eq!(step.exit, Some(1));

    let (scp, _) = start_scp(&["scp", "-r", "-t", "/tmp"], cx.fs, &store);
    let mut t = Transfer::Scp(Box::new(scp));
    let step = t.feed(b"D0755 0 d\nC0644 2 a\nhi\0E\n", &mut cx);
    assert_eq!(step.reply, b"\0\0\0\0");
    assert_eq!(step.uploads[0].path, "/tmp/d/a");
    assert_eq!(
        cx.fs.get("/tmp/d/a").unwrap().kind,
        Kind::File(b"hi".to_vec())
    );
    assert_eq!(t.end(&mut cx).exit, Some(0));
}

#[test]
fn scp_source_sends_file_system_files_as_openssh_scp_f() {
    let store = store();
    let mut fs = Vfs::seeded("bob", "srv01");
    let (scp, step) = start_scp(&["scp", "-f", "/etc/hostname", "/nope"], &mut fs, &store);
    assert!(step.reply.is_empty());
    let mut t = Transfer::Scp(Box::new(scp));
    let mut cx = Cx {
        fs: &mut fs,
        user: "bob",
        store: &store,
    };
    assert_eq!(t.feed(b"\0", &mut cx).reply, b"C0644 6 hostname\n");
    assert_eq!(t.feed(b"\0", &mut cx).reply, b"srv01\n\0");
    let step = t.feed(b"\0", &mut cx);
    assert_eq!(step.reply, b"\x01scp: /nope: No such file or directory\n");
    assert_eq!(step.exit, Some(1));
}

#[test]
fn modes_are_read_from_ls_strings() {
    assert_eq!(mode_bits("rwxr-xr-x"), 0o755);
    assert_eq!(mode_bits("rwxrwxrwt"), 0o1777);
    assert_eq!(mode_bits("rw-r--r--"), 0o644);
}
