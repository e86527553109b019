//! `-m length --length` (`libxt_length.c`): the IP packet's length, a value or a range.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const LENGTH_OPT: u8 = 0;

pub(super) const LENGTH: MatchExt = MatchExt {
    name: "length",
    family: None,
    opts: &[("length", LENGTH_OPT, 1, true)],
    exclusive: &[],
    new: || Match::Length {
        min: 0,
        max: 0,
        negated: false,
    },
    apply,
    required: Some("--length"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Length { min, max, negated } = m else {
        return fail("option not valid here");
    };
    let a0 = a.value;
    let (lo, hi) = match a0.split_once(':') {
        Some((lo, hi)) => (lo, if hi.is_empty() { "65535" } else { hi }),
        None => (a0, a0),
    };
    let lo = values::number(if lo.is_empty() { "0" } else { lo }, 65535, "length")? as u16;
    let hi = values::number(hi, 65535, "length")? as u16;
    if lo > hi {
        return fail(format!("invalid length range `{a0}`: start is above end"));
    }
    *min = lo;
    *max = hi;
    *negated = a.neg;
    Ok(())
}
