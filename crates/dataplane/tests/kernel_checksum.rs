//! The Linux kernel as the oracle for checksum validation (`nf_conntrack_checksum=1`): a router
//! namespace with the stateful ruleset
//!
//! ```text
//! -A FORWARD -m conntrack --ctstate INVALID -j DROP
//! -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//! -A FORWARD -i <client side> -j ACCEPT          (policy DROP)
//! ```
//!
//! for both families receives hand-made frames, injected with AF_PACKET sockets (so the kernel
//! has no checksum offload information and verifies, as it does for a frame off the wire):
//! TCP, UDP, ICMP and ICMPv6 first packets with good and bad checksums, UDP with a zero
//! checksum, an IPv4 header with a bad checksum, and then, from the server side, the reply to
//! each client packet: a reply is forwarded only if its client packet created a connection, so
//! the kernel shows which packets created state. Whatever reached the other link is the kernel's
//! verdict; a `Worker` with the same rules must forward exactly the same frames. The hosts'
//! own stacks drop what they get (INPUT), so only the injected frames cross.
//!
//! Needs root, iproute2, iptables, ip6tables, ethtool, tcpdump, ping and python3 (CI has them).
//! Namespaces are named `dpck<pid>{a,r,b}` and removed afterwards, also on failure.

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::{compile, CompileConfig, PortInfo, Verdict, Worker};
use testkit::{sh, Router};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::ethernet::MacAddr;
use wire::tcp::TcpFlags;

const A4: [u8; 4] = [198, 18, 0, 1];
const B4: [u8; 4] = [198, 18, 1, 2];
const A6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    None,
    L4Checksum,
    ZeroUdpChecksum,
    Ipv4HeaderChecksum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Echo,
}

/// One client packet; `marker` is its source port (TCP, UDP) or echo identifier.
#[derive(Clone, Copy, Debug)]
struct Case {
    v6: bool,
    kind: Kind,
    damage: Damage,
    marker: u16,
}

fn pair(v6: bool, from_client: bool) -> IpPair {
    let p = if v6 {
        IpPair::V6(A6, B6)
    } else {
        IpPair::V4(A4, B4)
    };
    if from_client {
        p
    } else {
        p.reversed()
    }
}

fn spec(sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> TcpSpec<'static> {
    TcpSpec {
        src_port: sp,
        dst_port: dp,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 64240,
        options: vec![],
        payload: b"",
    }
}

/// The client's packet of a case, damaged as it says.
fn client_frame(b: &FrameBuilder, c: &Case) -> Vec<u8> {
    let ip = pair(c.v6, true);
    let mut f = match c.kind {
        Kind::Tcp => b.tcp(ip, &spec(c.marker, 80, 0x02, 1000, 0)),
        Kind::Udp => b.udp(ip, c.marker, 5353, b"checksum?"),
        Kind::Echo => b.echo(ip, true, c.marker, 1, b"checksum?"),
    };
    let info = wire::parse_frame(&f).unwrap();
    let l4 = usize::from(info.l4_offset);
    let csum = l4
        + match c.kind {
            Kind::Tcp => 16,
            Kind::Udp => 6,
            Kind::Echo => 2,
        };
    match c.damage {
        Damage::None => {}
        Damage::L4Checksum => f[csum] ^= 0x5a,
        Damage::ZeroUdpChecksum => f[csum..csum + 2].fill(0),
        Damage::Ipv4HeaderChecksum => f[usize::from(info.l3_offset) + 10] ^= 0x01,
    }
    f
}

/// The server's answer to a case's packet (always with good checksums).
fn reply_frame(b: &FrameBuilder, c: &Case) -> Vec<u8> {
    let ip = pair(c.v6, false);
    match c.kind {
        Kind::Tcp => b.tcp(ip, &spec(80, c.marker, 0x12, 5000, 1001)),
        Kind::Udp => b.udp(ip, 5353, c.marker, b"answer"),
        Kind::Echo => b.echo(ip, false, c.marker, 1, b"checksum?"),
    }
}

