//! The Linux kernel as the oracle for REJECT: a router namespace with iptables/ip6tables REJECT
//! rules in FORWARD answers real clients; the request and the kernel's reply are captured on
//! the router's client-side link, and `dataplane::reject::build` must produce the same reply
//! from the same request: byte for byte for `tcp-reset`; for ICMP, the same except the fields
//! a router fills from its own state (its source address, the IPv4 ID, the IPv4 header
//! checksum, the IPv6 automatic flow label), since fwd answers from the original destination, and the quote's TTL, which a
//! router has decremented before FORWARD and a bridge has not.
//!
//! tx checksum offload is off on the client's and the router's veth (as on the testbed, see
//! TESTBED.md): REJECT checks the offending packet's checksum, and a veth sends partial ones;
//! the router's replies are compared with their checksums complete.
//!
//! Needs root, iproute2, iptables, ethtool, tcpdump and socat (CI has them). Namespaces are named
//! `dprj<pid>{a,r,b}` and removed afterwards, also on failure.

use rules::RejectWith;
use testkit::{sh, Router};

#[test]
fn reject_replies_match_the_kernel() {
    let router = Router::new("dprj");
    let p = router.p.clone();
    sh(&format!(
        "set -e
         ip netns exec {p}r iptables -A FORWARD -p tcp --dport 81 -j REJECT --reject-with tcp-reset
         ip netns exec {p}r iptables -A FORWARD -p udp --dport 9 -j REJECT --reject-with icmp-port-unreachable
         ip netns exec {p}r iptables -A FORWARD -p udp --dport 10 -j REJECT --reject-with icmp-admin-prohibited
         ip netns exec {p}r ip6tables -A FORWARD -p tcp --dport 81 -j REJECT --reject-with tcp-reset
         ip netns exec {p}r ip6tables -A FORWARD -p udp --dport 10 -j REJECT --reject-with icmp6-adm-prohibited
         ip netns exec {p}a ping -c1 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null || ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null"
    ));
    let capture = router.capture(
        "ra",
        &[
            "tcp",
            "or",
            "udp",
            "or",
            "icmp",
            "or",
            "(icmp6 and ip6[40] < 128)",
        ],
    );
    sh(&format!(
        "ip netns exec {p}a socat -T1 - TCP:198.18.1.2:81 </dev/null 2>/dev/null
         echo one | ip netns exec {p}a socat -T1 - UDP:198.18.1.2:9 2>/dev/null
         echo two | ip netns exec {p}a socat -T1 - UDP:198.18.1.2:10 2>/dev/null
         ip netns exec {p}a socat -T1 - TCP6:[2001:2:0:1::2]:81 </dev/null 2>/dev/null
         echo six | ip netns exec {p}a socat -T1 - UDP6:[2001:2:0:1::2]:10 2>/dev/null
         sleep 0.5; true"
    ));
    let frames: Vec<Vec<u8>> = capture.finish().into_iter().map(|(_, f)| f).collect();

    // (request's dst port and protocol, reject type)
    let cases = [
        (81u16, 6u8, false, RejectWith::TcpReset),
        (9, 17, false, RejectWith::IcmpPortUnreachable),
        (10, 17, false, RejectWith::IcmpAdminProhibited),
        (81, 6, true, RejectWith::TcpReset),
        (10, 17, true, RejectWith::Icmp6AdmProhibited),
    ];
    for (dport, proto, v6, with) in cases {
        let idx = frames
            .iter()
            .position(|f| {
                wire::parse_frame(f).is_ok_and(|i| {
                    i.dst_port == dport
                        && i.l4_proto == proto
                        && (i.family == wire::Family::Ipv6) == v6
                })
            })
            .unwrap_or_else(|| panic!("request to port {dport} (v6 {v6}) not captured"));
        let req = &frames[idx];
        let info = wire::parse_frame(req).unwrap();
        let kernel = frames[idx + 1..]
            .iter()
            .find(|f| {
                wire::parse_frame(f).is_ok_and(|i| {
                    i.dst_addr() == info.src_addr()
                        && (i.l4_proto != 6 || proto == 6)
                        && (i.family == wire::Family::Ipv6) == v6
                        && (proto != 6 || i.tcp_flags.0 & 0x04 != 0)
                })
            })
            .unwrap_or_else(|| panic!("no kernel reply to port {dport} (v6 {v6})"))
            .clone();
        // A router decrements the TTL / hop limit before FORWARD, so it quotes the packet one
        // hop older than it arrived; fwd, a bridge, quotes it as it arrived. Age ours alike.
        let mut req = req.clone();
        let l3 = usize::from(info.l3_offset);
        if with != RejectWith::TcpReset {
            if v6 {
                req[l3 + 7] -= 1;
            } else {
                let old = u16::from_be_bytes([req[l3 + 8], req[l3 + 9]]);
                req[l3 + 8] -= 1;
                let new = u16::from_be_bytes([req[l3 + 8], req[l3 + 9]]);
                let c = wire::checksum::update16(
                    u16::from_be_bytes([req[l3 + 10], req[l3 + 11]]),
                    old,
                    new,
                );
                req[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
        }
        let mut out = vec![0u8; 2048];
        let n = dataplane::reject::build(&req, &info, with, 0, &mut out).expect("a reply");
        let mut ours = out[..n].to_vec();
        let mut theirs = kernel.clone();
        if with != RejectWith::TcpReset {
            // the router answers from its own address with its own IPv4 ID
            if v6 {
                ours[l3 + 8..l3 + 24].copy_from_slice(&theirs[l3 + 8..l3 + 24]);
                // and with an automatic flow label (a hash of the flow, net.ipv6.auto_flowlabels)
                ours[l3 + 1] = (ours[l3 + 1] & 0xf0) | (theirs[l3 + 1] & 0x0f);
                ours[l3 + 2..l3 + 4].copy_from_slice(&theirs[l3 + 2..l3 + 4]);
                // the ICMPv6 checksum covers the source address: recompute ours
                let (s, d): ([u8; 16], [u8; 16]) = (
                    ours[l3 + 8..l3 + 24].try_into().unwrap(),
                    ours[l3 + 24..l3 + 40].try_into().unwrap(),
                );
                ours[l3 + 42..l3 + 44].fill(0);
                let c = wire::checksum::l4_checksum_v6(&s, &d, 58, &ours[l3 + 40..]);
                ours[l3 + 42..l3 + 44].copy_from_slice(&c.to_be_bytes());
            } else {
                ours[l3 + 12..l3 + 16].copy_from_slice(&theirs[l3 + 12..l3 + 16]);
                for f in [&mut ours, &mut theirs] {
                    f[l3 + 4..l3 + 6].fill(0);
                    f[l3 + 10..l3 + 12].fill(0);
                }
            }
        }
        assert_eq!(ours, theirs, "{with:?} (v6 {v6}): ours vs the kernel's");
    }
}
