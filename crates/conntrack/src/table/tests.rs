use super::*;
use crate::config::Timeouts;
use crate::list::{format_entry, Filter, Snapshot};
use crate::packet::TcpSegment;
use crate::tcp::{ACK, FIN, PSH, RST, SYN};
use crate::tuple::{PROTO_ICMP, PROTO_UDP};
use core::net::IpAddr;

const S: u64 = 1_000_000_000;
const T0: u64 = 5_000 * S;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn shard_with(cfg: Config) -> Shard {
    Shard::new(64, &cfg, T0)
}

fn shard() -> Shard {
    shard_with(Config::default())
}

/// What a test inspects of a [`Tracked`] once it is committed (the token itself is consumed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub state: CtState,
    pub dir: Dir,
    pub entry: Option<EntryId>,
    pub reason: Option<CtReason>,
    pub drop: bool,
}

impl Seen {
    pub(crate) fn of(t: &Tracked) -> Seen {
        Seen {
            state: t.state,
            dir: t.dir,
            entry: t.entry,
            reason: t.reason,
            drop: t.drop,
        }
    }
}

/// Track and accept.
pub(crate) fn pass(sh: &mut Shard, p: &CtPacket, now: u64) -> Seen {
    let t = sh.track(p, now);
    let seen = Seen::of(&t);
    assert!(sh.commit(t, true));
    seen
}

fn listing(sh: &Shard, now: u64) -> Vec<String> {
    let mut snaps = Vec::new();
    sh.snapshot(&Filter::default(), now, &mut snaps);
    snaps
        .iter()
        .map(|s| {
            let mut l = String::new();
            format_entry(&mut l, s, now).unwrap();
            l
        })
        .collect()
}

fn snap(sh: &Shard, now: u64) -> Snapshot {
    let mut snaps = Vec::new();
    sh.snapshot(&Filter::default(), now, &mut snaps);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    snaps[0]
}

const A: &str = "198.18.0.1";
const B: &str = "198.18.1.2";
const ROUTER: &str = "198.18.1.254";

#[test]
fn entry_is_two_cache_lines() {
    assert_eq!(ENTRY_SIZE, 128);
    assert_eq!(core::mem::align_of::<Entry>(), 64);
}

#[test]
fn ping_request_new_reply_established_then_gone() {
    let mut sh = shard();
    let req = CtPacket::icmp(ip(A), ip("198.18.0.2"), 8, 0, 4711);
    let t = pass(&mut sh, &req, T0);
    assert_eq!((t.state, t.dir), (CtState::New, Dir::Original));
    assert_eq!(
        listing(&sh, T0 + 5 * S),
        [
            "icmp     1 25 src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=4711 [UNREPLIED] \
          src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=4711 mark=0 use=1"
        ]
    );
    let rep = CtPacket::icmp(ip("198.18.0.2"), ip(A), 0, 0, 4711);
    let t = pass(&mut sh, &rep, T0 + 6 * S);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
    assert_eq!(sh.len(), 0, "entry destroyed once the reply has passed");
    assert!(listing(&sh, T0 + 6 * S).is_empty());
    // A second reply has nothing to belong to.
    let t = pass(&mut sh, &rep, T0 + 7 * S);
    assert_eq!(t.state, CtState::Invalid);
    assert_eq!(t.reason, Some(CtReason::IcmpNotRequest));
}

#[test]
fn icmp_entry_kept_until_timeout_as_current_linux_when_configured() {
    let mut sh = shard_with(Config {
        icmp_destroy_on_reply: false,
        ..Config::default()
    });
    pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 9), T0);
    let t = pass(&mut sh, &CtPacket::icmp(ip(B), ip(A), 0, 0, 9), T0 + S);
    assert_eq!(t.state, CtState::Established);
    assert_eq!(
        listing(&sh, T0 + 2 * S),
        [
            "icmp     1 29 src=198.18.0.1 dst=198.18.1.2 type=8 code=0 id=9 \
          src=198.18.1.2 dst=198.18.0.1 type=0 code=0 id=9 mark=0 use=1"
        ]
    );
    assert_eq!(sh.count(&Filter::default(), T0 + 31 * S + S / 10), 0);
}

#[test]
fn entry_survives_while_requests_are_outstanding() {
    let mut sh = shard();
    let req = CtPacket::icmp(ip(A), ip(B), 8, 0, 7);
    let rep = CtPacket::icmp(ip(B), ip(A), 0, 0, 7);
    assert_eq!(pass(&mut sh, &req, T0).state, CtState::New);
    // Same id again before any reply: still NEW (no reply seen), one entry.
    assert_eq!(pass(&mut sh, &req, T0 + S).state, CtState::New);
    assert_eq!(sh.len(), 1);
    assert_eq!(pass(&mut sh, &rep, T0 + 2 * S).state, CtState::Established);
    assert_eq!(sh.len(), 1, "one request still unanswered");
    assert_eq!(pass(&mut sh, &rep, T0 + 3 * S).state, CtState::Established);
    assert_eq!(sh.len(), 0);
}

#[test]
fn unanswered_request_expires_after_icmp_timeout() {
    for timeout in [30u32, 5] {
        let mut cfg = Config::default();
        cfg.timeouts.icmp = timeout;
        let mut sh = shard_with(cfg);
        let req = CtPacket::icmp(ip(A), ip(B), 8, 0, 1);
        pass(&mut sh, &req, T0);
        let t = u64::from(timeout) * S;
        assert_eq!(sh.expire(T0 + t - S / 10), 0);
        assert_eq!(sh.len(), 1);
        // The wheel is lazy by up to a slot, the lookup is exact.
        let rep = CtPacket::icmp(ip(B), ip(A), 0, 0, 1);
        let late = pass(&mut sh, &rep, T0 + t + S / 100);
        assert_eq!(late.state, CtState::Invalid);
        assert_eq!(sh.len(), 0);
        // And the wheel alone removes it too.
        pass(&mut sh, &req, T0 + 100 * S);
        assert_eq!(sh.expire(T0 + 100 * S + t + 2 * S), 1);
        assert_eq!(sh.len(), 0);
        assert!(sh.stats().expired >= 2);
    }
}

#[test]
fn timestamp_information_and_address_mask_pairs() {
    for (req_ty, rep_ty) in [(13u8, 14u8), (15, 16), (17, 18)] {
        let mut sh = shard();
        let req = CtPacket::icmp(ip(A), ip(B), req_ty, 0, 99);
        assert_eq!(pass(&mut sh, &req, T0).state, CtState::New);
        let line = &listing(&sh, T0)[0];
        assert!(
            line.contains(&format!("type={req_ty} code=0 id=99 [UNREPLIED]")),
            "{line}"
        );
        assert!(
            line.contains(&format!("dst=198.18.0.1 type={rep_ty} code=0 id=99")),
            "{line}"
        );
        // A reply of another pair does not match.
        let wrong = CtPacket::icmp(ip(B), ip(A), 0, 0, 99);
        assert_eq!(pass(&mut sh, &wrong, T0 + S).state, CtState::Invalid);
        // Another id does not match.
        let other_id = CtPacket::icmp(ip(B), ip(A), rep_ty, 0, 100);
        assert_eq!(pass(&mut sh, &other_id, T0 + S).state, CtState::Invalid);
        let rep = CtPacket::icmp(ip(B), ip(A), rep_ty, 0, 99);
        assert_eq!(pass(&mut sh, &rep, T0 + S).state, CtState::Established);
        assert_eq!(sh.len(), 0);
    }
}

