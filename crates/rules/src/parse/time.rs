//! `-m time` (`libxt_time.c`, kernel `xt_time.c`): daytimes, dates, weekdays and monthdays,
//! parsed exactly as iptables 1.8.9 does, quirks included (a weekday is its first two
//! letters, a monthday its first two characters, `--weekdays 8` loads and never matches, a date
//! is normalised as `mktime` does: `2026-02-30` is March 2nd).

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{fail, Fail, VResult};

const DATESTART: u8 = 0;
const DATESTOP: u8 = 1;
const TIMESTART: u8 = 2;
const TIMESTOP: u8 = 3;
const MONTHDAYS: u8 = 4;
const WEEKDAYS: u8 = 5;
const LOCALTZ: u8 = 6;
const UTC: u8 = 7;
const CONTIGUOUS: u8 = 8;

pub(super) const TIME: MatchExt = MatchExt {
    name: "time",
    family: None,
    opts: &[
        ("datestart", DATESTART, 1, false),
        ("datestop", DATESTOP, 1, false),
        ("timestart", TIMESTART, 1, false),
        ("timestop", TIMESTOP, 1, false),
        ("monthdays", MONTHDAYS, 1, true),
        ("weekdays", WEEKDAYS, 1, true),
        ("localtz", LOCALTZ, 0, false),
        ("kerneltz", LOCALTZ, 0, false),
        ("utc", UTC, 0, false),
        ("contiguous", CONTIGUOUS, 0, false),
    ],
    exclusive: &[LOCALTZ, UTC],
    new: || Match::Time(TimeMatch::DEFAULT),
    apply,
    required: None,
    proto: None,
    check: Some(check),
};

const WEEK_DAYS: [&str; 8] = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `strtoul(s, &e, base)`: the value (wrapping as C's does past `u64`) and the rest; no digit
/// gives 0 and all of `s`.
pub(super) fn strtoul(s: &str, base: u32) -> (u64, &str) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, body) = if base == 0 {
        match t.as_bytes() {
            [b'0', b'x' | b'X', h, ..] if h.is_ascii_hexdigit() => (16, &t[2..]),
            [b'0', ..] => (8, t),
            _ => (10, t),
        }
    } else {
        (base, t)
    };
    let n = body
        .bytes()
        .take_while(|c| char::from(*c).is_digit(radix))
        .count();
    if n == 0 {
        return (0, s);
    }
    let mut v: u64 = 0;
    for c in body[..n].chars() {
        v = v
            .saturating_mul(u64::from(radix))
            .saturating_add(u64::from(c.to_digit(radix).unwrap_or(0)));
    }
    (if neg { v.wrapping_neg() } else { v }, &body[n..])
}

/// `time_parse_minutes`: `hh:mm[:ss]`.
fn daytime(s: &str) -> VResult<u32> {
    let bad = || -> VResult<u32> {
        fail(format!(
            "invalid time `{s}`: expected hh:mm[:ss] within the day"
        ))
    };
    let (h, e) = strtoul(s, 10);
    let Some(e) = e.strip_prefix(':').filter(|_| h <= 23) else {
        return bad();
    };
    let (m, e) = strtoul(e, 10);
    if m > 59 {
        return bad();
    }
    let sec = match e.strip_prefix(':') {
        None if e.is_empty() => 0,
        None => return bad(),
        Some(e) => {
            let (sec, e) = strtoul(e, 10);
            if !e.is_empty() || sec > 59 {
                return bad();
            }
            sec
        }
    };
    Ok((h * 3600 + m * 60 + sec) as u32)
}

/// Days from 1970-01-01 to `y-m-d` (proleptic Gregorian; `m`, `d` may be out of range and are
/// normalised, as `mktime` normalises them).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // normalise the month first (mktime carries it into the year)
    let y = y + (m - 1).div_euclid(12);
    let m = (m - 1).rem_euclid(12) + 1;
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468 + (d - 1)
}

/// `(year, month, day, hour, minute, second)` of seconds since the epoch (UTC).
pub fn civil(t: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// `time_parse_date`: `YYYY[-MM[-DD[Thh[:mm[:ss]]]]]`, years 1970-2038, as UTC.
fn date(s: &str) -> VResult<u32> {
    let bad = || -> VResult<u32> {
        fail(format!(
            "invalid date `{s}`: expected YYYY[-MM[-DD[Thh[:mm[:ss]]]]], years 1970 to 2038"
        ))
    };
    // (value, separator that may follow, maximum)
    let mut parts = [1970u64, 1, 1, 0, 0, 0];
    let seps = ['-', '-', 'T', ':', ':'];
    let maxes = [2038u64, 12, 31, 23, 59, 59];
    let mut rest = s;
    for i in 0..6 {
        let (v, e) = strtoul(rest, 10);
        if (i == 0 && v < 1970) || v > maxes[i] {
            return bad();
        }
        parts[i] = v;
        if e.is_empty() {
            break;
        }
        if i == 5 || !e.starts_with(seps[i]) {
            return bad();
        }
        rest = &e[1..];
    }
    let days = days_from_civil(parts[0] as i64, parts[1] as i64, parts[2] as i64);
    let t = days * 86_400 + (parts[3] * 3600 + parts[4] * 60 + parts[5]) as i64;
    if t < 0 {
        return fail(format!("invalid date `{s}`: before 1970"));
    }
    Ok(t as u32)
}

/// `my_strseg`: the segments of `s` split at `,`, each cut to `keep` bytes; an empty input
/// has none, a trailing `,` adds none.
fn segments(s: &str, keep: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (seg, next) = match rest.split_once(',') {
            Some((a, b)) => (a, b),
            None => (rest, ""),
        };
        let mut end = seg.len().min(keep);
        while !seg.is_char_boundary(end) {
            end -= 1;
        }
        out.push(&seg[..end]);
        rest = next;
    }
    out
}

