//! `-m ttl` (iptables, `libipt_ttl.c`) and `-m hl` (ip6tables, `libip6t_hl.c`): one comparison
//! of the TTL / hop limit per match.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const EQ: u8 = 0;
const LT: u8 = 1;
const GT: u8 = 2;

pub(super) const TTL: MatchExt = MatchExt {
    name: "ttl",
    family: Some(Family::Ipv4),
    opts: &[
        ("ttl-eq", EQ, 1, true),
        ("ttl-lt", LT, 1, false),
        ("ttl-gt", GT, 1, false),
        ("ttl", EQ, 1, true),
    ],
    exclusive: &[EQ, LT, GT],
    new: || Match::Ttl {
        op: TtlOp::Eq,
        value: 0,
    },
    apply,
    required: Some("--ttl-eq, --ttl-lt or --ttl-gt"),
    proto: None,
    check: None,
};

pub(super) const HL: MatchExt = MatchExt {
    name: "hl",
    family: Some(Family::Ipv6),
    opts: &[
        ("hl-eq", EQ, 1, true),
        ("hl-lt", LT, 1, false),
        ("hl-gt", GT, 1, false),
        ("hl", EQ, 1, true),
    ],
    exclusive: &[EQ, LT, GT],
    new: || Match::HopLimit {
        op: TtlOp::Eq,
        value: 0,
    },
    apply,
    required: Some("--hl-eq, --hl-lt or --hl-gt"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let (Match::Ttl { op, value } | Match::HopLimit { op, value }) = m else {
        return fail("option not valid here");
    };
    *value = values::number(a.value, 255, "TTL")? as u8;
    *op = match (a.id, a.neg) {
        (EQ, false) => TtlOp::Eq,
        (EQ, true) => TtlOp::Ne,
        (LT, _) => TtlOp::Lt,
        _ => TtlOp::Gt,
    };
    Ok(())
}
