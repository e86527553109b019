//! Chain traversal against a naive reference: a recursive walk of the same rules, one rule
//! at a time with `RuleSpec::matches`, on random rulesets with jumps, gotos and RETURNs.
use super::*;
use crate::compile::tests::{cfg, v4 as parse_v4};
use crate::compile::{compile, CompiledChain};
use proptest::prelude::*;
use wire::builder::{FrameBuilder, IpPair, TcpSpec};
use wire::parse_frame;
use wire::tcp::TcpFlags;

#[derive(Clone, Debug)]
struct R {
    m: u8,
    t: u8,
    to: u8,
}

fn text(chains: &[Vec<R>], policy_drop: bool) -> String {
    let mut s = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {} [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        if policy_drop { "DROP" } else { "ACCEPT" }
    );
    for i in 1..chains.len() {
        s += &format!(":c{i} - [0:0]\n");
    }
    for (i, rules) in chains.iter().enumerate() {
        let name = if i == 0 {
            "FORWARD".to_string()
        } else {
            format!("c{i}")
        };
        for r in rules {
            let m = match r.m % 5 {
                0 => "".to_string(),
                1 => "-p tcp -m tcp --dport 22 ".into(),
                2 => "-p tcp -m tcp --dport 80:443 ".into(),
                3 => "-s 198.18.1.0/24 ".into(),
                _ => "! -s 198.18.1.0/24 -p tcp -m tcp ! --dport 80 ".into(),
            };
            // jumps only forward (no loops); the last chain cannot jump
            let later = chains.len() - 1 - i;
            let t = match (r.t % 6, later) {
                (0, _) => "-j ACCEPT".to_string(),
                (1, _) => "-j DROP".into(),
                (2, _) if i > 0 => "-j RETURN".into(),
                (3, l) if l > 0 => format!("-j c{}", i + 1 + usize::from(r.to) % l),
                (4, l) if l > 0 => format!("-g c{}", i + 1 + usize::from(r.to) % l),
                _ => String::new(),
            };
            s += &format!("-A {name} {m}{t}\n")
                .replace("  ", " ")
                .replace(" \n", "\n");
        }
    }
    s + "COMMIT\n"
}

/// (accepted, chain, rule or POLICY)
fn reference(chains: &[CompiledChain], cur: u32, key: &Key) -> Option<(bool, u32, u32)> {
    let c = &chains[cur as usize];
    let specs = c.classifier.rules();
    for (i, (s, r)) in specs.iter().zip(&c.rules).enumerate() {
        if !s.matches(key) {
            continue;
        }
        match &r.action {
            RuleTarget::Accept => return Some((true, cur, i as u32)),
            RuleTarget::Drop => return Some((false, cur, i as u32)),
            RuleTarget::Return => return None,
            RuleTarget::Jump(t) => {
                if let Some(v) = reference(chains, *t, key) {
                    return Some(v);
                }
            }
            RuleTarget::Goto(t) => return reference(chains, *t, key),
            _ => {}
        }
    }
    None
}

proptest! {
    #[test]
    fn traversal_matches_a_naive_walk(
        chains in proptest::collection::vec(proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(m, t, to)| R { m, t, to }), 0..5), 1..5),
        policy_drop in any::<bool>(),
        packets in proptest::collection::vec((any::<bool>(), prop::sample::select(vec![22u16, 80, 443, 8080])), 1..12),
    ) {
        let rs = parse_v4(&text(&chains, policy_drop));
        let c = compile(Some(&rs), None, &cfg()).unwrap();
        let rules = Arc::new(ArcSwap::from_pointee(c));
        let mut w = Worker::new(rules.clone(), &conntrack::Config::default(), 256, 0, 1, 0);
        let snap = rules.load_full();
        let fwd = snap.v4.hooks[HookPoint::FilterForward as usize].unwrap();
        for (n, (net1, dport)) in packets.into_iter().enumerate() {
            let src = if net1 { [198, 18, 1, 7] } else { [198, 18, 0, 7] };
            let f = FrameBuilder::default().tcp(
                IpPair::V4(src, [198, 18, 0, 2]),
                &TcpSpec { src_port: 1000 + n as u16, dst_port: dport, seq: 1, ack: 0, flags: TcpFlags::SYN, window: 1, options: vec![], payload: b"" },
            );
            let mut buf = f.clone();
            buf.resize(256, 0);
            let v = w.process(0, &mut buf, f.len(), 1_000_000_000);
            let info = parse_frame(&f).unwrap();
            let mut key = key_of(&info, 0, 1);
            key.ct = ct::NEW;
            let want = reference(&snap.v4.chains, fwd, &key)
                .unwrap_or((!policy_drop, fwd, POLICY));
            prop_assert_eq!(v == Verdict::Forward, want.0, "{:?}", rs.to_save());
            prop_assert_eq!(w.trace().decided[HookPoint::FilterForward as usize], Some((want.1, want.2)));
        }
    }
}
