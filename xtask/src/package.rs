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
    /// and `systemd-analyze verify` of the packaged unit.
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
    eprintln!("xtask: {} checked", deb.display());
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
