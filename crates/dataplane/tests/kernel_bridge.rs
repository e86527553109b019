//! The Linux bridge with br_netfilter as the oracle for the ruleset-breadth constructs: the same
//! iptables rules in the kernel's bridge ([`testkit::Bridge`]) and in a `Worker`, the same
//! crafted frames in the same order from both sides; every frame the kernel forwards fwd must
//! forward byte for byte, every frame the kernel holds back fwd must drop. Covers the mangle and
//! security tables, MARK / `-m mark`, CONNMARK / `-m connmark` across the two directions of one
//! connection, `-m physdev`, `-m pkttype`, `-m addrtype`, `-m dscp`, `-m ecn`, `-m recent` and
//! `-m statistic --mode nth`, REDIRECT (the local stack's: a
//! bump in the wire forwards none of it), and ip6tables' `-m rt` on IPv6 routing headers.
//!
//! Needs root, iproute2, iptables and python3 (CI has them). Namespaces `dpbr<pid>{h,f}` are
//! removed afterwards, also on failure.

mod common;

use common::{from, ips, udp, A_IP};
use dataplane::PortInfo;
use testkit::{Bridge, Side};
use wire::builder::{IpPair, TcpSpec};
use wire::ethernet::MacAddr;
use wire::tcp::TcpFlags;

fn rules(p: &str) -> String {
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p udp -m udp --dport 1010 -j REDIRECT --to-ports 53\n\
         COMMIT\n\
         *mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p udp -m udp --dport 1001 -j MARK --set-xmark 0x5/0xffffffff\n\
         -A PREROUTING -p udp -m udp --dport 1002 -j CONNMARK --set-xmark 0x7/0xffffffff\n\
         -A FORWARD -m mark --mark 0x6 -j DROP\n\
         -A POSTROUTING -p udp -m udp --dport 1007 -j DROP\n\
         COMMIT\n\
         *security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -p udp -m udp --dport 1006 -j DROP\n\
         COMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m mark --mark 0x5 -j DROP\n\
         -A FORWARD -p udp -m udp --sport 1002 -m connmark --mark 0x7 -j DROP\n\
         -A FORWARD -p udp -m udp --dport 1005 -m physdev --physdev-in {p}fb -j DROP\n\
         -A FORWARD -m pkttype --pkt-type broadcast -j DROP\n\
         -A FORWARD -p udp -m udp --dport 1008 -m addrtype --dst-type MULTICAST -j DROP\n\
         -A FORWARD -m dscp --dscp 0x2e -j DROP\n\
         -A FORWARD -p tcp -m ecn --ecn-tcp-cwr -j DROP\n\
         -A FORWARD -p udp -m udp --dport 1003 -m recent --set --name t --mask 255.255.255.255 --rsource\n\
         -A FORWARD -p udp -m udp --dport 1003 -m recent --rcheck --hitcount 3 --name t --mask 255.255.255.255 --rsource -j DROP\n\
         -A FORWARD -p udp -m udp --dport 1004 -m statistic --mode nth --every 2 --packet 0 -j DROP\n\
         COMMIT\n"
    )
}

fn frames() -> Vec<(Side, Vec<u8>)> {
    let mut out = vec![
        udp(Side::A, 5000, 53),   // passes
        udp(Side::A, 5001, 1001), // marked 5 in mangle PREROUTING, dropped in filter
        udp(Side::A, 5002, 1002), // connmark 7 set; the original direction passes
        udp(Side::B, 1002, 5002), // the reply carries the connmark: dropped
        udp(Side::A, 5005, 1005), // physdev-in a: passes
        udp(Side::B, 5005, 1005), // physdev-in b: dropped
        udp(Side::A, 5006, 1006), // security FORWARD drops
        udp(Side::A, 5007, 1007), // mangle POSTROUTING drops
    ];
    // Broadcast MAC: pkttype broadcast.
    let mut b = from(Side::A);
    b.dst_mac = MacAddr([0xff; 6]);
    out.push((Side::A, b.udp(ips(Side::A), 5009, 9, b"bcast")));
    // A multicast group address: addrtype MULTICAST (and pkttype multicast, not broadcast).
    let mut m = from(Side::A);
    m.dst_mac = MacAddr([0x01, 0, 0x5e, 0, 0, 0xfb]);
    out.push((
        Side::A,
        m.udp(IpPair::V4(A_IP, [224, 0, 0, 251]), 5008, 1008, b"mcast"),
    ));
    out.push((
        Side::A,
        m.udp(IpPair::V4(A_IP, [224, 0, 0, 251]), 5008, 1009, b"mcast"),
    ));
    // DSCP EF (0x2e << 2 = 0xb8) dropped, AF11 passes.
    for tos in [0xb8, 0x28] {
        let mut d = from(Side::A);
        d.tos = tos;
        out.push((Side::A, d.udp(ips(Side::A), 5010, 10, b"dscp")));
    }
    // ECN: a SYN with CWR dropped, a plain SYN passes.
    for (sport, flags) in [(5011, 0x82), (5012, 0x02)] {
        let spec = TcpSpec {
            src_port: sport,
            dst_port: 80,
            seq: 1000,
            flags: TcpFlags(flags),
            window: 64240,
            ..TcpSpec::default()
        };
        out.push((Side::A, from(Side::A).tcp(ips(Side::A), &spec)));
    }
    // recent: the third hit within the list is dropped, and the fourth.
    for _ in 0..4 {
        out.push(udp(Side::A, 5013, 1003));
    }
    // statistic nth: every second packet of the rule.
    for i in 0..4 {
        out.push(udp(Side::A, 5014 + i, 1004));
    }
    // REDIRECT delivers to the bridge's own stack (here: none, no address): never forwarded.
    out.push(udp(Side::A, 5020, 1010));
    out.push(udp(Side::A, 5021, 1011));
    out
}

