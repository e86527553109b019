//! The vector path (`process_burst`: parse all, look all up, classify the NEW ones ahead,
//! then each frame in order) against the same frames one at a time (`process`): verdicts,
//! bytes out, every counter, rule counters, LOG events and conntrack's table agree, on
//! random bursts that repeat flows inside a burst, mix NEW and ESTABLISHED, NAT both ways,
//! REJECT, LOG, `-m limit` and malformed frames.
use super::*;
use crate::compile::compile;
use crate::compile::tests::{cfg, v4 as parse_v4};
use proptest::prelude::*;
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::tcp::TcpFlags;

fn ruleset(limit: bool) -> String {
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -i fw-c -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.0.3:80\n\
         -A POSTROUTING -o fw-s -p udp -j MASQUERADE\n\
         -A POSTROUTING -o fw-s -s 198.18.0.1/32 -p tcp -j SNAT --to-source 198.18.0.250\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -p tcp -m tcp --dport 22 -j LOG --log-prefix \"ssh \"\n\
         {}\
         -A FORWARD -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset\n\
         -A FORWARD -p udp -m udp --dport 9 -j REJECT\n\
         -A FORWARD -i fw-c -p tcp -m tcp ! --dport 25 -j ACCEPT\n\
         -A FORWARD -i fw-c -p udp -j ACCEPT\n\
         -A FORWARD -p icmp -j ACCEPT\nCOMMIT\n",
        if limit {
            "-A FORWARD -p udp -m udp --dport 53 -m limit --limit 1/sec --limit-burst 3 -j ACCEPT\n-A FORWARD -p udp -m udp --dport 53 -j DROP\n"
        } else {
            ""
        }
    )
}

fn worker(limit: bool) -> (Worker, Arc<ArcSwap<Compiled>>, rtrb::Consumer<LogEvent>) {
    let c = compile(Some(&parse_v4(&ruleset(limit))), None, &cfg()).unwrap();
    let rules = Arc::new(ArcSwap::from_pointee(c));
    let mut w = Worker::new(rules.clone(), &conntrack::Config::default(), 64, 0, 1, 0);
    let (tx, rx) = rtrb::RingBuffer::new(4096);
    w.set_log_queue(tx);
    (w, rules, rx)
}

/// Frame `kind` of flow `flow`: from the client (port a) or the server (port b).
fn frame(kind: u8, flow: u8, from_server: bool) -> Vec<u8> {
    let b = FrameBuilder::default();
    let c = [198, 18, 0, 1 + flow % 2];
    let s = [198, 18, 0, 2];
    let sport = 1000 + u16::from(flow);
    let dport = [80u16, 8080, 22, 23, 25][usize::from(flow) % 5];
    let (src, dst, sp, dp) = if from_server {
        (s, c, dport, sport)
    } else {
        (c, s, sport, dport)
    };
    let tcp = |flags: u8| {
        b.tcp(
            IpPair::V4(src, dst),
            &TcpSpec {
                src_port: sp,
                dst_port: dp,
                seq: 1,
                ack: 0,
                flags: TcpFlags(flags),
                window: 100,
                options: vec![],
                payload: b"",
            },
        )
    };
    match kind % 8 {
        0 => tcp(0x02),
        1 => tcp(if from_server { 0x12 } else { 0x10 }),
        2 => b.udp(
            IpPair::V4(src, dst),
            sp,
            [53u16, 9, 5353][usize::from(flow) % 3],
            b"q",
        ),
        3 => b.echo(IpPair::V4(src, dst), !from_server, u16::from(flow), 1, b"p"),
        4 => tcp(0x03), // SYN+FIN: INVALID
        5 => tcp(0x04),
        6 => vec![0u8; 10 + usize::from(flow)],
        _ => tcp(0x11),
    }
}

