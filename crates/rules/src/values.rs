//! Parsers for option values (addresses, ports, protocols, ICMP types, states, rates ...), each
//! producing iptables' canonical value or saying what was expected.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ast::*;
use crate::services::SERVICES;

/// A value error: message plus an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub msg: String,
    pub hint: Option<String>,
}

pub(crate) fn fail<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        msg: msg.into(),
        hint: None,
    })
}

pub(crate) fn fail_hint<T>(msg: impl Into<String>, hint: impl Into<String>) -> Result<T, Fail> {
    Err(Fail {
        msg: msg.into(),
        hint: Some(hint.into()),
    })
}

pub(crate) type VResult<T> = Result<T, Fail>;

/// Parses a decimal number without sign, like `strtoul` restricted to digits.
pub(crate) fn number(s: &str, max: u64, what: &str) -> VResult<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return fail(format!("invalid {what} `{s}`: expected a number 0-{max}"));
    }
    match s.parse::<u64>() {
        Ok(v) if v <= max => Ok(v),
        _ => fail(format!("{what} `{s}` out of range: expected 0-{max}")),
    }
}

/// `strtoumax(s, &end, 0)` as `xtables_strtoul_base` uses it, limited to `u32`: leading white
/// space and a `+` are skipped, a `-` is refused, `0x` means hex and a leading `0` octal. The
/// value and what follows it; `None` without a digit or out of range.
pub(crate) fn strtou32(s: &str) -> Option<(u32, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    if t.starts_with('-') {
        return None;
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let b = t.as_bytes();
    let (radix, start) = match b {
        [b'0', b'x' | b'X', h, ..] if h.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let digits = t[start..]
        .bytes()
        .take_while(|c| char::from(*c).is_digit(radix))
        .count();
    if digits == 0 {
        return None;
    }
    let end = start + digits;
    let v = u64::from_str_radix(&t[start..end], radix).ok()?;
    Some((u32::try_from(v).ok()?, &t[end..]))
}

/// A 32-bit number as XTTYPE_UINT32 reads it (`--and-mark`, `--ctmask`...): decimal, `0x` hex
/// or `0` octal, up to `0xffffffff`.
pub(crate) fn u32_any_base(s: &str, what: &str) -> VResult<u32> {
    match strtou32(s) {
        Some((v, "")) => Ok(v),
        _ => fail_hint(
            format!("invalid {what} `{s}`"),
            "expected a number 0-4294967295 (decimal, 0x hex or 0 octal)",
        ),
    }
}

/// `VALUE[/MASK]` as XTTYPE_MARKMASK32 reads it (`--mark`, `--set-mark`, `--set-xmark`): each
/// part as [`u32_any_base`]; the mask is `0xffffffff` when absent.
pub(crate) fn mark_mask(s: &str, what: &str) -> VResult<(u32, u32)> {
    let bad = || {
        fail_hint(
            format!("invalid {what} `{s}`"),
            "expected VALUE[/MASK], each a number 0-4294967295 (decimal, 0x hex or 0 octal)",
        )
    };
    let Some((value, rest)) = strtou32(s) else {
        return bad();
    };
    let (mask, rest) = match rest.strip_prefix('/') {
        Some(m) => match strtou32(m) {
            Some(x) => x,
            None => return bad(),
        },
        None => (u32::MAX, rest),
    };
    if !rest.is_empty() {
        return bad();
    }
    Ok((value, mask))
}

/// IP protocol names from Debian's `/etc/protocols` (what iptables prints), plus iptables'
/// own aliases accepted on input.
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("dccp", 33),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ax.25", 93),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("sctp", 132),
    ("fc", 133),
    ("mobility-header", 135),
    ("udplite", 136),
    ("mpls-in-ip", 137),
    ("manet", 138),
    ("hip", 139),
    ("shim6", 140),
    ("wesp", 141),
    ("rohc", 142),
    ("ethernet", 143),
];

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_ICMPV6: u8 = 58;
pub(crate) const PROTO_SCTP: u8 = 132;
pub(crate) const PROTO_DCCP: u8 = 33;
pub(crate) const PROTO_UDPLITE: u8 = 136;

/// `-p` value: name (case-insensitive), number, or `all`/`0` (returns `None`).
pub(crate) fn protocol(s: &str) -> VResult<Option<u8>> {
    let lower = s.to_ascii_lowercase();
    if lower == "all" {
        return Ok(None);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n = number(s, 255, "protocol")?;
        return Ok(if n == 0 { None } else { Some(n as u8) });
    }
    let alias = match lower.as_str() {
        "icmpv6" => Some(58),
        "mh" | "ipv6-mh" => Some(135),
        "ip" | "hopopt" => Some(0),
        _ => None,
    };
    if let Some(p) = alias.or_else(|| PROTOCOLS.iter().find(|p| p.0 == lower).map(|p| p.1)) {
        return Ok(if p == 0 { None } else { Some(p) });
    }
    fail_hint(
        format!("unknown protocol `{s}`"),
        "expected a name such as tcp, udp, icmp, ipv6-icmp, a number 0-255, or all",
    )
}

/// The name iptables prints for a protocol number (numbers without a name stay numbers).
pub(crate) fn protocol_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|e| e.1 == p)
        .map(|e| e.0.to_string())
        .unwrap_or_else(|| p.to_string())
}

