//! The engine against itself over an in-memory link: FTFW's hello, acknowledgements, NACKs and
//! resends, sequence wraparound, NOTRACK; and hostile input (random bytes, truncations,
//! corruptions) that must be counted, never panic.

use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use sync::wire::{self, flags, kind, Message, Writer};
use sync::{Config, Engine, Entry, Event, Mode, Tuple, L4};

fn entry(i: u32) -> Entry {
    let mut e = Entry::new(Tuple {
        src: IpAddr::V4(Ipv4Addr::new(198, 18, (i >> 8) as u8, i as u8)),
        dst: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        proto: 6,
        l4: L4::Ports {
            sport: 1024 + (i as u16),
            dport: 80,
        },
    });
    e.status = 0xe;
    e.tcp_state = Some(3);
    e.timeout = Some(600);
    e
}

/// Deterministic loss: xorshift, drops `percent` of the datagrams.
struct Lossy {
    state: u64,
    percent: u64,
    dropped: u64,
}

impl Lossy {
    fn drop_next(&mut self) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let d = self.state % 100 < self.percent;
        self.dropped += u64::from(d);
        d
    }
}

/// One engine's timers and transmissions, delivered over `link` to the other.
fn step_one(from: &mut Engine, to: &mut Engine, link: &mut Lossy, buf: &mut [u8], now: Instant) {
    from.poll(now);
    loop {
        let n = from.poll_transmit(buf, now);
        if n == 0 {
            break;
        }
        if !link.drop_next() {
            let ev = to.receive(&buf[..n], now);
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Malformed(_))),
                "{ev:?}"
            );
        }
    }
}

/// Runs both engines for `secs` simulated seconds in 10 ms steps, the link losing `percent`.
fn run(a: &mut Engine, b: &mut Engine, t0: Instant, secs: u64, percent: u64) -> (u64, u64) {
    let mut ab = Lossy {
        state: 0x9e37_79b9_7f4a_7c15,
        percent,
        dropped: 0,
    };
    let mut ba = Lossy {
        state: 0x2545_f491_4f6c_dd1d,
        percent,
        dropped: 0,
    };
    let mut buf = [0u8; 1472];
    for step in 0..secs * 100 {
        let now = t0 + Duration::from_millis(step * 10);
        step_one(a, b, &mut ab, &mut buf, now);
        step_one(b, a, &mut ba, &mut buf, now);
    }
    (ab.dropped, ba.dropped)
}

/// Equality with a short message: counts and the first difference.
fn assert_same(got: &[Entry], want: &[Entry]) {
    let first = got.iter().zip(want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first.is_none(),
        "{} entries, {} expected; first difference at {first:?}",
        got.len(),
        want.len()
    );
}

fn external_sorted(e: &Engine) -> Vec<Entry> {
    let mut v: Vec<Entry> = e.external().map(|(_, x)| x.entry).collect();
    v.sort_by_key(|e| e.key());
    v
}

fn internal_sorted(e: &Engine) -> Vec<Entry> {
    let mut v: Vec<Entry> = e.internal().copied().collect();
    v.sort_by_key(|e| e.key());
    v
}

#[test]
fn ftfw_delivers_everything_over_a_link_losing_a_fifth() {
    let t0 = Instant::now();
    // sequence numbers wrap around during the run
    let mut a = Engine::new(Config::default(), u32::MAX - 40, t0);
    let mut b = Engine::new(Config::default(), 7, t0);
    for i in 0..400 {
        a.upsert(entry(i));
    }
    for i in 1000..1100 {
        b.upsert(entry(i));
    }
    let (lost_ab, lost_ba) = run(&mut a, &mut b, t0, 30, 20);
    assert!(lost_ab > 0 && lost_ba > 0);
    assert!(a.stats().resent > 0 && b.stats().nacks_sent > 0);
    assert_same(&external_sorted(&b), &internal_sorted(&a));
    assert_same(&external_sorted(&a), &internal_sorted(&b));

    // deletions and updates get through the same way
    for i in 0..100 {
        a.remove(&entry(i).key());
    }
    let mut changed = entry(200);
    changed.tcp_state = Some(7);
    a.upsert(changed);
    let t1 = t0 + Duration::from_secs(30);
    run(&mut a, &mut b, t1, 30, 20);
    assert_eq!(b.external().count(), 300);
    assert_same(&external_sorted(&b), &internal_sorted(&a));
    assert_eq!(b.stats().malformed_total(), 0);
}

