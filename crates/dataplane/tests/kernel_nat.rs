//! The Linux kernel as the oracle for NAT and stateful filtering: a router namespace
//! MASQUERADEs what leaves towards the server, DNATs 198.18.0.254:8080 to the server's port 80
//! and forwards only ESTABLISHED/RELATED traffic and NEW connections from the client side;
//! real TCP, UDP (with the server's ICMP port unreachable coming back, RELATED), ping and
//! server-initiated TCP/UDP (dropped) is captured on both of the router's links. Every packet the router received is replayed into a `Worker` with the
//! same rules (ingress = the link it came in on); what the worker forwards must equal what the
//! kernel sent out of the other link, from the IP header on, once aged by the one hop a router
//! adds (TTL - 1). Addresses, ports, ICMP ids, the quoted header of the error and every
//! checksum are compared; what the kernel did not forward we must drop.
//!
//! Needs root, iproute2, iptables, ethtool, tcpdump, ping and socat (CI has them). Namespaces
//! are named `dpnt<pid>{a,r,b}` and removed afterwards, also on failure.

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::{compile, CompileConfig, PortInfo, Verdict, Worker};
use testkit::{sh, Router};

/// The L3 part of a frame, with the TTL one lower and the IP header checksum adjusted.
fn aged_l3(frame: &[u8]) -> Vec<u8> {
    let mut ip = frame[14..].to_vec();
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] -= 1;
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let c = wire::checksum::update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ip.truncate(total);
    ip
}

#[test]
fn nat_rewrites_match_the_kernel() {
    let router = Router::new("dpnt");
    let p = router.p.clone();
    sh(&format!(
        "set -e
         ip netns exec {p}r iptables -t nat -A PREROUTING -i {p}ra -d 198.18.0.254/32 -p tcp --dport 8080 -j DNAT --to-destination 198.18.1.2:80
         ip netns exec {p}r iptables -t nat -A POSTROUTING -o {p}rb -j MASQUERADE
         ip netns exec {p}r iptables -P FORWARD DROP
         ip netns exec {p}r iptables -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
         ip netns exec {p}r iptables -A FORWARD -i {p}ra -m conntrack --ctstate NEW -j ACCEPT
         ip netns exec {p}a ping -c1 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}r conntrack -F 2>/dev/null || true"
    ));
    let cap_a = router.capture("ra", &["ip"]);
    let cap_b = router.capture("rb", &["ip"]);
    sh(&format!(
        "set -e
         ip netns exec {p}b socat TCP-LISTEN:8080,reuseaddr OPEN:/dev/null &
         ip netns exec {p}b socat TCP-LISTEN:80,reuseaddr OPEN:/dev/null &
         sleep 0.5
         echo hello | ip netns exec {p}a socat - TCP:198.18.1.2:8080,sourceport=40000
         echo dnat | ip netns exec {p}a socat - TCP:198.18.0.254:8080,sourceport=40001
         echo hi | ip netns exec {p}a socat -T1 - UDP:198.18.1.2:5353,sourceport=40002 || true
         ip netns exec {p}a ping -c2 -i0.2 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}a ping -c1 -s 3000 -W2 198.18.1.2 >/dev/null
         timeout 1 ip netns exec {p}b socat - TCP:198.18.0.1:22 </dev/null >/dev/null 2>&1 || true
         echo new | ip netns exec {p}b socat -T0.3 - UDP:198.18.0.1:53 >/dev/null 2>&1 || true
         sleep 0.5"
    ));
    let a_side = cap_a.finish();
    let b_side = cap_b.finish();
    let ra = router.mac_of("r", "ra");
    let rb = router.mac_of("r", "rb");

    let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                 -A PREROUTING -i fw-c -d 198.18.0.254/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.1.2:80\n\
                 -A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n\
                 *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                 -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
                 -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
    let rs = rules::parse_restore("kernel_nat", rules, rules::Family::Ipv4).unwrap();
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
    let compiled = compile(Some(&rs), None, &cfg).unwrap();
    let start = a_side.first().map_or(0, |f| f.0);
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        start,
    );

    // what the router received, in time order: (ts, ingress, frame)
    let mut inputs: Vec<(u64, u8, &Vec<u8>)> = Vec::new();
    for (ts, f) in &a_side {
        if f[..6] == ra {
            inputs.push((*ts, 0, f));
        }
    }
    for (ts, f) in &b_side {
        if f[..6] == rb {
            inputs.push((*ts, 1, f));
        }
    }
    inputs.sort_by_key(|x| x.0);
    let mut compared = 0;
    let mut dropped = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for (ts, ingress, f) in inputs {
        let info = wire::parse_frame(f).unwrap();
        let mut buf = f.clone();
        buf.resize(2048, 0);
        let v = w.process(ingress, &mut buf, f.len(), ts);
        // the kernel's copy: same protocol and IP ID, sent out of the other link afterwards
        let (other, out_mac) = if ingress == 0 {
            (&b_side, rb)
        } else {
            (&a_side, ra)
        };
        let ident = u16::from_be_bytes([f[18], f[19]]);
        let kernel = other.iter().find(|(t, g)| {
            *t >= ts
                && g[6..12] == out_mac
                && g.len() > 34
                && g[23] == f[23]
                && u16::from_be_bytes([g[18], g[19]]) == ident
                && g[20..22] == f[20..22]
        });
        let Some((_, kernel)) = kernel else {
            // the kernel did not forward it (nothing here is addressed to the router itself)
            assert!(
                matches!(v, Verdict::Drop(_)),
                "frame at {ts} from port {ingress}: kernel dropped, we {v:?} ({info:?})"
            );
            dropped += 1;
            continue;
        };
        assert_eq!(
            v,
            Verdict::Forward,
            "frame at {ts} from port {ingress} ({info:?})"
        );
        assert_eq!(
            aged_l3(&buf[..f.len()]),
            kernel[14..].to_vec(),
            "frame at {ts} from port {ingress}"
        );
        compared += 1;
        // (6, 1): the DNAT connection's packets from the client; (1, 99): later fragments
        let dnat = info.l4_proto == 6 && info.dst_v4() == [198, 18, 0, 254];
        let kind = if dnat {
            1
        } else if info.is_later_fragment() {
            99
        } else {
            info.icmp_type
        };
        kinds.insert((info.l4_proto, kind));
    }
    eprintln!(
        "compared {compared} packets with the kernel's: {kinds:?}; {dropped} dropped by both"
    );
    assert!(
        dropped >= 2,
        "the server's new connections must have been dropped by both"
    );
    assert!(compared >= 10, "compared only {compared} packets");
    // TCP (MASQUERADE and DNAT), UDP, the port unreachable (RELATED), echo request/reply and
    // the later fragments of a 3000-byte ping both ways
    for k in [(6, 0), (6, 1), (17, 0), (1, 3), (1, 8), (1, 0), (1, 99)] {
        assert!(
            kinds.contains(&k),
            "no packet of kind {k:?} compared: {kinds:?}"
        );
    }
}
