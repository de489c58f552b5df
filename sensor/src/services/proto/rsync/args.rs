//! What an rsync client sends once a module let it in (`@RSYNCD: OK`), and how rsyncd turns it
//! away from there.
//!
//! The client sends its server-side command line, one argument after another, each ended by a
//! NUL (protocol 30 and later) or a newline (before), the list ended by an empty argument:
//! `--server`, `--sender` when it downloads, the short options in one word (`-vlogDtpre.iLsfxC`,
//! where everything after `e` is the client's capability letters), long options, `.`, then the
//! paths, each `module/path`. With `-s` (`--secluded-args`) a second list follows at once with
//! the real paths. rsyncd then writes its compatibility flags (a varint), the checksum seed and
//! switches to multiplexed messages; errors travel as `MSG_ERROR` frames and the exit code as
//! `MSG_ERROR_EXIT`. The sensor sends no compatibility flag (as an rsync 3.0 daemon would, so
//! nothing else is negotiated), then what rsyncd sends for a path that does not exist (a
//! download: `link_stat ... failed: No such file or directory`, exit code 23) or for a
//! read-only module (an upload: `ERROR: module is read only`, exit code 1).

/// Arguments read from one list at most.
pub const MAX_ARGS: usize = 256;
/// `MPLEX_BASE` of rsync's multiplexed stream.
const MPLEX_BASE: u32 = 7;
/// `MSG_ERROR` (= `FERROR`).
const MSG_ERROR: u32 = 3;
/// `MSG_ERROR_EXIT`.
const MSG_ERROR_EXIT: u32 = 86;
/// `RERR_PARTIAL`: some files were not transferred.
const RERR_PARTIAL: u32 = 23;
/// `RERR_SYNTAX`: what rsyncd exits with for an upload to a read-only module.
const RERR_SYNTAX: u32 = 1;
/// Largest payload of one multiplexed frame (24-bit length).
const MAX_FRAME: usize = 0x00ff_ffff;

/// How far one argument list has arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// The whole list, and how many buffered bytes it took.
    Complete(Vec<String>, usize),
    /// Not yet ended by the empty argument.
    Partial,
    /// More than [`MAX_ARGS`] arguments.
    TooMany,
}

/// Reads one argument list from `buffer`.
#[must_use]
pub fn split(buffer: &[u8], separator: u8) -> Split {
    let mut args = Vec::new();
    let mut at = 0usize;
    loop {
        let Some(rest) = buffer.get(at..) else {
            return Split::Partial;
        };
        let Some(len) = rest.iter().position(|&b| b == separator) else {
            return Split::Partial;
        };
        let arg = rest.get(..len).unwrap_or_default();
        at = at.saturating_add(len).saturating_add(1);
        if arg.is_empty() {
            return Split::Complete(args, at);
        }
        if args.len() >= MAX_ARGS {
            return Split::TooMany;
        }
        args.push(String::from_utf8_lossy(arg).into_owned());
    }
}

/// What a client's argument list asks.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Whether the client downloads (`--sender`: the daemon sends).
    pub download: bool,
    /// The options, before the `.`.
    pub options: Vec<String>,
    /// The paths as sent (`module/path`), after the `.`.
    pub paths: Vec<String>,
    /// Whether the short options carry `s` (`--secluded-args`): the real paths follow in a
    /// second list.
    pub secluded: bool,
}

/// Reads one argument list.
#[must_use]
pub fn request(args: &[String]) -> Request {
    let dot = args.iter().position(|a| a == ".");
    let (options, paths) = match dot {
        Some(i) => (
            args.get(..i).unwrap_or_default().to_vec(),
            args.get(i.saturating_add(1)..).unwrap_or_default().to_vec(),
        ),
        None => (args.to_vec(), Vec::new()),
    };
    let secluded = options.iter().any(|o| {
        o.strip_prefix('-')
            .filter(|short| !short.starts_with('-'))
            .is_some_and(|short| short.split('e').next().is_some_and(|s| s.contains('s')))
    }) || options
        .iter()
        .any(|o| o == "--secluded-args" || o == "--protect-args");
    Request {
        download: options.iter().any(|o| o == "--sender"),
        options,
        paths,
        secluded,
    }
}

/// The path inside the module (`Backup/etc/shadow` in module `Backup` is `/etc/shadow`), as
/// rsyncd names it in its messages.
#[must_use]
pub fn in_module(path: &str, module: &str) -> String {
    let inner = path
        .strip_prefix(module)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .unwrap_or(path)
        .trim_start_matches('/')
        .trim_end_matches('/');
    format!("/{inner}")
}

/// One multiplexed frame.
fn frame(code: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(MAX_FRAME);
    let header = (MPLEX_BASE.saturating_add(code) << 24) | u32::try_from(len).unwrap_or(0);
    let mut out = header.to_le_bytes().to_vec();
    out.extend_from_slice(payload.get(..len).unwrap_or_default());
    out
}