#[test]
fn without_loss_everything_is_acknowledged() {
    let t0 = Instant::now();
    let mut a = Engine::new(Config::default(), 1, t0);
    let mut b = Engine::new(Config::default(), 1000, t0);
    for i in 0..50 {
        a.upsert(entry(i));
    }
    run(&mut a, &mut b, t0, 5, 0);
    assert_eq!(b.external().count(), 50);
    // the alive timer flushed B's partial window as an ACK; A forgot what it had sent (what
    // remains is the last control message, which the peers keep acknowledging each second)
    assert_eq!(a.unacknowledged(), 0);
    assert!(a.queue_lens().1 <= 1, "{:?}", a.queue_lens());
    // sent once more after the hello completed, as ACKs during hello prove nothing
    assert_eq!(a.stats().resent, 50);
    assert_eq!(b.stats().lost, 0);
}

#[test]
fn hello_until_hello_back() {
    let t0 = Instant::now();
    let mut a = Engine::new(Config::default(), 1, t0);
    let mut b = Engine::new(Config::default(), 100, t0);
    let mut buf = [0u8; 1472];
    a.upsert(entry(1));
    let n = a.poll_transmit(&mut buf, t0);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.flags(), flags::HELLO);
    assert_eq!(m.kind(), kind::CT_NEW);
    assert_eq!(m.seq(), 1);
    b.receive(&buf[..n], t0);
    // B answers on its next message, itself still saying hello
    let later = t0 + Duration::from_secs(1);
    b.poll(later);
    let n = b.poll_transmit(&mut buf, later);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(
        m.flags() & (flags::HELLO | flags::HELLO_BACK),
        flags::HELLO | flags::HELLO_BACK
    );
    a.receive(&buf[..n], later);
    a.upsert(entry(2));
    let n = a.poll_transmit(&mut buf, later);
    let m = Message::new_checked(&buf[..n]).unwrap();
    // A got its hello back: no more HELLO, and it answers B's
    assert_eq!(m.flags(), flags::HELLO_BACK);
    assert_eq!(m.seq(), 2);
}

#[test]
fn a_gap_is_nacked_and_resent_with_new_sequence_numbers() {
    let t0 = Instant::now();
    let mut a = Engine::new(Config::default(), 10, t0);
    let mut b = Engine::new(Config::default(), 500, t0);
    // while a peer says hello its gaps cannot be told: 1.4.7 takes each hello as a restart
    handshake(&mut a, &mut b, t0);
    let mut buf = [0u8; 1472];
    let mut sent = Vec::new();
    for i in 0..3 {
        a.upsert(entry(i));
        let n = a.poll_transmit(&mut buf, t0);
        sent.push(buf[..n].to_vec());
    }
    b.receive(&sent[0], t0);
    b.receive(&sent[2], t0); // seq 11 lost
    assert_eq!(b.stats().lost, 1);
    let n = b.poll_transmit(&mut buf, t0);
    let acks: Vec<_> = wire::messages(&buf[..n])
        .map(|m| {
            let m = m.unwrap();
            (
                m.flags() & !(flags::HELLO | flags::HELLO_BACK),
                m.from(),
                m.to(),
            )
        })
        .collect();
    assert_eq!(acks, vec![(flags::ACK, 11, 12), (flags::NACK, 13, 13)]);
    a.receive(&buf[..n], t0);
    let n = a.poll_transmit(&mut buf, t0);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert_eq!(m.seq(), 15, "resent with the next sequence number");
    assert_eq!(Entry::parse(&m).unwrap(), entry(1));
    b.receive(&buf[..n], t0);
    assert_eq!(b.external().count(), 3);
}

