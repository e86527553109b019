//! Any bytes, and valid frames with bytes flipped, go through every stage (NAT both ways,
//! REJECT, LOG) without a panic; what is forwarded still parses.
use super::*;
use crate::compile::compile;
use crate::compile::tests::{cfg, v4 as parse_v4};
use proptest::prelude::*;

fn worker() -> Worker {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
                -A PREROUTING -i fw-c -p tcp -m tcp --dport 80 -j DNAT --to-destination 198.18.0.3:8080\n\
                -A POSTROUTING -o fw-s -j MASQUERADE --random\nCOMMIT\n\
                *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                -A FORWARD -j LOG --log-prefix \"all \" --log-tcp-options --log-ip-options\n\
                -A FORWARD -p udp -m udp --dport 9 -j REJECT\n-A FORWARD -p tcp -m tcp --dport 9 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
    let c = compile(Some(&parse_v4(text)), None, &cfg()).unwrap();
    let mut w = Worker::new(
        Arc::new(ArcSwap::from_pointee(c)),
        &conntrack::Config::default(),
        64,
        0,
        1,
        0,
    );
    let (tx, _rx) = rtrb::RingBuffer::new(1);
    w.set_log_queue(tx);
    w
}

proptest! {
    #[test]
    fn no_frame_panics(
        frames in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..120),
                (wire::strategies::valid_frame(), proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4))
                    .prop_map(|(mut f, flips)| {
                        for (at, x) in flips {
                            let n = f.len();
                            f[at % n] ^= x;
                        }
                        f
                    }),
                wire::strategies::valid_frame(),
            ],
            1..24,
        ),
        ports in proptest::collection::vec(any::<bool>(), 24),
    ) {
        let mut w = worker();
        for (i, f) in frames.iter().enumerate() {
            let mut buf = f.clone();
            buf.resize(f.len() + 1500, 0);
            let v = w.process(u8::from(ports[i]), &mut buf, f.len(), (i as u64 + 1) * 1_000_000);
            match v {
                Verdict::Forward => prop_assert!(wire::parse_frame(&buf[..f.len()]).is_ok()),
                Verdict::Reply(n) => prop_assert!(wire::parse_frame(&buf[..n]).is_ok()),
                Verdict::Drop(_) => {}
            }
        }
    }
}
