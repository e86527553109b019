//! The symmetric, keyed flow hash.
//!
//! Both directions of a flow must land in the same shard, so the hash is computed over the two
//! endpoints in a canonical order: each endpoint is (address, port), the smaller one goes
//! first. For ICMP the "port" of both endpoints is the identifier (type and code differ between
//! request and reply and are not hashed); for other protocols without ports it is 0.
//!
//! The words are hashed with SipHash-1-3 under a 128-bit [`HashKey`] that fwd draws from the OS
//! at every start: without the key nobody can compute which flows share a bucket, so a sender
//! cannot aim a flood at one chain (issue 9; the table also bounds every chain, see
//! `table/index.rs`). The high 32 bits choose the shard ([`shard_of`]), the low bits the bucket
//! inside it.

use core::fmt;

use crate::tuple::{Family, Tuple, PROTO_ICMP, PROTO_ICMPV6};

/// The 128-bit key of the flow hash (SipHash's k0, k1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct HashKey(pub [u64; 2]);

impl HashKey {
    /// The key used when none is configured or drawn: `fwd replay` and tests are deterministic
    /// with it. `fwd run` replaces it with a random one unless the configuration sets one.
    pub const FIXED: HashKey = HashKey([0x5eed_f00d_cafe_d00d, 0x0123_4567_89ab_cdef]);

    /// From 16 bytes (e.g. read from `/dev/urandom`).
    pub fn from_bytes(b: [u8; 16]) -> HashKey {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&b[..8]);
        k1.copy_from_slice(&b[8..]);
        HashKey([u64::from_le_bytes(k0), u64::from_le_bytes(k1)])
    }

    /// Parses exactly 32 hex digits (the 16 key bytes in order, as [`HashKey::from_bytes`]).
    pub fn from_hex(s: &str) -> Result<HashKey, String> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "expected 32 hex digits (a 128-bit key), found {} characters{}",
                s.chars().count(),
                if s.bytes().all(|c| c.is_ascii_hexdigit()) {
                    ""
                } else {
                    " with a non-hex digit"
                }
            ));
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(HashKey::from_bytes(b))
    }

    /// The 32 hex digits [`HashKey::from_hex`] reads.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for w in self.0 {
            for b in w.to_le_bytes() {
                s.push_str(&format!("{b:02x}"));
            }
        }
        s
    }
}

impl TryFrom<String> for HashKey {
    type Error = String;
    fn try_from(s: String) -> Result<HashKey, String> {
        HashKey::from_hex(&s)
    }
}

/// Never prints the key itself (it is what keeps the buckets unpredictable).
impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(..)")
    }
}

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-c-d of a message of whole little-endian 64-bit words (`8 * words.len()` bytes).
#[inline(always)]
fn siphash<const C: usize, const D: usize>(key: &HashKey, words: &[u64]) -> u64 {
    let [k0, k1] = key.0;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    for &m in words {
        v[3] ^= m;
        for _ in 0..C {
            sipround(&mut v);
        }
        v[0] ^= m;
    }
    let last = ((words.len() as u64 * 8) & 0xff) << 56;
    v[3] ^= last;
    for _ in 0..C {
        sipround(&mut v);
    }
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..D {
        sipround(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The canonical endpoints of a tuple: ((low address, low port), (high address, high port)).
#[inline(always)]
fn canonical(proto: u8, t: &Tuple) -> ((u128, u16), (u128, u16)) {
    let a = u128::from_be_bytes(t.src);
    let b = u128::from_be_bytes(t.dst);
    let (pa, pb) = match proto {
        PROTO_ICMP | PROTO_ICMPV6 => (t.sport, t.sport),
        _ => (t.sport, t.dport),
    };
    if (a, pa) <= (b, pb) {
        ((a, pa), (b, pb))
    } else {
        ((b, pb), (a, pa))
    }
}

/// Symmetric keyed hash of a tuple: `flow_hash(k, t) == flow_hash(k, t.invert())` for every
/// tuple that netfilter can invert. SipHash-1-3 over 2 words (IPv4) or 5 words (IPv6).
#[inline]
pub fn flow_hash(key: &HashKey, family: Family, proto: u8, t: &Tuple) -> u64 {
    let ((la, lp), (ha, hp)) = canonical(proto, t);
    let ports = u64::from(lp) << 48 | u64::from(hp) << 32 | u64::from(proto) << 8 | family as u64;
    match family {
        // IPv4 addresses sit in the first 4 bytes, the rest zero.
        Family::V4 => siphash::<1, 3>(key, &[((la >> 64) as u64) | (ha >> 96) as u64, ports]),
        Family::V6 => siphash::<1, 3>(
            key,
            &[
                (la >> 64) as u64,
                la as u64,
                (ha >> 64) as u64,
                ha as u64,
                ports,
            ],
        ),
    }
}

/// The shard (worker) of a flow hash among `shards`: a multiply-shift of the high 32 bits, so
/// any shard count works and the low bits stay independent for the in-shard buckets.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    (((hash >> 32) * shards as u64) >> 32) as usize
}

/// The flow hash fwd used before issue 9: a wyhash-style fold under a 64-bit seed. Kept only to
/// show (tests) and measure (`bench/conntrack`) what it allowed: when an operand of a fold is
/// zero the product is zero whatever the seed, so flows can be made to collide without knowing
/// the seed (see [`legacy_collisions_v6`]).
#[doc(hidden)]
pub mod legacy {
    use super::canonical;
    use crate::tuple::{Family, Tuple};

    pub const K0: u64 = 0x243F_6A88_85A3_08D3;
    pub const K1: u64 = 0x1319_8A2E_0370_7344;
    pub const K2: u64 = 0xA409_3822_299F_31D0;
    /// An IPv6 endpoint whose low 64 bits are `K3` makes the second fold zero for every seed.
    pub const K3: u64 = 0x082E_FA98_EC4E_6C89;
    pub const K4: u64 = 0x4528_21E6_38D0_1377;

    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a) * u128::from(b);
        (p as u64) ^ ((p >> 64) as u64)
    }

    /// The old `flow_hash(seed, ...)`.
    #[inline]
    pub fn flow_hash(seed: u64, family: Family, proto: u8, t: &Tuple) -> u64 {
        let ((la, lp), (ha, hp)) = canonical(proto, t);
        let ports =
            u64::from(lp) << 48 | u64::from(hp) << 32 | u64::from(proto) << 8 | family as u64;
        let h1 = fold((la >> 64) as u64 ^ seed ^ K0, la as u64 ^ K1);
        let h2 = fold((ha >> 64) as u64 ^ seed ^ K2, ha as u64 ^ K3);
        fold(h1 ^ ports ^ K4, h2 ^ seed ^ K1)
    }
}

