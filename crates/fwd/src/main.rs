//! fwd: a poll-mode firewall appliance, a bump in the wire between two ports.
//!
//! `fwd --config FILE` (or `fwd run --config FILE`) runs it, `fwd check --config FILE`
//! validates the configuration, `fwd stats` asks a running fwd over its control socket.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use fwd::appliance::run;
use fwd::cli::{Cli, Command, Format, RulesCmd};
use fwd::config::{Config, Host, DEFAULT_CONTROL_SOCKET};
use fwd::control;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn socket_of(socket: Option<PathBuf>, config: Option<&Path>) -> Result<PathBuf, ExitCode> {
    Ok(match (socket, config) {
        (Some(s), _) => s,
        // only the socket path is needed: the interfaces live in fwd's namespace, not ours
        (None, Some(c)) => match Config::load_unchecked(c) {
            Ok(cfg) => cfg.control.socket,
            Err(e) => {
                eprintln!("fwd: error: {e}");
                return Err(ExitCode::from(1));
            }
        },
        (None, None) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    })
}

fn ask(socket: &Path, cmd: &str) -> ExitCode {
    match control::request(socket, cmd) {
        Ok(answer) if answer.starts_with("error:") => {
            eprint!("fwd: {}", with_newline(answer));
            ExitCode::from(1)
        }
        Ok(answer) => {
            print!("{}", with_newline(answer));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fwd: error: cannot reach fwd at {}: {e}", socket.display());
            ExitCode::from(1)
        }
    }
}

/// A non-empty answer ends with a newline, so that a shell prompt starts on a line of its own.
fn with_newline(mut answer: String) -> String {
    if !answer.is_empty() && !answer.ends_with('\n') {
        answer.push('\n');
    }
    answer
}

