//! REJECT replies, built into a caller's buffer without allocation, as Linux builds them
//! (`nf_reject_ipv4.c`, `nf_reject_ipv6.c`, `icmp_send`, `icmp6_send`):
//!
//! * `tcp-reset`: IP header with ID 0 and DF (IPv4), TTL/hop limit 64, traffic class 0; TCP
//!   with the original ports swapped; if the offending segment had ACK, `seq = its ack` and no
//!   ACK flag, else `seq = 0`, `ack = seq + SYN + FIN + payload length` with ACK (RFC 793). Never
//!   in answer to a RST.
//! * ICMP: destination unreachable with the code of `--reject-with`, quoting as much of the
//!   offending IP packet as fits in 576 bytes (IPv4) or 1280 bytes (IPv6); IPv4 TOS is the
//!   original's with precedence "internetwork control" (0xc0), no DF; TTL/hop limit 64.
//!   Never in answer to an ICMP error (ICMPv6 type < 128), and never to a non-first fragment.
//!
//! No reply goes to a broadcast or multicast destination (link or IP), and none if the offending
//! packet's transport checksum is wrong (`nf_reject_verify_csum` / `nf_ip_checksum`). The reply
//! is addressed from the original destination to the original source (a bump in the wire has no
//! address of its own on the path), and leaves through the ingress port with the MACs swapped
//! and the original's VLAN tags.

use rules::RejectWith;
use wire::builder::{ICMPV6_QUOTE_MAX, ICMP_QUOTE_MAX};
use wire::checksum;
use wire::{ip_proto, Family, FrameInfo};

/// Builds the reply to `frame` (parsed as `info`) into `out`; returns its length, or `None`
/// where Linux sends nothing. `ident` is the IPv4 ID of an ICMP reply.
///
/// A tagged or PPPoE-encapsulated frame's reply keeps its tags and PPPoE session header (its
/// length field set for the reply). Linux's bridged REJECT (`nf_reject_ipv4.c` with
/// br_netfilter) writes a plain Ethernet header instead, so a tagged client never sees it:
/// fwd answers on the client's VLAN or session, where the client can receive it.
pub fn build(
    frame: &[u8],
    info: &FrameInfo,
    with: RejectWith,
    ident: u16,
    out: &mut [u8],
) -> Option<usize> {
    let n = build_ip(frame, info, with, ident, out)?;
    if info.encap & wire::encap::PPPOE != 0 {
        let l3 = usize::from(info.l3_offset);
        let header = l3 - wire::pppoe::HEADER_LEN;
        let len = (n - l3 + 2) as u16;
        wire::pppoe::PppoeSession::new_unchecked(&mut out[header..l3]).set_length(len);
    }
    Some(n)
}

