//! `cargo xtask run -- ARGS`: install the build and run packages ([`crate::deps`]), set up the
//! toolchain, build the sensor in release mode and run `sensor run ARGS` as root (through
//! `sudo -E` unless already root).
//!
//! Without `-i`/`--interface`, `-c`/`--config` or `--capture none`, the interface of the
//! default route is watched (read from `/proc/net/route`, then `/proc/net/ipv6_route`), so the
//! first command works on hosts whose NIC is `ens3` or `enp1s0` rather than `eth0`.

use std::process::Command;

use anyhow::bail;

use crate::{as_root, deps, run_cmd, setup, target_dir, workspace_root};

/// Options of `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Arguments of `sensor run` (e.g. `-i ens3`, `-c trapster.conf`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    deps::ensure(&deps::Options::default())?;
    setup::run()?;
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
    ]))?;
    let bin = target_dir().join("release/sensor");
    let mut args = options.args.clone();
    if needs_interface(&args) {
        let Some(iface) = default_route_interface() else {
            bail!("no default route to pick an interface from: name one with `-- -i IFACE`");
        };
        eprintln!(
            "xtask: watching {iface}, the default route's interface (override with -- -i IFACE)"
        );
        args.extend(["-i".to_owned(), iface]);
    }
    run_cmd(as_root(&bin).arg("run").args(&args))
}

/// Whether the arguments leave the interface to choose: no interface, no configuration file
/// (which may name one) and a capture that needs one.
fn needs_interface(args: &[String]) -> bool {
    let given = |names: &[&str]| {
        args.iter().any(|a| {
            names
                .iter()
                .any(|n| a == n || a.starts_with(&format!("{n}=")))
        })
    };
    let no_capture = args.windows(2).any(|w| {
        w.first().is_some_and(|a| a == "--capture") && w.get(1).is_some_and(|v| v == "none")
    }) || args.iter().any(|a| a == "--capture=none");
    !given(&["-i", "--interface", "-c", "--config"]) && !no_capture
}

/// The interface of the IPv4 default route, else of the IPv6 one.
pub(crate) fn default_route_interface() -> Option<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    default_v4(&v4).or_else(|| default_v6(&v6))
}

/// `/proc/net/route`: `Iface Destination Gateway Flags ... Mask ...`, hex, header first.
fn default_v4(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, mask) = (f.first()?, f.get(1)?, f.get(7)?);
        (*dest == "00000000" && *mask == "00000000" && *iface != "lo").then(|| (*iface).to_owned())
    })
}

/// `/proc/net/ipv6_route`: destination, prefix length, ..., interface last.
fn default_v6(table: &str) -> Option<String> {
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, len, iface) = (f.first()?, f.get(1)?, f.last()?);
        (dest.bytes().all(|b| b == b'0') && *len == "00" && *iface != "lo")
            .then(|| (*iface).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_default_route_interface_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            ens3\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            ens3\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_v4(table).as_deref(), Some("ens3"));
        assert_eq!(default_v4("Iface\tDestination\n"), None);
    }

    #[test]
    fn the_ipv6_default_route_is_the_fallback() {
        let table = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   enp1s0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003   enp1s0\n";
        assert_eq!(default_v6(table).as_deref(), Some("enp1s0"));
    }

    #[test]
    fn an_interface_is_added_only_when_nothing_names_one() {
        assert!(needs_interface(&args(&[])));
        assert!(needs_interface(&args(&["--capture", "pcap"])));
        assert!(!needs_interface(&args(&["-i", "ens3"])));
        assert!(!needs_interface(&args(&["--interface=ens3"])));
        assert!(!needs_interface(&args(&["-c", "trapster.conf"])));
        assert!(!needs_interface(&args(&["--capture", "none"])));
    }
}
