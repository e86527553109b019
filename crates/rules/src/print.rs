//! `iptables-save` canonical text, as iptables 1.8.9 (legacy) prints a restored ruleset.

use std::fmt::Write;

use crate::ast::*;
use crate::values::protocol_name;

/// `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted with `"`, `\` and
/// `'` escaped by a backslash.
pub(crate) fn save_string(out: &mut String, s: &str) {
    out.push(' ');
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// ` 0xV` or ` 0xV/0xM` (`print_mark` of libxt_mark.c: the mask only when not all ones).
pub(crate) fn mark_text(out: &mut String, m: &MarkMatch) {
    let _ = write!(out, " {:#x}", m.value);
    if m.mask != u32::MAX {
        let _ = write!(out, "/{:#x}", m.mask);
    }
}

/// `addr/len`, or `addr/dotted` for a non-contiguous IPv4 mask.
pub(crate) fn addr_text(a: &AddrMatch) -> String {
    match a.prefix_len() {
        Some(n) => format!("{}/{}", a.addr, n),
        None => format!("{}/{}", a.addr, a.mask),
    }
}

fn neg(out: &mut String, n: bool) {
    if n {
        out.push_str(" !");
    }
}

fn ports(r: PortRange) -> String {
    if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}:{}", r.lo, r.hi)
    }
}

