//! `-m comment --comment` (`libxt_comment.c`): kept (truncated to the kernel's 255 bytes) and
//! printed, never tested.

use super::registry::{MatchExt, OptArg};
use super::truncate_bytes;
use crate::ast::*;
use crate::values::{fail, VResult};

const COMMENT_OPT: u8 = 0;

pub(super) const COMMENT: MatchExt = MatchExt {
    name: "comment",
    family: None,
    opts: &[("comment", COMMENT_OPT, 1, false)],
    exclusive: &[],
    new: || Match::Comment(String::new()),
    apply,
    required: Some("--comment"),
    proto: None,
    check: None,
};

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Comment(c) = m else {
        return fail("option not valid here");
    };
    let mut s = a.value.to_string();
    truncate_bytes(&mut s, 255);
    *c = s;
    Ok(())
}
