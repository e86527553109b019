//! IPv6 header (RFC 8200) and the extension-header walker.

use crate::ip_proto;
use crate::Malformed;

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Zero-copy view of an IPv6 packet.
///
/// `new_checked` guarantees the fixed header and `payload_len` bytes are present; bytes beyond
/// (Ethernet padding) are not part of [`Ipv6Packet::payload`].
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after checking length, version and payload length.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Malformed::TruncatedIpv6Header);
        }
        let packet = Ipv6Packet { buffer };
        if packet.version() != 6 {
            return Err(Malformed::BadIpVersion);
        }
        if HEADER_LEN + usize::from(packet.payload_len()) > packet.buffer.as_ref().len() {
            return Err(Malformed::BadIpv6PayloadLength);
        }
        Ok(packet)
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Version nibble (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW.start] >> 4
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Payload length: bytes after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::PAYLOAD_LEN.start], b[field::PAYLOAD_LEN.start + 1]])
    }

    /// Next header of the fixed header (an extension header or the upper layer).
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::SRC].try_into().unwrap()
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        self.buffer.as_ref()[field::DST].try_into().unwrap()
    }

    /// Payload (extension headers and upper layer), `payload_len` bytes.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers to the upper layer; offsets are from the start of this packet.
    pub fn upper_layer(&self) -> Result<UpperLayer, Malformed> {
        let end = HEADER_LEN + usize::from(self.payload_len());
        walk_extension_headers(&self.buffer.as_ref()[..end])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address (L4 checksums not updated).
    pub fn set_src(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr);
    }

    /// Sets the destination address (L4 checksums not updated).
    pub fn set_dst(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr);
    }

    /// Mutable payload.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Fragment header contents (RFC 8200 section 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Fragment offset in bytes (a multiple of 8).
    pub offset: u16,
    /// M flag: more fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Upper-layer protocol: TCP, UDP, ICMPv6, ..., or ESP (50) / No Next Header (59), where the
    /// walk stops because nothing after them is readable.
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header. For a non-first
    /// fragment this is where the fragment's data starts (no upper-layer header there).
    pub offset: usize,
    /// The fragment header, if one was crossed.
    pub fragment: Option<Ipv6Fragment>,
}

/// Walks the extension-header chain of `packet` (an IPv6 packet cut to `40 + payload_len`).
///
/// Like the kernel's `ipv6_skip_exthdr`, it crosses hop-by-hop, routing, fragment, destination
/// options and AH headers, in any order, and stops at anything else (upper layer, ESP, No Next
/// Header) or after a non-first fragment header. Each header is at least 8 bytes, so the walk is
/// bounded by the packet length. `packet` must hold at least the 40-byte fixed header.
pub fn walk_extension_headers(packet: &[u8]) -> Result<UpperLayer, Malformed> {
    if packet.len() < HEADER_LEN {
        return Err(Malformed::TruncatedIpv6Header);
    }
    let mut next = packet[field::NEXT_HEADER];
    let mut offset = HEADER_LEN;
    let mut fragment = None;
    loop {
        let kind = next;
        let header_len = match kind {
            ip_proto::HOPOPTS | ip_proto::ROUTING | ip_proto::DSTOPTS => {
                let len_byte = *packet
                    .get(offset + 1)
                    .ok_or(Malformed::BadExtensionHeaderChain)?;
                (usize::from(len_byte) + 1) * 8
            }
            ip_proto::AH => {
                let len_byte = *packet
                    .get(offset + 1)
                    .ok_or(Malformed::BadExtensionHeaderChain)?;
                (usize::from(len_byte) + 2) * 4
            }
            ip_proto::FRAGMENT => 8,
            _ => break,
        };
        let header = packet
            .get(offset..offset + header_len)
            .ok_or(Malformed::BadExtensionHeaderChain)?;
        next = header[0];
        offset += header_len;
        if kind == ip_proto::FRAGMENT {
            let off_flags = u16::from_be_bytes([header[2], header[3]]);
            let frag = Ipv6Fragment {
                offset: off_flags & 0xfff8,
                more: off_flags & 1 != 0,
                ident: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            };
            fragment = Some(frag);
            if frag.offset != 0 {
                // A later fragment carries no readable headers beyond this point.
                break;
            }
        }
    }
    Ok(UpperLayer {
        protocol: next,
        offset,
        fragment,
    })
}

