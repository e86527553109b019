//! The firewall in the appliance: the `[rules]` files compiled by `dataplane::load`, one
//! `dataplane::Worker` per worker thread (behind `dataplane::pipeline::Firewall`), reload that
//! swaps the compiled ruleset with conntrack intact, and the control thread's commands
//! (`conntrack -L/-C/-D/-F`, `rules list`), metrics and LOG/NFLOG draining.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::control::{ControlClient, Request, Response};
use dataplane::log::LogEvent;
use dataplane::{CompileConfig, Compiled, PortInfo, Worker};

use crate::config::Config;

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The appliance's clock for the data plane: nanoseconds since the first call, shared by the
/// workers and the control thread (conntrack listings compare against it).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What the compiler needs from the configuration.
pub fn compile_config(cfg: &Config, workers: usize) -> CompileConfig {
    let port = |p: &crate::config::PortConfig| PortInfo {
        name: p.interface.get_ref().clone(),
        ipv4: p.address,
        ipv6: None,
    };
    CompileConfig {
        ports: [port(&cfg.ports.a), port(&cfg.ports.b)],
        workers,
    }
}

/// `[conntrack]` as the conntrack crate's configuration; unknown timeout names are errors.
pub fn conntrack_config(cfg: &Config) -> Result<conntrack::Config, String> {
    let mut c = conntrack::Config::default();
    if let Some(max) = cfg.conntrack.max {
        c.max =
            u32::try_from(max.max(1)).map_err(|_| format!("conntrack.max {max} is too large"))?;
    }
    if let Some(k) = cfg.conntrack.hash_key {
        c.hash_key = k;
    }
    if let Some(on) = cfg.conntrack.checksum {
        c.checksum = on;
    }
    let t = &mut c.timeouts;
    for (name, &v) in &cfg.conntrack.timeouts {
        let slot = match name.as_str() {
            "tcp_syn_sent" => &mut t.tcp_syn_sent,
            "tcp_syn_recv" => &mut t.tcp_syn_recv,
            "tcp_established" => &mut t.tcp_established,
            "tcp_fin_wait" => &mut t.tcp_fin_wait,
            "tcp_close_wait" => &mut t.tcp_close_wait,
            "tcp_last_ack" => &mut t.tcp_last_ack,
            "tcp_time_wait" => &mut t.tcp_time_wait,
            "tcp_close" => &mut t.tcp_close,
            "tcp_unacknowledged" => &mut t.tcp_unacknowledged,
            "udp" => &mut t.udp,
            "udp_stream" => &mut t.udp_stream,
            "icmp" => &mut t.icmp,
            "icmpv6" => &mut t.icmpv6,
            "generic" => &mut t.generic,
            _ => return Err(format!("conntrack.timeouts: unknown timeout {name:?}")),
        };
        if v == 0 || v > 24 * 86400 {
            return Err(format!(
                "conntrack.timeouts.{name}: {v} s is not within 1..=2073600"
            ));
        }
        *slot = v;
    }
    Ok(c)
}

/// A flow hash key from the OS (16 bytes of `/dev/urandom`, read once at start): flows that
/// share a bucket cannot be chosen without it.
pub fn random_hash_key() -> anyhow::Result<conntrack::HashKey> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| anyhow::anyhow!("conntrack: cannot read a hash key from /dev/urandom: {e}"))?;
    Ok(conntrack::HashKey::from_bytes(b))
}

/// Compiles the configured rules (none: everything accepted, conntrack still tracks). Relative
/// rules paths are taken from the configuration file's directory.
pub fn load_rules(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    workers: usize,
) -> Result<Compiled, dataplane::LoadError> {
    let cc = compile_config(cfg, workers);
    let base = config_path.and_then(|p| p.parent());
    let resolve = |p: &Option<std::path::PathBuf>| {
        p.as_ref().map(|p| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.clone(),
        })
    };
    match &cfg.rules {
        Some(r) if r.ipv4.is_some() || r.ipv6.is_some() => {
            let (v4, v6) = (resolve(&r.ipv4), resolve(&r.ipv6));
            dataplane::load(v4.as_deref(), v6.as_deref(), &cc)
        }
        _ => Ok(Compiled::accept_all(&cc)),
    }
}

/// The running firewall, shared by the control thread. The mutexes here are on the control
/// side only (the control socket and the metrics threads share this): the workers never take
/// them, they answer requests from their queues between bursts.
pub struct Firewall {
    pub rules: Arc<ArcSwap<Compiled>>,
    /// One request queue per worker.
    pub workers: Vec<Mutex<ControlClient>>,
    pub logs: Mutex<Vec<rtrb::Consumer<LogEvent>>>,
    /// NFLOG packets, written by the control thread in batches.
    pub nflog: Mutex<Option<ports::pcapng::PcapngWriter<std::io::BufWriter<std::fs::File>>>>,
    pub port_names: [String; 2],
    /// The configuration file the rules paths come from (reload re-reads it).
    pub config_path: Option<std::path::PathBuf>,
    pub workers_count: usize,
}

