//! IPv4 header (RFC 791) with options.

use crate::checksum;
use crate::Malformed;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Zero-copy view of an IPv4 packet.
///
/// `new_checked` guarantees the header (with options) and `total_len` bytes are present, so the
/// accessors cannot panic on a checked view. Bytes after `total_len` (Ethernet padding) are not
/// part of [`Ipv4Packet::payload`].
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking version, IHL and total length against the buffer, the
    /// same checks the kernel makes before netfilter sees a packet.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let packet = Ipv4Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), Malformed> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Malformed::TruncatedIpv4Header);
        }
        if self.version() != 4 {
            return Err(Malformed::BadIpVersion);
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN || header_len > len {
            return Err(Malformed::BadIpv4HeaderLength);
        }
        let total = usize::from(self.total_len());
        if total < header_len || total > len {
            return Err(Malformed::BadIpv4TotalLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Version nibble (4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP (upper six bits of the TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::TOS] >> 2
    }

    /// ECN (lower two bits of the TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::TOS] & 0x03
    }

    /// Total length of header plus payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::TOTAL_LEN.start)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG.start) & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the wire field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLAGS_FRAG.start) & OFFSET_MASK) << 3
    }

    /// True when this packet is any fragment (MF set or offset non-zero).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG.start) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload, see [`crate::ip_proto`].
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum as on the wire.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }

    /// The header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buffer.as_ref()[..self.header_len()])
    }

    /// Raw option bytes (between the fixed header and IHL * 4).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Iterator over the options; stops at End-of-Options, yields one error and stops on a
    /// malformed option.
    pub fn option_iter(&self) -> Ipv4Options<'_> {
        Ipv4Options::new(self.options())
    }

    /// Payload: from the end of the header to `total_len`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len & 3 == 0 && (20..=60).contains(&header_len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
    }

    /// Sets the TOS byte from DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::TOS] = (dscp << 2) | (ecn & 3);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.set_u16_at(field::TOTAL_LEN.start, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        self.set_u16_at(field::IDENT.start, value);
    }

    /// Sets DF, MF and the fragment offset (in bytes, a multiple of 8).
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        self.set_u16_at(field::FLAGS_FRAG.start, v);
    }

    /// Sets the TTL (checksum not updated).
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Sets the source address (checksum not updated).
    pub fn set_src(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the destination address (checksum not updated).
    pub fn set_dst(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(c);
    }

    /// Decrements the TTL and patches the checksum incrementally (RFC 1624).
    pub fn decrement_ttl(&mut self) {
        let b = self.buffer.as_ref();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let ttl = self.ttl().wrapping_sub(1);
        self.set_ttl(ttl);
        let new = u16::from_be_bytes([ttl, self.protocol()]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Mutable payload (header end to `total_len`).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// IPv4 option kinds (the full type byte, copy flag included).
pub mod option_kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Record route.
    pub const RECORD_ROUTE: u8 = 7;
    /// Timestamp.
    pub const TIMESTAMP: u8 = 68;
    /// Loose source and record route.
    pub const LSRR: u8 = 131;
    /// Strict source and record route.
    pub const SSRR: u8 = 137;
    /// Router alert (RFC 2113).
    pub const ROUTER_ALERT: u8 = 148;
}

/// One IPv4 option: its type byte and the bytes after the length byte (empty for NOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// Option type byte, see [`option_kind`].
    pub kind: u8,
    /// Option data, without the type and length bytes.
    pub data: &'a [u8],
}

/// Iterator over IPv4 options, see [`Ipv4Packet::option_iter`].
#[derive(Debug, Clone)]
pub struct Ipv4Options<'a> {
    rest: &'a [u8],
}

impl<'a> Ipv4Options<'a> {
    /// Iterates over raw option bytes.
    pub fn new(options: &'a [u8]) -> Self {
        Ipv4Options { rest: options }
    }
}

impl<'a> Iterator for Ipv4Options<'a> {
    type Item = Result<Ipv4Option<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            option_kind::END => {
                self.rest = &[];
                None
            }
            option_kind::NOP => {
                self.rest = after;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                let len = usize::from(*after.first().unwrap_or(&0));
                if len < 2 || len > self.rest.len() {
                    self.rest = &[];
                    return Some(Err(Malformed::BadIpv4Option));
                }
                let data = &self.rest[2..len];
                self.rest = &self.rest[len..];
                Some(Ok(Ipv4Option { kind, data }))
            }
        }
    }
}

/// Owned summary of an IPv4 header for building packets (off the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// DSCP and ECN as the TOS byte.
    pub tos: u8,
}

