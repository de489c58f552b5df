//! The commands of the shell, each answering as its Debian 12 counterpart does (GNU coreutils,
//! procps, wget, curl). Output and status only: the caller logs.

use chrono::Utc;

use super::{
    Effect, Shell,
    vfs::{self, Kind, Node, PROGRAMS},
};

/// Runs `program` with `args`.
pub fn run(
    shell: &mut Shell,
    program: &str,
    args: &[String],
    stdin: Option<&[u8]>,
    tty: bool,
    effects: &mut Vec<Effect>,
) -> (Vec<u8>, u32) {
    let program = program.rsplit('/').next().unwrap_or(program);
    let text = |s: String, status: u32| (s.into_bytes(), status);
    match program {
        "whoami" => text(format!("{}\n", shell.user), 0),
        "id" => text(format!("{}\n", id(&shell.user)), 0),
        "pwd" => text(format!("{}\n", shell.cwd), 0),
        "hostname" => text(format!("{}\n", shell.hostname), 0),
        "uname" => text(uname(args, &shell.hostname), 0),
        "echo" => {
            let (newline, words) = match args.first().map(String::as_str) {
                Some("-n") => (false, args.get(1..).unwrap_or_default()),
                _ => (true, args),
            };
            let mut out = words.join(" ");
            if newline {
                out.push('\n');
            }
            text(out, 0)
        }
        "cd" => cd(shell, args),
        "ls" => ls(shell, args, tty),
        "cat" => cat(shell, args, stdin),
        "touch" => touch(shell, args),
        "mkdir" => mkdir(shell, args),
        "ps" => text(ps(args, &shell.user), 0),
        "uptime" => text(uptime(), 0),
        "w" => text(
            format!(
                "{}\nUSER     TTY      FROM             LOGIN@   IDLE   JCPU   PCPU WHAT\n{:<8} pts/0    -                {}    0.00s  0.01s  0.00s w\n",
                uptime().trim_end(),
                shell.user,
                Utc::now().format("%H:%M")
            ),
            0,
        ),
        "which" => {
            let mut out = String::new();
            let mut status = 0;
            for arg in args.iter().filter(|a| !a.starts_with('-')) {
                if PROGRAMS.contains(&arg.as_str()) {
                    out.push_str(&format!("/usr/bin/{arg}\n"));
                } else {
                    status = 1;
                }
            }
            text(out, status)
        }
        "wget" | "curl" => download(program, args, effects),
        "true" | "export" | "history" | "clear" | "unset" | "alias" => (Vec::new(), 0),
        "false" => (Vec::new(), 1),
        _ => {
            let shown: String = program
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            text(format!("-bash: {shown}: command not found\n"), 127)
        }
    }
}

fn id(user: &str) -> String {
    if user == "root" {
        "uid=0(root) gid=0(root) groups=0(root)".to_owned()
    } else {
        format!("uid=1000({user}) gid=1000({user}) groups=1000({user}),27(sudo)")
    }
}

fn uname(args: &[String], hostname: &str) -> String {
    let all = format!(
        "Linux {hostname} 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 GNU/Linux"
    );
    let mut parts = Vec::new();
    for arg in args {
        match arg.as_str() {
            "-a" | "--all" => return format!("{all}\n"),
            "-s" => parts.push("Linux".to_owned()),
            "-n" => parts.push(hostname.to_owned()),
            "-r" => parts.push("6.1.0-28-amd64".to_owned()),
            "-v" => {
                parts.push("#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)".to_owned());
            }
            "-m" | "-p" | "-i" => parts.push("x86_64".to_owned()),
            "-o" => parts.push("GNU/Linux".to_owned()),
            _ => {}
        }
    }
    if parts.is_empty() {
        parts.push("Linux".to_owned());
    }
    format!("{}\n", parts.join(" "))
}

fn cd(shell: &mut Shell, args: &[String]) -> (Vec<u8>, u32) {
    let target = match args.first().map(String::as_str) {
        None | Some("~") => vfs::home(&shell.user),
        Some("-") => shell.cwd.clone(),
        Some(dir) => vfs::normalize(&shell.cwd, dir),
    };
    let shown = args.first().map_or("", String::as_str);
    match shell.fs.resolve(&target) {
        Some((_, node)) if node.kind == Kind::Dir => {
            if target == "/root" && shell.user != "root" {
                return (
                    format!("-bash: cd: {shown}: Permission denied\n").into_bytes(),
                    1,
                );
            }
            shell.cwd = target;
            (Vec::new(), 0)
        }
        Some(_) => (
            format!("-bash: cd: {shown}: Not a directory\n").into_bytes(),
            1,
        ),
        None => (
            format!("-bash: cd: {shown}: No such file or directory\n").into_bytes(),
            1,
        ),
    }
}

fn size(node: &Node) -> u64 {
    vfs::Vfs::size(node)
}

