//! Warnings about a ruleset that loads: rules that cannot do on a bump in the wire what they do
//! on a host. They change nothing (the ruleset loads and runs as it is); `fwd check` prints them.

use crate::ast::*;

/// A rule that cannot do what it does on a host, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based source line of the rule.
    pub line: u32,
    pub message: String,
}

impl Ruleset {
    /// The rules that can never fire on a bump in the wire: those with a host-only match
    /// (`-m owner`, `-m rpfilter`, `-m cgroup`, `-m socket`) that never matches a forwarded
    /// packet (the kernel gives the same for a packet it forwards). In source line order.
    pub fn never_fire(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        for t in &self.tables {
            for c in &t.chains {
                for r in &c.rules {
                    if let Some(k) = dead_match(r) {
                        out.push(Warning {
                            line: r.line,
                            message: format!(
                                "`-m {}` never matches a forwarded packet: this rule (table {}, chain {}) can never fire on a bump in the wire",
                                k.name(),
                                t.name.as_str(),
                                c.name
                            ),
                        });
                    }
                }
            }
        }
        out.sort_by_key(|w| w.line);
        out
    }

    /// The rules whose target fires but does not do on a bump in the wire what it does on a
    /// host: `-j CLASSIFY` sets the priority only a qdisc reads (fwd has none), `-j CHECKSUM`
    /// fills only checksums the local stack left to offload (a forwarded frame carries its
    /// own); both are counted like any rule. `-j REDIRECT` delivers to a local stack fwd does
    /// not have: the packets it takes are dropped (`redirect_local`), never forwarded, as a
    /// bridge without an address drops them. A rule [`Ruleset::never_fire`] names is not
    /// named again. In source line order.
    pub fn no_effect(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        for t in &self.tables {
            for c in &t.chains {
                for r in &c.rules {
                    if dead_match(r).is_some() {
                        continue;
                    }
                    let why = match r.target {
                        Some(Target::Redirect { .. }) => "`-j REDIRECT` delivers to the box's own stack, which a bump in the wire does not have: fwd drops what this rule takes, counted as redirect_local",
                        Some(Target::Classify(_)) => "`-j CLASSIFY` sets a priority only a queueing discipline reads, and fwd has none: this rule is counted and has no queueing effect",
                        Some(Target::Checksum) => "`-j CHECKSUM` only fills checksums the local stack leaves to offload; a forwarded frame carries its own, so this rule is counted and changes nothing",
                        _ => continue,
                    };
                    out.push(Warning {
                        line: r.line,
                        message: format!("{why} (table {}, chain {})", t.name.as_str(), c.name),
                    });
                }
            }
        }
        out.sort_by_key(|w| w.line);
        out
    }

    /// Everything `fwd check` warns about: [`Ruleset::never_fire`] and
    /// [`Ruleset::no_effect`], in source line order.
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = self.never_fire();
        out.extend(self.no_effect());
        out.sort_by_key(|w| w.line);
        out
    }
}

/// The rule's host-only match that never matches a forwarded packet, if it has one.
fn dead_match(r: &Rule) -> Option<HostOnlyKind> {
    r.matches.iter().find_map(|m| match m {
        Match::HostOnly(h) if !h.forwarded => Some(h.kind),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use crate::{parse_restore, Family};

    #[test]
    fn names_each_rule_with_a_host_only_match_that_cannot_fire() {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A PREROUTING -m rpfilter -j DROP\n\
                    -A PREROUTING -m rpfilter --invert -j DROP\n\
                    -A PREROUTING -m socket -j ACCEPT\n\
                    -A OUTPUT -m owner ! --uid-owner 0 -j ACCEPT\n\
                    -A OUTPUT -m owner --uid-owner 0 -j ACCEPT\nCOMMIT\n";
        let rs = parse_restore("t", text, Family::Ipv4).unwrap();
        let w = rs.warnings();
        let lines: Vec<u32> = w.iter().map(|w| w.line).collect();
        assert_eq!(lines, [4, 6, 8], "{w:?}");
        assert!(
            w[0].message.starts_with("`-m rpfilter` never matches"),
            "{w:?}"
        );
    }

    #[test]
    fn classify_and_checksum_are_counted_without_effect() {
        let text = "*mangle\n:PREROUTING ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
                    -A PREROUTING -j CHECKSUM --checksum-fill\n\
                    -A FORWARD -j TTL --ttl-set 3\n\
                    -A FORWARD -j CLASSIFY --set-class 1:2\nCOMMIT\n";
        let rs = parse_restore("t", text, Family::Ipv4).unwrap();
        let w = rs.warnings();
        let lines: Vec<u32> = w.iter().map(|w| w.line).collect();
        assert_eq!(lines, [4, 6], "{w:?}");
        assert!(w[0].message.starts_with("`-j CHECKSUM`"), "{w:?}");
        assert!(w[1].message.contains("no queueing effect"), "{w:?}");
        assert!(rs.never_fire().is_empty());
    }

    #[test]
    fn names_each_redirect_rule_once() {
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    :POSTROUTING ACCEPT [0:0]\n\
                    -A PREROUTING -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128\n\
                    -A PREROUTING -p tcp -m tcp --dport 81 -j DNAT --to-destination 198.18.1.2\n\
                    -A OUTPUT -p udp -m owner --uid-owner 0 -j REDIRECT\nCOMMIT\n";
        let rs = parse_restore("t", text, Family::Ipv4).unwrap();
        let w = rs.warnings();
        let lines: Vec<u32> = w.iter().map(|w| w.line).collect();
        assert_eq!(lines, [6, 8], "{w:?}");
        assert!(
            w[0].message.contains("REDIRECT") && w[0].message.contains("PREROUTING"),
            "{w:?}"
        );
    }
}
