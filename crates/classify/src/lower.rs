//! Lowering from the `rules` AST (one `rules::Rule`) to a `RuleSpec`. What the classifier has no
//! dimension for (multiport, mac, limit, length, ttl/hoplimit, tcp options, a non-contiguous
//! mask, a second state match, ...) sets `leaf_check` and is listed in `Lowered::leaf_matches`
//! for the caller's callback to evaluate once every dimension matched.

use std::net::IpAddr;

use rules::{Match, Rule};

use crate::spec::{
    ct, AddrMatch, CtMatch, IcmpMatch, IfaceSet, PortMatch, ProtoMatch, RuleSpec, TcpFlagsMatch,
};

/// A lowered rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lowered {
    pub spec: RuleSpec,
    /// The caller checks these at the leaf (`spec.leaf_check` is set when this is not empty).
    pub leaf_matches: Vec<LeafMatch>,
}

/// A condition of the rule that is not a classifier dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafMatch {
    /// `rule.matches[i]` as a whole.
    Match(usize),
    /// The source (`false`) or destination (`true`) address with a non-contiguous mask.
    TernaryAddr { dst: bool },
}

fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn addr(m: &rules::AddrMatch) -> Option<AddrMatch> {
    let len = m.prefix_len()?;
    let a = match m.addr {
        IpAddr::V4(v) => AddrMatch::v4_prefix(u32::from(v), len),
        IpAddr::V6(v) => AddrMatch::v6_prefix(u128::from(v), len),
    };
    Some(if m.negated { a.negated() } else { a })
}

fn ports(p: &Option<rules::PortMatch>) -> PortMatch {
    match p {
        None => PortMatch::ANY,
        Some(p) => PortMatch {
            lo: p.range.lo,
            hi: p.range.hi,
            negate: p.negated,
        },
    }
}

/// `iface_ids`: the dataplane's interface names, indexed by interface id (at most 64).
fn iface(m: &Option<rules::IfaceMatch>, iface_ids: &[&str]) -> IfaceSet {
    let Some(m) = m else { return IfaceSet::ANY };
    let mut set = 0u64;
    for (id, name) in iface_ids.iter().enumerate().take(64) {
        let hit = if m.wildcard {
            name.starts_with(m.name.as_str())
        } else {
            *name == m.name
        };
        if hit {
            set |= 1 << id;
        }
    }
    IfaceSet(if m.negated { !set } else { set })
}

fn ct_bits(states: u16) -> u8 {
    use rules::ct_state as s;
    let map = [
        (s::INVALID, ct::INVALID),
        (s::NEW, ct::NEW),
        (s::RELATED, ct::RELATED),
        (s::ESTABLISHED, ct::ESTABLISHED),
        (s::UNTRACKED, ct::UNTRACKED),
        (s::SNAT, ct::SNAT),
        (s::DNAT, ct::DNAT),
    ];
    map.iter()
        .filter(|(r, _)| states & r != 0)
        .fold(0, |acc, (_, c)| acc | c)
}