fn ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    // iptables' numeric parser: 1 to 4 decimal octets, missing ones are zero (`10.1` = 10.1.0.0).
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
    }
    Some(Ipv4Addr::from(o))
}

fn looks_like_hostname(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_alphabetic())
}

/// One address of `-s`/`-d`, `addr[/prefix|/mask]`, normalised (host bits cleared).
pub(crate) fn address(s: &str, family: Family, negated: bool) -> VResult<Option<AddrMatch>> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let host_err = |a: &str| -> Fail {
        Fail {
            msg: if looks_like_hostname(a) {
                format!("host names are not resolved: `{a}`")
            } else {
                format!("invalid address `{a}`")
            },
            hint: Some(match family {
                Family::Ipv4 => {
                    "expected an IPv4 address such as 198.18.0.1 or 198.18.0.0/15".into()
                }
                Family::Ipv6 => "expected an IPv6 address such as 2001:2::1 or 2001:2::/48".into(),
            }),
        }
    };
    let (addr, mask): (IpAddr, IpAddr) = match family {
        Family::Ipv4 => {
            let addr = ipv4_loose(a).ok_or_else(|| host_err(a))?;
            let mask = match m {
                None => u32::MAX,
                Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
                    let n = number(m, 32, "prefix length").map_err(|_| Fail {
                        msg: format!("invalid mask `{m}`"),
                        hint: Some("expected a prefix length 0-32 or a dotted mask".into()),
                    })?;
                    if n == 0 {
                        0
                    } else {
                        u32::MAX << (32 - n)
                    }
                }
                Some(m) => match m.parse::<Ipv4Addr>() {
                    Ok(v) => u32::from(v),
                    Err(_) => {
                        return fail_hint(
                            format!("invalid mask `{m}`"),
                            "expected a prefix length 0-32 or a dotted mask",
                        )
                    }
                },
            };
            (
                IpAddr::V4(Ipv4Addr::from(u32::from(addr) & mask)),
                IpAddr::V4(Ipv4Addr::from(mask)),
            )
        }
        Family::Ipv6 => {
            let addr: Ipv6Addr = a.parse().map_err(|_| host_err(a))?;
            let mask = match m {
                None => u128::MAX,
                Some(m) => {
                    let n = number(m, 128, "prefix length").map_err(|_| Fail {
                        msg: format!("invalid prefix length `{m}`"),
                        hint: Some("expected 0-128".into()),
                    })?;
                    if n == 0 {
                        0
                    } else {
                        u128::MAX << (128 - n)
                    }
                }
            };
            (
                IpAddr::V6(Ipv6Addr::from(u128::from(addr) & mask)),
                IpAddr::V6(Ipv6Addr::from(mask)),
            )
        }
    };
    let zero = match mask {
        IpAddr::V4(m) => u32::from(m) == 0,
        IpAddr::V6(m) => u128::from(m) == 0,
    };
    if zero && !negated {
        return Ok(None);
    }
    Ok(Some(AddrMatch {
        addr,
        mask,
        negated,
    }))
}

