//! Support for the tests that use the Linux kernel as the oracle: a throw-away router topology in
//! network namespaces, packet captures on its links, a reader for the capture files, and a Linux
//! bridge with br_netfilter ([`Bridge`]) that forwards crafted frames as a bump in the wire.
//!
//! Everything lives in namespaces named with the caller's prefix and the process id, and is removed
//! when the guards drop, also when a test fails. Addresses come from the benchmarking ranges only.
//! Needs root, iproute2, ethtool, tcpdump, iptables and python3 (CI has them).
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `cmd` with `sh -c`; panics with its output unless it succeeds; returns its stdout.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A router between two hosts, each in its own namespace:
///
/// ```text
/// {p}a [{p}ar 198.18.0.1/24 2001:2::1/64] -- [{p}ra .0.254 2001:2::fe] {p}r
///      [{p}rb 198.18.1.254 2001:2:0:1::fe] -- [{p}br 198.18.1.2/24 2001:2:0:1::2/64] {p}b
/// ```
///
/// Forwarding is on for both families, the hosts route through the router, and transmit
/// checksum offload is off on every link, so captured frames carry complete checksums.
/// The namespaces are deleted on drop.
pub struct Router {
    /// The name prefix (`{tag}{pid}`): namespaces are `{p}a`, `{p}r`, `{p}b`.
    pub p: String,
}

impl Router {
    /// Builds the topology; `tag` keeps the namespaces of different tests apart.
    pub fn new(tag: &str) -> Router {
        let p = format!("{tag}{}", std::process::id());
        let router = Router { p: p.clone() };
        sh(&format!(
            "set -e
             ip netns add {p}a; ip netns add {p}r; ip netns add {p}b
             ip link add {p}ar type veth peer name {p}ra
             ip link add {p}br type veth peer name {p}rb
             ip link set {p}ar netns {p}a; ip link set {p}ra netns {p}r
             ip link set {p}br netns {p}b; ip link set {p}rb netns {p}r
             ip -n {p}a addr add 198.18.0.1/24 dev {p}ar
             ip -n {p}r addr add 198.18.0.254/24 dev {p}ra
             ip -n {p}r addr add 198.18.1.254/24 dev {p}rb
             ip -n {p}b addr add 198.18.1.2/24 dev {p}br
             ip -n {p}a addr add 2001:2::1/64 dev {p}ar nodad
             ip -n {p}r addr add 2001:2::fe/64 dev {p}ra nodad
             ip -n {p}r addr add 2001:2:0:1::fe/64 dev {p}rb nodad
             ip -n {p}b addr add 2001:2:0:1::2/64 dev {p}br nodad
             for n in a r b; do ip -n {p}$n link set lo up; done
             ip -n {p}a link set {p}ar up; ip -n {p}r link set {p}ra up
             ip -n {p}r link set {p}rb up; ip -n {p}b link set {p}br up
             ip -n {p}a route add default via 198.18.0.254
             ip -n {p}b route add default via 198.18.1.254
             ip -n {p}a -6 route add default via 2001:2::fe
             ip -n {p}b -6 route add default via 2001:2:0:1::fe
             ip netns exec {p}a ethtool -K {p}ar tx off >/dev/null
             ip netns exec {p}b ethtool -K {p}br tx off >/dev/null
             ip netns exec {p}r ethtool -K {p}ra tx off >/dev/null
             ip netns exec {p}r ethtool -K {p}rb tx off >/dev/null
             ip netns exec {p}r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
        ));
        router
    }

    /// Starts tcpdump in the router namespace on link `{p}{dev}` (`ra` or `rb`) with a capture
    /// filter; nanosecond timestamps. Waits until tcpdump is ready.
    pub fn capture(&self, dev: &str, filter: &[&str]) -> Capture {
        let p = &self.p;
        let path = std::env::temp_dir().join(format!("{p}{dev}.pcap"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{p}r"), "tcpdump", "-U", "-n"])
            .args([
                "-s",
                "0",
                "-j",
                "adapter_unsynced",
                "--time-stamp-precision=nano",
            ])
            .args(["--immediate-mode", "-i", &format!("{p}{dev}"), "-w"])
            .arg(&path)
            .args(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        wait_until_listening(&mut child);
        // the kernel attaches the socket before tcpdump prints; a short margin for its filter
        std::thread::sleep(Duration::from_millis(200));
        Capture {
            child: Some(child),
            path,
        }
    }

    /// The MAC address of link `{p}{dev}` in namespace `{p}{ns}`.
    pub fn mac_of(&self, ns: &str, dev: &str) -> [u8; 6] {
        let p = &self.p;
        let s = sh(&format!("ip -n {p}{ns} -br link show {p}{dev}"));
        let mac = s.split_whitespace().nth(2).expect("a MAC address");
        let bytes: Vec<u8> = mac
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).expect("hex"))
            .collect();
        bytes.try_into().expect("6 bytes")
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        for n in ["a", "r", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}{n}", self.p)])
                .status();
        }
    }
}

