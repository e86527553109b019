//! Internet checksum (RFC 1071), pseudo-header sums, and RFC 1624 incremental updates.
//!
//! Vocabulary: a *sum* is the folded 16-bit ones'-complement sum of some bytes (not inverted);
//! a *checksum* is the inverted sum that goes on the wire. Sums of disjoint pieces combine with
//! [`combine`]. All values are in host order of the big-endian wire words, so
//! `u16::from_be_bytes(header[10..12])` compares directly with [`checksum`] output.
//!
//! NAT rewrites a field and patches the checksum with [`update16`], [`update32`] or
//! [`update128`] instead of recomputing it; the proptests at the bottom prove the two agree.

/// Adds the bytes as big-endian 16-bit words into a wide accumulator, without folding.
///
/// Eight bytes are summed as two 32-bit words per step; a `u64` accumulator cannot overflow for
/// any slice shorter than 2^32 * 4 bytes, so no carry handling is needed inside the loop.
#[inline]
fn add_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        acc += u64::from(u32::from_be_bytes([c[4], c[5], c[6], c[7]]));
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        // An odd trailing byte is padded with a zero byte on the right (RFC 1071).
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a wide accumulator to 16 bits with end-around carry.
#[inline]
pub const fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// Ones'-complement sum of `data` (not inverted). An odd-length slice is padded with a zero byte,
/// so only the last piece of a [`combine`]d message may have odd length.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(add_words(data, 0))
}

/// Ones'-complement sum of several sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The Internet checksum of `data`: the inverted ones'-complement sum (RFC 1071).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// True when `data`, including its checksum field, sums to `0xffff` (a valid checksum).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// Sum of the IPv4 pseudo-header (RFC 768/793): addresses, protocol and the L4 length.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u16 {
    let acc = u64::from(u32::from_be_bytes(src))
        + u64::from(u32::from_be_bytes(dst))
        + u64::from(protocol)
        + u64::from(l4_len);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses, upper-layer length and
/// next header.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, l4_len: u32) -> u16 {
    let acc = add_words(src, 0) + add_words(dst, 0) + u64::from(l4_len) + u64::from(next_header);
    fold(acc)
}

/// Checksum of an L4 segment over IPv4: pseudo-header plus `segment` (whose checksum field must
/// be zero for computing, or hold the checksum for verifying, see [`verify_l4_v4`]).
#[inline]
pub fn l4_checksum_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> u16 {
    let ph = u64::from(pseudo_header_v4(src, dst, protocol, segment.len() as u16));
    !fold(add_words(segment, ph))
}

/// Checksum of an L4 segment over IPv6 (TCP, UDP, ICMPv6).
#[inline]
pub fn l4_checksum_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, segment: &[u8]) -> u16 {
    let ph = u64::from(pseudo_header_v6(
        src,
        dst,
        next_header,
        segment.len() as u32,
    ));
    !fold(add_words(segment, ph))
}

/// True when the L4 segment's checksum (already in place) verifies against the IPv4 pseudo-header.
#[inline]
pub fn verify_l4_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, segment: &[u8]) -> bool {
    l4_checksum_v4(src, dst, protocol, segment) == 0
}

/// True when the L4 segment's checksum (already in place) verifies against the IPv6 pseudo-header.
#[inline]
pub fn verify_l4_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, segment: &[u8]) -> bool {
    l4_checksum_v6(src, dst, next_header, segment) == 0
}

/// RFC 1624 eqn. 3 for one 16-bit field: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub const fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = (!checksum) as u64 + (!old) as u64 + new as u64;
    !fold(acc)
}

/// RFC 1624 update for a 32-bit field (an IPv4 address), as two 16-bit words.
#[inline]
pub const fn update32(checksum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let acc = (!checksum) as u64
        + (!u16::from_be_bytes([old[0], old[1]])) as u64
        + (!u16::from_be_bytes([old[2], old[3]])) as u64
        + u16::from_be_bytes([new[0], new[1]]) as u64
        + u16::from_be_bytes([new[2], new[3]]) as u64;
    !fold(acc)
}

/// RFC 1624 update for a 128-bit field (an IPv6 address), as eight 16-bit words.
#[inline]
pub fn update128(checksum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut acc = u64::from(!checksum);
    for i in (0..16).step_by(2) {
        acc += u64::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u64::from(u16::from_be_bytes([new[i], new[i + 1]]));
    }
    !fold(acc)
}

/// Applies an incremental update to a UDP-over-IPv4 checksum field: 0 means "no checksum"
/// (RFC 768) and stays 0; a computed 0 is sent as `0xffff`.
///
/// ```
/// use wire::checksum::{udp_update, update16};
/// assert_eq!(udp_update(0, |c| update16(c, 1234, 80)), 0);
/// ```
#[inline]
pub fn udp_update(checksum: u16, update: impl FnOnce(u16) -> u16) -> u16 {
    if checksum == 0 {
        0
    } else {
        udp_nonzero(update(checksum))
    }
}

