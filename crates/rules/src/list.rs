//! `iptables -L -n -v --line-numbers` style listing, counters supplied by the caller.

use std::fmt::Write;

use crate::ast::*;
use crate::print::{addr_text, icmp_text, rate_text, states};
use crate::values::protocol_name;

/// iptables' `-v` number format: plain below 100000, then K/M/G/T/P with integer division.
fn num(v: u64) -> String {
    let mut v = v;
    for unit in ["", "K", "M", "G", "T"] {
        if v < 100_000 {
            return format!("{v}{unit}");
        }
        v /= 1000;
    }
    format!("{v}P")
}

fn iface(i: &Option<IfaceMatch>) -> String {
    match i {
        None => "*".into(),
        Some(i) => format!(
            "{}{}{}",
            if i.negated { "!" } else { "" },
            i.name,
            if i.wildcard { "+" } else { "" }
        ),
    }
}

fn addr(a: &Option<AddrMatch>, v6: bool) -> String {
    match a {
        None => if v6 { "::/0" } else { "0.0.0.0/0" }.into(),
        Some(a) => format!("{}{}", if a.negated { "!" } else { "" }, addr_text(a)),
    }
}

fn ports(p: &PortMatch, what: &str) -> String {
    let n = if p.negated { "!" } else { "" };
    if p.range.lo == p.range.hi {
        format!(" {what}:{n}{}", p.range.lo)
    } else {
        format!(" {what}s:{n}{}:{}", p.range.lo, p.range.hi)
    }
}

fn target_name(t: &Option<Target>) -> String {
    match t {
        None => String::new(),
        Some(Target::Accept) => "ACCEPT".into(),
        Some(Target::Drop) => "DROP".into(),
        Some(Target::Return) => "RETURN".into(),
        Some(Target::Jump(c) | Target::Goto(c)) => c.clone(),
        Some(Target::Reject(_)) => "REJECT".into(),
        Some(Target::Log(_)) => "LOG".into(),
        Some(Target::Nflog(_)) => "NFLOG".into(),
        Some(Target::Snat(_)) => "SNAT".into(),
        Some(Target::Dnat(_)) => "DNAT".into(),
        Some(Target::Masquerade { .. }) => "MASQUERADE".into(),
        Some(Target::Redirect { .. }) => "REDIRECT".into(),
        Some(Target::Notrack) => "NOTRACK".into(),
        Some(Target::CtNotrack) => "CT".into(),
    }
}

fn details(r: &Rule, v6: bool) -> String {
    let mut o = String::new();
    for m in &r.matches {
        match m {
            Match::Tcp(t) => {
                o.push_str(" tcp");
                if let Some(p) = &t.sport {
                    o.push_str(&ports(p, "spt"));
                }
                if let Some(p) = &t.dport {
                    o.push_str(&ports(p, "dpt"));
                }
                if let Some((n, inv)) = t.option {
                    let _ = write!(o, " option={}{n}", if inv { "!" } else { "" });
                }
                if let Some(f) = t.flags {
                    let _ = write!(
                        o,
                        " flags:{}0x{:02X}/0x{:02X}",
                        if f.negated { "!" } else { "" },
                        f.mask,
                        f.comp
                    );
                }
            }
            Match::Udp(u) => {
                o.push_str(" udp");
                if let Some(p) = &u.sport {
                    o.push_str(&ports(p, "spt"));
                }
                if let Some(p) = &u.dport {
                    o.push_str(&ports(p, "dpt"));
                }
            }
            Match::Icmp(i) => {
                let _ = write!(
                    o,
                    " icmp {}type {}",
                    if i.negated { "!" } else { "" },
                    icmp_text(i, false)
                );
            }
            Match::Icmp6(i) => {
                let _ = write!(
                    o,
                    " ipv6-icmp {}type {}",
                    if i.negated { "!" } else { "" },
                    icmp_text(i, true)
                );
            }
            Match::Multiport(mp) => {
                let d = match mp.dir {
                    MultiportDir::Source => "sports",
                    MultiportDir::Destination => "dports",
                    MultiportDir::Either => "ports",
                };
                let l: Vec<String> = mp
                    .ports
                    .iter()
                    .map(|p| {
                        if p.lo == p.hi {
                            p.lo.to_string()
                        } else {
                            format!("{}:{}", p.lo, p.hi)
                        }
                    })
                    .collect();
                let _ = write!(
                    o,
                    " multiport {d} {}{}",
                    if mp.negated { "! " } else { "" },
                    l.join(",")
                );
            }
            Match::State(s) => {
                let _ = write!(
                    o,
                    " {}state {}",
                    if s.negated { "! " } else { "" },
                    states(s.states)
                );
            }
            Match::Conntrack(s) => {
                let _ = write!(
                    o,
                    " {}ctstate {}",
                    if s.negated { "! " } else { "" },
                    states(s.states)
                );
            }
            Match::IpRange(ir) => {
                if let Some(s) = &ir.src {
                    let _ = write!(
                        o,
                        " source IP range {}{}-{}",
                        if s.negated { "! " } else { "" },
                        s.lo,
                        s.hi
                    );
                }
                if let Some(d) = &ir.dst {
                    let _ = write!(
                        o,
                        " destination IP range {}{}-{}",
                        if d.negated { "! " } else { "" },
                        d.lo,
                        d.hi
                    );
                }
            }
            Match::Mac { addr, negated } => {
                let _ = write!(
                    o,
                    " MAC {}{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
                    if *negated { "! " } else { "" },
                    addr[0],
                    addr[1],
                    addr[2],
                    addr[3],
                    addr[4],
                    addr[5]
                );
            }
            Match::Limit(l) => {
                let _ = write!(o, " limit: avg {} burst {}", rate_text(l.avg), l.burst);
            }
            Match::Length { min, max, negated } => {
                let _ = write!(o, " length {}{min}:{max}", if *negated { "!" } else { "" });
            }
            Match::Ttl { op, value } | Match::HopLimit { op, value } => {
                let (w, sym) = (
                    if matches!(m, Match::Ttl { .. }) {
                        "TTL"
                    } else {
                        "HL"
                    },
                    match op {
                        TtlOp::Eq => "==",
                        TtlOp::Ne => "!=",
                        TtlOp::Lt => "<",
                        TtlOp::Gt => ">",
                    },
                );
                let _ = write!(o, " {w} match {w} {sym} {value}");
            }
            Match::Comment(c) => {
                let _ = write!(o, " /* {c} */");
            }
        }
    }
    match &r.target {
        Some(Target::Reject(w)) => {
            let _ = write!(o, " reject-with {}", w.as_str());
        }
        Some(Target::Log(l)) => {
            let flags = u8::from(l.tcp_sequence)
                | u8::from(l.tcp_options) << 1
                | u8::from(l.ip_options) << 2
                | u8::from(l.uid) << 3
                | u8::from(l.macdecode) << 5;
            let _ = write!(o, " LOG flags {flags} level {}", l.level);
            if !l.prefix.is_empty() {
                let _ = write!(o, " prefix \"{}\"", l.prefix);
            }
        }
        Some(Target::Nflog(n)) => {
            let _ = write!(o, " nflog-group {}", n.group);
            if !n.prefix.is_empty() {
                let _ = write!(o, " nflog-prefix \"{}\"", n.prefix);
            }
        }
        Some(Target::Snat(n) | Target::Dnat(n)) => {
            let mut s = String::new();
            if let Some((lo, hi)) = n.addrs {
                let _ = write!(s, "{lo}");
                if hi != lo {
                    let _ = write!(s, "-{hi}");
                }
            }
            if let Some(p) = n.ports {
                let _ = write!(s, ":{}", p.lo);
                if p.hi != p.lo {
                    let _ = write!(s, "-{}", p.hi);
                }
            }
            let _ = write!(o, " to:{s}");
            if n.random {
                o.push_str(" random");
            }
            if n.persistent {
                o.push_str(" persistent");
            }
        }
        Some(Target::Masquerade { ports: Some(p), .. }) => {
            let _ = write!(o, " masq ports: {}-{}", p.lo, p.hi);
        }
        Some(Target::Redirect { ports: Some(p), .. }) => {
            let _ = write!(o, " redir ports {}-{}", p.lo, p.hi);
        }
        Some(Target::CtNotrack) => o.push_str(" NOTRACK"),
        _ => {}
    }
    let _ = v6;
    o
}

