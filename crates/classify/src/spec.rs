//! The classifier's own rule representation (`RuleSpec`) and packet key (`Key`), with the exact
//! match semantics that both the linear reference and the compiled tree implement.
//!
//! Addresses are `u128` for both families: an IPv4 address sits in the low 32 bits, so one chain
//! (which is always of one family) never mixes the two.

/// Conntrack state bits, as carried in `Key::ct` and `CtMatch::mask`.
pub mod ct {
    pub const INVALID: u8 = 1 << 0;
    pub const NEW: u8 = 1 << 1;
    pub const RELATED: u8 = 1 << 2;
    pub const ESTABLISHED: u8 = 1 << 3;
    pub const UNTRACKED: u8 = 1 << 4;
    pub const SNAT: u8 = 1 << 5;
    pub const DNAT: u8 = 1 << 6;
}

/// An address constraint: the inclusive range `lo..=hi` (a prefix is a range), optionally negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrMatch {
    pub lo: u128,
    pub hi: u128,
    pub negate: bool,
}

impl AddrMatch {
    pub const ANY: AddrMatch = AddrMatch {
        lo: 0,
        hi: u128::MAX,
        negate: false,
    };

    /// `addr/len` for IPv4 (host bits are cleared, as iptables does).
    pub fn v4_prefix(addr: u32, len: u8) -> AddrMatch {
        if len == 0 {
            return AddrMatch::ANY;
        }
        let len = len.min(32);
        let mask = u32::MAX << (32 - len as u32);
        AddrMatch {
            lo: (addr & mask) as u128,
            hi: (addr | !mask) as u128,
            negate: false,
        }
    }

    /// `addr/len` for IPv6.
    pub fn v6_prefix(addr: u128, len: u8) -> AddrMatch {
        if len == 0 {
            return AddrMatch::ANY;
        }
        let len = len.min(128);
        let mask = u128::MAX << (128 - len as u32);
        AddrMatch {
            lo: addr & mask,
            hi: addr | !mask,
            negate: false,
        }
    }

    /// An inclusive range (`-m iprange`).
    pub fn range(lo: u128, hi: u128) -> AddrMatch {
        AddrMatch {
            lo,
            hi,
            negate: false,
        }
    }

    pub fn negated(self) -> AddrMatch {
        AddrMatch {
            negate: !self.negate,
            ..self
        }
    }

    pub fn is_any(&self) -> bool {
        *self == AddrMatch::ANY
    }

    #[inline]
    pub fn matches(&self, a: u128) -> bool {
        (self.lo <= a && a <= self.hi) != self.negate
    }
}

/// A port range constraint (`--sport lo:hi`), optionally negated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub lo: u16,
    pub hi: u16,
    pub negate: bool,
}

impl PortMatch {
    pub const ANY: PortMatch = PortMatch {
        lo: 0,
        hi: u16::MAX,
        negate: false,
    };

    pub fn range(lo: u16, hi: u16) -> PortMatch {
        PortMatch {
            lo,
            hi,
            negate: false,
        }
    }

    pub fn is_any(&self) -> bool {
        *self == PortMatch::ANY
    }

    #[inline]
    pub fn matches(&self, p: u16) -> bool {
        (self.lo <= p && p <= self.hi) != self.negate
    }
}

/// `-p`: any protocol, one protocol, or all but one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ProtoMatch {
    #[default]
    Any,
    Is(u8),
    IsNot(u8),
}

impl ProtoMatch {
    #[inline]
    pub fn matches(&self, p: u8) -> bool {
        match *self {
            ProtoMatch::Any => true,
            ProtoMatch::Is(x) => p == x,
            ProtoMatch::IsNot(x) => p != x,
        }
    }
}

/// `-i`/`-o`: the set of interface ids (0..64) that match. The dataplane maps interface names to
/// small ids; a wildcard (`eth+`) or a negation (`! -i eth0`) is just another set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceSet(pub u64);