/// Which side of a [`Bridge`] a frame enters or leaves by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn letter(self) -> char {
        match self {
            Side::A => 'A',
            Side::B => 'B',
        }
    }
}

/// A frame that came out of the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The index (in the list given to [`Bridge::exchange`]) of the last frame sent before this
    /// one came out: the frame that caused it, as each is given time to cross before the next.
    pub after: usize,
    /// The side it came out on.
    pub side: Side,
    pub frame: Vec<u8>,
}

/// The kernel as a bump in the wire: a Linux bridge with `br_netfilter` in its own namespace, so
/// its iptables/ip6tables rules see bridged frames exactly as fwd's workers do.
///
/// ```text
/// {p}h [{p}a] -- [{p}fa] {p}f: bridge {p}br (br_netfilter) [{p}fb] -- [{p}b] {p}h
/// ```
///
/// Both outer ends live in one host namespace `{p}h`, without addresses and with IPv6 off, so
/// that nothing but the test's frames crosses: [`Bridge::exchange`] writes raw frames on one end
/// with a packet socket and reads what the bridge forwarded on both ends. Checksum offload is off
/// everywhere, so forwarded frames carry complete checksums. The namespaces go on drop.
pub struct Bridge {
    /// The name prefix (`{tag}{pid}`): namespaces `{p}h` and `{p}f`.
    pub p: String,
}

/// Sends frames given on stdin (`SIDE HEX` per line) out of two interfaces in order, waiting
/// `gap` ms after each, and prints every frame the other end received meanwhile (not the
/// socket's own outgoing ones, and only frames whose source MAC is one the test used, so the
/// kernel's own chatter is left out) as `AFTER SIDE HEX`.
const EXCHANGE_PY: &str = r#"
import socket, sys, select, time
dev = {'A': sys.argv[1], 'B': sys.argv[2]}
gap = float(sys.argv[3]) / 1000.0
socks = {}
for side, name in dev.items():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((name, 0))
    s.setblocking(False)
    socks[side] = s
todo = [l.split() for l in sys.stdin.read().splitlines() if l.strip()]
macs = {bytes.fromhex(h)[6:12] for _, h in todo}
def drain(after, until):
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select(list(socks.values()), [], [], left)
        for side, s in socks.items():
            if s not in r:
                continue
            while True:
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING or data[6:12] not in macs:
                    continue
                print(after, side, data.hex(), flush=True)
drain(-1, time.monotonic() + gap)
for i, (side, h) in enumerate(todo):
    socks[side].send(bytes.fromhex(h))
    drain(i, time.monotonic() + gap)
drain(len(todo) - 1, time.monotonic() + 0.2)
"#;

impl Bridge {
    /// Builds the topology with `br_netfilter` calling iptables, ip6tables and arptables for
    /// bridged frames; `tag` keeps the namespaces of different tests apart.
    pub fn new(tag: &str) -> Bridge {
        let p = format!("{tag}{}", std::process::id());
        let bridge = Bridge { p: p.clone() };
        sh(&format!(
            "set -e
             modprobe br_netfilter 2>/dev/null || true
             ip netns add {p}h; ip netns add {p}f
             ip link add {p}a type veth peer name {p}fa
             ip link add {p}b type veth peer name {p}fb
             ip link set {p}a netns {p}h; ip link set {p}b netns {p}h
             ip link set {p}fa netns {p}f; ip link set {p}fb netns {p}f
             ip netns exec {p}h sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
                 net.ipv6.conf.default.disable_ipv6=1
             ip -n {p}f link add {p}br type bridge stp_state 0 mcast_snooping 0
             ip -n {p}f link set {p}fa master {p}br; ip -n {p}f link set {p}fb master {p}br
             for d in {p}fa {p}fb {p}br; do
                 ip -n {p}f link set $d up
                 ip netns exec {p}f ethtool -K $d tx off rx off >/dev/null 2>&1 || true
             done
             for d in {p}a {p}b; do
                 ip -n {p}h link set $d up
                 ip netns exec {p}h ethtool -K $d tx off rx off >/dev/null 2>&1 || true
             done
             ip netns exec {p}f sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
                 net.bridge.bridge-nf-call-ip6tables=1"
        ));
        bridge
    }

