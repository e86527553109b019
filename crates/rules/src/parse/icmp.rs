//! `-m icmp` (iptables, `libipt_icmp.c`) and `-m icmp6` (ip6tables, `libip6t_icmp6.c`): type
//! and code range, loaded implicitly by `-p icmp`/`-p ipv6-icmp`.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const ICMP_TYPE: u8 = 0;

pub(super) const ICMP: MatchExt = MatchExt {
    name: "icmp",
    family: Some(Family::Ipv4),
    opts: &[("icmp-type", ICMP_TYPE, 1, true)],
    exclusive: &[],
    // Type 255 with codes 0-255 is iptables' `any`.
    new: || {
        Match::Icmp(IcmpMatch {
            icmp_type: 255,
            code_min: 0,
            code_max: 255,
            negated: false,
        })
    },
    apply,
    required: Some("--icmp-type"),
    proto: Some((values::PROTO_ICMP, "icmp")),
    check: None,
};

pub(super) const ICMP6: MatchExt = MatchExt {
    name: "icmp6",
    family: Some(Family::Ipv6),
    opts: &[("icmpv6-type", ICMP_TYPE, 1, true)],
    exclusive: &[],
    new: || {
        Match::Icmp6(IcmpMatch {
            icmp_type: 0,
            code_min: 0,
            code_max: 255,
            negated: false,
        })
    },
    apply,
    required: Some("--icmpv6-type"),
    proto: Some((values::PROTO_ICMPV6, "ipv6-icmp")),
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    match m {
        Match::Icmp(ic) => *ic = values::icmp_type(a.value, false, a.neg)?,
        Match::Icmp6(ic) => *ic = values::icmp_type(a.value, true, a.neg)?,
        _ => return fail("option not valid here"),
    }
    Ok(())
}