impl IfaceSet {
    pub const ANY: IfaceSet = IfaceSet(u64::MAX);

    pub fn one(id: u8) -> IfaceSet {
        IfaceSet(1u64 << (id & 63))
    }

    #[inline]
    pub fn matches(&self, id: u8) -> bool {
        self.0 & (1u64 << (id & 63)) != 0
    }
}

/// `-m conntrack --ctstate`: matches if the packet has any of the bits of `mask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtMatch {
    pub mask: u8,
    pub negate: bool,
}

/// `-m icmp --icmp-type`: type 255 matches any type (iptables' `any`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub ty: u8,
    pub code_lo: u8,
    pub code_hi: u8,
    pub negate: bool,
}

/// `--tcp-flags mask cmp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlagsMatch {
    pub mask: u8,
    pub cmp: u8,
    pub negate: bool,
}

/// One rule of a chain, as far as the classifier is concerned. Anything that is not a dimension
/// here (limit, mac, length, ttl, ...) sets `leaf_check`: the caller's callback decides at the
/// leaf, after every dimension matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub proto: ProtoMatch,
    pub sport: PortMatch,
    pub dport: PortMatch,
    pub iif: IfaceSet,
    pub oif: IfaceSet,
    pub ct: Option<CtMatch>,
    pub icmp: Option<IcmpMatch>,
    pub tcp_flags: Option<TcpFlagsMatch>,
    /// `Some(true)`: `-f` (non-first fragments only); `Some(false)`: `! -f`.
    pub fragment: Option<bool>,
    pub leaf_check: bool,
}

impl Default for RuleSpec {
    fn default() -> Self {
        RuleSpec::ANY
    }
}

impl RuleSpec {
    /// Matches every packet.
    pub const ANY: RuleSpec = RuleSpec {
        src: AddrMatch::ANY,
        dst: AddrMatch::ANY,
        proto: ProtoMatch::Any,
        sport: PortMatch::ANY,
        dport: PortMatch::ANY,
        iif: IfaceSet::ANY,
        oif: IfaceSet::ANY,
        ct: None,
        icmp: None,
        tcp_flags: None,
        fragment: None,
        leaf_check: false,
    };

    /// True if the rule inspects layer-4 header fields, which a non-first fragment lacks
    /// (netfilter's tcp/udp/icmp matches then fail, whatever their negation).
    pub fn needs_l4(&self) -> bool {
        !self.sport.is_any()
            || !self.dport.is_any()
            || self.icmp.is_some()
            || self.tcp_flags.is_some()
    }

    /// Exact match on every dimension (not the leaf check).
    #[inline]
    pub fn matches(&self, k: &Key) -> bool {
        if !(self.src.matches(k.src) && self.dst.matches(k.dst) && self.proto.matches(k.proto)) {
            return false;
        }
        if !(self.iif.matches(k.iif) && self.oif.matches(k.oif)) {
            return false;
        }
        if let Some(f) = self.fragment {
            if f != k.frag {
                return false;
            }
        }
        if let Some(c) = self.ct {
            if ((k.ct & c.mask) != 0) == c.negate {
                return false;
            }
        }
        if self.needs_l4() {
            if k.frag {
                return false;
            }
            if !(self.sport.matches(k.sport) && self.dport.matches(k.dport)) {
                return false;
            }
            if let Some(i) = self.icmp {
                let hit = i.ty == 255
                    || (i.ty == k.icmp_type
                        && i.code_lo <= k.icmp_code
                        && k.icmp_code <= i.code_hi);
                if hit == i.negate {
                    return false;
                }
            }
            if let Some(t) = self.tcp_flags {
                if ((k.tcp_flags & t.mask) == t.cmp) == t.negate {
                    return false;
                }
            }
        }
        true
    }
}

/// The classification key of one packet: a compact copy of the header fields rules look at.
/// For a non-first fragment (`frag`) the layer-4 fields are meaningless and should be zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Key {
    pub src: u128,
    pub dst: u128,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub iif: u8,
    pub oif: u8,
    /// Conntrack state bits (`ct::*`).
    pub ct: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub tcp_flags: u8,
    /// Non-first fragment.
    pub frag: bool,
}