/// `fwd conntrack -E`: prints the event lines as they come until fwd or the user stops.
fn stream(socket: &Path, cmd: &str) -> ExitCode {
    use std::io::Write as _;
    let mut first = true;
    let mut failed = false;
    let r = control::request_stream(socket, cmd, &mut |line: &str| {
        if first && line.starts_with("error:") {
            eprintln!("fwd: {line}");
            failed = true;
            return false;
        }
        first = false;
        let mut out = std::io::stdout().lock();
        // a closed pipe (`| head`) ends the stream
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    });
    match r {
        Ok(()) if failed => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwd: error: cannot reach fwd at {}: {e}", socket.display());
            ExitCode::from(1)
        }
    }
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
                Ok(cfg) => match run(cfg, Some(&path)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        // run() logged it (maybe to a file); a start failure also on stderr
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
                Ok(cfg) => {
                    let workers = cfg.workers.cores.get_ref().len();
                    if let Err(e) = fwd::firewall::conntrack_config(&cfg) {
                        eprintln!("fwd: error: {}: {e}", path.display());
                        return ExitCode::from(1);
                    }
                    match fwd::firewall::load_rules(&cfg, Some(&path), workers) {
                        Ok(c) => {
                            for w in fwd::firewall::rule_warnings(&cfg, Some(&path), &c) {
                                eprintln!("{w}");
                            }
                            println!("{}: ok", path.display());
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprint!("{e}");
                            ExitCode::from(1)
                        }
                    }
                }
                Err(code) => code,
            }
        }
        Command::Replay {
            input,
            output,
            verdicts,
        } => {
            let Some(path) = cli.config else {
                eprintln!("fwd: error: --config FILE is required");
                return ExitCode::from(2);
            };
            match replay(&path, &input, &output, verdicts.as_deref()) {
                Ok(sum) => {
                    println!(
                        "{} packets: {} forwarded, {} replies, {} dropped",
                        sum.packets, sum.forwarded, sum.replies, sum.dropped
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fwd: error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Sync(sy) => match socket_of(sy.socket.clone(), cli.config.as_deref()) {
            Ok(s) => ask(&s, &sy.request()),
            Err(code) => code,
        },
        Command::Reload { socket } => match socket_of(socket, cli.config.as_deref()) {
            Ok(s) => ask(&s, "reload"),
            Err(code) => code,
        },
        Command::Conntrack(ct) => match socket_of(ct.socket.clone(), cli.config.as_deref()) {
            Ok(s) if ct.event => stream(&s, &ct.request()),
            Ok(s) => ask(&s, &ct.request()),
            Err(code) => code,
        },
        Command::Rules { cmd } => match cmd {
            RulesCmd::List {
                verbose: _,
                family,
                table,
                socket,
                output,
            } => match socket_of(socket, cli.config.as_deref()) {
                Ok(s) => {
                    let mut cmd = format!("rules list {family}");
                    if let Some(t) = table {
                        cmd = format!("{cmd} {t}");
                    }
                    if output == Format::Json {
                        cmd.push_str(" -o json");
                    }
                    ask(&s, &cmd)
                }
                Err(code) => code,
            },
            RulesCmd::Print {
                file,
                family,
                format,
            } => {
                let fam = match family.as_str() {
                    "ipv4" => rules::Family::Ipv4,
                    "ipv6" => rules::Family::Ipv6,
                    f => {
                        eprintln!("fwd: error: --family must be ipv4 or ipv6, not {f:?}");
                        return ExitCode::from(2);
                    }
                };
                let fmt = match format.as_str() {
                    "save" => rules::PrintFormat::Save,
                    "list" => rules::PrintFormat::List,
                    f => {
                        eprintln!("fwd: error: --format must be save or list, not {f:?}");
                        return ExitCode::from(2);
                    }
                };
                match rules::cli_print(&file, fam, fmt) {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(d) => {
                        eprint!("{d}");
                        ExitCode::from(1)
                    }
                }
            }
        },
        Command::Stats {
            socket,
            prometheus,
            output,
        } => match socket_of(socket, cli.config.as_deref()) {
            Ok(s) => ask(
                &s,
                match (prometheus, output) {
                    (true, _) => "stats prometheus",
                    (false, Format::Json) => "stats json",
                    (false, Format::Text) => "stats",
                },
            ),
            Err(code) => code,
        },
    }
}

/// An output file written under a temporary name in the same directory and renamed over its
/// destination only when everything succeeded: a failed replay leaves no half file (and does
/// not touch an existing one). A destination that exists and is not a regular file (a FIFO,
/// `/dev/null`) is written directly.
struct TempFile {
    /// Empty when writing directly, or once renamed.
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::fs::File>,
}

impl TempFile {
    fn create(dest: &Path) -> Result<TempFile, String> {
        if std::fs::metadata(dest).is_ok_and(|m| !m.is_file()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            return Ok(TempFile {
                tmp: PathBuf::new(),
                dest: dest.to_owned(),
                file: Some(file),
            });
        }
        let name = dest
            .file_name()
            .ok_or_else(|| format!("{}: not a file name", dest.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".fwd-replay-{}.tmp", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(TempFile {
            tmp,
            dest: dest.to_owned(),
            file: Some(file),
        })
    }

    fn take(&mut self) -> std::fs::File {
        self.file.take().expect("taken once")
    }

    fn commit(mut self) -> Result<(), String> {
        if self.tmp.as_os_str().is_empty() {
            return Ok(());
        }
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| format!("{}: {e}", self.dest.display()))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Refuses to write `out` (the `what` of the replay) over `input`: the same file by any path or
/// hard link (device and inode), as `cp` refuses to copy a file onto itself.
fn refuse_same_file(
    input: &std::fs::Metadata,
    out: &Path,
    what: &str,
    inp: &Path,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(out) {
        Ok(m) if m.dev() == input.dev() && m.ino() == input.ino() => Err(format!(
            "{what} {} is the input capture {} (same file): refusing to overwrite it",
            out.display(),
            inp.display()
        )),
        _ => Ok(()),
    }
}

fn replay(
    config: &Path,
    input: &Path,
    output: &Path,
    verdicts: Option<&Path>,
) -> Result<fwd::capture::ReplaySummary, String> {
    // The capture, not the machine, is the environment: interfaces need not exist here.
    let cfg = Config::load_unchecked(config).map_err(|e| e.to_string())?;
    let ct = fwd::firewall::conntrack_config(&cfg)?;
    let compiled = fwd::firewall::load_rules(&cfg, Some(config), 1).map_err(|e| e.to_string())?;
    let rules = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(compiled));
    let inp = std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let meta = inp
        .metadata()
        .map_err(|e| format!("{}: {e}", input.display()))?;
    if meta.is_file() && meta.len() == 0 {
        return Err(format!(
            "{}: empty file (0 bytes), not a pcapng capture",
            input.display()
        ));
    }
    refuse_same_file(&meta, output, "--out", input)?;
    if let Some(v) = verdicts {
        refuse_same_file(&meta, v, "--verdicts", input)?;
        if let Ok(om) = std::fs::metadata(output) {
            refuse_same_file(&om, v, "--verdicts", output)?;
        }
        if v == output {
            return Err(format!("--verdicts and --out are both {}", v.display()));
        }
    }
    let mut out = TempFile::create(output)?;
    let mut vout = verdicts.map(TempFile::create).transpose()?;
    let mut vfile = vout.as_mut().map(|t| std::io::BufWriter::new(t.take()));
    let sum = fwd::capture::replay_pcapng_bridged(
        rules,
        &ct,
        cfg.bridge.policy(),
        std::io::BufReader::new(inp),
        std::io::BufWriter::new(out.take()),
        vfile.as_mut().map(|w| w as &mut dyn std::io::Write),
    )
    .map_err(|e| match e.strip_prefix("input: ") {
        Some(why) => format!(
            "{}: {why} (a truncated or damaged capture); nothing written",
            input.display()
        ),
        None => format!("{e}; nothing written"),
    })?;
    if sum.packets == 0 {
        return Err(format!(
            "{}: the capture holds no packets; nothing written",
            input.display()
        ));
    }
    if let Some(mut w) = vfile {
        std::io::Write::flush(&mut w).map_err(|e| format!("verdicts: {e}"))?;
    }
    out.commit()?;
    if let Some(v) = vout {
        v.commit()?;
    }
    Ok(sum)
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path, &Host).map_err(|e| {
        eprintln!("fwd: error: {e}");
        ExitCode::from(1)
    })
}