#[test]
fn lone_replies_and_unknown_types_are_invalid() {
    let mut sh = shard();
    for ty in [0u8, 14, 16, 18, 9, 10] {
        let t = pass(&mut sh, &CtPacket::icmp(ip(B), ip(A), ty, 0, 5), T0);
        assert_eq!(t.state, CtState::Invalid, "type {ty}");
    }
    let t = pass(
        &mut sh,
        &CtPacket::icmp(ip("2001:2::2"), ip("2001:2::1"), 129, 0, 5),
        T0,
    );
    assert_eq!(t.state, CtState::Invalid);
    assert_eq!(sh.len(), 0);
    assert_eq!(sh.stats().reasons[CtReason::IcmpNotRequest as usize], 7);
}

#[test]
fn icmpv6_echo_and_node_information_pairs() {
    let (a, b) = (ip("2001:2::1"), ip("2001:2:0:1::2"));
    for (req_ty, rep_ty) in [(128u8, 129u8), (139, 140)] {
        let mut sh = shard();
        assert_eq!(
            pass(&mut sh, &CtPacket::icmp(a, b, req_ty, 0, 11920), T0).state,
            CtState::New
        );
        let line = &listing(&sh, T0 + S)[0];
        assert_eq!(
            line,
            &format!(
                "icmpv6   58 29 src=2001:2::1 dst=2001:2:0:1::2 type={req_ty} code=0 id=11920 \
                 [UNREPLIED] src=2001:2:0:1::2 dst=2001:2::1 type={rep_ty} code=0 id=11920 mark=0 use=1"
            )
        );
        let t = pass(&mut sh, &CtPacket::icmp(b, a, rep_ty, 0, 11920), T0 + S);
        assert_eq!(t.state, CtState::Established);
        assert_eq!(sh.len(), 0);
    }
}

#[test]
fn neighbour_discovery_invalid_and_mld_untracked() {
    let mut sh = shard();
    let (a, b) = (ip("fe80::1"), ip("ff02::1:ff00:2"));
    for ty in [133u8, 134, 135, 136, 137] {
        let t = pass(&mut sh, &CtPacket::icmp(a, b, ty, 0, 0), T0);
        assert_eq!(t.state, CtState::Invalid, "ND type {ty}");
    }
    for ty in [130u8, 131, 132, 143] {
        let t = pass(&mut sh, &CtPacket::icmp(a, ip("ff02::16"), ty, 0, 0), T0);
        assert_eq!(t.state, CtState::Untracked, "MLD type {ty}");
    }
    assert_eq!(sh.len(), 0);
}

fn seg(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, len: u32) -> TcpSegment {
    TcpSegment {
        sport,
        dport,
        flags,
        seq,
        ack,
        window: 64_000,
        wscale: None,
        sack_perm: false,
        sack: None,
        payload_len: len,
    }
}

fn a_to_b(s: TcpSegment) -> CtPacket {
    CtPacket::tcp(ip(A), ip(B), s)
}

fn b_to_a(s: TcpSegment) -> CtPacket {
    CtPacket::tcp(ip(B), ip(A), s)
}

const CLI: u16 = 55862;
const SRV: u16 = 8080;
const ISN_A: u32 = 1_000;
const ISN_B: u32 = 900_000;

fn syn() -> CtPacket {
    a_to_b(seg(CLI, SRV, SYN, ISN_A, 0, 0))
}

fn kinds(c: &mut rtrb::Consumer<CtEvent>) -> Vec<(CtEventKind, Option<TcpState>)> {
    let mut v = Vec::new();
    while let Ok(e) = c.pop() {
        v.push((e.kind, e.snap.tcp_state));
    }
    v
}

/// A handshake, data and a close give NEW, one UPDATE per state change (none for the
/// data segments, whose timeout refresh is no event), DESTROY on expiry; a full queue
/// counts what it lost.
#[test]
fn events_follow_state_changes_only() {
    let mut sh = shard();
    let (p, mut c) = rtrb::RingBuffer::new(64);
    sh.set_events(p);
    pass(&mut sh, &syn(), T0);
    pass(
        &mut sh,
        &b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
        T0,
    );
    pass(
        &mut sh,
        &a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
        T0,
    );
    for i in 0..5 {
        pass(
            &mut sh,
            &a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1 + i * 10, ISN_B + 1, 10)),
            T0,
        );
    }
    use CtEventKind::*;
    use TcpState::*;
    assert_eq!(
        kinds(&mut c),
        [
            (New, Some(SynSent)),
            (Update, Some(SynRecv)),
            (Update, Some(Established)),
        ]
    );
    let e = sh.emit_probe();
    assert_eq!(e.snap.orig.sport, CLI);
    // unacknowledged data: the 300 s timeout, what the peer is told is left
    assert!((299..=300).contains(&e.timeout_secs), "{}", e.timeout_secs);
    assert_eq!(sh.expire(T0 + 6 * 24 * 3600 * S), 1);
    assert_eq!(kinds(&mut c), [(Destroy, Some(Established))]);
    // a queue nobody drains: events are dropped and counted, tracking goes on
    let (p, _c) = rtrb::RingBuffer::new(1);
    sh.set_events(p);
    let t0 = T0 + 7 * 24 * 3600 * S;
    for port in 1..=3u16 {
        pass(&mut sh, &a_to_b(seg(port, SRV, SYN, ISN_A, 0, 0)), t0);
    }
    assert_eq!(sh.len(), 3);
    assert_eq!(sh.stats().events_dropped, 2);
}

/// An imported connection (a peer's, with its NAT binding) is ESTABLISHED at once in
/// both directions, its mid-stream segments picked up; a second import of it clashes.
#[test]
fn an_imported_connection_continues_mid_stream() {
    let mut sh = shard();
    let (p, mut c) = rtrb::RingBuffer::new(8);
    sh.set_events(p);
    let orig = a_to_b(seg(CLI, SRV, ACK, 0, 0, 0)).tuple();
    // SNAT to ROUTER:40000: the reply comes from B to ROUTER
    let reply = b_to_a(seg(SRV, 40000, ACK, 0, 0, 0)).tuple();
    let mut reply = reply;
    reply.dst = crate::tuple::addr16(ip(ROUTER));
    let im = Import {
        family: Family::V4,
        proto: PROTO_TCP,
        orig,
        reply,
        nat: NatKind::Src,
        tcp_state: TcpState::from_kernel(3),
        seen_reply: true,
        assured: true,
        mark: 7,
        timeout_secs: 300,
    };
    let id = sh.import(&im, T0).unwrap();
    assert_eq!(sh.import(&im, T0), Err(CtReason::Clash));
    assert_eq!((sh.len(), sh.stats().imported), (1, 1));
    assert_eq!(sh.nat(id), (NatKind::Src, reply));
    assert_eq!(
        kinds(&mut c),
        [(CtEventKind::New, Some(TcpState::Established))]
    );
    // data far into the stream, both ways, big windows, no handshake seen here
    let t = pass(
        &mut sh,
        &a_to_b(seg(CLI, SRV, ACK | PSH, 3_000_000_000, 77_000_000, 1400)),
        T0 + S,
    );
    assert_eq!(
        (t.state, t.dir, t.entry),
        (CtState::Established, Dir::Original, Some(id))
    );
    let mut r = b_to_a(seg(SRV, 40000, ACK, 77_000_000, 3_000_001_400, 0));
    r.dst = crate::tuple::addr16(ip(ROUTER));
    let t = pass(&mut sh, &r, T0 + S);
    assert_eq!(
        (t.state, t.dir, t.entry),
        (CtState::Established, Dir::Reply, Some(id))
    );
    let s = snap(&sh, T0 + S);
    assert_eq!(
        (s.mark, s.assured, s.tcp_state),
        (7, true, Some(TcpState::Established))
    );
    assert!(
        s.expires_at > T0 + 400_000 * S,
        "refreshed to the established timeout"
    );
    // a full table refuses, counted by the caller
    let mut tiny = Shard::new(1, &Config::default(), T0);
    tiny.import(&im, T0).unwrap();
    let other = Import {
        orig: a_to_b(seg(CLI + 1, SRV, ACK, 0, 0, 0)).tuple(),
        reply: b_to_a(seg(SRV, CLI + 1, ACK, 0, 0, 0)).tuple(),
        nat: NatKind::None,
        ..im
    };
    assert_eq!(tiny.import(&other, T0), Err(CtReason::TableFull));
}

