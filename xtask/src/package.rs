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
            Ok(())
        }
        None => bail!("cargo deb printed no package path: {printed}"),
    }
}
