//! proptest strategies for chains and keys, shared by the differential tests and the benchmark.
//! Values come from small pools so rules overlap and keys fall on range edges.

use proptest::prelude::*;

use crate::spec::*;

const V4_POOL: [u32; 6] = [
    0xc612_0000,
    0xc612_0100,
    0xc613_8000,
    0x0a00_0000,
    0xffff_ffff,
    0,
];
const V6_POOL: [u128; 4] = [
    0x2001_0002_0000_0000_0000_0000_0000_0000,
    0x2001_0002_0000_0001_0000_0000_0000_0000,
    0x2001_0002_0000_0001_8000_0000_0000_0001,
    0xfe80_0000_0000_0000_0000_0000_0000_0001,
];
const PORT_POOL: [u16; 8] = [0, 22, 53, 80, 443, 1023, 1024, 65535];

fn addr_value(v6: bool) -> BoxedStrategy<u128> {
    if v6 {
        (0..V6_POOL.len(), any::<u16>(), 0u32..3)
            .prop_map(|(i, low, where_)| V6_POOL[i] ^ ((low as u128) << (32 * where_)))
            .boxed()
    } else {
        prop_oneof![
            (0..V4_POOL.len(), any::<u8>()).prop_map(|(i, low)| (V4_POOL[i] ^ low as u32) as u128),
            any::<u32>().prop_map(|a| a as u128),
        ]
        .boxed()
    }
}

fn addr_match(v6: bool) -> BoxedStrategy<AddrMatch> {
    let bits: u8 = if v6 { 128 } else { 32 };
    let prefix = (addr_value(v6), 0..=bits).prop_map(move |(a, len)| {
        if v6 {
            AddrMatch::v6_prefix(a, len)
        } else {
            AddrMatch::v4_prefix(a as u32, len)
        }
    });
    let range = (addr_value(v6), 0u32..70000).prop_map(move |(a, d)| {
        AddrMatch::range(
            a,
            a.saturating_add(d as u128)
                .min(if v6 { u128::MAX } else { u32::MAX as u128 }),
        )
    });
    (
        prop_oneof![3 => Just(AddrMatch::ANY), 4 => prefix, 2 => range],
        prop::bool::weighted(0.15),
    )
        .prop_map(|(m, neg)| if neg && !m.is_any() { m.negated() } else { m })
        .boxed()
}

fn port_match() -> impl Strategy<Value = PortMatch> {
    prop_oneof![
        3 => Just(PortMatch::ANY),
        4 => (0..PORT_POOL.len(), 0..PORT_POOL.len(), prop::bool::weighted(0.15)).prop_map(|(a, b, negate)| {
            let (lo, hi) = (PORT_POOL[a.min(b)], PORT_POOL[a.max(b)]);
            PortMatch { lo, hi, negate }
        }),
    ]
}

fn proto_match() -> impl Strategy<Value = ProtoMatch> {
    prop_oneof![
        3 => Just(ProtoMatch::Any),
        4 => prop::sample::select(vec![1u8, 6, 17, 58]).prop_map(ProtoMatch::Is),
        1 => Just(ProtoMatch::IsNot(6)),
    ]
}

fn iface() -> impl Strategy<Value = IfaceSet> {
    prop_oneof![4 => Just(IfaceSet::ANY), 1 => (0u8..3).prop_map(IfaceSet::one), 1 => (0u8..3).prop_map(|i| IfaceSet(!IfaceSet::one(i).0))]
}

/// A rule of a chain of one family.
pub fn rule(v6: bool) -> impl Strategy<Value = RuleSpec> {
    let base = (
        addr_match(v6),
        addr_match(v6),
        proto_match(),
        port_match(),
        port_match(),
        iface(),
        iface(),
    );
    let extra = (
        prop::option::weighted(
            0.15,
            (1u8..0x7f, any::<bool>()).prop_map(|(mask, negate)| CtMatch { mask, negate }),
        ),
        prop::option::weighted(
            0.1,
            (
                prop::sample::select(vec![0u8, 3, 8, 255]),
                0u8..3,
                0u8..3,
                any::<bool>(),
            )
                .prop_map(|(ty, a, b, negate)| IcmpMatch {
                    ty,
                    code_lo: a.min(b),
                    code_hi: a.max(b),
                    negate,
                }),
        ),
        prop::option::weighted(
            0.1,
            (0u8..0x40, 0u8..0x40, any::<bool>()).prop_map(|(mask, c, negate)| TcpFlagsMatch {
                mask,
                cmp: c & mask,
                negate,
            }),
        ),
        prop::option::weighted(0.1, any::<bool>()),
        prop::bool::weighted(0.1),
    );
    (base, extra).prop_map(
        |(
            (src, dst, proto, sport, dport, iif, oif),
            (ct, icmp, tcp_flags, fragment, leaf_check),
        )| RuleSpec {
            src,
            dst,
            proto,
            sport,
            dport,
            iif,
            oif,
            ct,
            icmp,
            tcp_flags,
            fragment,
            leaf_check,
        },
    )
}

/// A packet key of one family, often on the values the rules use.
pub fn key(v6: bool) -> impl Strategy<Value = Key> {
    let port = prop_oneof![
        (0..PORT_POOL.len(), 0u16..2).prop_map(|(i, d)| PORT_POOL[i].wrapping_add(d)),
        any::<u16>()
    ];
    (
        (
            addr_value(v6),
            addr_value(v6),
            port.clone(),
            port,
            prop::sample::select(vec![1u8, 6, 17, 58, 47]),
        ),
        (
            0u8..3,
            0u8..3,
            0u8..7,
            prop::sample::select(vec![0u8, 3, 8]),
            0u8..3,
            0u8..0x40,
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (src, dst, sport, dport, proto),
                (iif, oif, ct, icmp_type, icmp_code, tcp_flags, frag),
            )| Key {
                src,
                dst,
                sport: if frag { 0 } else { sport },
                dport: if frag { 0 } else { dport },
                proto,
                iif,
                oif,
                ct: 1 << ct,
                icmp_type,
                icmp_code,
                tcp_flags,
                frag,
            },
        )
}

/// The leaf check used by the tests: a deterministic function of rule and key.
pub fn leaf_check(rule: u32, key: &Key) -> bool {
    !(rule as u64 + key.sport as u64 + key.tcp_flags as u64).is_multiple_of(3)
}
