//! The header rewrites of the mangle targets, applied to the frame in place the moment the rule
//! fires (so the next rule, LOG included, reads the new bytes, as in the kernel), with the
//! checksums patched incrementally (RFC 1624, [`wire::checksum`]) rather than recomputed:
//!
//! * `TTL` / `HL` (`ttl_tg`, `hl_tg6`): set, or increment / decrement saturating at 255 / 0;
//!   a TTL brought to 0 is forwarded, as the kernel's bridge forwards it.
//! * `DSCP` (`dscp_tg`): the DS field's upper six bits, ECN kept; `TOS` (`tos_tg`): the
//!   field becomes `(old & !mask) ^ value`. IPv6: the traffic class (no header checksum).
//! * `ECN` (`ecn_tg`, IPv4): the ECT codepoint, and TCP's ECE / CWR bits.
//! * `TCPMSS` (`tcpmss_mangle_packet`): lowers the MSS option of a SYN to the value or to the
//!   path MTU less 40 (IPv4) / 60 (IPv6) bytes, never raises it; a SYN without the option and
//!   without data gets one (536 / 1220 at most, as the RFCs' defaults) when the buffer has
//!   room for 4 more bytes. Later fragments are left alone (no TCP header).
//!
//! Where the kernel drops (`NF_DROP`: a TCP header shorter than 20 bytes or than its data
//! offset, a path MTU not above the headers) the walk drops with `rewrite_failed`. None of
//! these fields is a classifier dimension (the key's TCP flags are compared on FIN..URG only,
//! which ECN never touches), so a lookup done ahead of the walk stays valid; what the later
//! checks read from the frame (`-m ttl`, `-m tos`, `-m dscp`, `-m ecn`) they read from the
//! bytes, not from the parse.

use rules::{EcnTarget, Tcpmss, TtlTarget};
use wire::checksum::{update16, update32};
use wire::{Family, FrameInfo};

/// One rewriting target, as compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// `TTL` (IPv4) or `HL` (IPv6).
    Ttl(TtlTarget),
    /// `DSCP --set-dscp`: the six DSCP bits.
    Dscp(u8),
    /// `TOS`: `(tos & !mask) ^ value`.
    Tos {
        value: u8,
        mask: u8,
    },
    Tcpmss(Tcpmss),
    Ecn(EcnTarget),
}

/// What a rewrite did to the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// Nothing to change (the field already had the value, or the packet is not one the
    /// target touches).
    Kept,
    /// Bytes changed in place.
    Changed,
    /// The frame is now this long (TCPMSS added an option).
    Grew(usize),
    /// The kernel drops here (malformed TCP header, unusable path MTU).
    Drop,
}

const TCP: u8 = 6;

/// Applies `rw` to the frame `buf[..len]` (`buf` is the whole buffer, for TCPMSS's growth).
/// `mtu` is the smaller of the two ports' MTUs, for `--clamp-mss-to-pmtu`.
pub fn apply(rw: &Rewrite, buf: &mut [u8], len: usize, info: &FrameInfo, mtu: u16) -> Done {
    let l3 = usize::from(info.l3_offset);
    let v6 = info.family == Family::Ipv6;
    if !info.is_ip() || len < l3 + if v6 { 40 } else { 20 } {
        return Done::Kept;
    }
    match rw {
        Rewrite::Ttl(t) => {
            let at = l3 + if v6 { 7 } else { 8 };
            let old = buf[at];
            let new = t.apply(old);
            if new == old {
                return Done::Kept;
            }
            buf[at] = new;
            if !v6 {
                patch16(buf, l3 + 10, u16::from(old) << 8, u16::from(new) << 8);
            }
            Done::Changed
        }
        Rewrite::Dscp(d) => {
            let old = ds_field(buf, l3, v6);
            if old >> 2 == *d {
                return Done::Kept;
            }
            set_ds_field(buf, l3, v6, (old & 0x03) | (d << 2))
        }
        Rewrite::Tos { value, mask } => {
            let old = ds_field(buf, l3, v6);
            let new = (old & !mask) ^ value;
            if new == old {
                return Done::Kept;
            }
            set_ds_field(buf, l3, v6, new)
        }
        Rewrite::Ecn(e) => ecn(e, &mut buf[..len], l3, info),
        Rewrite::Tcpmss(m) => tcpmss(*m, buf, len, info, mtu),
    }
}