fn long_line(name: &str, node: &Node) -> String {
    let (kind, links, suffix) = match &node.kind {
        Kind::Dir => ('d', 2, String::new()),
        Kind::File(_) => ('-', 1, String::new()),
        Kind::Link(target) => ('l', 1, format!(" -> {target}")),
    };
    format!(
        "{kind}{} {links} {owner} {owner} {:>5} {} {name}{suffix}\n",
        node.mode,
        size(node),
        node.date,
        owner = node.owner,
    )
}

fn ls(shell: &Shell, args: &[String], tty: bool) -> (Vec<u8>, u32) {
    let flags: String = args
        .iter()
        .filter(|a| a.starts_with('-'))
        .flat_map(|a| a.chars().skip(1))
        .collect();
    let long = flags.contains('l');
    let all = flags.contains('a');
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let targets: Vec<String> = if paths.is_empty() {
        vec![".".to_owned()]
    } else {
        paths.iter().map(|p| (*p).clone()).collect()
    };
    let mut out = String::new();
    let mut status = 0;
    for shown in &targets {
        let path = vfs::normalize(&shell.cwd, shown);
        let Some((real, node)) = shell.fs.resolve(&path) else {
            out.push_str(&format!(
                "ls: cannot access '{shown}': No such file or directory\n"
            ));
            status = 2;
            continue;
        };
        if node.kind != Kind::Dir {
            if long {
                out.push_str(&long_line(shown, node));
            } else {
                out.push_str(&format!("{shown}\n"));
            }
            continue;
        }
        if real == "/root" && shell.user != "root" {
            out.push_str(&format!(
                "ls: cannot open directory '{shown}': Permission denied\n"
            ));
            status = 2;
            continue;
        }
        let mut entries: Vec<(String, Node)> = Vec::new();
        if all {
            if let Some(n) = shell.fs.get(&real) {
                entries.push((".".to_owned(), n.clone()));
            }
            if let Some(n) = shell.fs.get(&vfs::parent(&real)) {
                entries.push(("..".to_owned(), n.clone()));
            }
        }
        for (name, node) in shell.fs.children(&real) {
            if all || !name.starts_with('.') {
                entries.push((name, node.clone()));
            }
        }
        if targets.len() > 1 {
            out.push_str(&format!("{shown}:\n"));
        }
        if long {
            let blocks: u64 = entries
                .iter()
                .map(|(_, n)| size(n).div_ceil(4096).saturating_mul(4))
                .sum();
            out.push_str(&format!("total {blocks}\n"));
            for (name, node) in &entries {
                out.push_str(&long_line(name, node));
            }
        } else if tty {
            let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
            if !names.is_empty() {
                out.push_str(&names.join("  "));
                out.push('\n');
            }
        } else {
            for (name, _) in &entries {
                out.push_str(name);
                out.push('\n');
            }
        }
    }
    (out.into_bytes(), status)
}

fn cat(shell: &Shell, args: &[String], stdin: Option<&[u8]>) -> (Vec<u8>, u32) {
    let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if files.is_empty() {
        return (stdin.unwrap_or_default().to_vec(), 0);
    }
    let mut out = Vec::new();
    let mut status = 0;
    for shown in files {
        let path = vfs::normalize(&shell.cwd, shown);
        let clean: String = shown
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect();
        match shell.fs.resolve(&path) {
            Some((_, node)) => match &node.kind {
                Kind::File(data) => out.extend_from_slice(data),
                _ => {
                    out.extend_from_slice(format!("cat: {clean}: Is a directory\n").as_bytes());
                    status = 1;
                }
            },
            None => {
                let reason = if path.starts_with("/root/") && shell.user != "root" {
                    "Permission denied"
                } else {
                    "No such file or directory"
                };
                out.extend_from_slice(format!("cat: {clean}: {reason}\n").as_bytes());
                status = 1;
            }
        }
    }
    (out, status)
}

fn touch(shell: &mut Shell, args: &[String]) -> (Vec<u8>, u32) {
    let mut out = String::new();
    for shown in args.iter().filter(|a| !a.starts_with('-')) {
        let path = vfs::normalize(&shell.cwd, shown);
        if shell.fs.get(&path).is_some() {
            continue;
        }
        if let Err(reason) = shell.fs.write(&path, b"", true, &shell.user.clone()) {
            out.push_str(&format!("touch: cannot touch '{shown}': {reason}\n"));
        }
    }
    let status = u32::from(!out.is_empty());
    (out.into_bytes(), status)
}

fn mkdir(shell: &mut Shell, args: &[String]) -> (Vec<u8>, u32) {
    let mut out = String::new();
    let parents = args.iter().any(|a| a == "-p");
    for shown in args.iter().filter(|a| !a.starts_with('-')) {
        let path = vfs::normalize(&shell.cwd, shown);
        let user = shell.user.clone();
        match shell.fs.mkdir(&path, &user) {
            Err("File exists") if parents => {}
            Err(reason) => out.push_str(&format!(
                "mkdir: cannot create directory ‘{shown}’: {reason}\n"
            )),
            Ok(()) => {}
        }
    }
    let status = u32::from(!out.is_empty());
    (out.into_bytes(), status)
}

