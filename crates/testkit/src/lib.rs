//! Support for the tests that use the Linux kernel as the oracle: a throw-away router topology in
//! network namespaces, packet captures on its links, and a reader for the capture files.
//!
//! Everything lives in namespaces named with the caller's prefix and the process id, and is removed
//! when the guards drop, also when a test fails. Addresses come from the benchmarking ranges only.
//! Needs root, iproute2, ethtool and tcpdump (CI has them).
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