/// The case a frame belongs to and whether it is the reply, by its marker.
fn marker_of(f: &[u8]) -> Option<(u16, bool)> {
    let i = wire::parse_frame(f).ok()?;
    match i.l4_proto {
        6 | 17 if i.dst_port == 80 || i.dst_port == 5353 => Some((i.src_port, false)),
        6 | 17 if i.src_port == 80 || i.src_port == 5353 => Some((i.dst_port, true)),
        1 | 58 if i.icmp_type == 8 || i.icmp_type == 128 => Some((i.icmp_ident, false)),
        1 | 58 if i.icmp_type == 0 || i.icmp_type == 129 => Some((i.icmp_ident, true)),
        _ => None,
    }
}

/// Sends frames (hex, one a line) out of `dev` in namespace `ns` through an AF_PACKET socket.
fn inject(ns: &str, dev: &str, frames: &[Vec<u8>], file: &std::path::Path) {
    let text: String = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    std::fs::write(file, text).unwrap();
    sh(&format!(
        "ip netns exec {ns} python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for line in open(sys.argv[2]):
    s.send(bytes.fromhex(line.strip()))
    time.sleep(0.005)
' {dev} {}",
        file.display()
    ));
}

fn ruleset(text: &str, family: rules::Family) -> rules::Ruleset {
    rules::parse_restore("kernel_checksum", text, family).unwrap()
}

