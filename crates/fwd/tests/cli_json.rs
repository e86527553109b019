//! The command line's machine-readable output against a running fwd on the netns testbed
//! (`scripts/testbed.sh`): `fwd stats -o json`, `fwd conntrack -L -o json|xml`, `fwd rules
//! list -o json` parse with `jq` / Python's XML parser and say what the text forms and
//! `/metrics` say; the XML and the `conntrack -E` lines equal what the kernel's own
//! conntrack(8) prints for the same flows in a namespace of their own.
//!
//! Root is needed (namespaces, XDP); CI runs as root. Every namespace has this test's prefix
//! and is deleted on drop, also when an assertion fails.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::*;

const FWD: &str = env!("CARGO_BIN_EXE_fwd");

/// `text` through `jq -e FILTER` (exit 0: it parsed and the filter is true).
fn jq(text: &str, filter: &str) -> String {
    let mut child = Command::new("jq")
        .args(["-e", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq (Debian package jq)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jq -e '{filter}' is not true of:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Python's XML parser takes `xml` (well formed) and returns the flows' element paths.
fn xml_paths(xml: &str) -> String {
    let script = "import sys, xml.etree.ElementTree as E\n\
                  root = E.fromstring(sys.stdin.read())\n\
                  assert root.tag == 'conntrack', root.tag\n\
                  def walk(e, p):\n    print(p + '/' + e.tag, sorted(e.attrib.items()))\n    [walk(c, p + '/' + e.tag) for c in e]\n\
                  [walk(f, '') for f in root]\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not well-formed XML:\n{xml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Timeout and id differ between two tables holding the same flow; everything else may not.
fn without_timeout_and_id(xml: &str) -> String {
    let mut out = xml.to_string();
    for tag in ["timeout", "id"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut s = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&open) {
            s.push_str(&rest[..i + open.len()]);
            s.push('N');
            let j = rest[i..].find(&close).expect("closed") + i;
            rest = &rest[j..];
        }
        s.push_str(rest);
        out = s;
    }
    out
}

/// conntrack -L lines without their timeouts (the third word), which tick between listings.
fn without_timeouts(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            if w.len() > 2 {
                w.remove(2);
            }
            w.join(" ")
        })
        .collect()
}

/// An event line with its timeout (the number after the protocol number) replaced, and the
/// kernel's `[USERSPACE] portid=N` (who deleted it) cut off.
fn event_shape(line: &str) -> String {
    let line = line.split(" [USERSPACE]").next().unwrap();
    let mut w: Vec<&str> = line.split(' ').collect();
    // "    [NEW] udp      17 30 src=..": the first all-digit word after the protocol number
    let proto = w
        .iter()
        .position(|x| ["udp", "tcp", "icmp"].contains(x))
        .unwrap();
    let num = w[proto + 1..].iter().position(|x| !x.is_empty()).unwrap() + proto + 1;
    if w.get(num + 1)
        .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()))
    {
        w[num + 1] = "T";
    }
    w.join(" ")
}

const HOLD_PY: &str = r#"
import socket, sys, time
# tcp-server | tcp-client | udp-server | udp-client | tcp-both | udp-both; holds for 30 s
mode = sys.argv[1]
def tcp_server():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("198.18.0.2", 5001)); l.listen(); return l
def tcp_client():
    c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("198.18.0.1", 40001)); c.settimeout(5); c.connect(("198.18.0.2", 5001)); c.send(b"x")
    return c
def udp_server(wait):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.18.0.2", 9999))
    s.settimeout(10); data, peer = s.recvfrom(64); time.sleep(wait); s.sendto(data, peer)
def udp_client():
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(("198.18.0.1", 40002))
    c.settimeout(5); c.sendto(b"ping", ("198.18.0.2", 9999)); return c
# each mode prints one line once it has done its part
def say(what):
    print(what, flush=True)
if mode == "tcp-server":
    l = tcp_server(); say("listening"); a, _ = l.accept(); a.recv(1); time.sleep(30)
elif mode == "tcp-client":
    c = tcp_client(); say("connected"); time.sleep(30)
elif mode == "tcp-both":
    l = tcp_server(); c = tcp_client(); a, _ = l.accept(); a.recv(1); say("connected"); time.sleep(30)
elif mode == "udp-server":
    say("listening"); udp_server(1.0)
elif mode == "udp-client":
    c = udp_client(); say("sent"); c.recvfrom(64)
elif mode == "udp-both":
    import threading
    t = threading.Thread(target=udp_server, args=(1.0,)); t.start(); time.sleep(0.2)
    c = udp_client(); say("sent"); c.recvfrom(64); t.join()
"#;

struct Bed {
    prefix: String,
    dir: PathBuf,
    children: Vec<Child>,
    /// The children's stdout, kept open so that they never write into a closed pipe.
    outputs: Vec<BufReader<std::process::ChildStdout>>,
}

