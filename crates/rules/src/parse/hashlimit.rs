//! `-m hashlimit` (`libxt_hashlimit.c` revision 3, kernel `xt_hashlimit.c`): a token bucket
//! per group of packets (by the addresses and ports `--hashlimit-mode` names), in the kernel's
//! units: the rate as `XT_HASHLIMIT_SCALE_v2` (1e6) times seconds per packet, or a byte cost.
//! The tool's final check (default expire, a byte burst in multiples of the rate,
//! `--hashlimit-rate-match` dividing the rate) runs in [`finish`] once the line is read.

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use super::time::strtoul;
use crate::ast::*;
use crate::values::{self, fail, Fail, VResult};

const UPTO: u8 = 0;
const ABOVE: u8 = 1;
const SRCMASK: u8 = 2;
const DSTMASK: u8 = 3;
const BURST: u8 = 4;
const SIZE: u8 = 5;
const MAX: u8 = 6;
const GCINTERVAL: u8 = 7;
const EXPIRE: u8 = 8;
const MODE: u8 = 9;
const NAME: u8 = 10;
const RATE_MATCH: u8 = 11;
const RATE_INTERVAL: u8 = 12;

/// `XT_HASHLIMIT_SCALE_v2`.
pub const SCALE: u64 = 1_000_000;
/// `XT_HASHLIMIT_BYTE_SHIFT`: bytes are counted in chunks of 16.
pub const BYTE_SHIFT: u32 = 4;
const BURST_MAX: u64 = 1_000_000;
/// `XT_HASHLIMIT_GCINTERVAL` (ms).
pub const GCINTERVAL_DEFAULT: u32 = 1000;
/// `HASHLIMIT_MAX_SIZE`: the kernel refuses a larger `--hashlimit-htable-size` or `-max`.
pub const MAX_SIZE: u32 = 1_048_576;
/// `XT_HASHLIMIT_NAME_LEN`: the name and its NUL.
const NAME_LEN: usize = 16;
/// The kernel's credits per second (`HZ * CREDITS_PER_JIFFY`; the same for HZ 100, 250, 1000).
pub const CREDITS_PER_SEC: u64 = 137_438_953_472_000;
/// Byte credits per second (`HZ * CREDITS_PER_JIFFY_BYTES`).
pub const BYTE_CREDITS_PER_SEC: u64 = 4_194_304_000;

/// Flags of the options given, kept in the match until [`finish`] (the tool's `xflags`).
const F_BURST: u32 = 1 << 28;
const F_EXPIRE: u32 = 1 << 29;
const F_RATEMATCH: u32 = 1 << 30;
const F_RATE: u32 = 1 << 31;
const F_ALL: u32 = F_BURST | F_EXPIRE | F_RATEMATCH | F_RATE;

/// `udata->mult`: 1, 60, 3600, 86400 for a packet rate, 15 for a byte rate; kept in bits 8-25
/// of `mode` until [`finish`].
const MULT_SHIFT: u32 = 8;
const MULT_MASK: u32 = 0x3ffff << MULT_SHIFT;

pub(super) const HASHLIMIT: MatchExt = MatchExt {
    name: "hashlimit",
    family: None,
    opts: &[
        ("hashlimit-upto", UPTO, 1, true),
        ("hashlimit-above", ABOVE, 1, true),
        ("hashlimit", UPTO, 1, true),
        ("hashlimit-srcmask", SRCMASK, 1, false),
        ("hashlimit-dstmask", DSTMASK, 1, false),
        ("hashlimit-burst", BURST, 1, false),
        ("hashlimit-htable-size", SIZE, 1, false),
        ("hashlimit-htable-max", MAX, 1, false),
        ("hashlimit-htable-gcinterval", GCINTERVAL, 1, false),
        ("hashlimit-htable-expire", EXPIRE, 1, false),
        ("hashlimit-mode", MODE, 1, false),
        ("hashlimit-name", NAME, 1, false),
        ("hashlimit-rate-match", RATE_MATCH, 0, false),
        ("hashlimit-rate-interval", RATE_INTERVAL, 1, false),
    ],
    exclusive: &[UPTO, ABOVE],
    new: || {
        Match::Hashlimit(HashlimitMatch {
            mode: 0,
            avg: 0,
            burst: 5,
            size: 0,
            max: 0,
            gc_interval: GCINTERVAL_DEFAULT,
            expire: 0,
            srcmask: 32,
            dstmask: 32,
            interval: 0,
            name: String::new(),
            family: Family::Ipv4,
        })
    },
    apply,
    required: Some("--hashlimit-name"),
    proto: None,
    check: Some(check),
};

