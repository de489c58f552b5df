//! The medium-interaction shell a configured user gets: bash's prompt, a virtual file system
//! seeded per host ([`vfs`]), and the commands intruders type first (`cd`, `pwd`, `ls -la`,
//! `cat`, `echo`, `id`, `uname -a`, `ps`, `uptime`, `which`, `whoami`, `sudo`, `wget`,
//! `curl`, ...) answered as a fresh Debian 12 system answers them ([`commands`]). Nothing runs
//! and nothing is fetched: downloads and `sudo` passwords come back as [`Effect`]s for the
//! caller to log.
//!
//! ```text
//! $ cd /tmp && pwd              -> /tmp
//! $ wget http://x.example/a.sh  -> Effect::Download (never fetched), wget's DNS failure
//! $ sudo id                     -> [sudo] password for bob: (typed password -> Effect::SudoPassword)
//! ```

mod commands;
mod parse;
pub mod vfs;

use self::{parse::Token, vfs::Vfs};

/// Something the caller logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `wget`/`curl` asked for `url` (never fetched).
    Download {
        /// The program.
        tool: String,
        /// The URL as given.
        url: String,
    },
    /// A password typed at `sudo`'s prompt.
    SudoPassword {
        /// What was typed.
        password: String,
    },
}

/// What a command line did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What the terminal shows (`\n` line ends).
    pub output: Vec<u8>,
    /// The exit status of the last command.
    pub status: u32,
    /// What to log.
    pub effects: Vec<Effect>,
}

/// A `sudo` waiting for its password.
#[derive(Debug, Clone)]
struct Sudo {
    command: String,
    tries: u8,
}

/// One user's shell.
#[derive(Debug, Clone)]
pub struct Shell {
    user: String,
    hostname: String,
    password: String,
    cwd: String,
    fs: Vfs,
    status: u32,
    sudo: Option<Sudo>,
}

impl Shell {
    /// The shell of `user` (whose password is `password`) on `hostname`, in the home directory.
    #[must_use]
    pub fn new(user: &str, hostname: &str, password: &str) -> Self {
        Self {
            user: user.to_owned(),
            hostname: hostname.to_owned(),
            password: password.to_owned(),
            cwd: vfs::home(user),
            fs: Vfs::seeded(user, hostname),
            status: 0,
            sudo: None,
        }
    }

    /// The logged-in user.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Debian's login message.
    #[must_use]
    pub fn motd(&self) -> String {
        format!(
            "Linux {} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64\n\nThe programs included with the Debian GNU/Linux system are free software;\nthe exact distribution terms for each program are described in the\nindividual files in /usr/share/doc/*/copyright.\n\nDebian GNU/Linux comes with ABSOLUTELY NO WARRANTY, to the extent\npermitted by applicable law.\n",
            self.hostname
        )
    }

    /// bash's prompt: `user@host:~$ ` (`#` for root), the directory shortened with `~`.
    #[must_use]
    pub fn prompt(&self) -> String {
        let sign = if self.user == "root" { '#' } else { '$' };
        format!(
            "{}@{}:{}{sign} ",
            self.user,
            self.hostname,
            self.short_cwd()
        )
    }

    fn short_cwd(&self) -> String {
        let home = vfs::home(&self.user);
        if self.cwd == home {
            "~".to_owned()
        } else if let Some(rest) = self.cwd.strip_prefix(&format!("{home}/")) {
            format!("~/{rest}")
        } else {
            self.cwd.clone()
        }
    }

    /// The file system this shell sees (shared with SFTP and SCP on the same connection).
    #[must_use]
    pub const fn fs(&self) -> &Vfs {
        &self.fs
    }

    /// The user and the file system, to change it as that user.
    pub fn split(&mut self) -> (&str, &mut Vfs) {
        (&self.user, &mut self.fs)
    }