fn weekdays(s: &str) -> VResult<u8> {
    let mut ret: u32 = 0;
    for day in segments(s, 3) {
        let (i, e) = strtoul(day, 0);
        if !e.is_empty() {
            let mut valid = false;
            for (n, name) in WEEK_DAYS.iter().enumerate().skip(1) {
                // strncmp(day, name, 2)
                let a = day.as_bytes();
                let b = name.as_bytes();
                if (0..2).all(|k| a.get(k).copied().unwrap_or(0) == b[k]) {
                    ret |= 1 << n;
                    valid = true;
                }
            }
            if !valid {
                return fail(format!("`{day}` is not a valid day specifier"));
            }
        } else {
            if i == 0 {
                return fail("no, the week does not begin with Sunday (days are 1-7)");
            }
            // `1 << i` of a C int, as x86 shifts it
            ret |= 1u32 << (i & 31);
        }
    }
    // the kernel's field is a u8
    Ok(ret as u8)
}

fn monthdays(s: &str) -> VResult<u32> {
    let mut ret = 0u32;
    for day in segments(s, 2) {
        let (i, e) = strtoul(day, 0);
        if !e.is_empty() || i > 31 {
            return fail(format!("`{day}` is not a valid day for --monthdays"));
        }
        ret |= 1 << i;
    }
    Ok(ret)
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Time(t) = m else {
        return fail("option not valid here");
    };
    match a.id {
        DATESTART => t.date_start = date(a.value)?,
        DATESTOP => t.date_stop = date(a.value)?,
        TIMESTART => t.daytime_start = daytime(a.value)?,
        TIMESTOP => t.daytime_stop = daytime(a.value)?,
        MONTHDAYS => {
            t.monthdays = monthdays(a.value)?;
            if a.neg {
                t.monthdays ^= TIME_ALL_MONTHDAYS;
            }
        }
        WEEKDAYS => {
            t.weekdays = weekdays(a.value)?;
            if a.neg {
                t.weekdays ^= TIME_ALL_WEEKDAYS;
            }
        }
        LOCALTZ => t.kerneltz = true,
        UTC => t.kerneltz = false,
        _ => t.contiguous = true,
    }
    Ok(())
}

fn check(m: &Match) -> Result<(), Located> {
    let Match::Time(t) = m else {
        return Ok(());
    };
    if t.contiguous && t.daytime_start < t.daytime_stop {
        return Err((
            "--contiguous",
            Fail {
                msg: "time: --contiguous only makes sense when stoptime is smaller than starttime"
                    .into(),
                hint: None,
            },
        ));
    }
    Ok(())
}

fn hms(o: &mut String, t: u32) {
    let _ = write!(o, "{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
}

fn print_weekdays(o: &mut String, mask: u8) {
    o.push(' ');
    let names: Vec<&str> = (1..=7)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| WEEK_DAYS[i])
        .collect();
    o.push_str(&names.join(","));
}

fn print_monthdays(o: &mut String, mask: u32, human: bool) {
    o.push(' ');
    let days: Vec<String> = (1..=31u32)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| {
            let suffix = match (human, i % 10) {
                (false, _) => "",
                (true, 1) => "st",
                (true, 2) => "nd",
                (true, 3) => "rd",
                (true, _) => "th",
            };
            format!("{i}{suffix}")
        })
        .collect();
    o.push_str(&days.join(","));
}

fn print_date(o: &mut String, t: u32, sep: char) {
    let (y, mo, d, h, mi, s) = civil(u64::from(t));
    let _ = write!(o, " {y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}");
}

/// `time_save`.
pub(crate) fn save(o: &mut String, t: &TimeMatch) {
    if t.daytime_start != 0 || t.daytime_stop != TIME_MAX_DAYTIME {
        o.push_str(" --timestart ");
        hms(o, t.daytime_start);
        o.push_str(" --timestop ");
        hms(o, t.daytime_stop);
    }
    if t.monthdays != TIME_ALL_MONTHDAYS {
        o.push_str(" --monthdays");
        print_monthdays(o, t.monthdays, false);
    }
    if t.weekdays != TIME_ALL_WEEKDAYS {
        o.push_str(" --weekdays");
        print_weekdays(o, t.weekdays);
    }
    // `time_print_date` skips 0 and LONG_MAX (never the u32 `INT_MAX` default: 1.8.9 prints it)
    if t.date_start != 0 {
        o.push_str(" --datestart");
        print_date(o, t.date_start, 'T');
    }
    if t.date_stop != 0 {
        o.push_str(" --datestop");
        print_date(o, t.date_stop, 'T');
    }
    if t.kerneltz {
        o.push_str(" --kerneltz");
    }
    if t.contiguous {
        o.push_str(" --contiguous");
    }
}

