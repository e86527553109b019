//! IPv6 NAT through the worker, NETMAP and DNAT port shifts: real frames in, every checksum of
//! what comes out verified by a full recompute, and the frames compared byte for byte with the
//! ones the endpoints would have exchanged (built from scratch).

use super::*;
use crate::compile::tests::cfg;
use crate::compile::{compile, CompileConfig};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::parse_frame;
use wire::tcp::TcpFlags;

const A: PortIdx = 0;
const B: PortIdx = 1;
const SEC: u64 = 1_000_000_000;
const NAT_HDR: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";

fn a6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Client, server, and the address MASQUERADE uses on port b (`cfg()`'s `address6`).
fn c6() -> [u8; 16] {
    a6("2001:2::1")
}
fn s6() -> [u8; 16] {
    a6("2001:2:0:1::10")
}
fn masq6() -> [u8; 16] {
    a6("2001:2::fe")
}

fn worker6_cfg(text: &str, c: &CompileConfig) -> Worker {
    let rs =
        rules::parse_restore("t6", text, rules::Family::Ipv6).unwrap_or_else(|d| panic!("{d}"));
    let compiled = compile(None, Some(&rs), c).unwrap();
    Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        0,
    )
}

fn worker6(text: &str) -> Worker {
    worker6_cfg(text, &cfg())
}

fn worker4(text: &str) -> Worker {
    let rs = crate::compile::tests::v4(text);
    let compiled = compile(Some(&rs), None, &cfg()).unwrap();
    Worker::new(
        Arc::new(ArcSwap::from_pointee(compiled)),
        &conntrack::Config::default(),
        1024,
        0,
        1,
        0,
    )
}

fn run(w: &mut Worker, ingress: PortIdx, frame: &[u8], now: u64) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    buf[..frame.len()].copy_from_slice(frame);
    let v = w.process(ingress, &mut buf, frame.len(), now);
    let n = match v {
        Verdict::Reply(n) => n,
        _ => frame.len(),
    };
    buf.truncate(n);
    (v, buf)
}

fn tcp6(src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameBuilder::default().tcp(
        IpPair::V6(src, dst),
        &TcpSpec {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 64800,
            options: vec![],
            payload: &[],
        },
    )
}

fn valid(frame: &[u8]) {
    let info = parse_frame(frame).unwrap();
    wire::verify_ipv4_header(frame, &info).unwrap();
    wire::verify_l4_checksum(frame, &info).unwrap();
}

#[test]
fn ipv6_masquerade_rewrites_both_directions_and_binds_in_conntrack() {
    let mut w = worker6(&format!(
        "{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n"
    ));
    let (v, out) = run(&mut w, A, &tcp6(c6(), s6(), 40000, 80, 0x02, 100, 0), SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, tcp6(masq6(), s6(), 40000, 80, 0x02, 100, 0));
    valid(&out);
    let (v, back) = run(
        &mut w,
        B,
        &tcp6(s6(), masq6(), 80, 40000, 0x12, 500, 101),
        SEC + 1,
    );
    assert_eq!(v, Verdict::Forward);
    assert_eq!(back, tcp6(s6(), c6(), 80, 40000, 0x12, 500, 101));
    let mut snaps = Vec::new();
    w.shard()
        .snapshot(&conntrack::Filter::default(), SEC + 1, &mut snaps);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].nat, NatKind::Src);
    assert_eq!(snaps[0].reply.dst, masq6());
    // a second client with the same port gets another one
    let (_, out2) = run(
        &mut w,
        A,
        &tcp6(a6("2001:2::9"), s6(), 40000, 80, 0x02, 1, 0),
        2 * SEC,
    );
    let i2 = parse_frame(&out2).unwrap();
    assert_eq!(i2.src, masq6());
    assert!(i2.src_port >= 1024 && i2.src_port != 40000);
    valid(&out2);
}