#[test]
fn only_a_connections_first_packet_is_unconfirmed() {
    let mut sh = shard();
    let t = sh.track(&syn(), T0);
    assert_eq!((t.state, t.is_unconfirmed()), (CtState::New, true));
    assert!(sh.commit(t, true));
    // a retransmitted SYN is still NEW, but its entry is the confirmed one
    let t = sh.track(&syn(), T0 + S);
    assert_eq!((t.state, t.is_unconfirmed()), (CtState::New, false));
    assert!(sh.commit(t, true));
    let t = sh.track(
        &b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
        T0 + S,
    );
    assert_eq!((t.state, t.is_unconfirmed()), (CtState::Established, false));
    assert!(sh.commit(t, true));
    // dropped first packet: the next one creates the entry again
    let other = a_to_b(seg(CLI + 1, SRV, SYN, ISN_A, 0, 0));
    let t = sh.track(&other, T0 + S);
    assert!(t.is_unconfirmed());
    assert!(sh.commit(t, false));
    let t = sh.track(&other, T0 + S);
    assert!(t.is_unconfirmed());
    assert!(sh.commit(t, true));
}

#[test]
fn tcp_syn_answered_by_network_unreachable_is_related_and_destroys() {
    for keep in [false, true] {
        let mut sh = shard_with(Config {
            keep_on_icmp_unreachable: keep,
            ..Config::default()
        });
        assert_eq!(pass(&mut sh, &syn(), T0).state, CtState::New);
        let err = IcmpErrorInfo {
            ty: 3,
            code: 0,
            inner_proto: PROTO_TCP,
            inner: Tuple::new(ip(A), ip(B), CLI, SRV),
        };
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
            T0 + S,
        );
        assert_eq!((t.state, t.dir), (CtState::Related, Dir::Reply));
        assert_eq!(sh.len(), u32::from(keep));
    }
}

#[test]
fn udp_answered_by_network_prohibited_is_related_and_destroys() {
    let mut sh = shard();
    assert_eq!(
        pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 51017, 5353), T0).state,
        CtState::New
    );
    let err = IcmpErrorInfo {
        ty: 3,
        code: 9, // network administratively prohibited
        inner_proto: crate::tuple::PROTO_UDP,
        inner: Tuple::new(ip(A), ip(B), 51017, 5353),
    };
    let t = pass(
        &mut sh,
        &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
        T0 + S,
    );
    assert_eq!(t.state, CtState::Related);
    assert_eq!(sh.len(), 0);
}

#[test]
fn time_exceeded_and_fragmentation_needed_keep_the_entry() {
    let mut sh = shard();
    pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 40000, 33434), T0);
    for (ty, code) in [(11u8, 0u8), (3, 4)] {
        let err = IcmpErrorInfo {
            ty,
            code,
            inner_proto: crate::tuple::PROTO_UDP,
            inner: Tuple::new(ip(A), ip(B), 40000, 33434),
        };
        let t = pass(
            &mut sh,
            &CtPacket::icmp_error(ip(ROUTER), ip(A), err),
            T0 + S,
        );
        assert_eq!(t.state, CtState::Related);
        assert_eq!(sh.len(), 1);
    }
}

#[test]
fn forged_or_unrelated_errors_are_invalid() {
    let mut sh = shard();
    pass(&mut sh, &syn(), T0);
    let inner = Tuple::new(ip(A), ip(B), CLI, SRV);
    let err = IcmpErrorInfo {
        ty: 3,
        code: 1,
        inner_proto: PROTO_TCP,
        inner,
    };
    // Sent to a host that is not the connection's endpoint.
    let t = pass(
        &mut sh,
        &CtPacket::icmp_error(ip(B), ip("198.18.0.99"), err),
        T0 + S,
    );
    assert_eq!(
        (t.state, t.reason),
        (CtState::Invalid, Some(CtReason::IcmpErrorForged))
    );
    // About a connection that does not exist.
    let other = IcmpErrorInfo {
        inner: Tuple::new(ip(A), ip(B), CLI + 1, SRV),
        ..err
    };
    let t = pass(
        &mut sh,
        &CtPacket::icmp_error(ip(ROUTER), ip(A), other),
        T0 + S,
    );
    assert_eq!(
        (t.state, t.reason),
        (CtState::Invalid, Some(CtReason::IcmpErrorNoConn))
    );
    // Embedding an ICMP error (cannot be inverted).
    let nested = IcmpErrorInfo {
        inner_proto: PROTO_ICMP,
        inner: Tuple::icmp(ip(A), ip(B), 3, 0, 0),
        ..err
    };
    let t = pass(
        &mut sh,
        &CtPacket::icmp_error(ip(ROUTER), ip(A), nested),
        T0 + S,
    );
    assert_eq!(
        (t.state, t.reason),
        (CtState::Invalid, Some(CtReason::IcmpErrorBadInner))
    );
    assert_eq!(sh.len(), 1, "nothing was destroyed");
}

#[test]
fn icmp_error_about_a_ping_and_icmpv6_errors() {
    let mut sh = shard();
    pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 3), T0);
    let err = IcmpErrorInfo {
        ty: 11,
        code: 0,
        inner_proto: PROTO_ICMP,
        inner: Tuple::icmp(ip(A), ip(B), 8, 0, 3),
    };
    assert_eq!(
        pass(&mut sh, &CtPacket::icmp_error(ip(ROUTER), ip(A), err), T0).state,
        CtState::Related
    );

    let (a6, b6, r6) = (ip("2001:2::1"), ip("2001:2:0:1::2"), ip("2001:2:0:1::fe"));
    pass(&mut sh, &CtPacket::udp(a6, b6, 47552, 5353), T0);
    let err6 = IcmpErrorInfo {
        ty: 1,
        code: 4, // port unreachable
        inner_proto: crate::tuple::PROTO_UDP,
        inner: Tuple::new(a6, b6, 47552, 5353),
    };
    let t = pass(&mut sh, &CtPacket::icmp_error(b6, a6, err6), T0 + S);
    assert_eq!(t.state, CtState::Related);
    assert_eq!(
        sh.count(
            &Filter {
                family: Some(Family::V6),
                ..Filter::default()
            },
            T0 + S
        ),
        0
    );
    let _ = r6;
}

