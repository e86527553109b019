//! The hot-path parser: one pass over a frame, no allocation, a small `Copy` summary out.
//!
//! It makes the structural checks the kernel makes before netfilter sees a packet (and those
//! conntrack makes before tracking it), so a frame it accepts is safe to index by its offsets.
//! It does not verify checksums; see [`verify_ipv4_header`] and [`verify_l4_checksum`].

use crate::ethernet::{ethertype, is_vlan_tpid};
use crate::pppoe::{self, ppp_proto};
use crate::tcp::TcpFlags;
use crate::{checksum, icmpv4, icmpv6, ip_proto, ipv6, Malformed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// The summary lives in per-burst stage arrays: keep it within ~one cache line.
const _: () = assert!(core::mem::size_of::<FrameInfo>() <= 72);

/// The network-layer family of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// Not IP (ARP, LLDP, ...): only the Ethernet fields of [`FrameInfo`] are filled.
    #[default]
    NonIp,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

/// Most VLAN tags a frame may carry (QinQ: an outer 802.1ad tag and an inner 802.1Q tag).
pub const MAX_VLAN_TAGS: usize = 2;

/// Flags of [`FrameInfo::encap`]: what sits between the Ethernet header and the packet. A plain
/// Ethernet II frame has none, so one test of `encap != 0` keeps untagged traffic on its path.
pub mod encap {
    /// At least one VLAN tag (any TPID).
    pub const VLAN: u8 = 1;
    /// QinQ: two tags, or a service tag (TPID 0x88a8 or the legacy 0x9100) alone.
    pub const QINQ: u8 = 2;
    /// A PPPoE session header and PPP protocol field (after the tags, if any).
    pub const PPPOE: u8 = 4;
}

/// Decoded summary of one frame. Offsets are from the start of the frame (for
/// [`parse_embedded`], from the start of the quoted IP packet). Fields that do not apply are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameInfo {
    /// Number of VLAN tags (0 to [`MAX_VLAN_TAGS`]).
    pub vlan_count: u8,
    /// TCIs of the VLAN tags, outermost first (VID in the low 12 bits).
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    /// [`encap`] flags: VLAN tags, QinQ, PPPoE.
    pub encap: u8,
    /// Ethertype after the VLAN tags (reported for non-IP frames too); for a PPPoE session
    /// frame with IPv4/IPv6 inside, the IP ethertype (0x0800/0x86dd), else 0x8864.
    pub ethertype: u16,
    /// Offset of the IP (or other L3) header; for PPPoE, of the PPP payload.
    pub l3_offset: u16,
    /// Network-layer family.
    pub family: Family,
    /// Source address: IPv6 as 16 bytes; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination address, laid out like `src`.
    pub dst: [u8; 16],
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Length of the IP packet: IPv4 total length, or 40 + IPv6 payload length. Bytes of the
    /// frame beyond `l3_offset + l3_len` are link-layer padding.
    pub l3_len: u16,
    /// Upper-layer protocol (after IPv6 extension headers): TCP, UDP, ICMP, ICMPv6, ESP, ...
    pub l4_proto: u8,
    /// Offset of the upper-layer header; for a non-first fragment, of the fragment data.
    pub l4_offset: u16,
    /// The packet is a fragment (IPv4 MF or offset, or an IPv6 fragment header).
    pub is_fragment: bool,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more_fragments: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
    /// Fragment identification (IPv4 ID, or the IPv6 fragment header's 32-bit ID).
    pub frag_ident: u32,
    /// TCP/UDP source port.
    pub src_port: u16,
    /// TCP/UDP destination port.
    pub dst_port: u16,
    /// TCP flags.
    pub tcp_flags: TcpFlags,
    /// ICMP/ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code.
    pub icmp_code: u8,
    /// ICMP/ICMPv6 identifier, for the query types that have one (echo, timestamp, ...).
    pub icmp_ident: u16,
}

impl FrameInfo {
    /// The frame carries IPv4 or IPv6.
    #[inline]
    pub fn is_ip(&self) -> bool {
        self.family != Family::NonIp
    }

    /// The upper-layer header is present and was parsed: IP and not a non-first fragment.
    #[inline]
    pub fn has_l4_header(&self) -> bool {
        self.is_ip() && self.frag_offset == 0
    }

    /// First fragment of a fragmented packet (holds the L4 header).
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.is_fragment && self.frag_offset == 0
    }

    /// Non-first fragment: no L4 header, ports and ICMP fields are zero.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset != 0
    }

    /// Length of the upper-layer segment (header and data, without link padding).
    #[inline]
    pub fn l4_len(&self) -> u16 {
        (u32::from(self.l3_offset) + u32::from(self.l3_len))
            .saturating_sub(u32::from(self.l4_offset)) as u16
    }

    /// Offset just past the IP packet (where link-layer padding starts).
    #[inline]
    pub fn l3_end(&self) -> usize {
        usize::from(self.l3_offset) + usize::from(self.l3_len)
    }

    /// IPv4 source address (meaningful when `family == Ipv4`).
    #[inline]
    pub fn src_v4(&self) -> [u8; 4] {
        [self.src[0], self.src[1], self.src[2], self.src[3]]
    }

    /// IPv4 destination address (meaningful when `family == Ipv4`).
    #[inline]
    pub fn dst_v4(&self) -> [u8; 4] {
        [self.dst[0], self.dst[1], self.dst[2], self.dst[3]]
    }

    /// Source address as a std type, for logs and tests.
    pub fn src_addr(&self) -> Option<IpAddr> {
        Self::addr(self.family, &self.src)
    }

    /// Destination address as a std type, for logs and tests.
    pub fn dst_addr(&self) -> Option<IpAddr> {
        Self::addr(self.family, &self.dst)
    }

    fn addr(family: Family, bytes: &[u8; 16]) -> Option<IpAddr> {
        match family {
            Family::NonIp => None,
            Family::Ipv4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            Family::Ipv6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        }
    }
}

