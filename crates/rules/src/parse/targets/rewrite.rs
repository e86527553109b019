//! The targets that rewrite a packet's header: `-j TTL` (`libipt_TTL.c`), `-j HL`
//! (`libip6t_HL.c`), `-j DSCP` (`libxt_DSCP.c`), `-j TOS` (`libxt_TOS.c`, revision 1),
//! `-j TCPMSS` (`libxt_TCPMSS.c`), `-j ECN` (`libipt_ECN.c`), and the two that change no byte
//! of it, `-j CHECKSUM` (`libxt_CHECKSUM.c`) and `-j CLASSIFY` (`libxt_CLASSIFY.c`).
//!
//! Tables as the kernel (6.x) has them: TTL, HL, DSCP, TOS, ECN and CHECKSUM are mangle-only
//! (`.table = "mangle"`), TCPMSS and CLASSIFY are allowed in every table, with hook limits
//! (`restore::target_hooks`) and TCPMSS's `-p tcp` plus SYN-flag requirement checked where the
//! whole rule is known (`parse::Line::finish_rule`).

use crate::ast::*;
use crate::parse::registry::{OptArg, TargetExt};
use crate::parse::stateless::dscp_class;
use crate::values::{self, fail, fail_hint, Fail, VResult};

const SET: u8 = 0;
const DEC: u8 = 1;
const INC: u8 = 2;

pub(in crate::parse) const TTL: TargetExt = TargetExt {
    name: "TTL",
    opts: &[
        ("ttl-set", SET, 1, false),
        ("ttl-dec", DEC, 1, false),
        ("ttl-inc", INC, 1, false),
    ],
    table: Some(TableName::Mangle),
    family: Some(Family::Ipv4),
    new: |_| {
        Target::Ttl(TtlTarget {
            mode: TtlMode::Set,
            value: 0,
        })
    },
    apply: apply_ttl,
    finish: |t, _, seen| {
        one_of(
            seen,
            &[SET, DEC, INC],
            "TTL",
            "--ttl-set, --ttl-dec or --ttl-inc",
        )?;
        Ok(t)
    },
};

pub(in crate::parse) const HL: TargetExt = TargetExt {
    name: "HL",
    opts: &[
        ("hl-set", SET, 1, false),
        ("hl-dec", DEC, 1, false),
        ("hl-inc", INC, 1, false),
    ],
    table: Some(TableName::Mangle),
    family: Some(Family::Ipv6),
    new: |_| {
        Target::Hl(TtlTarget {
            mode: TtlMode::Set,
            value: 0,
        })
    },
    apply: apply_ttl,
    finish: |t, _, seen| {
        one_of(
            seen,
            &[SET, DEC, INC],
            "HL",
            "--hl-set, --hl-dec or --hl-inc",
        )?;
        Ok(t)
    },
};

