//! One SSH connection after the identification: authentication as sshd answers it (several
//! passwords per connection, keys refused at once, wrong passwords delayed), the shell and
//! `exec` channels of a configured user, their `sftp` subsystem and `scp -t`/`scp -f`
//! ([`super::transfer`]), and refused `direct-tcpip` channels.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use russh::{
    Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty,
    keys::HashAlg,
    server::{
        Auth, ChannelOpenHandle, Handler as RusshHandler, Msg, PublicKeyOffer,
        Session as RusshSession,
    },
};
use serde_json::{Map, Value};

use crate::{event::Action, services::framework::session::Session};

use super::{
    shell::{Effect, Shell},
    transfer::{Cx, Step, Transfer, scp::Scp, sftp::Sftp, store::UploadStore},
};

/// File transfers (SFTP, SCP) open at once on one connection.
const MAX_TRANSFERS: usize = 8;

/// The russh handler of one connection.
pub struct SshSession {
    session: Arc<Session>,
    users: BTreeMap<String, String>,
    banner: Option<String>,
    client_version: String,
    hostname: String,
    auth_failure_delay: Duration,
    authenticated: Arc<AtomicBool>,
    /// The shell of the configured user who logged in, once one has.
    shell: Option<Shell>,
    /// The command line being typed in the shell.
    line: Vec<u8>,
    /// Whether the client asked for a terminal.
    pty: bool,
    max_line: usize,
    /// The SFTP and SCP channels.
    transfers: BTreeMap<ChannelId, Transfer>,
    store: Arc<UploadStore>,
}