fn width(f: Family) -> u8 {
    match f {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    }
}

/// `atoll`: leading digits (with a sign) as a number.
fn atoll(s: &str) -> u64 {
    strtoul(s, 10).0
}

/// `cost_to_bytes`: the bytes per second a byte cost stands for.
pub fn cost_to_bytes(cost: u64) -> u64 {
    let r = u64::from(u32::MAX)
        .checked_div(cost)
        .unwrap_or(u64::from(u32::MAX));
    r.wrapping_sub(1) << BYTE_SHIFT
}

/// `bytes_to_cost`.
pub fn bytes_to_cost(bytes: u64) -> u64 {
    let r = (bytes >> BYTE_SHIFT) as u32;
    u64::from(u32::MAX / r.wrapping_add(1).max(1))
}

fn factor(c: Option<u8>) -> u64 {
    match c {
        Some(b'm') => 1024 * 1024,
        Some(b'k') => 1024,
        _ => 1,
    }
}

/// `parse_bytes`: `N[k|m]b/s` as a byte cost, or `None` when it is not a byte rate.
fn parse_bytes(s: &str) -> VResult<Option<u64>> {
    let Some(pos) = s.find("b/s").filter(|&p| p > 0) else {
        return Ok(None);
    };
    let r = atoll(s);
    if r == 0 {
        return Ok(None);
    }
    let tmp = r.wrapping_mul(factor(s.as_bytes().get(pos - 1).copied()));
    let cost = bytes_to_cost(tmp);
    if cost == 0 {
        return fail(format!("rate too high `{s}`"));
    }
    Ok(Some(cost))
}

/// `parse_rate`: `N[/second|minute|hour|day]` (any prefix of the unit) as `(avg, mult)`.
fn parse_rate(s: &str) -> VResult<(u64, u64)> {
    let bad = || {
        fail(format!(
            "bad rate `{s}`: expected N/sec, N/min, N/hour, N/day or N[k|m]b/s"
        ))
    };
    let mut mult = 1;
    if let Some((_, unit)) = s.split_once('/') {
        let is = |full: &str| {
            full.len() >= unit.len()
                && full.as_bytes()[..unit.len()].eq_ignore_ascii_case(unit.as_bytes())
        };
        mult = if unit.is_empty() {
            return bad();
        } else if is("second") {
            1
        } else if is("minute") {
            60
        } else if is("hour") {
            3600
        } else if is("day") {
            86400
        } else {
            return bad();
        };
    }
    let r = atoll(s);
    if r == 0 {
        return bad();
    }
    let avg = SCALE * mult / r;
    if avg == 0 {
        return fail(format!("rate too fast `{s}`"));
    }
    Ok((avg, mult))
}

/// `parse_burst`: a number with an optional `k`/`m` factor (bytes: `1mb`).
fn parse_burst(s: &str) -> VResult<u64> {
    let bad = || {
        fail(format!(
            "bad value for --hashlimit-burst `{s}`: expected 1-{BURST_MAX}"
        ))
    };
    let (v, end) = strtoul(s, 0);
    if end.len() == s.len() || s.trim_start().starts_with('-') || v < 1 {
        return bad();
    }
    if end.is_empty() && v > BURST_MAX {
        return bad();
    }
    Ok(v.saturating_mul(factor(end.as_bytes().first().copied())))
}