#[test]
fn bad_checksums_get_the_kernels_verdicts() {
    let router = Router::new("dpck");
    let p = router.p.clone();
    sh(&format!(
        "set -e
         for t in iptables ip6tables; do
           ip netns exec {p}r $t -P FORWARD DROP
           ip netns exec {p}r $t -A FORWARD -m conntrack --ctstate INVALID -j DROP
           ip netns exec {p}r $t -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
           ip netns exec {p}r $t -A FORWARD -i {p}ra -j ACCEPT
         done
         ip netns exec {p}r sysctl -qw net.netfilter.nf_conntrack_checksum=1
         ip netns exec {p}a ping -c1 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null || ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null
         for h in a b; do
           ip netns exec {p}$h iptables -A INPUT -p tcp -j DROP
           ip netns exec {p}$h iptables -A INPUT -p udp -j DROP
           ip netns exec {p}$h iptables -A INPUT -p icmp --icmp-type echo-request -j DROP
           ip netns exec {p}$h ip6tables -A INPUT -p tcp -j DROP
           ip netns exec {p}$h ip6tables -A INPUT -p udp -j DROP
           ip netns exec {p}$h ip6tables -A INPUT -p ipv6-icmp --icmpv6-type echo-request -j DROP
         done"
    ));
    assert_eq!(
        sh(&format!(
            "ip netns exec {p}r sysctl -n net.netfilter.nf_conntrack_checksum"
        ))
        .trim(),
        "1"
    );
    let (ar, ra, rb, br) = (
        router.mac_of("a", "ar"),
        router.mac_of("r", "ra"),
        router.mac_of("r", "rb"),
        router.mac_of("b", "br"),
    );
    let mut cases = Vec::new();
    let mut marker = 41000u16;
    for v6 in [false, true] {
        for kind in [Kind::Tcp, Kind::Udp, Kind::Echo] {
            let mut damages = vec![Damage::None, Damage::L4Checksum];
            if kind == Kind::Udp {
                damages.push(Damage::ZeroUdpChecksum);
            }
            if !v6 {
                damages.push(Damage::Ipv4HeaderChecksum);
            }
            for damage in damages {
                marker += 1;
                cases.push(Case {
                    v6,
                    kind,
                    damage,
                    marker,
                });
            }
        }
    }
    let from_a = FrameBuilder {
        src_mac: MacAddr(ar),
        dst_mac: MacAddr(ra),
        ..FrameBuilder::default()
    };
    let from_b = FrameBuilder {
        src_mac: MacAddr(br),
        dst_mac: MacAddr(rb),
        ..FrameBuilder::default()
    };
    let requests: Vec<Vec<u8>> = cases.iter().map(|c| client_frame(&from_a, c)).collect();
    let replies: Vec<Vec<u8>> = cases.iter().map(|c| reply_frame(&from_b, c)).collect();

    let cap_a = router.capture("ra", &["ip", "or", "ip6"]);
    let cap_b = router.capture("rb", &["ip", "or", "ip6"]);
    let dir = std::env::temp_dir();
    inject(
        &format!("{p}a"),
        &format!("{p}ar"),
        &requests,
        &dir.join(format!("{p}a.hex")),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    inject(
        &format!("{p}b"),
        &format!("{p}br"),
        &replies,
        &dir.join(format!("{p}b.hex")),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = std::fs::remove_file(dir.join(format!("{p}a.hex")));
    let _ = std::fs::remove_file(dir.join(format!("{p}b.hex")));
    // What the router sent out: requests on rb, replies on ra (source MAC = the router's).
    let mut kernel_forwarded = std::collections::BTreeSet::new();
    for (frames, mac) in [(cap_b.finish(), rb), (cap_a.finish(), ra)] {
        for (_, f) in frames {
            if f[6..12] == mac {
                if let Some(m) = marker_of(&f) {
                    kernel_forwarded.insert(m);
                }
            }
        }
    }

    let rules4 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                  -A FORWARD -m conntrack --ctstate INVALID -j DROP\n\
                  -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                  -A FORWARD -i fw-c -j ACCEPT\nCOMMIT\n";
    let cfg = CompileConfig {
        ports: [
            PortInfo {
                name: "fw-c".into(),
                ipv4: Some(Ipv4Addr::new(198, 18, 0, 254)),
                ipv6: None,
                mtu: 1500,
            },
            PortInfo {
                name: "fw-s".into(),
                ipv4: Some(Ipv4Addr::new(198, 18, 1, 254)),
                ipv6: None,
                mtu: 1500,
            },
        ],
        workers: 1,
    };
    let compiled = compile(
        Some(&ruleset(rules4, rules::Family::Ipv4)),
        Some(&ruleset(rules4, rules::Family::Ipv6)),
        &cfg,
    )
    .unwrap();
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        1_000_000_000,
    );
    let mut now = 1_000_000_000;
    let mut ours = std::collections::BTreeSet::new();
    for (ingress, frames, is_reply) in [(0u8, &requests, false), (1, &replies, true)] {
        for (c, f) in cases.iter().zip(frames) {
            now += 1_000_000;
            let mut buf = f.clone();
            buf.resize(2048, 0);
            if w.process(ingress, &mut buf, f.len(), now) == Verdict::Forward {
                ours.insert((c.marker, is_reply));
            }
        }
    }
    let mut report = String::new();
    for c in &cases {
        for reply in [false, true] {
            let k = kernel_forwarded.contains(&(c.marker, reply));
            let o = ours.contains(&(c.marker, reply));
            report.push_str(&format!(
                "{c:?} {}: kernel {k} fwd {o}{}\n",
                if reply { "reply" } else { "request" },
                if k == o { "" } else { "   <-- differs" }
            ));
        }
    }
    // The kernel saw everything (the good packets crossed), and we agree on every frame.
    for c in cases.iter().filter(|c| c.damage == Damage::None) {
        assert!(
            kernel_forwarded.contains(&(c.marker, false))
                && kernel_forwarded.contains(&(c.marker, true)),
            "{report}"
        );
    }
    assert!(
        cases
            .iter()
            .any(|c| c.damage == Damage::L4Checksum
                && !kernel_forwarded.contains(&(c.marker, false))),
        "the kernel dropped no bad checksum: it did not verify\n{report}"
    );
    assert_eq!(ours, kernel_forwarded, "\n{report}");
}
