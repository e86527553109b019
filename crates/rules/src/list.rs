//! `iptables -L -n -v --line-numbers` style listing, counters supplied by the caller.

use std::fmt::Write;

use crate::ast::*;
use crate::print::{addr_text, rate_text, states, statistic_text};

/// iptables' `-v` number format (`xtables_print_num`): plain up to 99999, then rounded
/// thousands with K, M, G, T while they exceed 9999.
fn num(v: u64) -> String {
    if v <= 99_999 {
        return v.to_string();
    }
    let mut v = v.saturating_add(500) / 1000;
    for unit in ["K", "M", "G"] {
        if v <= 9999 {
            return format!("{v}{unit}");
        }
        v = (v + 500) / 1000;
    }
    format!("{v}T")
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

/// An address column: `!` or a blank, then the address (hosts without `/32`), padded to 19.
fn addr(a: &Option<AddrMatch>, v6: bool) -> String {
    match a {
        None => format!(" {:<19}", if v6 { "::/0" } else { "0.0.0.0/0" }),
        Some(a) => {
            let text = match a.prefix_len() {
                Some(32) if !v6 => a.addr.to_string(),
                Some(128) if v6 => a.addr.to_string(),
                _ => addr_text(a),
            };
            format!("{}{:<19}", if a.negated { "!" } else { " " }, text)
        }
    }
}

/// `icmptype 8`, `icmp !type 3 code 4` as `-L` prints ICMP conditions.
fn icmp_list(prefix: &str, m: &IcmpMatch) -> String {
    let mut o = format!(
        "{prefix}{}type {}",
        if m.negated { " !" } else { "" },
        m.icmp_type
    );
    if m.code_min == m.code_max {
        let _ = write!(o, " code {}", m.code_min);
    } else if m.code_min != 0 || m.code_max != 255 {
        let _ = write!(o, " codes {}-{}", m.code_min, m.code_max);
    }
    o
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
        Some(Target::Netmap { .. }) => "NETMAP".into(),
        // NOTRACK is an alias of CT --notrack.
        Some(Target::Notrack | Target::CtNotrack) => "CT".into(),
        Some(Target::Mark(_)) => "MARK".into(),
        Some(Target::Connmark(_)) => "CONNMARK".into(),
        Some(Target::Ttl(_)) => "TTL".into(),
        Some(Target::Hl(_)) => "HL".into(),
        Some(Target::Dscp(_)) => "DSCP".into(),
        Some(Target::Tos { .. }) => "TOS".into(),
        Some(Target::Tcpmss(_)) => "TCPMSS".into(),
        Some(Target::Ecn(_)) => "ECN".into(),
        Some(Target::Checksum) => "CHECKSUM".into(),
        Some(Target::Classify(_)) => "CLASSIFY".into(),
    }
}

