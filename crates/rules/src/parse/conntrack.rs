//! `-m state --state` and `-m conntrack` (`libxt_state.c`, `libxt_conntrack.c` revision 3,
//! kernel `xt_conntrack.c`): the state bits, and the connection's protocol, tuples, status,
//! remaining lifetime and the packet's direction. Addresses keep their host bits and a reversed
//! port or expire range loads (and never matches), as iptables keeps them.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::registry::{MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, VResult};

const STATE_OPT: u8 = 0;
const CTSTATE: u8 = 1;
const CTPROTO: u8 = 2;
const ORIGSRC: u8 = 3;
const ORIGDST: u8 = 4;
const REPLSRC: u8 = 5;
const REPLDST: u8 = 6;
const ORIGSRCPORT: u8 = 7;
const ORIGDSTPORT: u8 = 8;
const REPLSRCPORT: u8 = 9;
const REPLDSTPORT: u8 = 10;
const CTSTATUS: u8 = 11;
const CTEXPIRE: u8 = 12;
const CTDIR: u8 = 13;

pub(super) const STATE: MatchExt = MatchExt {
    name: "state",
    family: None,
    opts: &[("state", STATE_OPT, 1, true)],
    exclusive: &[],
    new: || {
        Match::State(StateMatch {
            states: 0,
            negated: false,
        })
    },
    apply,
    required: Some("--state"),
    proto: None,
    check: None,
};

pub(super) const CONNTRACK: MatchExt = MatchExt {
    name: "conntrack",
    family: None,
    opts: &[
        ("ctstate", CTSTATE, 1, true),
        ("ctproto", CTPROTO, 1, true),
        ("ctorigsrc", ORIGSRC, 1, true),
        ("ctorigdst", ORIGDST, 1, true),
        ("ctreplsrc", REPLSRC, 1, true),
        ("ctrepldst", REPLDST, 1, true),
        ("ctorigsrcport", ORIGSRCPORT, 1, true),
        ("ctorigdstport", ORIGDSTPORT, 1, true),
        ("ctreplsrcport", REPLSRCPORT, 1, true),
        ("ctrepldstport", REPLDSTPORT, 1, true),
        ("ctstatus", CTSTATUS, 1, true),
        ("ctexpire", CTEXPIRE, 1, true),
        ("ctdir", CTDIR, 1, false),
    ],
    exclusive: &[],
    new: || Match::Conntrack(ConntrackMatch::default()),
    apply,
    required: Some("one or more options"),
    proto: None,
    check: None,
};

fn width(f: Family) -> u8 {
    match f {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    }
}

/// XTTYPE_HOSTMASK as libxt_conntrack reads it: a numeric address (host bits kept) and a
/// prefix length or a mask; a mask that is not a prefix loads as all ones.
fn ct_addr(s: &str, family: Family, negated: bool) -> VResult<CtAddr> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let w = width(family);
    let addr: IpAddr = match family {
        Family::Ipv4 => a.parse::<Ipv4Addr>().map(IpAddr::V4),
        Family::Ipv6 => a.parse::<Ipv6Addr>().map(IpAddr::V6),
    }
    .or_else(|_| {
        fail(format!(
            "invalid address `{a}` (host names are not resolved)"
        ))
    })?;
    let plen = match m {
        None => w,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
            values::number(m, u64::from(w), "prefix length")? as u8
        }
        Some(m) => {
            let bits: u128 = match family {
                Family::Ipv4 => m
                    .parse::<Ipv4Addr>()
                    .map(|v| u128::from(u32::from(v)) << 96),
                Family::Ipv6 => m.parse::<Ipv6Addr>().map(u128::from),
            }
            .or_else(|_| fail(format!("invalid mask `{m}`")))?;
            let ones = bits.leading_ones();
            if bits.checked_shl(ones).unwrap_or(0) == 0 {
                ones as u8
            } else {
                w
            }
        }
    };
    Ok(CtAddr {
        addr,
        plen,
        negated,
    })
}

