//! `cargo xtask deps`: the one list of Debian packages the project needs, and the code that
//! installs them. `cargo xtask run` installs the build and run groups, `cargo xtask test` the
//! test group too, and `.ci/run` calls `cargo xtask deps --test`: no other apt list exists.
//!
//! As root the missing packages are installed (`apt-get install -y --no-install-recommends`);
//! otherwise the exact command is printed and the task stops, so nothing half-builds.
//!
//! To add a package: one line in the group that needs it, with the reason. A name may list
//! alternatives separated by `|` (release renames): the first one apt knows is installed.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{is_root, output_of, run_cmd};

/// A Debian package and why the project needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    /// The package name, or alternatives separated by `|`.
    pub(crate) package: &'static str,
    /// Why it is needed (shown by `cargo xtask deps --list`).
    pub(crate) why: &'static str,
}

const fn need(package: &'static str, why: &'static str) -> Need {
    Need { package, why }
}

/// Building the workspace (rustup itself is a prerequisite, as the README says).
pub(crate) const BUILD: &[Need] = &[
    need("gcc", "linker driver and C code of ring and mimalloc"),
    need("libc6-dev", "C runtime headers and start files for linking"),
    need(
        "libpcap-dev",
        "libpcap, linked for the `--capture pcap` fallback and replay",
    ),
    need("git", "the commit `sensor --version` reports"),
    need("ca-certificates", "cargo downloads crates over TLS"),
    need(
        "make",
        "librdkafka's build (rdkafka-sys runs its ./configure and make)",
    ),
    need("g++", "librdkafka's configure checks for a C++ compiler"),
    need(
        "pkg-config",
        "openssl-sys and libz-sys find the system libraries",
    ),
    need(
        "libssl-dev",
        "OpenSSL headers: librdkafka's TLS and SASL SCRAM, the MSSQL decoy's TLS (openssl crate)",
    ),
    need("zlib1g-dev", "zlib headers: librdkafka's gzip compression"),
];

/// Running the built sensor (the Debian package computes its own `Depends:` from the binary).
pub(crate) const RUN: &[Need] = &[
    need(
        "libpcap0.8t64|libpcap0.8",
        "libpcap.so.0.8, loaded by the dynamic linker at start",
    ),
    need(
        "libssl3t64|libssl3",
        "libssl.so.3, the kafka output's TLS (librdkafka) and the MSSQL decoy's TLS inside TDS",
    ),
];