/// Handshake, data both ways, FIN from the client, FIN from the server, last ACK.
#[test]
fn tcp_handshake_data_teardown() {
    let mut sh = shard();
    let mut now = T0;
    let mut step = |sh: &mut Shard, p: CtPacket, want: CtState, st: TcpState| {
        now += S / 10;
        let t = pass(sh, &p, now);
        assert_eq!(t.state, want, "{p:?}");
        assert_eq!(snap(sh, now).tcp_state, Some(st));
        now
    };
    step(&mut sh, syn(), CtState::New, TcpState::SynSent);
    step(
        &mut sh,
        b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)),
        CtState::Established,
        TcpState::SynRecv,
    );
    let t = step(
        &mut sh,
        a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
        CtState::Established,
        TcpState::Established,
    );
    let s = snap(&sh, t);
    assert!(s.assured && s.seen_reply);
    step(
        &mut sh,
        a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 100)),
        CtState::Established,
        TcpState::Established,
    );
    step(
        &mut sh,
        b_to_a(seg(SRV, CLI, ACK | PSH, ISN_B + 1, ISN_A + 101, 1000)),
        CtState::Established,
        TcpState::Established,
    );
    let t = step(
        &mut sh,
        a_to_b(seg(CLI, SRV, ACK, ISN_A + 101, ISN_B + 1001, 0)),
        CtState::Established,
        TcpState::Established,
    );
    assert_eq!(
        listing(&sh, t + S / 2)[0],
        "tcp      6 431999 ESTABLISHED src=198.18.0.1 dst=198.18.1.2 sport=55862 dport=8080 \
        src=198.18.1.2 dst=198.18.0.1 sport=8080 dport=55862 [ASSURED] mark=0 use=1"
    );
    step(
        &mut sh,
        a_to_b(seg(CLI, SRV, FIN | ACK, ISN_A + 101, ISN_B + 1001, 0)),
        CtState::Established,
        TcpState::FinWait,
    );
    step(
        &mut sh,
        b_to_a(seg(SRV, CLI, ACK, ISN_B + 1001, ISN_A + 102, 0)),
        CtState::Established,
        TcpState::CloseWait,
    );
    step(
        &mut sh,
        b_to_a(seg(SRV, CLI, FIN | ACK, ISN_B + 1001, ISN_A + 102, 0)),
        CtState::Established,
        TcpState::LastAck,
    );
    let t = step(
        &mut sh,
        a_to_b(seg(CLI, SRV, ACK, ISN_A + 102, ISN_B + 1002, 0)),
        CtState::Established,
        TcpState::TimeWait,
    );
    // Byte for byte what the kernel listed for the same exchange (see CONNTRACK.md).
    assert_eq!(
        listing(&sh, t + S / 2)[0],
        "tcp      6 119 TIME_WAIT src=198.18.0.1 dst=198.18.1.2 sport=55862 dport=8080 \
        src=198.18.1.2 dst=198.18.0.1 sport=8080 dport=55862 [ASSURED] mark=0 use=1"
    );
    assert_eq!(sh.expire(t + 119 * S), 0);
    assert!(sh.expire(t + 122 * S) == 1);
    assert_eq!(sh.len(), 0);
}

/// Drives a connection into `state` and returns the time of its last packet.
fn tcp_into(sh: &mut Shard, state: TcpState) -> u64 {
    let mut now = T0;
    let mut go = |p: CtPacket| {
        now += S;
        let t = pass(sh, &p, now);
        assert_ne!(t.state, CtState::Invalid, "{p:?}");
    };
    go(syn());
    if state == TcpState::SynSent {
        return now;
    }
    go(b_to_a(seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0)));
    if state == TcpState::SynRecv {
        return now;
    }
    go(a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)));
    if state == TcpState::Established {
        return now;
    }
    go(a_to_b(seg(CLI, SRV, FIN | ACK, ISN_A + 1, ISN_B + 1, 0)));
    if state == TcpState::FinWait {
        return now;
    }
    go(b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 2, 0)));
    if state == TcpState::CloseWait {
        return now;
    }
    go(b_to_a(seg(SRV, CLI, FIN | ACK, ISN_B + 1, ISN_A + 2, 0)));
    if state == TcpState::LastAck {
        return now;
    }
    go(a_to_b(seg(CLI, SRV, ACK, ISN_A + 2, ISN_B + 2, 0)));
    if state == TcpState::TimeWait {
        return now;
    }
    go(a_to_b(seg(CLI, SRV, RST, ISN_A + 2, 0, 0)));
    now
}

#[test]
fn every_tcp_timeout() {
    let t = Timeouts::default();
    for (state, secs) in [
        (TcpState::SynSent, t.tcp_syn_sent),
        (TcpState::SynRecv, t.tcp_syn_recv),
        (TcpState::Established, t.tcp_established),
        (TcpState::FinWait, t.tcp_fin_wait),
        (TcpState::CloseWait, t.tcp_close_wait),
        (TcpState::LastAck, t.tcp_last_ack),
        (TcpState::TimeWait, t.tcp_time_wait),
        (TcpState::Close, t.tcp_close),
    ] {
        let mut sh = shard();
        let last = tcp_into(&mut sh, state);
        let s = snap(&sh, last);
        assert_eq!(s.tcp_state, Some(state));
        let left = (s.expires_at - last) / S;
        assert!(
            left == u64::from(secs) || left + 1 == u64::from(secs),
            "{state:?}: {left}"
        );
        let deadline = last + u64::from(secs) * S;
        assert_eq!(
            sh.count(&Filter::default(), deadline - S / 100),
            1,
            "{state:?}"
        );
        assert_eq!(
            sh.count(&Filter::default(), deadline + S / 100),
            0,
            "{state:?}"
        );
        // The wheel reclaims it within a slot.
        sh.expire(deadline - 2 * S);
        assert_eq!(sh.len(), 1, "{state:?}");
        sh.expire(deadline + 2 * S);
        assert_eq!(sh.len(), 0, "{state:?}");
    }
}

#[test]
fn unacknowledged_data_shortens_the_established_timeout() {
    let mut sh = shard();
    let now = tcp_into(&mut sh, TcpState::Established);
    pass(
        &mut sh,
        &a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 500)),
        now + S,
    );
    let s = snap(&sh, now + S);
    assert_eq!((s.expires_at - (now + S)) / S, 300);
    pass(
        &mut sh,
        &b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 501, 0)),
        now + 2 * S,
    );
    let s = snap(&sh, now + 2 * S);
    assert_eq!((s.expires_at - (now + 2 * S)) / S, 432_000);
}