/// RFC 1624 update of the checksum at `at` for one 16-bit word changing `old` -> `new`.
fn patch16(buf: &mut [u8], at: usize, old: u16, new: u16) {
    let c = u16::from_be_bytes([buf[at], buf[at + 1]]);
    buf[at..at + 2].copy_from_slice(&update16(c, old, new).to_be_bytes());
}

/// The IPv4 TOS byte, or the IPv6 traffic class (split over the first two bytes).
fn ds_field(buf: &[u8], l3: usize, v6: bool) -> u8 {
    if v6 {
        (buf[l3] << 4) | (buf[l3 + 1] >> 4)
    } else {
        buf[l3 + 1]
    }
}

fn set_ds_field(buf: &mut [u8], l3: usize, v6: bool, new: u8) -> Done {
    if v6 {
        buf[l3] = (buf[l3] & 0xf0) | (new >> 4);
        buf[l3 + 1] = (buf[l3 + 1] & 0x0f) | (new << 4);
    } else {
        let old = buf[l3 + 1];
        buf[l3 + 1] = new;
        patch16(buf, l3 + 10, u16::from(old), u16::from(new));
    }
    Done::Changed
}

/// The IP packet's end and its upper-layer length, from the header itself (what an earlier
/// rewrite of this packet left there), bounded by the frame.
fn l4_len(buf: &[u8], len: usize, info: &FrameInfo) -> Option<usize> {
    let l3 = usize::from(info.l3_offset);
    let end = if info.family == Family::Ipv6 {
        l3 + 40 + usize::from(u16::from_be_bytes([buf[l3 + 4], buf[l3 + 5]]))
    } else {
        l3 + usize::from(u16::from_be_bytes([buf[l3 + 2], buf[l3 + 3]]))
    };
    let l4 = usize::from(info.l4_offset);
    (end <= len && l4 <= end).then(|| end - l4)
}

fn ecn(e: &EcnTarget, frame: &mut [u8], l3: usize, info: &FrameInfo) -> Done {
    if info.family != Family::Ipv4 {
        return Done::Kept;
    }
    let mut done = Done::Kept;
    if let Some(ect) = e.ect {
        let old = frame[l3 + 1];
        if old & 3 != ect & 3 {
            done = set_ds_field(frame, l3, false, (old & !3) | (ect & 3));
        }
    }
    if (e.ece.is_none() && e.cwr.is_none()) || info.l4_proto != TCP || info.is_later_fragment() {
        return done;
    }
    let t = usize::from(info.l4_offset);
    match l4_len(frame, frame.len(), info) {
        Some(n) if n >= 20 => {}
        // `skb_header_pointer` finds no TCP header: NF_DROP
        _ => return Done::Drop,
    }
    let old = frame[t + 13];
    let mut new = old;
    if let Some(b) = e.ece {
        new = (new & !0x40) | (b << 6);
    }
    if let Some(b) = e.cwr {
        new = (new & !0x80) | (b << 7);
    }
    if new == old {
        return done;
    }
    frame[t + 13] = new;
    patch16(
        frame,
        t + 16,
        u16::from_be_bytes([frame[t + 12], old]),
        u16::from_be_bytes([frame[t + 12], new]),
    );
    Done::Changed
}

/// `optlen` of xt_TCPMSS: a zero length makes progress of one byte.
fn optlen(opt: &[u8], i: usize) -> usize {
    if opt[i] <= 1 || opt[i + 1] == 0 {
        1
    } else {
        usize::from(opt[i + 1])
    }
}