/// A plain address (no mask) of the given family.
pub(crate) fn plain_addr(s: &str, family: Family) -> VResult<IpAddr> {
    match family {
        Family::Ipv4 => s.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
        Family::Ipv6 => s.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
    }
    .map_or_else(
        || {
            fail(format!(
                "invalid {} address `{s}`",
                if family == Family::Ipv4 {
                    "IPv4"
                } else {
                    "IPv6"
                }
            ))
        },
        Ok,
    )
}

/// `-i`/`-o` value.
pub(crate) fn interface(s: &str, negated: bool) -> VResult<Option<IfaceMatch>> {
    if s.len() > 15 {
        return fail_hint(
            format!("interface name `{s}` is too long ({} bytes)", s.len()),
            "interface names have at most 15 characters",
        );
    }
    if s.is_empty() {
        return fail("empty interface name");
    }
    let (name, wildcard) = match s.strip_suffix('+') {
        Some(n) => (n, true),
        None => (s, false),
    };
    Ok(Some(IfaceMatch {
        name: name.to_string(),
        wildcard,
        negated,
    }))
}

/// A port number or service name for the protocol (`tcp`/`udp`/...).
pub(crate) fn port(s: &str, proto: &str) -> VResult<u16> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(v) if v <= 65535 => Ok(v as u16),
            _ => fail_hint(format!("port `{s}` out of range"), "ports are 0-65535"),
        };
    }
    // `any`: the tcp/udp matches look names up for any protocol (iptables does the same).
    if let Some(e) = SERVICES.iter().find(|e| {
        e.0 == s
            && match proto {
                "udp" => e.3,
                "tcp" => e.2,
                _ => e.2 || e.3,
            }
    }) {
        return Ok(e.1);
    }
    fail_hint(
        format!("invalid port/service `{s}`"),
        if proto == "any" {
            "expected a port number 0-65535 or a service name from /etc/services".to_string()
        } else {
            format!("expected a port number 0-65535 or a {proto} service name from /etc/services")
        },
    )
}

/// `port`, `lo:hi`, `:hi`, `lo:` (reversed ranges are an error).
pub(crate) fn port_range(s: &str, proto: &str) -> VResult<PortRange> {
    let r = match s.split_once(':') {
        None => {
            let p = port(s, proto)?;
            PortRange { lo: p, hi: p }
        }
        Some((a, b)) => PortRange {
            lo: if a.is_empty() { 0 } else { port(a, proto)? },
            hi: if b.is_empty() { 65535 } else { port(b, proto)? },
        },
    };
    if r.lo > r.hi {
        return fail_hint(
            format!("invalid port range `{s}`: start is above end"),
            format!("write `{}:{}`", r.hi, r.lo),
        );
    }
    Ok(r)
}

/// `--tcp-flags` list: comma separated names, `ALL`, `NONE`.
pub(crate) fn tcp_flag_list(s: &str) -> VResult<u8> {
    let mut v = 0u8;
    for name in s.split(',') {
        let up = name.to_ascii_uppercase();
        v |= match up.as_str() {
            "ALL" => tcp_flags::ALL,
            "NONE" => 0,
            _ => match tcp_flags::NAMES.iter().find(|f| f.0 == up) {
                Some(f) => f.1,
                None => {
                    return fail_hint(
                        format!("unknown TCP flag `{name}`"),
                        "expected FIN, SYN, RST, PSH, ACK, URG, ALL or NONE, comma separated",
                    )
                }
            },
        };
    }
    Ok(v)
}

/// ICMP type names: (name, type, code_min, code_max).
const ICMP_TYPES: &[(&str, u8, u8, u8)] = &[
    ("any", 255, 0, 255),
    ("echo-reply", 0, 0, 255),
    ("destination-unreachable", 3, 0, 255),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 255),
    ("redirect", 5, 0, 255),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 255),
    ("router-advertisement", 9, 0, 255),
    ("router-solicitation", 10, 0, 255),
    ("time-exceeded", 11, 0, 255),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 255),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 255),
    ("timestamp-reply", 14, 0, 255),
    ("address-mask-request", 17, 0, 255),
    ("address-mask-reply", 18, 0, 255),
];

