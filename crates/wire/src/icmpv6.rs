//! ICMPv6 (RFC 4443) and the neighbour discovery messages (RFC 4861) a bridge sees.

use crate::ethernet::MacAddr;
use crate::{checksum, ip_proto, Malformed};

/// ICMPv6 message types.
pub mod msg_type {
    /// Destination unreachable (error).
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big (error).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error).
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Multicast listener query.
    pub const MLD_QUERY: u8 = 130;
    /// Multicast listener report (v1).
    pub const MLD_REPORT: u8 = 131;
    /// Multicast listener done.
    pub const MLD_DONE: u8 = 132;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
    /// Multicast listener report v2.
    pub const MLD2_REPORT: u8 = 143;
}

/// Codes of destination-unreachable messages (ip6tables `--reject-with` names in brackets).
pub mod unreachable {
    /// No route to destination (icmp6-no-route).
    pub const NO_ROUTE: u8 = 0;
    /// Administratively prohibited (icmp6-adm-prohibited).
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Beyond scope of source address.
    pub const BEYOND_SCOPE: u8 = 2;
    /// Address unreachable (icmp6-addr-unreachable).
    pub const ADDRESS: u8 = 3;
    /// Port unreachable (icmp6-port-unreachable, REJECT's default).
    pub const PORT: u8 = 4;
    /// Source address failed ingress/egress policy.
    pub const FAILED_POLICY: u8 = 5;
    /// Reject route to destination.
    pub const REJECT_ROUTE: u8 = 6;
}

