//! The firewall in the appliance: the `[rules]` files compiled by `dataplane::load`, one
//! `dataplane::Worker` per worker thread (behind `dataplane::pipeline::FirewallPipeline`), reload that
//! swaps the compiled ruleset with conntrack intact, and the control thread's commands
//! (`conntrack -L/-C/-D/-F`, `rules list`), metrics and LOG/NFLOG draining.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dataplane::control::{ControlClient, Request, Response};
use dataplane::log::{LogEvent, LogKind};
use dataplane::{CompileConfig, Compiled, PortInfo, Worker};

use crate::config::Config;
use crate::output::Flow;

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The appliance's clock for the data plane: nanoseconds since the first call, shared by the
/// workers and the control thread (conntrack listings compare against it).
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The system's wall clock (UTC, ns since 1970) minus [`now_ns`]: what `-m time` adds to the
/// data plane's clock. Read by the poll loop once a second, so a clock step reaches the rules
/// within a second and the data plane itself reads no clock.
pub fn wall_offset_ns() -> i64 {
    let now = now_ns() as i64;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    wall - now
}

/// What the compiler needs from the configuration.
pub fn compile_config(cfg: &Config, workers: usize) -> CompileConfig {
    use crate::config::Environment;
    let port = |p: &crate::config::PortConfig| PortInfo {
        name: p.interface.get_ref().clone(),
        ipv4: p.address,
        ipv6: p.address6,
        mtu: p
            .mtu
            .as_ref()
            .map(|m| *m.get_ref())
            .or_else(|| crate::config::Host.mtu(p.interface.get_ref()))
            .unwrap_or(1500)
            .min(65535) as u16,
    };
    CompileConfig {
        ports: [port(&cfg.ports.a), port(&cfg.ports.b)],
        workers,
    }
}

