//! The control plane under abuse, end to end: the real `fwd` on the network-namespace testbed
//! while a thousand hostile connections hold `/metrics` (slowloris and idle) and silent
//! clients hold the control socket; `/metrics` and `fwd stats` must answer at once anyway, and
//! the control socket must refuse callers of another uid.
//!
//! Needs root (CI runs as root) and fails loudly without it. Each test builds its own testbed
//! under a unique namespace prefix and tears it down on drop, also when it fails.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::*;

const METRICS: &str = "127.0.0.1:9900";
/// What "at once" means here: the median answer.
const PROMPT: Duration = Duration::from_millis(100);
/// The slowest single answer allowed: far under the 5 s a held connection would cost a server
/// that waited on it, above what a loaded 2-core machine adds to one request now and then.
const WORST: Duration = Duration::from_secs(1);

/// This binary's testbeds and configs.
impl Testbed {
    fn up(name: &str) -> Testbed {
        let tb = Testbed::up_with("fa", name, 1);
        // Other uids run a client from here.
        std::fs::set_permissions(&tb.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        tb
    }
    fn config(&self, control_extra: &str) -> PathBuf {
        self.write_config(&format!(
            "[ports.a]\ninterface = \"fw-c\"\nmode = \"copy\"\n\
             [ports.b]\ninterface = \"fw-s\"\nmode = \"copy\"\n\
             [workers]\ncores = [1]\n[stats]\nlisten = \"{METRICS}\"\n\
             [control]\nsocket = \"{}\"\n{control_extra}",
            self.socket().display()
        ))
    }
    /// A copy of the fwd binary that every uid may run (the build tree may not be reachable).
    fn fwd_for_all(&self) -> PathBuf {
        let p = self.dir.join("fwd");
        if !p.exists() {
            std::fs::copy(FWD, &p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        p
    }
}

/// fwd started with umask 000 (so the socket's own mode is what fwd sets).
fn start_fwd(tb: &Testbed, config: &Path) -> Fwd {
    let log = tb.dir.join("fwd.log");
    // `sh` and `ip netns exec` exec in turn: the child's pid is fwd's.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 000 && exec ip netns exec \"$0\" \"$1\" --config \"$2\"")
        .arg(tb.ns("fw"))
        .arg(FWD)
        .arg(config)
        .stderr(std::fs::File::create(&log).unwrap());
    Fwd::launch(tb, &mut cmd, Some(log))
}

/// `/metrics` from inside the fw namespace, and how long the answer took.
fn timed_metrics(fwd: &Fwd) -> (String, Duration) {
    in_netns(&fwd.ns, get_metrics)
}

/// One `GET /metrics` (in the caller's namespace) and its time, connect to last byte.
fn get_metrics() -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(METRICS).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    let took = t.elapsed();
    assert!(out.starts_with("HTTP/1.0 200 OK"), "{out}");
    (out, took)
}

/// Room for a thousand sockets in this process, whatever the shell's soft limit.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.min(8192);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

/// What the attackers did.
#[derive(Debug, Default)]
struct Attack {
    /// Connections opened (first ones and reopened ones).
    opened: usize,
    /// Bytes sent one a second by the slowloris connections.
    trickled: usize,
    /// How long each `/metrics` connection that fwd closed had lived (as seen by the attacker:
    /// a slowloris one's close is noticed at its next byte, at most a second late).
    lifetimes: Vec<Duration>,
}

/// The attack's shape.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Slowloris connections: a request head that never ends, one byte a second.
    slow: usize,
    /// Connections that send nothing.
    idle: usize,
    /// Control socket connections that send nothing.
    silent_control: usize,
    /// Reopen each connection fwd closes (at once for idle ones, at the next second for slow
    /// ones), so the pressure never lets up; otherwise stop when fwd has closed them all.
    reopen: bool,
}

/// Runs `plan` against `/metrics` (in the caller's namespace) and `control` until `stop`, or
/// without `reopen`, until every `/metrics` connection is closed by fwd.
fn attack(
    plan: Plan,
    control: PathBuf,
    established: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Attack {
    const HEAD: &[u8] =
        b"GET /metrics HTTP/1.1\r\nHost: fwd\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    struct Conn {
        stream: Option<TcpStream>,
        opened: Instant,
        sent: usize,
    }
    let mut stats = Attack::default();
    let connect = |stats: &mut Attack| -> Conn {
        let addr = METRICS.parse().unwrap();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .ok()
            .filter(|s| s.set_nonblocking(true).is_ok());
        stats.opened += stream.is_some() as usize;
        Conn {
            stream,
            opened: Instant::now(),
            sent: 0,
        }
    };
    let mut slows: Vec<Conn> = (0..plan.slow).map(|_| connect(&mut stats)).collect();
    let mut idles: Vec<Conn> = (0..plan.idle).map(|_| connect(&mut stats)).collect();
    let mut controls: Vec<Option<UnixStream>> = (0..plan.silent_control)
        .map(|_| UnixStream::connect(&control).ok())
        .collect();
    established.store(
        plan.slow + plan.idle + plan.silent_control,
        Ordering::SeqCst,
    );
    let is_closed = |fd: &mut dyn Read| {
        let mut b = [0u8; 64];
        match fd.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    };
    // Notes a connection fwd closed, and reopens it if so planned.
    let closed = |c: &mut Conn, stats: &mut Attack| {
        if c.stream.take().is_some() {
            stats.lifetimes.push(c.opened.elapsed());
        }
        if plan.reopen {
            *c = connect(stats);
        }
    };
    let mut next_tick = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            for c in &mut slows {
                let alive = match &mut c.stream {
                    Some(st) => {
                        let byte = [HEAD[c.sent % HEAD.len()]];
                        st.write(&byte).is_ok_and(|n| n == 1) && !is_closed(st)
                    }
                    None => false,
                };
                if alive {
                    c.sent += 1;
                    stats.trickled += 1;
                } else if c.stream.is_some() || plan.reopen {
                    closed(c, &mut stats);
                }
            }
        }
        for c in &mut idles {
            let gone = match &mut c.stream {
                Some(st) => is_closed(st),
                None => plan.reopen,
            };
            if gone {
                closed(c, &mut stats);
            }
        }
        for c in &mut controls {
            let gone = c
                .as_mut()
                .is_none_or(|c| c.set_nonblocking(true).is_err() || is_closed(c));
            if gone {
                *c = UnixStream::connect(&control).ok();
            }
        }
        let open = slows.iter().chain(&idles).any(|c| c.stream.is_some());
        if !plan.reopen && !open {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stats
}

/// `fwd stats` as a separate process of uid `uid` (gid `gid`).
fn fwd_stats_as(tb: &Testbed, uid: u32, gid: u32) -> Output {
    Command::new(tb.fwd_for_all())
        .args(["stats", "--socket"])
        .arg(tb.socket())
        // Run by root, std drops the supplementary groups with the uid.
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run fwd stats")
}

/// Answer times of `/metrics` and of the control socket's `stats`, one of each every 700 ms
/// until `done` (at least `min_rounds`, at most 15); checks `fwd stats` the command too.
fn measure(
    tb: &Testbed,
    min_rounds: usize,
    done: &dyn Fn() -> bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut http, mut control) = (Vec::new(), Vec::new());
    let ns = tb.ns("fw");
    for round in 0..15 {
        if round >= min_rounds && done() {
            break;
        }
        let (text, took) = in_netns(&ns, get_metrics);
        assert!(text.contains("fwd_rx_packets_total{port=\"a\"}"), "{text}");
        http.push(took);

        let t = Instant::now();
        let answer = fwd::control::request(&tb.socket(), "stats").expect("control socket");
        control.push(t.elapsed());
        assert!(answer.contains("port a: rx"), "round {round}: {answer}");

        // The `fwd stats` command itself works too (its time is mostly its own start-up).
        let out = fwd_stats_as(tb, 0, 0);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("port a: rx"),
            "round {round}: fwd stats: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    for (what, times) in [("/metrics", &http), ("control stats", &control)] {
        for (i, t) in times.iter().enumerate() {
            assert!(
                *t < WORST,
                "{what} took {t:?} in round {i} under the attack (all: {times:?})"
            );
        }
        let mut sorted = times.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        assert!(
            median < PROMPT,
            "{what}: median {median:?} under the attack (all: {times:?})"
        );
    }
    (http, control)
}