/// The test clients, attacker tools and receivers the tests drive.
pub(crate) const TEST: &[Need] = &[
    need("nmap", "scans and service identification (nmap -sS, -sV)"),
    need("masscan", "scans at rate"),
    need("iproute2", "network namespaces and veth pairs (ip)"),
    need("bpftool", "inspecting programs and links in attach tests"),
    need("procps", "process inspection in privileged tests"),
    need("redis-server", "the redis output's receiver"),
    need("curl", "HTTP/HTTPS service client"),
    need("lftp", "FTP service client"),
    need("telnet", "Telnet service client"),
    need(
        "inetutils-telnetd",
        "the real Linux telnetd the Telnet decoy is compared with",
    ),
    need("openssh-client", "SSH service client"),
    need("sshpass", "password logins with ssh"),
    need("netcat-openbsd", "raw connections to any-port decoys (nc)"),
    need(
        "openssh-server",
        "the real sshd the SSH decoy is compared with",
    ),
    need(
        "python3-paramiko",
        "paramiko key-then-password logins to the SSH decoy",
    ),
    need("mariadb-client", "MySQL service client"),
    need("postgresql-client", "PostgreSQL service client (psql)"),
    need(
        "postgresql",
        "a real PostgreSQL 15 side by side with the decoy",
    ),
    need("openssl", "TLS client checks (s_client)"),
    need("rsyslog", "the syslog output's receiver"),
    need("rsyslog-gnutls", "syslog over TLS"),
    need("python3-aiosmtpd", "the email output's SMTP receiver"),
    need("hydra", "the attacker tool of the outage test"),
    need(
        "systemd",
        "systemd-analyze verify of packaging/trapster-sensor.service",
    ),
    need("dpkg-dev", "dpkg-deb checks of the built package"),
    need("prometheus", "promtool check metrics of /metrics"),
    need("nats-server", "the nats output's JetStream receiver"),
    need(
        "kcat",
        "the kafka output's consumer (reads what the sensor produced)",
    ),
    need(
        "snmp",
        "SNMP service clients (snmpget, snmpwalk, snmpbulkwalk)",
    ),
    need("bind9-dnsutils", "DNS service client (dig)"),
    need("rsync", "rsync service client"),
    need(
        "python3-venv",
        "Trapster from PyPI in a venv, side by side with the sensor",
    ),
    need("zmap", "scanner attribution (zmap)"),
    need("hping3", "scanner attribution (hping3)"),
    need("smbclient", "SMB service client"),
    need("freerdp2-x11", "RDP service client (xfreerdp +auth-only)"),
    need("xvfb", "a display for xfreerdp (xvfb-run)"),
    need("xauth", "xvfb-run's X authority"),
    need("ldap-utils", "LDAP service client (ldapsearch)"),
    need(
        "apache2",
        "the real Apache 2.4 of the HTTP side-by-side tests (apache2 -X)",
    ),
    need(
        "nginx",
        "the real nginx 1.22 of the nginx-style side-by-side test",
    ),
    need("libsasl2-modules", "ldapsearch -Y NTLM"),
    need(
        "libsasl2-modules-gssapi-mit",
        "ldapsearch -Y GSS-SPNEGO (Cyrus SASL's GSSAPI plugin)",
    ),
    need("gss-ntlmssp", "NTLM under GSS-SPNEGO for ldapsearch"),
    need("freetds-bin", "MSSQL service client (tsql)"),
    need(
        "chromium",
        "headless browser running a JS-clone honeytoken's script",
    ),
    need(
        "apache2-utils",
        "ab, the HTTP load of `cargo xtask bench` (sensor vs Trapster)",
    ),
];

/// Python packages the tests need that Debian does not ship (`pip install`).
pub(crate) const PIP_TEST: &[Need] = &[
    need(
        "impacket",
        "SMB and MSSQL clients (SMBConnection, mssqlclient.py)",
    ),
    need("vncdotool", "VNC service client (vncdo)"),
    need(
        "ldap3",
        "LDAP NTLM (Sicily) binds as BloodHound.py and NetExec make them",
    ),
    need(
        "pycryptodome",
        "the MD4 ldap3's NTLM needs (OpenSSL 3 has none)",
    ),
    need(
        "service_identity",
        "what vncdotool's Twisted needs to import",
    ),
];

/// Which groups a task needs.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct Options {
    /// Include the test clients and receivers.
    #[arg(long)]
    pub(crate) test: bool,
    /// Only print the install command for what is missing (never install).
    #[arg(long)]
    pub(crate) print: bool,
    /// List every package with the reason it is needed, and exit.
    #[arg(long)]
    pub(crate) list: bool,
}

/// The packages of the chosen groups, in list order.
pub(crate) fn wanted(test: bool) -> Vec<Need> {
    let mut all: Vec<Need> = BUILD.iter().chain(RUN).copied().collect();
    if test {
        all.extend_from_slice(TEST);
    }
    all
}

/// Parses `dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n'` output into installed names.
pub(crate) fn installed_from_dpkg(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next()?;
            // `ii` = desired install, currently installed; the name may carry `:arch`.
            (parts.next() == Some("ii")).then(|| name.split(':').next().unwrap_or(name))
        })
        .collect()
}

/// The needs none of whose alternatives is installed.
pub(crate) fn missing<'a>(needs: &'a [Need], installed: &[&str]) -> Vec<&'a Need> {
    needs
        .iter()
        .filter(|n| !n.package.split('|').any(|p| installed.contains(&p)))
        .collect()
}

