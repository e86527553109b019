//! The packet description conntrack works on, built by the caller's parser.

use core::net::IpAddr;

use crate::icmp;
use crate::tuple::{addr16, Family, Tuple, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use wire::tcp::{TcpOption, TcpOptions, TcpPacket};
use wire::FrameInfo;

/// What conntrack needs of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub sport: u16,
    pub dport: u16,
    /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE, CWR).
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The raw (unscaled) window field.
    pub window: u16,
    /// Window scale option, if present.
    pub wscale: Option<u8>,
    /// SACK-permitted option present.
    pub sack_perm: bool,
    /// Highest right edge of the SACK blocks, if any.
    pub sack: Option<u32>,
    /// TCP payload bytes.
    pub payload_len: u32,
}

/// The header embedded in an ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorInfo {
    pub ty: u8,
    pub code: u8,
    /// Protocol of the embedded packet.
    pub inner_proto: u8,
    /// The embedded packet's tuple as it was sent (source = the host the error goes back to).
    pub inner: Tuple,
}

/// Layer 4 of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpSegment),
    Udp {
        sport: u16,
        dport: u16,
    },
    /// An ICMP or ICMPv6 message that is not an error (the family says which).
    Icmp {
        ty: u8,
        code: u8,
        id: u16,
    },
    /// An ICMP or ICMPv6 error with its embedded header.
    IcmpError(IcmpErrorInfo),
    /// Any other protocol (tracked by addresses and protocol number only).
    Other,
}

/// A parsed packet: the outer addresses, protocol and layer-4 facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPacket {
    pub family: Family,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub l4: L4,
}

impl CtPacket {
    fn base(src: IpAddr, dst: IpAddr, proto: u8, l4: L4) -> CtPacket {
        let family = if src.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        CtPacket {
            family,
            proto,
            src: addr16(src),
            dst: addr16(dst),
            l4,
        }
    }

    pub fn tcp(src: IpAddr, dst: IpAddr, seg: TcpSegment) -> CtPacket {
        CtPacket::base(src, dst, crate::tuple::PROTO_TCP, L4::Tcp(seg))
    }

    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> CtPacket {
        CtPacket::base(src, dst, crate::tuple::PROTO_UDP, L4::Udp { sport, dport })
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message; errors become [`L4::IcmpError`] only through
    /// [`CtPacket::icmp_error`].
    pub fn icmp(src: IpAddr, dst: IpAddr, ty: u8, code: u8, id: u16) -> CtPacket {
        let proto = if src.is_ipv4() {
            PROTO_ICMP
        } else {
            PROTO_ICMPV6
        };
        CtPacket::base(src, dst, proto, L4::Icmp { ty, code, id })
    }

    pub fn icmp_error(src: IpAddr, dst: IpAddr, err: IcmpErrorInfo) -> CtPacket {
        let proto = if src.is_ipv4() {
            PROTO_ICMP
        } else {
            PROTO_ICMPV6
        };
        CtPacket::base(src, dst, proto, L4::IcmpError(err))
    }

    pub fn other(src: IpAddr, dst: IpAddr, proto: u8) -> CtPacket {
        CtPacket::base(src, dst, proto, L4::Other)
    }

    /// The key this packet is looked up by: its own tuple, or for an ICMP error the inverted
    /// tuple of the quoted packet (the connection the error is about). `None` for an error
    /// quoting something that cannot be inverted.
    #[inline]
    pub fn lookup_key(&self) -> Option<(Family, u8, Tuple)> {
        match self.l4 {
            L4::IcmpError(e) => e
                .inner
                .invert(self.family, e.inner_proto)
                .map(|t| (self.family, e.inner_proto, t)),
            _ => Some((self.family, self.proto, self.tuple())),
        }
    }

    /// The symmetric flow hash that picks this packet's shard ([`crate::shard_of`]); an ICMP
    /// error goes to the shard of the connection it is about.
    pub fn flow_hash(&self, key: &crate::HashKey) -> u64 {
        match self.lookup_key() {
            Some((family, proto, t)) => crate::flow_hash(key, family, proto, &t),
            None => crate::flow_hash(key, self.family, self.proto, &self.tuple()),
        }
    }

    /// The tuple of this packet in its own direction.
    #[inline]
    pub(crate) fn tuple(&self) -> Tuple {
        let (sport, dport) = match self.l4 {
            L4::Tcp(s) => (s.sport, s.dport),
            L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { ty, code, id } => (id, u16::from(ty) << 8 | u16::from(code)),
            L4::IcmpError(_) | L4::Other => (0, 0),
        };
        Tuple {
            src: self.src,
            dst: self.dst,
            sport,
            dport,
        }
    }
}

/// Why a frame has no conntrack description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromFrameError {
    /// Not IPv4 or IPv6: conntrack does not see it (bridge policy applies).
    NotIp,
    /// A non-first fragment: netfilter tracks reassembled packets only; fwd does not reassemble.
    LaterFragment,
    /// The L4 header is cut short.
    TruncatedL4,
    /// An ICMP error whose quoted packet cannot be parsed: netfilter finds no tuple, INVALID.
    BadEmbedded,
}