impl SshSession {
    /// A handler for `session`, whose client identified itself as `client_version`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one per piece of the instance's configuration the handler keeps"
    )]
    pub fn new(
        session: Arc<Session>,
        users: BTreeMap<String, String>,
        banner: Option<String>,
        client_version: String,
        hostname: String,
        auth_failure_delay: Duration,
        authenticated: Arc<AtomicBool>,
        store: Arc<UploadStore>,
    ) -> Self {
        let max_line = session.limits().max_line_bytes;
        Self {
            session,
            users,
            banner,
            client_version,
            hostname,
            auth_failure_delay,
            authenticated,
            shell: None,
            line: Vec::new(),
            pty: false,
            max_line,
            transfers: BTreeMap::new(),
            store,
        }
    }

    fn base(&self, user: &str) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user.to_owned()));
        extra.insert(
            "client_version".to_owned(),
            Value::String(self.client_version.clone()),
        );
        extra
    }

    /// What sshd offers again after a failure: both methods, so clients keep trying.
    fn reject() -> Auth {
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        methods.push(MethodKind::Password);
        Auth::Reject {
            proceed_with_methods: Some(methods),
            partial_success: false,
        }
    }

    /// Logs `command` as `ssh.query` and runs it in the shell.
    async fn run(&mut self, command: &str, mode: &str) -> (Vec<u8>, u32) {
        if self.shell.is_none() {
            return (Vec::new(), 1);
        }
        self.log_command(command, mode).await;
        let Some(shell) = self.shell.as_mut() else {
            return (Vec::new(), 1);
        };
        let outcome = shell.run(command, self.pty);
        for effect in &outcome.effects {
            self.log_effect(effect).await;
        }
        (outcome.output, outcome.status)
    }

    /// Logs `command` as `ssh.query`.
    async fn log_command(&self, command: &str, mode: &str) {
        let mut extra = Map::new();
        extra.insert(
            "username".to_owned(),
            Value::String(self.shell.as_ref().map_or("", Shell::user).to_owned()),
        );
        extra.insert("command".to_owned(), Value::String(command.to_owned()));
        extra.insert("mode".to_owned(), Value::String(mode.to_owned()));
        self.session.query(command.as_bytes(), extra).await;
    }

    async fn log_effect(&self, effect: &Effect) {
        let user = self.shell.as_ref().map_or("", Shell::user).to_owned();
        match effect {
            Effect::Download { tool, url } => {
                let mut extra = Map::new();
                extra.insert("username".to_owned(), Value::String(user));
                extra.insert("command".to_owned(), Value::String(tool.clone()));
                extra.insert("mode".to_owned(), Value::String("download".to_owned()));
                extra.insert("url".to_owned(), Value::String(url.clone()));
                self.session.query(url.as_bytes(), extra).await;
            }
            Effect::SudoPassword { password } => {
                let mut extra = self.base(&user);
                extra.insert("password".to_owned(), Value::String(password.clone()));
                extra.insert("sudo".to_owned(), Value::Bool(true));
                self.session.login(&[], extra).await;
            }
        }
    }

    /// Feeds a transfer channel and does what it asks.
    async fn transfer(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), russh::Error> {
        let (Some(shell), Some(transfer)) = (self.shell.as_mut(), self.transfers.get_mut(&channel))
        else {
            return Ok(());
        };
        let (user, fs) = shell.split();
        let mut cx = Cx {
            fs,
            user,
            store: &self.store,
        };
        let step = transfer.feed(data, &mut cx);
        self.apply(channel, step, session).await
    }

    /// Ends a transfer channel's transfer (the client's EOF or close).
    fn end_transfer(&mut self, channel: ChannelId) -> Step {
        let (Some(shell), Some(transfer)) = (self.shell.as_mut(), self.transfers.get_mut(&channel))
        else {
            return Step::default();
        };
        let (user, fs) = shell.split();
        let mut cx = Cx {
            fs,
            user,
            store: &self.store,
        };
        transfer.end(&mut cx)
    }

    /// Sends a transfer's answer, logs its operations and uploads, closes when it is done.
    async fn apply(
        &mut self,
        channel: ChannelId,
        step: Step,
        session: &mut RusshSession,
    ) -> Result<(), russh::Error> {
        if !step.reply.is_empty() {
            session.data(channel, step.reply)?;
        }
        let user = self.shell.as_ref().map_or("", Shell::user).to_owned();
        let mode = match self.transfers.get(&channel) {
            Some(Transfer::Scp(_)) => "scp",
            _ => "sftp",
        };
        for op in step.ops {
            let mut extra = Map::new();
            extra.insert("username".to_owned(), Value::String(user.clone()));
            extra.insert("mode".to_owned(), Value::String("sftp".to_owned()));
            extra.insert("command".to_owned(), Value::String(op.command.to_owned()));
            extra.insert("path".to_owned(), Value::String(op.path.clone()));
            if let Some(detail) = op.detail {
                let key = if op.command == "open" {
                    "flags"
                } else {
                    "target"
                };
                extra.insert(key.to_owned(), Value::String(detail));
            }
            self.session.query(op.path.as_bytes(), extra).await;
        }
        for upload in step.uploads {
            let stored = self.store.keep(&upload.file).await;
            let file = &upload.file;
            let mut extra = Map::new();
            extra.insert("username".to_owned(), Value::String(user.clone()));
            extra.insert("mode".to_owned(), Value::String(mode.to_owned()));
            extra.insert("path".to_owned(), Value::String(upload.path.clone()));
            extra.insert("size".to_owned(), Value::from(file.size));
            extra.insert("sha256".to_owned(), Value::String(file.sha256.clone()));
            if let Some(stored) = stored {
                extra.insert("stored".to_owned(), Value::String(stored));
            }
            extra.insert("truncated".to_owned(), Value::Bool(file.truncated));
            extra.insert("complete".to_owned(), Value::Bool(file.complete));
            self.session
                .emit(Action::Upload, &file.content, extra)
                .await;
        }
        if let Some(status) = step.exit {
            self.transfers.remove(&channel);
            Self::close(session, channel, status)?;
        }
        Ok(())
    }

    /// Starts `scp -t`/`scp -f` on `channel` if `command` is one; false otherwise.
    async fn start_scp(
        &mut self,
        channel: ChannelId,
        command: &str,
        session: &mut RusshSession,
    ) -> Result<bool, russh::Error> {
        let Some(shell) = self.shell.as_mut() else {
            return Ok(false);
        };
        let Some(words) = shell.words(command) else {
            return Ok(false);
        };
        let (user, fs) = shell.split();
        let mut cx = Cx {
            fs,
            user,
            store: &self.store,
        };
        let Some((scp, step)) = Scp::start(&words, &mut cx) else {
            return Ok(false);
        };
        self.log_command(command, "exec").await;
        session.channel_success(channel)?;
        if self.transfers.len() >= MAX_TRANSFERS {
            Self::close(session, channel, 1)?;
            return Ok(true);
        }
        self.transfers.insert(channel, Transfer::Scp(Box::new(scp)));
        self.apply(channel, step, session).await?;
        Ok(true)
    }

    fn prompt(&self) -> Vec<u8> {
        self.shell
            .as_ref()
            .map(|s| s.prompt().into_bytes())
            .unwrap_or_default()
    }

    fn close(
        session: &mut RusshSession,
        channel: ChannelId,
        status: u32,
    ) -> Result<(), russh::Error> {
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// Handles one line typed in the interactive shell.
    async fn line_entered(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
        echo: &mut Vec<u8>,
    ) -> Result<bool, russh::Error> {
        let typed = std::mem::take(&mut self.line);
        let command = String::from_utf8_lossy(&typed).into_owned();
        if self.shell.as_ref().is_some_and(Shell::wants_password) {
            echo.extend_from_slice(b"\r\n");
            let outcome = self
                .shell
                .as_mut()
                .map(|s| s.password(&command))
                .unwrap_or_default();
            for effect in &outcome.effects {
                self.log_effect(effect).await;
            }
            echo.extend_from_slice(&crlf(&outcome.output));
        } else {
            echo.extend_from_slice(b"\r\n");
            let trimmed = command.trim();
            if trimmed == "exit" || trimmed == "logout" {
                session.data(channel, std::mem::take(echo))?;
                session.data(channel, b"logout\r\n".to_vec())?;
                Self::close(session, channel, 0)?;
                return Ok(false);
            }
            if !trimmed.is_empty() {
                let (output, _) = self.run(&command, "shell").await;
                echo.extend_from_slice(&crlf(&output));
            }
        }
        if !self.shell.as_ref().is_some_and(Shell::wants_password) {
            echo.extend_from_slice(&self.prompt());
        }
        Ok(true)
    }
}