#[test]
fn a_full_window_is_acknowledged_at_once() {
    let t0 = Instant::now();
    let cfg = Config {
        window_size: 4,
        ..Config::default()
    };
    let mut a = Engine::new(cfg.clone(), 1, t0);
    let mut b = Engine::new(cfg, 100, t0);
    handshake(&mut a, &mut b, t0);
    let mut buf = [0u8; 1472];
    for i in 0..4 {
        a.upsert(entry(i));
    }
    let n = a.poll_transmit(&mut buf, t0);
    assert_eq!(
        wire::messages(&buf[..n]).count(),
        4,
        "one datagram, four messages"
    );
    b.receive(&buf[..n], t0);
    let n = b.poll_transmit(&mut buf, t0);
    let m = Message::new_checked(&buf[..n]).unwrap();
    assert!(m.has_range() && m.flags() & flags::ACK != 0);
    // the handshake's last message (seq 2) opened the window: it closes at seq 4
    assert_eq!((m.from(), m.to()), (2, 4));
    a.receive(&buf[..n], t0);
    assert_eq!(
        a.unacknowledged(),
        2,
        "seq 5 and 6 wait for the next window"
    );
    assert_eq!(a.queue_lens().0, 0);
}

/// Completes the hello exchange between two fresh engines.
fn handshake(a: &mut Engine, b: &mut Engine, t0: Instant) {
    fn one(x: &mut Engine, y: &mut Engine, t0: Instant) {
        let mut buf = [0u8; 1472];
        x.poll(t0 + Duration::from_secs(5));
        let n = x.poll_transmit(&mut buf, t0);
        assert!(n > 0);
        y.receive(&buf[..n], t0);
    }
    one(a, b, t0);
    one(b, a, t0);
    one(a, b, t0);
}

#[test]
fn resync_request_sends_the_whole_table() {
    let t0 = Instant::now();
    let mut a = Engine::new(Config::default(), 1, t0);
    let mut b = Engine::new(Config::default(), 100, t0);
    for i in 0..20 {
        a.upsert(entry(i));
    }
    run(&mut a, &mut b, t0, 2, 0);
    let before = a.stats().msgs_sent;
    b.request_resync();
    run(&mut a, &mut b, t0 + Duration::from_secs(2), 2, 0);
    assert_eq!(a.stats().resync_requests, 1);
    assert!(a.stats().msgs_sent >= before + 20);
}

#[test]
fn notrack_sends_once_and_counts_loss() {
    let t0 = Instant::now();
    let cfg = Config {
        mode: Mode::Notrack,
        ..Config::default()
    };
    let mut a = Engine::new(cfg.clone(), 1, t0);
    let mut b = Engine::new(cfg, 100, t0);
    for i in 0..10 {
        a.upsert(entry(i));
    }
    run(&mut a, &mut b, t0, 3, 0);
    assert_eq!(external_sorted(&b), internal_sorted(&a));
    assert_eq!(a.queue_lens(), (0, 0));
    let mut buf = [0u8; 1472];
    let n = a.poll_transmit(&mut buf, t0);
    assert_eq!(n, 0, "nothing kept for resending");
}

#[test]
fn hostile_messages_are_counted_by_reason() {
    let t0 = Instant::now();
    let mut e = Engine::new(Config::default(), 1, t0);
    let mut b = [0u8; 64];
    // version 2
    let mut w = Writer::new(&mut b);
    w.control(flags::ALIVE, 1, 0, 0).unwrap();
    b[0] = 0x2a;
    assert_eq!(
        e.receive(&b[..8], t0),
        vec![Event::Malformed(sync::Error::BadVersion)]
    );
    // a control message with no flag 1.4.7 knows
    let mut w = Writer::new(&mut b);
    w.control(0, 2, 0, 0).unwrap();
    assert_eq!(
        e.receive(&b[..8], t0),
        vec![Event::Malformed(sync::Error::BadHeader)]
    );
    // type 7: not data, not control; 1.4.7 counts it as a malformed header too
    let mut w = Writer::new(&mut b);
    w.state(7, 0, 3, |_| Ok(())).unwrap();
    assert_eq!(
        e.receive(&b[..8], t0),
        vec![Event::Malformed(sync::Error::BadHeader)]
    );
    // an ACK whose range ends before it starts
    let mut w = Writer::new(&mut b);
    w.control(flags::ACK, 4, 9, 3).unwrap();
    assert_eq!(
        e.receive(&b[..16], t0),
        vec![Event::Malformed(sync::Error::BadHeader)]
    );
    // a truncated datagram
    assert_eq!(
        e.receive(&b[..5], t0),
        vec![Event::Malformed(sync::Error::Truncated)]
    );
    let s = e.stats();
    assert_eq!(s.malformed_total(), 5);
    assert_eq!(s.malformed[sync::Error::BadHeader.index()], 3);
}

