//! fwd's command line: the clap definitions, shared by the binary and by what is generated from
//! them (the man pages and shell completions), so both always describe the same interface.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

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
    /// Connection tracking table of a running fwd, as conntrack(8): -L, -C, -D, -F or -E, with
    /// filters; the options come in any order, as conntrack(8) takes them.
    Conntrack(ConntrackArgs),
    /// Prints the counters of a running fwd (via its control socket).
    Stats {
        /// Control socket path (default: from --config, else /run/fwd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Prometheus text instead of the summary.
        #[arg(long)]
        prometheus: bool,
        /// Output format: the text summary, or JSON with the same numbers as /metrics.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text, conflicts_with = "prometheus")]
        output: Format,
    },
    /// The `[sync]` state of a running fwd, as conntrackd(8)'s options: `-e` / `-i` list the
    /// external / internal cache, `commit` puts the external cache (peers' connections) into
    /// the table, `-n` asks the peer for its table, `-B` sends ours, `-s` counters.
    Sync(SyncArgs),
}

/// `fwd sync`: one of conntrackd's options (its `-c` is `commit` here: `-c` is `--config`).
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("action").required(true).args(["external", "internal", "stats", "resync", "bulk", "commit"])))]
pub struct SyncArgs {
    /// List the external cache (what peers announced), as `conntrackd -e`.
    #[arg(short = 'e', long = "external")]
    pub external: bool,
    /// List the internal cache (what this box announces), as `conntrackd -i`.
    #[arg(short = 'i', long = "internal")]
    pub internal: bool,
    /// The sync counters, as `conntrackd -s`.
    #[arg(short = 's', long = "stats")]
    pub stats: bool,
    /// Ask the peer to send its whole table, as `conntrackd -n`.
    #[arg(short = 'n', long = "request-resync")]
    pub resync: bool,
    /// Send the whole internal cache to the peer, as `conntrackd -B`.
    #[arg(short = 'B', long = "bulk")]
    pub bulk: bool,
    /// `commit`: inject the external cache into the workers' tables, NAT bindings included
    /// (`conntrackd -c`; run it from the failover notify script).
    #[arg(value_parser = ["commit"])]
    pub commit: Option<String>,
    /// Control socket path (default: from --config, else /run/fwd.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl SyncArgs {
    /// The control socket request line.
    pub fn request(&self) -> String {
        let opt = if self.external {
            "-e"
        } else if self.internal {
            "-i"
        } else if self.stats {
            "-s"
        } else if self.resync {
            "-n"
        } else if self.bulk {
            "-B"
        } else {
            "commit"
        };
        format!("sync {opt}")
    }
}

/// `-o` of `stats` and `rules list`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Text, as fwd prints it without -o.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// `-o` of `conntrack`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtFormat {
    /// conntrack(8)'s lines.
    #[default]
    Text,
    /// A JSON array of flows.
    Json,
    /// conntrack(8)'s `-o xml`.
    Xml,
}

