//! End-to-end tests on the network-namespace testbed (`scripts/testbed.sh`): the real `fwd`
//! binary between a client and a server namespace, real traffic, real kernel.
//!
//! They need root (CI runs as root) and fail loudly without it. Each test builds its own
//! testbed under a unique namespace prefix and tears it down on drop, also when it fails.
//! Tests run one at a time (a lock): they share the machine's two cores.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;
use testkit::read_pcap;

const CLIENT_V4: &str = "198.18.0.1";
const SERVER_V4: &str = "198.18.0.2";

/// This binary's testbeds and configs.
impl Testbed {
    fn up(name: &str, queues: u32) -> Testbed {
        Testbed::up_with("fe", name, queues)
    }
    fn ping(&self, dst: &str, count: u32) -> bool {
        let c = count.to_string();
        let out = self.exec(
            "client",
            &["ping", "-q", "-c", &c, "-i", "0.2", "-W", "1", dst],
        );
        out.status.success()
    }
    fn mac(&self, role: &str, dev: &str) -> String {
        let s = ok(Command::new("ip").args(["-n", &self.ns(role), "-br", "link", "show", dev]));
        s.split_whitespace().nth(2).expect("mac column").to_string()
    }
    fn config(&self, queues: u32, extra: &str) -> PathBuf {
        self.config_on(queues, "[1]", extra)
    }
    fn config_on(&self, queues: u32, cores: &str, extra: &str) -> PathBuf {
        self.write_config(&format!(
            "[ports.a]\ninterface = \"fw-c\"\nmode = \"copy\"\nqueues = {queues}\n\
             [ports.b]\ninterface = \"fw-s\"\nmode = \"copy\"\nqueues = {queues}\n\
             [workers]\ncores = {cores}\n{extra}\n[stats]\nlisten = \"127.0.0.1:9900\"\n\
             [control]\nsocket = \"{}\"\n",
            self.socket().display()
        ))
    }
    fn control_socket(&self) -> PathBuf {
        self.socket()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a corrupted byte cannot hide.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Sends `data` over TCP from namespace `from` to `to_addr` (listening in namespace `to`) and
/// returns what arrived.
fn tcp_transfer(from: &str, to: &str, to_addr: &str, data: Vec<u8>) -> Vec<u8> {
    let addr: SocketAddr = to_addr.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(to, move || {
        let l = TcpListener::bind(addr).expect("bind");
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        got
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
    in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&data).expect("write");
        s.shutdown(std::net::Shutdown::Write).unwrap();
    });
    server.join().expect("server thread")
}

/// Sends `n` UDP datagrams (payload: the sequence number, padded to `size`) from `from` to
/// `dst`, each from its own source port when `spread`, and returns how many `to` received
/// (bound at `bind`) within `wait`.
fn udp_burst(
    from: &str,
    to: &str,
    bind: &str,
    dst: &str,
    n: usize,
    size: usize,
    spread: bool,
) -> usize {
    let bind: SocketAddr = bind.parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = spawn_in_netns(to, move || {
        let s = UdpSocket::bind(bind).expect("bind udp");
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        tx.send(()).unwrap();
        let mut seen = vec![false; n];
        let mut buf = [0u8; 2048];
        while let Ok(k) = s.recv(&mut buf) {
            assert_eq!(k, size, "datagram size");
            let i = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(i < n && !seen[i], "unexpected or duplicate datagram {i}");
            seen[i] = true;
        }
        seen.iter().filter(|s| **s).count()
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("udp server up");
    in_netns(from, move || {
        let mut sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..n {
            if spread {
                sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            }
            let mut p = vec![0u8; size];
            p[..4].copy_from_slice(&(i as u32).to_be_bytes());
            sock.send_to(&p, dst).expect("send");
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    server.join().expect("udp server thread")
}

fn assert_no_xdp(tb: &Testbed) {
    let links = tb.fw_links();
    assert!(
        !links.contains("xdp"),
        "an XDP program stayed attached:\n{links}"
    );
}

#[test]
fn ping_crosses_only_while_fwd_runs_and_nothing_stays_attached() {
    let _g = serial();
    let tb = Testbed::up("p", 1);
    assert!(!tb.ping(SERVER_V4, 1), "ping crossed without fwd");
    let cfg = tb.config(1, "");
    let mut fwd = Fwd::start(&tb, &cfg);
    let links = tb.fw_links();
    assert_eq!(links.matches("prog/xdp").count(), 2, "{links}");
    assert!(tb.ping(SERVER_V4, 3), "ping did not cross fwd");
    let st = fwd.stop();
    assert!(st.success(), "fwd exit status {st}");
    assert_no_xdp(&tb);
    assert!(!tb.ping(SERVER_V4, 1), "ping crossed after fwd stopped");
    assert!(!tb.control_socket().exists(), "control socket left behind");
}

/// Gives the fw namespace's port A an address (198.18.0.3) the client can reach without ARP:
/// if a frame of a data port reached the fw host's stack, a socket there would see it.
fn expose_fw_stack(tb: &Testbed) {
    let fw = tb.ns("fw");
    ok(Command::new("ip").args(["-n", &fw, "addr", "add", "198.18.0.3/24", "dev", "fw-c"]));
    let fw_mac = tb.mac("fw", "fw-c");
    ok(Command::new("ip").args([
        "-n",
        &tb.ns("client"),
        "neigh",
        "replace",
        "198.18.0.3",
        "lladdr",
        &fw_mac,
        "dev",
        "C0",
        "nud",
        "permanent",
    ]));
}

/// Datagrams from the client to 198.18.0.3 that a socket in the fw namespace receives.
fn reaching_fw_stack(tb: &Testbed, port: u16, n: usize) -> usize {
    let a = format!("198.18.0.3:{port}");
    udp_burst(&tb.ns("client"), &tb.ns("fw"), &a, &a, n, 64, true)
}

/// The program is attached through netlink, so it belongs to the interface: after SIGKILL it
/// stays, with empty socket slots, and drops everything (fail closed); the next fwd replaces
/// it (also in another mode), and a clean stop removes it.
#[test]
fn killed_fwd_fails_closed_until_the_next_start() {
    let _g = serial();
    let tb = Testbed::up("k", 1);
    expose_fw_stack(&tb);
    assert_eq!(
        reaching_fw_stack(&tb, 7101, 32),
        32,
        "control run: without fwd the fw stack receives the datagrams"
    );
    assert!(
        tb.ping("198.18.0.3", 1),
        "control run: the fw stack answers ping"
    );
    let cfg = tb.config(1, "");
    let mut fwd = Fwd::start(&tb, &cfg);
    assert_eq!(tb.fw_links().matches("prog/xdp").count(), 2);
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross fwd");
    let mut child = fwd.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let links = tb.fw_links();
    assert_eq!(
        links.matches("prog/xdp").count(),
        2,
        "the programs should stay attached after SIGKILL:\n{links}"
    );
    assert_eq!(
        reaching_fw_stack(&tb, 7102, 32),
        0,
        "frames reached the fw host stack after fwd was killed"
    );
    assert!(
        !tb.ping("198.18.0.3", 2),
        "the fw host stack answered ping after fwd was killed"
    );
    assert!(!tb.ping(SERVER_V4, 1), "ping crossed a killed fwd");

    // A new fwd replaces the stale programs at once (same mode: in place) and forwards.
    let mut again = Fwd::start(&tb, &cfg);
    assert!(
        tb.ping(SERVER_V4, 1),
        "ping did not cross the restarted fwd"
    );
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(
        log.contains("left by a fwd that did not stop cleanly"),
        "the replacement is not logged: {log}"
    );
    let mut child = again.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    // Another mode: the stale native program goes, a generic one comes.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"copy\"\n", "mode = \"copy\"\nattach = \"skb\"\n");
    std::fs::write(&cfg, text).unwrap();
    let mut skb = Fwd::start(&tb, &cfg);
    let links = tb.fw_links();
    assert_eq!(links.matches("xdpgeneric").count(), 2, "{links}");
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross fwd in skb mode");
    assert_eq!(reaching_fw_stack(&tb, 7103, 16), 0);
    let st = skb.stop();
    assert!(st.success(), "fwd exit status {st}");
    assert_no_xdp(&tb);
    assert_eq!(
        reaching_fw_stack(&tb, 7104, 16),
        16,
        "after a clean stop the interface is the host's again"
    );
}

/// A jumbo MTU on a port would black-hole frames over a buffer (the kernel drops them before
/// fwd sees them): `fwd check` and `fwd` refuse, naming the MTU and the maximum.
#[test]
fn a_jumbo_mtu_is_refused_by_check_and_start() {
    let _g = serial();
    let tb = Testbed::up("j", 1);
    for (ns, dev) in [("client", "C0"), ("fw", "fw-c")] {
        ok(Command::new("ip").args(["-n", &tb.ns(ns), "link", "set", dev, "mtu", "9000"]));
    }
    let cfg = tb.config(1, "");
    let want = "\"fw-c\" has MTU 9000, but fwd supports at most 1774";
    let out = tb.exec("fw", &[FWD, "check", "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fwd check accepted a jumbo MTU");
    assert!(err.contains(want) && err.contains("fwd.toml:2:"), "{err}");
    let out = tb.exec("fw", &[FWD, "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "fwd started with a jumbo MTU");
    assert!(err.contains(want), "{err}");
    assert_no_xdp(&tb);
    // At 1500 the same config runs and forwards.
    for (ns, dev) in [("client", "C0"), ("fw", "fw-c")] {
        ok(Command::new("ip").args(["-n", &tb.ns(ns), "link", "set", dev, "mtu", "1500"]));
    }
    let _fwd = Fwd::start(&tb, &cfg);
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross at MTU 1500");
}

/// Polls /metrics until `name_labels` has `value` or `within` passes; returns the time taken.
fn wait_metric(fwd: &Fwd, name_labels: &str, value: u64, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if metric(&fwd.metrics(), name_labels) == value {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A port deleted under traffic and recreated (same name, same addresses): fwd notices, counts
/// the frames it cannot send as port_down, attaches a new program, rebinds its sockets, and
/// forwards again within 2 s, saying so in its log and in fwd_port_up.
#[test]
fn a_deleted_and_recreated_port_forwards_again_within_2_s() {
    let _g = serial();
    let tb = Testbed::up("l", 1);
    let cfg = tb.config(1, "");
    let fwd = Fwd::start(&tb, &cfg);
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross fwd");
    let m = fwd.metrics();
    assert_eq!(metric(&m, "fwd_port_up{port=\"a\"}"), 1, "{m}");
    assert_eq!(metric(&m, "fwd_ready"), 1);
    // Traffic from the server side all along: frames towards the vanished port.
    let mut pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &tb.ns("server"),
            "ping",
            "-q",
            "-i",
            "0.05",
            "-w",
            "8",
        ])
        .arg(CLIENT_V4)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (client, fw) = (tb.ns("client"), tb.ns("fw"));
    ok(Command::new("ip").args(["-n", &client, "link", "del", "C0"]));
    assert!(
        wait_metric(&fwd, "fwd_port_up{port=\"a\"}", 0, Duration::from_secs(2)).is_some(),
        "fwd_port_up did not drop to 0"
    );
    std::thread::sleep(Duration::from_millis(500));
    let m = fwd.metrics();
    let down = metric(&m, "fwd_drops_total{port=\"b\",reason=\"port_down\"}");
    assert!(
        down > 0,
        "frames to the vanished port were not counted:\n{m}"
    );

    ok(Command::new("ip").args([
        "link", "add", "C0", "netns", &client, "type", "veth", "peer", "name", "fw-c", "netns", &fw,
    ]));
    ok(Command::new("ip").args(["-n", &client, "addr", "add", "198.18.0.1/24", "dev", "C0"]));
    ok(Command::new("ip").args(["-n", &client, "link", "set", "C0", "up"]));
    ok(Command::new("ip").args(["-n", &fw, "link", "set", "fw-c", "up"]));
    let t0 = Instant::now();
    tb.exec("client", &["ethtool", "-K", "C0", "tx", "off"]);
    let back = wait_metric(&fwd, "fwd_port_up{port=\"a\"}", 1, Duration::from_secs(2));
    assert!(back.is_some(), "the port did not come back within 2 s");
    let answered = tb.exec("client", &["ping", "-c", "1", "-W", "1", SERVER_V4]);
    let took = t0.elapsed();
    assert!(
        answered.status.success(),
        "no ping across the recreated port"
    );
    assert!(
        took < Duration::from_secs(2),
        "forwarding resumed only after {took:?}"
    );
    eprintln!("port back after {back:?}, first ping answered {took:?} after the link came up");
    let m = fwd.metrics();
    assert_eq!(metric(&m, "fwd_port_rebinds_total{port=\"a\"}"), 1, "{m}");
    assert_eq!(
        tcp_transfer(
            &client,
            &tb.ns("server"),
            "198.18.0.2:5101",
            payload(200_000, 7)
        ),
        payload(200_000, 7),
        "TCP across the recreated port"
    );
    let _ = pinger.wait();
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(log.contains("port vanished"), "{log}");
    assert!(log.contains("port is back"), "{log}");
    assert_eq!(tb.fw_links().matches("prog/xdp").count(), 2);
}

/// A port set down and up again (same interface): port_up follows, frames to it meanwhile are
/// port_down drops, and forwarding resumes without a rebind.
#[test]
fn a_port_set_down_and_up_is_followed_without_a_rebind() {
    let _g = serial();
    let tb = Testbed::up("d", 1);
    let cfg = tb.config(1, "");
    let fwd = Fwd::start(&tb, &cfg);
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross fwd");
    let fw = tb.ns("fw");
    ok(Command::new("ip").args(["-n", &fw, "link", "set", "fw-s", "down"]));
    assert!(
        wait_metric(&fwd, "fwd_port_up{port=\"b\"}", 0, Duration::from_secs(2)).is_some(),
        "fwd_port_up{{b}} did not drop to 0"
    );
    assert!(!tb.ping(SERVER_V4, 1), "ping crossed a port that is down");
    let m = fwd.metrics();
    assert!(
        metric(&m, "fwd_drops_total{port=\"a\",reason=\"port_down\"}") > 0,
        "frames to the down port were not counted:\n{m}"
    );
    ok(Command::new("ip").args(["-n", &fw, "link", "set", "fw-s", "up"]));
    assert!(
        wait_metric(&fwd, "fwd_port_up{port=\"b\"}", 1, Duration::from_secs(2)).is_some(),
        "fwd_port_up{{b}} did not come back"
    );
    assert!(
        tb.ping(SERVER_V4, 2),
        "ping did not cross after the port came up"
    );
    assert_eq!(
        metric(&fwd.metrics(), "fwd_port_rebinds_total{port=\"b\"}"),
        0
    );
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(
        log.contains("port is down") && log.contains("port is up"),
        "{log}"
    );
}

/// A jumbo MTU set while fwd runs: logged at once, visible in /metrics, and the frames longer
/// than a buffer are drops with their reason (`oversize`, counted by fwd's XDP program), never
/// a silent black hole.
#[test]
fn a_jumbo_mtu_set_while_running_is_logged_and_its_drops_counted() {
    let _g = serial();
    let tb = Testbed::up("u", 1);
    let cfg = tb.config(1, "");
    // Generic XDP, as attach = "auto" falls back to on drivers without native XDP: native XDP
    // on veth caps the MTU itself (the kernel refuses 9000), generic does not.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"copy\"\n", "mode = \"copy\"\nattach = \"skb\"\n");
    std::fs::write(&cfg, text).unwrap();
    let fwd = Fwd::start(&tb, &cfg);
    assert!(tb.ping(SERVER_V4, 1), "ping did not cross fwd");
    for (ns, dev) in [("client", "C0"), ("fw", "fw-c")] {
        ok(Command::new("ip").args(["-n", &tb.ns(ns), "link", "set", dev, "mtu", "9000"]));
    }
    assert!(
        wait_metric(
            &fwd,
            "fwd_port_mtu{port=\"a\"}",
            9000,
            Duration::from_secs(2)
        )
        .is_some(),
        "the MTU change was not noticed"
    );
    let oversize = "fwd_drops_total{port=\"a\",reason=\"oversize\"}";
    let before = metric(&fwd.metrics(), oversize);
    // 4000-byte pings: frames larger than a buffer
    let big = tb.exec(
        "client",
        &[
            "ping", "-c", "3", "-i", "0.2", "-W", "1", "-s", "4000", SERVER_V4,
        ],
    );
    assert!(!big.status.success(), "a 4000-byte ping crossed");
    std::thread::sleep(Duration::from_millis(1200)); // kernel counters are read once a second
    let after = metric(&fwd.metrics(), oversize);
    assert!(
        after >= before + 3,
        "the 3 oversize frames were not counted as oversize drops ({before} -> {after})"
    );
    assert!(tb.ping(SERVER_V4, 1), "small frames should still cross");
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(
        log.contains("MTU 9000 exceeds the 1774 fwd supports"),
        "the MTU change is not logged: {log}"
    );
}

/// fwd tells systemd READY=1 on its NOTIFY_SOCKET only once it forwards: a ping sent right
/// after it is answered on the first try; SIGTERM brings STOPPING=1.
#[test]
fn ready_is_notified_only_when_forwarding_works() {
    use std::os::unix::net::UnixDatagram;
    let _g = serial();
    let tb = Testbed::up("y", 1);
    let cfg = tb.config(1, "");
    let path = tb.dir.join("notify.sock");
    let sd = UnixDatagram::bind(&path).unwrap();
    sd.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let log = std::fs::File::create(tb.dir.join("fwd.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &tb.ns("fw"), FWD, "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut fwd = Fwd {
        child: Some(child),
        socket: tb.control_socket(),
        ns: tb.ns("fw"),
        log: Some(tb.dir.join("fwd.log")),
    };
    let mut buf = [0u8; 256];
    let n = sd.recv(&mut buf).expect("no READY=1 within 15 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "READY=1");
    let first = tb.exec("client", &["ping", "-c", "1", "-W", "1", SERVER_V4]);
    assert!(
        first.status.success(),
        "the first ping after READY=1 was not answered"
    );
    let stats = fwd.stats();
    assert!(stats.contains("ready: yes\n"), "{stats}");
    let st = fwd.stop();
    assert!(st.success(), "fwd exit status {st}");
    let n = sd.recv(&mut buf).expect("no STOPPING=1 on SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
}

#[test]
fn arp_neighbour_discovery_and_ipv6_ping_work() {
    let _g = serial();
    let tb = Testbed::up("n", 1);
    // mode and attach "auto": zero-copy is refused on veth, so this also checks the fallback.
    let cfg = tb.config(1, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"copy\"\n", "");
    std::fs::write(&cfg, text).unwrap();
    let _fwd = Fwd::start(&tb, &cfg);
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(
        log.contains("bind=Copy"),
        "auto mode should fall back to copy on veth: {log}"
    );
    assert!(
        log.contains("XDP program attached: native (drv) XDP: attach = auto"),
        "attach = auto should log the mode it chose and why: {log}"
    );
    assert!(tb.ping(SERVER_V4, 2), "IPv4 ping");
    assert!(tb.ping("2001:2::2", 2), "IPv6 ping");
    let s0 = tb.mac("server", "S0");
    let c0 = tb.mac("client", "C0");
    let n4 = ok(Command::new("ip").args(["-n", &tb.ns("client"), "neigh", "show", SERVER_V4]));
    assert!(
        n4.contains(&s0),
        "ARP did not resolve the server's MAC {s0}: {n4}"
    );
    let n6 =
        ok(Command::new("ip").args(["-n", &tb.ns("client"), "-6", "neigh", "show", "2001:2::2"]));
    assert!(
        n6.contains(&s0),
        "ND did not resolve the server's MAC {s0}: {n6}"
    );
    let back = ok(Command::new("ip").args(["-n", &tb.ns("server"), "neigh", "show", CLIENT_V4]));
    assert!(back.contains(&c0) || back.is_empty(), "{back}");
}

#[test]
fn tcp_20mb_arrives_byte_exact_in_each_direction() {
    let _g = serial();
    let tb = Testbed::up("t", 1);
    let cfg = tb.config(1, "");
    let fwd = Fwd::start(&tb, &cfg);
    let data = payload(20 << 20, 0x5eed);
    let got = tcp_transfer(
        &tb.ns("client"),
        &tb.ns("server"),
        "198.18.0.2:5001",
        data.clone(),
    );
    assert_eq!(got.len(), data.len(), "client->server length");
    assert!(got == data, "client->server bytes differ");
    let data = payload(20 << 20, 0xfeed);
    let got = tcp_transfer(
        &tb.ns("server"),
        &tb.ns("client"),
        "198.18.0.1:5002",
        data.clone(),
    );
    assert_eq!(got.len(), data.len(), "server->client length");
    assert!(got == data, "server->client bytes differ");
    let m = fwd.metrics();
    assert!(metric(&m, "fwd_rx_bytes_total{port=\"a\"}") > 20 << 20);
    assert!(metric(&m, "fwd_rx_bytes_total{port=\"b\"}") > 20 << 20);
}

#[test]
fn udp_datagrams_arrive_and_metrics_count_them() {
    let _g = serial();
    let tb = Testbed::up("u", 1);
    let cfg = tb.config(1, "");
    // Port b in generic (skb) XDP, port a native: both attach modes carry traffic.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "interface = \"fw-s\"\n",
        "interface = \"fw-s\"\nattach = \"skb\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let fwd = Fwd::start(&tb, &cfg);
    let links = tb.fw_links();
    assert!(
        links.contains("xdpgeneric"),
        "port b should be in skb mode: {links}"
    );
    // Resolve neighbours first, so that only our datagrams cross while we count.
    assert!(tb.ping(SERVER_V4, 1));
    std::thread::sleep(Duration::from_millis(300));
    let before = fwd.metrics();
    let n = 200;
    let size = 100;
    let got = udp_burst(
        &tb.ns("client"),
        &tb.ns("server"),
        "198.18.0.2:6001",
        "198.18.0.2:6001",
        n,
        size,
        false,
    );
    assert_eq!(got, n, "datagrams lost");
    let after = fwd.metrics();
    let d = |k: &str| metric(&after, k) - metric(&before, k);
    let frame = (14 + 20 + 8 + size) as u64;
    // Exactly our datagrams, give or take a little neighbour chatter.
    let rx_a = d("fwd_rx_packets_total{port=\"a\"}");
    assert!((n as u64..=n as u64 + 6).contains(&rx_a), "rx a {rx_a}");
    let tx_b = d("fwd_tx_packets_total{port=\"b\"}");
    assert_eq!(tx_b, rx_a, "everything received on a leaves on b");
    let rx_bytes = d("fwd_rx_bytes_total{port=\"a\"}");
    assert!(
        (n as u64 * frame..=n as u64 * frame + 6 * 90).contains(&rx_bytes),
        "rx bytes {rx_bytes}"
    );
    assert_eq!(d("fwd_drops_total{port=\"a\",reason=\"tx_ring_full\"}"), 0);
    assert!(metric(&after, "fwd_burst_seconds_count") > 0);
    let stats = fwd.stats();
    assert!(stats.contains("port a: rx "), "{stats}");
    // fwd stats, the CLI, says the same.
    let cli = ok(Command::new(FWD)
        .args(["stats", "--socket"])
        .arg(tb.control_socket()));
    assert!(cli.starts_with("port a: rx "), "{cli}");
}

/// Frames on a queue without a socket are dropped by the XDP program, never passed to the fw
/// namespace's own stack. The fw port gets an address so that the stack would take them, and
/// the same datagrams without fwd show that it does.
#[test]
fn frames_on_an_unbound_queue_never_reach_the_fw_stack() {
    let _g = serial();
    let tb = Testbed::up("q", 2);
    let fw = tb.ns("fw");
    ok(Command::new("ip").args(["-n", &fw, "addr", "add", "198.18.0.3/24", "dev", "fw-c"]));
    let fw_mac = tb.mac("fw", "fw-c");
    ok(Command::new("ip").args([
        "-n",
        &tb.ns("client"),
        "neigh",
        "replace",
        "198.18.0.3",
        "lladdr",
        &fw_mac,
        "dev",
        "C0",
        "nud",
        "permanent",
    ]));
    let n = 64;
    // Without fwd the stack of the fw namespace receives them: the detector works.
    let got = udp_burst(
        &tb.ns("client"),
        &fw,
        "198.18.0.3:7001",
        "198.18.0.3:7001",
        n,
        64,
        true,
    );
    assert_eq!(
        got, n,
        "control run: the fw stack should receive every datagram"
    );

    let cfg = tb.config(1, "");
    let fwd = Fwd::start(&tb, &cfg);
    let before = fwd.metrics();
    let got = udp_burst(
        &tb.ns("client"),
        &fw,
        "198.18.0.3:7002",
        "198.18.0.3:7002",
        n,
        64,
        true,
    );
    assert_eq!(
        got, 0,
        "frames reached the fw namespace's stack while fwd ran"
    );
    let after = fwd.metrics();
    let seen = metric(&after, "fwd_rx_packets_total{port=\"a\"}")
        - metric(&before, "fwd_rx_packets_total{port=\"a\"}");
    // Queue 0 frames went through fwd (to the server, which does not want them); the rest
    // arrived on queue 1, which has no socket, and were dropped.
    assert!(
        seen < n as u64,
        "all {n} datagrams landed on queue 0; the test proves nothing"
    );
    assert!(seen > 0, "no datagram landed on queue 0");
}

/// Two queues, two pinned workers, busy polling: flows spread over both queues, each worker
/// forwards its own, nothing is lost.
#[test]
fn two_queues_two_workers_with_busy_poll_forward_everything() {
    let _g = serial();
    let tb = Testbed::up("m", 2);
    let cfg = tb.config_on(2, "[0, 1]", "busy_poll = true");
    let fwd = Fwd::start(&tb, &cfg);
    assert!(tb.ping(SERVER_V4, 2), "ping");
    let n = 128;
    let got = udp_burst(
        &tb.ns("client"),
        &tb.ns("server"),
        "198.18.0.2:6003",
        "198.18.0.2:6003",
        n,
        80,
        true,
    );
    assert_eq!(got, n, "datagrams lost");
    let m = fwd.metrics();
    let w0 = metric(&m, "fwd_worker_rx_packets_total{worker=\"0\",core=\"0\"}");
    let w1 = metric(&m, "fwd_worker_rx_packets_total{worker=\"1\",core=\"1\"}");
    assert!(
        w0 > 0 && w1 > 0,
        "both workers should have received: {w0} {w1}"
    );
    assert!(w0 + w1 >= n as u64);
}

/// `fwd check` inside the fw namespace sees its interfaces and their queue counts.
#[test]
fn check_validates_against_the_namespace() {
    let _g = serial();
    let tb = Testbed::up("c", 1);
    let good = tb.config(1, "");
    let out = tb.exec("fw", &[FWD, "check", "--config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let too_many = tb.config(2, "");
    let out = tb.exec(
        "fw",
        &[FWD, "check", "--config", too_many.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":4:10: ports.a.queues = 2 but interface \"fw-c\" has 1 receive queue(s)"),
        "{err}"
    );
    // Outside the namespace the interfaces do not exist.
    let out = sh(Command::new(FWD).args(["check", "--config"]).arg(&good));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface \"fw-c\""));
    // The rules files are checked too: rules errors with file:line:col, and what the data
    // plane refuses (MASQUERADE out of a port with no address).
    let with_rules = tb.config(1, "[rules]\nipv4 = \"v4.rules\"\n");
    let check = |rules: &str| {
        rules_file(&tb, "v4.rules", rules);
        tb.exec(
            "fw",
            &[FWD, "check", "--config", with_rules.to_str().unwrap()],
        )
    };
    let out = check(STATEFUL);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out =
        check("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("v4.rules:3:"), "{err}");
    // REDIRECT loads (iptables accepts it) with a warning: there is no local stack to take it.
    let out = check(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080\nCOMMIT\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("v4.rules:6: warning: `-j REDIRECT` delivers to the box's own stack"),
        "{err}"
    );
    let out = check(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "v4.rules:6:1: error: -t nat -A POSTROUTING (rule 1): MASQUERADE can leave through port `fw-s`"
        ),
        "{err}"
    );
    // and a ruleset with errors does not start
    let out = tb.exec("fw", &[FWD, "--config", with_rules.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MASQUERADE"));
    assert_no_xdp(&tb);
}

#[test]
fn bad_configs_are_refused_with_position_and_nothing_starts() {
    let _g = serial();
    require_root();
    let dir = std::env::temp_dir().join(format!("fe{}cfg", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[ports.a]\ninterface = \"lo\"\n[ports.b]\ninterface = \"lo\"\nspeed = 10\n[workers]\ncores = [0]\n",
    )
    .unwrap();
    for args in [
        &["check", "--config"][..],
        &["--config"][..],
        &["run", "--config"][..],
    ] {
        let out = sh(Command::new(FWD).args(args).arg(&path));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{}:5:1:", path.display())) && err.contains("speed"),
            "{err}"
        );
    }
    std::fs::write(
        &path,
        "[ports.a]\ninterface = \"fwd-nope0\"\n[ports.b]\ninterface = \"lo\"\n[workers]\ncores = [0]\n",
    )
    .unwrap();
    let out = sh(Command::new(FWD).args(["check", "--config"]).arg(&path));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interface \"fwd-nope0\""));
    std::fs::write(
        &path,
        "[ports.a]\ninterface = \"lo\"\n[ports.b]\ninterface = \"lo\"\n[workers]\ncores = [999]\n",
    )
    .unwrap();
    let out = sh(Command::new(FWD).args(["check", "--config"]).arg(&path));
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rules file next to the testbed's config.
fn rules_file(tb: &Testbed, name: &str, text: &str) -> PathBuf {
    let p = tb.dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Connects over TCP from namespace `from`; the error kind if it fails within 1.5 s.
fn tcp_connect(from: &str, to: &str) -> Result<(), std::io::ErrorKind> {
    let addr: SocketAddr = to.parse().unwrap();
    in_netns(from, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
            .map(|_| ())
            .map_err(|e| e.kind())
    })
}

/// Sends one UDP datagram from `from` to `to` on a connected socket and waits for an answer
/// or an error (an ICMP unreachable shows as ConnectionRefused).
fn udp_probe(from: &str, to: &str) -> Result<usize, std::io::ErrorKind> {
    let addr: SocketAddr = to.parse().unwrap();
    in_netns(from, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        s.send(b"probe").unwrap();
        let mut b = [0u8; 64];
        s.recv(&mut b).map_err(|e| e.kind())
    })
}

/// Echo replies are dropped in raw PREROUTING, before conntrack sees them, so a ping's entry
/// stays UNREPLIED (a drop in FORWARD comes after conntrack has seen the reply).
const STATEFUL: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A PREROUTING -p icmp -m icmp --icmp-type 0 -j DROP\nCOMMIT\n\
    *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    -A FORWARD -i fw-c -p tcp -m tcp --dport 7 -j REJECT --reject-with tcp-reset\n\
    -A FORWARD -i fw-c -p udp -m udp --dport 9 -j REJECT --reject-with icmp-port-unreachable\n\
    -A FORWARD -i fw-c -p tcp -m tcp --dport 5001 -j LOG --log-prefix \"fwd-e2e: \"\n\
    -A FORWARD -i fw-c -p udp -m udp --dport 5353 -j NFLOG --nflog-prefix mdns\n\
    -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

#[test]
fn stateful_ruleset_reject_log_conntrack_counters_and_reload() {
    let _g = serial();
    let tb = Testbed::up("s", 1);
    rules_file(&tb, "v4.rules", STATEFUL);
    let nflog = tb.dir.join("nflog.pcapng");
    let cfg = tb.config(
        1,
        &format!(
            "[rules]\nipv4 = \"v4.rules\"\nnflog_pcapng = \"{}\"\n",
            nflog.display()
        ),
    );
    let fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    // TCP from the client works, byte exact
    let data = payload(200_000, 7);
    assert_eq!(tcp_transfer(&c, &s, "198.18.0.2:5001", data.clone()), data);
    // a new connection from the server side is dropped (times out)
    let srv_listener = {
        let c2 = c.clone();
        spawn_in_netns(&c2, || {
            let l = TcpListener::bind("198.18.0.1:6000").unwrap();
            l.set_nonblocking(true).unwrap();
            std::thread::sleep(Duration::from_millis(2500));
            l.accept().is_ok()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        tcp_connect(&s, "198.18.0.1:6000"),
        Err(std::io::ErrorKind::TimedOut)
    );
    assert!(
        !srv_listener.join().unwrap(),
        "the server's connection must not arrive"
    );
    // UDP to a closed port: the server's port unreachable comes back (RELATED)
    assert_eq!(
        udp_probe(&c, "198.18.0.2:5353"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // REJECT: tcp-reset is "connection refused", the UDP one an ICMP port unreachable
    assert_eq!(
        tcp_connect(&c, "198.18.0.2:7"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(
        udp_probe(&c, "198.18.0.2:9"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // ping: the echo replies are dropped, so the entry stays UNREPLIED
    assert!(
        !tb.ping(SERVER_V4, 1),
        "echo replies are dropped by the rules"
    );
    let ct = fwd::control::request(&fwd.socket, "conntrack -L -p icmp").unwrap();
    let line = ct
        .lines()
        .find(|l| l.starts_with("icmp "))
        .unwrap_or_else(|| panic!("{ct}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&f[..2], ["icmp", "1"], "{line}");
    let rest = f[3..].join(" ");
    assert!(
        rest.starts_with("src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=")
            && rest.contains("[UNREPLIED] src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=")
            && rest.ends_with("mark=0 use=1"),
        "{line}"
    );
    let all = ok(Command::new(FWD)
        .arg("--config")
        .arg(&cfg)
        .args(["conntrack", "-L"]));
    assert!(
        all.contains("tcp      6 ") && all.contains("dport=5001"),
        "{all}"
    );
    // counters: rules list and /metrics
    let list = ok(Command::new(FWD)
        .arg("--config")
        .arg(&cfg)
        .args(["rules", "list", "-v", "-t", "filter"]));
    assert!(list.contains("Chain FORWARD (policy DROP"), "{list}");
    let reject_line = list
        .lines()
        .find(|l| l.contains("tcp-reset"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        reject_line.split_whitespace().nth(1) != Some("0"),
        "{reject_line}"
    );
    let m = fwd.metrics();
    assert!(
        m.contains(
            "fwd_rule_packets_total{family=\"ipv4\",table=\"filter\",chain=\"FORWARD\",rule=\"2\"}"
        ),
        "{m}"
    );
    assert!(metric(&m, "fwd_dataplane_replies_total") >= 2);
    // LOG lines with the prefix in fwd's log
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(tb.dir.join("fwd.log")).unwrap();
    assert!(
        log.contains("fwd-e2e: IN=fw-c OUT=fw-s MAC=")
            && log.contains("PROTO=TCP")
            && log.contains("DPT=5001"),
        "{log}"
    );
    // NFLOG: the UDP probe to 5353 is in the pcapng file, from port a
    let logged = ports::pcapng::PcapngReader::new(std::fs::File::open(&nflog).unwrap())
        .read_all()
        .unwrap();
    assert!(
        logged.iter().any(|p| p.interface == 0
            && p.data.len() > 42
            && p.data[36..38] == 5353u16.to_be_bytes()),
        "{} NFLOG packets, none the probe",
        logged.len()
    );
    // reload under traffic: an established connection survives a ruleset without NEW
    let addr: SocketAddr = "198.18.0.2:5002".parse().unwrap();
    let server = spawn_in_netns(&s, move || {
        let l = TcpListener::bind(addr).unwrap();
        let (mut k, _) = l.accept().unwrap();
        k.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        k.read_to_end(&mut got).unwrap();
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = spawn_in_netns(&c, move || {
        let mut k = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        k.write_all(b"before ").unwrap();
        go_rx.recv().unwrap();
        k.write_all(b"after").unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    rules_file(
        &tb,
        "v4.rules",
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n",
    );
    let r = ok(Command::new(FWD).args(["reload", "--config"]).arg(&cfg));
    assert!(r.starts_with("reloaded"), "{r}");
    go_tx.send(()).unwrap();
    client.join().unwrap();
    assert_eq!(server.join().unwrap(), b"before after");
    assert_eq!(
        tcp_connect(&c, "198.18.0.2:5003"),
        Err(std::io::ErrorKind::TimedOut)
    );
    // a broken ruleset is refused and the running one stays
    rules_file(&tb, "v4.rules", "*filter\n-A FORWARD -j NOPE\nCOMMIT\n");
    let bad = sh(Command::new(FWD).args(["reload", "--config"]).arg(&cfg));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("v4.rules:2:"),
        "{bad:?}"
    );
    let list = fwd::control::request(&fwd.socket, "rules list ipv4 filter").unwrap();
    assert!(list.contains("ctstate RELATED,ESTABLISHED"), "{list}");
}

#[test]
fn dnat_port_forward_and_masquerade() {
    let _g = serial();
    let tb = Testbed::up("d", 1);
    rules_file(
        &tb,
        "v4.rules",
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -d 198.18.0.2/32 -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.2:80\n\
         -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n",
    );
    let cfg = tb.config(1, "[rules]\nipv4 = \"v4.rules\"\n");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "interface = \"fw-s\"\n",
        "interface = \"fw-s\"\naddress = \"198.18.0.254\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    // the server answers the NAT address at the client's MAC: fwd is a bridge, not a router
    let cmac = tb.mac("client", "C0");
    ok(Command::new("ip").args([
        "-n",
        &tb.ns("server"),
        "neigh",
        "replace",
        "198.18.0.254",
        "lladdr",
        &cmac,
        "dev",
        "S0",
    ]));
    let fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    let addr: SocketAddr = "198.18.0.2:80".parse().unwrap();
    let server = spawn_in_netns(&s, move || {
        let l = TcpListener::bind(addr).unwrap();
        let (mut k, peer) = l.accept().unwrap();
        let mut got = Vec::new();
        k.read_to_end(&mut got).unwrap();
        k.write_all(b"pong").unwrap();
        (peer, got)
    });
    std::thread::sleep(Duration::from_millis(200));
    let (reply, listing) = {
        let sock = fwd.socket.clone();
        in_netns(&c, move || {
            let mut k = TcpStream::connect_timeout(
                &"198.18.0.2:8080".parse().unwrap(),
                Duration::from_secs(3),
            )
            .expect("connect through DNAT");
            k.write_all(b"ping").unwrap();
            let listing = fwd::control::request(&sock, "conntrack -L -p tcp").unwrap();
            k.shutdown(std::net::Shutdown::Write).unwrap();
            let mut r = Vec::new();
            k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            k.read_to_end(&mut r).unwrap();
            (r, listing)
        })
    };
    let (peer, got) = server.join().unwrap();
    assert_eq!(got, b"ping");
    assert_eq!(reply, b"pong");
    assert_eq!(
        peer.ip().to_string(),
        "198.18.0.254",
        "the server sees the MASQUERADE address"
    );
    let line = listing
        .lines()
        .find(|l| l.contains("dport=8080"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains("src=198.18.0.1 dst=198.18.0.2 "), "{line}");
    assert!(
        line.contains("src=198.18.0.2 dst=198.18.0.254 sport=80 "),
        "{line}"
    );
}

/// The live appliance and `fwd replay` agree packet for packet: traffic through fwd is
/// captured at the client and the server; what they sent is replayed through `fwd replay` with
/// the same config, and its output must be exactly what they received, port by port.
#[test]
fn replay_agrees_with_the_live_appliance() {
    let _g = serial();
    let tb = Testbed::up("r", 1);
    rules_file(&tb, "v4.rules", STATEFUL);
    let cfg = tb.config(1, "[rules]\nipv4 = \"v4.rules\"\n");
    let _fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    let mut dumps = Vec::new();
    for (role, dev) in [("client", "C0"), ("server", "S0")] {
        let file = tb.dir.join(format!("{role}.pcap"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.ns(role),
                "tcpdump",
                "-U",
                "-n",
                "-s",
                "0",
                "-i",
                dev,
            ])
            .args(["--time-stamp-precision=nano", "-w"])
            .arg(&file)
            .args(["ip", "or", "ip6"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        dumps.push((child, file));
    }
    for (child, _) in &mut dumps {
        testkit::wait_until_listening(child);
    }
    std::thread::sleep(Duration::from_millis(200));
    let data = payload(20_000, 3);
    assert_eq!(tcp_transfer(&c, &s, "198.18.0.2:5001", data.clone()), data);
    let _ = udp_probe(&c, "198.18.0.2:5353");
    let _ = tcp_connect(&c, "198.18.0.2:7");
    let _ = udp_probe(&c, "198.18.0.2:9");
    let _ = tb.ping(SERVER_V4, 1);
    std::thread::sleep(Duration::from_millis(1000));
    let mut caps = Vec::new();
    for (mut child, file) in dumps {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
        caps.push(read_pcap(&std::fs::read(&file).expect("capture")));
    }
    let (cmac, smac) = (tb.mac("client", "C0"), tb.mac("server", "S0"));
    let mac = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap())
            .collect()
    };
    let (cmac, smac) = (mac(&cmac), mac(&smac));
    // what entered fwd (sent by the client on port a, by the server on port b), in time order
    let mut input: Vec<(u64, u32, Vec<u8>)> = Vec::new();
    let mut received: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (port, cap, own) in [(0u32, &caps[0], &cmac), (1, &caps[1], &smac)] {
        for (ts, f) in cap {
            if f[6..12] == own[..] {
                input.push((*ts, port, f.clone()));
            } else {
                received[port as usize].push(f.clone());
            }
        }
    }
    input.sort_by_key(|x| x.0);
    let inp = tb.dir.join("in.pcapng");
    {
        let mut w =
            ports::pcapng::PcapngWriter::new(std::fs::File::create(&inp).unwrap(), 2).unwrap();
        for (ts, port, f) in &input {
            w.write_packet(*port, *ts, f).unwrap();
        }
        w.into_inner().unwrap();
    }
    let out = tb.dir.join("out.pcapng");
    let verdicts = tb.dir.join("v.jsonl");
    let summary = ok(Command::new(FWD)
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg("--in")
        .arg(&inp)
        .arg("--out")
        .arg(&out)
        .arg("--verdicts")
        .arg(&verdicts));
    let replayed = ports::pcapng::PcapngReader::new(std::fs::File::open(&out).unwrap())
        .read_all()
        .unwrap();
    let mut sent: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for p in replayed {
        sent[p.interface as usize].push(p.data);
    }
    assert!(input.len() >= 20, "only {} frames captured", input.len());
    for port in 0..2 {
        assert_eq!(
            sent[port].len(),
            received[port].len(),
            "port {port}: replay transmitted {} frames, the live side received {} ({summary})",
            sent[port].len(),
            received[port].len()
        );
        for (i, (a, b)) in sent[port].iter().zip(&received[port]).enumerate() {
            assert_eq!(a, b, "port {port}, frame {i}");
        }
    }
    let lines = std::fs::read_to_string(&verdicts).unwrap();
    assert_eq!(lines.lines().count(), input.len());
    assert!(lines.contains("\"verdict\":\"reply\""), "{lines}");
}

#[test]
fn ipv6_ruleset_is_applied_to_ipv6_traffic() {
    let _g = serial();
    let tb = Testbed::up("6", 1);
    rules_file(
        &tb,
        "v6.rules",
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -p ipv6-icmp -j ACCEPT\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -i fw-c -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n\
         -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    );
    let cfg = tb.config(1, "[rules]\nipv6 = \"v6.rules\"\n");
    let fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    assert!(
        tb.ping("2001:2::2", 2),
        "ICMPv6 (and neighbour discovery) pass"
    );
    let data = payload(50_000, 11);
    assert_eq!(tcp_transfer(&c, &s, "[2001:2::2]:5001", data.clone()), data);
    assert_eq!(
        tcp_connect(&c, "[2001:2::2]:23"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let listener = spawn_in_netns(&c, || {
        let l = TcpListener::bind("[2001:2::1]:6001").unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        l.accept().is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        tcp_connect(&s, "[2001:2::1]:6001"),
        Err(std::io::ErrorKind::TimedOut)
    );
    assert!(!listener.join().unwrap());
    // IPv4 has no ruleset here: everything crosses
    assert!(tb.ping(SERVER_V4, 1));
    let list = fwd::control::request(&fwd.socket, "rules list ipv6 filter").unwrap();
    assert!(list.contains("Chain FORWARD (policy DROP"), "{list}");
}

/// Stateful: NEW only from port a, replies only as ESTABLISHED.
const STATEFUL_MIN: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

/// Sum of a per-worker metric over workers 0 and 1.
fn per_worker_sum(m: &str, name: &str) -> u64 {
    (0..2)
        .map(|i| metric(m, &format!("{name}{{worker=\"{i}\"}}")))
        .sum()
}

/// Two queues, two workers, a stateful ruleset: the veth spreads each connection's two
/// directions over the queues as it likes, so replies reach the worker that does not own the
/// flow; they are handed to the owner and every connection works.
#[test]
fn two_workers_hand_replies_to_the_flow_owner_under_a_stateful_ruleset() {
    let _g = serial();
    let tb = Testbed::up("h", 2);
    rules_file(&tb, "v4.rules", STATEFUL_MIN);
    let cfg = tb.config_on(2, "[0, 1]", "[rules]\nipv4 = \"v4.rules\"\n");
    let fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    for i in 0..40u64 {
        let data = payload(20_000 + i as usize * 97, i);
        let got = tcp_transfer(&c, &s, "198.18.0.2:6100", data.clone());
        assert!(
            got == data,
            "transfer {i}: {} of {} bytes",
            got.len(),
            data.len()
        );
    }
    // the server cannot open connections to the client
    let addr: SocketAddr = "198.18.0.1:6101".parse().unwrap();
    let _l = spawn_in_netns(&c, move || TcpListener::bind(addr).map(|_| ()));
    assert!(tcp_connect(&s, "198.18.0.1:6101").is_err());
    let m = fwd.metrics();
    let sent = per_worker_sum(&m, "fwd_handoff_sent_total");
    let received = per_worker_sum(&m, "fwd_handoff_received_total");
    let rx = metric(&m, "fwd_rx_packets_total{port=\"a\"}")
        + metric(&m, "fwd_rx_packets_total{port=\"b\"}");
    eprintln!("handoff: {sent} of {rx} frames sent to the other worker, {received} received");
    assert!(
        sent > 0,
        "no frame crossed workers: the test proves nothing\n{m}"
    );
    assert!(received > 0 && received <= sent, "{sent} {received}");
    // conntrack over the request queues: every connection is in exactly one shard
    let n: usize = fwd::control::request(&fwd.socket, "conntrack -C -p tcp")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let listing = fwd::control::request(&fwd.socket, "conntrack -L -p tcp").unwrap();
    let lines = listing.lines().filter(|l| l.contains("dport=6100")).count();
    assert!(n >= 40 && lines >= 40, "{n} {lines}\n{listing}");
    let mut ports: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("dport=6100"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("sport=")))
        .collect();
    let all = ports.len();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), all, "a connection is listed twice:\n{listing}");
}

/// DNAT with two workers: the reply tuple (server port 80) hashes to another shard than the
/// original (port 8080) for about half the connections; their replies are redirected to the
/// owner and un-DNATed there.
#[test]
fn dnat_with_two_workers_redirects_replies_to_the_owner() {
    let _g = serial();
    let tb = Testbed::up("r", 2);
    rules_file(
        &tb,
        "v4.rules",
        &format!(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
             -A PREROUTING -d 198.18.0.2/32 -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.2:80\n\
             COMMIT\n{STATEFUL_MIN}"
        ),
    );
    let cfg = tb.config_on(2, "[0, 1]", "[rules]\nipv4 = \"v4.rules\"\n");
    let fwd = Fwd::start(&tb, &cfg);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    let n = 24;
    let addr: SocketAddr = "198.18.0.2:80".parse().unwrap();
    let server = spawn_in_netns(&s, move || {
        let l = TcpListener::bind(addr).unwrap();
        for _ in 0..n {
            let (mut k, _) = l.accept().unwrap();
            k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            k.read_to_end(&mut got).unwrap();
            k.write_all(&got).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let ok_count = in_netns(&c, move || {
        let mut ok = 0;
        for i in 0..n {
            let msg = format!("ping {i}");
            let Ok(mut k) = TcpStream::connect_timeout(
                &"198.18.0.2:8080".parse().unwrap(),
                Duration::from_secs(3),
            ) else {
                continue;
            };
            k.write_all(msg.as_bytes()).unwrap();
            k.shutdown(std::net::Shutdown::Write).unwrap();
            k.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = Vec::new();
            if k.read_to_end(&mut r).is_ok() && r == msg.as_bytes() {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(ok_count, n, "connections through DNAT that worked");
    server.join().unwrap();
    let m = fwd.metrics();
    let redirected = per_worker_sum(&m, "fwd_handoff_redirected_total");
    eprintln!(
        "redirected {redirected}, handed off {}",
        per_worker_sum(&m, "fwd_handoff_sent_total")
    );
    assert!(redirected > 0, "no reply needed a redirect:\n{m}");
    let listing = fwd::control::request(&fwd.socket, "conntrack -L -p tcp").unwrap();
    assert_eq!(
        listing.lines().filter(|l| l.contains("dport=8080")).count(),
        n,
        "{listing}"
    );
}

/// Median round trip of `n` UDP echoes over one established flow (client 198.18.0.1:7001 ->
/// server 198.18.0.2:7007, answered by `echo`); a lost echo counts as 1 s.
fn udp_rtt_median(tb: &Testbed, n: usize) -> Duration {
    in_netns(&tb.ns("client"), move || {
        let s = UdpSocket::bind("198.18.0.1:7001").expect("bind 7001");
        s.connect("198.18.0.2:7007").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut rtts = Vec::with_capacity(n);
        let mut buf = [0u8; 64];
        for i in 0..n as u32 {
            let t = Instant::now();
            s.send(&i.to_be_bytes()).unwrap();
            let rtt = loop {
                match s.recv(&mut buf) {
                    Ok(4) if buf[..4] == i.to_be_bytes() => break t.elapsed(),
                    Ok(_) => continue,
                    Err(_) => break Duration::from_secs(1),
                }
            };
            rtts.push(rtt);
            std::thread::sleep(Duration::from_millis(3));
        }
        rtts.sort();
        rtts[n / 2]
    })
}

/// Sends UDP from the client's `src` to each of `dsts` in turn, about `pps` a second, until
/// `stop` is set; returns how many it sent.
fn udp_flood(
    tb: &Testbed,
    src: SocketAddr,
    dsts: Vec<SocketAddr>,
    pps: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    spawn_in_netns(&tb.ns("client"), move || {
        let s = UdpSocket::bind(src).expect("bind flood source");
        let start = Instant::now();
        let mut sent = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for d in dsts
                .iter()
                .cycle()
                .skip(sent as usize % dsts.len())
                .take(50)
            {
                let _ = s.send_to(b"flood", d);
                sent += 1;
            }
            let due = Duration::from_secs_f64(sent as f64 / pps as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        sent
    })
}

/// Latency of an established flow before and during a flood of `dsts`: (before, during, sent).
fn rtt_under_flood(
    tb: &Testbed,
    src: SocketAddr,
    dsts: Vec<SocketAddr>,
    pps: u64,
) -> (Duration, Duration, u64) {
    let before = udp_rtt_median(tb, 150);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = udp_flood(tb, src, dsts, pps, stop.clone());
    // Let the chains grow (the old hash: every flood packet walks all of them) before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let during = udp_rtt_median(tb, 150);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().expect("flood thread");
    (before, during, sent)
}

/// Issue 9's hash flood: flows chosen to share one bucket. (1) The old hash gave the same value,
/// whatever its seed, to every IPv6 flow whose far endpoint has the same low 64 bits
/// (`conntrack::legacy_collisions_v6`); under the random key they spread. (2) Flows chosen
/// against a key the configuration gives away share one bucket under the new hash too: the
/// chain bound early-drops within that chain, so lookups stay short. Either way the latency of
/// an established flow moves by less than 2x during the flood (medians of 150 echoes on the
/// 2-core box, where the flood's sender itself competes for the CPUs).
#[test]
fn hash_collision_flood_leaves_established_latency_within_2x() {
    let _g = serial();
    let tb = Testbed::up("h", 1);
    let (c, s) = (tb.ns("client"), tb.ns("server"));
    // The flood's destinations route to the server, which drops them (not its addresses).
    ok(Command::new("ip").args([
        "-n",
        &c,
        "-6",
        "route",
        "add",
        "2001:2:0:8000::/49",
        "via",
        "2001:2::2",
    ]));
    ok(Command::new("ip").args([
        "-n",
        &c,
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        "198.18.0.2",
    ]));
    let echo = spawn_in_netns(&s, || {
        let s = UdpSocket::bind("198.18.0.2:7007").expect("bind echo");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if &buf[..n] == b"quit" {
                break;
            }
            let _ = s.send_to(&buf[..n], from);
        }
    });
    let pps = 5_000;

    // (1) random key, flows that collide under the old hash for every seed
    let cfg = tb.config(1, "");
    let mut fwd = Fwd::start(&tb, &cfg);
    assert!(
        tb.ping("2001:2::2", 1),
        "IPv6 crosses (neighbours resolved)"
    );
    let dsts: Vec<SocketAddr> = conntrack::legacy_collisions_v6(20_000)
        .map(|a| SocketAddr::new(std::net::Ipv6Addr::from(a).into(), 53))
        .collect();
    let (before, during, sent) =
        rtt_under_flood(&tb, "[2001:2::1]:5000".parse().unwrap(), dsts, pps);
    let m = fwd.metrics();
    eprintln!(
        "old-hash colliders, random key: rtt {before:?} -> {during:?}, {sent} sent, {} entries, {} chain early drops",
        metric(&m, "fwd_conntrack_entries"),
        metric(&m, "fwd_conntrack_chain_early_drops_total")
    );
    assert!(sent >= 10_000, "the flood ran ({sent})");
    assert!(
        metric(&m, "fwd_conntrack_entries") >= 10_000,
        "the flood's flows were tracked"
    );
    assert_eq!(
        metric(&m, "fwd_conntrack_chain_early_drops_total"),
        0,
        "under a random key these flows do not share a chain"
    );
    assert!(
        during < before * 2,
        "latency {before:?} -> {during:?} under a flood of old-hash colliders"
    );
    fwd.stop();

    // (2) a known key, flows chosen to share its bucket: the bound keeps them short
    let key = "000102030405060708090a0b0c0d0e0f";
    let cfg = tb.config(
        1,
        &format!("[conntrack]\nmax = 4096\nhash_key = \"{key}\"\n"),
    );
    let fwd = Fwd::start(&tb, &cfg);
    let k = conntrack::HashKey::from_hex(key).unwrap();
    let bucket =
        |t: &conntrack::Tuple| conntrack::flow_hash(&k, conntrack::Family::V4, 17, t) & 4095;
    let client: std::net::IpAddr = CLIENT_V4.parse().unwrap();
    let target = bucket(&conntrack::Tuple::new(
        client,
        "198.19.0.1".parse().unwrap(),
        5001,
        53,
    ));
    let mut dsts = Vec::new();
    'search: for dport in 1..=200u16 {
        for host in 0..=65535u32 {
            let d = std::net::IpAddr::V4((0xC613_0000 | host).into());
            if bucket(&conntrack::Tuple::new(client, d, 5001, dport)) == target {
                dsts.push(SocketAddr::new(d, dport));
                if dsts.len() == 2_000 {
                    break 'search;
                }
            }
        }
    }
    assert_eq!(dsts.len(), 2_000);
    let (before, during, sent) =
        rtt_under_flood(&tb, "198.18.0.1:5001".parse().unwrap(), dsts, pps);
    let m = fwd.metrics();
    let chain_drops = metric(&m, "fwd_conntrack_chain_early_drops_total");
    eprintln!(
        "colliders of a known key: rtt {before:?} -> {during:?}, {sent} sent, {} entries, {chain_drops} chain early drops",
        metric(&m, "fwd_conntrack_entries")
    );
    assert!(
        chain_drops >= sent / 2,
        "the flows shared one chain and were early-dropped within it ({chain_drops} of {sent})"
    );
    assert!(
        during < before * 2,
        "latency {before:?} -> {during:?} under a flood aimed at one chain"
    );
    in_netns(&c, || {
        let s = UdpSocket::bind("198.18.0.1:0").unwrap();
        s.send_to(b"quit", "198.18.0.2:7007").unwrap();
    });
    echo.join().unwrap();
}