fn arb_addr(v6: bool) -> impl Strategy<Value = IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            .boxed()
    }
}

/// Random entries the protocol can carry.
fn arb_entry() -> impl Strategy<Value = Entry> {
    any::<bool>().prop_flat_map(|v6| {
        let l4 = prop_oneof![
            (
                prop_oneof![Just(6u8), Just(17), Just(132), Just(33)],
                any::<u16>(),
                any::<u16>()
            )
                .prop_map(|(p, sport, dport)| (p, L4::Ports { sport, dport })),
            (any::<u8>(), any::<u8>(), any::<u16>()).prop_map(move |(kind, code, id)| (
                if v6 { 58 } else { 1 },
                L4::Icmp { kind, code, id }
            )),
            Just((47u8, L4::None)),
        ];
        (
            arb_addr(v6),
            arb_addr(v6),
            l4,
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(arb_addr(v6)),
            proptest::option::of(arb_addr(v6)),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..10),
        )
            .prop_map(
                |(
                    src,
                    dst,
                    (proto, l4),
                    status,
                    timeout,
                    mark,
                    zone,
                    snat,
                    dnat,
                    spat,
                    dpat,
                    st,
                )| {
                    let ports = matches!(l4, L4::Ports { .. });
                    let mut e = Entry::new(Tuple {
                        src,
                        dst,
                        proto,
                        l4,
                    });
                    e.status = status;
                    e.timeout = timeout;
                    e.mark = mark;
                    e.zone = zone;
                    e.snat = snat;
                    e.dnat = dnat;
                    // NAT ports and the TCP state travel only where 1.4.7 sends them
                    e.spat = spat.filter(|_| ports);
                    e.dpat = dpat.filter(|_| ports);
                    e.tcp_state = st.filter(|_| proto == 6);
                    e
                },
            )
    })
}

fn emit(e: &Entry, kind: u8, seq: u32) -> Vec<u8> {
    let mut b = [0u8; 512];
    let mut w = Writer::new(&mut b);
    e.emit(&mut w, kind, 0, seq).unwrap();
    let n = w.len();
    b[..n].to_vec()
}

