//! The rewriting targets against the Linux bridge with br_netfilter ([`testkit::Bridge`]): the
//! same rules (TTL, HL, DSCP, TOS, ECN, TCPMSS, CHECKSUM, CLASSIFY in mangle FORWARD and
//! POSTROUTING) in the kernel and in a `Worker`, the same frames; every frame the kernel
//! forwards fwd must forward byte for byte (checksums, a grown SYN included), every frame the
//! kernel holds back fwd must drop. The bridge's ports have MTU 1400, and so do fwd's, so
//! `--clamp-mss-to-pmtu` clamps to 1360 (IPv4) and 1340 (IPv6) on both.
//!
//! Needs root, iproute2, iptables and python3 (CI has them). Namespaces `dprw<pid>{h,f}` are
//! removed afterwards, also on failure.

mod common;

use dataplane::PortInfo;
use testkit::{Bridge, Side};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::ethernet::MacAddr;
use wire::tcp::{TcpFlags, TcpOption};

const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x1a]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x1b]);
const MTU: u16 = 1400;

fn from(side: Side) -> FrameBuilder {
    let (src_mac, dst_mac) = match side {
        Side::A => (A_MAC, B_MAC),
        Side::B => (B_MAC, A_MAC),
    };
    FrameBuilder {
        src_mac,
        dst_mac,
        ..FrameBuilder::default()
    }
}

fn v4() -> IpPair {
    IpPair::V4([198, 18, 0, 1], [198, 18, 1, 2])
}

fn v6() -> IpPair {
    let a = "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let b = "2001:2:0:1::2"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    IpPair::V6(a, b)
}

const V4_RULES: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
    :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
    -A FORWARD -p udp -m udp --dport 2001 -j TTL --ttl-set 9\n\
    -A FORWARD -p udp -m udp --dport 2002 -j TTL --ttl-dec 1\n\
    -A FORWARD -p udp -m udp --dport 2003 -j TTL --ttl-inc 200\n\
    -A FORWARD -p udp -m udp --dport 2004 -j DSCP --set-dscp-class EF\n\
    -A FORWARD -p udp -m udp --dport 2005 -j TOS --set-tos Minimize-Delay\n\
    -A FORWARD -p udp -m udp --dport 2006 -j TOS --and-tos 0x0f\n\
    -A FORWARD -p udp -m udp --dport 2007 -j TOS --or-tos 0x10\n\
    -A FORWARD -p udp -m udp --dport 2008 -j TOS --xor-tos 0xff\n\
    -A FORWARD -p udp -m udp --dport 2009 -j ECN --ecn-ip-ect 1\n\
    -A FORWARD -p tcp -m tcp --dport 2010 -j ECN --ecn-tcp-remove\n\
    -A FORWARD -p udp -m udp --dport 2013 -j CHECKSUM --checksum-fill\n\
    -A FORWARD -p udp -m udp --dport 2014 -j TTL --ttl-dec 1\n\
    -A FORWARD -p udp -m udp --dport 2014 -m ttl --ttl-eq 63 -j DROP\n\
    -A POSTROUTING -p tcp -m tcp --dport 2011 --tcp-flags SYN,RST,ACK SYN -j TCPMSS --set-mss 1200\n\
    -A POSTROUTING -p tcp -m tcp --dport 2012 --tcp-flags SYN,RST,ACK SYN -j TCPMSS --clamp-mss-to-pmtu\n\
    -A POSTROUTING -p udp -m udp --dport 2013 -j CLASSIFY --set-class 1:10\n\
    COMMIT\n";

const V6_RULES: &str =
    "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
    :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
    -A FORWARD -p udp -m udp --dport 2001 -j HL --hl-set 9\n\
    -A FORWARD -p udp -m udp --dport 2002 -j HL --hl-dec 1\n\
    -A FORWARD -p udp -m udp --dport 2004 -j DSCP --set-dscp 0x0a\n\
    -A FORWARD -p udp -m udp --dport 2008 -j TOS --xor-tos 0xff\n\
    -A POSTROUTING -p tcp -m tcp --dport 2011 --syn -j TCPMSS --set-mss 1200\n\
    -A POSTROUTING -p tcp -m tcp --dport 2012 --syn -j TCPMSS --clamp-mss-to-pmtu\n\
    COMMIT\n";

