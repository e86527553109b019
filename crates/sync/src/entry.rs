//! A conntrack entry as the sync protocol carries it: the original tuple, status, TCP state,
//! timeout, mark, zone and the NAT targets. The reply tuple does not travel; [`Entry::reply`]
//! rebuilds it from the original tuple and the NAT targets, as the kernel does on commit.
//!
//! Byte order, as 1.4.7 puts it on the wire from x86 (`src/build.c`):
//! - addresses (tuple and NAT targets) and the tuple's ports: network order, copied as is;
//! - status, timeout, mark, zone: `htonl`/`htons` of host values, so network order;
//! - the NAT ports (`NTA_SPAT_PORT`, `NTA_DPAT_PORT`) and the ICMP id (`NTA_ICMP_ID`):
//!   libnetfilter_conntrack keeps them in network order and `ct_build_u16` applies `htons`
//!   once more, so on a little-endian sender they travel **little-endian**. The receiving
//!   1.4.7 undoes it with `ntohs`, so a peer must send them the same way.

use crate::wire::{attr, kind, AttrWriter, Error, Message, NoRoom, Writer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol numbers the tuple layout depends on.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const DCCP: u8 = 33;
    pub const SCTP: u8 = 132;
    pub const ICMPV6: u8 = 58;
    pub const UDPLITE: u8 = 136;
}

/// The layer-4 part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// TCP, UDP, SCTP, DCCP, UDP-Lite.
    Ports { sport: u16, dport: u16 },
    /// ICMP and ICMPv6: type, code and id of the original direction.
    Icmp { kind: u8, code: u8, id: u16 },
    /// Any other protocol: addresses only.
    None,
}

/// A connection's tuple in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4: L4,
}

/// The identity of an entry in a cache: its original tuple and zone, as conntrackd hashes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub orig: Tuple,
    pub zone: u16,
}

/// What the protocol knows of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub orig: Tuple,
    /// `IPS_*` status bits.
    pub status: u32,
    /// The TCP state as the kernel numbers it (`TCP_CONNTRACK_*`), TCP only.
    pub tcp_state: Option<u8>,
    /// Seconds left when the message was built.
    pub timeout: Option<u32>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    /// Source NAT: the address the reply is sent to (the reply tuple's destination).
    pub snat: Option<IpAddr>,
    /// Destination NAT: the address the reply comes from (the reply tuple's source).
    pub dnat: Option<IpAddr>,
    /// Source port NAT: the reply tuple's destination port.
    pub spat: Option<u16>,
    /// Destination port NAT: the reply tuple's source port.
    pub dpat: Option<u16>,
}

/// `IPS_*` status bits used here.
pub mod status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    pub const DST_NAT_DONE: u32 = 1 << 8;
    pub const OFFLOAD: u32 = 1 << 14;
    pub const HW_OFFLOAD: u32 = 1 << 15;
}

/// TCP state names as `conntrack -L` prints them, indexed by `TCP_CONNTRACK_*`.
pub const TCP_STATES: [&str; 12] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
    "MAX",
    "IGNORE",
];

fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        proto::TCP | proto::UDP | proto::DCCP | proto::SCTP | proto::UDPLITE
    )
}

fn is_icmp(proto: u8) -> bool {
    matches!(proto, proto::ICMP | proto::ICMPV6)
}

impl Tuple {
    /// The tuple of the other direction, before NAT.
    pub fn inverse(&self) -> Tuple {
        let l4 = match self.l4 {
            L4::Ports { sport, dport } => L4::Ports {
                sport: dport,
                dport: sport,
            },
            L4::Icmp { kind, code, id } => L4::Icmp {
                kind: icmp_reply_type(self.proto, kind).unwrap_or(kind),
                code,
                id,
            },
            L4::None => L4::None,
        };
        Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            l4,
        }
    }
}

/// The reply type the kernel's ICMP trackers expect for a query type.
fn icmp_reply_type(proto: u8, kind: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if proto == proto::ICMP {
        &[
            (8, 0),
            (13, 14),
            (15, 16),
            (17, 18),
            (0, 8),
            (14, 13),
            (16, 15),
            (18, 17),
        ]
    } else {
        &[(128, 129), (129, 128), (130, 131), (131, 130)]
    };
    pairs.iter().find(|p| p.0 == kind).map(|p| p.1)
}

