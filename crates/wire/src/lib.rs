//! Zero-copy packet views, the hot-path frame parser, Internet checksums and frame builders.
//!
//! * Views ([`ethernet`], [`pppoe`], [`arp`], [`ipv4`], [`ipv6`], [`tcp`], [`udp`], [`icmpv4`],
//!   [`icmpv6`]) wrap `T: AsRef<[u8]>` without copying, check lengths in `new_checked`, and
//!   have setters when `T: AsMut<[u8]>`. Accessors on a checked view do not panic.
//! * [`parse_frame`] does one allocation-free pass over a frame and returns a small `Copy`
//!   [`FrameInfo`]; every failure is a [`Malformed`] drop reason from one listing.
//! * [`checksum`] has the RFC 1071 sum and RFC 1624 incremental updates for NAT.
//! * [`rewrite`] changes addresses, ports, ICMP ids and TTL in place with incremental
//!   checksum updates (NAT).
//! * [`builder`] makes complete frames with valid checksums for tests and REJECT (allocates).
//! * [`captured`] holds real frames captured with tcpdump, for tests in any crate.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod arp;
pub mod builder;
pub mod captured;
pub mod checksum;
pub mod ethernet;
pub mod fuzzing;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
mod malformed;
mod parse;
pub mod pppoe;
pub mod rewrite;
#[cfg(any(test, feature = "proptest-strategies"))]
pub mod strategies;
pub mod tcp;
pub mod udp;

pub use malformed::Malformed;
pub use parse::{
    encap, parse_embedded, parse_frame, parse_frame_into, verify_ipv4_header, verify_l4_checksum,
    Family, FrameInfo, MAX_VLAN_TAGS,
};

/// IP protocol numbers (IPv4 protocol / IPv6 next header).
pub mod ip_proto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IGMP.
    pub const IGMP: u8 = 2;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// Encapsulating security payload.
    pub const ESP: u8 = 50;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 no next header.
    pub const NONE: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}
