//! ICMP for IPv4 (RFC 792).

use crate::{checksum, Malformed};

/// ICMP message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (error).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 9;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 10;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (error).
    pub const PARAMETER_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request (obsolete).
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply (obsolete).
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const ADDRESS_MASK_REQUEST: u8 = 17;
    /// Address mask reply.
    pub const ADDRESS_MASK_REPLY: u8 = 18;
}

/// Codes of destination-unreachable messages (iptables `--reject-with` names in brackets).
pub mod unreachable {
    /// Network unreachable (icmp-net-unreachable).
    pub const NET: u8 = 0;
    /// Host unreachable (icmp-host-unreachable).
    pub const HOST: u8 = 1;
    /// Protocol unreachable (icmp-proto-unreachable).
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable (icmp-port-unreachable, REJECT's default).
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set; the next-hop MTU is in the header.
    pub const FRAG_NEEDED: u8 = 4;
    /// Source route failed.
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    /// Destination network unknown.
    pub const NET_UNKNOWN: u8 = 6;
    /// Destination host unknown.
    pub const HOST_UNKNOWN: u8 = 7;
    /// Source host isolated.
    pub const HOST_ISOLATED: u8 = 8;
    /// Network administratively prohibited (icmp-net-prohibited).
    pub const NET_PROHIBITED: u8 = 9;
    /// Host administratively prohibited (icmp-host-prohibited).
    pub const HOST_PROHIBITED: u8 = 10;
    /// Network unreachable for TOS.
    pub const NET_TOS: u8 = 11;
    /// Host unreachable for TOS.
    pub const HOST_TOS: u8 = 12;
    /// Communication administratively prohibited (icmp-admin-prohibited).
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Host precedence violation.
    pub const HOST_PRECEDENCE: u8 = 14;
    /// Precedence cutoff in effect.
    pub const PRECEDENCE_CUTOFF: u8 = 15;
}

/// Codes of time-exceeded messages.
pub mod time_exceeded {
    /// TTL reached zero in transit.
    pub const TTL: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const REASSEMBLY: u8 = 1;
}

/// True for error messages, which quote the offending datagram (conntrack's RELATED).
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        msg_type::DEST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAMETER_PROBLEM
    )
}

/// True for query messages whose identifier conntrack tracks like a port (echo, timestamp,
/// information, address mask).
#[inline]
pub const fn has_ident(msg_type: u8) -> bool {
    matches!(
        msg_type,
        msg_type::ECHO_REPLY
            | msg_type::ECHO_REQUEST
            | msg_type::TIMESTAMP
            | msg_type::TIMESTAMP_REPLY
            | msg_type::INFO_REQUEST
            | msg_type::INFO_REPLY
            | msg_type::ADDRESS_MASK_REQUEST
            | msg_type::ADDRESS_MASK_REPLY
    )
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
}

/// Length of the ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Zero-copy view of an ICMP message (the whole IP payload).
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps a buffer after checking the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::TruncatedIcmpHeader);
        }
        Ok(IcmpPacket { buffer })
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

    /// Identifier of echo/timestamp/info/mask messages.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }

    /// Sequence number of echo/timestamp/info/mask messages.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        self.u16_at(field::SEQ.start)
    }

    /// The four type-specific header bytes (gateway of a redirect, pointer, MTU, ...).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Next-hop MTU of a fragmentation-needed message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::SEQ.start)
    }

    /// True for error messages.
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type())
    }

    /// Bytes after the header (echo data, or the quoted datagram of an error).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// For error messages, the quoted original datagram (IPv4 header + at least 8 bytes when
    /// sent by a conforming host; may be truncated anywhere in a hostile one).
    pub fn embedded(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.payload())
    }

    /// The checksum verifies (the view must span exactly the message).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
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

    /// Mutable bytes after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Computes the checksum from scratch (the view must span exactly the message).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PORT_UNREACH, UDP4};
    use crate::ipv4::Ipv4Packet;

    #[test]
    fn captured_echo_request() {
        let m = IcmpPacket::new_checked(&ICMP_ECHO_REQUEST[34..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(m.code(), 0);
        assert_eq!(m.checksum(), 0xac68);
        assert_eq!(m.echo_ident(), 8947);
        assert_eq!(m.echo_seq(), 1);
        assert!(!m.is_error() && has_ident(m.msg_type()));
        assert_eq!(m.embedded(), None);
        assert_eq!(m.payload().len(), 16);
        assert!(m.verify_checksum());
    }

    #[test]
    fn captured_echo_reply() {
        let m = IcmpPacket::new_checked(&ICMP_ECHO_REPLY[34..]).unwrap();
        assert_eq!(m.msg_type(), msg_type::ECHO_REPLY);
        assert_eq!((m.echo_ident(), m.echo_seq()), (8947, 1));
        assert!(m.verify_checksum());
        assert_eq!(m.payload(), &ICMP_ECHO_REQUEST[42..]);
    }

    #[test]
    fn captured_port_unreachable_quotes_the_datagram() {
        let ip = Ipv4Packet::new_checked(&ICMP_PORT_UNREACH[14..]).unwrap();
        let m = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(m.msg_type(), msg_type::DEST_UNREACHABLE);
        assert_eq!(m.code(), unreachable::PORT);
        assert_eq!(m.rest_of_header(), 0);
        assert!(m.is_error() && !has_ident(m.msg_type()));
        assert!(m.verify_checksum());
        // Linux quotes the whole (small) UDP datagram it rejected.
        assert_eq!(m.embedded(), Some(&UDP4[14..]));
    }

    #[test]
    fn rejects_short_and_detects_corruption() {
        assert_eq!(
            IcmpPacket::new_checked(&ICMP_ECHO_REQUEST[34..41]).unwrap_err(),
            Malformed::TruncatedIcmpHeader
        );
        let mut frame = ICMP_ECHO_REQUEST;
        frame[50] ^= 1;
        assert!(!IcmpPacket::new_checked(&frame[34..])
            .unwrap()
            .verify_checksum());
        let mut m = IcmpPacket::new_unchecked(&mut frame[34..]);
        m.fill_checksum();
        assert!(m.verify_checksum());
    }

    #[test]
    fn setters_turn_request_into_reply() {
        let mut frame = ICMP_ECHO_REQUEST;
        let mut m = IcmpPacket::new_unchecked(&mut frame[34..]);
        m.set_msg_type(msg_type::ECHO_REPLY);
        m.fill_checksum();
        assert_eq!(&frame[34..], &ICMP_ECHO_REPLY[34..]);
    }
}
