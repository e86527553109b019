//! UDP header (RFC 768).

use crate::{checksum, ip_proto, Malformed};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Zero-copy view of a UDP datagram.
///
/// `new_checked` guarantees the header is present and the length field lies between 8 and the
/// buffer length (conntrack's `udp_error` check).
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer (the IP payload) after checking the header and length field.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Malformed::TruncatedUdpHeader);
        }
        let packet = UdpPacket { buffer };
        let claimed = usize::from(packet.len());
        if claimed < HEADER_LEN || claimed > len {
            return Err(Malformed::BadUdpLength);
        }
        Ok(packet)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT.start)
    }

    /// Length field: header plus data.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH.start)
    }

    /// Checksum as on the wire (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Data: from the header to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The checksum verifies over IPv4; a zero checksum ("none") is accepted.
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        self.checksum() == 0 || checksum::verify_l4_v4(src, dst, ip_proto::UDP, self.datagram())
    }

    /// The checksum verifies over IPv6, where zero is not allowed (RFC 8200 section 8.1).
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        self.checksum() != 0 && checksum::verify_l4_v6(src, dst, ip_proto::UDP, self.datagram())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port (checksum not updated).
    pub fn set_src_port(&mut self, value: u16) {
        self.set_u16_at(field::SRC_PORT.start, value);
    }

    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, value: u16) {
        self.set_u16_at(field::DST_PORT.start, value);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        self.set_u16_at(field::LENGTH.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Mutable data.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes the checksum over IPv4 (a computed 0 is sent as 0xffff).
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v4(src, dst, ip_proto::UDP, self.datagram());
        self.set_checksum(checksum::udp_nonzero(c));
    }

    /// Computes the checksum over IPv6 (a computed 0 is sent as 0xffff).
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v6(src, dst, ip_proto::UDP, self.datagram());
        self.set_checksum(checksum::udp_nonzero(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{UDP4, UDP6};

    const C1: [u8; 4] = [198, 18, 0, 1];
    const C2: [u8; 4] = [198, 18, 0, 2];

    #[test]
    fn captured_v4() {
        let u = UdpPacket::new_checked(&UDP4[34..]).unwrap();
        assert_eq!(u.src_port(), 40001);
        assert_eq!(u.dst_port(), 9999);
        assert_eq!(u.len(), 12);
        assert_eq!(u.payload(), b"ping");
        assert_eq!(u.checksum(), u16::from_be_bytes([UDP4[40], UDP4[41]]));
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum_v4(C1, C2));
        assert!(!u.verify_checksum_v4(C1, [198, 18, 0, 9]));
    }

    #[test]
    fn captured_v6() {
        let a1: [u8; 16] = UDP6[22..38].try_into().unwrap();
        let a2: [u8; 16] = UDP6[38..54].try_into().unwrap();
        let u = UdpPacket::new_checked(&UDP6[54..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (40002, 9999, 13));
        assert_eq!(u.payload(), b"ping6");
        assert!(u.verify_checksum_v6(&a1, &a2));
        let mut frame = UDP6;
        let mut u = UdpPacket::new_unchecked(&mut frame[54..]);
        u.fill_checksum_v6(&a1, &a2);
        assert_eq!(frame, UDP6);
        let mut u = UdpPacket::new_unchecked(&mut frame[54..]);
        u.set_checksum(0);
        assert!(!UdpPacket::new_checked(&frame[54..])
            .unwrap()
            .verify_checksum_v6(&a1, &a2));
    }

    #[test]
    fn zero_checksum_v4_is_none() {
        let mut frame = UDP4;
        UdpPacket::new_unchecked(&mut frame[34..]).set_checksum(0);
        assert!(UdpPacket::new_checked(&frame[34..])
            .unwrap()
            .verify_checksum_v4(C1, C2));
    }

    #[test]
    fn checked_rejections() {
        let d = &UDP4[34..];
        assert_eq!(
            UdpPacket::new_checked(&d[..7]).unwrap_err(),
            Malformed::TruncatedUdpHeader
        );
        assert_eq!(
            UdpPacket::new_checked(&d[..11]).unwrap_err(),
            Malformed::BadUdpLength
        );
        let mut bad = UDP4;
        bad[38..40].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&bad[34..]).unwrap_err(),
            Malformed::BadUdpLength
        );
    }

    #[test]
    fn setters_rebuild_capture() {
        let mut buf = [0u8; 12];
        let mut u = UdpPacket::new_unchecked(&mut buf[..]);
        u.set_src_port(40001);
        u.set_dst_port(9999);
        u.set_len(12);
        u.payload_mut().copy_from_slice(b"ping");
        u.fill_checksum_v4(C1, C2);
        assert_eq!(&buf[..], &UDP4[34..]);
    }
}