/// Everything rsyncd writes after the argument list for `request` on `module`: no
/// compatibility flags, the checksum `seed`, the error messages and the exit code.
#[must_use]
pub fn refusal(request: &Request, module: &str, seed: u32) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&seed.to_le_bytes());
    if request.download {
        for path in request.paths.iter().take(MAX_ARGS) {
            let text = format!(
                "rsync: [sender] link_stat \"{}\" (in {module}) failed: No such file or directory (2)\n",
                printable(&in_module(path, module))
            );
            out.extend(frame(MSG_ERROR, text.as_bytes()));
        }
        out.extend(frame(MSG_ERROR_EXIT, &RERR_PARTIAL.to_le_bytes()));
    } else {
        out.extend(frame(MSG_ERROR, b"ERROR: module is read only\n"));
        out.extend(frame(MSG_ERROR_EXIT, &RERR_SYNTAX.to_le_bytes()));
    }
    out
}

/// Client text echoed back: printable ASCII only, bounded.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(1024)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{MAX_ARGS, Request, Split, in_module, refusal, request, split};

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn lists_end_with_an_empty_argument() {
        let wire = b"--server\0--sender\0-logDtpre.iLsfxCIvu\0.\0Backup/etc\0\0rest";
        let Split::Complete(args, used) = split(wire, 0) else {
            panic!("a whole list")
        };
        assert_eq!(
            args,
            strings(&[
                "--server",
                "--sender",
                "-logDtpre.iLsfxCIvu",
                ".",
                "Backup/etc"
            ])
        );
        assert_eq!(&wire[used..], b"rest");
        assert_eq!(
            split(b"--server\n.\nUsers/\n\n", b'\n'),
            Split::Complete(strings(&["--server", ".", "Users/"]), 19)
        );
        for cut in 0..wire.len() - 5 {
            assert_eq!(split(&wire[..cut], 0), Split::Partial, "cut at {cut}");
        }
        let many = "a\0".repeat(MAX_ARGS + 1);
        assert_eq!(split(many.as_bytes(), 0), Split::TooMany);
        assert_eq!(split(b"\0", 0), Split::Complete(Vec::new(), 1));
    }

    #[test]
    fn the_request_names_direction_options_and_paths() {
        let got = request(&strings(&[
            "--server",
            "--sender",
            "-logDtpre.iLsfxCIvu",
            ".",
            "Backup/etc/shadow",
            "Backup/root/",
        ]));
        assert_eq!(
            got,
            Request {
                download: true,
                options: strings(&["--server", "--sender", "-logDtpre.iLsfxCIvu"]),
                paths: strings(&["Backup/etc/shadow", "Backup/root/"]),
                // The `s` after `e` is a capability letter, not `--secluded-args`.
                secluded: false,
            }
        );
        let upload = request(&strings(&[
            "--server",
            "-slogDtpre.iLsfxCIvu",
            ".",
            "Users/x",
        ]));
        assert!(!upload.download);
        assert!(upload.secluded);
        assert!(request(&strings(&["--server", "--protect-args", "."])).secluded);
        assert_eq!(request(&strings(&["--server"])).paths, Vec::<String>::new());
    }

    #[test]
    fn paths_are_named_inside_their_module() {
        assert_eq!(in_module("Backup/etc/shadow", "Backup"), "/etc/shadow");
        assert_eq!(in_module("Backup/", "Backup"), "/");
        assert_eq!(in_module("Backup", "Backup"), "/");
        assert_eq!(in_module("Backupx/y", "Backup"), "/Backupx/y");
    }

    #[test]
    fn the_refusal_is_rsyncd_s_multiplexed_error_and_exit_code() {
        let download = request(&strings(&["--server", "--sender", "-r", ".", "Backup/etc"]));
        let out = refusal(&download, "Backup", 0x0102_0304);
        let text = "rsync: [sender] link_stat \"/etc\" (in Backup) failed: No such file or directory (2)\n";
        let mut want = vec![0, 4, 3, 2, 1];
        want.extend_from_slice(&u32::try_from(text.len()).unwrap().to_le_bytes()[..3]);
        want.push(10);
        want.extend_from_slice(text.as_bytes());
        want.extend_from_slice(&[4, 0, 0, 93, 23, 0, 0, 0]);
        assert_eq!(out, want);
        let upload = request(&strings(&["--server", "-r", ".", "Backup/etc"]));
        let out = refusal(&upload, "Backup", 0);
        assert_eq!(&out[5..9], &[27, 0, 0, 10]);
        assert_eq!(&out[9..36], b"ERROR: module is read only\n");
        assert_eq!(&out[36..], &[4, 0, 0, 93, 1, 0, 0, 0]);
    }
}
