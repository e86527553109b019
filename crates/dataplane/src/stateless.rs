//! The stateless matches that are not classifier dimensions: `-m addrtype`, `-m pkttype`,
//! `-m tos`, `-m dscp`, `-m ecn`, `-m physdev`, and the host-only matches (`-m owner`,
//! `-m rpfilter`, `-m cgroup`, `-m socket`), each as the kernel evaluates it for a packet
//! bridged between fwd's two ports (a Linux bridge with `br_netfilter`):
//!
//! - addrtype: the kernel asks its routing tables. On a bump in the wire the host's addresses
//!   are the ports' configured ones (`[ports.x] address`), so LOCAL is one of those (or
//!   127.0.0.0/8, `::1`); for IPv4 `inet_addr_type` gives BROADCAST for 0.0.0.0/8 and
//!   255.255.255.255 (fwd knows no port prefix, so no subnet-directed broadcast), MULTICAST
//!   for 224.0.0.0/4, UNICAST for everything else. IPv6 follows `match_type6`: every type
//!   given must hold (MULTICAST: ff00::/8, UNICAST: not multicast nor `::`, UNSPEC: `::`), and
//!   LOCAL / ANYCAST / UNREACHABLE come from a route lookup, of which fwd has LOCAL only (a
//!   bridge has no routes of its own to forward with).
//!   `--limit-iface-in/out` narrows LOCAL to that port's address.
//! - pkttype: br_netfilter turns PACKET_OTHERHOST into PACKET_HOST around each IP hook, so a
//!   bridged unicast frame is `unicast`; broadcast / multicast come from the destination MAC.
//! - physdev: the input port is known in every hook, the output port only from FORWARD on
//!   (`br_nf_forward_ip` sets it), so in PREROUTING `--physdev-is-out` and
//!   `--physdev-is-bridged` do not hold and `--physdev-out` is skipped, as `physdev_mt` does.
//! - host-only matches: a forwarded packet has no local socket, is not routed by this host
//!   and has no cgroup, so each gives what it gives in the kernel for such a packet.

use rules::{addr_type, Match, PktType};
use wire::{Family, FrameInfo};

use crate::compiled::{HookPoint, PortInfo};

/// One compiled stateless check (see the module docs for the semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatelessCheck {
    Addrtype {
        src: Option<(u16, bool)>,
        dst: Option<(u16, bool)>,
        /// LOCAL only for this port's address (`--limit-iface-in`: the input port, `-out`:
        /// the output one).
        limit: Option<Limit>,
        /// The ports' IPv4 and IPv6 addresses, by port index.
        local4: [Option<u32>; 2],
        local6: [Option<u128>; 2],
    },
    Pkttype {
        kind: PktType,
        negated: bool,
    },
    /// `(tos & mask) == value`, IPv4 TOS or IPv6 traffic class.
    Tos {
        value: u8,
        mask: u8,
        negated: bool,
    },
    Dscp {
        value: u8,
        negated: bool,
    },
    Ecn {
        ece: Option<bool>,
        cwr: Option<bool>,
        ect: Option<(u8, bool)>,
    },
    Physdev {
        /// Port bit sets (bit = port index) the name matches, with negation.
        physdev_in: Option<(u8, bool)>,
        physdev_out: Option<(u8, bool)>,
        is_in: Option<bool>,
        is_out: Option<bool>,
        is_bridged: Option<bool>,
    },
    /// A host-only match: its constant result for a forwarded packet.
    Constant(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    In,
    Out,
}

/// The traffic class byte: IPv4 TOS, IPv6 traffic class (split over the first two bytes).
fn ds_field(frame: &[u8], info: &FrameInfo) -> u8 {
    let l3 = usize::from(info.l3_offset);
    match info.family {
        Family::Ipv6 => (frame[l3] << 4) | (frame[l3 + 1] >> 4),
        _ => frame[l3 + 1],
    }
}

fn v4_type(a: u32, dev: Option<usize>, local: &[Option<u32>; 2]) -> u16 {
    if a >> 24 == 0 || a == u32::MAX {
        return addr_type::BROADCAST;
    }
    if a >> 28 == 0xe {
        return addr_type::MULTICAST;
    }
    let is_local = a >> 24 == 127
        || match dev {
            Some(d) => local[d] == Some(a),
            None => local.contains(&Some(a)),
        };
    if is_local {
        addr_type::LOCAL
    } else {
        addr_type::UNICAST
    }
}

fn v6_match(a: u128, mask: u16, dev: Option<usize>, local: &[Option<u128>; 2]) -> bool {
    let multicast = a >> 120 == 0xff;
    if mask & addr_type::MULTICAST != 0 && !multicast {
        return false;
    }
    if mask & addr_type::UNICAST != 0 && (multicast || a == 0) {
        return false;
    }
    if mask & addr_type::UNSPEC != 0 && a != 0 {
        return false;
    }
    let lookup = addr_type::LOCAL | addr_type::ANYCAST | addr_type::UNREACHABLE;
    if mask & lookup != 0 {
        let is_local = a == 1
            || match dev {
                Some(d) => local[d] == Some(a),
                None => local.contains(&Some(a)),
            };
        return is_local && mask & addr_type::LOCAL != 0;
    }
    true
}