const ICMP6_TYPES: &[(&str, u8, u8, u8)] = &[
    ("destination-unreachable", 1, 0, 255),
    ("no-route", 1, 0, 0),
    ("communication-prohibited", 1, 1, 1),
    ("beyond-scope", 1, 2, 2),
    ("address-unreachable", 1, 3, 3),
    ("port-unreachable", 1, 4, 4),
    ("failed-policy", 1, 5, 5),
    ("reject-route", 1, 6, 6),
    ("packet-too-big", 2, 0, 255),
    ("time-exceeded", 3, 0, 255),
    ("ttl-exceeded", 3, 0, 255),
    ("ttl-zero-during-transit", 3, 0, 0),
    ("ttl-zero-during-reassembly", 3, 1, 1),
    ("parameter-problem", 4, 0, 255),
    ("bad-header", 4, 0, 0),
    ("unknown-header-type", 4, 1, 1),
    ("unknown-option", 4, 2, 2),
    ("echo-request", 128, 0, 255),
    ("ping", 128, 0, 255),
    ("echo-reply", 129, 0, 255),
    ("pong", 129, 0, 255),
    ("router-solicitation", 133, 0, 255),
    ("router-advertisement", 134, 0, 255),
    ("neighbour-solicitation", 135, 0, 255),
    ("neighbor-solicitation", 135, 0, 255),
    ("neighbour-advertisement", 136, 0, 255),
    ("neighbor-advertisement", 136, 0, 255),
    ("redirect", 137, 0, 255),
];

/// `--icmp-type` / `--icmpv6-type`: a name (unique case-insensitive prefix), `type` or
/// `type/code`.
pub(crate) fn icmp_type(s: &str, v6: bool, negated: bool) -> VResult<IcmpMatch> {
    let table = if v6 { ICMP6_TYPES } else { ICMP_TYPES };
    let mk = |t: u8, lo: u8, hi: u8| IcmpMatch {
        icmp_type: t,
        code_min: lo,
        code_max: hi,
        negated,
    };
    let first = s.as_bytes().first().copied().unwrap_or(b'x');
    if first.is_ascii_digit() {
        let (t, c) = match s.split_once('/') {
            Some((t, c)) => (t, Some(c)),
            None => (s, None),
        };
        let t = number(t, 255, "ICMP type")? as u8;
        return Ok(match c {
            None => mk(t, 0, 255),
            Some(c) => {
                let c = number(c, 255, "ICMP code")? as u8;
                mk(t, c, c)
            }
        });
    }
    let hits: Vec<&(&str, u8, u8, u8)> = table
        .iter()
        .filter(|e| {
            e.0.len() >= s.len() && e.0.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
        })
        .collect();
    match hits.as_slice() {
        [] => fail_hint(
            format!("unknown ICMP{} type `{s}`", if v6 { "v6" } else { "" }),
            "expected a name such as echo-request, a number, or type/code",
        ),
        [e] => Ok(mk(e.1, e.2, e.3)),
        [a, b, ..] => {
            // Aliases of the same value (neighbour/neighbor) are not ambiguous.
            if hits.iter().all(|e| (e.1, e.2, e.3) == (a.1, a.2, a.3)) {
                return Ok(mk(a.1, a.2, a.3));
            }
            if let Some(e) = hits.iter().find(|e| e.0.eq_ignore_ascii_case(s)) {
                return Ok(mk(e.1, e.2, e.3));
            }
            fail_hint(
                format!("ambiguous ICMP type `{s}`"),
                format!("did you mean `{}` or `{}`?", a.0, b.0),
            )
        }
    }
}

/// State list for `--state` (`allow_nat`: false) or `--ctstate` (true).
pub(crate) fn states(s: &str, allow_nat: bool) -> VResult<u16> {
    let mut v = 0;
    for name in s.split(',') {
        let up = name.to_ascii_uppercase();
        match ct_state::NAMES.iter().find(|e| e.0 == up) {
            Some(e) if allow_nat || (e.1 != ct_state::SNAT && e.1 != ct_state::DNAT) => v |= e.1,
            _ => {
                return fail_hint(
                    format!("bad state `{name}`"),
                    if allow_nat {
                        "expected INVALID, NEW, RELATED, ESTABLISHED, UNTRACKED, SNAT or DNAT, comma separated"
                    } else {
                        "expected INVALID, NEW, RELATED, ESTABLISHED or UNTRACKED, comma separated (SNAT/DNAT need -m conntrack --ctstate)"
                    },
                )
            }
        }
    }
    Ok(v)
}

