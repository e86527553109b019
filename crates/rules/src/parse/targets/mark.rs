//! `-j MARK` (`libxt_MARK.c`, revision 2) and `-j CONNMARK` (`libxt_CONNMARK.c`, revision 1).
//! Both are allowed in every table (`xt_mark.c` and `xt_connmark.c` name none). Each option is
//! folded into the kernel's structure as iptables does, in the order given, so that what is
//! printed is what iptables-save prints (`--set-xmark V/M` for every MARK operation).

use crate::ast::*;
use crate::parse::registry::{OptArg, TargetExt};
use crate::values::{self, fail, fail_hint, VResult};

const SET_XMARK: u8 = 0;
const SET_MARK: u8 = 1;
const AND_MARK: u8 = 2;
const OR_MARK: u8 = 3;
const XOR_MARK: u8 = 4;
const SAVE_MARK: u8 = 5;
const RESTORE_MARK: u8 = 6;
const CTMASK: u8 = 7;
const NFMASK: u8 = 8;
const MASK: u8 = 9;

/// The options of which a rule may give one (`F_ANY` / `F_OP_ANY`).
const OPS: [u8; 7] = [
    SET_XMARK,
    SET_MARK,
    AND_MARK,
    OR_MARK,
    XOR_MARK,
    SAVE_MARK,
    RESTORE_MARK,
];

pub(in crate::parse) const MARK: TargetExt = TargetExt {
    name: "MARK",
    opts: &[
        ("set-xmark", SET_XMARK, 1, false),
        ("set-mark", SET_MARK, 1, false),
        ("and-mark", AND_MARK, 1, false),
        ("or-mark", OR_MARK, 1, false),
        ("xor-mark", XOR_MARK, 1, false),
    ],
    table: None,
    family: None,
    new: |_| Target::Mark(XMark { value: 0, mask: 0 }),
    apply: apply_mark,
    finish: |t, _, seen| {
        one_op(
            seen,
            "MARK",
            "--set-xmark, --set-mark, --and-mark, --or-mark or --xor-mark",
        )?;
        Ok(t)
    },
};

pub(in crate::parse) const CONNMARK: TargetExt = TargetExt {
    name: "CONNMARK",
    opts: &[
        ("set-xmark", SET_XMARK, 1, false),
        ("set-mark", SET_MARK, 1, false),
        ("and-mark", AND_MARK, 1, false),
        ("or-mark", OR_MARK, 1, false),
        ("xor-mark", XOR_MARK, 1, false),
        ("save-mark", SAVE_MARK, 0, false),
        ("restore-mark", RESTORE_MARK, 0, false),
        ("ctmask", CTMASK, 1, false),
        ("nfmask", NFMASK, 1, false),
        ("mask", MASK, 1, false),
    ],
    table: None,
    family: None,
    new: |_| {
        Target::Connmark(ConnmarkTarget {
            mode: ConnmarkMode::Set,
            ctmark: 0,
            ctmask: u32::MAX,
            nfmask: u32::MAX,
        })
    },
    apply: apply_connmark,
    finish: |t, _, seen| {
        if seen.contains(&MASK) && (seen.contains(&CTMASK) || seen.contains(&NFMASK)) {
            return fail("CONNMARK: `--mask` cannot be combined with `--ctmask` or `--nfmask`");
        }
        one_op(
            seen,
            "CONNMARK",
            "--set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark, --save-mark or --restore-mark",
        )?;
        // canonical: the mask the mode does not use is the default, as iptables-save shows
        // nothing of it (`--set-mark 1 --nfmask 2` reads back as `--set-xmark 0x1/0xffffffff`)
        let mut t = t;
        if let Target::Connmark(c) = &mut t {
            if c.mode == ConnmarkMode::Set {
                c.nfmask = u32::MAX;
            }
        }
        Ok(t)
    },
};

/// Exactly one operation, as iptables' exclusion flags and final check demand.
fn one_op(seen: &[u8], name: &str, list: &str) -> VResult<()> {
    match seen.iter().filter(|o| OPS.contains(o)).count() {
        0 => fail_hint(
            format!("`-j {name}` needs an operation"),
            format!("give one of {list}"),
        ),
        1 => Ok(()),
        _ => fail_hint(
            format!("`-j {name}` takes one operation"),
            format!("one of {list}; use a second rule for another"),
        ),
    }
}

/// The `(value, mask)` of a set/and/or/xor option, as `mark_parse_v2` computes it.
fn xmark(a: &OptArg) -> VResult<XMark> {
    let what = "mark";
    Ok(match a.id {
        SET_XMARK => {
            let (value, mask) = values::mark_mask(a.value, what)?;
            XMark { value, mask }
        }
        SET_MARK => {
            let (value, mask) = values::mark_mask(a.value, what)?;
            XMark {
                value,
                mask: value | mask,
            }
        }
        AND_MARK => XMark {
            value: 0,
            mask: !values::u32_any_base(a.value, what)?,
        },
        OR_MARK => {
            let v = values::u32_any_base(a.value, what)?;
            XMark { value: v, mask: v }
        }
        _ => XMark {
            value: values::u32_any_base(a.value, what)?,
            mask: 0,
        },
    })
}

fn apply_mark(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Mark(m) = t else {
        return fail("option not valid here");
    };
    *m = xmark(a)?;
    Ok(())
}

fn apply_connmark(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Connmark(c) = t else {
        return fail("option not valid here");
    };
    match a.id {
        SAVE_MARK => c.mode = ConnmarkMode::Save,
        RESTORE_MARK => c.mode = ConnmarkMode::Restore,
        CTMASK => c.ctmask = values::u32_any_base(a.value, "ctmask")?,
        NFMASK => c.nfmask = values::u32_any_base(a.value, "nfmask")?,
        MASK => {
            let m = values::u32_any_base(a.value, "mask")?;
            c.ctmask = m;
            c.nfmask = m;
        }
        _ => {
            let x = xmark(a)?;
            c.mode = ConnmarkMode::Set;
            c.ctmark = x.value;
            c.ctmask = x.mask;
        }
    }
    Ok(())
}
