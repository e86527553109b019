//! Packet rewrites for NAT (IPv4 only, as fwd's rules allow), every checksum updated by
//! RFC 1624 increments: the IPv4 header checksum, the TCP/UDP checksum (which covers the
//! addresses through the pseudo-header), the ICMP checksum (which does not). A UDP checksum of
//! zero ("none") stays zero. ICMP errors about a translated connection get their quoted header
//! rewritten too; the ICMP checksum of an error is then recomputed over the message, as
//! `nf_nat_icmp_reply_translation` does.

use wire::checksum::{self, udp_update};
use wire::{ip_proto, FrameInfo};

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn rd32(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

/// Where the translated header of one IPv4 packet lives: `ip` is the IP header's offset, `l4`
/// the transport header's (or `None` when absent: a later fragment, or a quote too short).
#[derive(Clone, Copy, Debug)]
struct Layout {
    ip: usize,
    l4: Option<usize>,
    l4_avail: usize,
    proto: u8,
}

/// The new header fields of a packet: addresses, and for TCP/UDP the ports, for ICMP queries
/// the identifier (in `sport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

/// RFC 1624 increment of one 16-bit word changing from `old` to `new` (`~m + m'`), to be
/// added up over all changed words and applied once with [`adjust`].
#[inline(always)]
fn delta16(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

#[inline(always)]
fn delta32(old: [u8; 4], new: [u8; 4]) -> u64 {
    let (o, n) = (u32::from_be_bytes(old), u32::from_be_bytes(new));
    delta16((o >> 16) as u16, (n >> 16) as u16) + delta16(o as u16, n as u16)
}

/// `HC' = ~(~HC + sum of increments)` (RFC 1624 eqn. 3), folded once: the same value as
/// applying the increments one field at a time, since the ones'-complement sum is associative.
#[inline(always)]
fn adjust(checksum: u16, delta: u64) -> u16 {
    !checksum::fold(u64::from(!checksum) + delta)
}

/// Applies `rw` to the packet at `lay`. The address increment is summed once and serves both
/// the IP header checksum and the transport checksum (whose pseudo-header covers them).
fn apply(b: &mut [u8], lay: Layout, rw: &Rewrite) {
    let ip = lay.ip;
    let Some(hdr) = b.get_mut(ip..ip + 20) else {
        return;
    };
    let old_src = rd32(hdr, 12);
    let old_dst = rd32(hdr, 16);
    let addr_delta = delta32(old_src, rw.src) + delta32(old_dst, rw.dst);
    let ipc = adjust(rd16(hdr, 10), addr_delta);
    wr16(hdr, 10, ipc);
    hdr[12..16].copy_from_slice(&rw.src);
    hdr[16..20].copy_from_slice(&rw.dst);
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
        ip_proto::ICMP => {
            if lay.l4_avail < 8 {
                return;
            }
            let old = rd16(b, l4 + 4);
            wr16(b, l4 + 4, rw.sport);
            let c = adjust(rd16(b, l4 + 2), delta16(old, rw.sport));
            wr16(b, l4 + 2, c);
        }
        _ => {}
    }
}

/// Rewrites an IPv4 frame parsed as `info` (not an ICMP error) to `rw`.
pub fn rewrite(frame: &mut [u8], info: &FrameInfo, rw: &Rewrite) {
    let l4 = info.has_l4_header().then_some(usize::from(info.l4_offset));
    let lay = Layout {
        ip: usize::from(info.l3_offset),
        l4,
        l4_avail: usize::from(info.l4_len()),
        proto: info.l4_proto,
    };
    apply(frame, lay, rw);
}

/// The current header fields of an IPv4 frame in [`Rewrite`] form.
pub fn current(info: &FrameInfo) -> Rewrite {
    let (sport, dport) = match info.l4_proto {
        ip_proto::ICMP => (info.icmp_ident, 0),
        _ => (info.src_port, info.dst_port),
    };
    Rewrite {
        src: info.src_v4(),
        dst: info.dst_v4(),
        sport,
        dport,
    }
}

/// Rewrites an ICMPv4 error about a translated connection: the quoted packet becomes `inner`
/// (what the receiving endpoint sent, before translation), the outer destination follows the
/// quoted source, the outer source follows the quoted destination where the endpoint itself sent
/// the error. The quoted IP header checksum and the quoted TCP/UDP/ICMP checksum (when quoted)
/// are updated incrementally; the outer IP checksum too; the ICMP checksum is recomputed.
/// `quoted` is the quoted packet's parse (offsets relative to the quote).
pub fn rewrite_icmp_error(frame: &mut [u8], info: &FrameInfo, quoted: &FrameInfo, inner: &Rewrite) {
    let q = usize::from(info.l4_offset) + 8;
    let old_inner_src = rd32(frame, q + 12);
    let old_inner_dst = rd32(frame, q + 16);
    let lay = Layout {
        ip: q,
        l4: quoted
            .has_l4_header()
            .then_some(q + usize::from(quoted.l4_offset)),
        l4_avail: usize::from(quoted.l3_len).saturating_sub(usize::from(quoted.l4_offset)),
        proto: quoted.l4_proto,
    };
    apply(frame, lay, inner);
    let ip = usize::from(info.l3_offset);
    let mut outer_src = rd32(frame, ip + 12);
    let mut outer_dst = rd32(frame, ip + 16);
    if outer_dst == old_inner_src {
        outer_dst = inner.src;
    }
    if outer_src == old_inner_dst {
        outer_src = inner.dst;
    }
    let outer = Layout {
        ip,
        l4: None,
        l4_avail: 0,
        proto: ip_proto::ICMP,
    };
    let same = Rewrite {
        src: outer_src,
        dst: outer_dst,
        sport: 0,
        dport: 0,
    };
    apply(frame, outer, &same);
    let icmp = usize::from(info.l4_offset);
    let end = info.l3_end();
    wr16(frame, icmp + 2, 0);
    let c = checksum::checksum(&frame[icmp..end]);
    wr16(frame, icmp + 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;
    use wire::{parse_embedded, parse_frame, Family};

    fn a(x: [u8; 4]) -> [u8; 4] {
        x
    }

    fn full_ok(frame: &[u8]) {
        let info = parse_frame(frame).unwrap();
        wire::verify_ipv4_header(frame, &info).unwrap();
        wire::verify_l4_checksum(frame, &info).unwrap();
    }

    fn frames(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<Vec<u8>> {
        let b = FrameBuilder::default();
        let ip = IpPair::V4(a(src), a(dst));
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
        /// Every rewrite kind (addresses, ports, ICMP id; TCP, UDP, ICMP) gives the same
        /// checksums as building the translated packet from scratch.
        #[test]
        fn incremental_equals_full_recompute(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(), nsp in any::<u16>(), ndp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let before = frames(src, dst, sp, dp, &payload);
            let after = frames(nsrc, ndst, nsp, ndp, &payload);
            for (i, (mut f, want)) in before.into_iter().zip(after).enumerate() {
                let info = parse_frame(&f).unwrap();
                let dport = if i == 2 { 0 } else { ndp };
                rewrite(&mut f, &info, &Rewrite { src: nsrc, dst: ndst, sport: nsp, dport });
                if i == 2 {
                    // the echo builder puts the sequence where we keep it: compare whole frames
                    prop_assert_eq!(&f, &want);
                } else if i == 1 && rd16(&want, 14 + 20 + 6) == 0xffff {
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
        /// An ICMP error about a translated TCP/UDP/ICMP packet comes out exactly as the error
        /// the endpoint would have got without NAT, with every checksum valid.
        #[test]
        fn icmp_error_translation_equals_building_it_untranslated(
            client in any::<[u8; 4]>(), server in any::<[u8; 4]>(), nat in any::<[u8; 4]>(),
            cport in any::<u16>(), nport in any::<u16>(), sport in any::<u16>(),
            kind in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let b = FrameBuilder::default();
            let inner = |src: [u8; 4], p: u16| -> Vec<u8> {
                let ip = IpPair::V4(src, server);
                match kind {
                    0 => b.udp(ip, p, sport, &payload),
                    1 => b.tcp(ip, &TcpSpec { src_port: p, dst_port: sport, seq: 5, ack: 0, flags: TcpFlags::SYN, window: 9, options: vec![], payload: &payload }),
                    _ => b.echo(ip, true, p, 1, &payload),
                }
            };
            let sent = inner(nat, nport);
            let orig = inner(client, cport);
            let mut f = b.icmp_error(IpPair::V4(server, nat), 3, 3, 0, &sent[14..]);
            let want = b.icmp_error(IpPair::V4(server, client), 3, 3, 0, &orig[14..]);
            let info = parse_frame(&f).unwrap();
            let quoted = parse_embedded(&f[usize::from(info.l4_offset) + 8..info.l3_end()], Family::Ipv4).unwrap();
            let dport = if kind == 2 { 0 } else { sport };
            rewrite_icmp_error(&mut f, &info, &quoted, &Rewrite { src: client, dst: server, sport: cport, dport });
            if kind == 0 && rd16(&want, 14 + 20 + 8 + 20 + 6) == 0xffff {
                // the increment may yield the other form of a zero UDP sum; both are valid
                full_ok(&f);
            } else {
                prop_assert_eq!(f, want);
            }
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let b = FrameBuilder::default();
        let mut f = b.udp(
            IpPair::V4(a([198, 18, 0, 1]), a([198, 18, 0, 2])),
            5000,
            53,
            b"q",
        );
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        let info = parse_frame(&f).unwrap();
        rewrite(
            &mut f,
            &info,
            &Rewrite {
                src: [198, 18, 0, 254],
                dst: [198, 18, 0, 2],
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
            IpPair::V4(a([198, 18, 0, 254]), a([198, 18, 1, 2])),
            1024,
            53,
            b"query",
        );
        let err = b.icmp_error(
            IpPair::V4(a([198, 18, 1, 2]), a([198, 18, 0, 254])),
            3,
            3,
            0,
            &sent[14..],
        );
        let orig = b.udp(
            IpPair::V4(a([198, 18, 0, 1]), a([198, 18, 1, 2])),
            40000,
            53,
            b"query",
        );
        let want = b.icmp_error(
            IpPair::V4(a([198, 18, 1, 2]), a([198, 18, 0, 1])),
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
                src: [198, 18, 0, 1],
                dst: [198, 18, 1, 2],
                sport: 40000,
                dport: 53,
            },
        );
        assert_eq!(f, want);
        full_ok(&f);
    }
}