    /// Runs `cmd` (a shell command line) in the bridge's namespace; its stdout.
    pub fn exec(&self, cmd: &str) -> String {
        sh(&format!(
            "ip netns exec {}f sh -c '{}'",
            self.p,
            cmd.replace('\'', r"'\''")
        ))
    }

    /// Loads rules into the bridge with `iptables-restore` and `ip6tables-restore` (an empty
    /// text leaves that family as it is); panics with the tool's error.
    pub fn restore(&self, v4: &str, v6: &str) {
        for (tool, text) in [("iptables-restore", v4), ("ip6tables-restore", v6)] {
            if text.is_empty() {
                continue;
            }
            let mut child = Command::new("ip")
                .args(["netns", "exec", &format!("{}f", self.p), tool])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run iptables-restore");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write rules");
            let out = child.wait_with_output().expect("wait for iptables-restore");
            assert!(
                out.status.success(),
                "{tool} refused the rules: {}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Sends `frames` in order, each into the bridge from its side, giving each `gap_ms` to
    /// cross; returns what came out of the bridge on either side, in order. Frames must carry a
    /// source MAC address of their own (not the veths'): only frames from those are returned.
    pub fn exchange(&self, frames: &[(Side, Vec<u8>)], gap_ms: u32) -> Vec<Forwarded> {
        let p = &self.p;
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{p}h"),
                "python3",
                "-c",
                EXCHANGE_PY,
            ])
            .args([format!("{p}a"), format!("{p}b"), gap_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 (apt package python3)");
        let mut input = String::new();
        for (side, f) in frames {
            input.push(side.letter());
            input.push(' ');
            for b in f {
                input.push_str(&format!("{b:02x}"));
            }
            input.push('\n');
        }
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("write frames");
        }
        let out = child.wait_with_output().expect("wait for the sender");
        assert!(
            out.status.success(),
            "frame exchange failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let after: i64 = w.next().and_then(|x| x.parse().ok()).expect("index");
                let side = match w.next() {
                    Some("A") => Side::A,
                    Some("B") => Side::B,
                    other => panic!("bad side {other:?} in {l}"),
                };
                let hex = w.next().unwrap_or("");
                let frame = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect();
                Forwarded {
                    after: after.max(0) as usize,
                    side,
                    frame,
                }
            })
            .collect()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for n in ["h", "f"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}{n}", self.p)])
                .status();
        }
    }
}

/// Waits until the tcpdump `child` (started with a piped stderr) says "listening on DEV", which
/// it does once its socket is bound: frames sent before that are lost, and a fixed sleep was
/// too short on a loaded machine (a whole ping missing, a replay one frame short).
pub fn wait_until_listening(child: &mut Child) {
    let stderr = child.stderr.take().expect("tcpdump's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("tcpdump did not start listening within 20 s");
}

/// A running tcpdump; stopped and its file removed on drop.
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

impl Capture {
    /// Stops the capture (SIGINT, so the file is complete) and returns its frames with their
    /// timestamps in nanoseconds.
    pub fn finish(mut self) -> Vec<(u64, Vec<u8>)> {
        self.stop();
        read_pcap(&std::fs::read(&self.path).expect("capture file written"))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Frames and timestamps (ns) of a classic pcap file: either byte order, micro- or nanosecond
/// resolution, Ethernet link type.
pub fn read_pcap(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("pcap header"));
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => panic!("not a pcap file: magic {m:#x}"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type must be Ethernet");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let secs = u64::from(u32_at(at));
        let frac = u64::from(u32_at(at + 4));
        let caplen = u32_at(at + 8) as usize;
        let ts = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        out.push((ts, bytes[at + 16..at + 16 + caplen].to_vec()));
        at += 16 + caplen;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcap file with one 4-byte frame, in big-endian nanosecond form.
    #[test]
    fn reads_big_endian_nanosecond_pcap() {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
        f.extend_from_slice(&[0, 2, 0, 4]);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes()); // seconds
        f.extend_from_slice(&7u32.to_be_bytes()); // nanoseconds
        f.extend_from_slice(&4u32.to_be_bytes());
        f.extend_from_slice(&4u32.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(read_pcap(&f), vec![(3_000_000_007, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn sh_returns_stdout_and_panics_on_failure() {
        assert_eq!(sh("echo hi"), "hi\n");
        assert!(std::panic::catch_unwind(|| sh("exit 3")).is_err());
    }
}
