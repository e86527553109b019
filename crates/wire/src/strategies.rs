//! Proptest strategies for random valid frames, shared with other crates' tests and benches
//! (enable the `proptest-strategies` feature).
//!
//! Every frame comes from [`crate::builder`], so its checksums are valid and
//! [`crate::parse_frame`] accepts it.

use crate::builder::{FrameBuilder, IpPair, TcpSpec};
use crate::ethernet::{ethertype, MacAddr};
use crate::tcp::{TcpFlags, TcpOption};
use crate::{icmpv4, icmpv6};
use proptest::collection::vec;
use proptest::prelude::*;

/// Any unicast MAC (I/G bit clear).
pub fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(|mut m| {
        m[0] &= 0xfe;
        MacAddr(m)
    })
}

/// Any IPv4 address.
pub fn ipv4_addr() -> impl Strategy<Value = [u8; 4]> {
    any::<[u8; 4]>()
}

/// Any IPv6 address.
pub fn ipv6_addr() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

/// An IPv4 or IPv6 address pair.
pub fn ip_pair() -> impl Strategy<Value = IpPair> {
    prop_oneof![
        (ipv4_addr(), ipv4_addr()).prop_map(|(s, d)| IpPair::V4(s, d)),
        (ipv6_addr(), ipv6_addr()).prop_map(|(s, d)| IpPair::V6(s, d)),
    ]
}

/// A builder with random MACs, 0 to 2 VLAN tags, random TTL, ID and TOS.
pub fn frame_builder() -> impl Strategy<Value = FrameBuilder> {
    let tags = prop_oneof![
        Just(vec![]),
        any::<u16>().prop_map(|t| vec![(ethertype::VLAN, t)]),
        (any::<u16>(), any::<u16>())
            .prop_map(|(a, b)| vec![(ethertype::QINQ, a), (ethertype::VLAN, b)]),
    ];
    (
        mac(),
        mac(),
        tags,
        1u8..,
        any::<u16>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            |(src_mac, dst_mac, vlan, ttl, ident, dont_frag, tos)| FrameBuilder {
                src_mac,
                dst_mac,
                vlan,
                ttl,
                ident,
                dont_frag,
                tos,
                flow_label: u32::from(ident) << 4,
                fragment: None,
            },
        )
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

/// MSS, window scale, SACK-permitted, timestamps, SACK block bytes.
type OwnedTcpOptions = (Option<u16>, Option<u8>, bool, Option<(u32, u32)>, Vec<u8>);

/// Owned TCP options (SACK blocks as bytes) that fit in 40 bytes together.
fn tcp_options() -> impl Strategy<Value = OwnedTcpOptions> {
    (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..15),
        any::<bool>(),
        proptest::option::of(any::<(u32, u32)>()),
        prop_oneof![
            Just(vec![]),
            vec(any::<u8>(), 8..=8),
            vec(any::<u8>(), 16..=16)
        ],
    )
}

/// A TCP frame with random ports, numbers, flags, window, options and data.
pub fn tcp_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        frame_builder(),
        ip_pair(),
        any::<(u16, u16, u32, u32, u8, u16)>(),
        tcp_options(),
        payload(),
    )
        .prop_map(
            |(b, ip, (sp, dp, seq, ack, flags, window), (mss, ws, sack_ok, ts, sack), data)| {
                let mut options = Vec::new();
                if let Some(m) = mss {
                    options.push(TcpOption::Mss(m));
                }
                if let Some(w) = ws {
                    options.push(TcpOption::WindowScale(w));
                }
                if sack_ok {
                    options.push(TcpOption::SackPermitted);
                }
                if let Some((value, echo)) = ts {
                    options.push(TcpOption::Timestamps { value, echo });
                }
                let blocks = crate::tcp::SackBlocks::from_bytes(&sack);
                if let Some(blocks) = blocks {
                    options.push(TcpOption::Sack(blocks));
                }
                b.tcp(
                    ip,
                    &TcpSpec {
                        src_port: sp,
                        dst_port: dp,
                        seq,
                        ack,
                        flags: TcpFlags(flags),
                        window,
                        options,
                        payload: &data,
                    },
                )
            },
        )
}

/// A UDP frame with random ports and data.
pub fn udp_frame() -> impl Strategy<Value = Vec<u8>> {
    (frame_builder(), ip_pair(), any::<(u16, u16)>(), payload())
        .prop_map(|(b, ip, (sp, dp), data)| b.udp(ip, sp, dp, &data))
}

/// An ICMP or ICMPv6 echo request or reply.
pub fn echo_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        frame_builder(),
        ip_pair(),
        any::<(bool, u16, u16)>(),
        payload(),
    )
        .prop_map(|(b, ip, (req, id, seq), data)| b.echo(ip, req, id, seq, &data))
}

/// An ICMP/ICMPv6 destination-unreachable error quoting a random TCP or UDP packet.
pub fn icmp_error_frame() -> impl Strategy<Value = Vec<u8>> {
    (frame_builder(), prop_oneof![tcp_frame(), udp_frame()]).prop_map(|(b, original)| {
        let info = crate::parse_frame(&original).expect("strategy frames parse");
        let packet = &original[usize::from(info.l3_offset)..];
        let ip = match info.family {
            crate::Family::Ipv4 => IpPair::V4(info.dst_v4(), info.src_v4()),
            _ => IpPair::V6(info.dst, info.src),
        };
        let (ty, code) = match ip {
            IpPair::V4(..) => (
                icmpv4::msg_type::DEST_UNREACHABLE,
                icmpv4::unreachable::PORT,
            ),
            IpPair::V6(..) => (
                icmpv6::msg_type::DEST_UNREACHABLE,
                icmpv6::unreachable::PORT,
            ),
        };
        b.icmp_error(ip, ty, code, 0, packet)
    })
}

/// Any valid frame: TCP, UDP, echo, ICMP error, ARP.
pub fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    let arp = (
        frame_builder(),
        any::<bool>(),
        mac(),
        ipv4_addr(),
        ipv4_addr(),
    )
        .prop_map(|(b, reply, m, s, t)| {
            let op = if reply {
                crate::arp::operation::REPLY
            } else {
                crate::arp::operation::REQUEST
            };
            b.arp(op, (m, s), (MacAddr([0; 6]), t))
        });
    prop_oneof![
        3 => tcp_frame(),
        3 => udp_frame(),
        2 => echo_frame(),
        1 => icmp_error_frame(),
        1 => arp,
    ]
}

/// A valid frame with random damage: flipped bytes, truncation, or random bytes appended.
pub fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_frame(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        proptest::option::of(any::<prop::sample::Index>()),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(|(mut frame, flips, cut, tail)| {
            for (at, value) in flips {
                let i = at.index(frame.len());
                frame[i] = value;
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            frame.extend_from_slice(&tail);
            frame
        })
}