/// `--limit N[/second|/minute|/hour|/day]` (units by case-insensitive prefix) to `avg`.
pub(crate) fn limit_rate(s: &str) -> VResult<u32> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (s, None),
    };
    let bad = || -> Fail {
        Fail {
            msg: format!("bad rate `{s}`"),
            hint: Some("expected N/second, N/minute, N/hour or N/day".into()),
        }
    };
    let r = number(n, u32::MAX as u64, "rate").map_err(|_| bad())?;
    if r == 0 {
        return Err(bad());
    }
    let mult: u64 = match unit {
        None => 1,
        Some(u) => {
            let is = |full: &str| {
                !u.is_empty()
                    && full.len() >= u.len()
                    && full.as_bytes()[..u.len()].eq_ignore_ascii_case(u.as_bytes())
            };
            if is("second") {
                1
            } else if is("minute") {
                60
            } else if is("hour") {
                3600
            } else if is("day") {
                86400
            } else {
                return Err(bad());
            }
        }
    };
    if r / mult > LimitMatch::SCALE as u64 {
        return fail_hint(format!("rate too fast `{s}`"), "at most 10000/second");
    }
    Ok((LimitMatch::SCALE as u64 * mult / r) as u32)
}

/// A MAC address `xx:xx:xx:xx:xx:xx` (1 or 2 hex digits per byte).
pub(crate) fn mac(s: &str) -> VResult<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut out = [0u8; 6];
    if parts.len() != 6 {
        return fail_hint(
            format!("bad MAC address `{s}`"),
            "expected xx:xx:xx:xx:xx:xx",
        );
    }
    for (i, p) in parts.iter().enumerate() {
        match u8::from_str_radix(p, 16) {
            Ok(v) if !p.is_empty() && p.len() <= 2 && !p.starts_with('+') => out[i] = v,
            _ => {
                return fail_hint(
                    format!("bad MAC address `{s}`"),
                    "expected xx:xx:xx:xx:xx:xx",
                )
            }
        }
    }
    Ok(out)
}

/// `a-b` or `a` address range of `-m iprange`.
pub(crate) fn ip_range(s: &str, family: Family, negated: bool) -> VResult<IpRange> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let lo = plain_addr(a, family)?;
    let hi = plain_addr(b, family)?;
    Ok(IpRange { lo, hi, negated })
}

/// `--log-level`: syslog name (exact, lower case) or number 0-7.
pub(crate) fn log_level(s: &str) -> VResult<u8> {
    const NAMES: [(&str, u8); 9] = [
        ("alert", 1),
        ("crit", 2),
        ("debug", 7),
        ("emerg", 0),
        ("error", 3),
        ("info", 6),
        ("notice", 5),
        ("panic", 0),
        ("warning", 4),
    ];
    if let Some(e) = NAMES.iter().find(|e| e.0 == s) {
        return Ok(e.1);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v @ 0..=7) = s.parse::<u8>() {
            return Ok(v);
        }
    }
    let hint = match s.to_ascii_lowercase().as_str() {
        "err" => "did you mean `error`?".to_string(),
        "warn" | "warning" => "did you mean `warning`?".to_string(),
        _ => "expected 0-7 or emerg, alert, crit, error, warning, notice, info, debug".to_string(),
    };
    fail_hint(format!("unknown log level `{s}`"), hint)
}

/// `--reject-with`: first table entry whose name or alias starts with `s` (iptables' rule).
pub(crate) fn reject_with(s: &str, family: Family) -> VResult<RejectWith> {
    let table: &[(&str, &str, RejectWith)] = match family {
        Family::Ipv4 => &RejectWith::V4,
        Family::Ipv6 => &RejectWith::V6,
    };
    let pre = |full: &str| {
        full.len() >= s.len() && full.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
    };
    if let Some(e) = table.iter().find(|e| pre(e.0) || pre(e.1)) {
        return Ok(e.2);
    }
    let names: Vec<&str> = table.iter().map(|e| e.0).collect();
    fail_hint(
        format!("unknown reject type `{s}`"),
        format!("expected one of {}", names.join(", ")),
    )
}

/// Address range and port range of a NAT target.
pub(crate) type NatParts = (Option<(IpAddr, IpAddr)>, Option<NatPorts>);

