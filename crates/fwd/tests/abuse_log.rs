//! Issue 9, items 6 and 8, end to end with the real `fwd` binary: a LOG flood neither slows
//! forwarding nor floods the log; a log sink that blocks (stderr a pipe nobody reads) stops
//! neither SIGHUP nor SIGTERM; config range errors are short and positioned; `fwd replay`
//! refuses to destroy its input or to pass off a broken capture as a result.
//!
//! The testbed tests need root (CI runs as root) and fail loudly without it; each builds its own
//! namespaces under a unique prefix, torn down on drop, also when it fails. They run one at a
//! time (a lock): they share the machine's two cores.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// This binary's testbeds and configs.
impl Testbed {
    fn up(name: &str) -> Testbed {
        Testbed::up_with("al", name, 1)
    }
    fn config(&self, extra: &str) -> PathBuf {
        self.write_config(&format!(
            "[ports.a]\ninterface = \"fw-c\"\nmode = \"copy\"\n\
             [ports.b]\ninterface = \"fw-s\"\nmode = \"copy\"\n\
             [workers]\ncores = [1]\n[stats]\nlisten = \"127.0.0.1:9900\"\nlog_interval_s = 0\n\
             [control]\nsocket = \"{}\"\n[rules]\nipv4 = \"v4.rules\"\n{extra}\n",
            self.socket().display()
        ))
    }
    fn rules(&self, text: &str) {
        std::fs::write(self.dir.join("v4.rules"), text).unwrap();
    }
}