fn parse_mode(s: &str) -> VResult<u32> {
    let mut m = 0;
    for tok in s.split([',', '|']).filter(|t| !t.is_empty()) {
        m |= match tok {
            "dstip" => hashlimit_mode::DSTIP,
            "srcip" => hashlimit_mode::SRCIP,
            "srcport" => hashlimit_mode::SRCPORT,
            "dstport" => hashlimit_mode::DSTPORT,
            _ => {
                return fail(format!(
                    "bad --hashlimit-mode `{s}`: expected a list of srcip, srcport, dstip, dstport"
                ))
            }
        };
    }
    Ok(m)
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Hashlimit(h) = m else {
        return fail("option not valid here");
    };
    if h.family != a.family {
        h.family = a.family;
        h.srcmask = width(a.family);
        h.dstmask = width(a.family);
    }
    match a.id {
        UPTO | ABOVE => {
            if (a.id == UPTO) == a.neg {
                h.mode |= hashlimit_mode::INVERT;
            }
            let mult = if let Some(cost) = parse_bytes(a.value)? {
                h.mode |= hashlimit_mode::BYTES;
                h.avg = cost;
                15
            } else {
                let (avg, mult) = parse_rate(a.value)?;
                h.avg = avg;
                mult
            };
            h.mode = (h.mode & !MULT_MASK) | ((mult as u32) << MULT_SHIFT) | F_RATE;
        }
        SRCMASK | DSTMASK => {
            let v = values::u32_any_base(a.value, "prefix length")?;
            if v > u32::from(width(a.family)) {
                return fail(format!(
                    "prefix length `{}` out of range: expected 0-{}",
                    a.value,
                    width(a.family)
                ));
            }
            if a.id == SRCMASK {
                h.srcmask = v as u8;
            } else {
                h.dstmask = v as u8;
            }
        }
        BURST => {
            h.burst = parse_burst(a.value)?;
            h.mode |= F_BURST;
        }
        SIZE => h.size = values::u32_any_base(a.value, "--hashlimit-htable-size")?,
        MAX => h.max = values::u32_any_base(a.value, "--hashlimit-htable-max")?,
        GCINTERVAL => {
            h.gc_interval = values::u32_any_base(a.value, "--hashlimit-htable-gcinterval")?
        }
        EXPIRE => {
            h.expire = values::u32_any_base(a.value, "--hashlimit-htable-expire")?;
            h.mode |= F_EXPIRE;
        }
        MODE => h.mode |= parse_mode(a.value)?,
        NAME => {
            if a.value.is_empty() || a.value.len() >= NAME_LEN {
                return fail(format!(
                    "the table name must have 1 to {} bytes",
                    NAME_LEN - 1
                ));
            }
            h.name = a.value.to_string();
        }
        RATE_MATCH => h.mode |= hashlimit_mode::RATE_MATCH | F_RATEMATCH,
        _ => {
            let r = atoll(a.value) as i64 as i32;
            if r <= 0 {
                return fail(format!(
                    "bad --hashlimit-rate-interval `{}`: expected a number of seconds",
                    a.value
                ));
            }
            h.interval = r as u32;
        }
    }
    Ok(())
}

fn located(word: &'static str, msg: String) -> Result<(), Located> {
    Err((word, Fail { msg, hint: None }))
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Hashlimit(h) = m else {
        return Ok(());
    };
    if h.name.is_empty() {
        return located(
            "hashlimit",
            "hashlimit: option --hashlimit-name must be specified".into(),
        );
    }
    if h.mode & F_RATE == 0 {
        return located(
            "hashlimit",
            "hashlimit: you have to specify --hashlimit-upto or --hashlimit-above".into(),
        );
    }
    if h.mode & hashlimit_mode::BYTES != 0 {
        if h.mode & F_BURST != 0 && h.burst < cost_to_bytes(h.avg) {
            return located(
                "--hashlimit-burst",
                format!("burst cannot be smaller than {}b", cost_to_bytes(h.avg)),
            );
        }
    } else if h.burst > BURST_MAX {
        return located(
            "--hashlimit-burst",
            format!("bad value for --hashlimit-burst: expected 1-{BURST_MAX}"),
        );
    }
    if h.size > MAX_SIZE || h.max > MAX_SIZE {
        return located(
            "hashlimit",
            format!("the kernel refuses a hash table size above {MAX_SIZE}"),
        );
    }
    if h.gc_interval == 0 || (h.mode & F_EXPIRE != 0 && h.expire == 0) {
        return located(
            "hashlimit",
            "the kernel refuses a gcinterval or expire of 0".into(),
        );
    }
    Ok(())
}