/// `n` (at most 32768) IPv6 destinations that, sent to from one source address and port to one
/// destination port, all had the same old hash under every seed: 2001:2:0:(0x8000 + i):082e:
/// fa98:ec4e:6c89, whose low 64 bits are the constant `K3`, so the second fold is zero and the
/// varying high bits drop out. The source must sort below them (an address in 2001:2::/48 with a
/// fourth group below 0x8000).
#[doc(hidden)]
pub fn legacy_collisions_v6(n: u16) -> impl Iterator<Item = [u8; 16]> {
    (0..n.min(0x8000)).map(|i| {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&(0x2001_0002_0000_8000u64 | u64::from(i)).to_be_bytes());
        a[8..].copy_from_slice(&legacy::K3.to_be_bytes());
        a
    })
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
        fn both_directions_hash_alike((family, proto, t) in tuple_strategy(), k in any::<[u64; 2]>()) {
            let key = HashKey(k);
            let r = t.invert(family, proto).unwrap();
            prop_assert_eq!(flow_hash(&key, family, proto, &t), flow_hash(&key, family, proto, &r));
            prop_assert!(shard_of(flow_hash(&key, family, proto, &t), 7) < 7);
        }

        #[test]
        fn siphash_2_4_is_the_reference(k in any::<[u64; 2]>(), words in prop::collection::vec(any::<u64>(), 0..8)) {
            // std's (deprecated) SipHasher is SipHash-2-4 over the bytes written.
            #[allow(deprecated)]
            let mut h = core::hash::SipHasher::new_with_keys(k[0], k[1]);
            for w in &words {
                core::hash::Hasher::write(&mut h, &w.to_le_bytes());
            }
            prop_assert_eq!(siphash::<2, 4>(&HashKey(k), &words), core::hash::Hasher::finish(&h));
        }
    }

    #[test]
    fn hash_depends_on_ports_key_and_protocol() {
        let a = "198.18.0.1".parse().unwrap();
        let b = "198.18.0.2".parse().unwrap();
        let t1 = Tuple::new(a, b, 1000, 80);
        let t2 = Tuple::new(a, b, 1001, 80);
        let h = |s: u64, p, t: &Tuple| flow_hash(&HashKey([s, 0]), Family::V4, p, t);
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
            counts[shard_of(flow_hash(&HashKey::FIXED, Family::V4, PROTO_TCP, &t), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    /// Flows from one source port to one destination port, to `legacy_collisions_v6`.
    fn colliding_flows(n: u16) -> Vec<Tuple> {
        let src: core::net::IpAddr = "2001:2::1".parse().unwrap();
        legacy_collisions_v6(n)
            .map(|d| Tuple::new(src, core::net::IpAddr::V6(d.into()), 5000, 53))
            .collect()
    }

    #[test]
    fn old_hash_collides_for_every_seed_new_hash_spreads() {
        let flows = colliding_flows(4096);
        assert_eq!(flows.len(), 4096);
        for seed in [0, 1, 0x5eed_f00d_cafe_d00d, 0x9e37_79b9_7f4a_7c15] {
            let h0 = legacy::flow_hash(seed, Family::V6, PROTO_UDP, &flows[0]);
            for t in &flows {
                assert_eq!(
                    legacy::flow_hash(seed, Family::V6, PROTO_UDP, t),
                    h0,
                    "{t:?}"
                );
            }
        }
        // The same flows under SipHash: spread over 2^16 buckets as random keys would be.
        for key in [HashKey::FIXED, HashKey([1, 2]), HashKey([u64::MAX, 7])] {
            let mut chain = vec![0u32; 1 << 16];
            for t in &flows {
                chain[(flow_hash(&key, Family::V6, PROTO_UDP, t) & 0xffff) as usize] += 1;
            }
            let longest = chain.iter().max().copied().unwrap();
            let used = chain.iter().filter(|&&c| c > 0).count();
            assert!(longest <= 4, "longest chain {longest}");
            assert!(used > 3900, "{used} buckets used");
        }
    }

    #[test]
    fn key_reads_32_hex_digits() {
        let k = HashKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(k.0[0], 0x0706_0504_0302_0100);
        assert_eq!(k.0[1], 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(k.to_hex(), "000102030405060708090a0b0c0d0e0f");
        assert!(HashKey::from_hex("0123")
            .unwrap_err()
            .contains("32 hex digits"));
        assert!(HashKey::from_hex("zz0102030405060708090a0b0c0d0e0f")
            .unwrap_err()
            .contains("non-hex"));
        assert_eq!(format!("{k:?}"), "HashKey(..)");
    }
}
