//! Matches that need no state: `-m addrtype` (`libxt_addrtype.c`), `-m pkttype`
//! (`libxt_pkttype.c`), `-m tos` (`libxt_tos.c`), `-m dscp` (`libxt_dscp.c`), `-m ecn`
//! (`libxt_ecn.c`) and `-m physdev` (`libxt_physdev.c`), with their iptables-save and
//! `iptables -L` texts (kept here, beside the parsing, so that each extension is one file).

use std::fmt::Write;

use super::registry::{Located, MatchExt, OptArg};
use crate::ast::*;
use crate::values::{self, fail, fail_hint, Fail, VResult};

/// `xtables_strtoui` with base 0: decimal, `0x` hex or leading-`0` octal, at most `max`.
pub(crate) fn strtoui(s: &str, max: u32) -> Option<u32> {
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()?
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()?
    };
    (v <= max).then_some(v)
}

// ---- addrtype ----

const SRC_TYPE: u8 = 0;
const DST_TYPE: u8 = 1;
const LIMIT_IN: u8 = 2;
const LIMIT_OUT: u8 = 3;

pub(super) const ADDRTYPE: MatchExt = MatchExt {
    name: "addrtype",
    family: None,
    opts: &[
        ("src-type", SRC_TYPE, 1, true),
        ("dst-type", DST_TYPE, 1, true),
        ("limit-iface-in", LIMIT_IN, 0, false),
        ("limit-iface-out", LIMIT_OUT, 0, false),
    ],
    exclusive: &[LIMIT_IN, LIMIT_OUT],
    new: || Match::Addrtype(AddrtypeMatch::default()),
    apply: apply_addrtype,
    required: None,
    proto: None,
    check: Some(check_addrtype),
};

fn addr_types(s: &str) -> VResult<u16> {
    let mut bits = 0;
    for w in s.split(',') {
        match addr_type::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(w))
        {
            Some((_, b)) => bits |= b,
            None => {
                let names: Vec<&str> = addr_type::NAMES.iter().map(|n| n.0).collect();
                return fail_hint(
                    format!("unknown address type `{w}`"),
                    format!("address types: {}", names.join(", ")),
                );
            }
        }
    }
    Ok(bits)
}

fn apply_addrtype(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Addrtype(t) = m else {
        return fail("option not valid here");
    };
    match a.id {
        SRC_TYPE | DST_TYPE => {
            let bits = addr_types(a.value)?;
            if a.family == Family::Ipv6 {
                if bits & addr_type::BLACKHOLE != 0 {
                    return fail("ip6tables does not support BLACKHOLE matching");
                }
                if bits >= addr_type::PROHIBIT {
                    return fail(
                        "ip6tables does not support PROHIBIT, THROW, NAT or XRESOLVE matching",
                    );
                }
                if bits & addr_type::BROADCAST != 0 {
                    return fail("IPv6 has no BROADCAST addresses");
                }
            }
            let slot = if a.id == SRC_TYPE {
                &mut t.src
            } else {
                &mut t.dst
            };
            *slot = Some((bits, a.neg));
        }
        LIMIT_IN => t.limit_in = true,
        _ => t.limit_out = true,
    }
    Ok(())
}

fn check_addrtype(m: &Match) -> Result<(), Located> {
    let Match::Addrtype(t) = m else { return Ok(()) };
    // The kernel's checkentry accepts a match with no type (it matches everything), and
    // iptables-save prints `-m addrtype` alone then; nothing to refuse.
    let _ = t;
    Ok(())
}

fn type_names(bits: u16) -> String {
    let v: Vec<&str> = addr_type::NAMES
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect();
    v.join(",")
}

// ---- pkttype ----

pub(super) const PKTTYPE: MatchExt = MatchExt {
    name: "pkttype",
    family: None,
    opts: &[("pkt-type", 0, 1, true)],
    exclusive: &[],
    new: || Match::Pkttype {
        kind: PktType::Unicast,
        negated: false,
    },
    apply: apply_pkttype,
    required: Some("--pkt-type"),
    proto: None,
    check: None,
};

fn apply_pkttype(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Pkttype { kind, negated } = m else {
        return fail("option not valid here");
    };
    *kind = match a.value.to_ascii_lowercase().as_str() {
        "unicast" | "host" => PktType::Unicast,
        "broadcast" | "bcast" => PktType::Broadcast,
        "multicast" | "mcast" => PktType::Multicast,
        _ => {
            return fail_hint(
                format!("unknown packet type `{}`", a.value),
                "packet types: unicast, broadcast, multicast",
            )
        }
    };
    *negated = a.neg;
    Ok(())
}