proptest! {
    #[test]
    fn a_burst_does_what_its_frames_do_one_at_a_time(
        limit in any::<bool>(),
        bursts in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec((any::<u8>(), 0u8..6), 1..40)),
            1..8,
        ),
    ) {
        let (mut vw, vrules, mut vlog) = worker(limit);
        let (mut sw, srules, mut slog) = worker(limit);
        for (k, (from_server, frames)) in bursts.iter().enumerate() {
            let now = SEC_ + k as u64 * 300_000_000;
            let ingress = u8::from(*from_server);
            let mut bufs: Vec<Vec<u8>> = frames
                .iter()
                .map(|&(kind, flow)| {
                    let mut f = frame(kind, flow, *from_server);
                    f.resize(f.len().max(60), 0);
                    f
                })
                .collect();
            let mut lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
            let single: Vec<(Verdict, Vec<u8>)> = bufs
                .iter()
                .map(|f| {
                    let mut buf = f.clone();
                    buf.resize(2048, 0);
                    let v = sw.process(ingress, &mut buf, f.len(), now);
                    let n = if let Verdict::Reply(n) = v { n } else { f.len() };
                    buf.truncate(n);
                    (v, buf)
                })
                .collect();
            for b in &mut bufs {
                b.resize(2048, 0);
            }
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            let mut verdicts = vec![Verdict::Forward; refs.len()];
            vw.process_burst(ingress, &mut refs, &mut lens, &mut verdicts, now);
            for (i, (v, out)) in single.iter().enumerate() {
                prop_assert_eq!(verdicts[i], *v, "burst {} frame {}", k, i);
                prop_assert_eq!(&bufs[i][..lens[i]], &out[..], "burst {} frame {}", k, i);
            }
            prop_assert_eq!(vw.stats_snapshot(), sw.stats_snapshot());
            prop_assert_eq!(vw.shard().len(), sw.shard().len());
        }
        let (vr, sr) = (vrules.load_full(), srules.load_full());
        let count = |c: &RuleCounters| -> Vec<(u64, u64)> {
            c.packets
                .iter()
                .zip(&c.bytes)
                .map(|(p, b)| (p.load(std::sync::atomic::Ordering::Relaxed), b.load(std::sync::atomic::Ordering::Relaxed)))
                .collect()
        };
        prop_assert_eq!(count(&vr.counters[0]), count(&sr.counters[0]));
        let mut events = Vec::new();
        while let (Ok(a), Ok(b)) = (vlog.pop(), slog.pop()) {
            events.push((a.prefix().to_string(), a.bytes().to_vec(), a.ts_ns));
            prop_assert_eq!((a.prefix(), a.bytes(), a.ts_ns), (b.prefix(), b.bytes(), b.ts_ns));
        }
        prop_assert!(vlog.is_empty() && slog.is_empty());
    }
}

const SEC_: u64 = 1_000_000_000;

/// The NEW packets of a burst are classified ahead (one lookup burst per chain), and the
/// walks use what was found: the FORWARD decisions are the chain's rules, not the policy.
#[test]
fn new_flows_of_a_burst_are_classified_ahead_and_decided_by_their_rules() {
    let (mut w, _rules, _log) = worker(false);
    let rs = w.rules().load_full();
    let frames: Vec<Vec<u8>> = (0..8u8).map(|f| frame(0, f, false)).collect();
    let mut st = w.take_stages();
    for (i, f) in frames.iter().enumerate() {
        w.parse_slot(&mut st, i, 0, f);
    }
    w.prepare(&rs, &mut st, frames.len(), |i| &frames[i], SEC_);
    let fwd = HookPoint::FilterForward as usize;
    assert_eq!(st.ahead_pos[0][fwd], 1, "past the ESTABLISHED rule");
    for i in 0..frames.len() {
        assert!(st.ahead[i]);
        // dport 80, 8080 (DNAT'd: its FORWARD walk looks up again), 22 (LOG), 23, 25
        let want = [4u32, 4, 1, 2, NO_MATCH][i % 5];
        assert_eq!(st.first[i][fwd], want, "slot {i}");
    }
    w.put_stages(st);
}