impl Entry {
    /// An entry with only a tuple; the other fields unset.
    pub fn new(orig: Tuple) -> Entry {
        Entry {
            orig,
            status: 0,
            tcp_state: None,
            timeout: None,
            mark: None,
            zone: None,
            snat: None,
            dnat: None,
            spat: None,
            dpat: None,
        }
    }

    pub fn key(&self) -> Key {
        Key {
            orig: self.orig,
            zone: self.zone.unwrap_or(0),
        }
    }

    /// The reply tuple: the inverse of the original one with the NAT targets applied, the
    /// way `nf_nat` sets it up when the entry is committed.
    pub fn reply(&self) -> Tuple {
        let mut r = self.orig.inverse();
        if let Some(a) = self.snat {
            r.dst = a;
        }
        if let Some(a) = self.dnat {
            r.src = a;
        }
        if let L4::Ports { sport, dport } = &mut r.l4 {
            if let Some(p) = self.spat {
                *dport = p;
            }
            if let Some(p) = self.dpat {
                *sport = p;
            }
        }
        r
    }

    /// Parses a state message's attributes (1.4.7's `msg2ct`); attributes this engine has
    /// no use for (master tuple, sequence adjustment, SCTP/DCCP state, helper, labels,
    /// synproxy, window scale) are checked and skipped.
    pub fn parse<T: AsRef<[u8]>>(msg: &Message<T>) -> Result<Entry, Error> {
        if msg.kind() > kind::CT_DEL {
            return Err(Error::Expectation);
        }
        let mut addrs: Option<(IpAddr, IpAddr)> = None;
        let mut proto: Option<u8> = None;
        let mut ports: Option<(u16, u16)> = None;
        let (mut icmp_type, mut icmp_code, mut icmp_id) = (None, None, None);
        let mut e = Entry::new(Tuple {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            proto: 0,
            l4: L4::None,
        });
        for a in msg.attrs() {
            let a = a?;
            let d = a.data;
            match a.kind {
                attr::IPV4 => {
                    addrs = Some((v4(&d[0..4]), v4(&d[4..8])));
                }
                attr::IPV6 => {
                    addrs = Some((v6(&d[0..16]), v6(&d[16..32])));
                }
                attr::L4PROTO => proto = Some(d[0]),
                attr::PORT => ports = Some((be16(&d[0..2]), be16(&d[2..4]))),
                attr::TCP_STATE => e.tcp_state = Some(d[0]),
                attr::STATUS => e.status = be32(d),
                attr::TIMEOUT => e.timeout = Some(be32(d)),
                attr::MARK => e.mark = Some(be32(d)),
                attr::ZONE => e.zone = Some(be16(d)),
                attr::SNAT_IPV4 => e.snat = Some(v4(d)),
                attr::DNAT_IPV4 => e.dnat = Some(v4(d)),
                attr::SNAT_IPV6 => e.snat = Some(v6(d)),
                attr::DNAT_IPV6 => e.dnat = Some(v6(d)),
                attr::SPAT_PORT => e.spat = Some(le16(d)),
                attr::DPAT_PORT => e.dpat = Some(le16(d)),
                attr::ICMP_TYPE => icmp_type = Some(d[0]),
                attr::ICMP_CODE => icmp_code = Some(d[0]),
                attr::ICMP_ID => icmp_id = Some(le16(d)),
                _ => {}
            }
        }
        let ((src, dst), proto) = addrs.zip(proto).ok_or(Error::MissingTuple)?;
        let l4 = if has_ports(proto) {
            let (sport, dport) = ports.ok_or(Error::MissingTuple)?;
            L4::Ports { sport, dport }
        } else if is_icmp(proto) {
            // 1.4.7 leaves the ICMP attributes out when the tracker did not fill them in
            match (icmp_type, icmp_code, icmp_id) {
                (Some(kind), Some(code), Some(id)) => L4::Icmp { kind, code, id },
                _ => return Err(Error::MissingTuple),
            }
        } else {
            L4::None
        };
        for nat in [e.snat, e.dnat].into_iter().flatten() {
            if nat.is_ipv4() != src.is_ipv4() {
                return Err(Error::FamilyMismatch);
            }
        }
        e.orig = Tuple {
            src,
            dst,
            proto,
            l4,
        };
        Ok(e)
    }