/// Strict for frames on the wire; lenient for packets quoted inside ICMP errors, which are
/// cut short by design (length fields describe the original, not the quote).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Wire,
    Quoted,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses one Ethernet frame: VLAN tags, IPv4/IPv6 (IPv6 extension headers walked), and the
/// TCP/UDP/ICMP/ICMPv6 header fields needed for classification and connection tracking.
///
/// Non-IP frames (ARP, LLDP, ...) are not errors: `family` is [`Family::NonIp`] and `ethertype`
/// says what they are. Checksums are not verified.
///
/// On the hot path prefer [`parse_frame_into`] with a stage array: returning the summary by
/// value costs copies (`cargo bench -p wire` shows several times the cost).
///
/// ```
/// let info = wire::parse_frame(&wire::captured::TCP_SYN).unwrap();
/// assert_eq!((info.src_port, info.dst_port), (40000, 8080));
/// assert!(info.tcp_flags.contains(wire::tcp::TcpFlags::SYN));
/// ```
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<FrameInfo, Malformed> {
    let mut info = FrameInfo::default();
    parse_frame_into(frame, &mut info)?;
    Ok(info)
}

/// [`parse_frame`] writing into a caller-owned slot, e.g. one entry of a burst's stage array,
/// so the summary is never copied. `info` is fully overwritten; on error its contents are
/// unspecified.
#[inline]
pub fn parse_frame_into(frame: &[u8], info: &mut FrameInfo) -> Result<(), Malformed> {
    *info = FrameInfo::default();
    if frame.len() < 14 {
        return Err(Malformed::TruncatedEthernet);
    }
    if frame.len() > usize::from(u16::MAX) {
        return Err(Malformed::OversizedFrame);
    }
    let mut ethertype = be16(frame, 12);
    let mut offset = 14;
    while is_vlan_tpid(ethertype) {
        if usize::from(info.vlan_count) == MAX_VLAN_TAGS {
            return Err(Malformed::TooManyVlanTags);
        }
        if frame.len() < offset + 4 {
            return Err(Malformed::TruncatedVlan);
        }
        info.encap |= if ethertype == ethertype::VLAN {
            encap::VLAN
        } else {
            encap::VLAN | encap::QINQ
        };
        info.vlan_tci[usize::from(info.vlan_count)] = be16(frame, offset);
        info.vlan_count += 1;
        ethertype = be16(frame, offset + 2);
        offset += 4;
    }
    if info.vlan_count == 2 {
        info.encap |= encap::QINQ;
    }
    info.ethertype = ethertype;
    info.l3_offset = offset as u16;
    match ethertype {
        ethertype::IPV4 => parse_ipv4(&frame[offset..], offset, Mode::Wire, info),
        ethertype::IPV6 => parse_ipv6(&frame[offset..], offset, Mode::Wire, info),
        ethertype::PPPOE_SESSION => parse_pppoe_session(frame, offset, info),
        _ => Ok(()),
    }
}

/// A PPPoE session frame: the IP packet inside is parsed as if it followed the Ethernet header
/// (as br_netfilter hands it to iptables with `bridge-nf-filter-pppoe-tagged`), bounded by the
/// PPPoE length field, which is what the receiving end takes. Other PPP protocols are reported
/// as non-IP with `ethertype` 0x8864.
#[inline(never)]
fn parse_pppoe_session(frame: &[u8], offset: usize, info: &mut FrameInfo) -> Result<(), Malformed> {
    let header = pppoe::PppoeSession::new_checked(&frame[offset..])?;
    let inner = offset + pppoe::HEADER_LEN;
    info.encap |= encap::PPPOE;
    info.l3_offset = inner as u16;
    let protocol = header.protocol();
    if protocol != ppp_proto::IPV4 && protocol != ppp_proto::IPV6 {
        return Ok(());
    }
    let length = usize::from(header.length());
    let end = offset + pppoe::LENGTH_BASE + length;
    if length < 2 || end > frame.len() {
        return Err(Malformed::BadPppoeLength);
    }
    let ip = &frame[inner..end];
    let r = if protocol == ppp_proto::IPV4 {
        info.ethertype = ethertype::IPV4;
        parse_ipv4(ip, inner, Mode::Wire, info)
    } else {
        info.ethertype = ethertype::IPV6;
        parse_ipv6(ip, inner, Mode::Wire, info)
    };
    match r {
        // the IP packet claims more than the PPPoE frame holds
        Err(Malformed::BadIpv4TotalLength | Malformed::BadIpv6PayloadLength)
            if frame.len() > end =>
        {
            Err(Malformed::BadPppoeLength)
        }
        r => r,
    }
}