fn details(r: &Rule, v6: bool) -> String {
    let mut o = String::new();
    if matches!(r.target, Some(Target::Goto(_))) {
        o.push_str("[goto] ");
    }
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
            Match::Icmp(i) => o.push_str(&icmp_list(" icmp", i)),
            Match::Icmp6(i) => o.push_str(&icmp_list(" ipv6-icmp", i)),
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
                    if mp.negated { " !" } else { "" },
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
            Match::Conntrack(c) => crate::parse::conntrack::dump(&mut o, c, false, states),
            Match::Time(t) => crate::parse::time::list(&mut o, t),
            Match::Hashlimit(h) => crate::parse::hashlimit::list(&mut o, h),
            Match::Connlimit(c) => crate::parse::connlimit::list(&mut o, c),
            Match::Connbytes(c) => crate::parse::connbytes::list(&mut o, c),
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
                    " MAC {}{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
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
                let n = if *negated { "!" } else { "" };
                let _ = if min == max {
                    write!(o, " length {n}{min}")
                } else {
                    write!(o, " length {n}{min}:{max}")
                };
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
            Match::Sctp(_) | Match::Dccp(_) | Match::Esp(_) | Match::Ah(_) | Match::Rt(_) => {
                crate::proto_print::list(m, &mut o)
            }
            Match::Comment(c) => {
                let _ = write!(o, " /* {c} */");
            }
            Match::Recent(rm) => {
                if rm.invert {
                    o.push_str(" !");
                }
                o.push_str(match rm.cmd {
                    Some(RecentCmd::Set) | None => " recent: SET",
                    Some(RecentCmd::Check) => " recent: CHECK",
                    Some(RecentCmd::Update) => " recent: UPDATE",
                    Some(RecentCmd::Remove) => " recent: REMOVE",
                });
                if rm.seconds != 0 {
                    let _ = write!(o, " seconds: {}", rm.seconds as i32);
                }
                if rm.reap {
                    o.push_str(" reap");
                }
                if rm.hitcount != 0 {
                    let _ = write!(o, " hit_count: {}", rm.hitcount);
                }
                if rm.rttl {
                    o.push_str(" TTL-Match");
                }
                let side = if rm.rdest { "dest" } else { "source" };
                let _ = write!(o, " name: {} side: {side} mask: {}", rm.name, rm.mask);
            }
            Match::Statistic(s) => {
                o.push_str(" statistic");
                statistic_text(&mut o, s, "");
            }
            // libxt_mark.c prints ` mark match [!]`, libxt_connmark.c ` connmark match [!]`
            // (so two blanks before an uninverted value)
            Match::Mark(mm) => {
                o.push_str(" mark match");
                if mm.negated {
                    o.push_str(" !");
                }
                crate::print::mark_text(&mut o, mm);
            }
            Match::Connmark(mm) => {
                o.push_str(" connmark match ");
                if mm.negated {
                    o.push('!');
                }
                crate::print::mark_text(&mut o, mm);
            }
            Match::HostOnly(h) => o.push_str(&h.list),
            m => {
                let known = crate::parse::stateless::list(&mut o, m);
                debug_assert!(known, "no list text for {m:?}");
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
            if !n.prefix.is_empty() {
                // `xtables_save_string`, as libxt_NFLOG prints it: quoted only when it must be.
                o.push_str(" nflog-prefix");
                crate::print::save_string(&mut o, &n.prefix);
            }
            if n.group != 0 {
                let _ = write!(o, " nflog-group {}", n.group);
            }
            if let Some(s) = n.size {
                let _ = write!(o, " nflog-size {s}");
            } else if n.range != 0 {
                let _ = write!(o, " nflog-range {}", n.range);
            }
            if n.threshold != 0 {
                let _ = write!(o, " nflog-threshold {}", n.threshold);
            }
        }
        Some(Target::Snat(n) | Target::Dnat(n)) => {
            let s = crate::print::nat_range_text(n);
            let _ = write!(o, " to:{s}");
            flags(&mut o, n.random, n.random_fully, n.persistent);
        }
        Some(Target::Masquerade {
            ports,
            random,
            random_fully,
        }) => {
            if let Some(p) = ports {
                let _ = write!(o, " masq ports: {}", crate::print::nat_ports_text(p));
            }
            flags(&mut o, *random, *random_fully, false);
        }
        Some(Target::Redirect { ports, random }) => {
            if let Some(p) = ports {
                let _ = write!(o, " redir ports {}", crate::print::nat_ports_text(p));
            }
            flags(&mut o, *random, false, false);
        }
        Some(Target::Netmap { addr, prefix }) => {
            let _ = write!(o, " to:{addr}/{prefix}");
        }
        Some(Target::Notrack) => o.push_str(" NOTRACK"),
        Some(Target::CtNotrack) => o.push_str(" CT notrack"),
        Some(Target::Mark(x)) => xmark_list(&mut o, "MARK", x.value, x.mask),
        Some(Target::Connmark(c)) => match c.mode {
            ConnmarkMode::Set => xmark_list(&mut o, "CONNMARK", c.ctmark, c.ctmask),
            ConnmarkMode::Save => {
                masks_list(&mut o, "save", ("nfmask", c.nfmask), ("ctmask", c.ctmask))
            }
            ConnmarkMode::Restore => masks_list(
                &mut o,
                "restore",
                ("ctmask", c.ctmask),
                ("nfmask", c.nfmask),
            ),
        },
        Some(Target::Ttl(x) | Target::Hl(x)) => {
            let name = if matches!(r.target, Some(Target::Ttl(_))) {
                "TTL"
            } else {
                "HL"
            };
            let mode = match x.mode {
                TtlMode::Set => "set to",
                TtlMode::Dec => "decrement by",
                TtlMode::Inc => "increment by",
            };
            let _ = write!(o, " {name} {mode} {}", x.value);
        }
        Some(Target::Dscp(d)) => {
            let _ = write!(o, " DSCP set {d:#04x}");
        }
        // `-n`: `tos_tg_print` prints the pair, never a name or an and/or/xor form.
        Some(Target::Tos { value, mask }) => {
            let _ = write!(o, " TOS set {value:#04x}/{mask:#04x}");
        }
        Some(Target::Tcpmss(Tcpmss::Set(m))) => {
            let _ = write!(o, " TCPMSS set {m}");
        }
        Some(Target::Tcpmss(Tcpmss::ClampPmtu)) => o.push_str(" TCPMSS clamp to PMTU"),
        Some(Target::Ecn(e)) => {
            o.push_str(" ECN");
            if e.is_remove() {
                o.push_str(" TCP remove");
            } else {
                if let Some(v) = e.ece {
                    let _ = write!(o, " ECE={v}");
                }
                if let Some(v) = e.cwr {
                    let _ = write!(o, " CWR={v}");
                }
                if let Some(v) = e.ect {
                    let _ = write!(o, " ECT codepoint={v}");
                }
            }
        }
        Some(Target::Checksum) => o.push_str(" CHECKSUM fill"),
        Some(Target::Classify(p)) => {
            let _ = write!(o, " CLASSIFY set {:x}:{:x}", p >> 16, p & 0xffff);
        }
        _ => {}
    }
    let _ = v6;
    o
}