/// The install command for `packages`, as it would be typed (with `sudo` when not root).
pub(crate) fn install_command(packages: &[String], root: bool) -> String {
    let prefix = if root { "" } else { "sudo " };
    format!(
        "{prefix}apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

fn installed_packages(needs: &[Need]) -> anyhow::Result<Vec<String>> {
    let names: Vec<&str> = needs.iter().flat_map(|n| n.package.split('|')).collect();
    // dpkg-query exits 1 when a name is unknown but still lists the known ones.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
        .args(&names)
        .output()
        .context("running dpkg-query (is this a Debian or Ubuntu machine?)")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    Ok(installed_from_dpkg(&listing)
        .into_iter()
        .map(str::to_owned)
        .collect())
}

/// The first alternative apt can install (`apt-cache show` knows it), else the first.
fn installable(need: &Need) -> String {
    let mut alternatives = need.package.split('|');
    let first = alternatives.next().unwrap_or(need.package);
    std::iter::once(first)
        .chain(alternatives)
        .find(|p| {
            Command::new("apt-cache")
                .args(["show", "--no-all-versions", p])
                .output()
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        })
        .unwrap_or(first)
        .to_owned()
}

/// Makes sure every package of the chosen groups is installed: installs what is missing as
/// root, prints the command and fails otherwise.
pub(crate) fn ensure(options: &Options) -> anyhow::Result<()> {
    let needs = wanted(options.test);
    if options.list {
        for n in &needs {
            println!("{:<28} {}", n.package, n.why);
        }
        for n in PIP_TEST.iter().filter(|_| options.test) {
            println!("{:<28} {} (pip)", n.package, n.why);
        }
        return Ok(());
    }
    let installed = installed_packages(&needs)?;
    let installed: Vec<&str> = installed.iter().map(String::as_str).collect();
    let absent = missing(&needs, &installed);
    let root = is_root();
    if !absent.is_empty() {
        if !root || options.print {
            let names: Vec<String> = absent.iter().map(|n| installable(n)).collect();
            eprintln!("xtask: missing Debian packages; install them with:");
            println!("{}", install_command(&names, root));
            if options.print {
                return Ok(());
            }
            bail!("{} Debian package(s) missing (command above)", absent.len());
        }
        eprintln!("xtask: apt-get update");
        run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["update", "-qq"]),
        )?;
        let names: Vec<String> = absent.iter().map(|n| installable(n)).collect();
        eprintln!("xtask: {}", install_command(&names, true));
        run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&names),
        )?;
    }
    if options.test {
        ensure_pip(options.print, root)?;
    }
    Ok(())
}