#[test]
fn ipv6_dnat_with_brackets_and_its_replies() {
    let mut w = worker6(&format!(
        "{NAT_HDR}-A PREROUTING -d 2001:2::80/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [2001:2:0:1::10]:80\nCOMMIT\n"
    ));
    let vip = a6("2001:2::80");
    let (v, out) = run(&mut w, A, &tcp6(c6(), vip, 40000, 8080, 0x02, 1, 0), SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, tcp6(c6(), s6(), 40000, 80, 0x02, 1, 0));
    let (_, back) = run(&mut w, B, &tcp6(s6(), c6(), 80, 40000, 0x12, 9, 2), SEC + 1);
    assert_eq!(back, tcp6(vip, c6(), 8080, 40000, 0x12, 9, 2));
    valid(&back);
    // the next packet reuses the binding without a nat traversal
    let (_, out) = run(
        &mut w,
        A,
        &tcp6(c6(), vip, 40000, 8080, 0x10, 2, 10),
        SEC + 2,
    );
    assert_eq!(out, tcp6(c6(), s6(), 40000, 80, 0x10, 2, 10));
    assert_eq!(w.trace().decided[HookPoint::NatPrerouting as usize], None);
}

#[test]
fn icmpv6_echo_and_errors_about_a_snat_flow_are_translated_back() {
    let mut w = worker6(&format!(
        "{NAT_HDR}-A POSTROUTING -o fw-s -j SNAT --to-source 2001:2::200\nCOMMIT\n"
    ));
    let b = FrameBuilder::default();
    let nat = a6("2001:2::200");
    let q = b.udp(IpPair::V6(c6(), s6()), 5000, 53, b"query");
    let (_, out) = run(&mut w, A, &q, SEC);
    assert_eq!(out, b.udp(IpPair::V6(nat, s6()), 5000, 53, b"query"));
    // time exceeded from a router on the way (its own source stays)
    let router = a6("2001:2:0:1::1");
    let err = b.icmp_error(IpPair::V6(router, nat), 3, 0, 0, &out[14..]);
    let (v, back) = run(&mut w, B, &err, SEC + 1);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        back,
        b.icmp_error(IpPair::V6(router, c6()), 3, 0, 0, &q[14..])
    );
    valid(&back);
    // destination unreachable (port) from the server, quoting what it got
    let err = b.icmp_error(IpPair::V6(s6(), nat), 1, 4, 0, &out[14..]);
    let (v, back) = run(&mut w, B, &err, SEC + 2);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        back,
        b.icmp_error(IpPair::V6(s6(), c6()), 1, 4, 0, &q[14..])
    );
    valid(&back);
    // echo: the identifier is kept where unique, the ICMPv6 checksum covers the addresses
    let (_, e) = run(
        &mut w,
        A,
        &b.echo(IpPair::V6(c6(), s6()), true, 7, 1, b"p"),
        2 * SEC,
    );
    assert_eq!(e, b.echo(IpPair::V6(nat, s6()), true, 7, 1, b"p"));
    let (_, r) = run(
        &mut w,
        B,
        &b.echo(IpPair::V6(s6(), nat), false, 7, 1, b"p"),
        2 * SEC,
    );
    assert_eq!(r, b.echo(IpPair::V6(s6(), c6()), false, 7, 1, b"p"));
}