/// XTTYPE_PORTRC: `port`, `lo:hi`, `lo:`, `:hi` (a reversed range is kept).
fn ct_ports(s: &str, negated: bool) -> VResult<CtPorts> {
    let p = |x: &str| values::port(x, "any");
    let range = match s.split_once(':') {
        None => {
            let v = p(s)?;
            PortRange { lo: v, hi: v }
        }
        Some((a, b)) => PortRange {
            lo: if a.is_empty() { 0 } else { p(a)? },
            hi: if b.is_empty() { 65535 } else { p(b)? },
        },
    };
    Ok(CtPorts { range, negated })
}

fn status(s: &str) -> VResult<u16> {
    let mut v = 0;
    for name in s.split(',') {
        let up = name.to_ascii_uppercase();
        v |= match ct_status::NAMES.iter().find(|n| n.0 == up) {
            Some(n) => n.1,
            None if up == "NONE" => 0,
            None => {
                return fail(format!(
                    "bad --ctstatus `{name}`: expected NONE, EXPECTED, SEEN_REPLY, ASSURED or CONFIRMED"
                ))
            }
        };
    }
    Ok(v)
}

fn expire(s: &str) -> VResult<(u32, u32)> {
    let n = |x: &str| values::u32_any_base(x, "--ctexpire");
    match s.split_once(':') {
        None => {
            let v = n(s)?;
            Ok((v, v))
        }
        Some((a, b)) => Ok((
            if a.is_empty() { 0 } else { n(a)? },
            if b.is_empty() { u32::MAX } else { n(b)? },
        )),
    }
}

fn apply(m: &mut Match, a: &OptArg) -> VResult<()> {
    let st = |allow_nat| -> VResult<StateMatch> {
        Ok(StateMatch {
            states: values::states(a.value, allow_nat)?,
            negated: a.neg,
        })
    };
    match (m, a.id) {
        (Match::State(s), STATE_OPT) => *s = st(false)?,
        (Match::Conntrack(c), id) => match id {
            CTSTATE => c.state = Some(st(true)?),
            CTPROTO => c.proto = Some((values::protocol(a.value)?.unwrap_or(0), a.neg)),
            ORIGSRC => c.orig_src = Some(ct_addr(a.value, a.family, a.neg)?),
            ORIGDST => c.orig_dst = Some(ct_addr(a.value, a.family, a.neg)?),
            REPLSRC => c.repl_src = Some(ct_addr(a.value, a.family, a.neg)?),
            REPLDST => c.repl_dst = Some(ct_addr(a.value, a.family, a.neg)?),
            ORIGSRCPORT => c.orig_src_port = Some(ct_ports(a.value, a.neg)?),
            ORIGDSTPORT => c.orig_dst_port = Some(ct_ports(a.value, a.neg)?),
            REPLSRCPORT => c.repl_src_port = Some(ct_ports(a.value, a.neg)?),
            REPLDSTPORT => c.repl_dst_port = Some(ct_ports(a.value, a.neg)?),
            CTSTATUS => c.status = Some((status(a.value)?, a.neg)),
            CTEXPIRE => {
                let (lo, hi) = expire(a.value)?;
                c.expire = Some((lo, hi, a.neg));
            }
            _ => {
                c.dir_reply = Some(if a.value.eq_ignore_ascii_case("ORIGINAL") {
                    false
                } else if a.value.eq_ignore_ascii_case("REPLY") {
                    true
                } else {
                    return fail(format!(
                        "bad --ctdir `{}`: expected ORIGINAL or REPLY",
                        a.value
                    ));
                })
            }
        },
        _ => return fail("option not valid here"),
    }
    Ok(())
}

fn status_names(bits: u16) -> String {
    if bits == 0 {
        return "NONE".into();
    }
    let v: Vec<&str> = ct_status::NAMES
        .iter()
        .filter(|n| bits & n.1 != 0)
        .map(|n| n.0)
        .collect();
    v.join(",")
}

