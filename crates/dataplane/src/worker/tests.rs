use super::*;
use crate::compile::tests::{cfg, v4 as parse_v4};
use crate::compile::{compile, CompileConfig};
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::parse_frame;
use wire::tcp::TcpFlags;

pub(super) const C: [u8; 4] = [198, 18, 0, 1];
pub(super) const S: [u8; 4] = [198, 18, 0, 2];
const S3: [u8; 4] = [198, 18, 0, 3];
pub(super) const A: PortIdx = 0;
pub(super) const B: PortIdx = 1;
pub(super) const SEC: u64 = 1_000_000_000;

pub(super) fn worker_for(text: &str) -> Worker {
    worker_cfg(text, &cfg())
}

fn worker_cfg(text: &str, c: &CompileConfig) -> Worker {
    let compiled = if text.is_empty() {
        Compiled::accept_all(c)
    } else {
        compile(Some(&parse_v4(text)), None, c).unwrap()
    };
    let rules = Arc::new(ArcSwap::from_pointee(compiled));
    Worker::new(rules, &conntrack::Config::default(), 1024, 0, 1, 0)
}

pub(super) fn run(w: &mut Worker, ingress: PortIdx, frame: &[u8], now: u64) -> (Verdict, Vec<u8>) {
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

fn addr16(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0; 16];
    b[..4].copy_from_slice(&a);
    b
}

pub(super) fn ip(a: [u8; 4], b: [u8; 4]) -> IpPair {
    IpPair::V4(a, b)
}

pub(super) fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    FrameBuilder::default().tcp(
        ip(src, dst),
        &TcpSpec {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 64240,
            options: vec![],
            payload: b"",
        },
    )
}

fn valid(frame: &[u8]) {
    let info = parse_frame(frame).unwrap();
    wire::verify_ipv4_header(frame, &info).unwrap();
    wire::verify_l4_checksum(frame, &info).unwrap();
}

pub(super) const FILTER_HDR: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
const NAT_HDR: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";

fn stateful() -> String {
    format!(
        "{FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
    )
}

#[test]
fn limit_accepts_a_burst_then_the_average_rate_and_spends_no_token_on_other_misses() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -p udp -m udp --dport 53 -m limit --limit 2/sec --limit-burst 2 -j ACCEPT\nCOMMIT\n"
    ));
    let dns = |sp: u16| FrameBuilder::default().udp(ip(C, S), sp, 53, b"q");
    let other = FrameBuilder::default().udp(ip(C, S), 1000, 54, b"q");
    // a packet the rule's port match refuses spends no token
    assert!(matches!(run(&mut w, A, &other, SEC).0, Verdict::Drop(_)));
    let verdicts: Vec<Verdict> = (0..4)
        .map(|i| run(&mut w, A, &dns(2000 + i), SEC).0)
        .collect();
    assert_eq!(
        verdicts.iter().filter(|v| **v == Verdict::Forward).count(),
        2,
        "{verdicts:?}"
    );
    assert!(matches!(
        run(&mut w, A, &dns(3000), SEC + SEC / 4).0,
        Verdict::Drop(_)
    ));
    assert_eq!(
        run(&mut w, A, &dns(3001), SEC + SEC / 2).0,
        Verdict::Forward
    );
}

/// Forwarded or dropped, for the stateless-match tests.
fn passes(w: &mut Worker, ingress: PortIdx, frame: &[u8]) -> bool {
    match run(w, ingress, frame, SEC).0 {
        Verdict::Forward => true,
        Verdict::Drop(_) => false,
        v => panic!("unexpected verdict {v:?}"),
    }
}

#[test]
fn addrtype_local_is_a_port_address_and_broadcast_the_limited_one() {
    // fw-c has 198.18.0.253, fw-s 198.18.0.254 (see `cfg`)
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m addrtype --dst-type LOCAL -j DROP\n\
         -A FORWARD -m addrtype --dst-type BROADCAST,MULTICAST -j DROP\n\
         -A FORWARD -m addrtype ! --src-type UNICAST -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
    ));
    let b = FrameBuilder::default();
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    assert!(!passes(
        &mut w,
        A,
        &b.udp(ip(C, [198, 18, 0, 254]), 1, 2, b"x")
    ));
    assert!(!passes(
        &mut w,
        A,
        &b.udp(ip(C, [198, 18, 0, 253]), 1, 2, b"x")
    ));
    assert!(!passes(&mut w, A, &b.udp(ip(C, [255; 4]), 1, 2, b"x")));
    assert!(!passes(
        &mut w,
        A,
        &b.udp(ip(C, [224, 0, 0, 9]), 1, 2, b"x")
    ));
    // a loopback source is LOCAL, not UNICAST
    assert!(!passes(
        &mut w,
        A,
        &b.udp(ip([127, 0, 0, 1], S), 1, 2, b"x")
    ));
    assert_eq!(w.stats().drops[DropReason::FilterRule.index()], 5);
    // --limit-iface-in: LOCAL only for the input port's own address
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m addrtype --dst-type LOCAL --limit-iface-in -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
    ));
    assert!(!passes(
        &mut w,
        A,
        &b.udp(ip(C, [198, 18, 0, 253]), 1, 2, b"x")
    ));
    assert!(passes(
        &mut w,
        A,
        &b.udp(ip(C, [198, 18, 0, 254]), 1, 2, b"x")
    ));
}

#[test]
fn pkttype_reads_the_destination_mac() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m pkttype --pkt-type broadcast -j DROP\n\
         -A FORWARD -m pkttype ! --pkt-type unicast -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n"
    ));
    let mut b = FrameBuilder::default();
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.dst_mac = wire::ethernet::MacAddr::BROADCAST;
    assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.dst_mac = wire::ethernet::MacAddr([0x01, 0, 0x5e, 0, 0, 9]);
    assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
}

