//! The protocol matches with their own headers: `-m sctp` (`xt_sctp`: ports, the chunk walk),
//! `-m dccp` (`xt_dccp`: ports, packet type, option search), `-m esp` (`xt_esp`) and `-m ah`
//! (`ipt_ah`, and `ip6t_ah`, which finds the header in the extension header chain). They read
//! the frame where they are evaluated, as the kernel reads the skb, without allocating.
//!
//! `-m rt` (`ip6t_rt`) finds the routing header in the extension header chain as `-m ah` does.
//!
//! Where the kernel sets `hotdrop` (a truncated header, a zero-length SCTP chunk, a DCCP data
//! offset shorter than its header) the match here fails: fwd has no per-match drop verdict, and
//! failing is the closed side for an ACCEPT rule.

use rules::{AhMatch, ChunkMatchType, DccpMatch, Match, ProtoPorts, RtMatch, SctpMatch, SpiMatch};
use wire::{ip_proto, Family, FrameInfo};

/// One compiled protocol match (a [`crate::compiled::LeafCheck::Proto`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoCheck {
    Sctp(SctpMatch),
    Dccp(DccpMatch),
    Esp(SpiMatch),
    Ah(AhMatch),
    Rt(RtMatch),
}

impl ProtoCheck {
    /// The check for one of these matches; `None` for any other match.
    pub fn of(m: &Match) -> Option<ProtoCheck> {
        Some(match m {
            Match::Sctp(s) => ProtoCheck::Sctp(s.clone()),
            Match::Dccp(d) => ProtoCheck::Dccp(*d),
            Match::Esp(s) => ProtoCheck::Esp(*s),
            Match::Ah(a) => ProtoCheck::Ah(*a),
            Match::Rt(r) => ProtoCheck::Rt(r.clone()),
            _ => return None,
        })
    }

    /// Whether the packet matches, as the kernel's match function decides.
    pub fn matches(&self, frame: &[u8], info: &FrameInfo) -> bool {
        let end = info.l3_end().min(frame.len());
        // the chain walk finds a routing header before a later fragment's header too
        let later_fragment_ok = matches!(self, ProtoCheck::Rt(_));
        if !info.is_ip() || (info.is_later_fragment() && !later_fragment_ok) {
            return false;
        }
        let th = usize::from(info.l4_offset);
        match self {
            ProtoCheck::Sctp(s) => info.l4_proto == ip_proto::SCTP && sctp(s, frame, th, end),
            ProtoCheck::Dccp(d) => info.l4_proto == DCCP && dccp(d, frame, th, end),
            ProtoCheck::Esp(s) => {
                info.l4_proto == ip_proto::ESP
                    && be32(frame, th, end).is_some_and(|spi| s.matches(spi))
            }
            ProtoCheck::Ah(a) => match info.family {
                Family::Ipv4 => {
                    info.l4_proto == ip_proto::AH
                        && th + 12 <= end
                        && be32(frame, th + 4, end).is_some_and(|spi| a.spi.matches(spi))
                }
                _ => ah6(a, frame, usize::from(info.l3_offset), end),
            },
            ProtoCheck::Rt(r) => {
                info.family == Family::Ipv6 && rt(r, frame, usize::from(info.l3_offset), end)
            }
        }
    }
}

const DCCP: u8 = 33;

fn be16(b: &[u8], at: usize, end: usize) -> Option<u16> {
    (at + 2 <= end).then(|| u16::from_be_bytes([b[at], b[at + 1]]))
}

