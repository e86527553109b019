//! `-m connbytes` (`libxt_connbytes.c`, kernel `xt_connbytes.c`): the connection's packet or
//! byte counters (or their average) in a range; `!` is stored as the kernel does, by swapping
//! the bounds.

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use super::time::strtoul;
use crate::ast::*;
use crate::values::{fail, Fail, VResult};

const CONNBYTES: u8 = 0;
const DIR: u8 = 1;
const MODE: u8 = 2;

pub(super) const CONNBYTES_EXT: MatchExt = MatchExt {
    name: "connbytes",
    family: None,
    opts: &[
        ("connbytes", CONNBYTES, 1, true),
        ("connbytes-dir", DIR, 1, false),
        ("connbytes-mode", MODE, 1, false),
    ],
    exclusive: &[],
    new: || {
        Match::Connbytes(ConnbytesMatch {
            from: 0,
            to: 0,
            dir: None,
            mode: None,
        })
    },
    apply,
    required: Some("--connbytes"),
    proto: None,
    check: Some(check),
};

/// XTTYPE_UINT64RC: `a`, `a:b`, `a:`, `:b`.
fn range(s: &str) -> VResult<(u64, u64)> {
    let bad = || fail(format!("bad --connbytes `{s}`: expected FROM[:TO]"));
    let num = |p: &str| -> Option<u64> {
        if p.starts_with('-') {
            return None;
        }
        match strtoul(p, 0) {
            (v, "") if !p.is_empty() => Some(v),
            _ => None,
        }
    };
    let (from, to) = match s.split_once(':') {
        None => (num(s).ok_or(()).or_else(|_| bad())?, u64::MAX),
        Some((a, b)) => (
            if a.is_empty() {
                0
            } else {
                num(a).ok_or(()).or_else(|_| bad())?
            },
            if b.is_empty() {
                u64::MAX
            } else {
                num(b).ok_or(()).or_else(|_| bad())?
            },
        ),
    };
    if to < from {
        return fail(format!(
            "bad --connbytes `{s}`: {from} should be less than {to}"
        ));
    }
    Ok((from, to))
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Connbytes(c) = m else {
        return fail("option not valid here");
    };
    match a.id {
        CONNBYTES => {
            let (from, to) = range(a.value)?;
            (c.from, c.to) = if a.neg { (to, from) } else { (from, to) };
        }
        DIR => {
            c.dir = Some(match a.value {
                "original" => ConnbytesDir::Original,
                "reply" => ConnbytesDir::Reply,
                "both" => ConnbytesDir::Both,
                _ => {
                    return fail(format!(
                        "bad --connbytes-dir `{}`: expected original, reply or both",
                        a.value
                    ))
                }
            })
        }
        _ => {
            c.mode = Some(match a.value {
                "packets" => ConnbytesMode::Packets,
                "bytes" => ConnbytesMode::Bytes,
                "avgpkt" => ConnbytesMode::Avgpkt,
                _ => {
                    return fail(format!(
                        "bad --connbytes-mode `{}`: expected packets, bytes or avgpkt",
                        a.value
                    ))
                }
            })
        }
    }
    Ok(())
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Connbytes(c) = m else {
        return Ok(());
    };
    let missing = if c.dir.is_none() {
        "connbytes: option --connbytes-dir must be specified"
    } else if c.mode.is_none() {
        "connbytes: option --connbytes-mode must be specified"
    } else {
        return Ok(());
    };
    Err((
        "connbytes",
        Fail {
            msg: missing.into(),
            hint: None,
        },
    ))
}

fn from_to(o: &mut String, c: &ConnbytesMatch, prefix: &str) {
    let (from, to) = if c.from > c.to {
        o.push_str(" !");
        (c.to, c.from)
    } else {
        (c.from, c.to)
    };
    let _ = write!(o, " {prefix}connbytes {from}");
    if to != 0 && to < u64::MAX {
        let _ = write!(o, ":{to}");
    }
}

fn mode_name(c: &ConnbytesMatch) -> &'static str {
    match c.mode {
        Some(ConnbytesMode::Packets) => "packets",
        Some(ConnbytesMode::Bytes) => "bytes",
        Some(ConnbytesMode::Avgpkt) => "avgpkt",
        None => "unknown",
    }
}

fn dir_name(c: &ConnbytesMatch) -> &'static str {
    match c.dir {
        Some(ConnbytesDir::Original) => "original",
        Some(ConnbytesDir::Reply) => "reply",
        Some(ConnbytesDir::Both) => "both",
        None => "unknown",
    }
}

/// `connbytes_save`.
pub(crate) fn save(o: &mut String, c: &ConnbytesMatch) {
    from_to(o, c, "--");
    let _ = write!(
        o,
        " --connbytes-mode {} --connbytes-dir {}",
        mode_name(c),
        dir_name(c)
    );
}

/// `connbytes_print`.
pub(crate) fn list(o: &mut String, c: &ConnbytesMatch) {
    from_to(o, c, "");
    let _ = write!(
        o,
        " connbytes mode {} connbytes direction {}",
        mode_name(c),
        dir_name(c)
    );
}

#[cfg(test)]
mod tests {
    use crate::{parse_restore, Family};

    fn save(rule: &str) -> Result<String, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, Family::Ipv4)
            .map(|rs| rs.to_save())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ranges_and_inversion_as_the_kernel_stores_them() {
        let s = save(
            "-m connbytes ! --connbytes 10:20 --connbytes-dir original --connbytes-mode packets",
        )
        .unwrap();
        assert!(s.contains("-m connbytes ! --connbytes 10:20 --connbytes-mode packets --connbytes-dir original"), "{s}");
        let s = save("-m connbytes --connbytes 10000: --connbytes-dir both --connbytes-mode bytes")
            .unwrap();
        assert!(
            s.contains("--connbytes 10000 --connbytes-mode bytes --connbytes-dir both"),
            "{s}"
        );
        for bad in [
            "-m connbytes --connbytes 10",
            "-m connbytes --connbytes 10 --connbytes-dir both",
            "-m connbytes --connbytes 20:10 --connbytes-dir both --connbytes-mode bytes",
            "-m connbytes --connbytes x --connbytes-dir both --connbytes-mode bytes",
            "-m connbytes --connbytes 1 --connbytes-dir up --connbytes-mode bytes",
        ] {
            assert!(save(bad).is_err(), "{bad}");
        }
    }
}
