//! The symmetric flow hash.
//!
//! Both directions of a flow must land in the same shard, so the hash is computed over the two
//! endpoints in a canonical order: each endpoint is (address as u128, port), the smaller one
//! goes first. For ICMP the "port" of both endpoints is the identifier (type and code differ
//! between request and reply and are not hashed); for other protocols without ports it is 0.
//! The words are mixed with a keyed folded 64x64->128 multiply (the wyhash/foldhash mixer): a
//! per-boot `seed` keeps the bucket layout unpredictable to senders who try to flood one chain.
//! The high 32 bits choose the shard ([`shard_of`]), the low bits the bucket inside it.

use crate::tuple::{Family, Tuple, PROTO_ICMP, PROTO_ICMPV6};

const K0: u64 = 0x243F_6A88_85A3_08D3;
const K1: u64 = 0x1319_8A2E_0370_7344;
const K2: u64 = 0xA409_3822_299F_31D0;
const K3: u64 = 0x082E_FA98_EC4E_6C89;
const K4: u64 = 0x4528_21E6_38D0_1377;

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Symmetric hash of a tuple: `flow_hash(t) == flow_hash(t.invert())` for every tuple that
/// netfilter can invert.
#[inline]
pub fn flow_hash(seed: u64, family: Family, proto: u8, t: &Tuple) -> u64 {
    let a = u128::from_be_bytes(t.src);
    let b = u128::from_be_bytes(t.dst);
    let (pa, pb) = match proto {
        PROTO_ICMP | PROTO_ICMPV6 => (t.sport, t.sport),
        _ => (t.sport, t.dport),
    };
    let ((la, lp), (ha, hp)) = if (a, pa) <= (b, pb) {
        ((a, pa), (b, pb))
    } else {
        ((b, pb), (a, pa))
    };
    let ports = u64::from(lp) << 48 | u64::from(hp) << 32 | u64::from(proto) << 8 | family as u64;
    let h1 = fold((la >> 64) as u64 ^ seed ^ K0, la as u64 ^ K1);
    let h2 = fold((ha >> 64) as u64 ^ seed ^ K2, ha as u64 ^ K3);
    fold(h1 ^ ports ^ K4, h2 ^ seed ^ K1)
}

/// The shard (worker) of a flow hash among `shards`: a multiply-shift of the high 32 bits, so
/// any shard count works and the low bits stay independent for the in-shard buckets.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::{PROTO_TCP, PROTO_UDP};
    use proptest::prelude::*;

    fn tuple_strategy() -> impl Strategy<Value = (Family, u8, Tuple)> {
        (
            any::<bool>(),
            prop::sample::select(vec![PROTO_TCP, PROTO_UDP, 47u8, PROTO_ICMP]),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
            prop::sample::select(vec![0u8, 8, 13, 15, 17]),
        )
            .prop_map(|(v6, proto, mut s, mut d, sp, dp, icmp_ty)| {
                let family = if v6 { Family::V6 } else { Family::V4 };
                if !v6 {
                    s[4..].fill(0);
                    d[4..].fill(0);
                }
                let proto = match (proto, family) {
                    (PROTO_ICMP, Family::V6) => PROTO_ICMPV6,
                    (p, _) => p,
                };
                let (sport, dport) = match proto {
                    PROTO_TCP | PROTO_UDP => (sp, dp),
                    PROTO_ICMP => (sp, u16::from(icmp_ty) << 8),
                    PROTO_ICMPV6 => (sp, 128u16 << 8),
                    _ => (0, 0),
                };
                (
                    family,
                    proto,
                    Tuple {
                        src: s,
                        dst: d,
                        sport,
                        dport,
                    },
                )
            })
    }

    proptest! {
        #[test]
        fn both_directions_hash_alike((family, proto, t) in tuple_strategy(), seed in any::<u64>()) {
            let r = t.invert(family, proto).unwrap();
            prop_assert_eq!(flow_hash(seed, family, proto, &t), flow_hash(seed, family, proto, &r));
            prop_assert!(shard_of(flow_hash(seed, family, proto, &t), 7) < 7);
        }
    }

    #[test]
    fn hash_depends_on_ports_seed_and_protocol() {
        let a = "198.18.0.1".parse().unwrap();
        let b = "198.18.0.2".parse().unwrap();
        let t1 = Tuple::new(a, b, 1000, 80);
        let t2 = Tuple::new(a, b, 1001, 80);
        let h = |s, p, t: &Tuple| flow_hash(s, Family::V4, p, t);
        assert_ne!(h(1, PROTO_TCP, &t1), h(1, PROTO_TCP, &t2));
        assert_ne!(h(1, PROTO_TCP, &t1), h(2, PROTO_TCP, &t1));
        assert_ne!(h(1, PROTO_TCP, &t1), h(1, PROTO_UDP, &t1));
        // Swapping only the ports (not the addresses) is a different flow.
        let t3 = Tuple::new(a, b, 80, 1000);
        assert_ne!(h(1, PROTO_TCP, &t1), h(1, PROTO_TCP, &t3));
    }

    #[test]
    fn shards_are_spread_evenly() {
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            let t = Tuple::new(
                "198.18.0.1".parse().unwrap(),
                core::net::IpAddr::V4((0xC612_0000u32 | (i & 0xffff)).into()),
                (i >> 16) as u16 + 1024,
                443,
            );
            counts[shard_of(flow_hash(7, Family::V4, PROTO_TCP, &t), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
