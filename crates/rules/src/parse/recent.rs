//! `-m recent` (`libxt_recent.c`, kernel `xt_recent.c`): a named list of recently seen
//! addresses. The checks are the union of the tool's (one command, `--rttl` only with
//! `--rcheck`/`--update`) and the kernel's checkentry (no `--seconds`, `--hitcount` or `--reap`
//! with `--set`/`--remove`, `--reap` needs `--seconds`, at most 255 hits, a name of 1 to 199
//! bytes), so that what fwd loads is what `iptables-restore` loads.

use std::net::IpAddr;

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, Fail, VResult};

const SET: u8 = 0;
const RCHECK: u8 = 1;
const UPDATE: u8 = 2;
const REMOVE: u8 = 3;
const SECONDS: u8 = 4;
const REAP: u8 = 5;
const HITCOUNT: u8 = 6;
const RTTL: u8 = 7;
const NAME: u8 = 8;
const RSOURCE: u8 = 9;
const RDEST: u8 = 10;
const MASK: u8 = 11;

/// `XT_RECENT_NAME_LEN`: the name and its NUL.
const NAME_LEN: usize = 200;
/// `XT_RECENT_MAX_NSTAMPS`: `--hitcount` must be below it.
const MAX_NSTAMPS: u64 = 256;

pub(super) const RECENT: MatchExt = MatchExt {
    name: "recent",
    family: None,
    opts: &[
        ("set", SET, 0, true),
        ("rcheck", RCHECK, 0, true),
        ("update", UPDATE, 0, true),
        ("remove", REMOVE, 0, true),
        ("seconds", SECONDS, 1, false),
        ("reap", REAP, 0, false),
        ("hitcount", HITCOUNT, 1, false),
        ("rttl", RTTL, 0, false),
        ("name", NAME, 1, false),
        ("rsource", RSOURCE, 0, false),
        ("rdest", RDEST, 0, false),
        ("mask", MASK, 1, false),
    ],
    exclusive: &[SET, RCHECK, UPDATE, REMOVE],
    new: || Match::Recent(RecentMatch::default_for(Family::Ipv4)),
    apply,
    required: Some("--set, --rcheck, --update or --remove"),
    proto: None,
    check: Some(check),
};

impl RecentMatch {
    /// The match as `-m recent` loads it: list `DEFAULT`, the source address, an all-ones mask.
    pub fn default_for(family: Family) -> RecentMatch {
        RecentMatch {
            cmd: None,
            invert: false,
            seconds: 0,
            reap: false,
            hitcount: 0,
            rttl: false,
            name: "DEFAULT".into(),
            mask: all_ones(family),
            rdest: false,
        }
    }
}

fn all_ones(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::from([255u8; 4]),
        Family::Ipv6 => IpAddr::from([255u8; 16]),
    }
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Recent(r) = m else {
        return fail("option not valid here");
    };
    // `new` cannot know the family: the mask takes it from the first option.
    if r.mask != all_ones(a.family) && a.id != MASK && r.mask == all_ones(other(a.family)) {
        r.mask = all_ones(a.family);
    }
    let cmd = |r: &mut RecentMatch, c| {
        r.cmd = Some(c);
        r.invert = a.neg;
    };
    match a.id {
        SET => cmd(r, RecentCmd::Set),
        RCHECK => cmd(r, RecentCmd::Check),
        UPDATE => cmd(r, RecentCmd::Update),
        REMOVE => cmd(r, RecentCmd::Remove),
        SECONDS => r.seconds = values::number(a.value, u64::from(u32::MAX), "seconds")? as u32,
        REAP => r.reap = true,
        HITCOUNT => r.hitcount = values::number(a.value, u64::from(u32::MAX), "hitcount")? as u32,
        RTTL => r.rttl = true,
        NAME => {
            if a.value.len() >= NAME_LEN {
                return fail(format!(
                    "the list name is longer than {} bytes",
                    NAME_LEN - 1
                ));
            }
            r.name = a.value.to_string();
        }
        RSOURCE => r.rdest = false,
        RDEST => r.rdest = true,
        _ => r.mask = values::plain_addr(a.value, a.family)?,
    }
    Ok(())
}

fn other(f: Family) -> Family {
    match f {
        Family::Ipv4 => Family::Ipv6,
        Family::Ipv6 => Family::Ipv4,
    }
}

fn located(word: &'static str, msg: &str) -> Result<(), Located> {
    Err((
        word,
        Fail {
            msg: msg.into(),
            hint: None,
        },
    ))
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Recent(r) = m else {
        return Ok(());
    };
    let Some(cmd) = r.cmd else {
        return located(
            "recent",
            "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'",
        );
    };
    let set_or_remove = matches!(cmd, RecentCmd::Set | RecentCmd::Remove);
    if r.rttl && set_or_remove {
        return located(
            "--rttl",
            "recent: --rttl may only be used with --rcheck or --update",
        );
    }
    if set_or_remove && r.seconds != 0 {
        return located(
            "--seconds",
            "the kernel refuses --seconds with --set or --remove",
        );
    }
    if set_or_remove && r.hitcount != 0 {
        return located(
            "--hitcount",
            "the kernel refuses --hitcount with --set or --remove",
        );
    }
    if set_or_remove && r.reap {
        return located("--reap", "the kernel refuses --reap with --set or --remove");
    }
    if r.reap && r.seconds == 0 {
        return located("--reap", "the kernel refuses --reap without --seconds");
    }
    if u64::from(r.hitcount) >= MAX_NSTAMPS {
        return located("--hitcount", "the kernel allows a hitcount of at most 255");
    }
    // the kernel's `xt_check_proc_name`: the list is a file under /proc/net/xt_recent
    if r.name.is_empty() || r.name == "." || r.name == ".." || r.name.contains('/') {
        return located(
            "--name",
            "the kernel refuses a list name that is empty, `.`, `..` or has a `/`",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{parse_restore, Family, Match, RecentCmd};

    fn one(rule: &str, family: Family) -> Result<Match, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, family)
            .map(|rs| {
                rs.tables[0].chains[1].rules[0]
                    .matches
                    .last()
                    .unwrap()
                    .clone()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ufw_limit_rules() {
        let Match::Recent(r) = one(
            "-p tcp --dport 22 -m recent --update --seconds 30 --hitcount 6 --name X",
            Family::Ipv4,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.cmd, Some(RecentCmd::Update));
        assert_eq!((r.seconds, r.hitcount, r.name.as_str()), (30, 6, "X"));
        assert_eq!(r.mask.to_string(), "255.255.255.255");
        let Match::Recent(r) = one("-m recent --set", Family::Ipv6).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.mask.to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(r.name, "DEFAULT");
    }

    #[test]
    fn kernel_checks() {
        for bad in [
            "-m recent",
            "-m recent --name X",
            "-m recent --set --rttl",
            "-m recent --set --seconds 3",
            "-m recent --remove --hitcount 3",
            "-m recent --rcheck --reap",
            "-m recent --rcheck --hitcount 256",
            "-m recent --set --rcheck",
            "-m recent --set --name a/b",
            "-m recent --set --name ..",
        ] {
            assert!(one(bad, Family::Ipv4).is_err(), "{bad}");
        }
        assert!(one(
            "-m recent --rcheck --hitcount 255 --seconds 1 --reap",
            Family::Ipv4
        )
        .is_ok());
    }
}