/// `time_print` (`-L`).
pub(crate) fn list(o: &mut String, t: &TimeMatch) {
    o.push_str(" TIME");
    if t.daytime_start != 0 || t.daytime_stop != TIME_MAX_DAYTIME {
        o.push_str(" from ");
        hms(o, t.daytime_start);
        o.push_str(" to ");
        hms(o, t.daytime_stop);
    }
    if t.weekdays != TIME_ALL_WEEKDAYS {
        o.push_str(" on");
        print_weekdays(o, t.weekdays);
    }
    if t.monthdays != TIME_ALL_MONTHDAYS {
        o.push_str(" on");
        print_monthdays(o, t.monthdays, true);
    }
    if t.date_start != 0 {
        o.push_str(" starting from");
        print_date(o, t.date_start, ' ');
    }
    if t.date_stop != TIME_DATE_STOP_DEFAULT {
        o.push_str(" until date");
        print_date(o, t.date_stop, ' ');
    }
    if !t.kerneltz {
        o.push_str(" UTC");
    }
    if t.contiguous {
        o.push_str(" contiguous");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_restore, Family};

    fn one(rule: &str) -> Result<TimeMatch, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, Family::Ipv4)
            .map(|rs| match rs.tables[0].chains[1].rules[0].matches.last() {
                Some(Match::Time(t)) => *t,
                m => panic!("{m:?}"),
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn dates_as_mktime_normalises_them() {
        assert_eq!(date("2026").unwrap(), 1_767_225_600);
        assert_eq!(date("2026-01-01T00:00:00").unwrap(), 1_767_225_600);
        // 2026-02-30 is 2026-03-02, 2026-00-00 is 2025-11-30
        assert_eq!(civil(u64::from(date("2026-02-30").unwrap())).1, 3);
        assert_eq!(
            civil(u64::from(date("2026-00-00").unwrap())),
            (2025, 11, 30, 0, 0, 0)
        );
        assert_eq!(date("2038-01-19T03:14:07").unwrap(), i32::MAX as u32);
        assert_eq!(
            date("2026-5-6T7").unwrap(),
            date("2026-05-06T07:00:00").unwrap()
        );
        for bad in [
            "1969-01-01",
            "2039",
            "2026-13",
            "2026-01-01T24",
            "x",
            "2026-01-01T1:2:3:4",
        ] {
            assert!(date(bad).is_err(), "{bad}");
        }
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn days_and_times_as_the_tool_reads_them() {
        assert_eq!(weekdays("Mon,Tue").unwrap(), 0b110);
        assert_eq!(weekdays("Monday,Su").unwrap(), 0b1000_0010);
        assert_eq!(
            weekdays("Mo,32").unwrap(),
            0b11,
            "1 << 32 is 1 << 0 on x86: not printed"
        );
        assert_eq!(weekdays("8").unwrap(), 0, "loads, matches nothing");
        assert!(weekdays("tu").is_err());
        assert!(weekdays("M").is_err());
        assert!(weekdays("0").is_err());
        assert!(weekdays("Mon,,Tue").is_err());
        assert_eq!(monthdays("100").unwrap(), 1 << 10);
        assert!(monthdays("32").is_err());
        assert_eq!(daytime("1:2:3").unwrap(), 3723);
        assert!(daytime("24:00").is_err());
        assert!(daytime("10").is_err());
        assert!(daytime("23:59:60").is_err());
        let t = one("-m time ! --weekdays Sat,Sun").unwrap();
        assert_eq!(t.weekdays, 0b0011_1110);
        assert!(one("-m time --timestart 08:00 --timestop 09:00 --contiguous").is_err());
        assert!(one("-m time --contiguous").is_err());
        assert!(one("-m time --timestart 22:00 --timestop 06:00 --contiguous").is_ok());
        assert!(one("-m time ! --timestart 10:00").is_err());
    }

    #[test]
    fn prints_as_iptables_1_8_9() {
        let t = one("-m time --weekdays Mon --monthdays 2 --timestart 10:00").unwrap();
        let mut s = String::new();
        save(&mut s, &t);
        assert_eq!(
            s,
            " --timestart 10:00:00 --timestop 23:59:59 --monthdays 2 --weekdays Mon --datestop 2038-01-19T03:14:07"
        );
        let mut l = String::new();
        list(&mut l, &t);
        assert_eq!(l, " TIME from 10:00:00 to 23:59:59 on Mon on 2nd UTC");
    }
}
