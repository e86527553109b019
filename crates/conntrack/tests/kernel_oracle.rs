//! The Linux kernel as the oracle: real traffic through a router namespace with nf_conntrack,
//! captured on the router's A-side link, replayed into a `Shard` configured as current Linux
//! (ICMP entries and unreachable-answered entries kept until their timeout); the listing must
//! equal `conntrack -L` in the router, line for line, except the seconds left.
//!
//! Needs root, iproute2, iptables, conntrack-tools, tcpdump, ping and socat (CI has them).
//! Namespaces are named `ctko<pid>{a,r,b}` and removed afterwards, also on failure.

use std::time::Duration;

use conntrack::{format_entry, Config, CtPacket, Filter, Shard};
use testkit::{sh, Router};

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
    let router = Router::new("ctko");
    let p = router.p.clone();
    sh(&format!(
        "set -e
         ip netns exec {p}r iptables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
         ip netns exec {p}r ip6tables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED,RELATED -j ACCEPT
         ip netns exec {p}a ping -c1 -W2 198.18.1.2 >/dev/null
         ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null || ip netns exec {p}a ping -6 -c1 -W2 2001:2:0:1::2 >/dev/null
         ip netns exec {p}r conntrack -F 2>/dev/null"
    ));
    let capture = router.capture("ra", &["ip", "or", "ip6"]);
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
    let frames = capture.finish();
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