/// Size of each worker's LOG/NFLOG queue.
const LOG_QUEUE: usize = 4096;
/// Frames (2 KiB slots) all the handoff queues into one worker hold together: 8 MiB a worker,
/// split over its peers, so that a peer descheduled for a few milliseconds loses nothing.
pub const HANDOFF_SLOTS_PER_WORKER: usize = 4096;
/// The least a queue between two workers holds.
pub const HANDOFF_SLOTS_MIN: usize = 256;
/// How long the control thread waits for a worker's answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

impl Firewall {
    /// Compiles the rules and makes one data-plane worker per worker thread; returns the
    /// pipelines to hand to the threads.
    pub fn start(
        cfg: &Config,
        workers: usize,
        config_path: Option<&std::path::Path>,
    ) -> anyhow::Result<(Arc<Firewall>, Vec<dataplane::pipeline::Firewall>)> {
        let compiled =
            load_rules(cfg, config_path, workers).map_err(|e| anyhow::anyhow!("rules:\n{e}"))?;
        let mut ct = conntrack_config(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        if cfg.conntrack.hash_key.is_none() {
            ct.hash_key = random_hash_key()?;
            tracing::info!("conntrack: flow hash key drawn from /dev/urandom");
        } else {
            tracing::warn!("conntrack: flow hash key set by the configuration (tests only)");
        }
        let rules = Arc::new(ArcSwap::from_pointee(compiled));
        let mut pipes = Vec::new();
        let mut handles = Vec::new();
        let mut logs = Vec::new();
        let mut mesh = if workers > 1 {
            let slots = (HANDOFF_SLOTS_PER_WORKER / (workers - 1)).max(HANDOFF_SLOTS_MIN);
            dataplane::steer::mesh(workers, ct.hash_key, slots)
        } else {
            Vec::new()
        }
        .into_iter();
        for i in 0..workers {
            let mut w = Worker::new(
                rules.clone(),
                &ct,
                ct.per_shard(workers),
                i,
                workers,
                now_ns(),
            );
            w.set_bridge(cfg.bridge.policy());
            let (tx, rx) = rtrb::RingBuffer::new(LOG_QUEUE);
            w.set_log_queue(tx);
            logs.push(rx);
            let mut p = dataplane::pipeline::Firewall::new(w);
            if let Some(st) = mesh.next() {
                p = p.with_steer(st);
            }
            handles.push(Mutex::new(p.control()));
            pipes.push(p);
        }
        let nflog = match cfg.rules.as_ref().and_then(|r| r.nflog_pcapng.as_ref()) {
            Some(p) => {
                let f = std::fs::File::create(p)
                    .map_err(|e| anyhow::anyhow!("rules.nflog_pcapng {}: {e}", p.display()))?;
                Some(ports::pcapng::PcapngWriter::new(
                    std::io::BufWriter::new(f),
                    2,
                )?)
            }
            None => None,
        };
        let fw = Firewall {
            rules,
            workers: handles,
            logs: Mutex::new(logs),
            nflog: Mutex::new(nflog),
            port_names: [
                cfg.ports.a.interface.get_ref().clone(),
                cfg.ports.b.interface.get_ref().clone(),
            ],
            config_path: config_path.map(|p| p.to_owned()),
            workers_count: workers,
        };
        Ok((Arc::new(fw), pipes))
    }

    /// Re-reads the configuration's rules files, compiles them off the data path and swaps them
    /// in; conntrack is untouched. On any error the running ruleset stays.
    pub fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload from".into());
        };
        let cfg = Config::load_unchecked(path).map_err(|e| e.to_string())?;
        let compiled =
            load_rules(&cfg, Some(path), self.workers_count).map_err(|e| e.to_string())?;
        let n = compiled.counter_slots;
        self.rules.store(Arc::new(compiled));
        Ok(format!("reloaded: {n} rules and policies\n"))
    }

    /// LOG lines and NFLOG packets queued by the workers: lines go to the log.
    pub fn drain_logs(&self) {
        let names = [self.port_names[0].as_str(), self.port_names[1].as_str()];
        let mut nflog = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut qs) = self.logs.lock() {
            let mut wrote = false;
            for q in qs.iter_mut() {
                let mut lines = Vec::new();
                let _ = dataplane::log::drain(q, names, &mut lines, &mut |ev: &LogEvent| {
                    if let Some(w) = nflog.as_mut() {
                        wrote |= dataplane::pipeline::write_nflog(w, ev).is_ok();
                    }
                });
                for l in String::from_utf8_lossy(&lines).lines() {
                    tracing::info!(target: "fwd::log", "{l}");
                }
            }
            if wrote {
                if let Some(w) = nflog.as_mut() {
                    let _ = w.flush();
                }
            }
        }
    }

    /// `fwd conntrack ...` over the control socket: `-L`/`-C`/`-D`/`-F` with `-p P`, `-s A`,
    /// `-d A` filters.
    pub fn conntrack(&self, args: &[&str]) -> String {
        let mut filter = conntrack::Filter::default();
        let mut op = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "-L" | "--dump" | "-C" | "--count" | "-D" | "--delete" | "-F" | "--flush" => {
                    op = Some(*a)
                }
                "-p" | "--proto" => {
                    let Some(v) = it.next() else {
                        return "error: -p needs a protocol\n".into();
                    };
                    filter.proto = Some(match *v {
                        "tcp" => 6,
                        "udp" => 17,
                        "icmp" => 1,
                        "icmpv6" | "ipv6-icmp" => 58,
                        n => match n.parse() {
                            Ok(n) => n,
                            Err(_) => return format!("error: unknown protocol {n:?}\n"),
                        },
                    });
                }
                "-s" | "--src" | "--orig-src" | "-d" | "--dst" | "--orig-dst" => {
                    let Some(v) = it.next() else {
                        return format!("error: {a} needs an address\n");
                    };
                    let Ok(ip) = v.parse::<IpAddr>() else {
                        return format!("error: bad address {v:?}\n");
                    };
                    if a.contains('s') && !a.contains("dst") {
                        filter.src = Some(ip);
                    } else {
                        filter.dst = Some(ip);
                    }
                }
                other => return format!("error: unknown conntrack option {other:?}\n"),
            }
        }
        let req = match op {
            Some("-L" | "--dump") | None => Request::List(filter),
            Some("-C" | "--count") => Request::Count(filter),
            Some("-D" | "--delete") => Request::Delete(filter),
            Some(_) => Request::Flush,
        };
        let mut snaps = Vec::new();
        let mut n = 0usize;
        for r in self.ask_all(req) {
            match r {
                Ok(Response::List(l)) => snaps.extend(l),
                Ok(Response::Count(c) | Response::Deleted(c)) => n += c,
                Ok(_) => return "error: unexpected answer from a worker\n".into(),
                Err(e) => return format!("error: {e}\n"),
            }
        }
        match req {
            Request::List(_) => {
                let mut out = String::new();
                let _ = conntrack::write_listing(&mut out, &snaps, now_ns());
                out
            }
            Request::Count(_) => format!("{n}\n"),
            _ => {
                format!("conntrack v1.4.7 (conntrack-tools): {n} flow entries have been deleted.\n")
            }
        }
    }

    /// Sends `req` to every worker, then collects the answers (the workers work in parallel).
    fn ask_all(&self, req: Request) -> Vec<Result<Response, String>> {
        let mut clients: Vec<_> = self
            .workers
            .iter()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        clients
            .iter_mut()
            .enumerate()
            .map(|(i, c)| {
                c.call(req, CONTROL_TIMEOUT)
                    .map_err(|e| format!("worker {i}: {e}"))
            })
            .collect()
    }

    /// `fwd rules list [-v] [ipv4|ipv6] [TABLE]`: `iptables -L -n -v` with the live counters.
    pub fn rules_list(&self, args: &[&str]) -> String {
        let v6 = args.contains(&"ipv6");
        let rs = self.rules.load();
        let tables: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| ["filter", "nat", "raw"].contains(a))
            .collect();
        let tables = if tables.is_empty() {
            vec!["filter", "nat", "raw"]
        } else {
            tables
        };
        let mut out = String::new();
        for t in tables {
            let l = rs.list(v6, t);
            if !l.is_empty() {
                out.push_str(&format!("# Table: {t}\n"));
                out.push_str(&l);
            }
        }
        out
    }

    /// The data plane's Prometheus text (asks every worker for its counters).
    pub fn metrics(&self) -> String {
        let mut stats = Vec::new();
        let mut steer = Vec::new();
        let mut entries = 0u64;
        for r in self.ask_all(Request::Stats) {
            match r {
                Ok(Response::Stats {
                    stats: s,
                    entries: e,
                    steer: st,
                }) => {
                    stats.push(*s);
                    steer.push(st);
                    entries += u64::from(e);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("metrics: {e}"),
            }
        }
        let mut out = String::new();
        dataplane::metrics::render(
            &mut out,
            &self.rules.load(),
            &dataplane::metrics::sum_stats(&stats),
            entries,
        );
        render_steer(&mut out, &steer);
        out
    }
}

/// Steering counters per worker, as Prometheus text.
fn render_steer(out: &mut String, steer: &[dataplane::steer::SteerStats]) {
    use std::fmt::Write as _;
    type Field = fn(&dataplane::steer::SteerStats) -> u64;
    let rows: [(&str, &str, Field); 5] = [
        (
            "fwd_handoff_sent_total",
            "Frames copied to the worker owning their flow.",
            |s| s.handed_off,
        ),
        (
            "fwd_handoff_received_total",
            "Frames taken from other workers' handoff queues.",
            |s| s.received,
        ),
        (
            "fwd_handoff_dropped_total",
            "Frames dropped because the handoff queue to the owner was full.",
            |s| s.queue_full,
        ),
        (
            "fwd_handoff_redirected_total",
            "Frames sent on because of a NAT redirect (reply tuple in another shard).",
            |s| s.redirected,
        ),
        (
            "fwd_handoff_redirects",
            "NAT redirects held in the worker's table.",
            |s| s.redirects_held,
        ),
    ];
    for (name, help, f) in rows {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (i, s) in steer.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", f(s));
        }
    }
}
