//! What the stages read from a frame: the classifier key, and conntrack's view of the packet
//! with the L4 checksum check netfilter's conntrack does.

use super::*;

/// An address of the 16-byte layout as the classifier's number (IPv4 in the low 32 bits).
pub(super) fn addr_num(a: &[u8; 16], v6: bool) -> u128 {
    if v6 {
        u128::from_be_bytes(*a)
    } else {
        u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }
}

/// The inverse of [`addr_num`].
pub(super) fn num_addr(n: u128, v6: bool) -> [u8; 16] {
    if v6 {
        n.to_be_bytes()
    } else {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&(n as u32).to_be_bytes());
        b
    }
}

/// ICMP or ICMPv6: the identifier is the connection's "port".
pub(super) fn is_icmp(proto: u8) -> bool {
    proto == ip_proto::ICMP || proto == ip_proto::ICMPV6
}

pub(super) fn key_of(info: &FrameInfo, iif: u8, oif: u8) -> Key {
    let (src, dst) = match info.family {
        Family::Ipv4 => (
            u128::from(u32::from_be_bytes(info.src_v4())),
            u128::from(u32::from_be_bytes(info.dst_v4())),
        ),
        _ => (u128::from_be_bytes(info.src), u128::from_be_bytes(info.dst)),
    };
    let frag = info.is_later_fragment();
    let l4 = !frag && info.has_l4_header();
    Key {
        src,
        dst,
        sport: if l4 { info.src_port } else { 0 },
        dport: if l4 { info.dst_port } else { 0 },
        proto: info.l4_proto,
        iif,
        oif,
        ct: 0,
        icmp_type: if l4 { info.icmp_type } else { 0 },
        icmp_code: if l4 { info.icmp_code } else { 0 },
        tcp_flags: if l4 { info.tcp_flags.0 } else { 0 },
        frag,
    }
}

/// The L4 checksum as netfilter's conntrack checks it (`nf_conntrack_checksum`, PREROUTING):
/// TCP, UDP, ICMP and ICMPv6; a UDP checksum of zero means "none" and passes over IPv4 and
/// IPv6 alike (`udp_error` returns before the sum). Fragments are not verified (the kernel
/// verifies the reassembled packet; fwd does not reassemble).
pub(super) fn ct_checksum_ok(frame: &[u8], info: &FrameInfo) -> bool {
    if info.family == Family::Ipv6
        && info.l4_proto == ip_proto::UDP
        && !info.is_fragment
        && frame[usize::from(info.l4_offset) + 6..][..2] == [0, 0]
    {
        return true;
    }
    wire::verify_l4_checksum(frame, info).is_ok()
}

pub(super) fn ct_family(info: &FrameInfo) -> conntrack::Family {
    if info.family == Family::Ipv6 {
        conntrack::Family::V6
    } else {
        conntrack::Family::V4
    }
}

/// The conntrack view of a frame (and, for an ICMP error, the quoted packet's parse);
/// `None` for what conntrack cannot see (a later fragment, a malformed quote): INVALID.
pub(super) fn ct_packet(
    frame: &[u8],
    info: &FrameInfo,
    quote: &mut Option<FrameInfo>,
) -> Option<CtPacket> {
    if info.is_later_fragment()
        || !info.has_l4_header()
            && matches!(
                info.l4_proto,
                ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP | ip_proto::ICMPV6
            )
    {
        return None;
    }
    let family = ct_family(info);
    let l4_off = usize::from(info.l4_offset);
    let l4 = match info.l4_proto {
        ip_proto::TCP => {
            let h = &frame[l4_off..info.l3_end()];
            let doff = usize::from(h[12] >> 4) * 4;
            let mut seg = TcpSegment {
                sport: info.src_port,
                dport: info.dst_port,
                flags: info.tcp_flags.0,
                seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                window: u16::from_be_bytes([h[14], h[15]]),
                wscale: None,
                sack_perm: false,
                sack: None,
                payload_len: (h.len() - doff) as u32,
            };
            for o in wire::tcp::TcpOptions::new(&h[20..doff]).flatten() {
                match o {
                    TcpOption::WindowScale(s) => seg.wscale = Some(s),
                    TcpOption::SackPermitted => seg.sack_perm = true,
                    TcpOption::Sack(blocks) => {
                        for (_, right) in blocks.iter() {
                            seg.sack = Some(seg.sack.map_or(right, |r: u32| {
                                if right.wrapping_sub(r) as i32 > 0 {
                                    right
                                } else {
                                    r
                                }
                            }));
                        }
                    }
                    _ => {}
                }
            }
            L4::Tcp(seg)
        }
        ip_proto::UDP => L4::Udp {
            sport: info.src_port,
            dport: info.dst_port,
        },
        ip_proto::ICMP | ip_proto::ICMPV6
            if (info.l4_proto == ip_proto::ICMP) == (info.family == Family::Ipv4) =>
        {
            if conntrack::icmp_is_error(family, info.icmp_type) {
                let q = parse_embedded(&frame[l4_off + 8..info.l3_end()], info.family).ok()?;
                if !q.is_ip() || q.is_later_fragment() {
                    return None;
                }
                let (sport, dport) = match q.l4_proto {
                    ip_proto::ICMP | ip_proto::ICMPV6 => (
                        q.icmp_ident,
                        u16::from(q.icmp_type) << 8 | u16::from(q.icmp_code),
                    ),
                    ip_proto::TCP | ip_proto::UDP => (q.src_port, q.dst_port),
                    _ => (0, 0),
                };
                let inner = Tuple {
                    src: q.src,
                    dst: q.dst,
                    sport,
                    dport,
                };
                let err = IcmpErrorInfo {
                    ty: info.icmp_type,
                    code: info.icmp_code,
                    inner_proto: q.l4_proto,
                    inner,
                };
                let p = CtPacket {
                    family,
                    proto: info.l4_proto,
                    src: info.src,
                    dst: info.dst,
                    l4: L4::IcmpError(err),
                };
                *quote = Some(q);
                return Some(p);
            }
            L4::Icmp {
                ty: info.icmp_type,
                code: info.icmp_code,
                id: info.icmp_ident,
            }
        }
        _ => L4::Other,
    };
    Some(CtPacket {
        family,
        proto: info.l4_proto,
        src: info.src,
        dst: info.dst,
        l4,
    })
}