/// Parses the IP packet quoted inside an ICMP/ICMPv6 error (`packet` starts at its IP header).
///
/// Lenient where the quote is short by design: the IP length fields may exceed the bytes
/// present, and only the first 8 bytes of a TCP/UDP/ICMP header are required (ports, ICMP type,
/// code and identifier, which is what conntrack needs to find the original connection).
/// `tcp_flags` is filled only when the quote holds them. `ethertype` is set from `family`;
/// `l3_len` counts the quoted bytes of the packet (never more than its length field claims), so
/// the offsets stay within `packet`.
pub fn parse_embedded(packet: &[u8], family: Family) -> Result<FrameInfo, Malformed> {
    let mut info = FrameInfo::default();
    let packet = &packet[..packet.len().min(usize::from(u16::MAX))];
    match family {
        Family::Ipv4 => {
            info.ethertype = ethertype::IPV4;
            parse_ipv4(packet, 0, Mode::Quoted, &mut info)?;
        }
        Family::Ipv6 => {
            info.ethertype = ethertype::IPV6;
            parse_ipv6(packet, 0, Mode::Quoted, &mut info)?;
        }
        Family::NonIp => {}
    }
    Ok(info)
}

#[inline]
fn parse_ipv4(ip: &[u8], base: usize, mode: Mode, info: &mut FrameInfo) -> Result<(), Malformed> {
    if ip.len() < 20 {
        return Err(Malformed::TruncatedIpv4Header);
    }
    let ver_ihl = ip[0];
    if ver_ihl >> 4 != 4 {
        return Err(Malformed::BadIpVersion);
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < 20 || header_len > ip.len() {
        return Err(Malformed::BadIpv4HeaderLength);
    }
    let total = usize::from(be16(ip, 2));
    if total < header_len || (mode == Mode::Wire && total > ip.len()) {
        return Err(Malformed::BadIpv4TotalLength);
    }
    let ip = &ip[..total.min(ip.len())];
    info.family = Family::Ipv4;
    info.l3_len = ip.len() as u16;
    info.ttl = ip[8];
    info.l4_proto = ip[9];
    info.src[..4].copy_from_slice(&ip[12..16]);
    info.dst[..4].copy_from_slice(&ip[16..20]);
    info.l4_offset = (base + header_len) as u16;
    let frag = be16(ip, 6);
    info.is_fragment = frag & 0x3fff != 0;
    info.more_fragments = frag & 0x2000 != 0;
    info.frag_offset = (frag & 0x1fff) << 3;
    info.frag_ident = u32::from(be16(ip, 4));
    if info.frag_offset != 0 {
        return Ok(());
    }
    parse_l4(&ip[header_len..], Family::Ipv4, mode, info)
}

#[inline]
fn parse_ipv6(ip: &[u8], base: usize, mode: Mode, info: &mut FrameInfo) -> Result<(), Malformed> {
    if ip.len() < ipv6::HEADER_LEN {
        return Err(Malformed::TruncatedIpv6Header);
    }
    if ip[0] >> 4 != 6 {
        return Err(Malformed::BadIpVersion);
    }
    let end = ipv6::HEADER_LEN + usize::from(be16(ip, 4));
    if mode == Mode::Wire && end > ip.len() {
        return Err(Malformed::BadIpv6PayloadLength);
    }
    let ip = &ip[..end.min(ip.len())];
    info.family = Family::Ipv6;
    info.l3_len = ip.len() as u16;
    info.ttl = ip[7];
    info.src.copy_from_slice(&ip[8..24]);
    info.dst.copy_from_slice(&ip[24..40]);
    let upper = match ip[6] {
        // Fast path: no extension headers.
        ip_proto::TCP | ip_proto::UDP | ip_proto::ICMPV6 => ipv6::UpperLayer {
            protocol: ip[6],
            offset: ipv6::HEADER_LEN,
            fragment: None,
        },
        _ => ipv6::walk_extension_headers(ip)?,
    };
    info.l4_proto = upper.protocol;
    info.l4_offset = (base + upper.offset) as u16;
    if let Some(frag) = upper.fragment {
        info.is_fragment = true;
        info.more_fragments = frag.more;
        info.frag_offset = frag.offset;
        info.frag_ident = frag.ident;
        if frag.offset != 0 {
            return Ok(());
        }
    }
    parse_l4(&ip[upper.offset..], Family::Ipv6, mode, info)
}

#[inline]
fn parse_l4(l4: &[u8], family: Family, mode: Mode, info: &mut FrameInfo) -> Result<(), Malformed> {
    match (info.l4_proto, family) {
        (ip_proto::TCP, _) => {
            let needed = if mode == Mode::Wire { 20 } else { 8 };
            if l4.len() < needed {
                return Err(Malformed::TruncatedTcpHeader);
            }
            info.src_port = be16(l4, 0);
            info.dst_port = be16(l4, 2);
            if l4.len() >= 14 {
                info.tcp_flags = TcpFlags(l4[13]);
            }
            if mode == Mode::Wire {
                let header_len = usize::from(l4[12] >> 4) * 4;
                if header_len < 20 {
                    return Err(Malformed::TcpDataOffsetTooSmall);
                }
                if header_len > l4.len() {
                    return Err(Malformed::TcpDataOffsetTooLarge);
                }
            }
        }
        (ip_proto::UDP, _) => {
            if l4.len() < 8 {
                return Err(Malformed::TruncatedUdpHeader);
            }
            info.src_port = be16(l4, 0);
            info.dst_port = be16(l4, 2);
            if mode == Mode::Wire {
                let udp_len = usize::from(be16(l4, 4));
                // A first fragment holds only part of the datagram its length describes.
                if udp_len < 8 || (udp_len > l4.len() && !info.more_fragments) {
                    return Err(Malformed::BadUdpLength);
                }
            }
        }
        // SCTP, DCCP and UDP-Lite start with the two ports, as TCP and UDP do (multiport and
        // the classifier read them). No length is enforced: their matches check their headers.
        (ip_proto::SCTP | ip_proto::UDPLITE | 33, _) if l4.len() >= 4 => {
            info.src_port = be16(l4, 0);
            info.dst_port = be16(l4, 2);
        }
        (ip_proto::ICMP, Family::Ipv4) => {
            if l4.len() < 8 {
                return Err(Malformed::TruncatedIcmpHeader);
            }
            info.icmp_type = l4[0];
            info.icmp_code = l4[1];
            if icmpv4::has_ident(l4[0]) {
                info.icmp_ident = be16(l4, 4);
            }
        }
        (ip_proto::ICMPV6, Family::Ipv6) => {
            if l4.len() < 8 {
                return Err(Malformed::TruncatedIcmpv6Header);
            }
            let ty = l4[0];
            if mode == Mode::Wire
                && matches!(
                    ty,
                    icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT
                )
                && l4.len() < icmpv6::ND_LEN
            {
                return Err(Malformed::TruncatedIcmpv6Header);
            }
            info.icmp_type = ty;
            info.icmp_code = l4[1];
            if icmpv6::has_ident(ty) {
                info.icmp_ident = be16(l4, 4);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Verifies the IPv4 header checksum of a frame `parse_frame` accepted (the kernel's bridge
/// input does this before netfilter; a cheap 20-byte sum).
pub fn verify_ipv4_header(frame: &[u8], info: &FrameInfo) -> Result<(), Malformed> {
    if info.family != Family::Ipv4 {
        return Ok(());
    }
    let start = usize::from(info.l3_offset);
    let header_len = usize::from(frame[start] & 0x0f) * 4;
    if checksum::verify(&frame[start..start + header_len]) {
        Ok(())
    } else {
        Err(Malformed::BadIpv4HeaderChecksum)
    }
}

/// Verifies the TCP, UDP, ICMP or ICMPv6 checksum of a frame `parse_frame` accepted. Other
/// protocols and fragments (whose checksum covers the reassembled packet) pass. A zero UDP
/// checksum over IPv4 means "none" and passes; over IPv6 it fails.
pub fn verify_l4_checksum(frame: &[u8], info: &FrameInfo) -> Result<(), Malformed> {
    if !info.is_ip() || info.is_fragment {
        return Ok(());
    }
    let start = usize::from(info.l4_offset);
    let end = info.l3_end();
    let segment = &frame[start..end];
    let ok = match (info.family, info.l4_proto) {
        (Family::Ipv4, ip_proto::ICMP) => checksum::verify(segment),
        (Family::Ipv4, ip_proto::UDP) if be16(segment, 6) == 0 => true,
        (Family::Ipv4, proto @ (ip_proto::TCP | ip_proto::UDP)) => {
            checksum::verify_l4_v4(info.src_v4(), info.dst_v4(), proto, segment)
        }
        (Family::Ipv6, ip_proto::UDP) if be16(segment, 6) == 0 => false,
        (Family::Ipv6, proto @ (ip_proto::TCP | ip_proto::UDP | ip_proto::ICMPV6)) => {
            checksum::verify_l4_v6(&info.src, &info.dst, proto, segment)
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Malformed::BadL4Checksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{self, *};
    use crate::icmpv4::{msg_type as icmp, unreachable};
    use crate::icmpv6::msg_type as icmp6;

    const C1: [u8; 4] = [198, 18, 0, 1];
    const C2: [u8; 4] = [198, 18, 0, 2];
    const A1: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const A2: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&a);
        out
    }

    /// Inserts a VLAN tag (TPID, TCI) after the MAC addresses.
    fn tagged(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
        out.extend_from_slice(&frame[12..]);
        out
    }

    #[test]
    fn tcp_syn_every_field() {
        let info = parse_frame(&TCP_SYN).unwrap();
        assert_eq!(
            info,
            FrameInfo {
                vlan_count: 0,
                vlan_tci: [0, 0],
                encap: 0,
                ethertype: ethertype::IPV4,
                l3_offset: 14,
                family: Family::Ipv4,
                src: v4(C1),
                dst: v4(C2),
                ttl: 64,
                l3_len: 60,
                l4_proto: ip_proto::TCP,
                l4_offset: 34,
                is_fragment: false,
                more_fragments: false,
                frag_offset: 0,
                frag_ident: 0xe5c5,
                src_port: 40000,
                dst_port: 8080,
                tcp_flags: TcpFlags::SYN,
                icmp_type: 0,
                icmp_code: 0,
                icmp_ident: 0,
            }
        );
        assert_eq!(info.l4_len(), 40);
        assert!(info.has_l4_header() && !info.is_first_fragment() && !info.is_later_fragment());
        assert_eq!(info.src_addr(), Some("198.18.0.1".parse().unwrap()));
        assert_eq!(info.dst_addr(), Some("198.18.0.2".parse().unwrap()));
        assert_eq!(verify_ipv4_header(&TCP_SYN, &info), Ok(()));
        assert_eq!(verify_l4_checksum(&TCP_SYN, &info), Ok(()));
    }

    #[test]
    fn tcp6_data() {
        let info = parse_frame(&TCP6_PSH_DATA).unwrap();
        assert_eq!(info.family, Family::Ipv6);
        assert_eq!(info.ethertype, ethertype::IPV6);
        assert_eq!((info.src, info.dst), (A1, A2));
        assert_eq!((info.l3_offset, info.l3_len, info.l4_offset), (14, 75, 54));
        assert_eq!((info.src_port, info.dst_port), (40003, 8081));
        assert_eq!(info.tcp_flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(info.l4_len(), 35);
        assert_eq!(info.ttl, 64);
        assert_eq!(info.src_addr(), Some("2001:2::1".parse().unwrap()));
        assert_eq!(verify_l4_checksum(&TCP6_PSH_DATA, &info), Ok(()));
    }

    #[test]
    fn udp_both_families() {
        let info = parse_frame(&UDP4).unwrap();
        assert_eq!(
            (info.l4_proto, info.src_port, info.dst_port),
            (ip_proto::UDP, 40001, 9999)
        );
        assert_eq!((info.l3_len, info.l4_len()), (32, 12));
        assert_eq!(verify_l4_checksum(&UDP4, &info), Ok(()));
        let info = parse_frame(&UDP6).unwrap();
        assert_eq!(
            (info.l4_proto, info.src_port, info.dst_port),
            (ip_proto::UDP, 40002, 9999)
        );
        assert_eq!(verify_l4_checksum(&UDP6, &info), Ok(()));
    }

    #[test]
    fn icmp_echo_and_errors() {
        let info = parse_frame(&ICMP_ECHO_REQUEST).unwrap();
        assert_eq!(
            (info.icmp_type, info.icmp_code, info.icmp_ident),
            (icmp::ECHO_REQUEST, 0, 8947)
        );
        assert_eq!((info.src_port, info.dst_port), (0, 0));
        assert_eq!(verify_l4_checksum(&ICMP_ECHO_REQUEST, &info), Ok(()));

        let info = parse_frame(&ICMP_PORT_UNREACH).unwrap();
        assert_eq!(info.icmp_type, icmp::DEST_UNREACHABLE);
        assert_eq!(info.icmp_code, unreachable::PORT);
        assert_eq!(info.icmp_ident, 0);
        assert_eq!(info.src_v4(), C2);
        assert_eq!(verify_l4_checksum(&ICMP_PORT_UNREACH, &info), Ok(()));
        // The quoted datagram is the UDP4 packet; parse it like conntrack would.
        let quoted = &ICMP_PORT_UNREACH[usize::from(info.l4_offset) + 8..];
        let inner = parse_embedded(quoted, Family::Ipv4).unwrap();
        assert_eq!((inner.src_v4(), inner.dst_v4()), (C1, C2));
        assert_eq!((inner.src_port, inner.dst_port), (40001, 9999));
        assert_eq!(inner.l3_offset, 0);
        assert_eq!(inner.l4_offset, 20);

        let info = parse_frame(&ICMPV6_PORT_UNREACH).unwrap();
        assert_eq!(
            (info.icmp_type, info.icmp_code),
            (icmp6::DEST_UNREACHABLE, 4)
        );
        let quoted = &ICMPV6_PORT_UNREACH[usize::from(info.l4_offset) + 8..];
        let inner = parse_embedded(quoted, Family::Ipv6).unwrap();
        assert_eq!((inner.src, inner.dst), (A1, A2));
        assert_eq!((inner.src_port, inner.dst_port), (40002, 9999));
    }

    #[test]
    fn embedded_quote_may_be_short() {
        // Quote cut after 8 bytes of UDP header: IP total length says 32, only 28 present.
        let quoted = &UDP4[14..14 + 28];
        let inner = parse_embedded(quoted, Family::Ipv4).unwrap();
        assert_eq!(
            (inner.src_port, inner.dst_port, inner.l3_len),
            (40001, 9999, 28)
        );
        assert_eq!(inner.l4_len(), 8);
        // The same bytes on the wire are malformed.
        assert_eq!(
            parse_frame(&UDP4[..14 + 28]),
            Err(Malformed::BadIpv4TotalLength)
        );
        // Fewer than 8 bytes of L4 is not enough even in a quote.
        assert_eq!(
            parse_embedded(&UDP4[14..14 + 27], Family::Ipv4),
            Err(Malformed::TruncatedUdpHeader)
        );
        let tcp_quote = &TCP_SYN[14..14 + 28];
        let inner = parse_embedded(tcp_quote, Family::Ipv4).unwrap();
        assert_eq!((inner.src_port, inner.dst_port), (40000, 8080));
        assert_eq!(inner.tcp_flags, TcpFlags::default());
        assert_eq!(
            parse_embedded(tcp_quote, Family::NonIp).unwrap().family,
            Family::NonIp
        );
    }

    #[test]
    fn icmpv6_neighbour_discovery_and_hop_by_hop() {
        let info = parse_frame(&NEIGHBOR_SOLICIT).unwrap();
        assert_eq!((info.icmp_type, info.ttl), (icmp6::NEIGHBOR_SOLICIT, 255));
        assert_eq!(verify_l4_checksum(&NEIGHBOR_SOLICIT, &info), Ok(()));
        let info = parse_frame(&ICMPV6_ECHO_REPLY).unwrap();
        assert_eq!((info.icmp_type, info.icmp_ident), (icmp6::ECHO_REPLY, 8948));
        let info = parse_frame(&MLD2_REPORT_HBH).unwrap();
        assert_eq!(info.l4_proto, ip_proto::ICMPV6);
        assert_eq!(info.l4_offset, 14 + 48);
        assert_eq!(info.icmp_type, icmp6::MLD2_REPORT);
        assert_eq!(verify_l4_checksum(&MLD2_REPORT_HBH, &info), Ok(()));
    }

    #[test]
    fn arp_is_not_an_error() {
        let info = parse_frame(&ARP_REQUEST).unwrap();
        assert_eq!(info.family, Family::NonIp);
        assert_eq!(info.ethertype, ethertype::ARP);
        assert_eq!(info.l3_offset, 14);
        assert!(!info.is_ip() && !info.has_l4_header());
        assert_eq!(info.src_addr(), None);
        assert_eq!(verify_l4_checksum(&ARP_REQUEST, &info), Ok(()));
    }

    #[test]
    fn later_fragments_have_no_ports() {
        let info = parse_frame(&IPV4_LATER_FRAGMENT).unwrap();
        assert!(info.is_fragment && info.is_later_fragment() && !info.more_fragments);
        assert_eq!(
            (info.frag_offset, info.l4_proto, info.l4_offset),
            (1480, ip_proto::ICMP, 34)
        );
        assert_eq!(info.icmp_type, 0);
        assert!(!info.has_l4_header());
        assert_eq!(verify_ipv4_header(&IPV4_LATER_FRAGMENT, &info), Ok(()));

        let info = parse_frame(&IPV6_LATER_FRAGMENT).unwrap();
        assert!(info.is_fragment && info.is_later_fragment() && !info.more_fragments);
        assert_eq!(info.frag_offset, 1448);
        assert_eq!(info.frag_ident, 0x35be_6feb);
        assert_eq!((info.l4_proto, info.l4_offset), (ip_proto::ICMPV6, 62));
    }

    #[test]
    fn vlan_and_qinq() {
        let one = tagged(&TCP_SYN, 0x8100, 0x2064);
        let info = parse_frame(&one).unwrap();
        assert_eq!((info.vlan_count, info.vlan_tci), (1, [0x2064, 0]));
        assert_eq!((info.l3_offset, info.l4_offset), (18, 38));
        assert_eq!(info.dst_port, 8080);
        assert_eq!(verify_l4_checksum(&one, &info), Ok(()));

        let two = tagged(&one, 0x88a8, 0x0c8);
        let info = parse_frame(&two).unwrap();
        assert_eq!((info.vlan_count, info.vlan_tci), (2, [0x00c8, 0x2064]));
        assert_eq!((info.ethertype, info.l3_offset), (ethertype::IPV4, 22));
        assert_eq!(info.src_port, 40000);

        let three = tagged(&two, 0x8100, 1);
        assert_eq!(parse_frame(&three), Err(Malformed::TooManyVlanTags));
        assert_eq!(parse_frame(&one[..17]), Err(Malformed::TruncatedVlan));
        let arp = tagged(&ARP_REPLY, 0x8100, 5);
        assert_eq!(parse_frame(&arp).unwrap().ethertype, ethertype::ARP);
    }

    #[test]
    fn tag_stacks_and_their_encap_class() {
        assert_eq!(parse_frame(&TCP_SYN).unwrap().encap, 0);
        let c_tag = tagged(&TCP_SYN, 0x8100, 100);
        assert_eq!(parse_frame(&c_tag).unwrap().encap, encap::VLAN);
        // a service tag alone is QinQ, for each of its TPIDs
        for tpid in [0x88a8, 0x9100] {
            let s_tag = tagged(&TCP_SYN, tpid, 200);
            let info = parse_frame(&s_tag).unwrap();
            assert_eq!(info.encap, encap::VLAN | encap::QINQ, "{tpid:#x}");
            assert_eq!((info.vlan_count, info.vlan_tci[0]), (1, 200));
            assert_eq!((info.l3_offset, info.dst_port), (18, 8080));
            // the inner packet is parsed: ports, addresses, checksums
            assert_eq!(verify_l4_checksum(&s_tag, &info), Ok(()));
            let stack = tagged(&c_tag, tpid, 200);
            let info = parse_frame(&stack).unwrap();
            assert_eq!(info.encap, encap::VLAN | encap::QINQ);
            assert_eq!((info.vlan_count, info.vlan_tci), (2, [200, 100]));
            assert_eq!((info.family, info.l4_offset), (Family::Ipv4, 42));
            assert_eq!(info.src_v4(), C1);
        }
        // two customer tags are QinQ as well
        let cc = tagged(&c_tag, 0x8100, 7);
        assert_eq!(parse_frame(&cc).unwrap().encap, encap::VLAN | encap::QINQ);
        // 0x9100 counts towards the limit of two tags like the others
        let three = tagged(&tagged(&c_tag, 0x88a8, 2), 0x9100, 3);
        assert_eq!(parse_frame(&three), Err(Malformed::TooManyVlanTags));
        assert_eq!(
            parse_frame(&tagged(&TCP_SYN, 0x9100, 1)[..17]),
            Err(Malformed::TruncatedVlan)
        );
    }

    #[test]
    fn pppoe_session_with_ipv4_and_ipv6_inside() {
        let v4 = crate::builder::pppoe_session(&TCP_SYN, 0x0b3a);
        assert_eq!(
            &v4[12..22],
            &[0x88, 0x64, 0x11, 0x00, 0x0b, 0x3a, 0, 62, 0x00, 0x21]
        );
        let info = parse_frame(&v4).unwrap();
        assert_eq!(info.encap, encap::PPPOE);
        assert_eq!(
            (info.family, info.ethertype),
            (Family::Ipv4, ethertype::IPV4)
        );
        assert_eq!((info.l3_offset, info.l3_len, info.l4_offset), (22, 60, 42));
        assert_eq!((info.src_port, info.dst_port), (40000, 8080));
        assert_eq!(info.tcp_flags, TcpFlags::SYN);
        assert_eq!(verify_ipv4_header(&v4, &info), Ok(()));
        assert_eq!(verify_l4_checksum(&v4, &info), Ok(()));

        let v6 = crate::builder::pppoe_session(&UDP6, 9);
        assert_eq!(&v6[20..22], &[0x00, 0x57]);
        let info = parse_frame(&v6).unwrap();
        assert_eq!((info.family, info.encap), (Family::Ipv6, encap::PPPOE));
        assert_eq!((info.src, info.dst), (A1, A2));
        assert_eq!(info.src_port, 40002);
        assert_eq!(verify_l4_checksum(&v6, &info), Ok(()));

        // behind a VLAN tag and padded to the Ethernet minimum
        let mut tagged_v4 = crate::builder::pppoe_session(&tagged(&UDP4, 0x8100, 100), 1);
        tagged_v4.resize(64, 0);
        let info = parse_frame(&tagged_v4).unwrap();
        assert_eq!(info.encap, encap::VLAN | encap::PPPOE);
        assert_eq!((info.l3_offset, info.l3_len, info.dst_port), (26, 32, 9999));
        assert_eq!(verify_l4_checksum(&tagged_v4, &info), Ok(()));
    }

    #[test]
    fn pppoe_other_protocols_and_malformed_headers() {
        let v4 = crate::builder::pppoe_session(&TCP_SYN, 1);
        // LCP echo request: not IP, reported with the session ethertype
        let mut lcp = v4[..22].to_vec();
        lcp[20..22].copy_from_slice(&ppp_proto::LCP.to_be_bytes());
        lcp[18..20].copy_from_slice(&10u16.to_be_bytes());
        lcp.extend_from_slice(&[0x09, 0x01, 0x00, 0x08, 0, 0, 0, 0]);
        let info = parse_frame(&lcp).unwrap();
        assert_eq!(
            (info.family, info.ethertype),
            (Family::NonIp, ethertype::PPPOE_SESSION)
        );
        assert_eq!((info.encap, info.l3_offset), (encap::PPPOE, 22));
        // discovery frames are plain non-IP
        let mut padi = v4[..20].to_vec();
        padi[12..14].copy_from_slice(&ethertype::PPPOE_DISCOVERY.to_be_bytes());
        let info = parse_frame(&padi).unwrap();
        assert_eq!((info.family, info.encap), (Family::NonIp, 0));

        assert_eq!(parse_frame(&v4[..21]), Err(Malformed::TruncatedPppoe));
        // length below 2, or beyond the frame
        let mut bad = v4.clone();
        bad[18..20].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(parse_frame(&bad), Err(Malformed::BadPppoeLength));
        bad[18..20].copy_from_slice(&63u16.to_be_bytes());
        assert_eq!(parse_frame(&bad), Err(Malformed::BadPppoeLength));
        // shorter than the IP packet, with the rest of the packet present
        bad[18..20].copy_from_slice(&42u16.to_be_bytes());
        assert_eq!(parse_frame(&bad), Err(Malformed::BadPppoeLength));
        // IP total length beyond the frame, PPPoE length consistent with the frame
        let mut bad = v4.clone();
        bad[24..26].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(parse_frame(&bad), Err(Malformed::BadIpv4TotalLength));
        // the IP header is still checked as on the wire
        let mut bad = v4;
        bad[22] = 0x65;
        assert_eq!(parse_frame(&bad), Err(Malformed::BadIpVersion));
    }

    #[test]
    fn every_drop_reason_of_the_parser() {
        assert_eq!(
            parse_frame(&TCP_SYN[..13]),
            Err(Malformed::TruncatedEthernet)
        );
        assert_eq!(
            parse_frame(&TCP_SYN[..33]),
            Err(Malformed::TruncatedIpv4Header)
        );
        let mut f = TCP_SYN;
        f[14] = 0x60;
        assert_eq!(parse_frame(&f), Err(Malformed::BadIpVersion));
        f[14] = 0x43;
        assert_eq!(parse_frame(&f), Err(Malformed::BadIpv4HeaderLength));
        assert_eq!(
            parse_frame(&TCP_SYN[..73]),
            Err(Malformed::BadIpv4TotalLength)
        );
        assert_eq!(
            parse_frame(&TCP6_SYN[..53]),
            Err(Malformed::TruncatedIpv6Header)
        );
        assert_eq!(
            parse_frame(&TCP6_SYN[..93]),
            Err(Malformed::BadIpv6PayloadLength)
        );
        let mut f = TCP6_SYN;
        f[14] = 0x40;
        assert_eq!(parse_frame(&f), Err(Malformed::BadIpVersion));
        assert_eq!(
            parse_frame(&MLD2_REPORT_HBH[..60]),
            Err(Malformed::BadIpv6PayloadLength)
        );
        let mut f = MLD2_REPORT_HBH;
        f[14 + 41] = 9; // hop-by-hop header claims 80 bytes
        assert_eq!(parse_frame(&f), Err(Malformed::BadExtensionHeaderChain));

        // TCP: shrink the IP length so the header does not fit.
        let mut f = TCP_SYN;
        f[16..18].copy_from_slice(&39u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TruncatedTcpHeader));
        f[16..18].copy_from_slice(&59u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TcpDataOffsetTooLarge));
        let mut f = TCP_SYN;
        f[46] = 0x40;
        assert_eq!(parse_frame(&f), Err(Malformed::TcpDataOffsetTooSmall));

        let mut f = UDP4;
        f[16..18].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TruncatedUdpHeader));
        let mut f = UDP4;
        f[38..40].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::BadUdpLength));
        // ... except in a first fragment (MF set), which holds only part of the datagram
        f[20] |= 0x20;
        assert_eq!(parse_frame(&f).map(|i| i.more_fragments), Ok(true));

        let mut f = ICMP_ECHO_REQUEST;
        f[16..18].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TruncatedIcmpHeader));
        let mut f = NEIGHBOR_SOLICIT;
        f[18..20].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TruncatedIcmpv6Header));
        let mut f = ICMPV6_ECHO_REQUEST;
        f[18..20].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_frame(&f), Err(Malformed::TruncatedIcmpv6Header));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut huge = UDP4.to_vec();
        huge.resize(65536, 0);
        assert_eq!(parse_frame(&huge), Err(Malformed::OversizedFrame));
        huge.truncate(65535);
        assert!(parse_frame(&huge).is_ok());
        // A quoted IPv6 header claiming a 64 KiB payload stays within the quote.
        let mut quote = UDP6[14..].to_vec();
        quote[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
        let inner = parse_embedded(&quote, Family::Ipv6).unwrap();
        assert_eq!(inner.l3_end(), quote.len());
    }

    #[test]
    fn padding_after_the_ip_packet_is_ignored() {
        let mut padded = UDP4.to_vec();
        padded.resize(60, 0); // Ethernet minimum frame size
        let info = parse_frame(&padded).unwrap();
        assert_eq!((info.l3_len, info.l4_len()), (32, 12));
        assert_eq!(verify_l4_checksum(&padded, &info), Ok(()));
    }

    #[test]
    fn checksum_verifiers_catch_corruption() {
        for &(name, frame) in captured::ALL {
            let info = parse_frame(frame).unwrap();
            assert_eq!(verify_ipv4_header(frame, &info), Ok(()), "{name}");
            assert_eq!(verify_l4_checksum(frame, &info), Ok(()), "{name}");
            if info.has_l4_header() && !info.is_fragment {
                let mut bad = frame.to_vec();
                let last = info.l3_end() - 1;
                bad[last] ^= 0x10;
                assert_eq!(
                    verify_l4_checksum(&bad, &info),
                    Err(Malformed::BadL4Checksum),
                    "{name}"
                );
            }
            if info.family == Family::Ipv4 {
                let mut bad = frame.to_vec();
                bad[usize::from(info.l3_offset) + 8] ^= 1;
                assert_eq!(
                    verify_ipv4_header(&bad, &info),
                    Err(Malformed::BadIpv4HeaderChecksum)
                );
            }
        }
        let mut zero = UDP6;
        zero[60..62].copy_from_slice(&[0, 0]);
        let info = parse_frame(&zero).unwrap();
        assert_eq!(
            verify_l4_checksum(&zero, &info),
            Err(Malformed::BadL4Checksum)
        );
        let mut zero = UDP4;
        zero[40..42].copy_from_slice(&[0, 0]);
        let info = parse_frame(&zero).unwrap();
        assert_eq!(verify_l4_checksum(&zero, &info), Ok(()));
    }
}