#[test]
fn out_of_window_segment_is_invalid_unless_liberal() {
    for liberal in [false, true] {
        let mut sh = shard_with(Config {
            tcp_be_liberal: liberal,
            ..Config::default()
        });
        let now = tcp_into(&mut sh, TcpState::Established);
        // Far beyond what the receiver advertised.
        let wild = a_to_b(seg(
            CLI,
            SRV,
            ACK | PSH,
            ISN_A + 1 + 10_000_000,
            ISN_B + 1,
            100,
        ));
        let t = pass(&mut sh, &wild, now + S);
        if liberal {
            assert_eq!(t.state, CtState::Established);
        } else {
            assert_eq!(
                (t.state, t.reason),
                (CtState::Invalid, Some(CtReason::TcpOutOfWindow))
            );
        }
        // Acknowledging data never sent.
        let ack = b_to_a(seg(SRV, CLI, ACK, ISN_B + 1, ISN_A + 1 + 5_000_000, 0));
        let t = pass(&mut sh, &ack, now + S);
        assert_eq!(t.state == CtState::Invalid, !liberal);
        // In-window traffic still passes.
        let ok = a_to_b(seg(CLI, SRV, ACK | PSH, ISN_A + 1, ISN_B + 1, 10));
        assert_eq!(pass(&mut sh, &ok, now + 2 * S).state, CtState::Established);
    }
}

#[test]
fn window_scaling_is_honoured() {
    let mut sh = shard();
    let mut s1 = seg(CLI, SRV, SYN, ISN_A, 0, 0);
    s1.wscale = Some(7);
    pass(&mut sh, &a_to_b(s1), T0);
    let mut s2 = seg(SRV, CLI, SYN | ACK, ISN_B, ISN_A + 1, 0);
    s2.wscale = Some(7);
    pass(&mut sh, &b_to_a(s2), T0);
    let mut ack = seg(CLI, SRV, ACK, ISN_A + 1, ISN_B + 1, 0);
    ack.window = 1000; // * 128
    pass(&mut sh, &a_to_b(ack), T0);
    // The server may send 100 kB: beyond 64000 unscaled, within 1000 << 7.
    let mut big = seg(SRV, CLI, ACK, ISN_B + 1 + 100_000, ISN_A + 1, 1000);
    big.window = 1000;
    assert_eq!(
        pass(&mut sh, &b_to_a(big), T0 + S).state,
        CtState::Established
    );
}

#[test]
fn bad_flags_and_invalid_transitions() {
    let mut sh = shard();
    let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, SYN | FIN, ISN_A, 0, 0)), T0);
    assert_eq!(t.reason, Some(CtReason::TcpBadFlags));
    // SYN/ACK and FIN|ACK cannot start a connection.
    let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, SYN | ACK, ISN_A, 1, 0)), T0);
    assert_eq!(t.reason, Some(CtReason::TcpInvalidTransition));
    pass(&mut sh, &syn(), T0);
    // Client ACK before the SYN/ACK.
    let t = pass(&mut sh, &a_to_b(seg(CLI, SRV, ACK, ISN_A + 1, 5, 0)), T0);
    assert_eq!(t.reason, Some(CtReason::TcpInvalidTransition));
    assert_eq!(snap(&sh, T0).tcp_state, Some(TcpState::SynSent));
}

#[test]
fn rst_answering_syn_destroys_the_entry() {
    let mut sh = shard();
    pass(&mut sh, &syn(), T0);
    let t = pass(
        &mut sh,
        &b_to_a(seg(SRV, CLI, RST | ACK, 0, ISN_A + 1, 0)),
        T0 + S,
    );
    assert_eq!(t.state, CtState::Established);
    assert_eq!(sh.len(), 0);
}

#[test]
fn syn_after_time_wait_reopens() {
    let mut sh = shard();
    let now = tcp_into(&mut sh, TcpState::TimeWait);
    let t = pass(
        &mut sh,
        &a_to_b(seg(CLI, SRV, SYN, ISN_A + 50_000, 0, 0)),
        now + S,
    );
    assert_eq!(t.state, CtState::New);
    let s = snap(&sh, now + S);
    assert_eq!(
        (s.tcp_state, s.assured, s.seen_reply),
        (Some(TcpState::SynSent), false, false)
    );
}

#[test]
fn mid_stream_pickup_is_loose() {
    let mut sh = shard();
    let p = a_to_b(seg(CLI, SRV, ACK | PSH, 77_777, 88_888, 100));
    let t = pass(&mut sh, &p, T0);
    assert_eq!(t.state, CtState::New);
    let s = snap(&sh, T0);
    assert_eq!(s.tcp_state, Some(TcpState::Established));
    assert_eq!((s.expires_at - T0) / S, 300, "capped until a reply is seen");
    let t = pass(
        &mut sh,
        &b_to_a(seg(SRV, CLI, ACK, 88_888, 77_877, 0)),
        T0 + S,
    );
    assert_eq!(t.state, CtState::Established);
    // As in Linux, SEEN_REPLY is set after that reply; the next segment assures.
    assert!(!snap(&sh, T0 + S).assured);
    pass(
        &mut sh,
        &a_to_b(seg(CLI, SRV, ACK, 77_877, 88_888, 0)),
        T0 + 2 * S,
    );
    let s = snap(&sh, T0 + 2 * S);
    assert!(s.assured);
    assert_eq!((s.expires_at - (T0 + 2 * S)) / S, 432_000);

    let mut strict = shard_with(Config {
        tcp_loose: false,
        ..Config::default()
    });
    let t = pass(&mut strict, &p, T0);
    assert_eq!(
        (t.state, t.reason),
        (CtState::Invalid, Some(CtReason::TcpNoPickup))
    );
}

#[test]
fn udp_unreplied_then_stream() {
    let mut sh = shard();
    let out = CtPacket::udp(ip(A), ip(B), 51017, 5353);
    let back = CtPacket::udp(ip(B), ip(A), 5353, 51017);
    pass(&mut sh, &out, T0);
    assert_eq!(
        listing(&sh, T0 + S / 2)[0],
        "udp      17 29 src=198.18.0.1 dst=198.18.1.2 sport=51017 dport=5353 [UNREPLIED] \
         src=198.18.1.2 dst=198.18.0.1 sport=5353 dport=51017 mark=0 use=1"
    );
    assert_eq!(pass(&mut sh, &back, T0 + S).state, CtState::Established);
    assert_eq!(pass(&mut sh, &out, T0 + S).state, CtState::Established);
    let s = snap(&sh, T0 + S);
    assert!(s.seen_reply && !s.assured, "within 2 s: not yet a stream");
    assert_eq!((s.expires_at - (T0 + S)) / S, 30);
    pass(&mut sh, &out, T0 + 3 * S);
    let s = snap(&sh, T0 + 3 * S);
    assert!(s.assured);
    assert_eq!((s.expires_at - (T0 + 3 * S)) / S, 120);
}

#[test]
fn other_protocols_are_tracked_generically() {
    let mut sh = shard();
    let gre = CtPacket::other(ip(A), ip(B), 47);
    assert_eq!(pass(&mut sh, &gre, T0).state, CtState::New);
    assert_eq!(
        listing(&sh, T0 + S / 2)[0],
        "gre      47 599 src=198.18.0.1 dst=198.18.1.2 [UNREPLIED] src=198.18.1.2 dst=198.18.0.1 mark=0 use=1"
    );
    let t = pass(&mut sh, &CtPacket::other(ip(B), ip(A), 47), T0 + S);
    assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
}