fn udp(ip: IpPair, ttl: u8, tos: u8, sport: u16, dport: u16) -> (Side, Vec<u8>) {
    let b = FrameBuilder {
        ttl,
        tos,
        ..from(Side::A)
    };
    (Side::A, b.udp(ip, sport, dport, b"rewrite"))
}

fn tcp(
    ip: IpPair,
    sport: u16,
    dport: u16,
    flags: u8,
    options: Vec<TcpOption<'static>>,
    payload: &'static [u8],
) -> (Side, Vec<u8>) {
    let spec = TcpSpec {
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: if flags & 0x10 != 0 { 77 } else { 0 },
        flags: TcpFlags(flags),
        window: 64240,
        options,
        payload,
    };
    (Side::A, from(Side::A).tcp(ip, &spec))
}

fn frames() -> Vec<(Side, Vec<u8>)> {
    use TcpOption::{Mss, Nop, SackPermitted, WindowScale};
    let mut out = Vec::new();
    for ip in [v4(), v6()] {
        out.extend([
            udp(ip, 64, 0, 6001, 2001),
            udp(ip, 64, 0, 6002, 2002),
            udp(ip, 1, 0, 6003, 2002),
            udp(ip, 0, 0, 6004, 2002),
            udp(ip, 64, 0x03, 6005, 2004),
            udp(ip, 64, 0xe1, 6006, 2008),
        ]);
        // TCPMSS: lowered, kept (never raised), clamped, added to a bare SYN, not added when
        // the SYN carries data, and a SYN/ACK the rule's flags leave alone.
        out.extend([
            tcp(
                ip,
                6010,
                2011,
                0x02,
                vec![Mss(1460), SackPermitted, WindowScale(7)],
                b"",
            ),
            tcp(ip, 6011, 2011, 0x02, vec![Nop, Nop, Mss(1000)], b""),
            tcp(ip, 6012, 2012, 0x02, vec![Mss(1460)], b""),
            tcp(ip, 6013, 2011, 0x02, vec![], b""),
            tcp(ip, 6014, 2012, 0x02, vec![SackPermitted], b""),
            tcp(ip, 6015, 2011, 0x02, vec![], b"syn data"),
        ]);
    }
    let ip = v4();
    out.extend([
        udp(ip, 200, 0, 6020, 2003),
        udp(ip, 64, 0x03, 6021, 2005),
        udp(ip, 64, 0xe3, 6022, 2006),
        udp(ip, 64, 0x01, 6023, 2007),
        udp(ip, 64, 0x02, 6024, 2009),
        tcp(ip, 6025, 2010, 0x10 | 0x40 | 0x80, vec![], b"ecn"),
        tcp(ip, 6026, 2010, 0x10, vec![], b"ecn"),
        // the rule after the TTL rewrite sees the new TTL (64 - 1 = 63: dropped)
        udp(ip, 64, 0, 6027, 2014),
        udp(ip, 65, 0, 6028, 2014),
    ]);
    // CHECKSUM --checksum-fill on a UDP datagram with a wrong checksum: the kernel fills only
    // checksums left to offload, so it leaves this one (and fwd forwards it as it came).
    let (s, mut f) = udp(ip, 64, 0, 6030, 2013);
    let at = 14 + 20 + 6;
    f[at] ^= 0x55;
    out.push((s, f));
    out
}

#[test]
fn rewriting_targets_agree_with_the_kernel_bridge() {
    let br = Bridge::new("dprw");
    let p = br.p.clone();
    // the ports' MTU, which the bridge takes as its own, is what clamping uses
    br.exec(&format!(
        "ip link set {p}fa mtu {MTU} && ip link set {p}fb mtu {MTU}"
    ));
    let port = |n: &str| PortInfo {
        mtu: MTU,
        ..PortInfo::named(n)
    };
    let out = common::against_kernel(&br, V4_RULES, V6_RULES, &frames(), port, |_, _| {});
    assert!(
        out.disagree.is_empty(),
        "fwd and the kernel bridge disagree:\n{}",
        out.disagree.join("\n")
    );
    // The oracle rewrote what the rules say (the test is not vacuous).
    assert!(
        out.changed >= 20,
        "the kernel changed only {} frames",
        out.changed
    );
    let rewrites = out.worker.stats().rewrites;
    assert!(rewrites >= 20, "{rewrites:?}");
}