/// Result of a lookup when no rule at or after the start index matches.
pub const NO_MATCH: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Key {
        Key {
            src: u32::from_be_bytes(src) as u128,
            dst: u32::from_be_bytes(dst) as u128,
            sport,
            dport,
            proto: 6,
            tcp_flags: 0x02,
            ct: ct::NEW,
            ..Key::default()
        }
    }

    #[test]
    fn prefix_clears_host_bits_and_matches() {
        let m = AddrMatch::v4_prefix(u32::from_be_bytes([198, 18, 7, 9]), 16);
        assert_eq!(m.lo, u32::from_be_bytes([198, 18, 0, 0]) as u128);
        assert_eq!(m.hi, u32::from_be_bytes([198, 18, 255, 255]) as u128);
        assert!(m.matches(u32::from_be_bytes([198, 18, 200, 1]) as u128));
        assert!(!m.matches(u32::from_be_bytes([198, 19, 0, 0]) as u128));
        assert!(m
            .negated()
            .matches(u32::from_be_bytes([198, 19, 0, 0]) as u128));
        let v6 = AddrMatch::v6_prefix(0x2001_0002_0000_0000_0000_0000_0000_0001, 48);
        assert!(v6.matches(0x2001_0002_0000_ffff_0000_0000_0000_0000));
        assert!(!v6.matches(0x2001_0002_0001_0000_0000_0000_0000_0000));
    }

    #[test]
    fn fragments_fail_l4_matches_even_negated() {
        let mut r = RuleSpec {
            proto: ProtoMatch::Is(6),
            ..RuleSpec::ANY
        };
        r.dport = PortMatch {
            lo: 80,
            hi: 80,
            negate: true,
        };
        let mut k = tcp_key([198, 18, 0, 1], [198, 19, 0, 1], 1234, 22);
        assert!(r.matches(&k));
        k.frag = true;
        k.sport = 0;
        k.dport = 0;
        assert!(!r.matches(&k));
        // a rule without layer-4 matches still sees the fragment
        let f = RuleSpec {
            fragment: Some(true),
            ..RuleSpec::ANY
        };
        assert!(f.matches(&k));
        k.frag = false;
        assert!(!f.matches(&k));
    }

    #[test]
    fn ctstate_icmp_flags_ifaces() {
        let est = RuleSpec {
            ct: Some(CtMatch {
                mask: ct::ESTABLISHED | ct::RELATED,
                negate: false,
            }),
            ..RuleSpec::ANY
        };
        let mut k = tcp_key([198, 18, 0, 1], [198, 19, 0, 1], 1234, 80);
        assert!(!est.matches(&k));
        k.ct = ct::ESTABLISHED;
        assert!(est.matches(&k));
        let syn = RuleSpec {
            proto: ProtoMatch::Is(6),
            tcp_flags: Some(TcpFlagsMatch {
                mask: 0x17,
                cmp: 0x02,
                negate: false,
            }),
            iif: IfaceSet::one(1),
            ..RuleSpec::ANY
        };
        k.iif = 1;
        assert!(syn.matches(&k));
        k.tcp_flags = 0x12;
        assert!(!syn.matches(&k));
        k.tcp_flags = 0x02;
        k.iif = 0;
        assert!(!syn.matches(&k));
        let echo = RuleSpec {
            proto: ProtoMatch::Is(1),
            icmp: Some(IcmpMatch {
                ty: 8,
                code_lo: 0,
                code_hi: 255,
                negate: false,
            }),
            ..RuleSpec::ANY
        };
        let ping = Key {
            proto: 1,
            icmp_type: 8,
            ..k
        };
        assert!(echo.matches(&ping));
        assert!(!echo.matches(&Key {
            icmp_type: 0,
            ..ping
        }));
    }
}
