//! `-m state --state` and `-m conntrack --ctstate` (`libxt_state.c`, `libxt_conntrack.c`):
//! conntrack's state bits. conntrack's other options are known, so that they are refused as
//! unsupported rather than unknown.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, fail_hint, VResult};

const STATE_OPT: u8 = 0;
const CTSTATE: u8 = 1;
/// The conntrack options fwd does not implement.
const UNSUPPORTED: u8 = 2;

pub(super) const STATE: MatchExt = MatchExt {
    name: "state",
    family: None,
    opts: &[("state", STATE_OPT, 1, true)],
    exclusive: &[],
    new: || {
        Match::State(StateMatch {
            states: 0,
            negated: false,
        })
    },
    apply,
    required: Some("--state"),
    proto: None,
    check: None,
};

pub(super) const CONNTRACK: MatchExt = MatchExt {
    name: "conntrack",
    family: None,
    opts: &[
        ("ctstate", CTSTATE, 1, true),
        ("ctproto", UNSUPPORTED, 1, true),
        ("ctorigsrc", UNSUPPORTED, 1, true),
        ("ctorigdst", UNSUPPORTED, 1, true),
        ("ctreplsrc", UNSUPPORTED, 1, true),
        ("ctrepldst", UNSUPPORTED, 1, true),
        ("ctorigsrcport", UNSUPPORTED, 1, true),
        ("ctorigdstport", UNSUPPORTED, 1, true),
        ("ctreplsrcport", UNSUPPORTED, 1, true),
        ("ctrepldstport", UNSUPPORTED, 1, true),
        ("ctstatus", UNSUPPORTED, 1, true),
        ("ctexpire", UNSUPPORTED, 1, true),
        ("ctdir", UNSUPPORTED, 1, false),
    ],
    exclusive: &[],
    new: || {
        Match::Conntrack(StateMatch {
            states: 0,
            negated: false,
        })
    },
    apply,
    required: Some("--ctstate"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    match (m, a.id) {
        (Match::State(s), STATE_OPT) => {
            *s = StateMatch {
                states: values::states(a.value, false)?,
                negated: a.neg,
            }
        }
        (Match::Conntrack(s), CTSTATE) => {
            *s = StateMatch {
                states: values::states(a.value, true)?,
                negated: a.neg,
            }
        }
        (Match::Conntrack(_), UNSUPPORTED) => {
            return fail_hint(
                "this conntrack option is not supported",
                "fwd supports `-m conntrack --ctstate` only",
            )
        }
        _ => return fail("option not valid here"),
    }
    Ok(())
}