/// A service name as `xtables_service_to_port(name, NULL)` finds it: `getservbyname` with no
/// protocol, so a name of any protocol in /etc/services.
fn service_any(s: &str) -> Option<u16> {
    SERVICES.iter().find(|e| e.0 == s).map(|e| e.1)
}

/// A port as `xtables_strtoui(s, &end, .., 0, 65535)` reads it: the value and what follows.
fn port_prefix(s: &str) -> Option<(u16, &str)> {
    strtou32(s).and_then(|(v, rest)| u16::try_from(v).ok().map(|v| (v, rest)))
}

/// `port[-port[/base]]` of the NAT targets (libxt_NAT's `parse_ports`, also `--to-ports`):
/// numbers in any base strtoul reads (`0x10`, `010`); the first port may be a service name
/// instead (the whole argument then: `ftp-data`, not `ssh-100`), the last not; the base is a
/// number 1-65535 (what follows its digits is ignored, as iptables does) or a service name.
pub(crate) fn nat_ports(s: &str) -> VResult<NatPorts> {
    let bad = |p: &str| {
        fail_hint(
            format!("invalid port `{p}` in `{s}`"),
            "expected port[-port[/baseport]], a port being a number 0-65535 or a service name",
        )
    };
    let (lo, rest) = match port_prefix(s) {
        Some(x) => x,
        None => match service_any(s) {
            Some(p) => (p, ""),
            None => return bad(s),
        },
    };
    let arg = match rest.as_bytes().first() {
        None => return Ok(NatPorts::single(lo)),
        Some(b'-') => &rest[1..],
        Some(b':') => {
            return fail_hint(
                format!("invalid port range `{s}`"),
                "NAT port ranges use a dash: lo-hi",
            )
        }
        Some(_) => return fail(format!("garbage `{rest}` after the port in `{s}`")),
    };
    let Some((hi, rest)) = port_prefix(arg) else {
        return bad(arg);
    };
    if hi < lo {
        return fail_hint(
            format!("invalid port range `{s}`: start is above end"),
            format!("write `{hi}-{lo}`"),
        );
    }
    let base = match rest.as_bytes().first() {
        None => None,
        Some(b'/') => {
            let b = &rest[1..];
            match port_prefix(b) {
                Some((v, _)) if v >= 1 => Some(v),
                _ => match service_any(b) {
                    Some(p) => Some(p),
                    None => {
                        return fail_hint(
                            format!("invalid base port `{b}` in `{s}`"),
                            "expected a number 1-65535 or a service name",
                        )
                    }
                },
            }
        }
        Some(_) => return fail(format!("garbage `{rest}` after the port range in `{s}`")),
    };
    Ok(NatPorts { lo, hi, base })
}