/// A second commit of one `Tracked` does not compile (see the `compile_fail` examples on
/// [`Tracked`]); what remains to check is that each way of ending a packet frees or keeps
/// exactly one slot: the slot a reply destroys is reused once, not twice.
#[test]
fn each_commit_ends_one_packet_once() {
    let mut sh = shard();
    let t = sh.track(&CtPacket::icmp(ip(A), ip(B), 8, 0, 1), T0);
    assert!(t.is_unconfirmed());
    assert_eq!(t.confirm(&mut sh), Ok(()));
    assert_eq!(sh.len(), 1);
    let r = sh.track(&CtPacket::icmp(ip(B), ip(A), 0, 0, 1), T0);
    assert_eq!(r.state, CtState::Established);
    r.abandon(&mut sh);
    // A dropped reply that answered the last request still ends the connection, as before.
    assert_eq!(sh.len(), 0);
    let dropped = sh.track(&CtPacket::udp(ip(A), ip(B), 7, 8), T0);
    assert!(dropped.is_unconfirmed());
    dropped.abandon(&mut sh);
    assert_eq!(sh.len(), 0);
    // The freed slots are reused once, not twice.
    pass(&mut sh, &syn(), T0 + S);
    pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 5, 6), T0 + S);
    assert_eq!(sh.len(), 2);
    assert_eq!(sh.stats().confirmed, 3);
}

#[test]
fn rejected_first_packet_leaves_no_entry() {
    let mut sh = shard();
    let t = sh.track(&syn(), T0);
    assert_eq!(t.state, CtState::New);
    assert!(sh.commit(t, false));
    assert_eq!(sh.len(), 0);
    // The next SYN is NEW again and can be confirmed.
    let t = pass(&mut sh, &syn(), T0 + S);
    assert_eq!(t.state, CtState::New);
    assert_eq!(sh.len(), 1);
}

#[test]
fn full_table_early_drops_then_drops_with_a_counter() {
    let mut sh = Shard::new(2, &Config::default(), T0);
    pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 1, 53), T0);
    pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 2, 53), T0);
    // Full of unreplied flows: one is sacrificed.
    let t = pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 3, 53), T0);
    assert_eq!(t.state, CtState::New);
    assert_eq!(sh.stats().early_drop, 1);
    assert_eq!(sh.len(), 2);

    // Two assured TCP connections fill it: nothing may be evicted.
    let mut sh = Shard::new(2, &Config::default(), T0);
    tcp_into(&mut sh, TcpState::Established);
    let mut now = T0;
    for p in [
        a_to_b(seg(CLI + 1, SRV, SYN, ISN_A, 0, 0)),
        b_to_a(seg(SRV, CLI + 1, SYN | ACK, ISN_B, ISN_A + 1, 0)),
        a_to_b(seg(CLI + 1, SRV, ACK, ISN_A + 1, ISN_B + 1, 0)),
    ] {
        now += S;
        pass(&mut sh, &p, now);
    }
    let t = sh.track(&CtPacket::udp(ip(A), ip(B), 3, 53), now);
    assert_eq!(
        (t.state, t.drop, t.reason),
        (CtState::Invalid, true, Some(CtReason::TableFull))
    );
    assert!(sh.commit(t, false));
    assert_eq!(sh.stats().reasons[CtReason::TableFull as usize], 1);
    assert_eq!(sh.stats().early_drop, 0);
    assert_eq!(sh.len(), 2);
}

/// UDP flows A -> B that fall into one bucket of a 4096-bucket shard under `key` (found by
/// trying ports: what an attacker who knows the key would do).
fn colliding_udp(key: &HashKey, n: usize) -> Vec<CtPacket> {
    let target = {
        let t = CtPacket::udp(ip(A), ip(B), 1, 53).tuple();
        flow_hash(key, Family::V4, PROTO_UDP, &t) & 0xfff
    };
    (53..=60)
        .flat_map(|dp| (1..=u16::MAX).map(move |sp| CtPacket::udp(ip(A), ip(B), sp, dp)))
        .filter(|p| flow_hash(key, Family::V4, PROTO_UDP, &p.tuple()) & 0xfff == target)
        .take(n)
        .collect()
}

#[test]
fn a_chain_never_grows_past_its_bound() {
    let cfg = Config::default();
    let flows = colliding_udp(&cfg.hash_key, 40);
    assert_eq!(flows.len(), 40, "enough collisions");
    let mut sh = Shard::new(4096, &cfg, T0);
    let bucket = sh.bucket(Family::V4, PROTO_UDP, &flows[0].tuple());
    let per_chain = (MAX_CHAIN / 2) as usize;
    // Unreplied flows: past the bound each new one early-drops an older one of the chain.
    for (i, p) in flows.iter().enumerate() {
        let t = pass(&mut sh, p, T0 + i as u64);
        assert_eq!(t.state, CtState::New);
        assert!(sh.chain_len(bucket) <= MAX_CHAIN);
    }
    assert_eq!(sh.len() as usize, per_chain);
    assert_eq!(sh.stats().chain_early_drop, (40 - per_chain) as u64);
    assert_eq!(sh.stats().early_drop, (40 - per_chain) as u64);

    // Assured flows fill the chain: a new one is refused, the old ones keep working.
    let mut sh = Shard::new(4096, &cfg, T0);
    let (old, new) = flows.split_at(per_chain);
    for p in old {
        pass(&mut sh, p, T0);
        let L4::Udp { sport, dport } = p.l4 else {
            unreachable!()
        };
        pass(&mut sh, &CtPacket::udp(ip(B), ip(A), dport, sport), T0 + S);
        pass(&mut sh, p, T0 + 3 * S);
    }
    assert_eq!(sh.chain_len(bucket), MAX_CHAIN);
    for p in new {
        let t = sh.track(p, T0 + 4 * S);
        assert_eq!(
            (t.state, t.drop, t.reason),
            (CtState::Invalid, true, Some(CtReason::ChainFull))
        );
        assert!(sh.commit(t, false));
    }
    assert_eq!(
        sh.stats().reasons[CtReason::ChainFull as usize],
        new.len() as u64
    );
    assert_eq!(sh.stats().early_drop, 0);
    for p in old {
        let t = pass(&mut sh, p, T0 + 5 * S);
        assert_eq!(t.state, CtState::Established);
    }
    // A flow of another bucket is not affected.
    let other = CtPacket::udp(ip(B), ip(A), 7, 7);
    assert_ne!(sh.bucket(Family::V4, PROTO_UDP, &other.tuple()), bucket);
    assert_eq!(pass(&mut sh, &other, T0 + 5 * S).state, CtState::New);
}

#[test]
fn a_bad_checksum_is_invalid_and_changes_nothing() {
    let mut sh = shard();
    let t = sh.track_bad_checksum();
    assert_eq!(
        (t.state, t.entry, t.drop, t.reason),
        (CtState::Invalid, None, false, Some(CtReason::BadChecksum))
    );
    assert!(sh.commit(t, true));
    assert!(sh.is_empty());
    assert_eq!(sh.stats().invalid, 1);
    assert_eq!(sh.stats().reasons[CtReason::BadChecksum as usize], 1);
}

#[test]
fn nat_binding_is_the_reply_tuple() {
    let mut sh = shard();
    let t = sh.track(&CtPacket::udp(ip(A), ip(B), 1234, 53), T0);
    let translated = Tuple::new(ip(B), ip("198.18.1.254"), 53, 61000);
    assert!(sh.set_nat(&t, NatKind::Src, translated));
    let id = t.entry.unwrap();
    assert!(sh.commit(t, true));
    assert_eq!(sh.nat(id), (NatKind::Src, translated));
    // The reply to the translated address finds the connection.
    let back = pass(
        &mut sh,
        &CtPacket::udp(ip(B), ip("198.18.1.254"), 53, 61000),
        T0 + S,
    );
    assert_eq!(
        (back.state, back.dir, back.entry),
        (CtState::Established, Dir::Reply, Some(id))
    );
    // NAT is decided once.
    let again = sh.track(&CtPacket::udp(ip(A), ip(B), 1234, 53), T0 + S);
    assert!(!sh.set_nat(&again, NatKind::Dst, translated));
    assert!(sh.commit(again, true));
}