/// Maps a computed UDP checksum of 0 to `0xffff` (its ones'-complement twin), since 0 on the
/// wire means "none" over IPv4 and is invalid over IPv6.
#[inline]
pub const fn udp_nonzero(checksum: u16) -> u16 {
    if checksum == 0 {
        0xffff
    } else {
        checksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Textbook RFC 1071 reference: 16-bit words, u32 accumulator, fold at the end.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn real_ipv4_header_checksum() {
        // IPv4 header of a captured ICMP echo request 198.18.0.1 -> 198.18.0.2 (id 0xa6ef, DF).
        let mut header = [
            0x45, 0x00, 0x00, 0x2c, 0xa6, 0xef, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0xc6, 0x12,
            0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
        ];
        let c = checksum(&header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&header));
        header[8] = 0x3f; // TTL decrement without fixing the checksum
        assert!(!verify(&header));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn udp_zero_rules() {
        assert_eq!(udp_update(0, |c| update16(c, 1, 2)), 0);
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
        // 0x0001 + (0xfffe -> 0xffff): the computed value is 0 and must go out as 0xffff.
        assert_eq!(update16(0x0001, 0xfffe, 0xffff), 0x0000);
        assert_eq!(udp_update(0x0001, |c| update16(c, 0xfffe, 0xffff)), 0xffff);
    }

    proptest! {
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(sum(&data), reference_sum(&data));
        }

        #[test]
        fn combine_of_even_pieces(data in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..100) {
            let cut = (cut * 2).min(data.len() & !1);
            prop_assert_eq!(combine(&[sum(&data[..cut]), sum(&data[cut..])]), reference_sum(&data));
        }

        #[test]
        fn update16_equals_recompute(mut data in proptest::collection::vec(any::<u8>(), 4..120),
                                     pos in 0usize..60, new in any::<u16>()) {
            prop_assume!(data.iter().any(|&b| b != 0));
            data[0] = 0; data[1] = 0; // checksum field at offset 0
            let pos = 2 + (pos * 2) % (data.len() - 2 - data.len() % 2).max(2);
            prop_assume!(pos + 2 <= data.len());
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([data[pos], data[pos + 1]]);
            data[pos..pos + 2].copy_from_slice(&new.to_be_bytes());
            let incremental = update16(c, old, new);
            data[0] = 0; data[1] = 0;
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(incremental, checksum(&data));
        }
    }
}

/// NAT rewrites patched with RFC 1624 (through `crate::rewrite`) must equal a full
/// recompute, byte for byte, on random valid frames.
#[cfg(test)]
mod nat_tests {
    use crate::builder::fix_checksums;
    use crate::rewrite::{self, Side};
    use crate::{parse_frame, strategies, Family};
    use proptest::prelude::*;

    fn assert_matches_recompute(
        frame: &[u8],
        info: &crate::FrameInfo,
    ) -> Result<(), TestCaseError> {
        let mut recomputed = frame.to_vec();
        fix_checksums(&mut recomputed);
        prop_assert_eq!(frame, &recomputed[..]);
        prop_assert_eq!(&parse_frame(frame).unwrap(), info);
        prop_assert_eq!(crate::verify_l4_checksum(frame, info), Ok(()));
        prop_assert_eq!(crate::verify_ipv4_header(frame, info), Ok(()));
        Ok(())
    }

    fn side(src: bool) -> Side {
        if src {
            Side::Src
        } else {
            Side::Dst
        }
    }

    proptest! {
        #[test]
        fn port_rewrite(frame in prop_oneof![strategies::tcp_frame(), strategies::udp_frame()],
                        new_port in any::<u16>(), src in any::<bool>()) {
            let mut frame = frame;
            let mut info = parse_frame(&frame).unwrap();
            prop_assert!(rewrite::set_port(&mut frame, &mut info, side(src), new_port));
            assert_matches_recompute(&frame, &info)?;
        }

        #[test]
        fn ipv4_address_rewrite(frame in strategies::valid_frame(), new in any::<[u8; 4]>(), src in any::<bool>()) {
            let mut frame = frame;
            let mut info = parse_frame(&frame).unwrap();
            let applied = rewrite::set_ipv4_addr(&mut frame, &mut info, side(src), new);
            prop_assert_eq!(applied, info.family == Family::Ipv4);
            assert_matches_recompute(&frame, &info)?;
        }

        #[test]
        fn ipv6_address_rewrite(frame in strategies::valid_frame(), new in any::<[u8; 16]>(), src in any::<bool>()) {
            let mut frame = frame;
            let mut info = parse_frame(&frame).unwrap();
            let applied = rewrite::set_ipv6_addr(&mut frame, &mut info, side(src), new);
            prop_assert_eq!(applied, info.family == Family::Ipv6);
            assert_matches_recompute(&frame, &info)?;
        }

        #[test]
        fn icmp_ident_rewrite(frame in strategies::echo_frame(), new_id in any::<u16>()) {
            let mut frame = frame;
            let mut info = parse_frame(&frame).unwrap();
            prop_assert!(rewrite::set_icmp_ident(&mut frame, &mut info, new_id));
            assert_matches_recompute(&frame, &info)?;
        }

        #[test]
        fn full_nat_then_ttl(frame in strategies::valid_frame(), a4 in any::<[u8; 4]>(), a6 in any::<[u8; 16]>(),
                             port in any::<u16>(), id in any::<u16>()) {
            let mut frame = frame;
            let mut info = parse_frame(&frame).unwrap();
            rewrite::set_ipv4_addr(&mut frame, &mut info, Side::Src, a4);
            rewrite::set_ipv6_addr(&mut frame, &mut info, Side::Dst, a6);
            rewrite::set_port(&mut frame, &mut info, Side::Src, port);
            rewrite::set_icmp_ident(&mut frame, &mut info, id);
            rewrite::decrement_ttl(&mut frame, &mut info);
            assert_matches_recompute(&frame, &info)?;
        }
    }
}