/// Lower one rule (of a chain of either family).
pub fn lower_rule(rule: &Rule, iface_ids: &[&str]) -> Lowered {
    let mut spec = RuleSpec::ANY;
    let mut leaf = Vec::new();
    for (dst, m) in [(false, &rule.src), (true, &rule.dst)] {
        if let Some(m) = m {
            match addr(m) {
                Some(a) if dst => spec.dst = a,
                Some(a) => spec.src = a,
                None => leaf.push(LeafMatch::TernaryAddr { dst }),
            }
        }
    }
    spec.iif = iface(&rule.in_iface, iface_ids);
    spec.oif = iface(&rule.out_iface, iface_ids);
    spec.proto = match rule.proto {
        None => ProtoMatch::Any,
        Some(p) if p.negated => ProtoMatch::IsNot(p.proto),
        Some(p) => ProtoMatch::Is(p.proto),
    };
    // rules: Some(false) = `-f`; here Some(true) = `-f`
    spec.fragment = rule.fragment.map(|f| !f);
    let mut l4_seen = false;
    for (i, m) in rule.matches.iter().enumerate() {
        let mut to_leaf = false;
        match m {
            Match::Tcp(t) => {
                if l4_seen || t.option.is_some() {
                    to_leaf = true;
                } else {
                    spec.sport = ports(&t.sport);
                    spec.dport = ports(&t.dport);
                    spec.tcp_flags = t.flags.map(|f| TcpFlagsMatch {
                        mask: f.mask,
                        cmp: f.comp,
                        negate: f.negated,
                    });
                    l4_seen = true;
                }
            }
            Match::Udp(u) => {
                if l4_seen {
                    to_leaf = true;
                } else {
                    spec.sport = ports(&u.sport);
                    spec.dport = ports(&u.dport);
                    l4_seen = true;
                }
            }
            Match::Icmp(c) | Match::Icmp6(c) => {
                let v6_any_type = matches!(m, Match::Icmp6(_)) && c.icmp_type == 255;
                if l4_seen || v6_any_type {
                    to_leaf = true;
                } else {
                    spec.icmp = Some(IcmpMatch {
                        ty: c.icmp_type,
                        code_lo: c.code_min,
                        code_hi: c.code_max,
                        negate: c.negated,
                    });
                    l4_seen = true;
                }
            }
            Match::State(s) | Match::Conntrack(rules::ConntrackMatch { state: Some(s), .. })
                if matches!(m, Match::State(_))
                    || matches!(m, Match::Conntrack(c) if c.state_only().is_some()) =>
            {
                if spec.ct.is_some() {
                    to_leaf = true;
                } else {
                    spec.ct = Some(CtMatch {
                        mask: ct_bits(s.states),
                        negate: s.negated,
                    });
                }
            }
            Match::IpRange(r) => {
                let take = |slot: &mut AddrMatch, r: &Option<rules::IpRange>| match r {
                    None => true,
                    Some(r) if slot.is_any() => {
                        let a = AddrMatch::range(addr_bits(r.lo), addr_bits(r.hi));
                        *slot = if r.negated { a.negated() } else { a };
                        true
                    }
                    Some(_) => false,
                };
                // both halves must fit, else the whole match goes to the leaf check
                let (s0, d0) = (spec.src, spec.dst);
                if !(take(&mut spec.src, &r.src) && take(&mut spec.dst, &r.dst)) {
                    spec.src = s0;
                    spec.dst = d0;
                    to_leaf = true;
                }
            }
            Match::Comment(_) => {}
            _ => to_leaf = true,
        }
        if to_leaf {
            leaf.push(LeafMatch::Match(i));
        }
    }
    // netfilter's tcp/udp/icmp matches never match a non-first fragment, even with no option
    if l4_seen && !spec.needs_l4() && spec.fragment.is_none() {
        spec.fragment = Some(false);
    }
    spec.leaf_check = !leaf.is_empty();
    Lowered {
        spec,
        leaf_matches: leaf,
    }
}