/// The tool's final check, once the line is read and [`check`] passed, and the kernel's
/// overflow check (which needs the final values).
pub(super) fn finish(m: &mut Match) -> Result<(), Fail> {
    let Match::Hashlimit(h) = m else {
        return Ok(());
    };
    let given = h.mode & F_ALL;
    let mult = u64::from((h.mode & MULT_MASK) >> MULT_SHIFT).max(1);
    h.mode &= !(F_ALL | MULT_MASK);
    if given & F_EXPIRE == 0 {
        h.expire = (mult * 1000) as u32;
    }
    if h.mode & hashlimit_mode::BYTES != 0 {
        let mut burst: u32 = 0;
        if given & F_BURST != 0 {
            let per = cost_to_bytes(h.avg);
            burst = (h.burst / per) as u32;
            if h.burst % per != 0 {
                burst = burst.wrapping_add(1);
            }
            if given & F_EXPIRE == 0 {
                h.expire = 60 * 1000;
            }
        }
        h.burst = u64::from(burst);
    }
    if given & F_RATEMATCH != 0 {
        if h.mode & hashlimit_mode::BYTES == 0 {
            h.avg /= mult;
        }
        if h.interval == 0 {
            h.interval = if h.mode & hashlimit_mode::BYTES != 0 {
                1
            } else {
                mult as u32
            };
        }
    }
    // hashlimit_mt_check_common
    if h.mode & hashlimit_mode::BYTES != 0 {
        if (h.avg as u32 as u64 * BYTE_CREDITS_PER_SEC) >> 32 == 0 {
            return fail("the kernel refuses the byte rate: too high");
        }
    } else if h.burst == 0 || user2credits(h.avg.wrapping_mul(h.burst)) < user2credits(h.avg) {
        return fail(format!(
            "the kernel refuses the rate and burst (overflow, try lower: {}/{})",
            h.avg, h.burst
        ));
    }
    Ok(())
}

/// `user2credits` (revision 2 and 3): credits of `user` (the `avg` unit).
pub fn user2credits(user: u64) -> u64 {
    user.wrapping_mul(CREDITS_PER_SEC / SCALE)
}

const RATES: [(&str, u64); 4] = [
    ("day", SCALE * 24 * 60 * 60),
    ("hour", SCALE * 60 * 60),
    ("min", SCALE * 60),
    ("sec", SCALE),
];

/// `print_rate`: the rate and the default expire it implies (ms).
fn print_rate(o: &mut String, period: u64) -> u64 {
    if period == 0 {
        o.push_str(" inf");
        return 0;
    }
    let mut i = 1;
    while i < RATES.len() {
        let m = RATES[i].1;
        if period > m || m / period < m % period {
            break;
        }
        i += 1;
    }
    let _ = write!(o, " {}/{}", RATES[i - 1].1 / period, RATES[i - 1].0);
    RATES[i - 1].1 / SCALE * 1000
}

const UNITS: [(&str, u64); 3] = [("m", 1024 * 1024), ("k", 1024), ("", 1)];

/// `print_bytes`.
fn print_bytes(o: &mut String, avg: u64, burst: u64, prefix: &str) -> u64 {
    let mut r = cost_to_bytes(avg);
    let mut i = 0;
    while i < UNITS.len() - 1 {
        if r >= UNITS[i].1 && bytes_to_cost(r & !(UNITS[i].1 - 1)) == avg {
            break;
        }
        i += 1;
    }
    let _ = write!(o, " {}{}b/s", r / UNITS[i].1, UNITS[i].0);
    if burst == 0 {
        return 15 * 1000;
    }
    r = r.wrapping_mul(burst);
    let _ = write!(o, " {prefix}");
    let mut i = 0;
    while i < UNITS.len() - 1 {
        if r >= UNITS[i].1 {
            break;
        }
        i += 1;
    }
    let _ = write!(o, "burst {}{}b", r / UNITS[i].1, UNITS[i].0);
    60 * 1000
}