fn flags(v: u8) -> String {
    if v == 0 {
        return "NONE".into();
    }
    tcp_flags::NAMES
        .iter()
        .filter(|f| v & f.1 != 0)
        .map(|f| f.0)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn states(v: u16) -> String {
    ct_state::NAMES
        .iter()
        .filter(|f| v & f.1 != 0)
        .map(|f| f.0)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn icmp_text(m: &IcmpMatch, v6: bool) -> String {
    if !v6 && m.icmp_type == 255 && m.code_min == 0 && m.code_max == 255 {
        "any".into()
    } else if m.code_min == 0 && m.code_max == 255 {
        m.icmp_type.to_string()
    } else {
        format!("{}/{}", m.icmp_type, m.code_min)
    }
}

/// `print_rate` of libxt_limit: the largest unit that keeps the rate exact enough.
pub(crate) fn rate_text(avg: u32) -> String {
    const RATES: [(&str, u64); 4] = [
        ("day", 10000 * 24 * 60 * 60),
        ("hour", 10000 * 60 * 60),
        ("min", 10000 * 60),
        ("sec", 10000),
    ];
    let period = u64::from(avg.max(1));
    let mut i = 1;
    while i < RATES.len() {
        if period > RATES[i].1 || RATES[i].1 / period < RATES[i].1 % period {
            break;
        }
        i += 1;
    }
    format!("{}/{}", RATES[i - 1].1 / period, RATES[i - 1].0)
}

/// `lo[-hi][/base]`, as libxt_NAT's `print_range` writes the ports.
pub(crate) fn nat_ports_text(p: &NatPorts) -> String {
    let mut o = p.lo.to_string();
    if p.hi != p.lo {
        let _ = write!(o, "-{}", p.hi);
    }
    if let Some(b) = p.base {
        let _ = write!(o, "/{b}");
    }
    o
}

/// `--to-source`/`--to-destination`'s value (and `-L`'s `to:` text): IPv6 addresses go in
/// brackets when ports follow.
pub(crate) fn nat_range_text(r: &NatRange) -> String {
    let mut o = String::new();
    if let Some((lo, hi)) = r.addrs {
        let brackets = lo.is_ipv6() && r.ports.is_some();
        if brackets {
            o.push('[');
        }
        let _ = write!(o, "{lo}");
        if hi != lo {
            let _ = write!(o, "-{hi}");
        }
        if brackets {
            o.push(']');
        }
    }
    if let Some(p) = &r.ports {
        let _ = write!(o, ":{}", nat_ports_text(p));
    }
    o
}

fn to_ports(out: &mut String, p: Option<NatPorts>) {
    if let Some(p) = p {
        let _ = write!(out, " --to-ports {}", nat_ports_text(&p));
    }
}

fn iprange(r: &IpRange) -> String {
    format!("{}-{}", r.lo, r.hi)
}

/// Everything after `-A CHAIN` (starting with a space), in iptables-save's order.
pub fn rule_spec(rule: &Rule) -> String {
    let mut o = String::new();
    if let Some(a) = &rule.src {
        neg(&mut o, a.negated);
        let _ = write!(o, " -s {}", addr_text(a));
    }
    if let Some(a) = &rule.dst {
        neg(&mut o, a.negated);
        let _ = write!(o, " -d {}", addr_text(a));
    }
    // `! -i +` (matches nothing) is printed as nothing at all, as iptables-save does.
    if let Some(i) = rule.in_iface.as_ref().filter(|i| !i.name.is_empty()) {
        neg(&mut o, i.negated);
        let _ = write!(o, " -i {}{}", i.name, if i.wildcard { "+" } else { "" });
    }
    if let Some(i) = rule.out_iface.as_ref().filter(|i| !i.name.is_empty()) {
        neg(&mut o, i.negated);
        let _ = write!(o, " -o {}{}", i.name, if i.wildcard { "+" } else { "" });
    }
    if let Some(p) = &rule.proto {
        neg(&mut o, p.negated);
        let _ = write!(o, " -p {}", protocol_name(p.proto));
    }
    if let Some(f) = rule.fragment {
        neg(&mut o, f);
        o.push_str(" -f");
    }
    for m in &rule.matches {
        let _ = write!(o, " -m {}", m.name());
        match m {
            Match::Tcp(t) => {
                if let Some(p) = t.sport {
                    neg(&mut o, p.negated);
                    let _ = write!(o, " --sport {}", ports(p.range));
                }
                if let Some(p) = t.dport {
                    neg(&mut o, p.negated);
                    let _ = write!(o, " --dport {}", ports(p.range));
                }
                if let Some((n, inv)) = t.option {
                    neg(&mut o, inv);
                    let _ = write!(o, " --tcp-option {n}");
                }
                // iptables-save omits an empty mask (lossy when COMP is not empty: never matches).
                if let Some(f) = t.flags.filter(|f| f.mask != 0 || f.negated) {
                    neg(&mut o, f.negated);
                    let _ = write!(o, " --tcp-flags {} {}", flags(f.mask), flags(f.comp));
                }
            }
            Match::Udp(u) => {
                if let Some(p) = u.sport {
                    neg(&mut o, p.negated);
                    let _ = write!(o, " --sport {}", ports(p.range));
                }
                if let Some(p) = u.dport {
                    neg(&mut o, p.negated);
                    let _ = write!(o, " --dport {}", ports(p.range));
                }
            }
            Match::Icmp(i) => {
                neg(&mut o, i.negated);
                let _ = write!(o, " --icmp-type {}", icmp_text(i, false));
            }
            Match::Icmp6(i) => {
                neg(&mut o, i.negated);
                let _ = write!(o, " --icmpv6-type {}", icmp_text(i, true));
            }
            Match::Multiport(mp) => {
                neg(&mut o, mp.negated);
                let opt = match mp.dir {
                    MultiportDir::Source => "--sports",
                    MultiportDir::Destination => "--dports",
                    MultiportDir::Either => "--ports",
                };
                let list: Vec<String> = mp.ports.iter().map(|r| ports(*r)).collect();
                let _ = write!(o, " {opt} {}", list.join(","));
            }
            Match::State(s) => {
                neg(&mut o, s.negated);
                let _ = write!(o, " --state {}", states(s.states));
            }
            Match::Conntrack(c) => crate::parse::conntrack::dump(&mut o, c, true, states),
            Match::Time(t) => crate::parse::time::save(&mut o, t),
            Match::Hashlimit(h) => crate::parse::hashlimit::save(&mut o, h),
            Match::Connlimit(c) => crate::parse::connlimit::save(&mut o, c),
            Match::Connbytes(c) => crate::parse::connbytes::save(&mut o, c),
            Match::IpRange(r) => {
                if let Some(s) = &r.src {
                    neg(&mut o, s.negated);
                    let _ = write!(o, " --src-range {}", iprange(s));
                }
                if let Some(d) = &r.dst {
                    neg(&mut o, d.negated);
                    let _ = write!(o, " --dst-range {}", iprange(d));
                }
            }
            Match::Mac { addr, negated } => {
                neg(&mut o, *negated);
                let _ = write!(
                    o,
                    " --mac-source {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    addr[0], addr[1], addr[2], addr[3], addr[4], addr[5]
                );
            }
            Match::Limit(l) => {
                let _ = write!(o, " --limit {}", rate_text(l.avg));
                if l.burst != 5 {
                    let _ = write!(o, " --limit-burst {}", l.burst);
                }
            }
            Match::Length { min, max, negated } => {
                neg(&mut o, *negated);
                if min == max {
                    let _ = write!(o, " --length {min}");
                } else {
                    let _ = write!(o, " --length {min}:{max}");
                }
            }
            Match::Ttl { op, value } | Match::HopLimit { op, value } => {
                let p = if matches!(m, Match::Ttl { .. }) {
                    "ttl"
                } else {
                    "hl"
                };
                let _ = match op {
                    TtlOp::Eq => write!(o, " --{p}-eq {value}"),
                    TtlOp::Ne => write!(o, " ! --{p}-eq {value}"),
                    TtlOp::Lt => write!(o, " --{p}-lt {value}"),
                    TtlOp::Gt => write!(o, " --{p}-gt {value}"),
                };
            }
            Match::Sctp(_) | Match::Dccp(_) | Match::Esp(_) | Match::Ah(_) | Match::Rt(_) => {
                crate::proto_print::save(m, &mut o)
            }
            Match::Comment(c) => {
                o.push_str(" --comment");
                save_string(&mut o, c);
            }
            Match::Recent(r) => recent_text(&mut o, r),
            Match::Statistic(s) => statistic_text(&mut o, s, "--"),
            Match::Mark(mm) | Match::Connmark(mm) => {
                neg(&mut o, mm.negated);
                o.push_str(" --mark");
                mark_text(&mut o, mm);
            }
            Match::HostOnly(h) => o.push_str(&h.save),
            m => {
                let known = crate::parse::stateless::save(&mut o, m);
                debug_assert!(known, "no save text for {m:?}");
            }
        }
    }
    if let Some(t) = &rule.target {
        target_text(&mut o, t);
    }
    o
}

/// `libxt_recent`'s save: the command, its modifiers, then always the name, mask and side.
fn recent_text(o: &mut String, r: &RecentMatch) {
    if r.invert {
        o.push_str(" !");
    }
    o.push_str(match r.cmd {
        Some(RecentCmd::Set) | None => " --set",
        Some(RecentCmd::Check) => " --rcheck",
        Some(RecentCmd::Update) => " --update",
        Some(RecentCmd::Remove) => " --remove",
    });
    if r.seconds != 0 {
        // `%d` of a u32, as libxt_recent prints it
        let _ = write!(o, " --seconds {}", r.seconds as i32);
    }
    if r.reap {
        o.push_str(" --reap");
    }
    if r.hitcount != 0 {
        let _ = write!(o, " --hitcount {}", r.hitcount);
    }
    if r.rttl {
        o.push_str(" --rttl");
    }
    let _ = write!(o, " --name {} --mask {}", r.name, r.mask);
    o.push_str(if r.rdest { " --rdest" } else { " --rsource" });
}

/// `libxt_statistic`'s `print_match`, with `--` for save and nothing for `-L`.
pub(crate) fn statistic_text(o: &mut String, s: &StatisticMatch, prefix: &str) {
    let neg = if s.negated { " !" } else { "" };
    match s.mode {
        Some(StatisticMode::Random) | None => {
            let p = f64::from(s.probability.unwrap_or(0)) / f64::from(0x8000_0000u32);
            let _ = write!(o, " {prefix}mode random{neg} {prefix}probability {p:.11}");
        }
        Some(StatisticMode::Nth) => {
            let every = u64::from(s.every.unwrap_or(0)) + 1;
            let _ = write!(o, " {prefix}mode nth{neg} {prefix}every {every}");
            // iptables 1.8.9's save prints the packet even when it is 0, its -L does not
            let p = s.packet.unwrap_or(0);
            if p != 0 || !prefix.is_empty() {
                let _ = write!(o, " {prefix}packet {p}");
            }
        }
    }
}

fn target_text(o: &mut String, t: &Target) {
    match t {
        Target::Accept => o.push_str(" -j ACCEPT"),
        Target::Drop => o.push_str(" -j DROP"),
        Target::Return => o.push_str(" -j RETURN"),
        Target::Jump(c) => {
            let _ = write!(o, " -j {c}");
        }
        Target::Goto(c) => {
            let _ = write!(o, " -g {c}");
        }
        Target::Reject(w) => {
            let _ = write!(o, " -j REJECT --reject-with {}", w.as_str());
        }
        Target::Log(l) => {
            o.push_str(" -j LOG");
            if !l.prefix.is_empty() {
                o.push_str(" --log-prefix");
                save_string(o, &l.prefix);
            }
            if l.level != 4 {
                let _ = write!(o, " --log-level {}", l.level);
            }
            for (on, name) in [
                (l.tcp_sequence, "--log-tcp-sequence"),
                (l.tcp_options, "--log-tcp-options"),
                (l.ip_options, "--log-ip-options"),
                (l.uid, "--log-uid"),
                (l.macdecode, "--log-macdecode"),
            ] {
                if on {
                    let _ = write!(o, " {name}");
                }
            }
        }
        Target::Nflog(n) => {
            o.push_str(" -j NFLOG");
            if !n.prefix.is_empty() {
                o.push_str(" --nflog-prefix");
                save_string(o, &n.prefix);
            }
            if n.group != 0 {
                let _ = write!(o, " --nflog-group {}", n.group);
            }
            if let Some(s) = n.size {
                let _ = write!(o, " --nflog-size {s}");
            } else if n.range != 0 {
                let _ = write!(o, " --nflog-range {}", n.range);
            }
            if n.threshold != 0 {
                let _ = write!(o, " --nflog-threshold {}", n.threshold);
            }
        }
        Target::Snat(r) | Target::Dnat(r) => {
            let (name, opt) = if matches!(t, Target::Snat(_)) {
                ("SNAT", "--to-source")
            } else {
                ("DNAT", "--to-destination")
            };
            let _ = write!(o, " -j {name}");
            if r.addrs.is_some() || r.ports.is_some() {
                let _ = write!(o, " {opt} {}", nat_range_text(r));
            }
            if r.random {
                o.push_str(" --random");
            }
            if r.random_fully {
                o.push_str(" --random-fully");
            }
            if r.persistent {
                o.push_str(" --persistent");
            }
        }
        Target::Masquerade {
            ports,
            random,
            random_fully,
        } => {
            o.push_str(" -j MASQUERADE");
            to_ports(o, *ports);
            if *random {
                o.push_str(" --random");
            }
            if *random_fully {
                o.push_str(" --random-fully");
            }
        }
        Target::Redirect { ports, random } => {
            o.push_str(" -j REDIRECT");
            to_ports(o, *ports);
            if *random {
                o.push_str(" --random");
            }
        }
        Target::Netmap { addr, prefix } => {
            let _ = write!(o, " -j NETMAP --to {addr}/{prefix}");
        }
        Target::Notrack => o.push_str(" -j NOTRACK"),
        Target::CtNotrack => o.push_str(" -j CT --notrack"),
        Target::Mark(x) => {
            let _ = write!(o, " -j MARK --set-xmark {:#x}/{:#x}", x.value, x.mask);
        }
        Target::Connmark(c) => {
            let _ = match c.mode {
                ConnmarkMode::Set => write!(
                    o,
                    " -j CONNMARK --set-xmark {:#x}/{:#x}",
                    c.ctmark, c.ctmask
                ),
                ConnmarkMode::Save | ConnmarkMode::Restore => write!(
                    o,
                    " -j CONNMARK --{}-mark --nfmask {:#x} --ctmask {:#x}",
                    if c.mode == ConnmarkMode::Save {
                        "save"
                    } else {
                        "restore"
                    },
                    c.nfmask,
                    c.ctmask
                ),
            };
        }
        Target::Ttl(x) | Target::Hl(x) => {
            let (name, p) = if matches!(t, Target::Ttl(_)) {
                ("TTL", "ttl")
            } else {
                ("HL", "hl")
            };
            let mode = match x.mode {
                TtlMode::Set => "set",
                TtlMode::Dec => "dec",
                TtlMode::Inc => "inc",
            };
            let _ = write!(o, " -j {name} --{p}-{mode} {}", x.value);
        }
        Target::Dscp(d) => {
            let _ = write!(o, " -j DSCP --set-dscp {d:#04x}");
        }
        Target::Tos { value, mask } => {
            let _ = write!(o, " -j TOS --set-tos {value:#04x}/{mask:#04x}");
        }
        Target::Tcpmss(Tcpmss::Set(m)) => {
            let _ = write!(o, " -j TCPMSS --set-mss {m}");
        }
        Target::Tcpmss(Tcpmss::ClampPmtu) => o.push_str(" -j TCPMSS --clamp-mss-to-pmtu"),
        Target::Ecn(e) => {
            o.push_str(" -j ECN");
            if e.is_remove() {
                o.push_str(" --ecn-tcp-remove");
            } else {
                if let Some(v) = e.ece {
                    let _ = write!(o, " --ecn-tcp-ece {v}");
                }
                if let Some(v) = e.cwr {
                    let _ = write!(o, " --ecn-tcp-cwr {v}");
                }
                if let Some(v) = e.ect {
                    let _ = write!(o, " --ecn-ip-ect {v}");
                }
            }
        }
        Target::Checksum => o.push_str(" -j CHECKSUM --checksum-fill"),
        Target::Classify(p) => {
            let _ = write!(
                o,
                " -j CLASSIFY --set-class {:04x}:{:04x}",
                p >> 16,
                p & 0xffff
            );
        }
    }
}

/// One table in save form (`*name` ... `COMMIT`).
pub(crate) fn table_save(out: &mut String, t: &Table) {
    let _ = writeln!(out, "*{}", t.name.as_str());
    for c in &t.chains {
        let pol = c.policy.map_or("-", |p| p.as_str());
        let _ = writeln!(out, ":{} {} [0:0]", c.name, pol);
    }
    for c in &t.chains {
        for r in &c.rules {
            let _ = writeln!(out, "-A {}{}", c.name, rule_spec(r));
        }
    }
    out.push_str("COMMIT\n");
}

/// The whole ruleset in `iptables-save` form (without the `#` header/footer lines).
pub(crate) fn save(rs: &Ruleset) -> String {
    let mut out = String::new();
    for t in &rs.tables {
        table_save(&mut out, t);
    }
    out
}

/// `-S [chain]` output of one table.
pub(crate) fn list_rules(t: &Table, chain: Option<&str>) -> String {
    let mut out = String::new();
    for c in t
        .chains
        .iter()
        .filter(|c| chain.is_none_or(|n| n == c.name))
    {
        match c.policy {
            Some(p) => {
                let _ = writeln!(out, "-P {} {}", c.name, p.as_str());
            }
            None => {
                let _ = writeln!(out, "-N {}", c.name);
            }
        }
    }
    for c in t
        .chains
        .iter()
        .filter(|c| chain.is_none_or(|n| n == c.name))
    {
        for r in &c.rules {
            let _ = writeln!(out, "-A {}{}", c.name, rule_spec(r));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_like_iptables() {
        let mut s = String::new();
        save_string(&mut s, "a\"b'c");
        assert_eq!(s, r#" "a\"b\'c""#);
        let mut s = String::new();
        save_string(&mut s, "ssh-in_1");
        assert_eq!(s, " ssh-in_1");
        let mut s = String::new();
        save_string(&mut s, "");
        assert_eq!(s, " \"\"");
    }

    #[test]
    fn rates_rescale() {
        assert_eq!(rate_text(400), "25/sec");
        assert_eq!(rate_text(LimitMatch::DEFAULT.avg), "3/hour");
        assert_eq!(rate_text(10000 * 60), "1/min");
        assert_eq!(rate_text(10000 * 86400), "1/day");
    }
}
