//! The data side of a command: `PASV`/`EPSV` listeners, the listings, and the transfers with
//! the control replies around them (`125`/`150`, then `226` or `426`), uploads captured and
//! reported as `ftp.upload`.

use std::net::IpAddr;

use chrono::Utc;
use serde_json::Value;

use super::{
    FtpServer, Next, State,
    data::{self, Received},
    profile::{Product, Transfer},
    vfs::{self, Tree},
};
use crate::{
    event::Action,
    services::{
        framework::{
            conn::Conn,
            session::{Session, SessionError, extra},
        },
        proto::shared::upload::Capture,
    },
};

/// A transfer over the data connection.
pub(super) enum Job {
    Send {
        what: TransferKind,
        bytes: Vec<u8>,
    },
    Receive {
        command: &'static str,
        name: String,
        path: String,
    },
}

#[derive(Clone)]
pub(super) enum TransferKind {
    List,
    Mlsd,
    Retr(String, u64),
}

/// `PASV` or `EPSV`: a listener on the address the client reached.
pub(super) async fn passive(ftp: &FtpServer, st: &mut State, extended: bool, arg: &str) -> Next {
    let p = ftp.product;
    if extended && arg.trim().eq_ignore_ascii_case("ALL") {
        return Next::Reply("200 EPSV ALL ok.\r\n".to_owned());
    }
    let v4 = match st.local {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped(),
    };
    if !extended && v4.is_none() {
        // PASV cannot name an IPv6 address (RFC 2428): the client should use EPSV.
        return Next::Reply(p.data_failed().to_owned());
    }
    // The old listener, if any, goes first: it holds one of the instance's slots.
    st.pending = None;
    let Some(pending) = data::passive(st.local, &ftp.passive).await else {
        return Next::Reply(p.data_failed().to_owned());
    };
    let Some(port) = data::port_of(&pending) else {
        return Next::Reply(p.data_failed().to_owned());
    };
    st.pending = Some(pending);
    Next::Reply(match (extended, v4) {
        (false, Some(ip)) => p.pasv(ip, port),
        _ => p.epsv(port),
    })
}

/// `LIST`, `NLST`, `MLSD` of the current directory or the one named (options such as `-la`
/// are ignored, as servers do).
pub(super) fn listing(ftp: &FtpServer, st: &State, verb: &str, arg: &str) -> Next {
    let p = ftp.product;
    let target = arg
        .split_whitespace()
        .find(|w| !w.starts_with('-'))
        .unwrap_or("");
    let path = Tree::resolve(&st.cwd, target);
    let Some(node) = st.tree.get(&path, p) else {
        return match verb {
            // vsftpd and IIS list nothing for a name that does not exist.
            "MLSD" => Next::Reply(p.no_file(target, verb)),
            _ if p == Product::Proftpd => Next::Reply(p.no_file(target, verb)),
            _ => Next::Transfer(Job::Send {
                what: TransferKind::List,
                bytes: Vec::new(),
            }),
        };
    };
    let children = if node.is_dir() {
        st.tree.children(&node.path)
    } else {
        vec![node]
    };
    let (what, bytes) = match verb {
        "NLST" => (TransferKind::List, vfs::nlst(&children)),
        "MLSD" => (TransferKind::Mlsd, vfs::mlsd(node, &children)),
        _ => (
            TransferKind::List,
            vfs::list(&children, p.style(), Utc::now()),
        ),
    };
    Next::Transfer(Job::Send {
        what,
        bytes: bytes.into_bytes(),
    })
}

/// Runs a transfer over the pending data connection, with the control replies around it.
pub(super) async fn transfer(
    ftp: &FtpServer,
    session: &Session,
    conn: &mut Conn<tokio::net::TcpStream>,
    st: &mut State,
    job: Job,
) -> Result<(), SessionError> {
    let p = ftp.product;
    let Some(pending) = st.pending.take() else {
        return conn.write_all(p.no_data().as_bytes(), session).await;
    };
    let Some((stream, ready)) = data::open(pending, st.peer, ftp.data_timeout).await else {
        return conn.write_all(p.data_failed().as_bytes(), session).await;
    };
    match job {
        Job::Send { what, bytes } => {
            let (label, list) = match &what {
                TransferKind::List => (Transfer::List, true),
                TransferKind::Mlsd => (Transfer::Mlsd, true),
                TransferKind::Retr(name, size) => (Transfer::Retr(name, *size), false),
            };
            conn.write_all(p.opening(label, ready).as_bytes(), session)
                .await?;
            let done = if data::send(stream, &bytes, ftp.data_timeout).await {
                p.done(list)
            } else {
                p.transfer_aborted()
            };
            conn.write_all(done.as_bytes(), session).await
        }
        Job::Receive {
            command,
            name,
            path,
        } => {
            conn.write_all(p.opening(Transfer::Stor(&name), ready).as_bytes(), session)
                .await?;
            st.rest = 0;
            let mut capture = Capture::begin(
                &ftp.state_dir,
                ftp.keep,
                session.limits().max_data_bytes,
                ftp.budget.clone(),
            )
            .await;
            let received =
                data::receive(stream, &mut capture, ftp.max_upload, ftp.data_timeout).await;
            let got = capture.finish().await;
            let _listed = st.tree.add_upload(&path, got.size, Utc::now());
            let mut fields = extra([
                ("command", Value::from(command)),
                ("filename", Value::String(name)),
                ("path", Value::String(path)),
                ("size", Value::from(got.size)),
                ("sha256", Value::String(got.sha256)),
                ("complete", Value::Bool(received == Received::Complete)),
                ("stored_bytes", Value::from(got.kept)),
            ]);
            if let Some(user) = &st.logged_in {
                fields.insert("username".to_owned(), Value::String(user.clone()));
            }
            if let Some(stored) = got.stored {
                fields.insert(
                    "stored".to_owned(),
                    Value::String(stored.display().to_string()),
                );
            }
            session.emit(Action::Upload, &got.head, fields).await;
            let done = if received == Received::Broken {
                p.transfer_aborted()
            } else {
                p.done(false)
            };
            conn.write_all(done.as_bytes(), session).await
        }
    }
}