/// `mark_tg_print_v2` / the set mode of `connmark_tg_print`: the operation the pair came from.
fn xmark_list(o: &mut String, name: &str, value: u32, mask: u32) {
    let _ = if value == 0 {
        write!(o, " {name} and {:#x}", !mask)
    } else if value == mask {
        write!(o, " {name} or {value:#x}")
    } else if mask == 0 {
        write!(o, " {name} xor {value:#x}")
    } else if mask == u32::MAX {
        write!(o, " {name} set {value:#x}")
    } else {
        write!(o, " {name} xset {value:#x}/{mask:#x}")
    };
}

/// CONNMARK's save and restore modes as `connmark_tg_print` lists them: nothing for the
/// default masks, one `mask` when equal, else both (the second one with a `~`, as iptables has it).
fn masks_list(o: &mut String, name: &str, (n1, a): (&str, u32), (n2, b): (&str, u32)) {
    let _ = if a == u32::MAX && b == u32::MAX {
        write!(o, " CONNMARK {name}")
    } else if a == b {
        write!(o, " CONNMARK {name} mask {a:#x}")
    } else {
        write!(o, " CONNMARK {name} {n1} {a:#x} {n2} ~{b:#x}")
    };
}

fn flags(o: &mut String, random: bool, random_fully: bool, persistent: bool) {
    for (on, name) in [
        (random, " random"),
        (random_fully, " random-fully"),
        (persistent, " persistent"),
    ] {
        if on {
            o.push_str(name);
        }
    }
}

/// The listing of one table (or one chain of it); `v6` selects `::/0` for "any address".
pub(crate) fn list_table(
    t: &Table,
    chain: Option<&str>,
    counters: Option<crate::Counters<'_>>,
    v6: bool,
) -> String {
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
            "{:<4} {:>5} {:>5} {:<9}  {:<5}{:<3} {:<6} {:<6}  {:<19}  {:<19} ",
            "num", "pkts", "bytes", "target", "prot", "opt", "in", "out", "source", "destination"
        );
        for (i, r) in c.rules.iter().enumerate() {
            let (pk, by) = get(&c.name, i);
            // `-n` prints protocol numbers, `!` in the column before.
            let prot = match r.proto {
                None => " 0".to_string(),
                Some(p) => format!("{}{}", if p.negated { "!" } else { " " }, p.proto),
            };
            let opt = match r.fragment {
                None => "--",
                Some(false) => "-f",
                Some(true) => "!f",
            };
            let line = format!(
                "{:<4} {:>5} {:>5} {:<9} {:<5} {:<3} {:<6} {:<6} {} {} {}",
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
            let _ = writeln!(out, "{line}");
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
        assert_eq!(num(99_999_999), "100M");
        assert_eq!(num(9_999_499), "9999K");
        assert_eq!(num(u64::MAX), "18446744T");
    }
}
