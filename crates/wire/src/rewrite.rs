//! In-place NAT rewrites with RFC 1624 incremental checksum updates.
//!
//! Each function changes one field of a frame that [`crate::parse_frame`] accepted, patches
//! every checksum that covers it (IPv4 header; TCP/UDP through the pseudo-header; ICMP/ICMPv6
//! for the identifier; ICMPv6 through its pseudo-header) and keeps the [`FrameInfo`] in step.
//! No allocation, no full recompute: the proptests in `checksum.rs` prove the result equals a
//! recompute byte for byte. A UDP-over-IPv4 checksum of 0 ("none") stays 0.
//!
//! L4 checksums are patched only when the L4 header is in this packet (not for non-first
//! fragments, whose checksum field travels in the first fragment).

use crate::checksum::{udp_update, update128, update16, update32};
use crate::{ip_proto, Family, FrameInfo};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Source address or port (SNAT, MASQUERADE).
    Src,
    /// Destination address or port (DNAT, REDIRECT).
    Dst,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Offset of the L4 checksum field when the L4 header is present and has one we keep.
#[inline]
fn l4_checksum_offset(info: &FrameInfo) -> Option<usize> {
    if !info.has_l4_header() {
        return None;
    }
    let l4 = usize::from(info.l4_offset);
    match (info.family, info.l4_proto) {
        (_, ip_proto::TCP) => Some(l4 + 16),
        (_, ip_proto::UDP) => Some(l4 + 6),
        (Family::Ipv4, ip_proto::ICMP) => Some(l4 + 2),
        (Family::Ipv6, ip_proto::ICMPV6) => Some(l4 + 2),
        _ => None,
    }
}

/// Applies `update` to the L4 checksum, with the UDP zero rules.
#[inline]
fn patch_l4(frame: &mut [u8], info: &FrameInfo, update: impl FnOnce(u16) -> u16) {
    if let Some(at) = l4_checksum_offset(info) {
        let old = be16(frame, at);
        let new = if info.l4_proto == ip_proto::UDP {
            udp_update(old, update)
        } else {
            update(old)
        };
        put16(frame, at, new);
    }
}

/// Rewrites an IPv4 address. Returns false (and changes nothing) for a non-IPv4 frame.
pub fn set_ipv4_addr(frame: &mut [u8], info: &mut FrameInfo, side: Side, new: [u8; 4]) -> bool {
    if info.family != Family::Ipv4 {
        return false;
    }
    let l3 = usize::from(info.l3_offset);
    let at = l3 + if side == Side::Src { 12 } else { 16 };
    let old: [u8; 4] = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
    frame[at..at + 4].copy_from_slice(&new);
    let header_sum = update32(be16(frame, l3 + 10), old, new);
    put16(frame, l3 + 10, header_sum);
    // ICMP has no pseudo-header; TCP and UDP cover the addresses.
    if matches!(info.l4_proto, ip_proto::TCP | ip_proto::UDP) {
        patch_l4(frame, info, |c| update32(c, old, new));
    }
    let field = if side == Side::Src {
        &mut info.src
    } else {
        &mut info.dst
    };
    field[..4].copy_from_slice(&new);
    true
}

/// Rewrites an IPv6 address. Returns false (and changes nothing) for a non-IPv6 frame.
pub fn set_ipv6_addr(frame: &mut [u8], info: &mut FrameInfo, side: Side, new: [u8; 16]) -> bool {
    if info.family != Family::Ipv6 {
        return false;
    }
    let at = usize::from(info.l3_offset) + if side == Side::Src { 8 } else { 24 };
    let mut old = [0u8; 16];
    old.copy_from_slice(&frame[at..at + 16]);
    frame[at..at + 16].copy_from_slice(&new);
    // TCP, UDP and ICMPv6 all cover the addresses through the pseudo-header.
    patch_l4(frame, info, |c| update128(c, &old, &new));
    if side == Side::Src {
        info.src = new;
    } else {
        info.dst = new;
    }
    true
}

/// Rewrites a TCP or UDP port. Returns false (and changes nothing) for other protocols or
/// when the L4 header is not in this packet.
pub fn set_port(frame: &mut [u8], info: &mut FrameInfo, side: Side, new: u16) -> bool {
    if !info.has_l4_header() || !matches!(info.l4_proto, ip_proto::TCP | ip_proto::UDP) {
        return false;
    }
    let at = usize::from(info.l4_offset) + if side == Side::Src { 0 } else { 2 };
    let old = be16(frame, at);
    put16(frame, at, new);
    patch_l4(frame, info, |c| update16(c, old, new));
    if side == Side::Src {
        info.src_port = new;
    } else {
        info.dst_port = new;
    }
    true
}

/// Rewrites the identifier of an ICMP/ICMPv6 query (echo, timestamp, ...). Returns false for
/// other messages.
pub fn set_icmp_ident(frame: &mut [u8], info: &mut FrameInfo, new: u16) -> bool {
    let has_ident = match (info.family, info.l4_proto) {
        (Family::Ipv4, ip_proto::ICMP) => crate::icmpv4::has_ident(info.icmp_type),
        (Family::Ipv6, ip_proto::ICMPV6) => crate::icmpv6::has_ident(info.icmp_type),
        _ => false,
    };
    if !has_ident || !info.has_l4_header() {
        return false;
    }
    let at = usize::from(info.l4_offset) + 4;
    let old = be16(frame, at);
    put16(frame, at, new);
    patch_l4(frame, info, |c| update16(c, old, new));
    info.icmp_ident = new;
    true
}

