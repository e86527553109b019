//! `-m mark` (`libxt_mark.c`) and `-m connmark` (`libxt_connmark.c`): `[!] --mark
//! value[/mask]` on the packet's mark or on its connection's.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const MARK_OPT: u8 = 0;

const NEW: MarkMatch = MarkMatch {
    value: 0,
    mask: u32::MAX,
    negated: false,
};

pub(super) const MARK: MatchExt = MatchExt {
    name: "mark",
    family: None,
    opts: &[("mark", MARK_OPT, 1, true)],
    exclusive: &[],
    new: || Match::Mark(NEW),
    apply,
    required: Some("--mark"),
    proto: None,
    check: None,
};

pub(super) const CONNMARK: MatchExt = MatchExt {
    name: "connmark",
    family: None,
    opts: &[("mark", MARK_OPT, 1, true)],
    exclusive: &[],
    new: || Match::Connmark(NEW),
    apply,
    required: Some("--mark"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let (Match::Mark(mm) | Match::Connmark(mm)) = m else {
        return fail("option not valid here");
    };
    let (value, mask) = values::mark_mask(a.value, "mark")?;
    *mm = MarkMatch {
        value,
        mask,
        negated: a.neg,
    };
    Ok(())
}