fn tcpmss(m: Tcpmss, buf: &mut [u8], len: usize, info: &FrameInfo, mtu: u16) -> Done {
    if info.l4_proto != TCP || info.is_later_fragment() {
        return Done::Kept;
    }
    let v6 = info.family == Family::Ipv6;
    let Some(l4len) = l4_len(buf, len, info) else {
        return Done::Drop;
    };
    let t = usize::from(info.l4_offset);
    if l4len < 20 {
        return Done::Drop;
    }
    let hdr = usize::from(buf[t + 12] >> 4) * 4;
    if l4len < hdr || hdr < 20 {
        return Done::Drop;
    }
    let minlen: u16 = if v6 { 60 } else { 40 };
    let newmss = match m {
        Tcpmss::Set(v) => v,
        Tcpmss::ClampPmtu => {
            if mtu <= minlen {
                return Done::Drop;
            }
            mtu - minlen
        }
    };
    let opt = &mut buf[t..t + hdr];
    let mut i = 20;
    while i + 4 <= hdr {
        if opt[i] == 2 && opt[i + 1] == 4 {
            let old = u16::from_be_bytes([opt[i + 2], opt[i + 3]]);
            // never raise the MSS, even when setting it
            if old <= newmss {
                return Done::Kept;
            }
            opt[i + 2..i + 4].copy_from_slice(&newmss.to_be_bytes());
            patch16(buf, t + 16, old, newmss);
            return Done::Changed;
        }
        i += optlen(opt, i);
    }
    // No MSS option: added only to a SYN without data and with room in the header, and
    // (unlike the kernel, which can grow the buffer) when the buffer holds 4 more bytes.
    // PPPoE's own length field would need the same update: left alone there.
    let end = t + l4len;
    if l4len > hdr || hdr >= 60 || end + 4 > buf.len() || info.encap & wire::encap::PPPOE != 0 {
        return Done::Kept;
    }
    let newmss = newmss.min(if v6 { 1220 } else { 536 });
    buf.copy_within(t + 20..end, t + 24);
    let o = [2, 4, (newmss >> 8) as u8, newmss as u8];
    buf[t + 20..t + 24].copy_from_slice(&o);
    let c = u16::from_be_bytes([buf[t + 16], buf[t + 17]]);
    // the pseudo header's length, the option's word, the data offset's
    let c = update16(c, l4len as u16, l4len as u16 + 4);
    let c = update32(c, [0; 4], o);
    let old12 = u16::from_be_bytes([buf[t + 12], buf[t + 13]]);
    buf[t + 12] += 1 << 4;
    let new12 = u16::from_be_bytes([buf[t + 12], buf[t + 13]]);
    let c = update16(c, old12, new12);
    buf[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    let l3 = usize::from(info.l3_offset);
    let at = l3 + if v6 { 4 } else { 2 };
    let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
    buf[at..at + 2].copy_from_slice(&(old + 4).to_be_bytes());
    if !v6 {
        patch16(buf, l3 + 10, old, old + 4);
    }
    Done::Grew(end + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::TtlMode;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::checksum::verify;
    use wire::tcp::{TcpFlags, TcpOption};
    use wire::{parse_frame, verify_l4_checksum};

    const V4: IpPair = IpPair::V4([198, 18, 0, 1], [198, 18, 1, 2]);

    fn v6() -> IpPair {
        IpPair::V6(
            "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "2001:2:0:1::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        )
    }

    fn syn(ip: IpPair, options: Vec<TcpOption<'static>>, payload: &[u8]) -> Vec<u8> {
        FrameBuilder::default().tcp(
            ip,
            &TcpSpec {
                src_port: 40000,
                dst_port: 443,
                seq: 7,
                ack: 0,
                flags: TcpFlags::SYN,
                window: 64240,
                options,
                payload,
            },
        )
    }

    /// Every checksum of the frame verified by a full recompute.
    fn sums_ok(f: &[u8]) -> FrameInfo {
        let info = parse_frame(f).expect("parses");
        if info.family == Family::Ipv4 {
            let l3 = usize::from(info.l3_offset);
            let ihl = usize::from(f[l3] & 0xf) * 4;
            assert!(verify(&f[l3..l3 + ihl]), "IPv4 header checksum");
        }
        assert!(verify_l4_checksum(f, &info).is_ok(), "L4 checksum");
        info
    }

    fn run(rw: Rewrite, f: &mut Vec<u8>, room: usize, mtu: u16) -> Done {
        let len = f.len();
        f.resize(len + room, 0);
        let info = parse_frame(&f[..len]).unwrap();
        let d = apply(&rw, f, len, &info, mtu);
        let n = if let Done::Grew(n) = d { n } else { len };
        f.truncate(n);
        d
    }

    #[test]
    fn ttl_saturates_and_keeps_the_header_checksum() {
        for (mode, value, from, want) in [
            (TtlMode::Set, 9, 64, 9),
            (TtlMode::Dec, 1, 1, 0),
            (TtlMode::Dec, 5, 0, 0),
            (TtlMode::Inc, 255, 64, 255),
            (TtlMode::Inc, 1, 254, 255),
        ] {
            let mut f = FrameBuilder {
                ttl: from,
                ..FrameBuilder::default()
            }
            .udp(V4, 1, 2, b"abc");
            let d = run(Rewrite::Ttl(TtlTarget { mode, value }), &mut f, 0, 1500);
            assert_eq!(d == Done::Changed, from != want);
            let info = sums_ok(&f);
            assert_eq!(info.ttl, want);
        }
        let mut f = syn(v6(), vec![], b"");
        let d = run(
            Rewrite::Ttl(TtlTarget {
                mode: TtlMode::Dec,
                value: 1,
            }),
            &mut f,
            0,
            1500,
        );
        assert_eq!(d, Done::Changed);
        assert_eq!(sums_ok(&f).ttl, 63);
    }

    #[test]
    fn dscp_and_tos_rewrite_the_ds_field_of_both_families() {
        let mut f = FrameBuilder {
            tos: 0x03,
            ..FrameBuilder::default()
        }
        .udp(V4, 1, 2, b"abc");
        assert_eq!(run(Rewrite::Dscp(0x2e), &mut f, 0, 1500), Done::Changed);
        sums_ok(&f);
        assert_eq!(f[15], 0xbb, "EF with the ECN bits kept");
        assert_eq!(run(Rewrite::Dscp(0x2e), &mut f, 0, 1500), Done::Kept);
        let tos = Rewrite::Tos {
            value: 0x10,
            mask: 0x3f,
        };
        assert_eq!(run(tos, &mut f, 0, 1500), Done::Changed);
        sums_ok(&f);
        assert_eq!(f[15], 0x90);
        // IPv6: the traffic class straddles bytes 0 and 1 of the header
        let mut f = syn(v6(), vec![], b"");
        let before = f.clone();
        assert_eq!(run(Rewrite::Dscp(0x0a), &mut f, 0, 1500), Done::Changed);
        sums_ok(&f);
        assert_eq!((f[14], f[15]), (0x62, 0x80 | (before[15] & 0x0f)));
        let xor = Rewrite::Tos {
            value: 0xff,
            mask: 0,
        };
        assert_eq!(run(xor, &mut f, 0, 1500), Done::Changed);
        assert_eq!((f[14] & 0x0f, f[15] >> 4), (0x0d, 0x07));
    }

    #[test]
    fn ecn_sets_the_codepoint_and_clears_tcp_bits() {
        let mut f = FrameBuilder {
            tos: 0x02,
            ..FrameBuilder::default()
        }
        .tcp(
            V4,
            &TcpSpec {
                src_port: 1,
                dst_port: 2,
                seq: 3,
                ack: 4,
                flags: TcpFlags(0x10 | 0x40 | 0x80),
                window: 5,
                options: vec![],
                payload: b"data",
            },
        );
        let remove = Rewrite::Ecn(EcnTarget {
            ect: None,
            ece: Some(0),
            cwr: Some(0),
        });
        assert_eq!(run(remove, &mut f, 0, 1500), Done::Changed);
        let info = sums_ok(&f);
        assert_eq!(info.tcp_flags.0, 0x10);
        assert_eq!(run(remove, &mut f, 0, 1500), Done::Kept);
        let ect = Rewrite::Ecn(EcnTarget {
            ect: Some(1),
            ece: Some(1),
            cwr: None,
        });
        assert_eq!(run(ect, &mut f, 0, 1500), Done::Changed);
        let info = sums_ok(&f);
        assert_eq!((f[15] & 3, info.tcp_flags.0), (1, 0x50));
    }

    #[test]
    fn tcpmss_lowers_never_raises_and_clamps_to_the_mtu() {
        let mss = |v: u16| {
            let mut o = vec![2, 4];
            o.extend_from_slice(&v.to_be_bytes());
            o
        };
        let o = vec![
            TcpOption::Nop,
            TcpOption::Nop,
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
        ];
        let mut f = syn(V4, o, b"");
        assert_eq!(
            run(Rewrite::Tcpmss(Tcpmss::Set(1400)), &mut f, 0, 1500),
            Done::Changed
        );
        sums_ok(&f);
        assert_eq!(&f[54 + 2..54 + 6], &mss(1400)[..]);
        assert_eq!(
            run(Rewrite::Tcpmss(Tcpmss::Set(1450)), &mut f, 0, 1500),
            Done::Kept
        );
        assert_eq!(
            run(Rewrite::Tcpmss(Tcpmss::ClampPmtu), &mut f, 0, 1280),
            Done::Changed
        );
        sums_ok(&f);
        assert_eq!(&f[54 + 2..54 + 6], &mss(1240)[..]);
        let mut f = syn(v6(), vec![TcpOption::Mss(1440)], b"");
        assert_eq!(
            run(Rewrite::Tcpmss(Tcpmss::ClampPmtu), &mut f, 0, 1400),
            Done::Changed
        );
        sums_ok(&f);
        assert_eq!(&f[74..78], &mss(1340)[..]);
        // a path MTU no larger than the headers: the kernel drops
        assert_eq!(
            run(Rewrite::Tcpmss(Tcpmss::ClampPmtu), &mut f, 0, 60),
            Done::Drop
        );
    }

    #[test]
    fn tcpmss_adds_the_option_to_a_syn_without_one_when_there_is_room() {
        for (ip, cap) in [(V4, 536u16), (v6(), 1220)] {
            let mut f = syn(ip, vec![TcpOption::SackPermitted], b"");
            let len = f.len();
            // no room: left as it is
            assert_eq!(
                run(Rewrite::Tcpmss(Tcpmss::Set(1400)), &mut f, 3, 1500),
                Done::Kept
            );
            assert_eq!(f.len(), len);
            let d = run(Rewrite::Tcpmss(Tcpmss::Set(1400)), &mut f, 4, 1500);
            assert_eq!(d, Done::Grew(len + 4));
            let info = sums_ok(&f);
            let t = usize::from(info.l4_offset);
            assert_eq!(f[t + 12] >> 4, 7);
            assert_eq!(
                &f[t + 20..t + 28],
                &[2, 4, (cap >> 8) as u8, cap as u8, 4, 2, 1, 1]
            );
            assert_eq!(usize::from(info.l3_len), len + 4 - 14);
            // with data after the header, nothing is added
            let mut f = syn(ip, vec![], b"x");
            assert_eq!(
                run(Rewrite::Tcpmss(Tcpmss::Set(1400)), &mut f, 64, 1500),
                Done::Kept
            );
        }
    }

    /// Malformed TCP headers (data offset past the segment or below 5, option lengths of 0,
    /// an option running off the header, a truncated segment): no panic, a drop where the
    /// kernel drops, and checksums that stay right whatever changed.
    #[test]
    fn tcpmss_on_malformed_options_never_panics() {
        let o = vec![TcpOption::Mss(1460), TcpOption::Nop, TcpOption::Nop];
        let base = syn(V4, o, b"");
        let info = parse_frame(&base).unwrap();
        let t = 34;
        let fix = |f: &mut Vec<u8>| {
            f[t + 16..t + 18].copy_from_slice(&[0, 0]);
            let c = wire::checksum::l4_checksum_v4(
                [198, 18, 0, 1],
                [198, 18, 1, 2],
                TCP,
                &f[t..base.len()],
            );
            f[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        };
        let mut cases: Vec<(Vec<u8>, Option<Done>)> = Vec::new();
        for doff in [0u8, 1, 4, 5, 6, 7, 8, 15] {
            let mut f = base.clone();
            f[t + 12] = doff << 4 | (f[t + 12] & 0x0f);
            let want = (!(5..=7).contains(&doff)).then_some(Done::Drop);
            cases.push((f, want));
        }
        for opts in [
            [0u8, 0, 0, 0, 0, 0, 0, 0],
            [2, 0, 2, 0, 2, 0, 2, 0],
            [3, 255, 2, 4, 1, 1, 1, 1],
            [2, 3, 2, 4, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 2, 4, 9],
        ] {
            let mut f = base.clone();
            f[t + 20..t + 28].copy_from_slice(&opts);
            cases.push((f, None));
        }
        for (mut f, want) in cases {
            fix(&mut f);
            let mut len = f.len();
            let mut info = info;
            f.resize(len + 64, 0);
            for m in [Tcpmss::Set(100), Tcpmss::ClampPmtu] {
                let d = apply(&Rewrite::Tcpmss(m), &mut f, len, &info, 1500);
                if let Some(w) = want {
                    assert_eq!(d, w, "{:?}", &f[t..t + 28]);
                } else {
                    assert_ne!(d, Done::Drop);
                }
                if let Done::Grew(n) = d {
                    // an all-EOL option space: the option went in front of it
                    len = n;
                    info = sums_ok(&f[..n]);
                }
                assert!(verify_l4_checksum(&f[..len], &info).is_ok());
            }
        }
        // IPv4 total length cutting the TCP header short: the kernel drops
        let mut f = base.clone();
        f[16..18].copy_from_slice(&30u16.to_be_bytes());
        let len = f.len();
        let d = apply(&Rewrite::Tcpmss(Tcpmss::Set(100)), &mut f, len, &info, 1500);
        assert_eq!(d, Done::Drop);
        // a total length past the frame: dropped, nothing read beyond it
        f[16..18].copy_from_slice(&2000u16.to_be_bytes());
        let d = apply(&Rewrite::Tcpmss(Tcpmss::Set(100)), &mut f, len, &info, 1500);
        assert_eq!(d, Done::Drop);
    }
}
