//! The NAT targets (`libxt_NAT.c` registers all four, for both families): `-j SNAT
//! --to-source`, `-j DNAT --to-destination`, `-j MASQUERADE`, `-j REDIRECT`, and `-j NETMAP
//! --to` (libipt_NETMAP/libip6t_NETMAP); nat table only. Ports need a protocol with ports
//! before the target, as iptables checks while parsing.

use crate::ast::*;
use crate::parse::registry::{self, OptArg, TargetExt};
use crate::values::{self, fail, fail_hint, VResult};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TO: u8 = 0;
const TO_PORTS: u8 = 1;
const RANDOM: u8 = 2;
const RANDOM_FULLY: u8 = 3;
const PERSISTENT: u8 = 4;

const NO_RANGE: NatRange = NatRange {
    addrs: None,
    ports: None,
    random: false,
    random_fully: false,
    persistent: false,
};

pub(in crate::parse) const SNAT: TargetExt = TargetExt {
    name: "SNAT",
    opts: &[
        ("to-source", TO, 1, false),
        ("random", RANDOM, 0, false),
        ("random-fully", RANDOM_FULLY, 0, false),
        ("persistent", PERSISTENT, 0, false),
    ],
    table: Some(TableName::Nat),
    family: None,
    new: |_| Target::Snat(NO_RANGE),
    apply,
    finish: needs_to,
};

pub(in crate::parse) const DNAT: TargetExt = TargetExt {
    name: "DNAT",
    opts: &[
        ("to-destination", TO, 1, false),
        ("random", RANDOM, 0, false),
        ("persistent", PERSISTENT, 0, false),
    ],
    table: Some(TableName::Nat),
    family: None,
    new: |_| Target::Dnat(NO_RANGE),
    apply,
    finish: needs_to,
};

pub(in crate::parse) const MASQUERADE: TargetExt = TargetExt {
    name: "MASQUERADE",
    opts: &[
        ("to-ports", TO_PORTS, 1, false),
        ("random", RANDOM, 0, false),
        ("random-fully", RANDOM_FULLY, 0, false),
    ],
    table: Some(TableName::Nat),
    family: None,
    new: |_| Target::Masquerade {
        ports: None,
        random: false,
        random_fully: false,
    },
    apply,
    finish: registry::as_given,
};

pub(in crate::parse) const REDIRECT: TargetExt = TargetExt {
    name: "REDIRECT",
    opts: &[
        ("to-ports", TO_PORTS, 1, false),
        ("random", RANDOM, 0, false),
    ],
    table: Some(TableName::Nat),
    family: None,
    new: |_| Target::Redirect {
        ports: None,
        random: false,
    },
    apply,
    finish: registry::as_given,
};

