//! `-m iprange` (`libxt_iprange.c`): inclusive address ranges, each negatable.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const SRC_RANGE: u8 = 0;
const DST_RANGE: u8 = 1;

pub(super) const IPRANGE: MatchExt = MatchExt {
    name: "iprange",
    family: None,
    opts: &[
        ("src-range", SRC_RANGE, 1, true),
        ("dst-range", DST_RANGE, 1, true),
    ],
    exclusive: &[],
    new: || Match::IpRange(IpRangeMatch::default()),
    apply,
    required: Some("--src-range or --dst-range"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::IpRange(r) = m else {
        return fail("option not valid here");
    };
    let range = Some(values::ip_range(a.value, a.family, a.neg)?);
    if a.id == SRC_RANGE {
        r.src = range;
    } else {
        r.dst = range;
    }
    Ok(())
}
