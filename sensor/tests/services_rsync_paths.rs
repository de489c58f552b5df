//! The rsync service past authentication, against the real `rsync` client on loopback: a login
//! matching a configured user is let in, the paths it asks for (downloads and uploads,
//! `--secluded-args` too) come out as `rsync.query`, and the client gets what rsyncd says for
//! paths that do not exist or a read-only module; a wrong password still gets
//! `auth failed` and no path.

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, run};
use sensor::event::{Action, Event, Service};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

fn of(events: &[Event], action: Action) -> Vec<&Event> {
    events.iter().filter(|e| e.action == action).collect()
}

/// The one `rsync.query` that carries paths.
fn path_query(events: &[Event]) -> &Event {
    let found: Vec<&Event> = of(events, Action::Query)
        .into_iter()
        .filter(|e| e.extra.get("paths").is_some())
        .collect();
    assert_eq!(found.len(), 1, "{events:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn rsync_logins_let_in_give_the_paths_they_ask_for() {
    let mut h = Harness::start(
        json!({"rsync": [{
            "port": 0,
            "modules": ["Backup", "Users"],
            "users": [{"username": "backup", "password": "Winter2025!"}],
        }]}),
        json!({}),
    )
    .await;
    let port = h.addr(Service::Rsync).port();
    let env = [("RSYNC_PASSWORD", "Winter2025!")];

    // A download of a path: let in, told the path does not exist (rsync's exit code 23).
    let dir = harness::temp_dir("rsync-paths");
    let dest = dir.to_str().unwrap();
    let out = run(
        "rsync",
        &[
            "-a",
            &format!("rsync://backup@127.0.0.1:{port}/Backup/etc/shadow"),
            dest,
        ],
        &env,
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "rsync: [sender] link_stat \"/etc/shadow\" (in Backup) failed: No such file or directory (2)"
        ),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(23), "{stderr}");
    let events = h.until(Action::Query, 2, LIMIT).await;
    assert_well_formed(&events);
    let login = of(&events, Action::Login)[0];
    assert_eq!(login.extra["authenticated"], json!(true));
    assert_eq!(login.extra["username"], json!("backup"));
    let query = path_query(&events);
    assert_eq!(query.extra["module"], json!("Backup"));
    assert_eq!(query.extra["username"], json!("backup"));
    assert_eq!(query.extra["direction"], json!("download"));
    assert_eq!(query.extra["paths"], json!(["Backup/etc/shadow"]));
    let options: Vec<&str> = query.extra["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(&options[..2], ["--server", "--sender"], "{options:?}");
    // `data` holds the NUL-separated list as sent, ending with the empty argument.
    assert!(
        query.data.ends_with(b"\0.\0Backup/etc/shadow\0\0"),
        "{:?}",
        query.data
    );

    // Several paths at once, one of them a directory.
    let out = run(
        "rsync",
        &[
            "-r",
            &format!("rsync://backup@127.0.0.1:{port}/Backup/home/alice/.ssh/"),
            &format!("rsync://backup@127.0.0.1:{port}/Backup/root/id_rsa"),
            dest,
        ],
        &env,
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("link_stat \"/home/alice/.ssh\" (in Backup)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("link_stat \"/root/id_rsa\" (in Backup)"),
        "{stderr}"
    );
    let events = h.until(Action::Query, 2, LIMIT).await;
    assert_eq!(
        path_query(&events).extra["paths"],
        json!(["Backup/home/alice/.ssh/", "Backup/root/id_rsa"])
    );

    // `--secluded-args`: the paths come in the second list, and are logged the same.
    let out = run(
        "rsync",
        &[
            "-s",
            &format!("rsync://backup@127.0.0.1:{port}/Users/bob/Documents"),
            dest,
        ],
        &env,
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(23), "{out:?}");
    let events = h.until(Action::Query, 2, LIMIT).await;
    let query = path_query(&events);
    assert_eq!(query.extra["module"], json!("Users"));
    assert_eq!(query.extra["paths"], json!(["Users/bob/Documents"]));

    // An upload: the path is logged, the module refuses as a read-only one.
    let file = dir.join("payload.sh");
    std::fs::write(&file, b"#!/bin/sh\n").unwrap();
    let out = run(
        "rsync",
        &[
            file.to_str().unwrap(),
            &format!("rsync://backup@127.0.0.1:{port}/Backup/etc/cron.d/"),
        ],
        &env,
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR: module is read only"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let events = h.until(Action::Query, 2, LIMIT).await;
    let query = path_query(&events);
    assert_eq!(query.extra["direction"], json!("upload"));
    assert_eq!(query.extra["paths"], json!(["Backup/etc/cron.d/"]));

    // The wrong password: refused before any path, none logged.
    let out = run(
        "rsync",
        &[
            &format!("rsync://backup@127.0.0.1:{port}/Backup/etc/"),
            dest,
        ],
        &[("RSYNC_PASSWORD", "Winter2024!")],
        LIMIT,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("@ERROR: auth failed on module Backup"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_eq!(
        of(&events, Action::Login)[0].extra["authenticated"],
        json!(false)
    );
    assert!(
        of(&events, Action::Query)
            .iter()
            .all(|e| e.extra.get("paths").is_none()),
        "{events:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rsync_argument_lists_are_bounded() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    let mut h = Harness::start(
        json!({"rsync": [{
            "port": 0,
            "auth_digests": ["md5"],
            "users": [{"username": "u", "password": "p"}],
        }]}),
        json!({}),
    )
    .await;
    let addr = h.addr(Service::Rsync);
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "@RSYNCD: 31.0 md5"
    );
    write
        .write_all(b"@RSYNCD: 31.0 md5\nBackup\n")
        .await
        .unwrap();
    let challenge = lines.next_line().await.unwrap().unwrap();
    let challenge = challenge.strip_prefix("@RSYNCD: AUTHREQD ").unwrap();
    let response = sensor::services::proto::rsync::response_for(
        sensor::services::proto::rsync::Digest::Md5,
        "p",
        challenge,
    );
    write
        .write_all(format!("u {response}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "@RSYNCD: OK");
    // 300 arguments and no end: the session ends, the bytes are logged as data.
    write.write_all(&b"x\0".repeat(300)).await.unwrap();
    let events = h.until(Action::Data, 1, LIMIT).await;
    let data = of(&events, Action::Data);
    assert_eq!(data.len(), 1, "{events:?}");
    assert!(data[0].data.starts_with(b"x\0x\0"));
    assert!(
        of(&events, Action::Query)
            .iter()
            .all(|e| e.extra.get("paths").is_none())
    );
    let value: Value = h.counters();
    assert_eq!(value["protocol_errors"], json!(1), "{value}");
    h.stop().await;
}
