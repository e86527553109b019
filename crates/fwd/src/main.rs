//! fwd: a poll-mode firewall appliance, a bump in the wire between two ports.
//!
//! `fwd --config FILE` (or `fwd run --config FILE`) runs it, `fwd check --config FILE`
//! validates the configuration, `fwd stats` asks a running fwd over its control socket.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fwd::appliance::run;
use fwd::config::{Config, Host, DEFAULT_CONTROL_SOCKET};
use fwd::control;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "fwd",
    version,
    about = "poll-mode firewall appliance (AF_XDP bump in the wire)"
)]
struct Cli {
    /// Configuration file; runs the appliance when no subcommand is given.
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the appliance (the default).
    Run,
    /// Validates the configuration without starting anything (exit status 0 or 1).
    Check,
    /// Prints the counters of a running fwd (via its control socket).
    Stats {
        /// Control socket path (default: from --config, else /run/fwd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Prometheus text instead of the summary.
        #[arg(long)]
        prometheus: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let Some(path) = cli.config else {
                eprintln!("fwd: error: --config FILE is required");
                return ExitCode::from(2);
            };
            match load(&path) {
                Ok(cfg) => match run(cfg) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        eprintln!("fwd: error: {e:#}");
                        ExitCode::from(1)
                    }
                },
                Err(code) => code,
            }
        }
        Command::Check => {
            let Some(path) = cli.config else {
                eprintln!("fwd: error: --config FILE is required");
                return ExitCode::from(2);
            };
            match load(&path) {
                Ok(_) => {
                    println!("{}: ok", path.display());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Stats { socket, prometheus } => {
            let socket = match (socket, cli.config) {
                (Some(s), _) => s,
                (None, Some(c)) => match Config::load_unchecked(&c) {
                    Ok(cfg) => cfg.control.socket,
                    Err(e) => {
                        eprintln!("fwd: error: {e}");
                        return ExitCode::from(1);
                    }
                },
                (None, None) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            };
            let cmd = if prometheus {
                "stats prometheus"
            } else {
                "stats"
            };
            match control::request(&socket, cmd) {
                Ok(answer) if answer.starts_with("error:") => {
                    eprint!("fwd: {answer}");
                    ExitCode::from(1)
                }
                Ok(answer) => {
                    print!("{answer}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fwd: error: cannot reach fwd at {}: {e}", socket.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path, &Host).map_err(|e| {
        eprintln!("fwd: error: {e}");
        ExitCode::from(1)
    })
}