/// Decrements the IPv4 TTL or IPv6 hop limit, patching the IPv4 header checksum. Returns the
/// new value, or `None` (nothing changed) when it is already 0 or the frame is not IP.
pub fn decrement_ttl(frame: &mut [u8], info: &mut FrameInfo) -> Option<u8> {
    if !info.is_ip() || info.ttl == 0 {
        return None;
    }
    let l3 = usize::from(info.l3_offset);
    let ttl = info.ttl - 1;
    match info.family {
        Family::Ipv4 => {
            let old = be16(frame, l3 + 8);
            frame[l3 + 8] = ttl;
            let new = be16(frame, l3 + 8);
            let c = update16(be16(frame, l3 + 10), old, new);
            put16(frame, l3 + 10, c);
        }
        Family::Ipv6 => frame[l3 + 7] = ttl,
        Family::NonIp => {}
    }
    info.ttl = ttl;
    Some(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::*;
    use crate::{parse_frame, verify_ipv4_header, verify_l4_checksum};

    fn check(frame: &[u8], info: &FrameInfo) {
        assert_eq!(parse_frame(frame).unwrap(), *info, "info kept in step");
        assert_eq!(verify_ipv4_header(frame, info), Ok(()));
        assert_eq!(verify_l4_checksum(frame, info), Ok(()));
    }

    #[test]
    fn snat_tcp_syn() {
        let mut frame = TCP_SYN;
        let mut info = parse_frame(&frame).unwrap();
        assert!(set_ipv4_addr(
            &mut frame,
            &mut info,
            Side::Src,
            [198, 19, 7, 7]
        ));
        assert!(set_port(&mut frame, &mut info, Side::Src, 61000));
        assert_eq!(info.src_v4(), [198, 19, 7, 7]);
        assert_eq!(info.src_port, 61000);
        check(&frame, &info);
        assert!(!set_ipv6_addr(&mut frame, &mut info, Side::Src, [0; 16]));
    }

    #[test]
    fn dnat_udp6_and_udp4_zero_checksum() {
        let mut frame = UDP6;
        let mut info = parse_frame(&frame).unwrap();
        let mut to = [0u8; 16];
        to[..4].copy_from_slice(&[0x20, 0x01, 0, 2]);
        to[15] = 0x99;
        assert!(set_ipv6_addr(&mut frame, &mut info, Side::Dst, to));
        assert!(set_port(&mut frame, &mut info, Side::Dst, 53));
        check(&frame, &info);

        let mut frame = UDP4;
        frame[40..42].copy_from_slice(&[0, 0]);
        let mut info = parse_frame(&frame).unwrap();
        assert!(set_ipv4_addr(
            &mut frame,
            &mut info,
            Side::Dst,
            [198, 18, 9, 9]
        ));
        assert!(set_port(&mut frame, &mut info, Side::Dst, 5353));
        assert_eq!(&frame[40..42], &[0, 0], "no checksum stays no checksum");
        check(&frame, &info);
    }

    #[test]
    fn icmp_ident_and_addresses() {
        let mut frame = ICMP_ECHO_REQUEST;
        let mut info = parse_frame(&frame).unwrap();
        assert!(set_icmp_ident(&mut frame, &mut info, 4242));
        assert!(set_ipv4_addr(
            &mut frame,
            &mut info,
            Side::Src,
            [198, 19, 0, 1]
        ));
        check(&frame, &info);
        assert!(!set_port(&mut frame, &mut info, Side::Src, 1));

        let mut frame = ICMPV6_ECHO_REPLY;
        let mut info = parse_frame(&frame).unwrap();
        assert!(set_icmp_ident(&mut frame, &mut info, 1));
        assert!(set_ipv6_addr(
            &mut frame,
            &mut info,
            Side::Src,
            [0x20, 0x01, 0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
        ));
        check(&frame, &info);

        let mut frame = ICMP_PORT_UNREACH;
        let mut info = parse_frame(&frame).unwrap();
        assert!(
            !set_icmp_ident(&mut frame, &mut info, 1),
            "errors have no identifier"
        );
    }

    #[test]
    fn later_fragments_keep_their_data() {
        let mut frame = IPV4_LATER_FRAGMENT;
        let mut info = parse_frame(&frame).unwrap();
        assert!(set_ipv4_addr(
            &mut frame,
            &mut info,
            Side::Dst,
            [198, 18, 0, 3]
        ));
        assert!(!set_port(&mut frame, &mut info, Side::Dst, 1));
        assert_eq!(frame[34..], IPV4_LATER_FRAGMENT[34..]);
        check(&frame, &info);
    }

    #[test]
    fn ttl_decrement() {
        let mut frame = TCP_SYN;
        let mut info = parse_frame(&frame).unwrap();
        assert_eq!(decrement_ttl(&mut frame, &mut info), Some(63));
        check(&frame, &info);
        let mut frame = NEIGHBOR_SOLICIT;
        let mut info = parse_frame(&frame).unwrap();
        assert_eq!(decrement_ttl(&mut frame, &mut info), Some(254));
        assert_eq!(parse_frame(&frame).unwrap().ttl, 254);
        let mut frame = ARP_REQUEST;
        let mut info = parse_frame(&frame).unwrap();
        assert_eq!(decrement_ttl(&mut frame, &mut info), None);
        assert_eq!(frame, ARP_REQUEST);
        let mut frame = TCP_SYN;
        frame[22] = 1;
        crate::builder::fix_checksums(&mut frame);
        let mut info = parse_frame(&frame).unwrap();
        assert_eq!(decrement_ttl(&mut frame, &mut info), Some(0));
        check(&frame, &info);
        assert_eq!(decrement_ttl(&mut frame, &mut info), None);
        check(&frame, &info);
    }
}
