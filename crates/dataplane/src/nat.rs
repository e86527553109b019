//! Packet rewrites for NAT, IPv4 and IPv6, every checksum updated by RFC 1624 increments: the
//! IPv4 header checksum, the TCP/UDP checksum (which covers the addresses through the
//! pseudo-header in both families), the ICMP checksum (which does not), the ICMPv6 checksum
//! (which does, as TCP's). A UDP checksum of zero ("none") stays zero. ICMP/ICMPv6 errors about
//! a translated connection get their quoted header rewritten too; the error's checksum is then
//! recomputed over the message, as `nf_nat_icmp_reply_translation` and
//! `nf_nat_icmpv6_reply_translation` do.
//!
//! Addresses are 16 bytes in the layout of [`FrameInfo`] and conntrack's tuples: IPv4 in the
//! first 4, the rest zero.

use wire::checksum::{self, udp_update};
use wire::{ip_proto, Family, FrameInfo};

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The address of `len` bytes at `at`, in the 16-byte layout.
#[inline]
fn rd_addr(b: &[u8], at: usize, len: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..len].copy_from_slice(&b[at..at + len]);
    a
}

/// Where the translated header of one packet lives: `ip` is the IP header's offset, `l4` the
/// transport header's (or `None` when absent: a later fragment, or a quote too short).
#[derive(Clone, Copy, Debug)]
struct Layout {
    v6: bool,
    ip: usize,
    l4: Option<usize>,
    l4_avail: usize,
    proto: u8,
}

impl Layout {
    /// Offsets of the source and destination addresses and their length.
    fn addrs(&self) -> (usize, usize, usize) {
        if self.v6 {
            (self.ip + 8, self.ip + 24, 16)
        } else {
            (self.ip + 12, self.ip + 16, 4)
        }
    }

    fn header_len(&self) -> usize {
        if self.v6 {
            40
        } else {
            20
        }
    }
}

