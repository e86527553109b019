//! TCP header (RFC 9293) and options.

use crate::{checksum, ip_proto, Malformed};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// The eight TCP flag bits of byte 13 (the NS bit is ignored, as netfilter does).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True when every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any bit of `other` is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl core::fmt::Debug for TcpFlags {
    /// Prints iptables-style names, e.g. `TcpFlags(SYN|ACK)`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        f.write_str("TcpFlags(")?;
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// Zero-copy view of a TCP segment.
///
/// `new_checked` guarantees the header with its options is present.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer (the whole segment: header, options, data) after checking the data offset
    /// against it, as conntrack's `tcp_error` does.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let len = buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(Malformed::TruncatedTcpHeader);
        }
        let packet = TcpPacket { buffer };
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Malformed::TcpDataOffsetTooSmall);
        }
        if header_len > len {
            return Err(Malformed::TcpDataOffsetTooLarge);
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

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
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

    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        self.u32_at(field::SEQ.start)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack(&self) -> u32 {
        self.u32_at(field::ACK.start)
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// Flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Window (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW.start)
    }

    /// Checksum as on the wire.
    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        self.u16_at(field::URGENT.start)
    }

    /// Raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// Iterator over the options.
    pub fn option_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// Segment data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The checksum verifies over IPv4 (the view must span exactly the segment).
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        checksum::verify_l4_v4(src, dst, ip_proto::TCP, self.buffer.as_ref())
    }

    /// The checksum verifies over IPv6 (the view must span exactly the segment).
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::verify_l4_v6(src, dst, ip_proto::TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16_at(&mut self, at: usize, value: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    fn set_u32_at(&mut self, at: usize, value: u32) {
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port (checksum not updated).
    pub fn set_src_port(&mut self, value: u16) {
        self.set_u16_at(field::SRC_PORT.start, value);
    }

    /// Sets the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, value: u16) {
        self.set_u16_at(field::DST_PORT.start, value);
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, value: u32) {
        self.set_u32_at(field::SEQ.start, value);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack(&mut self, value: u32) {
        self.set_u32_at(field::ACK.start, value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); clears the reserved bits.
    pub fn set_header_len(&mut self, header_len: usize) {
        debug_assert!(header_len & 3 == 0 && (20..=60).contains(&header_len));
        self.buffer.as_mut()[field::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window.
    pub fn set_window(&mut self, value: u16) {
        self.set_u16_at(field::WINDOW.start, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_u16_at(field::CHECKSUM.start, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent(&mut self, value: u16) {
        self.set_u16_at(field::URGENT.start, value);
    }

    /// Mutable option bytes.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..end]
    }

    /// Mutable data.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over IPv4 from scratch (the view must span exactly the segment).
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v4(src, dst, ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Computes the checksum over IPv6 from scratch (the view must span exactly the segment).
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v6(src, dst, ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// TCP option kinds.
pub mod option_kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation.
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMPS: u8 = 8;
}

/// SACK blocks as they sit in the option: 1 to 4 pairs of (left edge, right edge).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SackBlocks<'a>(&'a [u8]);

impl<'a> SackBlocks<'a> {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// Always false for a parsed option (at least one block).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks as (left edge, right edge).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
    }
}

impl core::fmt::Debug for SackBlocks<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Padding.
    Nop,
    /// Maximum segment size.
    Mss(u16),
    /// Window scale shift count.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// Selective acknowledgment blocks.
    Sack(SackBlocks<'a>),
    /// Timestamps (RFC 7323).
    Timestamps {
        /// TSval.
        value: u32,
        /// TSecr.
        echo: u32,
    },
    /// Any other option, with its kind and data (after the length byte).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data.
        data: &'a [u8],
    },
}

/// Iterator over TCP options. Stops at End-of-Options; on an option whose length byte is
/// invalid, runs past the header, or does not fit its kind (e.g. MSS not 4 bytes), yields
/// `Err(BadTcpOption)` once and stops.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptions<'a> {
    /// Iterates over raw option bytes.
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptions { rest: options }
    }

    fn parse(kind: u8, data: &'a [u8]) -> Option<TcpOption<'a>> {
        let option = match (kind, data.len()) {
            (option_kind::MSS, 2) => TcpOption::Mss(u16::from_be_bytes([data[0], data[1]])),
            (option_kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (option_kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (option_kind::SACK, n) if n % 8 == 0 && (8..=32).contains(&n) => {
                TcpOption::Sack(SackBlocks(data))
            }
            (option_kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
                value: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                echo: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            (
                option_kind::MSS
                | option_kind::WINDOW_SCALE
                | option_kind::SACK_PERMITTED
                | option_kind::SACK
                | option_kind::TIMESTAMPS,
                _,
            ) => return None,
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Some(option)
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            option_kind::END => {
                self.rest = &[];
                None
            }
            option_kind::NOP => {
                self.rest = after;
                Some(Ok(TcpOption::Nop))
            }
            _ => {
                let len = usize::from(*after.first().unwrap_or(&0));
                if len < 2 || len > self.rest.len() {
                    self.rest = &[];
                    return Some(Err(Malformed::BadTcpOption));
                }
                let data = &self.rest[2..len];
                self.rest = &self.rest[len..];
                match Self::parse(kind, data) {
                    Some(option) => Some(Ok(option)),
                    None => {
                        self.rest = &[];
                        Some(Err(Malformed::BadTcpOption))
                    }
                }
            }
        }
    }
}

/// Appends the wire form of `option` to `out` (used by builders; NOPs are one byte).
pub fn emit_option(option: &TcpOption<'_>, out: &mut Vec<u8>) {
    match *option {
        TcpOption::Nop => out.push(option_kind::NOP),
        TcpOption::Mss(mss) => {
            out.extend_from_slice(&[option_kind::MSS, 4]);
            out.extend_from_slice(&mss.to_be_bytes());
        }
        TcpOption::WindowScale(shift) => {
            out.extend_from_slice(&[option_kind::WINDOW_SCALE, 3, shift])
        }
        TcpOption::SackPermitted => out.extend_from_slice(&[option_kind::SACK_PERMITTED, 2]),
        TcpOption::Sack(blocks) => {
            out.extend_from_slice(&[option_kind::SACK, 2 + blocks.0.len() as u8]);
            out.extend_from_slice(blocks.0);
        }
        TcpOption::Timestamps { value, echo } => {
            out.extend_from_slice(&[option_kind::TIMESTAMPS, 10]);
            out.extend_from_slice(&value.to_be_bytes());
            out.extend_from_slice(&echo.to_be_bytes());
        }
        TcpOption::Unknown { kind, data } => {
            out.extend_from_slice(&[kind, 2 + data.len() as u8]);
            out.extend_from_slice(data);
        }
    }
}

impl<'a> SackBlocks<'a> {
    /// Wraps raw SACK block bytes (a multiple of 8, 8 to 32 bytes) for [`emit_option`].
    pub fn from_bytes(bytes: &'a [u8]) -> Option<Self> {
        (bytes.len() & 7 == 0 && (8..=32).contains(&bytes.len())).then_some(SackBlocks(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{TCP6_PSH_DATA, TCP_PSH_DATA, TCP_SYN, TCP_SYN_ACK};

    const C1: [u8; 4] = [198, 18, 0, 1];
    const C2: [u8; 4] = [198, 18, 0, 2];

    #[test]
    fn captured_syn() {
        let t = TcpPacket::new_checked(&TCP_SYN[34..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 8080);
        assert_eq!(t.seq(), 292_909_402);
        assert_eq!(t.ack(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), TcpFlags::SYN);
        assert_eq!(t.window(), 64240);
        assert_eq!(t.checksum(), 0xc1c9);
        assert_eq!(t.urgent(), 0);
        assert!(t.verify_checksum_v4(C1, C2));
        assert!(!t.verify_checksum_v4(C2, [198, 18, 0, 3]));
        assert!(t.payload().is_empty());
        let opts: Vec<_> = t.option_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            opts,
            vec![
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    value: 151_697_264,
                    echo: 0
                },
                TcpOption::Nop,
                TcpOption::WindowScale(10),
            ]
        );
        let mut out = Vec::new();
        for o in &opts {
            emit_option(o, &mut out);
        }
        assert_eq!(out, t.options());
    }

    #[test]
    fn captured_syn_ack_and_data() {
        let t = TcpPacket::new_checked(&TCP_SYN_ACK[34..]).unwrap();
        assert_eq!(t.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert!(t.flags().contains(TcpFlags::ACK));
        assert_eq!(t.ack(), 292_909_403);
        assert!(t.verify_checksum_v4(C2, C1));

        let t = TcpPacket::new_checked(&TCP_PSH_DATA[34..]).unwrap();
        assert_eq!(t.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(t.header_len(), 32);
        assert_eq!(t.payload(), b"hello");
        assert!(t.verify_checksum_v4(C1, C2));
        assert_eq!(format!("{:?}", t.flags()), "TcpFlags(PSH|ACK)");
    }

    #[test]
    fn captured_v6_checksum() {
        let a1 = TCP6_PSH_DATA[22..38].try_into().unwrap();
        let a2 = TCP6_PSH_DATA[38..54].try_into().unwrap();
        let t = TcpPacket::new_checked(&TCP6_PSH_DATA[54..]).unwrap();
        assert_eq!(t.payload(), b"hi6");
        assert!(t.verify_checksum_v6(&a1, &a2));
        let mut frame = TCP6_PSH_DATA;
        let mut t = TcpPacket::new_unchecked(&mut frame[54..]);
        t.set_checksum(0);
        t.fill_checksum_v6(&a1, &a2);
        assert_eq!(frame, TCP6_PSH_DATA);
    }

    #[test]
    fn checked_rejections() {
        let seg = &TCP_SYN[34..];
        assert_eq!(
            TcpPacket::new_checked(&seg[..19]).unwrap_err(),
            Malformed::TruncatedTcpHeader
        );
        assert_eq!(
            TcpPacket::new_checked(&seg[..39]).unwrap_err(),
            Malformed::TcpDataOffsetTooLarge
        );
        let mut bad = TCP_SYN;
        bad[34 + 12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bad[34..]).unwrap_err(),
            Malformed::TcpDataOffsetTooSmall
        );
    }

    #[test]
    fn option_edge_cases() {
        let sack = [5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0];
        let mut it = TcpOptions::new(&sack);
        match it.next() {
            Some(Ok(TcpOption::Sack(blocks))) => {
                assert_eq!(blocks.iter().collect::<Vec<_>>(), vec![(1, 2), (3, 4)]);
                assert_eq!(blocks.len(), 2);
            }
            other => panic!("expected SACK, got {other:?}"),
        }
        assert_eq!(it.next(), None); // END
        assert_eq!(
            TcpOptions::new(&[2, 3, 5]).collect::<Vec<_>>(),
            vec![Err(Malformed::BadTcpOption)]
        );
        assert_eq!(
            TcpOptions::new(&[2, 4, 5]).collect::<Vec<_>>(),
            vec![Err(Malformed::BadTcpOption)]
        );
        assert_eq!(
            TcpOptions::new(&[30, 1]).collect::<Vec<_>>(),
            vec![Err(Malformed::BadTcpOption)]
        );
        assert_eq!(
            TcpOptions::new(&[30, 3, 7, 1]).collect::<Vec<_>>(),
            vec![
                Ok(TcpOption::Unknown {
                    kind: 30,
                    data: &[7]
                }),
                Ok(TcpOption::Nop)
            ]
        );
    }

    #[test]
    fn setters() {
        let mut frame = TCP_SYN;
        let mut t = TcpPacket::new_unchecked(&mut frame[34..]);
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq(3);
        t.set_ack(4);
        t.set_flags(TcpFlags::RST | TcpFlags::ACK);
        t.set_window(5);
        t.set_urgent(6);
        t.fill_checksum_v4(C1, C2);
        let t = TcpPacket::new_checked(&frame[34..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack()), (1, 2, 3, 4));
        assert_eq!((t.window(), t.urgent()), (5, 6));
        assert!(t.flags().contains(TcpFlags::RST) && !t.flags().intersects(TcpFlags::SYN));
        assert!(t.verify_checksum_v4(C1, C2));
    }
}