fn pkttype_name(k: PktType) -> &'static str {
    match k {
        PktType::Unicast => "unicast",
        PktType::Broadcast => "broadcast",
        PktType::Multicast => "multicast",
    }
}

// ---- tos ----

/// `libxt_tos`'s symbolic names (with mask 0x3f).
const TOS_NAMES: [(&str, u8); 5] = [
    ("Minimize-Cost", 0x02),
    ("Maximize-Reliability", 0x04),
    ("Maximize-Throughput", 0x08),
    ("Minimize-Delay", 0x10),
    ("Normal-Service", 0x00),
];

pub(super) const TOS: MatchExt = MatchExt {
    name: "tos",
    family: None,
    opts: &[("tos", 0, 1, true)],
    exclusive: &[],
    new: || Match::Tos {
        value: 0,
        mask: 0,
        negated: false,
    },
    apply: apply_tos,
    required: Some("--tos"),
    proto: None,
    check: None,
};

fn bad_tos(s: &str) -> Fail {
    Fail {
        msg: format!("invalid TOS `{s}`"),
        hint: Some(
            "expected VALUE[/MASK] (0-255) or Minimize-Delay, Maximize-Throughput, \
             Maximize-Reliability, Minimize-Cost, Normal-Service"
                .into(),
        ),
    }
}

fn apply_tos(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Tos {
        value,
        mask,
        negated,
    } = m
    else {
        return fail("option not valid here");
    };
    let s = a.value;
    let (v, mk) = if let Some((_, v)) = TOS_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        (*v, 0x3f)
    } else {
        let (v, mk) = match s.split_once('/') {
            Some((v, m)) => (v, Some(m)),
            None => (s, None),
        };
        let v = strtoui(v, 255).ok_or_else(|| bad_tos(s))? as u8;
        let mk = match mk {
            Some(m) => strtoui(m, 255).ok_or_else(|| bad_tos(s))? as u8,
            None => 0xff,
        };
        (v, mk)
    };
    *value = v;
    *mask = mk;
    *negated = a.neg;
    Ok(())
}

// ---- dscp ----

const DSCP_OPT: u8 = 0;
const DSCP_CLASS: u8 = 1;

/// DiffServ class names (`xtables_dscp_class`), case-insensitive on input.
const DSCP_CLASSES: [(&str, u8); 21] = [
    ("CS0", 0x00),
    ("CS1", 0x08),
    ("CS2", 0x10),
    ("CS3", 0x18),
    ("CS4", 0x20),
    ("CS5", 0x28),
    ("CS6", 0x30),
    ("CS7", 0x38),
    ("BE", 0x00),
    ("AF11", 0x0a),
    ("AF12", 0x0c),
    ("AF13", 0x0e),
    ("AF21", 0x12),
    ("AF22", 0x14),
    ("AF23", 0x16),
    ("AF31", 0x1a),
    ("AF32", 0x1c),
    ("AF33", 0x1e),
    ("AF41", 0x22),
    ("AF42", 0x24),
    ("AF43", 0x26),
];
const DSCP_EF: (&str, u8) = ("EF", 0x2e);

pub(super) const DSCP: MatchExt = MatchExt {
    name: "dscp",
    family: None,
    opts: &[
        ("dscp", DSCP_OPT, 1, true),
        ("dscp-class", DSCP_CLASS, 1, true),
    ],
    exclusive: &[DSCP_OPT, DSCP_CLASS],
    new: || Match::Dscp {
        value: 0,
        negated: false,
    },
    apply: apply_dscp,
    required: Some("--dscp or --dscp-class"),
    proto: None,
    check: None,
};

/// The value of a DiffServ class name (`--dscp-class`, also `--set-dscp-class`).
pub(crate) fn dscp_class(s: &str) -> VResult<u8> {
    DSCP_CLASSES
        .iter()
        .chain(std::iter::once(&DSCP_EF))
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|c| c.1)
        .ok_or_else(|| Fail {
            msg: format!("unknown DSCP class `{s}`"),
            hint: Some("classes: CS0-CS7, BE, AF11-AF43, EF".into()),
        })
}

