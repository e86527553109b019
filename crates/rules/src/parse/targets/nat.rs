//! The NAT targets (`libxt_NAT.c` registers all four): `-j SNAT --to-source`,
//! `-j DNAT --to-destination`, `-j MASQUERADE`, `-j REDIRECT`, nat table only. Ports need a
//! protocol with ports before the target, as iptables checks while parsing.

use crate::ast::*;
use crate::parse::registry::{self, OptArg, TargetExt};
use crate::values::{self, fail, fail_hint, VResult};

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
    new: |_| Target::Redirect {
        ports: None,
        random: false,
    },
    apply,
    finish: registry::as_given,
};

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
    match (t, a.id) {
        (Target::Snat(r) | Target::Dnat(r), TO) => {
            let (addrs, ports) = values::nat_range(a.value, a.family)?;
            if ports.is_some() && !proto_ok {
                return fail(ports_need);
            }
            r.addrs = addrs;
            r.ports = ports;
        }
        (Target::Snat(r) | Target::Dnat(r), RANDOM) => r.random = true,
        (Target::Snat(r) | Target::Dnat(r), RANDOM_FULLY) => r.random_fully = true,
        (Target::Snat(r) | Target::Dnat(r), PERSISTENT) => r.persistent = true,
        (Target::Masquerade { ports, .. } | Target::Redirect { ports, .. }, TO_PORTS) => {
            let r = values::port_dash_range(a.value)?;
            if !proto_ok {
                return fail(ports_need);
            }
            *ports = Some(r);
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
