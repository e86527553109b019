//! The registry: every match and target extension fwd knows, one line each. A new extension is
//! a file beside the others (its options, how each is applied, what the rule must have once
//! the line is read) and one line in [`MATCHES`] or [`TARGETS`]; the driver, the option
//! resolution and the hints ("belongs to `-m X`", "fwd supports: ...") follow from these lists.
//!
//! The order is the one fwd's hints list them in, and the order in which an option name is
//! looked up to say which extension it belongs to (`--sport` names tcp before multiport).

use super::targets::{ct, log, mark as mark_t, nat, reject, rewrite};
use super::{
    comment, connbytes, connlimit, conntrack, hashlimit, hostonly, icmp, iprange, ipv6ext, length,
    limit, mac, mark, multiport, proto, real, recent, stateless, statistic, suggest, tcp_udp, time,
    ttl, OptSpec,
};
use crate::ast::*;
use crate::values::{Fail, VResult};

pub(super) static MATCHES: &[MatchExt] = &[
    tcp_udp::TCP,
    tcp_udp::UDP,
    icmp::ICMP,
    icmp::ICMP6,
    multiport::MULTIPORT,
    conntrack::STATE,
    conntrack::CONNTRACK,
    iprange::IPRANGE,
    mac::MAC,
    limit::LIMIT,
    length::LENGTH,
    ttl::TTL,
    ttl::HL,
    comment::COMMENT,
    stateless::ADDRTYPE,
    stateless::PKTTYPE,
    stateless::PHYSDEV,
    stateless::TOS,
    stateless::DSCP,
    stateless::ECN,
    hostonly::OWNER,
    hostonly::RPFILTER,
    hostonly::CGROUP,
    hostonly::SOCKET,
    recent::RECENT,
    statistic::STATISTIC,
    proto::SCTP,
    proto::DCCP,
    proto::ESP,
    proto::AH4,
    proto::AH6,
    ipv6ext::RT,
    mark::MARK,
    mark::CONNMARK,
    time::TIME,
    hashlimit::HASHLIMIT,
    connlimit::CONNLIMIT,
    connbytes::CONNBYTES_EXT,
];

/// The extension targets (besides ACCEPT, DROP, RETURN and user chains).
pub(super) static TARGETS: &[TargetExt] = &[
    reject::REJECT,
    log::LOG,
    log::NFLOG,
    nat::SNAT,
    nat::DNAT,
    nat::MASQUERADE,
    nat::REDIRECT,
    nat::NETMAP,
    ct::NOTRACK,
    ct::CT,
    mark_t::MARK,
    mark_t::CONNMARK,
    rewrite::TTL,
    rewrite::HL,
    rewrite::DSCP,
    rewrite::TOS,
    rewrite::TCPMSS,
    rewrite::ECN,
    rewrite::CHECKSUM,
    rewrite::CLASSIFY,
];