impl Bed {
    fn up(name: &str) -> Bed {
        let prefix = format!("fj{}{name}-", std::process::id() % 100000);
        let dir = std::env::temp_dir().join(format!("{prefix}dir"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bed = Bed {
            prefix,
            dir,
            children: Vec::new(),
            outputs: Vec::new(),
        };
        ok(Command::new(repo_root().join("scripts/testbed.sh")).args([
            "up",
            "--prefix",
            &bed.prefix,
        ]));
        std::fs::write(bed.dir.join("hold.py"), HOLD_PY).unwrap();
        bed
    }

    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// fwd with a stateful ruleset, running in the fw namespace, answering its socket.
    fn start_fwd(&mut self) {
        self.start_fwd_with(&[]);
    }

    /// [`Bed::start_fwd`] with these environment variables.
    fn start_fwd_with(&mut self, env: &[(&str, &std::ffi::OsStr)]) {
        std::fs::write(
            self.dir.join("v4.rules"),
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
             -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let cfg = self.dir.join("fwd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[ports.a]\ninterface = \"fw-c\"\nmode = \"copy\"\nqueues = 1\n\
                 [ports.b]\ninterface = \"fw-s\"\nmode = \"copy\"\nqueues = 1\n\
                 [workers]\ncores = [1]\n[rules]\nipv4 = \"v4.rules\"\n\
                 [stats]\nlisten = \"127.0.0.1:9900\"\n[control]\nsocket = \"{}\"\n",
                self.socket().display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("fwd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("fw"), FWD, "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn fwd");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while fwd::control::request(&self.socket(), "ping")
            .ok()
            .as_deref()
            != Some("pong\n")
        {
            let log = std::fs::read_to_string(self.dir.join("fwd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "fwd did not come up: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `python3 hold.py MODE` in namespace `ns`, once it printed its first line.
    fn hold(&mut self, ns: &str, mode: &str) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .arg(self.dir.join("hold.py"))
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "hold.py {mode} in {ns} failed");
        self.outputs.push(out);
        self.children.push(child);
        self.children.len() - 1
    }

    fn wait(&mut self, i: usize) {
        let st = self.children[i].wait().unwrap();
        assert!(st.success(), "child {i}: {st}");
    }

    /// A namespace where the kernel tracks the same flows over its loopback (both test
    /// addresses on `lo`), with conntrack(8) to list them.
    fn kernel_ns(&self) -> String {
        let k = self.ns("k");
        ok(Command::new("ip").args(["netns", "add", &k]));
        let sh = format!(
            "ip -n {k} link set lo up && ip -n {k} addr add 198.18.0.1/32 dev lo && \
             ip -n {k} addr add 198.18.0.2/32 dev lo && \
             ip netns exec {k} iptables -A INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"
        );
        ok(Command::new("sh").args(["-c", &sh]));
        k
    }

    fn fwd(&self, args: &[&str]) -> String {
        ok(Command::new(FWD).args(args))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns("k")])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new(repo_root().join("scripts/testbed.sh"))
            .args(["down", "--prefix", &self.prefix])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prom(text: &str, name_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name_labels} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn json_and_xml_outputs_parse_and_the_xml_is_the_kernels() {
    let _g = serial();
    let mut bed = Bed::up("j");
    bed.start_fwd();
    let sock = bed.socket();
    let sock = sock.to_str().unwrap();
    let (c, s) = (bed.ns("client"), bed.ns("server"));
    bed.hold(&s, "tcp-server");
    bed.hold(&c, "tcp-client");

    // the client's last ACK may still be on its way through fwd
    let deadline = Instant::now() + Duration::from_secs(3);
    while !bed
        .fwd(&["conntrack", "-L", "--dport", "5001", "--socket", sock])
        .contains(" ESTABLISHED ")
    {
        assert!(
            Instant::now() < deadline,
            "the TCP flow never got ESTABLISHED"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // options after -L, fwd's own among them (issue 9 item 9)
    let text = bed.fwd(&["conntrack", "-L", "-p", "tcp", "--socket", sock]);
    let line = text
        .lines()
        .find(|l| l.contains("dport=5001"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("ESTABLISHED src=198.18.0.1"), "{line}");
    for args in [
        &["conntrack", "--socket", sock, "-p", "tcp", "-L"][..],
        &["conntrack", "-p", "tcp", "--dump", "--socket", sock],
        &[
            "--config",
            "/nonexistent",
            "conntrack",
            "-p",
            "tcp",
            "--socket",
            sock,
        ],
    ] {
        assert_eq!(
            without_timeouts(&bed.fwd(args)),
            without_timeouts(&text),
            "the order of the options changes nothing: {args:?}"
        );
    }

    // -o json: the same flow, fields named
    let json = bed.fwd(&["conntrack", "-o", "json", "--socket", sock, "-L"]);
    jq(
        &json,
        r#"[.[] | select(.proto == "tcp" and .original.dport == 5001)] | length == 1"#,
    );
    jq(
        &json,
        r#".[] | select(.original.dport == 5001) | .state == "ESTABLISHED" and .assured
           and (.unreplied | not) and .original.src == "198.18.0.1" and .original.sport == 40001
           and .reply.src == "198.18.0.2" and .reply.dport == 40001 and .timeout > 400000"#,
    );
    let all_text = bed.fwd(&["conntrack", "-L", "--socket", sock]);
    assert_eq!(
        jq(&json, "length").parse::<usize>().unwrap(),
        all_text.lines().count(),
        "as many flows as lines:\n{all_text}\n{json}"
    );

    // -o xml: well formed, and what the kernel's conntrack -L -o xml says of the same flow
    let xml = bed.fwd(&[
        "conntrack",
        "--dport",
        "5001",
        "-L",
        "-o",
        "xml",
        "--socket",
        sock,
    ]);
    let paths = xml_paths(&xml);
    assert!(
        paths.contains("/flow/meta/layer4 [('protoname', 'tcp'), ('protonum', '6')]"),
        "{paths}"
    );
    let k = bed.kernel_ns();
    bed.hold(&k, "tcp-both");
    let kernel = ok(Command::new("ip").args([
        "netns",
        "exec",
        &k,
        "conntrack",
        "-L",
        "-p",
        "tcp",
        "--dport",
        "5001",
        "-o",
        "xml",
    ]));
    assert!(
        kernel.contains("<flow>"),
        "the kernel lists no flow: {kernel}"
    );
    assert_eq!(
        without_timeout_and_id(&xml),
        without_timeout_and_id(&kernel),
        "fwd:\n{xml}\nkernel:\n{kernel}"
    );
    assert_eq!(xml_paths(&xml), xml_paths(&kernel));

    // stats -o json: the numbers of /metrics (taken before and after: nothing moves back)
    let before = bed.fwd(&["stats", "--prometheus", "--socket", sock]);
    let stats = bed.fwd(&["stats", "--socket", sock, "-o", "json"]);
    let after = bed.fwd(&["stats", "--prometheus", "--socket", sock]);
    jq(
        &stats,
        r#".ready and .ports.a.link.up and .ports.b.link.interface == "fw-s"
           and (.workers | length == 1) and .workers[0].core == 1
           and (.burst_seconds.quantiles | has("0.99")) and .burst_seconds.count > 0
           and .dataplane.conntrack.entries >= 1 and (.ports.a.drops_by_reason | has("tx_ring_full"))"#,
    );
    for (key, metric) in [
        ("ports.a.rx_packets", "fwd_rx_packets_total{port=\"a\"}"),
        ("ports.b.tx_packets", "fwd_tx_packets_total{port=\"b\"}"),
        ("ports.b.rx_bytes", "fwd_rx_bytes_total{port=\"b\"}"),
        ("dataplane.forwarded", "fwd_dataplane_forwarded_total"),
    ] {
        let v: u64 = jq(&stats, &format!(".{key}")).parse().unwrap();
        let (lo, hi) = (prom(&before, metric), prom(&after, metric));
        assert!(
            lo > 0 && (lo..=hi).contains(&v),
            "{key} {v} not in {lo}..={hi}"
        );
    }
    // the text summary ends with a newline (issue 9 item 9)
    let summary = bed.fwd(&["stats", "--socket", sock]);
    assert!(
        summary.ends_with('\n') && summary.contains("ready: yes\n"),
        "{summary:?}"
    );

    // rules list -o json: chains, policies, rules in save form, their counters
    let rules = bed.fwd(&["rules", "list", "-o", "json", "--socket", sock]);
    jq(
        &rules,
        r#".family == "ipv4" and (.tables | length == 1) and .tables[0].name == "filter""#,
    );
    jq(
        &rules,
        r#".tables[0].chains[] | select(.name == "FORWARD") | .policy == "DROP"
           and .rules[0].rule == "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
           and .rules[0].packets > 0 and .rules[1].packets > 0 and .rules[1].bytes > 0"#,
    );
    let listed = bed.fwd(&["rules", "list", "-v", "--socket", sock]);
    let new_rule: u64 = jq(
        &rules,
        r#".tables[0].chains[] | select(.name == "FORWARD") | .rules[1].packets"#,
    )
    .parse()
    .unwrap();
    let list_line = listed
        .lines()
        .find(|l| l.contains("ctstate NEW"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        // num, pkts, bytes, target...
        list_line.split_whitespace().nth(1).unwrap(),
        new_rule.to_string(),
        "the JSON's counter is iptables -L's: {list_line}"
    );
}

/// Also: with systemd's watchdog variables set, fwd sends READY=1, then WATCHDOG=1 every
/// WATCHDOG_USEC / 2 while it runs.
#[test]
fn conntrack_events_are_the_kernels_lines() {
    use std::os::unix::net::UnixDatagram;
    let _g = serial();
    let mut bed = Bed::up("e");
    let notify = bed.dir.join("notify.sock");
    let sd = UnixDatagram::bind(&notify).unwrap();
    sd.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (ntx, nrx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Ok(n) = sd.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if ntx.send((Instant::now(), msg)).is_err() {
                    break;
                }
            }
        }
    });
    bed.start_fwd_with(&[
        ("NOTIFY_SOCKET", notify.as_os_str()),
        ("WATCHDOG_USEC", std::ffi::OsStr::new("400000")),
    ]);
    let sock = bed.socket();
    let (c, s) = (bed.ns("client"), bed.ns("server"));
    // fwd conntrack -E, its lines collected as they come
    let mut ev = Command::new(FWD)
        .args(["conntrack", "-p", "udp", "-E", "--socket"])
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = ev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    bed.children.push(ev);
    let ev_child = bed.children.len() - 1;
    std::thread::sleep(Duration::from_millis(500));
    // one request, a reply 1 s later, then conntrack -D: NEW, UPDATE, DESTROY
    let srv = bed.hold(&s, "udp-server");
    let cli = bed.hold(&c, "udp-client");
    bed.wait(cli);
    bed.wait(srv);
    std::thread::sleep(Duration::from_millis(500));
    bed.fwd(&[
        "conntrack",
        "-D",
        "-p",
        "udp",
        "--socket",
        sock.to_str().unwrap(),
    ]);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    // the kernel's conntrack -E for the same exchange
    let k = bed.kernel_ns();
    let mut kev = Command::new("ip")
        .args([
            "netns",
            "exec",
            &k,
            "stdbuf",
            "-oL",
            "conntrack",
            "-E",
            "-p",
            "udp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (ktx, krx) = mpsc::channel();
    let kout = kev.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(kout).lines() {
            if ktx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    bed.children.push(kev);
    std::thread::sleep(Duration::from_millis(500));
    let both = bed.hold(&k, "udp-both");
    bed.wait(both);
    ok(Command::new("ip").args(["netns", "exec", &k, "conntrack", "-D", "-p", "udp"]));
    let mut kernel = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while kernel.len() < 3 && Instant::now() < deadline {
        if let Ok(l) = krx.recv_timeout(Duration::from_millis(100)) {
            kernel.push(l);
        }
    }
    assert_eq!(kernel.len(), 3, "kernel events: {kernel:#?}");
    assert_eq!(got.len(), 3, "fwd events: {got:#?}");
    assert!(
        got[0].starts_with("    [NEW] udp      17 ")
            && got[0].contains(" src=198.18.0.1 dst=198.18.0.2 sport=40002 dport=9999 [UNREPLIED]")
            && got[1].starts_with(" [UPDATE] udp      17 ")
            && got[2].starts_with("[DESTROY] udp      17 "),
        "{got:#?}"
    );
    let shapes = |v: &[String]| v.iter().map(|l| event_shape(l)).collect::<Vec<_>>();
    assert_eq!(
        shapes(&got),
        shapes(&kernel),
        "fwd:\n{got:#?}\nkernel:\n{kernel:#?}"
    );

    // the client going away ends its stream; fwd goes on answering
    let ev = &mut bed.children[ev_child];
    let _ = ev.kill();
    let _ = ev.wait();
    assert_eq!(
        fwd::control::request(&sock, "ping").unwrap(),
        "pong\n",
        "fwd answers after the event client left"
    );
    // a bad option is an error line and exit status 1, not a stream
    let bad = sh(Command::new(FWD)
        .args(["conntrack", "-E", "--state", "SLEEPY", "--socket"])
        .arg(&sock));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown TCP state"),
        "{bad:?}"
    );

    // READY=1 first, then WATCHDOG=1 every 200 ms (WATCHDOG_USEC / 2), not faster
    let msgs: Vec<(Instant, String)> = nrx.try_iter().collect();
    assert_eq!(
        msgs.first().map(|m| m.1.as_str()),
        Some("READY=1"),
        "{msgs:?}"
    );
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|m| m.1 == "WATCHDOG=1")
        .map(|m| m.0)
        .collect();
    assert_eq!(
        pings.len() + 1,
        msgs.len(),
        "only READY=1 and WATCHDOG=1: {msgs:?}"
    );
    assert!(
        pings.len() >= 10,
        "{} pings in the test's seconds",
        pings.len()
    );
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (Duration::from_millis(150)..Duration::from_millis(1000)).contains(&gap),
            "WATCHDOG=1 {gap:?} after the last one"
        );
    }
}