/// Lower a whole chain (rule `i` of the chain is rule `i` of the result).
pub fn lower_chain(chain: &rules::Chain, iface_ids: &[&str]) -> Vec<Lowered> {
    chain
        .rules
        .iter()
        .map(|r| lower_rule(r, iface_ids))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Key;
    use crate::{Classifier, NO_MATCH};

    const IFACES: [&str; 3] = ["eth0", "eth1", "wan0"];

    fn chain(text: &str, family: rules::Family) -> rules::Chain {
        let rs = rules::parse_restore("test.rules", text, family).unwrap_or_else(|d| panic!("{d}"));
        let filter = rs
            .tables
            .iter()
            .find(|t| t.name == rules::TableName::Filter)
            .unwrap();
        filter
            .chains
            .iter()
            .find(|c| c.name == "FORWARD")
            .unwrap()
            .clone()
    }

    fn v4(a: [u8; 4]) -> u128 {
        u32::from_be_bytes(a) as u128
    }

    #[test]
    fn lowers_an_iptables_chain() {
        let text = "*filter\n:FORWARD DROP [0:0]\n\
            -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A FORWARD -s 198.18.0.0/15 -i eth+ -p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT\n\
            -A FORWARD ! -d 198.19.1.0/24 -p udp -m udp --sport 1024:65535 -m limit --limit 5/sec -j ACCEPT\n\
            -A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT\n\
            -A FORWARD -m iprange --src-range 198.18.0.10-198.18.0.20 -j DROP\n\
            COMMIT\n";
        let lowered = lower_chain(&chain(text, rules::Family::Ipv4), &IFACES);
        assert_eq!(lowered.len(), 5);
        assert_eq!(
            lowered[0].spec.ct,
            Some(CtMatch {
                mask: ct::RELATED | ct::ESTABLISHED,
                negate: false
            })
        );
        let ssh = &lowered[1].spec;
        assert_eq!(ssh.iif, IfaceSet(0b011), "eth+ is eth0 and eth1");
        assert_eq!(ssh.dport, PortMatch::range(22, 22));
        assert_eq!(
            ssh.tcp_flags,
            Some(TcpFlagsMatch {
                mask: 0x17,
                cmp: 0x02,
                negate: false
            })
        );
        assert!(!ssh.leaf_check);
        assert_eq!(
            lowered[2].leaf_matches,
            vec![LeafMatch::Match(1)],
            "limit is a leaf check"
        );
        assert!(lowered[2].spec.leaf_check && lowered[2].spec.dst.negate);
        assert_eq!(
            lowered[4].spec.src,
            AddrMatch::range(v4([198, 18, 0, 10]), v4([198, 18, 0, 20]))
        );

        let specs: Vec<RuleSpec> = lowered.iter().map(|l| l.spec).collect();
        let cls = Classifier::build(&specs);
        let syn = Key {
            src: v4([198, 18, 0, 15]),
            dst: v4([198, 19, 1, 1]),
            sport: 40000,
            dport: 22,
            proto: 6,
            iif: 1,
            oif: 2,
            ct: ct::NEW,
            tcp_flags: 0x02,
            ..Key::default()
        };
        assert_eq!(cls.lookup(&syn, 0), 1);
        assert_eq!(
            cls.lookup(&Key { iif: 2, ..syn }, 0),
            4,
            "wan0 is not eth+; the iprange rule"
        );
        assert_eq!(
            cls.lookup(
                &Key {
                    ct: ct::ESTABLISHED,
                    ..syn
                },
                0
            ),
            0
        );
        let dns = Key {
            proto: 17,
            sport: 5353,
            dport: 53,
            dst: v4([198, 19, 2, 1]),
            src: v4([198, 18, 1, 1]),
            ..syn
        };
        let mut out = [0];
        cls.lookup_burst_with(&[dns], &[0], &mut out, |_, r| r == 2);
        assert_eq!(out[0], 2, "the limit callback says yes");
        cls.lookup_burst_with(&[dns], &[0], &mut out, |_, _| false);
        assert_eq!(out[0], NO_MATCH);
        let ping = Key {
            proto: 1,
            icmp_type: 8,
            sport: 0,
            dport: 0,
            ..dns
        };
        assert_eq!(cls.lookup(&ping, 0), 3);
        let frag = Key { frag: true, ..ping };
        assert_eq!(
            cls.lookup(&frag, 0),
            NO_MATCH,
            "a non-first fragment has no ICMP header"
        );
    }

    #[test]
    fn lowers_ip6tables_prefixes_and_fragments() {
        let text = "*filter\n:FORWARD ACCEPT [0:0]\n\
            -A FORWARD -s 2001:2::/48 -p tcp -m tcp -j DROP\n\
            -A FORWARD -d 2001:2:0:1::/64 -o wan0 -j ACCEPT\n\
            COMMIT\n";
        let lowered = lower_chain(&chain(text, rules::Family::Ipv6), &IFACES);
        let specs: Vec<RuleSpec> = lowered.iter().map(|l| l.spec).collect();
        assert_eq!(
            specs[0].fragment,
            Some(false),
            "an empty -m tcp still refuses fragments"
        );
        assert_eq!(specs[1].oif, IfaceSet::one(2));
        let cls = Classifier::build(&specs);
        let k = Key {
            src: 0x2001_0002_0000_0005_0000_0000_0000_0001,
            dst: 0x2001_0002_0000_0001_0000_0000_0000_0002,
            proto: 6,
            oif: 2,
            ..Key::default()
        };
        assert_eq!(cls.lookup(&k, 0), 0);
        assert_eq!(cls.lookup(&Key { frag: true, ..k }, 0), 1);
        assert_eq!(
            cls.lookup(
                &Key {
                    oif: 0,
                    frag: true,
                    ..k
                },
                0
            ),
            NO_MATCH
        );
    }
}