/// `conntrack_dump` of revision 3, with `--` and `ct` before each option for save and `ct`
/// for `-L`; `states` prints a state set as the caller does.
pub(crate) fn dump(o: &mut String, c: &ConntrackMatch, save: bool, states: fn(u16) -> String) {
    let p = if save { "--ct" } else { "ct" };
    let neg = |o: &mut String, n: bool| {
        if n {
            o.push_str(" !");
        }
    };
    if let Some(s) = c.state {
        neg(o, s.negated);
        let _ = write!(o, " {p}state {}", states(s.states));
    }
    if let Some((proto, n)) = c.proto {
        neg(o, n);
        let _ = write!(o, " {p}proto {proto}");
    }
    for (name, a) in [
        ("origsrc", c.orig_src),
        ("origdst", c.orig_dst),
        ("replsrc", c.repl_src),
        ("repldst", c.repl_dst),
    ] {
        if let Some(a) = a {
            neg(o, a.negated);
            let full = match a.addr {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            };
            let _ = write!(o, " {p}{name} {}", a.addr);
            if a.plen != full {
                let _ = write!(o, "/{}", a.plen);
            }
        }
    }
    for (name, r) in [
        ("origsrcport", c.orig_src_port),
        ("origdstport", c.orig_dst_port),
        ("replsrcport", c.repl_src_port),
        ("repldstport", c.repl_dst_port),
    ] {
        if let Some(r) = r {
            neg(o, r.negated);
            if r.range.lo == r.range.hi {
                let _ = write!(o, " {p}{name} {}", r.range.lo);
            } else {
                let _ = write!(o, " {p}{name} {}:{}", r.range.lo, r.range.hi);
            }
        }
    }
    if let Some((bits, n)) = c.status {
        neg(o, n);
        let _ = write!(o, " {p}status {}", status_names(bits));
    }
    if let Some((lo, hi, n)) = c.expire {
        neg(o, n);
        if lo == hi {
            let _ = write!(o, " {p}expire {lo}");
        } else {
            let _ = write!(o, " {p}expire {lo}:{hi}");
        }
    }
    if let Some(reply) = c.dir_reply {
        let _ = write!(o, " {p}dir {}", if reply { "REPLY" } else { "ORIGINAL" });
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse_restore, Family, Match};

    fn save(rule: &str, family: Family) -> Result<String, String> {
        let text = format!("*filter\n-A FORWARD {rule}\nCOMMIT\n");
        parse_restore("t", &text, family)
            .map(|rs| {
                let r = &rs.tables[0].chains[1].rules[0];
                assert!(matches!(r.matches[0], Match::Conntrack(_)));
                rs.to_save()
                    .lines()
                    .find(|l| l.starts_with("-A"))
                    .unwrap()
                    .to_string()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_option_in_the_tool_s_order() {
        let v4 = Family::Ipv4;
        assert_eq!(
            save("-m conntrack --ctdir ORIGINAL --ctproto tcp --ctorigsrc 198.18.0.5/255.255.0.0 ! --ctorigdst 198.18.1.1 --ctrepldst 1.2.3.4/255.255.0.255 --ctstate NEW", v4).unwrap(),
            "-A FORWARD -m conntrack --ctstate NEW --ctproto 6 --ctorigsrc 198.18.0.5/16 ! --ctorigdst 198.18.1.1 --ctrepldst 1.2.3.4 --ctdir ORIGINAL"
        );
        assert_eq!(
            save("-m conntrack --ctorigsrcport 80: ! --ctreplsrcport 9:3 --ctstatus assured,SEEN_REPLY ! --ctexpire 7:7", v4).unwrap(),
            "-A FORWARD -m conntrack --ctorigsrcport 80:65535 ! --ctreplsrcport 9:3 --ctstatus SEEN_REPLY,ASSURED ! --ctexpire 7"
        );
        assert_eq!(
            save(
                "-m conntrack --ctorigdst 2001:2::1/ffff:: ! --ctstatus NONE",
                Family::Ipv6
            )
            .unwrap(),
            "-A FORWARD -m conntrack --ctorigdst 2001:2::1/16 ! --ctstatus NONE"
        );
        for bad in [
            "-m conntrack",
            "-m conntrack ! --ctdir REPLY",
            "-m conntrack --ctdir SIDEWAYS",
            "-m conntrack --ctstatus FOO",
            "-m conntrack --ctorigsrc host.example",
            "-m conntrack --ctorigsrc 198.18.0.0/33",
            "-m conntrack --ctproto 256",
        ] {
            assert!(save(bad, v4).is_err(), "{bad}");
        }
    }
}