#[test]
fn tos_dscp_and_ecn_read_the_ds_field_and_tcp_flags() {
    let mut w = worker_for(&format!(
        "{FILTER_HDR}-A FORWARD -m dscp --dscp-class EF -j ACCEPT\n\
         -A FORWARD -m tos --tos Minimize-Delay -j ACCEPT\n\
         -A FORWARD -m ecn --ecn-ip-ect 3 -j ACCEPT\n\
         -A FORWARD -p tcp -m ecn --ecn-tcp-ece ! --ecn-tcp-cwr -j ACCEPT\nCOMMIT\n"
    ));
    let mut b = FrameBuilder::default();
    assert!(!passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.tos = 0xb8; // EF
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.tos = 0x40 | 0x10; // Minimize-Delay (mask 0x3f: precedence ignored)
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.tos = 0x13; // CE
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    b.tos = 0;
    let syn = |flags: u8| {
        b.tcp(
            ip(C, S),
            &TcpSpec {
                src_port: 1000,
                dst_port: 80,
                seq: 1,
                ack: 0,
                flags: TcpFlags(flags),
                window: 100,
                options: vec![],
                payload: b"",
            },
        )
    };
    assert!(passes(&mut w, A, &syn(0x42))); // SYN+ECE
    assert!(!passes(&mut w, A, &syn(0xc2))); // SYN+ECE+CWR
    assert!(!passes(&mut w, A, &syn(0x02)));
}

#[test]
fn physdev_names_the_ports_and_knows_the_output_only_from_forward() {
    let text = format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A PREROUTING -m physdev --physdev-is-bridged -j DROP\n\
         -A PREROUTING -m physdev --physdev-out fw-c -j NOTRACK\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -m physdev --physdev-in fw-c --physdev-out fw-s --physdev-is-bridged -j ACCEPT\n\
         -A FORWARD -m physdev --physdev-in fw-+ ! --physdev-out fw-s -j REJECT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let b = FrameBuilder::default();
    // PREROUTING: not yet bridged, and --physdev-out is skipped (NOTRACK, not a drop)
    assert!(passes(&mut w, A, &b.udp(ip(C, S), 1, 2, b"x")));
    assert_eq!(w.trace().ct_state, Some(CtState::Untracked));
    // from fw-s: the first FORWARD rule does not hold, the second's `! --physdev-out
    // fw-s` holds (out is fw-c) and rejects
    assert!(matches!(
        run(&mut w, B, &b.udp(ip(S, C), 1, 2, b"x"), SEC).0,
        Verdict::Reply(_)
    ));
}

#[test]
fn host_only_matches_never_match_a_forwarded_packet() {
    let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    let accept = format!("{FILTER_HDR}-A FORWARD -j ACCEPT\nCOMMIT\n");
    let b = FrameBuilder::default();
    let udp = b.udp(ip(C, S), 1, 2, b"x");
    for (rule, fires) in [
        ("-m socket", false),
        ("-m socket --transparent", false),
        ("-m rpfilter --loose", false),
        ("-m rpfilter --invert", true),
    ] {
        let mut w = worker_for(&format!(
            "{raw}-A PREROUTING {rule} -j DROP\nCOMMIT\n{accept}"
        ));
        assert_eq!(passes(&mut w, A, &udp), !fires, "{rule}");
    }
    // owner without a socket: `(match ^ invert) == 0`, so only all-negated options hold
    for (rule, fires) in [
        ("-m owner --uid-owner 0", false),
        ("-m owner ! --uid-owner 0 --gid-owner 0", false),
        ("-m owner ! --uid-owner 0 ! --socket-exists", true),
        ("-m cgroup ! --cgroup 1", false),
    ] {
        let mut w = worker_for(&format!(
            "{NAT_HDR}-A POSTROUTING {rule} -j SNAT --to-source 198.18.0.9\nCOMMIT\n{accept}"
        ));
        let (v, out) = run(&mut w, A, &udp, SEC);
        assert_eq!(v, Verdict::Forward);
        assert_eq!(out[26..30] == [198, 18, 0, 9], fires, "{rule}");
    }
}

#[test]
fn stateful_ruleset_lets_replies_in_and_blocks_new_from_the_server() {
    let mut w = worker_for(&stateful());
    let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
    assert_eq!(run(&mut w, A, &syn, SEC).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::New));
    let synack = tcp(S, C, 80, 40000, 0x12, 500, 101);
    let (v, out) = run(&mut w, B, &synack, SEC + 1000);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, synack, "no NAT: the frame is untouched");
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    // a new connection from the server side: the policy drops it
    let rsyn = tcp(S, C, 22, 50000, 0x02, 1, 0);
    assert_eq!(
        run(&mut w, B, &rsyn, 2 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    assert_eq!(w.stats().drops[DropReason::FilterPolicy.index()], 1);
    // a dropped NEW packet leaves no connection behind
    assert_eq!(w.shard().len(), 1);
    // UDP to a closed port: the ICMP error is RELATED and reaches the client
    let b = FrameBuilder::default();
    let q = b.udp(ip(C, S), 5000, 53, b"q");
    assert_eq!(run(&mut w, A, &q, 3 * SEC).0, Verdict::Forward);
    let err = b.icmp_error(ip(S, C), 3, 3, 0, &q[14..]);
    assert_eq!(run(&mut w, B, &err, 3 * SEC + 5).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Related));
    // the same error without a connection is INVALID and dropped
    let stray = b.icmp_error(ip(S, C), 3, 3, 0, &b.udp(ip(C, S), 5001, 53, b"q")[14..]);
    assert_eq!(
        run(&mut w, B, &stray, 4 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    assert_eq!(w.trace().ct_state, Some(CtState::Invalid));
}

#[test]
fn masquerade_rewrites_both_directions_and_binds_in_conntrack() {
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
    let mut w = worker_for(&text);
    let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert_eq!(v, Verdict::Forward);
    valid(&out);
    let info = parse_frame(&out).unwrap();
    assert_eq!(info.src_v4(), [198, 18, 0, 254]);
    assert_eq!(
        (info.src_port, info.dst_port),
        (40000, 80),
        "a unique port is kept"
    );
    let synack = tcp(S, [198, 18, 0, 254], 80, 40000, 0x12, 500, 101);
    let (v, back) = run(&mut w, B, &synack, SEC + 10);
    assert_eq!(v, Verdict::Forward);
    valid(&back);
    assert_eq!(back, tcp(S, C, 80, 40000, 0x12, 500, 101));
    let mut snaps = Vec::new();
    w.shard()
        .snapshot(&conntrack::Filter::default(), SEC + 10, &mut snaps);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].nat, NatKind::Src);
    assert_eq!(snaps[0].reply.dst[..4], [198, 18, 0, 254]);
    assert_eq!(snaps[0].orig.src[..4], C);
    // a second client with the same source port gets another port
    let syn2 = tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0);
    let (_, out2) = run(&mut w, A, &syn2, 2 * SEC);
    let i2 = parse_frame(&out2).unwrap();
    assert_eq!(i2.src_v4(), [198, 18, 0, 254]);
    assert_ne!(i2.src_port, 40000);
    assert!(i2.src_port >= 1024);
    valid(&out2);
}

#[test]
fn retransmitted_syn_reuses_the_binding() {
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
    let mut w = worker_for(&text);
    let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
    let (_, first) = run(&mut w, A, &syn, SEC);
    let (v, again) = run(&mut w, A, &syn, 2 * SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(again, first);
    assert_eq!(
        w.trace().decided[HookPoint::NatPostrouting as usize],
        None,
        "no second nat traversal"
    );
    // also when the first packet's port had to change
    let (_, o1) = run(
        &mut w,
        A,
        &tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0),
        3 * SEC,
    );
    let (_, o2) = run(
        &mut w,
        A,
        &tcp([198, 18, 0, 9], S, 40000, 80, 0x02, 7, 0),
        4 * SEC,
    );
    assert_eq!(o1, o2);
    assert_ne!(parse_frame(&o1).unwrap().src_port, 40000);
}