fn apply_dscp(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Dscp { value, negated } = m else {
        return fail("option not valid here");
    };
    *value = if a.id == DSCP_OPT {
        strtoui(a.value, 63).ok_or_else(|| Fail {
            msg: format!("invalid DSCP `{}`", a.value),
            hint: Some("expected a number 0-63 (0x00-0x3f)".into()),
        })? as u8
    } else {
        dscp_class(a.value)?
    };
    *negated = a.neg;
    Ok(())
}

// ---- ecn ----

const ECE: u8 = 0;
const CWR: u8 = 1;
const ECT: u8 = 2;

pub(super) const ECN: MatchExt = MatchExt {
    name: "ecn",
    family: None,
    opts: &[
        ("ecn-tcp-cwr", CWR, 0, true),
        ("ecn-tcp-ece", ECE, 0, true),
        ("ecn-ip-ect", ECT, 1, true),
    ],
    exclusive: &[],
    new: || Match::Ecn(EcnMatch::default()),
    apply: apply_ecn,
    required: Some("--ecn-tcp-cwr, --ecn-tcp-ece or --ecn-ip-ect"),
    proto: None,
    check: None,
};

fn apply_ecn(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Ecn(e) = m else {
        return fail("option not valid here");
    };
    match a.id {
        ECE => e.ece = Some(a.neg),
        CWR => e.cwr = Some(a.neg),
        _ => {
            let v = values::number(a.value, 3, "ECT codepoint")? as u8;
            e.ect = Some((v, a.neg));
        }
    }
    Ok(())
}

/// The kernel refuses `--ecn-tcp-*` unless the rule has `-p tcp` (not negated).
pub(super) fn ecn_needs_tcp(m: &Match) -> bool {
    matches!(m, Match::Ecn(e) if e.ece.is_some() || e.cwr.is_some())
}

// ---- physdev ----

const P_IN: u8 = 0;
const P_OUT: u8 = 1;
const IS_IN: u8 = 2;
const IS_OUT: u8 = 3;
const IS_BRIDGED: u8 = 4;

pub(super) const PHYSDEV: MatchExt = MatchExt {
    name: "physdev",
    family: None,
    opts: &[
        ("physdev-in", P_IN, 1, true),
        ("physdev-out", P_OUT, 1, true),
        ("physdev-is-in", IS_IN, 0, true),
        ("physdev-is-out", IS_OUT, 0, true),
        ("physdev-is-bridged", IS_BRIDGED, 0, true),
    ],
    exclusive: &[],
    new: || Match::Physdev(PhysdevMatch::default()),
    apply: apply_physdev,
    required: Some(
        "--physdev-in, --physdev-out, --physdev-is-in, --physdev-is-out or --physdev-is-bridged",
    ),
    proto: None,
    check: None,
};

fn apply_physdev(m: &mut Match, a: &OptArg) -> VResult<()> {
    let Match::Physdev(p) = m else {
        return fail("option not valid here");
    };
    match a.id {
        P_IN | P_OUT => {
            let i = values::interface(a.value, a.neg)?.unwrap_or(IfaceMatch {
                name: String::new(),
                wildcard: true,
                negated: a.neg,
            });
            if a.id == P_IN {
                p.physdev_in = Some(i);
            } else {
                p.physdev_out = Some(i);
            }
        }
        IS_IN => p.is_in = Some(a.neg),
        IS_OUT => p.is_out = Some(a.neg),
        _ => p.is_bridged = Some(a.neg),
    }
    Ok(())
}

/// Whether a physdev match names the output bridge port (refused in OUTPUT by the kernel
/// unless `--physdev-is-bridged` is given, not negated).
pub(crate) fn physdev_needs_out(p: &PhysdevMatch) -> bool {
    (p.physdev_out.is_some() || p.is_out.is_some()) && p.is_bridged != Some(false)
}

fn iface_text(i: &IfaceMatch) -> String {
    format!("{}{}", i.name, if i.wildcard { "+" } else { "" })
}

// ---- printing ----

fn neg(o: &mut String, n: bool) {
    if n {
        o.push_str(" !");
    }
}