/// Owned summary of a fixed IPv6 header for building packets (off the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next header.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Reads the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Self {
        Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        }
    }

    /// Writes the 40-byte fixed header into `buf[..40]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src(self.src);
        p.set_dst(self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{IPV6_LATER_FRAGMENT, MLD2_REPORT_HBH, TCP6_SYN};

    const A1: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const A2: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    #[test]
    fn captured_tcp_syn_header() {
        let p = Ipv6Packet::new_checked(&TCP6_SYN[14..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.payload_len(), 40);
        assert_eq!(p.next_header(), ip_proto::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), A1);
        assert_eq!(p.dst(), A2);
        assert_eq!(p.payload().len(), 40);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: ip_proto::TCP,
                offset: 40,
                fragment: None
            }
        );
        let repr = Ipv6Repr::parse(&p);
        let mut out = [0u8; 40];
        repr.emit(&mut out);
        assert_eq!(&out[..], &TCP6_SYN[14..54]);
    }

    #[test]
    fn captured_hop_by_hop() {
        let p = Ipv6Packet::new_checked(&MLD2_REPORT_HBH[14..]).unwrap();
        assert_eq!(p.next_header(), ip_proto::HOPOPTS);
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.payload_len(), 36);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: ip_proto::ICMPV6,
                offset: 48,
                fragment: None
            }
        );
    }

    #[test]
    fn captured_later_fragment() {
        let p = Ipv6Packet::new_checked(&IPV6_LATER_FRAGMENT[14..]).unwrap();
        assert_eq!(p.flow_label(), 0x2ce8b);
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, ip_proto::ICMPV6);
        assert_eq!(ul.offset, 48);
        assert_eq!(
            ul.fragment,
            Some(Ipv6Fragment {
                offset: 1448,
                more: false,
                ident: 0x35be_6feb
            })
        );
    }

    /// A header with the given chain of (kind, length-in-bytes) extension headers, then 8 bytes.
    fn with_chain(chain: &[(u8, usize)], upper: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        let total: usize = chain.iter().map(|c| c.1).sum::<usize>() + 8;
        Ipv6Repr {
            src: A1,
            dst: A2,
            next_header: chain.first().map_or(upper, |c| c.0),
            payload_len: total as u16,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut p);
        for (i, &(kind, len)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(upper, |c| c.0);
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = if kind == ip_proto::AH {
                (len / 4 - 2) as u8
            } else {
                (len / 8 - 1) as u8
            };
            if kind == ip_proto::FRAGMENT {
                h[1] = 0;
                h[3] = 1; // first fragment, M set
                h[4..8].copy_from_slice(&77u32.to_be_bytes());
            }
            p.extend_from_slice(&h);
        }
        p.extend_from_slice(&[0xaa; 8]);
        p
    }

    #[test]
    fn walks_every_extension_kind() {
        let p = with_chain(
            &[
                (ip_proto::HOPOPTS, 8),
                (ip_proto::DSTOPTS, 16),
                (ip_proto::ROUTING, 24),
                (ip_proto::FRAGMENT, 8),
                (ip_proto::AH, 24),
            ],
            ip_proto::UDP,
        );
        let ul = walk_extension_headers(&p).unwrap();
        assert_eq!(ul.protocol, ip_proto::UDP);
        assert_eq!(ul.offset, 40 + 8 + 16 + 24 + 8 + 24);
        assert_eq!(
            ul.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: true,
                ident: 77
            })
        );
    }

    #[test]
    fn stops_at_esp_and_no_next_header() {
        let p = with_chain(&[(ip_proto::DSTOPTS, 8)], ip_proto::ESP);
        assert_eq!(walk_extension_headers(&p).unwrap().protocol, ip_proto::ESP);
        assert_eq!(walk_extension_headers(&p).unwrap().offset, 48);
        let p = with_chain(&[], ip_proto::NONE);
        assert_eq!(
            walk_extension_headers(&p).unwrap(),
            UpperLayer {
                protocol: ip_proto::NONE,
                offset: 40,
                fragment: None
            }
        );
    }

    #[test]
    fn truncated_chain_is_malformed() {
        let p = with_chain(&[(ip_proto::ROUTING, 24)], ip_proto::TCP);
        assert_eq!(
            walk_extension_headers(&p[..60]),
            Err(Malformed::BadExtensionHeaderChain)
        );
        assert_eq!(
            walk_extension_headers(&p[..40]),
            Err(Malformed::BadExtensionHeaderChain)
        );
        assert_eq!(
            walk_extension_headers(&p[..39]),
            Err(Malformed::TruncatedIpv6Header)
        );
        let p = with_chain(&[(ip_proto::FRAGMENT, 8)], ip_proto::TCP);
        assert_eq!(
            walk_extension_headers(&p[..47]),
            Err(Malformed::BadExtensionHeaderChain)
        );
    }

    #[test]
    fn checked_rejections() {
        let ip = &TCP6_SYN[14..];
        assert_eq!(
            Ipv6Packet::new_checked(&ip[..39]).unwrap_err(),
            Malformed::TruncatedIpv6Header
        );
        assert_eq!(
            Ipv6Packet::new_checked(&ip[..79]).unwrap_err(),
            Malformed::BadIpv6PayloadLength
        );
        let mut bad = TCP6_SYN;
        bad[14] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&bad[14..]).unwrap_err(),
            Malformed::BadIpVersion
        );
    }
}
