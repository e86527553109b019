//! Ethernet II header and 802.1Q / 802.1ad VLAN tags.

use crate::Malformed;

/// Ethertype values fwd cares about (host order).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// The legacy (pre-802.1ad) QinQ outer tag some switches still send.
    pub const QINQ_LEGACY: u16 = 0x9100;
    /// PPPoE discovery stage (PADI, PADO, PADR, PADS, PADT).
    pub const PPPOE_DISCOVERY: u16 = 0x8863;
    /// PPPoE session stage: a PPP frame (IPv4, IPv6 or PPP control) behind a 6-byte header.
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// IEEE 802.1X port access control (EAPOL).
    pub const EAPOL: u16 = 0x888e;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// Link Layer Discovery Protocol.
    pub const LLDP: u16 = 0x88cc;
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group (multicast or broadcast) addresses: the I/G bit of the first octet.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// The multicast MAC for an IPv6 multicast address (RFC 2464: 33:33 + low 32 bits).
    pub const fn ipv6_multicast(addr: &[u8; 16]) -> MacAddr {
        MacAddr([0x33, 0x33, addr[12], addr[13], addr[14], addr[15]])
    }
}

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header without tags.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Zero-copy view of an Ethernet II frame (the 14-byte header; tags are part of the payload).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length; accessors may panic on short buffers.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer, checking that it holds a complete Ethernet header.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Malformed::TruncatedEthernet);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::DST].try_into().unwrap())
    }

    /// Source MAC.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::SRC].try_into().unwrap())
    }

    /// The ethertype (or TPID when a VLAN tag follows; a length when below 0x0600).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]])
    }

    /// Bytes after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Sets the ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Mutable bytes after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

mod tag_field {
    use core::ops::Range;
    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
}

/// Length of one VLAN tag as it follows a TPID: TCI plus the inner ethertype.
pub const VLAN_TAG_LEN: usize = 4;

/// Zero-copy view of a VLAN tag body: the 4 bytes after a 0x8100/0x88a8 TPID
/// (TCI, then the encapsulated ethertype).
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps a buffer, checking that it holds a complete tag.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(Malformed::TruncatedVlan);
        }
        Ok(VlanTag { buffer })
    }

    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    #[inline]
    pub fn tci(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[tag_field::TCI.start], b[tag_field::TCI.start + 1]])
    }

    /// Priority code point.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier.
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The encapsulated ethertype (another TPID for QinQ).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([
            b[tag_field::ETHERTYPE.start],
            b[tag_field::ETHERTYPE.start + 1],
        ])
    }

    /// Bytes after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VLAN_TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the whole TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[tag_field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the VLAN id, keeping PCP and DEI.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the encapsulated ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[tag_field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }
}

/// True for the TPIDs that introduce a VLAN tag (802.1Q, 802.1ad and the legacy 0x9100).
#[inline]
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    )
}

/// True for the IEEE 802.1D reserved link-local group addresses 01:80:c2:00:00:00 to
/// 01:80:c2:00:00:0f (STP, pause, LACP, 802.1X/EAPOL, LLDP, ...), which a conforming bridge
/// never forwards.
#[inline]
pub fn is_link_local_group(dst: &[u8]) -> bool {
    dst.len() >= 6 && dst[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && dst[5] & 0xf0 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured ARP request 02:00:00:00:00:01 -> broadcast (header and start of the ARP body).
    const ARP_REQUEST_HEAD: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01,
    ];

    #[test]
    fn parses_captured_header() {
        let frame = EthernetFrame::new_checked(&ARP_REQUEST_HEAD[..]).unwrap();
        assert_eq!(frame.dst(), MacAddr::BROADCAST);
        assert!(frame.dst().is_multicast());
        assert_eq!(frame.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert!(!frame.src().is_multicast());
        assert_eq!(frame.ethertype(), ethertype::ARP);
        assert_eq!(frame.payload(), &[0x00, 0x01]);
        assert_eq!(frame.src().to_string(), "02:00:00:00:00:01");
    }

    #[test]
    fn rejects_short() {
        assert_eq!(
            EthernetFrame::new_checked(&ARP_REQUEST_HEAD[..13]).unwrap_err(),
            Malformed::TruncatedEthernet
        );
        assert_eq!(
            VlanTag::new_checked(&[0u8; 3][..]).unwrap_err(),
            Malformed::TruncatedVlan
        );
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = ARP_REQUEST_HEAD;
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        frame.set_dst(MacAddr([2, 0, 0, 0, 0, 2]));
        frame.set_src(MacAddr([2, 0, 0, 0, 0, 3]));
        frame.set_ethertype(ethertype::IPV6);
        assert_eq!(frame.dst(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(frame.src(), MacAddr([2, 0, 0, 0, 0, 3]));
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
    }

    #[test]
    fn vlan_tag_fields() {
        // PCP 5, DEI 1, VID 100, inner IPv4.
        let mut tag = [0xb0, 0x64, 0x08, 0x00, 0x45];
        let view = VlanTag::new_checked(&tag[..]).unwrap();
        assert_eq!(view.pcp(), 5);
        assert!(view.dei());
        assert_eq!(view.vid(), 100);
        assert_eq!(view.ethertype(), ethertype::IPV4);
        assert_eq!(view.payload(), &[0x45]);
        let mut view = VlanTag::new_unchecked(&mut tag[..]);
        view.set_vid(4094);
        assert_eq!(view.vid(), 4094);
        assert_eq!(view.pcp(), 5);
        assert!(is_vlan_tpid(0x88a8) && is_vlan_tpid(0x8100) && is_vlan_tpid(0x9100));
        assert!(!is_vlan_tpid(0x0800) && !is_vlan_tpid(0x8864));
    }

    #[test]
    fn link_local_group_addresses() {
        for last in 0..=0x0f {
            assert!(
                is_link_local_group(&[0x01, 0x80, 0xc2, 0, 0, last]),
                "{last}"
            );
        }
        assert!(!is_link_local_group(&[0x01, 0x80, 0xc2, 0, 0, 0x10]));
        assert!(!is_link_local_group(&[0x01, 0x80, 0xc2, 0, 0, 0x21])); // GVRP-range, not reserved
        assert!(!is_link_local_group(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(!is_link_local_group(&[0x01, 0x80, 0xc2, 0, 0]));
    }

    #[test]
    fn ipv6_multicast_mac() {
        let ns_dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        assert_eq!(
            MacAddr::ipv6_multicast(&ns_dst),
            MacAddr([0x33, 0x33, 0xff, 0, 0, 2])
        );
    }
}
