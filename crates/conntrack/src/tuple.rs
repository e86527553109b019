//! Flow tuples in both directions, IPv4 and IPv6 in one layout.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::icmp;

/// IP protocol numbers the tracker knows by name.
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// Address family of a connection.
///
/// Not `wire::Family`, on purpose: that one is a frame's family and has `NonIp` (ARP, LLDP),
/// which no connection has; here the type says a tracked packet is IPv4 or IPv6, the entry
/// stores it as its IP version (4 or 6, `repr(u8)`) and the flow hash takes it in. A third,
/// `rules::ast::Family`, is a ruleset's (iptables or ip6tables). A frame's family becomes a
/// connection's once, in `CtPacket::from_frame` (a non-IP frame is refused there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

impl Family {
    pub(crate) fn from_u8(v: u8) -> Family {
        if v == 6 {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// Direction of a packet relative to the connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub(crate) fn from_bit(b: u32) -> Dir {
        if b & 1 == 0 {
            Dir::Original
        } else {
            Dir::Reply
        }
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

/// One direction of a flow, as netfilter's `nf_conntrack_tuple` without the protocol fields
/// (family and protocol are stored once per entry).
///
/// Addresses are 16 bytes; an IPv4 address uses the first 4 and leaves the rest zero. For TCP,
/// UDP and other port-based protocols `sport`/`dport` are the ports; for ICMP and ICMPv6
/// `sport` is the identifier and `dport` is `type << 8 | code`, which is how the reply
/// expectation carries the reply type; for other protocols both are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Tuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

pub(crate) fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

pub(crate) fn ip_of(family: Family, a: &[u8; 16]) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(*a)),
    }
}

impl Tuple {
    /// A tuple from addresses of one family and the protocol's two 16-bit fields.
    pub fn new(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Tuple {
        Tuple {
            src: addr16(src),
            dst: addr16(dst),
            sport,
            dport,
        }
    }

    /// An ICMP/ICMPv6 tuple: identifier, type and code.
    pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, id: u16) -> Tuple {
        Tuple::new(src, dst, id, u16::from(ty) << 8 | u16::from(code))
    }

    pub fn src_ip(&self, family: Family) -> IpAddr {
        ip_of(family, &self.src)
    }

    pub fn dst_ip(&self, family: Family) -> IpAddr {
        ip_of(family, &self.dst)
    }

    /// ICMP type of an ICMP tuple.
    pub fn icmp_type(&self) -> u8 {
        (self.dport >> 8) as u8
    }

    /// ICMP code of an ICMP tuple.
    pub fn icmp_code(&self) -> u8 {
        self.dport as u8
    }

    /// ICMP identifier of an ICMP tuple.
    pub fn icmp_id(&self) -> u16 {
        self.sport
    }

    /// The tuple a reply carries, as `nf_ct_invert_tuple`: addresses swapped, ports swapped,
    /// ICMP request types mapped to their reply type (identifier and code kept). `None` where
    /// netfilter cannot invert (an ICMP type that is not a request or reply).
    pub fn invert(&self, family: Family, proto: u8) -> Option<Tuple> {
        let mut t = Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        };
        match (family, proto) {
            (Family::V4, PROTO_ICMP) | (Family::V6, PROTO_ICMPV6) => {
                let ty = icmp::invert_type(family, self.icmp_type())?;
                t.sport = self.sport;
                t.dport = u16::from(ty) << 8 | u16::from(self.icmp_code());
            }
            _ => {}
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_tcp_swaps_addresses_and_ports() {
        let t = Tuple::new(
            "198.18.0.1".parse().unwrap(),
            "198.18.1.2".parse().unwrap(),
            40000,
            80,
        );
        let r = t.invert(Family::V4, PROTO_TCP).unwrap();
        assert_eq!(r.src_ip(Family::V4).to_string(), "198.18.1.2");
        assert_eq!(r.dst_ip(Family::V4).to_string(), "198.18.0.1");
        assert_eq!((r.sport, r.dport), (80, 40000));
        assert_eq!(r.invert(Family::V4, PROTO_TCP).unwrap(), t);
    }

    #[test]
    fn invert_icmp_maps_request_to_reply_keeping_id() {
        let a = "198.18.0.1".parse().unwrap();
        let b = "198.18.0.2".parse().unwrap();
        for (req, rep) in [(8u8, 0u8), (13, 14), (15, 16), (17, 18)] {
            let t = Tuple::icmp(a, b, req, 0, 4711);
            let r = t.invert(Family::V4, PROTO_ICMP).unwrap();
            assert_eq!((r.icmp_type(), r.icmp_code(), r.icmp_id()), (rep, 0, 4711));
            assert_eq!(r.src, t.dst);
        }
        // Destination unreachable has no inverse.
        assert!(Tuple::icmp(a, b, 3, 1, 0)
            .invert(Family::V4, PROTO_ICMP)
            .is_none());
        let a6 = "2001:2::1".parse().unwrap();
        let b6 = "2001:2::2".parse().unwrap();
        let r = Tuple::icmp(a6, b6, 128, 0, 9)
            .invert(Family::V6, PROTO_ICMPV6)
            .unwrap();
        assert_eq!(r.icmp_type(), 129);
        let r = Tuple::icmp(a6, b6, 139, 0, 9)
            .invert(Family::V6, PROTO_ICMPV6)
            .unwrap();
        assert_eq!(r.icmp_type(), 140);
        assert!(Tuple::icmp(a6, b6, 135, 0, 0)
            .invert(Family::V6, PROTO_ICMPV6)
            .is_none());
    }
}