fn ensure_pip(print_only: bool, root: bool) -> anyhow::Result<()> {
    let absent: Vec<&str> = PIP_TEST
        .iter()
        .map(|n| n.package)
        .filter(|p| {
            !Command::new("python3")
                .args(["-m", "pip", "show", "--quiet", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    let command = format!("python3 -m pip install {}", absent.join(" "));
    if print_only || !root {
        eprintln!("xtask: missing Python packages; install them with:");
        println!("{command}");
        if print_only {
            return Ok(());
        }
        bail!("{} Python package(s) missing (command above)", absent.len());
    }
    eprintln!("xtask: {command}");
    // Debian's own Python refuses pip outside a venv (PEP 668) unless told otherwise.
    let plain = run_cmd(
        Command::new("python3")
            .args(["-m", "pip", "install", "-q"])
            .args(&absent),
    );
    if plain.is_err() {
        run_cmd(
            Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--break-system-packages"])
                .args(&absent),
        )?;
    }
    let _ = output_of(Command::new("python3").args(["-m", "pip", "--version"]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `.ci/run` installed with its own apt line before it called this code.
    const FORMER_CI_PACKAGES: &str = "nmap masscan iproute2 bpftool libpcap-dev procps \
        redis-server curl lftp telnet openssh-client sshpass mariadb-client postgresql-client \
        openssl rsyslog rsyslog-gnutls python3-aiosmtpd hydra";

    fn listed(name: &str) -> bool {
        wanted(true)
            .iter()
            .chain(PIP_TEST)
            .any(|n| n.package.split('|').any(|p| p == name))
    }

    /// Every word after `apt-get install` / `pip install` in `.ci/run` (continuation lines
    /// included), options and redirections left out.
    fn ci_installs(script: &str) -> Vec<String> {
        let joined = script.replace("\\\n", " ");
        joined
            .lines()
            .filter_map(|line| {
                line.split_once("apt-get install")
                    .or_else(|| line.split_once("pip install"))
                    .map(|(_, rest)| rest.to_owned())
            })
            .flat_map(|rest| {
                rest.split_whitespace()
                    .take_while(|w| !w.starts_with('>') && *w != "&&" && *w != "||")
                    .filter(|w| !w.starts_with('-'))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_package_ci_run_used_to_install_is_in_the_xtask_list() {
        let absent: Vec<&str> = FORMER_CI_PACKAGES
            .split_whitespace()
            .filter(|p| !listed(p))
            .collect();
        assert_eq!(absent, Vec::<&str>::new());
    }

    #[test]
    fn ci_run_installs_nothing_outside_the_xtask_list() {
        let script = std::fs::read_to_string(crate::workspace_root().join(".ci/run")).unwrap();
        assert!(script.contains("cargo xtask deps --test"), "{script}");
        let absent: Vec<String> = ci_installs(&script)
            .into_iter()
            .filter(|p| !listed(p))
            .collect();
        assert_eq!(
            absent,
            Vec::<String>::new(),
            "move these into xtask/src/deps.rs"
        );
    }

    #[test]
    fn the_ci_parser_sees_continuation_lines() {
        let script = "as_root apt-get install -y -qq --no-install-recommends \\\n  nmap ldap-utils \\\n  smbclient >/dev/null\npip install impacket\n";
        assert_eq!(
            ci_installs(script),
            ["nmap", "ldap-utils", "smbclient", "impacket"]
        );
    }

    #[test]
    fn groups_hold_no_duplicates() {
        let mut names: Vec<&str> = wanted(true)
            .iter()
            .flat_map(|n| n.package.split('|'))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn dpkg_listing_keeps_only_installed_packages() {
        let listing = "nmap ii \nhydra un \nlibpcap0.8:amd64 ii \ncurl rc \n";
        assert_eq!(installed_from_dpkg(listing), ["nmap", "libpcap0.8"]);
    }

    #[test]
    fn an_alternative_satisfies_a_need() {
        let needs = [need("libpcap0.8t64|libpcap0.8", "x"), need("nmap", "y")];
        let absent = missing(&needs, &["libpcap0.8"]);
        assert_eq!(
            absent.iter().map(|n| n.package).collect::<Vec<_>>(),
            ["nmap"]
        );
    }

    #[test]
    fn the_printed_command_is_the_one_to_type() {
        let pkgs = ["nmap".to_owned(), "hydra".to_owned()];
        assert_eq!(
            install_command(&pkgs, false),
            "sudo apt-get install -y --no-install-recommends nmap hydra"
        );
        assert_eq!(
            install_command(&pkgs, true),
            "apt-get install -y --no-install-recommends nmap hydra"
        );
    }

    #[test]
    fn build_and_test_groups_cover_what_the_tests_spawn() {
        // The programs the test suites start, and the package that provides each.
        for pkg in [
            "nmap",
            "masscan",
            "curl",
            "lftp",
            "telnet",
            "openssh-client",
            "sshpass",
            "mariadb-client",
            "postgresql-client",
            "redis-server",
            "rsyslog",
            "hydra",
            "iproute2",
            "python3-aiosmtpd",
            "libpcap-dev",
        ] {
            assert!(listed(pkg), "{pkg}");
        }
    }
}
