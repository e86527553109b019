//! The body of the `parse_frame` fuzz target, shared with the plain test that replays the seed
//! corpus (`crates/wire/fuzz/corpus/parse_frame`) so CI exercises it on stable.

use crate::icmpv4::IcmpPacket;
use crate::icmpv6::Icmpv6Packet;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::tcp::TcpPacket;
use crate::udp::UdpPacket;
use crate::{arp, ethernet, ip_proto, Family};

/// Parses `data` as a frame and walks every view, option iterator and verify helper that
/// applies. Must never panic; checks that views agree with [`crate::parse_frame`].
pub fn parse_frame_body(data: &[u8]) {
    let Ok(info) = crate::parse_frame(data) else {
        return;
    };
    let _ = crate::verify_ipv4_header(data, &info);
    let _ = crate::verify_l4_checksum(data, &info);
    let eth = ethernet::EthernetFrame::new_checked(data).expect("parse_frame accepted it");
    let _ = (eth.src(), eth.dst(), eth.ethertype());
    let l3 = &data[usize::from(info.l3_offset)..];
    match info.family {
        Family::NonIp => {
            if info.ethertype == ethernet::ethertype::ARP {
                if let Ok(a) = arp::ArpPacket::new_checked(l3) {
                    let _ = (
                        a.operation(),
                        a.sender_mac(),
                        a.sender_ip(),
                        a.target_mac(),
                        a.target_ip(),
                    );
                }
            }
            return;
        }
        Family::Ipv4 => {
            let ip = Ipv4Packet::new_checked(l3).expect("parse_frame checked the IPv4 header");
            assert_eq!(ip.src(), info.src_v4());
            assert_eq!(ip.ttl(), info.ttl);
            for option in ip.option_iter() {
                let _ = option;
            }
            let _ = ip.verify_checksum();
        }
        Family::Ipv6 => {
            let ip = Ipv6Packet::new_checked(l3).expect("parse_frame checked the IPv6 header");
            assert_eq!(ip.src(), info.src);
            let upper = ip.upper_layer().expect("parse_frame walked the chain");
            assert_eq!(upper.protocol, info.l4_proto);
        }
    }
    if !info.has_l4_header() {
        return;
    }
    let end = info.l3_end();
    let l4 = &data[usize::from(info.l4_offset)..end];
    match (info.family, info.l4_proto) {
        (_, ip_proto::TCP) => {
            let t = TcpPacket::new_checked(l4).expect("parse_frame checked the TCP header");
            assert_eq!(t.dst_port(), info.dst_port);
            for option in t.option_iter() {
                if let Ok(crate::tcp::TcpOption::Sack(blocks)) = option {
                    let _ = blocks.iter().count();
                }
            }
            let _ = t.payload();
        }
        (_, ip_proto::UDP) => {
            let u = UdpPacket::new_checked(l4).expect("parse_frame checked the UDP header");
            assert_eq!(u.src_port(), info.src_port);
            let _ = u.payload();
        }
        (Family::Ipv4, ip_proto::ICMP) => {
            let m = IcmpPacket::new_checked(l4).expect("parse_frame checked the ICMP header");
            assert_eq!(m.msg_type(), info.icmp_type);
            if let Some(quoted) = m.embedded() {
                if let Ok(inner) = crate::parse_embedded(quoted, Family::Ipv4) {
                    let _ = inner.l4_len();
                }
            }
        }
        (Family::Ipv6, ip_proto::ICMPV6) => {
            let m = Icmpv6Packet::new_checked(l4).expect("parse_frame checked the ICMPv6 header");
            assert_eq!(m.msg_type(), info.icmp_type);
            let _ = (m.target(), m.ndp_link_addr());
            if let Some(quoted) = m.embedded() {
                if let Ok(inner) = crate::parse_embedded(quoted, Family::Ipv6) {
                    let _ = inner.l4_len();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Replays the committed seed corpus through the fuzz body (the corpus is real captures
    /// plus deliberately malformed variants).
    #[test]
    fn seed_corpus_never_panics() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/parse_frame");
        let mut seen = 0;
        let mut malformed = 0;
        for entry in std::fs::read_dir(dir).expect("seed corpus is committed") {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            parse_frame_body(&data);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("_malformed") {
                assert!(
                    crate::parse_frame(&data).is_err(),
                    "{name} should be rejected"
                );
                malformed += 1;
            }
            seen += 1;
        }
        assert!(seen >= 12, "only {seen} seeds");
        assert!(malformed >= 5, "only {malformed} malformed seeds");
    }

    #[test]
    fn captured_frames_all_parse() {
        for &(name, frame) in crate::captured::ALL {
            assert!(crate::parse_frame(frame).is_ok(), "{name}");
            parse_frame_body(frame);
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse_frame_body(&data);
        }

        #[test]
        fn never_panics_on_mutated_frames(frame in crate::strategies::mutated_frame()) {
            parse_frame_body(&frame);
        }

        #[test]
        fn valid_frames_parse_and_verify(frame in crate::strategies::valid_frame()) {
            let info = crate::parse_frame(&frame).unwrap();
            prop_assert_eq!(crate::verify_ipv4_header(&frame, &info), Ok(()));
            prop_assert_eq!(crate::verify_l4_checksum(&frame, &info), Ok(()));
            parse_frame_body(&frame);
        }

        #[test]
        fn ip_frames_under_ethernet_header_arbitrary(ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd)],
                                                     body in proptest::collection::vec(any::<u8>(), 0..120),
                                                     version_ok in any::<bool>()) {
            // Arbitrary bytes behind an IP ethertype reach deeper than fully random frames.
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(&body);
            if version_ok && frame.len() > 14 {
                frame[14] = if ethertype == 0x0800 { 0x45 } else { 0x60 };
            }
            parse_frame_body(&frame);
        }
    }
}
