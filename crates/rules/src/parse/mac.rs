//! `-m mac --mac-source` (`libxt_mac.c`). Where it may be used (the hooks that have a source
//! MAC) is checked with the chain, in the restore driver.

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const MAC_SOURCE: u8 = 0;

pub(super) const MAC: MatchExt = MatchExt {
    name: "mac",
    family: None,
    opts: &[("mac-source", MAC_SOURCE, 1, true)],
    exclusive: &[],
    new: || Match::Mac {
        addr: [0; 6],
        negated: false,
    },
    apply,
    required: Some("--mac-source"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Mac { addr, negated } = m else {
        return fail("option not valid here");
    };
    *addr = values::mac(a.value)?;
    *negated = a.neg;
    Ok(())
}