fn be32(b: &[u8], at: usize, end: usize) -> Option<u32> {
    (at + 4 <= end).then(|| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// `SCCHECK`/`DCCHECK`: an option not given holds; one given holds if `cond` differs from its
/// inversion.
fn ports_ok(p: &Option<ProtoPorts>, port: u16) -> bool {
    p.is_none_or(|p| (p.range.lo <= port && port <= p.range.hi) != p.negated)
}

fn sctp(s: &SctpMatch, b: &[u8], th: usize, end: usize) -> bool {
    // `struct sctphdr`: ports, verification tag, checksum.
    if th + 12 > end {
        return false;
    }
    let (sp, dp) = (be16(b, th, end).unwrap(), be16(b, th + 2, end).unwrap());
    if !ports_ok(&s.sport, sp) || !ports_ok(&s.dport, dp) {
        return false;
    }
    let Some(c) = &s.chunks else { return true };
    let Some(hit) = sctp_chunks(c, b, th + 12, end) else {
        return false; // hotdrop
    };
    hit != c.negated
}

/// `match_packet()` of `xt_sctp.c`: walks the chunks; `None` where the kernel hotdrops.
fn sctp_chunks(c: &rules::SctpChunks, b: &[u8], mut off: usize, end: usize) -> Option<bool> {
    let flags_ok = |t: u8, f: u8| {
        c.flags
            .iter()
            .find(|x| x.chunk_type == t)
            .is_none_or(|x| f & x.mask == x.flags)
    };
    let mut left = c.map;
    loop {
        if off + 4 > end {
            return None;
        }
        let (t, f) = (b[off], b[off + 1]);
        let len = usize::from(be16(b, off + 2, end)?);
        if len == 0 {
            return None;
        }
        if c.has(t) {
            match c.kind {
                ChunkMatchType::Any if flags_ok(t, f) => return Some(true),
                ChunkMatchType::All if flags_ok(t, f) => {
                    left[usize::from(t >> 5)] &= !(1 << (t & 31));
                }
                ChunkMatchType::Only if !flags_ok(t, f) => return Some(false),
                _ => {}
            }
        } else if c.kind == ChunkMatchType::Only {
            return Some(false);
        }
        off += (len + 3) & !3;
        if off >= end {
            break;
        }
    }
    Some(match c.kind {
        ChunkMatchType::All => left == [0; 8],
        ChunkMatchType::Any => false,
        ChunkMatchType::Only => true,
    })
}

/// `__dccp_hdr_len()`: generic header (with the extended sequence number when X is set) plus
/// the type's own fields.
fn dccp_hdr_len(x: bool, ty: u8) -> usize {
    12 + if x { 4 } else { 0 }
        + match ty {
            2 => 0,                     // DATA
            3 | 4 | 5 | 6 | 8 | 9 => 8, // ACK, DATAACK, CLOSEREQ, CLOSE, SYNC, SYNCACK
            0 => 4,                     // REQUEST
            _ => 12,                    // RESPONSE, RESET and the rest
        }
}

fn dccp(d: &DccpMatch, b: &[u8], th: usize, end: usize) -> bool {
    if th + 12 > end {
        return false;
    }
    let (sp, dp) = (be16(b, th, end).unwrap(), be16(b, th + 2, end).unwrap());
    let ty = (b[th + 8] >> 1) & 0x0f;
    if !ports_ok(&d.sport, sp) || !ports_ok(&d.dport, dp) {
        return false;
    }
    if d.types
        .is_some_and(|(mask, neg)| (mask & (1 << ty) != 0) == neg)
    {
        return false;
    }
    let Some((opt, neg)) = d.option else {
        return true;
    };
    let hl = dccp_hdr_len(b[th + 8] & 1 != 0, ty);
    let doff = usize::from(b[th + 4]) * 4;
    if doff < hl {
        return false; // hotdrop
    }
    let (start, stop) = (th + hl, th + doff);
    if stop > end {
        return false; // hotdrop: options beyond the packet
    }
    let mut i = start;
    let mut found = false;
    while i < stop {
        let k = b[i];
        if k == opt {
            found = true;
            break;
        }
        i += if k < 2 {
            1
        } else {
            usize::from(*b.get(i + 1).filter(|_| i + 1 < stop).unwrap_or(&1)).max(1)
        };
    }
    found != neg
}

/// No next header (`NEXTHDR_NONE`).
const NO_NEXT: u8 = 59;

/// `ipv6_find_hdr(skb, &ptr, target, NULL, NULL)`: the offset of the first `target` header in
/// the extension header chain of the IPv6 header at `ip` (packet ending at `end`). `Ok(None)`
/// where the kernel says `-ENOENT` (the chain ends, or a later fragment starts, first); `Err`
/// where it says `-EBADMSG` (a header cut short), on which a match hotdrops.
fn find_ext(b: &[u8], ip: usize, end: usize, target: u8) -> Result<Option<usize>, ()> {
    if ip + 40 > end {
        return Err(());
    }
    let mut next = b[ip + 6];
    let mut off = ip + 40;
    // Each header is at least 8 bytes: the walk is bounded by the packet length.
    loop {
        let found = next == target;
        let ext = matches!(
            next,
            ip_proto::HOPOPTS
                | ip_proto::ROUTING
                | ip_proto::FRAGMENT
                | ip_proto::AH
                | ip_proto::DSTOPTS
        );
        if !ext || next == NO_NEXT {
            return Ok(found.then_some(off));
        }
        if off + 2 > end || (next == ip_proto::ROUTING && off + 4 > end) {
            return Err(());
        }
        let len = match next {
            ip_proto::FRAGMENT => {
                let frag_off = be16(b, off + 2, end).ok_or(())? & 0xfff8;
                if frag_off != 0 {
                    return Ok(found.then_some(off));
                }
                8
            }
            ip_proto::AH => (usize::from(b[off + 1]) + 2) * 4,
            _ => (usize::from(b[off + 1]) + 1) * 8,
        };
        if found {
            return Ok(Some(off));
        }
        next = b[off];
        off += len;
    }
}

fn ah6(a: &AhMatch, b: &[u8], ip: usize, end: usize) -> bool {
    let Ok(Some(at)) = find_ext(b, ip, end, ip_proto::AH) else {
        return false;
    };
    // `struct ip_auth_hdr`: next header, length, reserved, SPI, sequence number.
    if at + 12 > end {
        return false; // hotdrop
    }
    let hdrlen = (u32::from(b[at + 1]) + 2) << 2;
    let reserved = u16::from_be_bytes([b[at + 2], b[at + 3]]);
    let spi = be32(b, at + 4, end).unwrap();
    a.spi.matches(spi)
        && a.len.is_none_or(|(l, neg)| l == 0 || (l == hdrlen) != neg)
        && !(a.res && reserved != 0)
}

/// `rt_mt6`: the routing header's Segments Left, length and type, the type 0 reserved field and
/// address list (strict: exactly these addresses in this order; not strict: these among the
/// header's, in order).
fn rt(r: &RtMatch, b: &[u8], ip: usize, end: usize) -> bool {
    let Ok(Some(at)) = find_ext(b, ip, end, ip_proto::ROUTING) else {
        return false; // no routing header, or a hotdrop
    };
    // `struct ipv6_rt_hdr`: next header, length, type, segments left.
    let hdrlen = (usize::from(b[at + 1]) + 1) * 8;
    if end - at < hdrlen {
        return false; // shorter than its length field
    }
    let (typ, segs) = (u32::from(b[at + 2]), u32::from(b[at + 3]));
    let mut ret = r.segsleft.matches(segs)
        && r.len.is_none_or(|(l, n)| (l as usize == hdrlen) != n)
        && r.rt_type.is_none_or(|(t, n)| (t == typ) != n);
    if ret && r.res {
        // the header is at least 8 bytes, all inside the packet
        ret = be32(b, at + 4, end) == Some(0);
    }
    let Some((want, not_strict)) = &r.addrs else {
        return ret;
    };
    let have = (hdrlen - 8) / 16;
    if want.len() > have {
        return false;
    }
    let addr = |k: usize| {
        let o = at + 8 + k * 16;
        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&b[o..o + 16]).expect("16 bytes"))
    };
    if *not_strict {
        let mut i = 0;
        for k in 0..have {
            if addr(k) == want[i] {
                i += 1;
            }
            if i == want.len() {
                break;
            }
        }
        ret && i == want.len()
    } else {
        ret && want.len() == have && (0..have).all(|k| addr(k) == want[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::{ChunkFlags, PortRange, SctpChunks};

    const MACS: [u8; 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];

    /// Ethernet + IPv4 (198.18.0.1 -> 198.18.0.2, no options) around `l4`.
    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = MACS.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        let tl = (20 + l4.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&tl.to_be_bytes());
        ip.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        let c = wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    /// Ethernet + IPv6 (2001:2::1 -> 2001:2::2) with next header `next` around `rest`.
    fn v6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut f = MACS.to_vec();
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        for last in [1u8, 2] {
            f.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        }
        f.extend_from_slice(rest);
        f
    }

    fn check(c: &ProtoCheck, f: &[u8]) -> bool {
        let info = wire::parse_frame(f).expect("frame parses");
        c.matches(f, &info)
    }

    /// SCTP common header 5000 -> 80 followed by `chunks`.
    fn sctp_pkt(chunks: &[&[u8]]) -> Vec<u8> {
        let mut l4 = vec![0x13, 0x88, 0, 80, 1, 2, 3, 4, 0, 0, 0, 0];
        for c in chunks {
            l4.extend_from_slice(c);
        }
        v4(132, &l4)
    }

    const INIT: &[u8] = &[1, 0, 0, 8, 0, 0, 0, 1];
    const DATA_BE: &[u8] = &[
        0, 0x03, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0, 0, 0,
    ];
    const SACK: &[u8] = &[3, 0, 0, 4];

    fn chunks(kind: ChunkMatchType, types: &[u8], flags: Vec<ChunkFlags>) -> SctpMatch {
        let mut c = SctpChunks {
            kind,
            map: [0; 8],
            flags,
            negated: false,
        };
        for &t in types {
            c.map[usize::from(t >> 5)] |= 1 << (t & 31);
        }
        SctpMatch {
            sport: None,
            dport: None,
            chunks: Some(c),
        }
    }

    fn port(lo: u16, hi: u16, negated: bool) -> Option<ProtoPorts> {
        Some(ProtoPorts {
            range: PortRange { lo, hi },
            negated,
        })
    }

    #[test]
    fn sctp_ports() {
        let f = sctp_pkt(&[INIT]);
        let m = |sport, dport| {
            ProtoCheck::Sctp(SctpMatch {
                sport,
                dport,
                chunks: None,
            })
        };
        assert!(check(&m(port(5000, 5000, false), port(80, 80, false)), &f));
        assert!(!check(&m(None, port(81, 90, false)), &f));
        assert!(check(&m(None, port(81, 90, true)), &f));
        assert!(!check(&m(port(0, 4999, false), None), &f));
        // The ports reach the frame info too (multiport, the classifier key).
        let info = wire::parse_frame(&f).unwrap();
        assert_eq!((info.src_port, info.dst_port), (5000, 80));
        // A TCP packet is never SCTP, whatever its ports.
        let tcp = v4(
            6,
            &[
                0x13, 0x88, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 2, 0, 1, 0, 0, 0, 0,
            ],
        );
        assert!(!check(&m(None, None), &tcp));
    }

    #[test]
    fn sctp_chunk_types_all_any_only() {
        let init_sack = sctp_pkt(&[INIT, SACK]);
        let data = sctp_pkt(&[DATA_BE, SACK]);
        let c = |k, t: &[u8]| ProtoCheck::Sctp(chunks(k, t, vec![]));
        assert!(check(&c(ChunkMatchType::All, &[1, 3]), &init_sack));
        assert!(!check(&c(ChunkMatchType::All, &[1, 3]), &data));
        assert!(check(&c(ChunkMatchType::Any, &[1, 0]), &data));
        assert!(!check(&c(ChunkMatchType::Any, &[6, 14]), &data));
        assert!(check(&c(ChunkMatchType::Only, &[0, 3]), &data));
        assert!(!check(&c(ChunkMatchType::Only, &[0]), &data));
        // `all NONE` holds for any packet, `any NONE` for none.
        assert!(check(&c(ChunkMatchType::All, &[]), &data));
        assert!(!check(&c(ChunkMatchType::Any, &[]), &data));
        // `! --chunk-types`.
        let mut n = chunks(ChunkMatchType::Any, &[1], vec![]);
        n.chunks.as_mut().unwrap().negated = true;
        assert!(check(&ProtoCheck::Sctp(n.clone()), &data));
        assert!(!check(&ProtoCheck::Sctp(n), &init_sack));
    }

    #[test]
    fn sctp_chunk_flags() {
        let data = sctp_pkt(&[DATA_BE]); // flags B and E set
        let f = |mask, flags| {
            ProtoCheck::Sctp(chunks(
                ChunkMatchType::Any,
                &[0],
                vec![ChunkFlags {
                    chunk_type: 0,
                    mask,
                    flags,
                }],
            ))
        };
        assert!(check(&f(0x03, 0x03), &data)); // DATA:BE
        assert!(check(&f(0x02 | 0x08, 0x02), &data)); // DATA:Bi
        assert!(!check(&f(0x04, 0x04), &data)); // DATA:U
        assert!(!check(&f(0x01, 0x00), &data)); // DATA:e
    }

    #[test]
    fn sctp_malformed_chunks_never_match() {
        let any_init = ProtoCheck::Sctp(chunks(ChunkMatchType::Any, &[1], vec![]));
        let mut neg = chunks(ChunkMatchType::Any, &[1], vec![]);
        neg.chunks.as_mut().unwrap().negated = true;
        let neg = ProtoCheck::Sctp(neg);
        for f in [
            sctp_pkt(&[]),                       // no chunk at all
            sctp_pkt(&[&[3, 0, 0, 0]]),          // zero-length chunk
            sctp_pkt(&[&[3, 0]]),                // truncated chunk header
            sctp_pkt(&[SACK, &[9, 0, 0, 0, 0]]), // the second chunk has length 0
        ] {
            // The kernel hotdrops: neither the match nor its inversion holds.
            assert!(!check(&any_init, &f), "{f:?}");
            assert!(!check(&neg, &f), "{f:?}");
        }
        // A truncated common header (8 of 12 bytes).
        let short = v4(132, &[0x13, 0x88, 0, 80, 1, 2, 3, 4]);
        let ports = ProtoCheck::Sctp(SctpMatch {
            sport: None,
            dport: port(80, 80, false),
            chunks: None,
        });
        assert!(!check(&ports, &short));
        // A chunk length running past the packet ends the walk.
        let long = sctp_pkt(&[&[1, 0, 0x40, 0, 0, 0, 0, 0]]);
        assert!(check(&any_init, &long));
    }

    /// DCCP header 4000 -> 5001, X = 1, type `ty`, data offset `doff` words, then `rest`.
    fn dccp_pkt(ty: u8, doff: u8, rest: &[u8]) -> Vec<u8> {
        let mut l4 = vec![
            0x0f,
            0xa0,
            0x13,
            0x89,
            doff,
            0,
            0,
            0,
            (ty << 1) | 1,
            0,
            0,
            0,
        ];
        l4.extend_from_slice(&[0, 0, 0, 1]);
        l4.extend_from_slice(rest);
        v4(33, &l4)
    }

    #[test]
    fn dccp_ports_types_options() {
        // REQUEST (X=1): 16 + 4 (service code) = 20 bytes, then options 32 (1 byte padded).
        let req = dccp_pkt(0, 6, &[0, 0, 0, 42, 32, 1, 36, 4]);
        let m = |d: DccpMatch| ProtoCheck::Dccp(d);
        let base = DccpMatch::default();
        assert!(check(&m(base), &req));
        assert!(check(
            &m(DccpMatch {
                sport: port(4000, 4000, false),
                dport: port(5000, 5010, false),
                ..base
            }),
            &req
        ));
        assert!(!check(
            &m(DccpMatch {
                dport: port(5001, 5001, true),
                ..base
            }),
            &req
        ));
        let types = |mask, neg| {
            m(DccpMatch {
                types: Some((mask, neg)),
                ..base
            })
        };
        assert!(check(&types(1, false), &req));
        assert!(!check(&types(1 << 2, false), &req));
        assert!(check(&types(1 << 2, true), &req));
        let opt = |o, neg| {
            m(DccpMatch {
                option: Some((o, neg)),
                ..base
            })
        };
        assert!(check(&opt(32, false), &req));
        assert!(check(&opt(36, false), &req));
        assert!(!check(&opt(5, false), &req));
        assert!(check(&opt(5, true), &req));
        // Data offset shorter than the REQUEST header: hotdrop, neither side matches.
        let bad = dccp_pkt(0, 4, &[0, 0, 0, 42]);
        assert!(!check(&opt(32, false), &bad));
        assert!(!check(&opt(32, true), &bad));
        // Data offset past the packet: the same.
        let past = dccp_pkt(0, 40, &[0, 0, 0, 42]);
        assert!(!check(&opt(32, true), &past));
        // A truncated header matches nothing.
        let short = v4(33, &[0x0f, 0xa0, 0x13, 0x89, 3, 0]);
        assert!(!check(&m(base), &short));
    }

    fn spi(lo: u32, hi: u32, negated: bool) -> SpiMatch {
        SpiMatch { lo, hi, negated }
    }

    #[test]
    fn esp_and_ah_v4() {
        let esp = v4(50, &[0, 0, 0x01, 0x00, 0, 0, 0, 1, 0xde, 0xad]);
        assert!(check(&ProtoCheck::Esp(spi(256, 256, false)), &esp));
        assert!(!check(&ProtoCheck::Esp(spi(0, 255, false)), &esp));
        assert!(check(&ProtoCheck::Esp(spi(0, 255, true)), &esp));
        assert!(!check(&ProtoCheck::Esp(spi(0, 0, false)), &v4(50, &[0, 0])));
        let ah = |s| {
            ProtoCheck::Ah(AhMatch {
                spi: s,
                len: None,
                res: false,
            })
        };
        let pkt = v4(
            51,
            &[
                6, 4, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        assert!(check(&ah(spi(7, 9, false)), &pkt));
        assert!(!check(&ah(spi(7, 9, true)), &pkt));
        assert!(!check(&ah(spi(7, 7, false)), &esp));
        assert!(!check(
            &ah(SpiMatch::ANY),
            &v4(51, &[6, 4, 0, 0, 0, 0, 0, 7])
        ));
    }

    #[test]
    fn ah_v6_through_the_extension_chain() {
        // Hop-by-hop (8 bytes, PadN) -> AH (len 4: 24 bytes, SPI 0x1234, reserved 0) -> UDP.
        let mut rest = vec![51, 0, 1, 4, 0, 0, 0, 0];
        rest.extend_from_slice(&[17, 4, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 9]);
        rest.extend_from_slice(&[0; 12]);
        rest.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        let f = v6(0, &rest);
        let ah = |s, len, res| ProtoCheck::Ah(AhMatch { spi: s, len, res });
        assert!(check(&ah(spi(0x1234, 0x1234, false), None, false), &f));
        assert!(check(&ah(SpiMatch::ANY, Some((24, false)), true), &f));
        assert!(!check(&ah(SpiMatch::ANY, Some((24, true)), false), &f));
        assert!(check(
            &ah(SpiMatch::ANY, Some((16, false)).filter(|_| false), false),
            &f
        ));
        assert!(!check(&ah(SpiMatch::ANY, Some((16, false)), false), &f));
        // Reserved field set: `--ahres` fails.
        let mut r = rest.clone();
        r[10] = 1;
        assert!(!check(&ah(SpiMatch::ANY, None, true), &v6(0, &r)));
        assert!(check(&ah(SpiMatch::ANY, None, false), &v6(0, &r)));
        // No AH in the chain.
        let udp = v6(17, &[0, 53, 0, 53, 0, 8, 0, 0]);
        assert!(!check(&ah(SpiMatch::ANY, None, false), &udp));
        // A later fragment before any AH.
        let frag = v6(44, &[51, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!check(&ah(SpiMatch::ANY, None, false), &frag));
    }

    /// A type `typ` routing header with `segs` Segments Left, reserved field `res` and
    /// `addrs` (the last byte of 2001:2::N each), before a UDP header.
    fn rh(typ: u8, segs: u8, res: u8, addrs: &[u8]) -> Vec<u8> {
        let mut r = vec![17, (addrs.len() * 2) as u8, typ, segs, 0, 0, 0, res];
        for &last in addrs {
            r.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        }
        r.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        r
    }

    fn a6(last: u8) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, u16::from(last))
    }

    #[test]
    fn rt_reads_the_routing_header_as_ip6t_rt() {
        let rt = |f: fn(&mut RtMatch)| {
            let mut m = RtMatch::default();
            f(&mut m);
            ProtoCheck::Rt(m)
        };
        let f = v6(43, &rh(0, 2, 0, &[7, 8]));
        assert!(check(&rt(|_| {}), &f), "any routing header");
        assert!(check(&rt(|m| m.rt_type = Some((0, false))), &f));
        assert!(!check(&rt(|m| m.rt_type = Some((0, true))), &f));
        assert!(!check(&rt(|m| m.rt_type = Some((2, false))), &f));
        assert!(check(&rt(|m| m.segsleft = spi(2, 5, false)), &f));
        assert!(!check(&rt(|m| m.segsleft = spi(2, 5, true)), &f));
        assert!(!check(&rt(|m| m.segsleft = spi(3, 3, false)), &f));
        // `--rt-len` is the whole header: 8 + 2 * 16 bytes
        assert!(check(&rt(|m| m.len = Some((40, false))), &f));
        assert!(!check(&rt(|m| m.len = Some((40, true))), &f));
        assert!(check(&rt(|m| m.res = true), &f));
        assert!(!check(
            &rt(|m| m.res = true),
            &v6(43, &rh(0, 2, 1, &[7, 8]))
        ));
        // strict: exactly these addresses, in order
        let addrs = |list: &[u8], not_strict: bool| {
            ProtoCheck::Rt(RtMatch {
                addrs: Some((list.iter().map(|&l| a6(l)).collect(), not_strict)),
                ..RtMatch::default()
            })
        };
        assert!(check(&addrs(&[7, 8], false), &f));
        assert!(!check(&addrs(&[7], false), &f), "strict: all of them");
        assert!(!check(&addrs(&[8, 7], false), &f));
        assert!(
            !check(&addrs(&[7, 8, 9], false), &f),
            "more than the header has"
        );
        // not strict: these among the header's, in order
        assert!(check(&addrs(&[8], true), &f));
        assert!(check(&addrs(&[7, 8], true), &f));
        assert!(!check(&addrs(&[8, 7], true), &f));
        // found after a hop-by-hop header
        let mut hbh = vec![43, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&rh(2, 1, 0, &[7]));
        assert!(check(&rt(|m| m.rt_type = Some((2, false))), &v6(0, &hbh)));
        // no routing header: no match
        assert!(!check(&rt(|_| {}), &v6(17, &[0, 53, 0, 53, 0, 8, 0, 0])));
        // one longer than the packet, one cut short: wire's parse drops them as malformed
        // before any rule; the match itself still says no without reading past the end
        let mut long = rh(0, 2, 0, &[7, 8]);
        long[1] = 200;
        for f in [v6(43, &long), v6(43, &[17, 0])] {
            assert!(wire::parse_frame(&f).is_err());
            assert!(!super::rt(&RtMatch::default(), &f, 14, f.len()));
        }
        // a routing header before a later fragment's header is found, as the kernel finds it
        let mut later = vec![44, 0, 0, 0, 0, 0, 0, 0];
        later.extend_from_slice(&[17, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(check(&rt(|_| {}), &v6(43, &later)));
        // and not after one
        let frag = v6(44, &[43, 0, 0, 8, 0, 0, 0, 1, 17, 0, 0, 0, 0, 0, 0, 0]);
        assert!(!check(&rt(|_| {}), &frag));
    }
}
