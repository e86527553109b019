//! The Linux kernel as the oracle: real traffic through a router namespace with nf_conntrack,
//! captured on the router's A-side link, replayed into a `Shard` configured as current Linux
//! (ICMP entries and unreachable-answered entries kept until their timeout); the listing must
//! equal `conntrack -L` in the router, line for line, except the seconds left.
//!
//! Needs root, iproute2, iptables, conntrack-tools, tcpdump, ping and socat (CI has them).
//! Namespaces are named `ctko<pid>{a,r,b}` and removed afterwards, also on failure.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conntrack::{format_entry, Config, CtPacket, Filter, Shard};

struct Netns {
    prefix: String,
    tcpdump: Option<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.tcpdump.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["a", "r", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &format!("{}{n}", self.prefix)])
                .status();
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Frames and timestamps (ns) of a classic pcap file (microsecond or nanosecond, either order).
fn read_pcap(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => panic!("not a pcap file: {m:#x}"),
    };
    let u32_at = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
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

/// Lines without the seconds-left field, sorted.
fn normalise(lines: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f: Vec<&str> = l.split_whitespace().collect();
            f[2] = "T";
            f.join(" ")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn listing_matches_the_kernel_for_ping_tcp_and_udp_v4_and_v6() {
    let p = format!("ctko{}", std::process::id());
    let mut ns = Netns {
        prefix: p.clone(),
        tcpdump: None,
    };
    let pcap = std::env::temp_dir().join(format!("{p}.pcap"));
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
         ip netns exec {p}r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
         ip netns exec {p}r iptables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
         ip netns exec {p}r ip6tables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
         ip netns exec {p}a ping -c1 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null || ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null
         ip netns exec {p}r conntrack -F 2>/dev/null"
    ));
    ns.tcpdump = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{p}r"),
                "tcpdump",
                "-U",
                "-n",
                "-s",
                "0",
            ])
            .args(["--immediate-mode", "-i", &format!("{p}ra"), "-w"])
            .arg(&pcap)
            .args(["ip", "or", "ip6"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    sh(&format!(
        "set -e
         ip netns exec {p}a ping -c2 -i0.2 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}b socat TCP-LISTEN:8080,reuseaddr OPEN:/dev/null &
         sleep 0.5
         echo hello | ip netns exec {p}a socat - TCP:198.18.1.2:8080
         echo hi | ip netns exec {p}a socat -T1 - UDP:198.18.1.2:5353 || true
         ip netns exec {p}a socat -T1 - TCP:198.18.1.2:9 </dev/null 2>/dev/null || true
         ip netns exec {p}a ping -6 -c2 -i0.2 -W2 2001:2:0:1::2 >/dev/null
         ip netns exec {p}b socat TCP6-LISTEN:8081,reuseaddr OPEN:/dev/null &
         sleep 0.5
         echo hello6 | ip netns exec {p}a socat - TCP6:[2001:2:0:1::2]:8081
         echo hi6 | ip netns exec {p}a socat -T1 - UDP6:[2001:2:0:1::2]:5354 || true
         sleep 0.5"
    ));
    // Both families: conntrack-tools 1.4.7 lists IPv4 and IPv6 without -f.
    let kernel = sh(&format!("ip netns exec {p}r conntrack -L 2>/dev/null"));
    std::thread::sleep(Duration::from_millis(500));
    if let Some(mut c) = ns.tcpdump.take() {
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
        let _ = c.wait();
    }
    let frames = read_pcap(&std::fs::read(&pcap).expect("pcap written"));
    let _ = std::fs::remove_file(&pcap);
    assert!(frames.len() >= 10, "captured {} frames", frames.len());

    let cfg = Config {
        keep_on_icmp_unreachable: true,
        icmp_destroy_on_reply: false,
        ..Config::default()
    };
    let first = frames[0].0;
    let mut shard = Shard::new(1024, &cfg, first);
    let mut last = first;
    for (ts, frame) in &frames {
        let Ok(info) = wire::parse_frame(frame) else {
            continue;
        };
        let Ok(pkt) = CtPacket::from_frame(frame, &info) else {
            continue;
        };
        let t = shard.track(&pkt, *ts);
        assert!(shard.commit(t, true));
        last = *ts;
    }
    let mut snaps = Vec::new();
    shard.snapshot(&Filter::default(), last, &mut snaps);
    let ours = normalise(snaps.iter().map(|s| {
        let mut l = String::new();
        format_entry(&mut l, s, last).unwrap();
        l
    }));
    let theirs = normalise(kernel.lines().map(str::to_owned));
    assert!(theirs.len() >= 6, "kernel listed: {kernel}");
    assert_eq!(ours, theirs);
}
