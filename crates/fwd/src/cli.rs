//! fwd's command line: the clap definitions, shared by the binary and by what is generated from
//! them (the man pages and shell completions), so both always describe the same interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fwd",
    version,
    about = "poll-mode firewall appliance (AF_XDP bump in the wire)"
)]
pub struct Cli {
    /// Configuration file; runs the appliance when no subcommand is given.
    #[arg(long, short = 'c', global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the appliance (the default).
    Run,
    /// Validates the configuration without starting anything (exit status 0 or 1).
    Check,
    /// Runs a pcapng capture through the data plane (interface 0 = port a, 1 = port b; packet
    /// timestamps are the clock) and writes what the appliance transmits.
    Replay {
        /// Input capture.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output capture (interface id = egress port, REJECT replies included).
        #[arg(long = "out")]
        output: PathBuf,
        /// One JSON line per input packet: verdict, chains and deciding rules.
        #[arg(long)]
        verdicts: Option<PathBuf>,
    },
    /// Asks a running fwd to re-read its rules files (as SIGHUP does).
    Reload {
        /// Control socket path (default: from --config, else /run/fwd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Rules: `list` the running ones with counters, `print` a file.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Connection tracking table of a running fwd, as conntrack(8): -L, -C, -D, -F with
    /// -p PROTO, -s ADDR, -d ADDR.
    Conntrack {
        /// Control socket path (default: from --config, else /run/fwd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// conntrack options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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

#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// The running rules with live counters, as `iptables -L -n -v`.
    List {
        /// Counters (always shown; accepted for iptables' sake).
        #[arg(short = 'v')]
        verbose: bool,
        /// ipv4 (default) or ipv6.
        #[arg(long, default_value = "ipv4")]
        family: String,
        /// Table (default: all).
        #[arg(long, short = 't')]
        table: Option<String>,
        /// Control socket path (default: from --config, else /run/fwd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Parses an iptables-restore file and prints it.
    Print {
        file: PathBuf,
        /// ipv4 or ipv6.
        #[arg(long, default_value = "ipv4")]
        family: String,
        /// save or list.
        #[arg(long, default_value = "save")]
        format: String,
    },
}