/// A match extension: `-m NAME`, or loaded implicitly by `-p tcp|udp|icmp|ipv6-icmp`.
pub(super) struct MatchExt {
    /// The name after `-m`, as [`Match::name`] gives it.
    pub name: &'static str,
    /// The one family whose tool has it (`icmp` and `ttl` are iptables', `icmp6` and `hl`
    /// ip6tables'); `None`: both.
    pub family: Option<Family>,
    pub opts: &'static [OptSpec<u8>],
    /// Options of which one match may have only one (`--ttl-eq`, `--ttl-lt`, `--ttl-gt`).
    pub exclusive: &'static [u8],
    /// The match as `-m` loads it, before any option.
    pub new: fn() -> Match,
    /// Applies one of `opts` to the match.
    pub apply: fn(&mut Match, &OptArg) -> VResult<()>,
    /// What the error names when none of the options was given.
    pub required: Option<&'static str>,
    /// The `-p` the rule must have (`-m tcp` needs `-p tcp`): protocol number and spelling.
    pub proto: Option<(u8, &'static str)>,
    /// A check once the line is read; an error comes with the word whose column it points at.
    pub check: Option<Check>,
}

/// An error of a check made once the line is read, with the word whose column it points at.
pub(super) type Located = (&'static str, Fail);

/// A match's own check once the line is read ([`MatchExt::check`]).
pub(super) type Check = fn(&Match) -> Result<(), Located>;

/// A target extension: `-j NAME`.
pub(super) struct TargetExt {
    pub name: &'static str,
    pub opts: &'static [OptSpec<u8>],
    /// The one table the kernel allows it in; `None`: any.
    pub table: Option<TableName>,
    /// The one family whose tool has it (`TTL` and `ECN` are iptables', `HL` ip6tables');
    /// `None`: both.
    pub family: Option<Family>,
    /// The target as `-j` loads it, with iptables' defaults.
    pub new: fn(Family) -> Target,
    /// Applies one of `opts` to the target.
    pub apply: fn(&mut Target, &OptArg) -> VResult<()>,
    /// Completes the target once the line is read, given the rule's `-p` and the ids of the
    /// options given.
    pub finish: fn(Target, Option<ProtoMatch>, &[u8]) -> VResult<Target>,
}

/// One option as given, for an extension's `apply`.
pub(super) struct OptArg<'x> {
    /// The option's id in its extension's `opts`.
    pub id: u8,
    /// Preceded by `!`.
    pub neg: bool,
    /// The first argument (empty for an option without one).
    pub value: &'x str,
    /// All arguments with their columns.
    pub args: &'x [(String, u32)],
    pub family: Family,
    /// The rule's `-p` as far as the line has been read.
    pub proto: Option<ProtoMatch>,
}

/// A target with nothing left to check once the line is read.
pub(super) fn as_given(t: Target, _: Option<ProtoMatch>, _: &[u8]) -> VResult<Target> {
    Ok(t)
}

pub(super) fn find_match(name: &str, family: Family) -> Option<&'static MatchExt> {
    MATCHES
        .iter()
        .find(|m| m.name == name && m.family.is_none_or(|f| f == family))
}

pub(super) fn find_target(name: &str, family: Family) -> Option<&'static TargetExt> {
    TARGETS
        .iter()
        .find(|t| t.name == name && t.family.is_none_or(|f| f == family))
}

/// Each name once (`ah` is two extensions, one per family).
pub(super) fn match_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for m in MATCHES {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    names
}

pub(super) fn target_names(family: Family) -> Vec<&'static str> {
    TARGETS
        .iter()
        .filter(|t| t.family.is_none_or(|f| f == family))
        .map(|t| t.name)
        .collect()
}

/// Why `-m NAME` cannot be loaded, and what fwd has instead.
pub(super) fn unknown_match(name: &str, family: Family) -> Fail {
    let supported = || format!("fwd supports: {}", match_names().join(", "));
    let hint = match name {
        "icmp" => Some("ip6tables uses `-m icmp6` (with `-p ipv6-icmp`)".to_string()),
        "icmp6" | "icmpv6" => Some("iptables uses `-m icmp` (with `-p icmp`)".to_string()),
        "ttl" => Some("ip6tables uses `-m hl`".to_string()),
        "hl" => Some("iptables uses `-m ttl`".to_string()),
        _ => {
            let other = match family {
                Family::Ipv4 => (Family::Ipv6, "ip6tables", "iptables"),
                Family::Ipv6 => (Family::Ipv4, "iptables", "ip6tables"),
            };
            if find_match(name, other.0).is_some() {
                return Fail {
                    msg: format!(
                        "`{name}` is an {} match: {} has no `{name}`",
                        other.1, other.2
                    ),
                    hint: Some(format!("move the rule to the {} rules file", other.1)),
                };
            }
            if let Some(msg) = real::unsupported(real::Kind::Match, name, family) {
                return Fail {
                    msg,
                    hint: Some(supported()),
                };
            }
            suggest(name, &match_names())
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some(supported()))
        }
    };
    Fail {
        msg: format!("unknown match `{name}`"),
        hint,
    }
}