pub(crate) fn list_table(
    t: &Table,
    chain: Option<&str>,
    counters: Option<crate::Counters<'_>>,
) -> String {
    let v6 = t.chains.iter().flat_map(|c| c.rules.iter()).any(|r| {
        matches!(
            r.src.or(r.dst),
            Some(AddrMatch {
                addr: std::net::IpAddr::V6(_),
                ..
            })
        )
    });
    let get = |c: &str, i: usize| counters.map_or((0, 0), |f| f(c, i));
    let mut out = String::new();
    let mut first = true;
    for c in t
        .chains
        .iter()
        .filter(|c| chain.is_none_or(|n| n == c.name))
    {
        if !first {
            out.push('\n');
        }
        first = false;
        match c.policy {
            Some(p) => {
                let (pk, by) = get(&c.name, usize::MAX);
                let _ = writeln!(
                    out,
                    "Chain {} (policy {} {} packets, {} bytes)",
                    c.name,
                    p.as_str(),
                    num(pk),
                    num(by)
                );
            }
            None => {
                let refs = t
                    .chains
                    .iter()
                    .flat_map(|x| x.rules.iter())
                    .filter(|r| matches!(&r.target, Some(Target::Jump(n) | Target::Goto(n)) if *n == c.name))
                    .count();
                let _ = writeln!(out, "Chain {} ({refs} references)", c.name);
            }
        }
        let _ = writeln!(
            out,
            "{:<4} {:>5} {:>5} {:<10} {:<4} {:<3} {:<6} {:<6} {:<20} {:<20}",
            "num", "pkts", "bytes", "target", "prot", "opt", "in", "out", "source", "destination"
        );
        for (i, r) in c.rules.iter().enumerate() {
            let (pk, by) = get(&c.name, i);
            let prot = match r.proto {
                None => "all".to_string(),
                Some(p) => format!(
                    "{}{}",
                    if p.negated { "!" } else { "" },
                    protocol_name(p.proto)
                ),
            };
            let opt = match r.fragment {
                None => "--",
                Some(false) => "-f",
                Some(true) => "!f",
            };
            let line = format!(
                "{:<4} {:>5} {:>5} {:<10} {:<4} {:<3} {:<6} {:<6} {:<20} {:<20}{}",
                i + 1,
                num(pk),
                num(by),
                target_name(&r.target),
                prot,
                opt,
                iface(&r.in_iface),
                iface(&r.out_iface),
                addr(&r.src, v6),
                addr(&r.dst, v6),
                details(r, v6)
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_use_units() {
        assert_eq!(num(99_999), "99999");
        assert_eq!(num(100_000), "100K");
        assert_eq!(num(123_456_789), "123M");
    }
}
