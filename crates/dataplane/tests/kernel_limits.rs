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

mod common;

use common::{from, udp, B_IP};
use dataplane::PortInfo;
use testkit::{Bridge, Side};
use wire::builder::IpPair;

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
    let text = rules(&br.p);
    let out = common::against_kernel(&br, &text, "", &frames(), PortInfo::named, |w, t0| {
        // the wall clock as the appliance's poll loop hands it over
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        w.set_wall_offset(wall - t0 as i64);
    });
    assert!(
        out.disagree.is_empty(),
        "fwd and the kernel bridge disagree:\n{}",
        out.disagree.join("\n")
    );
    // The oracle held back what the rules say (the test is not vacuous): 3 + 1 over the
    // hashlimit, 2 above it, the 1020 reply, the 1040 reply and request, 1030, the 1050
    // connection's third and fourth packets.
    assert_eq!(
        out.held_back, 12,
        "the kernel dropped {} frames",
        out.held_back
    );
}