fn print_mode(o: &mut String, mode: u32, sep: char) {
    let names: Vec<&str> = [
        (hashlimit_mode::SRCIP, "srcip"),
        (hashlimit_mode::SRCPORT, "srcport"),
        (hashlimit_mode::DSTIP, "dstip"),
        (hashlimit_mode::DSTPORT, "dstport"),
    ]
    .iter()
    .filter(|(b, _)| mode & b != 0)
    .map(|(_, n)| *n)
    .collect();
    o.push(' ');
    o.push_str(&names.join(&sep.to_string()));
}

/// `hashlimit_mt_save`.
pub(crate) fn save(o: &mut String, h: &HashlimitMatch) {
    o.push_str(if h.mode & hashlimit_mode::INVERT != 0 {
        " --hashlimit-above"
    } else {
        " --hashlimit-upto"
    });
    let quantum = if h.mode & hashlimit_mode::BYTES != 0 {
        print_bytes(o, h.avg, h.burst, "--hashlimit-")
    } else {
        let q = print_rate(o, h.avg);
        let _ = write!(o, " --hashlimit-burst {}", h.burst);
        q
    };
    if h.mode & hashlimit_mode::HASH != 0 {
        o.push_str(" --hashlimit-mode");
        print_mode(o, h.mode, ',');
    }
    let _ = write!(o, " --hashlimit-name {}", h.name);
    tail(o, h, quantum, "--hashlimit-");
}

fn tail(o: &mut String, h: &HashlimitMatch, quantum: u64, p: &str) {
    if h.size != 0 {
        let _ = write!(o, " {p}htable-size {}", h.size);
    }
    if h.max != 0 {
        let _ = write!(o, " {p}htable-max {}", h.max);
    }
    if h.gc_interval != GCINTERVAL_DEFAULT {
        let _ = write!(o, " {p}htable-gcinterval {}", h.gc_interval);
    }
    if u64::from(h.expire) != quantum {
        let _ = write!(o, " {p}htable-expire {}", h.expire);
    }
    let w = width(h.family);
    if h.srcmask != w {
        let _ = write!(o, " {p}srcmask {}", h.srcmask);
    }
    if h.dstmask != w {
        let _ = write!(o, " {p}dstmask {}", h.dstmask);
    }
    if h.mode & hashlimit_mode::RATE_MATCH != 0 {
        let _ = write!(o, " {p}rate-match");
        if h.interval != 1 {
            let _ = write!(o, " {p}rate-interval {}", h.interval);
        }
    }
}