#[test]
fn dnat_port_forward_and_its_replies() {
    let text = format!(
        "{NAT_HDR}-A PREROUTING -d 198.18.0.2/32 -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let (v, out) = run(&mut w, A, &tcp(C, S, 40000, 8080, 0x02, 1, 0), SEC);
    assert_eq!(
        v,
        Verdict::Forward,
        "filter sees the translated destination"
    );
    assert_eq!(out, tcp(C, S3, 40000, 80, 0x02, 1, 0));
    let (v, back) = run(&mut w, B, &tcp(S3, C, 80, 40000, 0x12, 9, 2), SEC + 1);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(back, tcp(S, C, 8080, 40000, 0x12, 9, 2));
    // later packets of the connection reuse the binding without traversing nat
    let (_, out) = run(&mut w, A, &tcp(C, S, 40000, 8080, 0x10, 2, 10), SEC + 2);
    assert_eq!(out, tcp(C, S3, 40000, 80, 0x10, 2, 10));
    assert_eq!(w.trace().decided[HookPoint::NatPrerouting as usize], None);
    // direct access to the real server on 8080 is not forwarded
    assert_eq!(
        run(&mut w, A, &tcp(C, S3, 40001, 8080, 0x02, 1, 0), SEC * 2).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
}

#[test]
fn redirect_drops_with_its_reason_and_leaves_no_connection() {
    let text = format!(
        "{NAT_HDR}-A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let before = w.shard().len();
    for i in 0..3u16 {
        let (v, _) = run(&mut w, A, &tcp(C, S, 40000 + i, 80, 0x02, 1, 0), SEC);
        assert_eq!(v, Verdict::Drop(DropReason::RedirectLocal));
    }
    assert_eq!(w.stats().drops[DropReason::RedirectLocal.index()], 3);
    assert_eq!(w.shard().len(), before, "a redirected SYN is not confirmed");
    // other ports are forwarded
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40010, 81, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
}

#[test]
fn icmp_error_about_a_snat_connection_is_translated_back() {
    let text =
        format!("{NAT_HDR}-A POSTROUTING -o fw-s -j SNAT --to-source 198.18.0.200\nCOMMIT\n");
    let mut w = worker_for(&text);
    let b = FrameBuilder::default();
    let q = b.udp(ip(C, S), 5000, 53, b"query");
    let (_, out) = run(&mut w, A, &q, SEC);
    assert_eq!(out, b.udp(ip([198, 18, 0, 200], S), 5000, 53, b"query"));
    let err = b.icmp_error(ip(S, [198, 18, 0, 200]), 3, 3, 0, &out[14..]);
    let (v, back) = run(&mut w, B, &err, SEC + 1);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(back, b.icmp_error(ip(S, C), 3, 3, 0, &q[14..]));
}

#[test]
fn icmp_echo_ids_are_translated_and_kept_unique() {
    let text =
        format!("{NAT_HDR}-A POSTROUTING -o fw-s -j SNAT --to-source 198.18.0.200\nCOMMIT\n");
    let mut w = worker_for(&text);
    let b = FrameBuilder::default();
    let (_, o1) = run(&mut w, A, &b.echo(ip(C, S), true, 7, 1, b"p"), SEC);
    assert_eq!(o1, b.echo(ip([198, 18, 0, 200], S), true, 7, 1, b"p"));
    let (_, o2) = run(
        &mut w,
        A,
        &b.echo(ip([198, 18, 0, 9], S), true, 7, 1, b"p"),
        SEC,
    );
    let i2 = parse_frame(&o2).unwrap();
    assert_ne!(
        i2.icmp_ident, 7,
        "the second client's id is taken: translated"
    );
    valid(&o2);
    let (v, back) = run(
        &mut w,
        B,
        &b.echo(ip(S, [198, 18, 0, 200]), false, i2.icmp_ident, 1, b"p"),
        SEC + 1,
    );
    assert_eq!(v, Verdict::Forward);
    assert_eq!(back, b.echo(ip(S, [198, 18, 0, 9]), false, 7, 1, b"p"));
}

#[test]
fn snat_ports_keep_the_reply_in_this_workers_shard() {
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE --random\nCOMMIT\n");
    let c = compile(
        Some(&parse_v4(&text)),
        None,
        &CompileConfig {
            workers: 4,
            ..cfg()
        },
    )
    .unwrap();
    let rules = Arc::new(ArcSwap::from_pointee(c));
    let ct = conntrack::Config::default();
    let mut w = Worker::new(rules, &ct, 1024, 2, 4, 0);
    for sp in 40000..40050u16 {
        let (v, out) = run(&mut w, A, &tcp(C, S, sp, 80, 0x02, 1, 0), SEC);
        assert_eq!(v, Verdict::Forward);
        let i = parse_frame(&out).unwrap();
        let reply = Tuple {
            src: addr16(S),
            dst: addr16([198, 18, 0, 254]),
            sport: 80,
            dport: i.src_port,
        };
        let h = flow_hash(&ct.hash_key, conntrack::Family::V4, ip_proto::TCP, &reply);
        assert_eq!(shard_of(h, 4), 2, "port {} of flow {sp}", i.src_port);
        valid(&out);
    }
    assert_eq!(w.shard().len(), 50);
}

#[test]
fn nat_on_vlan_tagged_frames() {
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
    let mut w = worker_for(&text);
    let b = FrameBuilder {
        vlan: vec![(0x8100, 42)],
        ..FrameBuilder::default()
    };
    let q = b.udp(ip(C, S), 5000, 53, b"query");
    let (v, out) = run(&mut w, A, &q, SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, b.udp(ip([198, 18, 0, 254], S), 5000, 53, b"query"));
    valid(&out);
}

#[test]
fn exhausted_ports_drop_with_a_counter() {
    let text =
        format!("{NAT_HDR}-A POSTROUTING -p tcp -j SNAT --to-source 198.18.0.200:1024\nCOMMIT\n");
    let mut w = worker_for(&text);
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    let v = run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 1, 0), SEC).0;
    assert_eq!(v, Verdict::Drop(DropReason::NatPortsExhausted));
    assert_eq!(w.stats().drops[DropReason::NatPortsExhausted.index()], 1);
    assert_eq!(w.shard().len(), 1);
}

#[test]
fn reject_answers_out_of_the_ingress_port() {
    let text = format!(
        "{FILTER_HDR}-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -p udp -j REJECT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let syn = tcp(C, S, 40000, 80, 0x02, 100, 0);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert!(matches!(v, Verdict::Reply(54)), "{v:?}");
    let i = parse_frame(&out).unwrap();
    assert_eq!((i.src_v4(), i.dst_v4(), i.tcp_flags.0), (S, C, 0x14));
    assert_eq!(&out[..6], &syn[6..12]);
    let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
    let (v, out) = run(&mut w, A, &q, SEC);
    assert!(matches!(v, Verdict::Reply(_)));
    let i = parse_frame(&out).unwrap();
    assert_eq!((i.l4_proto, i.icmp_type, i.icmp_code), (1, 3, 3));
    assert_eq!(w.shard().len(), 0, "rejected connections are not confirmed");
}

#[test]
fn jump_goto_return_and_counters() {
    let text = format!(
        "{FILTER_HDR}:a - [0:0]\n:b - [0:0]\n:c - [0:0]\n\
         -A FORWARD -p tcp -j a\n-A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT\n\
         -A a -m tcp -p tcp --dport 80 -g b\n-A a -j RETURN\n-A a -j DROP\n\
         -A b -j LOG --log-prefix \"web \"\n-A b -s 198.18.0.1/32 -j RETURN\n-A b -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let (tx, mut rx) = rtrb::RingBuffer::new(4);
    w.set_log_queue(tx);
    // 80 from C: a -> goto b -> LOG, RETURN (to FORWARD, not to a) -> rule 2 no -> policy
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 1, 80, 0x02, 1, 0), SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    let rs = w.rules.load_full();
    let fwd = rs.v4.hooks[HookPoint::FilterForward as usize].unwrap();
    assert_eq!(
        w.trace().decided[HookPoint::FilterForward as usize],
        Some((fwd, POLICY))
    );
    let ev = rx.pop().unwrap();
    assert_eq!(ev.prefix(), "web ");
    assert_eq!(ev.ts_ns, SEC);
    // 80 from elsewhere: accepted in b
    assert_eq!(
        run(&mut w, A, &tcp(S3, S, 1, 80, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    let bid = rs.v4.chain_id(rules::TableName::Filter, "b").unwrap();
    assert_eq!(
        w.trace().decided[HookPoint::FilterForward as usize],
        Some((bid, 2))
    );
    // 22: a RETURNs, FORWARD rule 2 accepts
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 1, 22, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    assert_eq!(
        w.trace().decided[HookPoint::FilterForward as usize],
        Some((fwd, 1))
    );
    let chain = &rs.v4.chains[fwd as usize];
    assert_eq!(rs.counter_sum(chain.rules[0].counter), (3, 120));
    assert_eq!(rs.counter_sum(chain.rules[1].counter), (1, 40));
    assert_eq!(rs.counter_sum(chain.policy_counter), (1, 40));
    let listing = rs.list(false, "filter");
    assert!(
        listing.contains("Chain FORWARD (policy DROP 1 packets, 40 bytes)"),
        "{listing}"
    );
    assert_eq!(w.stats().log_events, 2);
    let all = rs.rule_counters();
    assert!(
        all.contains(&("ipv4", "filter", "FORWARD", 0, 1, 40)),
        "{all:?}"
    );
    assert!(all.contains(&("ipv4", "filter", "b", 1, 2, 80)), "{all:?}");
}

const MANGLE_HDR: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n";
const SECURITY_HDR: &str =
    "*security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

/// netfilter's order on a bridge: mangle PREROUTING sees the destination before DNAT,
/// mangle FORWARD, security FORWARD and mangle POSTROUTING after it; every packet of a
/// connection (not only its first, as nat) traverses mangle and security.
#[test]
fn mangle_and_security_hooks_run_in_netfilter_order_around_nat() {
    let text = format!(
        "{NAT_HDR}-A PREROUTING -d 198.18.0.2/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\nCOMMIT\n\
         {MANGLE_HDR}-A PREROUTING -d 198.18.0.2/32 -p tcp -m tcp --dport 8080\n\
         -A PREROUTING -d 198.18.0.3/32 -j DROP\n\
         -A FORWARD -d 198.18.0.2/32 -j DROP\n\
         -A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
         -A POSTROUTING -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
         -A POSTROUTING -p udp -j DROP\nCOMMIT\n\
         {SECURITY_HDR}-A FORWARD -d 198.18.0.3/32 -p tcp -m tcp --dport 80\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j DROP\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let rs = w.rules.load_full();
    assert!(rs.v4.mangles && !rs.v6.mangles);
    assert!(!worker_for(&stateful()).rules.load().v4.mangles);
    let hooks = rs.v4.hooks;
    let ours = [
        HookPoint::ManglePrerouting,
        HookPoint::MangleForward,
        HookPoint::SecurityForward,
        HookPoint::ManglePostrouting,
    ];
    let syn = tcp(C, S, 40000, 8080, 0x02, 100, 0);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(&out[30..34], &S3, "DNAT still applied");
    let t = w.trace();
    for h in ours {
        assert_eq!(
            t.decided[h as usize].map(|(c, r)| (c, r == POLICY)),
            Some((hooks[h as usize].unwrap(), true)),
            "{h:?} traversed to its policy"
        );
    }
    // the reply and the next packet of the client: mangle and security again, nat not
    let synack = tcp(S3, C, 80, 40000, 0x12, 500, 101);
    assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
    assert_eq!(w.trace().decided[HookPoint::NatPrerouting as usize], None);
    assert!(w.trace().decided[HookPoint::ManglePrerouting as usize].is_some());
    let ack = tcp(C, S, 40000, 8080, 0x10, 101, 501);
    assert_eq!(run(&mut w, A, &ack, SEC + 2).0, Verdict::Forward);
    let all = rs.rule_counters();
    for (table, chain) in [
        ("mangle", "PREROUTING"),
        ("mangle", "FORWARD"),
        ("mangle", "POSTROUTING"),
        ("security", "FORWARD"),
    ] {
        let rule = if (table, chain) == ("mangle", "FORWARD") {
            2
        } else {
            1
        };
        let hit = all
            .iter()
            .find(|c| c.1 == table && c.2 == chain && c.3 == rule)
            .unwrap();
        assert_eq!(
            hit.4, 2,
            "{table} {chain}: both client packets, pre/post DNAT as due"
        );
    }
    // drops in each table, counted with its reason; the NEW connection is not kept
    let n = w.shard().len();
    let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
    assert_eq!(
        run(&mut w, A, &q, 2 * SEC).0,
        Verdict::Drop(DropReason::MangleDrop)
    );
    assert_eq!(
        run(
            &mut w,
            A,
            &tcp(C, [198, 18, 0, 4], 1, 22, 0x02, 1, 0),
            2 * SEC
        )
        .0,
        Verdict::Drop(DropReason::SecurityDrop)
    );
    assert_eq!(
        run(&mut w, A, &tcp(C, S3, 1, 443, 0x02, 1, 0), 2 * SEC).0,
        Verdict::Drop(DropReason::MangleDrop),
        "mangle PREROUTING DROP"
    );
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 1, 443, 0x02, 1, 0), 2 * SEC).0,
        Verdict::Drop(DropReason::MangleDrop),
        "mangle FORWARD DROP"
    );
    assert_eq!(w.shard().len(), n);
    assert_eq!(w.stats().drops[DropReason::MangleDrop.index()], 3);
    assert_eq!(w.stats().drops[DropReason::SecurityDrop.index()], 1);
}

/// A UDP datagram of 40 payload bytes as two IPv4 fragments (UDP header + 24 bytes, then
/// 24 more at offset 32) from `src`.
fn fragments(src: [u8; 4], dst: [u8; 4], dport: u16, ident: u32) -> (Vec<u8>, Vec<u8>) {
    let whole = FrameBuilder::default().udp(ip(src, dst), 5000, dport, &[7u8; 56]);
    let l4 = &whole[34..];
    let frag = |offset: u16, more: bool, bytes: &[u8]| {
        FrameBuilder {
            fragment: Some(wire::builder::FragmentSpec {
                offset,
                more,
                ident,
            }),
            ..FrameBuilder::default()
        }
        .ip_frame(ip(src, dst), 17, bytes)
    };
    (frag(0, true, &l4[..32]), frag(32, false, &l4[32..]))
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let text = format!(
        "{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n{FILTER_HDR}\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -i fw-c -p udp -m udp --dport 53 -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let (first, second) = fragments(C, S, 53, 77);
    let (v, out1) = run(&mut w, A, &first, SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(parse_frame(&out1).unwrap().src_v4(), [198, 18, 0, 254]);
    let (v, out2) = run(&mut w, A, &second, SEC + 1);
    assert_eq!(v, Verdict::Forward, "follows the first fragment");
    let i2 = parse_frame(&out2).unwrap();
    assert_eq!((i2.src_v4(), i2.frag_offset), ([198, 18, 0, 254], 32));
    wire::verify_ipv4_header(&out2, &i2).unwrap();
    // the reassembled datagram carries a valid UDP checksum after the translation
    let mut dgram = out1[34..].to_vec();
    dgram.extend_from_slice(&out2[34..]);
    assert!(wire::checksum::verify_l4_v4(
        [198, 18, 0, 254],
        S,
        17,
        &dgram
    ));
    // a datagram whose first fragment is dropped: the rest is dropped too
    let (first, second) = fragments(C, S, 54, 78);
    assert_eq!(
        run(&mut w, A, &first, 2 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    assert_eq!(
        run(&mut w, A, &second, 2 * SEC).0,
        Verdict::Drop(DropReason::FragmentOfDropped)
    );
    // a later fragment without its first: classified alone, INVALID, dropped by policy
    let (_, orphan) = fragments(C, S, 53, 79);
    assert_eq!(
        run(&mut w, A, &orphan, 3 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    assert_eq!(w.trace().ct_state, Some(CtState::Invalid));
}

#[test]
fn full_log_queue_is_counted_never_waited_on() {
    let text =
        format!("{FILTER_HDR}-A FORWARD -j NFLOG --nflog-prefix x\n-A FORWARD -j ACCEPT\nCOMMIT\n");
    let mut w = worker_for(&text);
    let (tx, mut rx) = rtrb::RingBuffer::new(2);
    w.set_log_queue(tx);
    for sp in 1..=5 {
        assert_eq!(
            run(&mut w, A, &tcp(C, S, sp, 80, 0x02, 1, 0), SEC).0,
            Verdict::Forward
        );
    }
    assert_eq!((w.stats().log_events, w.stats().log_overflow), (5, 3));
    assert_eq!(rx.pop().unwrap().prefix(), "x");
}

#[test]
fn malformed_dropped_with_reason_and_arp_forwarded() {
    let mut w = worker_for("");
    let mut bad = tcp(C, S, 1, 2, 0x02, 1, 0);
    bad[14] = 0x44; // IHL 4
    assert_eq!(
        run(&mut w, A, &bad, SEC).0,
        Verdict::Drop(DropReason::Malformed)
    );
    assert_eq!(
        w.stats().malformed[Malformed::BadIpv4HeaderLength.index()],
        1
    );
    assert_eq!(w.trace().malformed, Some(Malformed::BadIpv4HeaderLength));
    let arp = FrameBuilder::default().arp(
        1,
        (wire::ethernet::MacAddr([2; 6]), C),
        (wire::ethernet::MacAddr([0; 6]), S),
    );
    assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
    // no rules: accepted, but tracked
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 1, 2, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    assert_eq!(w.shard().len(), 1);
}

#[test]
fn notrack_in_raw_makes_packets_untracked() {
    let text = format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let q = FrameBuilder::default().udp(ip(C, S), 5000, 53, b"q");
    assert_eq!(run(&mut w, A, &q, SEC).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Untracked));
    assert_eq!(w.shard().len(), 0);
    let other = FrameBuilder::default().udp(ip(C, S), 5000, 54, b"q");
    assert_eq!(
        run(&mut w, A, &other, SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
}

const RAW_HDR: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";

/// The connection marks of the worker's entries, as `conntrack -L` would show them.
fn connmarks(w: &Worker, now: u64) -> Vec<u32> {
    let mut snaps = Vec::new();
    w.shard()
        .snapshot(&conntrack::Filter::default(), now, &mut snaps);
    snaps.iter().map(|s| s.mark).collect()
}

#[test]
fn a_mark_set_in_prerouting_is_what_forward_tests_and_every_packet_starts_at_zero() {
    let text = format!(
        "{RAW_HDR}-A PREROUTING -p tcp -m tcp --dport 22 -j MARK --set-mark 0x2/0x2\nCOMMIT\n\
         {NAT_HDR}-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --or-mark 0x4\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\n\
         -A FORWARD -m mark --mark 0x2/0x2 -j ACCEPT\n\
         -A FORWARD -m mark --mark 0x4 -j ACCEPT\n\
         -A FORWARD -m mark ! --mark 0x0 -j DROP\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    // raw PREROUTING's mark reaches FORWARD
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40000, 22, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    // nat PREROUTING's too (a connection's first packet only, as the kernel's nat table)
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    // the next packet starts at 0 again: no rule marks port 443, so the policy drops it
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40002, 443, 0x02, 1, 0), SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    // marking is not a connection's: the reply of the port 22 one is ESTABLISHED
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 22, 40000, 0x12, 9, 2), SEC + 1).0,
        Verdict::Forward
    );
    assert_eq!(
        connmarks(&w, SEC + 1),
        vec![0, 0],
        "MARK leaves the connmark alone"
    );
}

#[test]
fn connmark_saved_on_the_first_packet_is_restored_on_the_reply() {
    let text = format!(
        "{FILTER_HDR}-A FORWARD -j CONNMARK --restore-mark\n\
         -A FORWARD -p tcp -m mark --mark 0x0 -m tcp --dport 80 -j MARK --set-xmark 0x7/0xff\n\
         -A FORWARD -j CONNMARK --save-mark --nfmask 0xf --ctmask 0xff\n\
         -A FORWARD -m mark --mark 0x7 -m connmark --mark 0x7/0xff -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    assert_eq!(connmarks(&w, SEC), vec![7]);
    // the reply is marked by nothing but the restore from its connection
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 80, 40000, 0x12, 9, 2), SEC + 1).0,
        Verdict::Forward
    );
    // another connection from the server side has connmark 0: dropped
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 22, 40001, 0x02, 1, 0), SEC + 2).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    // the listing shows it where conntrack(8) does
    let mut snaps = Vec::new();
    w.shard()
        .snapshot(&conntrack::Filter::default(), SEC + 2, &mut snaps);
    let mut line = String::new();
    let s = snaps
        .iter()
        .find(|s| s.mark == 7)
        .expect("the marked connection");
    conntrack::format_entry(&mut line, s, SEC + 2).unwrap();
    assert!(line.ends_with(" mark=7 use=1"), "{line}");
}

#[test]
fn connmark_needs_a_connection_negated_or_not() {
    let text = format!(
        "{RAW_HDR}-A PREROUTING -p udp -m udp --dport 53 -j NOTRACK\n\
         -A PREROUTING -j CONNMARK --set-mark 0x9\n\
         -A PREROUTING -m connmark ! --mark 0x9 -j DROP\nCOMMIT\n\
         {FILTER_HDR}-A FORWARD -j CONNMARK --set-mark 0x5\n\
         -A FORWARD -m connmark ! --mark 0x5 -j ACCEPT\n\
         -A FORWARD -m connmark --mark 0x5 -p udp -m udp --dport 54 -j ACCEPT\nCOMMIT\n"
    );
    let mut w = worker_for(&text);
    let b = FrameBuilder::default();
    // raw PREROUTING runs before conntrack: no entry, so neither CONNMARK nor `! --mark`
    // does anything; untracked in FORWARD: still no entry, and nothing matches
    assert_eq!(
        run(&mut w, A, &b.udp(ip(C, S), 5000, 53, b"q"), SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    assert_eq!(w.shard().len(), 0);
    // tracked: FORWARD's CONNMARK sets 5 on the entry and the third rule sees it
    assert_eq!(
        run(&mut w, A, &b.udp(ip(C, S), 5000, 54, b"q"), SEC).0,
        Verdict::Forward
    );
    assert_eq!(connmarks(&w, SEC), vec![5]);
}

#[test]
fn mark_arithmetic_agrees_with_the_man_page_for_every_option() {
    // iptables-extensions(8): --set-xmark zeroes the mask's bits and XORs the value,
    // --set-mark zeroes them and ORs it, --and/--or/--xor-mark are the bitwise operations;
    // CONNMARK --save-mark: ctmark = (ctmark & ~ctmask) ^ (nfmark & nfmask), and
    // --restore-mark: nfmark = (nfmark & ~nfmask) ^ (ctmark & ctmask).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u32
    };
    let first_action = |target: &str| -> RuleTarget {
        let text = format!("{FILTER_HDR}-A FORWARD -j {target}\nCOMMIT\n");
        let c = compile(Some(&parse_v4(&text)), None, &cfg()).unwrap();
        let id = c.v4.chain_id(rules::TableName::Filter, "FORWARD").unwrap();
        c.v4.chains[id as usize].rules[0].action.clone()
    };
    for _ in 0..64 {
        let (v, m, old, ct) = (next(), next(), next(), next());
        // an all-ones mask is the default and may not be written
        for (opt, want) in [
            (format!("--set-xmark {v:#x}/{m:#x}"), (old & !m) ^ v),
            (format!("--set-mark {v:#x}/{m:#x}"), (old & !m) | v),
            (format!("--set-mark {v}"), v),
            (format!("--and-mark {v:#x}"), old & v),
            (format!("--or-mark 0{v:o}"), old | v),
            (format!("--xor-mark {v}"), old ^ v),
        ] {
            let RuleTarget::Mark(xm) = first_action(&format!("MARK {opt}")) else {
                panic!("MARK {opt}");
            };
            assert_eq!(xm.apply(old), want, "MARK {opt} on {old:#x}");
            let RuleTarget::Connmark(c) = first_action(&format!("CONNMARK {opt}")) else {
                panic!("CONNMARK {opt}");
            };
            assert_eq!(c.apply(old, ct), (want, ct), "CONNMARK {opt} on {old:#x}");
        }
        let RuleTarget::Connmark(save) = first_action(&format!(
            "CONNMARK --save-mark --nfmask {v:#x} --ctmask {m:#x}"
        )) else {
            panic!("save");
        };
        assert_eq!(save.apply(ct, old), ((ct & !m) ^ (old & v), old));
        let RuleTarget::Connmark(restore) =
            first_action(&format!("CONNMARK --restore-mark --mask {m:#x}"))
        else {
            panic!("restore");
        };
        assert_eq!(restore.apply(ct, old), (ct, (old & !m) ^ (ct & m)));
    }
}

#[test]
fn reload_swaps_rules_and_keeps_connections() {
    let mut w = worker_for(&stateful());
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40000, 80, 0x02, 100, 0), SEC).0,
        Verdict::Forward
    );
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 80, 40000, 0x12, 500, 101), SEC).0,
        Verdict::Forward
    );
    // new ruleset: only ESTABLISHED passes, NEW is dropped
    let strict =
        format!("{FILTER_HDR}-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n");
    let c = compile(Some(&parse_v4(&strict)), None, &cfg()).unwrap();
    w.rules.store(Arc::new(c));
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40000, 80, 0x10, 101, 501), SEC * 2).0,
        Verdict::Forward
    );
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 40001, 80, 0x02, 100, 0), SEC * 2).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
}