impl Ipv4Repr {
    /// Reads the fixed header fields of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Self {
        Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len() as u16,
            ttl: packet.ttl(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            tos: (packet.dscp() << 2) | packet.ecn(),
        }
    }

    /// Writes a 20-byte header (no options) with a valid checksum into `buf[..20]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..MIN_HEADER_LEN]);
        p.set_version_and_header_len(MIN_HEADER_LEN);
        p.set_dscp_ecn(self.tos >> 2, self.tos & 3);
        p.set_total_len(MIN_HEADER_LEN as u16 + self.payload_len);
        p.set_ident(self.ident);
        p.set_flags_and_offset(self.dont_frag, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{ICMP_ECHO_REQUEST, IPV4_LATER_FRAGMENT, TCP_SYN};
    use crate::ip_proto;

    #[test]
    fn captured_echo_request_header() {
        let p = Ipv4Packet::new_checked(&ICMP_ECHO_REQUEST[14..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 0);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.ident(), 0x6bc0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::ICMP);
        assert_eq!(p.checksum(), 0x42e9);
        assert!(p.verify_checksum());
        assert_eq!(p.src(), [198, 18, 0, 1]);
        assert_eq!(p.dst(), [198, 18, 0, 2]);
        assert_eq!(p.payload().len(), 24);
        assert_eq!(p.option_iter().count(), 0);
    }

    #[test]
    fn captured_later_fragment() {
        let p = Ipv4Packet::new_checked(&IPV4_LATER_FRAGMENT[14..]).unwrap();
        assert!(p.is_fragment());
        assert!(!p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.total_len(), 548);
        assert!(p.verify_checksum());
    }

    #[test]
    fn checked_rejections() {
        let ip = &TCP_SYN[14..];
        assert_eq!(
            Ipv4Packet::new_checked(&ip[..19]).unwrap_err(),
            Malformed::TruncatedIpv4Header
        );
        let mut bad = TCP_SYN;
        bad[14] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[14..]).unwrap_err(),
            Malformed::BadIpVersion
        );
        bad[14] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[14..]).unwrap_err(),
            Malformed::BadIpv4HeaderLength
        );
        bad[14] = 0x4f; // 60-byte header in a 59-byte packet
        assert_eq!(
            Ipv4Packet::new_checked(&bad[14..73]).unwrap_err(),
            Malformed::BadIpv4HeaderLength
        );
        assert_eq!(
            Ipv4Packet::new_checked(&ip[..59]).unwrap_err(),
            Malformed::BadIpv4TotalLength
        );
        let mut short_total = TCP_SYN;
        short_total[16..18].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&short_total[14..]).unwrap_err(),
            Malformed::BadIpv4TotalLength
        );
    }

    #[test]
    fn options_iterate() {
        // Router alert (4 bytes), NOP, timestamp-ish option of length 3, END, junk.
        let opts = [148, 4, 0, 0, 1, 68, 3, 9, 0, 0xff, 0xff, 0xff];
        let got: Vec<_> = Ipv4Options::new(&opts).collect();
        assert_eq!(
            got,
            vec![
                Ok(Ipv4Option {
                    kind: option_kind::ROUTER_ALERT,
                    data: &[0, 0]
                }),
                Ok(Ipv4Option {
                    kind: option_kind::NOP,
                    data: &[]
                }),
                Ok(Ipv4Option {
                    kind: option_kind::TIMESTAMP,
                    data: &[9]
                }),
            ]
        );
        let bad = [7, 1, 0, 0];
        assert_eq!(
            Ipv4Options::new(&bad).collect::<Vec<_>>(),
            vec![Err(Malformed::BadIpv4Option)]
        );
        let past_end = [7, 9, 0, 0];
        assert_eq!(
            Ipv4Options::new(&past_end).next(),
            Some(Err(Malformed::BadIpv4Option))
        );
        assert_eq!(
            Ipv4Options::new(&[7]).next(),
            Some(Err(Malformed::BadIpv4Option))
        );
    }

    #[test]
    fn header_with_options_and_padding() {
        // 24-byte header with a router alert option, 4 payload bytes, 2 bytes of padding.
        let mut buf = [0u8; 30];
        Ipv4Repr {
            src: [198, 18, 0, 1],
            dst: [198, 18, 0, 2],
            protocol: ip_proto::UDP,
            payload_len: 8,
            ttl: 1,
            ident: 7,
            dont_frag: false,
            tos: 0,
        }
        .emit(&mut buf);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(28);
        buf[20..24].copy_from_slice(&[148, 4, 0, 0]);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 4);
        assert!(p.verify_checksum());
        assert_eq!(
            p.option_iter().next(),
            Some(Ok(Ipv4Option {
                kind: option_kind::ROUTER_ALERT,
                data: &[0, 0]
            }))
        );
    }

    #[test]
    fn repr_round_trip_matches_capture() {
        let p = Ipv4Packet::new_checked(&ICMP_ECHO_REQUEST[14..]).unwrap();
        let repr = Ipv4Repr::parse(&p);
        let mut out = [0u8; 20];
        repr.emit(&mut out);
        assert_eq!(&out[..], &ICMP_ECHO_REQUEST[14..34]);
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut frame = TCP_SYN;
        let mut p = Ipv4Packet::new_unchecked(&mut frame[14..]);
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }
}