    /// Appends this entry as a state message of type `kind` (`CT_NEW`, `CT_UPD`, `CT_DEL`),
    /// with the attributes in the order 1.4.7's `ct2msg` writes them and none it would not
    /// know.
    pub fn emit(&self, w: &mut Writer<'_>, kind: u8, flags: u8, seq: u32) -> Result<(), NoRoom> {
        w.state(kind, flags, seq, |a| self.emit_attrs(a))
    }

    fn emit_attrs(&self, a: &mut AttrWriter<'_>) -> Result<(), NoRoom> {
        let o = &self.orig;
        match (o.src, o.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&s.octets());
                b[4..].copy_from_slice(&d.octets());
                a.put(attr::IPV4, &b)?;
            }
            (s, d) => {
                let mut b = [0u8; 32];
                b[..16].copy_from_slice(&v6_octets(s));
                b[16..].copy_from_slice(&v6_octets(d));
                a.put(attr::IPV6, &b)?;
            }
        }
        a.put(attr::STATUS, &self.status.to_be_bytes())?;
        a.put(attr::L4PROTO, &[o.proto])?;
        match o.l4 {
            L4::Ports { sport, dport } => {
                let mut b = [0u8; 4];
                b[..2].copy_from_slice(&sport.to_be_bytes());
                b[2..].copy_from_slice(&dport.to_be_bytes());
                a.put(attr::PORT, &b)?;
                if o.proto == proto::TCP {
                    if let Some(s) = self.tcp_state {
                        a.put(attr::TCP_STATE, &[s])?;
                    }
                }
            }
            L4::Icmp { kind, code, id } => {
                a.put(attr::ICMP_TYPE, &[kind])?;
                a.put(attr::ICMP_CODE, &[code])?;
                a.put(attr::ICMP_ID, &id.to_le_bytes())?;
            }
            L4::None => {}
        }
        if let Some(t) = self.timeout {
            a.put(attr::TIMEOUT, &t.to_be_bytes())?;
        }
        if let Some(m) = self.mark {
            a.put(attr::MARK, &m.to_be_bytes())?;
        }
        match self.snat {
            Some(IpAddr::V4(s)) => a.put(attr::SNAT_IPV4, &s.octets())?,
            Some(IpAddr::V6(s)) => a.put(attr::SNAT_IPV6, &s.octets())?,
            None => {}
        }
        match self.dnat {
            Some(IpAddr::V4(d)) => a.put(attr::DNAT_IPV4, &d.octets())?,
            Some(IpAddr::V6(d)) => a.put(attr::DNAT_IPV6, &d.octets())?,
            None => {}
        }
        if matches!(o.l4, L4::Ports { .. }) {
            if let Some(p) = self.spat {
                a.put(attr::SPAT_PORT, &p.to_le_bytes())?;
            }
            if let Some(p) = self.dpat {
                a.put(attr::DPAT_PORT, &p.to_le_bytes())?;
            }
        }
        if let Some(z) = self.zone {
            a.put(attr::ZONE, &z.to_be_bytes())?;
        }
        Ok(())
    }
}

fn v4(b: &[u8]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
}

fn v6(b: &[u8]) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// A u16 that 1.4.7 byte-swaps twice on an x86 sender: little-endian on the wire.
fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The protocol name `conntrack -L` prints.
pub fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        proto::SCTP => "sctp",
        proto::DCCP => "dccp",
        proto::UDPLITE => "udplite",
        47 => "gre",
        _ => "unknown",
    }
}

