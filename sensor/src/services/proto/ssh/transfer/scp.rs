//! Legacy SCP (`scp -O`, or any client running `scp -t`/`scp -f` with `exec`) as OpenSSH
//! 9.2's `scp` answers it on the remote side, over the virtual file system. Hand-written: no
//! crate implements the server side of this protocol, which is a few line records.
//!
//! ```text
//! exec "scp -t /tmp"          S: \0
//! C: C0644 12 x.sh\n          S: \0          (or \x01scp: /etc/x.sh: Permission denied\n)
//! C: <12 bytes> \0            S: \0          -> ssh.upload {"mode":"scp","path":"/tmp/x.sh",...}
//! C: EOF                      S: exit-status 0
//! exec "scp -f /etc/passwd"   C: \0   S: C0644 1234 passwd\n   C: \0   S: <1234 bytes>\0   C: \0
//! ```
//! `D`/`E` records (`-r`) create directories, `T` records are acknowledged; errors are
//! OpenSSH's (`protocol error: ...`, `error: unexpected filename: ...`). Downloads send
//! files only (a directory is `not a regular file`, as without `-r`).

use std::collections::VecDeque;

use super::{Cx, MTIME, Step, finished, join, store::Capture};
use crate::services::proto::ssh::shell::vfs::Kind;

/// OpenSSH's control-record buffer.
const MAX_LINE: usize = 2048;
/// Directory records nested at once.
const MAX_DEPTH: usize = 16;
/// Files one `scp -f` sends.
const MAX_SOURCES: usize = 64;

/// Where an `scp -t` stands.
#[derive(Debug)]
enum Sink {
    /// Reading a control record.
    Line(Vec<u8>),
    /// Reading a file's bytes.
    Data {
        path: String,
        capture: Capture,
        left: u64,
    },
    /// Waiting for the byte after a file's content.
    Trailer { path: String, capture: Capture },
}

/// Where an `scp -f` stands.
#[derive(Debug)]
enum Source {
    /// Waiting for the client's first `\0`.
    Start,
    /// Waiting for the answer to a `T` record; the `C` record and content follow.
    TimeAck { header: Vec<u8>, content: Vec<u8> },
    /// Waiting for the answer to a `C` record.
    HeaderAck { content: Vec<u8> },
    /// Waiting for the answer after a file's content.
    DataAck,
    /// Reading an error line the client sent (`\x01...\n`).
    Error { fatal: bool, len: usize },
}

#[derive(Debug)]
enum Mode {
    Sink {
        state: Sink,
        target: String,
        target_is_dir: bool,
        recursive: bool,
        /// The directories entered with `D` records.
        dirs: Vec<String>,
        first: bool,
    },
    Source {
        state: Source,
        queue: VecDeque<String>,
        preserve: bool,
    },
}

/// One `scp -t` or `scp -f`.
#[derive(Debug)]
pub struct Scp {
    mode: Mode,
    errors: u32,
}

/// `scp: <message>\n` as a warning record.
fn run_err(step: &mut Step, message: &str) {
    let clean: String = message
        .chars()
        .filter(|c| *c != '\n')
        .take(MAX_LINE)
        .collect();
    step.reply.push(1);
    step.reply
        .extend_from_slice(format!("scp: {clean}\n").as_bytes());
}

impl Scp {
    /// The SCP side `words` (an `exec` command) asks for, if it is `scp -t` or `scp -f`, with
    /// what to send first.
    #[must_use]
    pub fn start(words: &[String], cx: &mut Cx<'_>) -> Option<(Self, Step)> {
        let (program, args) = words.split_first()?;
        if program.rsplit('/').next() != Some("scp") {
            return None;
        }
        let (mut to, mut from, mut recursive, mut preserve, mut dir) =
            (false, false, false, false, false);
        let mut paths = Vec::new();
        let mut options = true;
        for arg in args {
            match arg.strip_prefix('-') {
                Some("-") if options => options = false,
                Some(flags) if options && !flags.is_empty() => {
                    for c in flags.chars() {
                        match c {
                            't' => to = true,
                            'f' => from = true,
                            'r' => recursive = true,
                            'p' => preserve = true,
                            'd' => dir = true,
                            _ => {}
                        }
                    }
                }
                _ => paths.push(arg.clone()),
            }
        }
        let mut step = Step::default();
        let mut scp = Self {
            mode: Mode::Source {
                state: Source::Start,
                queue: VecDeque::new(),
                preserve,
            },
            errors: 0,
        };
        if from && !to {
            scp.mode = Mode::Source {
                state: Source::Start,
                queue: paths.into_iter().take(MAX_SOURCES).collect(),
                preserve,
            };
            return Some((scp, step));
        }
        if !to {
            return None;
        }
        if paths.len() != 1 {
            run_err(&mut step, "ambiguous target");
            step.exit = Some(1);
            return Some((scp, step));
        }
        let shown = paths.first().map_or(".", String::as_str);
        let target = cx.absolute(if shown.is_empty() { "." } else { shown });
        let target_is_dir = cx
            .fs
            .resolve(&target)
            .is_some_and(|(_, n)| n.kind == Kind::Dir);
        if dir && !target_is_dir {
            run_err(&mut step, &format!("{shown}: Not a directory"));
            step.exit = Some(1);
            return Some((scp, step));
        }
        let target = cx.fs.resolve(&target).map_or(target, |(real, _)| real);
        scp.mode = Mode::Sink {
            state: Sink::Line(Vec::new()),
            target,
            target_is_dir,
            recursive,
            dirs: Vec::new(),
            first: true,
        };
        step.reply.push(0);
        Some((scp, step))
    }