/// `[addr[-addr]][:ports]` of SNAT/DNAT as libxt_NAT's `parse_to` splits it. IPv6 puts the
/// addresses in brackets when ports follow (`[2001:2::1]:80`); without brackets an IPv6
/// argument is all address (it has more than one colon). Quirks kept: a colon at offset 0 or
/// 2 means "no address" (`:80`, `[]:80`), and text between `]` and the colon is ignored.
pub(crate) fn nat_range(s: &str, family: Family) -> VResult<NatParts> {
    let (addr, colon) = match s.find('[') {
        None => {
            let c = s.find(':').filter(|&c| !s[c + 1..].contains(':'));
            (&s[..c.unwrap_or(s.len())], c)
        }
        Some(_) if family == Family::Ipv4 => {
            return fail_hint(
                format!("invalid NAT address `{s}`"),
                "brackets are for IPv6 addresses; write addr[-addr][:port[-port]]",
            )
        }
        Some(i) => {
            let inner = &s[i + 1..];
            let Some(j) = inner.find(']') else {
                return fail_hint(
                    format!("invalid NAT address `{s}`: no closing `]`"),
                    "expected [addr[-addr]]:port[-port]",
                );
            };
            let after = i + 1 + j + 1;
            (&inner[..j], s[after..].find(':').map(|k| k + after))
        }
    };
    let ports = match colon {
        Some(c) => Some(nat_ports(&s[c + 1..])?),
        None => None,
    };
    if matches!(colon, Some(0 | 2)) {
        return Ok((None, ports));
    }
    let (lo, hi) = addr.split_once('-').unwrap_or((addr, addr));
    let lo = plain_addr(lo, family)?;
    let hi = plain_addr(hi, family)?;
    Ok((Some((lo, hi)), ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalise() {
        let a = address("10.11.12.13/16", Family::Ipv4, false)
            .unwrap()
            .unwrap();
        assert_eq!(a.addr, "10.11.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.prefix_len(), Some(16));
        let a = address("10.1", Family::Ipv4, false).unwrap().unwrap();
        assert_eq!(a.addr, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(a.prefix_len(), Some(32));
        assert_eq!(address("1.2.3.4/0", Family::Ipv4, false).unwrap(), None);
        let a = address("10.0.0.0/255.0.255.0", Family::Ipv4, false)
            .unwrap()
            .unwrap();
        assert_eq!(a.prefix_len(), None);
        assert!(address("example.com", Family::Ipv4, false)
            .unwrap_err()
            .msg
            .contains("host names"));
        assert!(address("1.2.3.256", Family::Ipv4, false).is_err());
        let a = address("2001:2::1/48", Family::Ipv6, false)
            .unwrap()
            .unwrap();
        assert_eq!(a.addr, "2001:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(
            port_range(":1023", "tcp").unwrap(),
            PortRange { lo: 0, hi: 1023 }
        );
        assert_eq!(
            port_range("ssh", "tcp").unwrap(),
            PortRange { lo: 22, hi: 22 }
        );
        assert!(port_range("ssh", "udp").is_err());
        assert!(port_range("10:5", "tcp").is_err());
        assert_eq!(protocol("TCP").unwrap(), Some(6));
        assert_eq!(protocol("all").unwrap(), None);
        assert_eq!(protocol("41").unwrap(), Some(41));
        assert_eq!(protocol_name(58), "ipv6-icmp");
    }

    #[test]
    fn icmp_names() {
        let m = icmp_type("fragmentation-needed", false, false).unwrap();
        assert_eq!((m.icmp_type, m.code_min, m.code_max), (3, 4, 4));
        assert!(icmp_type("echo", false, false).is_err());
        assert_eq!(
            icmp_type("echo-r", false, false).unwrap_err().hint.unwrap(),
            "did you mean `echo-reply` or `echo-request`?"
        );
        assert_eq!(icmp_type("neighbor-s", true, false).unwrap().icmp_type, 135);
    }

    #[test]
    fn marks_read_as_strtoul_base_0() {
        assert_eq!(mark_mask("1", "mark"), Ok((1, u32::MAX)));
        assert_eq!(mark_mask("0x10/0xff", "mark"), Ok((16, 255)));
        assert_eq!(mark_mask("010/0X3", "mark"), Ok((8, 3)));
        assert_eq!(mark_mask(" +1", "mark"), Ok((1, u32::MAX)));
        assert_eq!(mark_mask("0xffffffff", "mark"), Ok((u32::MAX, u32::MAX)));
        assert_eq!(mark_mask("0/0", "mark"), Ok((0, 0)));
        for bad in [
            "",
            "-1",
            "1/",
            "1/-1",
            "08",
            "0x",
            "0x100000000",
            "4294967296",
            "1/2/3",
            "1 ",
            "x",
        ] {
            assert!(mark_mask(bad, "mark").is_err(), "{bad:?}");
        }
        assert_eq!(u32_any_base("0xf", "mask"), Ok(15));
        assert_eq!(u32_any_base("017", "mask"), Ok(15));
        assert!(u32_any_base("1/2", "mask").is_err());
        assert!(u32_any_base("-0", "mask").is_err());
    }

    #[test]
    fn rates_levels_reject() {
        assert_eq!(limit_rate("1500/minute").unwrap(), 400);
        assert_eq!(limit_rate("3/hour").unwrap(), LimitMatch::DEFAULT.avg);
        assert!(limit_rate("0/s").is_err());
        assert_eq!(log_level("debug").unwrap(), 7);
        assert!(log_level("warn").is_err());
        assert_eq!(
            reject_with("tcp-rst", Family::Ipv4).unwrap(),
            RejectWith::TcpReset
        );
        assert_eq!(
            reject_with("adm", Family::Ipv6).unwrap(),
            RejectWith::Icmp6AdmProhibited
        );
        assert!(reject_with("tcp-rst", Family::Ipv6).is_err());
    }
}