proptest! {
    #[test]
    fn emit_parse_roundtrip(e in arb_entry(), seq in any::<u32>()) {
        let b = emit(&e, kind::CT_UPD, seq);
        let m = Message::new_checked(&b[..]).unwrap();
        prop_assert_eq!(m.seq(), seq);
        prop_assert_eq!(usize::from(m.len()), b.len());
        prop_assert_eq!(b.len() % 4, 0);
        prop_assert_eq!(Entry::parse(&m).unwrap(), e);
    }

    /// Any bytes: each message is an event, malformed ones are counted, nothing panics.
    #[test]
    fn random_bytes_are_counted_not_fatal(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let t0 = Instant::now();
        for mode in [Mode::Ftfw, Mode::Notrack] {
            let mut e = Engine::new(Config { mode, ..Config::default() }, 1, t0);
            let ev = e.receive(&bytes, t0);
            let bad = ev.iter().filter(|x| matches!(x, Event::Malformed(_))).count() as u64;
            prop_assert_eq!(bad, e.stats().malformed_total());
            let mut out = [0u8; 1472];
            e.poll(t0 + Duration::from_secs(2));
            while e.poll_transmit(&mut out, t0) > 0 {}
        }
    }

    /// Every truncation of a valid datagram is refused or shorter, never a panic; a cut
    /// inside a message is a counted error.
    #[test]
    fn truncations_are_refused(es in proptest::collection::vec(arb_entry(), 1..6), cut in any::<prop::sample::Index>()) {
        let mut d = Vec::new();
        let mut ends = Vec::new();
        for (i, e) in es.iter().enumerate() {
            d.extend_from_slice(&emit(e, kind::CT_NEW, i as u32));
            ends.push(d.len());
        }
        let at = cut.index(d.len());
        let t0 = Instant::now();
        let mut eng = Engine::new(Config::default(), 1, t0);
        let ev = eng.receive(&d[..at], t0);
        let whole = ends.iter().filter(|&&x| x <= at).count();
        let updated = ev.iter().filter(|x| matches!(x, Event::Updated(_))).count();
        prop_assert_eq!(updated, whole);
        if !ends.contains(&at) && at > 0 {
            prop_assert_eq!(eng.stats().malformed_total(), 1);
        }
    }

    /// A corrupted byte anywhere: parsed, refused or counted, never a panic.
    #[test]
    fn corruptions_never_panic(e in arb_entry(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut d = emit(&e, kind::CT_NEW, 5);
        let i = at.index(d.len());
        d[i] = byte;
        let t0 = Instant::now();
        let mut eng = Engine::new(Config::default(), 1, t0);
        let ev = eng.receive(&d, t0);
        prop_assert!(!ev.is_empty());
        if let Ok(m) = Message::new_checked(&d[..]) {
            let _ = Entry::parse(&m);
        }
    }
}

#[test]
fn a_peer_cannot_grow_the_external_cache_beyond_its_limit() {
    let t0 = Instant::now();
    let cfg = Config {
        external_limit: 3,
        ..Config::default()
    };
    let mut a = Engine::new(Config::default(), 1, t0);
    let mut b = Engine::new(cfg, 100, t0);
    for i in 0..5 {
        a.upsert(entry(i));
    }
    run(&mut a, &mut b, t0, 2, 0);
    assert_eq!(b.external().count(), 3);
    assert!(b.stats().external_full >= 2);
    // an entry already there is still updated
    let key = b.external().next().map(|(k, _)| *k).unwrap();
    let mut changed = a.internal().find(|e| e.key() == key).copied().unwrap();
    changed.tcp_state = Some(7);
    a.upsert(changed);
    run(&mut a, &mut b, t0 + Duration::from_secs(2), 2, 0);
    assert_eq!(
        b.external()
            .find(|(k, _)| **k == key)
            .unwrap()
            .1
            .entry
            .tcp_state,
        Some(7)
    );
}

/// A peer that restarts while still saying hello, with a lower counter: its messages are a
/// restart, not replays to drop.
#[test]
fn a_peer_restarting_during_hello_is_not_taken_for_a_replay() {
    let t0 = Instant::now();
    let mut a = Engine::new(Config::default(), 1, t0);
    let mut buf = [0u8; 1472];
    let mut old = Engine::new(Config::default(), 5000, t0);
    for i in 0..3 {
        old.upsert(entry(i));
    }
    let n = old.poll_transmit(&mut buf, t0);
    a.receive(&buf[..n], t0);
    // the peer restarts before it heard our hello back, its counter now lower
    let mut new = Engine::new(Config::default(), 4000, t0);
    new.upsert(entry(9));
    let n = new.poll_transmit(&mut buf, t0);
    let ev = a.receive(&buf[..n], t0);
    assert!(matches!(ev[..], [Event::Updated(_)]), "{ev:?}");
    assert_eq!(a.stats().before, 0);
    assert_eq!(a.external().count(), 4);
}

/// A full resend queue forgets its oldest message (counted); a deletion forgotten that way
/// leaves nothing behind.
#[test]
fn a_full_resend_queue_forgets_the_oldest() {
    let t0 = Instant::now();
    let cfg = Config {
        resend_queue_size: 4,
        ..Config::default()
    };
    let mut a = Engine::new(cfg, 1, t0);
    let mut buf = [0u8; 1472];
    for i in 0..3 {
        a.upsert(entry(i));
    }
    a.remove(&entry(0).key());
    while a.poll_transmit(&mut buf, t0) > 0 {}
    for i in 3..9 {
        a.upsert(entry(i));
    }
    while a.poll_transmit(&mut buf, t0) > 0 {}
    assert_eq!(a.queue_lens(), (0, 4));
    assert!(a.stats().resend_overflow >= 5);
    assert_eq!(a.internal().count(), 8);
    assert_eq!(a.tracked(), 8, "the forgotten deletion is not kept");
}
