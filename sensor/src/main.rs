//! `sensor`: command-line entry point. Parses arguments, sets up diagnostics, calls the library.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sensor::{
    CaptureMode, RunOptions,
    config::{Config, XdpMode},
    shutdown::{self, CancellationToken},
};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (v3 `mi_option_e` order; checked by a test).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the system at once: the agent's footprint is a promise (the 1 M
/// spoofed-source benchmark), and its steady state allocates little.
fn tune_allocator() {
    // SAFETY: setting a mimalloc option has no memory-safety preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// `sensor --version`: the package version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SENSOR_GIT_COMMIT"),
    ")"
);

/// Trapster-compatible honeypot sensor with XDP scan detection.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
struct Cli {
    /// Diagnostics level (error, warn, info, debug, trace, off) or EnvFilter directives
    /// (`info,sensor::output=debug`); anything else is refused.
    #[arg(long, global = true, default_value = "info", env = "SENSOR_LOG", value_parser = parse_log_level)]
    log_level: String,
    /// Configuration file, with no subcommand: `sensor -c trapster.conf` is `sensor run -c
    /// trapster.conf`, as Trapster is started.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Diagnostics format on standard error: text, or json (one object per line).
    #[arg(long, global = true, default_value = "text", env = "SENSOR_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and report scans as events on standard output.
    Run {
        /// Configuration file (trapster.conf); the embedded default when absent.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Interface to watch (repeatable); overrides the configuration.
        #[arg(short, long = "interface")]
        interfaces: Vec<String>,
        /// XDP attach mode: auto, skb or drv; overrides the configuration.
        #[arg(long)]
        xdp_mode: Option<XdpMode>,
        /// Capture engine: xdp (default), pcap (fallback for hosts without XDP), or none (the
        /// emulated services only).
        #[arg(long, default_value = "xdp")]
        capture: CaptureMode,
        /// Write kernel and merger counters as JSON here, periodically and at exit.
        #[arg(long)]
        stats_file: Option<PathBuf>,
    },
    /// Send a test incident (`incident_test`) through one or every output and print what each
    /// receiver answered.
    SendTest {
        /// Configuration file (trapster.conf); the embedded default when absent.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Only the output with this name (default: every output).
        #[arg(short, long)]
        output: Option<String>,
    },
    /// Run a capture file through scan detection and print the events it produces.
    Replay {
        /// The pcap file.
        file: PathBuf,
        /// Configuration file; the embedded default when absent.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Make a honeytoken.
    Token {
        #[command(subcommand)]
        kind: TokenKind,
    },
    /// Print the effective configuration, secrets masked, and exit.
    ShowConfig {
        /// Configuration file; the embedded default when absent.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Write the man page (`sensor.1`) and shell completions (bash, zsh, fish) into a folder,
    /// for packaging.
    #[command(hide = true)]
    GenerateAssets {
        /// The folder to write into (created).
        dir: PathBuf,
    },
    /// Validate a configuration file and exit: 0 valid (warnings, if any, printed), 1 valid
    /// with warnings under `--strict`, 2 invalid (`run` would refuse it).
    Check {
        /// Configuration file to validate.
        #[arg(short, long)]
        config: PathBuf,
        /// Exit 1 when the configuration is valid but has warnings (for CI).
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenKind {
    /// Print the script to embed in the real login page: served from any other origin (a
    /// cloned page), it fetches the beacon, which `sensor.honeytokens.js_clone` reports.
    JsClone {
        /// The real page's origin (`https://portal.corp.example`).
        #[arg(long)]
        origin: String,
        /// The beacon URL on an HTTP/HTTPS decoy (`https://decoy.corp:8443/static/px.gif`);
        /// its path goes in `sensor.honeytokens.js_clone[].path`.
        #[arg(long)]
        beacon: String,
    },
}

/// How diagnostics are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (colours on a terminal only).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// The levels a bare word may name; any other bare word would silently be a target filter.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Accepts a level or EnvFilter directives whose every level is valid; refuses the rest
/// (`--log-level verbose` must not quietly log nothing).
fn parse_log_level(value: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "`{value}`: {why} (expected one of {} or directives like `info,sensor::output=debug`)",
            LEVELS.join(", ")
        ))
    };
    for directive in value.split(',').map(str::trim) {
        match directive.rsplit_once('=') {
            None if !LEVELS.contains(&directive.to_ascii_lowercase().as_str()) => {
                return refuse("unknown level");
            }
            Some((_, level)) if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) => {
                return refuse("unknown level");
            }
            _ => {}
        }
    }
    match EnvFilter::try_new(value) {
        Ok(_) => Ok(value.to_owned()),
        Err(err) => refuse(&err.to_string()),
    }
}