impl fmt::Display for Tuple {
    /// `src=.. dst=.. sport=.. dport=..` (or `type= code= id=`), as `conntrack -L`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src={} dst={}", self.src, self.dst)?;
        match self.l4 {
            L4::Ports { sport, dport } => write!(f, " sport={sport} dport={dport}"),
            L4::Icmp { kind, code, id } => write!(f, " type={kind} code={code} id={id}"),
            L4::None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages;

    /// A state message from conntrackd 1.4.7 (x86-64), captured on the sync link: the UDP
    /// entry 198.18.0.3:5000 -> 198.18.1.2:53 with `--src-nat 198.18.9.9:1234`.
    const SNAT_UDP: [u8; 92] = [
        0x10, 0x20, 0x00, 0x5c, 0x6b, 0x11, 0xaf, 0x94, 0x00, 0x0c, 0x00, 0x00, 0xc6, 0x12, 0x00,
        0x03, 0xc6, 0x12, 0x01, 0x02, 0x00, 0x08, 0x00, 0x05, 0x00, 0x00, 0x01, 0x98, 0x00, 0x05,
        0x00, 0x02, 0x11, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x13, 0x88, 0x00, 0x35, 0x00,
        0x08, 0x00, 0x06, 0x00, 0x00, 0x00, 0x1e, 0x00, 0x08, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x0c, 0xc6, 0x12, 0x09, 0x09, 0x00, 0x06, 0x00, 0x0e, 0xd2, 0x04, 0x00,
        0x00, 0x00, 0x10, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ];

    fn v4a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn captured_snat_entry_parses_with_the_swapped_port() {
        let m = Message::new_checked(&SNAT_UDP[..]).unwrap();
        let e = Entry::parse(&m).unwrap();
        assert_eq!(
            e.orig,
            Tuple {
                src: v4a("198.18.0.3"),
                dst: v4a("198.18.1.2"),
                proto: 17,
                l4: L4::Ports {
                    sport: 5000,
                    dport: 53
                }
            }
        );
        assert_eq!(e.snat, Some(v4a("198.18.9.9")));
        assert_eq!(e.spat, Some(0x04d2));
        assert_eq!((e.timeout, e.mark, e.status), (Some(30), Some(0), 0x198));
        assert_eq!(
            e.reply().to_string(),
            "src=198.18.1.2 dst=198.18.9.9 sport=53 dport=1234"
        );
    }

    #[test]
    fn emit_then_parse_is_identity_and_ports_travel_swapped() {
        let mut e = Entry::new(Tuple {
            src: v4a("198.18.0.1"),
            dst: v4a("198.18.1.2"),
            proto: proto::ICMP,
            l4: L4::Icmp {
                kind: 8,
                code: 0,
                id: 0x1234,
            },
        });
        e.timeout = Some(30);
        e.mark = Some(7);
        let mut b = [0u8; 256];
        let mut w = Writer::new(&mut b);
        e.emit(&mut w, kind::CT_NEW, 0, 9).unwrap();
        let n = w.len();
        let m = messages(&b[..n]).next().unwrap().unwrap();
        let id = m
            .attrs()
            .map(Result::unwrap)
            .find(|a| a.kind == attr::ICMP_ID)
            .unwrap();
        assert_eq!(id.data, &[0x34, 0x12]);
        assert_eq!(Entry::parse(&m).unwrap(), e);
    }

    #[test]
    fn reply_applies_dnat_and_dpat() {
        let mut e = Entry::new(Tuple {
            src: v4a("198.18.0.1"),
            dst: v4a("198.18.1.2"),
            proto: proto::TCP,
            l4: L4::Ports {
                sport: 40000,
                dport: 80,
            },
        });
        e.dnat = Some(v4a("198.18.1.9"));
        e.dpat = Some(8080);
        assert_eq!(
            e.reply().to_string(),
            "src=198.18.1.9 dst=198.18.0.1 sport=8080 dport=40000"
        );
    }

    #[test]
    fn a_message_without_a_tuple_is_refused() {
        let mut b = [0u8; 64];
        let mut w = Writer::new(&mut b);
        w.state(kind::CT_NEW, 0, 1, |a| a.put(attr::L4PROTO, &[6]))
            .unwrap();
        let n = w.len();
        let m = Message::new_checked(&b[..n]).unwrap();
        assert_eq!(Entry::parse(&m), Err(Error::MissingTuple));
    }
}
