//! ARP for Ethernet/IPv4 (RFC 826), the only flavour a bump in the wire has to recognise.

use crate::ethernet::MacAddr;
use crate::Malformed;

/// ARP operation codes.
pub mod operation {
    /// Who-has.
    pub const REQUEST: u16 = 1;
    /// Is-at.
    pub const REPLY: u16 = 2;
}

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Zero-copy view of an Ethernet/IPv4 ARP packet (starting after the Ethernet header).
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer, checking its length and that it is Ethernet (1) / IPv4 (0x0800) with
    /// 6- and 4-byte addresses.
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN
            || b[field::HTYPE] != [0, 1]
            || b[field::PTYPE] != [0x08, 0x00]
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Malformed::TruncatedArp);
        }
        Ok(ArpPacket { buffer })
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE.start)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE.start)
    }

    /// Operation, see [`operation`].
    pub fn operation(&self) -> u16 {
        self.u16_at(field::OPER.start)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::SHA].try_into().unwrap())
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::SPA].try_into().unwrap()
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(self.buffer.as_ref()[field::THA].try_into().unwrap())
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::TPA].try_into().unwrap()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 preamble (types and address lengths).
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&[0, 1]);
        b[field::PTYPE].copy_from_slice(&[0x08, 0x00]);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, op: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&op.to_be_bytes());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, ip: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip);
    }

    /// Sets the target hardware address.
    pub fn set_target_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, ip: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captured::{ARP_REPLY, ARP_REQUEST};

    #[test]
    fn captured_request() {
        let arp = ArpPacket::new_checked(&ARP_REQUEST[14..]).unwrap();
        assert_eq!(arp.hardware_type(), 1);
        assert_eq!(arp.protocol_type(), 0x0800);
        assert_eq!(arp.operation(), operation::REQUEST);
        assert_eq!(arp.sender_mac(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp.sender_ip(), [198, 18, 0, 1]);
        assert_eq!(arp.target_mac(), MacAddr([0; 6]));
        assert_eq!(arp.target_ip(), [198, 18, 0, 2]);
    }

    #[test]
    fn captured_reply() {
        let arp = ArpPacket::new_checked(&ARP_REPLY[14..]).unwrap();
        assert_eq!(arp.operation(), operation::REPLY);
        assert_eq!(arp.sender_mac(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(arp.sender_ip(), [198, 18, 0, 2]);
        assert_eq!(arp.target_mac(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp.target_ip(), [198, 18, 0, 1]);
    }

    #[test]
    fn rejects_short_and_foreign() {
        assert_eq!(
            ArpPacket::new_checked(&ARP_REPLY[14..41]).unwrap_err(),
            Malformed::TruncatedArp
        );
        let mut other = ARP_REPLY;
        other[14 + 5] = 16; // protocol address length 16
        assert!(ArpPacket::new_checked(&other[14..]).is_err());
    }

    #[test]
    fn setters_rebuild_reply() {
        let mut buf = [0u8; PACKET_LEN];
        let mut arp = ArpPacket::new_unchecked(&mut buf[..]);
        arp.set_ethernet_ipv4();
        arp.set_operation(operation::REPLY);
        arp.set_sender_mac(MacAddr([2, 0, 0, 0, 0, 2]));
        arp.set_sender_ip([198, 18, 0, 2]);
        arp.set_target_mac(MacAddr([2, 0, 0, 0, 0, 1]));
        arp.set_target_ip([198, 18, 0, 1]);
        assert_eq!(&buf[..], &ARP_REPLY[14..]);
    }
}