/// Starts `plan` in fwd's namespace; returns once its connections are open.
fn start_attack(tb: &Testbed, plan: Plan) -> (Arc<AtomicBool>, std::thread::JoinHandle<Attack>) {
    let established = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (e, s, c) = (established.clone(), stop.clone(), tb.socket());
        spawn_in_netns(&tb.ns("fw"), move || attack(plan, c, e, s))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while established.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the attack did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    (stop, attacker)
}

#[test]
fn metrics_and_stats_answer_at_once_under_slowloris_idle_and_silent_control_clients() {
    let _g = serial();
    raise_nofile();
    let tb = Testbed::up("load");
    let fwd = start_fwd(&tb, &tb.config(""));

    // 1. Under the connection cap (256): 120 slowloris and 120 idle connections are held until
    //    fwd cuts them at the header timeout (5 s); meanwhile everyone else is served at once.
    let plan = Plan {
        slow: 120,
        idle: 120,
        silent_control: 8,
        reopen: false,
    };
    let (stop, attacker) = start_attack(&tb, plan);
    let (http, control) = measure(&tb, 6, &|| attacker.is_finished());
    stop.store(true, Ordering::SeqCst);
    let held = attacker.join().expect("attacker");
    eprintln!(
        "held attack {:?}: /metrics answered in {http:?}, control stats in {control:?}",
        (held.opened, held.trickled, held.lifetimes.len())
    );
    assert_eq!(
        held.lifetimes.len(),
        240,
        "fwd closed every connection: {held:?}"
    );
    for t in &held.lifetimes {
        assert!(
            *t >= Duration::from_millis(4500) && *t < Duration::from_secs(7),
            "cut at the 5 s header timeout: {t:?} (all: {:?})",
            held.lifetimes
        );
    }
    assert!(held.trickled >= 120 * 4, "the slowloris trickled: {held:?}");
    let (m, _) = timed_metrics(&fwd);
    assert_eq!(
        metric(&m, "fwd_http_connections_refused_total{reason=\"timeout\"}"),
        240
    );
    assert_eq!(
        metric(&m, "fwd_http_connections_refused_total{reason=\"cap\"}"),
        0
    );
    let ctl_timeouts = metric(
        &m,
        "fwd_control_connections_refused_total{reason=\"timeout\"}",
    );
    assert!(
        ctl_timeouts >= 8,
        "silent control clients cut after 2 s: {ctl_timeouts}"
    );

    // 2. Over the cap: 500 slowloris and 500 idle connections, each reopened as soon as fwd
    //    closes it, for seven seconds: the oldest waiting connections make room for new ones,
    //    and a real request is still answered at once.
    let plan = Plan {
        slow: 500,
        idle: 500,
        silent_control: 8,
        reopen: true,
    };
    let (stop, attacker) = start_attack(&tb, plan);
    let started = Instant::now();
    let (http, control) = measure(&tb, 10, &|| true);
    let attacked_for = started.elapsed();
    let (m, _) = timed_metrics(&fwd);
    stop.store(true, Ordering::SeqCst);
    let flood = attacker.join().expect("attacker");
    eprintln!(
        "flood for {attacked_for:?}: {} connections opened, {} bytes trickled; /metrics \
         answered in {http:?}, control stats in {control:?}",
        flood.opened, flood.trickled
    );
    assert!(
        flood.opened > 2000,
        "closed connections came back: {}",
        flood.opened
    );
    let cap = metric(&m, "fwd_http_connections_refused_total{reason=\"cap\"}");
    assert!(cap >= 1000, "cap evictions counted: {cap}");
    let open = metric(&m, "fwd_http_connections_open");
    assert!(
        (200..=256).contains(&open),
        "the cap held and was used: {open}"
    );
    assert_eq!(
        metric(&m, "fwd_control_connections_refused_total{reason=\"peer\"}"),
        0
    );
    let log = fwd.log_text();
    assert!(!log.contains("not a loopback address"), "{log}");
}

