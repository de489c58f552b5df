//! SMB1 as a Windows Server with SMB1 enabled answers it (`smb1`, default for 2016 and older):
//! the NT LM 0.12 NEGOTIATE, SESSION_SETUP_ANDX with or without extended security, and the
//! share a client then asks for.
//!
//! ```text
//! C: NEGOTIATE "NT LM 0.12", flags2 extended security
//! S: dialect 0, CAP_EXTENDED_SECURITY, server GUID, SPNEGO [NTLMSSP]
//! C: SESSION_SETUP_ANDX SPNEGO(NTLM NEGOTIATE), NativeOS "Nmap"
//! S: STATUS_MORE_PROCESSING_REQUIRED, SPNEGO(CHALLENGE: CORP, SRV01, corp.local, 6.3.9600),
//!    NativeOS "Windows Server 2012 R2 Standard 9600",
//!    NativeLanMan "Windows Server 2012 R2 Standard 6.3"
//! C: SESSION_SETUP_ANDX SPNEGO(AUTHENTICATE CORP\alice)
//!                                -> smb.login {"username":"alice", "dialect":"NT LM 0.12",
//!                                   "client_os":"Nmap", "hashcat": ..., ...}
//! S: STATUS_LOGON_FAILURE
//! ```
//! Without extended security the NEGOTIATE response carries an 8-byte challenge and the
//! domain and computer names, and SESSION_SETUP_ANDX the LM and NT responses to it (reported
//! as NetNTLMv1 or v2 as the client computed them). A null session is let in as on SMB2
//! (`accept_anonymous`), which `smb-os-discovery` needs to print the OS, computer, domain and
//! FQDN; its TREE_CONNECT_ANDX is logged as `smb.query` and refused.
//!
//! A NEGOTIATE that also offers `SMB 2.002` or `SMB 2.???` gets the SMB2 answer, as Windows
//! prefers SMB2; one without `NT LM 0.12` gets DialectIndex 0xFFFF. With SMB1 off (2019 and
//! later by default) SMB1-only NEGOTIATEs are dropped, as Windows Server 2019 drops them.

use std::sync::Arc;

use serde_json::Value;

use super::{
    MAX_LOGINS, Next, State,
    wire::{self, command as cmd2, status},
    wire1::{self, Setup, command, flags2},
};
use crate::services::{
    framework::session::Session,
    proto::shared::ntlm::{self, Exchange, Kind, ProductVersion, Step, message::Authenticate},
};

/// SESSION_SETUP_ANDX Action: logged in as guest.
const ACTION_GUEST: u16 = 0x0001;

/// One SMB1 connection's negotiated state.
#[derive(Debug, Clone)]
pub(super) struct Smb1 {
    /// Extended security was negotiated.
    extended: bool,
    /// The challenge of a NEGOTIATE without extended security.
    challenge: [u8; 8],
    /// The user id given at the first SESSION_SETUP_ANDX.
    uid: u16,
}

/// NativeOS and NativeLanMan of a Windows Server release, as its SMB1 server writes them.
#[must_use]
pub fn native_names(v: ProductVersion) -> (String, String) {
    let (product, suffix) = match v.build {
        7601 => ("Windows Server 2008 R2 Standard", " Service Pack 1"),
        9200 => ("Windows Server 2012 Standard", ""),
        9600 => ("Windows Server 2012 R2 Standard", ""),
        14393 => ("Windows Server 2016 Standard", ""),
        17763 => ("Windows Server 2019 Standard", ""),
        20348 => ("Windows Server 2022 Standard", ""),
        _ => ("Windows Server Standard", ""),
    };
    // Windows 10 and its servers still call their LAN Manager 6.3.
    let lanman = if v.major >= 10 {
        "6.3".to_owned()
    } else {
        format!("{}.{}", v.major, v.minor)
    };
    (
        format!("{product} {}{suffix}", v.build),
        format!("{product} {lanman}"),
    )
}