#[test]
fn breadth_constructs_agree_with_the_kernel_bridge() {
    let br = Bridge::new("dpbr");
    let text = rules(&br.p);
    let out = common::against_kernel(&br, &text, "", &frames(), PortInfo::named, |_, _| {});
    let (disagree, dropped) = (out.disagree, out.held_back);
    assert!(
        disagree.is_empty(),
        "fwd and the kernel bridge disagree:\n{}",
        disagree.join("\n")
    );
    // The oracle held back what the rules say (the test is not vacuous).
    assert!(dropped >= 10, "kernel dropped only {dropped} frames");
}

/// An IPv6 UDP frame from `side` with `ext` (extension headers, the first one's type `first`)
/// spliced in after the fixed header: the UDP checksum does not cover them.
fn udp6_with(side: Side, dport: u16, first: u8, ext: &[u8]) -> (Side, Vec<u8>) {
    let (a, b) = (
        [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    let ips = match side {
        Side::A => IpPair::V6(a, b),
        Side::B => IpPair::V6(b, a),
    };
    let mut f = from(side).udp(ips, 5000, dport, b"oracle6");
    if ext.is_empty() {
        return (side, f);
    }
    let ip = 14;
    let plen = u16::from_be_bytes([f[ip + 4], f[ip + 5]]) + ext.len() as u16;
    f[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    f[ip + 6] = first;
    f.splice(ip + 40..ip + 40, ext.iter().copied());
    (side, f)
}

/// A routing header of type `typ`, `segs` Segments Left, reserved `res`, with the given
/// addresses (last bytes of 2001:2::N), followed by UDP.
fn routing(typ: u8, segs: u8, res: u8, addrs: &[u8]) -> Vec<u8> {
    let mut r = vec![17, (addrs.len() * 2) as u8, typ, segs, 0, 0, 0, res];
    for &last in addrs {
        r.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
    }
    r
}

#[test]
fn ipv6_routing_header_matches_agree_with_the_kernel_bridge() {
    let br = Bridge::new("dprt");
    let v6 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
              -A FORWARD -p udp -m udp --dport 1 -m rt --rt-type 0 -j DROP\n\
              -A FORWARD -p udp -m udp --dport 2 -m rt ! --rt-segsleft 1:2 -j DROP\n\
              -A FORWARD -p udp -m udp --dport 3 -m rt --rt-type 0 --rt-0-res -j DROP\n\
              -A FORWARD -p udp -m udp --dport 4 -m rt --rt-type 0 --rt-0-addrs 2001:2::7,2001:2::8 -j DROP\n\
              -A FORWARD -p udp -m udp --dport 5 -m rt --rt-type 0 --rt-0-addrs 2001:2::8 --rt-0-not-strict -j DROP\n\
              -A FORWARD -p udp -m udp --dport 6 -m rt --rt-len 24 -j DROP\n\
              COMMIT\n";
    let hbh = |next_is_rt: bool, rest: &[u8]| {
        let mut h = vec![if next_is_rt { 43 } else { 17 }, 0, 1, 4, 0, 0, 0, 0];
        h.extend_from_slice(rest);
        h
    };
    let frames = vec![
        udp6_with(Side::A, 1, 17, &[]),                     // no RH: passes
        udp6_with(Side::A, 1, 43, &routing(0, 0, 0, &[7])), // type 0: dropped
        udp6_with(Side::A, 1, 43, &routing(2, 0, 0, &[7])), // type 2: passes
        udp6_with(Side::A, 1, 0, &hbh(true, &routing(0, 0, 0, &[7]))), // after HBH: dropped
        udp6_with(Side::A, 2, 43, &routing(4, 1, 0, &[7])), // segsleft 1: passes
        udp6_with(Side::A, 2, 43, &routing(4, 3, 0, &[7])), // segsleft 3: dropped
        udp6_with(Side::B, 3, 43, &routing(0, 0, 0, &[7])), // reserved 0: dropped
        udp6_with(Side::B, 3, 43, &routing(0, 0, 5, &[7])), // reserved set: passes
        udp6_with(Side::A, 4, 43, &routing(0, 0, 0, &[7, 8])), // strict list: dropped
        udp6_with(Side::A, 4, 43, &routing(0, 0, 0, &[7, 8, 9])), // one more: passes
        udp6_with(Side::A, 5, 43, &routing(0, 0, 0, &[7, 8, 9])), // 8 among them: dropped
        udp6_with(Side::A, 5, 43, &routing(0, 0, 0, &[7, 9])), // not there: passes
        udp6_with(Side::A, 6, 43, &routing(0, 0, 0, &[7])), // 24 bytes: dropped
        udp6_with(Side::A, 6, 43, &routing(0, 0, 0, &[7, 8])), // 40 bytes: passes
    ];
    let out = common::against_kernel(&br, "", v6, &frames, PortInfo::named, |_, _| {});
    let (disagree, dropped) = (out.disagree, out.held_back);
    assert!(
        disagree.is_empty(),
        "fwd and the kernel bridge disagree:\n{}",
        disagree.join("\n")
    );
    assert_eq!(dropped, 7, "the kernel held back the frames the rules name");
}