fn ps(args: &[String], user: &str) -> String {
    let full = args.iter().any(|a| a.contains('a') || a.contains('e'));
    if !full {
        return "    PID TTY          TIME CMD\n   1432 pts/0    00:00:00 bash\n   1467 pts/0    00:00:00 ps\n".to_owned();
    }
    format!(
        "USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND\nroot           1  0.0  0.3 167884 12104 ?        Ss   Oct22   0:41 /sbin/init\nroot           2  0.0  0.0      0     0 ?        S    Oct22   0:00 [kthreadd]\nroot         312  0.0  0.4  48216 16020 ?        Ss   Oct22   0:12 /lib/systemd/systemd-journald\nroot         351  0.0  0.1  25604  6100 ?        Ss   Oct22   0:01 /lib/systemd/systemd-udevd\nmessage+     512  0.0  0.1   9264  4480 ?        Ss   Oct22   0:03 /usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only\nroot         530  0.0  0.1  16512  7040 ?        Ss   Oct22   0:02 /lib/systemd/systemd-logind\nroot         601  0.0  0.0   6612  2636 ?        Ss   Oct22   0:00 /usr/sbin/cron -f\nroot         644  0.0  0.2  15436  9056 ?        Ss   Oct22   0:00 sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups\nroot        1420  0.0  0.2  17724 10900 ?        Ss   {now}   0:00 sshd: {user} [priv]\n{user:<8}    1431  0.0  0.1  17984  6728 ?        S    {now}   0:00 sshd: {user}@pts/0\n{user:<8}    1432  0.0  0.1   8648  5420 pts/0    Ss   {now}   0:00 -bash\n{user:<8}    1467  0.0  0.1  11084  4440 pts/0    R+   {now}   0:00 ps {args}\n",
        now = Utc::now().format("%H:%M"),
        args = args.join(" "),
    )
}

fn uptime() -> String {
    let now = Utc::now();
    format!(
        " {} up 41 days,  3:12,  1 user,  load average: 0.00, 0.01, 0.00\n",
        now.format("%H:%M:%S")
    )
}

/// `wget`/`curl`: the URL is logged, never fetched; the answer is the DNS failure of a host
/// without a resolver.
fn download(tool: &str, args: &[String], effects: &mut Vec<Effect>) -> (Vec<u8>, u32) {
    let takes_value = [
        "-o",
        "-O",
        "-H",
        "-d",
        "-A",
        "-X",
        "-u",
        "-e",
        "-P",
        "--output",
        "--header",
        "--data",
        "--user-agent",
        "--request",
        "--user",
        "--output-document",
    ];
    let mut url = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg.starts_with('-') {
            // wget's -O takes a value, curl's does not.
            let value = takes_value.contains(&arg.as_str()) && !(tool == "curl" && arg == "-O");
            if value {
                iter.next();
            }
            continue;
        }
        url = Some(arg.clone());
        break;
    }
    let Some(url) = url else {
        return match tool {
            "wget" => (
                b"wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n".to_vec(),
                1,
            ),
            _ => (
                b"curl: try 'curl --help' or 'curl --manual' for more information\n".to_vec(),
                2,
            ),
        };
    };
    effects.push(Effect::Download {
        tool: tool.to_owned(),
        url: url.clone(),
    });
    let without_scheme = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let host: String = without_scheme
        .split(['/', ':', '?'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(253)
        .collect();
    let shown = if url.contains("://") {
        url.clone()
    } else {
        format!("http://{url}")
    };
    // A host with neither resolver nor route: names fail to resolve, addresses to connect.
    let literal = host.parse::<std::net::IpAddr>().is_ok();
    let port = without_scheme
        .split(['/', '?'])
        .next()
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(if url.starts_with("https://") { 443 } else { 80 });
    let cluster = |c: char| {
        args.iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c))
    };
    if tool == "wget" {
        let status = 4;
        if cluster('q') || args.iter().any(|a| a == "--quiet") {
            return (Vec::new(), status);
        }
        let when = Utc::now().format("%Y-%m-%d %H:%M:%S");
        let text = if literal {
            format!(
                "--{when}--  {shown}\nConnecting to {host}:{port}... failed: Network is unreachable.\n"
            )
        } else {
            format!(
                "--{when}--  {shown}\nResolving {host} ({host})... failed: Temporary failure in name resolution.\nwget: unable to resolve host address ‘{host}’\n"
            )
        };
        (text.into_bytes(), status)
    } else {
        let (text, status) = if literal {
            (
                format!(
                    "curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server\n"
                ),
                7,
            )
        } else {
            (format!("curl: (6) Could not resolve host: {host}\n"), 6)
        };
        let silent = cluster('s') || args.iter().any(|a| a == "--silent");
        let show = cluster('S') || args.iter().any(|a| a == "--show-error");
        if silent && !show {
            return (Vec::new(), status);
        }
        (text.into_bytes(), status)
    }
}