/// This binary's ways of starting and stopping fwd.
impl Fwd {
    /// Starts fwd with `stderr` as its standard error and waits until it answers.
    fn start_with(tb: &Testbed, config: &Path, stderr: Stdio) -> Fwd {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.ns("fw"), FWD, "--config"])
            .arg(config)
            .stderr(stderr);
        Fwd::launch(tb, &mut cmd, None)
    }

    fn signal(&self, sig: &str) {
        ok(Command::new("kill").args([sig, &self.pid().to_string()]));
    }

    /// SIGTERM; how long fwd took to exit, and its status (None: still running after `limit`).
    fn stop_within(&mut self, limit: Duration) -> (Duration, Option<std::process::ExitStatus>) {
        let t = Instant::now();
        self.signal("-TERM");
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let took = t.elapsed();
                self.child = None;
                return (took, Some(st));
            }
            if t.elapsed() > limit {
                return (t.elapsed(), None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Everything accepted, nothing logged.
const NO_LOG: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A FORWARD -p udp -m udp --dport 9 -j ACCEPT\nCOMMIT\n";
/// The same verdicts, every forwarded packet logged first.
const LOG_ALL: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A FORWARD -j LOG --log-prefix \"flood: \"\n\
    -A FORWARD -p udp -m udp --dport 9 -j ACCEPT\nCOMMIT\n";

/// The flood's destination: routed to the server, which is not it and drops it (no reply
/// traffic competes with the flood).
const FLOOD_DST: &str = "198.19.0.9:9";

/// Sends UDP as fast as one thread can from the client until `stop`; returns how many.
fn flood(tb: &Testbed, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    spawn_in_netns(&tb.ns("client"), move || {
        let s = UdpSocket::bind("198.18.0.1:0").expect("bind flood source");
        let dst: SocketAddr = FLOOD_DST.parse().unwrap();
        let mut sent = 0u64;
        let p = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                if s.send_to(&p, dst).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
}

fn route_flood_to_server(tb: &Testbed) {
    ok(Command::new("ip").args([
        "-n",
        &tb.ns("client"),
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        "198.18.0.2",
    ]));
}

/// Forwarded packets a second from the client side to the server side during `secs` of flood.
fn forwarded_pps(tb: &Testbed, fwd: &Fwd, secs: f64) -> f64 {
    let tx = |m: &str| metric(m, "fwd_tx_packets_total{port=\"b\"}");
    let stop = Arc::new(AtomicBool::new(false));
    let h = flood(tb, stop.clone());
    // let the queues fill before counting
    std::thread::sleep(Duration::from_millis(300));
    let (t0, n0) = (Instant::now(), tx(&fwd.metrics()));
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (t1, n1) = (Instant::now(), tx(&fwd.metrics()));
    stop.store(true, Ordering::Relaxed);
    h.join().expect("flood thread");
    (n1 - n0) as f64 / (t1 - t0).as_secs_f64()
}

fn reload(fwd: &Fwd) {
    let a = fwd.request("reload");
    assert!(a.starts_with("reloaded"), "{a}");
}

/// Issue 9: a LOG-every-packet rule under a flood used to write 40-60k lines a second and cost
/// forwarding. Now the default rate limit (10 lines, then 2 a second, as net_ratelimit) keeps
/// the output small and the forwarding rate within 10% of the same flood with no LOG rule.
/// Measured in one run: eight pairs of phases, the ruleset switched by reload, in ABBA order so
/// that a drift in the box's load cancels; the ratio is the median of the pairs' ratios (the
/// 2-core box is shared, and a build starting during one phase spoils only its pair).
#[test]
fn a_log_flood_keeps_forwarding_within_10_percent_and_the_log_bounded() {
    let _g = serial();
    let tb = Testbed::up("f");
    route_flood_to_server(&tb);
    tb.rules(NO_LOG);
    let cfg = tb.config("");
    let log_path = tb.dir.join("fwd.log");
    let fwd = Fwd::start_with(
        &tb,
        &cfg,
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let started = Instant::now();
    let (mut plain, mut logged) = (Vec::new(), Vec::new());
    let phase = |rules: &str| {
        tb.rules(rules);
        reload(&fwd);
        forwarded_pps(&tb, &fwd, 0.8)
    };
    for i in 0..8 {
        if i % 2 == 0 {
            plain.push(phase(NO_LOG));
            logged.push(phase(LOG_ALL));
        } else {
            logged.push(phase(LOG_ALL));
            plain.push(phase(NO_LOG));
        }
    }
    // the last lines of the flood drained and written
    std::thread::sleep(Duration::from_millis(300));
    let elapsed = started.elapsed().as_secs_f64();
    let m = fwd.metrics();
    let mut ratios: Vec<f64> = logged.iter().zip(&plain).map(|(l, p)| l / p).collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let ratio = (ratios[3] + ratios[4]) / 2.0;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        (v[3] + v[4]) / 2.0
    };
    let (p, l) = (median(&plain), median(&logged));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines = log.lines().filter(|l| l.contains("flood: IN=fw-c")).count();
    let events = metric(&m, "fwd_log_events_total");
    let suppressed = metric(&m, "fwd_log_lines_suppressed_total");
    // events the control thread never saw: the workers' LOG queues were full
    let overflow = metric(&m, "fwd_log_overflow_total");
    eprintln!(
        "no LOG {plain:.0?} pps (median {p:.0}), LOG every packet {logged:.0?} pps (median \
         {l:.0}): pair ratios {ratios:.3?}, median {ratio:.3}; {events} LOG events, {lines} \
         lines written, {suppressed} suppressed, {overflow} lost to full queues in {elapsed:.1} s"
    );
    assert!(p > 1000.0, "the flood was forwarded ({p:.0} pps)");
    assert!(
        ratio >= 0.9,
        "LOG every packet forwarded {:.1}% of the rate without LOG (pair ratios {ratios:.3?})",
        100.0 * ratio
    );
    assert!(events > 10_000, "the LOG rule matched the flood ({events})");
    // 10 in a row, then 2 a second (at most, over the whole run)
    assert!(lines >= 10, "LOG lines were written ({lines})");
    let bound = 10 + (2.0 * elapsed).ceil() as usize;
    assert!(
        lines <= bound,
        "{lines} LOG lines in {elapsed:.1} s: more than the default limit's {bound}"
    );
    // How many a loaded control thread drains before a queue fills varies (CI: 38% suppressed,
    // the rest overflowed), but every event is accounted for: written, suppressed, or counted
    // as overflow; at most the queues' 4096 each may still wait to be drained.
    assert!(
        suppressed + overflow >= events / 2,
        "{suppressed} suppressed + {overflow} overflowed of {events}"
    );
    assert!(
        lines as u64 + suppressed + overflow + 2 * 4096 >= events,
        "LOG events unaccounted for: {events} events, {lines} lines, {suppressed} suppressed, \
         {overflow} overflowed"
    );
    assert!(
        log.contains("lines suppressed by the rate limit"),
        "the suppressed lines are reported"
    );
}

/// Issue 9: with stderr a pipe nobody reads, logging blocked fwd's main loop: SIGHUP went
/// unserved and SIGTERM never finished, leaving the XDP programs attached. Now a full pipe
/// drops lines (counted), SIGHUP reloads, and SIGTERM stops fwd cleanly in under a second.
#[test]
fn with_stderr_a_pipe_nobody_reads_sighup_reloads_and_sigterm_stops_within_1_s() {
    let _g = serial();
    let tb = Testbed::up("p");
    route_flood_to_server(&tb);
    tb.rules(LOG_ALL);
    // no LOG rate limit: every packet's line goes to stderr, so the pipe fills at once
    let cfg = tb.config("[log]\ninterval_ms = 0\n");
    // the read end stays open and unread: writes block once its 64 KiB are full
    let mut fwd = Fwd::start_with(&tb, &cfg, Stdio::piped());
    let _unread = fwd.child.as_mut().unwrap().stderr.take().expect("pipe");
    let stop = Arc::new(AtomicBool::new(false));
    let h = flood(&tb, stop.clone());
    // until the writer is stuck and lines are being dropped
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut dropped = 0;
    while Instant::now() < deadline {
        dropped = metric(&fwd.metrics(), "fwd_log_lines_dropped_total");
        if dropped > 1000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dropped > 1000, "lines dropped with stderr full: {dropped}");
    // SIGHUP: the main loop reloads the rules (a rule the listing then shows)
    let marker = "-A FORWARD -p udp -m udp --dport 4242 -j ACCEPT\n";
    tb.rules(&LOG_ALL.replace("COMMIT\n", &format!("{marker}COMMIT\n")));
    fwd.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if fwd.request("rules list ipv4 filter").contains("dpt:4242") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP was not served within 3 s with stderr blocked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the workers still forward
    let tx = |m: &str| metric(m, "fwd_tx_packets_total{port=\"b\"}");
    let n0 = tx(&fwd.metrics());
    std::thread::sleep(Duration::from_millis(500));
    let n1 = tx(&fwd.metrics());
    assert!(n1 > n0 + 100, "forwarding went on: {n0} -> {n1}");
    let (took, status) = fwd.stop_within(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    h.join().expect("flood thread");
    eprintln!("{dropped}+ lines dropped; SIGTERM to exit: {took:?} ({status:?})");
    let status = status.expect("fwd ended after SIGTERM");
    assert!(status.success(), "a clean stop: {status}");
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?} with stderr blocked"
    );
    let links = tb.fw_links();
    assert!(
        !links.contains("xdp"),
        "an XDP program stayed attached:\n{links}"
    );
}

/// `fwd check` on the testbed's interfaces: a range error and a megabyte of junk are each one
/// short line naming file:line:col, and exit 1.
#[test]
fn config_range_errors_are_short_and_name_file_line_col() {
    let _g = serial();
    let tb = Testbed::up("c");
    let check = |extra: &str| {
        let cfg = tb.config(extra);
        tb.rules(NO_LOG);
        let out = sh(Command::new("ip")
            .args(["netns", "exec", &tb.ns("fw"), FWD, "check", "--config"])
            .arg(&cfg));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err, cfg.display().to_string())
    };
    let (code, err, file) = check("[conntrack]\nmax = 4000000000\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "fwd: error: {file}:17:7: conntrack.max = 4000000000: expected 1 to "
        )),
        "{err}"
    );
    assert!(err.contains("MemAvailable"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let junk = "x".repeat(1 << 20);
    let (code, err, file) = check(&format!("{junk}\n"));
    assert_eq!(code, Some(1), "{}", &err[..err.len().min(300)]);
    assert!(
        err.starts_with(&format!("fwd: error: {file}:16:")),
        "{}",
        &err[..err.len().min(300)]
    );
    assert!(err.len() < 400, "{} bytes of error", err.len());
    let (code, err, _) = check(&format!("[log]\nlevel = \"{junk}=x\"\n"));
    assert_eq!(code, Some(1));
    assert!(err.len() < 400, "{} bytes of error", err.len());
    assert!(err.contains(":17:9: log.level"), "{err}");
    // in range: ok
    let (code, err, _) = check("[conntrack]\nmax = 100000\n[log]\nburst = 5\ninterval_ms = 1000\n");
    assert_eq!(code, Some(0), "{err}");
}

/// A small valid capture: `n` UDP frames from port a.
fn capture(n: usize) -> Vec<u8> {
    let b = wire::builder::FrameBuilder::default();
    let mut w = ports::pcapng::PcapngWriter::new(Vec::new(), 2).unwrap();
    for i in 0..n {
        let f = b.udp(
            wire::builder::IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
            4000 + i as u16,
            53,
            b"query",
        );
        w.write_packet(0, 1_000_000 * i as u64, &f).unwrap();
    }
    w.into_inner().unwrap()
}

fn replay(dir: &Path, args: &[&Path]) -> (Option<i32>, String) {
    let mut c = Command::new(FWD);
    c.arg("--config").arg(dir.join("replay.toml")).arg("replay");
    for (flag, p) in ["--in", "--out", "--verdicts"].iter().zip(args) {
        c.arg(flag).arg(p);
    }
    let out = sh(&mut c);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// `fwd replay --in X --out X` used to destroy X, and an empty capture was "0 packets", exit 0.
#[test]
fn replay_refuses_its_input_as_output_and_empty_or_truncated_captures() {
    // not during another test's flood measurement
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("al{}replay", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("replay.toml"),
        "[ports.a]\ninterface = \"fw-c\"\n[ports.b]\ninterface = \"fw-s\"\n[workers]\ncores = [0]\n",
    )
    .unwrap();
    let good = capture(3);
    let inp = dir.join("in.pcapng");
    std::fs::write(&inp, &good).unwrap();
    let out = dir.join("out.pcapng");

    // a working replay first: 3 packets out
    let (code, text) = replay(&dir, &[&inp, &out]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 packets"), "{text}");
    let written = std::fs::read(&out).unwrap();
    assert_eq!(
        ports::pcapng::PcapngReader::new(&written[..])
            .read_all()
            .unwrap()
            .len(),
        3
    );

    // the same file as output: by its name, another path, a hard link, a symlink
    std::fs::hard_link(&inp, dir.join("link.pcapng")).unwrap();
    std::os::unix::fs::symlink(&inp, dir.join("sym.pcapng")).unwrap();
    let other_path = dir.join(".").join("in.pcapng");
    for o in [
        inp.clone(),
        other_path,
        dir.join("link.pcapng"),
        dir.join("sym.pcapng"),
    ] {
        let (code, text) = replay(&dir, &[&inp, &o]);
        assert_eq!(code, Some(1), "{}: {text}", o.display());
        assert!(text.contains("same file"), "{text}");
        assert_eq!(std::fs::read(&inp).unwrap(), good, "the input is intact");
    }
    // nor the verdicts
    let (code, text) = replay(&dir, &[&inp, &out, &dir.join("link.pcapng")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("--verdicts") && text.contains("same file"),
        "{text}"
    );
    assert_eq!(std::fs::read(&inp).unwrap(), good);

    // an empty file, a capture without packets
    let empty = dir.join("empty.pcapng");
    std::fs::write(&empty, b"").unwrap();
    let (code, text) = replay(&dir, &[&empty, &dir.join("e.out")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("empty file (0 bytes)"), "{text}");
    assert!(!dir.join("e.out").exists(), "nothing written");
    let none = dir.join("none.pcapng");
    std::fs::write(&none, capture(0)).unwrap();
    let (code, text) = replay(&dir, &[&none, &dir.join("n.out")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no packets"), "{text}");
    assert!(!dir.join("n.out").exists(), "nothing written");

    // truncated in the last packet: an error, and the previous output stays as it was
    let cut = dir.join("cut.pcapng");
    std::fs::write(&cut, &good[..good.len() - 10]).unwrap();
    let (code, text) = replay(&dir, &[&cut, &out]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("truncated"), "{text}");
    assert!(text.contains("nothing written"), "{text}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        written,
        "the old output is intact"
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
