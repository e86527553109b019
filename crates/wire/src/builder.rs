//! Builds complete Ethernet frames with valid checksums, for tests and for REJECT replies.
//!
//! Off the hot path: every frame is a fresh `Vec<u8>`. One [`FrameBuilder`] holds the
//! link-layer and IP header settings; its methods take the addresses and the L4 content.
//!
//! ```
//! use wire::builder::{FrameBuilder, IpPair, TcpSpec};
//! use wire::tcp::TcpFlags;
//! let frame = FrameBuilder::default().tcp(
//!     IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]),
//!     &TcpSpec { src_port: 40000, dst_port: 80, flags: TcpFlags::SYN, ..TcpSpec::default() },
//! );
//! let info = wire::parse_frame(&frame).unwrap();
//! assert_eq!(info.dst_port, 80);
//! assert!(wire::verify_l4_checksum(&frame, &info).is_ok());
//! ```

use crate::arp::ArpPacket;
use crate::ethernet::{ethertype, EthernetFrame, MacAddr};
use crate::icmpv4::IcmpPacket;
use crate::icmpv6::{self, Icmpv6Packet};
use crate::ipv4::{self, Ipv4Packet};
use crate::ipv6;
use crate::tcp::{self, TcpFlags, TcpOption, TcpPacket};
use crate::udp::{self, UdpPacket};
use crate::{icmpv4, ip_proto};

/// Source and destination addresses of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPair {
    /// IPv4 source, destination.
    V4([u8; 4], [u8; 4]),
    /// IPv6 source, destination.
    V6([u8; 16], [u8; 16]),
}

impl IpPair {
    /// The same pair with source and destination swapped (for replies).
    pub fn reversed(self) -> IpPair {
        match self {
            IpPair::V4(s, d) => IpPair::V4(d, s),
            IpPair::V6(s, d) => IpPair::V6(d, s),
        }
    }
}

/// Fragmentation to apply to the IP header (IPv6: a fragment header is inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragmentSpec {
    /// Offset in bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification (16 bits used for IPv4).
    pub ident: u32,
}

/// Link-layer and IP header settings shared by the frames a builder makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBuilder {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// VLAN tags, outermost first, as (TPID, TCI); at most two to stay parseable.
    pub vlan: Vec<(u16, u16)>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored when `fragment` is set).
    pub ident: u16,
    /// IPv4 DF flag.
    pub dont_frag: bool,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv6 flow label.
    pub flow_label: u32,
    /// Make the packet a fragment carrying the given L4 bytes.
    pub fragment: Option<FragmentSpec>,
}

impl Default for FrameBuilder {
    /// 02:00:00:00:00:01 -> 02:00:00:00:00:02, untagged, TTL 64, DF, ID 1.
    fn default() -> Self {
        FrameBuilder {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan: Vec::new(),
            ttl: 64,
            ident: 1,
            dont_frag: true,
            tos: 0,
            flow_label: 0,
            fragment: None,
        }
    }
}

/// TCP segment content for [`FrameBuilder::tcp`].
#[derive(Debug, Clone, Default)]
pub struct TcpSpec<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
    /// Options, padded with NOPs to a multiple of 4 bytes (at most 40 bytes).
    pub options: Vec<TcpOption<'a>>,
    /// Data.
    pub payload: &'a [u8],
}

/// Most bytes of the original datagram an ICMP error quotes (576 - 20 - 8, as Linux does).
pub const ICMP_QUOTE_MAX: usize = 576 - 20 - 8;
/// Most bytes of the original packet an ICMPv6 error quotes (1280 - 40 - 8, RFC 4443).
pub const ICMPV6_QUOTE_MAX: usize = 1280 - 40 - 8;