    /// The words of `line` when it is one simple command (no operator, no redirection), as
    /// bash would pass them; `None` otherwise.
    #[must_use]
    pub fn words(&self, line: &str) -> Option<Vec<String>> {
        let home = vfs::home(&self.user);
        let var = move |name: &str| {
            if name == "HOME" {
                home.clone()
            } else {
                String::new()
            }
        };
        parse::tokens(line, &var)
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => Some(w),
                Token::Op(_) | Token::Redirect { .. } => None,
            })
            .collect()
    }

    /// Whether the next line typed is a password (for `sudo`).
    #[must_use]
    pub fn wants_password(&self) -> bool {
        self.sudo.is_some()
    }

    /// Ctrl-C: drops a pending `sudo`.
    pub fn cancel(&mut self) {
        self.sudo = None;
    }

    /// Runs one command line; `tty` says whether the client has a terminal (for `ls` and
    /// `sudo`).
    pub fn run(&mut self, line: &str, tty: bool) -> Outcome {
        let user = self.user.clone();
        let home = vfs::home(&user);
        let cwd = self.cwd.clone();
        let hostname = self.hostname.clone();
        let status = self.status;
        let var = move |name: &str| match name {
            "HOME" => home.clone(),
            "USER" | "LOGNAME" => user.clone(),
            "PWD" => cwd.clone(),
            "HOSTNAME" => hostname.clone(),
            "SHELL" => "/bin/bash".to_owned(),
            "PATH" => "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games".to_owned(),
            "?" => status.to_string(),
            _ => String::new(),
        };
        let tokens = parse::tokens(line, &var);
        let mut outcome = Outcome::default();
        let mut stdin: Option<Vec<u8>> = None;
        let mut previous = "";
        let mut last = self.status;
        for (segment, op) in segments(&tokens) {
            let skip = (previous == "&&" && last != 0) || (previous == "||" && last == 0);
            previous = op;
            if skip {
                continue;
            }
            let (out, status) =
                self.simple(&segment, stdin.take().as_deref(), tty, &mut outcome.effects);
            last = status;
            self.status = status;
            outcome.status = status;
            if op == "|" {
                stdin = Some(out);
            } else {
                outcome.output.extend_from_slice(&out);
            }
            if self.sudo.is_some() {
                break;
            }
        }
        outcome
    }

    /// The password typed at `sudo`'s prompt.
    pub fn password(&mut self, typed: &str) -> Outcome {
        let mut outcome = Outcome {
            effects: vec![Effect::SudoPassword {
                password: typed.to_owned(),
            }],
            ..Outcome::default()
        };
        let Some(mut sudo) = self.sudo.take() else {
            return outcome;
        };
        if typed == self.password {
            let user = std::mem::replace(&mut self.user, "root".to_owned());
            let inner = self.run(&sudo.command, true);
            self.user = user;
            outcome.output = inner.output;
            outcome.status = inner.status;
            outcome.effects.extend(inner.effects);
            return outcome;
        }
        sudo.tries = sudo.tries.saturating_add(1);
        if sudo.tries >= 3 {
            outcome.output = b"sudo: 3 incorrect password attempts\n".to_vec();
            outcome.status = 1;
        } else {
            outcome.output =
                format!("Sorry, try again.\n[sudo] password for {}: ", self.user).into_bytes();
            self.sudo = Some(sudo);
        }
        outcome
    }

    /// One command with its redirections.
    fn simple(
        &mut self,
        words: &[Token],
        stdin: Option<&[u8]>,
        tty: bool,
        effects: &mut Vec<Effect>,
    ) -> (Vec<u8>, u32) {
        let mut args: Vec<String> = Vec::new();
        let mut target: Option<(String, bool)> = None;
        let mut iter = words.iter();
        while let Some(token) = iter.next() {
            match token {
                Token::Word(w) => args.push(w.clone()),
                Token::Redirect { append, fd } => {
                    let file = match iter.next() {
                        Some(Token::Word(w)) => w.clone(),
                        _ => {
                            return (
                                b"-bash: syntax error near unexpected token `newline'\n".to_vec(),
                                2,
                            );
                        }
                    };
                    if *fd == 1 {
                        target = Some((file, *append));
                    }
                }
                Token::Op(_) => {}
            }
        }
        let Some((program, rest)) = args.split_first() else {
            return (Vec::new(), self.status);
        };
        let (out, status) = if program == "sudo" {
            self.sudo_command(rest, tty)
        } else {
            commands::run(self, program, rest, stdin, tty, effects)
        };
        match target {
            Some((file, _)) if file == "/dev/null" => (Vec::new(), status),
            Some((file, append)) => {
                let path = vfs::normalize(&self.cwd, &file);
                match self.fs.write(&path, &out, append, &self.user) {
                    Ok(()) => (Vec::new(), status),
                    Err(reason) => (format!("-bash: {file}: {reason}\n").into_bytes(), 1),
                }
            }
            None => (out, status),
        }
    }

    fn sudo_command(&mut self, rest: &[String], tty: bool) -> (Vec<u8>, u32) {
        let command = rest.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        if command.is_empty() {
            return (
                b"usage: sudo -h | -K | -k | -V\nusage: sudo -v [-ABkNnS] [-g group] [-h host] [-p prompt] [-u user]\n".to_vec(),
                1,
            );
        }
        if self.user == "root" {
            let inner = self.run(&command, tty);
            return (inner.output, inner.status);
        }
        if !tty {
            return (
                b"sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\nsudo: a password is required\n".to_vec(),
                1,
            );
        }
        self.sudo = Some(Sudo { command, tries: 0 });
        (
            format!("[sudo] password for {}: ", self.user).into_bytes(),
            0,
        )
    }
}

/// Quotes `arg` again for re-parsing.
fn quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
        && !arg.is_empty()
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The simple commands of a line, each with the operator after it (`""` at the end).
fn segments(tokens: &[Token]) -> Vec<(Vec<Token>, &'static str)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        if let Token::Op(op) = token {
            out.push((std::mem::take(&mut current), *op));
        } else {
            current.push(token.clone());
        }
    }
    if !current.is_empty() {
        out.push((current, ""));
    }
    out
}

#[cfg(test)]
mod tests;