#[test]
fn the_control_socket_is_0600_and_refuses_other_uids() {
    let _g = serial();
    let tb = Testbed::up("uid");
    let socket = tb.socket();
    {
        let fwd = start_fwd(&tb, &tb.config(""));
        let meta = std::fs::metadata(&socket).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "mode 0600 although fwd started with umask 000"
        );
        assert_eq!((meta.uid(), meta.gid()), (0, 0));

        // nobody cannot even connect: the mode keeps it out.
        let out = fwd_stats_as(&tb, 65534, 65534);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{out:?}");
        assert!(err.contains("Permission denied"), "{err}");

        // With the mode opened by hand, SO_PEERCRED still refuses it, and counts it.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        for _ in 0..3 {
            let out = fwd_stats_as(&tb, 65534, 65534);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{out:?}");
            assert!(err.contains("fwd: error: permission denied"), "{err}");
            assert!(out.stdout.is_empty(), "{out:?}");
        }
        let out = fwd_stats_as(&tb, 0, 0);
        assert!(out.status.success(), "root is served: {out:?}");
        let (m, _) = timed_metrics(&fwd);
        assert_eq!(
            metric(&m, "fwd_control_connections_refused_total{reason=\"peer\"}"),
            3
        );
        assert!(
            fwd.log_text()
                .contains("control socket: refused a caller whose uid is not allowed"),
            "{}",
            fwd.log_text()
        );
    }
    // With a group: mode 0660 and that group; its members are served, others not.
    let fwd = start_fwd(&tb, &tb.config("group = \"nogroup\"\n"));
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert_eq!(meta.gid(), nogroup.gid.as_raw());
    let out = fwd_stats_as(&tb, 65534, nogroup.gid.as_raw());
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("port a: rx"),
        "a member of the group is served: {out:?}"
    );
    let out = fwd_stats_as(&tb, 65533, 65533);
    assert!(!out.status.success(), "not a member: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    drop(fwd);
}

#[test]
fn a_metrics_address_off_loopback_is_warned_about() {
    let _g = serial();
    let tb = Testbed::up("warn");
    let config = tb.config("");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(METRICS, "0.0.0.0:9900");
    std::fs::write(&config, text).unwrap();
    let fwd = start_fwd(&tb, &config);
    let (m, _) = timed_metrics(&fwd);
    assert!(m.contains("fwd_http_connections_open"));
    let log = fwd.log_text();
    assert!(
        log.contains("WARN") && log.contains("stats.listen 0.0.0.0:9900 is not a loopback address"),
        "{log}"
    );
}