/// `\n` as a terminal wants it.
fn crlf(output: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(output.len());
    for &b in output {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

impl RusshHandler for SshSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let mut extra = self.base(user);
        extra.insert("password".to_owned(), Value::String(password.to_owned()));
        self.session.login(&[], extra).await;
        if self.users.get(user).is_some_and(|p| p == password) {
            self.authenticated.store(true, Ordering::Relaxed);
            self.shell = Some(Shell::new(user, &self.hostname, password));
            Ok(Auth::Accept)
        } else {
            tokio::time::sleep(self.auth_failure_delay).await;
            Ok(Self::reject())
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let key = offer.public_key;
        let mut extra = self.base(user);
        extra.insert(
            "key_type".to_owned(),
            Value::String(key.algorithm().as_str().to_owned()),
        );
        extra.insert(
            "public_key".to_owned(),
            Value::String(key.to_openssh().unwrap_or_default()),
        );
        extra.insert(
            "fingerprint".to_owned(),
            Value::String(key.fingerprint(HashAlg::Sha256).to_string()),
        );
        self.session.login(&[], extra).await;
        Ok(Self::reject())
    }

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.banner.clone())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if self.shell.is_some() {
            reply.accept().await;
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let user = self.shell.as_ref().map_or("", Shell::user).to_owned();
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user));
        extra.insert("mode".to_owned(), Value::String("direct-tcpip".to_owned()));
        extra.insert(
            "target_host".to_owned(),
            Value::String(host_to_connect.to_owned()),
        );
        extra.insert("target_port".to_owned(), Value::from(port_to_connect));
        extra.insert(
            "originator_address".to_owned(),
            Value::String(originator_address.to_owned()),
        );
        extra.insert("originator_port".to_owned(), Value::from(originator_port));
        let target = format!("{host_to_connect}:{port_to_connect}");
        self.session.query(target.as_bytes(), extra).await;
        // sshd with `AllowTcpForwarding no`: administratively prohibited.
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_w: u32,
        _pix_h: u32,
        _modes: &[(Pty, u32)],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        self.pty = true;
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let motd = self.shell.as_ref().map(Shell::motd).unwrap_or_default();
        let mut out = crlf(motd.as_bytes());
        out.extend_from_slice(&self.prompt());
        session.data(channel, out)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let user = self.shell.as_ref().map_or("", Shell::user).to_owned();
        let mut extra = Map::new();
        extra.insert("username".to_owned(), Value::String(user));
        extra.insert("mode".to_owned(), Value::String("subsystem".to_owned()));
        extra.insert("command".to_owned(), Value::String(name.to_owned()));
        self.session.query(name.as_bytes(), extra).await;
        if name == "sftp" && self.shell.is_some() && self.transfers.len() < MAX_TRANSFERS {
            self.transfers.insert(channel, Transfer::Sftp(Sftp::new()));
            session.channel_success(channel)?;
        } else {
            // sshd: `subsystem request for <name> failed, subsystem not found`.
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if self.transfers.contains_key(&channel) {
            let mut step = self.end_transfer(channel);
            // sftp-server exits when its input ends.
            step.exit = step.exit.or(Some(0));
            self.apply(channel, step, session).await?;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if self.transfers.contains_key(&channel) {
            // The channel is gone: nothing is sent, uploads still open are reported.
            let step = Step {
                reply: Vec::new(),
                exit: None,
                ..self.end_transfer(channel)
            };
            self.apply(channel, step, session).await?;
            self.transfers.remove(&channel);
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        if self.start_scp(channel, &command, session).await? {
            return Ok(());
        }
        session.channel_success(channel)?;
        let (output, status) = self.run(&command, "exec").await;
        let output = if self.pty { crlf(&output) } else { output };
        session.data(channel, output)?;
        Self::close(session, channel, status)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut RusshSession,
    ) -> Result<(), Self::Error> {
        if self.transfers.contains_key(&channel) {
            return self.transfer(channel, data, session).await;
        }
        let mut echo = Vec::new();
        let hidden = self.shell.as_ref().is_some_and(Shell::wants_password);
        for &byte in data {
            match byte {
                b'\r' | b'\n' => {
                    let open = self.line_entered(channel, session, &mut echo).await?;
                    if !open {
                        return Ok(());
                    }
                }
                0x04 if self.line.is_empty() => {
                    session.data(channel, b"logout\r\n".to_vec())?;
                    return Self::close(session, channel, 0);
                }
                0x7f | 0x08 if !self.line.is_empty() => {
                    self.line.pop();
                    if !hidden {
                        echo.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x03 => {
                    self.line.clear();
                    if let Some(shell) = self.shell.as_mut() {
                        shell.cancel();
                    }
                    echo.extend_from_slice(b"^C\r\n");
                    echo.extend_from_slice(&self.prompt());
                }
                b if b >= 0x20 && self.line.len() < self.max_line => {
                    self.line.push(b);
                    if !hidden {
                        echo.push(b);
                    }
                }
                _ => {}
            }
        }
        if !echo.is_empty() {
            session.data(channel, echo)?;
        }
        Ok(())
    }
}