pub(in crate::parse) const NETMAP: TargetExt = TargetExt {
    name: "NETMAP",
    opts: &[("to", TO, 1, false)],
    table: Some(TableName::Nat),
    family: None,
    new: |f| Target::Netmap {
        addr: match f {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
        prefix: 0,
    },
    apply: netmap_to,
    finish: |t, _, seen| {
        if seen.contains(&TO) {
            Ok(t)
        } else {
            fail_hint(
                "`-j NETMAP` needs `--to`",
                "e.g. `-j NETMAP --to 198.18.1.0/24`",
            )
        }
    },
};

/// `--to addr[/len|/mask]` of NETMAP (XTTYPE_HOSTMASK): the address is kept masked, a missing
/// length is the full one. A non-contiguous IPv4 mask comes out as /32 with the address
/// unmasked, which is what iptables 1.8.9 makes of it.
fn netmap_to(t: &mut Target, a: &OptArg) -> VResult<()> {
    let width = match a.family {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    };
    let (addr, prefix) = match values::address(a.value, a.family, false)? {
        None => match a.family {
            Family::Ipv4 => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            Family::Ipv6 => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        },
        Some(m) => match m.prefix_len() {
            Some(n) => (m.addr, n),
            None => {
                let host = a.value.split('/').next().unwrap_or(a.value);
                (values::plain_addr(host, a.family)?, width)
            }
        },
    };
    if let Target::Netmap {
        addr: to,
        prefix: p,
    } = t
    {
        *to = addr;
        *p = prefix;
    }
    Ok(())
}

fn apply(t: &mut Target, a: &OptArg) -> VResult<()> {
    let proto_ok = matches!(
        a.proto,
        Some(ProtoMatch {
            proto: values::PROTO_TCP
                | values::PROTO_UDP
                | values::PROTO_SCTP
                | values::PROTO_DCCP
                | values::PROTO_ICMP,
            // iptables ignores `!` here: `! -p tcp` allows ports too.
            ..
        })
    );
    let ports_need = "ports need `-p tcp`, `-p udp`, `-p sctp` or `-p dccp` before the target";
    // Only DNAT has a revision (2) that carries the base port to the kernel. SNAT and
    // MASQUERADE keep the offset flag with a base of 0 (the kernel then "shifts" by the port
    // itself) and iptables-save prints `/0`, which no iptables-restore reads back: fwd refuses
    // those, and a shift of one port (`80-80/1000`, printed `80/1000`, unreadable too).
    let dnat = matches!(t, Target::Dnat(_));
    let redirect = matches!(t, Target::Redirect { .. });
    let shift_ok = |p: &NatPorts| -> VResult<()> {
        match p.base {
            None => Ok(()),
            Some(_) if redirect => fail_hint(
                "REDIRECT has no port shift (`/base`)",
                "the kernel has no REDIRECT revision that takes one; use DNAT",
            ),
            Some(_) if !dnat => fail_hint(
                "a port shift (`/base`) is DNAT's only",
                "iptables gives the kernel no base port for SNAT and MASQUERADE (it saves `/0`, \
                 which iptables-restore cannot read back); use a plain port range",
            ),
            Some(_) if p.lo == p.hi => fail_hint(
                "a port shift needs a port range",
                "one port maps every port to it; drop the `/base`",
            ),
            Some(_) => Ok(()),
        }
    };
    match (t, a.id) {
        (Target::Snat(r) | Target::Dnat(r), TO) => {
            let (addrs, ports) = values::nat_range(a.value, a.family)?;
            if ports.is_some() && !proto_ok {
                return fail(ports_need);
            }
            if let Some(p) = &ports {
                shift_ok(p)?;
            }
            r.addrs = addrs;
            r.ports = ports;
        }
        (Target::Snat(r) | Target::Dnat(r), RANDOM) => r.random = true,
        (Target::Snat(r) | Target::Dnat(r), RANDOM_FULLY) => r.random_fully = true,
        (Target::Snat(r) | Target::Dnat(r), PERSISTENT) => r.persistent = true,
        (Target::Masquerade { ports, .. } | Target::Redirect { ports, .. }, TO_PORTS) => {
            if !proto_ok {
                return fail(ports_need);
            }
            let p = values::nat_ports(a.value)?;
            shift_ok(&p)?;
            *ports = Some(p);
        }
        (Target::Masquerade { random, .. } | Target::Redirect { random, .. }, RANDOM) => {
            *random = true
        }
        (Target::Masquerade { random_fully, .. }, RANDOM_FULLY) => *random_fully = true,
        _ => return fail("option not valid here"),
    }
    Ok(())
}

/// SNAT and DNAT need their address.
fn needs_to(t: Target, _: Option<ProtoMatch>, seen: &[u8]) -> VResult<Target> {
    if seen.contains(&TO) {
        return Ok(t);
    }
    let (name, o) = match t {
        Target::Snat(_) => ("SNAT", "--to-source"),
        _ => ("DNAT", "--to-destination"),
    };
    fail_hint(
        format!("`-j {name}` needs `{o}`"),
        format!("e.g. `-j {name} {o} 198.18.0.1`"),
    )
}