impl FrameBuilder {
    /// Wraps an IP packet in Ethernet (and VLAN tags).
    pub fn ethernet(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 4 * self.vlan.len() + payload.len()];
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst(self.dst_mac);
        eth.set_src(self.src_mac);
        let mut at = 12;
        for &(tpid, tci) in &self.vlan {
            frame[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
            frame[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
            at += 4;
        }
        frame[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
        frame[at + 2..].copy_from_slice(payload);
        frame
    }

    /// An IP packet around already-built L4 bytes (checksums inside `l4` are the caller's),
    /// honouring `fragment`.
    pub fn ip_packet(&self, ip: IpPair, protocol: u8, l4: &[u8]) -> Vec<u8> {
        match ip {
            IpPair::V4(src, dst) => {
                let mut p = vec![0u8; ipv4::MIN_HEADER_LEN + l4.len()];
                ipv4::Ipv4Repr {
                    src,
                    dst,
                    protocol,
                    payload_len: l4.len() as u16,
                    ttl: self.ttl,
                    ident: self.fragment.map_or(self.ident, |f| f.ident as u16),
                    dont_frag: self.dont_frag && self.fragment.is_none(),
                    tos: self.tos,
                }
                .emit(&mut p);
                if let Some(f) = self.fragment {
                    let mut v = Ipv4Packet::new_unchecked(&mut p[..]);
                    v.set_flags_and_offset(false, f.more, f.offset);
                    v.fill_checksum();
                }
                p[ipv4::MIN_HEADER_LEN..].copy_from_slice(l4);
                p
            }
            IpPair::V6(src, dst) => {
                let frag_len = if self.fragment.is_some() { 8 } else { 0 };
                let mut p = vec![0u8; ipv6::HEADER_LEN + frag_len + l4.len()];
                ipv6::Ipv6Repr {
                    src,
                    dst,
                    next_header: if frag_len > 0 {
                        ip_proto::FRAGMENT
                    } else {
                        protocol
                    },
                    payload_len: (frag_len + l4.len()) as u16,
                    hop_limit: self.ttl,
                    traffic_class: self.tos,
                    flow_label: self.flow_label,
                }
                .emit(&mut p);
                if let Some(f) = self.fragment {
                    let h = &mut p[ipv6::HEADER_LEN..ipv6::HEADER_LEN + 8];
                    h[0] = protocol;
                    h[2..4]
                        .copy_from_slice(&((f.offset & 0xfff8) | u16::from(f.more)).to_be_bytes());
                    h[4..8].copy_from_slice(&f.ident.to_be_bytes());
                }
                p[ipv6::HEADER_LEN + frag_len..].copy_from_slice(l4);
                p
            }
        }
    }

    /// A complete frame around already-built L4 bytes.
    pub fn ip_frame(&self, ip: IpPair, protocol: u8, l4: &[u8]) -> Vec<u8> {
        let et = match ip {
            IpPair::V4(..) => ethertype::IPV4,
            IpPair::V6(..) => ethertype::IPV6,
        };
        self.ethernet(et, &self.ip_packet(ip, protocol, l4))
    }

    /// A TCP segment with a valid checksum.
    pub fn tcp(&self, ip: IpPair, spec: &TcpSpec<'_>) -> Vec<u8> {
        let mut options = Vec::new();
        for o in &spec.options {
            tcp::emit_option(o, &mut options);
        }
        while options.len() % 4 != 0 {
            options.push(tcp::option_kind::NOP);
        }
        assert!(options.len() <= 40, "TCP options exceed 40 bytes");
        let header_len = tcp::MIN_HEADER_LEN + options.len();
        let mut seg = vec![0u8; header_len + spec.payload.len()];
        seg[tcp::MIN_HEADER_LEN..header_len].copy_from_slice(&options);
        seg[header_len..].copy_from_slice(spec.payload);
        let mut t = TcpPacket::new_unchecked(&mut seg[..]);
        t.set_src_port(spec.src_port);
        t.set_dst_port(spec.dst_port);
        t.set_seq(spec.seq);
        t.set_ack(spec.ack);
        t.set_header_len(header_len);
        t.set_flags(spec.flags);
        t.set_window(spec.window);
        match ip {
            IpPair::V4(s, d) => t.fill_checksum_v4(s, d),
            IpPair::V6(s, d) => t.fill_checksum_v6(&s, &d),
        }
        self.ip_frame(ip, ip_proto::TCP, &seg)
    }

    /// A UDP datagram with a valid checksum.
    pub fn udp(&self, ip: IpPair, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut dgram = vec![0u8; udp::HEADER_LEN + payload.len()];
        let mut u = UdpPacket::new_unchecked(&mut dgram[..]);
        u.set_src_port(src_port);
        u.set_dst_port(dst_port);
        u.set_len((udp::HEADER_LEN + payload.len()) as u16);
        u.payload_mut().copy_from_slice(payload);
        match ip {
            IpPair::V4(s, d) => u.fill_checksum_v4(s, d),
            IpPair::V6(s, d) => u.fill_checksum_v6(&s, &d),
        }
        self.ip_frame(ip, ip_proto::UDP, &dgram)
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message with a valid checksum: `rest` is the 4-byte
    /// rest-of-header, `body` what follows.
    pub fn icmp(&self, ip: IpPair, msg_type: u8, code: u8, rest: u32, body: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; 8 + body.len()];
        msg[8..].copy_from_slice(body);
        match ip {
            IpPair::V4(..) => {
                let mut m = IcmpPacket::new_unchecked(&mut msg[..]);
                m.set_msg_type(msg_type);
                m.set_code(code);
                m.set_rest_of_header(rest);
                m.fill_checksum();
                self.ip_frame(ip, ip_proto::ICMP, &msg)
            }
            IpPair::V6(s, d) => {
                let mut m = Icmpv6Packet::new_unchecked(&mut msg[..]);
                m.set_msg_type(msg_type);
                m.set_code(code);
                m.set_rest_of_header(rest);
                m.fill_checksum(&s, &d);
                self.ip_frame(ip, ip_proto::ICMPV6, &msg)
            }
        }
    }

    /// An echo request or reply (ICMP or ICMPv6 by address family).
    pub fn echo(&self, ip: IpPair, request: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
        let msg_type = match (ip, request) {
            (IpPair::V4(..), true) => icmpv4::msg_type::ECHO_REQUEST,
            (IpPair::V4(..), false) => icmpv4::msg_type::ECHO_REPLY,
            (IpPair::V6(..), true) => icmpv6::msg_type::ECHO_REQUEST,
            (IpPair::V6(..), false) => icmpv6::msg_type::ECHO_REPLY,
        };
        let rest = (u32::from(ident) << 16) | u32::from(seq);
        self.icmp(ip, msg_type, 0, rest, payload)
    }

    /// An ICMP/ICMPv6 error quoting `original` (an IP packet, starting at its header), cut as
    /// Linux cuts it: at most [`ICMP_QUOTE_MAX`] / [`ICMPV6_QUOTE_MAX`] bytes. `ip` is the
    /// error's own address pair (usually the original's reversed); `rest` is the
    /// rest-of-header (next-hop MTU, pointer, ...; 0 for unreachables).
    pub fn icmp_error(
        &self,
        ip: IpPair,
        msg_type: u8,
        code: u8,
        rest: u32,
        original: &[u8],
    ) -> Vec<u8> {
        let max = match ip {
            IpPair::V4(..) => ICMP_QUOTE_MAX,
            IpPair::V6(..) => ICMPV6_QUOTE_MAX,
        };
        let quote = &original[..original.len().min(max)];
        self.icmp(ip, msg_type, code, rest, quote)
    }

    /// An ARP packet (Ethernet/IPv4) in a frame from this builder's MACs.
    pub fn arp(
        &self,
        operation: u16,
        sender: (MacAddr, [u8; 4]),
        target: (MacAddr, [u8; 4]),
    ) -> Vec<u8> {
        let mut body = [0u8; crate::arp::PACKET_LEN];
        let mut a = ArpPacket::new_unchecked(&mut body[..]);
        a.set_ethernet_ipv4();
        a.set_operation(operation);
        a.set_sender_mac(sender.0);
        a.set_sender_ip(sender.1);
        a.set_target_mac(target.0);
        a.set_target_ip(target.1);
        self.ethernet(ethertype::ARP, &body)
    }

    /// A neighbour solicitation for `target` with a source link-layer address option. Use
    /// hop limit 255 (`ttl`) for it to be accepted by real hosts.
    pub fn neighbor_solicit(
        &self,
        src: [u8; 16],
        dst: [u8; 16],
        target: [u8; 16],
        link_addr: MacAddr,
    ) -> Vec<u8> {
        self.neighbor(
            src,
            dst,
            icmpv6::msg_type::NEIGHBOR_SOLICIT,
            0,
            target,
            icmpv6::ndp_option::SOURCE_LINK_ADDR,
            link_addr,
        )
    }

    /// A neighbour advertisement for `target` with flags (see [`icmpv6::na_flags`]) and a
    /// target link-layer address option.
    pub fn neighbor_advert(
        &self,
        src: [u8; 16],
        dst: [u8; 16],
        target: [u8; 16],
        flags: u8,
        link_addr: MacAddr,
    ) -> Vec<u8> {
        self.neighbor(
            src,
            dst,
            icmpv6::msg_type::NEIGHBOR_ADVERT,
            flags,
            target,
            icmpv6::ndp_option::TARGET_LINK_ADDR,
            link_addr,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn neighbor(
        &self,
        src: [u8; 16],
        dst: [u8; 16],
        msg_type: u8,
        flags: u8,
        target: [u8; 16],
        option: u8,
        link_addr: MacAddr,
    ) -> Vec<u8> {
        let mut body = [0u8; 16 + 8];
        body[..16].copy_from_slice(&target);
        body[16] = option;
        body[17] = 1;
        body[18..24].copy_from_slice(&link_addr.0);
        self.icmp(
            IpPair::V6(src, dst),
            msg_type,
            0,
            u32::from(flags) << 24,
            &body,
        )
    }
}

/// The IPv4/IPv6 frame `ip_frame` (as built by [`FrameBuilder`], tags allowed) carried in a
/// PPPoE session `session` instead: ethertype 0x8864, the 6-byte PPPoE header, PPP protocol
/// 0x0021 or 0x0057, then the same IP packet. Other frames come back unchanged.
pub fn pppoe_session(ip_frame: &[u8], session: u16) -> Vec<u8> {
    let Ok(info) = crate::parse_frame(ip_frame) else {
        return ip_frame.to_vec();
    };
    let protocol = match info.family {
        crate::Family::Ipv4 => crate::pppoe::ppp_proto::IPV4,
        crate::Family::Ipv6 => crate::pppoe::ppp_proto::IPV6,
        crate::Family::NonIp => return ip_frame.to_vec(),
    };
    let l3 = usize::from(info.l3_offset);
    let packet = &ip_frame[l3..info.l3_end()];
    let mut out = ip_frame[..l3].to_vec();
    out[l3 - 2..l3].copy_from_slice(&ethertype::PPPOE_SESSION.to_be_bytes());
    out.extend_from_slice(&[0x11, 0x00]);
    out.extend_from_slice(&session.to_be_bytes());
    out.extend_from_slice(&(packet.len() as u16 + 2).to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// An LLDP frame (802.1AB) to the nearest-bridge address 01:80:c2:00:00:0e from `src`, with
/// chassis id, port id and TTL TLVs and the end TLV; `dst_last` picks another reserved group
/// address (0x03: EAPOL's, 0x00: STP's) for tests of the whole range.
pub fn lldp(src: MacAddr, dst_last: u8) -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0x00, 0x00, dst_last];
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype::LLDP.to_be_bytes());
    // chassis id: subtype 4 (MAC address)
    f.extend_from_slice(&[0x02, 0x07, 0x04]);
    f.extend_from_slice(&src.0);
    // port id: subtype 7 (locally assigned) "p1"
    f.extend_from_slice(&[0x04, 0x03, 0x07, b'p', b'1']);
    // TTL 120 s, end of LLDPDU
    f.extend_from_slice(&[0x06, 0x02, 0x00, 0x78, 0x00, 0x00]);
    f.resize(60, 0);
    f
}

/// Recomputes every checksum of a frame from scratch (IPv4 header and TCP/UDP/ICMP/ICMPv6),
/// for tests that edit frames by hand. Frames `parse_frame` rejects, and fragments, are left
/// as they are.
pub fn fix_checksums(frame: &mut [u8]) {
    let Ok(info) = crate::parse_frame(frame) else {
        return;
    };
    if info.family == crate::Family::Ipv4 {
        let l3 = usize::from(info.l3_offset);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
        ip.fill_checksum();
    }
    if info.is_fragment || !info.is_ip() {
        return;
    }
    let start = usize::from(info.l4_offset);
    let end = info.l3_end();
    let seg = &mut frame[start..end];
    match (info.family, info.l4_proto) {
        (crate::Family::Ipv4, ip_proto::TCP) => {
            TcpPacket::new_unchecked(seg).fill_checksum_v4(info.src_v4(), info.dst_v4())
        }
        (crate::Family::Ipv6, ip_proto::TCP) => {
            TcpPacket::new_unchecked(seg).fill_checksum_v6(&info.src, &info.dst)
        }
        (crate::Family::Ipv4, ip_proto::UDP) => {
            UdpPacket::new_unchecked(seg).fill_checksum_v4(info.src_v4(), info.dst_v4())
        }
        (crate::Family::Ipv6, ip_proto::UDP) => {
            UdpPacket::new_unchecked(seg).fill_checksum_v6(&info.src, &info.dst)
        }
        (crate::Family::Ipv4, ip_proto::ICMP) => IcmpPacket::new_unchecked(seg).fill_checksum(),
        (crate::Family::Ipv6, ip_proto::ICMPV6) => {
            Icmpv6Packet::new_unchecked(seg).fill_checksum(&info.src, &info.dst)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::*;
    use crate::tcp::TcpFlags;
    use crate::{arp, parse_frame, Family, Malformed};

    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const C1: [u8; 4] = [198, 18, 0, 1];
    const C2: [u8; 4] = [198, 18, 0, 2];
    const A1: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const A2: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn from_2_to_1() -> FrameBuilder {
        FrameBuilder {
            src_mac: MAC2,
            dst_mac: MAC1,
            ..FrameBuilder::default()
        }
    }

    // The builders reproduce the kernel's frames byte for byte, checksums included.

    #[test]
    fn reproduces_captured_tcp_syn() {
        let b = FrameBuilder {
            ident: 0xe5c5,
            ..FrameBuilder::default()
        };
        let frame = b.tcp(
            IpPair::V4(C1, C2),
            &TcpSpec {
                src_port: 40000,
                dst_port: 8080,
                seq: 292_909_402,
                ack: 0,
                flags: TcpFlags::SYN,
                window: 64240,
                options: vec![
                    TcpOption::Mss(1460),
                    TcpOption::SackPermitted,
                    TcpOption::Timestamps {
                        value: 151_697_264,
                        echo: 0,
                    },
                    TcpOption::Nop,
                    TcpOption::WindowScale(10),
                ],
                payload: &[],
            },
        );
        assert_eq!(frame, TCP_SYN);
    }

    #[test]
    fn reproduces_captured_udp() {
        let b = FrameBuilder {
            ident: 0xe888,
            ..FrameBuilder::default()
        };
        assert_eq!(b.udp(IpPair::V4(C1, C2), 40001, 9999, b"ping"), UDP4);
        let b = FrameBuilder {
            flow_label: 0x21669,
            ..FrameBuilder::default()
        };
        let frame = b.udp(IpPair::V6(A1, A2), 40002, 9999, b"ping6");
        assert_eq!(frame, UDP6);
    }

    #[test]
    fn reproduces_captured_echo() {
        let b = FrameBuilder {
            ident: 0x6bc0,
            ..FrameBuilder::default()
        };
        let frame = b.echo(IpPair::V4(C1, C2), true, 8947, 1, &ICMP_ECHO_REQUEST[42..]);
        assert_eq!(frame, ICMP_ECHO_REQUEST);
        let b = FrameBuilder {
            flow_label: 0x2ce8b,
            ..FrameBuilder::default()
        };
        let frame = b.echo(
            IpPair::V6(A1, A2),
            true,
            8948,
            1,
            &ICMPV6_ECHO_REQUEST[62..],
        );
        assert_eq!(frame, ICMPV6_ECHO_REQUEST);
    }

    #[test]
    fn reproduces_captured_port_unreachable() {
        let b = FrameBuilder {
            ident: 0x6729,
            dont_frag: false,
            tos: 0xc0,
            ..from_2_to_1()
        };
        let frame = b.icmp_error(
            IpPair::V4(C2, C1),
            icmpv4::msg_type::DEST_UNREACHABLE,
            icmpv4::unreachable::PORT,
            0,
            &UDP4[14..],
        );
        assert_eq!(frame, ICMP_PORT_UNREACH);
        let b = FrameBuilder {
            flow_label: 0x4693d,
            ..from_2_to_1()
        };
        let frame = b.icmp_error(
            IpPair::V6(A2, A1),
            icmpv6::msg_type::DEST_UNREACHABLE,
            icmpv6::unreachable::PORT,
            0,
            &UDP6[14..],
        );
        assert_eq!(frame, ICMPV6_PORT_UNREACH);
    }

    #[test]
    fn reproduces_captured_arp_and_neighbour_discovery() {
        let b = FrameBuilder {
            dst_mac: MacAddr::BROADCAST,
            ..FrameBuilder::default()
        };
        let frame = b.arp(arp::operation::REQUEST, (MAC1, C1), (MacAddr([0; 6]), C2));
        assert_eq!(frame, ARP_REQUEST);
        let frame = from_2_to_1().arp(arp::operation::REPLY, (MAC2, C2), (MAC1, C1));
        assert_eq!(frame, ARP_REPLY);

        let solicited_node = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        let b = FrameBuilder {
            dst_mac: MacAddr::ipv6_multicast(&solicited_node),
            ttl: 255,
            ..FrameBuilder::default()
        };
        assert_eq!(
            b.neighbor_solicit(A1, solicited_node, A2, MAC1),
            NEIGHBOR_SOLICIT
        );
        let b = FrameBuilder {
            ttl: 255,
            ..from_2_to_1()
        };
        let flags = icmpv6::na_flags::SOLICITED | icmpv6::na_flags::OVERRIDE;
        assert_eq!(b.neighbor_advert(A2, A1, A2, flags, MAC2), NEIGHBOR_ADVERT);
    }

    #[test]
    fn icmp_errors_cut_long_quotes() {
        let big = FrameBuilder::default().udp(IpPair::V4(C1, C2), 1, 2, &[7u8; 1400]);
        let err = from_2_to_1().icmp_error(IpPair::V4(C2, C1), 3, 3, 0, &big[14..]);
        assert_eq!(err.len(), 14 + 576);
        let big6 = FrameBuilder::default().udp(IpPair::V6(A1, A2), 1, 2, &[7u8; 1400]);
        let err = from_2_to_1().icmp_error(IpPair::V6(A2, A1), 1, 4, 0, &big6[14..]);
        assert_eq!(err.len(), 14 + 1280);
        let info = parse_frame(&err).unwrap();
        assert_eq!(crate::verify_l4_checksum(&err, &info), Ok(()));
        // The quote is truncated, but conntrack can still read its ports.
        let inner = crate::parse_embedded(&err[14 + 48..], Family::Ipv6).unwrap();
        assert_eq!((inner.src_port, inner.dst_port), (1, 2));
    }

    #[test]
    fn vlan_tags_and_fragments() {
        let b = FrameBuilder {
            vlan: vec![(0x88a8, 10), (0x8100, 20)],
            fragment: Some(FragmentSpec {
                offset: 0,
                more: true,
                ident: 99,
            }),
            ..FrameBuilder::default()
        };
        let frame = b.udp(IpPair::V4(C1, C2), 5, 6, b"x");
        let info = parse_frame(&frame).unwrap();
        assert_eq!((info.vlan_count, info.vlan_tci), (2, [10, 20]));
        assert!(info.is_first_fragment() && info.more_fragments);
        assert_eq!((info.frag_ident, info.dst_port), (99, 6));

        let b = FrameBuilder {
            fragment: Some(FragmentSpec {
                offset: 1448,
                more: false,
                ident: 0xdead_beef,
            }),
            ..FrameBuilder::default()
        };
        let frame = b.ip_frame(IpPair::V6(A1, A2), ip_proto::UDP, &[1, 2, 3]);
        let info = parse_frame(&frame).unwrap();
        assert!(info.is_later_fragment());
        assert_eq!(
            (info.frag_offset, info.frag_ident, info.l4_proto),
            (1448, 0xdead_beef, ip_proto::UDP)
        );
        assert_eq!(info.l4_offset, 14 + 48);
        assert_eq!(info.src_port, 0);
    }

    #[test]
    fn fix_checksums_repairs_hand_edits() {
        let mut frame = TCP_PSH_DATA;
        frame[14 + 20 + 32] = b'j'; // "jello"
        let info = parse_frame(&frame).unwrap();
        assert_eq!(
            crate::verify_l4_checksum(&frame, &info),
            Err(Malformed::BadL4Checksum)
        );
        fix_checksums(&mut frame);
        assert_eq!(crate::verify_l4_checksum(&frame, &info), Ok(()));
        let mut same = TCP6_PSH_DATA;
        fix_checksums(&mut same);
        assert_eq!(same, TCP6_PSH_DATA);
    }

    #[test]
    fn reversed_pair() {
        assert_eq!(IpPair::V4(C1, C2).reversed(), IpPair::V4(C2, C1));
        assert_eq!(IpPair::V6(A1, A2).reversed(), IpPair::V6(A2, A1));
    }
}
