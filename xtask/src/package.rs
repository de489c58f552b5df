//! `cargo xtask package`: the Debian package (`trapster-sensor_<version>_<arch>.deb`) through
//! `cargo-deb` (installed with `cargo install cargo-deb --locked` when missing), from the
//! `[package.metadata.deb]` of `sensor/Cargo.toml`: the release binary, the systemd unit, the
//! default configuration in `/etc/trapster-sensor/`, the system user (maintainer scripts),
//! the logrotate snippet, the man page and the shell completions.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{deps, output_of, run_cmd, setup, target_dir, workspace_root};

/// Options of `package`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Where to write the .deb (default: `<target>/debian/`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Then check the package: its metadata and file list (`dpkg-deb --info`, `-c`), and, from
    /// a scratch extraction, `sensor --version`, `sensor check` of the packaged configuration
    /// and `systemd-analyze verify` of the packaged unit; as root, on a machine without the
    /// package or its user, also `dpkg -i` it, check the installed binary, configuration,
    /// user and unit, then `dpkg --purge` it.
    #[arg(long)]
    check: bool,
}

/// Files the package must hold.
const PACKAGED: &[&str] = &[
    "./usr/bin/sensor",
    "./etc/trapster-sensor/trapster.conf",
    "./etc/default/trapster-sensor",
    "./etc/logrotate.d/trapster-sensor",
    "./usr/lib/systemd/system/trapster-sensor.service",
    "./usr/share/man/man1/sensor.1",
    "./usr/share/bash-completion/completions/sensor",
    "./usr/share/zsh/vendor-completions/_sensor",
    "./usr/share/fish/vendor_completions.d/sensor.fish",
];

/// Checks a built package (see [`Options::check`]).
fn check(deb: &std::path::Path) -> anyhow::Result<()> {
    let info = output_of(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for wanted in [
        "Package: trapster-sensor",
        "Depends:",
        "libpcap0.8",
        "libssl3",
        "adduser",
        "postinst",
        "postrm",
    ] {
        if !info.contains(wanted) {
            bail!("dpkg-deb --info lacks `{wanted}`:\n{info}");
        }
    }
    let listing = output_of(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    let absent: Vec<&&str> = PACKAGED
        .iter()
        .filter(|p| !paths.iter().any(|q| q.trim_end_matches(".gz") == **p))
        .collect();
    if !absent.is_empty() {
        bail!("the package lacks {absent:?}:\n{listing}");
    }
    let root = target_dir().join("debian/scratch-root");
    let _ = std::fs::remove_dir_all(&root);
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    let bin = root.join("usr/bin/sensor");
    let version = output_of(Command::new(&bin).arg("--version"))?;
    if !version.starts_with("sensor ") || !version.contains("(commit ") {
        bail!("unexpected `sensor --version`: {version}");
    }
    print!("{version}");
    run_cmd(
        Command::new(&bin)
            .args(["check", "-c"])
            .arg(root.join("etc/trapster-sensor/trapster.conf")),
    )?;
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/trapster-sensor.service"))
        .context("reading the packaged unit")?;
    let local = root.join("trapster-sensor.service");
    std::fs::write(
        &local,
        unit.replace("/usr/bin/sensor", &bin.display().to_string()),
    )?;
    run_cmd(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&local),
    )?;
    install_check(deb)?;
    eprintln!("xtask: {} checked", deb.display());
    Ok(())
}

/// Whether `program args` exits successfully (false when it cannot run).
fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `dpkg -i` of the package, then `sensor --version` and `sensor check` of the installed
/// default configuration, the system user and the unit file; `dpkg --purge` afterwards, also
/// when a check fails. Skipped (said why) without root, or where the package or its user
/// already exist: an operator's install is never replaced or purged.
fn install_check(deb: &std::path::Path) -> anyhow::Result<()> {
    let uid = output_of(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        eprintln!("xtask: dpkg -i check skipped: needs root");
        return Ok(());
    }
    if succeeds("dpkg-query", &["-W", "-f=${Status}", "trapster-sensor"])
        || succeeds("getent", &["passwd", "trapster-sensor"])
    {
        eprintln!(
            "xtask: dpkg -i check skipped: the package or the user `trapster-sensor` already exists here"
        );
        return Ok(());
    }
    run_cmd(Command::new("dpkg").arg("-i").arg(deb))?;
    let checked = installed_checks();
    let purged = run_cmd(Command::new("dpkg").args(["--purge", "trapster-sensor"]));
    checked?;
    purged?;
    if succeeds("getent", &["passwd", "trapster-sensor"]) {
        bail!("dpkg --purge left the user `trapster-sensor`");
    }
    eprintln!("xtask: dpkg -i, --version, check and dpkg --purge passed");
    Ok(())
}

/// The checks of an installed package.
fn installed_checks() -> anyhow::Result<()> {
    let version = output_of(Command::new("/usr/bin/sensor").arg("--version"))?;
    if !version.starts_with("sensor ") || !version.contains("(commit ") {
        bail!("unexpected installed `sensor --version`: {version}");
    }
    run_cmd(Command::new("/usr/bin/sensor").args([
        "check",
        "-c",
        "/etc/trapster-sensor/trapster.conf",
    ]))?;
    let user = output_of(Command::new("getent").args(["passwd", "trapster-sensor"]))?;
    if !user.contains("/usr/sbin/nologin") {
        bail!("the system user `trapster-sensor` has a login shell: {user}");
    }
    for path in [
        "/usr/lib/systemd/system/trapster-sensor.service",
        "/var/lib/trapster-sensor",
        "/var/log/trapster-sensor",
    ] {
        if !std::path::Path::new(path).exists() {
            bail!("the installed package lacks {path}");
        }
    }
    Ok(())
}

fn cargo_deb_installed() -> bool {
    Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    deps::ensure(&deps::Options::default())?;
    setup::run()?;
    if !cargo_deb_installed() {
        eprintln!("xtask: installing cargo-deb");
        run_cmd(Command::new("cargo").args(["install", "cargo-deb", "--locked"]))?;
    }
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
    ]))?;
    let release = target_dir().join("release");
    run_cmd(
        Command::new(release.join("sensor"))
            .arg("generate-assets")
            .arg(release.join("assets")),
    )?;
    let mut deb = Command::new("cargo");
    deb.current_dir(&root)
        .args(["deb", "--no-build", "--package", "sensor"]);
    if let Some(out) = &options.out {
        deb.arg("--output").arg(out);
    }
    let printed = output_of(&mut deb).context("cargo deb")?;
    let path = printed
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| l.trim().to_owned());
    match path {
        Some(path) => {
            println!("{path}");
            if options.check {
                check(std::path::Path::new(&path))?;
            }
            Ok(())
        }
        None => bail!("cargo deb printed no package path: {printed}"),
    }
}