/// Loads the configuration and logs its warnings (`check` prints them instead).
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let config = read_config(path)?;
    for warning in &config.warnings {
        tracing::warn!(field = %warning.field, problem = %warning.message, "Configuration accepted with a warning.");
    }
    Ok(config)
}

fn read_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default()?,
    })
}

/// `sensor check`'s exit code for a valid configuration with warnings under `--strict`.
const CHECK_WARNINGS: u8 = 1;
/// `sensor check`'s exit code for a configuration `run` would refuse (as clap's usage errors).
const CHECK_INVALID: u8 = 2;

/// `sensor check --strict` found warnings only.
#[derive(Debug, thiserror::Error)]
#[error("{0} warning(s) and `--strict`: exit {CHECK_WARNINGS}")]
struct CheckWarnings(usize);

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    // Validated by `parse_log_level`; `info` only if that ever lets something through.
    let filter = EnvFilter::try_new(&cli.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        // Colours only on a terminal: journald and log files get plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let checking = matches!(cli.command, Some(Command::Check { .. }));
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<CheckWarnings>().is_some() => {
            // Already printed on stdout, one line each.
            eprintln!("{err}");
            ExitCode::from(CHECK_WARNINGS)
        }
        Err(err) => {
            tracing::error!("{err:#}");
            if checking {
                ExitCode::from(CHECK_INVALID)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Writes `sensor.1` (clap_mangen) and `sensor.bash`, `_sensor`, `sensor.fish`
/// (clap_complete) into `dir`.
fn generate_assets(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let command = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .context("rendering the man page")?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
    };
    write("sensor.1", &page)?;
    for (shell, name) in [
        (Shell::Bash, "sensor.bash"),
        (Shell::Zsh, "_sensor"),
        (Shell::Fish, "sensor.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "sensor", &mut text);
        write(name, &text)?;
    }
    Ok(())
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Run {
        config: cli.config,
        interfaces: Vec::new(),
        xdp_mode: None,
        capture: CaptureMode::Xdp,
        stats_file: None,
    });
    match command {
        Command::Token {
            kind: TokenKind::JsClone { origin, beacon },
        } => {
            print!("{}", sensor::incident::js_clone_script(&origin, &beacon));
            Ok(())
        }
        Command::ShowConfig { config } => {
            let parsed = read_config(config.as_ref())?;
            let text = match &config {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => sensor::config::DEFAULT_CONFIG.to_owned(),
            };
            let mut out = std::io::stdout().lock();
            match writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&parsed.shown(&text))?
            ) {
                // `sensor show-config | head` is fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.context("writing to standard output"),
            }
        }
        Command::GenerateAssets { dir } => generate_assets(&dir),
        Command::Check { config, strict } => {
            let parsed = read_config(Some(&config))?;
            // What `run` would report down: ports this user cannot bind now.
            let down = sensor::services::probe_ports(&parsed.services_plan())?;
            if parsed.sensor.services.strict
                && let Some(first) = down.first()
            {
                anyhow::bail!(
                    "services.{}: port {}: {}; with sensor.services.strict `run` would stop here",
                    first.service.as_str(),
                    first.port,
                    first.error
                );
            }
            println!(
                "{}: OK (device `{}`, {} allow-listed networks, XDP on {:?}, {} emulated services: {}, {} outputs)",
                config.display(),
                parsed.id,
                parsed.whitelist_ips.len(),
                parsed.xdp_interfaces(),
                parsed.services.emulated(),
                parsed
                    .services
                    .ports()
                    .iter()
                    .map(|(s, p)| format!("{s}/{p}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                parsed.effective_outputs().len()
            );
            for warning in &parsed.warnings {
                println!("warning: {warning}");
            }
            for down in &down {
                println!(
                    "warning: services.{}: port {}: {}; this decoy would not start (the others would)",
                    down.service.as_str(),
                    down.port,
                    down.error
                );
            }
            let warnings = parsed.warnings.len().saturating_add(down.len());
            if strict && warnings > 0 {
                return Err(CheckWarnings(warnings).into());
            }
            Ok(())
        }
        Command::SendTest { config, output } => {
            let config = load_config(config.as_ref())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let outputs = config.effective_outputs();
            let ctx = config.format_context();
            let names: Vec<String> = outputs
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    o.name
                        .clone()
                        .unwrap_or_else(|| format!("{}-{i}", o.transport.kind()))
                })
                .collect();
            if let Some(wanted) = &output
                && !names.contains(wanted)
            {
                anyhow::bail!("no output named `{wanted}` (outputs: {})", names.join(", "));
            }
            let mut failed = 0;
            for (cfg, name) in outputs.iter().zip(&names) {
                if output.as_ref().is_some_and(|w| w != name) {
                    continue;
                }
                let answer = runtime.block_on(async {
                    tokio::time::timeout(
                        std::time::Duration::from_secs(30),
                        sensor::output::probe::send_test(cfg, name, &ctx),
                    )
                    .await
                    .unwrap_or_else(|_| Err("no answer within 30 s".to_owned()))
                });
                match answer {
                    Ok(text) => println!("{name} ({}): OK: {text}", cfg.transport.kind()),
                    Err(err) => {
                        failed += 1;
                        println!("{name} ({}): FAILED: {err}", cfg.transport.kind());
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} output(s) failed the test");
            }
            Ok(())
        }
        Command::Replay { file, config } => {
            let config = load_config(config.as_ref())?;
            let mut stdout = std::io::stdout().lock();
            let summary = sensor::replay::replay(&config, &file, &mut stdout)
                .with_context(|| format!("replaying {}", file.display()))?;
            tracing::info!(
                frames = summary.pcap.packets,
                probes = summary.pcap.probes,
                events = summary.events,
                "Replay finished."
            );
            Ok(())
        }
        Command::Run {
            config,
            interfaces,
            xdp_mode,
            capture,
            stats_file,
        } => {
            let (config, path) = (load_config(config.as_ref())?, config);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let token = CancellationToken::new();
                let trigger = token.clone();
                tokio::spawn(async move {
                    if let Err(err) = shutdown::signals().await {
                        tracing::error!(error = %err, "Installing signal handlers failed.");
                    }
                    trigger.cancel();
                });
                let options = RunOptions {
                    interfaces,
                    mode: xdp_mode,
                    capture,
                    stats_file,
                    config_path: path,
                };
                sensor::run(config, options, token)
                    .await
                    .context("sensor run failed")?;
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_levels_and_directives_are_accepted() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,sensor::output=debug",
            "sensor=trace",
        ] {
            assert_eq!(super::parse_log_level(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn unknown_log_levels_are_refused() {
        for bad in ["verbose", "info,loud", "sensor=chatty", ""] {
            let err = super::parse_log_level(bad).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}`: ")), "{err}");
        }
    }

    #[test]
    fn purge_delay_option_id_matches_the_linked_mimalloc() {
        // The linked mimalloc (v3) defaults the purge delay to 1000 ms, a value no neighbouring
        // option has: if the enum order or the version changes, this fails and the id is rechecked.
        // SAFETY: reading an option has no preconditions.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) },
            1000
        );
    }
}