/// The iptables-save text of one of this file's matches (after `-m NAME`); `false` if `m` is
/// not one of them.
pub(crate) fn save(o: &mut String, m: &Match) -> bool {
    match m {
        Match::Addrtype(t) => {
            if let Some((b, n)) = t.src {
                neg(o, n);
                let _ = write!(o, " --src-type {}", type_names(b));
            }
            if let Some((b, n)) = t.dst {
                neg(o, n);
                let _ = write!(o, " --dst-type {}", type_names(b));
            }
            if t.limit_in {
                o.push_str(" --limit-iface-in");
            }
            if t.limit_out {
                o.push_str(" --limit-iface-out");
            }
        }
        Match::Pkttype { kind, negated } => {
            neg(o, *negated);
            let _ = write!(o, " --pkt-type {}", pkttype_name(*kind));
        }
        Match::Tos {
            value,
            mask,
            negated,
        } => {
            neg(o, *negated);
            let _ = write!(o, " --tos 0x{value:02x}/0x{mask:02x}");
        }
        Match::Dscp { value, negated } => {
            neg(o, *negated);
            let _ = write!(o, " --dscp 0x{value:02x}");
        }
        Match::Ecn(e) => {
            if let Some(n) = e.ece {
                neg(o, n);
                o.push_str(" --ecn-tcp-ece");
            }
            if let Some(n) = e.cwr {
                neg(o, n);
                o.push_str(" --ecn-tcp-cwr");
            }
            if let Some((v, n)) = e.ect {
                neg(o, n);
                let _ = write!(o, " --ecn-ip-ect {v}");
            }
        }
        Match::Physdev(p) => physdev_text(o, p),
        _ => return false,
    }
    true
}

fn physdev_text(o: &mut String, p: &PhysdevMatch) {
    if let Some(i) = &p.physdev_in {
        neg(o, i.negated);
        let _ = write!(o, " --physdev-in {}", iface_text(i));
    }
    if let Some(i) = &p.physdev_out {
        neg(o, i.negated);
        let _ = write!(o, " --physdev-out {}", iface_text(i));
    }
    if let Some(n) = p.is_in {
        neg(o, n);
        o.push_str(" --physdev-is-in");
    }
    if let Some(n) = p.is_out {
        neg(o, n);
        o.push_str(" --physdev-is-out");
    }
    if let Some(n) = p.is_bridged {
        neg(o, n);
        o.push_str(" --physdev-is-bridged");
    }
}

/// The `iptables -L` text of one of this file's matches; `false` if `m` is not one of them.
pub(crate) fn list(o: &mut String, m: &Match) -> bool {
    let bang = |n: bool| if n { "!" } else { "" };
    match m {
        Match::Addrtype(t) => {
            o.push_str(" ADDRTYPE match");
            if let Some((b, n)) = t.src {
                let _ = write!(o, " src-type {}{}", bang(n), type_names(b));
            }
            if let Some((b, n)) = t.dst {
                let _ = write!(o, " dst-type {}{}", bang(n), type_names(b));
            }
            if t.limit_in {
                o.push_str(" limit-in");
            }
            if t.limit_out {
                o.push_str(" limit-out");
            }
        }
        Match::Pkttype { kind, negated } => {
            let _ = write!(
                o,
                " PKTTYPE {} {}",
                if *negated { "!=" } else { "=" },
                pkttype_name(*kind)
            );
        }
        Match::Tos {
            value,
            mask,
            negated,
        } => {
            let _ = write!(o, " tos match{}0x{value:02x}/0x{mask:02x}", bang(*negated));
        }
        Match::Dscp { value, negated } => {
            let _ = write!(o, " DSCP match {}0x{value:02x}", bang(*negated));
        }
        Match::Ecn(e) => {
            o.push_str(" ECN match");
            if let Some(n) = e.ece {
                let _ = write!(o, " {}ECE", bang(n));
            }
            if let Some(n) = e.cwr {
                let _ = write!(o, " {}CWR", bang(n));
            }
            if let Some((v, n)) = e.ect {
                let _ = write!(o, " {}ECT={v}", bang(n));
            }
        }
        Match::Physdev(p) => {
            o.push_str(" PHYSDEV match");
            physdev_text(o, p);
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoui_bases() {
        assert_eq!(strtoui("0x2e", 63), Some(46));
        assert_eq!(strtoui("010", 63), Some(8));
        assert_eq!(strtoui("46", 63), Some(46));
        assert_eq!(strtoui("64", 63), None);
        assert_eq!(strtoui("", 63), None);
        assert_eq!(strtoui("1a", 63), None);
    }

    #[test]
    fn dscp_classes() {
        assert_eq!(dscp_class("ef").unwrap(), 0x2e);
        assert_eq!(dscp_class("AF41").unwrap(), 0x22);
        assert!(dscp_class("AF44").is_err());
    }
}