fn build_ip(
    frame: &[u8],
    info: &FrameInfo,
    with: RejectWith,
    ident: u16,
    out: &mut [u8],
) -> Option<usize> {
    if frame[0] & 1 != 0 || info.is_later_fragment() {
        return None; // group or broadcast destination MAC; not the first fragment
    }
    let v6 = info.family == Family::Ipv6;
    if !v6 {
        let d = info.dst_v4();
        if d == [255, 255, 255, 255] || (224..=239).contains(&d[0]) {
            return None;
        }
    } else if info.dst[0] == 0xff {
        return None;
    }
    if info.l4_proto == ip_proto::ICMP
        && !v6
        && conntrack::icmp_is_error(conntrack::Family::V4, info.icmp_type)
    {
        return None;
    }
    if v6 && info.l4_proto == ip_proto::ICMPV6 && info.icmp_type < 128 {
        return None;
    }
    if info.has_l4_header() && wire::verify_l4_checksum(frame, info).is_err() {
        return None;
    }
    let l2 = usize::from(info.l3_offset);
    if out.len() < l2 + 60 {
        return None;
    }
    // Ethernet (and VLAN tags) with the MACs swapped.
    out[..l2].copy_from_slice(&frame[..l2]);
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    let ip = l2;
    let l3_end = info.l3_end();
    match with {
        RejectWith::TcpReset => {
            if info.l4_proto != ip_proto::TCP
                || !info.has_l4_header()
                || info.tcp_flags.0 & 0x04 != 0
            {
                return None;
            }
            let t = usize::from(info.l4_offset);
            let seg_len = l3_end - t;
            let doff = usize::from(frame[t + 12] >> 4) * 4;
            let oseq = u32::from_be_bytes([frame[t + 4], frame[t + 5], frame[t + 6], frame[t + 7]]);
            let oack =
                u32::from_be_bytes([frame[t + 8], frame[t + 9], frame[t + 10], frame[t + 11]]);
            let flags = info.tcp_flags.0;
            let (seq, ack, rflags) = if flags & 0x10 != 0 {
                (oack, 0u32, 0x04u8)
            } else {
                let len = (seg_len - doff) as u32
                    + u32::from(flags & 0x02 != 0)
                    + u32::from(flags & 0x01 != 0);
                (0, oseq.wrapping_add(len), 0x14u8)
            };
            let th = if v6 { ip + 40 } else { ip + 20 };
            let tcp = &mut out[th..th + 20];
            tcp.fill(0);
            tcp[0..2].copy_from_slice(&frame[t + 2..t + 4]);
            tcp[2..4].copy_from_slice(&frame[t..t + 2]);
            tcp[4..8].copy_from_slice(&seq.to_be_bytes());
            tcp[8..12].copy_from_slice(&ack.to_be_bytes());
            tcp[12] = 5 << 4;
            tcp[13] = rflags;
            let end = th + 20;
            if v6 {
                ipv6_header(out, ip, info, ip_proto::TCP, 20);
                let (s, d) = addrs6(out, ip);
                let c = checksum::l4_checksum_v6(&s, &d, ip_proto::TCP, &out[th..end]);
                out[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
            } else {
                ipv4_header(out, ip, info, ip_proto::TCP, 20, 0, 0, true);
                let (s, d) = addrs4(out, ip);
                let c = checksum::l4_checksum_v4(s, d, ip_proto::TCP, &out[th..end]);
                out[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
            }
            Some(end)
        }
        _ => {
            let (ty, code) = with.icmp_type_code()?;
            let orig = &frame[ip..l3_end];
            let (hdr, max) = if v6 {
                (40, ICMPV6_QUOTE_MAX)
            } else {
                (20, ICMP_QUOTE_MAX)
            };
            let room = out.len() - ip - hdr - 8;
            let q = orig.len().min(max).min(room);
            let ic = ip + hdr;
            let end = ic + 8 + q;
            out[ic..ic + 8].fill(0);
            out[ic] = ty;
            out[ic + 1] = code;
            out[ic + 8..end].copy_from_slice(&orig[..q]);
            if v6 {
                ipv6_header(out, ip, info, ip_proto::ICMPV6, 8 + q);
                let (s, d) = addrs6(out, ip);
                let c = checksum::l4_checksum_v6(&s, &d, ip_proto::ICMPV6, &out[ic..end]);
                out[ic + 2..ic + 4].copy_from_slice(&c.to_be_bytes());
            } else {
                let tos = (frame[ip + 1] & 0x1e) | 0xc0;
                ipv4_header(out, ip, info, ip_proto::ICMP, 8 + q, tos, ident, false);
                let c = checksum::checksum(&out[ic..end]);
                out[ic + 2..ic + 4].copy_from_slice(&c.to_be_bytes());
            }
            Some(end)
        }
    }
}

fn addrs4(out: &[u8], ip: usize) -> ([u8; 4], [u8; 4]) {
    let mut s = [0; 4];
    let mut d = [0; 4];
    s.copy_from_slice(&out[ip + 12..ip + 16]);
    d.copy_from_slice(&out[ip + 16..ip + 20]);
    (s, d)
}

fn addrs6(out: &[u8], ip: usize) -> ([u8; 16], [u8; 16]) {
    let mut s = [0; 16];
    let mut d = [0; 16];
    s.copy_from_slice(&out[ip + 8..ip + 24]);
    d.copy_from_slice(&out[ip + 24..ip + 40]);
    (s, d)
}

#[allow(clippy::too_many_arguments)]
fn ipv4_header(
    out: &mut [u8],
    ip: usize,
    info: &FrameInfo,
    proto: u8,
    l4_len: usize,
    tos: u8,
    ident: u16,
    df: bool,
) {
    let h = &mut out[ip..ip + 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&info.dst_v4());
    h[16..20].copy_from_slice(&info.src_v4());
    let c = checksum::checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

fn ipv6_header(out: &mut [u8], ip: usize, info: &FrameInfo, next: u8, l4_len: usize) {
    let h = &mut out[ip..ip + 40];
    h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&info.dst);
    h[24..40].copy_from_slice(&info.src);
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::ethernet::MacAddr;
    use wire::parse_frame;
    use wire::tcp::TcpFlags;

    const C: [u8; 4] = [198, 18, 0, 1];
    const S: [u8; 4] = [198, 18, 0, 2];

    fn v4() -> IpPair {
        IpPair::V4(C, S)
    }

    fn reply(frame: &[u8], with: RejectWith) -> Option<Vec<u8>> {
        let info = parse_frame(frame).unwrap();
        let mut out = vec![0u8; 2048];
        build(frame, &info, with, 0x1234, &mut out).map(|n| out[..n].to_vec())
    }

    fn syn(payload: &[u8], flags: TcpFlags, ack: u32) -> TcpSpec<'_> {
        TcpSpec {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack,
            flags,
            window: 64240,
            options: vec![],
            payload,
        }
    }

    fn swapped(b: &FrameBuilder) -> FrameBuilder {
        FrameBuilder {
            src_mac: b.dst_mac,
            dst_mac: b.src_mac,
            ..b.clone()
        }
    }

    #[test]
    fn tcp_reset_to_syn_acks_the_syn() {
        let b = FrameBuilder::default();
        let f = b.tcp(v4(), &syn(b"", TcpFlags::SYN, 0));
        let r = reply(&f, RejectWith::TcpReset).unwrap();
        let want = FrameBuilder {
            ident: 0,
            dont_frag: true,
            ttl: 64,
            tos: 0,
            ..swapped(&b)
        }
        .tcp(
            IpPair::V4(S, C),
            &TcpSpec {
                src_port: 80,
                dst_port: 40000,
                seq: 0,
                ack: 1001,
                flags: TcpFlags(0x14),
                window: 0,
                options: vec![],
                payload: b"",
            },
        );
        assert_eq!(r, want);
    }

    #[test]
    fn tcp_reset_to_ack_takes_its_ack_as_seq_and_never_answers_rst() {
        let b = FrameBuilder::default();
        let f = b.tcp(v4(), &syn(b"hello", TcpFlags(0x18), 777));
        let r = reply(&f, RejectWith::TcpReset).unwrap();
        let info = parse_frame(&r).unwrap();
        assert_eq!(info.tcp_flags.0, 0x04);
        let t = usize::from(info.l4_offset);
        assert_eq!(&r[t + 4..t + 8], &777u32.to_be_bytes());
        assert_eq!(&r[t + 8..t + 12], &[0, 0, 0, 0]);
        wire::verify_l4_checksum(&r, &info).unwrap();
        let rst = b.tcp(v4(), &syn(b"", TcpFlags::RST, 0));
        assert_eq!(reply(&rst, RejectWith::TcpReset), None);
    }

    #[test]
    fn icmp_unreachable_quotes_the_packet_for_every_v4_type() {
        let b = FrameBuilder {
            tos: 0x10,
            ..FrameBuilder::default()
        };
        let f = b.udp(v4(), 5000, 53, b"question");
        for with in [
            RejectWith::IcmpNetUnreachable,
            RejectWith::IcmpHostUnreachable,
            RejectWith::IcmpPortUnreachable,
            RejectWith::IcmpProtoUnreachable,
            RejectWith::IcmpNetProhibited,
            RejectWith::IcmpHostProhibited,
            RejectWith::IcmpAdminProhibited,
        ] {
            let (ty, code) = with.icmp_type_code().unwrap();
            let r = reply(&f, with).unwrap();
            let want = FrameBuilder {
                ident: 0x1234,
                dont_frag: false,
                ttl: 64,
                tos: 0xd0,
                ..swapped(&b)
            }
            .icmp_error(IpPair::V4(S, C), ty, code, 0, &f[14..]);
            assert_eq!(r, want, "{with:?}");
        }
    }

    #[test]
    fn icmpv6_unreachable_for_every_v6_type_and_reset_v6() {
        let b = FrameBuilder::default();
        let c6 = "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let s6 = "2001:2::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let f = b.udp(IpPair::V6(c6, s6), 5000, 53, b"q6");
        for with in [
            RejectWith::Icmp6NoRoute,
            RejectWith::Icmp6AdmProhibited,
            RejectWith::Icmp6AddrUnreachable,
            RejectWith::Icmp6PortUnreachable,
            RejectWith::Icmp6PolicyFail,
            RejectWith::Icmp6RejectRoute,
        ] {
            let (ty, code) = with.icmp_type_code().unwrap();
            let r = reply(&f, with).unwrap();
            let want = FrameBuilder {
                ttl: 64,
                tos: 0,
                flow_label: 0,
                ..swapped(&b)
            }
            .icmp_error(IpPair::V6(s6, c6), ty, code, 0, &f[14..]);
            assert_eq!(r, want, "{with:?}");
        }
        let s = b.tcp(IpPair::V6(c6, s6), &syn(b"", TcpFlags::SYN, 0));
        let r = reply(&s, RejectWith::TcpReset).unwrap();
        let info = parse_frame(&r).unwrap();
        assert_eq!(
            (info.src_port, info.dst_port, info.tcp_flags.0),
            (80, 40000, 0x14)
        );
        wire::verify_l4_checksum(&r, &info).unwrap();
    }

    #[test]
    fn no_reply_to_icmp_errors_broadcast_multicast_fragments_or_bad_checksums() {
        let b = FrameBuilder::default();
        let u = b.udp(v4(), 5000, 53, b"x");
        let err = b.icmp_error(v4(), 3, 3, 0, &u[14..]);
        assert_eq!(reply(&err, RejectWith::IcmpPortUnreachable), None);
        let bc = FrameBuilder {
            dst_mac: MacAddr::BROADCAST,
            ..b.clone()
        }
        .udp(v4(), 1, 2, b"x");
        assert_eq!(reply(&bc, RejectWith::IcmpPortUnreachable), None);
        let mc = b.udp(IpPair::V4(C, [224, 0, 0, 251]), 5353, 5353, b"x");
        assert_eq!(reply(&mc, RejectWith::IcmpPortUnreachable), None);
        let mut bad = u.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert_eq!(reply(&bad, RejectWith::IcmpPortUnreachable), None);
        let frag = FrameBuilder {
            fragment: Some(wire::builder::FragmentSpec {
                offset: 64,
                more: false,
                ident: 9,
            }),
            ..b.clone()
        }
        .ip_frame(v4(), ip_proto::UDP, b"later fragment bytes");
        assert_eq!(reply(&frag, RejectWith::IcmpPortUnreachable), None);
        // echo request: answered
        let ping = b.echo(v4(), true, 1, 1, b"p");
        assert!(reply(&ping, RejectWith::IcmpHostProhibited).is_some());
    }

    #[test]
    fn quote_is_cut_at_576_bytes() {
        let b = FrameBuilder::default();
        let f = b.udp(v4(), 5000, 53, &[7u8; 1000]);
        let r = reply(&f, RejectWith::IcmpPortUnreachable).unwrap();
        assert_eq!(r.len(), 14 + 576);
    }
}
