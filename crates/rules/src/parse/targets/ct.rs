//! `-j NOTRACK` and `-j CT --notrack` (both in `libxt_CT.c`), raw table only. CT's other
//! options are known, so that they are refused as unsupported rather than unknown.

use crate::ast::*;
use crate::parse::registry::{self, OptArg, TargetExt};
use crate::values::{fail_hint, VResult};

const NOTRACK_OPT: u8 = 0;
/// The CT options fwd does not implement.
const UNSUPPORTED: u8 = 1;

pub(in crate::parse) const NOTRACK: TargetExt = TargetExt {
    name: "NOTRACK",
    opts: &[],
    table: Some(TableName::Raw),
    family: None,
    new: |_| Target::Notrack,
    apply: |_, _| Ok(()),
    finish: registry::as_given,
};

pub(in crate::parse) const CT: TargetExt = TargetExt {
    name: "CT",
    opts: &[
        ("notrack", NOTRACK_OPT, 0, false),
        ("helper", UNSUPPORTED, 1, false),
        ("ctevents", UNSUPPORTED, 1, false),
        ("expevents", UNSUPPORTED, 1, false),
        ("zone", UNSUPPORTED, 1, false),
        ("timeout", UNSUPPORTED, 1, false),
    ],
    table: Some(TableName::Raw),
    family: None,
    new: |_| Target::CtNotrack,
    apply,
    finish,
};

fn apply(_: &mut Target, a: &OptArg) -> VResult<()> {
    if a.id == NOTRACK_OPT {
        return Ok(());
    }
    fail_hint(
        "this CT option is not supported",
        "fwd supports `-j CT --notrack` only",
    )
}

/// `-j CT` without `--notrack` would be a CT fwd has no way to express.
fn finish(t: Target, _: Option<ProtoMatch>, seen: &[u8]) -> VResult<Target> {
    if seen.contains(&NOTRACK_OPT) {
        return Ok(t);
    }
    fail_hint(
        "`-j CT` needs `--notrack`",
        "fwd supports `-j CT --notrack` only",
    )
}