/// Abuse: a one-port SNAT range is exhausted by the second connection, which is dropped and
/// counted; ICMPv6 errors whose quotes are cut or garbage never panic and are never forwarded
/// rewritten wrongly (they are dropped or pass with valid checksums).
#[test]
fn ipv6_nat_port_exhaustion_and_malformed_error_quotes() {
    let mut w = worker6(&format!(
        "{NAT_HDR}-A POSTROUTING -p tcp -j SNAT --to-source [2001:2::200]:1024\nCOMMIT\n"
    ));
    assert_eq!(
        run(&mut w, A, &tcp6(c6(), s6(), 40000, 80, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    for sp in 40001..40011 {
        let v = run(&mut w, A, &tcp6(c6(), s6(), sp, 80, 0x02, 1, 0), SEC).0;
        assert_eq!(v, Verdict::Drop(DropReason::NatPortsExhausted));
    }
    assert_eq!(w.stats().drops[DropReason::NatPortsExhausted.index()], 10);

    let b = FrameBuilder::default();
    let nat = a6("2001:2::200");
    let sent = tcp6(nat, s6(), 1024, 80, 0x02, 1, 0);
    let mut rng = 0x1234_5678_9abc_def0u64;
    for i in 0..2000u32 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut quote = sent[14..].to_vec();
        let cut = (rng % 80) as usize;
        for k in 0..(rng >> 8) % 4 {
            let at = ((rng >> (16 + 8 * k)) % 60) as usize;
            quote[at] ^= (rng >> (20 + k)) as u8 | 1;
        }
        quote.truncate(cut.max(1));
        let err = b.icmp_error(IpPair::V6(s6(), nat), 1, (i % 7) as u8, 0, &quote);
        let (v, out) = run(&mut w, B, &err, SEC + u64::from(i));
        if v == Verdict::Forward {
            valid(&out);
        }
    }
}

#[test]
fn netmap_maps_the_network_part_both_ways() {
    // IPv4: 198.18.2.0/24 seen as 198.18.3.0/24 by the client side, and back
    let mut w = worker4(&format!(
        "{NAT_HDR}-A PREROUTING -d 198.18.3.0/24 -j NETMAP --to 198.18.2.0/24\n\
         -A POSTROUTING -s 198.18.0.0/24 -j NETMAP --to 198.18.9.0/24\nCOMMIT\n"
    ));
    let b = FrameBuilder::default();
    let p = IpPair::V4([198, 18, 0, 7], [198, 18, 3, 77]);
    let (v, out) = run(&mut w, A, &b.udp(p, 1000, 53, b"x"), SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(
        out,
        b.udp(
            IpPair::V4([198, 18, 9, 7], [198, 18, 2, 77]),
            1000,
            53,
            b"x"
        )
    );
    let (_, back) = run(
        &mut w,
        B,
        &b.udp(
            IpPair::V4([198, 18, 2, 77], [198, 18, 9, 7]),
            53,
            1000,
            b"y",
        ),
        SEC + 1,
    );
    assert_eq!(back, b.udp(p.reversed(), 53, 1000, b"y"));
    // IPv6: a /56 onto another, host bits kept
    let mut w = worker6(&format!(
        "{NAT_HDR}-A PREROUTING -d 2001:2:0:100::/56 -j NETMAP --to 2001:2:0:200::/56\nCOMMIT\n"
    ));
    let (_, out) = run(
        &mut w,
        A,
        &tcp6(c6(), a6("2001:2:0:1ab::1:2"), 1, 2, 0x02, 1, 0),
        SEC,
    );
    assert_eq!(out, tcp6(c6(), a6("2001:2:0:2ab::1:2"), 1, 2, 0x02, 1, 0));
    valid(&out);
}

#[test]
fn dnat_port_shift_as_nf_nat_core_computes_it() {
    let mut w = worker4(&format!(
        "{NAT_HDR}-A PREROUTING -p tcp -j DNAT --to-destination 198.18.0.3:2000-2999/1000\nCOMMIT\n"
    ));
    let b = FrameBuilder::default();
    let spec = |dp| TcpSpec {
        src_port: 40000,
        dst_port: dp,
        seq: 1,
        ack: 0,
        flags: TcpFlags::SYN,
        window: 100,
        options: vec![],
        payload: &[],
    };
    // 1005 -> 2005; 3999 -> 2000 + 2999 % 1000; 999 -> 2000 + (999 - 1000 as u16) % 1000
    for (i, (dp, want)) in [(1005u16, 2005u16), (3999, 2999), (999, 2535)]
        .into_iter()
        .enumerate()
    {
        let p = IpPair::V4([198, 18, 0, 1 + i as u8], [198, 18, 0, 2]);
        let (_, out) = run(&mut w, A, &b.tcp(p, &spec(dp)), SEC);
        assert_eq!(
            out,
            b.tcp(
                IpPair::V4([198, 18, 0, 1 + i as u8], [198, 18, 0, 3]),
                &spec(want)
            ),
            "port {dp}"
        );
    }
}

#[test]
fn ipv6_masquerade_needs_an_ipv6_address() {
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
    let rs = rules::parse_restore("t6", &text, rules::Family::Ipv6).unwrap();
    let mut c = cfg();
    c.ports[1].ipv6 = None;
    let errs = compile(None, Some(&rs), &c).unwrap_err();
    assert!(errs[0].message.contains("address6"), "{errs:?}");
}
