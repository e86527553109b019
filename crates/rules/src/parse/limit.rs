//! `-m limit` (`libxt_limit.c`): average rate and burst, with the kernel's checks at
//! `xt_limit`'s checkentry made when the line is read.

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, Fail, VResult};

const LIMIT_OPT: u8 = 0;
const LIMIT_BURST: u8 = 1;

pub(super) const LIMIT: MatchExt = MatchExt {
    name: "limit",
    family: None,
    opts: &[
        ("limit", LIMIT_OPT, 1, false),
        ("limit-burst", LIMIT_BURST, 1, false),
    ],
    exclusive: &[],
    new: || Match::Limit(LimitMatch::DEFAULT),
    apply,
    required: None,
    proto: None,
    check: Some(check),
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Limit(l) = m else {
        return fail("option not valid here");
    };
    if a.id == LIMIT_OPT {
        l.avg = values::limit_rate(a.value)?
    } else {
        l.burst = values::number(a.value, 10000, "limit burst")? as u32
    }
    Ok(())
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Limit(l) = m else {
        return Ok(());
    };
    if l.burst == 0 {
        return Err((
            "--limit-burst",
            Fail {
                msg: "`--limit-burst 0` is refused by the kernel".into(),
                hint: Some("the burst must be at least 1".into()),
            },
        ));
    }
    if u64::from(l.avg) * u64::from(l.burst) > u64::from(u32::MAX) {
        return Err((
            "--limit",
            Fail {
                msg: "limit rate times burst is too large for the kernel".into(),
                hint: Some("use a faster rate or a smaller --limit-burst".into()),
            },
        ));
    }
    Ok(())
}