    /// Bytes from the client.
    pub fn feed(&mut self, data: &[u8], cx: &mut Cx<'_>) -> Step {
        let mut step = Step::default();
        let mut rest = data;
        while !rest.is_empty() && step.exit.is_none() {
            rest = if matches!(self.mode, Mode::Sink { .. }) {
                self.sink(rest, cx, &mut step)
            } else {
                self.source(rest, cx, &mut step)
            };
        }
        step
    }

    /// The client sent EOF.
    pub fn end(&mut self, cx: &mut Cx<'_>) -> Step {
        let mut step = Step::default();
        let status = u32::from(self.errors > 0);
        if let Mode::Sink { state, .. } = &mut self.mode {
            match std::mem::replace(state, Sink::Line(Vec::new())) {
                Sink::Data { path, capture, .. } | Sink::Trailer { path, capture } => {
                    finished(cx, path, capture.finish(false), &mut step);
                    step.exit = Some(1);
                    return step;
                }
                Sink::Line(_) => {}
            }
        }
        step.exit = Some(status);
        step
    }

    /// One piece of `scp -t`: returns what is left of `data`.
    fn sink<'d>(&mut self, data: &'d [u8], cx: &mut Cx<'_>, step: &mut Step) -> &'d [u8] {
        let Mode::Sink { state, .. } = &mut self.mode else {
            return &[];
        };
        match state {
            Sink::Line(line) => {
                let end = data.iter().position(|&b| b == b'\n');
                let take = end.map_or(data.len(), |e| e.saturating_add(1));
                line.extend_from_slice(data.get(..take).unwrap_or_default());
                if line.len() > MAX_LINE {
                    protocol_error(step, "expected control record");
                    return &[];
                }
                if end.is_some() {
                    let record = std::mem::take(line);
                    self.record(&record, cx, step);
                }
                data.get(take..).unwrap_or_default()
            }
            Sink::Data { capture, left, .. } => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                let chunk = data.get(..n).unwrap_or_default();
                capture.write(capture.size(), chunk);
                *left = left.saturating_sub(n as u64);
                if *left == 0
                    && let Sink::Data { path, capture, .. } =
                        std::mem::replace(state, Sink::Line(Vec::new()))
                {
                    *state = Sink::Trailer { path, capture };
                }
                data.get(n..).unwrap_or_default()
            }
            Sink::Trailer { .. } => {
                if let Sink::Trailer { path, capture } =
                    std::mem::replace(state, Sink::Line(Vec::new()))
                {
                    finished(cx, path, capture.finish(true), step);
                }
                step.reply.push(0);
                data.get(1..).unwrap_or_default()
            }
        }
    }

    /// One control record (`line` ends with `\n`).
    fn record(&mut self, line: &[u8], cx: &mut Cx<'_>, step: &mut Step) {
        let Mode::Sink {
            state,
            target,
            target_is_dir,
            recursive,
            dirs,
            first,
        } = &mut self.mode
        else {
            return;
        };
        let was_first = std::mem::replace(first, false);
        let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into_owned();
        match line.first() {
            Some(b'\n') => return protocol_error(step, "unexpected <newline>"),
            Some(1) => {
                self.errors = self.errors.saturating_add(1);
                return;
            }
            Some(2) => {
                step.exit = Some(1);
                return;
            }
            Some(b'E') => {
                if dirs.pop().is_none() {
                    step.exit = Some(u32::from(self.errors > 0));
                    return;
                }
                step.reply.push(0);
                return;
            }
            Some(b'T') => {
                step.reply.push(0);
                return;
            }
            Some(b'C' | b'D') => {}
            _ if was_first => {
                run_err(step, &text);
                step.exit = Some(1);
                return;
            }
            _ => return protocol_error(step, "expected control record"),
        }
        let Some((size, name)) = parse_record(&text) else {
            return protocol_error(step, "bad mode");
        };
        if name.is_empty() || name.contains('/') || name == ".." {
            run_err(step, &format!("error: unexpected filename: {name}"));
            step.exit = Some(1);
            return;
        }
        let path = match dirs.last() {
            Some(dir) => join(dir, name),
            None if *target_is_dir => join(target, name),
            None => target.clone(),
        };
        if line.first() == Some(&b'D') {
            if !*recursive {
                return protocol_error(step, "received directory without -r");
            }
            if dirs.len() >= MAX_DEPTH {
                return protocol_error(step, "expected control record");
            }
            let made = if cx.forbidden(&path) {
                Err("Permission denied")
            } else {
                match cx.fs.resolve(&path) {
                    Some((_, n)) if n.kind == Kind::Dir => Ok(()),
                    Some(_) => Err("Not a directory"),
                    None => cx.fs.mkdir(&path, cx.user),
                }
            };
            match made {
                Ok(()) => {
                    dirs.push(path);
                    step.reply.push(0);
                }
                Err(reason) => {
                    self.errors = self.errors.saturating_add(1);
                    run_err(step, &format!("{path}: {reason}"));
                }
            }
            return;
        }
        let opened = if cx.forbidden(&path) {
            Err("Permission denied")
        } else {
            cx.fs.write(&path, b"", false, cx.user)
        };
        if let Err(reason) = opened {
            self.errors = self.errors.saturating_add(1);
            run_err(step, &format!("{path}: {reason}"));
            return;
        }
        let capture = cx.store.capture();
        *state = if size == 0 {
            Sink::Trailer { path, capture }
        } else {
            Sink::Data {
                path,
                capture,
                left: size,
            }
        };
        step.reply.push(0);
    }

    /// One piece of `scp -f`: returns what is left of `data`.
    fn source<'d>(&mut self, data: &'d [u8], cx: &mut Cx<'_>, step: &mut Step) -> &'d [u8] {
        let Mode::Source { state, .. } = &mut self.mode else {
            return &[];
        };
        if let Source::Error { fatal, len } = state {
            let end = data.iter().position(|&b| b == b'\n');
            *len = len.saturating_add(end.unwrap_or(data.len()));
            if end.is_none() && *len <= MAX_LINE {
                return &[];
            }
            self.errors = self.errors.saturating_add(1);
            if *fatal || end.is_none() {
                step.exit = Some(1);
                return &[];
            }
            *state = Source::DataAck;
            self.next_file(cx, step);
            return data
                .get(end.map_or(data.len(), |e| e.saturating_add(1))..)
                .unwrap_or_default();
        }
        let Some((&byte, rest)) = data.split_first() else {
            return &[];
        };
        if byte != 0 {
            *state = Source::Error {
                fatal: byte != 1,
                len: 0,
            };
            return rest;
        }
        match std::mem::replace(state, Source::DataAck) {
            Source::Start | Source::DataAck | Source::Error { .. } => self.next_file(cx, step),
            Source::TimeAck { header, content } => {
                step.reply.extend_from_slice(&header);
                *state = Source::HeaderAck { content };
            }
            Source::HeaderAck { content } => {
                step.reply.extend_from_slice(&content);
                step.reply.push(0);
                *state = Source::DataAck;
            }
        }
        rest
    }

    /// Sends the next file's records, or ends.
    fn next_file(&mut self, cx: &Cx<'_>, step: &mut Step) {
        let Mode::Source {
            state,
            queue,
            preserve,
        } = &mut self.mode
        else {
            return;
        };
        while let Some(shown) = queue.pop_front() {
            let path = cx.absolute(&shown);
            let found = if cx.forbidden(&path) {
                Err("Permission denied")
            } else {
                cx.fs.resolve(&path).ok_or("No such file or directory")
            };
            let content = match found {
                Ok((_, node)) => match &node.kind {
                    Kind::File(data) => data.clone(),
                    _ => {
                        self.errors = self.errors.saturating_add(1);
                        run_err(step, &format!("{shown}: not a regular file"));
                        continue;
                    }
                },
                Err(reason) => {
                    self.errors = self.errors.saturating_add(1);
                    run_err(step, &format!("{shown}: {reason}"));
                    continue;
                }
            };
            let mode = cx
                .fs
                .resolve(&path)
                .map_or(0o644, |(_, n)| super::mode_bits(n.mode) & 0o7777);
            let base = path.rsplit('/').next().unwrap_or_default();
            let header = format!("C{mode:04o} {} {base}\n", content.len()).into_bytes();
            if *preserve {
                step.reply
                    .extend_from_slice(format!("T{MTIME} 0 {MTIME} 0\n").as_bytes());
                *state = Source::TimeAck { header, content };
            } else {
                step.reply.extend_from_slice(&header);
                *state = Source::HeaderAck { content };
            }
            return;
        }
        step.exit = Some(u32::from(self.errors > 0));
    }
}

/// OpenSSH's `SCREWUP`: a fatal protocol error.
fn protocol_error(step: &mut Step, why: &str) {
    run_err(step, &format!("protocol error: {why}"));
    step.exit = Some(1);
}

/// `C0644 12 name` / `D0755 0 name`: the size and the name.
fn parse_record(text: &str) -> Option<(u64, &str)> {
    let mode = text.get(1..5)?;
    if !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let rest = text.get(5..)?.strip_prefix(' ')?;
    let (size, name) = rest.split_once(' ')?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((size.parse().ok()?, name))
}