impl StatelessCheck {
    /// Whether the check holds for the packet `frame` (parsed as `info`), received on port
    /// `iif` and leaving through `oif`, at `hook`.
    pub fn ok(&self, frame: &[u8], info: &FrameInfo, iif: u8, oif: u8, hook: HookPoint) -> bool {
        match self {
            StatelessCheck::Addrtype {
                src,
                dst,
                limit,
                local4,
                local6,
            } => {
                let dev = match limit {
                    Some(Limit::In) => Some(usize::from(iif & 1)),
                    Some(Limit::Out) => Some(usize::from(oif & 1)),
                    None => None,
                };
                let one = |addr: &[u8; 16], mask: u16| match info.family {
                    Family::Ipv6 => v6_match(u128::from_be_bytes(*addr), mask, dev, local6),
                    _ => {
                        let a = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
                        mask & v4_type(a, dev, local4) != 0
                    }
                };
                src.is_none_or(|(m, n)| one(&info.src, m) != n)
                    && dst.is_none_or(|(m, n)| one(&info.dst, m) != n)
            }
            StatelessCheck::Pkttype { kind, negated } => {
                let d = &frame[0..6];
                let t = if d == [0xff; 6] {
                    PktType::Broadcast
                } else if d[0] & 1 != 0 {
                    PktType::Multicast
                } else {
                    PktType::Unicast
                };
                (t == *kind) != *negated
            }
            StatelessCheck::Tos {
                value,
                mask,
                negated,
            } => ((ds_field(frame, info) & mask) == *value) != *negated,
            StatelessCheck::Dscp { value, negated } => {
                ((ds_field(frame, info) >> 2) == *value) != *negated
            }
            StatelessCheck::Ecn { ece, cwr, ect } => {
                if let Some((v, n)) = ect {
                    if ((ds_field(frame, info) & 3) == *v) == *n {
                        return false;
                    }
                }
                if ece.is_some() || cwr.is_some() {
                    // The rule has `-p tcp` (checked on load); a later fragment has no header.
                    if info.is_later_fragment() || !info.has_l4_header() {
                        return false;
                    }
                    let f = info.tcp_flags.0;
                    if ece.is_some_and(|n| (f & 0x40 != 0) == n) {
                        return false;
                    }
                    if cwr.is_some_and(|n| (f & 0x80 != 0) == n) {
                        return false;
                    }
                }
                true
            }
            StatelessCheck::Physdev {
                physdev_in,
                physdev_out,
                is_in,
                is_out,
                is_bridged,
            } => {
                // The output bridge port is chosen in the bridge's forwarding step, after
                // PREROUTING.
                let out_known = hook.table_hook().1 != rules::Hook::Prerouting;
                if is_bridged.is_some_and(|n| out_known == n) {
                    return false;
                }
                if is_in.is_some_and(|n| n) {
                    return false;
                }
                if is_out.is_some_and(|n| out_known == n) {
                    return false;
                }
                if let Some((bits, n)) = physdev_in {
                    if ((bits >> (iif & 1)) & 1 != 0) == *n {
                        return false;
                    }
                }
                match physdev_out {
                    Some((bits, n)) if out_known => ((bits >> (oif & 1)) & 1 != 0) != *n,
                    _ => true,
                }
            }
            StatelessCheck::Constant(v) => *v,
        }
    }
}

/// The port bits an interface name of `-m physdev` matches (`eth+`: a prefix).
fn port_bits(i: &rules::IfaceMatch, ports: &[PortInfo; 2]) -> u8 {
    let mut bits = 0;
    for (n, p) in ports.iter().enumerate() {
        let hit = if i.wildcard {
            p.name.starts_with(&i.name)
        } else {
            p.name == i.name
        };
        if hit {
            bits |= 1 << n;
        }
    }
    bits
}

/// Compiles one of this module's matches; `None` if `m` is not one of them.
pub(crate) fn lower(m: &Match, ports: &[PortInfo; 2]) -> Option<StatelessCheck> {
    Some(match m {
        Match::Addrtype(t) => StatelessCheck::Addrtype {
            src: t.src,
            dst: t.dst,
            limit: if t.limit_in {
                Some(Limit::In)
            } else if t.limit_out {
                Some(Limit::Out)
            } else {
                None
            },
            local4: [0, 1].map(|i| ports[i].ipv4.map(u32::from)),
            local6: [0, 1].map(|i| ports[i].ipv6.map(u128::from)),
        },
        Match::Pkttype { kind, negated } => StatelessCheck::Pkttype {
            kind: *kind,
            negated: *negated,
        },
        Match::Tos {
            value,
            mask,
            negated,
        } => StatelessCheck::Tos {
            value: *value,
            mask: *mask,
            negated: *negated,
        },
        Match::Dscp { value, negated } => StatelessCheck::Dscp {
            value: *value,
            negated: *negated,
        },
        Match::Ecn(e) => StatelessCheck::Ecn {
            ece: e.ece,
            cwr: e.cwr,
            ect: e.ect,
        },
        Match::Physdev(p) => StatelessCheck::Physdev {
            physdev_in: p
                .physdev_in
                .as_ref()
                .map(|i| (port_bits(i, ports), i.negated)),
            physdev_out: p
                .physdev_out
                .as_ref()
                .map(|i| (port_bits(i, ports), i.negated)),
            is_in: p.is_in,
            is_out: p.is_out,
            is_bridged: p.is_bridged,
        },
        Match::HostOnly(h) => StatelessCheck::Constant(h.forwarded),
        _ => return None,
    })
}
