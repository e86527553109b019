//! `-m connlimit` (`libxt_connlimit.c`, kernel `xt_connlimit.c` + `nf_conncount.c`): the
//! number of connections whose masked source (or destination) address is the packet's.

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, Fail, VResult};

const UPTO: u8 = 0;
const ABOVE: u8 = 1;
const MASK: u8 = 2;
const SADDR: u8 = 3;
const DADDR: u8 = 4;

pub(super) const CONNLIMIT: MatchExt = MatchExt {
    name: "connlimit",
    family: None,
    opts: &[
        ("connlimit-upto", UPTO, 1, true),
        ("connlimit-above", ABOVE, 1, true),
        ("connlimit-mask", MASK, 1, false),
        ("connlimit-saddr", SADDR, 0, false),
        ("connlimit-daddr", DADDR, 0, false),
    ],
    exclusive: &[UPTO, ABOVE],
    new: || {
        Match::Connlimit(ConnlimitMatch {
            limit: None,
            above: true,
            // the family's width is set by the first option (see `apply`)
            mask: u8::MAX,
            daddr: false,
        })
    },
    apply,
    required: Some("--connlimit-above or --connlimit-upto"),
    proto: None,
    check: Some(check),
};

fn width(f: Family) -> u8 {
    match f {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    }
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Connlimit(c) = m else {
        return fail("option not valid here");
    };
    if c.mask == u8::MAX {
        c.mask = width(a.family);
    }
    match a.id {
        UPTO | ABOVE => {
            c.limit = Some(values::u32_any_base(a.value, "connection limit")?);
            c.above = (a.id == ABOVE) != a.neg;
        }
        MASK => {
            let v = values::u32_any_base(a.value, "prefix length")?;
            if v > u32::from(width(a.family)) {
                return fail(format!(
                    "prefix length `{}` out of range: expected 0-{}",
                    a.value,
                    width(a.family)
                ));
            }
            c.mask = v as u8;
        }
        SADDR => c.daddr = false,
        _ => c.daddr = true,
    }
    Ok(())
}

fn check(m: &Match) -> Result<(), Located> {
    match m {
        Match::Connlimit(c) if c.limit.is_none() => Err((
            "connlimit",
            Fail {
                msg: "connlimit: you must specify `--connlimit-above` or `--connlimit-upto`".into(),
                hint: None,
            },
        )),
        _ => Ok(()),
    }
}

/// `connlimit_save`.
pub(crate) fn save(o: &mut String, c: &ConnlimitMatch) {
    let limit = c.limit.unwrap_or(0);
    if c.above {
        let _ = write!(o, " --connlimit-above {limit}");
    } else {
        let _ = write!(o, " --connlimit-upto {limit}");
    }
    let _ = write!(o, " --connlimit-mask {}", c.mask);
    o.push_str(if c.daddr {
        " --connlimit-daddr"
    } else {
        " --connlimit-saddr"
    });
}

/// `connlimit_print`.
pub(crate) fn list(o: &mut String, c: &ConnlimitMatch) {
    let _ = write!(
        o,
        " #conn {}/{} {} {}",
        if c.daddr { "dst" } else { "src" },
        c.mask,
        if c.above { ">" } else { "<=" },
        c.limit.unwrap_or(0)
    );
}

#[cfg(test)]
mod tests {
    use crate::{parse_restore, Family, Match, Ruleset};

    fn rs(rule: &str, family: Family) -> Result<Ruleset, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, family).map_err(|e| e.to_string())
    }

    #[test]
    fn parse_and_print() {
        let r = rs(
            "-p tcp -m connlimit --connlimit-upto 5 --connlimit-mask 24 --connlimit-daddr",
            Family::Ipv4,
        )
        .unwrap();
        let Some(Match::Connlimit(c)) = r.tables[0].chains[1].rules[0].matches.last() else {
            panic!()
        };
        assert_eq!(
            (c.limit, c.above, c.mask, c.daddr),
            (Some(5), false, 24, true)
        );
        assert!(r
            .to_save()
            .contains("-m connlimit --connlimit-upto 5 --connlimit-mask 24 --connlimit-daddr"));
        let r = rs("-m connlimit ! --connlimit-upto 3", Family::Ipv6).unwrap();
        assert!(r
            .to_save()
            .contains("--connlimit-above 3 --connlimit-mask 128 --connlimit-saddr"));
        for bad in [
            "-m connlimit",
            "-m connlimit --connlimit-mask 24",
            "-m connlimit --connlimit-above 1 --connlimit-upto 2",
            "-m connlimit --connlimit-above 1 --connlimit-mask 33",
            "-m connlimit --connlimit-above x",
        ] {
            assert!(rs(bad, Family::Ipv4).is_err(), "{bad}");
        }
    }
}