/// `[conntrack]` as the conntrack crate's configuration; unknown timeout names are errors.
pub fn conntrack_config(cfg: &Config) -> Result<conntrack::Config, String> {
    let mut c = conntrack::Config::default();
    if let Some(max) = &cfg.conntrack.max {
        let max = *max.get_ref();
        c.max = u32::try_from(max.max(1))
            .ok()
            .filter(|&m| u64::from(m) <= crate::config::CONNTRACK_MAX)
            .ok_or_else(|| {
                format!(
                    "conntrack.max = {max}: expected 1 to {}",
                    crate::config::CONNTRACK_MAX
                )
            })?;
    }
    if let Some(k) = cfg.conntrack.hash_key {
        c.hash_key = k;
    }
    if let Some(on) = cfg.conntrack.checksum {
        c.checksum = on;
    }
    let t = &mut c.timeouts;
    for (name, v) in &cfg.conntrack.timeouts {
        let v = *v.get_ref();
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
            _ => {
                return Err(format!(
                    "conntrack.timeouts: unknown timeout {:?}",
                    crate::config::clip(name)
                ))
            }
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

/// `FILE:LINE: warning: ...` for each rule of the loaded rules that can never fire on a bump
/// in the wire (`fwd check` prints them; nothing else changes).
pub fn rule_warnings(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    compiled: &Compiled,
) -> Vec<String> {
    let base = config_path.and_then(|p| p.parent());
    let Some(r) = &cfg.rules else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, fam) in [(&r.ipv4, &compiled.v4), (&r.ipv6, &compiled.v6)] {
        let (Some(path), Some(rs)) = (path, &fam.source) else {
            continue;
        };
        let shown = match base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.clone(),
        };
        for w in rs.warnings() {
            out.push(format!(
                "{}:{}: warning: {}",
                shown.display(),
                w.line,
                w.message
            ));
        }
    }
    out
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
    /// The `[log]` rate limit of LOG lines (the control thread's only).
    pub log_limit: Mutex<crate::logging::RateLimit>,
    /// LOG lines the rate limit refused, for the metrics.
    pub log_suppressed: std::sync::atomic::AtomicU64,
    /// The `[sync]` thread, when configured.
    pub sync: Option<crate::hasync::SyncHandle>,
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
    ) -> anyhow::Result<(Arc<Firewall>, Vec<dataplane::pipeline::FirewallPipeline>)> {
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
        let (mut event_tx, event_rx) = match &cfg.sync {
            Some(s) => crate::hasync::queues(s, workers),
            None => (Vec::new(), Vec::new()),
        };
        let mut event_tx = event_tx.drain(..);
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
            if let Some(p) = event_tx.next() {
                w.shard_mut().set_events(p);
            }
            let (tx, rx) = rtrb::RingBuffer::new(LOG_QUEUE);
            w.set_log_queue(tx);
            logs.push(rx);
            let mut p = dataplane::pipeline::FirewallPipeline::new(w);
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
        let sync = match &cfg.sync {
            Some(s) => Some(crate::hasync::SyncHandle::start(s, event_rx, ct.hash_key)?),
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
            log_limit: Mutex::new(crate::logging::RateLimit::new(
                *cfg.log.burst.get_ref(),
                Duration::from_millis(*cfg.log.interval_ms.get_ref()),
                now_ns(),
            )),
            log_suppressed: std::sync::atomic::AtomicU64::new(0),
            sync,
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

    /// LOG lines and NFLOG packets queued by the workers: lines go to the log, at the `[log]`
    /// rate at most (the rest counted, not even formatted), NFLOG packets to their file.
    pub fn drain_logs(&self) {
        let names = [self.port_names[0].as_str(), self.port_names[1].as_str()];
        let mut nflog = self.nflog.lock().unwrap_or_else(|e| e.into_inner());
        let mut limit = self.log_limit.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut qs) = self.logs.lock() {
            let mut wrote = false;
            let now = now_ns();
            for q in qs.iter_mut() {
                // What is queued now, not what the worker adds meanwhile: a worker under a
                // flood refills the queue as fast as it is emptied, and the control thread
                // has other things to do (signals, reloads).
                for _ in 0..q.slots() {
                    let Ok(ev) = q.pop() else { break };
                    match ev.kind {
                        LogKind::Log { .. } => {
                            if !limit.allow(now) {
                                continue;
                            }
                            let n = limit.take_pending();
                            if n > 0 {
                                tracing::warn!(
                                    target: "fwd::log",
                                    "LOG: {n} lines suppressed by the rate limit ([log] burst, interval_ms)"
                                );
                            }
                            let line = dataplane::log::format_line(&ev, names);
                            tracing::info!(target: "fwd::log", "{line}");
                        }
                        LogKind::Nflog { .. } => {
                            if let Some(w) = nflog.as_mut() {
                                wrote |= crate::capture::write_nflog(w, &ev).is_ok();
                            }
                        }
                    }
                }
            }
            self.log_suppressed
                .store(limit.suppressed(), std::sync::atomic::Ordering::Relaxed);
            if wrote {
                if let Some(w) = nflog.as_mut() {
                    let _ = w.flush();
                }
            }
        }
    }

    /// `fwd conntrack ...` over the control socket: `-L`/`-C`/`-D`/`-F` with conntrack(8)'s
    /// filters in any order (see [`parse_conntrack`]); `-L` also `-o json` and `-o xml`.
    pub fn conntrack(&self, args: &[&str]) -> String {
        let cmd = match parse_conntrack(args) {
            Ok(c) => c,
            Err(e) => return format!("error: {e}\n"),
        };
        let req = match cmd.op {
            CtOp::Events => {
                return "error: conntrack -E streams events on a connection of its own (fwd conntrack -E)\n"
                    .into()
            }
            CtOp::List => {
                let flows = match self.flows(cmd.filter) {
                    Ok(f) => f,
                    Err(e) => return format!("error: {e}\n"),
                };
                let now = now_ns();
                return match cmd.format {
                    CtOutput::Text => {
                        let snaps: Vec<_> = flows.iter().map(|f| f.snap).collect();
                        let mut out = String::new();
                        let _ = conntrack::write_listing(&mut out, &snaps, now);
                        out
                    }
                    CtOutput::Json => crate::output::flows_json(&flows, now),
                    CtOutput::Xml => crate::output::flows_xml(&flows, now),
                };
            }
            CtOp::Count => Request::Count(cmd.filter),
            CtOp::Delete => Request::Delete(cmd.filter),
            CtOp::Flush => Request::Flush,
        };
        let mut n = 0usize;
        for r in self.ask_all(req) {
            match r {
                Ok(Response::Count(c) | Response::Deleted(c)) => n += c,
                Ok(_) => return "error: unexpected answer from a worker\n".into(),
                Err(e) => return format!("error: {e}\n"),
            }
        }
        match req {
            Request::Count(_) => format!("{n}\n"),
            _ => {
                format!("conntrack v1.4.7 (conntrack-tools): {n} flow entries have been deleted.\n")
            }
        }
    }

    /// Every worker's entries that match `filter`, each with an id unique among the shards
    /// (its slot times the number of workers, plus the worker).
    pub fn flows(&self, filter: conntrack::Filter) -> Result<Vec<Flow>, String> {
        let n = self.workers.len() as u64;
        let mut out = Vec::new();
        for (w, r) in self.ask_all(Request::List(filter)).into_iter().enumerate() {
            match r? {
                Response::List(l) => out.extend(l.into_iter().map(|snap| Flow {
                    id: u64::from(snap.id.0) * n + w as u64,
                    snap,
                })),
                _ => return Err("unexpected answer from a worker".into()),
            }
        }
        Ok(out)
    }

    /// `conntrack -E`: writes NEW/UPDATE/DESTROY lines to `out` until `keep_going` says stop
    /// or a write fails. The workers have no event hook, so this diffs listings taken on the
    /// control side every [`EVENT_INTERVAL`] (the workers walk their tables a chunk per poll
    /// round, as for `-L`): the data path never waits for a reader, and nothing is lost, but
    /// the changes within one interval are one event (a handshake done in 1 ms is one NEW
    /// in ESTABLISHED, not NEW SYN_SENT and two UPDATEs as from the kernel).
    pub fn stream_events(
        &self,
        cmd: &CtCommand,
        out: &mut dyn std::io::Write,
        keep_going: &mut dyn FnMut() -> bool,
    ) -> std::io::Result<()> {
        use crate::output::{event_line, event_timeout, EventKind};
        let to_io = |e: String| std::io::Error::other(e);
        let mut seen: HashMap<u64, conntrack::Snapshot> = self
            .flows(cmd.filter)
            .map_err(to_io)?
            .into_iter()
            .map(|f| (f.id, f.snap))
            .collect();
        let mut lines = String::new();
        let emit = |lines: &mut String, kind: EventKind, s: &conntrack::Snapshot, now: u64| {
            if cmd.events & kind.bit() != 0 {
                lines.push_str(&event_line(kind, s, event_timeout(kind, s, now)));
                lines.push('\n');
            }
        };
        let mut interval = EVENT_INTERVAL;
        loop {
            let until = Instant::now() + interval;
            while Instant::now() < until {
                if !keep_going() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20).min(interval));
            }
            let started = Instant::now();
            let flows = self.flows(cmd.filter).map_err(to_io)?;
            let now = now_ns();
            let mut next = HashMap::with_capacity(flows.len());
            for f in flows {
                match seen.remove(&f.id) {
                    Some(old) if old.orig == f.snap.orig && old.proto == f.snap.proto => {
                        let changed = old.tcp_state != f.snap.tcp_state
                            || old.seen_reply != f.snap.seen_reply
                            || old.assured != f.snap.assured
                            || old.mark != f.snap.mark
                            || old.reply != f.snap.reply;
                        if changed {
                            emit(&mut lines, EventKind::Update, &f.snap, now);
                        }
                    }
                    Some(old) => {
                        // the slot now holds another connection
                        emit(&mut lines, EventKind::Destroy, &old, now);
                        emit(&mut lines, EventKind::New, &f.snap, now);
                    }
                    None => emit(&mut lines, EventKind::New, &f.snap, now),
                }
                next.insert(f.id, f.snap);
            }
            let mut gone: Vec<_> = seen.drain().collect();
            gone.sort_by_key(|(id, _)| *id);
            for (_, old) in gone {
                emit(&mut lines, EventKind::Destroy, &old, now);
            }
            seen = next;
            if !lines.is_empty() {
                out.write_all(lines.as_bytes())?;
                out.flush()?;
                lines.clear();
            }
            // a large table: walk it at most half of the time
            interval = EVENT_INTERVAL.max(started.elapsed() * 2);
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

    /// `fwd rules list [-v] [ipv4|ipv6] [TABLE...] [-o json]`: `iptables -L -n -v` with the
    /// live counters, or JSON (see [`Firewall::rules_json`]).
    pub fn rules_list(&self, args: &[&str]) -> String {
        let mut v6 = false;
        let mut json = false;
        let mut tables: Vec<&str> = Vec::new();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            match a {
                "ipv4" => v6 = false,
                "ipv6" => v6 = true,
                "-v" => {}
                "-t" => match it.next() {
                    Some(&t) if rules::TableName::from_name(t).is_some() => tables.push(t),
                    t => return format!("error: rules list: -t needs filter, nat, raw, mangle or security, not {t:?}\n"),
                },
                "-o" => match it.next() {
                    Some(&"json") => json = true,
                    Some(&"text") => json = false,
                    f => return format!("error: rules list: -o needs text or json, not {f:?}\n"),
                },
                t if rules::TableName::from_name(t).is_some() => tables.push(t),
                other => {
                    return format!(
                        "error: rules list: unknown argument {other:?} (ipv4, ipv6, a table, -o json)\n"
                    )
                }
            }
        }
        if tables.is_empty() {
            tables = vec!["filter", "nat", "raw", "mangle", "security"];
        }
        let rs = self.rules.load();
        if json {
            let mut out = rules_json(&rs, v6, &tables).to_string();
            out.push('\n');
            return out;
        }
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

    /// The data plane's totals for `fwd stats -o json` (the numbers of its /metrics part).
    pub fn dataplane_json(&self) -> serde_json::Value {
        let mut stats = Vec::new();
        let mut entries = 0u64;
        for r in self.ask_all(Request::Stats) {
            if let Ok(Response::Stats {
                stats: s,
                entries: e,
                ..
            }) = r
            {
                stats.push(*s);
                entries += u64::from(e);
            }
        }
        let t = dataplane::metrics::sum_stats(&stats);
        let drops: serde_json::Map<String, serde_json::Value> = dataplane::DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), t.drops[r.index()].into()))
            .collect();
        let bridge: serde_json::Map<String, serde_json::Value> = dataplane::BridgeClass::ALL
            .iter()
            .map(|c| (c.name().to_string(), t.bridge[c.index()].into()))
            .collect();
        serde_json::json!({
            "workers_answering": stats.len(),
            "forwarded": t.forwarded,
            "replies": t.replies,
            "log_events": t.log_events,
            "log_overflow": t.log_overflow,
            "rewrites": t.rewrites,
            "drops_by_reason": drops,
            "bridge_frames": bridge,
            "conntrack": {
                "entries": entries,
                "new": t.conntrack.new,
                "expired": t.conntrack.expired,
                "early_drops": t.conntrack.early_drop,
                "chain_early_drops": t.conntrack.chain_early_drop,
                "invalid": t.conntrack.invalid,
            },
        })
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
        render_log(
            &mut out,
            self.log_suppressed
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if let Some(sy) = &self.sync {
            let dropped = stats.iter().map(|s| s.conntrack.events_dropped).sum();
            sy.render_metrics(&mut out, dropped);
        }
        out
    }

    /// `fwd sync ...` (the control socket's `sync` command), as conntrackd's options: `-e`
    /// / `-i` list the external / internal cache, `-c` or `commit` injects the external cache
    /// into the workers' tables, `-n` asks the peer for its table, `-B` sends ours, `-s`
    /// prints the counters.
    pub fn sync_command(&self, args: &[&str]) -> String {
        let Some(sy) = &self.sync else {
            return "error: no [sync] in the configuration\n".into();
        };
        let r = match args {
            ["-e"] => sy.list_external(),
            ["-i"] => sy.list_internal(),
            ["-s"] => sy.stats_text(),
            ["-n"] => sy.request_resync().map(|_| "resync requested\n".into()),
            ["-B"] => sy.send_bulk().map(|_| "bulk send queued\n".into()),
            ["commit"] | ["-c"] => self.sync_commit(sy),
            _ => Err(format!(
                "usage: sync -e | -i | -s | -n | -B | commit (got {:?})",
                args.join(" ")
            )),
        };
        match r {
            Ok(s) => s,
            Err(e) => format!("error: {e}\n"),
        }
    }

    /// Each external entry to the worker that owns its flow, through its control queue.
    fn sync_commit(&self, sy: &crate::hasync::SyncHandle) -> Result<String, String> {
        let (per, unknown) = sy.imports()?;
        let (mut done, mut refused) = (0, unknown);
        for (i, entries) in per.iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            let mut c = self.workers[i].lock().unwrap_or_else(|e| e.into_inner());
            let (d, r) = c
                .import(entries, CONTROL_TIMEOUT)
                .map_err(|e| format!("worker {i}: {e}"))?;
            done += d;
            refused += r;
        }
        tracing::info!("sync commit: {done} entries committed, {refused} refused");
        Ok(format!(
            "committed {done} entries, {refused} refused (already tracked, no room or unknown state)\n"
        ))
    }
}

