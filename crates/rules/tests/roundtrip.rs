//! Property: for any ruleset in canonical form, parse(print(x)) == x (source lines aside).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rules::fuzzing::normalised;
use rules::*;

fn addr(v6: bool) -> impl Strategy<Value = Option<AddrMatch>> {
    let v4 = (
        any::<u32>(),
        0u32..=32,
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(a, len, neg, dotted, m)| {
            let mask = if dotted && m != 0 {
                m
            } else if len == 0 {
                0
            } else {
                u32::MAX << (32 - len)
            };
            if mask == 0 && !neg {
                return None;
            }
            Some(AddrMatch {
                addr: IpAddr::V4(Ipv4Addr::from(a & mask)),
                mask: IpAddr::V4(Ipv4Addr::from(mask)),
                negated: neg,
            })
        });
    let v6s = (any::<u128>(), 0u32..=128, any::<bool>()).prop_map(|(a, len, neg)| {
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        if mask == 0 && !neg {
            return None;
        }
        Some(AddrMatch {
            addr: IpAddr::V6(Ipv6Addr::from(a & mask)),
            mask: IpAddr::V6(Ipv6Addr::from(mask)),
            negated: neg,
        })
    });
    if v6 {
        prop_oneof![Just(None), v6s].boxed()
    } else {
        prop_oneof![Just(None), v4].boxed()
    }
}

fn iface() -> impl Strategy<Value = Option<IfaceMatch>> {
    prop_oneof![
        Just(None),
        ("[a-z][a-z0-9.]{0,12}", any::<bool>(), any::<bool>()).prop_map(
            |(name, wildcard, negated)| Some(IfaceMatch {
                name,
                wildcard,
                negated
            })
        ),
    ]
}