/// `hashlimit_mt_print` (`-L`).
pub(crate) fn list(o: &mut String, h: &HashlimitMatch) {
    o.push_str(if h.mode & hashlimit_mode::INVERT != 0 {
        " limit: above"
    } else {
        " limit: up to"
    });
    let quantum = if h.mode & hashlimit_mode::BYTES != 0 {
        print_bytes(o, h.avg, h.burst, "")
    } else {
        let period = if h.interval != 0 {
            h.avg.wrapping_mul(u64::from(h.interval))
        } else {
            h.avg
        };
        let q = print_rate(o, period);
        let _ = write!(o, " burst {}", h.burst);
        q
    };
    if h.mode & hashlimit_mode::HASH != 0 {
        o.push_str(" mode");
        print_mode(o, h.mode, '-');
    }
    tail(o, h, quantum, "");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_restore, Family};

    fn one(rule: &str, family: Family) -> Result<HashlimitMatch, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, family)
            .map(|rs| match rs.tables[0].chains[1].rules[0].matches.last() {
                Some(Match::Hashlimit(h)) => h.clone(),
                m => panic!("{m:?}"),
            })
            .map_err(|e| e.to_string())
    }

    fn texts(h: &HashlimitMatch) -> (String, String) {
        let (mut s, mut l) = (String::new(), String::new());
        save(&mut s, h);
        list(&mut l, h);
        (s, l)
    }

    #[test]
    fn kernel_units_and_defaults() {
        let h = one(
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-name foo",
            Family::Ipv4,
        )
        .unwrap();
        assert_eq!(
            (h.avg, h.burst, h.expire, h.gc_interval),
            (100_000, 5, 1000, 1000)
        );
        assert_eq!(
            texts(&h),
            (
                " --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name foo".into(),
                " limit: up to 10/sec burst 5".into()
            )
        );
        let h = one(
            "-m hashlimit --hashlimit-above 100/min --hashlimit-burst 20 --hashlimit-mode srcip,dstport --hashlimit-name bar --hashlimit-srcmask 24",
            Family::Ipv4,
        )
        .unwrap();
        assert_eq!(
            h.mode,
            hashlimit_mode::INVERT | hashlimit_mode::SRCIP | hashlimit_mode::DSTPORT
        );
        assert_eq!((h.avg, h.expire), (600_000, 60_000));
        assert_eq!(
            texts(&h).1,
            " limit: above 100/min burst 20 mode srcip-dstport srcmask 24"
        );
    }

    #[test]
    fn byte_rates_and_rate_match_quirks() {
        let h = one(
            "-m hashlimit --hashlimit-upto 512kb/s --hashlimit-burst 1mb --hashlimit-name b2",
            Family::Ipv4,
        )
        .unwrap();
        assert_eq!(h.mode, hashlimit_mode::BYTES);
        assert_eq!(h.expire, 60_000);
        assert_eq!(
            texts(&h),
            (
                " --hashlimit-upto 512kb/s --hashlimit-burst 1mb --hashlimit-name b2".into(),
                " limit: up to 512kb/s burst 1mb".into()
            )
        );
        let h = one(
            "-m hashlimit --hashlimit-upto 1mb/s --hashlimit-name b1",
            Family::Ipv4,
        )
        .unwrap();
        assert_eq!((h.burst, h.expire), (0, 15_000));
        assert_eq!(texts(&h).0, " --hashlimit-upto 1mb/s --hashlimit-name b1");
        // -L multiplies the divided rate by the interval: 10/sec over 5 s shows as 2/sec
        let h = one("-m hashlimit --hashlimit-upto 10/sec --hashlimit-name r1 --hashlimit-rate-match --hashlimit-rate-interval 5", Family::Ipv4).unwrap();
        assert_eq!(
            texts(&h),
            (
                " --hashlimit-upto 10/sec --hashlimit-burst 5 --hashlimit-name r1 --hashlimit-rate-match --hashlimit-rate-interval 5".into(),
                " limit: up to 2/sec burst 5 rate-match rate-interval 5".into()
            )
        );
        let h = one("-m hashlimit --hashlimit-upto 5/min --hashlimit-name x --hashlimit-srcmask 64 --hashlimit-mode srcip", Family::Ipv6).unwrap();
        assert_eq!(
            texts(&h).1,
            " limit: up to 5/min burst 5 mode srcip srcmask 64"
        );
    }

    #[test]
    fn what_the_tool_and_kernel_refuse() {
        for bad in [
            "-m hashlimit --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10/sec",
            "-m hashlimit --hashlimit-upto 10/sec --hashlimit-above 3 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10/fortnight --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 0 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-name sixteen_bytes_xx",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-mode none --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-burst 0 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-burst 1000001 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-srcmask 33 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 10 --hashlimit-htable-gcinterval 0 --hashlimit-name x",
            "-m hashlimit --hashlimit-upto 1kb/s --hashlimit-burst 10 --hashlimit-name x",
        ] {
            assert!(one(bad, Family::Ipv4).is_err(), "{bad}");
        }
        assert!(one(
            "-m hashlimit --hashlimit-upto 10 --hashlimit-burst 1k --hashlimit-name x",
            Family::Ipv4
        )
        .is_ok());
        assert!(one(
            "-m hashlimit --hashlimit-upto 10 --hashlimit-srcmask 100 --hashlimit-name x",
            Family::Ipv6
        )
        .is_ok());
    }
}
