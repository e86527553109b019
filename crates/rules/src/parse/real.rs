//! The match and target extensions iptables 1.8.9 has (the `libxt_*`, `libipt_*` and
//! `libip6t_*` of its `xtables/` directory, by the names they register), so that a rule using
//! one that fwd does not support is told so, rather than "did you mean `tcp`?" for `-m sctp`
//! or "a user chain must be declared" for `-j TEE`.

use crate::ast::Family;

/// Whether the name follows `-m` or `-j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Match,
    Target,
}

/// Matches both tools have (`libxt_*`).
const MATCHES_XT: &[&str] = &[
    "addrtype",
    "bpf",
    "cgroup",
    "cluster",
    "comment",
    "connbytes",
    "connlabel",
    "connlimit",
    "connmark",
    "conntrack",
    "cpu",
    "dccp",
    "devgroup",
    "dscp",
    "ecn",
    "esp",
    "hashlimit",
    "helper",
    "ipcomp",
    "iprange",
    "ipvs",
    "length",
    "limit",
    "mac",
    "mark",
    "multiport",
    "nfacct",
    "osf",
    "owner",
    "physdev",
    "pkttype",
    "policy",
    "quota",
    "rateest",
    "recent",
    "rpfilter",
    "sctp",
    "set",
    "socket",
    "state",
    "statistic",
    "string",
    "tcp",
    "tcpmss",
    "time",
    "tos",
    "u32",
    "udp",
];

/// Matches only iptables has (`libipt_*`).
const MATCHES_IPT: &[&str] = &["ah", "icmp", "realm", "ttl"];

/// Matches only ip6tables has (`libip6t_*`).
const MATCHES_IP6T: &[&str] = &[
    "ah",
    "dst",
    "eui64",
    "frag",
    "hbh",
    "hl",
    "icmp6",
    "ipv6header",
    "mh",
    "rt",
    "srh",
];

/// Targets both tools have (`libxt_*`; `QUEUE` is a standard verdict there).
const TARGETS_XT: &[&str] = &[
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DSCP",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "QUEUE",
    "RATEEST",
    "REDIRECT",
    "SECMARK",
    "SET",
    "SNAT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
];

/// Targets only iptables has (`libipt_*`).
const TARGETS_IPT: &[&str] = &["CLUSTERIP", "ECN", "NETMAP", "REJECT", "TTL", "ULOG"];

/// Targets only ip6tables has (`libip6t_*`).
const TARGETS_IP6T: &[&str] = &["DNPT", "HL", "NETMAP", "REJECT", "SNPT"];

/// The tool that has extension `name` of this kind, preferring `family`'s; `None` if neither.
fn tool(kind: Kind, name: &str, family: Family) -> Option<&'static str> {
    let (both, v4, v6) = match kind {
        Kind::Match => (MATCHES_XT, MATCHES_IPT, MATCHES_IP6T),
        Kind::Target => (TARGETS_XT, TARGETS_IPT, TARGETS_IP6T),
    };
    let (own, other, own_tool, other_tool) = match family {
        Family::Ipv4 => (v4, v6, "iptables", "ip6tables"),
        Family::Ipv6 => (v6, v4, "ip6tables", "iptables"),
    };
    if both.contains(&name) || own.contains(&name) {
        Some(own_tool)
    } else if other.contains(&name) {
        Some(other_tool)
    } else {
        None
    }
}

/// The message for a real iptables extension fwd does not support (`None`: not a real one).
/// Only asked once fwd's own registry has no such extension for this family.
pub(super) fn unsupported(kind: Kind, name: &str, family: Family) -> Option<String> {
    tool(kind, name, family)
        .map(|t| format!("`{name}` is a real {t} extension that fwd does not support"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tool_that_has_it() {
        assert_eq!(
            unsupported(Kind::Match, "u32", Family::Ipv4).as_deref(),
            Some("`u32` is a real iptables extension that fwd does not support")
        );
        assert_eq!(
            unsupported(Kind::Match, "frag", Family::Ipv4).as_deref(),
            Some("`frag` is a real ip6tables extension that fwd does not support")
        );
        assert_eq!(
            unsupported(Kind::Target, "HL", Family::Ipv6).as_deref(),
            Some("`HL` is a real ip6tables extension that fwd does not support")
        );
        assert_eq!(unsupported(Kind::Match, "sctpp", Family::Ipv4), None);
        // Case matters, as in iptables: `tee` may be a user chain.
        assert_eq!(unsupported(Kind::Target, "tee", Family::Ipv4), None);
    }

    #[test]
    fn lists_are_sorted_and_without_duplicates() {
        for l in [
            MATCHES_XT,
            MATCHES_IPT,
            MATCHES_IP6T,
            TARGETS_XT,
            TARGETS_IPT,
            TARGETS_IP6T,
        ] {
            assert!(l.windows(2).all(|w| w[0] < w[1]), "{l:?}");
        }
    }
}