#[test]
fn new_connection_clashing_with_a_nat_binding_is_dropped() {
    let mut sh = shard();
    // B:53 -> A:1234, its reply translated to come from 198.18.1.254.
    let t = sh.track(&CtPacket::udp(ip(B), ip(A), 53, 1234), T0);
    let translated = Tuple::new(ip("198.18.1.254"), ip(B), 61000, 53);
    assert!(sh.set_nat(&t, NatKind::Dst, translated));
    assert!(sh.commit(t, true));
    // A:1234 -> B:53 is not part of it, but its reply tuple is the first one's original.
    let t = sh.track(&CtPacket::udp(ip(A), ip(B), 1234, 53), T0 + S);
    assert_eq!(t.state, CtState::New);
    assert!(!sh.commit(t, true), "clash: the packet must be dropped");
    assert_eq!(sh.len(), 1);
    assert_eq!(sh.stats().reasons[CtReason::Clash as usize], 1);
}

#[test]
fn delete_and_flush_by_filter() {
    let mut sh = shard();
    pass(&mut sh, &CtPacket::udp(ip(A), ip(B), 1, 53), T0);
    pass(&mut sh, &CtPacket::udp(ip("198.18.0.7"), ip(B), 1, 53), T0);
    pass(&mut sh, &syn(), T0);
    pass(&mut sh, &CtPacket::icmp(ip(A), ip(B), 8, 0, 1), T0);
    let udp = Filter {
        proto: Some(17),
        ..Filter::default()
    };
    assert_eq!(sh.count(&udp, T0), 2);
    let from_a = Filter {
        src: Some(ip(A)),
        ..Filter::default()
    };
    assert_eq!(sh.count(&from_a, T0), 3);
    let to_a = Filter {
        reply_dst: Some(ip(A)),
        dport: Some(53),
        ..Filter::default()
    };
    assert_eq!(sh.delete(&to_a, T0), 1);
    assert_eq!(sh.count(&Filter::default(), T0), 3);
    let mut all = Vec::new();
    let mut at = Some(0);
    while let Some(from) = at {
        at = sh.snapshot_chunk(&Filter::default(), T0, from, 5, &mut all);
    }
    assert_eq!(all.len(), 3);
    assert_eq!(sh.flush(T0), 3);
    assert_eq!(sh.len(), 0);
    // Everything is reusable after a flush.
    pass(&mut sh, &syn(), T0 + S);
    assert_eq!(sh.len(), 1);
}

/// Reference model of UDP tracking: one record per flow, linear and obvious.
#[derive(Clone, Copy, Debug)]
struct ModelFlow {
    client_first: bool,
    expires: u32,
    stream_after: u32,
    seen_reply: bool,
}

proptest::proptest! {
    /// The table (hash chains, timer wheel, free list, early-drop-free capacity) agrees with
    /// the model on every packet's state and on the number of live entries.
    #[test]
    fn udp_table_matches_reference_model(
        ops in proptest::collection::vec((0u16..6, proptest::bool::ANY, 0u64..50_000, proptest::bool::ANY, proptest::bool::ANY), 1..200)
    ) {
        let mut sh = shard();
        let mut model: [Option<ModelFlow>; 6] = [None; 6];
        let mut now = T0;
        let cfg = Config::default();
        for (flow, from_client, step_ms, accept, run_wheel) in ops {
            now += step_ms * 1_000_000;
            let now_t = tick(now);
            let port = 1000 + flow;
            let p = if from_client {
                CtPacket::udp(ip(A), ip(B), port, 53)
            } else {
                CtPacket::udp(ip(B), ip(A), 53, port)
            };
            let m = &mut model[flow as usize];
            if m.is_some_and(|f| tick_reached(now_t, f.expires)) {
                *m = None;
            }
            let want = match m {
                None => CtState::New,
                Some(f) if f.client_first == from_client && !f.seen_reply => CtState::New,
                Some(_) => CtState::Established,
            };
            let t = sh.track(&p, now);
            proptest::prop_assert_eq!(t.state, want);
            sh.commit(t, accept);
            match m {
                None if accept => {
                    *m = Some(ModelFlow {
                        client_first: from_client,
                        expires: now_t.wrapping_add(secs_to_ticks(cfg.timeouts.udp)),
                        stream_after: now_t.wrapping_add(secs_to_ticks(2)),
                        seen_reply: false,
                    })
                }
                None => {}
                Some(f) => {
                    let stream = f.seen_reply && tick_reached(now_t, f.stream_after);
                    let to = if stream { cfg.timeouts.udp_stream } else { cfg.timeouts.udp };
                    f.expires = now_t.wrapping_add(secs_to_ticks(to));
                    if f.client_first != from_client {
                        f.seen_reply = true;
                    }
                }
            }
            if run_wheel {
                sh.expire(now);
            }
            let live = model.iter().flatten().filter(|f| !tick_reached(now_t, f.expires)).count();
            proptest::prop_assert_eq!(sh.count(&Filter::default(), now), live);
            proptest::prop_assert!(sh.len() as usize >= live);
        }
        // Long after everything: the wheel empties the table.
        sh.expire(now + 200 * S);
        proptest::prop_assert_eq!(sh.len(), 0);
    }
}

fn any_packet() -> impl proptest::strategy::Strategy<Value = CtPacket> {
    use proptest::prelude::*;
    let host = prop::sample::select(vec![A, B, ROUTER]);
    (
        host.clone(),
        host,
        0u8..6,
        prop::sample::select(vec![53u16, 80, 1000, 1001]),
        prop::sample::select(vec![53u16, 80, 1000, 1001]),
        any::<u8>(),
        prop::sample::select(vec![0u32, 1, 1000, 1001, 100_000, u32::MAX - 10]),
        prop::sample::select(vec![0u32, 1, 1001, 900_001, 123_456_789]),
        any::<u16>(),
        0u32..3000,
        prop::sample::select(vec![0u8, 3, 8, 11, 13, 14, 17, 18, 5, 9]),
    )
        .prop_map(|(s, d, kind, sp, dp, flags, seq, ack, win, len, icmp_ty)| {
            let (s, d) = (ip(s), ip(d));
            match kind {
                0 | 1 => CtPacket::tcp(
                    s,
                    d,
                    TcpSegment {
                        sport: sp,
                        dport: dp,
                        flags,
                        seq,
                        ack,
                        window: win,
                        wscale: (flags & 1 == 1).then_some(flags >> 4),
                        sack_perm: flags & 2 == 2,
                        sack: (flags & 4 == 4).then_some(ack.wrapping_add(len)),
                        payload_len: len,
                    },
                ),
                2 => CtPacket::udp(s, d, sp, dp),
                3 => CtPacket::icmp(s, d, icmp_ty, 0, sp),
                4 => CtPacket::icmp_error(
                    s,
                    d,
                    IcmpErrorInfo {
                        ty: 3,
                        code: flags % 16,
                        inner_proto: if flags & 1 == 0 { PROTO_TCP } else { 17 },
                        inner: Tuple::new(d, s, dp, sp),
                    },
                ),
                _ => CtPacket::other(s, d, 47),
            }
        })
}