impl CtPacket {
    /// The description of a frame parsed by [`wire::parse_frame`]. Reads the TCP header and
    /// options and, for ICMP errors, parses the quoted packet; allocates nothing.
    pub fn from_frame(frame: &[u8], info: &FrameInfo) -> Result<CtPacket, FromFrameError> {
        let family = match info.family {
            wire::Family::Ipv4 => Family::V4,
            wire::Family::Ipv6 => Family::V6,
            wire::Family::NonIp => return Err(FromFrameError::NotIp),
        };
        if info.is_later_fragment() {
            return Err(FromFrameError::LaterFragment);
        }
        let l4 = frame
            .get(usize::from(info.l4_offset)..info.l3_end().min(frame.len()))
            .ok_or(FromFrameError::TruncatedL4)?;
        let proto = info.l4_proto;
        let l4_desc = match proto {
            PROTO_TCP => {
                let tcp = TcpPacket::new_checked(l4).map_err(|_| FromFrameError::TruncatedL4)?;
                let mut seg = TcpSegment {
                    sport: tcp.src_port(),
                    dport: tcp.dst_port(),
                    flags: tcp.flags().0,
                    seq: tcp.seq(),
                    ack: tcp.ack(),
                    window: tcp.window(),
                    payload_len: tcp.payload().len() as u32,
                    ..TcpSegment::default()
                };
                // Options as netfilter reads them: a malformed option ends the walk.
                for opt in TcpOptions::new(tcp.options()) {
                    match opt {
                        Ok(TcpOption::WindowScale(s)) => seg.wscale = Some(s),
                        Ok(TcpOption::SackPermitted) => seg.sack_perm = true,
                        Ok(TcpOption::Sack(blocks)) => {
                            for (_, right) in blocks.iter() {
                                let higher =
                                    seg.sack.is_none_or(|s| (right.wrapping_sub(s) as i32) > 0);
                                if higher {
                                    seg.sack = Some(right);
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                L4::Tcp(seg)
            }
            PROTO_UDP => L4::Udp {
                sport: info.src_port,
                dport: info.dst_port,
            },
            PROTO_ICMP | PROTO_ICMPV6 if (proto == PROTO_ICMP) == (family == Family::V4) => {
                if icmp::is_error(family, info.icmp_type) {
                    let quoted = l4.get(8..).ok_or(FromFrameError::TruncatedL4)?;
                    let inner = wire::parse_embedded(quoted, info.family)
                        .map_err(|_| FromFrameError::BadEmbedded)?;
                    let (sport, dport) = match inner.l4_proto {
                        PROTO_TCP | PROTO_UDP => (inner.src_port, inner.dst_port),
                        PROTO_ICMP | PROTO_ICMPV6 => (
                            inner.icmp_ident,
                            u16::from(inner.icmp_type) << 8 | u16::from(inner.icmp_code),
                        ),
                        _ => (0, 0),
                    };
                    L4::IcmpError(IcmpErrorInfo {
                        ty: info.icmp_type,
                        code: info.icmp_code,
                        inner_proto: inner.l4_proto,
                        inner: Tuple {
                            src: inner.src,
                            dst: inner.dst,
                            sport,
                            dport,
                        },
                    })
                } else {
                    L4::Icmp {
                        ty: info.icmp_type,
                        code: info.icmp_code,
                        id: info.icmp_ident,
                    }
                }
            }
            _ => L4::Other,
        };
        Ok(CtPacket {
            family,
            proto,
            src: info.src,
            dst: info.dst,
            l4: l4_desc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, CtState, Dir, Filter, Shard};
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::captured;
    use wire::tcp::TcpFlags;

    const S: u64 = 1_000_000_000;

    fn pkt(frame: &[u8]) -> CtPacket {
        let info = wire::parse_frame(frame).unwrap();
        CtPacket::from_frame(frame, &info).unwrap()
    }

    fn pass(sh: &mut Shard, frame: &[u8], now: u64) -> crate::table::tests::Seen {
        crate::table::tests::pass(sh, &pkt(frame), now)
    }

    #[test]
    fn captured_tcp_syn_has_its_options() {
        let p = pkt(&captured::TCP_SYN);
        let L4::Tcp(seg) = p.l4 else { panic!("{p:?}") };
        assert_eq!((seg.sport, seg.dport, seg.seq), (40000, 8080, 292_909_402));
        assert_eq!(
            (seg.wscale, seg.sack_perm, seg.payload_len),
            (Some(10), true, 0)
        );
        assert_eq!(seg.flags, 0x02);
    }

    #[test]
    fn captured_handshake_and_data_track_as_the_kernel_did() {
        let mut sh = Shard::new(16, &Config::default(), 0);
        let t = pass(&mut sh, &captured::TCP_SYN, S);
        assert_eq!(t.state, CtState::New);
        let t = pass(&mut sh, &captured::TCP_SYN_ACK, S + 1000);
        assert_eq!((t.state, t.dir), (CtState::Established, Dir::Reply));
        let L4::Tcp(data) = pkt(&captured::TCP_PSH_DATA).l4 else {
            panic!()
        };
        assert_eq!(data.payload_len, 5);
        let t = pass(&mut sh, &captured::TCP_PSH_DATA, S + 2000);
        assert_eq!(t.state, CtState::Established, "{t:?}");
    }

    #[test]
    fn captured_udp_answered_by_port_unreachable_is_related() {
        for (out, err) in [
            (&captured::UDP4[..], &captured::ICMP_PORT_UNREACH[..]),
            (&captured::UDP6[..], &captured::ICMPV6_PORT_UNREACH[..]),
        ] {
            let mut sh = Shard::new(16, &Config::default(), 0);
            assert_eq!(pass(&mut sh, out, S).state, CtState::New);
            let e = pkt(err);
            assert!(matches!(e.l4, L4::IcmpError(_)), "{e:?}");
            let t = pass(&mut sh, err, 2 * S);
            assert_eq!((t.state, t.dir), (CtState::Related, Dir::Reply));
            assert_eq!(
                sh.count(&Filter::default(), 2 * S),
                0,
                "port unreachable destroys it"
            );
        }
    }

    #[test]
    fn captured_pings_and_neighbour_discovery() {
        for (req, rep) in [
            (
                &captured::ICMP_ECHO_REQUEST[..],
                &captured::ICMP_ECHO_REPLY[..],
            ),
            (
                &captured::ICMPV6_ECHO_REQUEST[..],
                &captured::ICMPV6_ECHO_REPLY[..],
            ),
        ] {
            let mut sh = Shard::new(16, &Config::default(), 0);
            assert_eq!(pass(&mut sh, rep, S).state, CtState::Invalid, "lone reply");
            assert_eq!(pass(&mut sh, req, S).state, CtState::New);
            assert_eq!(pass(&mut sh, rep, S).state, CtState::Established);
            assert_eq!(sh.len(), 0);
        }
        let mut sh = Shard::new(16, &Config::default(), 0);
        assert_eq!(
            pass(&mut sh, &captured::NEIGHBOR_SOLICIT, S).state,
            CtState::Invalid
        );
        assert_eq!(
            pass(&mut sh, &captured::MLD2_REPORT_HBH, S).state,
            CtState::Untracked
        );
    }

    #[test]
    fn an_error_hashes_to_the_shard_of_its_connection() {
        let out = pkt(&captured::UDP4);
        let err = pkt(&captured::ICMP_PORT_UNREACH);
        for k in [0, 1, 0xdead_beef] {
            let key = crate::HashKey([k, !k]);
            assert_eq!(out.flow_hash(&key), err.flow_hash(&key));
        }
        let (_, proto, t) = err.lookup_key().unwrap();
        assert_eq!((proto, t.sport, t.dport), (PROTO_UDP, 9999, 40001));
    }

    #[test]
    fn later_fragments_and_non_ip_are_not_described() {
        for (frame, want) in [
            (
                &captured::IPV4_LATER_FRAGMENT[..],
                FromFrameError::LaterFragment,
            ),
            (
                &captured::IPV6_LATER_FRAGMENT[..],
                FromFrameError::LaterFragment,
            ),
            (&captured::ARP_REQUEST[..], FromFrameError::NotIp),
        ] {
            let info = wire::parse_frame(frame).unwrap();
            assert_eq!(CtPacket::from_frame(frame, &info), Err(want));
        }
    }

    #[test]
    fn built_syn_to_unreachable_network_is_related() {
        let b = FrameBuilder::default();
        let ip = IpPair::V4([198, 18, 0, 1], [198, 18, 5, 5]);
        let syn = b.tcp(
            ip,
            &TcpSpec {
                src_port: 40000,
                dst_port: 80,
                seq: 7,
                flags: TcpFlags::SYN,
                window: 64240,
                ..TcpSpec::default()
            },
        );
        let mut sh = Shard::new(16, &Config::default(), 0);
        assert_eq!(pass(&mut sh, &syn, S).state, CtState::New);
        let quoted = &syn[14..];
        let router = IpPair::V4([198, 18, 0, 254], [198, 18, 0, 1]);
        let err = b.icmp_error(router, 3, 0, 0, quoted);
        let t = pass(&mut sh, &err, 2 * S);
        assert_eq!(t.state, CtState::Related);
        assert_eq!(sh.len(), 0);
        // The same error sent elsewhere is forged.
        let _ = pass(&mut sh, &syn, 3 * S);
        let forged = b.icmp_error(
            IpPair::V4([198, 18, 0, 254], [198, 18, 0, 9]),
            3,
            0,
            0,
            quoted,
        );
        assert_eq!(pass(&mut sh, &forged, 4 * S).state, CtState::Invalid);
        assert_eq!(sh.len(), 1);
    }
}
