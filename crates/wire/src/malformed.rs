//! The one listing of reasons a frame is malformed.
//!
//! Every view's `new_checked`, every option iterator and [`crate::parse_frame`] report their
//! failures with a [`Malformed`] value, so the data plane can keep one counter per reason:
//! `counters[reason.index()] += 1`, with `Malformed::COUNT` slots and names from
//! [`Malformed::name`].

use core::fmt;

/// Declares a listing of reasons: a `Copy` enum whose variants index a counter array, each with a
/// stable `snake_case` name (metrics labels, logs) and a sentence a human can act on. fwd's drop
/// reasons at every layer (this crate's [`Malformed`], the ports' and the data plane's) are
/// declared with it, so every listing offers the same `ALL`, `COUNT`, `index`, `name` and
/// `description`.
#[macro_export]
macro_rules! reason_listing {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident {
            $( $(#[$doc:meta])* $variant:ident => ($name:literal, $description:literal), )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        $vis enum $ty {
            $( $(#[$doc])* $variant, )+
        }

        impl $ty {
            /// Every reason, in `index()` order.
            pub const ALL: [$ty; $ty::COUNT] = [ $( $ty::$variant, )+ ];

            /// Number of reasons: the size of a per-reason counter array.
            pub const COUNT: usize = [ $( $ty::$variant, )+ ].len();

            /// Position in a per-reason counter array.
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }

            /// Stable `snake_case` name, for counters and logs.
            pub const fn name(self) -> &'static str {
                match self { $( $ty::$variant => $name, )+ }
            }

            /// One sentence a human can act on.
            pub const fn description(self) -> &'static str {
                match self { $( $ty::$variant => $description, )+ }
            }
        }
    };
}

reason_listing! {
    /// Why a frame (or part of one) could not be parsed. A counted drop reason, never a panic.
    pub enum Malformed {
    /// Longer than 65535 bytes: offsets would not fit `FrameInfo`'s u16 fields, and no link fwd
    /// runs on carries such frames.
    OversizedFrame => ("oversized_frame", "frame longer than 65535 bytes"),
    /// Fewer than 14 bytes: no complete Ethernet header.
    TruncatedEthernet => ("truncated_ethernet", "frame shorter than the 14-byte Ethernet header"),
    /// An 802.1Q/802.1ad tag is cut off.
    TruncatedVlan => ("truncated_vlan", "frame ends inside an 802.1Q/802.1ad VLAN tag"),
    /// More than two stacked VLAN tags; such frames are not classified, so they are dropped.
    TooManyVlanTags => ("too_many_vlan_tags", "more than two stacked VLAN tags"),
    /// A PPPoE session frame ends inside its 6-byte header or the PPP protocol field.
    TruncatedPppoe => ("truncated_pppoe", "PPPoE session frame shorter than its header and PPP protocol field"),
    /// A PPPoE session frame's length field is below 2 (no protocol field), runs past the
    /// frame, or is shorter than the IP packet it carries.
    BadPppoeLength => ("bad_pppoe_length", "PPPoE length field below 2, beyond the frame, or shorter than the IP packet inside"),
    /// ARP packet shorter than its fixed Ethernet/IPv4 layout, or not Ethernet/IPv4.
    TruncatedArp => ("truncated_arp", "ARP packet shorter than 28 bytes or not Ethernet/IPv4"),
    /// Fewer than 20 bytes after the Ethernet header of an IPv4 frame.
    TruncatedIpv4Header => ("truncated_ipv4_header", "IPv4 packet shorter than the 20-byte header"),
    /// Ethertype and IP version nibble disagree.
    BadIpVersion => ("bad_ip_version", "IP version field does not match the ethertype"),
    /// IHL below 5 or header longer than the packet.
    BadIpv4HeaderLength => ("bad_ipv4_header_length", "IPv4 IHL below 5 or header runs past the packet"),
    /// Total length smaller than the header or larger than the bytes present.
    BadIpv4TotalLength => ("bad_ipv4_total_length", "IPv4 total length below the header length or beyond the frame"),
    /// IPv4 header checksum does not verify (only reported by the `verify` helpers).
    BadIpv4HeaderChecksum => ("bad_ipv4_header_checksum", "IPv4 header checksum is wrong"),
    /// An IPv4 option's length byte is invalid or runs past the header.
    BadIpv4Option => ("bad_ipv4_option", "IPv4 option length invalid or past the header end"),
    /// Fewer than 40 bytes after the Ethernet header of an IPv6 frame.
    TruncatedIpv6Header => ("truncated_ipv6_header", "IPv6 packet shorter than the 40-byte header"),
    /// Payload length points beyond the bytes present.
    BadIpv6PayloadLength => ("bad_ipv6_payload_length", "IPv6 payload length beyond the frame"),
    /// An extension header runs past the end of the IPv6 payload.
    BadExtensionHeaderChain => ("bad_extension_header_chain", "IPv6 extension header chain runs past the payload"),
    /// TCP segment shorter than 20 bytes.
    TruncatedTcpHeader => ("truncated_tcp_header", "TCP segment shorter than the 20-byte header"),
    /// TCP data offset below 5 words.
    TcpDataOffsetTooSmall => ("tcp_data_offset_too_small", "TCP data offset below 5 (20 bytes)"),
    /// TCP data offset beyond the segment.
    TcpDataOffsetTooLarge => ("tcp_data_offset_too_large", "TCP data offset runs past the segment"),
    /// A TCP option's length byte is invalid or runs past the header.
    BadTcpOption => ("bad_tcp_option", "TCP option length invalid or past the header end"),
    /// UDP datagram shorter than 8 bytes.
    TruncatedUdpHeader => ("truncated_udp_header", "UDP datagram shorter than the 8-byte header"),
    /// UDP length field below 8 or beyond the IP payload.
    BadUdpLength => ("bad_udp_length", "UDP length field below 8 or beyond the IP payload"),
    /// ICMP message shorter than 8 bytes.
    TruncatedIcmpHeader => ("truncated_icmp_header", "ICMP message shorter than the 8-byte header"),
    /// ICMPv6 message shorter than 8 bytes, or a neighbour discovery message without its target.
    TruncatedIcmpv6Header => ("truncated_icmpv6_header", "ICMPv6 message shorter than its fixed header"),
    /// A transport checksum does not verify (only reported by the `verify` helpers).
    BadL4Checksum => ("bad_l4_checksum", "TCP/UDP/ICMP checksum is wrong"),
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for Malformed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_dense_and_names_unique() {
        assert_eq!(Malformed::ALL.len(), Malformed::COUNT);
        for (i, reason) in Malformed::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(!reason.description().is_empty());
            assert!(reason
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
        let mut names: Vec<_> = Malformed::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Malformed::COUNT);
    }

    #[test]
    fn display_is_description() {
        assert_eq!(
            Malformed::BadUdpLength.to_string(),
            "UDP length field below 8 or beyond the IP payload"
        );
    }
}