fn port_match() -> impl Strategy<Value = Option<PortMatch>> {
    prop_oneof![
        Just(None),
        (any::<u16>(), any::<u16>(), any::<bool>()).prop_filter_map(
            "any range",
            |(a, b, negated)| {
                let range = PortRange {
                    lo: a.min(b),
                    hi: a.max(b),
                };
                (range != PortRange::ANY || negated).then_some(Some(PortMatch { range, negated }))
            }
        ),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(' '),
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('-'),
            proptest::char::range('!', '~')
        ],
        1..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn icmp() -> impl Strategy<Value = IcmpMatch> {
    (
        any::<u8>(),
        prop_oneof![Just(None), any::<u8>().prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(t, c, negated)| match c {
            None => IcmpMatch {
                icmp_type: t,
                code_min: 0,
                code_max: 255,
                negated,
            },
            Some(c) => IcmpMatch {
                icmp_type: t,
                code_min: c,
                code_max: c,
                negated,
            },
        })
}

fn extra_match(v6: bool) -> impl Strategy<Value = Match> {
    let states = (1u16..1024, any::<bool>()).prop_map(|(s, negated)| {
        let s = s
            & (ct_state::INVALID
                | ct_state::ESTABLISHED
                | ct_state::RELATED
                | ct_state::NEW
                | ct_state::UNTRACKED
                | ct_state::SNAT
                | ct_state::DNAT);
        StateMatch {
            states: if s == 0 { ct_state::NEW } else { s },
            negated,
        }
    });
    let ttl_op = prop_oneof![
        Just(TtlOp::Eq),
        Just(TtlOp::Ne),
        Just(TtlOp::Lt),
        Just(TtlOp::Gt)
    ];
    prop_oneof![
        states.clone().prop_map(|s| Match::State(StateMatch { states: s.states & !(ct_state::SNAT | ct_state::DNAT) | ct_state::NEW, negated: s.negated })),
        states.prop_map(|s| Match::Conntrack(ConntrackMatch { state: Some(s), ..ConntrackMatch::default() })),
        (1u64..100, prop_oneof![Just(1u64), Just(60), Just(3600), Just(86400)], 1u32..1000)
            .prop_map(|(n, mult, burst)| Match::Limit(LimitMatch { avg: (10000 * mult / n) as u32, burst }))
            .prop_filter("kernel overflow", |m| matches!(m, Match::Limit(l) if u64::from(l.avg) * u64::from(l.burst) <= u64::from(u32::MAX))),
        (any::<u16>(), any::<u16>(), any::<bool>()).prop_map(|(a, b, negated)| Match::Length { min: a.min(b), max: a.max(b), negated }),
        (ttl_op, any::<u8>()).prop_map(move |(op, value)| if v6 { Match::HopLimit { op, value } } else { Match::Ttl { op, value } }),
        text(255).prop_map(Match::Comment),
        (any::<[u8; 6]>(), any::<bool>()).prop_map(|(addr, negated)| Match::Mac { addr, negated }),
        (any::<u32>(), any::<u32>(), any::<bool>(), any::<bool>()).prop_map(move |(a, b, na, which)| {
            let (lo, hi) = if v6 {
                (IpAddr::V6(Ipv6Addr::from(u128::from(a))), IpAddr::V6(Ipv6Addr::from(u128::from(b) << 64)))
            } else {
                (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))
            };
            let r = Some(IpRange { lo, hi, negated: na });
            Match::IpRange(if which { IpRangeMatch { src: r, dst: None } } else { IpRangeMatch { src: r, dst: r } })
        }),
    ]
}

fn rule(v6: bool) -> impl Strategy<Value = Rule> {
    let proto = prop_oneof![
        Just(None),
        Just(Some(6u8)),
        Just(Some(17u8)),
        Just(Some(if v6 { 58u8 } else { 1 })),
        Just(Some(47u8)),
        Just(Some(132u8))
    ];
    (
        addr(v6),
        addr(v6),
        iface(),
        iface(),
        proto,
        any::<bool>(),
        prop_oneof![Just(None), any::<bool>().prop_map(Some)],
    )
        .prop_flat_map(move |(src, dst, i, o, proto, pneg, frag)| {
            let p = proto.map(|proto| ProtoMatch {
                proto,
                negated: pneg && proto != 6 && proto != 17 && proto != 1 && proto != 58,
            });
            let proto_match: BoxedStrategy<Vec<Match>> = match proto {
                Some(6) => (
                    port_match(),
                    port_match(),
                    prop_oneof![Just(None), (any::<u8>(), any::<bool>()).prop_map(Some)],
                    prop_oneof![
                        Just(None),
                        (0u8..64, 0u8..64, any::<bool>()).prop_map(|(m, c, negated)| Some(
                            TcpFlagsMatch {
                                mask: m,
                                comp: c,
                                negated
                            }
                        ))
                    ],
                )
                    .prop_map(|(sport, dport, option, flags)| {
                        vec![Match::Tcp(TcpMatch {
                            sport,
                            dport,
                            option,
                            flags,
                        })]
                    })
                    .boxed(),
                Some(17) => (port_match(), port_match())
                    .prop_map(|(sport, dport)| vec![Match::Udp(UdpMatch { sport, dport })])
                    .boxed(),
                Some(1) => icmp().prop_map(|m| vec![Match::Icmp(m)]).boxed(),
                Some(58) => icmp().prop_map(|m| vec![Match::Icmp6(m)]).boxed(),
                _ => Just(vec![]).boxed(),
            };
            let multiport: BoxedStrategy<Vec<Match>> =
                if matches!(proto, Some(6 | 17 | 132)) && !p.is_some_and(|p| p.negated) {
                    prop_oneof![
                        Just(vec![]),
                        (
                            proptest::collection::vec((any::<u16>(), any::<u16>()), 1..7),
                            0..3u8,
                            any::<bool>()
                        )
                            .prop_map(|(ps, d, negated)| {
                                let ports = ps
                                    .into_iter()
                                    .map(|(a, b)| PortRange {
                                        lo: a.min(b),
                                        hi: a.max(b),
                                    })
                                    .collect();
                                let dir = [
                                    MultiportDir::Source,
                                    MultiportDir::Destination,
                                    MultiportDir::Either,
                                ][d as usize];
                                vec![Match::Multiport(MultiportMatch {
                                    dir,
                                    ports,
                                    negated,
                                })]
                            })
                    ]
                    .boxed()
                } else {
                    Just(vec![]).boxed()
                };
            let target = target(v6, proto == Some(6) && !pneg);
            (
                Just((src, dst, i, o, p, if v6 { None } else { frag })),
                proto_match,
                multiport,
                proptest::collection::vec(extra_match(v6), 0..3),
                target,
            )
        })
        .prop_map(|((src, dst, i, o, p, frag), mut ms, mp, extra, target)| {
            ms.extend(mp);
            ms.extend(extra);
            Rule {
                src,
                dst,
                in_iface: i,
                out_iface: o,
                proto: p,
                fragment: frag,
                matches: ms,
                target,
                line: 0,
            }
        })
}

fn target(v6: bool, tcp: bool) -> impl Strategy<Value = Option<Target>> {
    let rejects: Vec<RejectWith> = if v6 {
        vec![
            RejectWith::Icmp6NoRoute,
            RejectWith::Icmp6AdmProhibited,
            RejectWith::Icmp6AddrUnreachable,
            RejectWith::Icmp6PortUnreachable,
            RejectWith::Icmp6PolicyFail,
            RejectWith::Icmp6RejectRoute,
        ]
    } else {
        vec![
            RejectWith::IcmpNetUnreachable,
            RejectWith::IcmpHostUnreachable,
            RejectWith::IcmpPortUnreachable,
            RejectWith::IcmpProtoUnreachable,
            RejectWith::IcmpNetProhibited,
            RejectWith::IcmpHostProhibited,
            RejectWith::IcmpAdminProhibited,
        ]
    };
    let mut rejects = rejects;
    if tcp {
        rejects.push(RejectWith::TcpReset);
    }
    prop_oneof![
        Just(None),
        Just(Some(Target::Accept)),
        Just(Some(Target::Drop)),
        Just(Some(Target::Return)),
        Just(Some(Target::Jump("user-chain".into()))),
        Just(Some(Target::Goto("user-chain".into()))),
        proptest::sample::select(rejects).prop_map(|r| Some(Target::Reject(r))),
        (0u8..8, text(29), any::<[bool; 5]>()).prop_map(|(level, prefix, f)| Some(Target::Log(
            LogTarget {
                level,
                prefix,
                tcp_sequence: f[0],
                tcp_options: f[1],
                ip_options: f[2],
                uid: f[3],
                macdecode: f[4]
            }
        ))),
        (
            any::<u16>(),
            prop_oneof![Just(String::new()), text(63)],
            prop_oneof![Just(None), any::<u32>().prop_map(Some)],
            any::<u16>()
        )
            .prop_map(|(group, prefix, size, threshold)| Some(Target::Nflog(
                NflogTarget {
                    group,
                    prefix,
                    size,
                    range: 0,
                    threshold
                }
            ))),
    ]
}

fn ruleset(v6: bool) -> impl Strategy<Value = Ruleset> {
    (proptest::collection::vec(rule(v6), 0..12), any::<bool>()).prop_map(move |(rules, drop)| {
        let mut t = Table::new(TableName::Filter);
        t.add_user_chain("user-chain");
        t.chain_mut("user-chain").unwrap().rules.push(Rule {
            target: Some(Target::Return),
            ..Rule::new()
        });
        let fwd = t.chain_mut("FORWARD").unwrap();
        fwd.rules = rules;
        if drop {
            fwd.policy = Some(Policy::Drop);
        }
        Ruleset {
            family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
            tables: vec![t],
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn v4_print_parse_roundtrip(rs in ruleset(false)) {
        let text = rs.to_save();
        let back = parse_restore("roundtrip", &text, Family::Ipv4).map_err(|d| TestCaseError::fail(format!("{d}\n{text}")))?;
        prop_assert_eq!(normalised(&back), normalised(&rs), "{}", text);
    }

    #[test]
    fn v6_print_parse_roundtrip(rs in ruleset(true)) {
        let text = rs.to_save();
        let back = parse_restore("roundtrip", &text, Family::Ipv6).map_err(|d| TestCaseError::fail(format!("{d}\n{text}")))?;
        prop_assert_eq!(normalised(&back), normalised(&rs), "{}", text);
    }
}