/// How often `conntrack -E` compares the table with the last listing (at least; a listing
/// that takes long stretches it to twice its time).
pub const EVENT_INTERVAL: Duration = Duration::from_millis(200);

/// What a `conntrack` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtOp {
    List,
    Count,
    Delete,
    Flush,
    Events,
}

/// `-o` of `conntrack -L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtOutput {
    Text,
    Json,
    Xml,
}

/// A parsed `conntrack` request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtCommand {
    pub op: CtOp,
    pub filter: conntrack::Filter,
    pub format: CtOutput,
    /// `-e`: the [`crate::output::EventKind`] bits to print (all by default).
    pub events: u8,
}

const TCP_STATES: [conntrack::TcpState; 10] = {
    use conntrack::TcpState::*;
    [
        None,
        SynSent,
        SynRecv,
        Established,
        FinWait,
        CloseWait,
        LastAck,
        TimeWait,
        Close,
        SynSent2,
    ]
};

/// conntrack(8)'s options, in any order: one of `-L -C -D -F -E` (default `-L`), the filters
/// `-p -f -s -d -r -q --sport --dport --state -m`, `-e` (event mask) and `-o` (text, json,
/// xml). Long names as conntrack(8) spells them are accepted too.
pub fn parse_conntrack(args: &[&str]) -> Result<CtCommand, String> {
    let mut cmd = CtCommand {
        op: CtOp::List,
        filter: conntrack::Filter::default(),
        format: CtOutput::Text,
        events: 7,
    };
    let mut op: Option<&str> = None;
    let mut format_set = false;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let this_op = match a {
            "-L" | "--dump" => Some(CtOp::List),
            "-C" | "--count" => Some(CtOp::Count),
            "-D" | "--delete" => Some(CtOp::Delete),
            "-F" | "--flush" => Some(CtOp::Flush),
            "-E" | "--event" => Some(CtOp::Events),
            _ => None,
        };
        if let Some(o) = this_op {
            if let Some(prev) = op.filter(|p| *p != a) {
                return Err(format!("{prev} and {a} cannot be combined"));
            }
            op = Some(a);
            cmd.op = o;
            continue;
        }
        let Some(&v) = it.next() else {
            return Err(match a {
                a if a.starts_with('-') => format!("{a} needs a value"),
                a => format!("unknown conntrack option {a:?}"),
            });
        };
        let addr = || {
            v.parse::<IpAddr>()
                .map_err(|_| format!("{a}: bad address {v:?}"))
        };
        let port = || v.parse::<u16>().map_err(|_| format!("{a}: bad port {v:?}"));
        let f = &mut cmd.filter;
        match a {
            "-p" | "--proto" => {
                f.proto = Some(match v {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp" => 1,
                    "icmpv6" | "ipv6-icmp" => 58,
                    "udplite" => 136,
                    "sctp" => 132,
                    "gre" => 47,
                    "dccp" => 33,
                    n => n
                        .parse()
                        .map_err(|_| format!("-p: unknown protocol {n:?}"))?,
                })
            }
            "-f" | "--family" => {
                f.family = Some(match v {
                    "ipv4" => conntrack::Family::V4,
                    "ipv6" => conntrack::Family::V6,
                    _ => return Err(format!("-f: family ipv4 or ipv6, not {v:?}")),
                })
            }
            "-s" | "--src" | "--orig-src" => f.src = Some(addr()?),
            "-d" | "--dst" | "--orig-dst" => f.dst = Some(addr()?),
            "-r" | "--reply-src" => f.reply_src = Some(addr()?),
            "-q" | "--reply-dst" => f.reply_dst = Some(addr()?),
            "--sport" | "--orig-port-src" => f.sport = Some(port()?),
            "--dport" | "--orig-port-dst" => f.dport = Some(port()?),
            "--state" => {
                f.tcp_state = Some(
                    TCP_STATES
                        .into_iter()
                        .find(|s| s.name().eq_ignore_ascii_case(v))
                        .ok_or_else(|| format!("--state: unknown TCP state {v:?}"))?,
                )
            }
            "-m" | "--mark" => f.mark = Some(v.parse().map_err(|_| format!("-m: bad mark {v:?}"))?),
            "-e" | "--event-mask" => {
                let mut bits = 0;
                for e in v.split(',') {
                    bits |= match e.to_ascii_uppercase().as_str() {
                        "NEW" => 1,
                        "UPDATE" => 2,
                        "DESTROY" => 4,
                        "ALL" => 7,
                        _ => {
                            return Err(format!(
                                "-e: unknown event {e:?} (NEW, UPDATE, DESTROY, ALL)"
                            ))
                        }
                    };
                }
                cmd.events = bits;
            }
            "-o" | "--output" => {
                format_set = true;
                for o in v.split(',') {
                    cmd.format = match o {
                        "xml" => CtOutput::Xml,
                        "json" => CtOutput::Json,
                        "text" => CtOutput::Text,
                        _ => return Err(format!("-o: fwd prints text, json or xml, not {o:?}")),
                    };
                }
            }
            _ => return Err(format!("unknown conntrack option {a:?}")),
        }
    }
    if format_set && cmd.op != CtOp::List && cmd.format != CtOutput::Text {
        return Err("-o json and -o xml are for -L".into());
    }
    Ok(cmd)
}