#[test]
fn burst_api_writes_replies_in_place() {
    let text = format!("{FILTER_HDR}-A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n-A FORWARD -j ACCEPT\nCOMMIT\n");
    let mut w = worker_for(&text);
    let f1 = tcp(C, S, 1, 80, 0x02, 1, 0);
    let f2 = tcp(C, S, 1, 23, 0x02, 1, 0);
    let mut b1 = vec![0u8; 256];
    let mut b2 = vec![0u8; 256];
    b1[..f1.len()].copy_from_slice(&f1);
    b2[..f2.len()].copy_from_slice(&f2);
    let mut frames: [&mut [u8]; 2] = [&mut b1, &mut b2];
    let mut lens = [f1.len(), f2.len()];
    let mut v = [Verdict::Forward; 2];
    w.process_burst(A, &mut frames, &mut lens, &mut v, SEC);
    assert_eq!(v[0], Verdict::Forward);
    assert_eq!(v[1], Verdict::Reply(54));
    assert_eq!(lens[1], 54);
    assert_eq!(parse_frame(&b2[..54]).unwrap().tcp_flags.0, 0x14);
}

#[test]
fn ipv6_rules_apply_to_ipv6_frames() {
    let v6 = rules::parse_restore(
        "t6",
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p ipv6-icmp -j ACCEPT\n-A FORWARD -p udp -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n",
        rules::Family::Ipv6,
    )
    .unwrap();
    let c = compile(None, Some(&v6), &cfg()).unwrap();
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(c)),
        &conntrack::Config::default(),
        64,
        0,
        1,
        0,
    );
    let b = FrameBuilder::default();
    let p = IpPair::V6(
        "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
        "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
    );
    assert_eq!(
        run(&mut w, A, &b.echo(p, true, 1, 1, b"x"), SEC).0,
        Verdict::Forward
    );
    let (v, out) = run(&mut w, A, &b.udp(p, 1, 2, b"x"), SEC);
    assert!(matches!(v, Verdict::Reply(_)));
    let i = parse_frame(&out).unwrap();
    assert_eq!((i.icmp_type, i.icmp_code), (1, 1));
    // IPv4 has no ruleset: accepted
    assert_eq!(
        run(&mut w, A, &tcp(C, S, 1, 2, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
}

const C6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const S6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Flips bits of the L4 checksum field of a frame (no IP options, no extension headers).
fn corrupt_l4(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let info = parse_frame(&f).unwrap();
    let at = usize::from(info.l4_offset)
        + match info.l4_proto {
            ip_proto::TCP => 16,
            ip_proto::UDP => 6,
            _ => 2,
        };
    f[at] ^= 0x5a;
    assert!(wire::verify_l4_checksum(&f, &parse_frame(&f).unwrap()).is_err());
    f
}

fn worker_ct(text: &str, ct: &conntrack::Config) -> Worker {
    let compiled = if text.is_empty() {
        Compiled::accept_all(&cfg())
    } else {
        compile(Some(&parse_v4(text)), None, &cfg()).unwrap()
    };
    Worker::new(Arc::new(ArcSwap::from_pointee(compiled)), ct, 1024, 0, 1, 0)
}

fn first_packets() -> Vec<(&'static str, Vec<u8>)> {
    let b = FrameBuilder::default();
    let v6 = IpPair::V6(C6, S6);
    let syn6 = TcpSpec {
        src_port: 40000,
        dst_port: 80,
        seq: 1,
        ack: 0,
        flags: TcpFlags(0x02),
        window: 64240,
        options: vec![],
        payload: b"",
    };
    vec![
        ("tcp4", tcp(C, S, 40000, 80, 0x02, 100, 0)),
        ("udp4", b.udp(ip(C, S), 5000, 53, b"q")),
        ("icmp4", b.echo(ip(C, S), true, 7, 1, b"ping")),
        ("tcp6", b.tcp(v6, &syn6)),
        ("udp6", b.udp(v6, 5000, 53, b"q")),
        ("icmp6", b.echo(v6, true, 7, 1, b"ping")),
    ]
}

#[test]
fn bad_l4_checksums_are_invalid_and_create_no_state() {
    for (name, good) in first_packets() {
        let bad = corrupt_l4(&good);
        let mut w = worker_ct("", &conntrack::Config::default());
        assert_eq!(run(&mut w, A, &bad, SEC).0, Verdict::Forward, "{name}");
        assert_eq!(w.trace().ct_state, Some(CtState::Invalid), "{name}");
        assert!(w.shard().is_empty(), "{name}: no entry from a bad checksum");
        let st = w.shard().stats();
        assert_eq!(st.new, 0, "{name}");
        assert_eq!(st.reasons[conntrack::CtReason::BadChecksum as usize], 1);
        // The same packet with its checksum intact is NEW.
        run(&mut w, A, &good, SEC);
        assert_eq!(w.trace().ct_state, Some(CtState::New), "{name}");
        assert_eq!(w.shard().len(), 1, "{name}");
        // checksum = false: not verified, tracked.
        let off = conntrack::Config {
            checksum: false,
            ..conntrack::Config::default()
        };
        let mut w = worker_ct("", &off);
        run(&mut w, A, &bad, SEC);
        assert_eq!(w.trace().ct_state, Some(CtState::New), "{name}");
    }
    // A stateful ruleset drops it as the kernel's `--ctstate INVALID -j DROP` would.
    let mut w = worker_ct(&stateful(), &conntrack::Config::default());
    let bad = corrupt_l4(&tcp(C, S, 40000, 80, 0x02, 100, 0));
    assert_eq!(
        run(&mut w, A, &bad, SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
}

#[test]
fn a_zero_udp_checksum_means_none_over_both_families() {
    for ip in [IpPair::V4(C, S), IpPair::V6(C6, S6)] {
        let mut f = FrameBuilder::default().udp(ip, 5000, 53, b"q");
        let info = parse_frame(&f).unwrap();
        let at = usize::from(info.l4_offset) + 6;
        f[at..at + 2].copy_from_slice(&[0, 0]);
        let mut w = worker_ct("", &conntrack::Config::default());
        run(&mut w, A, &f, SEC);
        // nf_conntrack's udp_error returns before the sum for a zero checksum.
        assert_eq!(w.trace().ct_state, Some(CtState::New), "{ip:?}");
    }
}

#[test]
fn a_forged_rst_with_a_bad_checksum_does_not_close_the_connection() {
    let state_of = |w: &Worker| {
        let mut snaps = Vec::new();
        w.shard()
            .snapshot(&conntrack::Filter::default(), 5 * SEC, &mut snaps);
        assert_eq!(snaps.len(), 1);
        let mut line = String::new();
        conntrack::format_entry(&mut line, &snaps[0], 5 * SEC).unwrap();
        line
    };
    let handshake = |w: &mut Worker| {
        assert_eq!(
            run(w, A, &tcp(C, S, 40000, 80, 0x02, 100, 0), SEC).0,
            Verdict::Forward
        );
        assert_eq!(
            run(w, B, &tcp(S, C, 80, 40000, 0x12, 500, 101), SEC + 1).0,
            Verdict::Forward
        );
        assert_eq!(
            run(w, A, &tcp(C, S, 40000, 80, 0x10, 101, 501), SEC + 2).0,
            Verdict::Forward
        );
    };
    let rst = tcp(S, C, 80, 40000, 0x04, 501, 0);
    let mut w = worker_ct(&stateful(), &conntrack::Config::default());
    handshake(&mut w);
    assert!(state_of(&w).contains("ESTABLISHED"), "{}", state_of(&w));
    assert_eq!(
        run(&mut w, B, &corrupt_l4(&rst), 2 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy),
        "INVALID: the stateful ruleset drops it"
    );
    assert!(state_of(&w).contains("ESTABLISHED"), "{}", state_of(&w));
    let data = tcp(C, S, 40000, 80, 0x18, 101, 501);
    assert_eq!(run(&mut w, A, &data, 3 * SEC).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    // The control: the same RST with its checksum intact closes it.
    let mut w = worker_ct(&stateful(), &conntrack::Config::default());
    handshake(&mut w);
    assert_eq!(run(&mut w, B, &rst, 2 * SEC).0, Verdict::Forward);
    assert!(state_of(&w).contains("CLOSE"), "{}", state_of(&w));
}

#[test]
fn a_bad_ipv4_header_checksum_is_dropped_before_any_hook() {
    let mut f = tcp(C, S, 40000, 80, 0x02, 100, 0);
    f[14 + 10] ^= 0x01;
    for checksum in [true, false] {
        let ct = conntrack::Config {
            checksum,
            ..conntrack::Config::default()
        };
        let mut w = worker_ct("", &ct);
        assert_eq!(
            run(&mut w, A, &f, SEC).0,
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(w.trace().malformed, Some(Malformed::BadIpv4HeaderChecksum));
        assert!(w.shard().is_empty());
    }
}
/// Frames of the bridge tests: a builder with these tags (outermost first).
fn tagged(tags: &[(u16, u16)]) -> FrameBuilder {
    FrameBuilder {
        vlan: tags.to_vec(),
        ..FrameBuilder::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn tcp_on(
    b: &FrameBuilder,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    b.tcp(
        ip(src, dst),
        &TcpSpec {
            src_port: sp,
            dst_port: dp,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 64240,
            options: vec![],
            payload: b"",
        },
    )
}

fn bridged(text: &str, policy: BridgePolicy) -> Worker {
    let mut w = worker_for(text);
    w.set_bridge(policy);
    w
}

fn class(w: &Worker, c: BridgeClass) -> u64 {
    w.stats().bridge[c.index()]
}

fn dropped(w: &Worker, r: DropReason) -> u64 {
    w.stats().drops[r.index()]
}

/// The stateful ruleset plus one NEW service the server side may open (ssh to the client).
fn stateful_both_ways() -> String {
    format!(
        "{FILTER_HDR}-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -i fw-c -m conntrack --ctstate NEW -j ACCEPT\n\
         -A FORWARD -i fw-s -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n"
    )
}

#[test]
fn tagged_new_from_either_side_is_filtered_and_tracked_on_the_inner_packet() {
    let mut w = bridged(&stateful_both_ways(), BridgePolicy::default());
    let v100 = tagged(&[(0x8100, 100)]);
    // client side: NEW accepted, the tag stays, the reply is ESTABLISHED
    let syn = tcp_on(&v100, C, S, 40000, 80, 0x02, 100, 0);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, syn, "forwarded with its tag, untouched");
    assert_eq!(w.trace().ct_state, Some(CtState::New));
    let synack = tcp_on(&v100, S, C, 80, 40000, 0x12, 500, 101);
    assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    // server side: NEW to a port the rules allow is forwarded, tag kept ...
    let ssh = tcp_on(&v100, S, C, 50000, 22, 0x02, 1, 0);
    let (v, out) = run(&mut w, B, &ssh, 2 * SEC);
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, ssh);
    assert_eq!(w.trace().ct_state, Some(CtState::New));
    let back = tcp_on(&v100, C, S, 22, 50000, 0x12, 9, 2);
    assert_eq!(run(&mut w, A, &back, 2 * SEC + 1).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    // ... and NEW to any other port meets the policy, exactly as untagged
    let other = tcp_on(&v100, S, C, 50001, 23, 0x02, 1, 0);
    assert_eq!(
        run(&mut w, B, &other, 3 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    let untagged = tcp(S, C, 50001, 23, 0x02, 1, 0);
    assert_eq!(
        run(&mut w, B, &untagged, 3 * SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    // the inner packet was classified: the rules saw its ports
    assert_eq!(class(&w, BridgeClass::VlanFiltered), 5);
    assert_eq!(w.shard().len(), 2);
}

#[test]
fn conntrack_does_not_separate_vlans_as_the_kernels_zone_0_does_not() {
    // one connection whatever the VID: a SYN on VLAN 100 is answered on VLAN 200
    let mut w = bridged(&stateful(), BridgePolicy::default());
    let syn = tcp_on(&tagged(&[(0x8100, 100)]), C, S, 40000, 80, 0x02, 100, 0);
    assert_eq!(run(&mut w, A, &syn, SEC).0, Verdict::Forward);
    let synack = tcp_on(&tagged(&[(0x8100, 200)]), S, C, 80, 40000, 0x12, 500, 101);
    assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    assert_eq!(w.shard().len(), 1);
}

#[test]
fn qinq_stacks_are_filtered_on_the_innermost_packet_or_passed_or_dropped() {
    for outer in [0x88a8u16, 0x9100] {
        let mut w = bridged(&stateful(), BridgePolicy::default());
        for b in [
            tagged(&[(outer, 10), (0x8100, 100)]),
            tagged(&[(outer, 10)]),
            tagged(&[(0x8100, 10), (0x8100, 100)]),
        ] {
            // NEW from the server side: dropped by the policy like untagged traffic
            let rsyn = tcp_on(&b, S, C, 22, 50000, 0x02, 1, 0);
            assert_eq!(
                run(&mut w, B, &rsyn, SEC).0,
                Verdict::Drop(DropReason::FilterPolicy),
                "{outer:#x} {:?}",
                b.vlan
            );
            // from the client: tracked, forwarded with both tags, reply ESTABLISHED
            let syn = tcp_on(&b, C, S, 40000, 80, 0x02, 100, 0);
            let (v, out) = run(&mut w, A, &syn, 2 * SEC);
            assert_eq!((v, out), (Verdict::Forward, syn.clone()));
            let synack = tcp_on(&b, S, C, 80, 40000, 0x12, 500, 101);
            assert_eq!(run(&mut w, B, &synack, 2 * SEC + 1).0, Verdict::Forward);
            assert_eq!(w.trace().ct_state, Some(CtState::Established));
        }
        assert_eq!(class(&w, BridgeClass::QinqFiltered), 9);
        assert_eq!(class(&w, BridgeClass::VlanFiltered), 0);

        let qinq = tagged(&[(outer, 10), (0x8100, 100)]);
        let rsyn = tcp_on(&qinq, S, C, 22, 50000, 0x02, 1, 0);
        let pass = BridgePolicy {
            qinq: TagPolicy::Pass,
            ..BridgePolicy::default()
        };
        let mut w = bridged(&stateful(), pass);
        assert_eq!(run(&mut w, B, &rsyn, SEC).0, Verdict::Forward);
        assert_eq!(class(&w, BridgeClass::QinqPassed), 1);
        assert_eq!(w.shard().len(), 0, "passed frames are not tracked");
        // a single 802.1Q tag is still filtered under qinq = "pass"
        let single = tcp_on(&tagged(&[(0x8100, 100)]), S, C, 22, 50000, 0x02, 1, 0);
        assert_eq!(
            run(&mut w, B, &single, SEC).0,
            Verdict::Drop(DropReason::FilterPolicy)
        );
        let drop = BridgePolicy {
            qinq: TagPolicy::Drop,
            ..BridgePolicy::default()
        };
        let mut w = bridged("", drop);
        assert_eq!(
            run(&mut w, A, &rsyn, SEC).0,
            Verdict::Drop(DropReason::QinqDropped)
        );
        assert_eq!(dropped(&w, DropReason::QinqDropped), 1);
    }
}

#[test]
fn vlan_policy_pass_and_drop() {
    let v100 = tagged(&[(0x8100, 100)]);
    let rsyn = tcp_on(&v100, S, C, 22, 50000, 0x02, 1, 0);
    let arp = v100.arp(
        1,
        (wire::ethernet::MacAddr([2, 0, 0, 0, 0, 2]), S),
        (wire::ethernet::MacAddr([0; 6]), C),
    );
    let mut w = bridged(
        &stateful(),
        BridgePolicy {
            vlan: TagPolicy::Pass,
            ..BridgePolicy::default()
        },
    );
    assert_eq!(run(&mut w, B, &rsyn, SEC).0, Verdict::Forward);
    assert_eq!(class(&w, BridgeClass::VlanPassed), 1);
    let mut w = bridged(
        "",
        BridgePolicy {
            vlan: TagPolicy::Drop,
            ..BridgePolicy::default()
        },
    );
    assert_eq!(
        run(&mut w, B, &rsyn, SEC).0,
        Verdict::Drop(DropReason::VlanDropped)
    );
    assert_eq!(
        run(&mut w, A, &arp, SEC).0,
        Verdict::Drop(DropReason::VlanDropped),
        "every tagged frame, ARP too"
    );
    assert_eq!(dropped(&w, DropReason::VlanDropped), 2);
    // untagged traffic is not affected
    assert_eq!(
        run(&mut w, B, &tcp(S, C, 22, 50000, 0x02, 1, 0), SEC).0,
        Verdict::Forward
    );
    // the default: a tagged ARP is filtered as non-IP, i.e. forwarded
    let mut w = bridged("", BridgePolicy::default());
    assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
    assert_eq!(class(&w, BridgeClass::VlanFiltered), 1);
    assert_eq!(w.stats().non_ip, 1);
}

#[test]
fn pppoe_wrapped_ip_is_filtered_tracked_and_natted_inside_the_session() {
    use wire::builder::pppoe_session;
    let mut w = bridged(&stateful(), BridgePolicy::default());
    // NEW from the server inside a session: the policy drops it
    let rsyn = pppoe_session(&tcp(S, C, 22, 50000, 0x02, 1, 0), 7);
    assert_eq!(
        run(&mut w, B, &rsyn, SEC).0,
        Verdict::Drop(DropReason::FilterPolicy)
    );
    let rsyn6 = pppoe_session(
        &FrameBuilder::default().udp(
            IpPair::V6(
                "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            ),
            53,
            5000,
            b"x",
        ),
        7,
    );
    assert_eq!(
        run(&mut w, B, &rsyn6, SEC).0,
        Verdict::Forward,
        "no IPv6 rules: accepted, but it was parsed and tracked"
    );
    assert_eq!(w.trace().ct_state, Some(CtState::New));
    // from the client: forwarded in its session, reply ESTABLISHED
    let syn = pppoe_session(&tcp(C, S, 40000, 80, 0x02, 100, 0), 7);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert_eq!((v, out), (Verdict::Forward, syn.clone()));
    let synack = pppoe_session(&tcp(S, C, 80, 40000, 0x12, 500, 101), 7);
    assert_eq!(run(&mut w, B, &synack, SEC + 1).0, Verdict::Forward);
    assert_eq!(w.trace().ct_state, Some(CtState::Established));
    assert_eq!(class(&w, BridgeClass::PppoeFiltered), 4);

    // PPP control (LCP echo) passes; another PPP protocol (IPv4 behind a compressed
    // protocol field reads as 0x2145) cannot be filtered and is dropped
    let mut lcp = syn[..22].to_vec();
    lcp[18..20].copy_from_slice(&10u16.to_be_bytes());
    lcp[20..22].copy_from_slice(&ppp_proto::LCP.to_be_bytes());
    lcp.extend_from_slice(&[0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0]);
    assert_eq!(run(&mut w, A, &lcp, 2 * SEC).0, Verdict::Forward);
    assert_eq!(class(&w, BridgeClass::PppoeControl), 1);
    let mut compressed = syn[..20].to_vec();
    compressed[18..20].copy_from_slice(&61u16.to_be_bytes());
    compressed.push(0x21);
    compressed.extend_from_slice(&rsyn[22..]);
    assert_eq!(
        run(&mut w, B, &compressed, 2 * SEC).0,
        Verdict::Drop(DropReason::PppoeDropped)
    );

    // MASQUERADE rewrites the packet inside the session; the PPPoE header stays valid
    let text = format!("{NAT_HDR}-A POSTROUTING -o fw-s -j MASQUERADE\nCOMMIT\n");
    let mut w = bridged(&text, BridgePolicy::default());
    let q = pppoe_session(
        &FrameBuilder::default().udp(ip(C, S), 5000, 53, b"query"),
        3,
    );
    let (v, out) = run(&mut w, A, &q, SEC);
    assert_eq!(v, Verdict::Forward);
    let expect = FrameBuilder::default().udp(ip([198, 18, 0, 254], S), 5000, 53, b"query");
    assert_eq!(out, pppoe_session(&expect, 3));
    let i = parse_frame(&out).unwrap();
    wire::verify_ipv4_header(&out, &i).unwrap();
    wire::verify_l4_checksum(&out, &i).unwrap();

    // pppoe = "drop": every session frame, control too
    let mut w = bridged(
        "",
        BridgePolicy {
            pppoe: PppoePolicy::Drop,
            ..BridgePolicy::default()
        },
    );
    assert_eq!(
        run(&mut w, A, &syn, SEC).0,
        Verdict::Drop(DropReason::PppoeDropped)
    );
    assert_eq!(
        run(&mut w, A, &lcp, SEC).0,
        Verdict::Drop(DropReason::PppoeDropped)
    );
    assert_eq!(dropped(&w, DropReason::PppoeDropped), 2);
}

#[test]
fn reject_replies_keep_the_tags_and_the_pppoe_session() {
    use wire::builder::pppoe_session;
    let text = format!(
        "{FILTER_HDR}-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -p udp -j REJECT\nCOMMIT\n"
    );
    let mut w = bridged(&text, BridgePolicy::default());
    let qinq = tagged(&[(0x88a8, 10), (0x8100, 100)]);
    let syn = tcp_on(&qinq, C, S, 40000, 80, 0x02, 100, 0);
    let (v, out) = run(&mut w, A, &syn, SEC);
    assert_eq!(v, Verdict::Reply(54 + 8));
    assert_eq!(&out[12..22], &syn[12..22], "both tags, same VIDs");
    let i = parse_frame(&out).unwrap();
    assert_eq!((i.src_v4(), i.dst_v4(), i.tcp_flags.0), (S, C, 0x14));
    assert_eq!(i.vlan_tci, [10, 100]);
    valid(&out);
    // in a PPPoE session, the ICMP error's PPPoE length covers the reply
    let q = pppoe_session(
        &tagged(&[(0x8100, 5)]).udp(ip(C, S), 5000, 53, b"q"),
        0x0b3a,
    );
    let (v, out) = run(&mut w, A, &q, SEC);
    let Verdict::Reply(n) = v else {
        panic!("{v:?}")
    };
    let i = parse_frame(&out).unwrap();
    assert_eq!(i.encap, encap::VLAN | encap::PPPOE);
    assert_eq!((i.l4_proto, i.icmp_type, i.icmp_code), (1, 3, 3));
    assert_eq!(&out[18..22], &[0x11, 0x00, 0x0b, 0x3a]);
    let len = u16::from_be_bytes([out[22], out[23]]);
    assert_eq!(usize::from(len), n - 26 + 2);
    assert_eq!(usize::from(len), usize::from(i.l3_len) + 2);
    valid(&out);
}

#[test]
fn link_local_group_frames_are_never_forwarded_unless_configured() {
    let mac = wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]);
    let lldp = wire::builder::lldp(mac, 0x0e);
    let mut eapol = wire::builder::lldp(mac, 0x03);
    eapol[12..14].copy_from_slice(&ethertype::EAPOL.to_be_bytes());
    let stp = wire::builder::lldp(mac, 0x00);
    let mut w = bridged("", BridgePolicy::default());
    for (f, port) in [(&lldp, A), (&eapol, B), (&stp, A)] {
        assert_eq!(
            run(&mut w, port, f, SEC).0,
            Verdict::Drop(DropReason::LinkLocal)
        );
    }
    // also behind a VLAN tag, and with IP inside
    let mut tagged_lldp = lldp[..12].to_vec();
    tagged_lldp.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    tagged_lldp.extend_from_slice(&lldp[12..]);
    assert_eq!(
        run(&mut w, A, &tagged_lldp, SEC).0,
        Verdict::Drop(DropReason::LinkLocal)
    );
    let mut ip_to_group = tcp(C, S, 1, 2, 0x02, 1, 0);
    ip_to_group[..6].copy_from_slice(&lldp[..6]);
    assert_eq!(
        run(&mut w, A, &ip_to_group, SEC).0,
        Verdict::Drop(DropReason::LinkLocal)
    );
    assert_eq!(dropped(&w, DropReason::LinkLocal), 5);
    assert_eq!(w.stats().forwarded, 0);
    // the address just past the reserved range is ordinary multicast
    let mut next = lldp.clone();
    next[5] = 0x10;
    assert_eq!(run(&mut w, A, &next, SEC).0, Verdict::Forward);
    assert_eq!(class(&w, BridgeClass::OtherEthertype), 1);

    let mut w = bridged(
        "",
        BridgePolicy {
            forward_link_local: true,
            ..BridgePolicy::default()
        },
    );
    assert_eq!(run(&mut w, A, &lldp, SEC).0, Verdict::Forward);
    assert_eq!(class(&w, BridgeClass::LinkLocalForwarded), 1);
}

#[test]
fn other_ethertypes_pass_or_drop_and_arp_always_passes() {
    let b = FrameBuilder::default();
    let arp = b.arp(
        1,
        (wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]), C),
        (wire::ethernet::MacAddr([0; 6]), S),
    );
    let mpls = b.ethernet(0x8847, &[0u8; 46]);
    let padi = b.ethernet(ethertype::PPPOE_DISCOVERY, &[0x11, 0x09, 0, 0, 0, 0]);
    let mut w = bridged("", BridgePolicy::default());
    for f in [&arp, &mpls, &padi] {
        assert_eq!(run(&mut w, A, f, SEC).0, Verdict::Forward);
    }
    assert_eq!(class(&w, BridgeClass::OtherEthertype), 1);
    assert_eq!(class(&w, BridgeClass::PppoeDiscovery), 1);
    assert_eq!(w.stats().non_ip, 3);
    let mut w = bridged(
        "",
        BridgePolicy {
            other_ethertypes: false,
            pppoe_discovery: false,
            ..BridgePolicy::default()
        },
    );
    assert_eq!(run(&mut w, A, &arp, SEC).0, Verdict::Forward);
    assert_eq!(
        run(&mut w, A, &mpls, SEC).0,
        Verdict::Drop(DropReason::EthertypeDropped)
    );
    assert_eq!(
        run(&mut w, A, &padi, SEC).0,
        Verdict::Drop(DropReason::PppoeDiscoveryDropped)
    );
}