impl State<'_> {
    fn reply1(&self, h: &wire1::Header, code: u32, words: &[u8], bytes: &[u8]) -> Vec<u8> {
        let uid = self.smb1.as_ref().map_or(0, |s| s.uid);
        wire1::response(h, code, wire1::answer_flags2(h.flags2), uid, words, bytes)
    }

    /// An SMB1 message: NEGOTIATE, SESSION_SETUP_ANDX, TREE_CONNECT_ANDX, LOGOFF_ANDX,
    /// TREE_DISCONNECT; anything else is logged and refused.
    pub(super) async fn smb1(
        &mut self,
        session: &mut Session,
        msg: &[u8],
    ) -> Option<(Vec<u8>, Next)> {
        let Some(req) = wire1::parse(msg) else {
            session.data(msg).await;
            return None;
        };
        let h = req.header;
        match h.command {
            command::NEGOTIATE => self.negotiate1(session, msg, &h).await,
            command::SESSION_SETUP_ANDX if self.smb1.is_some() => {
                Some(self.session_setup1(session, msg, &req).await)
            }
            command::TREE_CONNECT_ANDX if self.smb1.is_some() => {
                let admitted = self.admitted && self.smb1.as_ref().is_some_and(|s| s.uid == h.uid);
                if !admitted {
                    let refusal = self.reply1(&h, status::USER_SESSION_DELETED, &[], &[]);
                    return Some((refusal, Next::Close));
                }
                let path = wire1::tree_connect_path(msg, &req).unwrap_or_default();
                let share = path.rsplit('\\').next().unwrap_or_default().to_owned();
                let mut extra = serde_json::Map::new();
                extra.insert("path".to_owned(), Value::String(path));
                extra.insert("share".to_owned(), Value::String(share));
                session.query(msg, extra).await;
                Some((
                    self.reply1(&h, status::ACCESS_DENIED, &[], &[]),
                    Next::Close,
                ))
            }
            command::LOGOFF_ANDX if self.smb1.is_some() => Some((
                self.reply1(&h, status::SUCCESS, &[0xff, 0, 0, 0], &[]),
                Next::Close,
            )),
            command::TREE_DISCONNECT if self.smb1.is_some() => {
                Some((self.reply1(&h, status::SUCCESS, &[], &[]), Next::Continue))
            }
            _ => {
                session.data(msg).await;
                Some((
                    self.reply1(&h, status::ACCESS_DENIED, &[], &[]),
                    Next::Close,
                ))
            }
        }
    }

    async fn negotiate1(
        &mut self,
        session: &mut Session,
        msg: &[u8],
        h: &wire1::Header,
    ) -> Option<(Vec<u8>, Next)> {
        let dialects = wire::smb1_dialects(msg).unwrap_or_default();
        let smb2 = if dialects.iter().any(|d| d == "SMB 2.???") {
            Some(wire::DIALECT_WILDCARD)
        } else if dialects.iter().any(|d| d == "SMB 2.002") {
            Some(0x0202)
        } else {
            None
        };
        if let Some(dialect) = smb2 {
            session.handshake_done();
            let header = wire::Header {
                command: cmd2::NEGOTIATE,
                credits: 1,
                flags: 0,
                message_id: 0,
                process_id: 0xfeff,
                tree_id: 0,
                session_id: 0,
            };
            return Some((self.negotiate_bytes(dialect, None, &header), Next::Continue));
        }
        if !self.server.smb1 {
            session.data(msg).await;
            return None;
        }
        let Some(index) = dialects
            .iter()
            .position(|d| d == wire1::NT_LM_012)
            .and_then(|i| u16::try_from(i).ok())
        else {
            session.data(msg).await;
            return Some((
                self.reply1(h, status::SUCCESS, &wire1::NO_DIALECT, &[]),
                Next::Close,
            ));
        };
        session.handshake_done();
        let extended = h.flags2 & flags2::EXTENDED_SECURITY != 0;
        let state = Smb1 {
            extended,
            challenge: rand::random(),
            uid: 0,
        };
        let identity = &self.server.identity;
        let (words, bytes) = wire1::negotiate_response(&wire1::Negotiation {
            index,
            extended,
            time: ntlm::filetime_now(),
            guid: self.server.guid,
            blob: &self.server.init_token,
            challenge: state.challenge,
            domain: &identity.netbios_domain,
            server: &identity.netbios_computer,
        });
        self.smb1 = Some(state);
        Some((
            self.reply1(h, status::SUCCESS, &words, &bytes),
            Next::Continue,
        ))
    }

    async fn session_setup1(
        &mut self,
        session: &mut Session,
        msg: &[u8],
        req: &wire1::Request<'_>,
    ) -> (Vec<u8>, Next) {
        let h = req.header;
        let extended = self.smb1.as_ref().is_some_and(|s| s.extended);
        let setup = wire1::session_setup(msg, req);
        let (blob, native_os) = match setup {
            Some(Setup::Extended { blob, native_os }) if extended => (blob, native_os),
            Some(Setup::Basic {
                lm,
                nt,
                account,
                domain,
                native_os,
            }) if !extended => {
                let auth = Authenticate {
                    lm_response: lm.to_vec(),
                    nt_response: nt.to_vec(),
                    domain,
                    username: account,
                    workstation: String::new(),
                    flags: 0,
                    version: None,
                };
                let challenge = self.smb1.as_ref().map_or([0; 8], |s| s.challenge);
                if !self.count_login() {
                    return (
                        self.reply1(&h, status::ACCESS_DENIED, &[], &[]),
                        Next::Close,
                    );
                }
                self.new_uid();
                let captured = ntlm::capture(&auth, &challenge);
                return self
                    .finish1(session, msg, &h, &captured, &native_os, None)
                    .await;
            }
            _ => {
                session.data(msg).await;
                return (
                    self.reply1(&h, status::INVALID_PARAMETER, &[], &[]),
                    Next::Close,
                );
            }
        };
        if self.exchange.is_none() {
            if !self.count_login() {
                return (
                    self.reply1(&h, status::ACCESS_DENIED, &[], &[]),
                    Next::Close,
                );
            }
            self.new_uid();
            self.exchange = Some(Exchange::new(Arc::clone(&self.server.identity)));
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return (
                self.reply1(&h, status::INVALID_PARAMETER, &[], &[]),
                Next::Close,
            );
        };
        match exchange.step(blob) {
            Ok(Step::Reply(token)) => {
                let (os, lanman) = native_names(self.server.identity.version);
                let (words, bytes) =
                    wire1::setup_response_extended(0, &token, &os, &lanman, h.unicode());
                let reply = self.reply1(&h, status::MORE_PROCESSING_REQUIRED, &words, &bytes);
                (reply, Next::Continue)
            }
            Ok(Step::Done(captured)) => {
                let exchange = self.exchange.take();
                self.finish1(session, blob, &h, &captured, &native_os, exchange)
                    .await
            }
            Err(err) => {
                tracing::debug!(error = %err, "SMB1 session setup without a usable NTLM token.");
                session.data(blob).await;
                self.exchange = None;
                (
                    self.reply1(&h, status::LOGON_FAILURE, &[], &[]),
                    Next::Continue,
                )
            }
        }
    }

    /// Counts a login attempt; false once the connection has had its share.
    fn count_login(&mut self) -> bool {
        self.logins = self.logins.saturating_add(1);
        self.logins <= MAX_LOGINS
    }

    fn new_uid(&mut self) {
        if let Some(s) = self.smb1.as_mut() {
            // Windows hands out small ids with the high bit of the low byte clear.
            s.uid = (rand::random::<u16>() & 0x7ff7) | 0x0800;
        }
    }

    /// Reports a finished login, then admits it (null session, or `accept_guest`) or refuses it.
    async fn finish1(
        &mut self,
        session: &mut Session,
        data: &[u8],
        h: &wire1::Header,
        captured: &ntlm::Captured,
        native_os: &str,
        exchange: Option<Exchange>,
    ) -> (Vec<u8>, Next) {
        let mut extra = captured.extra();
        extra.insert(
            "dialect".to_owned(),
            Value::String(wire1::NT_LM_012.to_owned()),
        );
        if !native_os.is_empty() {
            extra.insert("client_os".to_owned(), Value::String(native_os.to_owned()));
        }
        session.login(data, extra).await;
        let anonymous = captured.kind == Kind::Anonymous;
        let admit = if anonymous {
            self.server.accept_anonymous
        } else {
            self.server.accept_guest
        };
        if !admit {
            return (
                self.reply1(h, status::LOGON_FAILURE, &[], &[]),
                Next::Continue,
            );
        }
        self.admitted = true;
        let action = if anonymous { 0 } else { ACTION_GUEST };
        let (os, lanman) = native_names(self.server.identity.version);
        let (words, bytes) = match exchange {
            Some(exchange) => {
                let token = exchange.accept().unwrap_or_default();
                wire1::setup_response_extended(action, &token, &os, &lanman, h.unicode())
            }
            None => wire1::setup_response_basic(
                action,
                &os,
                &lanman,
                &self.server.identity.netbios_domain,
                h.unicode(),
            ),
        };
        (
            self.reply1(h, status::SUCCESS, &words, &bytes),
            Next::Continue,
        )
    }
}