proptest::proptest! {
    /// Arbitrary traffic never panics and never breaks the table's bookkeeping, whatever
    /// the verdicts, including with early drop in a small table.
    #[test]
    fn arbitrary_traffic_keeps_the_table_consistent(
        ops in proptest::collection::vec((any_packet(), 0u64..200_000, proptest::bool::ANY), 1..300)
    ) {
        let mut sh = Shard::new(6, &Config::default(), T0);
        let mut now = T0;
        for (p, step_ms, accept) in ops {
            now += step_ms * 1_000_000;
            let t = sh.track(&p, now);
            match t.state {
                CtState::Invalid | CtState::Untracked => proptest::prop_assert!(t.entry.is_none()),
                _ => proptest::prop_assert!(t.entry.is_some()),
            }
            sh.commit(t, accept);
            proptest::prop_assert!(sh.len() <= sh.capacity());
            proptest::prop_assert!(sh.count(&Filter::default(), now) <= sh.len() as usize);
            sh.expire(now);
        }
        sh.expire(now + 500_000 * S);
        proptest::prop_assert_eq!(sh.len(), 0);
        proptest::prop_assert_eq!(sh.count(&Filter::default(), now + 500_000 * S), 0);
    }
}

/// The burst probes of `pkts` on `sh` at `now`, with each packet's flow hash.
fn probes(sh: &Shard, pkts: &[CtPacket], now: u64) -> (Vec<Option<HashedKey>>, Vec<Probe>) {
    let keys: Vec<Option<HashedKey>> = pkts
        .iter()
        .map(|p| {
            p.lookup_key()
                .map(|k| (k, flow_hash(&sh.key, k.0, k.1, &k.2)))
        })
        .collect();
    let mut out = vec![Probe::default(); pkts.len()];
    sh.probe_burst_hashed(&keys, now, &mut out);
    (keys, out)
}

/// Tracks and accepts the packets of a burst in order, each from its probe.
fn pass_probed(sh: &mut Shard, pkts: &[CtPacket], now: u64) -> Vec<Seen> {
    let (keys, pr) = probes(sh, pkts, now);
    let mut seen = Vec::new();
    for ((p, k), pr) in pkts.iter().zip(&keys).zip(&pr) {
        let t = sh.track_probed(p, k.unwrap().1, pr, now);
        seen.push(Seen::of(&t));
        assert!(sh.commit(t, true));
    }
    seen
}

#[test]
fn a_probe_answers_as_the_burst_lookup_and_is_not_walked_again() {
    let mut sh = shard();
    let out = CtPacket::udp(ip(A), ip(B), 51017, 5353);
    let back = CtPacket::udp(ip(B), ip(A), 5353, 51017);
    let other = CtPacket::udp(ip(A), ip(B), 1, 2);
    pass(&mut sh, &out, T0);
    let burst = [back, out, other];
    let (keys, pr) = probes(&sh, &burst, T0 + S);
    let mut looked = [None; 3];
    sh.lookup_burst_hashed(&keys, T0 + S, &mut looked);
    assert_eq!(pr.iter().map(Probe::found).collect::<Vec<_>>(), looked);
    assert_eq!(looked[0].map(|(_, d)| d), Some(Dir::Reply));
    assert_eq!(looked[1].map(|(_, d)| d), Some(Dir::Original));
    assert_eq!(looked[2], None);
    // Tracking from the probes gives what tracking from scratch gives, on a twin shard.
    let mut twin = shard();
    pass(&mut twin, &out, T0);
    let from_probes = pass_probed(&mut sh, &burst, T0 + S);
    let from_scratch: Vec<Seen> = burst.iter().map(|p| pass(&mut twin, p, T0 + S)).collect();
    assert_eq!(
        from_probes
            .iter()
            .map(|s| (s.state, s.dir))
            .collect::<Vec<_>>(),
        from_scratch
            .iter()
            .map(|s| (s.state, s.dir))
            .collect::<Vec<_>>()
    );
    assert_eq!(sh.stats(), twin.stats());
    assert_eq!(listing(&sh, T0 + S), listing(&twin, T0 + S));
}

#[test]
fn a_probe_taken_before_the_index_changed_is_not_trusted() {
    // Two packets of one new flow and its reply in one burst: all probed before the first is
    // confirmed. The second must find the connection the first made, not make a second one.
    let mut sh = shard();
    let out = CtPacket::udp(ip(A), ip(B), 40000, 53);
    let back = CtPacket::udp(ip(B), ip(A), 53, 40000);
    let seen = pass_probed(&mut sh, &[out, out, back], T0);
    assert_eq!(
        seen.iter().map(|s| s.state).collect::<Vec<_>>(),
        [CtState::New, CtState::New, CtState::Established]
    );
    assert_eq!(seen[1].entry, seen[0].entry);
    assert_eq!((sh.len(), sh.stats().new, sh.stats().confirmed), (1, 1, 1));
    assert_eq!(sh.stats().reasons[CtReason::Clash as usize], 0);
    // A default probe, or one of another shard at the same generation, is never current.
    let mut other = shard();
    pass(&mut other, &CtPacket::udp(ip(B), ip(A), 9, 9), T0);
    let (keys, pr) = probes(&other, &[back], T0 + S);
    for pr in [pr[0], Probe::default()] {
        let t = sh.track_probed(&back, keys[0].unwrap().1, &pr, T0 + S);
        assert_eq!(
            (t.state, t.dir, t.entry),
            (CtState::Established, Dir::Reply, seen[0].entry)
        );
        assert!(sh.commit(t, true));
    }
}

#[test]
fn a_probed_entry_past_its_timeout_is_destroyed_and_made_anew() {
    let mut sh = shard();
    let out = CtPacket::udp(ip(A), ip(B), 40000, 53);
    pass(&mut sh, &out, T0);
    let late = T0 + 31 * S;
    let (_, pr) = probes(&sh, &[out], late);
    assert_eq!(pr[0].found(), None, "past its timeout");
    let seen = pass_probed(&mut sh, &[out], late);
    assert_eq!(seen[0].state, CtState::New);
    assert_eq!((sh.len(), sh.stats().expired, sh.stats().new), (1, 1, 2));
    assert_eq!(listing(&sh, late).len(), 1);
}

/// A flood of one flow's packets, many bursts, each probed before any is tracked: the table
/// never holds a second copy of the flow and every packet is counted once.
#[test]
fn a_flood_of_one_flow_through_probes_keeps_one_entry() {
    let mut sh = shard();
    let out = CtPacket::udp(ip(A), ip(B), 40000, 53);
    let back = CtPacket::udp(ip(B), ip(A), 53, 40000);
    for round in 0..50u64 {
        let burst: Vec<CtPacket> = (0..32)
            .map(|i| if i % 3 == 2 { back } else { out })
            .collect();
        pass_probed(&mut sh, &burst, T0 + round * S);
        assert_eq!(sh.len(), 1);
    }
    assert_eq!(sh.stats().new, 1);
    assert_eq!(sh.stats().found, 50 * 32 - 1);
}
