//! The Linux bridge with br_netfilter as the oracle for `-m hashlimit` (burst, then the
//! rate; a group per source), `-m conntrack`'s tuple and direction options, `-m connbytes`
//! and `-m time`
//! against the real clock: the same rules in the kernel's bridge ([`testkit::Bridge`]) and in
//! a `Worker` (given the wall clock as the appliance gives it), the same frames in the same
//! order; every frame the kernel forwards fwd must forward byte for byte, every frame it holds
//! back fwd must drop.
//!
//! Needs root, iproute2, iptables and python3 (CI has them). Namespaces `dplim<pid>{h,f}` are
//! removed afterwards, also on failure.

use std::sync::Arc;

use arc_swap::ArcSwap;
use dataplane::{compile, CompileConfig, PortInfo, Verdict, Worker};
use testkit::{Bridge, Side};
use wire::builder::{FrameBuilder, IpPair};
use wire::ethernet::MacAddr;

const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const A_IP: [u8; 4] = [198, 18, 0, 1];
const B_IP: [u8; 4] = [198, 18, 1, 2];

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

fn ips(side: Side) -> IpPair {
    match side {
        Side::A => IpPair::V4(A_IP, B_IP),
        Side::B => IpPair::V4(B_IP, A_IP),
    }
}

fn udp(side: Side, sport: u16, dport: u16) -> (Side, Vec<u8>) {
    (side, from(side).udp(ips(side), sport, dport, b"oracle"))
}

fn rules(_p: &str) -> String {
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
     -A FORWARD -p udp -m udp --dport 1010 -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-name burst -j ACCEPT\n\
     -A FORWARD -p udp -m udp --dport 1010 -j DROP\n\
     -A FORWARD -p udp -m udp --dport 1011 -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 2 --hashlimit-mode dstport --hashlimit-name above -j DROP\n\
     -A FORWARD -m conntrack --ctproto udp --ctorigdstport 1020 --ctdir REPLY -j DROP\n\
     -A FORWARD -m conntrack --ctorigsrc 198.18.0.0/24 --ctrepldst 198.18.0.9 --ctstatus SEEN_REPLY -j DROP\n\
     -A FORWARD -p udp -m udp --dport 1030 -m time --datestart 2020-01-01 -j DROP\n\
     -A FORWARD -p udp -m udp --dport 1031 -m time --datestop 2020-01-01 -j DROP\n\
     -A FORWARD -p udp -m connbytes --connbytes 3: --connbytes-dir both --connbytes-mode packets -j DROP\n\
     COMMIT\n"
        .to_string()
}

fn frames() -> Vec<(Side, Vec<u8>)> {
    let other = |sport: u16, dport: u16| {
        (
            Side::A,
            from(Side::A).udp(IpPair::V4([198, 18, 0, 9], B_IP), sport, dport, b"oracle"),
        )
    };
    let mut out = Vec::new();
    // hashlimit upto: three from 198.18.0.1 pass, the next three do not (1/min refills none
    // in 150 ms); another source has its own bucket
    for i in 0..6 {
        out.push(udp(Side::A, 6000 + i, 1010));
    }
    for i in 0..4 {
        out.push(other(6100 + i, 1010));
    }
    // hashlimit above: one group for the port, the third packet is above
    for i in 0..4 {
        out.push(udp(Side::A, 6200 + i, 1011));
    }
    // conntrack: the reply of a flow to port 1020 is dropped, the request passes
    out.push(udp(Side::A, 6300, 1020));
    out.push(udp(Side::B, 1020, 6300));
    // a flow of 198.18.0.9: the request passes, the reply sets SEEN_REPLY and is dropped,
    // and so is the next request
    out.push(other(6400, 1040));
    out.push((
        Side::B,
        from(Side::B).udp(IpPair::V4(B_IP, [198, 18, 0, 9]), 1040, 6400, b"oracle"),
    ));
    out.push(other(6400, 1040));
    // time: after 2020 (dropped), before 2020 (passes)
    out.push(udp(Side::A, 6500, 1030));
    out.push(udp(Side::A, 6501, 1031));
    // connbytes: the third and fourth packets of one connection (either direction) are dropped
    out.push(udp(Side::A, 6600, 1050));
    out.push(udp(Side::B, 1050, 6600));
    out.push(udp(Side::A, 6600, 1050));
    out.push(udp(Side::B, 1050, 6600));
    out
}

#[test]
fn hashlimit_conntrack_and_time_agree_with_the_kernel_bridge() {
    let br = Bridge::new("dplim");
    let p = br.p.clone();
    let text = rules(&p);
    br.restore(&text, "");
    let frames = frames();
    let kernel = br.exchange(&frames, 25);

    let rs = rules::parse_restore("kernel_bridge", &text, rules::Family::Ipv4).unwrap();
    let cfg = CompileConfig {
        ports: [
            PortInfo::named(&format!("{p}fa")),
            PortInfo::named(&format!("{p}fb")),
        ],
        workers: 1,
    };
    let compiled = compile(Some(&rs), None, &cfg).unwrap();
    let t0 = 1_000_000_000u64;
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        t0,
    );
    // the wall clock as the appliance's poll loop hands it over
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    w.set_wall_offset(wall - t0 as i64);
    let mut disagree = Vec::new();
    for (i, (side, f)) in frames.iter().enumerate() {
        let by_kernel: Vec<&Vec<u8>> = kernel
            .iter()
            .filter(|k| k.after == i && k.side == side.other())
            .map(|k| &k.frame)
            .collect();
        let mut buf = f.clone();
        buf.resize(2048, 0);
        let ingress = match side {
            Side::A => 0,
            Side::B => 1,
        };
        let v = w.process(ingress, &mut buf, f.len(), t0 + i as u64 * 25_000_000);
        let by_fwd = match v {
            Verdict::Forward => Some(&buf[..f.len()]),
            _ => None,
        };
        let same = match (by_kernel.as_slice(), by_fwd) {
            ([k], Some(ours)) => k.as_slice() == ours,
            ([], None) => true,
            _ => false,
        };
        if !same {
            disagree.push(format!(
                "frame {i} from {side:?}: kernel forwarded {}, fwd {v:?}",
                by_kernel.len()
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "fwd and the kernel bridge disagree:\n{}",
        disagree.join("\n")
    );
    // The oracle held back what the rules say (the test is not vacuous).
    let dropped = frames.len()
        - kernel
            .iter()
            .filter(|k| k.side != frames[k.after].0)
            .count();
    // 3 + 1 over the hashlimit, 2 above it, the 1020 reply, the 1040 reply and request, 1030,
    // the 1050 connection's third and fourth packets
    assert_eq!(dropped, 12, "the kernel dropped {dropped} frames");
}
