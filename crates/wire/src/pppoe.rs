//! PPPoE (RFC 2516) session header and the PPP protocol field behind it.
//!
//! A session frame (ethertype 0x8864) carries `ver/type, code, session id, length`, then a PPP
//! frame whose first two bytes are the PPP protocol: 0x0021 IPv4, 0x0057 IPv6, 0xc021 LCP, ...
//! `length` counts the PPP frame (protocol field included), not the Ethernet padding after it.

use crate::Malformed;

/// PPP protocol numbers (RFC 1661 section 2, IANA "PPP DLL protocol numbers").
pub mod ppp_proto {
    /// Internet Protocol version 4.
    pub const IPV4: u16 = 0x0021;
    /// Internet Protocol version 6.
    pub const IPV6: u16 = 0x0057;
    /// Link Control Protocol.
    pub const LCP: u16 = 0xc021;
    /// IP Control Protocol.
    pub const IPCP: u16 = 0x8021;

    /// Values 0x8000 and up are control protocols (NCPs 0x8xxx-0xbxxx, link-layer control such
    /// as LCP, PAP, CHAP 0xcxxx-0xfxxx): they carry no network-layer datagram. Everything below
    /// is a network-layer protocol (or a compressed protocol field, whose first byte is odd).
    #[inline]
    pub const fn is_control(proto: u16) -> bool {
        proto >= 0x8000
    }
}

mod field {
    use core::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const PROTOCOL: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Bytes from the PPPoE header to the PPP payload: the 6-byte PPPoE header and the 2-byte PPP
/// protocol field.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Bytes of the PPPoE header that `length` does not count.
pub const LENGTH_BASE: usize = field::PROTOCOL.start;

/// Zero-copy view of a PPPoE session header and PPP protocol field (the bytes after ethertype
/// 0x8864).
#[derive(Debug, Clone, Copy)]
pub struct PppoeSession<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PppoeSession<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        PppoeSession { buffer }
    }

    /// Wraps a buffer, checking that the header and the protocol field are there.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::TruncatedPppoe);
        }
        Ok(PppoeSession { buffer })
    }

    /// Version (high nibble of the first byte); 1 in RFC 2516.
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// Type (low nibble of the first byte); 1 in RFC 2516.
    #[inline]
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// Code: 0 for session data.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Session identifier.
    #[inline]
    pub fn session_id(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::SESSION.start], b[field::SESSION.start + 1]])
    }

    /// Length of the PPP frame: protocol field and payload.
    #[inline]
    pub fn length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// The PPP protocol field.
    #[inline]
    pub fn protocol(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::PROTOCOL.start], b[field::PROTOCOL.start + 1]])
    }

    /// The PPP payload (an IP packet for [`ppp_proto::IPV4`]/[`ppp_proto::IPV6`]), up to the
    /// end of the buffer (padding included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> PppoeSession<T> {
    /// Sets the length field (a rewritten payload of another size, e.g. a REJECT reply).
    #[inline]
    pub fn set_length(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a PPPoE session frame's payload as an access concentrator sees it:
    /// ver 1 type 1, code 0, session 0x0b3a, length 0x0036 (54 = 2 + a 52-byte IPv4 packet),
    /// protocol IPv4, then the IP version/IHL byte.
    const SESSION_IPV4: [u8; 9] = [0x11, 0x00, 0x0b, 0x3a, 0x00, 0x36, 0x00, 0x21, 0x45];

    #[test]
    fn session_header_fields() {
        let s = PppoeSession::new_checked(&SESSION_IPV4[..]).unwrap();
        assert_eq!((s.version(), s.kind(), s.code()), (1, 1, 0));
        assert_eq!(s.session_id(), 0x0b3a);
        assert_eq!(s.length(), 54);
        assert_eq!(s.protocol(), ppp_proto::IPV4);
        assert_eq!(s.payload(), &[0x45]);
        let mut buf = SESSION_IPV4;
        let mut w = PppoeSession::new_unchecked(&mut buf[..]);
        w.set_length(30);
        assert_eq!(w.length(), 30);
        assert_eq!(&buf[4..6], &[0, 30]);
    }

    #[test]
    fn truncated_and_protocol_classes() {
        assert_eq!(
            PppoeSession::new_checked(&SESSION_IPV4[..7]).unwrap_err(),
            Malformed::TruncatedPppoe
        );
        assert!(ppp_proto::is_control(ppp_proto::LCP) && ppp_proto::is_control(ppp_proto::IPCP));
        assert!(!ppp_proto::is_control(ppp_proto::IPV4) && !ppp_proto::is_control(ppp_proto::IPV6));
        // a compressed (1-byte) IPv4 protocol field followed by an IPv4 header reads as 0x2145:
        // a network-layer value, never a control protocol
        assert!(!ppp_proto::is_control(0x2145));
    }
}