/// `fwd rules list -o json`: the tables asked for (in the order of the rules file), each chain
/// with its policy and the policy's counters (built-in chains; `null` for user chains) and its
/// rules, each in iptables-save form with its packets and bytes.
pub fn rules_json(rs: &Compiled, v6: bool, tables: &[&str]) -> serde_json::Value {
    use serde_json::json;
    let fam = rs.family(v6);
    let mut out = Vec::new();
    if let Some(src) = &fam.source {
        for t in &src.tables {
            if !tables.contains(&t.name.as_str()) {
                continue;
            }
            let chains: Vec<_> = t
                .chains
                .iter()
                .map(|c| {
                    let compiled = fam
                        .chain_id(t.name, &c.name)
                        .map(|id| &fam.chains[id as usize]);
                    let policy = c.policy.map(|p| p.as_str());
                    let (pp, pb) = match (policy, compiled) {
                        (Some(_), Some(cc)) => {
                            let (p, b) = rs.counter_sum(cc.policy_counter);
                            (json!(p), json!(b))
                        }
                        _ => (json!(null), json!(null)),
                    };
                    let rules: Vec<_> = c
                        .rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let (p, b) = compiled
                                .and_then(|cc| cc.rules.get(i))
                                .map(|cr| rs.counter_sum(cr.counter))
                                .unwrap_or((0, 0));
                            json!({
                                "num": i + 1,
                                "rule": format!("-A {}{}", c.name, rules::rule_spec(r)),
                                "packets": p,
                                "bytes": b,
                            })
                        })
                        .collect();
                    json!({
                        "name": c.name,
                        "policy": policy,
                        "packets": pp,
                        "bytes": pb,
                        "rules": rules,
                    })
                })
                .collect();
            out.push(json!({ "name": t.name.as_str(), "chains": chains }));
        }
    }
    json!({
        "family": if v6 { "ipv6" } else { "ipv4" },
        "tables": out,
    })
}