/// Exactly one of `ops`, as the options' `.excl` and the final check demand.
fn one_of(seen: &[u8], ops: &[u8], name: &str, list: &str) -> VResult<()> {
    match seen.iter().filter(|o| ops.contains(o)).count() {
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

/// An XTTYPE_UINT8 value (`strtoul` base 0) in `min..=max`.
fn uint(s: &str, min: u32, max: u32, what: &str) -> VResult<u32> {
    match values::strtou32(s) {
        Some((v, "")) if (min..=max).contains(&v) => Ok(v),
        _ => fail_hint(
            format!("invalid {what} `{s}`"),
            format!("expected a number {min}-{max}"),
        ),
    }
}

fn apply_ttl(t: &mut Target, a: &OptArg) -> VResult<()> {
    let (Target::Ttl(x) | Target::Hl(x)) = t else {
        return fail("option not valid here");
    };
    let (mode, min) = match a.id {
        SET => (TtlMode::Set, 0),
        DEC => (TtlMode::Dec, 1),
        _ => (TtlMode::Inc, 1),
    };
    x.mode = mode;
    x.value = uint(a.value, min, 255, "TTL value")? as u8;
    Ok(())
}

// ---- DSCP ----

const SET_DSCP: u8 = 0;
const SET_DSCP_CLASS: u8 = 1;

pub(in crate::parse) const DSCP: TargetExt = TargetExt {
    name: "DSCP",
    opts: &[
        ("set-dscp", SET_DSCP, 1, false),
        ("set-dscp-class", SET_DSCP_CLASS, 1, false),
    ],
    table: Some(TableName::Mangle),
    family: None,
    new: |_| Target::Dscp(0),
    apply: |t, a| {
        let Target::Dscp(d) = t else {
            return fail("option not valid here");
        };
        *d = if a.id == SET_DSCP {
            uint(a.value, 0, 63, "DSCP")? as u8
        } else {
            dscp_class(a.value)?
        };
        Ok(())
    },
    finish: |t, _, seen| {
        one_of(
            seen,
            &[SET_DSCP, SET_DSCP_CLASS],
            "DSCP",
            "--set-dscp or --set-dscp-class",
        )?;
        Ok(t)
    },
};

// ---- TOS ----

const SET_TOS: u8 = 0;
const AND_TOS: u8 = 1;
const OR_TOS: u8 = 2;
const XOR_TOS: u8 = 3;

pub(in crate::parse) const TOS: TargetExt = TargetExt {
    name: "TOS",
    opts: &[
        ("set-tos", SET_TOS, 1, false),
        ("and-tos", AND_TOS, 1, false),
        ("or-tos", OR_TOS, 1, false),
        ("xor-tos", XOR_TOS, 1, false),
    ],
    table: Some(TableName::Mangle),
    family: None,
    new: |_| Target::Tos { value: 0, mask: 0 },
    apply: apply_tos,
    finish: |t, _, seen| {
        one_of(
            seen,
            &[SET_TOS, AND_TOS, OR_TOS, XOR_TOS],
            "TOS",
            "--set-tos, --and-tos, --or-tos or --xor-tos",
        )?;
        Ok(t)
    },
};

/// `libxt_TOS`'s symbolic names; with one, the mask is 0x3f (the precedence bits kept).
const TOS_NAMES: [(&str, u8); 5] = [
    ("Minimize-Delay", 0x10),
    ("Maximize-Throughput", 0x08),
    ("Maximize-Reliability", 0x04),
    ("Minimize-Cost", 0x02),
    ("Normal-Service", 0x00),
];

/// `VALUE[/MASK]` or a symbolic name, as `xtopt_parse_tosmask` reads it: a number in range
/// (whatever follows it) is numeric and must then be exactly `V` or `V/M`; anything else is
/// looked up as a name.
fn tos_mask(s: &str) -> VResult<(u8, u8)> {
    let illegal = || Fail {
        msg: format!("invalid TOS `{s}`"),
        hint: Some("expected VALUE[/MASK], each 0-255".into()),
    };
    if let Some((v, rest)) = values::strtou32(s).filter(|(v, _)| *v <= 255) {
        let mask = match rest {
            "" => 0xff,
            r => match r.strip_prefix('/').and_then(values::strtou32) {
                Some((m, "")) if m <= 255 => m,
                _ => return Err(illegal()),
            },
        };
        return Ok((v as u8, mask as u8));
    }
    TOS_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| (*v, 0x3f))
        .ok_or_else(|| Fail {
            msg: format!("unknown TOS name `{s}`"),
            hint: Some(
                "expected VALUE[/MASK] or Minimize-Delay, Maximize-Throughput, \
                 Maximize-Reliability, Minimize-Cost, Normal-Service"
                    .into(),
            ),
        })
}

fn apply_tos(t: &mut Target, a: &OptArg) -> VResult<()> {
    let Target::Tos { value, mask } = t else {
        return fail("option not valid here");
    };
    let (v, m) = match a.id {
        SET_TOS => tos_mask(a.value)?,
        AND_TOS => (0, !(uint(a.value, 0, 255, "TOS bits")? as u8)),
        OR_TOS => {
            let v = uint(a.value, 0, 255, "TOS bits")? as u8;
            (v, v)
        }
        _ => (uint(a.value, 0, 255, "TOS bits")? as u8, 0),
    };
    *value = v;
    *mask = m;
    Ok(())
}

// ---- TCPMSS ----

const SET_MSS: u8 = 0;
const CLAMP_MSS: u8 = 1;

pub(in crate::parse) const TCPMSS: TargetExt = TargetExt {
    name: "TCPMSS",
    opts: &[
        ("set-mss", SET_MSS, 1, false),
        ("clamp-mss-to-pmtu", CLAMP_MSS, 0, false),
    ],
    table: None,
    family: None,
    new: |_| Target::Tcpmss(Tcpmss::Set(0)),
    apply: |t, a| {
        let Target::Tcpmss(m) = t else {
            return fail("option not valid here");
        };
        // Not exclusive in iptables: the last one given wins.
        *m = if a.id == CLAMP_MSS {
            Tcpmss::ClampPmtu
        } else {
            // 65535 less the family's IP header (the kernel's value 0xffff means "clamp").
            let max = match a.family {
                Family::Ipv4 => 65535 - 20,
                Family::Ipv6 => 65535 - 40,
            };
            Tcpmss::Set(uint(a.value, 0, max, "MSS")? as u16)
        };
        Ok(())
    },
    finish: |t, proto, seen| {
        if seen.is_empty() {
            return fail_hint(
                "`-j TCPMSS` needs --set-mss or --clamp-mss-to-pmtu",
                "give one of them",
            );
        }
        let tcp = ProtoMatch {
            proto: values::PROTO_TCP,
            negated: false,
        };
        if proto != Some(tcp) {
            return fail_hint(
                "`-j TCPMSS` needs `-p tcp`",
                "add `-p tcp --syn` (the kernel refuses the target on other protocols)",
            );
        }
        Ok(t)
    },
};

/// Whether the rule's matches let the kernel load TCPMSS (`find_syn_match`): a `-m tcp` whose
/// `--tcp-flags` comparison has SYN set and is not negated.
pub(in crate::parse) fn tcpmss_syn_ok(matches: &[Match]) -> bool {
    matches.iter().any(|m| {
        matches!(m, Match::Tcp(t) if t.flags.is_some_and(|f| f.comp & tcp_flags::SYN != 0 && !f.negated))
    })
}

// ---- ECN ----

const ECN_REMOVE: u8 = 0;
const ECN_CWR: u8 = 1;
const ECN_ECE: u8 = 2;
const ECN_ECT: u8 = 3;

pub(in crate::parse) const ECN: TargetExt = TargetExt {
    name: "ECN",
    opts: &[
        ("ecn-tcp-remove", ECN_REMOVE, 0, false),
        ("ecn-tcp-cwr", ECN_CWR, 1, false),
        ("ecn-tcp-ece", ECN_ECE, 1, false),
        ("ecn-ip-ect", ECN_ECT, 1, false),
    ],
    table: Some(TableName::Mangle),
    family: Some(Family::Ipv4),
    new: |_| Target::Ecn(EcnTarget::default()),
    apply: |t, a| {
        let Target::Ecn(e) = t else {
            return fail("option not valid here");
        };
        match a.id {
            // replaces every operation given before it, as `ECN_parse` does
            ECN_REMOVE => {
                *e = EcnTarget {
                    ect: None,
                    ece: Some(0),
                    cwr: Some(0),
                }
            }
            ECN_CWR => e.cwr = Some(uint(a.value, 0, 1, "CWR bit")? as u8),
            ECN_ECE => e.ece = Some(uint(a.value, 0, 1, "ECE bit")? as u8),
            _ => e.ect = Some(uint(a.value, 0, 3, "ECT codepoint")? as u8),
        }
        Ok(())
    },
    finish: |t, proto, seen| {
        if seen.is_empty() {
            return fail_hint(
                "`-j ECN` needs an operation",
                "give --ecn-tcp-remove, --ecn-tcp-cwr, --ecn-tcp-ece or --ecn-ip-ect",
            );
        }
        if seen.contains(&ECN_REMOVE) && (seen.contains(&ECN_CWR) || seen.contains(&ECN_ECE)) {
            return fail(
                "`--ecn-tcp-remove` cannot be combined with `--ecn-tcp-cwr` or `--ecn-tcp-ece`",
            );
        }
        let tcp = ProtoMatch {
            proto: values::PROTO_TCP,
            negated: false,
        };
        if let Target::Ecn(e) = &t {
            if (e.ece.is_some() || e.cwr.is_some()) && proto != Some(tcp) {
                return fail_hint(
                    "the TCP operations of `-j ECN` need `-p tcp`",
                    "add `-p tcp` (the kernel refuses them on a rule for any protocol)",
                );
            }
        }
        Ok(t)
    },
};

// ---- CHECKSUM, CLASSIFY ----

pub(in crate::parse) const CHECKSUM: TargetExt = TargetExt {
    name: "CHECKSUM",
    opts: &[("checksum-fill", 0, 0, false)],
    table: Some(TableName::Mangle),
    family: None,
    new: |_| Target::Checksum,
    apply: |_, _| Ok(()),
    finish: |t, _, seen| {
        if seen.is_empty() {
            return fail("`-j CHECKSUM` needs --checksum-fill");
        }
        Ok(t)
    },
};

pub(in crate::parse) const CLASSIFY: TargetExt = TargetExt {
    name: "CLASSIFY",
    opts: &[("set-class", 0, 1, false)],
    table: None,
    family: None,
    new: |_| Target::Classify(0),
    apply: |t, a| {
        let Target::Classify(p) = t else {
            return fail("option not valid here");
        };
        *p = class(a.value).ok_or_else(|| Fail {
            msg: format!("invalid class `{}`", a.value),
            hint: Some("expected MAJOR:MINOR, both hexadecimal".into()),
        })?;
        Ok(())
    },
    finish: |t, _, seen| {
        if seen.is_empty() {
            return fail("`-j CLASSIFY` needs --set-class");
        }
        Ok(t)
    },
};

/// `sscanf(s, "%x:%x")` folded into `TC_H_MAKE(major << 16, minor)`: each number may have
/// white space, a sign and `0x` before it, what follows the minor is ignored, and both are
/// truncated as the C code's `unsigned int` arithmetic truncates them.
fn class(s: &str) -> Option<u32> {
    fn hex(s: &str) -> Option<(u32, &str)> {
        let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
        let (neg, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let t = match t.as_bytes() {
            [b'0', b'x' | b'X', h, ..] if h.is_ascii_hexdigit() => &t[2..],
            _ => t,
        };
        let n = t.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 0 {
            return None;
        }
        // strtoul: an overflow gives ULONG_MAX, which scanf stores truncated
        let v = u64::from_str_radix(&t[..n], 16).unwrap_or(u64::MAX);
        let v = if neg { v.wrapping_neg() } else { v };
        Some((v as u32, &t[n..]))
    }
    let (major, rest) = hex(s)?;
    let (minor, _) = hex(rest.strip_prefix(':')?)?;
    Some((major << 16) | (minor & 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tos_values_and_names() {
        assert_eq!(tos_mask("0x10").unwrap(), (0x10, 0xff));
        assert_eq!(tos_mask("16/0x3f").unwrap(), (0x10, 0x3f));
        assert_eq!(tos_mask("minimize-delay").unwrap(), (0x10, 0x3f));
        assert_eq!(tos_mask("Normal-Service").unwrap(), (0, 0x3f));
        assert!(tos_mask("300")
            .unwrap_err()
            .msg
            .contains("unknown TOS name"));
        assert!(tos_mask("5x").unwrap_err().msg.contains("invalid TOS"));
        assert!(tos_mask("5/256").is_err());
    }

    #[test]
    fn classes_read_as_scanf_reads_them() {
        assert_eq!(class("1:2"), Some(0x0001_0002));
        assert_eq!(class("abc:ffff0"), Some(0x0abc_fff0));
        assert_eq!(class("10000:2"), Some(0x0000_0002));
        assert_eq!(class("0x1:0x2"), Some(0x0001_0002));
        assert_eq!(class("1:2x"), Some(0x0001_0002));
        assert_eq!(class("1"), None);
        assert_eq!(class("1 :2"), None);
        assert_eq!(class("g:1"), None);
    }
}