/// The new header fields of a packet: addresses, and for TCP/UDP the ports, for ICMP/ICMPv6
/// queries the identifier (in `sport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// RFC 1624 increment of one 16-bit word changing from `old` to `new` (`~m + m'`), to be
/// added up over all changed words and applied once with [`adjust`].
#[inline(always)]
fn delta16(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// The increment of an address of `len` bytes (4 or 16).
#[inline(always)]
fn delta_addr(old: &[u8; 16], new: &[u8; 16], len: usize) -> u64 {
    let mut d = 0;
    let mut i = 0;
    while i < len {
        d += delta16(
            u16::from_be_bytes([old[i], old[i + 1]]),
            u16::from_be_bytes([new[i], new[i + 1]]),
        );
        i += 2;
    }
    d
}

/// `HC' = ~(~HC + sum of increments)` (RFC 1624 eqn. 3), folded once: the same value as
/// applying the increments one field at a time, since the ones'-complement sum is associative.
#[inline(always)]
fn adjust(checksum: u16, delta: u64) -> u16 {
    !checksum::fold(u64::from(!checksum) + delta)
}

#[inline(always)]
fn is_icmp(proto: u8) -> bool {
    proto == ip_proto::ICMP || proto == ip_proto::ICMPV6
}

/// Applies `rw` to the packet at `lay`. The address increment is summed once and serves both
/// the IPv4 header checksum and the transport checksum (whose pseudo-header covers them; for
/// ICMPv4 it does not).
fn apply(b: &mut [u8], lay: Layout, rw: &Rewrite) {
    // One copy per address width: with the width a constant the address loads, sums and
    // stores are fixed-size moves, not loops and `memcpy` calls (IPv4 paid IPv6's width).
    if lay.v6 {
        apply_width::<16>(b, lay, rw)
    } else {
        apply_width::<4>(b, lay, rw)
    }
}

#[inline(always)]
fn apply_width<const ALEN: usize>(b: &mut [u8], lay: Layout, rw: &Rewrite) {
    let ip = lay.ip;
    if b.len() < ip + lay.header_len() {
        return;
    }
    let (sa, da, _) = lay.addrs();
    let alen = ALEN;
    let old_src = rd_addr(b, sa, alen);
    let old_dst = rd_addr(b, da, alen);
    let addr_delta = delta_addr(&old_src, &rw.src, alen) + delta_addr(&old_dst, &rw.dst, alen);
    if !lay.v6 {
        let ipc = adjust(rd16(b, ip + 10), addr_delta);
        wr16(b, ip + 10, ipc);
    }
    b[sa..sa + alen].copy_from_slice(&rw.src[..alen]);
    b[da..da + alen].copy_from_slice(&rw.dst[..alen]);
    let Some(l4) = lay.l4 else { return };
    match lay.proto {
        ip_proto::TCP | ip_proto::UDP => {
            if lay.l4_avail < 4 {
                return;
            }
            let (os, od) = (rd16(b, l4), rd16(b, l4 + 2));
            wr16(b, l4, rw.sport);
            wr16(b, l4 + 2, rw.dport);
            let at = if lay.proto == ip_proto::TCP {
                l4 + 16
            } else {
                l4 + 6
            };
            if lay.l4_avail < at - l4 + 2 {
                return;
            }
            let delta = addr_delta + delta16(os, rw.sport) + delta16(od, rw.dport);
            let c = rd16(b, at);
            let c = if lay.proto == ip_proto::UDP {
                udp_update(c, |c| adjust(c, delta))
            } else {
                adjust(c, delta)
            };
            wr16(b, at, c);
        }
        p if is_icmp(p) && (p == ip_proto::ICMPV6) == lay.v6 => {
            if lay.l4_avail < 8 {
                return;
            }
            let old = rd16(b, l4 + 4);
            wr16(b, l4 + 4, rw.sport);
            let pseudo = if lay.v6 { addr_delta } else { 0 };
            let c = adjust(rd16(b, l4 + 2), pseudo + delta16(old, rw.sport));
            wr16(b, l4 + 2, c);
        }
        _ => {}
    }
}

/// Rewrites an IPv4 or IPv6 frame parsed as `info` (not an ICMP error) to `rw`.
pub fn rewrite(frame: &mut [u8], info: &FrameInfo, rw: &Rewrite) {
    let l4 = info.has_l4_header().then_some(usize::from(info.l4_offset));
    let lay = Layout {
        v6: info.family == Family::Ipv6,
        ip: usize::from(info.l3_offset),
        l4,
        l4_avail: usize::from(info.l4_len()),
        proto: info.l4_proto,
    };
    apply(frame, lay, rw);
}

/// The current header fields of an IP frame in [`Rewrite`] form.
pub fn current(info: &FrameInfo) -> Rewrite {
    let (sport, dport) = if is_icmp(info.l4_proto) {
        (info.icmp_ident, 0)
    } else {
        (info.src_port, info.dst_port)
    };
    Rewrite {
        src: info.src,
        dst: info.dst,
        sport,
        dport,
    }
}

/// Rewrites an ICMP/ICMPv6 error about a translated connection: the quoted packet becomes
/// `inner` (what the receiving endpoint sent, before translation), the outer destination
/// follows the quoted source, the outer source follows the quoted destination where the
/// endpoint itself sent the error. The quoted IPv4 header checksum and the quoted
/// TCP/UDP/ICMP checksum (when quoted) are updated incrementally; the outer IPv4 checksum too;
/// the ICMP/ICMPv6 checksum is recomputed (ICMPv6's over its pseudo-header with the new outer
/// addresses). `quoted` is the quoted packet's parse (offsets relative to the quote). A quote
/// whose header does not fit the message is left alone.
pub fn rewrite_icmp_error(frame: &mut [u8], info: &FrameInfo, quoted: &FrameInfo, inner: &Rewrite) {
    let v6 = info.family == Family::Ipv6;
    let icmp = usize::from(info.l4_offset);
    let end = info.l3_end().min(frame.len());
    let q = icmp + 8;
    let lay = Layout {
        v6,
        ip: q,
        l4: quoted
            .has_l4_header()
            .then_some(q + usize::from(quoted.l4_offset)),
        l4_avail: usize::from(quoted.l3_len)
            .saturating_sub(usize::from(quoted.l4_offset))
            .min(end.saturating_sub(q + usize::from(quoted.l4_offset))),
        proto: quoted.l4_proto,
    };
    if end < q + lay.header_len() {
        return;
    }
    let (qs, qd, alen) = lay.addrs();
    let old_inner_src = rd_addr(frame, qs, alen);
    let old_inner_dst = rd_addr(frame, qd, alen);
    apply(&mut frame[..end], lay, inner);
    let outer = Layout {
        v6,
        ip: usize::from(info.l3_offset),
        l4: None,
        l4_avail: 0,
        proto: info.l4_proto,
    };
    let (os, od, _) = outer.addrs();
    let mut outer_src = rd_addr(frame, os, alen);
    let mut outer_dst = rd_addr(frame, od, alen);
    if outer_dst == old_inner_src {
        outer_dst = inner.src;
    }
    if outer_src == old_inner_dst {
        outer_src = inner.dst;
    }
    let same = Rewrite {
        src: outer_src,
        dst: outer_dst,
        sport: 0,
        dport: 0,
    };
    apply(frame, outer, &same);
    wr16(frame, icmp + 2, 0);
    let c = if v6 {
        checksum::l4_checksum_v6(&outer_src, &outer_dst, ip_proto::ICMPV6, &frame[icmp..end])
    } else {
        checksum::checksum(&frame[icmp..end])
    };
    wr16(frame, icmp + 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;
    use wire::{parse_embedded, parse_frame};

    /// A 4-byte IPv4 address in the 16-byte layout.
    fn w(x: [u8; 4]) -> [u8; 16] {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&x);
        a
    }

    /// An address pair of the family: IPv4 takes the first 4 bytes.
    fn pair(v6: bool, s: [u8; 16], d: [u8; 16]) -> IpPair {
        if v6 {
            IpPair::V6(s, d)
        } else {
            IpPair::V4([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]])
        }
    }

    /// The addresses as a rewrite sees them (IPv4: the rest zeroed).
    fn norm(v6: bool, a: [u8; 16]) -> [u8; 16] {
        if v6 {
            a
        } else {
            w([a[0], a[1], a[2], a[3]])
        }
    }

    /// Every checksum of the frame verified by a full recompute.
    fn full_ok(frame: &[u8]) {
        let info = parse_frame(frame).unwrap();
        wire::verify_ipv4_header(frame, &info).unwrap();
        wire::verify_l4_checksum(frame, &info).unwrap();
    }

    /// The UDP checksum offset of a plain frame of the family (no extension headers).
    fn udp_sum_at(v6: bool) -> usize {
        14 + if v6 { 40 } else { 20 } + 6
    }

    fn frames(ip: IpPair, sp: u16, dp: u16, payload: &[u8]) -> Vec<Vec<u8>> {
        let b = FrameBuilder::default();
        let spec = TcpSpec {
            src_port: sp,
            dst_port: dp,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
            options: vec![],
            payload,
        };
        vec![
            b.tcp(ip, &spec),
            b.udp(ip, sp, dp, payload),
            b.echo(ip, true, sp, 7, payload),
        ]
    }

    proptest! {
        /// Every rewrite kind (addresses, ports, ICMP/ICMPv6 id; TCP, UDP, ICMP, both
        /// families) gives the same bytes as building the translated packet from scratch.
        #[test]
        fn incremental_equals_full_recompute(
            v6 in any::<bool>(),
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>(),
            nsrc in any::<[u8; 16]>(), ndst in any::<[u8; 16]>(), nsp in any::<u16>(), ndp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let before = frames(pair(v6, src, dst), sp, dp, &payload);
            let after = frames(pair(v6, nsrc, ndst), nsp, ndp, &payload);
            let (nsrc, ndst) = (norm(v6, nsrc), norm(v6, ndst));
            for (i, (mut f, want)) in before.into_iter().zip(after).enumerate() {
                let info = parse_frame(&f).unwrap();
                let dport = if i == 2 { 0 } else { ndp };
                rewrite(&mut f, &info, &Rewrite { src: nsrc, dst: ndst, sport: nsp, dport });
                if i == 1 && rd16(&want, udp_sum_at(v6)) == 0xffff {
                    // a full recompute of 0 is sent as 0xffff; the increment may yield either
                    // form of zero, both valid
                    full_ok(&f);
                } else {
                    prop_assert_eq!(&f, &want);
                }
                full_ok(&f);
            }
        }
    }

    proptest! {
        /// An ICMP/ICMPv6 error about a translated TCP/UDP/echo packet comes out exactly as
        /// the error the endpoint would have got without NAT, with every checksum valid.
        #[test]
        fn icmp_error_translation_equals_building_it_untranslated(
            v6 in any::<bool>(),
            client in any::<[u8; 16]>(), server in any::<[u8; 16]>(), nat in any::<[u8; 16]>(),
            cport in any::<u16>(), nport in any::<u16>(), sport in any::<u16>(),
            kind in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let b = FrameBuilder::default();
            let inner = |src: [u8; 16], p: u16| -> Vec<u8> {
                let ip = pair(v6, src, server);
                match kind {
                    0 => b.udp(ip, p, sport, &payload),
                    1 => b.tcp(ip, &TcpSpec { src_port: p, dst_port: sport, seq: 5, ack: 0, flags: TcpFlags::SYN, window: 9, options: vec![], payload: &payload }),
                    _ => b.echo(ip, true, p, 1, &payload),
                }
            };
            let (ty, code) = if v6 { (1, 4) } else { (3, 3) };
            let sent = inner(nat, nport);
            let orig = inner(client, cport);
            let mut f = b.icmp_error(pair(v6, server, nat), ty, code, 0, &sent[14..]);
            let want = b.icmp_error(pair(v6, server, client), ty, code, 0, &orig[14..]);
            let info = parse_frame(&f).unwrap();
            let fam = if v6 { Family::Ipv6 } else { Family::Ipv4 };
            let quoted = parse_embedded(&f[usize::from(info.l4_offset) + 8..info.l3_end()], fam).unwrap();
            let dport = if kind == 2 { 0 } else { sport };
            let rw = Rewrite { src: norm(v6, client), dst: norm(v6, server), sport: cport, dport };
            rewrite_icmp_error(&mut f, &info, &quoted, &rw);
            let hl = if v6 { 40 } else { 20 };
            if kind == 0 && rd16(&want, 14 + hl + 8 + hl + 6) == 0xffff {
                // the increment may yield the other form of a zero UDP sum; both are valid
                full_ok(&f);
            } else {
                prop_assert_eq!(&f, &want);
            }
            full_ok(&f);
        }

        /// Errors with a cut or corrupted quote (whatever `parse_embedded` still accepts) are
        /// rewritten without a panic and keep a valid outer checksum.
        #[test]
        fn malformed_quotes_never_panic(
            v6 in any::<bool>(), cut in 0usize..80, flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..6),
        ) {
            let b = FrameBuilder::default();
            let (c, s) = (norm(v6, [0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), norm(v6, [0x20, 1, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]));
            let c = if v6 { c } else { w([198, 18, 0, 1]) };
            let s = if v6 { s } else { w([198, 18, 1, 2]) };
            let sent = b.tcp(pair(v6, c, s), &TcpSpec { src_port: 1024, dst_port: 80, seq: 5, ack: 0, flags: TcpFlags::SYN, window: 9, options: vec![], payload: b"data" });
            let mut quote = sent[14..].to_vec();
            for (at, x) in flips {
                if let Some(q) = quote.get_mut(at) {
                    *q ^= x;
                }
            }
            quote.truncate(cut.max(1));
            let (ty, code) = if v6 { (1, 4) } else { (3, 3) };
            let mut f = b.icmp_error(pair(v6, s, c), ty, code, 0, &quote);
            let Ok(info) = parse_frame(&f) else { return Ok(()) };
            let fam = if v6 { Family::Ipv6 } else { Family::Ipv4 };
            let q0 = usize::from(info.l4_offset) + 8;
            let Ok(quoted) = parse_embedded(&f[q0.min(info.l3_end())..info.l3_end()], fam) else { return Ok(()) };
            let rw = Rewrite { src: w([198, 18, 9, 9]), dst: s, sport: 7, dport: 8 };
            rewrite_icmp_error(&mut f, &info, &quoted, &rw);
            let info = parse_frame(&f).unwrap();
            wire::verify_ipv4_header(&f, &info).unwrap();
            prop_assert!(wire::verify_l4_checksum(&f, &info).is_ok());
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let b = FrameBuilder::default();
        let mut f = b.udp(IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]), 5000, 53, b"q");
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        let info = parse_frame(&f).unwrap();
        rewrite(
            &mut f,
            &info,
            &Rewrite {
                src: w([198, 18, 0, 254]),
                dst: w([198, 18, 0, 2]),
                sport: 1024,
                dport: 53,
            },
        );
        assert_eq!(rd16(&f, 14 + 20 + 6), 0);
        assert_eq!(&f[26..30], &[198, 18, 0, 254]);
        wire::verify_ipv4_header(&f, &parse_frame(&f).unwrap()).unwrap();
    }

    #[test]
    fn icmp_error_quote_is_translated_with_both_checksums() {
        let b = FrameBuilder::default();
        // client 198.18.0.1:40000 -> server 198.18.1.2:53, SNATed to 198.18.0.254:1024
        let sent = b.udp(
            IpPair::V4([198, 18, 0, 254], [198, 18, 1, 2]),
            1024,
            53,
            b"query",
        );
        let err = b.icmp_error(
            IpPair::V4([198, 18, 1, 2], [198, 18, 0, 254]),
            3,
            3,
            0,
            &sent[14..],
        );
        let orig = b.udp(
            IpPair::V4([198, 18, 0, 1], [198, 18, 1, 2]),
            40000,
            53,
            b"query",
        );
        let want = b.icmp_error(
            IpPair::V4([198, 18, 1, 2], [198, 18, 0, 1]),
            3,
            3,
            0,
            &orig[14..],
        );
        let mut f = err.clone();
        let info = parse_frame(&f).unwrap();
        let quoted = parse_embedded(
            &f[usize::from(info.l4_offset) + 8..info.l3_end()],
            Family::Ipv4,
        )
        .unwrap();
        rewrite_icmp_error(
            &mut f,
            &info,
            &quoted,
            &Rewrite {
                src: w([198, 18, 0, 1]),
                dst: w([198, 18, 1, 2]),
                sport: 40000,
                dport: 53,
            },
        );
        assert_eq!(f, want);
        full_ok(&f);
    }

    /// A real IPv6 TCP SYN (2001:2::1 -> 2001:2:0:1::10, port 40000 -> 80) SNATed to
    /// 2001:2::ff:1024: the bytes match the hand-computed checksum, and a full recompute agrees.
    #[test]
    fn ipv6_tcp_snat_checksum_by_hand() {
        let b = FrameBuilder::default();
        let c: [u8; 16] = "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let s: [u8; 16] = "2001:2:0:1::10"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let n: [u8; 16] = "2001:2::ff".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let spec = |p| TcpSpec {
            src_port: p,
            dst_port: 80,
            seq: 0x0102_0304,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64800,
            options: vec![],
            payload: &[],
        };
        let mut f = b.tcp(IpPair::V6(c, s), &spec(40000));
        let info = parse_frame(&f).unwrap();
        let before = rd16(&f, 14 + 40 + 16);
        rewrite(
            &mut f,
            &info,
            &Rewrite {
                src: n,
                dst: s,
                sport: 1024,
                dport: 80,
            },
        );
        // by hand: the source changes in its last word (0x0001 -> 0x00ff) and the port
        // (40000 -> 1024); ~C' = ~C + ~m + m' for each
        let mut acc = u64::from(!before);
        acc += u64::from(!0x0001u16) + 0x00ff;
        acc += u64::from(!40000u16) + 1024;
        assert_eq!(rd16(&f, 14 + 40 + 16), !checksum::fold(acc));
        assert_eq!(f, b.tcp(IpPair::V6(n, s), &spec(1024)));
        full_ok(&f);
    }
}