/// What became of log lines: over the LOG rate limit, or dropped because the sink was full.
fn render_log(out: &mut String, suppressed: u64) {
    use std::fmt::Write as _;
    for (name, help, v) in [
        (
            "fwd_log_lines_suppressed_total",
            "LOG rule lines not written: over the [log] rate limit (burst, interval_ms).",
            suppressed,
        ),
        (
            "fwd_log_lines_dropped_total",
            "Log lines dropped because stderr or log.file did not take them (queue full).",
            crate::logging::dropped(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn parse(line: &str) -> Result<CtCommand, String> {
        parse_conntrack(&line.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn conntrack_options_parse_in_any_order() {
        let a = parse("-L -p icmp -s 198.18.0.1").unwrap();
        let b = parse("-s 198.18.0.1 -p icmp -L").unwrap();
        let c = parse("--orig-src 198.18.0.1 --proto 1").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.op, CtOp::List);
        assert_eq!(a.filter.proto, Some(1));
        assert_eq!(a.filter.src, Some("198.18.0.1".parse().unwrap()));
        assert_eq!(a.filter.dst, None);
        let d = parse(
            "-d 2001:2::2 -r 2001:2::2 -q 2001:2::1 --sport 1 --dport 22 --state established \
             -m 3 -f ipv6 -o xml",
        )
        .unwrap();
        let f = d.filter;
        assert_eq!(f.dst, Some("2001:2::2".parse().unwrap()));
        assert_eq!(f.reply_src, Some("2001:2::2".parse().unwrap()));
        assert_eq!(f.reply_dst, Some("2001:2::1".parse().unwrap()));
        assert_eq!((f.sport, f.dport), (Some(1), Some(22)));
        assert_eq!(f.tcp_state, Some(conntrack::TcpState::Established));
        assert_eq!(f.mark, Some(3));
        assert_eq!(f.family, Some(conntrack::Family::V6));
        assert_eq!(d.format, CtOutput::Xml);
        let e = parse("-E -e new,DESTROY -p tcp").unwrap();
        assert_eq!((e.op, e.events), (CtOp::Events, 5));
        assert_eq!(parse("-C").unwrap().op, CtOp::Count);
        assert_eq!(parse("").unwrap().op, CtOp::List);
        for (bad, says) in [
            ("-L -D", "cannot be combined"),
            ("-L -p", "-p needs a value"),
            ("-p nonsense", "unknown protocol"),
            ("-s 1.2.3", "bad address"),
            ("--dport 70000", "bad port"),
            ("--state SLEEPY", "unknown TCP state"),
            ("-o yaml", "text, json or xml"),
            ("-C -o json", "for -L"),
            ("-e NEW,LATER", "unknown event"),
            ("--frobnicate 1", "unknown conntrack option"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rules_json_has_chains_policies_rules_and_counters() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    :web - [0:0]\n-A FORWARD -p tcp -m tcp --dport 80 -j web\n\
                    -A FORWARD -s 198.18.0.0/15 -j ACCEPT\n-A web -j ACCEPT\nCOMMIT\n";
        let rs = rules::parse_restore("t.v4", text, rules::Family::Ipv4).unwrap();
        let cc = CompileConfig {
            ports: [
                PortInfo {
                    name: "fw-c".into(),
                    ipv4: None,
                    ipv6: None,
                    mtu: 1500,
                },
                PortInfo {
                    name: "fw-s".into(),
                    ipv4: None,
                    ipv6: None,
                    mtu: 1500,
                },
            ],
            workers: 1,
        };
        let compiled = dataplane::compile(Some(&rs), None, &cc).unwrap();
        let fam = compiled.family(false);
        let fwd = &fam.chains[fam.chain_id(rules::TableName::Filter, "FORWARD").unwrap() as usize];
        compiled.counters[0].packets[fwd.rules[1].counter as usize].store(4, Ordering::Relaxed);
        compiled.counters[0].bytes[fwd.rules[1].counter as usize].store(336, Ordering::Relaxed);
        compiled.counters[0].packets[fwd.policy_counter as usize].store(2, Ordering::Relaxed);
        let v = rules_json(&compiled, false, &["filter", "nat", "raw"]);
        assert_eq!(v["family"], "ipv4");
        assert_eq!(v["tables"].as_array().unwrap().len(), 1, "{v}");
        let t = &v["tables"][0];
        assert_eq!(t["name"], "filter");
        let chains = t["chains"].as_array().unwrap();
        let names: Vec<_> = chains.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["INPUT", "FORWARD", "OUTPUT", "web"]);
        let f = &chains[1];
        assert_eq!(f["policy"], "DROP");
        assert_eq!(f["packets"], 2);
        assert_eq!(
            f["rules"][0]["rule"],
            "-A FORWARD -p tcp -m tcp --dport 80 -j web"
        );
        assert_eq!(
            f["rules"][1]["rule"],
            "-A FORWARD -s 198.18.0.0/15 -j ACCEPT"
        );
        assert_eq!(f["rules"][1]["num"], 2);
        assert_eq!(f["rules"][1]["packets"], 4);
        assert_eq!(f["rules"][1]["bytes"], 336);
        assert_eq!(f["rules"][0]["packets"], 0);
        assert!(chains[3]["policy"].is_null() && chains[3]["packets"].is_null());
        assert_eq!(chains[3]["rules"][0]["rule"], "-A web -j ACCEPT");
        // a table not asked for, a family without rules
        assert_eq!(
            rules_json(&compiled, false, &["nat"])["tables"],
            serde_json::json!([])
        );
        assert_eq!(
            rules_json(&compiled, true, &["filter"])["tables"],
            serde_json::json!([])
        );
    }
}
