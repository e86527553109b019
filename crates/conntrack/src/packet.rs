//! The packet description conntrack works on, built by the caller's parser.

use core::net::IpAddr;

use crate::tuple::{addr16, Family, Tuple, PROTO_ICMP, PROTO_ICMPV6};

/// What conntrack needs of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub sport: u16,
    pub dport: u16,
    /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE, CWR).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The raw (unscaled) window field.
    pub window: u16,
    /// Window scale option, if present.
    pub wscale: Option<u8>,
    /// SACK-permitted option present.
    pub sack_perm: bool,
    /// Highest right edge of the SACK blocks, if any.
    pub sack: Option<u32>,
    /// TCP payload bytes.
    pub payload_len: u32,
}

/// The header embedded in an ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorInfo {
    pub ty: u8,
    pub code: u8,
    /// Protocol of the embedded packet.
    pub inner_proto: u8,
    /// The embedded packet's tuple as it was sent (source = the host the error goes back to).
    pub inner: Tuple,
}

/// Layer 4 of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpSegment),
    Udp {
        sport: u16,
        dport: u16,
    },
    /// An ICMP or ICMPv6 message that is not an error (the family says which).
    Icmp {
        ty: u8,
        code: u8,
        id: u16,
    },
    /// An ICMP or ICMPv6 error with its embedded header.
    IcmpError(IcmpErrorInfo),
    /// Any other protocol (tracked by addresses and protocol number only).
    Other,
}

/// A parsed packet: the outer addresses, protocol and layer-4 facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPacket {
    pub family: Family,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub l4: L4,
}

impl CtPacket {
    fn base(src: IpAddr, dst: IpAddr, proto: u8, l4: L4) -> CtPacket {
        let family = if src.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        CtPacket {
            family,
            proto,
            src: addr16(src),
            dst: addr16(dst),
            l4,
        }
    }

    pub fn tcp(src: IpAddr, dst: IpAddr, seg: TcpSegment) -> CtPacket {
        CtPacket::base(src, dst, crate::tuple::PROTO_TCP, L4::Tcp(seg))
    }

    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> CtPacket {
        CtPacket::base(src, dst, crate::tuple::PROTO_UDP, L4::Udp { sport, dport })
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message; errors become [`L4::IcmpError`] only through
    /// [`CtPacket::icmp_error`].
    pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, id: u16) -> CtPacket {
        let proto = if src.is_ipv4() {
            PROTO_ICMP
        } else {
            PROTO_ICMPV6
        };
        CtPacket::base(src, dst, proto, L4::Icmp { ty, code, id })
    }

    pub fn icmp_error(src: IpAddr, dst: IpAddr, err: IcmpErrorInfo) -> CtPacket {
        let proto = if src.is_ipv4() {
            PROTO_ICMP
        } else {
            PROTO_ICMPV6
        };
        CtPacket::base(src, dst, proto, L4::IcmpError(err))
    }

    pub fn other(src: IpAddr, dst: IpAddr, proto: u8) -> CtPacket {
        CtPacket::base(src, dst, proto, L4::Other)
    }

    /// The tuple of this packet in its own direction.
    pub(crate) fn tuple(&self) -> Tuple {
        let (sport, dport) = match self.l4 {
            L4::Tcp(s) => (s.sport, s.dport),
            L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { ty, code, id } => (id, u16::from(ty) << 8 | u16::from(code)),
            L4::IcmpError(_) | L4::Other => (0, 0),
        };
        Tuple {
            src: self.src,
            dst: self.dst,
            sport,
            dport,
        }
    }
}