/// Codes of time-exceeded messages.
pub mod time_exceeded {
    /// Hop limit exceeded in transit.
    pub const HOP_LIMIT: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// Neighbour advertisement flag bits (byte 4).
pub mod na_flags {
    /// Sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// Sent in response to a solicitation.
    pub const SOLICITED: u8 = 0x40;
    /// Override an existing cache entry.
    pub const OVERRIDE: u8 = 0x20;
}

/// NDP option types carrying a link-layer address.
pub mod ndp_option {
    /// Source link-layer address.
    pub const SOURCE_LINK_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LINK_ADDR: u8 = 2;
}

/// True for error messages (types below 128), which quote the offending packet.
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

/// True for messages whose identifier conntrack tracks like a port (echo request/reply).
#[inline]
pub const fn has_ident(msg_type: u8) -> bool {
    matches!(msg_type, msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY)
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const SEQ: Range<usize> = 6..8;
    pub const REST: Range<usize> = 4..8;
    pub const PAYLOAD: usize = 8;
    pub const TARGET: Range<usize> = 8..24;
    pub const NDP_OPTIONS: usize = 24;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = 8;

/// Length of a neighbour solicitation/advertisement before its options.
pub const ND_LEN: usize = 24;

/// Zero-copy view of an ICMPv6 message (the upper-layer bytes of the IPv6 packet).
#[derive(Debug, Clone, Copy)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking the header, and for neighbour solicitations and
    /// advertisements that the target address is present.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Malformed::TruncatedIcmpv6Header);
        }
        if matches!(b[0], msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT)
            && b.len() < ND_LEN
        {
            return Err(Malformed::TruncatedIcmpv6Header);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Message type, see [`msg_type`].
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as on the wire.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::SEQ.start)
    }

    /// The four type-specific header bytes: MTU of packet-too-big, pointer of parameter
    /// problem, flags of a neighbour advertisement.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// MTU of a packet-too-big message.
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// Neighbour advertisement flags, see [`na_flags`].
    #[inline]
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::REST.start]
    }

    /// True for error messages.
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type())
    }

    /// Bytes after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// For error messages, the quoted original packet (as much as fits in 1280 bytes).
    pub fn embedded(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.payload())
    }

    /// Target address of a neighbour solicitation/advertisement (or redirect); `None` for other
    /// types or when too short.
    pub fn target(&self) -> Option<[u8; 16]> {
        match self.msg_type() {
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT | msg_type::REDIRECT => self
                .buffer
                .as_ref()
                .get(field::TARGET)
                .map(|t| t.try_into().unwrap()),
            _ => None,
        }
    }

    /// The source/target link-layer address option of a neighbour solicitation/advertisement.
    pub fn ndp_link_addr(&self) -> Option<MacAddr> {
        self.target()?;
        let mut rest = self.buffer.as_ref().get(field::NDP_OPTIONS..)?;
        while rest.len() >= 8 {
            let len = usize::from(rest[1]) * 8;
            if len == 0 || len > rest.len() {
                return None;
            }
            if matches!(
                rest[0],
                ndp_option::SOURCE_LINK_ADDR | ndp_option::TARGET_LINK_ADDR
            ) && len == 8
            {
                return Some(MacAddr(rest[2..8].try_into().unwrap()));
            }
            rest = &rest[len..];
        }
        None
    }

    /// The checksum verifies (the view must span exactly the message).
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::verify_l4_v6(src, dst, ip_proto::ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code.
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Sets the echo identifier (checksum not updated).
    pub fn set_echo_ident(&mut self, value: u16) {
        self.set_u16_at(field::IDENT.start, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq(&mut self, value: u16) {
        self.set_u16_at(field::SEQ.start, value);
    }

    /// Sets the four type-specific header bytes.
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the target address of a neighbour solicitation/advertisement.
    pub fn set_target(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&addr);
    }

    /// Mutable bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Computes the checksum from scratch (the view must span exactly the message).
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v6(src, dst, ip_proto::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{
        ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ICMPV6_PORT_UNREACH, NEIGHBOR_ADVERT,
        NEIGHBOR_SOLICIT, UDP6,
    };

    fn addrs(frame: &[u8]) -> ([u8; 16], [u8; 16]) {
        (
            frame[22..38].try_into().unwrap(),
            frame[38..54].try_into().unwrap(),
        )
    }

    const A2: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    #[test]
    fn captured_echo() {
        let (s, d) = addrs(&ICMPV6_ECHO_REQUEST);
        let m = Icmpv6Packet::new_checked(&ICMPV6_ECHO_REQUEST[54..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(m.code(), 0);
        assert_eq!((m.echo_ident(), m.echo_seq()), (8948, 1));
        assert!(!m.is_error() && has_ident(m.msg_type()));
        assert!(m.verify_checksum(&s, &d));
        assert!(!m.verify_checksum(&d, &[0; 16]));
        assert_eq!(m.target(), None);

        let (s, d) = addrs(&ICMPV6_ECHO_REPLY);
        let m = Icmpv6Packet::new_checked(&ICMPV6_ECHO_REPLY[54..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::ECHO_REPLY);
        assert_eq!((m.echo_ident(), m.echo_seq()), (8948, 1));
        assert!(m.verify_checksum(&s, &d));
    }

    #[test]
    fn captured_port_unreachable() {
        let (s, d) = addrs(&ICMPV6_PORT_UNREACH);
        let m = Icmpv6Packet::new_checked(&ICMPV6_PORT_UNREACH[54..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(m.code(), unreachable::PORT);
        assert!(m.is_error());
        assert!(m.verify_checksum(&s, &d));
        assert_eq!(m.embedded(), Some(&UDP6[14..]));
    }

    #[test]
    fn captured_neighbour_discovery() {
        let (s, d) = addrs(&NEIGHBOR_SOLICIT);
        let m = Icmpv6Packet::new_checked(&NEIGHBOR_SOLICIT[54..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(m.target(), Some(A2));
        assert_eq!(m.ndp_link_addr(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(m.verify_checksum(&s, &d));

        let (s, d) = addrs(&NEIGHBOR_ADVERT);
        let m = Icmpv6Packet::new_checked(&NEIGHBOR_ADVERT[54..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::NEIGHBOR_ADVERT);
        assert_eq!(m.na_flags(), na_flags::SOLICITED | na_flags::OVERRIDE);
        assert_eq!(m.target(), Some(A2));
        assert_eq!(m.ndp_link_addr(), Some(MacAddr([2, 0, 0, 0, 0, 2])));
        assert!(m.verify_checksum(&s, &d));
    }

    #[test]
    fn checked_rejections() {
        assert_eq!(
            Icmpv6Packet::new_checked(&ICMPV6_ECHO_REQUEST[54..61]).unwrap_err(),
            Malformed::TruncatedIcmpv6Header
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&NEIGHBOR_ADVERT[54..77]).unwrap_err(),
            Malformed::TruncatedIcmpv6Header
        );
        // A bad NDP option length is not a parse error, just no address.
        let mut frame = NEIGHBOR_ADVERT;
        frame[54 + 25] = 0;
        assert_eq!(
            Icmpv6Packet::new_checked(&frame[54..])
                .unwrap()
                .ndp_link_addr(),
            None
        );
    }

    #[test]
    fn setters_turn_request_into_reply() {
        let (s, d) = addrs(&ICMPV6_ECHO_REQUEST);
        let mut m = Icmpv6Packet::new_checked(ICMPV6_ECHO_REQUEST[54..].to_vec()).unwrap();
        m.set_msg_type(msg_type::ECHO_REPLY);
        m.fill_checksum(&d, &s);
        assert_eq!(&m.into_inner()[..], &ICMPV6_ECHO_REPLY[54..]);
    }
}