/// conntrack(8)'s command line, as far as fwd's table has the fields. Clap parses all of it,
/// fwd's own `--socket` and `--config` included, so nothing depends on the order.
#[derive(Args, Debug, Default, Clone)]
#[command(group(ArgGroup::new("command").args(["dump", "count", "delete", "flush", "event"])))]
pub struct ConntrackArgs {
    /// List the table (the default).
    #[arg(short = 'L', long = "dump")]
    pub dump: bool,
    /// Count the matching entries.
    #[arg(short = 'C', long = "count")]
    pub count: bool,
    /// Delete the matching entries.
    #[arg(short = 'D', long = "delete")]
    pub delete: bool,
    /// Delete every entry.
    #[arg(short = 'F', long = "flush")]
    pub flush: bool,
    /// Print events (NEW, UPDATE, DESTROY) as they happen, until interrupted.
    #[arg(short = 'E', long = "event")]
    pub event: bool,
    /// Layer 4 protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(short = 'p', long = "proto")]
    pub proto: Option<String>,
    /// Layer 3 family: ipv4 or ipv6.
    #[arg(short = 'f', long = "family")]
    pub family: Option<String>,
    /// Source address of the original direction.
    #[arg(short = 's', long = "src", visible_alias = "orig-src")]
    pub src: Option<IpAddr>,
    /// Destination address of the original direction.
    #[arg(short = 'd', long = "dst", visible_alias = "orig-dst")]
    pub dst: Option<IpAddr>,
    /// Source address of the reply direction.
    #[arg(short = 'r', long = "reply-src")]
    pub reply_src: Option<IpAddr>,
    /// Destination address of the reply direction.
    #[arg(short = 'q', long = "reply-dst")]
    pub reply_dst: Option<IpAddr>,
    /// Source port of the original direction.
    #[arg(long = "sport", visible_alias = "orig-port-src")]
    pub sport: Option<u16>,
    /// Destination port of the original direction.
    #[arg(long = "dport", visible_alias = "orig-port-dst")]
    pub dport: Option<u16>,
    /// TCP state, e.g. ESTABLISHED.
    #[arg(long = "state")]
    pub state: Option<String>,
    /// Connection mark.
    #[arg(short = 'm', long = "mark")]
    pub mark: Option<u32>,
    /// With -E: the events to print, comma separated: NEW, UPDATE, DESTROY or ALL.
    #[arg(short = 'e', long = "event-mask")]
    pub event_mask: Option<String>,
    /// Output format of -L: conntrack's lines, JSON, or conntrack's XML.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CtFormat::Text)]
    pub output: CtFormat,
    /// Control socket path (default: from --config, else /run/fwd.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl ConntrackArgs {
    /// The control socket's request line: `conntrack`, the command and the options in a fixed
    /// order, each value one word (fwd's own options left out).
    pub fn request(&self) -> String {
        let cmd = if self.count {
            "-C"
        } else if self.delete {
            "-D"
        } else if self.flush {
            "-F"
        } else if self.event {
            "-E"
        } else {
            "-L"
        };
        let mut w = vec!["conntrack".to_string(), cmd.to_string()];
        let mut opt = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                w.push(name.into());
                w.push(v);
            }
        };
        opt("-p", self.proto.clone());
        opt("-f", self.family.clone());
        opt("-s", self.src.map(|a| a.to_string()));
        opt("-d", self.dst.map(|a| a.to_string()));
        opt("-r", self.reply_src.map(|a| a.to_string()));
        opt("-q", self.reply_dst.map(|a| a.to_string()));
        opt("--sport", self.sport.map(|p| p.to_string()));
        opt("--dport", self.dport.map(|p| p.to_string()));
        opt("--state", self.state.clone());
        opt("-m", self.mark.map(|m| m.to_string()));
        opt("-e", self.event_mask.clone());
        match self.output {
            CtFormat::Text => {}
            CtFormat::Json => opt("-o", Some("json".into())),
            CtFormat::Xml => opt("-o", Some("xml".into())),
        }
        w.join(" ")
    }
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
        /// Output format: iptables' listing, or JSON (tables, chains, policies, rules in
        /// iptables-save form with their counters).
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
        output: Format,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conntrack(args: &[&str]) -> ConntrackArgs {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Some(Command::Conntrack(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    /// conntrack(8) takes its options in any order; so does fwd, its own ones included.
    #[test]
    fn conntrack_options_in_any_order() {
        let orders: [&[&str]; 4] = [
            &["fwd", "conntrack", "-L", "-p", "icmp", "--socket", "/s"],
            &["fwd", "conntrack", "--socket", "/s", "-p", "icmp", "-L"],
            &["fwd", "conntrack", "-p", "icmp", "--socket=/s", "--dump"],
            &["fwd", "conntrack", "-p", "icmp", "-L", "--socket", "/s"],
        ];
        for args in orders {
            let c = conntrack(args);
            assert_eq!(
                c.socket.as_deref(),
                Some(std::path::Path::new("/s")),
                "{args:?}"
            );
            assert_eq!(c.request(), "conntrack -L -p icmp", "{args:?}");
        }
        let c = conntrack(&[
            "fwd",
            "conntrack",
            "-o",
            "xml",
            "--dport",
            "22",
            "-s",
            "198.18.0.1",
            "-E",
            "-e",
            "NEW,DESTROY",
        ]);
        assert_eq!(
            c.request(),
            "conntrack -E -s 198.18.0.1 --dport 22 -e NEW,DESTROY -o xml"
        );
        let cli = Cli::try_parse_from(["fwd", "conntrack", "-C", "--config", "/c.toml"]).unwrap();
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("/c.toml")));
        // one command at a time, and values checked before anything is sent
        assert!(Cli::try_parse_from(["fwd", "conntrack", "-L", "-D"]).is_err());
        assert!(Cli::try_parse_from(["fwd", "conntrack", "-s", "nonsense"]).is_err());
        assert!(Cli::try_parse_from(["fwd", "conntrack", "-L", "-o", "yaml"]).is_err());
    }

    #[test]
    fn sync_takes_one_conntrackd_option_or_commit() {
        let req = |args: &[&str]| {
            let mut v = vec!["fwd", "sync"];
            v.extend_from_slice(args);
            match Cli::try_parse_from(v).map(|c| c.command) {
                Ok(Some(Command::Sync(s))) => Ok(s.request()),
                Ok(_) => Err("not sync".to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(req(&["-e"]).unwrap(), "sync -e");
        assert_eq!(req(&["-i"]).unwrap(), "sync -i");
        assert_eq!(req(&["commit"]).unwrap(), "sync commit");
        assert_eq!(req(&["-n", "--socket", "/tmp/s"]).unwrap(), "sync -n");
        assert!(req(&[]).is_err());
        assert!(req(&["-e", "-i"]).is_err());
        assert!(req(&["flush"]).is_err());
    }

    #[test]
    fn output_formats_of_stats_and_rules_list() {
        let cli = Cli::try_parse_from(["fwd", "stats", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Stats {
                output: Format::Json,
                prometheus: false,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["fwd", "stats", "-o", "json", "--prometheus"]).is_err());
        let cli = Cli::try_parse_from(["fwd", "rules", "list", "-o", "json", "-t", "nat"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Rules {
                cmd: RulesCmd::List {
                    output: Format::Json,
                    ..
                }
            })
        ));
    }
}
